"""A running torrent (level L5): orchestration of the wire, picker, choker, storage and peer sources."""

from __future__ import annotations

from torrentgoat.torrent.config import TorrentConfig
from torrentgoat.torrent.core import Torrent
from torrentgoat.torrent.events import (
    CheckProgressed,
    Completed,
    MetadataReceived,
    PeerBanned,
    PeerConnected,
    PeerDisconnected,
    PieceFailed,
    ProgressReported,
    Stopped,
    TorrentEvent,
    TrackerFailed,
)
from torrentgoat.torrent.handle import PeerSource, TorrentContext, TorrentHandle
from torrentgoat.torrent.lifecycle import Counters, TorrentState
from torrentgoat.torrent.peer import Peer, PeerKey

__all__ = [
    "CheckProgressed",
    "Completed",
    "Counters",
    "MetadataReceived",
    "Peer",
    "PeerBanned",
    "PeerConnected",
    "PeerDisconnected",
    "PeerKey",
    "PeerSource",
    "PieceFailed",
    "ProgressReported",
    "Stopped",
    "Torrent",
    "TorrentConfig",
    "TorrentContext",
    "TorrentEvent",
    "TorrentHandle",
    "TorrentState",
    "TrackerFailed",
]
