"""Soak: a swarm with churn, kills, a corrupting peer and a flapping tracker, for a long time (issue 16).

    python -m benchmarks.soak [--duration 30m] [--size 32MiB] [--peers 6] [--report 30s]
                              [--kill 0.3] [--flap 20s/5s]

The driver process holds the long-lived part of the swarm: a loopback HTTP/UDP tracker that goes
down for the second half of ``--flap`` (``20s/5s``: every 20 s, 5 s down), a torrentgoat seed, and a
corrupting seed (every block it serves has flipped bytes) that the tracker hands out to everyone.
Around them, ``--peers`` leecher processes at a time (torrentgoat sessions on 127.0.0.1 that find
each other through the tracker and PEX) join, download, seed a while and leave; a share ``--kill`` of
them is SIGKILLed mid-download, and their folder is taken up again later by a new process (fast
resume).  When ``--duration`` is over, no new peer joins and every folder still incomplete is run to
completion.

Printed every ``--report``: the driver's RSS, open descriptors and asyncio tasks (the seed, the
tracker and the corrupting peer live there), peers running, completed, killed, and the tracker's
state.  At the end, the verdict: every peer folder complete and identical to the original (no
unverified byte), the corrupting seed banned where it was met, and RSS, descriptors and tasks flat
(after the warm-up tenth, the medians of the last third of the samples against those of the first
third: RSS within +25%, descriptors and tasks within +10).  Exit status 0 only if all of that holds.  ``tests/test_soak.py`` runs a short version.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["SoakResult", "main", "soak"]


def _parse_duration(text: str) -> float:
    text = text.strip().lower()
    for suffix, factor in (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)):
        if text.endswith(suffix) and text[: -len(suffix)].replace(".", "", 1).isdigit():
            return float(text[: -len(suffix)]) * factor
    return float(text)


def _sample() -> dict[str, float]:
    rss = 0
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) // 1024
    return {"rss_mib": rss, "fds": len(os.listdir("/proc/self/fd")), "tasks": len(asyncio.all_tasks())}


# --------------------------------------------------------------------------- a leecher process


async def _child(torrent: str, directory: str, stay: float) -> int:
    from torrentgoat.session import Session, SessionConfig
    from torrentgoat.torrent import TorrentConfig

    config = SessionConfig(
        listen_host="127.0.0.1",
        listen_ipv6=None,
        listen_port=0,
        enable_dht=False,
        enable_lsd=False,
        torrent=TorrentConfig(seed=True),
    )
    started = time.monotonic()
    async with Session(config) as session:
        leech = await session.add(Path(torrent), Path(directory))
        print(json.dumps({"event": "started"}), flush=True)
        await leech.wait_complete()
        print(
            json.dumps(
                {
                    "event": "finished",
                    "seconds": time.monotonic() - started,
                    "hash_failures": leech.hash_failures,
                    "downloaded": leech.downloaded,
                    "banned": len(leech.pool.banned),
                }
            ),
            flush=True,
        )
        await asyncio.sleep(stay)  # seed a while, then leave
    return 0


# --------------------------------------------------------------------------- the driver


@dataclass
class _Peer:
    directory: Path
    proc: asyncio.subprocess.Process | None = None
    kill_at: float | None = None
    finished: dict[str, Any] | None = None
    runs: int = 0
    reader: asyncio.Task[None] | None = None


@dataclass
class SoakResult:
    """What a soak run found (see the module docstring for the verdict)."""

    peers: int = 0
    """Peer folders started."""
    completed: int = 0
    """... of which complete and identical to the original at the end."""
    mismatched: list[str] = field(default_factory=list)
    """Folders whose bytes differ from the original (must be empty)."""
    incomplete: list[str] = field(default_factory=list)
    kills: int = 0
    runs: int = 0
    """Leecher processes started (a killed folder is taken up again by a new one)."""
    hash_failures: int = 0
    """Pieces that failed their hash at the leechers (the corrupting seed's work: caught)."""
    bans: int = 0
    """Leechers that banned someone (the corrupting seed)."""
    flaps: int = 0
    samples: list[dict[str, float]] = field(default_factory=list)
    growth: dict[str, float] = field(default_factory=dict)
    """Last sample minus first sample after the warm-up."""

    @property
    def flat(self) -> bool:
        g = self.growth
        return bool(g) and g["rss_ratio"] <= 1.25 and g["fds"] <= 10 and g["tasks"] <= 10

    @property
    def ok(self) -> bool:
        return not self.mismatched and not self.incomplete and self.completed == self.peers and self.flat


async def soak(
    *,
    duration: float,
    size: int,
    peers: int,
    report: float,
    kill: float,
    flap: tuple[float, float],
    work: Path,
    seed: int = 1,
    out: Any = print,
) -> SoakResult:
    from torrentgoat.creation import create_torrent
    from torrentgoat.primitives import PeerAddress
    from torrentgoat.session import Session, SessionConfig
    from torrentgoat.testing.hostile import HostileSeeder, storage_reader
    from torrentgoat.testing.shards import write_model_folder
    from torrentgoat.testing.swarm import assert_same_files
    from torrentgoat.testing.tracker import LoopbackTracker
    from torrentgoat.torrent import TorrentConfig

    rng = random.Random(seed)
    result = SoakResult()
    tracker = LoopbackTracker(interval=30, min_interval=30)
    await tracker.start()
    tracker._http_port, tracker._udp_port = tracker.http_port, tracker.udp_port  # same ports after a flap
    root = work / "seed"
    write_model_folder(root / "soak-model", shards=2, shard_size=max(1, size // 2), seed=seed)
    metainfo = create_torrent(
        root / "soak-model",
        piece_length=256 * 1024,
        trackers=[tracker.http_url, tracker.udp_url],
        creation_date=None,
    )
    torrent_path = work / "soak.torrent"
    torrent_path.write_bytes(metainfo.to_bytes())
    info = metainfo.info
    corrupt = HostileSeeder(info, storage_reader(info, root), behaviour="corrupt", seed=seed)
    await corrupt.start()
    tracker.add_peer(metainfo.info_hash, PeerAddress("127.0.0.1", corrupt.port), peer_id=corrupt.peer_id)
    config = SessionConfig(
        listen_host="127.0.0.1",
        listen_ipv6=None,
        listen_port=0,
        enable_dht=False,
        enable_lsd=False,
        torrent=TorrentConfig(seed=True),
    )
    running: list[_Peer] = []
    waiting: list[_Peer] = []  # killed folders, to be taken up again
    everyone: list[_Peer] = []
    tracker_up = True
    loop = asyncio.get_running_loop()
    start = loop.time()
    expected = max(2.0, size / 20e6)  # a rough download time, to aim kills mid-download

    async def read(peer: _Peer) -> None:
        assert peer.proc is not None and peer.proc.stdout is not None
        async for line in peer.proc.stdout:
            with contextlib.suppress(ValueError):
                message = json.loads(line)
                if message.get("event") == "finished":
                    peer.finished = message
                    result.hash_failures += message["hash_failures"]
                    result.bans += bool(message["banned"])

    async def launch(peer: _Peer, *, killable: bool) -> None:
        peer.runs += 1
        result.runs += 1
        stay = rng.uniform(1.0, max(2.0, expected))
        peer.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "benchmarks.soak", "--child", str(torrent_path), str(peer.directory), str(stay),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        peer.reader = asyncio.create_task(read(peer))
        peer.kill_at = (
            loop.time() + rng.uniform(0.3, 1.5) * expected if killable and rng.random() < kill else None
        )
        running.append(peer)

    async def flapper() -> None:
        nonlocal tracker_up
        every, down = flap
        while True:
            await asyncio.sleep(max(0.1, every - down))
            await tracker.close()
            tracker_up = False
            result.flaps += 1
            await asyncio.sleep(down)
            await tracker.start()
            tracker_up = True

    async def reporter() -> None:
        while True:
            sample = _sample()
            sample["t"] = round(loop.time() - start, 1)
            result.samples.append(sample)
            out(
                f"t={sample['t']:>7.1f}s rss={sample['rss_mib']:.0f} MiB fds={sample['fds']:.0f} "
                f"tasks={sample['tasks']:.0f} running={len(running)} completed="
                f"{sum(1 for p in everyone if p.finished)} kills={result.kills} "
                f"tracker={'up' if tracker_up else 'down'}"
            )
            await asyncio.sleep(report)

    async with Session(config) as session:
        seeding = await session.add(metainfo, root, seed=True)
        await seeding.wait_complete()
        background = [asyncio.create_task(flapper()), asyncio.create_task(reporter())]
        try:
            while loop.time() - start < duration:
                for peer in list(running):
                    assert peer.proc is not None
                    if peer.proc.returncode is not None:
                        running.remove(peer)
                        if peer.finished is None:
                            waiting.append(peer)  # died before finishing: take it up again
                    elif peer.kill_at is not None and loop.time() >= peer.kill_at and peer.finished is None:
                        peer.proc.send_signal(signal.SIGKILL)
                        await peer.proc.wait()
                        result.kills += 1
                        running.remove(peer)
                        waiting.append(peer)
                while len(running) < peers:
                    if waiting and rng.random() < 0.5:
                        peer = waiting.pop(0)
                    else:
                        peer = _Peer(directory=work / f"peer-{len(everyone):04d}")
                        everyone.append(peer)
                    await launch(peer, killable=True)
                await asyncio.sleep(0.2)
            # the end: no new peer; every folder runs to completion
            for peer in waiting:
                await launch(peer, killable=False)
            waiting.clear()
            drain = loop.time() + max(120.0, 20 * expected)
            while running and loop.time() < drain:
                for peer in list(running):
                    assert peer.proc is not None
                    if peer.proc.returncode is not None:
                        running.remove(peer)
                        if peer.finished is None and peer.runs < 20:
                            await launch(peer, killable=False)
                await asyncio.sleep(0.2)
        finally:
            for peer in running:
                if peer.proc is not None and peer.proc.returncode is None:
                    peer.proc.kill()
                    await peer.proc.wait()
            for peer in everyone:
                if peer.reader is not None:
                    with contextlib.suppress(asyncio.CancelledError):
                        await asyncio.wait_for(peer.reader, 5)
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
    await corrupt.close()
    await tracker.close()
    result.samples.append({**_sample(), "t": round(loop.time() - start, 1)})

    result.peers = len(everyone)
    for peer in everyone:
        if peer.finished is None:
            result.incomplete.append(peer.directory.name)
            continue
        try:
            assert_same_files(metainfo, root, peer.directory)
        except AssertionError:
            result.mismatched.append(peer.directory.name)
        else:
            result.completed += 1
    steady = [s for s in result.samples[:-1] if s["t"] >= duration / 10] or result.samples[:-1]
    if len(steady) >= 2:
        third = max(1, len(steady) // 3)  # medians of the first and last thirds: transient tasks and
        first, last = steady[:third], steady[-third:]  # connections at a sample's moment do not count

        def median(samples: list[dict[str, float]], key: str) -> float:
            return statistics.median(s[key] for s in samples)

        result.growth = {
            "rss_ratio": round(median(last, "rss_mib") / max(1.0, median(first, "rss_mib")), 3),
            "fds": median(last, "fds") - median(first, "fds"),
            "tasks": median(last, "tasks") - median(first, "tasks"),
        }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", default="30m", help="how long peers keep joining (30m, 90s ...)")
    parser.add_argument("--size", default="32MiB")
    parser.add_argument("--peers", type=int, default=6, help="leecher processes at a time")
    parser.add_argument("--report", default="30s", help="interval of the RSS/fds/tasks lines")
    parser.add_argument("--kill", type=float, default=0.3, help="share of leechers SIGKILLed mid-download")
    parser.add_argument("--flap", default="20s/5s", help="tracker period/downtime")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        torrent, directory, stay = args.child
        return asyncio.run(_child(torrent, directory, float(stay)))

    from torrentgoat.units import parse_size

    every, down = (_parse_duration(x) for x in args.flap.split("/"))
    work = Path(tempfile.mkdtemp(prefix="tg-soak-"))
    try:
        result = asyncio.run(
            soak(
                duration=_parse_duration(args.duration),
                size=parse_size(args.size, what="size"),
                peers=args.peers,
                report=_parse_duration(args.report),
                kill=args.kill,
                flap=(every, down),
                work=work,
                seed=args.seed,
            )
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"\npeers {result.peers} (processes {result.runs}, SIGKILLs {result.kills}), complete and identical "
        f"{result.completed}, mismatched {len(result.mismatched)}, incomplete {len(result.incomplete)}; "
        f"hash failures caught {result.hash_failures}, leechers that banned the corrupting seed {result.bans}; "
        f"tracker flaps {result.flaps}; growth after warm-up {result.growth}"
    )
    print("verdict:", "OK" if result.ok else "FAILED")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
