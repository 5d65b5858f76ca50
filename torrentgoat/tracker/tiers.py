"""Tracker tiers and the announce schedule (BEP 12, BEP 3 events), level L2, sans-IO.

:class:`TierList` holds the ``announce-list`` tiers: "the tiers [are] processed sequentially ...
each tier [is] shuffled" once, trackers are tried in order, and "if a tracker responds it is moved
to the front of the tier" (BEP 12).  :class:`AnnounceScheduler` decides *when* to announce *where*
and *with which event*: ``started`` first (BEP 3), ``completed`` once when the download finishes
(never if we started complete), ``stopped`` on shutdown; ``interval`` and ``min interval`` honoured;
a round where every tracker failed backs off exponentially.

The scheduler never performs I/O: the driver asks :meth:`AnnounceScheduler.next_attempt` at the
time given by :meth:`AnnounceScheduler.get_timer`, runs the announce, and reports the outcome.
"""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from torrentgoat.errors import LocalProtocolError, TrackerError
from torrentgoat.tracker.messages import AnnounceEvent, AnnounceResponse

__all__ = [
    "AnnounceAttempt",
    "AnnounceConfig",
    "AnnounceScheduler",
    "SchedulerState",
    "TierList",
    "retry_in_of",
]

_MAX_TRACKERS = 256


@dataclass(frozen=True, slots=True, kw_only=True)
class AnnounceConfig:
    """Timing of announces over time."""

    default_interval: float = 1800.0
    """Seconds between announces when the tracker sends no ``interval``."""
    min_interval_floor: float = 30.0
    """Never re-announce sooner than this, whatever the tracker says (a hostile ``interval`` of 0)."""
    max_interval: float = 6 * 3600.0
    """Never wait longer than this between announces."""
    retry_base: float = 15.0
    """Back-off after a round where every tracker failed: ``retry_base * 2**(failures - 1)``."""
    retry_max: float = 1800.0
    """Cap of that back-off."""
    request_timeout: float = 30.0
    """Seconds one HTTP announce may take (used by the driver)."""
    stop_timeout: float = 5.0
    """Seconds the best-effort ``stopped`` announces may take together (used by the driver)."""
    numwant: int = 50
    """Peers asked for per announce (``numwant``); 0 for a seeder that wants none."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AnnounceAttempt:
    """An announce the driver should make now: to ``url`` with ``event`` (and ``tracker_id``)."""

    url: str
    event: AnnounceEvent
    tracker_id: bytes | None = None


class TierList:
    """BEP 12 tiers: each shuffled once with ``rng``; a responding tracker moves to the front."""

    def __init__(self, tiers: Sequence[Sequence[str]], rng: random.Random) -> None:
        seen: set[str] = set()
        self._tiers: list[list[str]] = []
        for tier in tiers:
            urls = [u for u in dict.fromkeys(tier) if isinstance(u, str) and u and u not in seen]
            urls = urls[: max(0, _MAX_TRACKERS - len(seen))]
            seen.update(urls)
            if urls:
                rng.shuffle(urls)
                self._tiers.append(urls)

    @property
    def tiers(self) -> tuple[tuple[str, ...], ...]:
        return tuple(tuple(t) for t in self._tiers)

    def __iter__(self) -> Iterator[str]:
        for tier in self._tiers:
            yield from tier

    def __len__(self) -> int:
        return sum(len(t) for t in self._tiers)

    def __contains__(self, url: object) -> bool:
        return any(url in t for t in self._tiers)

    def promote(self, url: str) -> None:
        """Move ``url`` to the front of its tier (BEP 12: a tracker that responded)."""
        for tier in self._tiers:
            if url in tier:
                tier.remove(url)
                tier.insert(0, url)
                return
        raise LocalProtocolError(f"tracker {url!r} is not in the tier list")


class SchedulerState(enum.Enum):
    WAITING = "waiting"
    ANNOUNCING = "announcing"
    STOPPED = "stopped"


@dataclass(slots=True)
class _Tracker:
    started: bool = False
    started_incomplete: bool = False
    completed: bool = False
    tracker_id: bytes | None = None
    skip_until: float = -math.inf


class AnnounceScheduler:
    """When, where and with which event to announce one torrent (BEP 12 + BEP 3 events)."""

    _ALLOWED: dict[str, frozenset[SchedulerState]] = {
        "next_attempt": frozenset({SchedulerState.WAITING}),
        "result": frozenset({SchedulerState.ANNOUNCING}),
        "completed": frozenset({SchedulerState.WAITING, SchedulerState.ANNOUNCING}),
        "reannounce": frozenset({SchedulerState.WAITING, SchedulerState.ANNOUNCING}),
        "stop": frozenset(SchedulerState),
    }

    def __init__(
        self,
        tiers: TierList,
        *,
        now: float,
        complete: bool = False,
        config: AnnounceConfig | None = None,
    ) -> None:
        self.tiers = tiers
        self.config = config or AnnounceConfig()
        self.state = SchedulerState.WAITING
        self._complete = complete
        self._trackers = {url: _Tracker() for url in tiers}
        self._next_at = now
        self._round_pos = 0
        self._failures = 0
        self._inflight: AnnounceAttempt | None = None
        self._inflight_complete = False
        self._last_success_at: float | None = None
        self._min_interval = 0.0
        self.last_error: str | None = None
        """Text of the most recent failure, for status displays."""

    # ------------------------------------------------------------------ queries

    @property
    def complete(self) -> bool:
        return self._complete

    def get_timer(self) -> float | None:
        """When :meth:`next_attempt` will have something, or ``None`` (announcing or stopped)."""
        if self.state is not SchedulerState.WAITING or not self._trackers:
            return None
        timer = max(self._next_at, self._earliest_usable())
        return None if math.isinf(timer) else timer

    def _earliest_usable(self) -> float:
        return min(t.skip_until for t in self._trackers.values())

    def _check(self, op: str) -> None:
        if self.state not in self._ALLOWED[op]:
            raise LocalProtocolError(f"announce scheduler cannot {op} while {self.state.value}")

    def _event_for(self, tracker: _Tracker) -> AnnounceEvent:
        if not tracker.started:
            return AnnounceEvent.STARTED
        if self._complete and tracker.started_incomplete and not tracker.completed:
            return AnnounceEvent.COMPLETED
        return AnnounceEvent.NONE

    # ------------------------------------------------------------------ driver inputs

    def next_attempt(self, now: float) -> AnnounceAttempt | None:
        """The announce to make now, or ``None`` when it is not yet time."""
        self._check("next_attempt")
        timer = self.get_timer()
        if timer is None or now < timer:
            return None
        order = list(self.tiers)
        for pos in range(self._round_pos, len(order)):
            url = order[pos]
            tracker = self._trackers[url]
            if tracker.skip_until > now:
                continue
            self._round_pos = pos
            self._inflight = AnnounceAttempt(
                url=url, event=self._event_for(tracker), tracker_id=tracker.tracker_id
            )
            self._inflight_complete = self._complete
            self.state = SchedulerState.ANNOUNCING
            return self._inflight
        self._round_failed(now)  # every remaining tracker is parked by "retry in"
        return None

    def _take(self, url: str) -> tuple[AnnounceAttempt, _Tracker]:
        self._check("result")
        attempt = self._inflight
        if attempt is None or attempt.url != url:
            raise LocalProtocolError(f"no announce to {url!r} is in flight")
        self._inflight = None
        self.state = SchedulerState.WAITING
        return attempt, self._trackers[url]

    def announce_succeeded(self, url: str, response: AnnounceResponse, now: float) -> None:
        """The tracker answered: promote it (BEP 12) and schedule the next announce."""
        attempt, tracker = self._take(url)
        if attempt.event is AnnounceEvent.STARTED:
            tracker.started = True
            tracker.started_incomplete = not self._inflight_complete
        elif attempt.event is AnnounceEvent.COMPLETED:
            tracker.completed = True
        if response.tracker_id is not None:
            tracker.tracker_id = response.tracker_id
        self.tiers.promote(url)
        self._round_pos = 0
        self._failures = 0
        self.last_error = None
        cfg = self.config
        interval = cfg.default_interval if response.interval is None else float(response.interval)
        self._min_interval = float(response.min_interval or 0)
        wait = min(max(interval, self._min_interval, cfg.min_interval_floor), cfg.max_interval)
        self._last_success_at = now
        self._next_at = now + wait
        if self._event_for(tracker) is AnnounceEvent.COMPLETED:
            self._next_at = now  # the download finished while this announce was in flight

    def announce_failed(self, url: str, reason: str, now: float, *, retry_in: int | None = None) -> None:
        """The announce failed: fall through to the next tracker, tier by tier (BEP 12).

        ``retry_in`` is BEP 31's minutes from a failure reply (``-1``: never retry this tracker).
        """
        self._take(url)
        self.last_error = f"{url}: {reason}"
        tracker = self._trackers[url]
        if retry_in is not None:
            tracker.skip_until = math.inf if retry_in < 0 else now + 60.0 * retry_in
        if self._round_pos + 1 < len(self.tiers):
            self._round_pos += 1
            self._next_at = now
        else:
            self._round_failed(now)

    def _round_failed(self, now: float) -> None:
        self._failures += 1
        self._round_pos = 0
        cfg = self.config
        self._next_at = now + min(cfg.retry_base * 2 ** min(self._failures - 1, 30), cfg.retry_max)

    def completed(self, now: float) -> None:
        """The download finished: send ``completed`` now to trackers that saw us start incomplete."""
        self._check("completed")
        if self._complete:
            return
        self._complete = True
        if self.state is SchedulerState.WAITING and any(
            t.started and t.started_incomplete for t in self._trackers.values()
        ):
            self._next_at = now

    @property
    def completed_pending(self) -> bool:
        """The download finished but some tracker that saw us start incomplete has not heard
        ``completed`` yet (BEP 3): a prompt shutdown should let that announce finish first."""
        return self._complete and any(
            t.started and t.started_incomplete and not t.completed for t in self._trackers.values()
        )

    def reannounce(self, now: float) -> None:
        """Announce again as soon as ``min interval`` allows."""
        self._check("reannounce")
        earliest = now if self._last_success_at is None else self._last_success_at + self._min_interval
        self._next_at = min(self._next_at, max(now, earliest))

    def stop(self, now: float) -> list[AnnounceAttempt]:
        """Shut down: the best-effort ``stopped`` announces to send (BEP 3), then nothing more."""
        self._check("stop")
        if self.state is SchedulerState.STOPPED:
            return []
        inflight = self._inflight
        self._inflight = None
        self.state = SchedulerState.STOPPED
        attempts: list[AnnounceAttempt] = []
        for url in self.tiers:
            tracker = self._trackers[url]
            if tracker.started or (inflight is not None and inflight.url == url):
                attempts.append(
                    AnnounceAttempt(url=url, event=AnnounceEvent.STOPPED, tracker_id=tracker.tracker_id)
                )
        return attempts


def retry_in_of(error: BaseException) -> int | None:
    """BEP 31 ``retry in`` carried by a :class:`TrackerError`, if any."""
    value = getattr(error, "retry_in", None) if isinstance(error, TrackerError) else None
    return value if isinstance(value, int) else None
