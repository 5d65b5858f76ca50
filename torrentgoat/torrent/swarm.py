"""What one torrent knows of its pieces and its peers (level L5): the state its parts share.

A running torrent is a few parts with one job each -- :class:`~torrentgoat.torrent.connections.Connections`
(dialling, admitting, evicting), :class:`~torrentgoat.torrent.exchange.PeerExchange` (the wire events,
requests and interest), :class:`~torrentgoat.torrent.blocks.BlockFlow` (blocks in, verified pieces
out), the uploader and the choke scheduler.  They share this plain record instead of reaching into
each other; the :class:`~torrentgoat.torrent.core.Torrent` fills it in as the torrent moves from
metadata to checking to exchanging pieces.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from dataclasses import dataclass, field

from torrentgoat.bitfield import Bitfield
from torrentgoat.metainfo import InfoDict
from torrentgoat.picker import PiecePicker
from torrentgoat.storage import Storage
from torrentgoat.torrent.lifecycle import Counters
from torrentgoat.torrent.peer import Peer, PeerKey
from torrentgoat.torrent.superseeding import SuperSeeding
from torrentgoat.torrent.wirepeer import WirePeer

__all__ = ["Swarm"]


@dataclass(slots=True, eq=False, kw_only=True)
class Swarm:
    """The pieces and peers of one torrent."""

    info: InfoDict | None = None
    """The info dictionary (None until a magnet's metadata arrived)."""
    have: Bitfield | None = None
    """Our verified pieces (None until the check ran)."""
    picker: PiecePicker | None = None
    """Which blocks to ask for (None until the check ran)."""
    storage: Storage | None = None
    superseeding: SuperSeeding | None = None
    """BEP 16 state while super-seeding (``config.super_seed`` and complete when checked)."""
    unverifiable: frozenset[int] = frozenset()
    """Pieces that cannot be checked yet: those of a v2-only torrent's files whose piece layer has not
    arrived from peers (BEP 52 hash requests); they are not requested until it has."""
    counters: Counters = field(default_factory=Counters)
    peers: dict[PeerKey, WirePeer] = field(default_factory=dict)
    """Live wire connections, from their creation on."""
    others: dict[PeerKey, Peer] = field(default_factory=dict)
    """Peers that are not wire connections (BEP 19 web seeds)."""

    def peer(self, key: Hashable) -> Peer | None:
        """Any peer by key: a wire connection or a web seed (the picker hands keys back as opaque
        hashables; ours are all :data:`PeerKey` ints)."""
        if not isinstance(key, int):
            return None
        return self.peers.get(key) or self.others.get(key)

    def live_peers(self) -> Iterator[WirePeer]:
        """Open wire connections (a snapshot: safe to close peers while iterating)."""
        return iter([wp for wp in self.peers.values() if not wp.driver.closed])
