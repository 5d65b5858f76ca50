"""Per-source token buckets: a flood from one address is dropped, not answered.

The key is the IP alone for public addresses (a flooder cannot get a fresh bucket by changing ports)
and ``(ip, port)`` for local ones (BEP 42's exempt ranges), because every node of a loopback test
shares 127.0.0.1; ``per_ip=True``/``False`` forces one key for every address.  The table of sources
is capped: when full, the least recently seen source is forgotten.
"""

from __future__ import annotations

from collections import OrderedDict

from torrentgoat.dht.krpc import Addr
from torrentgoat.dht.security import is_exempt

__all__ = ["Budget", "RateLimiter"]


class RateLimiter:
    """Per-source token buckets: ``rate`` datagrams per second with bursts of ``burst`` for local
    sources, ``public_rate`` / ``public_burst`` for public ones (per IP); ``rate <= 0`` disables
    limiting.  ``per_ip=True`` treats every source as public, ``False`` every source as local."""

    def __init__(
        self,
        *,
        rate: float,
        burst: float,
        public_rate: float | None = None,
        public_burst: float | None = None,
        per_ip: bool | None = None,
        max_sources: int = 10000,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.public_rate = rate if public_rate is None else public_rate
        self.public_burst = burst if public_burst is None else public_burst
        self.per_ip = per_ip
        self.max_sources = max_sources
        self._buckets: OrderedDict[object, tuple[float, float]] = OrderedDict()
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._buckets)

    def is_public(self, ip: str) -> bool:
        """Whether ``ip`` is limited as a public source (per IP, at the public rate)."""
        return self.per_ip if self.per_ip is not None else not is_exempt(ip)

    def allow(self, addr: Addr, now: float) -> bool:
        if self.rate <= 0:
            return True
        public = self.is_public(addr[0])
        key: object = addr[0] if public else addr
        rate, burst = (self.public_rate, self.public_burst) if public else (self.rate, self.burst)
        entry = self._buckets.pop(key, None)
        if entry is None:
            tokens = burst
            if len(self._buckets) >= self.max_sources:
                self._buckets.popitem(last=False)
        else:
            tokens, last = entry
            tokens = min(burst, tokens + (now - last) * rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        else:
            self.dropped += 1
        self._buckets[key] = (tokens, now)
        return allowed


class Budget:
    """One token bucket shared by every source: ``rate`` per second, bursts of ``rate`` (one second's
    worth); ``rate <= 0``: unlimited."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._tokens = rate
        self._last: float | None = None

    def take(self, now: float) -> bool:
        if self.rate <= 0:
            return True
        if self._last is not None:
            self._tokens = min(self.rate, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True
