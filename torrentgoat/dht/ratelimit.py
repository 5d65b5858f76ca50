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

__all__ = ["RateLimiter"]


class RateLimiter:
    """``rate`` packets per second with bursts of ``burst``; ``rate <= 0`` disables limiting."""

    def __init__(
        self, *, rate: float, burst: float, per_ip: bool | None = None, max_sources: int = 10000
    ) -> None:
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
        per_ip = self.per_ip if self.per_ip is not None else not is_exempt(addr[0])
        key: object = addr[0] if per_ip else addr
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
