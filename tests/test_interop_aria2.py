"""Interop: the torrentgoat engine against aria2c (1.36), both directions, on loopback.

aria2 cannot be told "connect to this peer": it finds peers through trackers or the DHT only.  So
each test runs a loopback tracker -- the in-repo :class:`LoopbackTracker` or Debian's
``opentracker`` -- named in the torrent's ``announce``; aria2 and our session both announce there
and find each other.  aria2 flags follow INTEROP-NOTES (no DHT / LPD / PEX / IPv6, no
preallocation; ``--seed-time=0`` for a leech that exits when done).  aria2 tries an encrypted (MSE)
handshake first and falls back to a plain one when it is refused.

Shown: .torrent downloads both ways through either tracker, and magnet joins both ways (the info
dict over BEP 9 from us to aria2 and from aria2 to us).  Two aria2 habits found by these tests have
their own small regression tests: its tracker ``key`` is 8 raw bytes, not hex; and it advertises
new pieces with a mid-connection BITFIELD (or HAVE ALL) instead of several HAVEs.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from tests.conftest import require_binary
from tests.interop_helpers import (
    MiB,
    ProcessGroup,
    Shared,
    assert_same_files,
    complete,
    loopback_config,
    make_model_torrent,
    make_shard_torrent,
    processes,
    wait_scrape,
)
from torrentgoat.bitfield import Bitfield
from torrentgoat.magnet import Magnet
from torrentgoat.session import Session
from torrentgoat.testing.timing import scaled
from torrentgoat.testing.tracker import LoopbackTracker, OpenTracker
from torrentgoat.testing.wire import make_pair
from torrentgoat.torrent import TorrentConfig
from torrentgoat.tracker import http as http_codec

pytestmark = pytest.mark.interop

__all__ = ["processes"]  # the fixture, imported for pytest

TRACKERS = ["loopback", "opentracker"]
"""HTTP announces only: aria2 1.36 talks to UDP trackers through its DHT socket, so with the DHT
off it says "udp is not supported yet" (measured)."""


@contextlib.asynccontextmanager
async def tracker_for(kind: str, shared: Shared) -> AsyncIterator[str]:
    """Run a tracker of ``kind`` for ``shared`` and rewrite its .torrent to announce there.

    The info-hash does not depend on ``announce``, so opentracker's whitelist can be written first.
    """
    if kind.startswith("loopback"):
        server: LoopbackTracker | OpenTracker = LoopbackTracker(interval=60, min_interval=1)
    else:
        server = OpenTracker(require_binary("opentracker"), [shared.metainfo.info_hash])
    async with server:
        url = server.udp_url if kind.endswith("-udp") else server.http_url
        shared.metainfo = replace(shared.metainfo, announce_tiers=((url,),))
        shared.torrent_path.write_bytes(shared.metainfo.to_bytes())
        yield url


@pytest.mark.parametrize("kind", TRACKERS)
async def test_torrentgoat_downloads_from_aria2_seeder(
    tmp_path: Path, processes: ProcessGroup, kind: str
) -> None:
    binary = require_binary("aria2c")
    shared = make_shard_torrent(tmp_path, 16 * MiB + 321, seed=21)
    async with tracker_for(kind, shared) as url:
        seeder = await processes.aria2(
            "seed", torrent=shared.torrent_path, directory=shared.root, binary=binary
        )
        try:  # aria2 checks its data (--check-integrity), then announces as a seed
            await wait_scrape(url, shared.metainfo.info_hash, complete=1, timeout=15)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{seeder.tail()}") from None
        dest = tmp_path / "down"
        async with Session(loopback_config()) as session:
            torrent = await session.add(shared.torrent_path, dest)  # peers come from the tracker only
            await complete(torrent, timeout=25, peers=[seeder])
            assert torrent.hash_failures == 0
            assert torrent.downloaded >= shared.size
    assert_same_files(shared.metainfo, shared.root, dest)


@pytest.mark.parametrize("kind", TRACKERS)
async def test_aria2_downloads_from_torrentgoat_seeder(
    tmp_path: Path, processes: ProcessGroup, kind: str
) -> None:
    binary = require_binary("aria2c")
    shared = make_model_torrent(tmp_path, shards=2, shard_size=7 * MiB + 4321, seed=22)
    async with tracker_for(kind, shared) as url:
        dest = tmp_path / "aria2-down"
        dest.mkdir()
        async with Session(loopback_config()) as session:
            torrent = await session.add(shared.torrent_path, shared.root, seed=True)
            await asyncio.wait_for(torrent.wait_complete(), timeout=scaled(10))
            await wait_scrape(url, shared.metainfo.info_hash, complete=1)  # we announced as a seed
            leech = await processes.aria2("leech", torrent=shared.torrent_path, directory=dest, binary=binary)
            code = await leech.wait_exit(timeout=25)
            assert code == 0, f"aria2c exited {code}\n{leech.tail()}"
            assert torrent.uploaded >= shared.size
            # aria2 said "completed" (BEP 3) after fetching everything from us, then "stopped"
            await wait_scrape(url, shared.metainfo.info_hash, complete=1, downloaded=1)
    assert_same_files(shared.metainfo, shared.root, dest)


async def test_aria2_downloads_from_super_seeding_torrentgoat(
    tmp_path: Path, processes: ProcessGroup
) -> None:
    """BEP 16: aria2 sees ``have none`` (or no bitfield) and then single ``have`` messages, and still
    fetches everything."""
    binary = require_binary("aria2c")
    shared = make_model_torrent(tmp_path, shards=1, shard_size=6 * MiB + 99, seed=23)
    config = TorrentConfig(seed=True, super_seed=True)
    async with tracker_for(TRACKERS[0], shared) as url:
        dest = tmp_path / "aria2-down"
        dest.mkdir()
        async with Session(loopback_config()) as session:
            torrent = await session.add(shared.torrent_path, shared.root, config=config)
            await asyncio.wait_for(torrent.wait_complete(), timeout=scaled(10))
            assert torrent.superseeding is not None
            await wait_scrape(url, shared.metainfo.info_hash, complete=1)
            leech = await processes.aria2("leech", torrent=shared.torrent_path, directory=dest, binary=binary)
            code = await leech.wait_exit(timeout=40)
            assert code == 0, f"aria2c exited {code}\n{leech.tail()}"
    assert_same_files(shared.metainfo, shared.root, dest)


def test_loopback_tracker_parses_aria2_announce_query() -> None:
    """aria2 1.36 sends ``key`` as 8 raw bytes (percent-encoded), not hex: a tracker must accept it.

    The query below is copied from a real aria2c announce.  BEP 3 / BEP 7 leave ``key`` opaque.
    """
    query = (
        "info_hash=%EB%F7u%B7%8AV%E7%D8%19%CC%2A1T%D6%C1R%176%97%3D&peer_id=A2-1-36-0-%F1k%C34%04%84%10Wa%A4"
        "&uploaded=0&downloaded=0&left=15995352&compact=1&key=%C34%04%84%10Wa%A4&numwant=50&no_peer_id=1"
        "&port=40985&event=started&supportcrypto=1"
    )
    request = http_codec.parse_announce_query(query)
    assert request.port == 40985
    assert request.left == 15995352


def _late_opening_message(kind: int, payload: bytes = b"") -> bytes:
    return struct.pack(">IB", 1 + len(payload), kind) + payload


@pytest.mark.parametrize("late", ["bitfield", "have_all"])
def test_engine_accepts_a_late_bitfield_or_have_all_like_aria2(late: str) -> None:
    """aria2 1.36 (``DefaultBtInteractive::checkHave``) advertises new pieces with one BITFIELD --
    or HAVE ALL once finished, with the fast extension -- instead of several HAVE messages whenever
    that is shorter: ``5 + len(bitfield) <= 9 * number_of_haves``.  So it sends BITFIELD / HAVE ALL
    in the middle of a connection, after HAVEs.  Dropping the peer for that cuts aria2 off
    (seen: an aria2 leech stalls at ~3 of 15 MiB, every reconnection closed the same way)."""
    pair = make_pair(num_pieces=16)
    pair.pump()
    late_bits = Bitfield(16)
    for index in (1, 3, 5):
        late_bits.add(index)
    pair.b.receive_data(struct.pack(">IBI", 5, 4, 1))  # HAVE 1
    if late == "bitfield":
        pair.b.receive_data(_late_opening_message(5, late_bits.to_bytes()))
    else:
        pair.b.receive_data(_late_opening_message(0x0E))  # BEP 6 HAVE ALL
    while pair.b.next_event() is not None:
        pass
    assert pair.b.peer_have is not None
    wanted = (1, 3, 5) if late == "bitfield" else range(16)
    assert all(i in pair.b.peer_have for i in wanted)


async def test_aria2_joins_torrentgoat_seeder_by_magnet(tmp_path: Path, processes: ProcessGroup) -> None:
    """aria2 given only ``xt`` and ``tr``: it finds us at the tracker and takes the info dict from
    us (BEP 9) before the data."""
    binary = require_binary("aria2c")
    shared = make_model_torrent(tmp_path, shards=2, shard_size=4 * MiB + 11, seed=23)
    async with tracker_for("loopback", shared) as url:
        dest = tmp_path / "aria2-down"
        dest.mkdir()
        async with Session(loopback_config()) as session:
            torrent = await session.add(shared.torrent_path, shared.root, seed=True)
            await asyncio.wait_for(torrent.wait_complete(), timeout=scaled(10))
            await wait_scrape(url, shared.metainfo.info_hash, complete=1)
            magnet = Magnet(info_hash=shared.metainfo.info_hash, trackers=(url,)).to_uri()
            leech = await processes.aria2(
                "leech", torrent=magnet, directory=dest, binary=binary, extra=["--bt-save-metadata=false"]
            )
            code = await leech.wait_exit(timeout=25)
            assert code == 0, f"aria2c exited {code}\n{leech.tail()}"
    assert_same_files(shared.metainfo, shared.root, dest)


async def test_torrentgoat_joins_aria2_seeder_by_magnet(tmp_path: Path, processes: ProcessGroup) -> None:
    """Our magnet download (``xt`` + ``tr``) takes the info dict from aria2 (BEP 9), then the data.

    Without pad files: aria2 1.36 ignores BEP 47 ``attr=p`` and treats ``.pad/N`` as real files that
    must be on disk to seed (a leech writes them; measured: with pads and no such files it
    announces itself incomplete)."""
    binary = require_binary("aria2c")
    shared = make_model_torrent(tmp_path, shards=2, shard_size=4 * MiB + 13, seed=24, pad=False)
    async with tracker_for("loopback", shared) as url:
        seeder = await processes.aria2(
            "seed", torrent=shared.torrent_path, directory=shared.root, binary=binary
        )
        await wait_scrape(url, shared.metainfo.info_hash, complete=1, timeout=15)
        dest = tmp_path / "down"
        async with Session(loopback_config()) as session:
            magnet = Magnet(info_hash=shared.metainfo.info_hash, trackers=(url,)).to_uri()
            torrent = await session.add(magnet, dest)
            info = await asyncio.wait_for(torrent.wait_metadata(), timeout=scaled(15))
            assert info.raw == shared.metainfo.info.raw
            await complete(torrent, timeout=20, peers=[seeder])
    assert_same_files(shared.metainfo, shared.root, dest)
