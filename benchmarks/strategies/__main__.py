"""Strategy lab CLI.

    python -m benchmarks.strategies --list
    python -m benchmarks.strategies --scenario flash-crowd --peers 100 --size 20GiB \\
        [--piece-size 16MiB[,4MiB,...]] [--strategy NAME[,NAME]|all] [--endgame on|off|both] [--seed N] \\
        [--upload-slots 4] [--degree 25] [--sub-blocks 1] [--seeding normal|super|both] \\
        [--optimistic random|least-progress|both] [--bandwidth fair|equal] [--jobs N] [--csv out.csv] [--plots PREFIX] [--markdown]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import itertools
import os
import re
import sys

from benchmarks.strategies import hybrid as _hybrid  # noqa: F401  (registers seed-sparing)
from benchmarks.strategies.metrics import summarize
from benchmarks.strategies.report import format_table, have_matplotlib, plot, write_csv
from benchmarks.strategies.scenarios import SCENARIOS, build_peers
from benchmarks.strategies.sim import SimConfig, SimResult, simulate
from torrentgoat.picker import strategy_names

__all__ = ["main", "parse_size"]

_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
    "k": 2**10,
    "m": 2**20,
    "g": 2**30,
}


def parse_size(text: str) -> int:
    """``20GiB``, ``16MiB``, ``500MB``, ``4096`` -> bytes."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", text)
    if not m or m.group(2).lower() not in _UNITS:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (try 20GiB, 16MiB, 500MB)")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.strategies",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--list", action="store_true", help="list the scenario presets and strategies")
    ap.add_argument("--scenario", default="flash-crowd", choices=sorted(SCENARIOS))
    ap.add_argument("--peers", type=int, default=None, help="leechers (default: the preset's)")
    ap.add_argument("--size", type=parse_size, default=parse_size("4GiB"))
    ap.add_argument("--piece-size", default="16MiB", help="one size or a comma-separated list")
    ap.add_argument("--strategy", default="rarest-first", help="registered names, comma-separated, or 'all'")
    ap.add_argument("--endgame", choices=("on", "off", "both"), default="on")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--upload-slots", type=int, default=4)
    ap.add_argument("--degree", type=int, default=25, help="neighbours per joining peer")
    ap.add_argument("--sub-blocks", type=int, default=1, help="flows per piece (1: whole pieces)")
    ap.add_argument(
        "--seeding",
        choices=("normal", "super", "both"),
        default="normal",
        help="super: the seeds super-seed (BEP 16, the client's SuperSeeder)",
    )
    ap.add_argument(
        "--optimistic",
        choices=("random", "least-progress", "both"),
        default="random",
        help="the choker's optimistic unchoke: random (BEP 3) or least-progress (the peer furthest behind)",
    )
    ap.add_argument(
        "--bandwidth",
        choices=("fair", "equal"),
        default="fair",
        help="fair: water-filling at both ends; equal: min(up/n_up, down/n_down), about 2x faster",
    )
    ap.add_argument("--jobs", type=int, default=0, help="runs in parallel processes (default: one per CPU)")
    ap.add_argument("--csv", default=None, help="write the table as CSV")
    ap.add_argument("--plots", default=None, help="PNG prefix (needs matplotlib, the 'bench' extra)")
    ap.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    args = ap.parse_args(argv)

    if args.list:
        for sc in SCENARIOS.values():
            print(f"{sc.name:18} (default {sc.default_peers} leechers) {sc.description}")
        print("strategies:", ", ".join(strategy_names()))
        return 0
    strategies = strategy_names() if args.strategy == "all" else args.strategy.split(",")
    unknown = [s for s in strategies if s not in strategy_names()]
    if unknown:
        ap.error(f"unknown strategy {unknown[0]!r} (known: {', '.join(strategy_names())})")
    pieces = [parse_size(p) for p in args.piece_size.split(",")]
    endgames = {"on": [True], "off": [False], "both": [True, False]}[args.endgame]
    seedings = {"normal": [False], "super": [True], "both": [False, True]}[args.seeding]
    optimistics = ["random", "least-progress"] if args.optimistic == "both" else [args.optimistic]
    peers = args.peers if args.peers is not None else SCENARIOS[args.scenario].default_peers
    specs = build_peers(args.scenario, peers, args.size, args.seed)
    configs = [
        SimConfig(
            size=args.size,
            piece_size=piece,
            strategy=strategy,
            endgame=endgame,
            seed=args.seed,
            upload_slots=args.upload_slots,
            degree=args.degree,
            sub_blocks=args.sub_blocks,
            super_seed=super_seed,
            optimistic_mode=optimistic,
            bandwidth=args.bandwidth,
        )
        for piece in pieces
        for strategy in strategies
        for endgame, super_seed, optimistic in itertools.product(endgames, seedings, optimistics)
    ]
    jobs = max(1, min(args.jobs or os.cpu_count() or 1, len(configs)))
    results: list[SimResult | None] = [None] * len(configs)

    def done(i: int, result: SimResult) -> None:
        results[i] = result
        line = format_table([summarize(result, scenario=args.scenario)]).splitlines()[-1]
        print(line, file=sys.stderr, flush=True)

    if jobs == 1:
        for i, cfg in enumerate(configs):
            done(i, simulate(cfg, specs))
    else:  # independent, seeded runs: one process each, same results as one after the other
        with concurrent.futures.ProcessPoolExecutor(jobs) as pool:
            futures = {pool.submit(simulate, cfg, specs): i for i, cfg in enumerate(configs)}
            for future in concurrent.futures.as_completed(futures):
                done(futures[future], future.result())
    runs = [(summarize(r, scenario=args.scenario), r) for r in results if r is not None]
    rows = [m for m, _ in runs]
    print(format_table(rows, markdown=args.markdown))
    if args.csv:
        write_csv(rows, args.csv)
    if args.plots:
        written = plot(runs, args.plots)
        if not written and not have_matplotlib():
            print("(no plots: matplotlib is not installed; pip install -e '.[bench]')", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
