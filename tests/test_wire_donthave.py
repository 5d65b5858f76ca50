"""BEP 54 ``lt_donthave`` in the peer wire engine: codec, negotiation, sending, receiving, and the
picker's availability."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from torrentgoat.bitfield import Bitfield
from torrentgoat.errors import LocalProtocolError, RemoteProtocolError
from torrentgoat.picker import PiecePicker
from torrentgoat.picker.layout import PieceLayout
from torrentgoat.primitives import BlockRef
from torrentgoat.testing.wire import ConnectionPair, make_pair
from torrentgoat.wire import codec
from torrentgoat.wire.config import LT_DONTHAVE_ID, WireConfig
from torrentgoat.wire.events import BlockRequested, DontHaveReceived, RequestRejected
from torrentgoat.wire.messages import DontHave, Extended, Have, Request, Unchoke

PIECE = 32 * 1024
BLOCK = 16 * 1024


@given(st.integers(0, (1 << 32) - 1))
def test_dont_have_round_trips(index: int) -> None:
    payload = codec.encode_dont_have(DontHave(index=index))
    assert len(payload) == 4 and payload == index.to_bytes(4, "big")
    assert codec.decode_dont_have(payload) == DontHave(index=index)


@pytest.mark.parametrize("payload", [b"", b"\x00\x00\x01", b"\x00\x00\x00\x01\x00"])
def test_dont_have_of_the_wrong_size_is_a_protocol_error(payload: bytes) -> None:
    with pytest.raises(RemoteProtocolError, match="lt_donthave"):
        codec.decode_dont_have(payload)


def seeded_pair(*, a_config: WireConfig | None = None, b_config: WireConfig | None = None) -> ConnectionPair:
    """``a`` is a seed of 8 pieces, ``b`` has none; both handshakes done."""
    pair = make_pair(a_have=Bitfield(8, full=True), b_have=Bitfield(8), a_config=a_config, b_config=b_config)
    pair.pump()
    pair.take("a"), pair.take("b")
    return pair


def test_lt_donthave_is_offered_in_the_extension_handshake() -> None:
    pair = seeded_pair()
    assert pair.b.peer_ext_ids["lt_donthave"] == LT_DONTHAVE_ID == 7
    assert pair.a.peer_supports_dont_have and pair.b.peer_supports_dont_have
    off = seeded_pair(b_config=WireConfig(lt_donthave=False))
    assert "lt_donthave" not in off.a.peer_ext_ids and not off.a.peer_supports_dont_have


def test_retract_tells_the_peer_and_drops_its_requests_for_the_piece() -> None:
    pair = seeded_pair()
    a_have = pair.a.our_have
    assert a_have is not None
    pair.a.send(Unchoke())
    pair.pump()
    pair.b.send_request(3, 0, BLOCK)
    pair.b.send_request(3, BLOCK, BLOCK)
    pair.b.send_request(4, 0, BLOCK)
    pair.pump()
    assert [e for e in pair.take("a") if isinstance(e, BlockRequested)]
    a_have.discard(3)  # the torrent takes piece 3 out of its have-set, then tells the engine
    told, unanswered = pair.a.retract(3)
    assert told and unanswered == ()  # BEP 6: the requests were rejected
    assert not pair.a.has_peer_request(3, 0, BLOCK) and pair.a.has_peer_request(4, 0, BLOCK)
    pair.pump()
    events = pair.take("b")
    dont = [e for e in events if isinstance(e, DontHaveReceived)]
    assert dont == [DontHaveReceived(index=3, dropped=(BlockRef(3, 0, BLOCK), BlockRef(3, BLOCK, BLOCK)))]
    assert not [e for e in events if isinstance(e, RequestRejected)]  # already given up: late
    assert pair.b.peer_have is not None and 3 not in pair.b.peer_have and not pair.b.peer_has_all
    assert [r.piece for r in pair.b.outstanding_requests] == [4]
    assert not pair.b.can_request(3) or 3 not in pair.b.peer_have
    with pytest.raises(LocalProtocolError, match="does not have"):
        pair.b.send_request(3, 0, BLOCK)
    # announcing it again with have restores it on both sides
    a_have.add(3)
    pair.a.send(Have(index=3))
    pair.pump()
    assert 3 in pair.b.peer_have


def test_a_redundant_or_early_dont_have_is_ignored_and_out_of_range_is_an_error() -> None:
    pair = make_pair(a_have=Bitfield.from_indices(8, [1]), b_have=Bitfield(8))
    pair.pump()
    pair.take("b")
    pair.a.send(DontHave(index=5))  # never announced: nothing to take back
    pair.pump()
    assert not [e for e in pair.take("b") if isinstance(e, DontHaveReceived)]
    ext_id = pair.a.peer_ext_ids["lt_donthave"]
    pair.a.send(Extended(ext_id=ext_id, payload=(99).to_bytes(4, "big")))
    with pytest.raises(RemoteProtocolError, match="lt_donthave"):
        pair.pump()


def test_dont_have_from_a_seed_lowers_availability_by_one() -> None:
    picker = PiecePicker(PieceLayout(piece_length=PIECE, total_length=8 * PIECE), rng=random.Random(0))
    picker.peer_have_all("seed")
    picker.peer_joined("other", Bitfield.from_indices(8, [2, 3]))
    assert picker.availability(3) == 2 and picker.seeds == 1
    picker.peer_lost("seed", 3)
    assert picker.availability(3) == 1 and picker.availability(2) == 2 and picker.seeds == 0
    picker.peer_lost("seed", 3)  # redundant
    picker.peer_lost("other", 3)
    assert picker.availability(3) == 0


def test_without_fast_the_peer_cannot_be_refused_and_later_requests_are_dropped() -> None:
    no_fast = WireConfig(enable_fast=False)
    pair = make_pair(a_have=Bitfield(8, full=True), b_have=Bitfield(8), a_config=no_fast, b_config=no_fast)
    pair.pump()
    pair.a.send(Unchoke())
    pair.pump()
    pair.b.send_request(2, 0, BLOCK)
    pair.pump()
    a_have = pair.a.our_have
    assert a_have is not None
    a_have.discard(2)
    told, unanswered = pair.a.retract(2)
    assert told and unanswered == (BlockRef(2, 0, BLOCK),)
    pair.pump()
    # a request for the retracted piece (sent before the peer heard) is dropped, not an error
    pair.a.receive_data(codec.encode_message(Request(index=2, begin=BLOCK, length=BLOCK)))
    assert pair.a.next_event() is None
    assert not pair.a.has_peer_request(2, BLOCK, BLOCK)


def test_a_peer_without_lt_donthave_is_not_told() -> None:
    pair = seeded_pair(b_config=WireConfig(lt_donthave=False))
    a_have = pair.a.our_have
    assert a_have is not None
    a_have.discard(6)
    told, _ = pair.a.retract(6)
    assert not told
    with pytest.raises(LocalProtocolError, match="lt_donthave"):
        pair.a.send(DontHave(index=6))
    pair.pump()
    assert pair.b.peer_have is not None and 6 in pair.b.peer_have  # it will learn on reject
