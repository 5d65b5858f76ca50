"""Codec round trips (hypothesis) and strict decoding of the peer wire messages."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from torrentgoat.errors import RemoteProtocolError
from torrentgoat.primitives import InfoHash, PeerAddress, PeerId
from torrentgoat.wire import codec
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
from torrentgoat.wire.pex import decode_pex, encode_pex

u32 = st.integers(0, 2**32 - 1)
req_len = st.integers(1, codec.MAX_REQUEST_LENGTH)

wire_messages: st.SearchStrategy[WireMessage] = st.one_of(
    st.just(KeepAlive()),
    st.just(Choke()),
    st.just(Unchoke()),
    st.just(Interested()),
    st.just(NotInterested()),
    st.just(HaveAll()),
    st.just(HaveNone()),
    st.builds(Have, index=u32),
    st.builds(BitfieldMsg, data=st.binary(max_size=64)),
    st.builds(Request, index=u32, begin=u32, length=req_len),
    st.builds(Cancel, index=u32, begin=u32, length=req_len),
    st.builds(RejectRequest, index=u32, begin=u32, length=req_len),
    st.builds(Piece, index=u32, begin=u32, data=st.binary(min_size=1, max_size=300)),
    st.builds(Port, port=st.integers(0, 65535)),
    st.builds(SuggestPiece, index=u32),
    st.builds(AllowedFast, index=u32),
    st.builds(Extended, ext_id=st.integers(0, 255), payload=st.binary(max_size=100)),
)


def decode_frame(frame: bytes) -> WireMessage | None:
    (length,) = struct.unpack_from(">I", frame)
    assert length == len(frame) - 4
    if length == 0:
        return KeepAlive()
    return codec.decode_message(frame[4], frame[5:])


@given(wire_messages)
def test_wire_message_round_trip(message: WireMessage) -> None:
    assert decode_frame(codec.encode_message(message)) == message


@given(
    st.binary(min_size=20, max_size=20),
    st.binary(min_size=20, max_size=20),
    st.binary(min_size=8, max_size=8),
)
def test_handshake_round_trip(info_hash: bytes, peer_id: bytes, reserved: bytes) -> None:
    handshake = Handshake(info_hash=InfoHash(info_hash), peer_id=PeerId(peer_id), reserved=reserved)
    data = codec.encode_handshake(handshake)
    assert len(data) == codec.HANDSHAKE_LENGTH
    assert codec.decode_handshake(data) == handshake


def test_reserved_bits() -> None:
    reserved = codec.make_reserved(extensions=True, fast=True, dht=True)
    assert reserved[5] == 0x10 and reserved[7] == 0x05
    hs = Handshake(info_hash=InfoHash(bytes(20)), peer_id=PeerId(bytes(20)), reserved=reserved)
    assert hs.supports_extensions and hs.supports_fast and hs.supports_dht
    none = Handshake(info_hash=InfoHash(bytes(20)), peer_id=PeerId(bytes(20)))
    assert not (none.supports_extensions or none.supports_fast or none.supports_dht)


def test_handshake_rejects_other_protocols() -> None:
    good = codec.encode_handshake(Handshake(info_hash=InfoHash(bytes(20)), peer_id=PeerId(bytes(20))))
    with pytest.raises(RemoteProtocolError):
        codec.decode_handshake(b"\x13BitTorrent protocoX" + good[20:])
    with pytest.raises(RemoteProtocolError):
        codec.decode_handshake(good[:-1])


ext_handshakes = st.builds(
    ExtendedHandshake,
    m=st.dictionaries(st.text(min_size=1, max_size=12), st.integers(0, 255), max_size=5),
    p=st.none() | st.integers(1, 65535),
    v=st.none() | st.text(max_size=20),
    yourip=st.none() | st.binary(min_size=4, max_size=4) | st.binary(min_size=16, max_size=16),
    ipv4=st.none() | st.binary(min_size=4, max_size=4),
    ipv6=st.none() | st.binary(min_size=16, max_size=16),
    reqq=st.none() | st.integers(1, 100000),
    metadata_size=st.none() | st.integers(0, 2**40),
    upload_only=st.booleans(),
)


@given(ext_handshakes)
def test_extended_handshake_round_trip(handshake: ExtendedHandshake) -> None:
    assert codec.decode_extended_handshake(codec.encode_extended_handshake(handshake)) == handshake


def test_extended_handshake_lenient_fields_strict_shape() -> None:
    decoded = codec.decode_extended_handshake(
        b"d1:md11:ut_metadatai3e3:bad3:xyz4:hugei999ee1:pi-5e1:v3:\xff\xfeae"
    )
    assert decoded.m == {"ut_metadata": 3}
    assert decoded.p is None
    assert decoded.v is not None
    for bad in (b"", b"le", b"d1:mi1ee", b"d1:md", b"i5e"):
        with pytest.raises(RemoteProtocolError):
            codec.decode_extended_handshake(bad)


metadata_messages = st.one_of(
    st.builds(MetadataRequest, piece=st.integers(0, 1000)),
    st.builds(MetadataReject, piece=st.integers(0, 1000)),
    st.builds(
        MetadataData,
        piece=st.integers(0, 1000),
        total_size=st.integers(1, codec.MAX_METADATA_SIZE),
        data=st.binary(max_size=codec.METADATA_PIECE_SIZE),
    ),
)


@given(metadata_messages)
def test_metadata_round_trip(message: MetadataRequest | MetadataData | MetadataReject) -> None:
    assert codec.decode_metadata_message(codec.encode_metadata_message(message)) == message


def test_metadata_limits() -> None:
    too_big = codec.encode_metadata_message(MetadataData(piece=0, total_size=100, data=bytes(16385)))
    with pytest.raises(RemoteProtocolError, match="16 KiB"):
        codec.decode_metadata_message(too_big)
    huge = codec.encode_metadata_message(
        MetadataData(piece=0, total_size=codec.MAX_METADATA_SIZE + 1, data=b"x")
    )
    with pytest.raises(RemoteProtocolError, match="total_size"):
        codec.decode_metadata_message(huge)
    with pytest.raises(RemoteProtocolError):
        codec.decode_metadata_message(b"d8:msg_typei0e5:piecei-1ee")
    with pytest.raises(RemoteProtocolError, match="stray"):
        codec.decode_metadata_message(codec.encode_metadata_message(MetadataRequest(piece=0)) + b"x")
    assert codec.decode_metadata_message(b"d8:msg_typei7e5:piecei0ee") is None


ipv4 = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))
ipv6 = st.binary(min_size=16, max_size=16).map(lambda b: str(__import__("ipaddress").IPv6Address(b)))
addresses = st.builds(PeerAddress, st.one_of(ipv4, ipv6), st.integers(1, 65535))


@given(
    st.lists(st.builds(PexPeer, address=addresses, flags=st.integers(0, 255)), max_size=20),
    st.lists(addresses, max_size=20),
)
def test_pex_round_trip(added: list[PexPeer], dropped: list[PeerAddress]) -> None:
    message = Pex(added=tuple(added), dropped=tuple(dropped))
    decoded = decode_pex(encode_pex(message))

    # order is preserved within each family; v4 entries come first
    def key4(a: PeerAddress) -> bool:
        return ":" in a.host

    assert decoded.added == tuple(sorted(added, key=lambda p: key4(p.address)))
    assert decoded.dropped == tuple(sorted(dropped, key=key4))


def test_pex_malformed() -> None:
    with pytest.raises(RemoteProtocolError, match="multiple of 6"):
        decode_pex(b"d5:added5:abcdee")
    with pytest.raises(RemoteProtocolError):
        decode_pex(b"d5:addedi5ee")
    with pytest.raises(RemoteProtocolError):
        decode_pex(b"l")
    # flags of the wrong length are ignored, port 0 entries dropped
    decoded = decode_pex(b"d5:added12:\x7f\x00\x00\x01\x1a\xe1\x7f\x00\x00\x02\x00\x007:added.f1:\x02e")
    assert decoded.added == (PexPeer(address=PeerAddress("127.0.0.1", 6881), flags=0),)


@pytest.mark.parametrize(
    ("msg_id", "payload"),
    [
        (codec.MSG_CHOKE, b"x"),
        (codec.MSG_HAVE, b"abc"),
        (codec.MSG_REQUEST, bytes(11)),
        (codec.MSG_REQUEST, struct.pack(">III", 0, 0, codec.MAX_REQUEST_LENGTH + 1)),
        (codec.MSG_CANCEL, struct.pack(">III", 0, 0, 0)),
        (codec.MSG_PIECE, bytes(7)),
        (codec.MSG_PIECE, bytes(8)),
        (codec.MSG_PORT, bytes(3)),
        (codec.MSG_EXTENDED, b""),
        (codec.MSG_ALLOWED_FAST, bytes(5)),
    ],
)
def test_decode_message_rejects_malformed(msg_id: int, payload: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        codec.decode_message(msg_id, payload)


def test_unknown_ids_decode_to_none() -> None:
    assert codec.decode_message(99, b"whatever") is None


def test_encode_validates_ranges() -> None:
    with pytest.raises(ValueError):
        codec.encode_message(Have(index=-1))
    with pytest.raises(ValueError):
        codec.encode_message(Port(port=70000))
    with pytest.raises(ValueError):
        codec.encode_message(Extended(ext_id=256, payload=b""))
