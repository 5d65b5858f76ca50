"""The download hot path's batch forms do what their one-at-a-time forms do (issue 15): the picker's
``blocks_received``, the wire engine's ``send_requests`` and the piece buffers' ``write_blocks``."""

from __future__ import annotations

import random
from types import SimpleNamespace
from typing import cast

import pytest
from test_wire_connection import seed_pair, unchoked

from torrentgoat.bitfield import Bitfield
from torrentgoat.errors import LocalProtocolError
from torrentgoat.picker import BlocksArrival, PickerConfig, PieceLayout, PiecePicker
from torrentgoat.primitives import BLOCK_SIZE, BlockRef
from torrentgoat.testing.shards import make_info
from torrentgoat.torrent import TorrentConfig
from torrentgoat.torrent.blocks import BlockFlow
from torrentgoat.torrent.handle import TorrentHandle
from torrentgoat.torrent.pieces import PieceBuffers
from torrentgoat.torrent.policy import DEEP_PIPELINE, REFILL_BATCH, refill_due
from torrentgoat.torrent.swarm import Swarm
from torrentgoat.wire.config import WireConfig
from torrentgoat.wire.messages import Choke, Request

PEERS = ("p", "q", "r")


def picker(num_pieces: int = 6, blocks: int = 4, **config: object) -> PiecePicker:
    config.setdefault("initial_random_pieces", 0)
    pp = PiecePicker(
        PieceLayout.uniform(num_pieces, blocks * BLOCK_SIZE),
        rng=random.Random(1),
        config=PickerConfig(**config),  # type: ignore[arg-type]
    )
    for peer in PEERS:
        pp.peer_joined(peer, Bitfield(num_pieces, full=True))
    return pp


def state(pp: PiecePicker, num_pieces: int = 6, blocks: int = 4) -> list[object]:
    return [
        [pp.block_state(i, b) for i in range(num_pieces) for b in range(blocks)],
        pp.partial_pieces,
        {peer: sorted(pp.outstanding(peer)) for peer in PEERS},
        [pp.contributors(i) for i in range(num_pieces)],
    ]


def one_by_one(
    one: PiecePicker, peer: str, run: list[tuple[int, int, bytes]], got: BlocksArrival[bytes]
) -> list[tuple[int, int, bytes]]:
    """Give ``run`` to ``one`` block by block and check that ``got`` (``blocks_received`` of the same
    run on a twin picker) says the same; returns the new blocks."""
    expected_new, expected_complete, expected_cancel = [], [], []
    for index, begin, data in run:
        arrival = one.block_received(peer, BlockRef(index, begin, len(data)))
        if arrival.new:
            expected_new.append((index, begin, data))
        if arrival.piece_complete:
            expected_complete.append(index)
        expected_cancel += [(k, BlockRef(index, begin, len(data))) for k in arrival.cancel]
    assert got.error is None
    assert (got.new, got.complete, got.cancel) == (expected_new, expected_complete, expected_cancel)
    return expected_new


@pytest.mark.parametrize("seed", range(12))
def test_blocks_received_matches_block_received_one_by_one(seed: int) -> None:
    rng = random.Random(seed)
    one, many = picker(max_partial_pieces=3), picker(max_partial_pieces=3)
    for pp in (one, many):  # the same requests (endgame duplicates included) in both
        pp.pick("p", Bitfield(6, full=True), 10, now=1.0)
        pp.pick("q", Bitfield(6, full=True), 6, now=2.0)
        pp.pick("r", Bitfield(6, full=True), 30, now=3.0)
    for _ in range(6):
        peer = rng.choice(PEERS)
        run = [(rng.randrange(6), rng.randrange(4) * BLOCK_SIZE, b"x" * BLOCK_SIZE) for _ in range(5)]
        run.sort(key=lambda block: block[0])  # a socket read holds runs of pieces
        got = many.blocks_received(peer, run)
        expected_new = one_by_one(one, peer, run, got)
        assert (got.size, got.new_size) == (5 * BLOCK_SIZE, len(expected_new) * BLOCK_SIZE)
        assert state(many) == state(one)


def twins(seed: int) -> tuple[PiecePicker, PiecePicker, random.Random]:
    """Two pickers in the same state: 6 pieces of 8 blocks (the last 7 1/2 blocks long), requests from
    three peers with endgame duplicates, some given back (rejected, a peer choking us) and one piece
    held -- so runs of blocks meet blocks in every state."""
    rng = random.Random(seed)
    layout = PieceLayout(8 * BLOCK_SIZE, 48 * BLOCK_SIZE - BLOCK_SIZE // 2)
    pair = []
    for _ in range(2):
        pp = PiecePicker(
            layout, rng=random.Random(1), config=PickerConfig(initial_random_pieces=0, max_partial_pieces=6)
        )
        for peer in PEERS:
            pp.peer_joined(peer, Bitfield(6, full=True))
        pair.append(pp)
    one, many = pair
    script = random.Random(seed)
    for pp in (one, many):
        script.seed(seed)
        pp.hold(5)
        for peer in PEERS:
            for block in pp.pick(peer, Bitfield(6, full=True), script.randrange(4, 14), now=script.random()):
                if script.random() < 0.15:
                    pp.request_rejected(peer, block)
        if script.random() < 0.5:
            pp.peer_choked_us("q")
        pp.unreserve(5, [script.randrange(8) for _ in range(3)])
        pp.pick("r", Bitfield(6, full=True), 60, now=9.0)  # the rest, then endgame duplicates
    assert state(one) == state(many)
    return one, many, rng


def size_of(index: int, b: int) -> int:
    return BLOCK_SIZE // 2 if (index, b) == (5, 7) else BLOCK_SIZE


@pytest.mark.parametrize("seed", range(40))
def test_blocks_received_on_runs_matches_block_received_one_by_one(seed: int) -> None:
    one, many, rng = twins(seed)
    for _ in range(5):
        peer = rng.choice(PEERS)
        run = []
        for _ in range(rng.randrange(1, 4)):  # a read: runs of consecutive blocks, of one piece each
            index, first = rng.randrange(6), rng.randrange(8)
            run += [
                (index, b * BLOCK_SIZE, b"x" * size_of(index, b)) for b in range(first, rng.randint(first, 8))
            ]
        got = many.blocks_received(peer, run)
        expected_new = one_by_one(one, peer, run, got)
        assert got.size == sum(len(data) for _, _, data in run)
        assert got.new_size == sum(len(data) for _, _, data in expected_new)
        assert state(many, blocks=8) == state(one, blocks=8)
        assert [
            many.requesters(BlockRef(i, b * BLOCK_SIZE, size_of(i, b))) for i in range(6) for b in range(8)
        ] == [one.requesters(BlockRef(i, b * BLOCK_SIZE, size_of(i, b))) for i in range(6) for b in range(8)]


def test_a_run_stops_at_a_block_past_the_end_of_its_piece() -> None:
    pp = PiecePicker(PieceLayout(4 * BLOCK_SIZE, 8 * BLOCK_SIZE - 100), rng=random.Random(1))
    pp.peer_joined("p", Bitfield(2, full=True))
    pp.pick("p", Bitfield(2, full=True), 8, now=1.0)
    run = [(1, b * BLOCK_SIZE, b"x" * BLOCK_SIZE) for b in range(4)]  # the last one is 100 bytes too long
    got = pp.blocks_received("p", run)
    assert got.new == run[:3] and got.error is not None
    assert [pp.block_state(1, b) for b in range(4)] == ["received"] * 3 + ["requested"]


@pytest.mark.parametrize("seed", range(40))
def test_pick_takes_the_free_blocks_in_order_around_blocks_in_other_states(seed: int) -> None:
    one, _, rng = twins(seed)
    for index in one.partial_pieces:  # free some blocks in the middle of runs
        for b in range(8):
            if one.block_state(index, b) == "requested" and rng.random() < 0.3:
                for peer in one.requesters(BlockRef(index, b * BLOCK_SIZE, size_of(index, b))):
                    one.request_cancelled(peer, BlockRef(index, b * BLOCK_SIZE, size_of(index, b)))
    free = [
        (i, b * BLOCK_SIZE, size_of(i, b))
        for i in sorted(one.partial_pieces)
        for b in range(8)
        if one.block_state(i, b) == "free"
    ]
    spans = one.pick_spans("s", Bitfield(6, full=True), 100, now=10.0)
    assert sorted(spans[: len(free)]) == free  # every free block of a started piece, none twice
    assert all(one.block_state(i, begin // BLOCK_SIZE) == "requested" for i, begin, _ in spans)
    assert set(one.outstanding("s")) == {BlockRef(*span) for span in spans}


def test_blocks_received_stops_at_a_block_off_the_grid() -> None:
    pp = picker()
    pp.pick("p", Bitfield(6, full=True), 4, now=1.0)
    good = (0, 0, b"x" * BLOCK_SIZE)
    got = pp.blocks_received("p", [good, (0, 100, b"x" * BLOCK_SIZE), (0, BLOCK_SIZE, b"x" * BLOCK_SIZE)])
    assert got.new == [good] and got.error is not None
    assert pp.block_state(0, 0) == "received" and pp.block_state(0, 1) == "requested"
    assert pp.blocks_received("p", [(9, 0, b"x")]).error is not None


@pytest.mark.parametrize("endgame", [False, True])
def test_pick_spans_is_pick_as_tuples(endgame: bool) -> None:
    cap = 6 if endgame else 2  # room for every piece: all of them in flight, then duplicates
    one, many = picker(max_partial_pieces=cap), picker(max_partial_pieces=cap)
    everything = Bitfield(6, full=True)
    for peer, count in (("p", 3), ("q", 5), ("r", 40 if endgame else 4), ("p", 40)):
        blocks = one.pick(peer, everything, count, now=float(count))
        spans = many.pick_spans(peer, everything, count, now=float(count))
        assert spans == [(b.piece, b.begin, b.length) for b in blocks]
    assert state(many) == state(one)
    assert one.in_endgame == endgame


def test_send_requests_sends_what_send_request_sends() -> None:
    one, many = unchoked(seed_pair()), unchoked(seed_pair())
    blocks = [(1, 0, BLOCK_SIZE), (1, BLOCK_SIZE, BLOCK_SIZE), (2, 0, BLOCK_SIZE)]
    for block in blocks:
        one.a.send_request(*block)
    assert many.a.send_requests(blocks) == []
    assert many.a.data_to_send() == one.a.data_to_send()
    assert many.a.outstanding_requests == one.a.outstanding_requests


def test_send_requests_returns_what_cannot_be_requested_now() -> None:
    pair = unchoked(seed_pair(a_config=WireConfig(max_outgoing_requests=2, default_peer_reqq=2)))
    blocks = [(1, 0, BLOCK_SIZE), (1, BLOCK_SIZE, BLOCK_SIZE), (2, 0, BLOCK_SIZE)]
    assert pair.a.send_requests(blocks) == blocks[2:]  # past the request limit
    assert pair.a.outstanding_count == 2
    choked = unchoked(seed_pair())
    choked.b.send(Choke())
    choked.pump()
    assert choked.a.send_requests(blocks) == blocks  # choked, nothing allowed fast


def test_send_requests_raises_on_a_bad_block_after_queueing_the_good_ones() -> None:
    pair = unchoked(seed_pair())
    pair.a.send(Request(index=1, begin=0, length=BLOCK_SIZE))
    pair.a.data_to_send()
    with pytest.raises(LocalProtocolError):
        pair.a.send_requests([(2, 0, BLOCK_SIZE), (1, 0, BLOCK_SIZE)])  # a duplicate
    assert len(pair.a.data_to_send()) == 17  # the request for piece 2 went out
    with pytest.raises(LocalProtocolError):
        pair.a.send_requests([(3, 40 * 1024, BLOCK_SIZE)])  # outside the piece


def test_write_blocks_is_write_of_each() -> None:
    one, many = PieceBuffers(), PieceBuffers()
    blocks = [(0, 0, b"a" * 4), (0, 4, b"b" * 4), (3, 4, b"c" * 4), (0, 8, b"d" * 4)]
    for index, begin, data in blocks:
        one.write(index, 12, begin, data)
    many.write_blocks(blocks, lambda index: 12)
    assert [many.get(i) for i in range(4)] == [one.get(i) for i in range(4)]
    assert many.bytes_held == one.bytes_held == 24


def test_deliver_blocks_stops_calling_a_hook_unhooked_by_a_woken_waiter() -> None:
    """LocalBlocks hooks ``block_stored`` only while someone waits and unhooks it from inside the
    hook when the last waiter wakes: the rest of the run must not call the hook any more."""
    info, _ = make_info("t", [("t.bin", bytes(4 * BLOCK_SIZE))], piece_length=2 * BLOCK_SIZE)
    swarm = Swarm(info=info, picker=PiecePicker.from_info(info, rng=random.Random(0)))
    host = SimpleNamespace(config=TorrentConfig(), spawn=lambda coro: coro.close())
    flow = BlockFlow(
        swarm,
        cast(TorrentHandle, host),
        ban=lambda *args: None,
        piece_verified=lambda index: None,
        piece_retry=lambda: None,
        write_failed=lambda index, exc: None,
    )
    assert swarm.picker is not None
    swarm.picker.peer_joined("p", Bitfield(2, full=True))
    seen: list[tuple[int, int]] = []

    def hook(index: int, begin: int) -> None:
        seen.append((index, begin))
        flow.block_stored = None

    flow.block_stored = hook
    data = bytes(BLOCK_SIZE)
    blocks = [(0, 0, data), (0, BLOCK_SIZE, data), (1, 0, data)]
    assert flow.deliver_blocks("p", blocks) == 3 * BLOCK_SIZE
    assert seen == [(0, 0)]
    assert flow.verifying == {0}  # piece 0 complete: spawned its check


def test_a_deep_pipeline_is_topped_up_every_refill_batch_blocks() -> None:
    assert refill_due(0, DEEP_PIPELINE - 1)  # shallow: after every read
    assert refill_due(1, 0)
    assert not refill_due(REFILL_BATCH - 1, DEEP_PIPELINE)  # deep: every REFILL_BATCH blocks
    assert refill_due(REFILL_BATCH, 5000)
