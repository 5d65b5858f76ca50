"""A real leecher's rate under floods, against the same download undisturbed (issue 16).

    python -m benchmarks.floods [--size 512MiB] [--repeats 3] [--rate 20MB] [--connections 1000]
                                [--attackers 250] [--krpc-rate 10000] [--utp-rate 10000]
                                [--only silent,krpc,...]

Three processes on loopback: the seed under attack (a torrentgoat session with TCP, uTP and the DHT
on the one port, default caps, uploading at most ``--rate``: a fast WAN link; 0 = as fast as the CPUs
go), a flooder, and a leecher (``benchmarks._tg_peer``, from 127.0.0.1) that downloads the payload
from the seed.  The flooder's connections and datagrams come from ``--attackers`` other addresses
(127.0.0.2 ...), and the seed applies its per-IP caps to loopback as it would on the internet
(``limit_loopback``): the cases where per-IP caps cannot help (a botnet) are the default.  For each
repeat, round robin: the undisturbed download, then one download under each flood:

* ``silent``    -- ``--connections`` TCP connections that send nothing, reopened as soon as closed;
* ``slowloris`` -- as many dripping a BitTorrent handshake, one byte a second;
* ``bitfield``  -- 200 connections with a valid handshake, then a 16 MiB bitfield, dripped;
* ``krpc``      -- ``--krpc-rate`` BEP 5 queries per second from random node ids (16 source ports);
* ``utp``       -- ``--utp-rate`` uTP SYN/data/garbage datagrams per second.

Printed: the leecher's MB/s (median of the repeats) and its ratio to the undisturbed median (the
target is >= 0.8), the seed's peak RSS, open descriptors and asyncio tasks during the flood, and the
same once the flood stopped and the handshake deadline passed (descriptors back to the baseline:
nothing leaks).  The seed's stats come from its own ``/proc``, every 0.5 s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

FLOODS = ("silent", "slowloris", "bitfield", "krpc", "utp")


def _proc_stats() -> dict[str, int]:
    rss = 0
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) // 1024
    return {
        "rss_mib": rss,
        "fds": len(os.listdir("/proc/self/fd")),
        "tasks": len(asyncio.all_tasks()),
        "cpu_s": round(time.process_time(), 3),
        "wall_s": round(time.monotonic(), 3),
    }


def _emit(**fields: Any) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


# --------------------------------------------------------------------------- the seed under attack


async def serve_seed(torrent: str, directory: str, rate: int) -> None:
    from torrentgoat.dht import DHTConfig
    from torrentgoat.session import Session, SessionConfig
    from torrentgoat.torrent import TorrentConfig

    config = SessionConfig(
        upload_limit=rate,
        limit_loopback=True,
        dht=DHTConfig(rate_limit_per_ip=True),
        listen_host="127.0.0.1",
        listen_ipv6=None,
        listen_port=0,
        dht_bootstrap=(),
        enable_trackers=False,
        enable_lsd=False,
        enable_pex=False,
        torrent=TorrentConfig(seed=True),
    )
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    threading.Thread(
        target=lambda: (sys.stdin.read(), loop.call_soon_threadsafe(stop.set)), daemon=True
    ).start()
    async with Session(config) as session:
        seeding = await session.add(Path(torrent), Path(directory), seed=True)
        await seeding.wait_complete()
        _emit(event="seeding", port=session.listen_port)
        while not stop.is_set():
            stats = _proc_stats()
            stats.update(
                gate_open=session.gate.open_count,
                handshakes=session.gate.handshake_count,
                dht_nodes=session.dht.routing_table_size if session.dht is not None else 0,
                utp=len(session.utp.manager._by_key) if session.utp is not None else 0,
                peers=len(seeding.swarm.peers),
            )
            _emit(event="stats", **stats)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)


# --------------------------------------------------------------------------- the flooder


async def flood(kind: str, port: int, args: argparse.Namespace, info_hash: bytes) -> None:
    from torrentgoat.testing.floods import ConnectionFlood, DatagramFlood

    n = max(1, args.attackers)
    sources = tuple(f"127.0.{2 + i // 250}.{2 + i % 250}" for i in range(n))

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    threading.Thread(
        target=lambda: (sys.stdin.read(), loop.call_soon_threadsafe(stop.set)), daemon=True
    ).start()
    attack: Any
    if kind == "silent":
        attack = ConnectionFlood("127.0.0.1", port, count=args.connections, script="silent", sources=sources)
    elif kind == "slowloris":
        attack = ConnectionFlood(
            "127.0.0.1", port, count=args.connections, script="slowloris", drip=1.0, sources=sources
        )
    elif kind == "bitfield":
        attack = ConnectionFlood(
            "127.0.0.1", port, count=200, script="bitfield", info_hash=info_hash, drip=0.5, sources=sources
        )
    elif kind == "krpc":
        attack = DatagramFlood(
            "127.0.0.1", port, kind="krpc", rate=args.krpc_rate, sockets=16, sources=sources
        )
    else:
        attack = DatagramFlood("127.0.0.1", port, kind="utp", rate=args.utp_rate, sockets=4, sources=sources)
    await attack.start()
    cpu0, wall0 = time.process_time(), time.monotonic()
    _emit(event="flooding")
    await stop.wait()
    cpu = 100 * (time.process_time() - cpu0) / max(1e-9, time.monotonic() - wall0)
    stats = {k: getattr(attack.stats, k) for k in ("opened", "refused", "closed", "alive")}
    _emit(event="stats", cpu_percent=round(cpu), **stats)
    await attack.aclose()


# --------------------------------------------------------------------------- the driver


class Child:
    def __init__(self, argv: list[str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, *argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
        )
        self.lines: list[dict[str, Any]] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with contextlib.suppress(ValueError):
                self.lines.append(json.loads(line))

    def wait_for(self, event: str, timeout: float = 120.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines:
                if line.get("event") == event:
                    return line
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise SystemExit(f"no {event!r} from {self.proc.args} (exit {self.proc.poll()})")

    def stop(self) -> None:
        assert self.proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._thread.join(timeout=5)


def _stats_since(seed: Child, mark: int) -> list[dict[str, Any]]:
    return [line for line in seed.lines[mark:] if line.get("event") == "stats"]


def cpu_percent(samples: list[dict[str, Any]]) -> str:
    """The seed's CPU use over consecutive samples (runs are separated by gaps: summed per pair)."""
    cpu = wall = 0.0
    for a, b in itertools.pairwise(samples):
        if 0 < b["wall_s"] - a["wall_s"] < 2.0:
            cpu += b["cpu_s"] - a["cpu_s"]
            wall += b["wall_s"] - a["wall_s"]
    return f"{100 * cpu / wall:.0f}" if wall else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", default="512MiB")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rate", default="20MB", help="the seed's upload limit (0: unlimited)")
    parser.add_argument("--attackers", type=int, default=250, help="source addresses of the floods")
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--krpc-rate", type=float, default=10_000)
    parser.add_argument("--utp-rate", type=float, default=10_000)
    parser.add_argument("--only", default=",".join(FLOODS))
    parser.add_argument("--serve-seed", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--flood", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_seed:
        torrent, directory, rate = args.serve_seed
        asyncio.run(serve_seed(torrent, directory, int(rate)))
        return 0
    if args.flood:
        kind, port, info_hash = args.flood
        asyncio.run(flood(kind, int(port), args, bytes.fromhex(info_hash)))
        return 0

    import resource

    from torrentgoat.testing.swarm import make_file_payload
    from torrentgoat.units import parse_size

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))  # children inherit it
    floods = [f for f in args.only.split(",") if f]
    work = Path(tempfile.mkdtemp(prefix="tg-floods-"))
    try:
        payload = make_file_payload(work, parse_size(args.size, what="size"), piece_length=4 * 1024 * 1024)
        info_hash = payload.metainfo.info_hash.raw.hex()
        rate = parse_size(args.rate, what="rate")
        seed = Child(
            [
                "-m",
                "benchmarks.floods",
                "--serve-seed",
                str(payload.torrent_path),
                str(payload.root),
                str(rate),
            ]
        )
        port = seed.wait_for("seeding", timeout=300)["port"]
        time.sleep(1.0)
        baseline = _stats_since(seed, 0)[-1]
        print(f"seed ready on port {port}: {baseline}", flush=True)
        rates: dict[str, list[float]] = {name: [] for name in ("undisturbed", *floods)}
        during: dict[str, list[dict[str, Any]]] = {name: [] for name in floods}
        undisturbed: list[dict[str, Any]] = []
        after: dict[str, dict[str, Any]] = {}
        attacker: dict[str, dict[str, Any]] = {}
        for repeat in range(args.repeats):
            for name in ("undisturbed", *floods):
                attack = None
                mark = len(seed.lines)
                if name != "undisturbed":
                    attack = Child(
                        ["-m", "benchmarks.floods", "--flood", name, str(port), info_hash,
                         "--connections", str(args.connections), "--attackers", str(args.attackers),
                         "--krpc-rate", str(args.krpc_rate),
                         "--utp-rate", str(args.utp_rate)]
                    )  # fmt: skip
                    attack.wait_for("flooding", timeout=120)
                    time.sleep(2.0)  # at full pressure before the leecher starts
                down = work / "down"
                shutil.rmtree(down, ignore_errors=True)
                leech = Child(
                    ["-m", "benchmarks._tg_peer", "leech", "--torrent", str(payload.torrent_path),
                     "--dir", str(down), "--peer", f"127.0.0.1:{port}", "--timeout", "600"]
                )  # fmt: skip
                done = leech.wait_for("finished", timeout=900)
                leech.stop()
                rate = payload.metainfo.info.total_length / done["seconds"] / 1e6
                rates[name].append(rate)
                if attack is None:
                    undisturbed += _stats_since(seed, mark)
                else:
                    during[name] += _stats_since(seed, mark)
                    attack.stop()
                    attacker[name] = next(
                        (x for x in reversed(attack.lines) if x.get("event") == "stats"), {}
                    )
                    # the handshake deadline (10 s) releases what the flood left half-open
                    settle = time.monotonic() + 30
                    while time.monotonic() < settle:
                        last = _stats_since(seed, mark)[-1]
                        if last["gate_open"] == 0 and last["fds"] <= baseline["fds"] + 2:
                            break
                        time.sleep(0.5)
                    after[name] = _stats_since(seed, mark)[-1]
                print(f"repeat {repeat + 1} {name}: {rate:.0f} MB/s", flush=True)
        seed.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    reference = statistics.median(rates["undisturbed"])
    size = args.size
    print(f"\n{size}, 4 MiB pieces, seed upload limit {args.rate}, {args.attackers} attacker addresses, "
          f"median of {args.repeats}; seed baseline: RSS {baseline['rss_mib']} MiB, "
          f"{baseline['fds']} fds, {baseline['tasks']} tasks")  # fmt: skip
    print(
        "| flood | leecher MB/s | x undisturbed | seed CPU % | flooder CPU % | seed peak RSS MiB | peak fds "
        "| peak tasks | fds after | connections (or datagrams) sent |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(f"| none | {reference:.0f} | 1.00 | {cpu_percent(undisturbed)} | | | | | | |")
    for name in floods:
        rate = statistics.median(rates[name])
        peak = during[name] or [baseline]
        flooder = attacker.get(name, {})
        print(
            f"| {name} | {rate:.0f} | {rate / reference:.2f} | {cpu_percent(during[name])} | "
            f"{flooder.get('cpu_percent', '')} | {max(s['rss_mib'] for s in peak)} | "
            f"{max(s['fds'] for s in peak)} | {max(s['tasks'] for s in peak)} | {after[name]['fds']} | "
            f"{flooder.get('opened', '')} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
