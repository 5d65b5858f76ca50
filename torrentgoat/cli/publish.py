"""``python -m torrentgoat publish OUT --key KEY``: same as ``collection publish`` (sign, BEP 46 put, seed)."""

from __future__ import annotations

from typing import Any

from torrentgoat.cli.collection import add_publish_parser

__all__ = ["ORDER", "register"]

ORDER = 31


def register(sub: Any) -> None:
    add_publish_parser(sub, short=True)
