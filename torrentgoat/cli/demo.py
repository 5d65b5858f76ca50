"""``python -m torrentgoat demo``: a whole swarm on loopback, no network needed.

1. writes a model-like shard (a real safetensors header, pseudo-random BF16 weights);
2. hashes it into a torrent (both cores);
3. starts one seeder and ``--leechers`` downloaders, each its own session on 127.0.0.1, the
   downloaders dialling the seeder and each other;
4. shows their progress, then checks every copy against the torrent's SHA-1 pieces and prints
   what each peer downloaded and uploaded.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from torrentgoat.aio.hasher import PieceHasher
from torrentgoat.cli._common import follow
from torrentgoat.cli._run import run
from torrentgoat.config import IOConfig
from torrentgoat.creation import create_torrent
from torrentgoat.session import Session, SessionConfig
from torrentgoat.storage import FileStorage
from torrentgoat.testing.shards import write_safetensors_shard
from torrentgoat.torrent import TorrentConfig
from torrentgoat.units import format_rate, format_size, parse_size

__all__ = ["ORDER", "register"]

ORDER = 5


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "demo",
        help="run a local swarm on loopback (no network needed)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--size", default="256MiB", help="size of the generated shard (default 256MiB)")
    parser.add_argument("--leechers", type=int, default=3, help="downloading peers (default 3)")
    parser.add_argument("--piece-size", default="1MiB", help="piece length (default 1MiB)")
    parser.add_argument("--dir", type=Path, default=None, help="work directory (default: a temporary one)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    if args.dir is not None:
        args.dir.mkdir(parents=True, exist_ok=True)
        return run(_demo(args, args.dir))
    with tempfile.TemporaryDirectory(prefix="torrentgoat-demo-") as work:
        return run(_demo(args, Path(work)))


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def _demo(args: argparse.Namespace, work: Path) -> int:
    size = parse_size(args.size)
    seed_dir = work / "seeder"
    seed_dir.mkdir(exist_ok=True)
    shard = seed_dir / "model-00001-of-00001.safetensors"
    _say(f"[1/4] writing a {format_size(size)} safetensors shard: {shard}")
    if not shard.exists() or shard.stat().st_size != size:
        await asyncio.to_thread(write_safetensors_shard, shard, size)
    _say("[2/4] hashing it into a torrent")
    metainfo = await asyncio.to_thread(create_torrent, shard, piece_length=parse_size(args.piece_size))
    info = metainfo.info
    _say(
        f"      info-hash {metainfo.info_hash.hex}, {info.num_pieces} pieces of {format_size(info.piece_length)}"
    )
    config = SessionConfig(
        listen_host="127.0.0.1",
        listen_ipv6=None,
        listen_port=0,
        enable_dht=False,
        enable_trackers=False,
        torrent=TorrentConfig(seed=True),
    )
    sessions = [Session(config) for _ in range(args.leechers + 1)]
    try:
        for session in sessions:
            await session.start()
        seeder_session, leecher_sessions = sessions[0], sessions[1:]
        _say(f"[3/4] seeder on 127.0.0.1:{seeder_session.listen_port}, {len(leecher_sessions)} leechers")
        seeder = await seeder_session.add(metainfo, seed_dir)
        addresses = [f"127.0.0.1:{s.listen_port}" for s in sessions]
        started = time.monotonic()
        leechers = []
        for i, session in enumerate(leecher_sessions, start=1):
            dest = work / f"leecher-{i}"
            others = [a for a in addresses if a != f"127.0.0.1:{session.listen_port}"]
            leechers.append(await session.add(metainfo, dest, peers=others))
        watchers = [
            asyncio.create_task(follow(t, quiet=args.quiet, label=f"leecher {i}", position=i - 1))
            for i, t in enumerate(leechers, start=1)
        ]
        await asyncio.gather(*(t.wait_complete() for t in leechers))
        elapsed = time.monotonic() - started
        stats = [(f"leecher {i}", t.downloaded, t.uploaded) for i, t in enumerate(leechers, start=1)]
        stats.insert(0, ("seeder", seeder.downloaded, seeder.uploaded))
        for torrent in [seeder, *leechers]:
            torrent.stop("demo finished")
        await asyncio.gather(*(t.wait_stopped() for t in [seeder, *leechers]))
        for watcher in watchers:
            watcher.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
    finally:
        for session in sessions:
            await session.close()
    _say(
        f"[4/4] all {len(leechers)} leechers complete in {elapsed:.1f} s "
        f"({format_rate(size * len(leechers) / elapsed)} delivered); checking every copy"
    )
    hasher = PieceHasher(IOConfig())
    ok = True
    try:
        for i in range(1, len(leechers) + 1):
            storage = FileStorage(work / f"leecher-{i}", info, read_only=True)
            try:
                result = await hasher.check(info, storage)
            finally:
                storage.close()
            good = result.good.count
            ok &= good == info.num_pieces
            _say(f"      leecher {i}: {good}/{info.num_pieces} pieces verified")
    finally:
        await hasher.aclose()
    for name, down, up in stats:
        _say(f"      {name:>10}: downloaded {format_size(down):>10}, uploaded {format_size(up):>10}")
    _say("demo: OK" if ok else "demo: FAILED")
    return 0 if ok else 1
