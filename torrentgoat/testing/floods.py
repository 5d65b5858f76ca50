"""Floods for tests and benchmarks (issue 16): many misbehaving TCP connections, KRPC and uTP datagrams.

* :class:`ConnectionFlood` -- ``count`` TCP connections to a listener, each playing one script, and
  (``reopen=True``) opened again as soon as the other side closes them, as an attacker keeps pressing:

  - ``silent``: connect and send nothing;
  - ``slowloris``: drip a BitTorrent handshake one byte every ``drip`` seconds;
  - ``bitfield``: a complete handshake for ``info_hash``, then a bitfield frame that announces 16 MiB
    and drips bytes forever (an "endless bitfield").

* :class:`DatagramFlood` -- UDP datagrams at ``rate`` per second to one port: ``krpc`` (BEP 5 queries
  from random node ids and transaction ids: ``ping``, ``find_node``, ``get_peers``) or ``utp`` (BEP 29
  SYNs and data packets for random connection ids, and garbage), from ``sockets`` source ports.

Both count what happened (:class:`FloodStats`) and release every socket on :meth:`aclose`.  With
``sources`` (e.g. ``127.0.0.2`` ... on loopback, where every 127/8 address is local) they come from
several IP addresses, as a botnet would, round robin.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import struct
from dataclasses import dataclass

from torrentgoat.dht import krpc

__all__ = ["ConnectionFlood", "DatagramFlood", "FloodStats"]

_PROTOCOL = b"\x13BitTorrent protocol"


@dataclass(slots=True)
class FloodStats:
    """What a flood did so far."""

    opened: int = 0
    """Connections established (TCP) or datagrams sent (UDP)."""
    refused: int = 0
    """Connection attempts that failed."""
    closed: int = 0
    """Connections the other side closed (or reset)."""
    alive: int = 0
    """Connections open now."""


class _Conn(asyncio.Protocol):
    def __init__(self, flood: ConnectionFlood) -> None:
        self.flood = flood
        self.transport: asyncio.Transport | None = None
        self.task: asyncio.Task[None] | None = None
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.flood.stats.opened += 1
        self.flood.stats.alive += 1
        self.task = asyncio.get_running_loop().create_task(self.flood._play(self))

    def data_received(self, data: bytes) -> None:
        pass

    def connection_lost(self, exc: Exception | None) -> None:
        self.flood.stats.alive -= 1
        if not self.flood._closing:
            self.flood.stats.closed += 1
        if self.task is not None:
            self.task.cancel()
        if not self.lost.done():
            self.lost.set_result(None)


class ConnectionFlood:
    """``count`` TCP connections to ``host:port`` playing ``script`` (see the module docstring)."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        count: int,
        script: str = "silent",
        info_hash: bytes | None = None,
        drip: float = 1.0,
        reopen: bool = True,
        rng: random.Random | None = None,
        sources: tuple[str, ...] = (),
    ) -> None:
        if script not in ("silent", "slowloris", "bitfield"):
            raise ValueError(f"unknown flood script {script!r}")
        if script == "bitfield" and info_hash is None:
            raise ValueError("the bitfield flood needs the torrent's info-hash")
        self.host, self.port, self.count, self.script = host, port, count, script
        self.info_hash = info_hash
        self.drip = drip
        self.reopen = reopen
        self.rng = rng or random.Random()
        self.sources = sources
        self._next_source = 0
        self.stats = FloodStats()
        self._conns: set[_Conn] = set()
        self._closing = False
        self._keeper: asyncio.Task[None] | None = None

    def _handshake(self) -> bytes:
        info_hash = self.info_hash if self.script == "bitfield" else None
        return _PROTOCOL + bytes(8) + (info_hash or self.rng.randbytes(20)) + self.rng.randbytes(20)

    async def _play(self, conn: _Conn) -> None:
        transport = conn.transport
        assert transport is not None
        if self.script == "silent":
            return
        if self.script == "slowloris":
            for byte in self._handshake():
                transport.write(bytes([byte]))
                await asyncio.sleep(self.drip)
            return
        transport.write(self._handshake() + struct.pack(">IB", 16 * 1024 * 1024, 5))
        while not transport.is_closing():
            await asyncio.sleep(self.drip)
            transport.write(b"\xff")

    async def _open_one(self) -> None:
        loop = asyncio.get_running_loop()
        conn = _Conn(self)
        local = None
        if self.sources:
            local = (self.sources[self._next_source % len(self.sources)], 0)
            self._next_source += 1
        try:
            await loop.create_connection(lambda: conn, self.host, self.port, local_addr=local)
        except OSError:
            self.stats.refused += 1
            return
        self._conns.add(conn)
        conn.lost.add_done_callback(lambda _: self._conns.discard(conn))

    async def start(self) -> None:
        """Open the connections (in batches), then keep their number up if ``reopen``."""
        for start in range(0, self.count, 64):
            await asyncio.gather(*(self._open_one() for _ in range(min(64, self.count - start))))
        if self.reopen:
            self._keeper = asyncio.get_running_loop().create_task(self._keep())

    async def _keep(self) -> None:
        while not self._closing:
            missing = self.count - len(self._conns)
            if missing > 0:
                await asyncio.gather(*(self._open_one() for _ in range(min(missing, 64))))
            await asyncio.sleep(0.02)

    async def aclose(self) -> None:
        """Stop reopening and close every connection (waits until they are gone)."""
        self._closing = True
        if self._keeper is not None:
            self._keeper.cancel()
            await asyncio.gather(self._keeper, return_exceptions=True)
        conns = list(self._conns)
        for conn in conns:
            if conn.transport is not None:
                conn.transport.abort()
        if conns:
            await asyncio.wait([c.lost for c in conns], timeout=10)


class _Sink(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received = 0

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.received += 1


def _krpc_query(rng: random.Random) -> bytes:
    t = rng.randbytes(2)
    node = rng.randbytes(20)
    kind = rng.randrange(3)
    if kind == 0:
        return krpc.encode(krpc.Ping(t=t, id=node))
    if kind == 1:
        return krpc.encode(krpc.FindNode(t=t, id=node, target=rng.randbytes(20)))
    return krpc.encode(krpc.GetPeers(t=t, id=node, info_hash=rng.randbytes(20)))


def _utp_packet(rng: random.Random) -> bytes:
    kind = rng.randrange(4)
    if kind == 3:
        return rng.randbytes(rng.randrange(1, 200))  # garbage
    ptype = (4, 0, 2)[kind]  # ST_SYN, ST_DATA, ST_STATE
    header = struct.pack(
        ">BBHIIIHH",
        (ptype << 4) | 1,
        0,
        rng.randrange(1 << 16),
        rng.randrange(1 << 32),
        0,
        1 << 20,
        rng.randrange(1 << 16),
        rng.randrange(1 << 16),
    )
    return header + (rng.randbytes(rng.randrange(0, 1000)) if ptype == 0 else b"")


class DatagramFlood:
    """``rate`` datagrams per second of ``kind`` (``krpc`` or ``utp``) to ``host:port``."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        kind: str,
        rate: float,
        sockets: int = 1,
        rng: random.Random | None = None,
        sources: tuple[str, ...] = (),
    ) -> None:
        if kind not in ("krpc", "utp"):
            raise ValueError(f"unknown datagram flood {kind!r}")
        self.host, self.port, self.kind, self.rate, self.sockets = host, port, kind, rate, sockets
        self.rng = rng or random.Random()
        self.sources = sources
        self.stats = FloodStats()
        self._transports: list[asyncio.DatagramTransport] = []
        self._sinks: list[_Sink] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for i in range(self.sockets):
            sink = _Sink()
            local = (self.sources[i % len(self.sources)] if self.sources else self.host, 0)
            transport, _ = await loop.create_datagram_endpoint(lambda s=sink: s, local_addr=local)  # type: ignore[misc]
            self._transports.append(transport)
            self._sinks.append(sink)
        self._task = loop.create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        make = _krpc_query if self.kind == "krpc" else _utp_packet
        pool = [make(self.rng) for _ in range(4096)]  # made once: the flooder's CPU goes to sending
        tick = 0.01
        start = loop.time()
        target = (self.host, self.port)
        while True:
            due = int((loop.time() - start) * self.rate) - self.stats.opened
            sent = self.stats.opened
            transports = self._transports
            for i in range(max(0, due)):
                with contextlib.suppress(OSError):
                    transports[i % len(transports)].sendto(pool[(sent + i) % 4096], target)
            self.stats.opened += max(0, due)
            await asyncio.sleep(tick)

    @property
    def received(self) -> int:
        """Datagrams that came back (answers, RESETs, pings)."""
        return sum(s.received for s in self._sinks)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for transport in self._transports:
            transport.close()
        self._transports.clear()
