"""The receive half of a uTP connection (BEP 29), sans-IO: in-order delivery, the reorder buffer,
the peer's FIN, the receive window and the events that carry data to the application.

A :class:`Receiver` belongs to one :class:`~torrentgoat.utp.connection.UTPConnection`; it decides
nothing about the connection's state.  ``ack_nr`` is the last sequence number delivered in order
(BEP 29: what our packets acknowledge); out-of-order payloads wait in the reorder buffer (at most
``max_reorder_packets`` ahead, and within the window) and are reported to the peer by the
selective-ack bitmask (:meth:`Receiver.sack`).  The window we advertise is the free part of
``receive_buffer`` (out-of-order bytes plus bytes held while reading is paused), bounded by the
manager-wide :class:`ReceiveBudget`.

Events go to the manager's queue in order: in-order bytes accumulate in one :class:`PendingData`
entry (several packets become one :class:`DataReceived`) until another event of the connection is
queued after them.
"""

from __future__ import annotations

from collections import deque
from typing import Final

from torrentgoat.utp.config import UTPConfig
from torrentgoat.utp.events import DataReceived, Event, FinReceived
from torrentgoat.utp.packet import sack_bitmask

__all__ = ["HALF", "MASK", "PendingData", "ReceiveBudget", "Receiver", "seq_after"]

MASK: Final = 0xFFFF
HALF: Final = 0x8000


def seq_after(a: int, b: int) -> bool:
    """``a`` comes after ``b`` in 16-bit sequence space."""
    return a != b and (a - b) & MASK < HALF


class ReceiveBudget:
    """Bytes buffered on the receive side by all connections of a manager, against a limit."""

    __slots__ = ("limit", "used")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0


class PendingData:
    """In-order bytes waiting in the manager's event queue; becomes one :class:`DataReceived`."""

    __slots__ = ("chunks", "receiver")

    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver
        self.chunks: list[bytes] = []

    def event(self) -> DataReceived:
        if self.receiver._pending is self:
            self.receiver._pending = None
        chunks = self.chunks
        return DataReceived(key=self.receiver.key, data=chunks[0] if len(chunks) == 1 else b"".join(chunks))


class Receiver:
    """See the module docstring."""

    def __init__(
        self, *, key: int, config: UTPConfig, events: deque[Event | PendingData], budget: ReceiveBudget
    ) -> None:
        self.key = key
        self.config = config
        self._events = events
        self._budget = budget
        self._pending: PendingData | None = None
        self.ack_nr = 0
        self._reorder: dict[int, bytes] = {}
        self._reorder_bytes = 0
        self.eof_seq: int | None = None
        self.eof_reached = False
        self._reading = True
        self._held: deque[bytes] = deque()
        self._held_bytes = 0
        self.bytes_received = 0
        self.duplicates = 0
        self.ignored = 0

    @property
    def window(self) -> int:
        """What we advertise: free receive buffer, bounded by the manager-wide budget."""
        used = self._reorder_bytes + self._held_bytes
        budget = self._budget
        return max(0, min(self.config.receive_buffer - used, budget.limit - budget.used))

    @property
    def out_of_order(self) -> bool:
        return bool(self._reorder)

    # --- events --------------------------------------------------------------------------------

    def emit(self, event: Event) -> None:
        """Queue one of the connection's events after any data delivered so far."""
        self._pending = None
        self._events.append(event)

    def _push(self, payload: bytes) -> None:
        pending = self._pending
        if pending is None:
            pending = self._pending = PendingData(self)
            self._events.append(pending)
        pending.chunks.append(payload)

    # --- packets -------------------------------------------------------------------------------

    def payload(self, seq: int, data: bytes) -> None:
        """An ST_DATA payload with sequence number ``seq``."""
        if seq == (self.ack_nr + 1) & MASK and self.eof_seq is None and self._reading and not self._held:
            # the next one in order, no FIN seen, reading: straight to the application
            self.ack_nr = seq
            if data:
                self.bytes_received += len(data)
                pending = self._pending
                if pending is None:
                    pending = self._pending = PendingData(self)
                    self._events.append(pending)
                pending.chunks.append(data)
            if self._reorder:
                self._drain_reorder(seq)
            return
        distance = (seq - self.ack_nr) & MASK
        if distance == 0 or distance >= HALF:
            self.duplicates += 1  # already delivered: the re-ack tells the sender
            return
        eof = self.eof_seq
        if eof is not None and not seq_after(eof, seq):
            self.ignored += 1  # at or beyond the FIN
            return
        if distance == 1:
            if (not self._reading or self._held) and len(data) > self.window:
                self.ignored += 1  # reading is paused and the buffer is full: the window said so
                return
            self.ack_nr = seq
            self._deliver(data)
            if self._reorder:
                self._drain_reorder(seq)
            self._check_eof()
            return
        if distance > self.config.max_reorder_packets or seq in self._reorder:
            self.duplicates += 1
            return
        size = len(data)
        if size > self.window:
            self.ignored += 1  # the sender ignores our window (or the budget is spent)
            return
        self._reorder[seq] = data
        self._reorder_bytes += size
        self._budget.used += size

    def _drain_reorder(self, seq: int) -> None:
        """``seq`` was just delivered: deliver what waited in order after it."""
        reorder = self._reorder
        nxt = (seq + 1) & MASK
        while nxt in reorder:
            chunk = reorder.pop(nxt)
            self._reorder_bytes -= len(chunk)
            self._budget.used -= len(chunk)
            self.ack_nr = nxt
            self._deliver(chunk)
            nxt = (nxt + 1) & MASK

    def fin(self, seq: int) -> None:
        """The peer's ST_FIN: its stream ends before ``seq`` (BEP 29)."""
        if self.eof_seq is None:
            if not seq_after(seq, self.ack_nr):
                self.ignored += 1
                return
            self.eof_seq = seq
        self._check_eof()

    def late_fin(self, seq: int) -> bool:
        """A FIN after our side has closed: acknowledge it if it is the one we expect."""
        if self.eof_seq is not None and seq != self.eof_seq:
            return False
        if seq == (self.ack_nr + 1) & MASK:
            self.ack_nr = seq
        return True

    def _check_eof(self) -> None:
        eof = self.eof_seq
        if eof is None or self.eof_reached:
            return
        if eof == (self.ack_nr + 1) & MASK:
            self.ack_nr = eof
            self.eof_reached = True
            self.emit(FinReceived(key=self.key))

    def _deliver(self, payload: bytes) -> None:
        size = len(payload)
        if not size:
            return
        self.bytes_received += size
        if self._reading and not self._held:
            self._push(payload)
        else:
            self._held.append(payload)
            self._held_bytes += size
            self._budget.used += size

    # --- the application -----------------------------------------------------------------------

    def pause(self) -> None:
        self._reading = False

    def resume(self) -> bool:
        """Deliver what was held; True if reading was paused (a window update is due)."""
        if self._reading:
            return False
        self._reading = True
        while self._held:
            chunk = self._held.popleft()
            self._held_bytes -= len(chunk)
            self._budget.used -= len(chunk)
            self._push(chunk)
        return True

    def sack(self) -> bytes | None:
        """The selective-ack bitmask for the reorder buffer (None when nothing waits): bit *i* is
        ``ack_nr + 2 + i``, whole 32-bit words, at most 63 of them (BEP 29)."""
        if not self._reorder:
            return None
        base = (self.ack_nr + 2) & MASK
        span = max((seq - base) & MASK for seq in self._reorder) + 1
        return sack_bitmask(self.ack_nr, self._reorder, min(span, 63 * 32))

    def release(self) -> None:
        """The connection ended: give back everything buffered."""
        self._budget.used -= self._reorder_bytes + self._held_bytes
        self._reorder.clear()
        self._reorder_bytes = 0
        self._held.clear()
        self._held_bytes = 0
