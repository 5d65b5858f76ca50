"""Piece picker micro-benchmark: pick throughput for a 50 GiB file (3200 pieces x 1024 blocks) and 50 peers.

Run: ``python benchmarks/picker_bench.py [--pieces 3200] [--piece-kib 16384] [--peers 50] [--seconds 3]``

Each round every peer asks for ``--batch`` blocks, every requested block arrives, and complete pieces
are verified; availability changes with ``have`` messages as peers acquire pieces.  Reports picks/s and
blocks/s per strategy, plus the cost of swarm bookkeeping (joins, haves).
"""

from __future__ import annotations

import argparse
import random
import time

from torrentgoat.bitfield import Bitfield
from torrentgoat.geometry import PieceGeometry
from torrentgoat.picker import PickerConfig, PiecePicker


def build(args: argparse.Namespace, strategy: str, seed: int = 1) -> tuple[PiecePicker, list[Bitfield]]:
    rng = random.Random(seed)
    layout = PieceGeometry.uniform(args.pieces, args.piece_kib * 1024)
    picker = PiecePicker(layout, rng=random.Random(seed), config=PickerConfig(strategy=strategy))
    haves = []
    for k in range(args.peers):
        if k < args.peers // 10:
            have = Bitfield(args.pieces, full=True)
        else:
            share = rng.random()
            have = Bitfield.from_indices(args.pieces, (i for i in range(args.pieces) if rng.random() < share))
        haves.append(have)
        picker.peer_joined(k, have)
    return picker, haves


def run(args: argparse.Namespace, strategy: str) -> None:
    t0 = time.perf_counter()
    picker, haves = build(args, strategy)
    setup = time.perf_counter() - t0
    rng = random.Random(2)
    picks = blocks = verified = 0
    pick_time = 0.0
    deadline = time.perf_counter() + args.seconds
    now = 0.0
    while time.perf_counter() < deadline and not picker.is_complete:
        now += 0.1
        for k, have in enumerate(haves):
            t = time.perf_counter()
            got = picker.pick(k, have, args.batch, now=now)
            pick_time += time.perf_counter() - t
            picks += 1
            blocks += len(got)
            for block in got:
                if picker.block_received(k, block).piece_complete:
                    picker.piece_verified(block.piece)
                    verified += 1
                    # a random peer announces a piece it got meanwhile
                    other = rng.randrange(len(haves))
                    index = rng.randrange(args.pieces)
                    if index not in haves[other]:
                        haves[other].add(index)
                        picker.peer_have(other, index)
    print(
        f"{strategy:16s} setup {setup * 1000:7.1f} ms | {picks / pick_time:9.0f} picks/s "
        f"{blocks / pick_time:10.0f} blocks/s (pick only) | {picks} picks, {blocks} blocks, "
        f"{verified} pieces verified, {len(picker.partial_pieces)} partial"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pieces", type=int, default=3200)
    parser.add_argument("--piece-kib", type=int, default=16 * 1024)
    parser.add_argument("--peers", type=int, default=50)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--strategy", action="append")
    args = parser.parse_args()
    for strategy in args.strategy or ["rarest-first", "sequential", "random", "windowed-rarest"]:
        run(args, strategy)
    # small pieces: the piece-opening path dominates
    args.piece_kib = 16
    print("-- 1-block pieces (every pick opens new pieces):")
    for strategy in args.strategy or ["rarest-first", "sequential", "windowed-rarest"]:
        run(args, strategy)


if __name__ == "__main__":
    main()
