"""Model updates: bytes moved by a block-level update vs bytes changed vs a whole-file update.

Run: ``python -m benchmarks.updates [--tensors 8] [--rows 256] [--cols 1024] [--piece 256KiB]``.

For each realistic edit of a one-file safetensors model (``torrentgoat.testing.updates.EDITS``: one
layer fine-tuned with a few bytes of new header metadata, a tensor appended, every tensor changed, a
dtype change, the tensors reordered), a publisher and a consumer on loopback (a local DHT, hybrid
torrents) publish version 1, get it, publish version 2 and update -- once with block-level updates
and once without (the reference: a changed file moves whole, as v1 collections did).  Printed per
edit: the changed tensor bytes, the file size, the bytes moved by each kind of update (block payload
plus BEP 52 hash messages) and the ratios moved / changed and block-level / whole-file.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

from torrentgoat.testing.updates import EDITS, measure_update, model_tensors
from torrentgoat.units import format_size, parse_size


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.updates", description=__doc__.splitlines()[0])
    parser.add_argument("--tensors", type=int, default=8)
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--cols", type=int, default=1024)
    parser.add_argument("--piece", default="256KiB", help="piece length (a power of two)")
    parser.add_argument("--edit", action="append", choices=sorted(EDITS), help="only these edits")
    args = parser.parse_args(argv)
    piece = parse_size(args.piece)
    tensors = model_tensors(args.tensors, args.rows, args.cols)
    print(
        f"{args.tensors} BF16 tensors [{args.rows}, {args.cols}] ({format_size(sum(len(t.data) for t in tensors))}),"
        f" piece {format_size(piece)}"
    )
    head = f"{'edit':<22} {'changed':>10} {'file':>10} {'block-level':>12} {'hashes':>9} {'whole-file':>11} {'moved/changed':>14} {'block/whole':>12}"
    print(head)
    print("-" * len(head))
    for edit in args.edit or list(EDITS):
        with tempfile.TemporaryDirectory(prefix="tg-updates-") as tmp:
            block = await measure_update(Path(tmp) / "block", edit, tensors=tensors, piece_length=piece)
            whole = await measure_update(
                Path(tmp) / "whole", edit, tensors=tensors, piece_length=piece, block_updates=False
            )
        ratio = f"{block.moved / block.changed:.3f}" if block.changed else "-"
        print(
            f"{edit:<22} {format_size(block.changed):>10} {format_size(block.file_size):>10}"
            f" {format_size(block.moved):>12} {format_size(block.hash_bytes):>9} {format_size(whole.moved):>11}"
            f" {ratio:>14} {block.moved / max(1, whole.moved):>12.3f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
