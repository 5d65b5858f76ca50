"""Saying what was tried when no peer shows up (level L5): the way aria2 reports a stalled download.

While pieces are missing and no peer is connected, :class:`PeerSearchReport` emits
:class:`~torrentgoat.torrent.events.PeersMissing` after :data:`FIRST` seconds, then every
:data:`AGAIN` seconds, with one line per peer source (each source's ``status()``) and one on the
addresses known and why dialling them failed.
"""

from __future__ import annotations

from collections.abc import Sequence

from torrentgoat.torrent.events import PeersMissing
from torrentgoat.torrent.handle import PeerSource, TorrentHandle
from torrentgoat.torrent.peers import CandidatePool

__all__ = ["AGAIN", "FIRST", "PeerSearchReport"]

FIRST = 15.0
"""Seconds without a peer (while pieces are missing) before the first report."""
AGAIN = 60.0
"""Seconds between later reports."""


class PeerSearchReport:
    """Watches for a torrent without peers and reports what its sources tried."""

    def __init__(self, host: TorrentHandle, sources: Sequence[PeerSource], pool: CandidatePool) -> None:
        self.host = host
        self.sources = sources
        self.pool = pool
        self._since: float | None = None
        self._reported = 0.0

    def lines(self) -> list[str]:
        """One line per way of finding peers, saying what it tried (empty: there is none)."""
        lines = [source.status() for source in self.sources]
        pool = self.pool.describe()
        if pool is not None:
            lines.append(pool)
        return lines

    def tick(self, now: float) -> None:
        """Called once a second."""
        host = self.host
        if host.num_peers or host.is_complete or host.state not in ("metadata", "downloading"):
            self._since = None
            return
        if self._since is None:
            self._since = self._reported = now
            return
        due = FIRST if self._reported == self._since else AGAIN
        if now - self._reported >= due:
            self._reported = now
            host.emit(PeersMissing(seconds=now - self._since, sources=tuple(self.lines())))
