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
import re
import sys
from collections.abc import Sequence

from torrentgoat import __version__
from torrentgoat.cli._exit import EPILOG, INTERRUPTED, code_for
from torrentgoat.errors import TorrentGoatError

__all__ = ["build_parser", "command_names", "main"]


def command_names() -> list[str]:
    """Every command module of this package (those not starting with an underscore)."""
    return [info.name for info in pkgutil.iter_modules(__path__) if not info.name.startswith("_")]


_ROLE = re.compile(r":(?:class|func|meth|data|mod|attr|exc):`(~?)([^`]+)`")


def plain_text(text: str) -> str:
    """Help text as people read it: the docstrings' reST markup (``code``, :class:`~a.B`) removed."""

    def role(match: re.Match[str]) -> str:
        target = match.group(2)
        return target.rsplit(".", 1)[-1] if match.group(1) else target

    return _ROLE.sub(role, text).replace("``", "")


def _plain_help(parser: argparse.ArgumentParser) -> None:
    """Apply :func:`plain_text` to a parser's description, epilog and option help, recursively."""
    if parser.description:
        parser.description = plain_text(parser.description)
    if parser.epilog:
        parser.epilog = plain_text(parser.epilog)
    for action in parser._actions:
        if action.help:
            action.help = plain_text(action.help)
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                if choice.help:
                    choice.help = plain_text(choice.help)
            for child in set(action.choices.values()):
                _plain_help(child)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The argument parser; with ``only``, just that command's module is imported (fast start-up)."""
    parser = argparse.ArgumentParser(
        prog="torrentgoat",
        description="Pure-asyncio BitTorrent for distributing AI models.",
        epilog=EPILOG,
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
    _plain_help(parser)
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
        return code_for(exc)
    except OSError as exc:  # the environment (a file, a socket): one line, never a traceback
        where = f" {exc.filename!r}" if exc.filename else ""
        print(f"torrentgoat: error:{where} {exc.strerror or exc}", file=sys.stderr)
        return code_for(exc)
    except KeyboardInterrupt:
        print("torrentgoat: interrupted", file=sys.stderr)
        return INTERRUPTED
    return code
