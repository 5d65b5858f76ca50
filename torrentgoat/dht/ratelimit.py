"""Per-source token buckets: a flood from one address is dropped, not answered.

The key is ``(ip, port)`` by default because every node of a loopback test shares 127.0.0.1;
``per_ip=True`` keys on the IP alone (the right choice on the internet).  The table of sources is
capped: when full, the least recently seen source is forgotten.
"""

from __future__ import annotations

from collections import OrderedDict

from torrentgoat.dht.krpc import Addr

__all__ = ["RateLimiter"]


class RateLimiter:
    """``rate`` packets per second with bursts of ``burst``; ``rate <= 0`` disables limiting."""

    def __init__(self, *, rate: float, burst: float, per_ip: bool = False, max_sources: int = 10000) -> None:
        self.rate = rate
        self.burst = burst
        self.per_ip = per_ip
        self.max_sources = max_sources
        self._buckets: OrderedDict[object, tuple[float, float]] = OrderedDict()
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._buckets)

    def allow(self, addr: Addr, now: float) -> bool:
        if self.rate <= 0:
            return True
        key: object = addr[0] if self.per_ip else addr
        entry = self._buckets.pop(key, None)
        if entry is None:
            tokens = self.burst
            if len(self._buckets) >= self.max_sources:
                self._buckets.popitem(last=False)
        else:
            tokens, last = entry
            tokens = min(self.burst, tokens + (now - last) * self.rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        else:
            self.dropped += 1
        self._buckets[key] = (tokens, now)
        return allowed
