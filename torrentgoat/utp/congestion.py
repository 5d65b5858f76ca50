"""uTP congestion control: LEDBAT (BEP 29 "Congestion control", RFC 6817) and the RTT/RTO estimate.

LEDBAT aims at a fixed queuing delay (``target``, 100 ms) on the path.  Every packet carries the
sender's timestamp; the receiver echoes ``its clock - our timestamp`` in ``timestamp_difference``.
That value is the one-way delay plus an unknown clock offset; its minimum over the last two minutes
(the *base delay*) cancels the offset, so ``sample - base`` is the queuing delay we cause.  The
window grows while that is below the target and shrinks above it, in proportion to how far off it
is -- so uTP gives way to TCP (which fills queues until it sees loss) on a shared bottleneck.

Like libtorrent, the window also starts with slow start (doubling per RTT until loss, the target
delay, or ``ssthresh``), halves on loss at most once per RTT, and collapses to one packet on a
timeout.  Two departures from BEP 29's controller, both measured (``benchmarks/utp_tcp.py``,
``tests/test_utp_ledbat.py``): above the target the window shrinks multiplicatively (LEDBAT++),
not by BEP 29's linear few KB per RTT, which let a window overshot in slow start sit on a shared
queue for a minute and starve a TCP flow; and the linear gain per RTT is at least one packet, so a
connection using 64 KiB datagrams (loopback, see :mod:`.connection`) grows as fast as one using 1.4 KiB.

Times are seconds (floats); delays microseconds (ints), as on the wire.
"""

from __future__ import annotations

__all__ = ["DelayHistory", "Ledbat", "RttEstimator"]

_WRAP = 1 << 32
_HALF = 1 << 31


class DelayHistory:
    """Base delay = the minimum ``timestamp_difference`` of the last ``minutes`` minutes (BEP 29).

    Samples are u32 and may wrap: comparisons are modulo 2**32 (a sample "below" the base by less
    than 2**31 replaces it)."""

    def __init__(self, minutes: int = 2) -> None:
        self._buckets: list[int] = []
        self._minutes = minutes
        self._bucket_start = 0.0
        self.base: int | None = None

    def add(self, sample: int, now: float) -> int:
        """Record a sample; returns the queuing delay ``sample - base`` (>= 0, microseconds)."""
        if self.base is None:
            self._buckets = [sample]
            self._bucket_start = now
            self.base = sample
            return 0
        if now - self._bucket_start >= 60.0:
            self._bucket_start = now
            self._buckets.append(sample)
            if len(self._buckets) > self._minutes:
                del self._buckets[0]
            self.base = self._recompute()
        elif _below(sample, self._buckets[-1]):
            self._buckets[-1] = sample
        if _below(sample, self.base):
            self.base = sample
        return (sample - self.base) % _WRAP

    def _recompute(self) -> int:
        best = self._buckets[0]
        for value in self._buckets[1:]:
            if _below(value, best):
                best = value
        return best


def _below(a: int, b: int) -> bool:
    """``a < b`` for u32 values that may wrap."""
    return a != b and (b - a) % _WRAP < _HALF


class RttEstimator:
    """Smoothed RTT and its variance (BEP 29 / RFC 6298); ``rto`` with exponential back-off."""

    def __init__(self, *, initial_rto: float = 1.0, min_rto: float = 0.5, max_rto: float = 60.0) -> None:
        self.rtt: float | None = None
        self.rtt_var = 0.0
        self.min_rtt: float | None = None
        self.initial_rto = initial_rto
        self.min_rto = min_rto
        self.max_rto = max_rto
        self.backoff = 0
        """Consecutive timeouts: each doubles the timeout."""

    def sample(self, rtt: float) -> None:
        if rtt < 0:
            return
        if self.rtt is None:
            self.rtt = rtt
            self.rtt_var = rtt / 2
        else:
            self.rtt_var += (abs(self.rtt - rtt) - self.rtt_var) / 4
            self.rtt += (rtt - self.rtt) / 8
        if self.min_rtt is None or rtt < self.min_rtt:
            self.min_rtt = rtt

    @property
    def rto(self) -> float:
        """``max(rtt + 4 * rtt_var, min_rto)``, doubled per consecutive timeout, capped."""
        base = self.initial_rto if self.rtt is None else max(self.rtt + 4 * self.rtt_var, self.min_rto)
        return float(min(base * (1 << min(self.backoff, 16)), self.max_rto))


class Ledbat:
    """The congestion window in bytes, driven by acks, delay samples, loss and timeouts."""

    def __init__(
        self,
        *,
        mss: int,
        target: int = 100_000,
        gain: int = 3000,
        loss_factor: float = 0.5,
        min_loss_interval: float = 0.1,
    ) -> None:
        self.mss = mss
        """Current packet size (grows with MTU discovery); the window never drops below one."""
        self.target = target
        """Target queuing delay, microseconds (BEP 29: 100 ms)."""
        self.gain = gain
        """Most bytes per RTT the window grows by in congestion avoidance (at least one ``mss``)."""
        self.loss_factor = loss_factor
        self.min_loss_interval = min_loss_interval
        self.cwnd = float(2 * mss)
        self.slow_start = True
        self.ssthresh: float | None = None
        self._next_cut = 0.0
        self.delay = 0
        """Last queuing delay used (microseconds)."""

    @property
    def window(self) -> int:
        return int(self.cwnd)

    def set_mss(self, mss: int) -> None:
        self.mss = mss
        if self.cwnd < mss:
            self.cwnd = float(mss)

    def on_ack(self, acked: int, delay: int, in_flight: int, saturated: bool) -> None:
        """``acked`` payload bytes newly acknowledged while ``in_flight`` were outstanding;
        ``delay`` is our queuing delay (microseconds); ``saturated``: the sender was limited by
        the window (an application that sends little must not inflate it).

        Below the target the window grows linearly (BEP 29: ``gain * off_target`` per RTT, at
        least one packet); above it, it shrinks *multiplicatively*, by ``delay / target - 1`` of
        itself per RTT, at most half (LEDBAT++, draft-irtf-iccrg-ledbat-plus-plus): BEP 29's
        linear decrease of a few KB per RTT takes a minute to give back a window that TCP needs
        now.  Slow start ends at 3/4 of the target (LEDBAT++) or ``ssthresh``."""
        if acked <= 0 or in_flight <= 0:
            return
        self.delay = delay
        target = self.target
        share = min(1.0, acked / in_flight)
        if delay > target:
            if self.slow_start:
                self.ssthresh = self.cwnd / 2
                self.slow_start = False
            cut = min(0.5, delay / target - 1.0)
            self.cwnd = max(self.cwnd - self.cwnd * cut * share, float(self.mss))
            return
        if self.slow_start and delay > target * 3 // 4:
            self.ssthresh = self.cwnd
            self.slow_start = False
        if not saturated:
            return  # an application that does not fill the window must not inflate it
        linear = max(self.gain, self.mss) * (target - delay) / target * share
        if self.slow_start:
            if self.ssthresh is not None and self.cwnd + acked > self.ssthresh:
                self.slow_start = False
                self.cwnd += linear
            else:
                self.cwnd += max(float(acked), linear)
        else:
            self.cwnd += linear

    def on_loss(self, now: float) -> bool:
        """A packet was lost: halve the window (at most once per ``min_loss_interval``; the
        caller also limits it to once per window of packets).  Returns True if it was cut."""
        if now < self._next_cut:
            return False
        self._next_cut = now + self.min_loss_interval
        self.cwnd = max(self.cwnd * self.loss_factor, float(self.mss))
        if self.slow_start:
            self.ssthresh = self.cwnd
            self.slow_start = False
        return True

    def on_timeout(self, idle: bool) -> None:
        """The retransmission timer fired: one packet and slow start again (ssthresh kept), or
        a gentle decay when nothing was in flight (an idle direction, not congestion)."""
        if idle:
            self.cwnd = max(self.cwnd * 2 / 3, float(self.mss))
            return
        self.cwnd = float(self.mss)
        self.slow_start = True
