"""BEP 55 ``ut_holepunch`` in the wire layer: the codec, the relay's rule with its four error codes,
the initiator's memory, and the messages between two engines (negotiation, ignoring what BEP 55 says
to ignore)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from torrentgoat.bitfield import Bitfield
from torrentgoat.errors import LocalProtocolError, RemoteProtocolError
from torrentgoat.primitives import PeerAddress
from torrentgoat.testing.wire import ConnectionPair, make_pair
from torrentgoat.wire.config import UT_HOLEPUNCH_ID, WireConfig
from torrentgoat.wire.events import HolepunchReceived
from torrentgoat.wire.holepunch import (
    PEX_HOLEPUNCH,
    PEX_UTP,
    HolepunchPeer,
    HolepunchState,
    decode_holepunch,
    encode_holepunch,
    error_name,
    relay,
)
from torrentgoat.wire.messages import Extended, Holepunch, HolepunchErrorCode, HolepunchType, Pex, PexPeer
from torrentgoat.wire.pex import decode_pex, encode_pex, pex_flags

R = HolepunchType.RENDEZVOUS
C = HolepunchType.CONNECT
E = HolepunchType.ERROR

# --------------------------------------------------------------------------------------------- codec


def test_rendezvous_ipv4_bytes_are_as_bep55_lays_them_out() -> None:
    payload = encode_holepunch(Holepunch(msg_type=R, address=PeerAddress("10.1.2.3", 6881)))
    assert payload == bytes([0, 0, 10, 1, 2, 3]) + (6881).to_bytes(2, "big") + b"\x00\x00\x00\x00"


def test_error_ipv6_carries_its_code() -> None:
    message = Holepunch(
        msg_type=E, address=PeerAddress("2001:db8::1", 51413), error=HolepunchErrorCode.NO_SELF
    )
    payload = encode_holepunch(message)
    assert (
        payload[:2] == b"\x02\x01" and len(payload) == 2 + 16 + 2 + 4 and payload[-4:] == b"\x00\x00\x00\x04"
    )
    assert decode_holepunch(payload) == message


ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(str)


@given(
    st.sampled_from(list(HolepunchType)),
    st.one_of(ipv4, ipv6),
    st.integers(1, 65535),
    st.sampled_from([1, 2, 3, 4]),
)
def test_round_trip(kind: HolepunchType, host: str, port: int, code: int) -> None:
    error = code if kind is E else 0
    message = Holepunch(msg_type=kind, address=PeerAddress(host, port), error=error)
    assert decode_holepunch(encode_holepunch(message)) == message


def test_libtorrent_form_without_err_code_is_read() -> None:
    """libtorrent writes ``err_code`` only in errors: a rendezvous/connect of 8 (20) bytes."""
    short = bytes([1, 0, 127, 0, 0, 1, 0x1A, 0xE1])
    assert decode_holepunch(short) == Holepunch(msg_type=C, address=PeerAddress("127.0.0.1", 6881))


def test_unknown_error_code_is_kept_as_a_number() -> None:
    payload = bytes([2, 0, 1, 2, 3, 4, 0, 80]) + (9).to_bytes(4, "big")
    message = decode_holepunch(payload)
    assert message.error == 9 and error_name(message.error) == "error 9"
    assert [error_name(c) for c in (1, 2, 3, 4)] == ["NoSuchPeer", "NotConnected", "NoSupport", "NoSelf"]


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\x00",
        bytes([3, 0, 1, 2, 3, 4, 0, 80]),  # unknown msg_type
        bytes([0, 2, 1, 2, 3, 4, 0, 80]),  # unknown addr_type
        bytes([0, 0, 1, 2, 3, 4, 0]),  # short
        bytes([0, 0, 1, 2, 3, 4, 0, 80, 0, 0]),  # neither 8 nor 12 bytes
        bytes([2, 0, 1, 2, 3, 4, 0, 80]),  # an error without its code
        bytes([0, 1, 1, 2, 3, 4, 0, 80]),  # IPv6 type, IPv4 length
        bytes([0, 0, 1, 2, 3, 4, 0, 0]),  # port 0
    ],
)
def test_malformed_payloads_are_protocol_errors(payload: bytes) -> None:
    with pytest.raises(RemoteProtocolError, match="ut_holepunch"):
        decode_holepunch(payload)


# --------------------------------------------------------------------------------------- the relay

A = PeerAddress("10.0.0.1", 6881)
B = PeerAddress("10.0.0.2", 6882)
RELAY = PeerAddress("10.0.0.9", 6889)


def peer(
    key: str, address: PeerAddress, *, supports: bool = True, extra: PeerAddress | None = None
) -> HolepunchPeer:
    endpoints = frozenset({address} | ({extra} if extra else set()))
    return HolepunchPeer(key=key, endpoints=endpoints, reach=address, supports=supports)


def test_relay_sends_connect_to_both_sides_with_the_other_ones_endpoint() -> None:
    a, b = peer("a", A), peer("b", B, extra=PeerAddress("10.0.0.2", 40000))
    assert relay(a, B, [a, b], ours={RELAY}) == [
        ("a", Holepunch(msg_type=C, address=B)),
        ("b", Holepunch(msg_type=C, address=A)),
    ]
    # the target may be named by any address it is known by; connect carries where uTP reaches it
    assert relay(a, PeerAddress("10.0.0.2", 40000), [a, b])[0] == ("a", Holepunch(msg_type=C, address=B))


@pytest.mark.parametrize(
    ("target", "code"),
    [
        (PeerAddress("0.0.0.0", 6882), HolepunchErrorCode.NO_SUCH_PEER),
        (PeerAddress("224.0.0.1", 6882), HolepunchErrorCode.NO_SUCH_PEER),
        (RELAY, HolepunchErrorCode.NO_SELF),  # BEP 55: the endpoint belongs to the relay
        (A, HolepunchErrorCode.NO_SELF),  # libtorrent: the initiator's own
        (PeerAddress("10.0.0.3", 6883), HolepunchErrorCode.NOT_CONNECTED),
        (PeerAddress("10.0.0.4", 6884), HolepunchErrorCode.NO_SUPPORT),
    ],
)
def test_relay_errors_echo_the_requested_endpoint(target: PeerAddress, code: HolepunchErrorCode) -> None:
    a = peer("a", A)
    others = [a, peer("b", B), peer("old", PeerAddress("10.0.0.4", 6884), supports=False)]
    assert relay(a, target, others, ours={RELAY}) == [
        ("a", Holepunch(msg_type=E, address=target, error=code))
    ]


def test_a_requester_without_the_extension_is_ignored() -> None:
    """BEP 55: the relay MUST ignore holepunch messages of a peer that did not offer the extension."""
    a = peer("a", A, supports=False)
    assert relay(a, B, [a, peer("b", B)]) == []


def test_a_target_of_the_other_address_family_cannot_be_reached() -> None:
    a, b6 = peer("a", A), peer("b", PeerAddress("2001:db8::2", 6882))
    [(key, message)] = relay(a, PeerAddress("2001:db8::2", 6882), [a, b6])
    assert key == "a" and message.error == HolepunchErrorCode.NO_SUCH_PEER


# ------------------------------------------------------------------------------ initiator's memory


def test_a_failed_dial_asks_the_introducer_once_a_minute() -> None:
    state = HolepunchState(retry_after=60.0)
    state.introduced(A, PEX_UTP, via="r1")  # no 0x08: not a hole-punch target
    state.introduced(B, PEX_UTP | PEX_HOLEPUNCH, via="r1")
    assert state.relay_for(A, now=0.0) is None
    assert state.introducer(B) == "r1"
    assert state.relay_for(B, now=0.0) == "r1"
    assert state.relay_for(B, now=30.0) is None
    state.introduced(B, PEX_HOLEPUNCH, via="r2")  # a later introduction replaces the relay
    assert state.relay_for(B, now=61.0) == "r2"
    state.peer_left("r2")
    assert state.relay_for(B, now=200.0) is None and len(state) == 0


def test_introductions_are_bounded() -> None:
    state = HolepunchState(max_introductions=3)
    for port in range(1, 6):
        state.introduced(PeerAddress("10.0.0.1", port), PEX_HOLEPUNCH, via="r")
    assert len(state) == 3 and state.introducer(PeerAddress("10.0.0.1", 1)) is None


def test_connect_orders_and_rendezvous_are_rate_limited_per_peer() -> None:
    state = HolepunchState(max_connects=2, window=60.0)
    assert state.connect_allowed("r", 0.0) and state.connect_allowed("r", 1.0)
    assert not state.connect_allowed("r", 2.0)
    assert state.connect_allowed("other", 2.0)
    assert state.connect_allowed("r", 60.5)
    assert state.relay_allowed("r", 0.0) and state.relay_allowed("r", 1.0)
    assert not state.relay_allowed("r", 2.0)  # a separate budget, the same size
    state.peer_left("r")
    assert state.relay_allowed("r", 3.0)


def test_pex_flags() -> None:
    flags = pex_flags(encrypted=True, seed=False, utp=True, holepunch=True, reachable=True)
    assert flags == 0x01 | PEX_UTP | PEX_HOLEPUNCH | 0x10
    assert pex_flags(encrypted=False, seed=True, utp=False, holepunch=False, reachable=False) == 0x02
    message = Pex(added=(PexPeer(address=A, flags=flags),))
    assert decode_pex(encode_pex(message)).added[0].flags == flags


# ---------------------------------------------------------------------------- between two engines


def connected_pair(
    *, a_config: WireConfig | None = None, b_config: WireConfig | None = None
) -> ConnectionPair:
    pair = make_pair(a_have=Bitfield(8, full=True), b_have=Bitfield(8), a_config=a_config, b_config=b_config)
    pair.pump()
    pair.take("a"), pair.take("b")
    return pair


def test_ut_holepunch_is_offered_and_messages_arrive_as_events() -> None:
    pair = connected_pair()
    assert pair.b.peer_ext_ids["ut_holepunch"] == UT_HOLEPUNCH_ID == 4
    assert pair.a.peer_supports_holepunch and pair.b.peer_supports_holepunch
    message = Holepunch(msg_type=R, address=B)
    pair.a.send(message)
    pair.pump()
    assert pair.take("b") == [HolepunchReceived(message=message)]


def test_without_the_extension_nothing_is_sent_or_taken() -> None:
    pair = connected_pair(b_config=WireConfig(ut_holepunch=False))
    assert "ut_holepunch" not in pair.a.peer_ext_ids and not pair.a.peer_supports_holepunch
    with pytest.raises(LocalProtocolError, match="ut_holepunch"):
        pair.a.send(Holepunch(msg_type=R, address=B))
    with pytest.raises(LocalProtocolError, match="ut_holepunch"):
        pair.b.send(Holepunch(msg_type=R, address=B))
    # a peer that did not offer it sends one anyway: ignored silently (BEP 55), not a protocol error
    payload = encode_holepunch(Holepunch(msg_type=R, address=B))
    pair.b.send(Extended(ext_id=UT_HOLEPUNCH_ID, payload=payload))
    pair.pump()
    assert pair.take("a") == []


def test_a_malformed_holepunch_message_is_ignored() -> None:
    pair = connected_pair()
    pair.a.send(Extended(ext_id=UT_HOLEPUNCH_ID, payload=b"\x07\x00garbage"))
    pair.a.send(Holepunch(msg_type=C, address=A))
    pair.pump()
    assert pair.take("b") == [HolepunchReceived(message=Holepunch(msg_type=C, address=A))]
