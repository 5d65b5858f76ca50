"""A running torrent (level L5): orchestration of the wire, picker, choker, storage and peer sources."""

from __future__ import annotations

from torrentgoat.torrent.config import TorrentConfig
from torrentgoat.torrent.core import PeerSource, Torrent, TorrentContext
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

__all__ = [
    "CheckProgressed",
    "Completed",
    "MetadataReceived",
    "PeerBanned",
    "PeerConnected",
    "PeerDisconnected",
    "PeerSource",
    "PieceFailed",
    "ProgressReported",
    "Stopped",
    "Torrent",
    "TorrentConfig",
    "TorrentContext",
    "TorrentEvent",
    "TrackerFailed",
]
