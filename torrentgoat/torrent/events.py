"""What a running torrent tells its observers (public API, level L5).

One frozen dataclass per notification, named in the past tense (DESIGN rule 1).  Read them with
``async for event in torrent.events(): ...``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from torrentgoat.primitives import PeerAddress

__all__ = [
    "CheckCompleted",
    "CheckProgressed",
    "Completed",
    "DataLost",
    "DataRechecked",
    "HolepunchFailed",
    "MetadataReceived",
    "PeerBanned",
    "PeerConnected",
    "PeerDisconnected",
    "PeersMissing",
    "PieceFailed",
    "ProgressReported",
    "Stopped",
    "TorrentEvent",
    "TrackerFailed",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class MetadataReceived:
    """A magnet's info dictionary arrived over BEP 9 and hashed to the info-hash."""

    name: str
    total_size: int


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckProgressed:
    """Existing data is being verified (resume)."""

    done_bytes: int
    total_bytes: int


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckCompleted:
    """The data already on disk was verified (at start, or after a magnet's metadata arrived)."""

    verified_bytes: int
    """Bytes of selected pieces found complete and correct."""
    wanted_bytes: int
    """Bytes of all selected pieces."""
    seconds: float
    """How long the check took."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ProgressReported:
    """Periodic status, about once a second."""

    verified_bytes: int
    """Bytes of selected pieces whose SHA-1 matched."""
    wanted_bytes: int
    """Bytes of all selected pieces."""
    download_rate: float
    """Payload bytes per second received."""
    upload_rate: float
    """Payload bytes per second sent."""
    peers: int
    uploaded: int
    downloaded: int
    state: str

    @property
    def eta(self) -> float | None:
        """Seconds to completion at the current rate, or None when stalled."""
        left = self.wanted_bytes - self.verified_bytes
        if left <= 0:
            return 0.0
        return left / self.download_rate if self.download_rate > 0 else None


@dataclass(frozen=True, slots=True, kw_only=True)
class PeersMissing:
    """No peer is connected while pieces are missing, for ``seconds`` now (said after 15 s, then
    every minute, the way aria2 reports what it tried)."""

    seconds: float
    sources: tuple[str, ...]
    """What each peer source tried and how it went, one line each."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerConnected:
    address: PeerAddress
    client: str
    outgoing: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerDisconnected:
    address: PeerAddress
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerBanned:
    """A peer sent data that failed hash checks (or broke the protocol badly): never again."""

    address: PeerAddress
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PieceFailed:
    """A piece failed its SHA-1 check; it is discarded and fetched again."""

    index: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TrackerFailed:
    url: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Completed:
    """Every selected piece is verified (and written)."""

    seconds: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Stopped:
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DataLost:
    """Verified data vanished or changed on disk: ``pieces`` were taken back (peers were told with
    BEP 54 ``lt_donthave``) and are being checked again."""

    pieces: int
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DataRechecked:
    """The pieces taken back were checked again: ``verified`` of the ``pieces`` are still good (and
    announced again); the others are fetched again (or dropped when seeding only)."""

    pieces: int
    verified: int


@dataclass(frozen=True, slots=True, kw_only=True)
class HolepunchFailed:
    """A relay answered our BEP 55 ``rendezvous`` with ``target`` with an error: ``NoSuchPeer``,
    ``NotConnected``, ``NoSupport`` or ``NoSelf``."""

    target: PeerAddress
    relay: PeerAddress | None
    error: str


TorrentEvent: TypeAlias = (
    MetadataReceived
    | CheckProgressed
    | CheckCompleted
    | ProgressReported
    | PeersMissing
    | PeerConnected
    | PeerDisconnected
    | PeerBanned
    | PieceFailed
    | TrackerFailed
    | Completed
    | Stopped
    | DataLost
    | DataRechecked
    | HolepunchFailed
)
