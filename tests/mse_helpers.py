"""Minimal peers for the MSE tests: a seeding and a leeching :class:`PeerHandler` around real
:class:`PeerDriver` / :class:`PeerConnection` pairs (no session, no torrent), and an in-memory
transport pair that is not TCP (it implements only the :class:`asyncio.Transport` methods)."""

from __future__ import annotations

import asyncio
import hashlib
import random
from dataclasses import dataclass, field
from typing import Any

from torrentgoat.aio.peer import PeerDriver
from torrentgoat.bencode import encode
from torrentgoat.bitfield import Bitfield
from torrentgoat.metainfo import parse_info
from torrentgoat.primitives import BLOCK_SIZE, InfoHash, PeerId
from torrentgoat.wire.connection import PeerConnection, PieceGeometry
from torrentgoat.wire.events import (
    BitfieldReceived,
    BlockReceived,
    BlockRequested,
    Event,
    ExtensionHandshakeReceived,
    HandshakeReceived,
    MetadataPieceReceived,
    MetadataRequested,
    PeerInterested,
    PeerUnchoked,
)
from torrentgoat.wire.messages import Interested, MetadataRequest, Request, Unchoke
from torrentgoat.wire.metadata import MetadataFetcher, MetadataServer


@dataclass
class Payload:
    """A single-file torrent held in memory."""

    data: bytes
    piece_length: int
    raw_info: bytes
    info_hash: InfoHash
    name: str = "model.bin"

    @classmethod
    def make(
        cls, size: int, *, piece_length: int = 64 * 1024, seed: int = 0, name: str = "model.bin"
    ) -> Payload:
        data = random.Random(seed).randbytes(size)
        pieces = b"".join(
            hashlib.sha1(data[i : i + piece_length]).digest() for i in range(0, size, piece_length)
        )
        raw = encode(
            {b"length": size, b"name": name.encode(), b"piece length": piece_length, b"pieces": pieces}
        )
        return cls(data, piece_length, raw, InfoHash(hashlib.sha1(raw).digest()), name)

    @property
    def geometry(self) -> PieceGeometry:
        n = (len(self.data) + self.piece_length - 1) // self.piece_length
        return PieceGeometry(num_pieces=n, piece_length=self.piece_length, total_length=len(self.data))


class SeedHandler:
    """Serves every torrent it knows to any incoming or outgoing connection: unchokes on interest,
    answers requests and metadata requests."""

    def __init__(self, *payloads: Payload) -> None:
        self.payloads = {p.info_hash: p for p in payloads}
        self.drivers: list[PeerDriver] = []
        self.closed: list[str] = []
        self.served = 0

    def new_driver(self) -> PeerDriver:
        """Protocol factory for incoming connections (the ``accept`` of a listener)."""
        engine = PeerConnection(
            peer_id=PeerId.generate(random.Random()), now=asyncio.get_running_loop().time()
        )
        driver = PeerDriver(engine, self, outgoing=False)
        self.drivers.append(driver)
        return driver

    def peer_event(self, peer: PeerDriver, event: Event) -> None:
        engine = peer.engine
        match event:
            case HandshakeReceived(handshake=hs):
                payload = self.payloads.get(hs.info_hash)
                if payload is None:
                    peer.close("unknown torrent")
                    return
                g = payload.geometry
                engine.accept(
                    info_hash=hs.info_hash,
                    have=Bitfield(g.num_pieces, full=True),
                    geometry=g,
                    metadata_size=len(payload.raw_info),
                )
            case PeerInterested():
                engine.send(Unchoke())
            case BlockRequested(index=index, begin=begin, length=length):
                assert engine.info_hash is not None
                payload = self.payloads[engine.info_hash]
                start = index * payload.piece_length + begin
                if engine.send_piece(index, begin, memoryview(payload.data)[start : start + length]):
                    self.served += length
            case MetadataRequested(piece=piece):
                assert engine.info_hash is not None
                engine.send(MetadataServer(self.payloads[engine.info_hash].raw_info).respond(piece))
            case _:
                pass

    def peer_closed(self, peer: PeerDriver, reason: str) -> None:
        self.closed.append(reason)

    def peer_writable(self, peer: PeerDriver) -> None:
        pass


@dataclass
class LeechHandler:
    """Fetches the metadata (BEP 9) when it lacks it, then every block of ``pieces`` (all by default),
    keeping up to ``depth`` requests in flight; ``done`` resolves with the bytes per piece."""

    info_hash: InfoHash
    pieces: list[int] | None = None
    depth: int = 64
    geometry: PieceGeometry | None = None
    metadata: bytes | None = None
    received: dict[int, bytearray] = field(default_factory=dict)
    closed: list[str] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    keep_events: bool = True
    done: asyncio.Future[dict[int, bytearray]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    _queue: list[tuple[int, int, int]] = field(default_factory=list)
    _fetcher: MetadataFetcher | None = None
    _missing: int = 0

    def new_engine(self) -> PeerConnection:
        return PeerConnection(
            peer_id=PeerId.generate(random.Random()),
            now=asyncio.get_running_loop().time(),
            info_hash=self.info_hash,
            peer_ip=bytes([127, 0, 0, 1]),
        )

    def _plan(self, engine: PeerConnection, geometry: PieceGeometry) -> None:
        self.geometry = geometry
        pieces = self.pieces if self.pieces is not None else list(range(geometry.num_pieces))
        for index in pieces:
            size = geometry.piece_size(index)
            self.received[index] = bytearray(size)
            for begin in range(0, size, BLOCK_SIZE):
                self._queue.append((index, begin, min(BLOCK_SIZE, size - begin)))
        self._queue.reverse()
        self._missing = len(self._queue)
        engine.send(Interested())

    def _fill(self, engine: PeerConnection) -> None:
        while (
            self._queue and engine.outstanding_count < self.depth and engine.can_request(self._queue[-1][0])
        ):
            index, begin, length = self._queue.pop()
            engine.send(Request(index=index, begin=begin, length=length))

    def peer_event(self, peer: PeerDriver, event: Event) -> None:
        engine = peer.engine
        if self.keep_events:
            self.events.append(event)
        match event:
            case ExtensionHandshakeReceived(handshake=hs) if self.geometry is None and self._fetcher is None:
                assert hs.metadata_size is not None
                self._fetcher = MetadataFetcher(self.info_hash)
                self._fetcher.add_peer("peer", hs.metadata_size)
                loop_time = asyncio.get_running_loop().time()
                while (piece := self._fetcher.next_request("peer", loop_time)) is not None:
                    engine.send(MetadataRequest(piece=piece))
            case MetadataPieceReceived(piece=piece, total_size=total, data=chunk):
                assert self._fetcher is not None
                raw = self._fetcher.on_data("peer", piece, total, chunk)
                if raw is not None:
                    self.metadata = raw
                    info = parse_info(raw)
                    geometry = PieceGeometry.from_info(info)
                    engine.set_metadata(geometry, Bitfield(geometry.num_pieces), metadata_size=len(raw))
                    self._plan(engine, geometry)
                    self._fill(engine)
            case BitfieldReceived() if self.geometry is not None:
                self._fill(engine)
            case PeerUnchoked():
                self._fill(engine)
            case BlockReceived(index=index, begin=begin, data=data):
                self.received[index][begin : begin + len(data)] = data
                self._missing -= 1
                if self._missing == 0 and not self.done.done():
                    self.done.set_result(self.received)
                self._fill(engine)
            case _:
                pass

    def peer_closed(self, peer: PeerDriver, reason: str) -> None:
        self.closed.append(reason)
        if not self.done.done():
            self.done.set_exception(ConnectionError(reason))
            self.done.exception()

    def peer_writable(self, peer: PeerDriver) -> None:
        pass


# ----------------------------------------------------------------------------- a non-TCP transport


class MemoryTransport(asyncio.Transport):
    """One end of an in-memory byte stream delivered on the loop (no socket, no set_protocol)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, protocol: asyncio.BaseProtocol) -> None:
        super().__init__()
        self._loop = loop
        self._protocol = protocol
        self.peer: MemoryTransport | None = None
        self._closing = False
        self.written = 0

    def write(self, data: Any) -> None:
        if self._closing or not data:
            return
        self.written += len(data)
        peer = self.peer
        assert peer is not None
        chunk = bytes(data)
        self._loop.call_soon(peer._deliver, chunk)

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(bytes(b) for b in list_of_data))

    def _deliver(self, data: bytes) -> None:
        if not self._closing:
            self._protocol.data_received(data)  # type: ignore[attr-defined]

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._loop.call_soon(self._protocol.connection_lost, None)
        if self.peer is not None and not self.peer._closing:
            self._loop.call_soon(self.peer.close)

    def abort(self) -> None:
        self.close()

    def is_closing(self) -> bool:
        return self._closing

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("memory", 1)}.get(name, default)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def memory_connector(server_factory: Any) -> Any:
    """A Connector whose every call builds an in-memory pair: the dialer's protocol on one end,
    ``server_factory()`` (a listener) on the other."""

    async def connect(factory: Any) -> tuple[asyncio.BaseTransport, Any]:
        loop = asyncio.get_running_loop()
        client = factory()
        server = server_factory()
        ct, st = MemoryTransport(loop, client), MemoryTransport(loop, server)
        ct.peer, st.peer = st, ct
        server.connection_made(st)
        client.connection_made(ct)
        return ct, client

    return connect
