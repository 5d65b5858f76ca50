"""What a running torrent shows its helpers (level L5): one narrow interface, no import of ``Torrent``.

The uploader, the peer sources (trackers, the DHT) and the web seeds receive a :class:`TorrentHandle`
-- never the whole :class:`~torrentgoat.torrent.core.Torrent` -- the way anacrolix/torrent's request
strategy sees a ``requestStrategy.Torrent`` and our :class:`~torrentgoat.aio.peer.PeerDriver` sees a
``PeerHandler``.  Wire connections and web seeds move blocks through the same five calls
(:meth:`~TorrentHandle.attach_peer` ... :meth:`~TorrentHandle.release_blocks`), as two implementations
of :class:`~torrentgoat.torrent.peer.Peer`.
"""

from __future__ import annotations

import abc
import asyncio
import random
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from torrentgoat.aio.disk import DiskExecutor
from torrentgoat.aio.hasher import PieceHasher
from torrentgoat.aio.ratelimit import TokenBucket
from torrentgoat.aio.utp import UTPEndpoint
from torrentgoat.bitfield import Bitfield
from torrentgoat.infohashes import InfoHashes
from torrentgoat.metainfo import InfoDict
from torrentgoat.mse import MSEConfig
from torrentgoat.primitives import BlockRef, InfoHash, PeerAddress, PeerId
from torrentgoat.storage import Layout, Storage
from torrentgoat.torrent.config import TorrentConfig
from torrentgoat.torrent.events import TorrentEvent
from torrentgoat.torrent.lifecycle import Counters, TorrentState
from torrentgoat.torrent.peer import Peer
from torrentgoat.wire.connection import WireConfig

__all__ = ["PeerSource", "TorrentContext", "TorrentHandle"]


@dataclass(slots=True, kw_only=True)
class TorrentContext:
    """What the session lends each torrent."""

    peer_id: PeerId
    listen_port: int
    hasher: PieceHasher
    disk: DiskExecutor
    rng: random.Random
    wire: WireConfig = field(default_factory=WireConfig)
    upload_limit: TokenBucket = field(default_factory=lambda: TokenBucket(0))
    download_limit: TokenBucket = field(default_factory=lambda: TokenBucket(0))
    add_dht_node: Callable[[PeerAddress], None] | None = None
    """Called with ``(peer ip, port)`` when a peer sends a BEP 5 ``port`` message."""
    max_open_files: int = 128
    """File descriptors one torrent's storage keeps open at once."""
    storage_factory: Callable[[Path, Layout, frozenset[int]], Storage] | None = None
    """Builds storage for a torrent (default: :class:`FileStorage` under the download directory)."""
    utp: UTPEndpoint | None = None
    """The session's uTP endpoint (BEP 29), None when uTP is off."""
    utp_first: bool | None = None
    """Dial over uTP first: None (to public addresses only), True (always), False (never)."""
    encryption: MSEConfig = field(default_factory=MSEConfig)
    """How outgoing connections are dialled: MSE first with a plain fallback (``prefer``), MSE only
    (``require``) or plain only (``disable``)."""
    swarm_id_found: Callable[[InfoHash], None] | None = None
    """Called with a swarm id the torrent learnt after it was added (a ``btih`` magnet whose metadata
    shows a hybrid: its truncated SHA-256, BEP 52), so that the session finds the torrent by it too
    (incoming handshakes, MSE stream keys)."""


class TorrentHandle(Protocol):
    """The part of a running torrent its helpers may see and do."""

    # --- what it is ------------------------------------------------------------------------------

    @property
    def name(self) -> str: ...

    @property
    def info_hash(self) -> InfoHash: ...

    @property
    def info_hashes(self) -> InfoHashes:
        """Every id the torrent is known by: v1, v2 or both (a hybrid joins both swarms, BEP 52)."""

    @property
    def ctx(self) -> TorrentContext: ...

    @property
    def config(self) -> TorrentConfig: ...

    @property
    def info(self) -> InfoDict | None:
        """The info dictionary (None until a magnet's metadata arrived)."""

    async def wait_metadata(self) -> InfoDict: ...

    # --- where it is -----------------------------------------------------------------------------

    @property
    def state(self) -> TorrentState: ...

    @property
    def is_complete(self) -> bool: ...

    @property
    def stopping(self) -> bool:
        """``stop()`` was called: no new work (the state moves to STOPPING soon after)."""

    @property
    def counters(self) -> Counters: ...

    @property
    def have(self) -> Bitfield | None:
        """Our verified pieces (None until the check ran)."""

    @property
    def num_peers(self) -> int: ...

    @property
    def super_seeding(self) -> bool:
        """BEP 16 super-seeding is revealing pieces one peer at a time."""

    # --- what helpers may do ---------------------------------------------------------------------

    def now(self) -> float:
        """The event loop's clock (the ``now`` given to the pure engines)."""

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` as a task owned by the torrent (cancelled on stop; a crash stops the torrent)."""

    def emit(self, event: TorrentEvent) -> None:
        """Tell the torrent's observers."""

    def add_peers(
        self, addresses: Sequence[PeerAddress], source: str, *, swarm_id: InfoHash | None = None
    ) -> int:
        """Addresses to dial (deduplicated, banned ones ignored); returns how many were new.  ``swarm_id``:
        the swarm id they were found under (dialled with it when it is not the torrent's info-hash)."""

    def data_lost(self, index: int, exc: BaseException) -> None:
        """Verified piece ``index`` cannot be read back: the files changed under us."""

    # --- blocks, for peers that are not wire connections (wire peers take the same path) --------

    def attach_peer(self, peer: Peer) -> None:
        """``peer`` joins as a source of blocks (counted in availability once metadata is known)."""

    def detach_peer(self, peer: Peer) -> None:
        """``peer`` leaves; its requested blocks go back to the picker."""

    def pick_blocks(self, peer: Peer, count: int) -> list[BlockRef]:
        """Up to ``count`` blocks to fetch from ``peer`` (recorded as requested from it)."""

    def deliver_block(self, peer: Peer, block: BlockRef, data: bytes | memoryview) -> bool:
        """A block ``peer`` fetched; returns whether it was new.  Verified like any other block."""

    def release_blocks(self, peer: Peer, blocks: Sequence[BlockRef] | None = None) -> None:
        """``peer`` will not deliver these blocks (all of its blocks when ``None``)."""


class PeerSource(abc.ABC):
    """Something that finds peers (or fetches blocks) for a torrent over time: trackers, the DHT,
    web seeds.

    ``run(torrent)`` runs until cancelled; ``completed()`` and ``stopped()`` are hooks for tracker
    events (BEP 3 ``completed`` / ``stopped``).
    """

    name = "source"

    @abc.abstractmethod
    async def run(self, torrent: TorrentHandle) -> None:
        """Find peers (or fetch blocks) for ``torrent`` until cancelled."""

    def completed(self) -> None:  # noqa: B027 - an optional hook, empty by default
        """The download finished."""

    async def stopped(self) -> None:  # noqa: B027 - an optional hook, empty by default
        """The torrent is stopping: say goodbye (best effort, short)."""

    def status(self) -> str:
        """One line on what this source tried and how it went (for "no peers" reports)."""
        return self.name
