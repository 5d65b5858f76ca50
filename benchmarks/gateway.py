"""Gateway speed: a 1 GiB file served by the torrentgoat gateway vs a plain aiohttp static file response.

Run: ``python -m benchmarks.gateway [--size 1GiB] [--dir /tmp] [--repeat 5] [--loop both|uvloop|asyncio]``.

1. Writes a safetensors file of ``--size`` (reused with ``--keep``), reads it once (page cache warm).
2. In this process, on one event loop, starts two servers on loopback:
   * **FileResponse**: ``aiohttp.web.FileResponse`` for the file -- the reference (``sendfile`` on the
     plain asyncio loop; 256 KiB reads in a thread on uvloop, which has no ``loop.sendfile``);
   * **gateway**: :class:`torrentgoat.gateway.Gateway` over a :class:`FolderSource` holding the file
     (hashed before timing starts), asked as ``huggingface_hub`` asks: ``/org/bench/resolve/main/<file>``.
3. ``curl`` (a separate C process, so the client is never the bottleneck and shares no GIL) fetches
   the whole file, a 1 MiB range from the middle, and a ``HEAD`` (what ``huggingface_hub`` sends before
   every download), from each server in turn, ``--repeat`` times round robin.  Reported: time to first
   byte (``time_starttransfer``) and MB/s (10^6 bytes/s) best and median, server CPU seconds per GB, and
   the gateway / FileResponse ratio.
4. The swarm rows (``--swarm``, on by default; on the first loop only): a seeder in its own process
   (``python -m torrentgoat seed``, loopback, no DHT) holds the file; each run starts a fresh session
   and a gateway whose :class:`SwarmSource` maps the torrent to ``org/bench-swarm`` (``--torrent``),
   and ``curl`` fetches the file while it is still arriving (**swarm, fetching**: time to first byte
   and throughput of a cold request, bytes streamed as pieces verify), then again once the file is
   complete and checked (**swarm, complete**: from disk).  The reference is the same download without
   HTTP, in the same process (**torrent only**: a session's ``wait_complete``): the fetching row over
   it is what streaming through the gateway costs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from torrentgoat.creation import create_torrent
from torrentgoat.gateway import FolderSource, Gateway, GatewayConfig, SwarmConfig, SwarmSource
from torrentgoat.metainfo import Metainfo
from torrentgoat.session import Session
from torrentgoat.testing.shards import parse_size, write_safetensors_shard
from torrentgoat.testing.swarm import loopback_config
from torrentgoat.testing.tracker import free_port

__all__ = ["main"]

NAME = "model-00001-of-00001.safetensors"


@dataclass(slots=True)
class Fetch:
    ttfb: float
    total: float
    size: int
    cpu: float


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def curl(url: str, *, head: bool = False, byte_range: str | None = None) -> Fetch:
    """One transfer by curl; its timings and this process's (the servers') CPU time meanwhile."""
    args = [
        "curl",
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{time_starttransfer} %{time_total} %{size_download}",
    ]
    if head:
        args.append("-I")
    if byte_range:
        args += ["-r", byte_range]
    cpu = _cpu()
    proc = await asyncio.create_subprocess_exec(*args, url, stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    used = _cpu() - cpu
    code, ttfb, total, size = out.decode().split()
    if proc.returncode != 0 or code not in ("200", "206"):
        raise SystemExit(f"curl {url}: exit {proc.returncode}, HTTP {code}")
    return Fetch(ttfb=float(ttfb), total=float(total), size=int(size), cpu=used)


async def measure(path: Path, repeat: int) -> dict[str, dict[str, list[Fetch]]]:
    source = FolderSource()
    await source.add("org/bench", path.parent)
    app = web.Application()
    app.router.add_get("/file", lambda request: web.FileResponse(path))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    static = f"http://127.0.0.1:{runner.addresses[0][1]}/file"
    size = path.stat().st_size
    middle = f"{size // 2}-{size // 2 + 2**20 - 1}"
    results: dict[str, dict[str, list[Fetch]]] = {"FileResponse": {}, "gateway": {}}
    try:
        async with Gateway([source], GatewayConfig(port=0, upstream=None)) as gateway:
            urls = {"FileResponse": static, "gateway": f"{gateway.url}/org/bench/resolve/main/{NAME}"}
            for _ in range(repeat):
                for name, url in urls.items():
                    rows = results[name]
                    rows.setdefault("whole", []).append(await curl(url))
                    rows.setdefault("range", []).append(await curl(url, byte_range=middle))
                    rows.setdefault("head", []).append(await curl(url, head=True))
    finally:
        await runner.cleanup()
    return results


async def _seeder(torrent: Path, folder: Path) -> tuple[asyncio.subprocess.Process, int]:
    """``torrentgoat seed`` in its own process on loopback; its port once it accepts connections."""
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "torrentgoat", "seed", str(torrent), str(folder),
        "--listen", "127.0.0.1", "--listen6", "", "--port", str(port), "--no-dht", "--no-trackers", "--no-lsd", "--no-utp", "-q",
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while True:  # it listens once it has checked the data
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if proc.returncode is not None or time.monotonic() > deadline:
                raise SystemExit("the seeder did not start") from None
            await asyncio.sleep(0.2)
            continue
        writer.close()
        return proc, port


async def measure_swarm(path: Path, repeat: int) -> dict[str, list[Fetch]]:
    """The swarm rows (see the module docstring)."""
    work = path.parent.parent / f"{path.parent.name}-swarm"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    metainfo: Metainfo = await asyncio.to_thread(create_torrent, path, creation_date=None)
    torrent = work / "bench.torrent"
    torrent.write_bytes(metainfo.to_bytes())
    rows: dict[str, list[Fetch]] = {"swarm, fetching": [], "swarm, complete": [], "torrent only": []}
    proc, port = await _seeder(torrent, path.parent)
    peer = f"127.0.0.1:{port}"
    size = path.stat().st_size
    try:
        for run in range(repeat):
            cache = work / f"run-{run}"
            async with Session(loopback_config(seed=run)) as session:
                config = SwarmConfig(cache_dir=cache, peers=(peer,), seed=False)
                async with SwarmSource(session, config) as swarm:
                    await swarm.add_torrent("org/bench-swarm", metainfo)
                    async with Gateway([swarm], GatewayConfig(port=0, upstream=None)) as gateway:
                        url = f"{gateway.url}/org/bench-swarm/resolve/main/{NAME}"
                        rows["swarm, fetching"].append(await curl(url))
                        [fetch] = list(swarm.fetches())
                        while fetch.local(NAME) is None:  # the SHA-256 / policy check after completion
                            await asyncio.sleep(0.05)
                        rows["swarm, complete"].append(await curl(url))
            shutil.rmtree(cache, ignore_errors=True)
            async with Session(loopback_config(seed=run)) as session:
                cpu, start = _cpu(), time.perf_counter()
                leech = await session.add(metainfo, cache, peers=[peer])
                await leech.wait_complete()
                elapsed = time.perf_counter() - start
                rows["torrent only"].append(
                    Fetch(ttfb=float("nan"), total=elapsed, size=size, cpu=_cpu() - cpu)
                )
            shutil.rmtree(cache, ignore_errors=True)
    finally:
        proc.terminate()
        await proc.wait()
        shutil.rmtree(work, ignore_errors=True)
    return rows


def run_loop(
    kind: str, path: Path, repeat: int, swarm: bool
) -> tuple[dict[str, dict[str, list[Fetch]]], dict[str, list[Fetch]]]:
    async def both() -> tuple[dict[str, dict[str, list[Fetch]]], dict[str, list[Fetch]]]:
        local = await measure(path, repeat)
        return local, (await measure_swarm(path, repeat) if swarm else {})

    if kind == "uvloop":
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(both())
    return asyncio.run(both())


def report_swarm(kind: str, size: int, rows: dict[str, list[Fetch]]) -> None:
    print(f"\n### from the swarm (loop: {kind}, {size / 2**30:.2f} GiB, one seeder process on loopback)")
    print("| what | TTFB ms (best / median) | MB/s (best / median) | this process's CPU s/GB |")
    print("|---|---:|---:|---:|")
    medians: dict[str, float] = {}
    for name, fetches in rows.items():
        rates = [f.size / f.total / 1e6 for f in fetches]
        cpu = statistics.median(f.cpu / (f.size / 1e9) for f in fetches)
        medians[name] = statistics.median(rates)
        ttfbs = [f.ttfb * 1000 for f in fetches if f.ttfb == f.ttfb]
        ttfb = f"{min(ttfbs):.0f} / {statistics.median(ttfbs):.0f}" if ttfbs else "-"
        print(f"| {name} | {ttfb} | {max(rates):.0f} / {medians[name]:.0f} | {cpu:.2f} |")
    print(
        f"\nswarm, fetching / torrent only: {medians['swarm, fetching'] / medians['torrent only']:.2f}x "
        "median throughput (what streaming through the gateway costs)"
    )


def report(kind: str, size: int, results: dict[str, dict[str, list[Fetch]]]) -> None:
    print(f"\n### loop: {kind}, {size / 2**30:.2f} GiB file, {len(results['gateway']['whole'])} runs each")
    print(
        "| server | TTFB ms (best / median) | MB/s (best / median) | server CPU s/GB | 1 MiB range TTFB ms | HEAD ms |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    summary: dict[str, tuple[float, float, float]] = {}
    for name, rows in results.items():
        whole = rows["whole"]
        rates = [f.size / f.total / 1e6 for f in whole]
        ttfbs = [f.ttfb * 1000 for f in whole]
        cpu = statistics.median(f.cpu / (f.size / 1e9) for f in whole)
        ranged = statistics.median(f.ttfb * 1000 for f in rows["range"])
        head = statistics.median(f.total * 1000 for f in rows["head"])
        summary[name] = (min(ttfbs), max(rates), statistics.median(rates))
        print(
            f"| {name} | {min(ttfbs):.2f} / {statistics.median(ttfbs):.2f} | {max(rates):.0f} / "
            f"{statistics.median(rates):.0f} | {cpu:.2f} | {ranged:.2f} | {head:.2f} |"
        )
    gateway, reference = summary["gateway"], summary["FileResponse"]
    print(
        f"\ngateway / FileResponse: throughput {gateway[1] / reference[1]:.2f}x best, "
        f"{gateway[2] / reference[2]:.2f}x median; TTFB {gateway[0] / reference[0]:.2f}x"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", default="1GiB", help="file size (default 1GiB)")
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="where to put the file (default /tmp)")
    parser.add_argument("--repeat", type=int, default=5, help="transfers per server and kind (default 5)")
    parser.add_argument("--loop", choices=("both", "uvloop", "asyncio"), default="both")
    parser.add_argument("--keep", action="store_true", help="keep the file for the next run")
    parser.add_argument(
        "--no-swarm", dest="swarm", action="store_false", help="skip the swarm rows (a seeder process)"
    )
    args = parser.parse_args(argv)
    if shutil.which("curl") is None:
        raise SystemExit("curl is needed (apt-get install curl)")
    size = parse_size(args.size)
    folder = Path(args.dir) / f"torrentgoat-gateway-bench-{size}"
    path = folder / NAME
    if not (path.is_file() and path.stat().st_size == size):
        print(f"writing {size / 2**30:.2f} GiB to {path} ...", file=sys.stderr)
        write_safetensors_shard(path, size, seed=7)
    try:
        start = time.perf_counter()
        with path.open("rb", buffering=0) as handle:
            buf = bytearray(16 << 20)
            while handle.readinto(buf):
                pass
        print(
            f"page cache warmed in {time.perf_counter() - start:.1f} s; load {os.getloadavg()[0]:.1f}",
            file=sys.stderr,
        )
        loops = ("uvloop", "asyncio") if args.loop == "both" else (args.loop,)
        for n, kind in enumerate(loops):
            local, swarm = run_loop(kind, path, args.repeat, args.swarm and n == 0)
            report(kind, size, local)
            if swarm:
                report_swarm(kind, size, swarm)
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
