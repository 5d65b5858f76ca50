"""Bytes <-> :mod:`~torrentgoat.wire.messages` for the peer wire protocol (level L2).

Framing (BEP 3): the handshake is a fixed 68-byte record; every later message is
``<length: u32 big-endian><id: u8><payload>``, length 0 being a keep-alive.

Decoding is strict and raises only :class:`~torrentgoat.errors.RemoteProtocolError`:
fixed-size messages must have their exact size, request/reject/cancel lengths must be in
``1..MAX_REQUEST_LENGTH`` (BEP 3 says clients drop requests for more than 128 KiB; we send 16 KiB),
bencoded extension payloads must be dictionaries of the expected shape and ``ut_metadata`` data
pieces at most 16 KiB (BEP 9).  Semantic limits that need connection state (piece bounds, whether
an extension was negotiated, frame caps from the piece count) live in
:mod:`~torrentgoat.wire.connection`.
"""

from __future__ import annotations

import struct

from torrentgoat import bencode
from torrentgoat.errors import BencodeError, RemoteProtocolError
from torrentgoat.primitives import InfoHash, PeerId
from torrentgoat.wire.hashes import (
    MSG_HASH_REJECT,
    MSG_HASH_REQUEST,
    MSG_HASHES,
    Hashes,
    HashReject,
    HashRequest,
    decode_hash_message,
    encode_hash_message,
)
from torrentgoat.wire.messages import (
    PROTOCOL,
    AllowedFast,
    BitfieldMsg,
    Buffer,
    Cancel,
    Choke,
    DontHave,
    Extended,
    ExtendedHandshake,
    Handshake,
    Have,
    HaveAll,
    HaveNone,
    Interested,
    KeepAlive,
    MessageId,
    MetadataData,
    MetadataReject,
    MetadataRequest,
    NotInterested,
    Piece,
    Port,
    RejectRequest,
    Request,
    SuggestPiece,
    Unchoke,
    WireMessage,
)

__all__ = [
    "HANDSHAKE_LENGTH",
    "MAX_METADATA_SIZE",
    "MAX_REQUEST_LENGTH",
    "METADATA_PIECE_SIZE",
    "MSG_ALLOWED_FAST",
    "MSG_BITFIELD",
    "MSG_CANCEL",
    "MSG_CHOKE",
    "MSG_EXTENDED",
    "MSG_HAVE",
    "MSG_HAVE_ALL",
    "MSG_HAVE_NONE",
    "MSG_INTERESTED",
    "MSG_NOT_INTERESTED",
    "MSG_PIECE",
    "MSG_PORT",
    "MSG_REJECT_REQUEST",
    "MSG_REQUEST",
    "MSG_SUGGEST_PIECE",
    "MSG_UNCHOKE",
    "decode_dont_have",
    "decode_extended_handshake",
    "decode_handshake",
    "decode_message",
    "decode_metadata_message",
    "encode_dont_have",
    "encode_extended_handshake",
    "encode_handshake",
    "encode_message",
    "encode_metadata_message",
    "encode_piece_header",
    "make_reserved",
]

HANDSHAKE_LENGTH = 68
"""1 + 19 + 8 + 20 + 20 bytes (BEP 3)."""

MAX_REQUEST_LENGTH = 128 * 1024
"""Largest request/reject/cancel length accepted (BEP 3: "connections ... close ... if a request
larger than 2^17 bytes"); we only ever request 16 KiB blocks."""

METADATA_PIECE_SIZE = 16 * 1024
"""BEP 9: the info dictionary is transferred in 16 KiB pieces."""

MAX_METADATA_SIZE = 16 * 1024 * 1024
"""Default cap on a peer-announced ``metadata_size`` (bounded memory for magnet downloads)."""

# Old names of the :class:`~torrentgoat.wire.messages.MessageId` members, kept for existing callers.
MSG_CHOKE = MessageId.CHOKE
MSG_UNCHOKE = MessageId.UNCHOKE
MSG_INTERESTED = MessageId.INTERESTED
MSG_NOT_INTERESTED = MessageId.NOT_INTERESTED
MSG_HAVE = MessageId.HAVE
MSG_BITFIELD = MessageId.BITFIELD
MSG_REQUEST = MessageId.REQUEST
MSG_PIECE = MessageId.PIECE
MSG_CANCEL = MessageId.CANCEL
MSG_PORT = MessageId.PORT
MSG_SUGGEST_PIECE = MessageId.SUGGEST_PIECE
MSG_HAVE_ALL = MessageId.HAVE_ALL
MSG_HAVE_NONE = MessageId.HAVE_NONE
MSG_REJECT_REQUEST = MessageId.REJECT_REQUEST
MSG_ALLOWED_FAST = MessageId.ALLOWED_FAST
MSG_EXTENDED = MessageId.EXTENDED

_U32 = struct.Struct(">I")
_HEADER = struct.Struct(">IB")
_IDX = struct.Struct(">IBI")
_TRIPLE = struct.Struct(">IBIII")
_PIECE_HDR = struct.Struct(">IBII")
_PORT = struct.Struct(">IBH")
_III = struct.Struct(">III")

_KEEPALIVE = b"\x00\x00\x00\x00"
_CHOKE = _HEADER.pack(1, MSG_CHOKE)
_UNCHOKE = _HEADER.pack(1, MSG_UNCHOKE)
_INTERESTED = _HEADER.pack(1, MSG_INTERESTED)
_NOT_INTERESTED = _HEADER.pack(1, MSG_NOT_INTERESTED)
_HAVE_ALL = _HEADER.pack(1, MSG_HAVE_ALL)
_HAVE_NONE = _HEADER.pack(1, MSG_HAVE_NONE)


def make_reserved(*, extensions: bool = True, fast: bool = True, dht: bool = False) -> bytes:
    """The 8 reserved handshake bytes: BEP 10 ``[5] & 0x10``, BEP 6 ``[7] & 0x04``, BEP 5 ``[7] & 0x01``."""
    reserved = bytearray(8)
    if extensions:
        reserved[5] |= 0x10
    if fast:
        reserved[7] |= 0x04
    if dht:
        reserved[7] |= 0x01
    return bytes(reserved)


def encode_handshake(handshake: Handshake) -> bytes:
    if len(handshake.reserved) != 8:
        raise ValueError("reserved must be 8 bytes")
    if not 0 < len(handshake.protocol) < 256:
        raise ValueError("protocol string must be 1..255 bytes")
    return (
        bytes([len(handshake.protocol)])
        + handshake.protocol
        + handshake.reserved
        + handshake.info_hash.raw
        + handshake.peer_id.raw
    )


def decode_handshake(data: Buffer) -> Handshake:
    """Decode exactly 68 bytes; any protocol string other than BEP 3's is refused."""
    if len(data) != HANDSHAKE_LENGTH:
        raise RemoteProtocolError(f"handshake must be {HANDSHAKE_LENGTH} bytes, got {len(data)}")
    raw = bytes(data)
    if raw[0] != len(PROTOCOL) or raw[1:20] != PROTOCOL:
        raise RemoteProtocolError(f"not a BitTorrent handshake (protocol string {raw[:20]!r})")
    return Handshake(
        protocol=PROTOCOL,
        reserved=raw[20:28],
        info_hash=InfoHash(raw[28:48]),
        peer_id=PeerId(raw[48:68]),
    )


def encode_piece_header(index: int, begin: int, length: int) -> bytes:
    """The 13 bytes in front of a ``piece`` message's block (for zero-copy sends)."""
    return _PIECE_HDR.pack(9 + length, MSG_PIECE, index, begin)


def _u32(value: int, what: str) -> int:
    if not 0 <= value < 1 << 32:
        raise ValueError(f"{what} out of u32 range: {value}")
    return value


def encode_message(message: WireMessage) -> bytes:
    """Frame one message-phase message (length prefix included)."""
    match message:
        case Piece(index=index, begin=begin, data=data):
            return encode_piece_header(_u32(index, "index"), _u32(begin, "begin"), len(data)) + bytes(data)
        case Request(index=index, begin=begin, length=length):
            return _TRIPLE.pack(
                13, MSG_REQUEST, _u32(index, "index"), _u32(begin, "begin"), _u32(length, "length")
            )
        case Have(index=index):
            return _IDX.pack(5, MSG_HAVE, _u32(index, "index"))
        case KeepAlive():
            return _KEEPALIVE
        case Choke():
            return _CHOKE
        case Unchoke():
            return _UNCHOKE
        case Interested():
            return _INTERESTED
        case NotInterested():
            return _NOT_INTERESTED
        case BitfieldMsg(data=data):
            return _HEADER.pack(1 + len(data), MSG_BITFIELD) + bytes(data)
        case Cancel(index=index, begin=begin, length=length):
            return _TRIPLE.pack(
                13, MSG_CANCEL, _u32(index, "index"), _u32(begin, "begin"), _u32(length, "length")
            )
        case Port(port=port):
            if not 0 <= port < 65536:
                raise ValueError(f"port out of range: {port}")
            return _PORT.pack(3, MSG_PORT, port)
        case SuggestPiece(index=index):
            return _IDX.pack(5, MSG_SUGGEST_PIECE, _u32(index, "index"))
        case HaveAll():
            return _HAVE_ALL
        case HaveNone():
            return _HAVE_NONE
        case RejectRequest(index=index, begin=begin, length=length):
            return _TRIPLE.pack(
                13, MSG_REJECT_REQUEST, _u32(index, "index"), _u32(begin, "begin"), _u32(length, "length")
            )
        case AllowedFast(index=index):
            return _IDX.pack(5, MSG_ALLOWED_FAST, _u32(index, "index"))
        case HashRequest() | Hashes() | HashReject():
            return encode_hash_message(message)
        case Extended(ext_id=ext_id, payload=payload):
            if not 0 <= ext_id < 256:
                raise ValueError(f"extension id out of range: {ext_id}")
            return _HEADER.pack(2 + len(payload), MSG_EXTENDED) + bytes([ext_id]) + bytes(payload)
    raise TypeError(f"not a wire message: {message!r}")


def _expect(payload: Buffer, size: int, name: str) -> None:
    if len(payload) != size:
        raise RemoteProtocolError(f"{name} message payload must be {size} bytes, got {len(payload)}")


def _triple(payload: Buffer, name: str) -> tuple[int, int, int]:
    _expect(payload, 12, name)
    index, begin, length = _III.unpack_from(payload, 0)
    if not 0 < length <= MAX_REQUEST_LENGTH:
        raise RemoteProtocolError(f"{name} length {length} outside 1..{MAX_REQUEST_LENGTH}")
    return index, begin, length


_EMPTY_MESSAGES: dict[int, WireMessage] = {
    MSG_CHOKE: Choke(),
    MSG_UNCHOKE: Unchoke(),
    MSG_INTERESTED: Interested(),
    MSG_NOT_INTERESTED: NotInterested(),
    MSG_HAVE_ALL: HaveAll(),
    MSG_HAVE_NONE: HaveNone(),
}

_NAMES: dict[int, str] = {
    MSG_CHOKE: "choke",
    MSG_UNCHOKE: "unchoke",
    MSG_INTERESTED: "interested",
    MSG_NOT_INTERESTED: "not interested",
    MSG_HAVE_ALL: "have all",
    MSG_HAVE_NONE: "have none",
}


def decode_message(msg_id: int, payload: Buffer) -> WireMessage | None:
    """Decode the payload (after the id byte) of message ``msg_id``; ``None`` for unknown ids.

    Unknown ids are returned as ``None`` so the caller can skip them: BEP 3 leaves the id space
    open and BEP 10 was designed so unknown messages can be ignored; the frame size cap still
    bounds what a peer can make us buffer.  ``Piece.data`` is a copy of the block, owned by the
    caller.
    """
    if msg_id in _EMPTY_MESSAGES:
        _expect(payload, 0, _NAMES[msg_id])
        return _EMPTY_MESSAGES[msg_id]
    if msg_id == MSG_PIECE:
        if len(payload) < 8:
            raise RemoteProtocolError(f"piece message payload of {len(payload)} bytes has no header")
        index, begin = struct.unpack_from(">II", payload, 0)
        data = bytes(payload[8:])
        if not 0 < len(data) <= MAX_REQUEST_LENGTH:
            raise RemoteProtocolError(f"piece block of {len(data)} bytes outside 1..{MAX_REQUEST_LENGTH}")
        return Piece(index=index, begin=begin, data=data)
    if msg_id == MSG_HAVE:
        _expect(payload, 4, "have")
        return Have(index=_U32.unpack_from(payload, 0)[0])
    if msg_id == MSG_REQUEST:
        index, begin, length = _triple(payload, "request")
        return Request(index=index, begin=begin, length=length)
    if msg_id == MSG_CANCEL:
        index, begin, length = _triple(payload, "cancel")
        return Cancel(index=index, begin=begin, length=length)
    if msg_id == MSG_REJECT_REQUEST:
        index, begin, length = _triple(payload, "reject request")
        return RejectRequest(index=index, begin=begin, length=length)
    if msg_id == MSG_BITFIELD:
        return BitfieldMsg(data=bytes(payload))
    if msg_id == MSG_PORT:
        _expect(payload, 2, "port")
        return Port(port=struct.unpack_from(">H", payload, 0)[0])
    if msg_id == MSG_SUGGEST_PIECE:
        _expect(payload, 4, "suggest piece")
        return SuggestPiece(index=_U32.unpack_from(payload, 0)[0])
    if msg_id == MSG_ALLOWED_FAST:
        _expect(payload, 4, "allowed fast")
        return AllowedFast(index=_U32.unpack_from(payload, 0)[0])
    if msg_id in (MSG_HASH_REQUEST, MSG_HASHES, MSG_HASH_REJECT):
        return decode_hash_message(msg_id, payload)  # BEP 52; whether it is allowed is the connection's
    if msg_id == MSG_EXTENDED:
        if len(payload) < 1:
            raise RemoteProtocolError("extended message without an extension id")
        return Extended(ext_id=payload[0], payload=bytes(payload[1:]))
    return None


# --- BEP 10 extension handshake -------------------------------------------------------------------


def encode_extended_handshake(handshake: ExtendedHandshake) -> bytes:
    """Bencoded payload of ``Extended`` id 0 (BEP 10)."""
    value: dict[bytes, bencode.BValue] = {b"m": {k.encode(): v for k, v in handshake.m.items()}}
    if handshake.p is not None:
        value[b"p"] = handshake.p
    if handshake.v is not None:
        value[b"v"] = handshake.v.encode()
    if handshake.yourip is not None:
        value[b"yourip"] = handshake.yourip
    if handshake.ipv4 is not None:
        value[b"ipv4"] = handshake.ipv4
    if handshake.ipv6 is not None:
        value[b"ipv6"] = handshake.ipv6
    if handshake.reqq is not None:
        value[b"reqq"] = handshake.reqq
    if handshake.metadata_size is not None:
        value[b"metadata_size"] = handshake.metadata_size
    if handshake.upload_only:
        value[b"upload_only"] = 1
    return bencode.encode(value)


def _bdict(payload: Buffer, what: str) -> dict[bytes, bencode.BValue]:
    try:
        value = bencode.decode(payload)
    except BencodeError as exc:
        raise RemoteProtocolError(f"{what} is not valid bencoding: {exc}") from None
    if not isinstance(value, dict):
        raise RemoteProtocolError(f"{what} is not a bencoded dictionary")
    return value


def _opt_int(value: bencode.BValue | None, low: int, high: int) -> int | None:
    if isinstance(value, int) and low <= value <= high:
        return value
    return None


def _opt_addr(value: bencode.BValue | None, sizes: tuple[int, ...]) -> bytes | None:
    if isinstance(value, bytes) and len(value) in sizes:
        return value
    return None


def decode_extended_handshake(payload: Buffer) -> ExtendedHandshake:
    """Decode a BEP 10 handshake dictionary.

    The payload must be a bencoded dictionary (else :class:`RemoteProtocolError`); optional fields
    of the wrong type or range are dropped rather than fatal, since real clients disagree on
    details (BEP 10: all fields are optional).  ``m`` entries outside ``0..255`` are dropped.
    """
    value = _bdict(payload, "extension handshake")
    m_raw = value.get(b"m", {})
    if not isinstance(m_raw, dict):
        raise RemoteProtocolError("extension handshake 'm' is not a dictionary")
    m: dict[str, int] = {}
    for key, ext_id in m_raw.items():
        if isinstance(ext_id, int) and 0 <= ext_id < 256:
            m[key.decode("utf-8", "replace")] = ext_id
    v = value.get(b"v")
    return ExtendedHandshake(
        m=m,
        p=_opt_int(value.get(b"p"), 1, 65535),
        v=v.decode("utf-8", "replace") if isinstance(v, bytes) else None,
        yourip=_opt_addr(value.get(b"yourip"), (4, 16)),
        ipv4=_opt_addr(value.get(b"ipv4"), (4,)),
        ipv6=_opt_addr(value.get(b"ipv6"), (16,)),
        reqq=_opt_int(value.get(b"reqq"), 1, 1 << 31),
        metadata_size=_opt_int(value.get(b"metadata_size"), 0, 1 << 62),
        upload_only=bool(_opt_int(value.get(b"upload_only"), 0, 1 << 62)),
    )


# --- BEP 9 ut_metadata ------------------------------------------------------------------------------


def encode_metadata_message(message: MetadataRequest | MetadataData | MetadataReject) -> bytes:
    """Payload of a ``ut_metadata`` extension message (BEP 9): a dictionary, then raw data for msg_type 1."""
    match message:
        case MetadataRequest(piece=piece):
            return bencode.encode({b"msg_type": 0, b"piece": piece})
        case MetadataData(piece=piece, total_size=total_size, data=data):
            return bencode.encode({b"msg_type": 1, b"piece": piece, b"total_size": total_size}) + bytes(data)
        case MetadataReject(piece=piece):
            return bencode.encode({b"msg_type": 2, b"piece": piece})
    raise TypeError(f"not a ut_metadata message: {message!r}")


def decode_metadata_message(
    payload: Buffer, *, max_metadata_size: int = MAX_METADATA_SIZE
) -> MetadataRequest | MetadataData | MetadataReject | None:
    """Decode a ``ut_metadata`` payload; ``None`` for an unknown ``msg_type`` (BEP 9: ignore it).

    A data message must carry ``total_size`` in ``1..max_metadata_size`` and at most 16 KiB of
    data; the piece index must be non-negative.  Whether the data length fits the piece is checked
    by :class:`~torrentgoat.wire.metadata.MetadataFetcher`, which knows the size it expects.
    """
    try:
        value, end = bencode.decode_prefix(payload)
    except BencodeError as exc:
        raise RemoteProtocolError(f"ut_metadata message is not valid bencoding: {exc}") from None
    if not isinstance(value, dict):
        raise RemoteProtocolError("ut_metadata message is not a bencoded dictionary")
    msg_type = value.get(b"msg_type")
    piece = value.get(b"piece")
    if not isinstance(msg_type, int) or not isinstance(piece, int):
        raise RemoteProtocolError("ut_metadata message without integer msg_type and piece")
    if not 0 <= piece < (max_metadata_size + METADATA_PIECE_SIZE - 1) // METADATA_PIECE_SIZE:
        raise RemoteProtocolError(f"ut_metadata piece index {piece} out of range")
    trailing = len(payload) - end
    if msg_type == 1:
        total_size = value.get(b"total_size")
        if not isinstance(total_size, int) or not 0 < total_size <= max_metadata_size:
            raise RemoteProtocolError(f"ut_metadata total_size {total_size!r} outside 1..{max_metadata_size}")
        if trailing > METADATA_PIECE_SIZE:
            raise RemoteProtocolError(f"ut_metadata data piece of {trailing} bytes exceeds 16 KiB")
        return MetadataData(piece=piece, total_size=total_size, data=bytes(payload[end:]))
    if trailing:
        raise RemoteProtocolError(f"ut_metadata msg_type {msg_type} followed by {trailing} stray bytes")
    if msg_type == 0:
        return MetadataRequest(piece=piece)
    if msg_type == 2:
        return MetadataReject(piece=piece)
    return None


# --- BEP 54 lt_donthave -----------------------------------------------------------------------------

_DONT_HAVE = struct.Struct(">I")


def encode_dont_have(message: DontHave) -> bytes:
    """Payload of an ``lt_donthave`` extension message (BEP 54): the piece index, 4 bytes big-endian."""
    if not 0 <= message.index < 1 << 32:
        raise ValueError(f"piece index out of range: {message.index}")
    return _DONT_HAVE.pack(message.index)


def decode_dont_have(payload: Buffer) -> DontHave:
    """Decode an ``lt_donthave`` payload: exactly 4 bytes (whether the index is in range is the
    connection's check, which knows the piece count)."""
    if len(payload) != 4:
        raise RemoteProtocolError(f"lt_donthave payload of {len(payload)} bytes, expected 4")
    (index,) = _DONT_HAVE.unpack(payload)
    return DontHave(index=index)
