"""Fuzz target ``wire_send``: the encode side of the peer wire protocol (see :mod:`tools.fuzz.targets_wire`).

The input is a script.  Its first part builds messages field by field -- every BEP 3/5/6/10 frame,
the BEP 10 extension handshake, BEP 9 ``ut_metadata`` and BEP 11 ``ut_pex`` payloads, the
handshake -- and each must decode back to itself.  The rest drives two connected engines (A dialled
B) with actions: any message one side's ``send`` accepts goes over the wire in reads of the
script's sizes, and the other side must take it without a ``RemoteProtocolError``; blocks arrive as
sent.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Callable
from typing import TypeVar

from tools.fuzz.harness import ContractViolation, Reader, expect, target
from tools.fuzz.targets_wire import GEOMETRY, INFO_HASH, INFO_RAW, OUR_ID, THEIR_ID
from torrentgoat.bitfield import Bitfield
from torrentgoat.errors import LocalProtocolError, RemoteProtocolError
from torrentgoat.primitives import InfoHash, PeerAddress
from torrentgoat.wire import codec
from torrentgoat.wire.connection import PeerConnection, WireConfig
from torrentgoat.wire.events import BlockReceived, Event, HandshakeReceived
from torrentgoat.wire.messages import (
    AllowedFast,
    BitfieldMsg,
    Cancel,
    Choke,
    Extended,
    ExtendedHandshake,
    Handshake,
    Have,
    HaveAll,
    HaveNone,
    Interested,
    KeepAlive,
    Message,
    MetadataData,
    MetadataReject,
    MetadataRequest,
    NotInterested,
    Pex,
    PexPeer,
    Piece,
    Port,
    RejectRequest,
    Request,
    SuggestPiece,
    Unchoke,
    WireMessage,
)
from torrentgoat.wire.pex import MAX_PEX_PEERS, decode_pex, encode_pex

__all__: list[str] = []

T = TypeVar("T")

_U32 = struct.Struct(">I")
_EXT_NAMES = ("ut_metadata", "ut_pex", "lt_donthave", "upload_only", "ut_holepunch", "")


def _u32(reader: Reader) -> int:
    return reader.uint(4)


def _message(reader: Reader) -> WireMessage:
    """A message whose fields are in the ranges the codec accepts on receipt."""
    kind = reader.byte() % 17
    if kind < 7:
        return (KeepAlive(), Choke(), Unchoke(), Interested(), NotInterested(), HaveAll(), HaveNone())[kind]
    if kind == 7:
        return Have(index=_u32(reader))
    if kind == 8:
        return BitfieldMsg(data=reader.sized())
    if kind in (9, 10, 11):
        index, begin, length = _u32(reader), _u32(reader), 1 + _u32(reader) % codec.MAX_REQUEST_LENGTH
        return (Request, Cancel, RejectRequest)[kind - 9](index=index, begin=begin, length=length)
    if kind == 12:
        return Piece(index=_u32(reader), begin=_u32(reader), data=b"\x01" + reader.sized())
    if kind == 13:
        return Port(port=reader.uint(2))
    if kind == 14:
        return SuggestPiece(index=_u32(reader))
    if kind == 15:
        return AllowedFast(index=_u32(reader))
    return Extended(ext_id=reader.byte(), payload=reader.sized())


def _text(reader: Reader) -> str:
    return reader.sized(32).decode("utf-8", "replace")


def _extended_handshake(reader: Reader) -> ExtendedHandshake:
    flags = reader.byte()
    m = {reader.choice(_EXT_NAMES) or _text(reader): reader.byte() for _ in range(reader.byte() % 4)}
    return ExtendedHandshake(
        m=m,
        p=1 + reader.uint(2) % 65535 if flags & 1 else None,
        v=_text(reader) if flags & 2 else None,
        yourip=reader.take(4).ljust(4, b"\0") if flags & 4 else None,
        ipv4=reader.take(4).ljust(4, b"\0") if flags & 8 else None,
        ipv6=reader.take(16).ljust(16, b"\0") if flags & 16 else None,
        reqq=1 + _u32(reader) % (1 << 31) if flags & 32 else None,
        metadata_size=reader.uint(8) % (1 << 62) if flags & 64 else None,
        upload_only=bool(flags & 128),
    )


def _metadata_message(reader: Reader) -> MetadataRequest | MetadataData | MetadataReject:
    kind = reader.byte() % 3
    piece = reader.uint(2) % 1024
    if kind == 0:
        return MetadataRequest(piece=piece)
    if kind == 1:
        return MetadataData(
            piece=piece, total_size=1 + _u32(reader) % codec.MAX_METADATA_SIZE, data=reader.sized()
        )
    return MetadataReject(piece=piece)


def _address(reader: Reader, v6: bool) -> PeerAddress:
    raw = reader.take(16 if v6 else 4).ljust(16 if v6 else 4, b"\0")
    host = str(ipaddress.IPv6Address(raw) if v6 else ipaddress.IPv4Address(raw))
    return PeerAddress(host, 1 + reader.uint(2) % 65535)


def _pex(reader: Reader) -> Pex:
    added4 = [PexPeer(address=_address(reader, False), flags=reader.byte()) for _ in range(reader.byte() % 5)]
    added6 = [PexPeer(address=_address(reader, True), flags=reader.byte()) for _ in range(reader.byte() % 3)]
    dropped4 = [_address(reader, False) for _ in range(reader.byte() % 4)]
    dropped6 = [_address(reader, True) for _ in range(reader.byte() % 3)]
    return Pex(added=(*added4, *added6), dropped=(*dropped4, *dropped6))


def _codec_round_trips(reader: Reader, count: int) -> None:
    for _ in range(count):
        part = reader.byte() % 5
        if part == 0:
            message = _message(reader)
            frame = codec.encode_message(message)
            (length,) = _U32.unpack_from(frame)
            expect(len(frame) == 4 + length, f"wire_send: frame length prefix wrong for {message!r}")
            decoded = KeepAlive() if length == 0 else _ours(codec.decode_message, frame[4], frame[5:])
            expect(decoded == message, f"wire_send: {message!r} decoded as {decoded!r}")
        elif part == 1:
            handshake = _extended_handshake(reader)
            payload = codec.encode_extended_handshake(handshake)
            expect(
                _ours(codec.decode_extended_handshake, payload) == handshake,
                "wire_send: BEP 10 handshake round trip",
            )
        elif part == 2:
            meta = _metadata_message(reader)
            payload = codec.encode_metadata_message(meta)
            expect(_ours(codec.decode_metadata_message, payload) == meta, "wire_send: ut_metadata round trip")
        elif part == 3:
            pex = _pex(reader)
            decoded_pex = _ours(decode_pex, encode_pex(pex))
            expect(len(pex.added) > MAX_PEX_PEERS or decoded_pex == pex, "wire_send: ut_pex round trip")
        else:
            sent = Handshake(
                info_hash=InfoHash(reader.take(20).ljust(20, b"\0")),
                peer_id=THEIR_ID,
                reserved=reader.take(8).ljust(8, b"\0"),
            )
            expect(
                _ours(codec.decode_handshake, codec.encode_handshake(sent)) == sent,
                "wire_send: handshake round trip",
            )


def _ours(fn: Callable[..., T], *args: object) -> T:
    """Decoding what we encoded: a RemoteProtocolError here is our encoder's fault."""
    try:
        return fn(*args)
    except RemoteProtocolError as exc:
        raise ContractViolation(f"our own encoding was refused: {exc}") from exc


class _Side:
    """One engine of the pair and what it has seen."""

    def __init__(self, name: str, conn: PeerConnection, have: Bitfield) -> None:
        self.name = name
        self.conn = conn
        self.have = have

    def drain(self) -> list[Event]:
        events: list[Event] = []
        try:
            while (event := self.conn.next_event()) is not None:
                events.append(event)
                if isinstance(event, HandshakeReceived) and self.conn.info_hash is None:
                    self.conn.accept(
                        info_hash=INFO_HASH, have=self.have, geometry=GEOMETRY, metadata_size=len(INFO_RAW)
                    )
        except RemoteProtocolError as exc:
            raise ContractViolation(f"{self.name} refused what the other engine sent: {exc}") from exc
        return events


def _pattern(index: int, begin: int, length: int) -> bytes:
    return bytes([(index + begin // 16384) % 251 + 1]) * length


def _action(reader: Reader, side: _Side, other: _Side) -> None:
    """One thing ``side`` tries to send; ``LocalProtocolError`` means its engine refused (fine)."""
    conn = side.conn
    n = GEOMETRY.num_pieces
    kind = reader.byte() % 16
    message: Message | None = None
    if kind < 4:
        message = (Choke(), Unchoke(), Interested(), NotInterested())[kind]
    elif kind == 4:  # a piece verified: the driver sets its bit, then announces it
        index = reader.below(n)
        side.have.add(index)
        message = Have(index=index)
    elif kind == 5:
        index = reader.below(n)
        size = GEOMETRY.piece_size(index)
        begin = reader.below(-(-size // 16384)) * 16384
        message = Request(index=index, begin=begin, length=min(16384, size - begin))
    elif kind == 6 and conn.outstanding_requests:
        ref = reader.choice(conn.outstanding_requests)
        message = Cancel(index=ref.piece, begin=ref.begin, length=ref.length)
    elif kind == 7 and conn.peer_requests:
        ref = reader.choice(conn.peer_requests)
        conn.send_piece(ref.piece, ref.begin, _pattern(ref.piece, ref.begin, ref.length))
    elif kind == 8 and conn.peer_requests:
        ref = reader.choice(conn.peer_requests)
        message = RejectRequest(index=ref.piece, begin=ref.begin, length=ref.length)
    elif kind == 9:
        message = AllowedFast(index=reader.below(n))
    elif kind == 10:
        message = SuggestPiece(index=reader.below(n))
    elif kind == 11:
        message = Port(port=reader.uint(2))
    elif kind == 12:  # what a driver sends about its own pieces
        message = reader.choice((KeepAlive(), BitfieldMsg(data=side.have.to_bytes())))
        if reader.flag():
            message = HaveAll() if side.have.complete else HaveNone() if side.have.empty else message
    elif kind == 13:
        message = _metadata_message(reader)
    elif kind == 14:
        message = _pex(reader)
    else:
        message = _extended_handshake(reader)
    if message is not None:
        conn.send(message)


def _transfer(reader: Reader, src: _Side, dst: _Side) -> None:
    data = src.conn.data_to_send()
    step = reader.byte()
    for start in range(0, len(data), step or len(data) or 1):
        dst.conn.receive_data(data[start : start + (step or len(data))])
        for event in dst.drain():
            if isinstance(event, BlockReceived):
                expect(
                    bytes(event.data) == _pattern(event.index, event.begin, len(event.data)),
                    "wire_send: block bytes changed in transit",
                )


@target(
    "wire_send",
    "torrentgoat.wire encode side: codec/BEP 10/9/11 round trips, then two engines exchanging what send() accepts",
    max_len=4096,
)
def fuzz_wire_send(data: bytes) -> None:
    reader = Reader(data)
    _codec_round_trips(reader, reader.byte() % 8)
    flags = reader.byte()
    config_a = WireConfig(enable_fast=not flags & 1, enable_extensions=not flags & 2)
    config_b = WireConfig(enable_fast=not flags & 4, enable_extensions=not flags & 8, ut_pex=not flags & 16)
    have_a = Bitfield.from_indices(
        GEOMETRY.num_pieces, [i for i in range(GEOMETRY.num_pieces) if reader.flag()]
    )
    have_b = Bitfield(GEOMETRY.num_pieces, full=bool(flags & 32))
    if not flags & 32:
        for i in range(GEOMETRY.num_pieces):
            if reader.flag():
                have_b.add(i)
    a = _Side(
        "A",
        PeerConnection(
            peer_id=OUR_ID,
            now=0.0,
            info_hash=INFO_HASH,
            have=have_a,
            geometry=GEOMETRY,
            metadata_size=len(INFO_RAW),
            config=config_a,
        ),
        have_a,
    )
    b = _Side("B", PeerConnection(peer_id=THEIR_ID, now=0.0, config=config_b), have_b)
    now = 0.0
    _transfer(reader, a, b)
    _transfer(reader, b, a)
    while reader.remaining:
        step = reader.byte() % 4
        side, other = (a, b) if reader.flag() else (b, a)
        if step < 2:
            try:
                _action(reader, side, other)
            except LocalProtocolError:
                pass
        elif step == 2:
            _transfer(reader, side, other)
        else:
            now += 20.0
            for each in (a, b):
                each.conn.handle_timer(now)
    _transfer(reader, a, b)
    _transfer(reader, b, a)
