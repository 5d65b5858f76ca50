"""Typed configuration shared across layers (level L0).

Each engine keeps its own frozen config dataclass next to it (``wire``, ``dht``, ``picker`` ...);
this module holds the process-wide knobs that several layers read.  Every field has a docstring.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_DHT_ROUTERS", "IOConfig"]

DEFAULT_DHT_ROUTERS: tuple[tuple[str, int], ...] = (
    ("router.bittorrent.com", 6881),
    ("dht.transmissionbt.com", 6881),
    ("router.utorrent.com", 6881),
    ("dht.libtorrent.org", 25401),
)
"""Well-known mainline DHT routers used when the user names none.  Tests always override them."""


@dataclass(frozen=True, slots=True, kw_only=True)
class IOConfig:
    """Disk and hashing resources."""

    hash_threads: int = 0
    """Threads hashing pieces; 0 means one per CPU core."""

    disk_threads: int = 4
    """Threads doing positional reads/writes (bounded executor)."""

    max_open_files: int = 128
    """Cap on file descriptors the storage layer keeps open at once (least recently used are closed)."""

    check_window: int = 8
    """Pieces in flight (read, hashing) while checking existing data: bounds memory whatever the file size."""
