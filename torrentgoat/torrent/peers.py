"""Addresses a torrent may dial, and how dialling them went (level L5)."""

from __future__ import annotations

from dataclasses import dataclass, field

from torrentgoat.primitives import PeerAddress, dialable_host

__all__ = ["Candidate", "CandidatePool"]


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
