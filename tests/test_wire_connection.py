"""PeerConnection state machine: connection pairs (no sockets) and hand-crafted peers."""

from __future__ import annotations

import struct

import pytest

from torrentgoat.bitfield import Bitfield
from torrentgoat.errors import LocalProtocolError, RemoteProtocolError
from torrentgoat.primitives import BLOCK_SIZE, BlockRef, InfoHash, PeerId
from torrentgoat.testing.wire import ConnectionPair, make_pair, unchoked
from torrentgoat.wire import codec
from torrentgoat.wire.config import UT_METADATA_ID, UT_PEX_ID
from torrentgoat.wire.connection import PeerConnection, Phase, PieceGeometry, WireConfig
from torrentgoat.wire.events import (
    AllowedFastReceived,
    BitfieldReceived,
    BlockReceived,
    BlockRequested,
    ConnectionTimedOut,
    Event,
    ExtensionHandshakeReceived,
    HandshakeReceived,
    HaveReceived,
    PeerChoked,
    PeerInterested,
    PeerNotInterested,
    PeerUnchoked,
    PieceSuggested,
    PortReceived,
    RequestCancelled,
    RequestRejected,
)
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
    NotInterested,
    Piece,
    Port,
    RejectRequest,
    Request,
    SuggestPiece,
    Unchoke,
    WireMessage,
)

IH = InfoHash(b"\x11" * 20)
NO_FAST = WireConfig(enable_fast=False)
NO_EXT = WireConfig(enable_extensions=False)
GEOMETRY = PieceGeometry(num_pieces=8, piece_length=32 * 1024, total_length=8 * 32 * 1024 - 1000)


def kinds(events: list[Event]) -> list[str]:
    return [type(e).__name__ for e in events]


def seed_pair(**kwargs: object) -> ConnectionPair:
    """a = downloader with nothing, b = seed; handshakes done and events cleared."""
    pair = make_pair(b_have=Bitfield(8, full=True), **kwargs)  # type: ignore[arg-type]
    pair.pump()
    pair.take("a")
    pair.take("b")
    return pair


# --- a hand-crafted remote peer ---------------------------------------------------------------------


class RawPeer:
    """Our engine ``conn`` (initiator) talking to a peer whose bytes the test writes by hand."""

    def __init__(
        self,
        *,
        fast: bool = True,
        extensions: bool = True,
        have: Bitfield | None = None,
        geometry: PieceGeometry | None = GEOMETRY,
        config: WireConfig | None = None,
    ) -> None:
        if geometry is not None and have is None:
            have = Bitfield(geometry.num_pieces)
        self.conn = PeerConnection(
            peer_id=PeerId(b"-TG0001-aaaaaaaaaaaa"),
            now=0.0,
            info_hash=IH,
            have=have,
            geometry=geometry,
            config=config,
        )
        self.sent = self.conn.data_to_send()
        reserved = codec.make_reserved(extensions=extensions, fast=fast)
        self.events = self.feed(
            codec.encode_handshake(
                Handshake(info_hash=IH, peer_id=PeerId(b"-XX0001-bbbbbbbbbbbb"), reserved=reserved)
            )
        )

    def feed(self, data: bytes) -> list[Event]:
        self.conn.receive_data(data)
        events = []
        while (event := self.conn.next_event()) is not None:
            events.append(event)
        return events

    def send(self, *messages: WireMessage) -> list[Event]:
        return self.feed(b"".join(codec.encode_message(m) for m in messages))

    def output(self) -> list[WireMessage]:
        data = self.conn.data_to_send()
        result: list[WireMessage] = []
        pos = 0
        while pos < len(data):
            (length,) = struct.unpack_from(">I", data, pos)
            frame = data[pos + 4 : pos + 4 + length]
            message = KeepAlive() if length == 0 else codec.decode_message(frame[0], frame[1:])
            assert message is not None
            result.append(message)
            pos += 4 + length
        return result


# --- handshake ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk", [1, 7, 1 << 20])
def test_handshake_initiator_and_responder(chunk: int) -> None:
    pair = make_pair(a_have=Bitfield.from_indices(8, [0, 3]), b_have=Bitfield(8, full=True), chunk=chunk)
    pair.pump()
    a_events, b_events = pair.take("a"), pair.take("b")
    assert kinds(a_events) == ["HandshakeReceived", "BitfieldReceived", "ExtensionHandshakeReceived"]
    assert kinds(b_events) == ["HandshakeReceived", "BitfieldReceived", "ExtensionHandshakeReceived"]
    assert isinstance(a_events[1], BitfieldReceived) and a_events[1].bitfield.complete
    assert isinstance(b_events[1], BitfieldReceived) and list(b_events[1].bitfield) == [0, 3]
    assert pair.a.fast and pair.a.extensions and pair.b.fast and pair.b.extensions
    assert pair.a.peer_ext_ids == {"ut_metadata": 1, "ut_pex": 2, "lt_donthave": 7, "ut_holepunch": 4}
    assert pair.a.peer_has_all and pair.b.peer_have is not None and pair.b.peer_have.count == 2
    assert pair.a.handshake_complete and pair.b.handshake_complete
    assert pair.a.our_phase is Phase.ACTIVE and pair.a.their_phase is Phase.ACTIVE
    ext = a_events[2]
    assert isinstance(ext, ExtensionHandshakeReceived)
    assert (
        ext.handshake.yourip == bytes([127, 0, 0, 1])
        and ext.handshake.reqq == 500
        and ext.handshake.upload_only
    )


def test_both_sides_send_handshake_first() -> None:
    pair = make_pair(b_knows_torrent=True, chunk=3)
    assert pair.b.data_to_send() != b""  # b sent its handshake before hearing from a
    pair = make_pair(b_knows_torrent=True, chunk=3)
    pair.pump()
    assert kinds(pair.take("a"))[0] == "HandshakeReceived"
    assert kinds(pair.take("b"))[0] == "HandshakeReceived"


def test_responder_waits_for_accept() -> None:
    pair = make_pair()
    pair.b_accept = None
    pair.pump()
    events = pair.take("b")
    assert kinds(events) == ["HandshakeReceived"]
    assert isinstance(events[0], HandshakeReceived)
    assert pair.b.next_event() is None
    with pytest.raises(LocalProtocolError):
        pair.b.send(Interested())
    with pytest.raises(LocalProtocolError):
        pair.b.accept(info_hash=InfoHash(bytes(20)))
    pair.b.accept(info_hash=events[0].handshake.info_hash, have=Bitfield(8), geometry=pair.a.geometry)
    pair.pump()
    assert "HandshakeReceived" in kinds(pair.take("a"))
    assert pair.b.handshake_complete


def test_info_hash_mismatch_and_bad_protocol() -> None:
    conn = PeerConnection(peer_id=PeerId(bytes(20)), now=0, info_hash=IH)
    other = Handshake(info_hash=InfoHash(bytes(20)), peer_id=PeerId(b"x" * 20))
    conn.receive_data(codec.encode_handshake(other))
    with pytest.raises(RemoteProtocolError, match="info-hash"):
        conn.next_event()
    with pytest.raises(RemoteProtocolError):  # sticky
        conn.next_event()
    conn = PeerConnection(peer_id=PeerId(bytes(20)), now=0, info_hash=IH)
    conn.receive_data(b"\x13BitTorrent protX")  # detected before 68 bytes arrive
    with pytest.raises(RemoteProtocolError, match="not a BitTorrent handshake"):
        conn.next_event()
    conn = PeerConnection(peer_id=PeerId(bytes(20)), now=0, info_hash=IH)
    conn.receive_data(b"GET / HTTP/1.1\r\n")
    with pytest.raises(RemoteProtocolError):
        conn.next_event()


def test_send_handshake_is_refused() -> None:
    pair = seed_pair()
    with pytest.raises(LocalProtocolError):
        pair.a.send(Handshake(info_hash=IH, peer_id=PeerId(bytes(20))))


def test_an_extension_handshake_that_misnames_our_ids_is_refused() -> None:
    """BEP 10: ``m`` names the ids *we* receive each extension under; announcing ``ut_pex`` as our
    ``ut_metadata`` id would make the peer's PEX look like broken metadata messages to us (a
    ``wire_send`` fuzz finding).  Our own handshake and ids a peer may not use (0) still go out."""
    pair = seed_pair()
    with pytest.raises(LocalProtocolError, match="ut_pex as id 1; we receive it as id 2"):
        pair.a.send(ExtendedHandshake(m={"ut_pex": UT_METADATA_ID}))
    with pytest.raises(LocalProtocolError, match="x_mine as id 1, our id for ut_metadata"):
        pair.a.send(ExtendedHandshake(m={"x_mine": UT_METADATA_ID}))
    pair.a.send(ExtendedHandshake(m={"ut_metadata": 0, "ut_pex": UT_PEX_ID, "x_other": 60}))
    pair.a.send(pair.a.our_extension_handshake())


# --- opening messages (BEP 6 / BEP 3) --------------------------------------------------------------


def test_opening_messages_we_send() -> None:
    assert RawPeer(have=Bitfield(8, full=True)).output()[0] == HaveAll()
    assert RawPeer(have=Bitfield(8)).output()[0] == HaveNone()
    assert RawPeer(have=Bitfield.from_indices(8, [1])).output()[0] == BitfieldMsg(data=b"\x40")
    nofast_empty = RawPeer(fast=False).output()
    assert all(not isinstance(m, BitfieldMsg | HaveNone) for m in nofast_empty)
    nofast_full = RawPeer(fast=False, have=Bitfield(8, full=True)).output()
    assert nofast_full[0] == BitfieldMsg(data=b"\xff")
    no_ext = RawPeer(extensions=False).output()
    assert not any(isinstance(m, Extended) for m in no_ext)
    with_ext = RawPeer().output()
    assert isinstance(with_ext[1], Extended) and with_ext[1].ext_id == 0


def test_bitfield_first_and_late_ones_only_add_pieces() -> None:
    """BEP 6 wants the bitfield / have all / have none first.  aria2 also sends a bitfield or have
    all later instead of many haves: accepted as added pieces.  A late have none is refused."""
    peer = RawPeer()
    peer.send(Extended(ext_id=0, payload=b"d1:md11:ut_metadatai3eee"), KeepAlive())
    assert kinds(peer.send(BitfieldMsg(data=b"\x80"))) == ["BitfieldReceived"]
    assert "HaveReceived" in kinds(peer.send(HaveAll()))
    with pytest.raises(RemoteProtocolError, match="first message"):
        peer.send(HaveNone())
    peer = RawPeer()
    peer.send(Interested())
    assert "HaveReceived" in kinds(peer.send(BitfieldMsg(data=b"\x80")))


def test_fast_messages_need_negotiation() -> None:
    for message in (HaveAll(), HaveNone(), SuggestPiece(index=0), AllowedFast(index=0)):
        peer = RawPeer(fast=False)
        with pytest.raises(RemoteProtocolError, match="fast"):
            peer.send(message)
    peer = RawPeer(extensions=False)
    with pytest.raises(RemoteProtocolError, match="extension"):
        peer.send(Extended(ext_id=0, payload=b"de"))
    pair = seed_pair(a_config=NO_FAST)
    with pytest.raises(LocalProtocolError):
        pair.a.send(SuggestPiece(index=0))
    with pytest.raises(LocalProtocolError):
        pair.b.send(AllowedFast(index=0))


def test_bitfield_validation() -> None:
    with pytest.raises(RemoteProtocolError):
        RawPeer().send(BitfieldMsg(data=b"\x80\x00"))  # wrong size for 8 pieces
    geometry = PieceGeometry(num_pieces=5, piece_length=16384, total_length=5 * 16384)
    with pytest.raises(RemoteProtocolError, match="spare"):
        RawPeer(geometry=geometry).send(BitfieldMsg(data=b"\x84"))


def test_have_and_index_checks() -> None:
    peer = RawPeer()
    assert peer.send(Have(index=3)) == [HaveReceived(index=3)]
    assert peer.send(Have(index=3)) == []  # duplicates do not double-count availability
    assert peer.conn.peer_have is not None and 3 in peer.conn.peer_have
    with pytest.raises(RemoteProtocolError, match="8 pieces"):
        peer.send(Have(index=8))
    with pytest.raises(RemoteProtocolError):
        RawPeer().send(SuggestPiece(index=99))
    with pytest.raises(RemoteProtocolError):
        RawPeer().send(AllowedFast(index=99))
    peer = RawPeer()
    assert peer.send(SuggestPiece(index=1), AllowedFast(index=2), Port(port=6881)) == [
        PieceSuggested(index=1),
        AllowedFastReceived(index=2),
        PortReceived(port=6881),
    ]


# --- choke / interest ---------------------------------------------------------------------------------


def test_choke_and_interest_flow() -> None:
    pair = seed_pair()
    pair.a.send(Interested())
    pair.a.send(Interested())  # idempotent
    pair.pump()
    assert pair.take("b") == [PeerInterested()]
    assert pair.b.peer_interested and pair.a.am_interested
    pair.b.send(Unchoke())
    pair.pump()
    assert pair.take("a") == [PeerUnchoked()]
    assert not pair.a.peer_choking and not pair.b.am_choking
    pair.b.send(Choke())
    pair.pump()
    assert pair.take("a") == [PeerChoked()]
    pair.a.send(NotInterested())
    pair.pump()
    assert pair.take("b") == [PeerNotInterested()]
    assert pair.a.data_to_send() == b""


def test_keepalive_frames_are_silent() -> None:
    peer = RawPeer()
    assert peer.send(KeepAlive(), KeepAlive()) == []


# --- requests ------------------------------------------------------------------------------------------


def test_request_and_block_transfer_byte_by_byte() -> None:
    pair = unchoked(seed_pair(chunk=1))
    last = GEOMETRY.num_pieces - 1
    last_size = GEOMETRY.piece_size(last)
    pair.a.send(Request(index=0, begin=0, length=BLOCK_SIZE))
    pair.a.send(Request(index=last, begin=BLOCK_SIZE, length=last_size - BLOCK_SIZE))
    assert pair.a.outstanding_requests == (
        BlockRef(0, 0, BLOCK_SIZE),
        BlockRef(last, BLOCK_SIZE, last_size - BLOCK_SIZE),
    )
    pair.pump()
    requested = pair.take("b")
    assert requested == [
        BlockRequested(index=0, begin=0, length=BLOCK_SIZE),
        BlockRequested(index=last, begin=BLOCK_SIZE, length=last_size - BLOCK_SIZE),
    ]
    for event in requested:
        assert isinstance(event, BlockRequested)
        assert pair.b.send_piece(event.index, event.begin, memoryview(bytes([event.index]) * event.length))
    assert not pair.b.send_piece(0, 0, bytes(BLOCK_SIZE))  # no longer pending
    pair.pump()
    blocks = pair.take("a")
    assert [(b.index, b.begin, len(b.data), b.late) for b in blocks if isinstance(b, BlockReceived)] == [
        (0, 0, BLOCK_SIZE, False),
        (last, BLOCK_SIZE, last_size - BLOCK_SIZE, False),
    ]
    assert pair.a.downloaded == pair.b.uploaded == BLOCK_SIZE + last_size - BLOCK_SIZE
    assert pair.a.outstanding_requests == () and pair.b.peer_requests == ()


def test_send_piece_is_zero_copy() -> None:
    pair = unchoked(seed_pair())
    pair.a.send(Request(index=2, begin=0, length=BLOCK_SIZE))
    pair.pump()
    block = memoryview(bytearray(BLOCK_SIZE))
    assert pair.b.send_piece(2, 0, block)
    buffers = pair.b.buffers_to_send()
    assert buffers[-1] is block and bytes(buffers[-2]) == codec.encode_piece_header(2, 0, BLOCK_SIZE)


def test_local_request_validation() -> None:
    pair = seed_pair()
    with pytest.raises(LocalProtocolError, match="chokes"):
        pair.a.send(Request(index=0, begin=0, length=BLOCK_SIZE))
    assert not pair.a.can_request(0)
    unchoked(pair)
    assert pair.a.can_request(0)
    for bad in (
        Request(index=8, begin=0, length=BLOCK_SIZE),
        Request(index=0, begin=32 * 1024 - 100, length=BLOCK_SIZE),
        Request(index=0, begin=0, length=0),
    ):
        with pytest.raises(LocalProtocolError, match="outside"):
            pair.a.send(bad)
    pair.a.send(Request(index=0, begin=0, length=BLOCK_SIZE))
    with pytest.raises(LocalProtocolError, match="duplicate"):
        pair.a.send(Request(index=0, begin=0, length=BLOCK_SIZE))
    # a peer without piece 0
    pair2 = unchoked(seed_pair())
    pair2.pump()
    other = make_pair(b_have=Bitfield.from_indices(8, [1]))
    other.pump()
    other.a.send(Interested())
    other.pump()
    other.b.send(Unchoke())
    other.pump()
    with pytest.raises(LocalProtocolError, match="does not have"):
        other.a.send(Request(index=0, begin=0, length=BLOCK_SIZE))


def test_request_limit_follows_peer_reqq() -> None:
    pair = unchoked(seed_pair(b_config=WireConfig(max_peer_requests=3)))
    assert pair.a.request_limit == 3
    for begin in (0, BLOCK_SIZE):
        pair.a.send(Request(index=0, begin=begin, length=BLOCK_SIZE))
    pair.a.send(Request(index=1, begin=0, length=BLOCK_SIZE))
    assert not pair.a.can_request()
    with pytest.raises(LocalProtocolError, match="outstanding"):
        pair.a.send(Request(index=1, begin=BLOCK_SIZE, length=BLOCK_SIZE))


def test_peer_request_for_missing_piece() -> None:
    # without BEP 6 the peer is dropped
    peer = RawPeer(fast=False, have=Bitfield.from_indices(8, [0]))
    peer.conn.send(Unchoke())
    with pytest.raises(RemoteProtocolError, match="do not have"):
        peer.send(Request(index=1, begin=0, length=BLOCK_SIZE))
    # with BEP 6 it is rejected
    peer = RawPeer(have=Bitfield.from_indices(8, [0]))
    peer.conn.send(Unchoke())
    peer.output()
    assert peer.send(Request(index=1, begin=0, length=BLOCK_SIZE)) == []
    assert peer.output() == [RejectRequest(index=1, begin=0, length=BLOCK_SIZE)]
    # out of the piece: always a violation
    with pytest.raises(RemoteProtocolError, match="outside"):
        peer.send(Request(index=0, begin=32 * 1024, length=BLOCK_SIZE))


def test_oversized_request_is_a_violation() -> None:
    peer = RawPeer(have=Bitfield(8, full=True))
    peer.conn.send(Unchoke())
    frame = struct.pack(">IBIII", 13, codec.MSG_REQUEST, 0, 0, codec.MAX_REQUEST_LENGTH + 1)
    with pytest.raises(RemoteProtocolError, match="length"):
        peer.feed(frame)


def test_requests_while_choking() -> None:
    # BEP 3: dropped silently
    peer = RawPeer(fast=False, have=Bitfield(8, full=True))
    assert peer.send(Request(index=0, begin=0, length=BLOCK_SIZE)) == []
    assert peer.conn.peer_requests == ()
    # BEP 6: rejected, except allowed-fast pieces
    peer = RawPeer(have=Bitfield(8, full=True))
    peer.conn.send(AllowedFast(index=5))
    peer.output()
    assert peer.send(Request(index=0, begin=0, length=BLOCK_SIZE)) == []
    assert peer.output() == [RejectRequest(index=0, begin=0, length=BLOCK_SIZE)]
    assert peer.send(Request(index=5, begin=0, length=BLOCK_SIZE)) == [
        BlockRequested(index=5, begin=0, length=BLOCK_SIZE)
    ]


def test_choke_drops_or_rejects_pending_requests() -> None:
    for fast in (True, False):
        peer = RawPeer(fast=fast, have=Bitfield(8, full=True))
        peer.conn.send(Unchoke())
        peer.send(
            Request(index=0, begin=0, length=BLOCK_SIZE),
            Request(index=1, begin=0, length=BLOCK_SIZE),
        )
        peer.output()
        peer.conn.send(Choke())
        out = peer.output()
        if fast:
            assert out == [
                Choke(),
                RejectRequest(index=0, begin=0, length=BLOCK_SIZE),
                RejectRequest(index=1, begin=0, length=BLOCK_SIZE),
            ]
        else:
            assert out == [Choke()]
        assert peer.conn.peer_requests == ()
        assert not peer.conn.send_piece(0, 0, bytes(BLOCK_SIZE))


def test_queue_bound_on_peer_requests() -> None:
    config = WireConfig(max_peer_requests=2, enable_fast=False)
    peer = RawPeer(fast=False, have=Bitfield(8, full=True), config=config)
    peer.conn.send(Unchoke())
    peer.send(Request(index=0, begin=0, length=100), Request(index=0, begin=100, length=100))
    with pytest.raises(RemoteProtocolError, match="more than 2"):
        peer.send(Request(index=0, begin=200, length=100))
    peer = RawPeer(have=Bitfield(8, full=True), config=WireConfig(max_peer_requests=2))
    peer.conn.send(Unchoke())
    peer.send(Request(index=0, begin=0, length=100), Request(index=0, begin=100, length=100))
    peer.output()
    assert peer.send(Request(index=0, begin=200, length=100)) == []
    assert peer.output() == [RejectRequest(index=0, begin=200, length=100)]


def test_peer_cancel() -> None:
    pair = unchoked(seed_pair())
    pair.a.send(Request(index=0, begin=0, length=BLOCK_SIZE))
    pair.pump()
    pair.take("b")
    pair.a.send(Cancel(index=0, begin=0, length=BLOCK_SIZE))
    pair.a.send(Cancel(index=0, begin=0, length=BLOCK_SIZE))  # already cancelled: no-op
    pair.pump()
    assert pair.take("b") == [RequestCancelled(index=0, begin=0, length=BLOCK_SIZE)]
    assert pair.take("a") == []  # the automatic reject (BEP 6) of a cancelled request is absorbed
    assert not pair.b.send_piece(0, 0, bytes(BLOCK_SIZE))


def test_late_block_after_cancel_is_delivered() -> None:
    pair = unchoked(seed_pair())
    pair.a.send(Request(index=0, begin=0, length=BLOCK_SIZE))
    pair.pump()
    assert pair.b.send_piece(0, 0, bytes(BLOCK_SIZE))
    pair.a.send(Cancel(index=0, begin=0, length=BLOCK_SIZE))  # crosses the block on the wire
    pair.pump()
    events = pair.take("a")
    assert len(events) == 1 and isinstance(events[0], BlockReceived) and events[0].late


def test_request_again_after_cancel_absorbs_both_answers() -> None:
    """Found by tools/fuzz wire_send: request, cancel, request the same block again while the peer
    chokes us (BEP 6): each request is answered by its own reject; the second one was taken for a
    reject of a request never sent, and the honest peer was dropped."""
    for cycles in (1, 2):
        pair = unchoked(seed_pair())
        pair.b.send(Choke())  # crosses our requests on the wire: every one is rejected (BEP 6)
        for _ in range(cycles):
            pair.a.send(Request(index=0, begin=0, length=BLOCK_SIZE))
            pair.a.send(Cancel(index=0, begin=0, length=BLOCK_SIZE))
        pair.a.send(Request(index=0, begin=0, length=BLOCK_SIZE))
        pair.pump()
        rejects = [e for e in pair.take("a") if isinstance(e, RequestRejected)]
        assert rejects == [RequestRejected(index=0, begin=0, length=BLOCK_SIZE)]
        assert pair.a.outstanding_requests == ()


def test_reject_rules() -> None:
    pair = unchoked(seed_pair())
    pair.a.send(Request(index=0, begin=0, length=BLOCK_SIZE))
    pair.pump()
    pair.b.send(RejectRequest(index=0, begin=0, length=BLOCK_SIZE))
    with pytest.raises(LocalProtocolError):
        pair.b.send(RejectRequest(index=0, begin=0, length=BLOCK_SIZE))
    pair.pump()
    assert pair.take("a") == [RequestRejected(index=0, begin=0, length=BLOCK_SIZE)]
    peer = RawPeer()
    with pytest.raises(RemoteProtocolError, match="never sent"):
        peer.send(RejectRequest(index=0, begin=0, length=BLOCK_SIZE))


def test_nonfast_choke_drops_our_requests() -> None:
    pair = unchoked(seed_pair(a_config=NO_FAST))
    pair.a.send(Request(index=0, begin=0, length=BLOCK_SIZE))
    pair.a.send(Request(index=1, begin=0, length=BLOCK_SIZE))
    pair.pump()
    pair.take("b")
    assert pair.b.send_piece(0, 0, bytes(BLOCK_SIZE))
    pair.b.send(Choke())  # the block and the choke both travel; block arrives first
    pair.pump()
    events = pair.take("a")
    assert events[0] == BlockReceived(index=0, begin=0, data=bytearray(BLOCK_SIZE))
    assert events[1] == PeerChoked(dropped=(BlockRef(1, 0, BLOCK_SIZE),))
    assert pair.a.outstanding_requests == ()


def test_allowed_fast_request_while_choked() -> None:
    pair = seed_pair()
    pair.b.send(AllowedFast(index=4))
    pair.pump()
    assert pair.take("a") == [AllowedFastReceived(index=4)]
    assert pair.a.can_request(4) and not pair.a.can_request(3)
    pair.a.send(Request(index=4, begin=0, length=BLOCK_SIZE))
    pair.pump()
    assert pair.take("b") == [BlockRequested(index=4, begin=0, length=BLOCK_SIZE)]


def test_unrequested_block_is_ignored() -> None:
    peer = RawPeer()
    peer.send(HaveAll(), Unchoke())
    assert peer.send(Piece(index=0, begin=0, data=b"abc")) == []
    assert peer.conn.unrequested_bytes == 3


# --- frame caps ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "frame",
    [
        struct.pack(">IB", 2**31, 7),  # huge piece
        struct.pack(">IB", 3, 7),  # piece without header
        struct.pack(">IB", 1 + 2, codec.MSG_BITFIELD),  # 2 bytes for 8 pieces
        struct.pack(">IB", 2 + (1 << 20), codec.MSG_EXTENDED),
        struct.pack(">IB", 2 + (1 << 17), 99),  # unknown id, too big
        struct.pack(">IB", 2, codec.MSG_CHOKE),  # choke with a payload
        struct.pack(">IB", 4, codec.MSG_HAVE),
    ],
)
def test_frame_caps_checked_before_buffering(frame: bytes) -> None:
    peer = RawPeer()
    with pytest.raises(RemoteProtocolError):
        peer.feed(frame)


def test_unknown_message_ids_are_skipped() -> None:
    peer = RawPeer()
    assert peer.feed(struct.pack(">IB", 4, 99) + b"abc" + codec.encode_message(Unchoke())) == [PeerUnchoked()]


# --- magnet: piece count learned later -------------------------------------------------------------------


def test_buffered_have_set_resolved_by_set_metadata() -> None:
    peer = RawPeer(geometry=None)
    assert peer.send(BitfieldMsg(data=b"\x80"), Have(index=2)) == []
    assert peer.output()[0] == HaveNone()
    peer.conn.set_metadata(GEOMETRY, Bitfield(8))
    events: list[Event] = []
    while (event := peer.conn.next_event()) is not None:
        events.append(event)
    assert len(events) == 1 and isinstance(events[0], BitfieldReceived)
    assert list(events[0].bitfield) == [0, 2]
    assert peer.send(Have(index=7)) == [HaveReceived(index=7)]


def test_buffered_have_all_and_bad_buffered_data() -> None:
    peer = RawPeer(geometry=None)
    peer.send(HaveAll())
    assert peer.conn.peer_has_all
    peer.conn.set_metadata(GEOMETRY, Bitfield(8))
    event = peer.conn.next_event()
    assert isinstance(event, BitfieldReceived) and event.bitfield.complete
    peer = RawPeer(geometry=None)
    peer.send(BitfieldMsg(data=b"\x80\x00"))
    with pytest.raises(RemoteProtocolError):
        peer.conn.set_metadata(GEOMETRY, Bitfield(8))
    peer = RawPeer(geometry=None)
    peer.send(Have(index=100))
    with pytest.raises(RemoteProtocolError, match="8 pieces"):
        peer.conn.set_metadata(GEOMETRY, Bitfield(8))


def test_requests_need_metadata() -> None:
    peer = RawPeer(geometry=None)
    peer.send(HaveAll(), Unchoke())
    with pytest.raises(LocalProtocolError):
        peer.conn.send(Request(index=0, begin=0, length=BLOCK_SIZE))
    peer.output()
    peer.send(Request(index=0, begin=0, length=BLOCK_SIZE))  # we have nothing: rejected (BEP 6)
    assert peer.output() == [RejectRequest(index=0, begin=0, length=BLOCK_SIZE)]


# --- timers ---------------------------------------------------------------------------------------


def test_keepalive_and_idle_timeout() -> None:
    pair = seed_pair()
    a = pair.a
    assert a.get_timer() == 60.0  # the handshake deadline (30 s) was cleared
    a.handle_timer(30.0)
    assert a.next_event() is None
    a.handle_timer(60.0)  # things were sent and received since start: nothing to do
    assert a.data_to_send() == b""
    a.handle_timer(120.0)  # a full tick of silence on our side: keep-alive
    assert a.data_to_send() == b"\x00\x00\x00\x00"
    a.handle_timer(180.0)
    assert a.next_event() is None
    a.handle_timer(240.0)
    event = a.next_event()
    assert isinstance(event, ConnectionTimedOut) and "silent" in event.reason


def test_handshake_timeout() -> None:
    conn = PeerConnection(peer_id=PeerId(bytes(20)), now=100.0, info_hash=IH)
    assert conn.get_timer() == 130.0
    conn.handle_timer(129.0)
    assert conn.next_event() is None
    conn.handle_timer(130.0)
    event = conn.next_event()
    assert isinstance(event, ConnectionTimedOut) and "handshake" in event.reason


def test_received_data_resets_idle() -> None:
    peer = RawPeer()
    for tick in range(1, 10):
        peer.send(KeepAlive())
        peer.conn.handle_timer(60.0 * tick)
        assert peer.conn.next_event() is None


def test_accept_with_torrent_specific_config() -> None:
    pair = make_pair()
    assert pair.b_accept is not None
    pair.b_accept["config"] = WireConfig(ut_pex=False, enable_fast=False)
    pair.pump()
    assert "ut_pex" not in pair.a.peer_ext_ids and "ut_metadata" in pair.a.peer_ext_ids
    assert not pair.a.fast and not pair.b.fast
    assert pair.a.peer_handshake is not None and not pair.a.peer_handshake.supports_fast
