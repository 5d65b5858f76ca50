"""Transfer-rate estimation (level L0): pure, time comes in as ``now``."""

from __future__ import annotations

import math

__all__ = ["RateMeter"]


class RateMeter:
    """Exponentially decaying byte rate, in bytes per second.

    ``time_constant`` is how long (seconds) it takes the estimate to settle after a change.  The
    choker (BEP 3: "a rolling 20-second average") and request-queue sizing read it.
    """

    __slots__ = ("_last", "_pending", "_rate", "time_constant", "total")

    def __init__(self, time_constant: float = 5.0) -> None:
        self.time_constant = time_constant
        self.total = 0
        self._rate = 0.0
        self._pending = 0
        self._last: float | None = None

    def add(self, nbytes: int, now: float) -> None:
        self.total += nbytes
        self._pending += nbytes
        if self._last is None:
            self._last = now

    def rate(self, now: float) -> float:
        """Current estimate; folds in bytes added since the last call."""
        if self._last is None:
            return 0.0
        elapsed = now - self._last
        if elapsed <= 0:
            return self._rate
        alpha = 1.0 - math.exp(-elapsed / self.time_constant)
        instant = self._pending / elapsed
        self._rate += alpha * (instant - self._rate)
        self._pending = 0
        self._last = now
        return self._rate
