"""An in-memory datagram network for :class:`~torrentgoat.utp.UTPSocketManager` engines under one
fake clock -- deterministic, no sockets (tests and benchmarks).

    net = UTPNetwork(seed=1, latency=0.01, loss=0.05)
    a, b = net.add(("10.0.0.1", 6881)), net.add(("10.0.0.2", 6881))
    key = a.connect(("10.0.0.2", 6881), net.now)
    net.run_until(lambda: net.accepted(("10.0.0.2", 6881)))
    a.send(key, payload); net.flush(("10.0.0.1", 6881))
    net.run_until(lambda: len(net.received(("10.0.0.2", 6881), 1)) == len(payload))

Every datagram takes ``latency`` seconds plus up to ``jitter`` (which reorders), and is dropped with
probability ``loss`` or delivered twice with probability ``duplicate``.  ``rate`` (bytes per second)
puts a bottleneck with a tail-drop queue of ``queue_bytes`` in front of every destination: queuing
delay builds there as it does in a router, which is what LEDBAT watches; :meth:`occupy` puts
cross traffic on it.  ``mangle`` is a hook ``(data, source, destination) -> bytes | None`` for
targeted losses (None) or rewritten packets; :meth:`inject` delivers forged bytes.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable

from torrentgoat.utp.config import UTPConfig
from torrentgoat.utp.events import (
    Addr,
    ConnectionAccepted,
    ConnectionClosed,
    ConnectionEstablished,
    DataReceived,
    Event,
    FinReceived,
)
from torrentgoat.utp.manager import UTPSocketManager

__all__ = ["UTPNetwork"]


class UTPNetwork:
    """Managers keyed by address, a delivery queue, per-destination bottlenecks and a clock."""

    def __init__(
        self,
        *,
        seed: int = 0,
        latency: float = 0.01,
        jitter: float = 0.0,
        loss: float = 0.0,
        duplicate: float = 0.0,
        rate: float | None = None,
        queue_bytes: int = 1 << 20,
        start: float = 1000.0,
        auto_close_on_fin: bool = False,
    ) -> None:
        self.rng = random.Random(seed)
        self.latency = latency
        self.jitter = jitter
        self.loss = loss
        self.duplicate = duplicate
        self.rate = rate
        self.queue_bytes = queue_bytes
        self.now = start
        self.auto_close_on_fin = auto_close_on_fin
        """Close our side when the peer's FIN arrives (what an asyncio transport does)."""
        self.mangle: Callable[[bytes, Addr, Addr], bytes | None] | None = None
        self.managers: dict[Addr, UTPSocketManager] = {}
        self.events: dict[Addr, list[Event]] = {}
        self.data: dict[tuple[Addr, int], bytearray] = {}
        self.sent_datagrams = 0
        self.sent_bytes = 0
        self.dropped = 0
        self.queue_drops = 0
        self.max_queue_delay = 0.0
        self._link_free: dict[Addr, float] = {}
        self._queue: list[tuple[float, int, Addr, bytes, Addr]] = []
        self._timers: list[tuple[float, int, Addr]] = []
        self._armed: dict[Addr, float] = {}
        self._seq = 0

    # --- membership ------------------------------------------------------------------------------

    def add(self, addr: Addr, config: UTPConfig | None = None, *, datagram: int = 1472) -> UTPSocketManager:
        """A manager at ``addr`` whose paths carry UDP payloads of up to ``datagram`` bytes."""
        manager = UTPSocketManager(
            rng=random.Random(self.rng.getrandbits(64)),
            now=self.now,
            config=config,
            path_datagram=lambda host: datagram,
        )
        self.managers[addr] = manager
        self.events[addr] = []
        return manager

    def manager(self, addr: Addr) -> UTPSocketManager:
        return self.managers[addr]

    # --- observations ----------------------------------------------------------------------------

    def received(self, addr: Addr, key: int) -> bytearray:
        return self.data.setdefault((addr, key), bytearray())

    def accepted(self, addr: Addr) -> list[int]:
        return [e.key for e in self.events[addr] if isinstance(e, ConnectionAccepted)]

    def established(self, addr: Addr, key: int) -> bool:
        return any(isinstance(e, ConnectionEstablished) and e.key == key for e in self.events[addr])

    def closed(self, addr: Addr, key: int) -> ConnectionClosed | None:
        for event in self.events[addr]:
            if isinstance(event, ConnectionClosed) and event.key == key:
                return event
        return None

    def fin_received(self, addr: Addr, key: int) -> bool:
        return any(isinstance(e, FinReceived) and e.key == key for e in self.events[addr])

    # --- pumping ---------------------------------------------------------------------------------

    def flush(self, addr: Addr) -> None:
        """Collect ``addr``'s events and datagrams; (re)arm its timer."""
        manager = self.managers.get(addr)
        if manager is None:
            return
        while (event := manager.next_event()) is not None:
            self.events[addr].append(event)
            if isinstance(event, DataReceived):
                self.data.setdefault((addr, event.key), bytearray()).extend(event.data)
            elif isinstance(event, FinReceived) and self.auto_close_on_fin:
                manager.close(event.key, self.now)
        for data, dest in manager.datagrams_to_send(self.now):
            self._transmit(data, addr, dest)
        when = manager.get_timer()
        if when is not None and self._armed.get(addr) != when:
            self._armed[addr] = when
            self._seq += 1
            heapq.heappush(self._timers, (when, self._seq, addr))

    def flush_all(self) -> None:
        for addr in list(self.managers):
            self.flush(addr)

    def inject(self, data: bytes, source: Addr, dest: Addr, *, delay: float = 0.0) -> None:
        """Deliver ``data`` to ``dest`` as if ``source`` sent it (forgery, floods)."""
        self._seq += 1
        heapq.heappush(self._queue, (self.now + delay, self._seq, dest, data, source))

    def _transmit(self, data: bytes, source: Addr, dest: Addr) -> None:
        self.sent_datagrams += 1
        self.sent_bytes += len(data)
        rng = self.rng
        if self.mangle is not None:
            mangled = self.mangle(data, source, dest)
            if mangled is None:
                self.dropped += 1
                return
            data = mangled
        if self.loss and rng.random() < self.loss:
            self.dropped += 1
            return
        at = self.now
        if self.rate is not None:
            free = max(self._link_free.get(dest, at), at)
            if (free - at) * self.rate + len(data) > self.queue_bytes:
                self.queue_drops += 1
                return
            free += len(data) / self.rate
            self._link_free[dest] = free
            self.max_queue_delay = max(self.max_queue_delay, free - at)
            at = free
        copies = 2 if self.duplicate and rng.random() < self.duplicate else 1
        for _ in range(copies):
            arrival = at + self.latency + (rng.random() * self.jitter if self.jitter else 0.0)
            self._seq += 1
            heapq.heappush(self._queue, (arrival, self._seq, dest, data, source))

    def occupy(self, dest: Addr, size: int) -> bool:
        """Cross traffic: ``size`` bytes join the bottleneck queue in front of ``dest`` (and are
        delivered nowhere).  False if the queue had no room (tail drop)."""
        assert self.rate is not None, "occupy() needs a bottleneck (rate)"
        free = max(self._link_free.get(dest, self.now), self.now)
        if (free - self.now) * self.rate + size > self.queue_bytes:
            return False
        self._link_free[dest] = free + size / self.rate
        return True

    def queue_delay(self, dest: Addr) -> float:
        """Current queuing delay in front of ``dest`` (with ``rate``)."""
        return max(0.0, self._link_free.get(dest, self.now) - self.now)

    def step(self, deadline: float) -> bool:
        """Process the next delivery or timer due before ``deadline``; False when there is none."""
        while self._timers:
            when, _, addr = self._timers[0]
            if self._armed.get(addr) != when:
                heapq.heappop(self._timers)
                continue
            break
        next_packet = self._queue[0][0] if self._queue else None
        next_timer = self._timers[0][0] if self._timers else None
        candidates = [t for t in (next_packet, next_timer) if t is not None]
        if not candidates or min(candidates) > deadline:
            return False
        if next_packet is not None and (next_timer is None or next_packet <= next_timer):
            when, _, dest, data, source = heapq.heappop(self._queue)
            self.now = max(self.now, when)
            manager = self.managers.get(dest)
            if manager is not None:
                manager.receive_datagram(data, source, self.now)
                # deliver everything arriving at this instant before answering (a socket drain)
                while self._queue and self._queue[0][0] <= self.now and self._queue[0][2] == dest:
                    _, _, _, data, source = heapq.heappop(self._queue)
                    manager.receive_datagram(data, source, self.now)
                self.flush(dest)
            return True
        when, _, addr = heapq.heappop(self._timers)
        del self._armed[addr]
        self.now = max(self.now, when)
        manager = self.managers.get(addr)
        if manager is not None:
            manager.handle_timer(self.now)
            self.flush(addr)
        return True

    def run_for(self, seconds: float) -> None:
        self.flush_all()
        deadline = self.now + seconds
        while self.step(deadline):
            pass
        self.now = max(self.now, deadline)

    def run_until(self, predicate: Callable[[], bool], *, timeout: float = 120.0) -> bool:
        """Run until ``predicate()`` holds (True) or ``timeout`` fake seconds pass (False)."""
        self.flush_all()
        deadline = self.now + timeout
        while not predicate():
            if not self.step(deadline):
                self.now = max(self.now, deadline)
                return predicate()
        return True
