"""Fuzz targets for the peer wire protocol (:mod:`torrentgoat.wire`), both directions.

``wire_recv``: the input is what a hostile peer sends to one :class:`PeerConnection` -- as the
initiator or as the responder (through ``accept``), with a seed's or a magnet's state, BEP 6 and
BEP 10 on or off, cut into reads of any size.  A small driver answers the events the way
``aio/peer.py`` and the torrent do (accept, interest, unchoke, requests while allowed, serving
blocks and metadata, BEP 9 fetching into ``set_metadata``, timers), so the hostile bytes meet every
state, not just the first frame.  Only ``RemoteProtocolError`` may end it; the driver's own calls
are guarded by the engine's predicates, so a ``LocalProtocolError`` there is a contract violation.

``wire_send``: the encode side.  Messages built from the input must survive
``encode -> decode`` unchanged (the codec and the BEP 10 / BEP 9 / BEP 11 payloads), and a stream of
messages that one engine's ``send`` accepts must be accepted by a second engine receiving it: our
sending rules never produce what our receiving rules reject.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from tools.fuzz.harness import ContractViolation, Reader, chunks, expect, target
from torrentgoat import bencode
from torrentgoat.bitfield import Bitfield
from torrentgoat.errors import LocalProtocolError, RemoteProtocolError
from torrentgoat.metainfo import parse_info
from torrentgoat.primitives import InfoHash, PeerId
from torrentgoat.wire import codec
from torrentgoat.wire.connection import PeerConnection, PieceGeometry, WireConfig
from torrentgoat.wire.events import (
    AllowedFastReceived,
    BitfieldReceived,
    BlockRequested,
    ConnectionTimedOut,
    Event,
    ExtensionHandshakeReceived,
    HandshakeReceived,
    HaveReceived,
    MetadataPieceReceived,
    MetadataRejected,
    MetadataRequested,
    PeerInterested,
    PeerUnchoked,
)
from torrentgoat.wire.messages import (
    Handshake,
    Interested,
    MetadataRequest,
    RejectRequest,
    Request,
    Unchoke,
)
from torrentgoat.wire.metadata import MetadataServer

__all__ = ["GEOMETRY", "INFO_HASH", "INFO_RAW", "OUR_ID", "THEIR_ID"]

_PIECES = 10
_PIECE_LENGTH = 32768
GEOMETRY = PieceGeometry(
    num_pieces=_PIECES, piece_length=_PIECE_LENGTH, total_length=_PIECES * _PIECE_LENGTH - 5
)
"""The torrent every wire target talks about: 10 pieces of 32 KiB, the last one 5 bytes short."""
INFO_RAW = bencode.encode(
    {
        b"length": GEOMETRY.total_length,
        b"name": b"fuzz.bin",
        b"piece length": _PIECE_LENGTH,
        b"pieces": bytes(range(20)) * _PIECES,
    }
)
"""Its info dictionary: a magnet-mode engine can fetch it over BEP 9 (the seeds carry the pieces)."""
INFO_HASH = InfoHash(hashlib.sha1(INFO_RAW).digest())
OUR_ID = PeerId(b"-TG0001-fuzzfuzzfuzz")
THEIR_ID = PeerId(b"-XX0001-otherotherot")
_EXTRA_GEOMETRIES = (
    PieceGeometry(num_pieces=1, piece_length=16384, total_length=1),
    PieceGeometry(num_pieces=1000, piece_length=16384, total_length=1000 * 16384),
    PieceGeometry(num_pieces=9, piece_length=16384, total_length=8 * 16384 + 1),
)


def _have(reader: Reader, n: int) -> Bitfield:
    kind = reader.byte() % 4
    if kind == 0:
        return Bitfield(n)
    if kind == 1:
        return Bitfield(n, full=True)
    return Bitfield.from_indices(n, [i for i in range(n) if (i * 7 + kind) % 3])


def _local(what: str, fn: Callable[[], object]) -> None:
    """A driver call the engine's own predicates allowed: refusing it breaks the engine's contract."""
    try:
        fn()
    except LocalProtocolError as exc:
        raise ContractViolation(f"{what} refused after the engine allowed it: {exc}") from exc


class _Driver:
    """Plays our side the way the asyncio peer and the torrent do, from the input's behaviour bits."""

    def __init__(
        self,
        conn: PeerConnection,
        behaviour: int,
        *,
        responder: bool,
        magnet: bool,
        geometry: PieceGeometry,
        have: Bitfield,
    ) -> None:
        self.conn = conn
        self.behaviour = behaviour
        self.responder = responder
        self.magnet = magnet
        self.geometry = geometry
        self.have = have
        self.now = 0.0
        self.metadata_pieces: dict[int, bytes] = {}
        self.metadata_size: int | None = None
        self.closed = False

    def drain(self) -> None:
        conn = self.conn
        while not self.closed:
            event = conn.next_event()
            if event is None:
                break
            self.on_event(event)
        conn.data_to_send()
        expect(
            len(conn.peer_requests) <= conn.config.max_peer_requests,
            "wire: more peer requests queued than reqq",
        )
        expect(
            len(conn.outstanding_requests) <= conn.request_limit,
            "wire: more requests outstanding than allowed",
        )

    def on_event(self, event: Event) -> None:
        conn = self.conn
        match event:
            case HandshakeReceived(handshake=handshake):
                if not self.responder:
                    return  # we dialled: the engine checked the info-hash and goes on by itself
                if handshake.info_hash != INFO_HASH:
                    self.closed = True  # a driver closes a connection for a torrent it does not serve
                    return
                if self.magnet:
                    _local("accept", lambda: conn.accept(info_hash=INFO_HASH))
                else:
                    _local(
                        "accept",
                        lambda: conn.accept(
                            info_hash=INFO_HASH,
                            have=self.have,
                            geometry=self.geometry,
                            metadata_size=len(INFO_RAW),
                        ),
                    )
            case BitfieldReceived() | HaveReceived() | AllowedFastReceived() | PeerUnchoked():
                if self.behaviour & 1 and conn.geometry is not None:
                    _local("interested", lambda: conn.send(Interested()))
                    self.request_some()
            case PeerInterested():
                if self.behaviour & 2:
                    _local("unchoke", lambda: conn.send(Unchoke()))
            case BlockRequested(index=index, begin=begin, length=length):
                if self.behaviour & 4:
                    _local("send_piece", lambda: conn.send_piece(index, begin, bytes(length)))
                elif conn.fast and conn.has_peer_request(index, begin, length):
                    _local(
                        "reject", lambda: conn.send(RejectRequest(index=index, begin=begin, length=length))
                    )
            case MetadataRequested(piece=piece):
                if "ut_metadata" in conn.peer_ext_ids and not self.magnet:
                    _local("metadata reply", lambda: conn.send(MetadataServer(INFO_RAW).respond(piece)))
            case ExtensionHandshakeReceived(handshake=handshake):
                if self.magnet and handshake.metadata_size and "ut_metadata" in conn.peer_ext_ids:
                    self.metadata_size = handshake.metadata_size
                    for piece in range(min(4, -(-handshake.metadata_size // codec.METADATA_PIECE_SIZE))):
                        _local("metadata request", lambda p=piece: conn.send(MetadataRequest(piece=p)))  # type: ignore[misc]
            case MetadataPieceReceived(piece=piece, total_size=total_size, data=data):
                self.on_metadata(piece, total_size, data)
            case MetadataRejected():
                pass
            case ConnectionTimedOut():
                self.closed = True
            case _:
                pass

    def request_some(self) -> None:
        conn = self.conn
        geometry = conn.geometry
        have = conn.peer_have
        if geometry is None or have is None:
            return
        pending = set(conn.outstanding_requests)
        sent = 0
        for index in range(min(geometry.num_pieces, 64)):
            if sent >= 4 or not conn.can_request(index) or not (conn.peer_has_all or index in have):
                continue
            length = min(64, geometry.piece_size(index))  # short blocks: answerable within max_len
            if any(ref.piece == index and ref.begin == 0 for ref in pending):
                continue
            _local("request", lambda i=index, n=length: conn.send(Request(index=i, begin=0, length=n)))  # type: ignore[misc]
            sent += 1

    def on_metadata(self, piece: int, total_size: int, data: bytes) -> None:
        """Assemble BEP 9 pieces; when they hash to the info-hash, hand the geometry to the engine."""
        if total_size != len(INFO_RAW) or self.conn.geometry is not None:
            return
        self.metadata_pieces[piece] = data
        raw = b"".join(
            self.metadata_pieces.get(i, b"") for i in range(-(-total_size // codec.METADATA_PIECE_SIZE))
        )
        if hashlib.sha1(raw).digest() != INFO_HASH.raw:
            return
        info = parse_info(raw)
        geometry = PieceGeometry.from_info(info)
        self.conn.set_metadata(
            geometry, Bitfield(geometry.num_pieces), metadata_size=len(raw)
        )  # RemoteProtocolError: drop

    def tick(self, seconds: float) -> None:
        self.now += seconds
        self.conn.handle_timer(self.now)


@target(
    "wire_recv",
    "torrentgoat.wire.PeerConnection receiving a hostile peer's bytes (initiator/responder, magnet, BEP 6/10, chunked)",
    max_len=8192,
)
def fuzz_wire_recv(data: bytes) -> None:
    reader = Reader(data)
    flags = reader.byte()
    responder, magnet, raw_start = bool(flags & 1), bool(flags & 2), bool(flags & 4)
    config = WireConfig(
        enable_fast=not flags & 8,
        enable_extensions=not flags & 16,
        ut_pex=not flags & 32,
        max_peer_requests=3 if flags & 64 else 500,
        max_late_requests=4 if flags & 128 else 4096,
    )
    chunk = reader.byte()
    behaviour = reader.byte()
    geometry = GEOMETRY if magnet or not reader.flag() else reader.choice(_EXTRA_GEOMETRIES)
    have = _have(reader, geometry.num_pieces)
    initiator_seed = not (magnet or responder)
    reserved = reader.take(8).ljust(8, b"\0")
    stream = reader.rest()
    if not raw_start:
        stream = (
            codec.encode_handshake(Handshake(info_hash=INFO_HASH, peer_id=THEIR_ID, reserved=reserved))
            + stream
        )
    conn = PeerConnection(
        peer_id=OUR_ID,
        now=0.0,
        info_hash=None if responder else INFO_HASH,
        have=have if initiator_seed else None,
        geometry=geometry if initiator_seed else None,
        metadata_size=None if magnet else len(INFO_RAW),
        listen_port=6881,
        peer_ip=b"\x7f\x00\x00\x01",
        config=config,
    )
    driver = _Driver(conn, behaviour, responder=responder, magnet=magnet, geometry=geometry, have=have)
    fed = 0
    try:
        for i, piece in enumerate(chunks(stream, chunk)):
            conn.receive_data(piece)
            fed += len(piece)
            driver.drain()
            if driver.closed:
                return
            if behaviour & 8 and magnet and i == 1 and conn.geometry is None and conn.handshake_complete:
                conn.set_metadata(GEOMETRY, Bitfield(GEOMETRY.num_pieces))  # metadata from another peer
                driver.drain()
            if behaviour & 16:
                driver.tick(7.0)
                driver.drain()
        expect(conn.downloaded <= fed, "wire: more block bytes counted than received")
        driver.tick(1000.0)
        driver.drain()
    except RemoteProtocolError:
        return
