"""Applies the pure choker (:mod:`torrentgoat.choker`) to a torrent's connections (level L5).

Every ``rechoke_interval`` seconds (BEP 3: "every ten seconds") the choker decides who is unchoked
from the peers' transfer rates; this class gathers those statistics and sends ``choke`` /
``unchoke``.  Between rounds, a peer that becomes interested while a regular slot is free is unchoked
at once (:func:`~torrentgoat.torrent.policy.admits_at_once`), so a new leecher does not wait up to ten
seconds for its first block.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

from torrentgoat.choker import Choker, ChokerConfig
from torrentgoat.torrent.policy import admits_at_once, on_local_network
from torrentgoat.torrent.wirepeer import WirePeer
from torrentgoat.wire.messages import Choke, Unchoke

__all__ = ["ChokeScheduler"]


class ChokeScheduler:
    """Runs :class:`~torrentgoat.choker.Choker` rounds over wire peers and applies their decisions."""

    def __init__(self, config: ChokerConfig, *, rng: random.Random) -> None:
        self.choker = Choker(config)
        self.rng = rng

    @property
    def interval(self) -> float:
        return self.choker.config.rechoke_interval

    @staticmethod
    def set_choked(wp: WirePeer, choked: bool, now: float) -> None:
        engine = wp.driver.engine
        if choked and not engine.am_choking:
            engine.send(Choke())
            wp.unchoked_since = None
        elif not choked and engine.am_choking:
            engine.send(Unchoke())
            wp.unchoked_since = now
            wp.last_unchoked = now

    def peer_interested(self, wp: WirePeer, peers: Iterable[WirePeer], now: float) -> None:
        """``wp`` became interested: unchoke it at once if a regular slot is free."""
        if not wp.driver.engine.am_choking:
            return
        config = self.choker.config
        if config.unchoke_local and on_local_network(wp.address):
            self.set_choked(wp, False, now)  # a LAN peer needs no slot (ChokerConfig.unchoke_local)
            return
        optimistic = self.choker.optimistic
        regular = sum(
            1
            for other in peers
            if other.unchoked_since is not None
            and other.key != optimistic
            and not (config.unchoke_local and on_local_network(other.address))
        )
        if admits_at_once(regular_unchoked=regular, config=config):
            self.set_choked(wp, False, now)

    def run(self, peers: Iterable[WirePeer], *, seeding: bool, now: float) -> None:
        """One choker round over the live connections."""
        live = [wp for wp in peers if wp.live]
        stats = [wp.choke_stats(now) for wp in live]
        decision = self.choker.rechoke(stats, seeding=seeding, now=now, rng=self.rng)
        for wp in live:
            self.set_choked(wp, wp.key not in decision.unchoke, now)
            wp.driver.flush()
