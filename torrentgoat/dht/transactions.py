"""Our outstanding KRPC queries (BEP 5 "KRPC Protocol": the transaction id): ids, timeouts, matching.

Every query the engine sends gets a fresh 2-byte transaction id and a :class:`PendingQuery` that
remembers the node asked, the operation it serves and when it times out.  An answer is matched by
transaction id *and* source address, so a node cannot answer a query sent to another.  Lookup
queries may also turn *slow* before they time out (see :mod:`torrentgoat.dht.lookup`).

Deadlines sit in heaps; entries of queries already answered stay there and are skipped lazily, so
sending, matching and expiring are O(log n) whatever the table's size.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from torrentgoat.dht.krpc import Addr
from torrentgoat.errors import DHTError

__all__ = ["PendingQuery", "TransactionTable"]


@dataclass(slots=True)
class PendingQuery:
    """One query awaiting its answer."""

    addr: Addr
    """The node asked; only an answer from this address matches."""
    op: int
    """The operation the query serves."""
    deadline: float
    store: bool = False
    """A store-phase query (``announce_peer``, ``put``) rather than a lookup query."""
    slow_at: float | None = None
    """When a lookup stops waiting for it (None: not slow-timed, or already slow)."""


class TransactionTable:
    """The pending queries, keyed by transaction id, with their timeout and slow-timeout heaps."""

    def __init__(self, first_tid: int) -> None:
        self._pending: dict[bytes, PendingQuery] = {}
        self._deadlines: list[tuple[float, bytes]] = []
        self._slow: list[tuple[float, bytes]] = []
        self._next_tid = first_tid

    def __len__(self) -> int:
        return len(self._pending)

    def new_tid(self) -> bytes:
        """A transaction id no pending query uses (ids count up from a random start)."""
        for _ in range(1 << 16):
            self._next_tid = (self._next_tid + 1) & 0xFFFF
            tid = self._next_tid.to_bytes(2, "big")
            if tid not in self._pending:
                return tid
        raise DHTError("no free transaction id")  # pragma: no cover - max_pending is far below 65536

    def add(self, tid: bytes, query: PendingQuery) -> None:
        """Wait for an answer to ``tid`` until ``query.deadline`` (and mark it slow at ``query.slow_at``)."""
        self._pending[tid] = query
        heapq.heappush(self._deadlines, (query.deadline, tid))
        if query.slow_at is not None:
            heapq.heappush(self._slow, (query.slow_at, tid))

    def take(self, tid: bytes, addr: Addr) -> PendingQuery | None:
        """The query an answer from ``addr`` with ``tid`` belongs to, forgotten; None if it matches none."""
        query = self._pending.get(tid)
        if query is None or query.addr != addr:
            return None
        del self._pending[tid]
        return query

    def next_timer(self) -> float | None:
        """The earliest deadline or slow time of a pending query, or None."""
        when: float | None = None
        while self._deadlines:
            deadline, tid = self._deadlines[0]
            query = self._pending.get(tid)
            if query is not None and query.deadline == deadline:
                when = deadline
                break
            heapq.heappop(self._deadlines)
        while self._slow:
            slow_at, tid = self._slow[0]
            query = self._pending.get(tid)
            if query is not None and query.slow_at == slow_at:
                when = slow_at if when is None else min(when, slow_at)
                break
            heapq.heappop(self._slow)
        return when

    def pop_slow(self, now: float) -> PendingQuery | None:
        """One query that turned slow by ``now`` (it stays pending, no longer slow-timed), or None."""
        while self._slow and self._slow[0][0] <= now:
            slow_at, tid = heapq.heappop(self._slow)
            query = self._pending.get(tid)
            if query is None or query.slow_at != slow_at:
                continue
            query.slow_at = None
            return query
        return None

    def pop_expired(self, now: float) -> PendingQuery | None:
        """One query whose deadline passed by ``now``, forgotten; None when none is left."""
        while self._deadlines and self._deadlines[0][0] <= now:
            deadline, tid = heapq.heappop(self._deadlines)
            query = self._pending.get(tid)
            if query is None or query.deadline != deadline:
                continue
            del self._pending[tid]
            return query
        return None
