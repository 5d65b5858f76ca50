"""BEP 29 packet codec: header layout, extension chain, selective-ack bitmask, bad input."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from torrentgoat.errors import RemoteProtocolError, UTPPacketError
from torrentgoat.utp.outgoing import SendQueue
from torrentgoat.utp.packet import (
    EXT_MAX_DATAGRAM,
    EXT_SACK,
    ST_DATA,
    ST_FIN,
    ST_RESET,
    ST_STATE,
    ST_SYN,
    Packet,
    decode,
    encode,
    looks_like_utp,
    sack_bitmask,
    sack_bits,
    sack_positions,
)


def test_header_layout_is_bep29() -> None:
    packet = Packet(
        type=ST_DATA,
        connection_id=0x1234,
        seq_nr=0xABCD,
        ack_nr=0x0102,
        timestamp=0x11223344,
        timestamp_difference=0x55667788,
        wnd_size=0x00100000,
        payload=b"hello",
    )
    raw = encode(packet)
    assert raw[0] == 0x01  # type 0 << 4 | version 1
    assert raw[1] == 0  # no extension
    assert struct.unpack(">HIIIHH", raw[2:20]) == (0x1234, 0x11223344, 0x55667788, 0x00100000, 0xABCD, 0x0102)
    assert raw[20:] == b"hello"
    assert decode(raw) == packet


def test_first_bytes_tell_utp_from_krpc() -> None:
    for ptype in (ST_DATA, ST_FIN, ST_STATE, ST_RESET, ST_SYN):
        assert looks_like_utp(ptype << 4 | 1)
    assert not looks_like_utp(ord("d"))  # a bencoded KRPC dictionary
    assert not looks_like_utp(0x51)  # type 5 does not exist
    assert not looks_like_utp(0x02)  # version 2


def test_selective_ack_bit_order() -> None:
    # bit i of the mask (LSB first within each byte) is ack_nr + 2 + i
    mask = sack_bitmask(100, {102, 104, 111, 133}, span=40)
    assert len(mask) == 8  # rounded up to 32-bit words
    assert mask[0] == 0b00000101  # 102 -> bit 0, 104 -> bit 2
    assert mask[1] == 0b00000010  # 111 -> bit 9
    assert mask[3] == 0b10000000  # 133 -> bit 31
    assert sack_bits(100, mask) == [102, 104, 111, 133]


def test_selective_ack_wraps() -> None:
    mask = sack_bitmask(0xFFFE, {0, 1, 5}, span=8)
    assert sack_bits(0xFFFE, mask) == [0, 1, 5]


def test_extension_chain_roundtrip_and_unknown_skipped() -> None:
    packet = Packet(
        type=ST_SYN,
        connection_id=7,
        seq_nr=1,
        ack_nr=0,
        sack=b"\x01\x00\x00\x00",
        close_reason=5,
        max_datagram=65507,
    )
    raw = encode(packet)
    assert raw[1] == EXT_SACK
    assert decode(raw) == packet
    # an unknown extension type in the middle of a chain is skipped
    header = bytearray(raw[:20])
    header[1] = 0x77
    unknown = bytes([EXT_MAX_DATAGRAM, 3]) + b"xyz"
    limit = bytes([0, 4]) + (1400).to_bytes(4, "big")
    parsed = decode(bytes(header) + unknown + limit + b"data")
    assert parsed.max_datagram == 1400 and parsed.payload == b"data" and parsed.sack is None


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\x01" * 19, "shorter"),
        (b"\x02" + b"\x00" * 19, "version"),
        (b"\x51" + b"\x00" * 19, "type"),
        (b"\x01\x01" + b"\x00" * 18, "extension header"),
        (b"\x01\x01" + b"\x00" * 18 + b"\x00\x08\x01", "runs past"),
        (b"\x01\x01" + b"\x00" * 18 + b"\x00\x00", "empty"),
    ],
)
def test_malformed_packets_are_typed_errors(raw: bytes, message: str) -> None:
    with pytest.raises(UTPPacketError, match=message) as info:
        decode(raw)
    assert isinstance(info.value, RemoteProtocolError)


def test_extension_loop_is_bounded() -> None:
    chain = b"".join(bytes([0x77, 0]) for _ in range(40)) + bytes([0, 0])
    with pytest.raises(UTPPacketError, match="chain"):
        decode(b"\x01\x77" + b"\x00" * 18 + chain)


packets = st.builds(
    Packet,
    type=st.integers(0, 4),
    connection_id=st.integers(0, 0xFFFF),
    seq_nr=st.integers(0, 0xFFFF),
    ack_nr=st.integers(0, 0xFFFF),
    timestamp=st.integers(0, 0xFFFFFFFF),
    timestamp_difference=st.integers(0, 0xFFFFFFFF),
    wnd_size=st.integers(0, 0xFFFFFFFF),
    sack=st.none() | st.binary(min_size=1, max_size=64),
    close_reason=st.none() | st.integers(0, 0xFFFF),
    max_datagram=st.none() | st.integers(0, 0xFFFFFFFF),
    payload=st.binary(max_size=300),
)


@given(packets)
def test_roundtrip(packet: Packet) -> None:
    assert decode(encode(packet)) == packet


@given(st.binary(max_size=80))
def test_decode_never_raises_anything_else(raw: bytes) -> None:
    try:
        decode(raw)
    except UTPPacketError:
        pass


@given(st.integers(0, 0xFFFF), st.sets(st.integers(0, 255), max_size=40))
def test_sack_roundtrip(ack: int, offsets: set[int]) -> None:
    received = {(ack + 2 + i) & 0xFFFF for i in offsets}
    mask = sack_bitmask(ack, received, span=256)
    assert set(sack_bits(ack, mask)) == received


@given(
    st.lists(st.binary(min_size=1, max_size=300), min_size=1, max_size=20),
    st.lists(st.integers(min_value=1, max_value=400), min_size=1, max_size=40),
    st.booleans(),
)
def test_send_queue_takes_the_bytes_in_order_whatever_the_chunking(
    chunks: list[bytes], sizes: list[int], views: bool
) -> None:
    queue = SendQueue()
    for chunk in chunks:
        queue.append(memoryview(chunk) if views else bytearray(chunk))
    stream = b"".join(chunks)
    taken = []
    for size in sizes:
        size = min(size, queue.size)
        if not size:
            break
        parts: list[bytes | memoryview] = []
        queue.take(size, parts)
        taken.append(b"".join(parts))
        assert queue.size == len(stream) - sum(map(len, taken))
    assert b"".join(taken) == stream[: sum(map(len, taken))]


def test_sack_positions_and_bits_agree() -> None:
    mask = bytes([0b0000_0101, 0, 0b1000_0000, 0])
    assert sack_positions(mask) == [0, 2, 23]
    assert sack_bits(0xFFFE, mask) == [0, 2, 23]
