"""LEDBAT (BEP 29) on a simulated bottleneck: uTP fills an idle link while keeping the queue near
the 100 ms target, and gives the link up to a greedy flow that keeps the queue full (as TCP does)."""

from __future__ import annotations

import random

from torrentgoat.testing.utp import UTPNetwork
from torrentgoat.utp import UTPConfig
from torrentgoat.utp.congestion import DelayHistory, Ledbat, RttEstimator

A = ("10.0.0.1", 6881)
B = ("10.0.0.2", 6881)
RATE = 1_000_000  # bytes per second at the bottleneck in front of B
QUEUE = 4_000_000  # a 4-second buffer: a loss-based sender would fill it


def bottleneck(config: UTPConfig | None = None) -> tuple[UTPNetwork, int, int]:
    net = UTPNetwork(seed=1, latency=0.02, rate=RATE, queue_bytes=QUEUE)
    a = net.add(A)
    net.add(B, config)
    key = a.connect(B, net.now)
    assert net.run_until(lambda: net.established(A, key) and bool(net.accepted(B)))
    a.send(key, random.Random(1).randbytes(60_000_000))
    return net, key, net.accepted(B)[0]


def delivered_during(
    net: UTPNetwork, key: int, seconds: float, step: float = 0.005, cross: float = 0.0
) -> int:
    """Bytes B receives in ``seconds``; with ``cross``, a greedy flow keeps the queue at that delay."""
    before = len(net.received(B, key))
    end = net.now + seconds
    while net.now < end:
        if cross:
            while net.queue_delay(B) < cross and net.occupy(B, 1500):
                pass
        net.run_for(step)
    return len(net.received(B, key)) - before


def test_ledbat_fills_the_link_and_keeps_the_queue_near_the_target() -> None:
    net, ka, kb = bottleneck()
    delivered_during(net, kb, 10.0)  # slow start and settling
    net.max_queue_delay = 0.0
    got = delivered_during(net, kb, 20.0)
    assert got >= 0.85 * RATE * 20  # the link is used
    assert net.max_queue_delay <= 0.2  # ...without filling its 4 s buffer (target 100 ms)
    assert net.queue_drops == 0
    conn = net.manager(A).connection(ka)
    assert 0.05e6 <= conn.cc.delay <= 0.15e6


def test_ledbat_target_governs_the_queue() -> None:
    net, _, kb = bottleneck(None)
    net2 = UTPNetwork(seed=1, latency=0.02, rate=RATE, queue_bytes=QUEUE)
    a2 = net2.add(A, UTPConfig(target_delay=0.5))
    net2.add(B)
    key2 = a2.connect(B, net2.now)
    assert net2.run_until(lambda: net2.established(A, key2) and bool(net2.accepted(B)))
    a2.send(key2, random.Random(2).randbytes(40_000_000))
    kb2 = net2.accepted(B)[0]
    for network, key in ((net, kb), (net2, kb2)):
        delivered_during(network, key, 10.0)
        network.max_queue_delay = 0.0
        delivered_during(network, key, 10.0)
    assert net.max_queue_delay < 0.2 < 0.3 < net2.max_queue_delay < 1.5


def test_ledbat_yields_to_a_greedy_flow_and_comes_back() -> None:
    net, ka, kb = bottleneck()
    delivered_during(net, kb, 10.0)
    alone = delivered_during(net, kb, 5.0)
    # a TCP-like flow keeps 300 ms of queue at the bottleneck: uTP's delay is 3x its target
    squeezed = delivered_during(net, kb, 20.0, cross=0.3)
    after = delivered_during(net, kb, 5.0, cross=0.3)
    assert alone >= 0.85 * RATE * 5
    assert after <= 0.05 * RATE * 5  # it let the other flow have the link
    assert squeezed <= 0.2 * RATE * 20
    conn = net.manager(A).connection(ka)
    assert conn.cc.window <= 3 * conn.packet_size
    # the other flow stops: uTP takes the link again
    delivered_during(net, kb, 10.0)
    back = delivered_during(net, kb, 5.0)
    assert back >= 0.8 * RATE * 5


def test_delay_history_base_and_wrap() -> None:
    history = DelayHistory()
    assert history.add(1000, 0.0) == 0
    assert history.add(1500, 1.0) == 500
    assert history.add(900, 2.0) == 0 and history.base == 900
    # the clock offset can put samples near the u32 wrap
    history = DelayHistory()
    history.add(0xFFFFFF00, 0.0)
    assert history.add(0x100, 1.0) == 0x200
    # a minimum older than the history (2 minutes) is forgotten
    history = DelayHistory()
    history.add(100, 0.0)
    for minute in range(1, 4):
        history.add(5000, minute * 60.0)
    assert history.base == 5000


def test_rtt_estimator_and_backoff() -> None:
    rtt = RttEstimator(initial_rto=1.0, min_rto=0.5)
    assert rtt.rto == 1.0
    for _ in range(20):
        rtt.sample(0.1)
    assert 0.5 <= rtt.rto < 0.6  # the 500 ms floor
    for _ in range(20):
        rtt.sample(0.4)
    assert 0.4 < rtt.rto < 1.0
    rtt.backoff = 3
    assert rtt.rto > 3.2
    rtt.backoff = 40
    assert rtt.rto == 60.0


def test_window_reactions() -> None:
    cc = Ledbat(mss=1000, target=100_000, gain=3000)
    start = cc.cwnd
    cc.on_ack(1000, 0, 2000, saturated=True)
    assert cc.slow_start and cc.cwnd == start + 1500  # the linear gain beats the acked bytes here
    cc.on_ack(1000, 150_000, 2000, saturated=True)  # over target: slow start ends, window shrinks
    assert not cc.slow_start and cc.cwnd < start + 1500
    big = cc.cwnd = 50_000.0
    cc.on_ack(5000, 0, 50_000, saturated=False)  # an application that does not fill the window
    assert cc.cwnd == big
    cc.on_ack(5000, 300_000, 50_000, saturated=False)  # ...still yields when over target
    assert cc.cwnd < big
    assert cc.on_loss(10.0) and not cc.on_loss(10.05)  # at most one cut per 100 ms
    cc.on_timeout(idle=False)
    assert cc.cwnd == 1000 and cc.slow_start
