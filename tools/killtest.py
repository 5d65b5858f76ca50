"""SIGKILL torrentgoat commands at random moments and check that the next run completes (issue 16).

    python tools/killtest.py                       # 20 runs each of get, collection update, publish
    python tools/killtest.py --runs 5 --only get --seed 7 --keep /tmp/kills

Each run kills the command one to three times after random delays (up to 1.1 x one uninterrupted
run), checks what the kill left (``collection verify`` must accept a collection directory, which
must hold the old version or the new one), then runs it to the end and compares every byte.  One
line per scenario: kills that landed, checks passed, bytes the seeds sent against the payload.
Exit status 1 if anything failed.  See :mod:`torrentgoat.testing.kills`.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import sys
import tempfile
from pathlib import Path

from torrentgoat.testing.kills import KillReport, kill_get, kill_publish, kill_update

SCENARIOS = {"get": kill_get, "update": kill_update, "publish": kill_publish}


async def _main(args: argparse.Namespace, work: Path) -> list[KillReport]:
    reports = []
    rng = random.Random(args.seed)
    for name in args.only or list(SCENARIOS):
        folder = work / name
        folder.mkdir(parents=True, exist_ok=True)
        report = await SCENARIOS[name](
            folder, runs=args.runs, rng=rng, say=lambda text: print(text, flush=True)
        )
        reports.append(report)
        print(report.line(), flush=True)
        for failure in report.failures:
            print(f"  FAILED: {failure}", flush=True)
    return reports


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=20, help="runs per scenario (default 20)")
    parser.add_argument("--only", action="append", choices=sorted(SCENARIOS), help="scenario (repeatable)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random delays")
    parser.add_argument("--keep", type=Path, default=None, help="work in this folder and keep it")
    args = parser.parse_args(argv)
    work = args.keep or Path(tempfile.mkdtemp(prefix="torrentgoat-kills-"))
    try:
        reports = asyncio.run(_main(args, work))
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    print("summary:")
    for report in reports:
        print("  " + report.line())
    return 0 if all(r.ok for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
