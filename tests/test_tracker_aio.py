"""The asyncio tracker driver against the loopback tracker: HTTP and UDP, compact and dict, events."""

from __future__ import annotations

import asyncio
import datetime
import gzip
import ipaddress
import random
import socket
import ssl
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from torrentgoat.aio.tracker import TrackerAnnouncer, UDPTrackerSocket, announce, scrape
from torrentgoat.errors import TrackerError
from torrentgoat.primitives import InfoHash, PeerAddress, PeerId
from torrentgoat.testing.timing import scaled
from torrentgoat.testing.tracker import LoopbackTracker, RecordedAnnounce
from torrentgoat.tracker.messages import AnnounceEvent, AnnounceRequest, TrackerFailure
from torrentgoat.tracker.tiers import AnnounceConfig
from torrentgoat.tracker.udp_client import UDPTrackerClient, UDPTrackerConfig

IH = InfoHash(bytes(range(20)))
ALICE = PeerId(b"-TG0001-aliceaaaaaaa")
BOB = PeerId(b"-TG0001-bobbbbbbbbbb")
FAST_UDP = UDPTrackerConfig(timeout_base=0.05, max_retransmits=3)


def has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def req(peer: PeerId, port: int, **kw: object) -> AnnounceRequest:
    return AnnounceRequest(info_hash=IH, peer_id=peer, port=port, left=100, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("transport", ["http", "udp"])
@pytest.mark.parametrize("compact", [True, False])
async def test_two_peers_find_each_other(transport: str, compact: bool) -> None:
    async with LoopbackTracker(interval=900, min_interval=60) as tracker:
        url = tracker.http_url if transport == "http" else tracker.udp_url
        first = await announce(url, req(ALICE, 1111, event=AnnounceEvent.STARTED, compact=compact), timeout=5)
        assert first.peers == ()
        second = await announce(url, req(BOB, 2222, event=AnnounceEvent.STARTED, compact=compact), timeout=5)
        assert second.peers == (PeerAddress("127.0.0.1", 1111),)
        assert second.interval == 900 and second.incomplete == 2
        if transport == "http":
            assert second.min_interval == 60
            assert second.peer_ids == (() if compact else ((PeerAddress("127.0.0.1", 1111), ALICE.raw),))
        assert [a.transport for a in tracker.announces] == [transport, transport]
        assert tracker.announces[1].request.peer_id == BOB
        if transport == "udp":
            assert tracker.announces[0].path == "/announce"  # BEP 41 URL data


async def test_numwant_failure_reason_warning_and_scrape() -> None:
    async with LoopbackTracker(warning="be nice") as tracker:
        for i in range(5):
            tracker.add_peer(IH, PeerAddress("10.0.0.1", 1000 + i), peer_id=PeerId(bytes([i]) * 20))
        resp = await announce(tracker.http_url, req(ALICE, 1, numwant=3), timeout=5)
        assert len(resp.peers) == 3 and resp.warning == "be nice"
        async with aiohttp.ClientSession() as session:
            stats = await scrape(tracker.http_url, [IH], session=session, timeout=5)
        assert stats.get(IH) is not None and stats.get(IH).complete == 5  # type: ignore[union-attr]
        udp_stats = await scrape(tracker.udp_url, [IH], timeout=5)
        assert udp_stats.get(IH) == stats.get(IH)
        tracker.failure_reason = "torrent not registered"
        for url in (tracker.http_url, tracker.udp_url):
            with pytest.raises(TrackerFailure) as info:
                await announce(url, req(ALICE, 1), timeout=5)
            assert info.value.reason == "torrent not registered"


async def test_udp_retransmits_when_packets_are_lost_and_reuses_connection_id() -> None:
    async with LoopbackTracker() as tracker, UDPTrackerSocket(bind_v4="127.0.0.1") as sock:
        tracker.udp_drop = 2  # the first connect and its first retransmission vanish
        client = UDPTrackerClient(rng=random.Random(3), url_data=b"/announce", config=FAST_UDP)
        resp = await announce(tracker.udp_url, req(ALICE, 1), udp=sock, udp_client=client, timeout=5)
        assert resp.peers == ()
        assert tracker.udp_datagrams == 4  # 3 connects + 1 announce
        await announce(tracker.udp_url, req(BOB, 2), udp=sock, udp_client=client, timeout=5)
        assert tracker.udp_datagrams == 5  # connection id reused: just the announce


async def test_errors_are_tracker_errors() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        with pytest.raises(TrackerError, match="no reply"):
            await announce(f"udp://127.0.0.1:{port}", req(ALICE, 1), udp_config=FAST_UDP, timeout=5)
        with pytest.raises(TrackerError, match="did not answer"):
            await announce(f"udp://127.0.0.1:{port}", req(ALICE, 1), timeout=0.2)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with pytest.raises(TrackerError, match="failed"):
        await announce(f"http://127.0.0.1:{port}/announce", req(ALICE, 1), timeout=5)
    with pytest.raises(TrackerError, match="unsupported"):
        await announce("wss://127.0.0.1/announce", req(ALICE, 1))
    async with LoopbackTracker() as tracker:
        with pytest.raises(TrackerError, match="status 404"):
            await announce(tracker.http_url.replace("/announce", "/nothing"), req(ALICE, 1), timeout=5)
        with pytest.raises(TrackerError, match="does not support scrape"):
            await scrape(tracker.http_url.replace("/announce", "/x"), [IH], timeout=5)


async def test_hostile_http_tracker_body_bounded() -> None:
    from aiohttp import web

    async def huge(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for _ in range(40):
            await response.write(b"x" * 65536)
        return response

    bomb = gzip.compress(b"d5:peers" + b"0" * (4 * 1024 * 1024), compresslevel=6)

    async def gzip_bomb(request: web.Request) -> web.Response:
        return web.Response(body=bomb, headers={"Content-Encoding": "gzip"})

    app = web.Application()
    app.router.add_get("/announce", huge)
    app.router.add_get("/bomb/announce", gzip_bomb)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        with pytest.raises(TrackerError, match="larger"):
            await announce(f"http://127.0.0.1:{port}/announce", req(ALICE, 1), timeout=5)
        assert len(bomb) < 100_000
        with pytest.raises(TrackerError, match="larger"):
            await announce(f"http://127.0.0.1:{port}/bomb/announce", req(ALICE, 1), timeout=5)
    finally:
        await runner.cleanup()


async def test_ipv6_http_and_udp() -> None:
    if not has_ipv6():
        pytest.fail("this machine has no ::1; the IPv6 tracker test needs it")
    async with LoopbackTracker(host="::1") as tracker:
        for url in (tracker.http_url, tracker.udp_url):
            await announce(url, req(ALICE, 1111), timeout=5)
            resp = await announce(url, req(BOB, 2222), timeout=5)
            assert resp.peers == (PeerAddress("::1", 1111),)
            await announce(url, req(BOB, 2222, event=AnnounceEvent.STOPPED), timeout=5)


# ----------------------------------------------------------------------------- the announcer


def fast_config(**kw: float) -> AnnounceConfig:
    defaults = dict(
        min_interval_floor=0.05, retry_base=0.05, retry_max=0.2, stop_timeout=2.0, request_timeout=2.0
    )
    defaults.update(kw)
    return AnnounceConfig(**defaults)  # type: ignore[arg-type]


def is_event(peer: PeerId, event: AnnounceEvent) -> object:
    return lambda a: a.request.peer_id == peer and a.request.event is event


@pytest.mark.parametrize("transport", ["http", "udp"])
async def test_announcer_events_started_completed_stopped(transport: str) -> None:
    left = [100]
    async with LoopbackTracker(interval=3600) as tracker:
        url = tracker.http_url if transport == "http" else tracker.udp_url
        tracker.add_peer(IH, PeerAddress("127.0.0.9", 9999), peer_id=BOB)
        announcer = TrackerAnnouncer(
            [[url]],
            info_hash=IH,
            peer_id=ALICE,
            port=4321,
            stats=lambda: (0, 100 - left[0], left[0]),
            config=fast_config(),
            udp_config=FAST_UDP,
            rng=random.Random(1),
        )
        async with announcer:
            started: RecordedAnnounce = await tracker.wait_for(is_event(ALICE, AnnounceEvent.STARTED))  # type: ignore[arg-type]
            assert started.request.left == 100 and started.request.port == 4321
            peer = await asyncio.wait_for(announcer.peers.get(), scaled(5))
            assert peer == PeerAddress("127.0.0.9", 9999)
            left[0] = 0
            announcer.completed()
            done: RecordedAnnounce = await tracker.wait_for(is_event(ALICE, AnnounceEvent.COMPLETED))  # type: ignore[arg-type]
            assert done.request.left == 0 and done.request.downloaded == 100
            announcer.completed()  # once only
        await tracker.wait_for(is_event(ALICE, AnnounceEvent.STOPPED))  # type: ignore[arg-type]
        assert tracker.events() == [AnnounceEvent.STARTED, AnnounceEvent.COMPLETED, AnnounceEvent.STOPPED]
        assert [p.peer_id for p in tracker.swarm(IH)] == [BOB]  # stopped removed us


async def test_announcer_falls_through_tiers_and_callback_gets_peers() -> None:
    got: list[tuple[str, tuple[PeerAddress, ...]]] = []
    with socket.socket() as dead:
        dead.bind(("127.0.0.1", 0))
        dead_url = f"http://127.0.0.1:{dead.getsockname()[1]}/announce"
    async with LoopbackTracker(failure_reason="nope") as bad, LoopbackTracker(interval=3600) as good:
        good.add_peer(IH, PeerAddress("127.0.0.7", 7777), peer_id=BOB)
        announcer = TrackerAnnouncer(
            [[dead_url, bad.http_url, "ftp://x/y"], [good.udp_url]],
            info_hash=IH,
            peer_id=ALICE,
            port=4321,
            stats=lambda: (0, 0, 0),
            complete=True,
            on_peers=lambda url, peers: got.append((url, peers)),
            config=fast_config(),
            udp_config=FAST_UDP,
        )
        assert list(announcer.rejected) == ["ftp://x/y"]
        async with announcer:
            await good.wait_for(is_event(ALICE, AnnounceEvent.STARTED))  # type: ignore[arg-type]
            await until(lambda: bool(got))
        assert got == [(good.udp_url, (PeerAddress("127.0.0.7", 7777),))]
        assert bad.events() == [AnnounceEvent.STARTED]
        assert announcer.trackers[1] == (good.udp_url,)
        assert good.events() == [AnnounceEvent.STARTED, AnnounceEvent.STOPPED]  # never "completed"
        assert announcer.announce_count == 1


async def test_announcer_reannounces_after_interval_and_backs_off() -> None:
    async with LoopbackTracker(interval=0) as tracker:  # interval clamped to the (fast) floor
        announcer = TrackerAnnouncer(
            [[tracker.http_url]],
            info_hash=IH,
            peer_id=ALICE,
            port=1,
            stats=lambda: (0, 0, 1),
            config=fast_config(min_interval_floor=0.05),
        )
        async with announcer:
            await until(lambda: len(tracker.announces) >= 3)  # re-announced after the interval
            tracker.failure_reason = "overloaded"
            start = len(tracker.announces)
            await until(lambda: len(tracker.announces) - start >= 3)
            assert announcer.last_error is not None and "overloaded" in announcer.last_error
            seen = len(tracker.announces)
            await asyncio.sleep(0.15)
            # Back-off has reached 0.2 s: at most one more attempt (a slow machine makes fewer).
            assert len(tracker.announces) - seen <= 1
        events = tracker.events()
        assert events[0] is AnnounceEvent.STARTED and events[1] is AnnounceEvent.NONE


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(scaled(timeout)):
        while not condition():
            await asyncio.sleep(0.005)


def _self_signed(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_file, key_file)
    client = ssl.create_default_context(cafile=str(cert_file))
    return server, client


async def test_https_tracker(tmp_path: Path) -> None:
    server_ctx, client_ctx = _self_signed(tmp_path)
    async with LoopbackTracker(ssl_context=server_ctx) as tracker:
        assert tracker.http_url.startswith("https://")
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_ctx)) as session:
            await announce(tracker.http_url, req(ALICE, 1111), session=session, timeout=5)
            reply = await announce(tracker.http_url, req(BOB, 2222), session=session, timeout=5)
            assert reply.peers == (PeerAddress("127.0.0.1", 1111),)
        with pytest.raises(TrackerError, match="failed"):  # default trust store: certificate refused
            await announce(tracker.http_url, req(BOB, 2222), timeout=5)
