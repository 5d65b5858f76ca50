"""``python -m torrentgoat get SOURCE [-o DIR]``: download a magnet, a .torrent file or URL.

A BEP 46 magnet (``magnet:?xs=urn:btpk:<key>&s=<salt hex>``) that points at a model collection is
handled like ``collection get``: the latest signed version is verified against the key in the
magnet and the chosen models (``--model``, all by default) are fetched and checked.

Exit codes: 0 when every selected file is complete and verified, 1 when the download stopped
before that (interrupted, no peers within ``--timeout``), 2 on bad input, 130 on Ctrl-C.
Ctrl-C stops cleanly: verified pieces stay on disk, trackers hear ``stopped``, and the next run
resumes (it verifies what is there and fetches only the rest).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from torrentgoat.cli._common import (
    add_session_options,
    follow,
    report_stop,
    session_config,
    stop_on_signals,
)
from torrentgoat.cli._run import run
from torrentgoat.cli.collection import add_get_options, run_collection_get
from torrentgoat.errors import TorrentGoatError

__all__ = ["ORDER", "register"]

ORDER = 10


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "get",
        help="download a magnet link, .torrent file or URL",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("source", help="magnet URI, path to a .torrent, or http(s) URL of one")
    parser.add_argument("-o", "--output", type=Path, default=Path("."), help="download directory")
    parser.add_argument(
        "--peer", action="append", default=[], metavar="HOST:PORT", help="peer to dial (repeatable)"
    )
    parser.add_argument(
        "--files", action="append", default=[], metavar="GLOB", help="only files matching (repeatable)"
    )
    parser.add_argument("--sequential", action="store_true", help="fetch pieces front to back (streaming)")
    parser.add_argument(
        "--strategy", default=None, help="piece strategy (rarest-first, sequential, random, windowed-rarest)"
    )
    parser.add_argument("--seed", action="store_true", help="keep seeding after completion")
    parser.add_argument(
        "--seed-ratio", type=float, default=0.0, help="with --seed: stop at this upload ratio"
    )
    parser.add_argument(
        "--seed-time", type=float, default=0.0, help="with --seed: stop after this many seconds"
    )
    parser.add_argument(
        "--timeout", type=float, default=0.0, help="give up after this many seconds (0: never)"
    )
    add_session_options(parser)
    add_get_options(parser)
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from torrentgoat.collection import NotACollection, is_btpk

    if is_btpk(args.source):
        try:
            return run_collection_get(args, args.source, args.output)
        except NotACollection:
            pass  # a plain mutable torrent (BEP 46): download it as any other
    return run(_get(args))


async def _get(args: argparse.Namespace) -> int:
    import asyncio

    from torrentgoat.picker import PickerConfig
    from torrentgoat.session import Session
    from torrentgoat.torrent import TorrentConfig

    tconfig = TorrentConfig(
        max_peers=args.max_peers,
        picker=PickerConfig(strategy=args.strategy or ("sequential" if args.sequential else "rarest-first")),
        seed=args.seed,
        seed_ratio=args.seed_ratio,
        seed_time=args.seed_time,
        require_peer_sources=True,
    )
    async with Session(session_config(args, tconfig)) as session:
        source = await session.load(args.source)
        torrent = await session.add(source, args.output, files=args.files, peers=args.peer)
        watcher = asyncio.create_task(follow(torrent, quiet=args.quiet))
        with stop_on_signals([torrent]):
            try:
                if args.timeout:
                    await asyncio.wait_for(torrent.wait_complete(), timeout=args.timeout)
                else:
                    await torrent.wait_complete()
            except TimeoutError:
                torrent.stop(f"timed out after {args.timeout:.0f} s")
            except TorrentGoatError:
                pass  # the torrent stopped: reported below
            if torrent.is_complete and args.seed:
                await torrent.wait_stopped()
    await watcher
    return report_stop(torrent)
