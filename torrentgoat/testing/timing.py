"""Deadlines for tests that wait on a condition, stretched on a loaded machine.

A test waits for an event (a torrent completes, a reference client prints a line) with a deadline
that only matters when something is wrong: the wait returns as soon as the event happens.  On a
machine whose cores are busy with other work, everything takes longer, so a deadline that is
generous on an idle machine can expire before a correct run is done.  :func:`scaled` multiplies a
deadline by :func:`load_factor`: the 1-minute load average per core (at least 1, at most
:data:`MAX_FACTOR`), read when the wait starts.  An idle machine waits exactly as long as before.

``TG_TEST_TIMEOUT_SCALE=F`` in the environment fixes the factor instead (a slow CI runner, or a
debugging session that wants a hang to show up sooner with ``F`` < 1).
"""

from __future__ import annotations

import os

__all__ = ["MAX_FACTOR", "load_factor", "scaled"]

MAX_FACTOR = 8.0
"""Deadlines grow at most this much: a hang is still reported, only later."""


def load_factor() -> float:
    """How much longer than on an idle machine a deadline should be right now (1.0 when idle)."""
    fixed = os.environ.get("TG_TEST_TIMEOUT_SCALE")
    if fixed:
        try:
            return max(0.01, float(fixed))
        except ValueError:
            pass
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # no load average on this platform
        return 1.0
    return min(MAX_FACTOR, max(1.0, load / (os.cpu_count() or 1)))


def scaled(seconds: float) -> float:
    """``seconds`` (a deadline that suits an idle machine) stretched by :func:`load_factor`."""
    return seconds * load_factor()
