"""Addresses a torrent may dial, and how dialling them went (level L5)."""

from __future__ import annotations

from dataclasses import dataclass, field

from torrentgoat.primitives import InfoHash, PeerAddress, dialable_host

__all__ = ["Candidate", "CandidatePool"]


@dataclass(slots=True)
class Candidate:
    """An address we may dial, and how dialling it went so far."""

    address: PeerAddress
    source: str
    failures: int = 0
    next_try: float = 0.0
    connected: bool = False
    last_error: str = ""
    plain: bool = False
    """It dropped our MSE handshake once and spoke plain BitTorrent: dial it plain from now on."""
    transport: str = ""
    """``tcp`` or ``utp``: what reached it last time (tried first from now on); empty: not known."""
    swarm_id: InfoHash | None = None
    """The swarm id it was found under when that is not the torrent's own (a hybrid's truncated SHA-256,
    BEP 52): dialled with it.  ``None``: the torrent's info-hash (found under it, too)."""


@dataclass(slots=True)
class CandidatePool:
    """Addresses learned from trackers, the DHT, PEX, magnets and the command line (bounded).

    At most ``limit`` addresses, of which at most ``pex_share`` from PEX (BEP 11 messages from any
    connected peer cannot fill the pool and crowd out trackers and the DHT); when full, the address
    that failed most often gives way to a new one."""

    limit: int = 2000
    pex_share: float = 0.5
    candidates: dict[PeerAddress, Candidate] = field(default_factory=dict)
    banned: set[PeerAddress] = field(default_factory=set)
    ourselves: set[PeerAddress] = field(default_factory=set)

    def add(self, address: PeerAddress, source: str, swarm_id: InfoHash | None = None) -> bool:
        known = self.candidates.get(address)
        if known is not None:
            if known.swarm_id != swarm_id:
                known.swarm_id = None  # found under both ids: the torrent's own one reaches it
            return False
        if address in self.banned or address in self.ourselves:
            return False
        if not dialable_host(address.host):
            return False  # 0.0.0.0, multicast, broadcast: never dial what PEX or a tracker says there
        quota = self.limit * self.pex_share
        if source == "pex" and len(self.candidates) >= quota:
            if sum(1 for c in self.candidates.values() if c.source == "pex") >= quota:
                return False
        if len(self.candidates) >= self.limit and not self._make_room():
            return False
        self.candidates[address] = Candidate(address=address, source=source, swarm_id=swarm_id)
        return True

    def _make_room(self) -> bool:
        """Forget the (unconnected) address that failed most; False when none has failed."""
        worst = max(
            (c for c in self.candidates.values() if c.failures and not c.connected),
            key=lambda c: c.failures,
            default=None,
        )
        if worst is None:
            return False
        del self.candidates[worst.address]
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

    def failed(self, address: PeerAddress, now: float, reason: str = "") -> None:
        candidate = self.candidates.get(address)
        if candidate is None:
            return
        candidate.connected = False
        candidate.failures += 1
        candidate.last_error = reason or candidate.last_error
        if candidate.failures > 6:
            del self.candidates[address]
            return
        candidate.next_try = now + min(300.0, 5.0 * 2 ** (candidate.failures - 1))

    def describe(self, limit: int = 3) -> str | None:
        """One line on the addresses known, and why the failing ones failed (None: none known)."""
        if not self.candidates:
            return None
        failing = [c for c in self.candidates.values() if c.failures]
        text = f"{len(self.candidates)} peer addresses known, {len(failing)} failing"
        if failing:
            shown = "; ".join(f"{c.address}: {c.last_error or 'failed'}" for c in failing[:limit])
            text += f" ({shown}{'; ...' if len(failing) > limit else ''})"
        return text

    def ban(self, address: PeerAddress) -> None:
        self.banned.add(address)
        self.candidates.pop(address, None)
