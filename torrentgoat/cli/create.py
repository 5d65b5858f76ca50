"""``torrentgoat create PATH -o OUT.torrent``: hash a file or directory into a torrent.

``--format hybrid|v1|v2`` (default ``hybrid``, as libtorrent 2.x and qBittorrent): ``hybrid`` holds both
the v1 (SHA-1, BEP 3) and v2 (SHA-256 merkle trees, BEP 52) halves, so v1-only and v2 clients can both
use it; ``v1`` gives exactly the info-hash torrentgoat gave before BEP 52 support; ``v2`` is BEP 52 only.
Other options: ``--piece-size BYTES|auto`` (suffixes ``KiB``/``MiB``/``GiB``, also ``K``/``M``/``G``, all
binary), ``--tracker URL`` (repeatable; a comma-separated value is one BEP 12 tier), ``--web-seed URL``
(repeatable), ``--private``, ``--name``, ``--comment``, ``--no-pad``, ``--no-date``,
``--follow-symlinks``, ``--threads N``, ``--quiet``.  A progress bar goes to stderr when it is a
terminal.  On success prints the info-hash(es) and the magnet URI on stdout (``info-hash:`` is the v1
one, or the truncated v2 one of a v2 torrent; ``info-hash v2:`` the full SHA-256 when there is one).  The torrent is written
atomically (a temporary file renamed into place).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from torrentgoat.atomicwrite import write_atomic
from torrentgoat.errors import ConfigError, StorageError, TrackerError
from torrentgoat.infohashes import FORMATS
from torrentgoat.units import parse_size

__all__ = ["ORDER", "register"]

ORDER = 50


def _piece_size(text: str) -> int | None:
    if text.strip().lower() == "auto":
        return None
    return parse_size(text)


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "create",
        help="create a .torrent from a file or directory",
        description="Hash a file or directory into a .torrent: hybrid v1+v2 (default), v1 (BEP 3) or v2 "
        "(BEP 52); BEP 47 pad files align files to pieces.",
    )
    parser.add_argument("path", metavar="PATH", help="file or directory to share")
    parser.add_argument("-o", "--output", required=True, metavar="OUT.torrent", help="torrent file to write")
    parser.add_argument("--force", action="store_true", help="overwrite OUT.torrent if it exists")
    parser.add_argument(
        "--piece-size",
        default="auto",
        metavar="BYTES|auto",
        help="piece length, a power of two >= 16KiB (suffixes KiB/MiB/GiB); auto: at most 2048 pieces, "
        "between 16KiB and 16MiB (default)",
    )
    parser.add_argument(
        "--tracker",
        action="append",
        default=[],
        metavar="URL[,URL...]",
        help="announce URL; repeat for more tiers, comma-separate URLs of one tier (BEP 12)",
    )
    parser.add_argument("--web-seed", action="append", default=[], metavar="URL", help="BEP 19 web seed")
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="hybrid",
        help="hybrid: v1 and v2 halves (default, as libtorrent 2.x); v1: BEP 3 only, today's info-hash; "
        "v2: BEP 52 only",
    )
    parser.add_argument("--private", action="store_true", help="set the BEP 27 private flag")
    parser.add_argument("--name", help="torrent name (default: the file or directory name)")
    parser.add_argument("--comment", default="", help="free-text comment")
    parser.add_argument(
        "--no-pad", action="store_true", help="no BEP 47 pad files between files (--format v1 only)"
    )
    parser.add_argument("--no-date", action="store_true", help="omit the creation date (reproducible output)")
    parser.add_argument(
        "--follow-symlinks", action="store_true", help="include symlink targets instead of refusing symlinks"
    )
    parser.add_argument(
        "--threads", type=int, default=0, metavar="N", help="hashing threads (0: one per core)"
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from torrentgoat.creation import SymlinkRefusedError, create_torrent
    from torrentgoat.magnet import Magnet
    from torrentgoat.tracker.urls import parse_tracker_url

    source, output = Path(args.path).resolve(), Path(args.output).resolve()
    if source.is_dir() and output.is_relative_to(source):
        raise ConfigError(
            f"the output {args.output!r} lies inside the directory being shared; write it elsewhere "
            "(an older copy would otherwise end up in the torrent)"
        )
    if output.exists() and not args.force:
        raise ConfigError(f"{args.output} exists; pass --force to overwrite it")
    trackers = [[u.strip() for u in value.split(",") if u.strip()] for value in args.tracker]
    for url in (u for tier in trackers for u in tier):
        try:
            parse_tracker_url(url)
        except TrackerError as exc:
            raise ConfigError(f"--tracker: {exc}") from None
    for url in args.web_seed:
        parts = urlsplit(url)
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"--web-seed must be an http(s) URL, got {url!r}")
    show_bar = not args.quiet and sys.stderr.isatty()
    bar: Any = None
    if show_bar:
        from tqdm import tqdm

        bar = tqdm(total=0, unit="B", unit_scale=True, unit_divisor=1024, desc="hashing", file=sys.stderr)

    def progress(done: int, total: int) -> None:
        if bar is not None:
            bar.total = total
            bar.update(done - bar.n)

    try:
        metainfo = create_torrent(
            args.path,
            piece_length=_piece_size(args.piece_size),
            trackers=trackers,
            web_seeds=args.web_seed,
            private=args.private,
            name=args.name,
            comment=args.comment,
            creation_date=None if args.no_date else "now",
            pad=not args.no_pad,
            threads=args.threads,
            follow_symlinks=args.follow_symlinks,
            progress=progress,
            format=args.format,
        )
    except SymlinkRefusedError as exc:
        raise ConfigError(f"{exc}; pass --follow-symlinks to include its target") from None
    finally:
        if bar is not None:
            bar.close()
    _write_atomically(Path(args.output), metainfo.to_bytes())
    info = metainfo.info
    if not args.quiet:
        print(
            f"wrote {args.output} ({info.format}): {info.num_pieces} pieces of {info.piece_length} bytes, "
            f"{info.total_length} bytes",
            file=sys.stderr,
        )
    print(f"info-hash: {metainfo.info_hash.hex}")
    if metainfo.info_hashes.v2 is not None:
        print(f"info-hash v2: {metainfo.info_hashes.v2.hex}")
    print(f"magnet: {Magnet.from_metainfo(metainfo).to_uri()}")
    return 0


def _write_atomically(path: Path, data: bytes) -> None:
    try:
        write_atomic(path, data)
    except OSError as exc:
        raise StorageError(f"cannot write {os.fsdecode(path)!r}: {exc.strerror or exc}") from None
