"""Interop: peers that find each other only through a tracker or the DHT, and mixed swarms.

* our session announces to the in-repo :class:`LoopbackTracker` (HTTP and UDP, BEP 3 / BEP 15) and
  libtorrent finds our seeder there (no ``--peer``: the tracker in the torrent is all it knows);
* libtorrent seeds, announces, and our session finds it through the same tracker; a magnet with
  only ``tr=`` does the same and takes the info dict from libtorrent (BEP 9);
* the same two directions through Debian's real ``opentracker``;
* BEP 3 events: ``started``, ``completed`` (also when the download stops right away), ``stopped``;
* a swarm of three torrentgoat sessions and one libtorrent leech on a padded multi-file model
  folder, one initial seeder, everyone completes with identical data; and a mixed swarm where a
  slow libtorrent seeder feeds two torrentgoat sessions and aria2, which trade among themselves;
* trackerless (BEP 5): a torrentgoat DHT node as the bootstrap node, libtorrent announcing to it
  and our session finding it from a bare ``xt`` magnet, and the other way round.

A libtorrent *seeder* runs with ``num_want = 0`` (lt_peer does that): given its own 127.0.0.1
address back by a tracker it would connect to itself and ban 127.0.0.1 (INTEROP-NOTES).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path

import pytest

from tests.conftest import require_binary, require_libtorrent
from tests.interop_helpers import (
    MiB,
    ProcessGroup,
    assert_same_files,
    complete,
    loopback_config,
    make_model_torrent,
    make_shard_torrent,
    processes,
    wait_scrape,
    wait_until,
)
from torrentgoat.magnet import Magnet
from torrentgoat.session import Session, SessionConfig
from torrentgoat.testing.timing import scaled
from torrentgoat.testing.tracker import LoopbackTracker, OpenTracker
from torrentgoat.torrent import TorrentConfig
from torrentgoat.tracker.messages import AnnounceEvent

pytestmark = pytest.mark.interop

__all__ = ["processes"]  # the fixture, imported for pytest


@pytest.mark.parametrize("transport", ["http", "udp"])
async def test_libtorrent_finds_torrentgoat_seeder_through_tracker(
    tmp_path: Path, processes: ProcessGroup, transport: str
) -> None:
    require_libtorrent()
    async with LoopbackTracker(interval=60, min_interval=1) as tracker:
        url = tracker.http_url if transport == "http" else tracker.udp_url
        shared = make_shard_torrent(tmp_path, 12 * MiB + 5, trackers=[url], seed=11)
        dest = tmp_path / "lt-down"
        dest.mkdir()
        async with Session(loopback_config()) as session:
            ours = session.peer_id
            torrent = await session.add(shared.torrent_path, shared.root, seed=True)
            await asyncio.wait_for(torrent.wait_complete(), timeout=scaled(10))
            started = await tracker.wait_for(lambda a: a.request.peer_id == ours, timeout=10)
            assert started.transport == transport
            assert started.request.port == session.listen_port
            assert started.request.info_hash == shared.metainfo.info_hash
            await tracker.wait_for(lambda a: a.request.peer_id == ours and a.request.left == 0, timeout=10)

            leech = await processes.libtorrent("leech", directory=dest, torrent=shared.torrent_path)
            theirs = await tracker.wait_for(lambda a: a.request.peer_id != ours, timeout=10)
            assert theirs.transport == transport
            assert theirs.response is not None
            assert any(p.port == session.listen_port for p in theirs.response.peers)
            finished = await leech.wait_event("finished", timeout=25)
            assert finished["bytes"] == shared.size
            assert torrent.uploaded >= shared.size
        # closing the session told the tracker we left
        await tracker.wait_for(
            lambda a: a.request.peer_id == ours and a.request.event is AnnounceEvent.STOPPED, timeout=5
        )
    assert_same_files(shared.metainfo, shared.root, dest)


@pytest.mark.parametrize("transport", ["http", "udp"])
async def test_torrentgoat_finds_libtorrent_seeder_through_tracker(
    tmp_path: Path, processes: ProcessGroup, transport: str
) -> None:
    require_libtorrent()
    async with LoopbackTracker(interval=60, min_interval=1) as tracker:
        url = tracker.http_url if transport == "http" else tracker.udp_url
        shared = make_shard_torrent(tmp_path, 12 * MiB + 77, trackers=[url], seed=12)
        seeder = await processes.libtorrent("seed", directory=shared.root, torrent=shared.torrent_path)
        lt_announce = await tracker.wait_for(lambda a: a.request.port == seeder.port, timeout=10)
        assert lt_announce.request.left == 0
        dest = tmp_path / "down"
        # seeding after completion: a torrent that stops at once may lose its in-flight "completed"
        async with Session(loopback_config(seed=True)) as session:
            ours = session.peer_id
            torrent = await session.add(shared.torrent_path, dest)  # no peers: only the tracker
            first = await tracker.wait_for(lambda a: a.request.peer_id == ours, timeout=10)
            assert first.request.event is AnnounceEvent.STARTED
            assert first.response is not None and any(p.port == seeder.port for p in first.response.peers)
            await complete(torrent, timeout=25, peers=[seeder])
            done = await tracker.wait_for(
                lambda a: a.request.peer_id == ours and a.request.event is AnnounceEvent.COMPLETED,
                timeout=10,
            )
            assert done.request.left == 0
            assert done.request.downloaded >= shared.size
    assert_same_files(shared.metainfo, shared.root, dest)


async def test_opentracker_both_directions(tmp_path: Path, processes: ProcessGroup) -> None:
    """Debian's opentracker (whitelist mode, UDP): libtorrent seeds, we find it and leech; then we
    seed and a fresh libtorrent leech finds us there."""
    require_libtorrent()
    binary = require_binary("opentracker")
    shared = make_shard_torrent(tmp_path, 8 * MiB + 1, seed=13)
    ih = shared.metainfo.info_hash
    tracker = OpenTracker(binary, [ih])
    # the info-hash does not depend on the announce URL: whitelist first, then name the tracker
    shared.metainfo = replace(shared.metainfo, announce_tiers=((tracker.udp_url,),))
    shared.torrent_path.write_bytes(shared.metainfo.to_bytes())
    async with tracker:
        seeder = await processes.libtorrent("seed", directory=shared.root, torrent=shared.torrent_path)
        await wait_scrape(tracker.udp_url, ih, complete=1)  # libtorrent announced
        dest = tmp_path / "down"
        async with Session(loopback_config(seed=True)) as session:
            torrent = await session.add(shared.torrent_path, dest)  # no peers: only the tracker
            await asyncio.wait_for(torrent.wait_complete(), timeout=scaled(25))
            assert_same_files(shared.metainfo, shared.root, dest)
            await wait_scrape(tracker.udp_url, ih, complete=2)  # we announced "completed"
            await seeder.stop()  # its "stopped" may or may not reach the tracker: a dead address stays
            lt_dest = tmp_path / "lt-down"
            lt_dest.mkdir()
            leech = await processes.libtorrent("leech", directory=lt_dest, torrent=shared.torrent_path)
            await leech.wait_event("finished", timeout=25)
            assert torrent.uploaded >= shared.size
    assert_same_files(shared.metainfo, shared.root, lt_dest)


async def test_swarm_of_torrentgoat_sessions_and_libtorrent(tmp_path: Path, processes: ProcessGroup) -> None:
    """One torrentgoat seeder (upload-limited so that leeches must trade), two torrentgoat leeches and
    a libtorrent leech on a padded multi-file model folder; peers meet through the tracker and PEX."""
    require_libtorrent()
    async with LoopbackTracker(interval=2, min_interval=1) as tracker:
        shared = make_model_torrent(
            tmp_path,
            shards=3,
            shard_size=5 * MiB + 12345,
            piece_length=256 * 1024,
            trackers=[tracker.http_url],
            seed=14,
        )
        assert any(f.pad for f in shared.metainfo.info.files), "the torrent should have pad files"
        seed_config = SessionConfig(
            listen_host="127.0.0.1",
            listen_ipv6=None,
            listen_port=0,
            enable_dht=False,
            dht_bootstrap=(),
            upload_limit=6 * MiB,
            torrent=TorrentConfig(seed=True),
        )
        leech_config = loopback_config(seed=True)  # leeches keep serving each other after completion
        dests = [tmp_path / f"tg-{i}" for i in range(2)]
        lt_dest = tmp_path / "lt"
        lt_dest.mkdir()
        started = time.monotonic()
        async with (
            Session(seed_config) as seeder,
            Session(leech_config) as one,
            Session(leech_config) as two,
        ):
            origin = await seeder.add(shared.torrent_path, shared.root)
            await asyncio.wait_for(origin.wait_complete(), timeout=scaled(10))
            await tracker.wait_for(lambda a: a.request.peer_id == seeder.peer_id, timeout=10)
            leeches = [await s.add(shared.torrent_path, d) for s, d in zip((one, two), dests, strict=True)]
            lt = await processes.libtorrent(
                "leech", directory=lt_dest, torrent=shared.torrent_path, extra=["--exit-after-finish", "60"]
            )
            try:
                await asyncio.wait_for(
                    asyncio.gather(*(t.wait_complete() for t in leeches)), timeout=scaled(25)
                )
                await lt.wait_event("finished", timeout=max(1.0, 25 - (time.monotonic() - started)))
            except (TimeoutError, AssertionError) as exc:
                state = [
                    (t.state, t.have.count if t.have is not None else None, t.num_peers, t.downloaded)
                    for t in leeches
                ]
                raise AssertionError(f"swarm incomplete: {state} {exc}\n{lt.tail()}") from None
            elapsed = time.monotonic() - started
            traded = sum(t.uploaded for t in leeches)
            assert all(t.hash_failures == 0 for t in leeches)
            # libtorrent took some of its data from the torrentgoat leeches, or they from each other
            assert traded > 0, "the leeches never uploaded to each other"
        print(
            f"swarm of 4: {shared.size / MiB:.1f} MiB to 3 leeches in {elapsed:.2f} s; "
            f"seeder uploaded {origin.uploaded / MiB:.1f} MiB, leeches uploaded {traded / MiB:.1f} MiB"
        )
    for dest in (*dests, lt_dest):
        assert_same_files(shared.metainfo, shared.root, dest)


async def test_mixed_swarm_libtorrent_seed_aria2_and_torrentgoat(
    tmp_path: Path, processes: ProcessGroup
) -> None:
    """libtorrent seeds slowly (4 MiB/s); two torrentgoat sessions and aria2 leech through the
    tracker, so most bytes must travel between the leeches -- three implementations trading."""
    require_libtorrent()
    aria2 = require_binary("aria2c")
    async with LoopbackTracker(interval=2, min_interval=1) as tracker:
        shared = make_shard_torrent(tmp_path, 8 * MiB + 999, trackers=[tracker.http_url], seed=15)
        seeder = await processes.libtorrent(
            "seed", directory=shared.root, torrent=shared.torrent_path, extra=["--upload-limit", str(4 * MiB)]
        )
        await tracker.wait_for(lambda a: a.request.port == seeder.port, timeout=10)
        dests = [tmp_path / f"tg-{i}" for i in range(2)]
        a2_dest = tmp_path / "aria2"
        a2_dest.mkdir()
        started = time.monotonic()
        async with Session(loopback_config(seed=True)) as one, Session(loopback_config(seed=True)) as two:
            leeches = [await s.add(shared.torrent_path, d) for s, d in zip((one, two), dests, strict=True)]
            a2 = await processes.aria2("leech", torrent=shared.torrent_path, directory=a2_dest, binary=aria2)
            await asyncio.gather(*(complete(t, timeout=25, peers=[seeder, a2]) for t in leeches))
            code = await a2.wait_exit(timeout=max(1.0, 27 - (time.monotonic() - started)))
            assert code == 0, f"aria2c exited {code}\n{a2.tail()}"
            elapsed = time.monotonic() - started
            traded = sum(t.uploaded for t in leeches)
            assert traded > 0, "the torrentgoat leeches never uploaded"
            assert all(t.hash_failures == 0 for t in leeches)
        print(
            f"mixed swarm: {shared.size / MiB:.1f} MiB to 3 leeches in {elapsed:.2f} s, tg uploaded {traded / MiB:.1f} MiB"
        )
    for dest in (*dests, a2_dest):
        assert_same_files(shared.metainfo, shared.root, dest)


async def test_magnet_with_tracker_finds_libtorrent_and_fetches_metadata(
    tmp_path: Path, processes: ProcessGroup
) -> None:
    """A magnet with only ``xt`` and ``tr``: the tracker names libtorrent, BEP 9 gives the info dict."""
    require_libtorrent()
    async with LoopbackTracker(interval=60, min_interval=1) as tracker:
        shared = make_model_torrent(
            tmp_path, shards=2, shard_size=3 * MiB + 9, trackers=[tracker.udp_url], seed=16
        )
        seeder = await processes.libtorrent("seed", directory=shared.root, torrent=shared.torrent_path)
        await tracker.wait_for(lambda a: a.request.port == seeder.port, timeout=10)
        magnet = Magnet(info_hash=shared.metainfo.info_hash, trackers=(tracker.udp_url,)).to_uri()
        dest = tmp_path / "down"
        async with Session(loopback_config()) as session:
            torrent = await session.add(magnet, dest)
            info = await asyncio.wait_for(torrent.wait_metadata(), timeout=scaled(15))
            assert info.raw == shared.metainfo.info.raw
            await complete(torrent, timeout=20, peers=[seeder])
    assert_same_files(shared.metainfo, shared.root, dest)


@pytest.mark.parametrize("transport", ["http", "udp"])
async def test_download_that_stops_at_completion_still_reports_completed(
    tmp_path: Path, processes: ProcessGroup, transport: str
) -> None:
    """BEP 3: ``completed`` is sent when the download completes.  A download that does not seed
    stops right after completing; the tracker must still hear ``completed`` (before ``stopped``),
    or it never counts the download (scrape ``downloaded``)."""
    require_libtorrent()
    async with LoopbackTracker(interval=60, min_interval=1) as tracker:
        url = tracker.http_url if transport == "http" else tracker.udp_url
        shared = make_shard_torrent(tmp_path, 4 * MiB + 77, trackers=[url], seed=17)
        seeder = await processes.libtorrent("seed", directory=shared.root, torrent=shared.torrent_path)
        await tracker.wait_for(lambda a: a.request.port == seeder.port, timeout=10)
        async with Session(loopback_config()) as session:
            ours = session.peer_id
            torrent = await session.add(shared.torrent_path, tmp_path / "down")
            await complete(torrent, timeout=20, peers=[seeder])
            await asyncio.wait_for(torrent.wait_stopped(), timeout=scaled(10))
        events = [a.request.event for a in tracker.announces if a.request.peer_id == ours]
        assert events[0] is AnnounceEvent.STARTED
        assert AnnounceEvent.COMPLETED in events, f"our announces: {[e.name for e in events]}"
        assert events[-1] is AnnounceEvent.STOPPED


def _dht_config(*bootstrap: int, **torrent: object) -> SessionConfig:
    """A loopback session with a DHT node bootstrapped from local nodes only (never the public routers)."""
    return replace(
        loopback_config(**torrent),
        enable_dht=True,
        dht_bootstrap=tuple(("127.0.0.1", port) for port in bootstrap),
    )


async def test_trackerless_magnet_finds_libtorrent_through_dht(
    tmp_path: Path, processes: ProcessGroup
) -> None:
    """BEP 5: a magnet with nothing but ``xt``.  Node A (torrentgoat) is the DHT's bootstrap node,
    libtorrent seeds and announces to it; session B, added right after it starts (as
    ``torrentgoat get MAGNET`` does), must find libtorrent with ``get_peers`` and download."""
    require_libtorrent()
    shared = make_shard_torrent(tmp_path, 4 * MiB + 1, seed=18)
    async with Session(_dht_config()) as node:
        seeder = await processes.libtorrent(
            "seed",
            directory=shared.root,
            torrent=shared.torrent_path,
            extra=["--dht", f"127.0.0.1:{node.listen_port}"],
        )
        await wait_until(
            lambda: node.dht.engine.peer_store.info_hash_count > 0,
            timeout=15,
            what="libtorrent's DHT announce",
        )
        dest = tmp_path / "down"
        async with Session(_dht_config(node.listen_port)) as session:
            torrent = await session.add(Magnet(info_hash=shared.metainfo.info_hash).to_uri(), dest)
            # a lookup made before the bootstrap finished finds nothing; the next one must not be 20 s away
            await complete(torrent, timeout=12, peers=[seeder])
    assert_same_files(shared.metainfo, shared.root, dest)


async def test_libtorrent_finds_torrentgoat_seeder_through_dht(
    tmp_path: Path, processes: ProcessGroup
) -> None:
    """BEP 5 the other way: our seeder announces its port to the DHT (bootstrap node A, torrentgoat);
    a libtorrent leech given only A and the magnet finds us there."""
    require_libtorrent()
    shared = make_shard_torrent(tmp_path, 4 * MiB + 3, seed=19)
    async with Session(_dht_config()) as node, Session(_dht_config(node.listen_port)) as seeding:
        torrent = await seeding.add(shared.torrent_path, shared.root, seed=True)
        await asyncio.wait_for(torrent.wait_complete(), timeout=scaled(10))
        try:  # the seeder's first announce may go out before its bootstrap; the next must come soon
            await wait_until(
                lambda: node.dht.engine.peer_store.info_hash_count > 0, timeout=12, what="our DHT announce"
            )
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}: node A knows {node.dht.routing_table_size} node(s), the seeder "
                f"{seeding.dht.routing_table_size}"
            ) from None
        dest = tmp_path / "lt-down"
        dest.mkdir()
        magnet = Magnet(info_hash=shared.metainfo.info_hash).to_uri()
        leech = await processes.libtorrent(
            "leech", directory=dest, magnet=magnet, extra=["--dht", f"127.0.0.1:{node.listen_port}"]
        )
        await leech.wait_event("finished", timeout=20)
        assert torrent.uploaded >= shared.size
    assert_same_files(shared.metainfo, shared.root, dest)


async def test_pex_from_libtorrent_introduces_our_leeches(tmp_path: Path, processes: ProcessGroup) -> None:
    """BEP 11, libtorrent -> us: two torrentgoat leeches each know only a slow libtorrent seeder;
    its ``ut_pex`` names one to the other, they connect and trade."""
    require_libtorrent()
    shared = make_shard_torrent(tmp_path, 5 * MiB + 1, seed=20)
    seeder = await processes.libtorrent(
        "seed", directory=shared.root, torrent=shared.torrent_path, extra=["--upload-limit", str(2 * MiB)]
    )
    lt_address = f"127.0.0.1:{seeder.port}"
    async with Session(loopback_config(seed=True)) as one, Session(loopback_config(seed=True)) as two:
        first = await one.add(shared.torrent_path, tmp_path / "one", peers=[lt_address])
        await wait_until(lambda: first.downloaded > 0, timeout=10, what="the first leech to start")
        second = await two.add(shared.torrent_path, tmp_path / "two", peers=[lt_address])
        ports = {one.listen_port, two.listen_port}
        await wait_until(
            lambda: any(
                ps.driver.address is not None and ps.driver.address.port in ports
                for t in (first, second)
                for ps in t.peers.values()
            ),
            timeout=15,
            what="the leeches to meet through libtorrent's PEX",
        )
        await asyncio.gather(*(complete(t, timeout=20, peers=[seeder]) for t in (first, second)))
        assert first.uploaded + second.uploaded > 0
    for name in ("one", "two"):
        assert_same_files(shared.metainfo, shared.root, tmp_path / name)


async def test_our_pex_introduces_libtorrent_leeches(tmp_path: Path, processes: ProcessGroup) -> None:
    """BEP 11, us -> libtorrent: two libtorrent leeches each know only our (slow) seeder; our
    ``ut_pex`` names one to the other and one dials the other's listen port."""
    require_libtorrent()
    shared = make_shard_torrent(tmp_path, 5 * MiB + 2, seed=21)
    config = replace(loopback_config(), upload_limit=2 * MiB)
    async with Session(config) as session:
        torrent = await session.add(shared.torrent_path, shared.root, seed=True)
        await asyncio.wait_for(torrent.wait_complete(), timeout=scaled(10))
        ours = f"127.0.0.1:{session.listen_port}"
        leeches = []
        for name in ("lt-1", "lt-2"):
            (tmp_path / name).mkdir()
            leeches.append(
                await processes.libtorrent(
                    "leech",
                    directory=tmp_path / name,
                    torrent=shared.torrent_path,
                    peers=[ours],
                    extra=["--exit-after-finish", "30"],
                )
            )
        one, two = leeches

        def met() -> bool:  # an outgoing connection from one leech to the other's listen port
            return any(
                e.get("what") == "peer_connect_alert"
                and f"127.0.0.1:{b.port} outgoing" in str(e.get("message"))
                for a, b in ((one, two), (two, one))
                for e in a.events
            )

        await wait_until(met, timeout=15, what="the libtorrent leeches to meet through our PEX")
        await asyncio.gather(*(leech.wait_event("finished", timeout=20) for leech in leeches))
    for name in ("lt-1", "lt-2"):
        assert_same_files(shared.metainfo, shared.root, tmp_path / name)
