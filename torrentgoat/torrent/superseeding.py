"""Super-seeding (BEP 16) for one torrent: per-connection have-sets driven by :class:`SuperSeeder`.

A super-seeding torrent opens every connection with ``have none`` (BEP 6) or no bitfield at all, then
announces (``have``) only the pieces the engine reveals to that peer; the wire engine of that connection
validates requests against the same per-connection have-set, so requests for anything else are
rejected (BEP 6) or, from a peer without the fast extension, a protocol violation.  Once every piece is
held by some connected peer, the rest is announced to everybody and the torrent seeds normally.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable

from torrentgoat.bitfield import Bitfield
from torrentgoat.superseed import SuperSeeder
from torrentgoat.torrent.wirepeer import WirePeer
from torrentgoat.wire.connection import PeerConnection
from torrentgoat.wire.messages import Have

__all__ = ["SuperSeeding"]

log = logging.getLogger(__name__)


class SuperSeeding:
    """One torrent's super-seeding state; :attr:`active` until every piece is out in the swarm."""

    def __init__(self, num_pieces: int, have: Callable[[], Bitfield | None], rng: random.Random) -> None:
        self.engine = SuperSeeder(num_pieces, rng=random.Random(rng.random()))
        self.num_pieces = num_pieces
        self.active = num_pieces > 1  # one piece: its lone ``have`` would get us dropped (superseed.py)
        self._have = have
        self._shown: dict[PeerConnection, Bitfield] = {}
        self._states: dict[PeerConnection, WirePeer] = {}
        self._pending: dict[Callable[[], Bitfield | None], Bitfield] = {}

    def view(self) -> Callable[[], Bitfield | None]:
        """A have-set source for one new connection: the pieces revealed on it while super-seeding,
        our whole have-set afterwards.  Pass it to the engine, then :meth:`attach` the engine."""
        shown = Bitfield(self.num_pieces)

        def have() -> Bitfield | None:
            return shown if self.active else self._have()

        self._pending[have] = shown
        return have

    def attach(self, engine: PeerConnection, view: Callable[[], Bitfield | None]) -> None:
        shown = self._pending.pop(view, None)
        if shown is not None:
            self._shown[engine] = shown

    def peer_ready(self, ps: WirePeer) -> None:
        """Our opening went out (handshakes done) or the peer's bitfield arrived: reveal to it."""
        engine = ps.driver.engine
        if not self.active or engine not in self._shown or not engine.handshake_complete:
            return
        self._states[engine] = ps
        have = engine.peer_have if engine.peer_have is not None else Bitfield(self.num_pieces)
        self._announce(engine, self.engine.peer_joined(ps.key, have))

    def peer_have(self, ps: WirePeer, index: int) -> None:
        engine = ps.driver.engine
        if self.active and engine in self._states:
            self._announce(engine, self.engine.peer_have(ps.key, index))

    def peer_closed(self, ps: WirePeer) -> None:
        engine = ps.driver.engine
        self._shown.pop(engine, None)
        if self._states.pop(engine, None) is not None and self.active:
            self.engine.peer_left(ps.key)

    def _announce(self, engine: PeerConnection, pieces: list[int]) -> None:
        shown = self._shown[engine]
        for index in pieces:
            shown.add(index)
            engine.send(Have(index=index))
        if self.engine.distributed:
            self.finish()

    def finish(self) -> None:
        """Leave super-seeding: announce to every peer the pieces it was not told of; seed normally
        (connections opened from now on get our full bitfield).  Also called when verified data
        vanished from disk: only pieces still in our have-set are announced."""
        if not self.active:
            return
        self.active = False
        self.engine.finish()
        have = self._have()
        for engine, ps in self._states.items():
            if ps.driver.closed:
                continue
            shown, theirs = self._shown[engine], engine.peer_have
            for index in range(self.num_pieces):
                if have is not None and index not in have:
                    continue
                if index not in shown and (theirs is None or index not in theirs):
                    engine.send(Have(index=index))
            ps.driver.flush()
        log.info("super-seeding done: every piece is held by a connected peer")
