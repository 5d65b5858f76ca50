"""Hypothesis state machine: two engines driving each other with random *legal* sends.

Whatever one side is allowed to send, the other must accept (no RemoteProtocolError), and after
every exchange both views of the shared state agree: choke/interest flags, have-sets, requests.
"""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from torrentgoat.bitfield import Bitfield
from torrentgoat.primitives import BLOCK_SIZE, PeerAddress
from torrentgoat.testing.wire import ConnectionPair, make_pair
from torrentgoat.wire.connection import PeerConnection, WireConfig
from torrentgoat.wire.events import BlockReceived, Event
from torrentgoat.wire.messages import (
    AllowedFast,
    Cancel,
    Choke,
    Have,
    Interested,
    KeepAlive,
    NotInterested,
    Pex,
    PexPeer,
    RejectRequest,
    Request,
    SuggestPiece,
    Unchoke,
)

NUM_PIECES = 6
PIECE_LENGTH = 2 * BLOCK_SIZE
TOTAL = NUM_PIECES * PIECE_LENGTH - 5000


class WirePair(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.pair: ConnectionPair | None = None
        self.haves: dict[str, Bitfield] = {}
        self.received_blocks = 0

    @rule(
        a_bits=st.sets(st.integers(0, NUM_PIECES - 1)),
        b_bits=st.sets(st.integers(0, NUM_PIECES - 1)),
        fast=st.booleans(),
        chunk=st.sampled_from([1, 5, 1 << 20]),
    )
    def start(self, a_bits: set[int], b_bits: set[int], fast: bool, chunk: int) -> None:
        if self.pair is not None:
            return
        self.haves = {
            "a": Bitfield.from_indices(NUM_PIECES, a_bits),
            "b": Bitfield.from_indices(NUM_PIECES, b_bits),
        }
        self.pair = make_pair(
            num_pieces=NUM_PIECES,
            piece_length=PIECE_LENGTH,
            total_length=TOTAL,
            a_have=self.haves["a"],
            b_have=self.haves["b"],
            a_config=WireConfig(enable_fast=fast),
            chunk=chunk,
        )
        self.pair.on_event = self.on_event
        self.pair.pump()

    def on_event(self, pair: ConnectionPair, conn: PeerConnection, event: Event) -> None:
        if isinstance(event, BlockReceived):
            self.received_blocks += 1

    def side(self, name: str) -> PeerConnection:
        assert self.pair is not None
        return self.pair.a if name == "a" else self.pair.b

    sides = st.sampled_from(["a", "b"])

    @rule(
        name=sides, message=st.sampled_from([Choke(), Unchoke(), Interested(), NotInterested(), KeepAlive()])
    )
    def state_message(self, name: str, message: object) -> None:
        if self.pair is None:
            return
        self.side(name).send(message)  # type: ignore[arg-type]
        self.pair.pump()

    @rule(name=sides, data=st.data())
    def request(self, name: str, data: st.DataObject) -> None:
        if self.pair is None:
            return
        conn = self.side(name)
        assert conn.peer_have is not None and conn.geometry is not None
        candidates = [
            (index, begin)
            for index in conn.peer_have
            for begin in range(0, conn.geometry.piece_size(index), BLOCK_SIZE)
            if conn.can_request(index)
        ]
        if not candidates:
            return
        index, begin = data.draw(st.sampled_from(candidates))
        length = min(BLOCK_SIZE, conn.geometry.piece_size(index) - begin)
        if any(r.piece == index and r.begin == begin for r in conn.outstanding_requests):
            return
        conn.send(Request(index=index, begin=begin, length=length))
        self.pair.pump()

    @rule(name=sides, reject=st.booleans())
    def answer(self, name: str, reject: bool) -> None:
        if self.pair is None:
            return
        conn = self.side(name)
        pending = conn.peer_requests
        if not pending:
            return
        ref = pending[0]
        if reject and conn.fast:
            conn.send(RejectRequest(index=ref.piece, begin=ref.begin, length=ref.length))
        else:
            assert conn.send_piece(ref.piece, ref.begin, bytes(ref.length))
        self.pair.pump()

    @rule(name=sides)
    def cancel(self, name: str) -> None:
        if self.pair is None:
            return
        conn = self.side(name)
        if conn.outstanding_requests:
            ref = conn.outstanding_requests[-1]
            conn.send(Cancel(index=ref.piece, begin=ref.begin, length=ref.length))
            self.pair.pump()

    @rule(name=sides, index=st.integers(0, NUM_PIECES - 1))
    def have(self, name: str, index: int) -> None:
        if self.pair is None:
            return
        if self.haves[name].add(index):
            self.side(name).send(Have(index=index))
            self.pair.pump()

    @rule(name=sides, index=st.integers(0, NUM_PIECES - 1), suggest=st.booleans())
    def fast_messages(self, name: str, index: int, suggest: bool) -> None:
        if self.pair is None or not self.side(name).fast:
            return
        self.side(name).send(SuggestPiece(index=index) if suggest else AllowedFast(index=index))
        self.pair.pump()

    @rule(name=sides, n=st.integers(0, 3))
    def pex(self, name: str, n: int) -> None:
        if self.pair is None:
            return
        added = tuple(PexPeer(address=PeerAddress(f"10.0.0.{i + 1}", 6881 + i)) for i in range(n))
        self.side(name).send(Pex(added=added))
        self.pair.pump()

    @invariant()
    def views_agree(self) -> None:
        if self.pair is None:
            return
        a, b = self.pair.a, self.pair.b
        assert a.am_choking == b.peer_choking and b.am_choking == a.peer_choking
        assert a.am_interested == b.peer_interested and b.am_interested == a.peer_interested
        assert a.peer_have == self.haves["b"] and b.peer_have == self.haves["a"]
        # every request the other side still has queued is one we are still waiting for
        for x, y in ((a, b), (b, a)):
            assert set(y.peer_requests) <= set(x.outstanding_requests)
            if not x.fast:
                continue
            assert set(x.outstanding_requests) == set(y.peer_requests)
        assert not [
            e for e in self.pair.a_events + self.pair.b_events if type(e).__name__ == "ConnectionTimedOut"
        ]
        self.pair.a_events.clear()
        self.pair.b_events.clear()


WirePair.TestCase.settings = settings(max_examples=150, stateful_step_count=30, deadline=None)
test_wire_pair = WirePair.TestCase
