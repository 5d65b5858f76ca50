"""KRPC codec (BEP 5, BEP 32, BEP 44): spec examples, schema errors, property tests."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from torrentgoat.dht import krpc
from torrentgoat.dht.krpc import MalformedKRPC, NodeInfo
from torrentgoat.errors import KRPCError

ID = b"abcdefghij0123456789"
TARGET = b"mnopqrstuvwxyz123456"


def test_bep5_ping_query_example_decodes() -> None:
    message = krpc.decode(b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe")
    assert message == krpc.Ping(t=b"aa", id=ID)


def test_bep5_responses_and_errors_decode() -> None:
    assert krpc.decode(b"d1:rd2:id20:mnopqrstuvwxyz123456e1:t2:aa1:y1:re") == krpc.Response(
        t=b"aa", id=TARGET
    )
    assert krpc.decode(b"d1:eli201e23:A Generic Error Ocurrede1:t2:aa1:y1:ee") == krpc.Error(
        t=b"aa", code=201, message=b"A Generic Error Ocurred"
    )


def test_bep5_announce_peer_example() -> None:
    data = (
        b"d1:ad2:id20:abcdefghij012345678912:implied_porti1e9:info_hash20:mnopqrstuvwxyz123456"
        b"4:porti6881e5:token8:aoeusnthe1:q13:announce_peer1:t2:aa1:y1:qe"
    )
    message = krpc.decode(data)
    assert message == krpc.AnnouncePeer(
        t=b"aa", id=ID, info_hash=TARGET, port=6881, token=b"aoeusnth", implied_port=True
    )


def test_encoded_query_is_canonical_bencoding() -> None:
    data = krpc.encode(krpc.Ping(t=b"aa", id=ID))
    assert data == b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:v4:TG\x00\x011:y1:qe"


def test_compact_node_and_peer_info_ipv4_and_ipv6() -> None:
    nodes = (NodeInfo(ID, "10.1.2.3", 6881), NodeInfo(TARGET, "192.168.0.1", 1))
    raw = krpc.encode_nodes(nodes)
    assert len(raw) == 52
    assert krpc.decode_nodes(raw, ipv6=False) == nodes
    nodes6 = (NodeInfo(ID, "2001:db8::1", 6881),)
    raw6 = krpc.encode_nodes(nodes6)
    assert len(raw6) == 38  # BEP 32
    assert krpc.decode_nodes(raw6, ipv6=True) == nodes6
    assert krpc.encode_peer(("1.2.3.4", 0x1AE1)) == b"\x01\x02\x03\x04\x1a\xe1"
    assert krpc.decode_peer(krpc.encode_peer(("::1", 80))) == ("::1", 80)


def test_response_with_nodes6_and_values() -> None:
    response = krpc.Response(
        t=b"x1",
        id=ID,
        nodes6=(NodeInfo(TARGET, "::1", 7000),),
        values=(("127.0.0.1", 5000), ("::1", 5001)),
        token=b"tok",
    )
    assert krpc.decode(krpc.encode(response)) == response


@pytest.mark.parametrize(
    ("data", "code", "answerable"),
    [
        (b"d1:ad2:id20:abcdefghij0123456789e1:q9:vote_evil1:t2:aa1:y1:qe", 204, True),
        (b"d1:ad2:id3:abce1:q4:ping1:t2:aa1:y1:qe", 203, True),  # id not 20 bytes
        (b"d1:ai5e1:q4:ping1:t2:aa1:y1:qe", 203, True),  # 'a' is not a dict
        (b"d1:ad2:id20:abcdefghij0123456789e1:q9:find_node1:t2:aa1:y1:qe", 203, True),  # no target
        (b"d1:q4:ping1:t2:aa1:y1:qe", 203, True),
        (b"d1:rd2:id20:abcdefghij0123456789e1:ti5e1:y1:re", 203, False),  # t not a string
        (b"d1:t2:aa1:y1:ze", 203, False),
        (b"le", 203, False),
        (b"d1:t2:aa", 203, False),
        (b"i1e", 203, False),
    ],
)
def test_malformed_packets_raise_krpc_errors(data: bytes, code: int, answerable: bool) -> None:
    with pytest.raises(MalformedKRPC) as info:
        krpc.decode(data)
    assert info.value.code == code
    assert (info.value.t is not None) == answerable


def test_oversized_packet_is_refused_before_decoding() -> None:
    with pytest.raises(KRPCError, match="exceeds"):
        krpc.decode(b"d1:t2:aa1:y1:q1:q4:ping1:ad2:id20:" + b"x" * 5000 + b"ee")


def test_put_needs_signature_fields_for_mutable() -> None:
    base = {b"id": ID, b"token": b"t", b"v": b"x", b"k": b"k" * 32}
    from torrentgoat import bencode

    data = bencode.encode({b"t": b"aa", b"y": b"q", b"q": b"put", b"a": base})
    with pytest.raises(MalformedKRPC, match="sig"):
        krpc.decode(data)


# -- properties ---------------------------------------------------------------------------------------

ids = st.binary(min_size=20, max_size=20)
tids = st.binary(min_size=1, max_size=4)
ports = st.integers(min_value=1, max_value=65535)
ipv4 = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))
ipv6 = st.binary(min_size=16, max_size=16).map(lambda b: __import__("ipaddress").IPv6Address(b).compressed)
addrs = st.tuples(st.one_of(ipv4, ipv6), ports)
nodes4 = st.lists(st.builds(NodeInfo, ids, ipv4, ports), max_size=8).map(tuple)
nodes6 = st.lists(st.builds(NodeInfo, ids, ipv6, ports), max_size=8).map(tuple)
bvalues = st.recursive(
    st.one_of(st.integers(-(10**12), 10**12), st.binary(max_size=40)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.binary(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)

messages = st.one_of(
    st.builds(krpc.Ping, t=tids, id=ids, ro=st.booleans()),
    st.builds(
        krpc.FindNode, t=tids, id=ids, target=ids, want=st.sampled_from([(), (b"n4",), (b"n4", b"n6")])
    ),
    st.builds(krpc.GetPeers, t=tids, id=ids, info_hash=ids),
    st.builds(
        krpc.AnnouncePeer,
        t=tids,
        id=ids,
        info_hash=ids,
        port=ports,
        token=st.binary(min_size=1, max_size=20),
        implied_port=st.booleans(),
    ),
    st.builds(krpc.Get, t=tids, id=ids, target=ids, seq=st.one_of(st.none(), st.integers(0, 2**40))),
    st.builds(krpc.Put, t=tids, id=ids, token=st.binary(min_size=1, max_size=20), v=bvalues),
    st.builds(
        krpc.Put,
        t=tids,
        id=ids,
        token=st.binary(min_size=1, max_size=20),
        v=bvalues,
        k=st.binary(min_size=32, max_size=32),
        sig=st.binary(min_size=64, max_size=64),
        seq=st.integers(0, 2**40),
        salt=st.binary(max_size=64),
        cas=st.one_of(st.none(), st.integers(0, 2**40)),
    ),
    st.builds(
        krpc.Response,
        t=tids,
        id=ids,
        nodes=nodes4,
        nodes6=nodes6,
        values=st.lists(addrs, max_size=8).map(tuple),
        token=st.one_of(st.none(), st.binary(max_size=20)),
        v=st.one_of(st.none(), bvalues),
        seq=st.one_of(st.none(), st.integers(0, 2**40)),
        ip=st.one_of(st.none(), addrs),
    ),
    st.builds(krpc.Error, t=tids, code=st.integers(200, 400), message=st.binary(max_size=50)),
)


@given(messages)
@settings(max_examples=300, deadline=None)
def test_round_trip(message: krpc.Message) -> None:
    assert krpc.decode(krpc.encode(message)) == message


@given(st.binary(max_size=300))
@settings(max_examples=500, deadline=None)
def test_random_bytes_raise_only_krpc_error(data: bytes) -> None:
    with contextlib.suppress(KRPCError):
        krpc.decode(data)


@given(messages, st.integers(0, 400), st.integers(0, 255))
@settings(max_examples=400, deadline=None)
def test_mutated_packets_raise_only_krpc_error(message: krpc.Message, pos: int, byte: int) -> None:
    data = bytearray(krpc.encode(message))
    data[pos % len(data)] = byte
    with contextlib.suppress(KRPCError):
        krpc.decode(bytes(data))


@given(bvalues)
@settings(max_examples=300, deadline=None)
def test_krpc_encoder_matches_the_canonical_bencoder(value: object) -> None:
    from torrentgoat import bencode

    assert krpc._bencode(value) == bencode.encode(value)
