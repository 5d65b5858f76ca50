"""Running the collection client's torrents (level L5): extra peers, the per-torrent time limit, the watch hook.

The manifest torrent and every model torrent a :class:`~torrentgoat.collection.client.CollectionClient`
downloads go through one :class:`TorrentRunner`, so each is dialled to the same extra peers, reported
to the same watcher and stopped after the same time without data.  Seeding what is already held does
not go through it (no time limit, peers come from the DHT).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

from torrentgoat.errors import TorrentGoatError
from torrentgoat.magnet import Magnet
from torrentgoat.metainfo import Metainfo
from torrentgoat.session import Session
from torrentgoat.torrent import Torrent

T = TypeVar("T")

__all__ = ["TorrentRunner", "Watch"]

Watch = Callable[[Torrent, str], None]
"""Called with every torrent the client starts and a label (``"manifest"`` or the model name)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TorrentRunner:
    """Starts the client's downloads in ``session`` and waits on them with a time limit."""

    session: Session
    peers: tuple[str, ...] = ()
    """Extra ``HOST:PORT`` peers dialled for every torrent (besides the DHT's)."""
    timeout: float | None = None
    """Seconds allowed for each wait on a torrent (metadata, completion); None: no limit."""
    watch: Watch | None = None

    async def start(
        self,
        source: Metainfo | Magnet,
        dest: Path,
        *,
        seed: bool,
        label: str,
        held_files: tuple[int, ...] = (),
    ) -> Torrent:
        """Add ``source`` to the session under ``dest`` and show it to the watcher as ``label``;
        ``held_files``: file indices whose pieces wait for a block-level update (``TorrentConfig.held_files``)."""
        config = replace(self.session.config.torrent, held_files=held_files) if held_files else None
        torrent = await self.session.add(source, dest, seed=seed, peers=self.peers, config=config)
        if self.watch is not None:
            self.watch(torrent, label)
        return torrent

    async def wait(self, awaitable: Awaitable[T], torrent: Torrent, what: str) -> T:
        """``awaitable``'s result; on timeout ``torrent`` is stopped and TorrentGoatError names ``what``."""
        try:
            return await asyncio.wait_for(awaitable, timeout=self.timeout)
        except TimeoutError:
            torrent.stop(f"timed out after {self.timeout:.0f} s")
            raise TorrentGoatError(f"{what}: no data within {self.timeout:.0f} s (no peers?)") from None
