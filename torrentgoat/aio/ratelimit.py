"""Token-bucket rate limits shared by many connections (level L4).

Used for the optional ``--upload-limit`` / ``--download-limit`` (bytes per second) that let
benchmarks model real links.  A limit of 0 means unlimited, and then every call returns at once.
"""

from __future__ import annotations

import asyncio
import time

__all__ = ["TokenBucket"]


class TokenBucket:
    """``rate`` bytes per second with a burst of ``burst`` bytes (default: 1/4 s worth, >= 64 KiB)."""

    __slots__ = ("_last", "_tokens", "burst", "rate")

    def __init__(self, rate: int, burst: int | None = None) -> None:
        self.rate = max(0, rate)
        self.burst = burst if burst is not None else max(64 * 1024, self.rate // 4)
        self._tokens = float(self.burst)
        self._last = time.monotonic()

    @property
    def unlimited(self) -> bool:
        return self.rate == 0

    def _refill(self) -> None:
        now = time.monotonic()
        self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.rate)
        self._last = now

    def consume(self, nbytes: int) -> float:
        """Take ``nbytes`` (going into debt if needed); return seconds to wait before more traffic."""
        if not self.rate:
            return 0.0
        self._refill()
        self._tokens -= nbytes
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    async def acquire(self, nbytes: int) -> None:
        """Wait until ``nbytes`` may pass."""
        delay = self.consume(nbytes)
        if delay > 0:
            await asyncio.sleep(delay)
