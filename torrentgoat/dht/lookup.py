"""Iterative Kademlia lookup (BEP 5 "Routing Table"/"get_peers": ask ever closer nodes).

Up to ``alpha`` (3) queries are in flight at once, always to the closest not-yet-asked candidates
among the ``k`` closest known ones.  The lookup ends when the ``k`` closest live candidates have all
answered (or failed), or when ``max_queries`` queries were sent; candidates first heard of more
than ``max_rounds`` hops from the seeds are never asked, so the number of rounds is bounded.
``rounds`` reports the hop depth actually reached.  The candidate set itself is capped.

Seeds whose id is unknown (bootstrap routers) sort first and learn their id when they answer.

A query unanswered after a short while is marked *slow* (libtorrent's "short timeout"): it stops
counting against ``alpha`` so another candidate is asked, but an answer is still welcome until the
real timeout.  Dead nodes in others' tables therefore cost little time, unless they are among the
``k`` closest, which the lookup must wait out.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from torrentgoat.dht.krpc import Addr, NodeInfo

__all__ = ["Candidate", "CandidateState", "Lookup"]


class CandidateState(enum.Enum):
    NEW = 0
    IN_FLIGHT = 1
    RESPONDED = 2
    FAILED = 3


@dataclass(slots=True)
class Candidate:
    """One node a lookup knows of; ``depth`` is its hop count from the seeds."""

    addr: Addr
    id: bytes | None
    distance: int
    depth: int
    state: CandidateState = CandidateState.NEW
    token: bytes | None = None
    slow: bool = False


class Lookup:
    """The pure state of one iterative lookup towards ``target``."""

    def __init__(
        self,
        target: bytes,
        *,
        own_id: bytes | None = None,
        k: int = 8,
        alpha: int = 3,
        max_rounds: int = 12,
        max_queries: int = 128,
        max_candidates: int = 256,
    ) -> None:
        self.target = target
        self._t = int.from_bytes(target, "big")
        self.own_id = own_id
        self.k = k
        self.alpha = alpha
        self.max_rounds = max_rounds
        self.max_queries = max_queries
        self.max_candidates = max_candidates
        self.candidates: dict[Addr, Candidate] = {}
        self._ids: set[bytes] = set()
        self.in_flight = 0
        self.queries = 0
        self.responses = 0

    # -- candidates ---------------------------------------------------------------------------------

    def add(self, node_id: bytes | None, addr: Addr, depth: int) -> None:
        """Learn of a node (ignored if known by address or id, or if it is us)."""
        if addr in self.candidates or node_id == self.own_id:
            return
        if node_id is not None and node_id in self._ids:
            return
        distance = -1 if node_id is None else int.from_bytes(node_id, "big") ^ self._t
        if len(self.candidates) >= self.max_candidates:
            worst = max(
                (c for c in self.candidates.values() if c.state is CandidateState.NEW),
                key=lambda c: c.distance,
                default=None,
            )
            if worst is None or worst.distance <= distance:
                return
            del self.candidates[worst.addr]
            if worst.id is not None:
                self._ids.discard(worst.id)
        self.candidates[addr] = Candidate(addr, node_id, distance, depth)
        if node_id is not None:
            self._ids.add(node_id)

    def add_nodes(self, nodes: Iterable[NodeInfo], depth: int) -> None:
        for node in nodes:
            self.add(node.id, node.addr, depth)

    def _live_sorted(self) -> list[Candidate]:
        live = [c for c in self.candidates.values() if c.state is not CandidateState.FAILED]
        live.sort(key=lambda c: c.distance)
        return live

    # -- progress -----------------------------------------------------------------------------------

    def next_queries(self) -> list[Candidate]:
        """Candidates to ask now (marked in flight); empty when alpha are out or nothing is left."""
        out: list[Candidate] = []
        if self.in_flight >= self.alpha:
            return out
        for c in self._live_sorted()[: self.k]:
            if self.in_flight >= self.alpha or self.queries >= self.max_queries:
                break
            if c.state is CandidateState.NEW and c.depth < self.max_rounds:
                c.state = CandidateState.IN_FLIGHT
                self.in_flight += 1
                self.queries += 1
                out.append(c)
        return out

    def slow(self, addr: Addr) -> None:
        """The query to ``addr`` is late: let another one go out in its place."""
        c = self.candidates.get(addr)
        if c is not None and c.state is CandidateState.IN_FLIGHT and not c.slow:
            c.slow = True
            self.in_flight -= 1

    def _land(self, c: Candidate) -> None:
        if c.slow:
            c.slow = False
        else:
            self.in_flight -= 1

    def responded(
        self, addr: Addr, node_id: bytes, *, token: bytes | None = None, nodes: Iterable[NodeInfo] = ()
    ) -> None:
        c = self.candidates.get(addr)
        if c is None or c.state is not CandidateState.IN_FLIGHT:
            return
        self._land(c)
        self.responses += 1
        if c.id is None:
            if node_id in self._ids or node_id == self.own_id:
                c.state = CandidateState.FAILED  # a router that is also a known node: keep one entry
                self.add_nodes(nodes, c.depth + 1)
                return
            c.id = node_id
            c.distance = int.from_bytes(node_id, "big") ^ self._t
            self._ids.add(node_id)
        c.state = CandidateState.RESPONDED
        c.token = token
        self.add_nodes(nodes, c.depth + 1)

    def failed(self, addr: Addr) -> None:
        c = self.candidates.get(addr)
        if c is None or c.state is not CandidateState.IN_FLIGHT:
            return
        self._land(c)
        c.state = CandidateState.FAILED

    @property
    def done(self) -> bool:
        """Nothing in flight and nothing left worth asking."""
        if self.in_flight:
            return False
        if self.queries >= self.max_queries:
            return True
        return not any(
            c.state is CandidateState.NEW and c.depth < self.max_rounds for c in self._live_sorted()[: self.k]
        )

    @property
    def rounds(self) -> int:
        """Hops reached: 1 + the deepest candidate that answered (0 if none did)."""
        depths = [c.depth for c in self.candidates.values() if c.state is CandidateState.RESPONDED]
        return 1 + max(depths) if depths else 0

    def closest_responded(self, n: int | None = None, *, with_token: bool = False) -> list[Candidate]:
        """The ``n`` (default k) closest candidates that answered (with a write token if asked)."""
        result = [
            c
            for c in self._live_sorted()
            if c.state is CandidateState.RESPONDED and c.id is not None and (c.token or not with_token)
        ]
        return result[: self.k if n is None else n]
