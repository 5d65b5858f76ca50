"""The BEP 16 super-seeding engine: which pieces a super-seeding seed reveals to whom."""

from __future__ import annotations

import random

import pytest

from torrentgoat.bitfield import Bitfield
from torrentgoat.errors import ConfigError
from torrentgoat.superseed import SuperSeeder


def empty(n: int) -> Bitfield:
    return Bitfield(n)


def test_each_peer_sees_per_peer_distinct_pieces() -> None:
    ss = SuperSeeder(100, per_peer=2, rng=random.Random(1))
    shown = [ss.peer_joined(k, empty(100)) for k in range(10)]
    assert all(len(s) == 2 for s in shown)
    flat = [i for s in shown for i in s]
    assert len(set(flat)) == 20  # no piece revealed twice while unrevealed ones remain


def test_every_piece_is_revealed_once_before_any_twice() -> None:
    n = 16
    ss = SuperSeeder(n, per_peer=1, rng=random.Random(2))
    pending = {k: ss.peer_joined(k, empty(n))[0] for k in range(4)}
    counts = [0] * n
    for p in pending.values():
        counts[p] += 1
    for _ in range(3):  # each peer completes its piece and gets the next one
        for k in list(pending):
            nxt = ss.peer_have(k, pending[k])
            assert len(nxt) == 1
            pending[k] = nxt[0]
            counts[nxt[0]] += 1
    assert counts == [1] * n


def test_next_piece_only_when_the_revealed_one_arrives() -> None:
    ss = SuperSeeder(10, per_peer=1, rng=random.Random(3))
    (first,) = ss.peer_joined("a", empty(10))
    other = (first + 1) % 10
    assert ss.peer_have("a", other) == []  # it got a piece from elsewhere: still owes us ``first``
    assert len(ss.peer_have("a", first)) == 1


def test_requests_only_for_revealed_pieces() -> None:
    ss = SuperSeeder(10, per_peer=2, rng=random.Random(4))
    shown = ss.peer_joined("a", empty(10))
    for i in range(10):
        assert ss.may_serve("a", i) == (i in shown)
    assert not ss.may_serve("nobody", shown[0])


def test_prefers_pieces_no_peer_holds() -> None:
    n = 3
    ss = SuperSeeder(n, per_peer=1, rng=random.Random(5))
    (told,) = ss.peer_joined("holder", Bitfield.from_indices(n, [0]))
    # piece 0 is held by a peer, ``told`` is on its way to one: the third piece goes first
    assert ss.peer_joined("new", empty(n)) == [3 - told]


def test_skips_pieces_the_peer_has() -> None:
    n = 5
    ss = SuperSeeder(n, per_peer=5, rng=random.Random(6))
    shown = ss.peer_joined("a", Bitfield.from_indices(n, [1, 3]))
    assert sorted(shown) == [0, 2, 4]


def test_a_late_bitfield_is_merged() -> None:
    n = 6
    ss = SuperSeeder(n, per_peer=1, rng=random.Random(7))
    (first,) = ss.peer_joined("a", empty(n))
    more = ss.peer_joined("a", Bitfield.from_indices(n, [first]))  # its real bitfield arrived late
    assert len(more) == 1 and more[0] != first


def test_a_leaving_peer_returns_its_unfinished_reveals() -> None:
    n = 1
    ss = SuperSeeder(n, per_peer=1, rng=random.Random(8))
    (p,) = ss.peer_joined("a", empty(n))
    assert ss.times_revealed(p) == 1
    ss.peer_left("a")
    assert ss.times_revealed(p) == 0
    assert ss.peer_joined("b", empty(n)) == [p]


def test_distributed_once_every_piece_is_held() -> None:
    n = 3
    ss = SuperSeeder(n, per_peer=1, rng=random.Random(9))
    ss.peer_joined("a", Bitfield.from_indices(n, [0, 1]))
    assert not ss.distributed
    ss.peer_joined("b", empty(n))
    ss.peer_have("b", 2)
    assert ss.distributed
    ss.peer_left("b")
    assert not ss.distributed


def test_finish_lists_what_each_peer_was_not_told() -> None:
    n = 4
    ss = SuperSeeder(n, per_peer=1, rng=random.Random(10))
    shown = ss.peer_joined("a", Bitfield.from_indices(n, [0]))
    rest = ss.finish()
    assert sorted(rest["a"] + shown + [0]) == [0, 1, 2, 3]
    assert all(ss.may_serve("a", i) for i in range(1, n))


def test_lone_leecher_gets_everything() -> None:
    n = 50
    ss = SuperSeeder(n, per_peer=2, rng=random.Random(11))
    todo = list(ss.peer_joined("a", empty(n)))
    got: set[int] = set()
    while todo:
        i = todo.pop()
        got.add(i)
        todo.extend(ss.peer_have("a", i))
    assert got == set(range(n))


def test_bad_arguments() -> None:
    with pytest.raises(ConfigError):
        SuperSeeder(0)
    with pytest.raises(ConfigError):
        SuperSeeder(5, per_peer=0)
    ss = SuperSeeder(5)
    assert ss.peer_have("unknown", 1) == []
    ss.peer_joined("a", empty(5))
    assert ss.peer_have("a", 99) == []


@pytest.mark.parametrize(("n", "per_peer"), [(2, 1), (3, 2), (3, 1), (7, 2), (33, 2), (33, 3)])
def test_the_last_piece_is_never_revealed_alone(n: int, per_peer: int) -> None:
    """The ``have`` that completes a peer's view of us must not be the only one for a piece it lacks
    (libtorrent drops a seed it is not interested in right then); whatever order the peer finishes."""
    for seed in range(20):
        rng = random.Random(seed)
        ss = SuperSeeder(n, per_peer=per_peer, rng=rng)
        batches = [ss.peer_joined("a", empty(n))]
        pending = list(batches[0])
        while pending:
            pending.remove(done := rng.choice(pending))
            batch = ss.peer_have("a", done)
            batches.append(batch)
            pending += batch
        assert sorted(i for b in batches for i in b) == list(range(n))
        completing = [b for b in batches if b][-1]
        assert len(completing) >= 2, f"seed {seed}: batches {batches}"


def test_a_last_piece_the_peer_holds_is_not_revealed() -> None:
    ss = SuperSeeder(3, per_peer=1, rng=random.Random(12))
    shown = ss.peer_joined("a", Bitfield.from_indices(3, [0]))
    assert len(shown) == 1 and 0 not in shown  # piece 0 is the one left unrevealed: it holds it
