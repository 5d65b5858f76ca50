"""Picker and choker composed in a tiny deterministic swarm (the shape issue 6's simulator drives).

Full mesh, one seed, leechers; time advances in 1 s rounds.  Every 10 s each peer rechokes with
:class:`~torrentgoat.choker.Choker`; each leecher fills its request queue to every peer that unchokes it
with :meth:`PiecePicker.pick`; each uploader serves a few blocks per round; verified pieces are announced
with ``have``.  Everything must finish, using only the public API.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field

import pytest

from torrentgoat.bitfield import Bitfield
from torrentgoat.choker import Choker, ChokerConfig, PeerStats
from torrentgoat.picker import PickerConfig, PieceLayout, PiecePicker, RateMeter
from torrentgoat.primitives import BlockRef


@dataclass
class Node:
    key: int
    picker: PiecePicker
    choker: Choker
    capacity: int
    connected_at: float = 0.0
    unchoked: set[int] = field(default_factory=set)
    unchoked_since: dict[int, float] = field(default_factory=dict)
    queue: deque[tuple[int, BlockRef]] = field(default_factory=deque)
    down: dict[int, RateMeter] = field(default_factory=dict)
    up: dict[int, RateMeter] = field(default_factory=dict)


def run_swarm(strategy: str, leechers: int, seed: int) -> int:
    rng = random.Random(seed)
    layout = PieceLayout.uniform(24, 4 * 16384)
    n = layout.num_pieces
    nodes: list[Node] = []
    for key in range(leechers + 1):
        have = Bitfield(n, full=key == 0)
        picker = PiecePicker(
            layout, rng=random.Random(seed * 100 + key), config=PickerConfig(strategy=strategy), have=have
        )
        nodes.append(Node(key, picker, Choker(ChokerConfig(upload_slots=2)), capacity=6 if key == 0 else 3))
    for a in nodes:
        for b in nodes:
            if a is not b:
                a.picker.peer_joined(b.key, b.picker.have.copy())
                a.down[b.key] = RateMeter(window=5.0)
                a.up[b.key] = RateMeter(window=5.0)
    for rounds in range(1, 600):
        now = float(rounds)
        if rounds % 10 == 1:
            for u in nodes:
                stats = [
                    PeerStats(
                        key=v.key,
                        interested=v.picker.interesting(u.picker.have),
                        upload_rate=u.up[v.key].rate(now),
                        download_rate=u.down[v.key].rate(now),
                        is_seed=v.picker.have.complete,
                        connected_at=v.connected_at,
                        unchoked_since=u.unchoked_since.get(v.key),
                    )
                    for v in nodes
                    if v is not u
                ]
                decision = u.choker.rechoke(stats, seeding=u.picker.have.complete, now=now, rng=rng)
                for v in u.unchoked - decision.unchoke:  # choked: v's requests to u are discarded (BEP 3)
                    nodes[v].picker.peer_choked_us(u.key)
                    u.unchoked_since.pop(v, None)
                u.queue = deque((v, b) for v, b in u.queue if v in decision.unchoke)
                for v in decision.unchoke - u.unchoked:
                    u.unchoked_since[v] = now
                u.unchoked = set(decision.unchoke)
        # requests
        for v in nodes:
            for u in nodes:
                if v is not u and v.key in u.unchoked:
                    room = 8 - len(v.picker.outstanding(u.key))
                    for block in v.picker.pick(u.key, u.picker.have, room, now=now):
                        u.queue.append((v.key, block))
        # service
        for u in nodes:
            for _ in range(min(u.capacity, len(u.queue))):
                vkey, block = u.queue.popleft()
                v = nodes[vkey]
                assert block.piece in u.picker.have  # never asked for a piece the uploader lacks
                u.up[vkey].add(block.length, now)
                v.down[u.key].add(block.length, now)
                arrival = v.picker.block_received(u.key, block)
                for other in arrival.cancel:
                    nodes[other].queue = deque(
                        (w, b) for w, b in nodes[other].queue if not (w == vkey and b == block)
                    )
                if arrival.piece_complete:
                    v.picker.piece_verified(block.piece)
                    for w in nodes:
                        if w is not v:
                            w.picker.peer_have(v.key, block.piece)
        if all(node.picker.is_complete for node in nodes):
            return rounds
    raise AssertionError(f"swarm did not finish: {[node.picker.have.count for node in nodes]}")


@pytest.mark.parametrize("strategy", ["rarest-first", "sequential", "random", "windowed-rarest"])
def test_swarm_completes(strategy: str) -> None:
    rounds = run_swarm(strategy, leechers=6, seed=1)
    # the seed alone ships 6 blocks/s; 6 leechers x 96 blocks would take 96 rounds without sharing
    assert rounds < 96, rounds


def test_swarm_is_deterministic() -> None:
    assert run_swarm("rarest-first", leechers=4, seed=3) == run_swarm("rarest-first", leechers=4, seed=3)
