"""``python -m torrentgoat update DIR``: same as ``collection update`` (latest signed version, new bytes only)."""

from __future__ import annotations

from typing import Any

from torrentgoat.cli.collection import add_update_parser

__all__ = ["ORDER", "register"]

ORDER = 32


def register(sub: Any) -> None:
    add_update_parser(sub, short=True)
