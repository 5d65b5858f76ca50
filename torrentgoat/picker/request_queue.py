"""Per-peer request pipelining: how many blocks to keep requested, and when a peer is snubbing us.

Pure and clock-free: every call takes ``now`` (seconds, any monotonic origin).

* :func:`queue_depth` sizes a peer's request queue to its download rate so enough data is always in
  flight to cover one round trip plus jitter: ``clamp(rate * target_latency / BLOCK_SIZE, min, max)``
  (libtorrent's ``request_queue_time`` rule; BEP 3 only says "keep a few unfulfilled requests").
* :class:`RateMeter` is an O(1) exponentially decaying byte-rate estimate.
* :class:`RequestTracker` keeps one peer's outstanding-request count and last-block time, answers how
  many new requests to send, and flags the peer *snubbed* when it sends no block for ``snub_timeout``
  seconds while requests are outstanding (libtorrent's snubbing: the driver then calls
  ``PiecePicker.peer_snubbed`` and the queue shrinks to one request until a block arrives).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torrentgoat.errors import ConfigError
from torrentgoat.primitives import BLOCK_SIZE

__all__ = ["RateMeter", "RequestQueueConfig", "RequestTracker", "queue_depth"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestQueueConfig:
    """Request pipelining knobs."""

    target_latency: float = 3.0
    """Seconds of transfer to keep requested ahead (libtorrent ``request_queue_time``)."""

    min_depth: int = 4
    """Fewest requests kept outstanding to an unsnubbed peer, whatever its rate."""

    max_depth: int = 500
    """Most requests outstanding to one peer (libtorrent ``max_out_request_queue``); also bounds what a
    peer can make us hold for it."""

    initial_depth: int = 16
    """Requests outstanding to a peer before any rate is known."""

    snub_timeout: float = 60.0
    """No block for this many seconds while requests are outstanding marks the peer snubbed."""

    snubbed_depth: int = 1
    """Requests outstanding to a snubbed peer (libtorrent keeps one)."""

    rate_window: float = 5.0
    """Time constant in seconds of the download-rate estimate."""

    def __post_init__(self) -> None:
        if self.target_latency <= 0 or self.snub_timeout <= 0 or self.rate_window <= 0:
            raise ConfigError("target_latency, snub_timeout and rate_window must be positive")
        if not 1 <= self.min_depth <= self.max_depth:
            raise ConfigError(f"need 1 <= min_depth ({self.min_depth}) <= max_depth ({self.max_depth})")
        if not self.min_depth <= self.initial_depth <= self.max_depth:
            raise ConfigError(f"initial_depth {self.initial_depth} not in {self.min_depth}..{self.max_depth}")
        if self.snubbed_depth < 0:
            raise ConfigError(f"snubbed_depth must be >= 0, got {self.snubbed_depth}")


def queue_depth(
    rate: float,
    *,
    target_latency: float = 3.0,
    min_depth: int = 4,
    max_depth: int = 500,
    block_size: int = BLOCK_SIZE,
) -> int:
    """Blocks to keep requested from a peer sending ``rate`` bytes/s:
    ``clamp(ceil(rate * target_latency / block_size), min_depth, max_depth)``."""
    if rate <= 0 or math.isnan(rate):
        return min_depth
    if math.isinf(rate):
        return max_depth
    return max(min_depth, min(max_depth, math.ceil(rate * target_latency / block_size)))


class RateMeter:
    """Byte rate with exponential decay of time constant ``window`` seconds: a steady stream of R
    bytes/s reads R; silence decays towards 0.  O(1) memory and time.  During the first seconds the
    average is taken over the time elapsed since creation (at least ``min_span``), so a new fast peer
    is not underestimated."""

    __slots__ = ("_last", "_start", "_sum", "min_span", "total", "window")

    def __init__(self, *, window: float = 5.0, now: float = 0.0, min_span: float = 1.0) -> None:
        if window <= 0 or min_span <= 0:
            raise ConfigError(f"rate window and min_span must be positive, got {window}, {min_span}")
        self.window = window
        self.min_span = min_span
        self._start = now
        self._sum = 0.0
        self._last = now
        self.total = 0
        """Bytes counted since creation."""

    def _decay(self, now: float) -> None:
        dt = now - self._last
        if dt > 0:
            self._sum *= math.exp(-dt / self.window)
            self._last = now

    def add(self, nbytes: int, now: float) -> None:
        self._decay(now)
        self._sum += nbytes
        self.total += nbytes

    def rate(self, now: float) -> float:
        """Bytes per second."""
        self._decay(now)
        span = max(self.min_span, now - self._start)
        return self._sum / (self.window * -math.expm1(-span / self.window))


class RequestTracker:
    """One peer's request pipeline: outstanding count, download rate, snub state."""

    __slots__ = ("_last_progress", "config", "meter", "outstanding", "snubbed")

    def __init__(self, config: RequestQueueConfig | None = None, *, now: float) -> None:
        self.config = config or RequestQueueConfig()
        self.meter = RateMeter(window=self.config.rate_window, now=now)
        self.outstanding = 0
        """Requests sent and neither answered, rejected nor cancelled."""
        self.snubbed = False
        self._last_progress = now

    def desired(self, now: float) -> int:
        """Requests this peer should have outstanding now."""
        cfg = self.config
        if self.snubbed:
            return cfg.snubbed_depth
        if self.meter.total == 0:
            return cfg.initial_depth
        return queue_depth(
            self.meter.rate(now),
            target_latency=cfg.target_latency,
            min_depth=cfg.min_depth,
            max_depth=cfg.max_depth,
        )

    def room(self, now: float) -> int:
        """How many new requests to send (the ``count`` for ``PiecePicker.pick``)."""
        return max(0, self.desired(now) - self.outstanding)

    def requested(self, count: int, now: float) -> None:
        """``count`` requests were sent."""
        if count <= 0:
            return
        if self.outstanding == 0:
            self._last_progress = now  # the snub clock starts when we start waiting
        self.outstanding += count

    def received(self, nbytes: int, now: float, *, was_requested: bool = True) -> None:
        """A block of ``nbytes`` arrived (answering one of our requests unless ``was_requested`` is
        False).  Any block clears the snub flag."""
        self.meter.add(nbytes, now)
        if was_requested and self.outstanding:
            self.outstanding -= 1
        self._last_progress = now
        self.snubbed = False

    def released(self, count: int = 1) -> None:
        """``count`` requests ended without data (rejected, cancelled, choked, released by the picker)."""
        self.outstanding = max(0, self.outstanding - count)

    def check(self, now: float) -> bool:
        """Return True exactly when the peer *becomes* snubbed: requests outstanding and no block for
        ``snub_timeout`` seconds.  The driver then calls ``PiecePicker.peer_snubbed``."""
        if self.snubbed or not self.outstanding:
            return False
        if now - self._last_progress >= self.config.snub_timeout:
            self.snubbed = True
            self._last_progress = now
            return True
        return False

    def get_timer(self) -> float | None:
        """When :meth:`check` could next fire, or None while nothing is outstanding or already snubbed."""
        if self.snubbed or not self.outstanding:
            return None
        return self._last_progress + self.config.snub_timeout
