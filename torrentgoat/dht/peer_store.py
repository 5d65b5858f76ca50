"""Peers announced to us (BEP 5 "announce_peer"), with expiry and caps.

Every collection is bounded: at most ``max_info_hashes`` torrents, ``max_peers`` peers per torrent
(the oldest announcement gives way), and announcements expire after ``ttl`` seconds unless repeated.
"""

from __future__ import annotations

import random
from collections import OrderedDict

from torrentgoat.dht.krpc import Addr

__all__ = ["PeerStore"]


class PeerStore:
    """info-hash -> peers, least recently announced first."""

    def __init__(self, *, ttl: float = 1800.0, max_info_hashes: int = 5000, max_peers: int = 200) -> None:
        self.ttl = ttl
        self.max_info_hashes = max_info_hashes
        self.max_peers = max_peers
        self._torrents: OrderedDict[bytes, OrderedDict[Addr, float]] = OrderedDict()

    def __len__(self) -> int:
        return sum(len(p) for p in self._torrents.values())

    @property
    def info_hash_count(self) -> int:
        return len(self._torrents)

    def announce(self, info_hash: bytes, addr: Addr, now: float) -> None:
        peers = self._torrents.get(info_hash)
        if peers is None:
            if len(self._torrents) >= self.max_info_hashes:
                self._torrents.popitem(last=False)
            peers = self._torrents[info_hash] = OrderedDict()
        else:
            self._torrents.move_to_end(info_hash)
        peers.pop(addr, None)
        peers[addr] = now + self.ttl
        while len(peers) > self.max_peers:
            peers.popitem(last=False)

    def get(self, info_hash: bytes, now: float, rng: random.Random, limit: int = 50) -> list[Addr]:
        """Up to ``limit`` unexpired peers, a random sample when there are more."""
        peers = self._torrents.get(info_hash)
        if not peers:
            return []
        alive = [a for a, expiry in peers.items() if expiry > now]
        if len(alive) > limit:
            alive = rng.sample(alive, limit)
        return alive

    def expire(self, now: float) -> None:
        for info_hash in list(self._torrents):
            peers = self._torrents[info_hash]
            for addr in [a for a, expiry in peers.items() if expiry <= now]:
                del peers[addr]
            if not peers:
                del self._torrents[info_hash]
