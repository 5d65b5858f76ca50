"""Hypothesis properties of the piece picker: invariants under any sequence of swarm events."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from torrentgoat.bitfield import Bitfield
from torrentgoat.picker import PickerConfig, PieceLayout, PiecePicker
from torrentgoat.primitives import BLOCK_SIZE, BlockRef

PEERS = ["a", "b", "c", "d"]
STRATEGIES = ["rarest-first", "sequential", "random", "windowed-rarest"]


class PickerMachine(RuleBasedStateMachine):
    """A model of the swarm next to the picker; every step checks the picker against the model."""

    picker: PiecePicker

    @initialize(
        num_pieces=st.integers(1, 7),
        piece_blocks=st.integers(1, 3),
        tail=st.integers(0, 3 * BLOCK_SIZE - 1),
        strategy=st.sampled_from(STRATEGIES),
        endgame=st.sampled_from([True, True, True, False]),
        limit=st.sampled_from([1, 2, 2, 3]),
        cap=st.sampled_from([1, 2, 8, 8]),
        seed=st.integers(0, 2**32),
        initial_random=st.integers(0, 2),
    )
    def setup(
        self,
        num_pieces: int,
        piece_blocks: int,
        tail: int,
        strategy: str,
        endgame: bool,
        limit: int,
        cap: int,
        seed: int,
        initial_random: int,
    ) -> None:
        piece_length = piece_blocks * BLOCK_SIZE
        total = (num_pieces - 1) * piece_length + 1 + tail % piece_length
        self.layout = PieceLayout(piece_length, total)
        self.n = self.layout.num_pieces
        self.config = PickerConfig(
            strategy=strategy,
            endgame=endgame,
            endgame_max_requesters=limit,
            max_partial_pieces=cap,
            window_pieces=2,
            initial_random_pieces=initial_random,
        )
        self.picker = PiecePicker(self.layout, rng=random.Random(seed), config=self.config)
        self.peers: dict[str, set[int]] = {}
        self.prio = [1] * self.n
        self.requests: dict[BlockRef, set[str]] = {}
        self.received: set[BlockRef] = set()
        self.have: set[int] = set()
        self.ever_duplicated = False

    # -------------------------------------------------------------- swarm

    @rule(peer=st.sampled_from(PEERS), data=st.data())
    def join(self, peer: str, data: st.DataObject) -> None:
        if peer in self.peers:
            return
        pieces = data.draw(st.sets(st.integers(0, self.n - 1)))
        self.picker.peer_joined(peer, Bitfield.from_indices(self.n, pieces))
        self.peers[peer] = set(pieces)

    @rule(peer=st.sampled_from(PEERS), data=st.data())
    def have_one(self, peer: str, data: st.DataObject) -> None:
        if peer not in self.peers:
            return
        index = data.draw(st.integers(0, self.n - 1))
        self.picker.peer_have(peer, index)
        self.peers[peer].add(index)

    @rule(peer=st.sampled_from(PEERS))
    def have_all(self, peer: str) -> None:
        self.picker.peer_have_all(peer)
        self.peers[peer] = set(range(self.n))

    @rule(peer=st.sampled_from(PEERS))
    def leave(self, peer: str) -> None:
        if peer not in self.peers:
            return
        released = self.picker.peer_left(peer)
        assert set(released) == {b for b, who in self.requests.items() if peer in who}
        self._forget(peer)
        del self.peers[peer]

    def _forget(self, peer: str) -> None:
        for block in list(self.requests):
            self.requests[block].discard(peer)
            if not self.requests[block]:
                del self.requests[block]

    # -------------------------------------------------------------- our side

    @rule(data=st.data())
    def set_priority(self, data: st.DataObject) -> None:
        index = data.draw(st.integers(0, self.n - 1))
        prio = data.draw(st.integers(0, 3))
        self.picker.set_piece_priority(index, prio)
        self.prio[index] = prio

    @rule(peer=st.sampled_from(PEERS), count=st.integers(1, 6))
    def pick(self, peer: str, count: int) -> None:
        if peer not in self.peers:
            return
        peer_have = Bitfield.from_indices(self.n, self.peers[peer])
        got = self.picker.pick(peer, peer_have, count, now=0.0)
        assert len(got) <= count
        assert len(set(got)) == len(got)
        for block in got:
            assert block.piece in self.peers[peer], "peer lacks the piece"
            assert self.prio[block.piece] > 0, "skipped piece picked"
            assert block not in self.received and block.piece not in self.have, "received block picked"
            assert block == self.layout.block(block.piece, block.block_index)
            others = self.requests.get(block, set())
            assert peer not in others, "same block twice from one peer"
            if others:
                assert self.config.endgame and self.picker.in_endgame, "duplicate outside endgame"
                assert len(others) < self.config.endgame_max_requesters
                self.ever_duplicated = True
            self.requests.setdefault(block, set()).add(peer)

    @rule(count=st.integers(1, 6))
    def pick_round(self, count: int) -> None:
        """Every connected peer fills its queue: reaches endgame quickly."""
        for peer in sorted(self.peers):
            self.pick(peer, count)

    def _outstanding(self) -> list[tuple[BlockRef, str]]:
        return sorted((b, p) for b, who in self.requests.items() for p in who)

    @precondition(lambda self: bool(self.requests))
    @rule(data=st.data())
    def receive(self, data: st.DataObject) -> None:
        block, peer = data.draw(st.sampled_from(self._outstanding()))
        arrival = self.picker.block_received(peer, block)
        assert arrival.new == (block not in self.received)
        assert set(arrival.cancel) == self.requests[block] - {peer}
        del self.requests[block]
        self.received.add(block)

    @rule(peer=st.sampled_from(PEERS), data=st.data())
    def receive_unsolicited(self, peer: str, data: st.DataObject) -> None:
        index = data.draw(st.integers(0, self.n - 1))
        block = data.draw(st.sampled_from(self.layout.blocks(index)))
        arrival = self.picker.block_received(peer, block)
        if arrival.new:
            assert block not in self.received and index not in self.have
            self.received.add(block)
            self.requests.pop(block, None)
        else:
            assert arrival.cancel == ()
            if block in self.requests:
                self.requests[block].discard(peer)
                if not self.requests[block]:
                    del self.requests[block]

    @precondition(lambda self: bool(self.requests))
    @rule(data=st.data(), reject=st.booleans())
    def cancel(self, data: st.DataObject, reject: bool) -> None:
        block, peer = data.draw(st.sampled_from(self._outstanding()))
        if reject:
            self.picker.request_rejected(peer, block)
        else:
            self.picker.request_cancelled(peer, block)
        self.requests[block].discard(peer)
        if not self.requests[block]:
            del self.requests[block]

    @rule(peer=st.sampled_from(PEERS))
    def snub(self, peer: str) -> None:
        released = self.picker.peer_snubbed(peer)
        assert set(released) == {b for b, who in self.requests.items() if peer in who}
        self._forget(peer)

    @rule(data=st.data(), ok=st.booleans())
    def hash_checked(self, data: st.DataObject, ok: bool) -> None:
        complete = [i for i in range(self.n) if self.picker.piece_complete(i)]
        if not complete:
            return
        index = data.draw(st.sampled_from(complete))
        blocks = self.layout.blocks(index)
        assert all(b in self.received for b in blocks)
        if ok:
            self.picker.piece_verified(index)
            self.have.add(index)
            for b in blocks:
                self.requests.pop(b, None)
        else:
            contributors = self.picker.piece_failed(index)
            assert contributors
            for b in blocks:
                self.received.discard(b)
                self.requests.pop(b, None)

    # -------------------------------------------------------------- invariants

    @invariant()
    def availability_is_the_sum_of_have_sets(self) -> None:
        for i in range(self.n):
            expected = sum(1 for pieces in self.peers.values() if i in pieces)
            assert self.picker.availability(i) == expected

    @invariant()
    def requests_match_the_model(self) -> None:
        for peer in PEERS:
            assert self.picker.outstanding(peer) == {b for b, who in self.requests.items() if peer in who}

    @invariant()
    def partial_pieces_are_capped(self) -> None:
        assert len(self.picker.partial_pieces) <= self.picker.partial_cap

    @invariant()
    def completion(self) -> None:
        wanted = {i for i in range(self.n) if self.prio[i]}
        assert self.picker.is_complete == (wanted <= self.have)
        assert set(self.picker.have) == self.have


TestPickerMachine = PickerMachine.TestCase
TestPickerMachine.settings = settings(max_examples=150, stateful_step_count=60, deadline=None)


@settings(max_examples=60, deadline=None)
@given(
    num_pieces=st.integers(1, 40),
    piece_blocks=st.integers(1, 4),
    strategy=st.sampled_from(STRATEGIES),
    peers=st.lists(st.sets(st.integers(0, 39)), min_size=1, max_size=6),
    prios=st.lists(st.integers(0, 3), min_size=40, max_size=40),
    seed=st.integers(0, 2**32),
    fail_rate=st.floats(0, 0.5),
)
def test_download_runs_to_completion(
    num_pieces: int,
    piece_blocks: int,
    strategy: str,
    peers: list[set[int]],
    prios: list[int],
    seed: int,
    fail_rate: float,
) -> None:
    """Peers deliver whatever they are asked (some pieces fail their hash once); the picker always ends
    complete once every wanted piece some peer holds is verified."""
    rng = random.Random(seed)
    layout = PieceLayout.uniform(num_pieces, piece_blocks * BLOCK_SIZE)
    picker = PiecePicker(
        layout,
        rng=random.Random(seed),
        config=PickerConfig(strategy=strategy, max_partial_pieces=3),
        priorities=prios[:num_pieces],
    )
    haves = [Bitfield.from_indices(num_pieces, (i for i in p if i < num_pieces)) for p in peers]
    for k, have in enumerate(haves):
        picker.peer_joined(k, have)
    reachable = {i for h in haves for i in h if prios[i]}
    failed: set[int] = set()
    for _ in range(20 * num_pieces * piece_blocks + 50):
        if picker.is_complete:
            break
        progress = False
        for k, have in enumerate(haves):
            for block in picker.pick(k, have, rng.randint(1, 5), now=0.0):
                progress = True
                if picker.block_received(k, block).piece_complete:
                    if block.piece not in failed and rng.random() < fail_rate:
                        failed.add(block.piece)
                        delivered = set(picker.contributors(block.piece).values())
                        assert k in delivered
                        assert picker.piece_failed(block.piece) == delivered
                    else:
                        picker.piece_verified(block.piece)
        if not progress:
            break
    assert set(picker.have) == reachable
    wanted = {i for i in range(num_pieces) if prios[i]}
    assert picker.is_complete == (wanted <= reachable)


@settings(max_examples=150, deadline=None)
@given(
    availability=st.lists(st.integers(0, 5), min_size=1, max_size=30),
    prios=st.lists(st.integers(0, 3), min_size=30, max_size=30),
    have=st.sets(st.integers(0, 29)),
    peer=st.sets(st.integers(0, 29)),
    seed=st.integers(0, 2**32),
)
def test_rarest_first_starts_a_best_ranked_piece(
    availability: list[int], prios: list[int], have: set[int], peer: set[int], seed: int
) -> None:
    """The first new piece has the highest priority, then the lowest availability, among the pieces
    the peer has that are wanted and missing (libtorrent's ordering)."""
    n = len(availability)
    picker = PiecePicker(
        PieceLayout.uniform(n),
        rng=random.Random(seed),
        config=PickerConfig(initial_random_pieces=0),
        have=Bitfield.from_indices(n, (i for i in have if i < n)),
        priorities=prios[:n],
    )
    for k in range(max(availability)):
        picker.peer_joined(k, Bitfield.from_indices(n, (i for i, a in enumerate(availability) if a > k)))
    peer_have = Bitfield.from_indices(n, (i for i in peer if i < n))
    picker.peer_joined("me", peer_have)
    avail = [a + (i in peer_have) for i, a in enumerate(availability)]
    got = picker.pick("me", peer_have, 1, now=0.0)
    eligible = [i for i in peer_have if prios[i] and i not in have]
    if not eligible:
        assert got == []
        return
    (block,) = got
    best = min((-prios[i], avail[i]) for i in eligible)
    assert (-prios[block.piece], avail[block.piece]) == best
