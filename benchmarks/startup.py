"""Start-up time of the command line: ``python -m torrentgoat --help`` and each command's ``--help``
against a bare ``python -c pass`` (issue 15: ``--help`` <= 0.15 s).

    python -m benchmarks.startup [--repeat 20] [--compare LABEL=OTHER_CHECKOUT ...]

Each case is a fresh interpreter, run ``--repeat`` times round robin; wall seconds and CPU seconds
(user + sys of the child, from ``os.wait4``) are reported as medians, and "beyond start" subtracts the
bare interpreter's median.  The load average is printed with the table: on a busy machine the CPU
column is the steadier one.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def one_run(argv: list[str], tree: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one child process."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    started = time.perf_counter()
    child = subprocess.Popen(argv, cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {child.returncode}")
    return wall, usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--commands", default="", help="comma-separated commands whose --help to time too")
    parser.add_argument("--compare", action="append", default=[], metavar="LABEL=CHECKOUT")
    args = parser.parse_args(argv)
    trees = [("now", ROOT)] + [(t.split("=", 1)[0], Path(t.split("=", 1)[1])) for t in args.compare]
    py = sys.executable
    cases: list[tuple[str, str, list[str]]] = [("python -c pass", "-", [py, "-c", "pass"])]
    for label, _ in trees:
        cases.append(("--help", label, [py, "-m", "torrentgoat", "--help"]))
        for command in filter(None, args.commands.split(",")):
            cases.append((f"{command} --help", label, [py, "-m", "torrentgoat", command, "--help"]))
    tree_of = dict(trees)
    samples: dict[int, list[tuple[float, float]]] = {i: [] for i in range(len(cases))}
    load_before = os.getloadavg()[0]
    for _ in range(args.repeat):
        for i, (_, label, cmd) in enumerate(cases):
            samples[i].append(one_run(cmd, tree_of.get(label, ROOT)))
    load_after = os.getloadavg()[0]
    base_wall = statistics.median(w for w, _ in samples[0])
    base_cpu = statistics.median(c for _, c in samples[0])
    print(
        f"load average {load_before:.1f} -> {load_after:.1f}; {args.repeat} runs each; python {sys.version.split()[0]}"
    )
    print("| case | tree | wall s (median) | wall min | CPU s (median) | beyond start: wall / CPU |")
    print("|---|---|---:|---:|---:|---:|")
    for i, (name, label, _) in enumerate(cases):
        walls = [w for w, _ in samples[i]]
        cpus = [c for _, c in samples[i]]
        wall, cpu = statistics.median(walls), statistics.median(cpus)
        print(
            f"| {name} | {label} | {wall:.3f} | {min(walls):.3f} | {cpu:.3f} | "
            f"{wall - base_wall:+.3f} / {cpu - base_cpu:+.3f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
