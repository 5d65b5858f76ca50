"""``python -m torrentgoat seed TORRENT DIR``: verify the data in DIR, then seed it until stopped.

DIR is the directory that *contains* the torrent's file or folder (the ``-o`` of ``get``).  Pieces that
fail verification are fetched from peers first (like ``get --seed``); a DIR where none of the data is
found is refused at once, with a hint.  Stops on Ctrl-C or SIGTERM (trackers are told ``stopped``), or
after ``--seed-ratio`` / ``--seed-time``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torrentgoat.cli._common import (
    add_session_options,
    follow,
    report_stop,
    session_config,
    stop_on_signals,
)
from torrentgoat.cli._exit import DONE
from torrentgoat.cli._run import run
from torrentgoat.errors import ConfigError

if TYPE_CHECKING:
    from torrentgoat.torrent import Torrent

__all__ = ["ORDER", "register"]

ORDER = 15


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "seed",
        help="verify local data and seed it",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("torrent", help="path or URL of the .torrent (or a magnet)")
    parser.add_argument("directory", type=Path, help="directory holding the torrent's data")
    parser.add_argument("--peer", action="append", default=[], metavar="HOST:PORT", help="peer to dial")
    parser.add_argument("--seed-ratio", type=float, default=0.0, help="stop at this upload ratio (0: never)")
    parser.add_argument(
        "--seed-time", type=float, default=0.0, help="stop after this many seconds (0: never)"
    )
    parser.add_argument(
        "--super-seed",
        action="store_true",
        help="BEP 16: reveal pieces one peer at a time, so each is uploaded once before any twice "
        "(for an initial seed pushing new data to many machines)",
    )
    add_session_options(parser)
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    return run(_seed(args))


async def _refuse_empty(torrent: Torrent, directory: Path) -> None:
    """Stop ``torrent`` when the check finds none of its data in ``directory``."""
    from torrentgoat.torrent import CheckCompleted

    async for event in torrent.events():
        if isinstance(event, CheckCompleted):
            if event.wanted_bytes and not event.verified_bytes:
                where = directory / torrent.name
                hint = (
                    f"nothing at {str(where)!r}"
                    if not where.exists()
                    else f"no verified data at {str(where)!r}"
                )
                message = f"{hint}; DIR is the directory that contains {torrent.name!r}"
                torrent.stop(message, error=ConfigError(message))
            return


async def _seed(args: argparse.Namespace) -> int:
    import asyncio

    from torrentgoat.session import Session
    from torrentgoat.torrent import TorrentConfig

    if not args.directory.is_dir():
        raise ConfigError(f"{str(args.directory)!r} is not a directory (DIR holds the torrent's data)")
    tconfig = TorrentConfig(
        max_peers=args.max_peers,
        seed=True,
        seed_ratio=args.seed_ratio,
        seed_time=args.seed_time,
        super_seed=args.super_seed,
    )
    async with Session(session_config(args, tconfig)) as session:
        torrent = await session.add(args.torrent, args.directory, peers=args.peer)
        guard = asyncio.create_task(_refuse_empty(torrent, args.directory))
        watcher = asyncio.create_task(follow(torrent, quiet=args.quiet))
        with stop_on_signals([torrent]):
            if not args.quiet:
                print(
                    f"seeding {torrent.name} ({torrent.info_hash.hex}) on port {session.listen_port}",
                    file=sys.stderr,
                )
            await torrent.wait_stopped()
        guard.cancel()
    await watcher
    if torrent.is_complete:
        if not args.quiet:
            print(f"stopped: {torrent.stop_reason}", file=sys.stderr)
        return DONE
    return report_stop(torrent)
