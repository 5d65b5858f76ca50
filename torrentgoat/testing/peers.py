"""Minimal :class:`~torrentgoat.aio.peer.PeerHandler` s that seed or fetch one in-memory payload
through unchanged :class:`~torrentgoat.aio.peer.PeerDriver` s -- to prove a transport (TCP, uTP)
carries the peer wire protocol, in tests and benchmarks.  Not a torrent: no picker, no storage.

    seeder = PayloadSeeder(info_hash, payload, piece_length)
    driver = seeder.driver(peer_id, loop)                  # incoming: a protocol for a server
    leecher = PayloadLeecher(info_hash, len(payload), piece_length, verify=piece_hashes)
    engine = leecher.engine(peer_id, loop)                 # outgoing: handshake already queued
    await leecher.done                                     # the whole payload, each piece checked
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Sequence

from torrentgoat.aio.peer import PeerDriver
from torrentgoat.bitfield import Bitfield
from torrentgoat.primitives import BLOCK_SIZE, InfoHash, PeerId
from torrentgoat.wire.connection import PeerConnection, PieceGeometry
from torrentgoat.wire.events import (
    BitfieldReceived,
    BlockReceived,
    BlockRequested,
    Event,
    HandshakeReceived,
    PeerInterested,
    PeerUnchoked,
)
from torrentgoat.wire.messages import Interested, Request, Unchoke

__all__ = ["PayloadLeecher", "PayloadSeeder"]


def _geometry(size: int, piece_length: int) -> PieceGeometry:
    return PieceGeometry(
        num_pieces=(size + piece_length - 1) // piece_length, piece_length=piece_length, total_length=size
    )


class PayloadSeeder:
    """Serves ``payload`` to every peer that asks for ``info_hash``; unchokes everyone."""

    def __init__(
        self, info_hash: InfoHash, payload: bytes | bytearray | memoryview, piece_length: int
    ) -> None:
        self.info_hash = info_hash
        self.view = memoryview(payload)
        self.geometry = _geometry(len(payload), piece_length)
        self.have = Bitfield(self.geometry.num_pieces, full=True)
        self.blocks_served = 0
        self.closed: list[str] = []
        self._blocked: dict[int, list[tuple[int, int, int]]] = {}

    def driver(self, peer_id: PeerId, loop: asyncio.AbstractEventLoop) -> PeerDriver:
        """A responder driver (use as a server's protocol factory)."""
        engine = PeerConnection(peer_id=peer_id, now=loop.time())
        return PeerDriver(engine, self, outgoing=False)

    def peer_event(self, peer: PeerDriver, event: Event) -> None:
        engine = peer.engine
        if isinstance(event, HandshakeReceived):
            if event.handshake.info_hash != self.info_hash:
                peer.close("unknown info-hash")
                return
            engine.accept(info_hash=self.info_hash, have=self.have, geometry=self.geometry)
        elif isinstance(event, PeerInterested):
            engine.send(Unchoke())
        elif isinstance(event, BlockRequested):
            if peer.writable:
                self._serve(peer, event.index, event.begin, event.length)
            else:
                self._blocked.setdefault(peer.id, []).append((event.index, event.begin, event.length))

    def _serve(self, peer: PeerDriver, index: int, begin: int, length: int) -> None:
        start = index * self.geometry.piece_length + begin
        if peer.engine.send_piece(index, begin, self.view[start : start + length]):
            self.blocks_served += 1

    def peer_closed(self, peer: PeerDriver, reason: str) -> None:
        self._blocked.pop(peer.id, None)
        self.closed.append(reason)

    def peer_writable(self, peer: PeerDriver) -> None:
        waiting = self._blocked.pop(peer.id, [])
        for index, begin, length in waiting:
            if peer.engine.has_peer_request(index, begin, length):
                self._serve(peer, index, begin, length)
        peer.flush()


class PayloadLeecher:
    """Fetches a whole payload from one peer with a deep request pipeline; ``done`` resolves to the
    bytes once every piece is in (and matches ``verify``'s SHA-1s, if given).

    With ``on_piece`` each complete (and verified) piece is handed over as ``(index, data)`` and
    only pieces in progress are held in memory; ``done`` then resolves to ``b""``."""

    def __init__(
        self,
        info_hash: InfoHash,
        size: int,
        piece_length: int,
        *,
        verify: Sequence[bytes] | None = None,
        pipeline: int = 256,
        on_piece: Callable[[int, memoryview], None] | None = None,
    ) -> None:
        self.info_hash = info_hash
        self.geometry = _geometry(size, piece_length)
        self.on_piece = on_piece
        self.buffer = bytearray(size if on_piece is None else 0)
        self._pieces: dict[int, bytearray] = {}
        self.verify = verify
        self.pipeline = pipeline
        self._blocks = [
            (index, begin, min(BLOCK_SIZE, self.geometry.piece_size(index) - begin))
            for index in range(self.geometry.num_pieces)
            for begin in range(0, self.geometry.piece_size(index), BLOCK_SIZE)
        ]
        self._next = 0
        self._missing = len(self._blocks)
        self._piece_left = [
            (self.geometry.piece_size(i) + BLOCK_SIZE - 1) // BLOCK_SIZE
            for i in range(self.geometry.num_pieces)
        ]
        self.done: asyncio.Future[bytes] | None = None
        self.closed: list[str] = []

    def engine(self, peer_id: PeerId, loop: asyncio.AbstractEventLoop) -> PeerConnection:
        """An initiator engine (its handshake is queued) for a driver with this handler;
        ``done`` is created here."""
        self.done = loop.create_future()
        return PeerConnection(
            peer_id=peer_id,
            now=loop.time(),
            info_hash=self.info_hash,
            have=Bitfield(self.geometry.num_pieces),
            geometry=self.geometry,
        )

    def driver(self, peer_id: PeerId, loop: asyncio.AbstractEventLoop) -> PeerDriver:
        """An initiator driver around :meth:`engine`."""
        return PeerDriver(self.engine(peer_id, loop), self, outgoing=True)

    def peer_event(self, peer: PeerDriver, event: Event) -> None:
        engine = peer.engine
        if isinstance(event, BitfieldReceived):
            if not engine.am_interested:
                engine.send(Interested())
        elif isinstance(event, PeerUnchoked):
            self._request(peer)
        elif isinstance(event, BlockReceived):
            index = event.index
            if self.on_piece is None:
                start = index * self.geometry.piece_length + event.begin
                self.buffer[start : start + len(event.data)] = event.data
            else:
                piece = self._pieces.get(index)
                if piece is None:
                    piece = self._pieces[index] = bytearray(self.geometry.piece_size(index))
                piece[event.begin : event.begin + len(event.data)] = event.data
            self._missing -= 1
            self._piece_left[index] -= 1
            if self._piece_left[index] == 0:
                self._complete_piece(peer, index)
            if self._missing == 0 and self.done is not None and not self.done.done():
                self.done.set_result(bytes(self.buffer))
            self._request(peer)

    def _complete_piece(self, peer: PeerDriver, index: int) -> None:
        if self.on_piece is None:
            start = index * self.geometry.piece_length
            data = memoryview(self.buffer)[start : start + self.geometry.piece_size(index)]
        else:
            data = memoryview(self._pieces.pop(index))
        if self.verify is not None and hashlib.sha1(data).digest() != self.verify[index]:
            if self.done is not None and not self.done.done():
                self.done.set_exception(AssertionError(f"piece {index} does not match its hash"))
            peer.close("hash failure")
            return
        if self.on_piece is not None:
            self.on_piece(index, data)

    def _request(self, peer: PeerDriver) -> None:
        engine = peer.engine
        limit = min(self.pipeline, engine.request_limit)
        while self._next < len(self._blocks) and engine.outstanding_count < limit and engine.can_request():
            index, begin, length = self._blocks[self._next]
            self._next += 1
            engine.send(Request(index=index, begin=begin, length=length))

    def peer_closed(self, peer: PeerDriver, reason: str) -> None:
        self.closed.append(reason)
        if self.done is not None and not self.done.done():
            self.done.set_exception(ConnectionError(f"peer closed before the payload was complete: {reason}"))

    def peer_writable(self, peer: PeerDriver) -> None:
        pass
