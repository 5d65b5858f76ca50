"""Torrent-level bookkeeping of connected peers and of addresses we may dial (level L5)."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

from torrentgoat.aio.peer import PeerDriver
from torrentgoat.primitives import BlockRef, PeerAddress, dialable_host
from torrentgoat.rates import RateMeter
from torrentgoat.wire.pex import PexState

__all__ = ["Candidate", "CandidatePool", "PeerState"]


class PeerState:
    """What the torrent tracks about one live connection, beside the wire engine's own state."""

    __slots__ = (
        "allowed_fast_sent",
        "client",
        "connected_at",
        "down",
        "driver",
        "got_blocks",
        "hold_until",
        "joined",
        "last_block_at",
        "last_request_at",
        "last_unchoked",
        "pex",
        "refused",
        "reject_streak",
        "serving",
        "snubbed",
        "unchoked_since",
        "up",
        "upload_queue",
        "writable",
    )

    def __init__(self, driver: PeerDriver, now: float) -> None:
        self.driver = driver
        self.connected_at = now
        self.down = RateMeter(time_constant=5.0)
        self.up = RateMeter(time_constant=5.0)
        self.last_block_at = now
        self.last_request_at: float | None = None
        self.snubbed = False
        self.joined = False
        """Whether the picker counts this peer's have-set in availability."""
        self.upload_queue: deque[BlockRef] = deque()
        self.serving = False
        self.writable = asyncio.Event()
        self.writable.set()
        self.pex = PexState()
        self.client = ""
        self.allowed_fast_sent = False
        """BEP 6 allowed-fast pieces were offered on this connection (once)."""
        self.got_blocks = False
        """Blocks arrived during the current socket read (refill the pipeline after it)."""
        self.reject_streak = 0
        """Requests the peer rejected (BEP 6) since it last sent a block."""
        self.refused: dict[int, float] = {}
        """Pieces the peer rejected (BEP 6) while unchoking us, and when: not asked again for a while."""
        self.hold_until = 0.0
        """No new requests to this peer before this time (after rejects)."""
        self.unchoked_since: float | None = None
        """When our current unchoke of the peer began (None while we choke it)."""
        self.last_unchoked: float | None = None

    @property
    def key(self) -> int:
        return self.driver.id

    @property
    def address(self) -> PeerAddress | None:
        return self.driver.address


@dataclass(slots=True)
class Candidate:
    """An address we may dial, and how dialling it went so far."""

    address: PeerAddress
    source: str
    failures: int = 0
    next_try: float = 0.0
    connected: bool = False


@dataclass(slots=True)
class CandidatePool:
    """Addresses learned from trackers, the DHT, PEX, magnets and the command line (bounded)."""

    limit: int = 2000
    candidates: dict[PeerAddress, Candidate] = field(default_factory=dict)
    banned: set[PeerAddress] = field(default_factory=set)
    ourselves: set[PeerAddress] = field(default_factory=set)

    def add(self, address: PeerAddress, source: str) -> bool:
        if address in self.banned or address in self.ourselves or address in self.candidates:
            return False
        if not dialable_host(address.host):
            return False  # 0.0.0.0, multicast, broadcast: never dial what PEX or a tracker says there
        if len(self.candidates) >= self.limit:
            return False
        self.candidates[address] = Candidate(address=address, source=source)
        return True

    def ready(self, now: float) -> list[Candidate]:
        """Candidates not connected, not banned, whose back-off has expired; fewest failures first."""
        ready = [
            c
            for c in self.candidates.values()
            if not c.connected and c.next_try <= now and c.address not in self.banned
        ]
        ready.sort(key=lambda c: (c.failures, c.next_try))
        return ready

    def failed(self, address: PeerAddress, now: float) -> None:
        candidate = self.candidates.get(address)
        if candidate is None:
            return
        candidate.connected = False
        candidate.failures += 1
        if candidate.failures > 6:
            del self.candidates[address]
            return
        candidate.next_try = now + min(300.0, 5.0 * 2 ** (candidate.failures - 1))

    def ban(self, address: PeerAddress) -> None:
        self.banned.add(address)
        self.candidates.pop(address, None)
