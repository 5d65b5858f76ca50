"""Sizes and rates as people type them (level L0): ``4MiB``, ``20MB``, ``1.5GiB``, ``16k``."""

from __future__ import annotations

import re

from torrentgoat.errors import ConfigError

__all__ = ["format_rate", "format_size", "parse_size"]

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?)(b?)\s*$", re.IGNORECASE)


def parse_size(text: str, *, what: str = "size") -> int:
    """Bytes from ``"16384"``, ``"256KiB"``, ``"4MiB"``, ``"20MB"``, ``"1.5GiB"``, ``"4M"``.

    ``KiB``/``MiB``/``GiB``/``TiB`` are powers of 1024, ``KB``/``MB``/``GB``/``TB`` powers of 1000;
    a bare letter (``4M``) is binary, as in most BitTorrent tools.
    """
    match = _SIZE.match(text) if text.isascii() else None
    if not match:
        raise ConfigError(f"not a {what}: {text!r} (use bytes or a suffix like 256KiB, 4MiB, 20MB)")
    number, unit, binary, byte = match.groups()
    power = "kmgt".find(unit.lower()) + 1 if unit else 0
    base = 1000 if (byte and not binary and unit) else 1024
    value = float(number) * base**power
    if value != int(value) or value < 0:
        raise ConfigError(f"not a whole number of bytes: {text!r}")
    return int(value)


def format_size(nbytes: float) -> str:
    """``1536`` -> ``"1.5 KiB"``."""
    value = float(nbytes)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def format_rate(bytes_per_second: float) -> str:
    return f"{format_size(bytes_per_second)}/s"
