"""One seed serving many leechers at once on loopback: torrentgoat's seed against libtorrent's.

    python -m benchmarks.many_peers [--leechers 20] [--size 256MiB] [--piece-size 1MiB] [--repeat 3]
        [--seeds tg,lt] [--dir /tmp/tgmany] [--leech-dir DIR] [--compare LABEL=CHECKOUT] [--keep]

Issue 15: a torrentgoat seed serving 20 libtorrent leechers finishes all of them in <= 1.0x the time
of a libtorrent seed serving the same 20, and as fairly (the spread between the first and the last
leecher to finish no wider than libtorrent's).

Per run: the seed (``benchmarks/_tg_peer.py`` or ``tools/lt_peer.py``, 127.0.0.1) checks the payload
and seeds; the page cache is warmed; then ``--leechers`` libtorrent leechers start one after the other
as fast as processes spawn, each on its own loopback address (127.0.0.2, .3, ...) and dialling from
it (``lt_peer.py --bind-outgoing``), so the seed sees that many distinct peers.  They know only the
seed (no DHT, PEX, LSD or trackers), so every byte comes from it.  Measured by this harness's clock:

* **all done**: seconds from the first leecher's spawn to the last one's ``finished`` line;
* **spread**: seconds between the first and the last ``finished`` line (fairness);
* **seed CPU s/GB**: the seed process's CPU over that time, per GB it uploaded (leechers x size);
* **seed RSS**: its peak RSS (``ru_maxrss``).

Runs go round robin over the seeds (and ``--compare`` checkouts of torrentgoat), medians reported.
The machine's load average is printed with every run: all leechers and the seed share its cores.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.throughput import REPO, Peer, _cpu_seconds, warm
from torrentgoat.creation import create_torrent
from torrentgoat.testing.shards import parse_size, write_safetensors_shard

__all__ = ["ManyResult", "main", "run_many"]


@dataclass(slots=True)
class ManyResult:
    seed: str
    all_done: float
    spread: float
    first: float
    seed_cpu: float
    seed_rss_mib: float
    uploaded: int
    load: float


def run_many(
    seed_kind: str,
    torrent: Path,
    data: Path,
    leech_root: Path,
    leechers: int,
    payload: int,
    timeout: float,
    root: Path = REPO,
    label: str = "",
    env: dict[str, str] | None = None,
) -> ManyResult:
    seeder = Peer(seed_kind, "seed", torrent, data.parent, None, env or {}, root)
    peers: list[Peer] = []
    try:
        port = seeder.wait_for("listening", 60)[1]["port"]
        seeder.wait_for("seeding", timeout)
        warm(data)
        cpu0 = _cpu_seconds(seeder.pid)
        started = time.monotonic()
        for i in range(leechers):
            host = f"127.0.0.{i + 2}"
            where = leech_root / f"leech-{i}"
            shutil.rmtree(where, ignore_errors=True)
            where.mkdir(parents=True)
            extra = ["--host", host, "--bind-outgoing"]
            peers.append(Peer("lt", "leech", torrent, where, f"127.0.0.1:{port}", {}, REPO, extra))
        finished = [peer.wait_for("finished", timeout)[0] for peer in peers]
        cpu1 = _cpu_seconds(seeder.pid)
        load = os.getloadavg()[0]
    finally:
        for peer in peers:
            peer.reap()
        seeder.reap()
        for i in range(len(peers)):
            shutil.rmtree(leech_root / f"leech-{i}", ignore_errors=True)
    return ManyResult(
        seed=seed_kind + (f" [{label}]" if label else ""),
        all_done=max(finished) - started,
        spread=max(finished) - min(finished),
        first=min(finished) - started,
        seed_cpu=cpu1 - cpu0,
        seed_rss_mib=seeder.peak_rss_mib,
        uploaded=payload * leechers,
        load=load,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--leechers", type=int, default=20)
    parser.add_argument("--size", default="256MiB")
    parser.add_argument("--piece-size", default="1MiB")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seeds", default="tg,lt", help="comma-separated: tg, lt")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/tgmany"))
    parser.add_argument("--leech-dir", type=Path, default=None, help="where leechers write (e.g. /dev/shm)")
    parser.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="LABEL=CHECKOUT[:KEY=VALUE,...]",
        help="also a torrentgoat seed from another checkout (empty: this one), with environment variables "
        "for benchmarks/_tg_peer.py (TG_SEED_MODE=round-robin, TG_UPLOAD_SLOTS=8 ...)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the payload for the next run")
    parser.add_argument("--timeout", type=float, default=900.0)
    args = parser.parse_args(argv)
    if not 1 <= args.leechers <= 250:
        parser.error("--leechers must be 1..250 (one loopback address each)")
    size, piece = parse_size(args.size), parse_size(args.piece_size)
    work: Path = args.dir
    seed_dir = work / "seed"
    seed_dir.mkdir(parents=True, exist_ok=True)
    data = seed_dir / f"model-{size}.safetensors"
    torrent = work / f"model-{size}-{piece}.torrent"
    leech_root = (args.leech_dir or work) / "many-leechers"
    try:
        if not data.exists() or data.stat().st_size != size:
            write_safetensors_shard(data, size, seed=0)
        if not torrent.exists():
            torrent.write_bytes(create_torrent(data, piece_length=piece).to_bytes())
        jobs: list[tuple[str, Path, str, dict[str, str]]] = [
            (s.strip(), REPO, "", {}) for s in args.seeds.split(",") if s.strip()
        ]
        for spec in args.compare:
            label, _, rest = spec.partition("=")
            path, _, env_text = rest.partition(":")
            env = dict(item.split("=", 1) for item in env_text.split(",") if item)
            jobs.append(("tg", Path(path) if path else REPO, label, env))
        print(
            f"{args.leechers} libtorrent leechers x {size / 2**20:.0f} MiB ({piece // 1024} KiB pieces), "
            f"seeds {', '.join(s + (f' [{lbl}]' if lbl else '') for s, _, lbl, _ in jobs)}, repeat {args.repeat}",
            flush=True,
        )
        runs: dict[str, list[ManyResult]] = {}
        for i in range(args.repeat):
            for kind, root, label, env in jobs:
                r = run_many(
                    kind, torrent, data, leech_root, args.leechers, size, args.timeout, root, label, env
                )
                runs.setdefault(r.seed, []).append(r)
                print(
                    f"  {r.seed} seed run {i + 1}: all done {r.all_done:.1f} s, first {r.first:.1f} s, "
                    f"spread {r.spread:.1f} s, seed CPU {r.seed_cpu / (r.uploaded / 1e9):.2f} s/GB, "
                    f"RSS {r.seed_rss_mib:.0f} MiB, load {r.load:.1f}",
                    flush=True,
                )
        base = statistics.median(r.all_done for r in runs.get("lt", [])) if "lt" in runs else None
        print()
        print(
            "| seed | all done s (median) | x libtorrent | first s | spread s | seed CPU s/GB | seed RSS MiB |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|")
        for name, group in runs.items():
            done = statistics.median(r.all_done for r in group)
            ratio = f"{done / base:.2f}" if base else "-"
            print(
                f"| {name} | {done:.1f} | {ratio} | {statistics.median(r.first for r in group):.1f} | "
                f"{statistics.median(r.spread for r in group):.1f} | "
                f"{statistics.median(r.seed_cpu / (r.uploaded / 1e9) for r in group):.2f} | "
                f"{max(r.seed_rss_mib for r in group):.0f} |"
            )
        return 0
    finally:
        shutil.rmtree(leech_root, ignore_errors=True)
        if not args.keep:
            for path in (data, torrent):
                path.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                seed_dir.rmdir()


if __name__ == "__main__":
    raise SystemExit(main())
