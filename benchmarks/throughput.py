"""Loopback transfer speed, CPU and memory: torrentgoat against libtorrent, one seeder -> one leecher.

Run: ``python -m benchmarks.throughput [--size 1GiB] [--piece-size 4MiB] [--dir /tmp/tgbench]
[--only tg-tg,lt-tg,...] [--repeat N] [--csv out.csv]``.

1. Writes one model-like safetensors file of ``--size`` (reused if already there with the same size),
   makes its .torrent with :func:`torrentgoat.creation.create_torrent`.
2. For each pair ``SEEDER-LEECHER`` in ``lt-lt, lt-tg, tg-lt, tg-tg`` (``lt`` = libtorrent 2.1 through
   ``tools/lt_peer.py``, ``tg`` = torrentgoat through ``benchmarks/_tg_peer.py``), each side in its own
   process, both on 127.0.0.1, no DHT/trackers/PEX/uTP/encryption negotiation beyond the defaults:
   * start the seeder on the original file and wait until it has checked it and seeds;
   * warm the page cache (read the whole file once: libtorrent drops a file from the page cache after
     checking it, and both seeders must serve from the same conditions);
   * start the leecher on an empty directory, dialling the seeder; wait for it to finish;
   * stop the seeder; delete the leecher's data.
3. Measures, per run:
   * **MB/s** = payload bytes (10^6) / seconds from the leecher's ``listening`` line (its process is
     up, libraries imported) to its ``finished`` line (every piece verified and written), both
     timestamped by this harness when it reads them -- the same clock and definition for every pair;
   * **CPU s/GB** of each process *during that window*: the change of ``utime + stime`` in
     ``/proc/PID/stat`` between those two lines, per 10^9 payload bytes (the seeder's own check at
     start is excluded);
   * **peak RSS** of each process over its whole life (``ru_maxrss`` from :func:`os.wait4`);
   * the ratio of MB/s to ``lt-lt`` of the same run.
   With ``--repeat N`` each pair runs N times, round robin (so load from other processes on the
   machine hits every pair alike), and the median of each column is reported (``--stat best``: the
   fastest run; peak RSS is always the largest of the runs).  Each run's line shows the load average.
4. ``--compare before=/path/to/old/checkout`` adds the torrentgoat pairs of another checkout (e.g.
   ``git archive REV | tar -x -C DIR``, plus this benchmarks/ folder) and ``--compare
   batched=:batch-fill,read-into`` the pairs under monkeypatched variants from
   ``benchmarks/_experiments.py``, to the same round robin.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import queue
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torrentgoat.creation import create_torrent
from torrentgoat.testing.shards import parse_size, write_safetensors_shard

__all__ = ["PAIRS", "RunResult", "main", "run_pair"]

REPO = Path(__file__).resolve().parent.parent
PAIRS = ("lt-lt", "lt-tg", "tg-lt", "tg-tg")
CLK_TCK = os.sysconf("SC_CLK_TCK")
UTP_SOCKET_BUFFER = 4 * 1024 * 1024
"""libtorrent's uTP on loopback drops to ~8 MB/s with the default 208 KiB socket buffers (issue 13);
``--utp`` gives it 4 MiB, as torrentgoat's uTP endpoint asks for itself."""


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a live process (``/proc/PID/stat`` fields 14 and 15)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read()
    except OSError:
        return float("nan")
    fields = text[text.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class Peer:
    """One peer process; JSON lines from its stdout are queued with the time they were read."""

    def __init__(
        self,
        kind: str,
        mode: str,
        torrent: Path,
        data_dir: Path,
        peer: str | None,
        env: dict[str, str],
        root: Path = REPO,
        extra: Sequence[str] = (),
    ) -> None:
        if kind == "lt":
            cmd = [sys.executable, str(REPO / "tools" / "lt_peer.py"), mode, "--port", "0"]
            cmd += ["--report", "0.2"]
            if os.environ.get("TG_ENCRYPTION") == "require":  # the same for libtorrent: RC4 only
                cmd += ["--force-encryption"]
            if os.environ.get("TG_TRANSPORT") == "utp":  # uTP only, with the buffers it needs on loopback
                cmd += ["--utp-only", "--socket-buffer", str(UTP_SOCKET_BUFFER)]
        else:
            cmd = [sys.executable, "-m", "benchmarks._tg_peer", mode, "--port", "0"]
        cmd += ["--torrent", str(torrent), "--dir", str(data_dir)]
        if peer:
            cmd += ["--peer", peer]
        cmd += extra
        self.kind, self.mode = kind, mode
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            cmd,
            cwd=root if kind == "tg" else REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, **env} if kind == "tg" else None,
        )
        self.lines: queue.Queue[tuple[float, dict[str, Any]]] = queue.Queue()
        self.stderr: list[bytes] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()
        self.rusage: Any = None
        self.returncode: int | None = None
        self.last: dict[str, Any] = {}

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            try:
                self.lines.put((time.monotonic(), json.loads(raw)))
            except ValueError:
                continue
        self.lines.put((time.monotonic(), {"event": "eof"}))

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            self.stderr.append(raw)
            del self.stderr[:-40]

    def wait_for(self, event: str, timeout: float) -> tuple[float, dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                err = b"".join(self.stderr).decode(errors="replace")[-2000:]
                raise TimeoutError(
                    f"{self.kind} {self.mode}: no {event!r} within {timeout:.0f} s "
                    f"(last line: {self.last})\n{err}"
                )
            try:
                when, line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            self.last = line
            if line.get("event") == event:
                return when, line
            if line.get("event") in ("eof", "timeout", "error"):
                err = b"".join(self.stderr).decode(errors="replace")[-2000:]
                raise RuntimeError(f"{self.kind} {self.mode}: {line} before {event!r}\n{err}")

    def reap(self, timeout: float = 15.0) -> None:
        """Close stdin (a seed's signal to stop), wait, and keep the child's rusage."""
        if self.proc.stdin is not None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        deadline = time.monotonic() + timeout
        while True:
            pid, status, rusage = os.wait4(self.pid, os.WNOHANG)
            if pid:
                self.rusage = rusage
                self.returncode = os.waitstatus_to_exitcode(status)
                self.proc.returncode = self.returncode
                return
            if time.monotonic() > deadline:
                self.proc.terminate()
                deadline = time.monotonic() + 5
            time.sleep(0.02)

    @property
    def peak_rss_mib(self) -> float:
        return self.rusage.ru_maxrss / 1024 if self.rusage is not None else float("nan")


@dataclass(slots=True, kw_only=True)
class RunResult:
    pair: str
    payload: int
    seconds: float
    seed_cpu: float
    leech_cpu: float
    seed_rss_mib: float
    leech_rss_mib: float
    total_seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def mbps(self) -> float:
        return self.payload / self.seconds / 1e6

    def cpu_per_gb(self, side: str) -> float:
        cpu = self.seed_cpu if side == "seed" else self.leech_cpu
        return cpu / (self.payload / 1e9)


def warm(path: Path) -> None:
    """Read the file once so it sits in the page cache."""
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(8 * 1024 * 1024)
        while f.readinto(buf):
            pass


def run_pair(
    pair: str,
    torrent: Path,
    data: Path,
    work: Path,
    payload: int,
    timeout: float,
    env: dict[str, str] | None = None,
    root: Path = REPO,
    label: str = "",
    leech_root: Path | None = None,
) -> RunResult:
    seed_kind, leech_kind = pair.split("-")
    leech_dir = (leech_root or work) / f"leech-{pair}"
    shutil.rmtree(leech_dir, ignore_errors=True)
    leech_dir.mkdir(parents=True)
    env = env or {}
    seeder = Peer(seed_kind, "seed", torrent, data.parent, None, env, root)
    leecher: Peer | None = None
    try:
        _, line = seeder.wait_for("listening", 30)
        port = line["port"]
        seeder.wait_for("seeding", timeout)
        warm(data)
        leecher = Peer(leech_kind, "leech", torrent, leech_dir, f"127.0.0.1:{port}", env, root)
        t0, _ = leecher.wait_for("listening", 30)
        seed_cpu0 = _cpu_seconds(seeder.pid)
        leech_cpu0 = _cpu_seconds(leecher.pid)
        t1, fin = leecher.wait_for("finished", timeout)
        seed_cpu1 = _cpu_seconds(seeder.pid)
        leech_cpu1 = _cpu_seconds(leecher.pid)
        total = t1 - leecher.started
    finally:
        if leecher is not None:
            leecher.reap()
        seeder.reap()
        shutil.rmtree(leech_dir, ignore_errors=True)
    while not seeder.lines.empty():  # a torrentgoat seed says what serving cost it on the way out
        _, line = seeder.lines.get()
        if line.get("event") == "stopping" and "serving_main_thread_cpu" in line:
            fin = {**fin, "seed_main_thread_cpu": line["serving_main_thread_cpu"]}
    if fin.get("bytes") not in (None, payload):
        raise RuntimeError(f"{pair}: leecher reports {fin.get('bytes')} bytes, expected {payload}")
    return RunResult(
        pair=pair + (f" [{label}]" if label else ""),
        payload=payload,
        seconds=t1 - t0,
        seed_cpu=seed_cpu1 - seed_cpu0,
        leech_cpu=leech_cpu1 - leech_cpu0,
        seed_rss_mib=seeder.peak_rss_mib,
        leech_rss_mib=leecher.peak_rss_mib if leecher else float("nan"),
        total_seconds=total,
        extra={k: v for k, v in fin.items() if k not in ("event", "bytes")},
    )


def summarize(group: list[RunResult], stat: str) -> RunResult:
    """One row for the runs of a pair: the fastest run, or the median of every column; RSS the peak."""
    if stat == "best":
        row = min(group, key=lambda r: r.seconds)
    else:
        row = RunResult(
            pair=group[0].pair,
            payload=group[0].payload,
            seconds=statistics.median(r.seconds for r in group),
            seed_cpu=statistics.median(r.seed_cpu for r in group),
            leech_cpu=statistics.median(r.leech_cpu for r in group),
            seed_rss_mib=0.0,
            leech_rss_mib=0.0,
            total_seconds=statistics.median(r.total_seconds for r in group),
        )
    row.seed_rss_mib = max(r.seed_rss_mib for r in group)
    row.leech_rss_mib = max(r.leech_rss_mib for r in group)
    return row


def print_table(results: list[RunResult]) -> None:
    base = next((r for r in results if r.pair == "lt-lt"), None)
    header = (
        f"{'seeder -> leecher':<24}{'MB/s':>8}{'x lt-lt':>9}{'seed CPU s/GB':>15}{'leech CPU s/GB':>16}"
        f"{'seed RSS MiB':>14}{'leech RSS MiB':>15}{'wall s':>8}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        base_pair, _, variant = r.pair.partition(" ")
        label = base_pair.replace("-", " -> ") + (" " + variant if variant else "")
        ratio = f"{r.mbps / base.mbps:8.2f}x" if base is not None else "       -"
        print(
            f"{label:<24}{r.mbps:8.0f}{ratio:>9}{r.cpu_per_gb('seed'):15.2f}{r.cpu_per_gb('leech'):16.2f}"
            f"{r.seed_rss_mib:14.0f}{r.leech_rss_mib:15.0f}{r.total_seconds:8.2f}"
        )


def write_csv(path: Path, results: list[RunResult]) -> None:
    base = next((r for r in results if r.pair == "lt-lt"), None)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            [
                "pair",
                "payload_bytes",
                "seconds",
                "mb_per_s",
                "ratio_to_lt_lt",
                "seed_cpu_s_per_gb",
                "leech_cpu_s_per_gb",
                "seed_peak_rss_mib",
                "leech_peak_rss_mib",
                "wall_from_spawn_s",
            ]
        )
        for r in results:
            writer.writerow(
                [
                    r.pair,
                    r.payload,
                    f"{r.seconds:.3f}",
                    f"{r.mbps:.1f}",
                    f"{r.mbps / base.mbps:.3f}" if base else "",
                    f"{r.cpu_per_gb('seed'):.3f}",
                    f"{r.cpu_per_gb('leech'):.3f}",
                    f"{r.seed_rss_mib:.1f}",
                    f"{r.leech_rss_mib:.1f}",
                    f"{r.total_seconds:.3f}",
                ]
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", default="1GiB")
    parser.add_argument("--piece-size", default="4MiB")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/tgbench"))
    parser.add_argument("--keep", action="store_true", help="keep the payload for the next run")
    parser.add_argument(
        "--leech-dir",
        type=Path,
        default=None,
        help="where leechers write (default: under --dir); e.g. /dev/shm: on an ext4 mounted with "
        "'discard' the blocks freed by deleting the previous run's data cost the next writer seconds "
        "of system CPU (measured here: 0.25 -> 2.3 s/GiB for pwrite), whichever client it is",
    )
    parser.add_argument("--only", default=",".join(PAIRS), help="comma-separated pairs: " + ",".join(PAIRS))
    parser.add_argument("--repeat", type=int, default=1, help="runs per pair, round robin")
    parser.add_argument(
        "--stat", choices=("median", "best"), default="median", help="what the table shows of the runs"
    )
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--csv", type=Path, default=None)
    parser.add_argument(
        "--rc4",
        action="store_true",
        help="every connection MSE-encrypted with RC4 (libtorrent --force-encryption, torrentgoat "
        "--encryption require); default: MSE with a plaintext payload, both clients' default",
    )
    parser.add_argument(
        "--utp",
        action="store_true",
        help="every connection over uTP (libtorrent --utp-only with 4 MiB socket buffers, torrentgoat "
        "--transport utp: dials over uTP first); default: TCP",
    )
    parser.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="LABEL=ROOT[:EXPERIMENT]",
        help="also run the tg pairs with the torrentgoat checkout at ROOT (empty: this one) and/or "
        "TG_EXPERIMENT (repeatable)",
    )
    parser.add_argument(
        "--experiment",
        default="",
        help="TG_EXPERIMENT for the torrentgoat processes (see benchmarks/_experiments.py)",
    )
    args = parser.parse_args(argv)
    if args.rc4:
        os.environ["TG_ENCRYPTION"] = "require"  # inherited by both kinds of peer process
    if args.utp:
        os.environ["TG_TRANSPORT"] = "utp"
    pairs = [p.strip() for p in args.only.split(",") if p.strip()]
    for p in pairs:
        if p not in PAIRS:
            parser.error(f"unknown pair {p!r} (choose from {', '.join(PAIRS)})")
    size = parse_size(args.size)
    piece = parse_size(args.piece_size)
    work: Path = args.dir
    seed_dir = work / "seed"
    seed_dir.mkdir(parents=True, exist_ok=True)
    data = seed_dir / f"model-{size}.safetensors"
    if not data.exists() or data.stat().st_size != size:
        print(f"writing {data} ({size / 2**30:.2f} GiB) ...", flush=True)
        write_safetensors_shard(data, size, seed=0)
    try:
        torrent = work / f"model-{size}-{piece}.torrent"
        if not torrent.exists():
            print(f"creating {torrent} ...", flush=True)
            meta = create_torrent(data, piece_length=piece)
            torrent.write_bytes(meta.to_bytes())
        payload = size
        print(
            f"payload {payload / 1e6:.0f} MB, piece {piece // 1024} KiB, pairs {', '.join(pairs)}, "
            f"repeat {args.repeat}",
            flush=True,
        )
        variants: list[tuple[str, Path, dict[str, str]]] = [
            ("", REPO, {"TG_EXPERIMENT": args.experiment} if args.experiment else {})
        ]
        for spec in args.compare:
            label, _, rest = spec.partition("=")
            root_text, _, experiment = rest.partition(":")
            root = Path(root_text) if root_text else REPO
            variants.append((label, root, {"TG_EXPERIMENT": experiment} if experiment else {}))
        jobs = [(pair, v) for pair in pairs for v in (variants if "tg" in pair else variants[:1])]
        runs: dict[str, list[RunResult]] = {}
        for i in range(args.repeat):  # round robin: load from elsewhere hits every variant alike
            for pair, (label, root, env) in jobs:
                r = run_pair(
                    pair, torrent, data, work, payload, args.timeout, env, root, label, args.leech_dir
                )
                print(
                    f"  {r.pair} run {i + 1}: {r.mbps:.0f} MB/s in {r.seconds:.2f} s "
                    f"(seed CPU {r.seed_cpu:.2f} s, leech CPU {r.leech_cpu:.2f} s, "
                    f"RSS {r.seed_rss_mib:.0f}/{r.leech_rss_mib:.0f} MiB, load {os.getloadavg()[0]:.1f}"
                    + "".join(
                        f", tg {side} main thread {r.extra[key] / (payload / 1e9):.2f} s/GB"
                        for side, key in (("seed", "seed_main_thread_cpu"), ("leech", "main_thread_cpu"))
                        if key in r.extra
                    )
                    + (
                        f", tg leech over {'/'.join(r.extra['transports'])}"
                        if r.extra.get("transports")
                        else ""
                    )
                    + ")",
                    flush=True,
                )
                runs.setdefault(r.pair, []).append(r)
        results = [summarize(group, args.stat) for group in runs.values()]
        print()
        print_table(results)
        if args.csv:
            write_csv(args.csv, results)
            print(f"\nwrote {args.csv}")
        return 0
    finally:
        if not args.keep:  # the payload is big: gone unless asked for
            for path in (data, work / f"model-{size}-{piece}.torrent"):
                path.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                seed_dir.rmdir()


if __name__ == "__main__":
    raise SystemExit(main())
