"""Applies the pure choker (:mod:`torrentgoat.choker`) to a torrent's connections (level L5).

Every ``rechoke_interval`` seconds (BEP 3: "every ten seconds") the choker decides who is unchoked
from the peers' transfer rates; this class gathers those statistics and sends ``choke`` /
``unchoke``.  Between rounds, a peer that becomes interested while a regular slot is free is
unchoked at once, so a new leecher does not wait up to ten seconds for its first block.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from torrentgoat.choker import Choker, ChokerConfig, OptimisticMode, PeerStats
from torrentgoat.wire.messages import Choke, Unchoke

if TYPE_CHECKING:
    from torrentgoat.torrent.core import Torrent
    from torrentgoat.torrent.peers import PeerState

__all__ = ["ChokeScheduler"]


class ChokeScheduler:
    """Runs :class:`~torrentgoat.choker.Choker` rounds and applies their decisions."""

    def __init__(self, *, slots: int, rng: random.Random, optimistic_mode: OptimisticMode = "random") -> None:
        self.choker = Choker(ChokerConfig(upload_slots=slots, optimistic_mode=optimistic_mode))
        self.rng = rng

    @property
    def interval(self) -> float:
        return self.choker.config.rechoke_interval

    @staticmethod
    def set_choked(ps: PeerState, choked: bool, now: float) -> None:
        engine = ps.driver.engine
        if choked and not engine.am_choking:
            engine.send(Choke())
            ps.unchoked_since = None
        elif not choked and engine.am_choking:
            engine.send(Unchoke())
            ps.unchoked_since = now
            ps.last_unchoked = now

    def peer_interested(self, torrent: Torrent, ps: PeerState, now: float) -> None:
        if torrent.have is None or not ps.driver.engine.am_choking:
            return
        optimistic = self.choker.optimistic
        regular = sum(
            1
            for other in torrent.peers.values()
            if other.unchoked_since is not None and other.key != optimistic
        )
        if regular < self.choker.config.upload_slots:
            self.set_choked(ps, False, now)

    def run(self, torrent: Torrent, now: float) -> None:
        if torrent.have is None:
            return
        live = [
            ps
            for ps in torrent.peers.values()
            if not ps.driver.closed and ps.driver.engine.handshake_complete
        ]
        stats = []
        for ps in live:
            engine = ps.driver.engine
            have = engine.peer_have
            stats.append(
                PeerStats(
                    key=ps.key,
                    interested=engine.peer_interested,
                    download_rate=ps.down.rate(now),
                    upload_rate=ps.up.rate(now),
                    snubbed=ps.snubbed,
                    is_seed=engine.peer_has_all or (have is not None and have.complete),
                    connected_at=ps.connected_at,
                    unchoked_since=ps.unchoked_since,
                    last_unchoked=ps.last_unchoked,
                    progress=have.count / have.length if have is not None and have.length else 0.0,
                )
            )
        decision = self.choker.rechoke(stats, seeding=torrent.is_complete, now=now, rng=self.rng)
        for ps in live:
            self.set_choked(ps, ps.key not in decision.unchoke, now)
            ps.driver.flush()
