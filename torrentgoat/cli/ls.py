"""``python -m torrentgoat ls DIR|MAGNET``: same as ``collection ls`` (the models of a collection)."""

from __future__ import annotations

from typing import Any

from torrentgoat.cli.collection import add_ls_parser

__all__ = ["ORDER", "register"]

ORDER = 33


def register(sub: Any) -> None:
    add_ls_parser(sub, short=True)
