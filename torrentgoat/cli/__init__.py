"""Command line, level L6: ``python -m torrentgoat <command>``.

Each command lives in its own module of this package and exposes::

    ORDER: int                      # position in ``--help``
    def register(sub: argparse._SubParsersAction) -> None   # adds its parser, sets ``func``

``func(args) -> int`` returns the exit code.  Commands are discovered, so adding one is adding a module.
This is the only place that calls ``asyncio.run`` (through :func:`torrentgoat.cli._run.run`).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from torrentgoat import __version__
from torrentgoat.errors import TorrentGoatError

__all__ = ["build_parser", "command_names", "main"]


def command_names() -> list[str]:
    """Every command module of this package (those not starting with an underscore)."""
    return [info.name for info in pkgutil.iter_modules(__path__) if not info.name.startswith("_")]


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The argument parser; with ``only``, just that command's module is imported (fast start-up)."""
    parser = argparse.ArgumentParser(
        prog="torrentgoat",
        description="Pure-asyncio BitTorrent for distributing AI models.",
    )
    parser.add_argument("--version", action="version", version=f"torrentgoat {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    names = command_names()
    if only is not None and only in names:
        names = [only]
    modules = [importlib.import_module(f"{__name__}.{name}") for name in names]
    modules = [m for m in modules if hasattr(m, "register")]
    for module in sorted(modules, key=lambda m: (getattr(m, "ORDER", 100), m.__name__)):
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in arguments if not a.startswith("-")), None)
    try:
        parser = build_parser(only=command)  # imports the command: Ctrl-C may land here too
        args = parser.parse_args(arguments)
        code: int = args.func(args)
    except TorrentGoatError as exc:
        print(f"torrentgoat: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("torrentgoat: interrupted", file=sys.stderr)
        return 130
    return code
