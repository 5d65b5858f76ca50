"""An in-memory DHT network: many :class:`~torrentgoat.dht.engine.DHTEngine` instances exchanging
datagrams under one fake clock (deterministic, no sockets) — for tests and benchmarks.

    net = DHTNetwork(seed=1)
    addrs = net.spawn(50)                       # engines at 10.0.x.y:6881
    net.bootstrap_all([addrs[0]])               # every node bootstraps from the first
    op = net.engine(addrs[7]).get_peers(ih, net.now)
    event = net.run_until_event(addrs[7], op)   # the GetPeersCompleted event

Datagrams take ``latency`` seconds; ``loss`` drops a fraction of them (from ``rng``); removed nodes
silently swallow what is sent to them.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Sequence

from torrentgoat.dht.engine import DHTConfig, DHTEngine
from torrentgoat.dht.events import Event
from torrentgoat.dht.krpc import Addr

__all__ = ["DHTNetwork"]


class DHTNetwork:
    """Engines keyed by address, a delivery queue and a clock."""

    def __init__(
        self,
        *,
        seed: int = 0,
        latency: float = 0.01,
        loss: float = 0.0,
        start: float = 1000.0,
        record: bool = False,
    ) -> None:
        self.rng = random.Random(seed)
        self.latency = latency
        self.loss = loss
        self.now = start
        self.engines: dict[Addr, DHTEngine] = {}
        self.events: dict[Addr, list[Event]] = {}
        self.delivered = 0
        self.record = record
        self.sent: list[tuple[Addr, Addr]] = []
        """With ``record``: ``(source, destination)`` of every datagram sent (lost ones included)."""
        self._queue: list[tuple[float, int, Addr, bytes, Addr]] = []
        self._timers: list[tuple[float, int, Addr]] = []
        self._armed: dict[Addr, float] = {}
        self._seq = 0

    # -- membership ---------------------------------------------------------------------------------

    def add(self, engine: DHTEngine, addr: Addr) -> Addr:
        self.engines[addr] = engine
        self.events[addr] = []
        self.flush(addr)
        return addr

    def spawn(self, count: int, *, config: DHTConfig | None = None, port: int = 6881) -> list[Addr]:
        """Create ``count`` engines at distinct fake IPv4 addresses, seeded from the network rng."""
        addrs = []
        for _ in range(count):
            n = len(self.engines) + 1
            addr = (f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}", port)
            engine = DHTEngine(rng=random.Random(self.rng.getrandbits(64)), now=self.now, config=config)
            addrs.append(self.add(engine, addr))
        return addrs

    def remove(self, addr: Addr) -> None:
        """The node leaves: whatever is sent to it is lost."""
        self.engines.pop(addr, None)

    def engine(self, addr: Addr) -> DHTEngine:
        return self.engines[addr]

    # -- pumping ------------------------------------------------------------------------------------

    def flush(self, addr: Addr) -> None:
        """Collect ``addr``'s outgoing datagrams and events; (re)arm its timer."""
        engine = self.engines.get(addr)
        if engine is None:
            return
        for data, dest in engine.datagrams_to_send(self.now):
            if self.record:
                self.sent.append((addr, dest))
            if self.loss and self.rng.random() < self.loss:
                continue
            self._seq += 1
            heapq.heappush(self._queue, (self.now + self.latency, self._seq, dest, data, addr))
        while (event := engine.next_event()) is not None:
            self.events[addr].append(event)
        when = engine.get_timer()
        if self._armed.get(addr) != when:
            self._armed[addr] = when
            self._seq += 1
            heapq.heappush(self._timers, (when, self._seq, addr))

    def flush_all(self) -> None:
        for addr in list(self.engines):
            self.flush(addr)

    def step(self, deadline: float) -> bool:
        """Process the next delivery or timer due before ``deadline``; False when there is none."""
        next_packet = self._queue[0][0] if self._queue else None
        while self._timers:
            when, _, addr = self._timers[0]
            if addr not in self.engines or self._armed.get(addr) != when:
                heapq.heappop(self._timers)  # superseded by a later flush
                continue
            break
        next_timer = self._timers[0][0] if self._timers else None
        candidates = [t for t in (next_packet, next_timer) if t is not None]
        if not candidates or min(candidates) > deadline:
            return False
        if next_packet is not None and (next_timer is None or next_packet <= next_timer):
            when, _, dest, data, source = heapq.heappop(self._queue)
            self.now = max(self.now, when)
            engine = self.engines.get(dest)
            if engine is not None:
                self.delivered += 1
                engine.receive_datagram(data, source, self.now)
                self.flush(dest)
            return True
        when, _, addr = heapq.heappop(self._timers)
        del self._armed[addr]
        self.now = max(self.now, when)
        self.engines[addr].handle_timer(self.now)
        self.flush(addr)
        return True

    def run_for(self, seconds: float) -> None:
        deadline = self.now + seconds
        while self.step(deadline):
            pass
        self.now = max(self.now, deadline)

    def run_until(self, predicate: Callable[[], bool], *, timeout: float = 120.0) -> bool:
        """Run until ``predicate()`` holds (True) or ``timeout`` fake seconds pass (False)."""
        deadline = self.now + timeout
        while not predicate():
            if not self.step(deadline):
                self.now = max(self.now, deadline)
                return predicate()
        return True

    def take_event(self, addr: Addr, op: int) -> Event | None:
        """Remove and return the completion (or any) event of ``op`` at ``addr``, if present."""
        events = self.events[addr]
        for i, event in enumerate(events):
            if getattr(event, "op", None) == op and type(event).__name__.endswith("Completed"):
                del events[i]
                return event
        return None

    def run_until_event(self, addr: Addr, op: int, *, timeout: float = 120.0) -> Event:
        """Flush ``addr`` and run until operation ``op`` completes there; AssertionError on timeout."""
        self.flush(addr)
        found: list[Event] = []

        def done() -> bool:
            event = self.take_event(addr, op)
            if event is not None:
                found.append(event)
            return bool(found)

        if not self.run_until(done, timeout=timeout):
            raise AssertionError(f"operation {op} at {addr} did not complete within {timeout} s")
        return found[0]

    def bootstrap_all(self, routers: Sequence[Addr], *, timeout: float = 120.0) -> None:
        """Bootstrap every engine from ``routers`` (one at a time, like nodes joining) and wait."""
        for addr, engine in list(self.engines.items()):
            seeds = [r for r in routers if r != addr]
            if not seeds:
                continue
            op = engine.bootstrap(seeds, self.now)
            self.run_until_event(addr, op, timeout=timeout)
