"""Local Service Discovery (BEP 14): the announce codec, the sans-IO engine, the driver on loopback.

The LAN tests (network namespaces, libtorrent) are in ``test_lsd_netns.py``.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import require_libtorrent
from tests.interop_helpers import (
    MiB,
    ProcessGroup,
    assert_same_files,
    loopback_config,
    make_shard_torrent,
    processes,
    wait_until,
)
from torrentgoat.aio.lsd import LSDService, lsd_interface
from torrentgoat.creation import create_torrent
from torrentgoat.errors import RemoteProtocolError
from torrentgoat.lsd import (
    LSD_GROUP4,
    LSD_GROUP6,
    MAX_ANNOUNCE_SIZE,
    LSDConfig,
    LSDEngine,
    PeerFound,
    TokenBucket,
    encode_announce,
    encode_announces,
    parse_announce,
)
from torrentgoat.primitives import InfoHash, PeerAddress
from torrentgoat.session import Session
from torrentgoat.torrent.sources import LSDSource

__all__ = ["processes"]  # the fixture, imported for pytest

IH = InfoHash(bytes(range(1, 21)))
IH2 = InfoHash(bytes(range(21, 41)))
NEIGHBOUR = ("192.168.1.20", 6771)

info_hashes = st.binary(min_size=20, max_size=20).filter(any).map(InfoHash)


# --------------------------------------------------------------------------- codec


def test_announce_has_the_bep14_shape() -> None:
    data = encode_announce(LSD_GROUP4, 6881, [IH], cookie="5a3f")
    assert data == (
        b"BT-SEARCH * HTTP/1.1\r\nHost: 239.192.152.143:6771\r\nPort: 6881\r\n"
        b"Infohash: " + IH.hex.encode() + b"\r\ncookie: 5a3f\r\n\r\n\r\n"
    )
    assert b"Host: [ff15::efc0:988f]:6771\r\n" in encode_announce(LSD_GROUP6, 1, [IH])


@given(
    port=st.integers(1, 65535),
    hashes=st.lists(info_hashes, min_size=1, max_size=30, unique=True),
    cookie=st.none() | st.text("0123456789abcdef", min_size=1, max_size=8),
    group=st.sampled_from([LSD_GROUP4, LSD_GROUP6]),
)
def test_announces_round_trip_within_1400_bytes(
    port: int, hashes: list[InfoHash], cookie: str | None, group: object
) -> None:
    assert group is LSD_GROUP4 or group is LSD_GROUP6
    datagrams = encode_announces(group, port, hashes, cookie)
    seen: list[InfoHash] = []
    for data in datagrams:
        assert len(data) <= MAX_ANNOUNCE_SIZE
        announce = parse_announce(data)
        assert announce.port == port and announce.cookie == cookie and announce.host == group.host_header
        seen += announce.info_hashes
    assert seen == hashes


def test_libtorrent_style_and_lenient_forms_parse() -> None:
    text = (
        "bt-search * HTTP/1.1\nHOST: 239.192.152.143:6771\nport: 51413\n"
        f"INFOHASH: {IH.hex.upper()}\ninfohash: not-hex\ninfohash: {'0' * 40}\nCookie: 1b\n\n"
    )
    announce = parse_announce(text.encode())
    assert announce.port == 51413 and announce.info_hashes == (IH,) and announce.cookie == "1b"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"GET / HTTP/1.1\r\nPort: 1\r\n\r\n",
        b"BT-SEARCH * HTTP/1.1\r\nInfohash: " + IH.hex.encode() + b"\r\n\r\n",  # no port
        b"BT-SEARCH * HTTP/1.1\r\nPort: 0\r\n\r\n",
        b"BT-SEARCH * HTTP/1.1\r\nPort: 65536\r\n\r\n",
        b"BT-SEARCH * HTTP/1.1\r\nPort: -5\r\n\r\n",
        b"BT-SEARCH * HTTP/1.1\r\nPort: 1\r\nPort: 2\r\n\r\n",
        b"BT-SEARCH * HTTP/1.1\r\nPort: 1\r\nno colon here\r\n\r\n",
        b"BT-SEARCH * HTTP/1.1\r\nPort: \xff\r\n\r\n",
        b"BT-SEARCH * HTTP/1.1\r\nPort: 1\r\n" + b"X: " + b"a" * 5000 + b"\r\n\r\n",  # huge
    ],
)
def test_malformed_announces_are_refused(data: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_announce(data)


def test_too_many_info_hashes_are_refused() -> None:
    lines = "".join(f"Infohash: {i:040x}\r\n" for i in range(1, 70))
    with pytest.raises(RemoteProtocolError, match="more than 64"):
        parse_announce(f"BT-SEARCH * HTTP/1.1\r\nPort: 1\r\n{lines}\r\n".encode())


@given(st.binary(max_size=2000))
def test_garbage_never_escapes_as_anything_but_a_protocol_error(data: bytes) -> None:
    try:
        parse_announce(data)
    except RemoteProtocolError:
        pass


# --------------------------------------------------------------------------- engine


def engine(now: float = 0.0, *, port: int = 6881, seed: int = 1, **config: object) -> LSDEngine:
    return LSDEngine(
        port=port, rng=random.Random(seed), now=now, config=LSDConfig(**config), groups=(LSD_GROUP4,)
    )


def announce_from(port: int, *hashes: InfoHash, cookie: str | None = "beef") -> bytes:
    return encode_announce(LSD_GROUP4, port, list(hashes), cookie)


def events(e: LSDEngine) -> list[PeerFound]:
    out = []
    while (event := e.next_event()) is not None:
        out.append(event)
    return out


def test_schedule_now_then_after_2_and_4_seconds_then_every_interval() -> None:
    e = engine()
    assert e.get_timer() is None
    e.add_torrent(IH, 10.0)
    sent_at = []
    now = 10.0
    while len(sent_at) < 5:
        when = e.get_timer()
        assert when is not None
        now = when
        e.handle_timer(now)
        if e.datagrams_to_send(now):
            sent_at.append(now - 10.0)
    assert sent_at == [0.0, 2.0, 6.0, 306.0, 606.0]


def test_torrents_due_together_share_a_datagram() -> None:
    e = engine()
    hashes = [InfoHash(bytes([i]) * 20) for i in range(1, 41)]
    for ih in hashes:
        e.add_torrent(ih, 0.0)
    out = e.datagrams_to_send(0.0)
    assert len(out) == 2  # 40 info-hashes do not fit in 1400 bytes
    announced = [ih for data, _ in out for ih in parse_announce(data).info_hashes]
    assert sorted(announced) == sorted(hashes)


def test_overall_send_limit_holds_back_and_catches_up() -> None:
    e = engine(max_send_rate=1.0, send_burst=1, max_datagram=300)
    for i in range(1, 6):
        e.add_torrent(InfoHash(bytes([i]) * 20), 0.0)
    first = e.datagrams_to_send(0.0)
    assert len(first) == 1
    when = e.get_timer()
    assert when is not None and 0.9 < when <= 1.0
    assert e.datagrams_to_send(when)  # the rest follows as the limit allows
    announced = set()
    now = 0.0
    while now < 10 and len(announced) < 5:
        timer = e.get_timer()
        assert timer is not None
        now = timer
        for data, _ in e.datagrams_to_send(now):
            announced.update(parse_announce(data).info_hashes)
    assert len(announced) == 5


def test_token_bucket_asking_when_changes_nothing() -> None:
    bucket = TokenBucket(1.0, 2, 0.0)
    assert bucket.take(0.0) and bucket.take(0.0) and not bucket.take(0.0)
    assert bucket.ready_at(0.0) == 1.0 and bucket.ready_at(5.0) == 5.0  # asking twice: no credit
    assert bucket.take(1.0) and not bucket.take(1.0)


def test_found_peers_are_reported_for_our_torrents_only() -> None:
    e = engine()
    e.add_torrent(IH, 0.0)
    e.receive_datagram(announce_from(51413, IH2, IH), NEIGHBOUR, 1.0)
    assert events(e) == [PeerFound(info_hash=IH, address=PeerAddress("192.168.1.20", 51413))]
    e.receive_datagram(announce_from(51413, IH2), NEIGHBOUR, 2.0)
    assert events(e) == [] and e.stats.unknown == 1


def test_our_own_announces_are_ignored_by_cookie() -> None:
    e = engine()
    e.add_torrent(IH, 0.0)
    for data, _ in e.datagrams_to_send(0.0):
        e.receive_datagram(data, ("10.0.0.1", 6771), 0.1)
    # libtorrent reads cookies as hex numbers: leading zeros are the same cookie
    e.receive_datagram(announce_from(1, IH, cookie="000" + e.cookie), ("10.0.0.1", 6771), 0.2)
    assert events(e) == [] and e.stats.own == 2
    other = engine(seed=2)
    assert other.cookie != e.cookie


def test_same_peer_is_reported_again_only_after_a_while() -> None:
    e = engine(repeat_after=60.0)
    e.add_torrent(IH, 0.0)
    for t in (1.0, 2.0, 30.0):
        e.receive_datagram(announce_from(7000, IH), NEIGHBOUR, t)
    assert len(events(e)) == 1
    e.receive_datagram(announce_from(7000, IH), NEIGHBOUR, 62.0)
    assert len(events(e)) == 1


@pytest.mark.parametrize(
    "source", ["0.0.0.0", "239.192.152.143", "255.255.255.255", "::", "ff02::1", "not-an-ip"]
)
def test_announces_from_a_non_unicast_source_are_ignored(source: str) -> None:
    e = engine()
    e.add_torrent(IH, 0.0)
    e.receive_datagram(announce_from(7000, IH), (source, 6771), 1.0)
    assert events(e) == [] and e.stats.bad_source == 1


def test_a_flood_from_one_source_is_rate_limited() -> None:
    e = engine(accept_rate_per_source=1.0, accept_burst_per_source=5)
    e.add_torrent(IH, 0.0)
    for port in range(1000, 1100):
        e.receive_datagram(announce_from(port, IH), NEIGHBOUR, 1.0)
    assert len(events(e)) == 5 and e.stats.rate_limited == 95
    e.receive_datagram(announce_from(2000, IH), ("192.168.1.21", 6771), 1.0)  # another host still heard
    assert len(events(e)) == 1


def test_a_flood_of_forged_sources_is_capped_overall_and_per_torrent() -> None:
    e = engine(accept_rate=1000.0, accept_burst=1000, found_rate_per_torrent=1.0, found_burst_per_torrent=20)
    e.add_torrent(IH, 0.0)
    for i in range(500):
        e.receive_datagram(announce_from(6881, IH), (f"10.1.{i // 250}.{i % 250 + 1}", 6771), 1.0)
    assert len(events(e)) == 20  # the torrent's candidate pool is not flooded
    flood = engine(accept_rate=10.0, accept_burst=10)
    flood.add_torrent(IH, 0.0)
    for i in range(200):
        flood.receive_datagram(b"junk", (f"10.2.0.{i + 1}", 6771), 1.0)
    assert flood.stats.malformed == 10 and flood.stats.rate_limited == 190


def test_source_table_is_bounded() -> None:
    e = engine(max_sources=16)
    e.add_torrent(IH, 0.0)
    for i in range(300):
        e.receive_datagram(b"junk", (f"10.3.{i // 200}.{i % 200 + 1}", 6771), 1.0)
    assert len(e._sources) == 16


def test_malformed_datagrams_are_counted_not_raised() -> None:
    e = engine()
    e.add_torrent(IH, 0.0)
    e.receive_datagram(b"BT-SEARCH * HTTP/1.1\r\nPort: 99999\r\n\r\n", NEIGHBOUR, 1.0)
    e.receive_datagram(bytes(range(256)) * 40, NEIGHBOUR, 1.0)
    assert e.stats.malformed == 2 and e.stats.last_error


def test_removed_torrents_are_neither_announced_nor_reported() -> None:
    e = engine()
    e.add_torrent(IH, 0.0)
    e.remove_torrent(IH)
    assert e.datagrams_to_send(0.0) == [] and e.get_timer() is None
    e.receive_datagram(announce_from(7000, IH), NEIGHBOUR, 1.0)
    assert events(e) == []


def test_a_new_port_is_announced_soon_but_not_faster_than_the_per_torrent_limit() -> None:
    e = engine(min_reannounce=1.0)
    e.add_torrent(IH, 0.0)
    e.datagrams_to_send(0.0)
    e.set_port(7777, 0.2)
    assert e.get_timer() == pytest.approx(1.0)
    ((data, _),) = e.datagrams_to_send(1.0)
    assert parse_announce(data).port == 7777


# --------------------------------------------------------------------------- driver on loopback


def test_interface_follows_the_listen_addresses() -> None:
    local = lsd_interface("127.0.0.1", None)
    assert local["address4"] == "127.0.0.1" and local["ipv6"] is False and local["ifindex6"] > 0
    anywhere = lsd_interface("0.0.0.0", "::")
    assert anywhere == {"address4": "0.0.0.0", "ifindex4": 0, "ifindex6": 0, "ipv6": True}
    with pytest.raises(OSError, match="no network interface"):
        lsd_interface("0.0.0.0", None, "no-such-if0")


async def test_two_services_on_loopback_find_each_other() -> None:
    """Multicast on ``lo`` (IP_MULTICAST_IF 127.0.0.1, loopback on): two services sharing port 6771
    (SO_REUSEPORT) hear each other and ignore themselves."""
    ih = InfoHash(random.randbytes(20))  # unique: other processes on this host may run LSD on lo too
    where = lsd_interface("127.0.0.1", None)
    a = LSDService(port=41001, rng=random.Random(), **where)
    b = LSDService(port=41002, rng=random.Random(), **where)
    found: dict[str, PeerAddress] = {}
    try:
        await a.start()
        await b.start()
        assert a.groups == (LSD_GROUP4,), a.errors
        a.add(ih, lambda address: found.setdefault("a", address))
        b.add(ih, lambda address: found.setdefault("b", address))
        await wait_until(lambda: len(found) == 2, timeout=10, what="both services to hear the other")
        assert found == {"a": PeerAddress("127.0.0.1", 41002), "b": PeerAddress("127.0.0.1", 41001)}
        assert a.engine is not None and a.engine.stats.own >= 1
        assert "1 peers found" in a.status() or "peers found" in a.status()
    finally:
        a.close()
        b.close()


async def test_sessions_on_loopback_complete_a_download_found_by_lsd(tmp_path: Path) -> None:
    """Two sessions, no tracker / DHT / peer address: LSD on ``lo`` is how the leech finds the seed."""
    shared = make_shard_torrent(
        tmp_path, 2 * MiB + 17, piece_length=128 * 1024, seed=int.from_bytes(random.randbytes(2))
    )
    seed_config = replace(loopback_config(seed=True), enable_lsd=True)
    leech_config = replace(loopback_config(), enable_lsd=True)
    async with Session(seed_config) as seeder, Session(leech_config) as leecher:
        assert seeder.lsd is not None and leecher.lsd is not None
        await seeder.add(shared.metainfo, shared.root)
        torrent = await leecher.add(shared.metainfo, tmp_path / "down")
        assert any(isinstance(s, LSDSource) for s in torrent.sources)
        await asyncio.wait_for(torrent.wait_complete(), 60)
        assert any("LSD on 239.192.152.143:6771" in line for line in torrent.source_report())
    assert (tmp_path / "down" / shared.name).read_bytes() == (shared.root / shared.name).read_bytes()


async def test_private_torrents_are_never_announced(tmp_path: Path) -> None:
    shared = make_shard_torrent(tmp_path, 300 * 1024, piece_length=64 * 1024, seed=3)
    private = create_torrent(shared.root / shared.name, piece_length=64 * 1024, private=True)
    async with Session(replace(loopback_config(seed=True), enable_lsd=True)) as session:
        torrent = await session.add(private, shared.root)
        assert not any(isinstance(s, LSDSource) for s in torrent.sources)
        public = await session.add(shared.metainfo, shared.root)
        assert any(isinstance(s, LSDSource) for s in public.sources)
        assert session.lsd is not None and session.lsd.engine is not None
        await wait_until(
            lambda: (
                session.lsd is not None
                and session.lsd.engine is not None
                and bool(session.lsd.engine.info_hashes)
            ),
            timeout=10,
            what="the public torrent to be registered",
        )
        assert session.lsd.engine.info_hashes == {shared.metainfo.info_hash}


async def test_lsd_off_means_no_service(tmp_path: Path) -> None:
    async with Session(loopback_config()) as session:
        assert session.lsd is None


async def test_a_flood_of_junk_on_the_group_does_not_stop_discovery() -> None:
    """Hostile datagrams on the multicast group (garbage, oversized, forged announces for other
    torrents) are dropped and counted; the real neighbour is still found."""
    import socket

    ih = InfoHash(random.randbytes(20))
    where = lsd_interface("127.0.0.1", None)
    a = LSDService(port=41011, rng=random.Random(), **where)
    b = LSDService(port=41012, rng=random.Random(), **where)
    found: list[PeerAddress] = []
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
    try:
        await a.start()
        await b.start()
        a.add(ih, found.append)
        group = (LSD_GROUP4.address, LSD_GROUP4.port)
        junk = [random.randbytes(random.randint(0, 1400)) for _ in range(200)]
        junk += [b"BT-SEARCH * HTTP/1.1\r\nPort: 1\r\n" + b"X: y\r\n" * 3000]  # 18 KB
        junk += [encode_announce(LSD_GROUP4, 9, [InfoHash(random.randbytes(20))]) for _ in range(100)]
        for data in junk:
            sender.sendto(data, group)
        b.add(ih, lambda address: None)
        await wait_until(
            lambda: PeerAddress("127.0.0.1", 41012) in found, timeout=15, what="the real neighbour"
        )
        assert a.engine is not None
        stats = a.engine.stats
        assert stats.malformed + stats.rate_limited + stats.unknown >= 100, stats
        assert all(address.port == 41012 for address in found)
    finally:
        sender.close()
        a.close()
        b.close()


@pytest.mark.interop
async def test_libtorrent_on_loopback_finds_a_session_by_lsd(tmp_path: Path, processes: ProcessGroup) -> None:
    """Same host, same port 6771 (SO_REUSEADDR on both sides), multicast on ``lo``: libtorrent hears
    our announce and dials us; no tracker, DHT or peer address."""
    require_libtorrent()
    shared = make_shard_torrent(
        tmp_path, 3 * MiB + 7, piece_length=256 * 1024, seed=random.randrange(1 << 16)
    )
    dest = tmp_path / "lt"
    dest.mkdir()
    async with Session(replace(loopback_config(seed=True), enable_lsd=True)) as session:
        seeding = await session.add(shared.metainfo, shared.root)
        await asyncio.wait_for(seeding.wait_complete(), 20)
        leech = await processes.libtorrent(
            "leech", directory=dest, torrent=shared.torrent_path, extra=["--lsd"]
        )
        await leech.wait_event("finished", timeout=60)
        assert seeding.uploaded >= shared.size
    assert_same_files(shared.metainfo, shared.root, dest)
