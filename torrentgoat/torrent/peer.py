"""One abstraction for everything a torrent exchanges blocks with (level L5).

A wire connection (:class:`~torrentgoat.torrent.wirepeer.WirePeer`) and a BEP 19 web seed
(:class:`~torrentgoat.torrent.webseed.WebSeedPeer`) are two implementations of :class:`Peer`
(anacrolix/torrent's ``peerImpl``): the torrent picks blocks for them, takes their blocks, verifies
and blames them through this interface only, and names them all with one key type, :data:`PeerKey`
(the picker's opaque peer key).
"""

from __future__ import annotations

from typing import Protocol

from torrentgoat.bitfield import Bitfield
from torrentgoat.primitives import BlockRef, PeerAddress

__all__ = ["Peer", "PeerKey"]

PeerKey = int
"""Process-unique key of a peer (:func:`torrentgoat.aio.peer.next_peer_key`)."""


class Peer(Protocol):
    """A source of blocks for a torrent."""

    @property
    def key(self) -> PeerKey:
        """The peer's key in the picker and in the torrent's registry."""

    @property
    def address(self) -> PeerAddress | None:
        """Where the peer is, for bans and logs (None: not an address, e.g. a web seed's URL)."""

    @property
    def cancellable(self) -> bool:
        """Whether a request to it can be cancelled (BEP 3 ``cancel``); an HTTP range cannot."""

    def pieces(self) -> Bitfield | None:
        """The pieces it has (None: not known yet)."""

    def cancel(self, block: BlockRef) -> None:
        """Another peer delivered ``block`` first (endgame): drop our request for it if possible."""

    def piece_failed(self, index: int, *, sole: bool) -> bool:
        """A piece it contributed to failed its hash check (``sole``: nobody else contributed).
        Returns whether the torrent should ban it; a web seed drops its URL itself (BEP 19)."""

    def close(self, reason: str) -> None:
        """Stop using the peer for this torrent."""
