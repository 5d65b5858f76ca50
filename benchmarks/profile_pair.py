"""py-spy profile of one side of a loopback transfer: torrentgoat leeching from libtorrent, or seeding to it.

    python -m benchmarks.profile_pair leech|seed --torrent T --data FILE [--out PREFIX] [--rate 250]
        [--tg-root CHECKOUT] [--utp]

The other side is libtorrent (``tools/lt_peer.py``); the torrentgoat process runs under
``py-spy record --threads --gil --format raw`` (py-spy spawns the real interpreter, so the samples are
of it), and the table of :mod:`benchmarks.pyspy_summary` is printed with seconds per GB of payload.
The torrentgoat process's own CPU (all threads, and the main thread) is read from ``/proc`` over the
transfer, so the shares can be read as CPU seconds per GB.  ``--utp`` runs the connection over uTP
(``TG_TRANSPORT=utp`` for both processes, as ``benchmarks.throughput --utp``).  Seeding: the data file's folder is served;
leeching: into a temporary folder, removed afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.throughput import REPO, Peer, warm

__all__ = ["main"]


def _lt(mode: str, torrent: Path, directory: Path, peer: str | None) -> Peer:
    return Peer("lt", mode, torrent, directory, peer, {})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("side", choices=("leech", "seed"), help="what torrentgoat does")
    parser.add_argument("--torrent", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True, help="the complete payload file")
    parser.add_argument("--out", default="/tmp/tgprofile", help="prefix of the .raw profile")
    parser.add_argument("--rate", type=int, default=250)
    parser.add_argument("--tg-root", type=Path, default=REPO, help="torrentgoat checkout to profile")
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--utp", action="store_true", help="over uTP (TG_TRANSPORT=utp for both sides)")
    args = parser.parse_args(argv)
    if args.utp:
        os.environ["TG_TRANSPORT"] = "utp"  # read by throughput.Peer (libtorrent) and _tg_peer
    raw = Path(f"{args.out}-{args.side}.raw")
    size = args.data.stat().st_size
    work = Path(tempfile.mkdtemp(prefix="tgprofile-"))
    spy = ["py-spy", "record", "-r", str(args.rate), "--threads", "--gil", "--format", "raw", "-o", str(raw)]
    spy += ["--", sys.executable, "-m", "benchmarks._tg_peer"]
    env = {**os.environ, "PYTHONPATH": str(args.tg_root)}
    try:
        if args.side == "leech":
            seeder = _lt("seed", args.torrent, args.data.parent, None)
            port = seeder.wait_for("listening", 30)[1]["port"]
            seeder.wait_for("seeding", args.timeout)
            warm(args.data)
            cmd = [*spy, "leech", "--port", "0", "--torrent", str(args.torrent), "--dir", str(work)]
            cmd += ["--peer", f"127.0.0.1:{port}"]
            started = time.monotonic()
            tg = subprocess.Popen(cmd, cwd=args.tg_root, env=env, stdout=subprocess.PIPE, text=True)
            assert tg.stdout is not None
            for line in tg.stdout:
                event = json.loads(line) if line.startswith("{") else {}
                if event.get("event") == "finished":
                    print(f"leech finished: {json.dumps(event)}")
            tg.wait(args.timeout)
            print(f"wall {time.monotonic() - started:.1f} s (py-spy start-up included)")
            seeder.reap()
        else:
            cmd = [
                *spy,
                "seed",
                "--port",
                "0",
                "--torrent",
                str(args.torrent),
                "--dir",
                str(args.data.parent),
            ]
            tg = subprocess.Popen(
                cmd, cwd=args.tg_root, env=env, stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True
            )
            assert tg.stdout is not None and tg.stdin is not None
            port = 0
            for line in tg.stdout:
                event = json.loads(line) if line.startswith("{") else {}
                if event.get("event") == "listening":
                    port = event["port"]
                if event.get("event") == "seeding":
                    break
            warm(args.data)
            leecher = _lt("leech", args.torrent, work, f"127.0.0.1:{port}")
            started = time.monotonic()
            leecher.wait_for("finished", args.timeout)
            print(f"lt leech finished in {time.monotonic() - started:.1f} s")
            tg.stdin.close()
            for line in tg.stdout:
                if line.startswith("{"):
                    print(line.strip())
            tg.wait(60)
            leecher.reap()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"profile: {raw}")
    subprocess.run(
        [sys.executable, "-m", "benchmarks.pyspy_summary", str(raw), "--gb", f"{size / 1e9:.4f}"],
        cwd=REPO,
        check=False,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
