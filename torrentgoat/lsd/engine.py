"""The Local Service Discovery engine (level L2, sans-IO): BEP 14 announces out, found peers in.

:class:`LSDEngine` owns everything about BEP 14 except sockets and the clock: the announce
schedule of every torrent, our cookie, the rate limits on what we send and on what we accept, and
the parsing of received datagrams into :class:`PeerFound` events.  The asyncio driver
(:mod:`torrentgoat.aio.lsd`) feeds it datagrams and timer calls and sends what it returns::

    engine = LSDEngine(port=6881, rng=rng, now=now, groups=(LSD_GROUP4,))
    engine.add_torrent(info_hash, now)
    for data, group in engine.datagrams_to_send(now): sock.sendto(data, (group.address, group.port))
    engine.receive_datagram(data, (ip, port), now)
    while (event := engine.next_event()) is not None: ...   # PeerFound(info_hash, address)
    when = engine.get_timer(); engine.handle_timer(now)

The schedule follows libtorrent (``src/lsd.cpp``, ``session_impl.cpp``): a torrent is announced as
soon as it is added and twice more, ``retry_delays`` apart (a datagram lost, or a neighbour whose
socket was not up yet), then every ``announce_interval`` seconds (libtorrent's
``local_service_announce_interval``, 5 minutes).  Torrents due together share datagrams (BEP 14:
several consecutive ``Infohash`` headers, within 1400 bytes).  What we send is rate limited per
info-hash (``min_reannounce``) and overall (``max_send_rate`` datagrams per second per group).

What we accept is just as guarded, since any host of the LAN can send anything: oversized or
malformed datagrams are counted and dropped (:func:`~torrentgoat.lsd.announce.parse_announce`),
our own announces (our cookie) are ignored, announces for info-hashes we do not serve are ignored,
a source that is not a unicast address is ignored, and token buckets cap the datagrams accepted
per source address and overall and the peers reported per info-hash.  A found address is only a
candidate: the torrent dials it like a tracker's peer and the BEP 3 handshake decides.
"""

from __future__ import annotations

import random
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from torrentgoat.errors import ConfigError, RemoteProtocolError
from torrentgoat.lsd.announce import (
    LSD_GROUP4,
    LSD_GROUP6,
    MAX_ANNOUNCE_SIZE,
    Group,
    encode_announce,
    infohashes_per_datagram,
    parse_announce,
)
from torrentgoat.primitives import InfoHash, PeerAddress, dialable_host

__all__ = ["LSDConfig", "LSDEngine", "LSDStats", "PeerFound", "TokenBucket"]


@dataclass(frozen=True, slots=True, kw_only=True)
class LSDConfig:
    """Tunables of Local Service Discovery (BEP 14); defaults follow libtorrent where it has one."""

    announce_interval: float = 300.0
    """Seconds between announces of one torrent (libtorrent's ``local_service_announce_interval``)."""
    retry_delays: tuple[float, ...] = (2.0, 4.0)
    """After a torrent is added, announce it again after these many seconds (libtorrent: 2 s, 4 s)."""
    min_reannounce: float = 1.0
    """Never announce one info-hash more often than this, whatever asks for it (per info-hash limit)."""
    max_send_rate: float = 2.0
    """Announces per second at most, in the long run, whatever the number of torrents (overall limit;
    one announce is one datagram to each group)."""
    send_burst: int = 8
    """Announces that may go out at once (a session adding many torrents)."""
    max_datagram: int = MAX_ANNOUNCE_SIZE
    """Bytes per datagram we send (BEP 14: 1400)."""
    max_receive_size: int = 4096
    """Larger received datagrams are dropped unread."""
    max_info_hashes: int = 64
    """Received announces naming more info-hashes are dropped."""
    accept_rate: float = 50.0
    """Datagrams per second accepted from all sources together (flood guard)."""
    accept_burst: int = 200
    accept_rate_per_source: float = 5.0
    """Datagrams per second accepted from one source address (generous: every process of a host
    -- the workers of one GPU node -- announces from the same address)."""
    accept_burst_per_source: int = 50
    found_rate_per_torrent: float = 2.0
    """Peers per second reported for one info-hash (a flood of forged sources cannot fill its pool)."""
    found_burst_per_torrent: int = 50
    repeat_after: float = 60.0
    """The same peer for the same torrent is reported again only after this many seconds."""
    max_sources: int = 1024
    """Source addresses whose rate is tracked (the oldest are forgotten beyond this)."""
    max_remembered: int = 4096
    """(info-hash, peer) pairs remembered for :attr:`repeat_after`."""

    def __post_init__(self) -> None:
        if self.announce_interval <= 0 or self.min_reannounce < 0:
            raise ConfigError("LSD announce_interval must be > 0 and min_reannounce >= 0")
        if self.max_send_rate <= 0 or self.send_burst < 1:
            raise ConfigError("LSD max_send_rate must be > 0 and send_burst >= 1")
        if self.max_datagram < 200:
            raise ConfigError(f"LSD max_datagram must be at least 200 bytes, got {self.max_datagram}")


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerFound:
    """A neighbour announced that it is in swarm ``info_hash`` and listens at ``address``."""

    info_hash: InfoHash
    address: PeerAddress


@dataclass(slots=True)
class LSDStats:
    """What the engine did with what it received and sent (for status lines and tests)."""

    sent: int = 0
    received: int = 0
    malformed: int = 0
    own: int = 0
    """Our own announces, recognised by the cookie (multicast loopback)."""
    unknown: int = 0
    """Announces naming no info-hash we serve."""
    rate_limited: int = 0
    """Datagrams or peers dropped by a rate limit."""
    bad_source: int = 0
    found: int = 0
    last_error: str = ""
    """Why the last dropped datagram was dropped."""


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved; ``take(now)`` spends one if it can."""

    __slots__ = ("burst", "rate", "tokens", "updated")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.updated = now

    def _refill(self, now: float) -> None:
        if now > self.updated:
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
            self.updated = now

    def take(self, now: float) -> bool:
        self._refill(now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def ready_at(self, now: float) -> float:
        """When one token will be there (``now`` if one is); changes nothing."""
        tokens = self.tokens
        if now > self.updated:
            tokens = min(self.burst, tokens + (now - self.updated) * self.rate)
        if tokens >= 1.0:
            return now
        return now + (1.0 - tokens) / self.rate


@dataclass(slots=True)
class _Torrent:
    due: float
    """When it is announced next."""
    retries: deque[float] = field(default_factory=deque)
    """Delays of the quick re-announces still to come after the next one."""
    last_sent: float | None = None
    found: TokenBucket | None = None


class LSDEngine:
    """BEP 14 for one session: which torrents to announce, when, and who announced what."""

    def __init__(
        self,
        *,
        port: int,
        rng: random.Random,
        now: float,
        config: LSDConfig | None = None,
        groups: Sequence[Group] = (LSD_GROUP4, LSD_GROUP6),
    ) -> None:
        if not 0 < port < 65536:
            raise ConfigError(f"LSD needs our listen port, got {port}")
        self.config = config or LSDConfig()
        self.port = port
        self.groups = tuple(groups)
        self.cookie = f"{rng.getrandbits(31):x}"
        """Opaque token in our announces (libtorrent: 31 random bits, hex), to drop our own echoes."""
        self.stats = LSDStats()
        self._torrents: dict[InfoHash, _Torrent] = {}
        self._events: deque[PeerFound] = deque()
        cfg = self.config
        self._send_limit = TokenBucket(cfg.max_send_rate, cfg.send_burst, now)
        self._accept = TokenBucket(cfg.accept_rate, cfg.accept_burst, now)
        self._sources: OrderedDict[str, TokenBucket] = OrderedDict()
        self._recent: OrderedDict[tuple[InfoHash, PeerAddress], float] = OrderedDict()
        self._cookie_value = int(self.cookie, 16)

    # ------------------------------------------------------------------ torrents

    @property
    def info_hashes(self) -> frozenset[InfoHash]:
        return frozenset(self._torrents)

    def add_torrent(self, info_hash: InfoHash, now: float) -> None:
        """Announce ``info_hash`` now, again after each of ``retry_delays``, then periodically; and
        report the neighbours that announce it."""
        if info_hash in self._torrents:
            return
        cfg = self.config
        self._torrents[info_hash] = _Torrent(
            due=now,
            retries=deque(cfg.retry_delays),
            found=TokenBucket(cfg.found_rate_per_torrent, cfg.found_burst_per_torrent, now),
        )

    def remove_torrent(self, info_hash: InfoHash) -> None:
        """Stop announcing ``info_hash`` and ignore announces of it."""
        self._torrents.pop(info_hash, None)

    def announce_soon(self, info_hash: InfoHash, now: float) -> None:
        """Announce ``info_hash`` at the next chance allowed by ``min_reannounce`` (e.g. our listen
        port changed, or the network came back)."""
        torrent = self._torrents.get(info_hash)
        if torrent is None:
            return
        earliest = now if torrent.last_sent is None else torrent.last_sent + self.config.min_reannounce
        torrent.due = min(torrent.due, max(now, earliest))

    def set_port(self, port: int, now: float) -> None:
        """Our listen port changed: re-announce everything with the new one."""
        if not 0 < port < 65536:
            raise ConfigError(f"port out of range: {port}")
        self.port = port
        for info_hash in self._torrents:
            self.announce_soon(info_hash, now)

    # ------------------------------------------------------------------ sending

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Group]]:
        """Announces due now, several info-hashes per datagram, one copy per group, within the rate
        limits.  Info-hashes held back by the overall limit stay due and go out as soon as it allows."""
        due = sorted((t.due, ih.raw, ih) for ih, t in self._torrents.items() if t.due <= now)
        if not due:
            return []
        hashes = [ih for _, _, ih in due]
        per = (
            min(
                infohashes_per_datagram(group, self.port, self.cookie, self.config.max_datagram)
                for group in self.groups
            )
            if self.groups
            else len(hashes)
        )
        out: list[tuple[bytes, Group]] = []
        for start in range(0, len(hashes), per):
            if not self._send_limit.take(now):
                break
            chunk = hashes[start : start + per]
            out += [(encode_announce(group, self.port, chunk, self.cookie), group) for group in self.groups]
            for info_hash in chunk:
                self._sent(info_hash, now)
        self.stats.sent += len(out)
        return out

    def _sent(self, info_hash: InfoHash, now: float) -> None:
        torrent = self._torrents[info_hash]
        torrent.last_sent = now
        delay = torrent.retries.popleft() if torrent.retries else self.config.announce_interval
        torrent.due = now + max(delay, self.config.min_reannounce)

    # ------------------------------------------------------------------ timers

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` (then :meth:`datagrams_to_send`) has work: the next due announce,
        pushed back while the send limit has no token."""
        if not self._torrents:
            return None
        when = min(t.due for t in self._torrents.values())
        return max(when, self._send_limit.ready_at(when))

    def handle_timer(self, now: float) -> None:
        """Nothing to do but send: announces due are collected by :meth:`datagrams_to_send`."""

    # ------------------------------------------------------------------ receiving

    def receive_datagram(
        self, data: bytes, addr: tuple[str, int] | tuple[str, int, int, int], now: float
    ) -> None:
        """One datagram from ``addr`` (its source); found peers become :class:`PeerFound` events."""
        stats = self.stats
        stats.received += 1
        if not self._accept.take(now):
            stats.rate_limited += 1
            stats.last_error = "too many announces overall"
            return
        host = addr[0]
        if not dialable_host(host.partition("%")[0]):
            stats.bad_source += 1
            stats.last_error = f"announce from a non-unicast source {host!r}"
            return
        if not self._source_limit(host, now).take(now):
            stats.rate_limited += 1
            stats.last_error = f"too many announces from {host}"
            return
        try:
            announce = parse_announce(
                data, max_size=self.config.max_receive_size, max_info_hashes=self.config.max_info_hashes
            )
        except RemoteProtocolError as exc:
            stats.malformed += 1
            stats.last_error = f"{host}: {exc}"
            return
        if announce.cookie is not None and self._is_ours(announce.cookie):
            stats.own += 1
            return
        address = PeerAddress(host, announce.port)
        known = False
        for info_hash in announce.info_hashes:
            torrent = self._torrents.get(info_hash)
            if torrent is None:
                continue
            known = True
            key = (info_hash, address)
            seen = self._recent.get(key)
            if seen is not None and now - seen < self.config.repeat_after:
                continue
            assert torrent.found is not None
            if not torrent.found.take(now):
                stats.rate_limited += 1
                stats.last_error = f"too many peers announced for {info_hash.hex}"
                continue
            self._remember(key, now)
            stats.found += 1
            self._events.append(PeerFound(info_hash=info_hash, address=address))
        if not known:
            stats.unknown += 1

    def _is_ours(self, cookie: str) -> bool:
        if cookie == self.cookie:
            return True
        try:
            return int(cookie, 16) == self._cookie_value  # libtorrent reads cookies as hex numbers
        except ValueError:
            return False

    def _source_limit(self, host: str, now: float) -> TokenBucket:
        sources = self._sources
        bucket = sources.get(host)
        if bucket is None:
            cfg = self.config
            bucket = sources[host] = TokenBucket(cfg.accept_rate_per_source, cfg.accept_burst_per_source, now)
            while len(sources) > cfg.max_sources:
                sources.popitem(last=False)
        else:
            sources.move_to_end(host)
        return bucket

    def _remember(self, key: tuple[InfoHash, PeerAddress], now: float) -> None:
        recent = self._recent
        recent[key] = now
        recent.move_to_end(key)
        while len(recent) > self.config.max_remembered:
            recent.popitem(last=False)

    def next_event(self) -> PeerFound | None:
        """The next found peer, or None."""
        return self._events.popleft() if self._events else None
