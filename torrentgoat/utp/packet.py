"""uTP packets (BEP 29): the 20-byte header, the extension chain and the selective-ack bitmask.

Layout (BEP 29 "Header format", all fields big-endian)::

    0       4       8               16              24              32
    +-------+-------+---------------+---------------+---------------+
    | type  | ver   | extension     | connection_id                 |
    +-------+-------+---------------+---------------+---------------+
    | timestamp_microseconds                                        |
    | timestamp_difference_microseconds                             |
    | wnd_size                                                      |
    | seq_nr                        | ack_nr                        |
    +-------+-------+---------------+---------------+---------------+

followed by the extensions (each ``next_type:u8 len:u8 data[len]``, the chain starting with the
header's ``extension`` byte and ending at type 0) and the payload.

Extensions understood:

* 1, selective ack (BEP 29 "Extension"): bit *i* of the bitmask (byte ``i // 8``, least significant
  bit first) says packet ``ack_nr + 2 + i`` was received.  BEP 29 wants a multiple of 4 bytes; we
  send that and accept any length (libtorrent sends ``ceil(bits / 8)``).
* 3, close reason (libtorrent): 2 reserved bytes + a u16 reason code.
* :data:`EXT_MAX_DATAGRAM` (a torrentgoat extension, ignored by libtorrent and libutp, which skip
  unknown extensions): the largest UDP payload the sender accepts (u32).  BEP 29 has no way to say
  this and libtorrent truncates datagrams above 1500 bytes, so large packets (path MTU probing up
  to 64 KiB on loopback) are only sent to peers that announced it in their SYN or SYN-ACK.

Unknown extension types are skipped (as libtorrent and libutp do).  :func:`decode` raises
:class:`~torrentgoat.errors.UTPPacketError` for anything that is not a well-formed packet.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass

from torrentgoat.errors import UTPPacketError

__all__ = [
    "EXT_CLOSE_REASON",
    "EXT_MAX_DATAGRAM",
    "EXT_NONE",
    "EXT_SACK",
    "HEADER",
    "HEADER_SIZE",
    "ST_DATA",
    "ST_FIN",
    "ST_RESET",
    "ST_STATE",
    "ST_SYN",
    "TYPE_NAMES",
    "VERSION",
    "Packet",
    "decode",
    "encode",
    "looks_like_utp",
    "sack_bitmask",
    "sack_bits",
    "sack_positions",
]

ST_DATA = 0
"""Payload; consumes one sequence number."""
ST_FIN = 1
"""End of the sender's stream; its ``seq_nr`` is the last one it will use."""
ST_STATE = 2
"""A pure ack: no payload, ``seq_nr`` is the next one the sender will use (not consumed)."""
ST_RESET = 3
"""Terminate the connection at once."""
ST_SYN = 4
"""Open a connection; ``connection_id`` is the id the initiator will *receive* on."""
TYPE_NAMES = ("DATA", "FIN", "STATE", "RESET", "SYN")

VERSION = 1

EXT_NONE = 0
EXT_SACK = 1
EXT_CLOSE_REASON = 3
EXT_MAX_DATAGRAM = 0x54
"""torrentgoat: "I accept UDP payloads up to this many bytes" (u32), sent in SYN and SYN-ACK."""

HEADER = struct.Struct(">BBHIIIHH")
HEADER_SIZE = HEADER.size  # 20
_U32 = struct.Struct(">I")
_CLOSE = struct.Struct(">HH")


def looks_like_utp(first_byte: int) -> bool:
    """True if a datagram starting with this byte can be uTP (version 1, type 0..4).

    A KRPC (DHT) message is a bencoded dictionary and starts with ``d`` (0x64 = type 6, version 4),
    so one UDP port can serve both (libtorrent tells them apart the same way)."""
    return first_byte & 0x0F == VERSION and first_byte >> 4 <= ST_SYN


@dataclass(frozen=True, slots=True, kw_only=True)
class Packet:
    """One uTP packet.  ``sack`` is the raw selective-ack bitmask (see :func:`sack_bits`)."""

    type: int
    connection_id: int
    seq_nr: int
    ack_nr: int
    timestamp: int = 0
    """``timestamp_microseconds``: the sender's clock when sent (low 32 bits)."""
    timestamp_difference: int = 0
    """``timestamp_difference_microseconds``: the sender's receive time of our last packet minus
    that packet's timestamp (mod 2**32) -- one-way delay plus clock offset."""
    wnd_size: int = 0
    """Bytes the sender can still buffer (its receive window)."""
    sack: bytes | None = None
    close_reason: int | None = None
    max_datagram: int | None = None
    payload: bytes = b""


def decode(data: bytes | bytearray | memoryview) -> Packet:
    """Parse one datagram; :class:`UTPPacketError` if it is not a valid uTP packet."""
    size = len(data)
    if size < HEADER_SIZE:
        raise UTPPacketError(f"uTP packet of {size} bytes is shorter than the 20-byte header")
    type_ver, extension, conn_id, ts, ts_diff, wnd, seq_nr, ack_nr = HEADER.unpack_from(data)
    if type_ver & 0x0F != VERSION:
        raise UTPPacketError(f"uTP version {type_ver & 0x0F} (only 1 exists)")
    ptype = type_ver >> 4
    if ptype > ST_SYN:
        raise UTPPacketError(f"unknown uTP packet type {ptype}")
    sack, close_reason, max_datagram, offset = parse_extensions(data, extension)
    return Packet(
        type=ptype,
        connection_id=conn_id,
        seq_nr=seq_nr,
        ack_nr=ack_nr,
        timestamp=ts,
        timestamp_difference=ts_diff,
        wnd_size=wnd,
        sack=sack,
        close_reason=close_reason,
        max_datagram=max_datagram,
        payload=bytes(data[offset:]),
    )


def parse_extensions(
    data: bytes | bytearray | memoryview, extension: int
) -> tuple[bytes | None, int | None, int | None, int]:
    """Walk the extension chain that starts at byte 20 with type ``extension``.

    Returns ``(sack, close_reason, max_datagram, payload_offset)``."""
    offset = HEADER_SIZE
    size = len(data)
    sack: bytes | None = None
    close_reason: int | None = None
    max_datagram: int | None = None
    hops = 0
    while extension:
        if offset + 2 > size:
            raise UTPPacketError("uTP extension header runs past the end of the packet")
        next_ext = data[offset]
        length = data[offset + 1]
        start = offset + 2
        offset = start + length
        if offset > size:
            raise UTPPacketError(f"uTP extension {extension} of {length} bytes runs past the packet")
        if extension == EXT_SACK:
            if length == 0:
                raise UTPPacketError("empty uTP selective-ack bitmask")
            sack = bytes(data[start:offset])
        elif extension == EXT_CLOSE_REASON:
            if length == 4:
                close_reason = _CLOSE.unpack_from(data, start)[1]
        elif extension == EXT_MAX_DATAGRAM:
            if length == 4:
                max_datagram = _U32.unpack_from(data, start)[0]
        hops += 1
        if hops > 16:
            raise UTPPacketError("uTP extension chain longer than 16")
        extension = next_ext
    return sack, close_reason, max_datagram, offset


def encode_extensions(
    sack: bytes | None = None, close_reason: int | None = None, max_datagram: int | None = None
) -> tuple[int, bytes]:
    """``(first extension type, extension bytes)`` for the header's ``extension`` field."""
    chain: list[tuple[int, bytes]] = []
    if sack:
        if len(sack) > 255:
            raise ValueError("a selective-ack bitmask holds at most 255 bytes")
        chain.append((EXT_SACK, sack))
    if close_reason is not None:
        chain.append((EXT_CLOSE_REASON, _CLOSE.pack(0, close_reason)))
    if max_datagram is not None:
        chain.append((EXT_MAX_DATAGRAM, _U32.pack(max_datagram)))
    if not chain:
        return EXT_NONE, b""
    parts = []
    for i, (_, body) in enumerate(chain):
        next_type = chain[i + 1][0] if i + 1 < len(chain) else EXT_NONE
        parts.append(bytes((next_type, len(body))) + body)
    return chain[0][0], b"".join(parts)


def encode(packet: Packet) -> bytes:
    """The datagram for ``packet`` (the inverse of :func:`decode`)."""
    first, ext = encode_extensions(packet.sack, packet.close_reason, packet.max_datagram)
    header = HEADER.pack(
        packet.type << 4 | VERSION,
        first,
        packet.connection_id,
        packet.timestamp & 0xFFFFFFFF,
        packet.timestamp_difference & 0xFFFFFFFF,
        packet.wnd_size,
        packet.seq_nr,
        packet.ack_nr,
    )
    return b"".join((header, ext, packet.payload))


def sack_bitmask(ack_nr: int, received: Iterable[int], span: int) -> bytes:
    """The selective-ack bitmask for out-of-order packets ``received`` beyond ``ack_nr``.

    ``span`` bits are covered (rounded up to whole 32-bit words, BEP 29); bit *i* is
    ``ack_nr + 2 + i`` (mod 2**16)."""
    words = max(1, (span + 31) // 32)
    mask = bytearray(words * 4)
    base = (ack_nr + 2) & 0xFFFF
    for seq in received:
        i = (seq - base) & 0xFFFF
        if i < words * 32:
            mask[i >> 3] |= 1 << (i & 7)
    return bytes(mask)


def sack_positions(sack: bytes) -> list[int]:
    """The bit indices set in a selective-ack bitmask, in increasing order (bit *i* is packet
    ``ack_nr + 2 + i``)."""
    result = []
    for byte_index, byte in enumerate(sack):
        if byte:
            for bit in range(8):
                if byte >> bit & 1:
                    result.append(byte_index * 8 + bit)
    return result


def sack_bits(ack_nr: int, sack: bytes) -> list[int]:
    """Sequence numbers a selective-ack bitmask marks as received, in increasing order."""
    base = ack_nr + 2
    return [(base + pos) & 0xFFFF for pos in sack_positions(sack)]
