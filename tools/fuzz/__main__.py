"""``python -m tools.fuzz``: fuzz one target or all, replay the corpus and saved crashes, list targets.

Examples::

    python -m tools.fuzz --list
    python -m tools.fuzz wire_recv --minutes 30
    python -m tools.fuzz all --seconds 60
    python -m tools.fuzz --replay            # every seed and saved crash, in-process, once
    python -m tools.fuzz --minimize metainfo tools/fuzz/crashes/metainfo/crash-...

Exit status: 0 when nothing crashed, 1 when a target crashed (the input is saved, minimized, under
``--crash-dir``), 2 for a usage error.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from tools.fuzz.harness import Target, combined
from tools.fuzz.runner import (
    CRASHES,
    ROOT,
    SEEDS,
    fuzz,
    minimize,
    replay_files,
    save_minimized,
    split_artifact,
)
from tools.fuzz.targets import TARGETS


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.fuzz", description="Coverage-guided fuzzing of torrentgoat's parsers (atheris)."
    )
    parser.add_argument("target", nargs="?", help="a target name (see --list) or 'all'")
    duration = parser.add_mutually_exclusive_group()
    duration.add_argument("--minutes", type=float, help="how long to fuzz each target (default 1 minute)")
    duration.add_argument("--seconds", type=float, help="how long to fuzz each target, in seconds")
    parser.add_argument("--list", action="store_true", help="list the targets and exit")
    parser.add_argument(
        "--together",
        action="store_true",
        help="with 'all': one libFuzzer process for every target (the first byte picks one); the CI smoke run",
    )
    parser.add_argument(
        "--replay", action="store_true", help="run the seed corpus and saved crashes once, in-process"
    )
    parser.add_argument(
        "--minimize", metavar="FILE", type=Path, help="minimize one crashing input of TARGET, print it"
    )
    parser.add_argument(
        "--work-dir", type=Path, default=ROOT / ".fuzz", help="learned corpus and logs (default .fuzz/)"
    )
    parser.add_argument(
        "--crash-dir",
        type=Path,
        default=CRASHES,
        help="where crashing inputs go (default tools/fuzz/crashes/)",
    )
    parser.add_argument(
        "--timeout", type=int, default=10, help="seconds one input may take before it counts as a hang"
    )
    parser.add_argument("--rss-limit-mb", type=int, default=1024, help="memory one fuzzing process may use")
    return parser


def _names(parser: argparse.ArgumentParser, target: str | None) -> list[str]:
    if target is None or target == "all":
        return list(TARGETS)
    if target not in TARGETS:
        parser.error(f"unknown target {target!r}; one of: all, {', '.join(TARGETS)}")
    return [target]


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.list:
        for name, each in TARGETS.items():
            print(f"{name:13} {each.summary}")
        return 0
    if args.minimize is not None:
        names = _names(parser, args.target)
        small = minimize(TARGETS[names[0]], args.minimize.read_bytes())
        print(f"{len(small)} bytes: {small!r}")
        return 0
    if args.replay:
        failed = 0
        for name in _names(parser, args.target):
            directories = [SEEDS / name, args.crash_dir / name]
            count = sum(1 for d in directories if d.is_dir() for p in d.iterdir() if p.is_file())
            failures = replay_files(TARGETS[name], directories)
            failed += len(failures)
            print(f"{name:13} {count:4} inputs  {'ok' if not failures else f'{len(failures)} FAILED'}")
            for path, signature in failures:
                print(f"    {path}: {signature}")
        return 1 if failed else 0
    if args.target is None:
        parser.error("name a target (or 'all'), or pass --list / --replay")
    seconds = (
        args.seconds if args.seconds is not None else 60 * (args.minutes if args.minutes is not None else 1.0)
    )
    crashed = False
    started = time.monotonic()
    runs: list[Target] = [TARGETS[name] for name in _names(parser, args.target)]
    if args.together:
        if args.target != "all":
            parser.error("--together runs 'all' targets in one process")
        runs = [combined()]
    for fuzz_target in runs:
        result = fuzz(
            fuzz_target,
            seconds=seconds,
            work_dir=args.work_dir,
            crash_dir=args.crash_dir,
            timeout=args.timeout,
            rss_limit_mb=args.rss_limit_mb,
            echo=lambda text: print(text, file=sys.stderr),
        )
        saved = []
        for artifact in result.artifacts:
            if not artifact.exists():
                continue
            owner = fuzz_target
            if fuzz_target.name == "all":
                owner, artifact = split_artifact(artifact, args.crash_dir)
            saved.append(save_minimized(owner, artifact))
        result.artifacts = tuple(saved)
        print(result.line(), flush=True)
        crashed |= result.crashed
    print(f"done in {time.monotonic() - started:.0f} s; logs in {args.work_dir / 'logs'}")
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
