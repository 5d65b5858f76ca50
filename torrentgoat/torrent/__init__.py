"""A running torrent (level L5): orchestration of the wire, picker, choker, storage and peer sources."""

from __future__ import annotations

from torrentgoat.torrent.config import TorrentConfig
from torrentgoat.torrent.core import Torrent
from torrentgoat.torrent.events import (
    CheckCompleted,
    CheckProgressed,
    Completed,
    DataLost,
    DataRechecked,
    HolepunchFailed,
    MetadataReceived,
    PeerBanned,
    PeerConnected,
    PeerDisconnected,
    PeersMissing,
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
    "CheckCompleted",
    "CheckProgressed",
    "Completed",
    "Counters",
    "DataLost",
    "DataRechecked",
    "HolepunchFailed",
    "MetadataReceived",
    "Peer",
    "PeerBanned",
    "PeerConnected",
    "PeerDisconnected",
    "PeerKey",
    "PeerSource",
    "PeersMissing",
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
