"""Summarise a ``py-spy record --format raw`` file: self and total samples per function.

Run: ``python -m benchmarks.pyspy_summary PROFILE.raw [--rate 250] [--gb 1.074] [--top 25]``.
Seconds are samples / rate (py-spy samples only non-idle threads by default), so with ``--gb`` the
table reads as CPU seconds per GB of payload, split by thread.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter

__all__ = ["main"]

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def _name(frame: str) -> str:
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    path = m["file"]
    for marker in ("torrentgoat/", "asyncio/", "concurrent/", "threading", "uvloop", "site-packages/"):
        i = path.find(marker)
        if i >= 0:
            path = path[i:]
            break
    else:
        path = path.rsplit("/", 1)[-1]
    return f"{m['func']} ({path})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("raw")
    parser.add_argument("--rate", type=float, default=250.0)
    parser.add_argument("--gb", type=float, default=1.0, help="payload in 10^9 bytes (divides seconds)")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument(
        "--main-cpu",
        type=float,
        default=0.0,
        help="measured main-thread CPU s/GB: rescale the main thread's samples to it (py-spy's own "
        "stops slow the process, so sample counts overstate absolute time)",
    )
    parser.add_argument("--steady", action="store_true", help="drop start-up samples (imports)")
    args = parser.parse_args(argv)
    self_t: Counter[str] = Counter()
    total_t: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    all_samples = 0
    with open(args.raw) as f:
        for line in f:
            stack, _, count_s = line.rstrip("\n").rpartition(" ")
            if not stack:
                continue
            count = int(count_s)
            frames = stack.split(";")
            if args.steady and any("importlib._bootstrap" in fr for fr in frames):
                continue
            thread = frames[0]
            if thread.startswith("thread") or "process" in thread:
                frames = frames[1:]
            threads[re.sub(r"0x[0-9a-f]+", "", thread).strip() or thread] += count
            all_samples += count
            if frames:
                self_t[_name(frames[-1])] += count
            for name in {_name(fr) for fr in frames}:
                total_t[name] += count
    scale = 1.0 / args.rate / args.gb
    print(f"{all_samples} samples = {all_samples * scale:.2f} CPU s per GB (py-spy time)")
    if args.main_cpu:
        main_samples = sum(n for name, n in threads.items() if "MainThread" in name)
        scale = args.main_cpu / main_samples if main_samples else scale
        print(f"rescaled: main thread = {args.main_cpu:.2f} CPU s per GB (measured)")
    print("\nby thread:")
    for name, n in threads.most_common(8):
        print(f"  {n * scale:7.3f}  {name}")
    print(f"\ntop {args.top} by self time (s/GB, % of samples):")
    for name, n in self_t.most_common(args.top):
        print(f"  {n * scale:7.3f} {100 * n / all_samples:5.1f}%  {name}")
    print(f"\ntop {args.top} by total time (s/GB):")
    for name, n in total_t.most_common(args.top):
        print(f"  {n * scale:7.3f} {100 * n / all_samples:5.1f}%  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
