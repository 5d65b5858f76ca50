"""Sans-IO tracker engines with a fake clock: the BEP 15 UDP client and the BEP 12 scheduler."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from torrentgoat.errors import LocalProtocolError
from torrentgoat.primitives import InfoHash, PeerAddress, PeerId
from torrentgoat.tracker import udp
from torrentgoat.tracker.messages import AnnounceEvent, AnnounceRequest, AnnounceResponse, ScrapeStats
from torrentgoat.tracker.tiers import AnnounceConfig, AnnounceScheduler, SchedulerState, TierList
from torrentgoat.tracker.udp_client import (
    Announced,
    Failed,
    Scraped,
    UDPClientState,
    UDPTrackerClient,
    UDPTrackerConfig,
)

IH = InfoHash(b"\x11" * 20)
REQ = AnnounceRequest(info_hash=IH, peer_id=PeerId(b"-TG0001-abcdefghijkl"), port=6881, left=5)


class FakeTracker:
    """Just enough of a BEP 15 tracker to answer one client's packets."""

    def __init__(self, *, ipv6: bool = False) -> None:
        self.cid = 0xC0FFEE
        self.ipv6 = ipv6
        self.received: list[udp.UDPConnect | udp.UDPAnnounce | udp.UDPScrape] = []

    def answer(self, data: bytes, peers: tuple[PeerAddress, ...] = ()) -> bytes:
        packet = udp.decode_request(data)
        self.received.append(packet)
        match packet:
            case udp.UDPConnect(transaction_id=tid):
                return udp.encode_packet(udp.UDPConnectReply(transaction_id=tid, connection_id=self.cid))
            case udp.UDPAnnounce(transaction_id=tid):
                reply = udp.UDPAnnounceReply(
                    transaction_id=tid, interval=900, leechers=1, seeders=2, peers=peers
                )
                return udp.encode_packet(reply, ipv6=self.ipv6)
            case udp.UDPScrape(transaction_id=tid, info_hashes=hashes):
                stats = tuple(ScrapeStats(complete=i, downloaded=0, incomplete=1) for i in range(len(hashes)))
                return udp.encode_packet(udp.UDPScrapeReply(transaction_id=tid, stats=stats))
        raise AssertionError(packet)


def client(**kwargs: object) -> UDPTrackerClient:
    return UDPTrackerClient(rng=random.Random(1), config=UDPTrackerConfig(timeout_base=1.0), **kwargs)  # type: ignore[arg-type]


def exchange(c: UDPTrackerClient, tracker: FakeTracker, now: float, **kw: tuple[PeerAddress, ...]) -> None:
    for _ in range(4):
        out = c.datagrams_to_send(now)
        if not out:
            return
        for data in out:
            assert c.receive_datagram(tracker.answer(data, **kw), now)


def test_connect_then_announce_and_peers() -> None:
    c, tr = client(url_data=b"/announce?k=1"), FakeTracker()
    c.announce(REQ, 0.0)
    assert c.state is UDPClientState.CONNECTING
    exchange(c, tr, 0.0, peers=(PeerAddress("127.0.0.1", 9),))
    event = c.next_event()
    assert isinstance(event, Announced)
    assert event.response.peers == (PeerAddress("127.0.0.1", 9),)
    assert (event.response.interval, event.response.complete, event.response.incomplete) == (900, 2, 1)
    assert [type(p) for p in tr.received] == [udp.UDPConnect, udp.UDPAnnounce]
    announce = tr.received[1]
    assert isinstance(announce, udp.UDPAnnounce)
    assert announce.connection_id == tr.cid and announce.url_data == b"/announce?k=1"
    assert c.next_event() is None and not c.busy and c.get_timer() is None


def test_ipv6_reply_has_18_byte_peers() -> None:
    c, tr = client(ipv6=True), FakeTracker(ipv6=True)
    c.announce(REQ, 0.0)
    exchange(c, tr, 0.0, peers=(PeerAddress("::1", 7),))
    event = c.next_event()
    assert isinstance(event, Announced) and event.response.peers == (PeerAddress("::1", 7),)


def test_connection_id_reused_for_one_minute_then_renewed() -> None:
    c, tr = client(), FakeTracker()
    c.announce(REQ, 0.0)
    exchange(c, tr, 0.0)
    c.next_event()
    c.announce(REQ, 59.0)
    assert c.state is UDPClientState.REQUESTING  # BEP 15: reused within a minute
    exchange(c, tr, 59.0)
    c.scrape([IH, InfoHash(b"\x22" * 20)], 59.5)
    exchange(c, tr, 59.5)
    scraped = c.next_event(), c.next_event()
    assert isinstance(scraped[1], Scraped)
    assert scraped[1].response.get(InfoHash(b"\x22" * 20)) == ScrapeStats(
        complete=1, downloaded=0, incomplete=1
    )
    c.announce(REQ, 60.0)
    assert c.state is UDPClientState.CONNECTING  # expired exactly one minute after it was received
    kinds = [type(p).__name__ for p in tr.received]
    assert kinds == ["UDPConnect", "UDPAnnounce", "UDPAnnounce", "UDPScrape"]


def test_retransmits_at_base_times_two_to_the_n_then_fails() -> None:
    c = client()
    c.announce(REQ, 0.0)
    sent_at = [0.0] if c.datagrams_to_send(0.0) else []
    now = 0.0
    while (timer := c.get_timer()) is not None:
        assert c.datagrams_to_send(now) == []
        c.handle_timer(timer - 0.001)  # not yet due: nothing happens
        assert c.datagrams_to_send(timer - 0.001) == []
        now = timer
        c.handle_timer(now)
        out = c.datagrams_to_send(now)
        if out:
            assert out[0] == udp.encode_packet(udp.UDPConnect(transaction_id=c.pending_transaction_id or 0))
            sent_at.append(now)
    waits = [b - a for a, b in itertools.pairwise(sent_at)]
    assert waits == [2.0**n for n in range(8)]  # n = 0..7 between the 9 transmissions
    assert now - sent_at[-1] == 2.0**8  # the last wait, n = 8, then give up
    event = c.next_event()
    assert isinstance(event, Failed) and event.timed_out and "9 attempts" in event.reason


def test_connection_id_expiry_during_retransmission_reconnects() -> None:
    c, tr = UDPTrackerClient(rng=random.Random(2), config=UDPTrackerConfig(timeout_base=15.0)), FakeTracker()
    c.announce(REQ, 0.0)
    (connect,) = c.datagrams_to_send(0.0)
    c.receive_datagram(tr.answer(connect), 0.0)
    (first,) = c.datagrams_to_send(0.0)
    assert isinstance(udp.decode_request(first), udp.UDPAnnounce)
    c.handle_timer(15.0)
    (second,) = c.datagrams_to_send(15.0)
    assert second == first  # same packet, same transaction id
    c.handle_timer(45.0)
    (third,) = c.datagrams_to_send(45.0)
    assert second == third
    c.handle_timer(105.0)  # now past the 60 s lifetime: a fresh connect
    (fourth,) = c.datagrams_to_send(105.0)
    assert isinstance(udp.decode_request(fourth), udp.UDPConnect)
    assert c.state is UDPClientState.CONNECTING


def test_wrong_transaction_id_short_packets_and_stale_replies_are_ignored() -> None:
    c, tr = client(), FakeTracker()
    c.announce(REQ, 0.0)
    (connect,) = c.datagrams_to_send(0.0)
    reply = bytearray(tr.answer(connect))
    reply[7] ^= 1
    assert not c.receive_datagram(bytes(reply), 0.0)
    assert not c.receive_datagram(b"\0\0\0", 0.0)
    assert c.ignored_datagrams == 2 and c.state is UDPClientState.CONNECTING and c.next_event() is None
    reply[7] ^= 1
    assert c.receive_datagram(bytes(reply), 0.0)
    assert not c.receive_datagram(bytes(reply), 0.0)  # duplicate of the connect reply: stale now
    assert c.state is UDPClientState.REQUESTING


def test_tracker_error_and_malformed_reply_fail_the_operation() -> None:
    c, tr = client(), FakeTracker()
    c.announce(REQ, 0.0)
    (connect,) = c.datagrams_to_send(0.0)
    c.receive_datagram(tr.answer(connect), 0.0)
    tid = c.pending_transaction_id
    assert tid is not None
    c.receive_datagram(udp.encode_packet(udp.UDPError(transaction_id=tid, message="not whitelisted")), 0.0)
    event = c.next_event()
    assert isinstance(event, Failed) and event.tracker_message == "not whitelisted"
    assert not c.has_connection_id(0.0)  # a fresh id is fetched after an error
    c.announce(REQ, 1.0)
    tid = c.pending_transaction_id
    assert tid is not None
    assert not c.receive_datagram(tid.to_bytes(4, "big"), 1.0)  # too short to carry a tid
    c.receive_datagram(b"\0\0\0\x01" + tid.to_bytes(4, "big") + bytes(12), 1.0)  # announce while connecting
    event = c.next_event()
    assert isinstance(event, Failed) and "unexpected" in event.reason
    c.announce(REQ, 2.0)
    tid = c.pending_transaction_id
    assert tid is not None
    c.receive_datagram(b"\0\0\0\x00" + tid.to_bytes(4, "big") + b"\1", 2.0)  # short connect reply
    event = c.next_event()
    assert isinstance(event, Failed) and "malformed" in event.reason


def test_local_misuse_is_a_local_protocol_error() -> None:
    c = client()
    c.announce(REQ, 0.0)
    with pytest.raises(LocalProtocolError):
        c.announce(REQ, 0.0)
    c.cancel()
    with pytest.raises(LocalProtocolError):
        c.scrape([], 0.0)


# ----------------------------------------------------------------------------- tiers (BEP 12)


def test_tiers_are_shuffled_once_and_deduplicated() -> None:
    tiers = [["a", "b", "c", "d"], ["e", "a"], [], ["f"]]
    first = TierList(tiers, random.Random(5)).tiers
    assert first == TierList(tiers, random.Random(5)).tiers  # the injected rng decides
    assert sorted(first[0]) == ["a", "b", "c", "d"]
    assert first[1:] == (("e",), ("f",))
    orders = {TierList(tiers, random.Random(seed)).tiers[0] for seed in range(20)}
    assert len(orders) > 1


def test_promote_moves_a_responding_tracker_to_the_front_of_its_tier() -> None:
    tl = TierList([["a", "b", "c"], ["d", "e"]], random.Random(0))
    last = tl.tiers[0][-1]
    tl.promote(last)
    assert tl.tiers[0][0] == last
    tl.promote("e")
    assert tl.tiers[1] == ("e", "d")
    with pytest.raises(LocalProtocolError):
        tl.promote("zz")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0


def sched(tiers: list[list[str]], **kw: object) -> AnnounceScheduler:
    tl = TierList(tiers, random.Random(0))
    # Keep tier order predictable for these tests: undo the shuffle.
    tl._tiers = [list(t) for t in tiers if t]
    return AnnounceScheduler(tl, now=0.0, config=AnnounceConfig(retry_base=10.0, retry_max=40.0), **kw)  # type: ignore[arg-type]


def ok(interval: int | None = 100, **kw: object) -> AnnounceResponse:
    return AnnounceResponse(interval=interval, **kw)  # type: ignore[arg-type]


def test_fall_through_tiers_then_promote_and_start_over_from_the_first_tier() -> None:
    s = sched([["a1", "a2"], ["b1"]])
    seen = []
    for url in ["a1", "a2"]:
        attempt = s.next_attempt(0.0)
        assert attempt is not None and attempt.url == url and attempt.event is AnnounceEvent.STARTED
        seen.append(url)
        s.announce_failed(url, "refused", 0.0)
    attempt = s.next_attempt(0.0)
    assert attempt is not None and attempt.url == "b1"
    s.announce_succeeded("b1", ok(100), 0.0)
    assert s.get_timer() == 100.0 and s.next_attempt(99.0) is None
    attempt = s.next_attempt(100.0)
    assert attempt is not None and attempt.url == "a1"  # BEP 12: always start with the first tier again
    assert attempt.event is AnnounceEvent.STARTED  # a1 never saw us start
    s.announce_failed("a1", "x", 100.0)
    s.announce_succeeded("a2", ok(), 100.0) if s.next_attempt(100.0) else None
    assert s.tiers.tiers[0] == ("a2", "a1")  # responding tracker moved to the front
    nxt = s.next_attempt(200.0)
    assert nxt is not None and nxt.url == "a2" and nxt.event is AnnounceEvent.NONE


def test_whole_round_failure_backs_off_exponentially() -> None:
    s = sched([["a"], ["b"]])
    times = []
    now = 0.0
    for _ in range(5):
        for url in ["a", "b"]:
            attempt = s.next_attempt(now)
            assert attempt is not None and attempt.url == url
            s.announce_failed(url, "down", now)
        timer = s.get_timer()
        assert timer is not None
        times.append(timer - now)
        now = timer
    assert times == [10.0, 20.0, 40.0, 40.0, 40.0]
    assert s.last_error == "b: down"


def test_interval_min_interval_floor_and_tracker_id() -> None:
    s = sched([["a"]])
    s.next_attempt(0.0)
    s.announce_succeeded("a", ok(0, tracker_id=b"T1"), 0.0)  # hostile interval 0 -> floor
    assert s.get_timer() == 30.0
    attempt = s.next_attempt(30.0)
    assert attempt is not None and attempt.tracker_id == b"T1"
    s.announce_succeeded("a", ok(100, min_interval=300), 30.0)
    assert s.get_timer() == 330.0  # min interval wins over interval
    s.reannounce(40.0)
    assert s.get_timer() == 330.0  # cannot force before min interval
    s2 = sched([["a"]])
    s2.next_attempt(0.0)
    s2.announce_succeeded("a", ok(None), 0.0)
    assert s2.get_timer() == 1800.0  # default interval
    s2.reannounce(10.0)
    assert s2.get_timer() == 10.0


def test_completed_sent_once_and_immediately_stopped_on_shutdown() -> None:
    s = sched([["a"], ["b"]])
    s.next_attempt(0.0)
    s.announce_succeeded("a", ok(1000), 0.0)
    s.completed(50.0)
    assert s.get_timer() == 50.0
    attempt = s.next_attempt(50.0)
    assert attempt is not None and attempt.event is AnnounceEvent.COMPLETED
    s.announce_succeeded("a", ok(1000), 50.0)
    s.completed(60.0)  # idempotent
    attempt = s.next_attempt(1050.0)
    assert attempt is not None and attempt.event is AnnounceEvent.NONE
    stops = s.stop(1060.0)  # an announce to "a" is in flight, "a" had started
    assert [(a.url, a.event) for a in stops] == [("a", AnnounceEvent.STOPPED)]
    assert s.state is SchedulerState.STOPPED and s.get_timer() is None and s.stop(1061.0) == []
    with pytest.raises(LocalProtocolError):
        s.next_attempt(2000.0)


def test_completed_during_flight_and_never_when_started_complete() -> None:
    s = sched([["a"]])
    s.next_attempt(0.0)
    s.completed(1.0)
    s.announce_succeeded("a", ok(1000), 2.0)
    attempt = s.next_attempt(2.0)
    assert attempt is not None and attempt.event is AnnounceEvent.COMPLETED
    seeding = sched([["a"]], complete=True)
    first = seeding.next_attempt(0.0)
    assert first is not None and first.event is AnnounceEvent.STARTED
    seeding.announce_succeeded("a", ok(10), 0.0)
    again = seeding.next_attempt(30.0)
    assert again is not None and again.event is AnnounceEvent.NONE


def test_retry_in_parks_a_tracker_and_misuse_is_local_error() -> None:
    s = sched([["a", "b"]])
    s.next_attempt(0.0)
    s.announce_failed("a", "later", 0.0, retry_in=2)  # BEP 31: minutes
    attempt = s.next_attempt(0.0)
    assert attempt is not None and attempt.url == "b"
    s.announce_failed("b", "never", 0.0, retry_in=-1)
    timer = s.get_timer()
    assert timer == 120.0
    attempt = s.next_attempt(120.0)
    assert attempt is not None and attempt.url == "a"
    with pytest.raises(LocalProtocolError):
        s.announce_succeeded("b", ok(), 120.0)
    s.announce_failed("a", "never", 120.0, retry_in=-1)
    assert s.next_attempt(1e9) is None and s.get_timer() is None
    assert s.stop(1e9) == []  # nobody ever saw us start


# ----------------------------------------------------------------------------- hostile datagrams


@given(st.lists(st.binary(max_size=64), max_size=8), st.booleans(), st.booleans())
def test_random_datagrams_never_raise_and_only_fail_typed(
    datagrams: list[bytes], match_tid: bool, v6: bool
) -> None:
    c = UDPTrackerClient(rng=random.Random(0), ipv6=v6, config=UDPTrackerConfig(timeout_base=1.0))
    c.announce(REQ, 0.0)
    c.datagrams_to_send(0.0)
    for data in datagrams:
        tid = c.pending_transaction_id
        if match_tid and tid is not None and len(data) >= 8:
            data = data[:4] + tid.to_bytes(4, "big") + data[8:]
        c.receive_datagram(data, 0.0)
    while (event := c.next_event()) is not None:
        assert isinstance(event, Announced | Failed)
    c.handle_timer(1e9)


@given(
    st.lists(st.lists(st.sampled_from("abcdef"), min_size=1, max_size=3), min_size=1, max_size=3),
    st.lists(st.sampled_from(["ok", "fail", "complete", "reannounce"]), max_size=40),
    st.booleans(),
    st.integers(0, 2**32),
)
def test_scheduler_invariants(
    tiers: list[list[str]], script: list[str], start_complete: bool, seed: int
) -> None:
    s = AnnounceScheduler(
        TierList(tiers, random.Random(seed)),
        now=0.0,
        complete=start_complete,
        config=AnnounceConfig(retry_base=10.0, retry_max=40.0, min_interval_floor=5.0),
    )
    now = 0.0
    started: set[str] = set()
    completed: set[str] = set()
    completed_called = start_complete
    for action in script:
        if action == "complete":
            s.completed(now)
            completed_called = True
            continue
        if action == "reannounce":
            s.reannounce(now)
            continue
        timer = s.get_timer()
        assert (timer is not None and timer >= now - 1e-9) or timer is None
        if timer is None:
            break
        now = max(now, timer)
        attempt = s.next_attempt(now)
        assert attempt is not None
        # BEP 3: "started" until a tracker has acknowledged it; "completed" only after completion.
        assert (attempt.event is AnnounceEvent.STARTED) == (attempt.url not in started)
        if attempt.event is AnnounceEvent.COMPLETED:
            assert completed_called and not start_complete and attempt.url not in completed
        if action == "ok":
            s.announce_succeeded(attempt.url, AnnounceResponse(interval=100), now)
            if attempt.event is AnnounceEvent.STARTED:
                started.add(attempt.url)
            if attempt.event is AnnounceEvent.COMPLETED:
                completed.add(attempt.url)
            tier = next(t for t in s.tiers.tiers if attempt.url in t)
            assert tier[0] == attempt.url  # BEP 12: a responding tracker moves to the front
            next_timer = s.get_timer()
            assert next_timer is not None and (next_timer >= now + 5.0 or next_timer == now)
        else:
            s.announce_failed(attempt.url, "x", now)
            next_timer = s.get_timer()
            assert next_timer is not None and next_timer >= now
    stops = s.stop(now)
    assert {a.url for a in stops} <= started | {u for t in tiers for u in t}
    assert all(a.event is AnnounceEvent.STOPPED for a in stops)
    assert started <= {a.url for a in stops}
