"""Small helpers shared by the publisher and the consumer of collections (level L5)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from torrentgoat.errors import DHTError, ManifestError
from torrentgoat.manifest import MANIFEST_FILENAME, SIGNATURE_FILENAME
from torrentgoat.session import Session

__all__ = [
    "MAX_MANIFEST_TORRENT",
    "TORRENTS_DIR",
    "Say",
    "quiet",
    "read_manifest_tree",
    "wait_dht",
]

Say = Callable[[str], None]
"""Where progress messages go (the CLI prints them; the library default drops them)."""

TORRENTS_DIR = "torrents"
"""Folder of the manifest torrent holding every model's .torrent (``torrents/<model>.torrent``), so
consumers need no BEP 9 metadata exchange and web seeds work from the first byte."""
MAX_MANIFEST_TORRENT = 256 * 1024 * 1024
"""Largest manifest torrent a consumer downloads (the manifest is at most 4 MiB, .torrents a few MiB)."""
_MAX_TORRENT_FILE = 32 * 1024 * 1024


def quiet(_: str) -> None:
    """A :data:`Say` that drops messages."""


async def wait_dht(session: Session, timeout: float = 30.0) -> None:
    """Wait until the session's DHT node knows at least one other node (DHTError at once when the
    bootstrap failed, or after ``timeout`` seconds)."""
    if session.dht is None:
        raise DHTError("collections are published through the DHT (BEP 46); it is turned off")
    await session.wait_dht(timeout)


def _read_bounded(path: Path, limit: int) -> bytes:
    with open(path, "rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise ManifestError(f"{path.name} in the manifest torrent is larger than {limit} bytes")
    return data


def read_manifest_tree(folder: Path) -> dict[str, bytes]:
    """The manifest torrent's files (manifest, signature, ``torrents/*.torrent``), name -> bytes."""
    files: dict[str, bytes] = {}
    for name in (MANIFEST_FILENAME, SIGNATURE_FILENAME):
        path = folder / name
        if path.is_file():
            files[name] = _read_bounded(path, 4 * 1024 * 1024 + 1024)
    torrents = folder / TORRENTS_DIR
    if torrents.is_dir():
        for entry in os.scandir(torrents):
            if entry.is_file(follow_symlinks=False) and entry.name.endswith(".torrent"):
                files[f"{TORRENTS_DIR}/{entry.name}"] = _read_bounded(Path(entry.path), _MAX_TORRENT_FILE)
    return files
