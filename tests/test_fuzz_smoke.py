"""Fuzzing in the test suite (issue 16): every seed and every saved crash of every target replayed
in-process, then every target fuzzed under libFuzzer (atheris) for a few seconds.

The harnesses live in ``tools/fuzz`` (``python -m tools.fuzz --list``); a crash found by a long run
is saved, minimized, under ``tools/fuzz/crashes/<target>/`` and from then on replayed here.  atheris
is in the ``test`` extra: missing in CI is a failure, never a skip.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # tools/ is not installed: import it from the checkout
    sys.path.insert(0, str(ROOT))

from conftest import IN_CI  # noqa: E402

from tools.fuzz.harness import Target  # noqa: E402
from tools.fuzz.runner import CRASHES, SEEDS, crash_signature, minimize, replay_files  # noqa: E402
from tools.fuzz.targets import TARGETS  # noqa: E402

PER_INPUT_LIMIT = 60.0
"""Seconds one replayed input may take before it counts as a hang (generous: a loaded machine)."""


@pytest.mark.parametrize("name", list(TARGETS))
def test_seeds_and_saved_crashes_pass_the_contract(name: str) -> None:
    seeds = SEEDS / name
    assert seeds.is_dir() and any(seeds.iterdir()), f"target {name} has no seed corpus in {seeds}"
    assert sum(p.stat().st_size for p in seeds.iterdir()) < 16 * 1024, f"seed corpus of {name} is not small"
    failures = replay_files(TARGETS[name], [seeds, CRASHES / name], limit=PER_INPUT_LIMIT)
    assert not failures, "\n".join(f"{path}: {signature}" for path, signature in failures)


def test_saved_crashes_belong_to_a_target() -> None:
    if CRASHES.is_dir():
        unknown = {d.name for d in CRASHES.iterdir() if d.is_dir()} - set(TARGETS)
        assert not unknown, f"crash directories for unknown targets: {unknown}"


def test_minimize_keeps_the_crash_and_shrinks_the_input() -> None:
    def run(data: bytes) -> None:
        if b"K" in data and data.count(b"!") >= 2:
            raise KeyError("boom")

    toy = Target(name="toy", summary="", run=run)
    small = minimize(toy, b"xxxxK yyyy ! zzzzzz ! wwww")
    assert crash_signature(toy, small) == crash_signature(toy, b"K!!")
    assert len(small) == 3 and small.count(b"!") == 2


def _require_atheris() -> None:
    try:
        import atheris  # noqa: F401
    except ImportError as exc:
        if IN_CI:
            pytest.fail(f"atheris does not import (test extra): {exc}")
        pytest.skip(f"atheris does not import: {exc}")  # never in CI


def test_every_target_fuzzes_briefly(tmp_path: Path) -> None:
    """One libFuzzer process runs every harness (the input's first byte picks it) for 15 s."""
    _require_atheris()
    crash_dir = tmp_path / "crashes"
    command = [sys.executable, "-m", "tools.fuzz", "all", "--together", "--seconds", "15"]
    proc = subprocess.run(
        [*command, "--work-dir", str(tmp_path / "work"), "--crash-dir", str(crash_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    found = sorted(p for p in crash_dir.rglob("*") if p.is_file()) if crash_dir.is_dir() else []
    saved = "\n".join(f"{p.relative_to(crash_dir)}: {p.read_bytes()!r}" for p in found)
    assert proc.returncode == 0 and not found, f"{proc.stdout}\n{proc.stderr[-3000:]}\n{saved}"
    executions = re.search(r"all\s+\d+ s\s+([\d,]+) execs", proc.stdout)
    assert executions is not None and int(executions.group(1).replace(",", "")) > 100, proc.stdout
