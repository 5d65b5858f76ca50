"""Request queue sizing, rate estimate and snub detection."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from torrentgoat.errors import ConfigError
from torrentgoat.picker import RateMeter, RequestQueueConfig, RequestTracker, queue_depth
from torrentgoat.primitives import BLOCK_SIZE


def test_queue_depth_scales_with_rate_and_clamps() -> None:
    assert queue_depth(0) == 4
    assert queue_depth(BLOCK_SIZE) == 4  # 3 blocks in 3 s, below the minimum
    assert queue_depth(10 * BLOCK_SIZE) == 30
    assert queue_depth(10 * BLOCK_SIZE, target_latency=1.0) == 10
    assert queue_depth(1e12) == 500
    assert queue_depth(float("inf")) == 500
    assert queue_depth(float("nan")) == 4


@given(st.floats(0, 1e10), st.integers(1, 50), st.integers(50, 1000))
def test_queue_depth_is_within_bounds_and_monotonic(rate: float, lo: int, hi: int) -> None:
    depth = queue_depth(rate, min_depth=lo, max_depth=hi)
    assert lo <= depth <= hi
    assert queue_depth(rate * 2, min_depth=lo, max_depth=hi) >= depth


def test_rate_meter_converges_and_decays() -> None:
    meter = RateMeter(window=2.0)
    for step in range(1, 201):
        meter.add(1000, step * 0.1)  # 10 kB/s
    assert meter.rate(20.0) == pytest.approx(10_000, rel=0.05)
    assert meter.rate(40.0) < 10
    assert meter.total == 200_000
    with pytest.raises(ConfigError):
        RateMeter(window=0)


def test_tracker_room_follows_rate() -> None:
    tracker = RequestTracker(RequestQueueConfig(initial_depth=8), now=0.0)
    assert tracker.room(0.0) == 8
    tracker.requested(8, 0.0)
    assert tracker.room(0.0) == 0
    for step in range(1, 101):  # 100 blocks/s
        tracker.received(BLOCK_SIZE, step * 0.01)
        tracker.requested(1, step * 0.01)
    assert tracker.outstanding == 8
    assert tracker.desired(1.0) > 100  # ~ rate * 3 s / block


def test_snub_after_silence_with_requests_outstanding() -> None:
    tracker = RequestTracker(RequestQueueConfig(snub_timeout=10.0), now=0.0)
    assert not tracker.check(100.0)  # nothing outstanding: never snubbed
    assert tracker.get_timer() is None
    tracker.requested(4, 100.0)
    assert tracker.get_timer() == 110.0
    assert not tracker.check(109.9)
    assert tracker.check(110.0)
    assert tracker.snubbed and not tracker.check(200.0)  # fires once
    assert tracker.desired(200.0) == 1
    tracker.received(BLOCK_SIZE, 201.0)
    assert not tracker.snubbed
    tracker.released(10)
    assert tracker.outstanding == 0


def test_block_resets_the_snub_clock() -> None:
    tracker = RequestTracker(RequestQueueConfig(snub_timeout=10.0), now=0.0)
    tracker.requested(2, 0.0)
    tracker.received(BLOCK_SIZE, 8.0)
    assert not tracker.check(12.0)
    assert tracker.check(18.0)


def test_config_validation() -> None:
    with pytest.raises(ConfigError):
        RequestQueueConfig(min_depth=0)
    with pytest.raises(ConfigError):
        RequestQueueConfig(min_depth=10, max_depth=5)
    with pytest.raises(ConfigError):
        RequestQueueConfig(initial_depth=1000)
    with pytest.raises(ConfigError):
        RequestQueueConfig(snub_timeout=0)
