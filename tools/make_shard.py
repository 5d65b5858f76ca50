"""Write model-like test data: one safetensors shard, or a Hugging Face-style snapshot folder.

    python tools/make_shard.py OUT.safetensors --size 2GiB [--seed 0]
    python tools/make_shard.py OUT_DIR --model-folder --shards 4 --size 512MiB [--seed 0]

``--size`` is the size of each shard (``KiB``/``MiB``/``GiB`` are powers of 1024, ``KB``/``MB``/``GB``
of 1000).  Output is deterministic per seed and written with bounded memory.
"""

from __future__ import annotations

import argparse
import sys
import time

from torrentgoat.testing.shards import parse_size, write_model_folder, write_safetensors_shard


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("out", help="output file (or directory with --model-folder)")
    parser.add_argument("--size", default="64MiB", help="shard size, e.g. 2GiB (default 64MiB)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model-folder", action="store_true", help="write a snapshot folder instead")
    parser.add_argument("--shards", type=int, default=2, help="shards in the folder (default 2)")
    args = parser.parse_args(argv)
    try:
        size = parse_size(args.size)
    except ValueError as exc:
        parser.error(str(exc))
    start = time.perf_counter()
    if args.model_folder:
        path = write_model_folder(args.out, shards=args.shards, shard_size=size, seed=args.seed)
        total = size * args.shards
    else:
        path = write_safetensors_shard(args.out, size, seed=args.seed)
        total = size
    elapsed = time.perf_counter() - start
    print(f"wrote {path} ({total / 2**20:.1f} MiB in {elapsed:.2f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
