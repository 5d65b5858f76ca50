"""A peer wire connection as one of a torrent's peers (level L5).

:class:`WirePeer` is the torrent's side of one :class:`~torrentgoat.aio.peer.PeerDriver`: the
:class:`~torrentgoat.torrent.peer.Peer` interface over the wire engine, plus what the torrent tracks
beside the engine's own state -- rates, the request rules' memory
(:class:`~torrentgoat.torrent.policy.RequestState`), choking times, the upload queue, PEX.
"""

from __future__ import annotations

import asyncio
from collections import deque

from torrentgoat.aio.peer import PeerDriver
from torrentgoat.bitfield import Bitfield
from torrentgoat.choker import PeerStats
from torrentgoat.primitives import BlockRef, PeerAddress
from torrentgoat.rates import RateMeter
from torrentgoat.torrent.policy import EvictionCandidate, RequestState, choke_stats, on_local_network
from torrentgoat.wire.messages import Cancel
from torrentgoat.wire.pex import PexState

__all__ = ["WirePeer"]


class WirePeer:
    """One live connection of a torrent (a :class:`~torrentgoat.torrent.peer.Peer`)."""

    __slots__ = (
        "allowed_fast_sent",
        "blocks_since_fill",
        "client",
        "connected_at",
        "down",
        "driver",
        "got_blocks",
        "joined",
        "last_unchoked",
        "pex",
        "requests",
        "serving",
        "unchoked_since",
        "up",
        "upload_queue",
        "writable",
    )

    cancellable = True

    def __init__(self, driver: PeerDriver, now: float) -> None:
        self.driver = driver
        self.connected_at = now
        self.down = RateMeter(time_constant=5.0)
        self.up = RateMeter(time_constant=5.0)
        self.requests = RequestState(last_block_at=now)
        """The request rules' memory of this peer (snubbing, rejects)."""
        self.joined = False
        """Whether the picker counts this peer's have-set in availability."""
        self.upload_queue: deque[tuple[int, int, int]] = deque()
        """The peer's requests waiting to be served, ``(index, begin, length)`` in arrival order."""
        self.serving = False
        self.writable = asyncio.Event()
        self.writable.set()
        self.pex = PexState()
        self.client = ""
        self.allowed_fast_sent = False
        """BEP 6 allowed-fast pieces were offered on this connection (once)."""
        self.got_blocks = False
        """Blocks arrived during the current socket read (refill the pipeline after it)."""
        self.blocks_since_fill = 0
        """Blocks received since the pipeline was last topped up (:func:`~torrentgoat.torrent.policy.refill_due`)."""
        self.unchoked_since: float | None = None
        """When our current unchoke of the peer began (None while we choke it)."""
        self.last_unchoked: float | None = None

    # --- Peer ------------------------------------------------------------------------------------

    @property
    def key(self) -> int:
        return self.driver.id

    @property
    def address(self) -> PeerAddress | None:
        return self.driver.address

    def pieces(self) -> Bitfield | None:
        engine = self.driver.engine
        if engine.peer_have is not None:
            return engine.peer_have
        geometry = engine.geometry
        if engine.peer_has_all and geometry is not None:
            return Bitfield(geometry.num_pieces, full=True)
        return None

    def cancel(self, block: BlockRef) -> None:
        self.driver.engine.send(Cancel(index=block.piece, begin=block.begin, length=block.length))
        self.driver.flush()

    def piece_failed(self, index: int, *, sole: bool) -> bool:
        return sole  # several contributors: smart ban finds the culprit once the piece verifies

    def close(self, reason: str) -> None:
        self.driver.close(reason)

    # --- views for the pure rules ----------------------------------------------------------------

    @property
    def live(self) -> bool:
        """Open, with both handshakes done."""
        return not self.driver.closed and self.driver.engine.handshake_complete

    def choke_stats(self, now: float) -> PeerStats:
        """What the choker sees of this peer."""
        engine = self.driver.engine
        return choke_stats(
            self.key,
            interested=engine.peer_interested,
            download_rate=self.down.rate(now),
            upload_rate=self.up.rate(now),
            have=engine.peer_have,
            has_all=engine.peer_has_all,
            snubbed=self.requests.snubbed,
            connected_at=self.connected_at,
            unchoked_since=self.unchoked_since,
            last_unchoked=self.last_unchoked,
            local=on_local_network(self.address),
        )

    def eviction_view(self) -> EvictionCandidate:
        """What eviction sees of this peer."""
        engine = self.driver.engine
        return EvictionCandidate(
            key=self.key,
            snubbed=self.requests.snubbed,
            am_interested=engine.am_interested,
            peer_interested=engine.peer_interested,
            peer_choking=engine.peer_choking,
            last_block_at=self.requests.last_block_at,
            connected_at=self.connected_at,
        )

    @property
    def transport(self) -> str:
        """``utp`` or ``tcp``: what carries the connection."""
        transport = self.driver.transport
        return "utp" if transport is not None and transport.get_extra_info("utp") else "tcp"

    @property
    def encryption(self) -> str:
        """``rc4`` or ``plaintext`` after an MSE handshake (BEP 8 / MSE), ``none`` without one."""
        transport = self.driver.transport
        info = transport.get_extra_info("mse") if transport is not None else None
        return "none" if info is None else str(info.method.name).lower()

    def listen_address(self) -> PeerAddress | None:
        """Where others can reach the peer (BEP 11): the address we dialled, or for an incoming peer
        its IP with the listen port from its extension handshake (BEP 10 ``p``)."""
        address = self.driver.address
        if address is None or self.driver.outgoing:
            return address
        ext = self.driver.engine.peer_extensions
        if ext is None or not ext.p or not 0 < ext.p < 65536:
            return None
        return PeerAddress(address.host, ext.p)

    def __repr__(self) -> str:
        return f"<WirePeer #{self.key} {self.address}>"
