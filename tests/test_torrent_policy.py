"""The torrent policy (torrentgoat.torrent.policy), in the picker tests' picture style.

* a peer's pieces ``"** * "``: ``*`` marks pieces it has; allowed-fast ``" *  "``; refused ``"*   "``;
* availability ``"2223333"`` and our have ``"* *"`` as in tests/test_picker.py;
* connections for eviction: one letter each -- ``S`` snubbed, ``-`` neither side interested,
  ``C`` chokes us and wants nothing for over a minute, ``.`` useful.
"""

from __future__ import annotations

import random

import pytest

from torrentgoat.bitfield import Bitfield
from torrentgoat.choker import ChokerConfig
from torrentgoat.picker import PickerConfig, PieceLayout, PiecePicker
from torrentgoat.primitives import BLOCK_SIZE
from torrentgoat.torrent import TorrentConfig
from torrentgoat.torrent.policy import (
    REFUSAL_MEMORY,
    REJECT_STREAK_HOLD,
    EvictionCandidate,
    RequestState,
    admits_at_once,
    block_arrived,
    check_snub,
    choke_stats,
    eviction_victim,
    expire_refusals,
    keeps_new_connection,
    pick_requests,
    queue_target,
    request_budget,
    request_rejected,
    requestable_pieces,
    wants_pieces,
)

NOW = 1000.0
CONFIG = TorrentConfig()


def bits(picture: str) -> Bitfield:
    return Bitfield.from_indices(len(picture), (i for i, c in enumerate(picture) if c == "*"))


def picture(have: Bitfield) -> str:
    return "".join("*" if i in have else " " for i in range(have.length))


def swarm(availability: str, have: str = "", *, blocks_per_piece: int = 1, **config: object) -> PiecePicker:
    n = len(availability)
    config.setdefault("initial_random_pieces", 0)
    picker = PiecePicker(
        PieceLayout.uniform(n, blocks_per_piece * BLOCK_SIZE),
        rng=random.Random(0),
        config=PickerConfig(**config),  # type: ignore[arg-type]
        have=bits(have.ljust(n)) if have else None,
    )
    counts = [int(c) for c in availability]
    for k in range(max(counts, default=0)):
        picker.peer_joined(1000 + k, Bitfield.from_indices(n, (i for i, c in enumerate(counts) if c > k)))
    return picker


# ---------------------------------------------------------------- how many requests


@pytest.mark.parametrize(
    ("rate", "expected"),
    [
        (0.0, 16),  # min_queue: a new peer gets 16 blocks to start with
        (100 * BLOCK_SIZE, 200),  # queue_time (2 s) of the rate
        (10**12, 1500),  # max_queue
    ],
)
def test_queue_target_is_queue_time_of_the_rate(rate: float, expected: int) -> None:
    assert queue_target(CONFIG, rate) == expected


def test_queue_target_in_chunks_keeps_the_clamp_in_bytes() -> None:
    chunk = 4 * 1024 * 1024  # a simulator moving whole 4 MiB pieces
    assert queue_target(CONFIG, 0.0, unit=chunk) == 1  # 16 blocks are a quarter chunk: at least one
    assert queue_target(CONFIG, 2 * chunk, unit=chunk) == 4  # 2 s of 2 chunks/s
    assert queue_target(CONFIG, 10**12, unit=chunk) == 1500 * BLOCK_SIZE // chunk


def test_budget_tops_up_to_the_target_and_respects_reqq() -> None:
    state = RequestState(last_block_at=NOW)
    assert request_budget(state, CONFIG, rate=0.0, outstanding=10, limit=250, now=NOW) == 6
    assert request_budget(state, CONFIG, rate=10**12, outstanding=0, limit=250, now=NOW) == 250
    assert request_budget(state, CONFIG, rate=0.0, outstanding=20, limit=250, now=NOW) < 0


def test_no_budget_for_a_snubbed_or_held_peer() -> None:
    snubbed = RequestState(last_block_at=NOW, snubbed=True)
    held = RequestState(last_block_at=NOW, hold_until=NOW + 1)
    assert request_budget(snubbed, CONFIG, rate=0.0, outstanding=0, limit=250, now=NOW) == 0
    assert request_budget(held, CONFIG, rate=0.0, outstanding=0, limit=250, now=NOW) == 0
    assert request_budget(held, CONFIG, rate=0.0, outstanding=0, limit=250, now=NOW + 1) == 16


# ---------------------------------------------------------------- which pieces, which blocks


@pytest.mark.parametrize(
    ("peer", "choked", "allowed_fast", "refused", "expected"),
    [
        ("*** *", False, "", "", "*** *"),
        ("*** *", True, "", "", "     "),  # choked, no allowed-fast: nothing
        ("*** *", True, " *  *", "", " *  *"),  # BEP 6: only allowed-fast pieces while choked
        ("*** *", True, " * **", "", " *  *"),  # an allowed-fast piece it lacks stays out
        ("*** *", False, "", "*   *", " **  "),  # recently rejected pieces are not asked again
        ("*** *", True, "**   ", " *   ", "*    "),
    ],
)
def test_requestable_pieces(peer: str, choked: bool, allowed_fast: str, refused: str, expected: str) -> None:
    have = bits(peer)
    got = requestable_pieces(
        have,
        choked=choked,
        allowed_fast=set(bits(allowed_fast.ljust(len(peer)))),
        refused=set(bits(refused.ljust(len(peer)))),
    )
    assert picture(got) == expected
    assert picture(have) == peer  # never modified


def test_requestable_pieces_is_the_same_set_when_nothing_is_excluded() -> None:
    have = bits("** *")
    assert requestable_pieces(have, choked=False) is have


def test_pick_requests_is_the_pickers_order() -> None:
    picker = swarm("4321")
    blocks = pick_requests(picker, 1, bits("****"), 4, now=NOW)
    assert [b.piece for b in blocks] == [3, 2, 1, 0]


def test_a_peer_that_cannot_cancel_takes_no_block_in_flight_elsewhere_in_endgame() -> None:
    picker = swarm("11", blocks_per_piece=2)
    wire = pick_requests(picker, 1, bits("**"), 3, now=NOW)  # 3 of 4 blocks in flight at peer 1
    assert len(wire) == 3 and not picker.in_endgame
    web = pick_requests(picker, 2, bits("**"), 4, now=NOW, cancellable=False)
    assert len(web) == 1 and picker.in_endgame  # the last free block only, no duplicate
    # a wire peer in endgame does duplicate in-flight blocks (and cancels the loser later)
    assert len(pick_requests(picker, 3, bits("**"), 4, now=NOW)) == 4
    assert set(picker.requesters(web[0])) == {2, 3}


@pytest.mark.parametrize(
    ("availability", "have", "peer", "expected"),
    [
        ("111", "", "*  ", True),
        ("111", "*  ", "*  ", False),  # it has only what we have
        ("111", "***", "***", False),  # we are complete
        ("111", "", "   ", False),
    ],
)
def test_interest(availability: str, have: str, peer: str, expected: bool) -> None:
    assert wants_pieces(swarm(availability, have), bits(peer)) is expected


def test_no_interest_without_a_picker_or_a_have_set() -> None:
    assert not wants_pieces(None, bits("*"))
    assert not wants_pieces(swarm("1"), None)


# ---------------------------------------------------------------- rejects and snubbing


def test_rejects_back_off_per_piece_then_altogether() -> None:
    state = RequestState(last_block_at=NOW)
    request_rejected(state, 5, peer_choking=False, now=NOW)
    assert state.refused == {5: NOW} and state.hold_until == 0.0
    request_rejected(state, 6, peer_choking=True, now=NOW)  # echo of a choke: not remembered
    assert 6 not in state.refused
    for i in range(REJECT_STREAK_HOLD):
        request_rejected(state, 100 + i, peer_choking=False, now=NOW)
    assert state.hold_until > NOW  # a peer that rejects everything is left alone for a while
    block_arrived(state, NOW + 1)
    assert state.reject_streak == 0


def test_refusals_expire() -> None:
    state = RequestState(last_block_at=NOW, refused={1: NOW, 2: NOW + 30})
    expire_refusals(state, NOW + REFUSAL_MEMORY + 1)
    assert state.refused == {2: NOW + 30}


def test_snubbed_after_snub_timeout_without_a_block_then_forgiven() -> None:
    state = RequestState(last_block_at=NOW, last_request_at=NOW + 5)
    timeout = CONFIG.snub_timeout
    assert not check_snub(state, CONFIG, outstanding=3, now=NOW + 5 + timeout)
    assert not check_snub(state, CONFIG, outstanding=0, now=NOW + 10 + timeout)  # nothing asked
    assert check_snub(state, CONFIG, outstanding=3, now=NOW + 6 + timeout)
    assert state.snubbed and not check_snub(state, CONFIG, outstanding=3, now=NOW + 99 + timeout)
    block_arrived(state, NOW + 100 + timeout)
    assert not state.snubbed


# ---------------------------------------------------------------- eviction and duplicates


def connections(letters: str) -> list[EvictionCandidate]:
    """One connection per letter (see the module docstring); the key is its position."""
    out = []
    for key, letter in enumerate(letters):
        out.append(
            EvictionCandidate(
                key=key,
                snubbed=letter == "S",
                am_interested=letter in ".C",
                peer_interested=letter == ".",
                peer_choking=letter == "C",
                last_block_at=NOW - 100 - key,  # the later key, the longer silent
                connected_at=NOW - 500,
            )
        )
    return out


@pytest.mark.parametrize(
    ("peers", "victim"),
    [
        ("....", None),  # nobody useless: nobody evicted
        (".-..", 1),
        (".-S-", 2),  # snubbed first
        ("C.-.", 2),  # neither interested beats a choking one
        ("C..C", 3),  # among equals, the one silent for longest
        ("..C.", 2),
    ],
)
def test_eviction_victim(peers: str, victim: int | None) -> None:
    assert eviction_victim(connections(peers), NOW) == victim


def test_young_connections_are_never_evicted() -> None:
    young = [
        EvictionCandidate(
            key=0,
            snubbed=True,
            am_interested=False,
            peer_interested=False,
            peer_choking=False,
            last_block_at=NOW,
            connected_at=NOW - 1,
        )
    ]
    assert eviction_victim(young, NOW, grace=2.0) is None
    assert eviction_victim(young, NOW + 2, grace=2.0) == 0


@pytest.mark.parametrize(
    ("ours", "theirs", "new_outgoing", "old_outgoing", "keeps_new"),
    [
        (b"b", b"a", True, False, True),  # we (greater id) initiated the new one: keep it
        (b"b", b"a", False, True, False),  # we initiated the old one: keep the old
        (b"a", b"b", True, False, False),  # they (greater) initiated the old one
        (b"a", b"b", False, True, True),
        (b"a", b"b", True, True, False),  # same initiator: the older one stays
    ],
)
def test_duplicate_connection_rule_is_the_same_on_both_sides(
    ours: bytes, theirs: bytes, new_outgoing: bool, old_outgoing: bool, keeps_new: bool
) -> None:
    assert (
        keeps_new_connection(ours=ours, theirs=theirs, new_outgoing=new_outgoing, old_outgoing=old_outgoing)
        is keeps_new
    )
    # the remote side sees the same two connections with the directions flipped and decides alike
    assert (
        keeps_new_connection(
            ours=theirs, theirs=ours, new_outgoing=not new_outgoing, old_outgoing=not old_outgoing
        )
        is keeps_new
    )


# ---------------------------------------------------------------- choking


@pytest.mark.parametrize(
    ("regular", "slots", "admitted"), [(0, 4, True), (3, 4, True), (4, 4, False), (0, 0, False)]
)
def test_a_newly_interested_peer_gets_a_free_slot_at_once(regular: int, slots: int, admitted: bool) -> None:
    assert admits_at_once(regular_unchoked=regular, config=ChokerConfig(upload_slots=slots)) is admitted


@pytest.mark.parametrize(
    ("have", "has_all", "seed", "progress"),
    [("*  *", False, False, 0.5), ("****", False, True, 1.0), (None, True, True, 0.0)],
)
def test_choke_stats(have: str | None, has_all: bool, seed: bool, progress: float) -> None:
    stats = choke_stats(
        7,
        interested=True,
        download_rate=1.0,
        upload_rate=2.0,
        have=bits(have) if have is not None else None,
        has_all=has_all,
        connected_at=NOW,
        unchoked_since=None,
        last_unchoked=None,
    )
    assert stats.is_seed is seed and stats.progress == progress and stats.key == 7


# ---------------------------------------------------------------- saying what was tried


def test_peer_search_report_after_15_s_then_every_minute() -> None:
    from types import SimpleNamespace

    from torrentgoat.torrent import PeersMissing
    from torrentgoat.torrent.handle import PeerSource
    from torrentgoat.torrent.peers import CandidatePool
    from torrentgoat.torrent.peersearch import AGAIN, FIRST, PeerSearchReport

    class Source(PeerSource):
        async def run(self, torrent: object) -> None:  # type: ignore[override]
            pass

        def status(self) -> str:
            return "trackers (1): http://t/announce: timed out"

    emitted: list[PeersMissing] = []
    host = SimpleNamespace(num_peers=0, is_complete=False, state="downloading", emit=emitted.append)
    report = PeerSearchReport(host, [Source()], CandidatePool())  # type: ignore[arg-type]
    for second in range(int(FIRST + AGAIN) + 2):
        report.tick(NOW + second)
    assert [round(e.seconds) for e in emitted] == [FIRST, FIRST + AGAIN]
    assert emitted[0].sources == ("trackers (1): http://t/announce: timed out",)
    host.num_peers = 1  # a peer came: the clock starts again when it leaves
    report.tick(NOW + 200)
    host.num_peers = 0
    for second in range(201, 201 + int(FIRST) + 1):
        report.tick(NOW + second)
    assert len(emitted) == 3 and round(emitted[-1].seconds) == FIRST
