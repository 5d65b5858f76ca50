"""Hash-check throughput: torrentgoat's pipeline against the machine's raw ``hashlib`` ceiling.

Run: ``python -m benchmarks.hashing [--size 2GiB] [--piece-size 4MiB] [--dir /tmp] [--threads N]
[--format v1|v2|hybrid|all]``.

``--format`` picks the torrent format (default ``v1``; ``all`` runs the three in turn and ends with one
summary table).  The raw ceiling does the same work with bare ``hashlib``: SHA-1 of each piece (v1),
SHA-256 of each 16 KiB block folded into the piece's merkle node (v2, BEP 52), or both (hybrid).

1. Writes a model-like safetensors file of ``--size`` (reused when already there: ``--keep``), makes its
   .torrent with :func:`torrentgoat.creation.create_torrent`, and warms the page cache.
2. Measures, on the same bytes from the page cache, best of ``--repeat`` runs:
   * ``raw 1 thread`` / ``raw N threads``: ``os.preadv`` into a reused buffer + ``hashlib.sha1`` +
     compare, piece by piece, on 1 and N plain threads -- the ceiling nothing in Python can beat (also
     run with N + disk_threads threads: on a loaded machine more threads get a bigger CPU share, and
     the ceiling is the best of the two);
   * ``check_existing``: :meth:`PieceHasher.check` through the library API (uvloop and plain asyncio);
   * ``cli verify``: ``python -m torrentgoat verify`` in a subprocess, with its peak RSS
     (``getrusage(RUSAGE_CHILDREN).ru_maxrss``).
3. Prints MB/s (10^6 bytes/s), the ratio to the N-thread ceiling (target >= 0.9) and peak RSS.
   ``--cold`` adds the same reads with the file dropped from the page cache first
   (``posix_fadvise(DONTNEED)`` on that file only), where the disk, not SHA-1, sets the pace.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from torrentgoat.aio.hasher import PieceHasher
from torrentgoat.config import IOConfig
from torrentgoat.creation import create_torrent
from torrentgoat.infohashes import TorrentFormat
from torrentgoat.metainfo import InfoDict
from torrentgoat.storage import FileStorage
from torrentgoat.testing.shards import parse_size, write_safetensors_shard

__all__ = ["main", "raw_hash"]


def _merkle_node(view: memoryview, data_length: int, width: int | None) -> bytes:
    """Bare-hashlib BEP 52 piece node: SHA-256 per 16 KiB block, zero-padded, folded pairwise."""
    sha256 = hashlib.sha256
    layer = [sha256(view[j : j + 16384]).digest() for j in range(0, data_length, 16384)]
    size = width if width is not None else 1 << (len(layer) - 1).bit_length()
    pad = bytes(32)
    while size > 1:
        if len(layer) % 2:
            layer.append(pad)
        layer = [sha256(layer[k] + layer[k + 1]).digest() for k in range(0, len(layer), 2)]
        pad = sha256(pad + pad).digest()
        size //= 2
    return layer[0]


def raw_hash(path: Path, info: InfoDict, threads: int) -> float:
    """Seconds to pread + hash + compare every piece on ``threads`` plain threads (SHA-1, merkle or both
    as the torrent's format asks)."""
    fd = os.open(path, os.O_RDONLY)
    piece_length = info.piece_length
    n = info.num_pieces
    counter = itertools.count()
    bad: list[int] = []
    v1 = info.has_v1
    checks = [info.v2.piece_check(i) for i in range(n)] if info.v2 is not None else None

    def worker() -> None:
        buf = bytearray(piece_length)
        view = memoryview(buf)
        while (i := next(counter)) < n:
            got = os.preadv(fd, [view], i * piece_length)
            if v1 and hashlib.sha1(view[:got]).digest() != info.piece_hash(i):
                bad.append(i)
            if checks is not None:
                check = checks[i]
                if _merkle_node(view, check.data_length, check.width) != check.expected:
                    bad.append(i)

    try:
        with ThreadPoolExecutor(threads) as pool:
            start = time.perf_counter()
            for future in [pool.submit(worker) for _ in range(threads)]:
                future.result()
            elapsed = time.perf_counter() - start
    finally:
        os.close(fd)
    if bad:
        raise SystemExit(f"raw hash: {len(bad)} pieces do not match the torrent")
    return elapsed


def library_check(
    info: InfoDict, directory: Path, config: IOConfig, *, uvloop: bool, fused: bool = False
) -> float:
    async def check() -> float:
        storage = FileStorage(directory, info, read_only=True)
        async with PieceHasher(config) as hasher:
            start = time.perf_counter()
            result = await hasher.check(info, storage, fused=fused)
            elapsed = time.perf_counter() - start
        storage.close()
        if not result.all_good:
            raise SystemExit(f"check: {result.bad.count} bad, {result.missing.count} missing pieces")
        return elapsed

    if uvloop:
        import uvloop as uv

        with asyncio.Runner(loop_factory=uv.new_event_loop) as runner:
            return runner.run(check())
    return asyncio.run(check())


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


_TIMED_RUN = """
import resource, subprocess, sys, time
start = time.perf_counter()
code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode
elapsed = time.perf_counter() - start
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(code, elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss)
"""
"""Runs a command from a small fresh interpreter and reports its wall time, CPU and peak RSS.

Measuring ``RUSAGE_CHILDREN`` straight from this (big) process would be wrong: Linux folds the RSS a
child had before ``exec`` -- with ``vfork``, the parent's -- into the child's ``ru_maxrss``.
"""


def cli_verify(torrent: Path, directory: Path, threads: int, window: int) -> tuple[float, float, int]:
    """(seconds, CPU seconds, peak RSS in bytes) of ``python -m torrentgoat verify`` in a subprocess."""
    command = [sys.executable, "-m", "torrentgoat", "verify", str(torrent), str(directory), "--quiet"]
    command += ["--hash-threads", str(threads), "--window", str(window)]
    proc = subprocess.run([sys.executable, "-c", _TIMED_RUN, *command], capture_output=True, text=True)
    fields = proc.stdout.split()
    if proc.returncode != 0 or len(fields) != 4 or fields[0] != "0":
        raise SystemExit(f"cli verify failed: {proc.stdout}{proc.stderr}")
    return float(fields[1]), float(fields[2]), int(fields[3]) * 1024


_RAW_PROCESS = """
import hashlib, itertools, os, sys
from concurrent.futures import ThreadPoolExecutor
data, hashes, piece_length, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
with open(hashes, "rb") as f:
    digests = f.read()
n = len(digests) // 20
fd = os.open(data, os.O_RDONLY)
counter = itertools.count()
bad = []
def worker():
    view = memoryview(bytearray(piece_length))
    while (i := next(counter)) < n:
        got = os.preadv(fd, [view], i * piece_length)
        if hashlib.sha1(view[:got]).digest() != digests[20 * i : 20 * i + 20]:
            bad.append(i)
with ThreadPoolExecutor(threads) as pool:
    for future in [pool.submit(worker) for _ in range(threads)]:
        future.result()
sys.exit(1 if bad else 0)
"""
"""The reference for ``verify`` as a whole process (issue 15): a bare interpreter that reads the piece
hashes and checks every piece with ``preadv`` + ``hashlib.sha1`` on N plain threads, nothing else."""


def raw_process(data: Path, hashes: Path, piece_length: int, threads: int) -> tuple[float, float, int]:
    """(seconds, CPU seconds, peak RSS in bytes) of the bare-hashlib checking process (v1)."""
    command = [sys.executable, "-c", _RAW_PROCESS, str(data), str(hashes), str(piece_length), str(threads)]
    proc = subprocess.run([sys.executable, "-c", _TIMED_RUN, *command], capture_output=True, text=True)
    fields = proc.stdout.split()
    if proc.returncode != 0 or len(fields) != 4 or fields[0] != "0":
        raise SystemExit(f"raw hashlib process failed: {proc.stdout}{proc.stderr}")
    return float(fields[1]), float(fields[2]), int(fields[3]) * 1024


def in_process(fn: Callable[[], float]) -> Callable[[], tuple[float, float, int | None]]:
    """Wrap a measure returning wall seconds into (wall, CPU seconds of this process, no RSS)."""

    def measure() -> tuple[float, float, int | None]:
        cpu = _cpu(resource.RUSAGE_SELF)
        seconds = fn()
        return seconds, _cpu(resource.RUSAGE_SELF) - cpu, None

    return measure


def cli_startup() -> float:
    """Seconds of ``python -m torrentgoat --version``: interpreter start and imports."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "torrentgoat", "--version"], capture_output=True, check=True)
    return time.perf_counter() - start


def evicted(
    path: Path, fn: Callable[[], tuple[float, float, int | None]]
) -> Callable[[], tuple[float, float, int | None]]:
    """``fn`` run after dropping ``path`` (only that file) from the page cache: a cold read."""

    def measure() -> tuple[float, float, int | None]:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
        return fn()

    return measure


def warm(path: Path) -> float:
    buf = bytearray(16 << 20)
    start = time.perf_counter()
    with path.open("rb", buffering=0) as handle:
        while handle.readinto(buf):
            pass
    return time.perf_counter() - start


def default_size(directory: Path) -> int:
    """2 GiB, or less so the file fits half the free RAM (it must stay in the page cache) and disk."""
    size = 2 * 2**30
    try:
        free_ram = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        size = min(size, free_ram // 2)
    except (ValueError, OSError):
        pass
    size = min(size, shutil.disk_usage(directory).free // 2)
    return max(64 * 2**20, size // 2**20 * 2**20)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--size", default=None, help="data size (default 2GiB, less if RAM or disk space is short)"
    )
    parser.add_argument("--piece-size", default="4MiB", help="piece length (default 4MiB)")
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="where to put the data (default /tmp)")
    parser.add_argument("--threads", type=int, default=0, help="N for the ceiling and the hasher (0: cores)")
    parser.add_argument("--window", type=int, default=IOConfig().check_window, help="pieces in flight")
    parser.add_argument("--repeat", type=int, default=5, help="runs per measurement; the best counts")
    parser.add_argument("--keep", action="store_true", help="keep the data file for the next run")
    parser.add_argument("--no-cli", action="store_true", help="skip the subprocess measurement")
    parser.add_argument(
        "--cold", action="store_true", help="also measure cold reads (the file dropped from the page cache)"
    )
    parser.add_argument(
        "--format",
        default="v1",
        choices=["v1", "v2", "hybrid", "all"],
        help="torrent format to check (default v1; all: each in turn, then a summary)",
    )
    args = parser.parse_args(argv)
    work = Path(args.dir) / "torrentgoat-hashbench"
    work.mkdir(parents=True, exist_ok=True)
    size = parse_size(args.size) if args.size else default_size(work)
    piece_length = parse_size(args.piece_size)
    threads = args.threads or os.cpu_count() or 1
    data = work / f"bench-{size}.safetensors"

    if not (data.exists() and data.stat().st_size == size):
        start = time.perf_counter()
        write_safetensors_shard(data, size, seed=1)
        print(f"wrote {data} ({size / 1e6:.0f} MB) in {time.perf_counter() - start:.1f} s")
    formats: list[TorrentFormat] = ["v1", "v2", "hybrid"] if args.format == "all" else [args.format]
    summary: list[tuple[str, float, float, float]] = []
    for fmt in formats:
        summary.append(bench(fmt, args, data, work, size, piece_length, threads))
    if len(summary) > 1:
        print()
        print(
            f"{'format':8} {'raw ceiling MB/s':>17} {'check_existing MB/s':>20} {'x ceiling':>9} {'x v1 ceiling':>12}"
        )
        v1_ceiling = summary[0][1]
        for fmt, ceiling_rate, check_rate, _ in summary:
            print(
                f"{fmt:8} {ceiling_rate:17.0f} {check_rate:20.0f} {check_rate / ceiling_rate:9.2f}"
                f" {check_rate / v1_ceiling:12.2f}"
            )
    if not args.keep:
        data.unlink()
    return 0


def bench(
    fmt: TorrentFormat,
    args: argparse.Namespace,
    data: Path,
    work: Path,
    size: int,
    piece_length: int,
    threads: int,
) -> tuple[str, float, float, float]:
    """Every measure for one format; returns (format, ceiling MB/s, best check_existing MB/s, x ceiling)."""
    start = time.perf_counter()
    metainfo = create_torrent(
        data, piece_length=piece_length, creation_date=None, threads=threads, format=fmt
    )
    created = time.perf_counter() - start
    info = metainfo.info
    torrent = work / f"bench-{size}-{piece_length}-{fmt}.torrent"
    torrent.write_bytes(metainfo.to_bytes())
    warmed = warm(data)
    print(
        f"[{fmt}] data {size / 2**30:.2f} GiB, {info.num_pieces} pieces of {piece_length / 2**20:g} MiB,"
        f" {threads} threads (cores: {os.cpu_count()}), window {args.window}, best of {args.repeat}"
    )
    print(
        f"create_torrent (first read, may be cold): {size / created / 1e6:.0f} MB/s; warm read {warmed:.2f} s"
    )

    config = IOConfig(hash_threads=threads, check_window=args.window)
    ceiling_name = f"raw hashlib, {threads} threads (ceiling)"
    wide = threads + config.disk_threads
    wide_name = f"raw hashlib, {wide} threads"
    measures: dict[str, Callable[[], tuple[float, float, int | None]]] = {
        "raw hashlib, 1 thread": in_process(lambda: raw_hash(data, info, 1)),
        ceiling_name: in_process(lambda: raw_hash(data, info, threads)),
        wide_name: in_process(lambda: raw_hash(data, info, wide)),
        "check_existing (uvloop)": in_process(lambda: library_check(info, work, config, uvloop=True)),
        "check_existing (asyncio)": in_process(lambda: library_check(info, work, config, uvloop=False)),
        "check_existing fused (uvloop)": in_process(
            lambda: library_check(info, work, config, uvloop=True, fused=True)
        ),
    }
    process_name = f"raw hashlib process, {threads} threads"
    if not args.no_cli:
        if fmt == "v1":
            hashes = work / f"bench-{size}-{piece_length}.sha1"
            hashes.write_bytes(b"".join(info.piece_hash(i) for i in range(info.num_pieces)))
            measures[process_name] = lambda: raw_process(data, hashes, piece_length, threads)
        measures["cli verify (subprocess)"] = lambda: cli_verify(torrent, work, threads, args.window)
    if args.cold:
        cold = {
            f"cold: raw hashlib, {threads} threads": in_process(lambda: raw_hash(data, info, threads)),
            "cold: check_existing (uvloop)": in_process(
                lambda: library_check(info, work, config, uvloop=True)
            ),
            "cold: check_existing fused (uvloop)": in_process(
                lambda: library_check(info, work, config, uvloop=True, fused=True)
            ),
        }
        measures.update({name: evicted(data, fn) for name, fn in cold.items()})
    # Interleaved rounds, best time per measure: a shared machine's noise hits every measure alike.
    timings: dict[str, list[float]] = {name: [] for name in measures}
    cpus: dict[str, list[float]] = {name: [] for name in measures}
    peak: dict[str, int] = {}
    for _ in range(args.repeat):
        for name, measure in measures.items():
            seconds, cpu, rss = measure()
            timings[name].append(seconds)
            cpus[name].append(cpu)
            if rss is not None:
                peak[name] = max(peak.get(name, 0), rss)
    # The ceiling is the best raw run with N threads -- or with as many threads as the pipeline uses
    # (N hashing + disk threads), which gets a bigger share of a machine other processes also load.
    ceiling = min(timings[ceiling_name] + timings[wide_name])
    ceiling_cpu = statistics.median(cpus[ceiling_name])

    print(f"{'measure':42} {'MB/s':>7} {'x ceiling':>9} {'CPU s/GB':>9} {'x CPU':>6} {'peak RSS':>9}")
    for name in measures:
        seconds = min(timings[name])
        cpu = statistics.median(cpus[name])
        rss = peak.get(name)
        rss_text = f"{rss / 2**20:.0f} MiB" if rss is not None else ""
        print(
            f"{name:42} {size / seconds / 1e6:7.0f} {ceiling / seconds:9.2f} {cpu / size * 1e9:9.3f}"
            f" {ceiling_cpu / cpu:6.2f} {rss_text:>9}"
        )
    if not args.no_cli:
        startup = min(cli_startup() for _ in range(args.repeat))
        seconds = min(timings["cli verify (subprocess)"]) - startup
        print(
            f"{'cli verify minus startup (' + format(startup, '.2f') + ' s)':42}"
            f" {size / seconds / 1e6:7.0f} {ceiling / seconds:9.2f}"
        )
        if process_name in timings:
            verify_s, raw_s = timings["cli verify (subprocess)"], timings[process_name]
            verify_cpu, raw_cpu = cpus["cli verify (subprocess)"], cpus[process_name]
            print(
                f"whole process, cli verify vs {process_name}: best {min(raw_s) / min(verify_s):.2f}x,"
                f" median {statistics.median(raw_s) / statistics.median(verify_s):.2f}x (wall);"
                f" CPU {statistics.median(raw_cpu) / statistics.median(verify_cpu):.2f}x (target >= 0.9x)"
            )
    print(
        "MB/s and 'x ceiling' from the best wall time; CPU s/GB (median) and 'x CPU' (ceiling's CPU per"
        " byte / ours) are robust to other load on a shared machine"
    )
    if not args.keep:
        torrent.unlink()
    best_check = min(min(timings["check_existing (uvloop)"]), min(timings["check_existing (asyncio)"]))
    return fmt, size / ceiling / 1e6, size / best_check / 1e6, ceiling / best_check


if __name__ == "__main__":
    raise SystemExit(main())
