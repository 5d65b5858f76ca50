"""A torrent's lifecycle and counters (level L5, pure).

Every state a running torrent goes through and every move between them live in one table
(:data:`TRANSITIONS`, h11's rule: one place says what may happen); :class:`Lifecycle` refuses any other
move with :class:`~torrentgoat.errors.LocalProtocolError`, since only our own code moves it.  The
states are a :class:`~enum.StrEnum`, so ``torrent.state == "seeding"`` keeps working for callers that
compare with the plain names.

::

    STARTING -> METADATA (magnet: waiting for BEP 9 metadata) -> CHECKING -> DOWNLOADING <-> SEEDING
         \\________________________________/                                      ^
                                                      (complete at check) ________/
    (SEEDING -> DOWNLOADING: verified data vanished from disk and is fetched again)
    any state -> STOPPING -> STOPPED
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from torrentgoat.errors import LocalProtocolError

__all__ = ["TRANSITIONS", "Counters", "Lifecycle", "TorrentState"]


class TorrentState(enum.StrEnum):
    """Where a torrent is in its life."""

    STARTING = "starting"
    """Created; sources and the connector are starting."""
    METADATA = "metadata"
    """A magnet without its info dictionary yet: fetching it from peers (BEP 9)."""
    CHECKING = "checking"
    """Opening storage and hashing what is already on disk."""
    DOWNLOADING = "downloading"
    """Exchanging pieces; not every selected piece is verified yet."""
    SEEDING = "seeding"
    """Every selected piece is verified (it uploads if the torrent seeds)."""
    STOPPING = "stopping"
    """Saying goodbye to trackers, closing peers, flushing storage."""
    STOPPED = "stopped"
    """Done; nothing runs any more."""


_S = TorrentState

TRANSITIONS: dict[TorrentState, frozenset[TorrentState]] = {
    _S.STARTING: frozenset({_S.METADATA, _S.CHECKING, _S.STOPPING}),
    _S.METADATA: frozenset({_S.CHECKING, _S.STOPPING}),
    _S.CHECKING: frozenset({_S.DOWNLOADING, _S.SEEDING, _S.STOPPING}),
    _S.DOWNLOADING: frozenset({_S.SEEDING, _S.STOPPING}),
    _S.SEEDING: frozenset({_S.DOWNLOADING, _S.STOPPING}),
    _S.STOPPING: frozenset({_S.STOPPED}),
    _S.STOPPED: frozenset(),
}
"""state -> the states it may move to.  Anything else is a bug of ours."""


class Lifecycle:
    """The current :class:`TorrentState`, moved only along :data:`TRANSITIONS`."""

    __slots__ = ("state",)

    def __init__(self) -> None:
        self.state = TorrentState.STARTING

    def advance(self, new: TorrentState) -> None:
        """Move to ``new`` (staying put is allowed and does nothing)."""
        if new is self.state:
            return
        if new not in TRANSITIONS[self.state]:
            raise LocalProtocolError(f"torrent cannot go from {self.state} to {new}")
        self.state = new

    @property
    def running(self) -> bool:
        """Not stopping or stopped."""
        return self.state not in (TorrentState.STOPPING, TorrentState.STOPPED)


@dataclass(slots=True)
class Counters:
    """What a torrent has moved so far, in bytes (and pieces that failed their check)."""

    uploaded: int = 0
    """Block payload sent to peers."""
    downloaded: int = 0
    """Block payload received from peers and web seeds, duplicates included."""
    wasted: int = 0
    """Received bytes thrown away: duplicates (endgame) and blocks nobody wanted."""
    hash_failures: int = 0
    """Pieces that failed their hash check."""
    verified: int = 0
    """Bytes of verified pieces we hold."""
    wanted: int = 0
    """Bytes of the pieces the file selection wants."""

    @property
    def left(self) -> int:
        """Wanted bytes not verified yet (a tracker's ``left``)."""
        return max(0, self.wanted - self.verified)
