"""Restarting a complete torrent: time to "complete" with and without resume data, next to libtorrent.

Run: ``python -m benchmarks.resume [--size 8GiB] [--dir /tmp] [--repeat 3] [--keep]``.

1. Writes one model-like safetensors file of ``--size`` (``torrentgoat.testing.shards``, as
   ``tools/make_shard.py`` does) and its .torrent (auto piece size), in a fresh folder under ``--dir``
   (removed at the end unless ``--keep``), and warms the page cache by checking it once.
2. Each measurement is a **whole new process** started by this script; "complete" is the moment the
   child sees the torrent complete (``CLOCK_MONOTONIC`` is shared between processes on Linux, so
   the child prints it and this script subtracts its own spawn time):

   * ``python``: a bare ``python -c pass`` (the floor of any process);
   * ``torrentgoat``: a session on 127.0.0.1 adds the torrent on the complete data (what ``get`` and
     ``seed`` do), with no resume file (a full check, 8 GiB read and hashed from the page cache) and
     with the resume file the previous run wrote (no byte of the payload read);
   * ``get CLI``: ``python -m torrentgoat get T -o DIR`` on the complete data with resume data, to
     its exit (complete, then a clean shutdown);
   * ``libtorrent``: ``lt.session`` adds the same torrent without resume data (a full check), saves
     resume data with ``save_resume_data``/``write_resume_data_buf``, and is restarted with
     ``read_resume_data`` of that file.

3. Prints, per case, the best and the median of ``--repeat`` runs: seconds from spawn to complete,
   seconds "beyond process start" (minus the bare ``python`` floor, the issue 15 target: <= 0.5 s
   for torrentgoat with resume data), and the ratio torrentgoat / libtorrent.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from torrentgoat.creation import create_torrent
from torrentgoat.storage.resume import RESUME_DIR
from torrentgoat.testing.shards import parse_size, write_safetensors_shard

__all__ = ["main"]

_TG_CHILD = """
import time
imported = time.monotonic()
import asyncio, sys
from torrentgoat.session import Session, SessionConfig
from torrentgoat.torrent import TorrentConfig

async def main() -> None:
    config = SessionConfig(listen_host="127.0.0.1", listen_ipv6=None, listen_port=0, enable_dht=False,
                           enable_trackers=False, torrent=TorrentConfig(resume_data=sys.argv[3] == "1"))
    async with Session(config) as session:
        added = time.monotonic()
        torrent = await session.add(sys.argv[1], sys.argv[2])
        await torrent.wait_complete()
        done = time.monotonic()
        plan = torrent.resume.plan
        trusted, checked = (plan.trusted.count, plan.to_check.count) if plan else (0, -1)
        print(done, trusted, checked, done - added, added - imported, flush=True)
        torrent.stop("benchmark")
        await torrent.wait_stopped()

asyncio.run(main())
"""
"""A torrentgoat process: add the torrent on complete data, print the monotonic time it is complete."""

_LT_CHILD = """
import time
imported = time.monotonic()
import sys
import libtorrent as lt

torrent, folder, resume = sys.argv[1], sys.argv[2], sys.argv[3]
ses = lt.session({"listen_interfaces": "127.0.0.1:0", "enable_dht": False, "enable_lsd": False,
                  "enable_upnp": False, "enable_natpmp": False,
                  "alert_mask": lt.alert_category.status | lt.alert_category.storage | lt.alert_category.error})
try:
    with open(resume, "rb") as handle:
        params = lt.read_resume_data(handle.read())
    used = True
except FileNotFoundError:
    params = lt.add_torrent_params()
    used = False
added = time.monotonic()
params.ti = lt.torrent_info(torrent)
params.save_path = folder
handle = ses.add_torrent(params)
while not handle.status().is_seeding:
    ses.wait_for_alert(5)
    ses.pop_alerts()
done = time.monotonic()
status = handle.status()
print(done, int(used), status.num_pieces, done - added, added - imported, flush=True)
handle.save_resume_data(lt.save_resume_flags_t.save_info_dict)
while True:
    ses.wait_for_alert(1000)
    alerts = ses.pop_alerts()
    saved = [a for a in alerts if isinstance(a, lt.save_resume_data_alert)]
    if saved:
        with open(resume + ".tmp", "wb") as out:
            out.write(lt.write_resume_data_buf(saved[0].params))
        import os
        os.replace(resume + ".tmp", resume)
        break
"""
"""A libtorrent process: add the torrent (with its resume file if there is one), print the monotonic
time it is seeding, then save resume data for the next run."""


def _spawn(args: list[str], *, env: dict[str, str] | None = None) -> tuple[float, str]:
    """Run a child to its end; (seconds from spawn to the monotonic time it printed first, its line)."""
    started = time.monotonic()
    result = subprocess.run(args, capture_output=True, text=True, timeout=600, env=env)
    if result.returncode != 0:
        raise SystemExit(
            f"{args[:4]} failed ({result.returncode}):\n{result.stdout}\n{result.stderr[-3000:]}"
        )
    line = result.stdout.strip().splitlines()[0] if result.stdout.strip() else ""
    if not line:
        return time.monotonic() - started, ""
    return float(line.split()[0]) - started, line


def _best_median(values: list[float]) -> tuple[float, float]:
    return min(values), statistics.median(values)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", default="8GiB", help="size of the torrent's one file (default 8GiB)")
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()), help="where to write it")
    parser.add_argument("--repeat", type=int, default=3, help="runs per case (best and median printed)")
    parser.add_argument("--keep", action="store_true", help="keep the data folder")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    size = parse_size(args.size)
    work = Path(tempfile.mkdtemp(prefix="torrentgoat-resume-bench-", dir=args.dir))
    python = sys.executable
    try:
        data = work / "data"
        started = time.perf_counter()
        write_safetensors_shard(data / "model.safetensors", size, seed=15)
        metainfo = create_torrent(data / "model.safetensors", creation_date=None)
        torrent = work / "model.torrent"
        torrent.write_bytes(metainfo.to_bytes())
        info = metainfo.info
        print(
            f"{size / 2**30:.1f} GiB file, {info.num_pieces} pieces of {info.piece_length // 1024} KiB "
            f"(written and hashed in {time.perf_counter() - started:.0f} s); whole processes, best / median "
            f"of {args.repeat}",
            flush=True,
        )
        tg_resume = data / RESUME_DIR / f"{metainfo.info_hash.hex}.resume"
        lt_resume = work / "libtorrent.resume"

        inside: dict[str, list[float]] = {"tg full": [], "tg resume": [], "lt full": [], "lt resume": []}
        """Seconds from adding the torrent to complete, inside the child (no process start, no imports)."""

        def tg(resume: bool) -> float:
            if not resume and tg_resume.exists():
                tg_resume.unlink()
            seconds, line = _spawn([python, "-c", _TG_CHILD, str(torrent), str(data), "1"])
            _, trusted, checked, add_to_complete, _ = line.split()
            if resume and (int(trusted) != info.num_pieces or int(checked) != 0):
                raise SystemExit(f"torrentgoat did not use its resume data: {line}")
            inside["tg resume" if resume else "tg full"].append(float(add_to_complete))
            return seconds

        def lt(resume: bool) -> float:
            if not resume and lt_resume.exists():
                lt_resume.unlink()
            seconds, line = _spawn([python, "-c", _LT_CHILD, str(torrent), str(data), str(lt_resume)])
            if resume and line.split()[1] != "1":
                raise SystemExit("libtorrent did not read its resume data")
            inside["lt resume" if resume else "lt full"].append(float(line.split()[3]))
            return seconds

        def cli_get() -> float:
            started = time.monotonic()
            _spawn(
                [python, "-m", "torrentgoat", "get", str(torrent), "-o", str(data), "--no-dht", "--no-trackers",
                 "--listen", "127.0.0.1", "--listen6", "", "--port", "0", "-q"]
            )  # fmt: skip
            return time.monotonic() - started

        tg(False)  # warms the page cache and writes the resume data
        cases: dict[str, list[float]] = {
            name: [] for name in ("python", "tg full", "tg resume", "get", "lt full", "lt resume")
        }
        for _ in range(args.repeat):
            cases["python"].append(_spawn([python, "-c", "pass"])[0])
            cases["tg full"].append(tg(False))
            cases["tg resume"].append(tg(True))
            cases["get"].append(cli_get())
            cases["lt full"].append(lt(False))
            cases["lt resume"].append(lt(True))
        floor = min(cases["python"])
        rows = [
            ("python -c pass (process floor)", "python"),
            ("torrentgoat, no resume data (full check)", "tg full"),
            ("torrentgoat, resume data", "tg resume"),
            ("torrentgoat get CLI, resume data, to exit", "get"),
            ("libtorrent, no resume data (full check)", "lt full"),
            ("libtorrent, read_resume_data", "lt resume"),
        ]
        print(f"{'case':<44} {'best s':>8} {'median s':>9} {'beyond start':>13} {'add->complete':>14}")
        for label, key in rows:
            best, median = _best_median(cases[key])
            add = f"{min(inside[key]):14.3f}" if key in inside else ""
            print(f"{label:<44} {best:8.3f} {median:9.3f} {best - floor:13.3f} {add}")
        for what, a, b in (
            ("with resume data", "tg resume", "lt resume"),
            ("full check", "tg full", "lt full"),
        ):
            print(
                f"torrentgoat / libtorrent, {what}: {min(cases[a]) / min(cases[b]):.2f}x whole process, "
                f"{min(inside[a]) / min(inside[b]):.2f}x add->complete (time, lower is better)"
            )
        print(
            f"restart with resume data vs a full check: torrentgoat {min(cases['tg full']) / min(cases['tg resume']):.1f}x "
            f"faster, libtorrent {min(cases['lt full']) / min(cases['lt resume']):.1f}x faster"
        )
        if args.json is not None:
            args.json.write_text(
                json.dumps({"size": size, "floor": floor, "cases": cases, "inside": inside}, indent=1)
            )
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
