"""Piece picker tests in the style of libtorrent's test_piece_picker.cpp: small string pictures.

* availability ``"2223333"``: piece i is held by that many peers (digit per piece);
* have ``"* *    "``: ``*`` marks pieces we already own;
* priorities ``"1102"``: piece priority per piece;
* a peer's pieces ``"** * "``: ``*`` marks pieces that peer has.
"""

from __future__ import annotations

import random
from collections import Counter

import pytest

from torrentgoat.bitfield import Bitfield
from torrentgoat.errors import ConfigError, LocalProtocolError, MagnetError, RemoteProtocolError
from torrentgoat.picker import (
    FileSpan,
    PickerConfig,
    PieceLayout,
    PiecePicker,
    RarestFirst,
    create_strategy,
    file_priorities_to_piece_priorities,
    parse_select_only,
    register_strategy,
    select_only_priorities,
    strategy_names,
)
from torrentgoat.primitives import BLOCK_SIZE, BlockRef

NOW = 1000.0


def bits(picture: str) -> Bitfield:
    return Bitfield.from_indices(len(picture), (i for i, c in enumerate(picture) if c == "*"))


def full(n: int) -> Bitfield:
    return Bitfield(n, full=True)


def setup(
    availability: str,
    have: str = "",
    *,
    priorities: str = "",
    blocks_per_piece: int = 1,
    seed: int = 0,
    **config: object,
) -> PiecePicker:
    """A picker whose swarm matches the availability picture (peers named ``("swarm", k)``)."""
    n = len(availability)
    config.setdefault("initial_random_pieces", 0)
    picker = PiecePicker(
        PieceLayout.uniform(n, blocks_per_piece * BLOCK_SIZE),
        rng=random.Random(seed),
        config=PickerConfig(**config),  # type: ignore[arg-type]
        have=bits(have.ljust(n)) if have else None,
        priorities=[int(c) for c in priorities] if priorities else None,
    )
    counts = [int(c) for c in availability]
    for k in range(max(counts, default=0)):
        picker.peer_joined(("swarm", k), Bitfield.from_indices(n, (i for i, c in enumerate(counts) if c > k)))
    return picker


def pieces(blocks: list[BlockRef]) -> list[int]:
    """Distinct piece indices in first-picked order."""
    seen: list[int] = []
    for b in blocks:
        if b.piece not in seen:
            seen.append(b.piece)
    return seen


def first_piece(picker: PiecePicker, peer: str = "me", have: Bitfield | None = None) -> int:
    got = picker.pick(peer, have or full(picker.num_pieces), 1, now=NOW)
    assert len(got) == 1
    return got[0].piece


# ---------------------------------------------------------------- rarest first


@pytest.mark.parametrize(
    ("availability", "have", "expected"),
    [
        ("2223333", "", {0, 1, 2}),
        ("3331333", "", {3}),
        ("1111222", "**", {2, 3}),
        ("1111222", "****", {4, 5, 6}),
        ("3213", "", {2}),
        ("9999991", "", {6}),
    ],
)
def test_rarest_first(availability: str, have: str, expected: set[int]) -> None:
    picker = setup(availability, have)
    assert first_piece(picker) in expected


def test_rarest_first_order_of_a_whole_pick() -> None:
    picker = setup("4321")
    assert pieces(picker.pick("me", full(4), 4, now=NOW)) == [3, 2, 1, 0]


def test_nobody_has_the_piece_means_it_is_not_picked() -> None:
    picker = setup("0102")
    assert pieces(picker.pick("me", full(4), 10, now=NOW)) == [1, 3]


def test_rarest_first_only_pieces_the_peer_has() -> None:
    picker = setup("1233")
    assert pieces(picker.pick("me", bits(" * *"), 10, now=NOW)) == [1, 3]
    assert picker.pick("other", bits("    "), 10, now=NOW) == []


def test_few_pieces_peer_fast_path_keeps_rarest_order() -> None:
    picker = setup("5" * 60 + "1" + "3" * 39)
    # peer has 3 of 100 pieces: ranked by availability among its own pieces
    assert pieces(picker.pick("me", Bitfield.from_indices(100, [2, 60, 70]), 3, now=NOW)) == [60, 70, 2]


def test_tie_break_is_random_and_roughly_uniform() -> None:
    counts: Counter[int] = Counter()
    for seed in range(400):
        counts[first_piece(setup("1111222", seed=seed))] += 1
    assert set(counts) == {0, 1, 2, 3}
    assert min(counts.values()) > 60, counts


def test_tie_break_is_deterministic_for_a_seed() -> None:
    a = setup("11111111", seed=7).pick("me", full(8), 8, now=NOW)
    b = setup("11111111", seed=7).pick("me", full(8), 8, now=NOW)
    assert a == b


def test_availability_updates_reorder() -> None:
    picker = setup("1111")
    for k in range(3):
        picker.peer_joined(("more", k), bits("*** "))
    assert first_piece(picker) == 3
    picker.peer_left(("swarm", 0))
    assert [picker.availability(i) for i in range(4)] == [3, 3, 3, 0]
    # nobody has piece 3 any more
    assert first_piece(picker, "other") in {0, 1, 2}


def test_peer_have_moves_a_piece_out_of_the_rarest_bucket() -> None:
    picker = setup("2221")
    picker.peer_joined("x", bits("    "))
    picker.peer_have("x", 3)
    picker.peer_have("x", 3)  # repeats are ignored
    assert picker.availability(3) == 2
    picker.peer_have("x", 0)
    assert picker.availability(0) == 3


def test_seeds_are_counted_once_and_keep_the_order() -> None:
    picker = setup("3211")
    picker.peer_have_all("seed")
    picker.peer_joined("seed2", full(4))
    assert picker.seeds == 3  # swarm peer 0 holds every piece of "3211"
    assert [picker.availability(i) for i in range(4)] == [5, 4, 3, 3]
    assert first_piece(picker) in {2, 3}
    picker.peer_left("seed")
    assert picker.availability(0) == 4


def test_peer_completing_by_haves_becomes_a_seed() -> None:
    picker = setup("1110")
    picker.peer_joined("x", bits("*** "))
    picker.peer_have("x", 3)
    assert picker.seeds == 1
    assert [picker.availability(i) for i in range(4)] == [2, 2, 2, 1]
    picker.peer_left("x")
    assert [picker.availability(i) for i in range(4)] == [1, 1, 1, 0]


def test_unknown_peer_and_bad_index() -> None:
    picker = setup("11")
    with pytest.raises(LocalProtocolError):
        picker.peer_have("ghost", 0)
    with pytest.raises(RemoteProtocolError):
        picker.peer_have(("swarm", 0), 2)
    with pytest.raises(LocalProtocolError):
        picker.peer_joined(("swarm", 0), None)


# ---------------------------------------------------------------- partial pieces first


def test_partial_pieces_are_finished_first() -> None:
    picker = setup("3311", blocks_per_piece=4)
    # a peer holding only piece 0 starts it
    assert picker.pick("a", bits("*   "), 1, now=NOW) == [BlockRef(0, 0, BLOCK_SIZE)]
    # a seed now finishes piece 0 before opening the rarer pieces 2 and 3
    got = [(b.piece, b.block_index) for b in picker.pick("b", full(4), 5, now=NOW)]
    assert got[:3] == [(0, 1), (0, 2), (0, 3)]
    assert got[3:] in ([(2, 0), (2, 1)], [(3, 0), (3, 1)])


def test_blocks_are_not_requested_twice_outside_endgame() -> None:
    picker = setup("11", blocks_per_piece=3, endgame=False)
    a = picker.pick("a", full(2), 4, now=NOW)
    b = picker.pick("b", full(2), 4, now=NOW)
    assert len(a) == 4 and len(b) == 2
    assert not set(a) & set(b)
    assert picker.pick("c", full(2), 4, now=NOW) == []


def test_last_piece_and_last_block_are_shorter() -> None:
    layout = PieceLayout(2 * BLOCK_SIZE, 5 * BLOCK_SIZE + 100)
    assert layout.num_pieces == 3
    assert layout.piece_size(2) == BLOCK_SIZE + 100
    picker = PiecePicker(layout, rng=random.Random(0), config=PickerConfig(initial_random_pieces=0))
    picker.peer_joined("s", full(3))
    got = picker.pick("s", bits("  *"), 10, now=NOW)
    assert got == [BlockRef(2, 0, BLOCK_SIZE), BlockRef(2, BLOCK_SIZE, 100)]
    with pytest.raises(RemoteProtocolError):
        picker.block_received("s", BlockRef(2, BLOCK_SIZE, BLOCK_SIZE))
    with pytest.raises(RemoteProtocolError):
        picker.block_received("s", BlockRef(2, 100, 100))
    with pytest.raises(RemoteProtocolError):
        picker.block_received("s", BlockRef(3, 0, BLOCK_SIZE))
    assert picker.block_received("s", BlockRef(2, BLOCK_SIZE, 100)).new
    arrival = picker.block_received("s", BlockRef(2, 0, BLOCK_SIZE))
    assert arrival and arrival.piece_complete and picker.piece_complete(2)
    tiny = PieceLayout(BLOCK_SIZE, 10)
    assert tiny.num_pieces == 1 and tiny.blocks(0) == [BlockRef(0, 0, 10)]


# ---------------------------------------------------------------- sequential, random, windowed


def test_sequential_picks_lowest_index_the_peer_has() -> None:
    picker = setup("1321", strategy="sequential")
    assert pieces(picker.pick("me", full(4), 4, now=NOW)) == [0, 1, 2, 3]
    picker = setup("1321", "* ", strategy="sequential")
    assert pieces(picker.pick("me", bits("  **"), 4, now=NOW)) == [2, 3]


def test_sequential_respects_priority_levels() -> None:
    picker = setup("1111", priorities="1120", strategy="sequential")
    assert pieces(picker.pick("me", full(4), 4, now=NOW)) == [2, 0, 1]


def test_sequential_after_verification_moves_on() -> None:
    picker = setup("1111", strategy="sequential")
    (b,) = picker.pick("me", full(4), 1, now=NOW)
    picker.block_received("me", b)
    picker.piece_verified(0)
    assert picker.first_missing() == 1
    assert first_piece(picker) == 1


def test_random_strategy_covers_all_pieces() -> None:
    seen = {first_piece(setup("1119", strategy="random", seed=s)) for s in range(60)}
    assert seen == {0, 1, 2, 3}


def test_random_first_pieces_rule() -> None:
    # piece 5 is the rarest, yet while we own nothing picks are random
    seen = {first_piece(setup("999991", seed=s, initial_random_pieces=4)) for s in range(60)}
    assert len(seen) > 3
    # once we own 4 pieces rarest-first applies
    for s in range(10):
        assert first_piece(setup("999991", "****", seed=s, initial_random_pieces=4)) == 5


def test_windowed_rarest_stays_in_the_window() -> None:
    picker = setup("33211111", "*", strategy="windowed-rarest", window_pieces=3)
    # window is pieces 1..3: the rarest there is 3
    assert pieces(picker.pick("me", full(8), 3, now=NOW)) == [3, 2, 1]
    # beyond the window the order is rarest-first
    assert set(pieces(picker.pick("me", full(8), 2, now=NOW))) <= {4, 5, 6, 7}


def test_windowed_rarest_falls_back_when_the_peer_has_nothing_in_the_window() -> None:
    picker = setup("22221", strategy="windowed-rarest", window_pieces=2)
    got = pieces(picker.pick("me", bits("  ***"), 3, now=NOW))
    assert got[0] == 4 and set(got) == {2, 3, 4}


def test_strategy_registry() -> None:
    assert {"rarest-first", "sequential", "random", "windowed-rarest"} <= set(strategy_names())
    with pytest.raises(ConfigError, match="unknown piece strategy"):
        create_strategy("nope")
    with pytest.raises(ConfigError):
        register_strategy("rarest-first", RarestFirst)

    class Reverse(RarestFirst):
        name = "test-reverse"
        random_start = False

        def order(self, view, peer_have):  # type: ignore[no-untyped-def]
            return (i for i in reversed(range(view.num_pieces)) if view.is_candidate(i) and i in peer_have)

    register_strategy("test-reverse", Reverse, replace=True)
    picker = setup("1111", strategy="test-reverse")
    assert pieces(picker.pick("me", full(4), 4, now=NOW)) == [3, 2, 1, 0]
    picker.set_strategy("sequential")
    picker2 = setup("1111")
    picker2.set_strategy("sequential")
    assert pieces(picker2.pick("me", full(4), 4, now=NOW)) == [0, 1, 2, 3]


# ---------------------------------------------------------------- priorities


def test_priorities_skip_and_urgency() -> None:
    picker = setup("1112", priorities="0112")
    got = pieces(picker.pick("me", full(4), 10, now=NOW))
    assert got[0] == 3 and set(got) == {1, 2, 3}


def test_priority_zero_pieces_do_not_count_for_completion_or_interest() -> None:
    picker = setup("11", priorities="10")
    assert not picker.interesting(bits(" *"))
    assert picker.interesting(bits("* "))
    (b,) = picker.pick("me", full(2), 5, now=NOW)
    picker.block_received("me", b)
    assert not picker.is_complete
    picker.piece_verified(0)
    assert picker.is_complete
    assert not picker.interesting(full(2))
    picker.set_piece_priority(1, 3)
    assert not picker.is_complete and picker.interesting(full(2))
    with pytest.raises(ConfigError):
        picker.set_piece_priority(1, 8)


def test_file_priorities_map_to_piece_priorities() -> None:
    layout = PieceLayout(4, 20)  # 5 pieces of 4 bytes
    spans = [FileSpan(offset=0, length=6), FileSpan(offset=6, length=2, pad=True), (8, 12, False)]
    assert file_priorities_to_piece_priorities(layout, spans, [1, 1, 0]) == [1, 1, 0, 0, 0]
    assert file_priorities_to_piece_priorities(layout, spans, [0, 1, 2]) == [0, 0, 2, 2, 2]
    # a piece shared by a skipped and a wanted file is wanted
    assert file_priorities_to_piece_priorities(layout, [(0, 5, False), (5, 15, False)], [3, 0]) == [
        3,
        3,
        0,
        0,
        0,
    ]
    assert file_priorities_to_piece_priorities(layout, [(0, 0, False), (0, 20, False)], [7, 1]) == [1] * 5
    with pytest.raises(ConfigError):
        file_priorities_to_piece_priorities(layout, spans, [1, 1])
    with pytest.raises(ConfigError):
        file_priorities_to_piece_priorities(layout, [(0, 40, False)], [1])


def test_bep53_select_only() -> None:
    assert parse_select_only("0,2,4-6") == {0, 2, 4, 5, 6}
    assert parse_select_only("3", num_files=4) == {3}
    for bad in ("", "a", "1-", "3-1", "1,,2", "-1"):
        with pytest.raises(MagnetError):
            parse_select_only(bad)
    with pytest.raises(MagnetError):
        parse_select_only("0-4", num_files=4)
    assert select_only_priorities(4, {0, 2}) == [1, 0, 1, 0]
    with pytest.raises(ConfigError):
        select_only_priorities(2, {5})


def test_set_file_priorities_on_a_picker() -> None:
    picker = setup("1111")
    picker.set_file_priorities([(0, 2 * BLOCK_SIZE, False), (2 * BLOCK_SIZE, 2 * BLOCK_SIZE, False)], [0, 1])
    assert picker.piece_priorities() == [0, 0, 1, 1]
    assert set(pieces(picker.pick("me", full(4), 10, now=NOW))) == {2, 3}


# ---------------------------------------------------------------- endgame


def test_endgame_duplicates_and_cancels() -> None:
    picker = setup("22", endgame_max_requesters=2)
    a = picker.pick("a", full(2), 10, now=NOW)
    assert len(a) == 2 and not picker.pick("a", full(2), 10, now=NOW)
    assert picker.in_endgame
    b = picker.pick("b", full(2), 10, now=NOW + 1)
    assert sorted(b) == sorted(a)
    assert picker.pick("c", full(2), 10, now=NOW + 2) == []  # two requesters each already
    arrival = picker.block_received("b", a[0])
    assert arrival.new and arrival.cancel == ("a",)
    assert a[0] not in picker.outstanding("a")
    late = picker.block_received("a", a[0])
    assert not late and late.cancel == ()


def test_endgame_prefers_blocks_with_fewest_requesters_then_oldest() -> None:
    picker = setup("33", blocks_per_piece=2, endgame_max_requesters=3)
    first = picker.pick("a", full(2), 2, now=1.0)
    second = picker.pick("b", full(2), 2, now=2.0)
    assert picker.in_endgame
    dup = picker.pick("c", full(2), 1, now=3.0)
    assert dup == [first[0]]
    # first[0] now has 2 requesters; the rest 1 each, oldest first
    dup2 = picker.pick("d", full(2), 3, now=3.0)
    assert dup2 == [first[1], *second]


def test_endgame_disabled() -> None:
    picker = setup("22", endgame=False)
    picker.pick("a", full(2), 10, now=NOW)
    assert not picker.in_endgame
    assert picker.pick("b", full(2), 10, now=NOW) == []


def test_no_endgame_while_a_piece_is_untouched_and_available() -> None:
    picker = setup("11", blocks_per_piece=1)
    picker.pick("a", bits("* "), 10, now=NOW)
    assert not picker.in_endgame
    assert picker.pick("b", bits("* "), 10, now=NOW) == []


def test_unavailable_pieces_do_not_block_endgame() -> None:
    picker = setup("10")
    picker.pick("a", full(2), 10, now=NOW)
    assert picker.in_endgame
    assert picker.pick("b", full(2), 10, now=NOW) == [BlockRef(0, 0, BLOCK_SIZE)]


# ---------------------------------------------------------------- failures, releases


def test_piece_failed_refetches_and_names_contributors() -> None:
    picker = setup("11", blocks_per_piece=2)
    a = picker.pick("a", bits("* "), 1, now=NOW)
    b = picker.pick("b", bits("* "), 1, now=NOW)
    picker.block_received("a", a[0])
    assert picker.block_received("b", b[0]).piece_complete
    assert picker.contributors(0) == {0: "a", 1: "b"}
    assert picker.piece_failed(0) == {"a", "b"}
    assert 0 not in picker.have and not picker.piece_complete(0)
    again = picker.pick("c", bits("* "), 5, now=NOW)
    assert sorted(again) == sorted(a + b)
    assert picker.piece_failed(1) == frozenset()


def test_verified_piece_is_ours_and_late_blocks_are_dropped() -> None:
    picker = setup("1", blocks_per_piece=1)
    (blk,) = picker.pick("a", full(1), 1, now=NOW)
    assert picker.block_received("a", blk).piece_complete
    picker.piece_verified(0)
    assert picker.is_complete and 0 in picker.have and picker.partial_pieces == []
    assert not picker.block_received("b", blk)
    assert picker.pick("a", full(1), 5, now=NOW) == []


def test_released_requests_are_picked_again() -> None:
    for release in ("request_cancelled", "request_rejected"):
        picker = setup("1", blocks_per_piece=2, endgame=False)
        got = picker.pick("a", full(1), 2, now=NOW)
        getattr(picker, release)("a", got[1])
        assert picker.outstanding("a") == {got[0]}
        assert picker.pick("b", full(1), 5, now=NOW) == [got[1]]


@pytest.mark.parametrize("method", ["peer_timed_out", "peer_snubbed", "peer_left", "peer_choked_us"])
def test_peer_release_gives_blocks_to_others(method: str) -> None:
    picker = setup("1", blocks_per_piece=3)
    picker.peer_joined("slow", full(1))
    got = picker.pick("slow", full(1), 3, now=NOW)
    picker.block_received("slow", got[0])
    released = getattr(picker, method)("slow")
    assert released == got[1:]
    assert picker.outstanding("slow") == frozenset()
    assert picker.pick("fast", full(1), 5, now=NOW) == got[1:]
    if method == "peer_snubbed":
        # the snubbed peer delivers late: still counts, the fast peer's request is cancelled
        arrival = picker.block_received("slow", got[1])
        assert arrival.new and arrival.cancel == ("fast",)


def test_fully_released_piece_frees_its_partial_slot() -> None:
    picker = setup("11", max_partial_pieces=1, blocks_per_piece=2)
    got = picker.pick("a", bits("* "), 2, now=NOW)
    assert picker.partial_pieces == [0]
    assert picker.pick("b", bits(" *"), 2, now=NOW) == []  # cap reached
    picker.peer_timed_out("a")
    assert picker.partial_pieces == []
    assert pieces(picker.pick("b", bits(" *"), 2, now=NOW)) == [1]
    del got


def test_unsolicited_block_of_a_wanted_piece_is_kept() -> None:
    picker = setup("1", blocks_per_piece=2)
    arrival = picker.block_received("x", BlockRef(0, BLOCK_SIZE, BLOCK_SIZE))
    assert arrival.new and not arrival.piece_complete
    assert picker.pick("a", full(1), 5, now=NOW) == [BlockRef(0, 0, BLOCK_SIZE)]


def test_partial_cap_bounds_memory() -> None:
    # 16 MiB pieces with a 64 MiB budget: at most 4 partial pieces
    picker = PiecePicker(
        PieceLayout.uniform(100, 16 * 1024 * 1024),
        rng=random.Random(1),
        config=PickerConfig(max_partial_bytes=64 * 1024 * 1024),
    )
    assert picker.partial_cap == 4
    for k in range(10):
        picker.peer_have_all(k)
        picker.pick(k, full(100), 1, now=NOW)
        picker.pick(k, bits(" " * (k * 10) + "*" * 10 + " " * (90 - k * 10)), 1, now=NOW)
    assert len(picker.partial_pieces) == 4


def test_interesting() -> None:
    picker = setup("111111111", "**")
    assert not picker.interesting(bits("**       "))
    assert picker.interesting(bits("        *"))
    assert picker.interesting(full(9))
    assert not picker.interesting(Bitfield(9))


def test_resume_data_and_lost_pieces() -> None:
    picker = setup("11")
    picker.set_have(0)
    picker.set_have(1)
    assert picker.is_complete and picker.wanted_missing == 0
    picker.clear_have(1)
    assert not picker.is_complete
    assert first_piece(picker) == 1


def test_construction_errors() -> None:
    with pytest.raises(ConfigError):
        PiecePicker(PieceLayout.uniform(3), rng=random.Random(), have=Bitfield(4))
    with pytest.raises(ConfigError):
        PiecePicker(PieceLayout.uniform(3), rng=random.Random(), priorities=[1, 1])
    with pytest.raises(ConfigError):
        PieceLayout(0, 10)
    with pytest.raises(ConfigError):
        PickerConfig(window_pieces=0)
    picker = setup("11")
    with pytest.raises(LocalProtocolError):
        picker.pick("a", full(3), 1, now=NOW)


def test_huge_file_keeps_block_state_only_for_a_bounded_number_of_pieces() -> None:
    # 50 GiB in 16 MiB pieces: 3200 pieces x 1024 blocks
    layout = PieceLayout.uniform(3200, 16 * 1024 * 1024)
    picker = PiecePicker(layout, rng=random.Random(5))
    assert picker.partial_cap == 3  # 48 MiB of piece buffers by default (the client's default)
    rng = random.Random(6)
    haves = [full(3200)] + [
        Bitfield.from_indices(3200, (i for i in range(3200) if rng.random() < 0.3)) for _ in range(20)
    ]
    for k, have in enumerate(haves):
        picker.peer_joined(k, have)
    for _round in range(30):
        for k, have in enumerate(haves):
            for block in picker.pick(k, have, 64, now=NOW):
                if picker.block_received(k, block).piece_complete:
                    picker.piece_verified(block.piece)
        assert len(picker.partial_pieces) <= 6
    assert picker.have.count > 0


def test_bitfield_after_join_replaces_the_have_set() -> None:
    picker = setup("1100")
    picker.peer_joined("x")
    picker.peer_have("x", 3)
    picker.peer_bitfield("x", bits(" ** "))
    assert [picker.availability(i) for i in range(4)] == [1, 2, 1, 0]
    picker.peer_bitfield("x", full(4))
    assert picker.seeds == 1 and [picker.availability(i) for i in range(4)] == [2, 2, 1, 1]
    picker.peer_bitfield("x", bits("*   "))
    assert picker.seeds == 0 and [picker.availability(i) for i in range(4)] == [2, 1, 0, 0]
    picker.peer_bitfield("y", bits("   *"))
    assert picker.availability(3) == 1


def test_from_info_maps_files_and_pad_files() -> None:
    from torrentgoat import bencode
    from torrentgoat.metainfo import parse_info

    piece = 2 * BLOCK_SIZE
    files = [
        {b"length": piece + 10, b"path": [b"a.bin"]},
        {b"length": piece - 10, b"path": [b".pad", b"x"], b"attr": b"p"},
        {b"length": piece, b"path": [b"b.bin"]},
    ]
    info = parse_info(
        bencode.encode({b"name": b"m", b"piece length": piece, b"pieces": b"\0" * 60, b"files": files})
    )
    picker = PiecePicker.from_info(info, rng=random.Random(0))
    assert picker.num_pieces == 3 and picker.piece_priorities() == [1, 1, 1]
    picker = PiecePicker.from_info(info, rng=random.Random(0), file_priorities=[0, 1, 1])
    assert picker.piece_priorities() == [0, 0, 1]  # the pad file never makes piece 1 wanted
    picker = PiecePicker.from_info(info, rng=random.Random(0), file_priorities=[1, 0, 0])
    assert picker.piece_priorities() == [1, 1, 0]


def test_distributed_copies() -> None:
    picker = setup("2233")
    assert picker.distributed_copies() == pytest.approx(2.5)
    picker.peer_have_all("seed")
    assert picker.distributed_copies() == pytest.approx(3.5)


def test_package_docstring_example_runs() -> None:
    import doctest

    import torrentgoat.picker

    result = doctest.testmod(torrentgoat.picker)
    assert result.attempted > 5 and result.failed == 0
