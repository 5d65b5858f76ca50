"""Running targets: libFuzzer sessions in a child process, replaying files, minimizing crashes.

Layout (paths relative to the repository):

* ``tools/fuzz/corpus/<target>/`` -- the seed corpus (in git, read-only for the fuzzer);
* ``tools/fuzz/dicts/<target>.dict`` -- libFuzzer dictionaries (keys and magic values);
* ``tools/fuzz/crashes/<target>/`` -- crashing inputs, minimized; in git once fixed, replayed by the
  test suite as regression inputs;
* ``.fuzz/corpus/<target>/`` -- what the fuzzer learned (new coverage), kept between runs, not in git.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tools.fuzz.harness import TARGETS, Target, run_one, split_combined

__all__ = [
    "FUZZ_DIR",
    "ROOT",
    "RunResult",
    "crash_signature",
    "fuzz",
    "minimize",
    "replay_files",
    "save_minimized",
    "split_artifact",
]

FUZZ_DIR = Path(__file__).resolve().parent
ROOT = FUZZ_DIR.parent.parent
SEEDS = FUZZ_DIR / "corpus"
DICTS = FUZZ_DIR / "dicts"
CRASHES = FUZZ_DIR / "crashes"

_DONE = re.compile(r"#(\d+)\s+DONE\s+cov: (\d+) ft: (\d+) corp: (\d+)/")
_PROGRESS = re.compile(r"#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+) corp: (\d+)/")
_STAT = re.compile(r"stat::(\w+):\s+(\d+)")
_ARTIFACT = re.compile(r"Test unit written to (\S+)")


@dataclass(slots=True, kw_only=True)
class RunResult:
    """What one libFuzzer session reported."""

    target: str
    seconds: float
    returncode: int
    executions: int = 0
    coverage: int = 0
    features: int = 0
    corpus: int = 0
    exec_per_sec: int = 0
    peak_rss_mb: int = 0
    artifacts: tuple[Path, ...] = ()
    log: Path | None = None

    @property
    def crashed(self) -> bool:
        return bool(self.artifacts) or self.returncode != 0

    def line(self) -> str:
        status = "CRASH " + ", ".join(str(a) for a in self.artifacts) if self.crashed else "ok"
        return (
            f"{self.target:13} {self.seconds:6.0f} s  {self.executions:>10,} execs  {self.exec_per_sec:>6,}/s  "
            f"cov {self.coverage:>5}  ft {self.features:>6}  corpus {self.corpus:>5}  rss {self.peak_rss_mb:>4} MB  {status}"
        )


def _parse_log(text: str, result: RunResult) -> None:
    done = _DONE.findall(text) or _PROGRESS.findall(text)
    if done:
        execs, cov, ft, corp = (int(x) for x in done[-1])
        result.executions, result.coverage, result.features, result.corpus = execs, cov, ft, corp
    stats = dict(_STAT.findall(text))
    result.executions = int(stats.get("number_of_executed_units", result.executions))
    result.exec_per_sec = int(stats.get("average_exec_per_sec", 0))
    result.peak_rss_mb = int(stats.get("peak_rss_mb", 0))
    result.artifacts = tuple(Path(p) for p in _ARTIFACT.findall(text))


def fuzz(
    fuzz_target: Target,
    *,
    seconds: float,
    work_dir: Path,
    crash_dir: Path,
    timeout: int = 10,
    rss_limit_mb: int = 1024,
    echo: Callable[[str], None] | None = None,
) -> RunResult:
    """Fuzz one target for ``seconds`` in a child process (libFuzzer through atheris)."""
    name = fuzz_target.name
    corpus = work_dir / "corpus" / name
    artifacts = crash_dir / name
    logs = work_dir / "logs"
    for directory in (corpus, artifacts, logs):
        directory.mkdir(parents=True, exist_ok=True)
    log = logs / f"{name}.log"
    command = [
        sys.executable,
        "-m",
        "tools.fuzz.worker",
        name,
        f"-max_total_time={max(1, round(seconds))}",
        f"-timeout={timeout}",
        f"-rss_limit_mb={rss_limit_mb}",
        f"-max_len={fuzz_target.max_len}",
        f"-artifact_prefix={artifacts}{os.sep}",
        "-print_final_stats=1",
        "-use_value_profile=1",
    ]
    dictionary = DICTS / f"{name}.dict"
    if dictionary.is_file():
        command.append(f"-dict={dictionary}")
    command.append(str(corpus))
    if name == "all":
        command.append(str(_combined_seeds(work_dir / "corpus" / "all-seeds")))
    elif (SEEDS / name).is_dir():
        command.append(str(SEEDS / name))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    started = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.run(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, check=False)
    elapsed = time.monotonic() - started
    text = log.read_text(errors="replace")
    result = RunResult(target=name, seconds=elapsed, returncode=proc.returncode, log=log)
    _parse_log(text, result)
    if not result.exec_per_sec and result.executions:
        result.exec_per_sec = round(result.executions / max(1.0, elapsed))
    if echo is not None and result.crashed:
        echo(text[-4000:])
    return result


def _combined_seeds(directory: Path) -> Path:
    """Every target's seeds, each prefixed with the byte that picks its target in the combined run."""
    directory.mkdir(parents=True, exist_ok=True)
    for index, name in enumerate(TARGETS):
        if (SEEDS / name).is_dir():
            for seed in sorted((SEEDS / name).iterdir()):
                if seed.is_file():
                    (directory / f"{name}-{seed.name}").write_bytes(bytes([index]) + seed.read_bytes())
    return directory


def split_artifact(artifact: Path, crash_dir: Path) -> tuple[Target, Path]:
    """Move a crash of the combined run to its own target's crash directory (first byte dropped)."""
    data = artifact.read_bytes()
    fuzz_target, rest = split_combined(data) if data else (TARGETS[next(iter(TARGETS))], b"")
    kind = artifact.name.split("-", 1)[0]
    path = crash_dir / fuzz_target.name / f"{kind}-{hashlib.sha1(rest).hexdigest()}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(rest)
    artifact.unlink()
    return fuzz_target, path


def crash_signature(fuzz_target: Target, data: bytes) -> str | None:
    """``None`` when the input passes the contract, else the exception type and where it was raised."""
    try:
        run_one(fuzz_target, data)
    except Exception as exc:  # what the contract forbids (RecursionError, AssertionError, ...)
        frames = traceback.extract_tb(exc.__traceback__)
        where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "?"
        return f"{type(exc).__name__} at {where}"
    return None


def minimize(fuzz_target: Target, data: bytes, *, budget: int = 20000) -> bytes:
    """A shorter input with the same crash signature (delta debugging over chunks, then bytes toward 0)."""
    signature = crash_signature(fuzz_target, data)
    if signature is None:
        return data
    runs = 0

    def same(candidate: bytes) -> bool:
        nonlocal runs
        runs += 1
        return crash_signature(fuzz_target, candidate) == signature

    size = max(1, len(data) // 2)
    while size >= 1 and runs < budget:
        start, shrunk = 0, False
        while start < len(data) and runs < budget:
            candidate = data[:start] + data[start + size :]
            if candidate != data and same(candidate):
                data, shrunk = candidate, True
            else:
                start += size
        if not shrunk:
            size //= 2
    for i in range(len(data)):
        for value in (0, 1, 0x30, 0x61):
            if runs >= budget or data[i] == value:
                continue
            candidate = data[:i] + bytes([value]) + data[i + 1 :]
            if same(candidate):
                data = candidate
                break
    return data


def save_minimized(fuzz_target: Target, artifact: Path) -> Path:
    """Minimize a crash artifact in place of the original; returns the new file (``crash-<sha1>``)."""
    data = artifact.read_bytes()
    if not artifact.name.startswith("crash-"):
        return artifact  # timeouts and out-of-memory inputs are kept as found (replaying them is slow)
    small = minimize(fuzz_target, data)
    path = artifact.with_name(f"crash-{hashlib.sha1(small).hexdigest()}")
    path.write_bytes(small)
    if path != artifact:
        artifact.unlink()
    return path


def replay_files(
    fuzz_target: Target, directories: list[Path], *, limit: float | None = None
) -> list[tuple[Path, str]]:
    """Run every file of ``directories`` through the contract; the failures and their signatures.

    With ``limit`` (main thread only), an input running longer than ``limit`` seconds fails as a hang.
    """
    failures: list[tuple[Path, str]] = []
    for directory in directories:
        if not directory.is_dir():
            continue
        for path in sorted(directory.iterdir()):
            if path.is_file() and not path.name.startswith("."):
                with _time_limit(limit):
                    signature = crash_signature(fuzz_target, path.read_bytes())
                if signature is not None:
                    failures.append((path, signature))
    return failures


@contextlib.contextmanager
def _time_limit(seconds: float | None) -> Iterator[None]:
    if seconds is None:
        yield
        return

    def expired(signum: int, frame: object) -> None:
        raise TimeoutError(f"input still running after {seconds:g} s (a hang)")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
