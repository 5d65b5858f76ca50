"""SmartBan: only the senders of blocks that differ from the verified piece are blamed."""

from __future__ import annotations

import random

from torrentgoat.primitives import BLOCK_SIZE, PeerAddress
from torrentgoat.torrent.smartban import SmartBan


def _piece(rng: random.Random, blocks: int) -> bytearray:
    return bytearray(rng.randbytes(blocks * BLOCK_SIZE - 100))  # last block shorter


def test_only_the_poisoner_is_blamed() -> None:
    rng = random.Random(1)
    good = _piece(rng, 4)
    bad = bytearray(good)
    bad[2 * BLOCK_SIZE + 7] ^= 0xFF  # block 2 came from the sybil
    a, b = PeerAddress("10.0.0.1", 1), PeerAddress("10.0.0.2", 2)
    ban = SmartBan()
    ban.piece_failed(5, bad, {0: ("honest", a), 1: ("honest", a), 2: ("sybil", b), 3: ("honest", a)})
    culprits = ban.piece_passed(5, good)
    assert [(c.key, c.address) for c in culprits] == [("sybil", b)]
    assert len(ban) == 0
    assert ban.piece_passed(5, good) == []  # forgotten once resolved


def test_memory_is_bounded() -> None:
    rng = random.Random(2)
    ban = SmartBan(max_pieces=3)
    for index in range(10):
        ban.piece_failed(index, _piece(rng, 2), {0: ("p", None)})
    assert len(ban) == 3
    assert ban.piece_passed(0, _piece(rng, 2)) == []  # evicted long ago


def test_repeat_failures_keep_the_latest_witness_per_block() -> None:
    rng = random.Random(3)
    good = _piece(rng, 2)
    first, second = bytearray(good), bytearray(good)
    first[5] ^= 1
    ban = SmartBan()
    ban.piece_failed(1, first, {0: ("x", None), 1: ("y", None)})
    ban.piece_failed(1, second, {0: ("z", None)})  # block 0 fetched again from z, correct this time
    assert [c.key for c in ban.piece_passed(1, good)] == []
