"""``torrentgoat verify TORRENT DIR [--quiet] [--files GLOB ...]``: hash-check data already on disk.

v1 pieces are checked by SHA-1, v2 pieces against their file's merkle tree, hybrid pieces by both (see
:mod:`torrentgoat.aio.hasher`); a v2 file whose piece layer the torrent lacks is verified as a whole.

``DIR`` is the download directory: a file's path is ``DIR/<torrent name>/...`` (or ``DIR/<name>`` for a
single-file torrent), exactly where ``get -o DIR`` puts it.  Nothing is created or written.

Exit codes: 0 every selected piece is good; 1 some piece is bad or missing; 2 bad input (unreadable
torrent, missing directory, a ``--files`` glob that matches nothing).  A progress bar goes to stderr
(unless ``--quiet``), the summary to stdout.
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import sys
from typing import TYPE_CHECKING, Any

from torrentgoat.cli._run import run
from torrentgoat.config import IOConfig
from torrentgoat.errors import ConfigError

if TYPE_CHECKING:
    from torrentgoat.aio.hasher import CheckResult
    from torrentgoat.metainfo import InfoDict

__all__ = ["ORDER", "register", "select_files", "verify"]

ORDER = 55


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "verify",
        help="hash-check downloaded data against a .torrent",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("torrent", metavar="TORRENT", help=".torrent file")
    parser.add_argument("directory", metavar="DIR", help="download directory (holds the torrent's name)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar, one summary line")
    parser.add_argument(
        "--files",
        nargs="+",
        metavar="GLOB",
        help="check only files matching these globs (matched with and without the torrent name)",
    )
    parser.add_argument("--hash-threads", type=int, default=0, help="hashing threads (0: one per core)")
    parser.add_argument("--window", type=int, default=None, help="pieces in flight (memory bound)")
    parser.set_defaults(func=_main)


def select_files(info: InfoDict, globs: list[str] | None) -> list[int]:
    """Indices of the non-pad files matching any glob (all of them when ``globs`` is ``None``)."""
    indices = [i for i, entry in enumerate(info.files) if not entry.pad]
    if globs is None:
        return indices
    chosen = []
    for i in indices:
        full = info.files[i].path_str
        inner = "/".join(info.files[i].path[1:]) if len(info.files[i].path) > 1 else full
        if any(fnmatch.fnmatchcase(full, g) or fnmatch.fnmatchcase(inner, g) for g in globs):
            chosen.append(i)
    if not chosen:
        raise ConfigError(f"--files {' '.join(globs)} matches no file of the torrent")
    return chosen


async def verify(
    info: InfoDict,
    directory: str,
    *,
    files: list[int],
    config: IOConfig,
    quiet: bool = False,
) -> CheckResult:
    """Check the pieces of ``files`` under ``directory`` (read-only) with a progress bar on stderr."""
    from torrentgoat.aio.hasher import PieceHasher
    from torrentgoat.storage import FileStorage

    storage = FileStorage(directory, info, read_only=True, max_open_files=config.max_open_files)
    wanted = storage.layout.pieces_for_files(files)
    bar: Any = None
    if not quiet:
        from tqdm import tqdm  # type: ignore[import-untyped,unused-ignore]

        bar = tqdm(
            total=sum(info.piece_size(i) for i in wanted),
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc="verify",
            file=sys.stderr,
            dynamic_ncols=True,
        )

    def progress(done: int, total: int) -> None:
        if bar is not None:
            bar.update(done - bar.n)

    try:
        async with PieceHasher(config) as hasher:
            return await hasher.check(info, storage, wanted=wanted, progress=progress)
    finally:
        if bar is not None:
            bar.close()
        storage.close()


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{n} B"
        value /= 1024
    return f"{n} B"  # pragma: no cover


def _summary(info: InfoDict, files: list[int], result: CheckResult, quiet: bool) -> list[str]:
    good_bytes = sum(info.piece_size(i) for i in result.good)
    line = (
        f"{info.name}: {result.good.count}/{result.checked.count} pieces good, {result.bad.count} bad,"
        f" {result.missing.count} missing; {_size(good_bytes)} of {_size(result.checked_bytes)} verified"
    )
    if quiet:
        return [line]
    ident = info.info_hash.hex if info.v2 is None else f"{info.format}; {info.info_hashes}"
    lines = [f"torrent  {info.name} ({ident})", line]
    if result.piece_layers:
        lines.append(
            f"piece layers of {len(result.piece_layers)} file(s) were not in the torrent: those files were"
            " verified whole against their pieces root (BEP 52)"
        )
    incomplete = []
    for index in files:
        entry = info.files[index]
        if entry.length == 0:
            continue
        pieces = range(entry.offset // info.piece_length, (entry.end - 1) // info.piece_length + 1)
        bad = sum(1 for p in pieces if p in result.bad)
        missing = sum(1 for p in pieces if p in result.missing)
        if bad or missing:
            incomplete.append(f"  {entry.path_str}: {bad} bad, {missing} missing of {len(pieces)} pieces")
    if incomplete:
        lines.append(f"incomplete files ({len(incomplete)} of {len(files)}):")
        lines.extend(incomplete)
    else:
        lines.append(f"all {len(files)} selected files complete")
    return lines


def _main(args: argparse.Namespace) -> int:
    from torrentgoat.metainfo import load_metainfo

    metainfo = load_metainfo(args.torrent)
    if not os.path.isdir(args.directory):
        raise ConfigError(f"download directory {args.directory!r} does not exist or is not a directory")
    if args.hash_threads < 0 or (args.window is not None and args.window < 1):
        raise ConfigError("--hash-threads must be >= 0 and --window >= 1")
    info = metainfo.info
    files = select_files(info, args.files)
    base = IOConfig()
    config = IOConfig(
        hash_threads=args.hash_threads,
        disk_threads=base.disk_threads,
        max_open_files=base.max_open_files,
        check_window=args.window if args.window is not None else base.check_window,
    )
    result = run(verify(info, args.directory, files=files, config=config, quiet=args.quiet))
    for line in _summary(info, files, result, args.quiet):
        print(line)
    top = info.files[0].path[0] if info.files else info.name
    if result.checked.count and result.missing.count == result.checked.count:
        if not os.path.lexists(os.path.join(args.directory, top)):
            print(
                f"torrentgoat: hint: nothing at {os.path.join(args.directory, top)!r}; DIR is the"
                f" directory that contains {top!r}",
                file=sys.stderr,
            )
    return 0 if result.all_good else 1
