"""Interop with libtorrent 2.1 for v2 and hybrid torrents made by torrentgoat (BEP 52, phase 1).

What works before the BEP 52 wire messages are in the swarm:

* a **hybrid** torrent (torrentgoat's default format) joins the v1 swarm with its SHA-1 info-hash, and every
  piece is checked against both halves: torrentgoat <- libtorrent and libtorrent <- torrentgoat, by .torrent
  and by a hybrid magnet (BEP 9 metadata: a hybrid ``info`` without piece layers, checked by SHA-1 until
  the layers are fetched -- the swarm phase);
* a **v2-only** .torrent that holds its piece layers joins the v2 swarm (handshakes with the truncated
  SHA-256): torrentgoat downloads it from libtorrent, every piece checked against its merkle tree, and
  libtorrent downloads it from torrentgoat (it needs no hash request when it has the .torrent).

Not yet (the swarm phase): v2-only magnets, and answering libtorrent's hash requests.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.conftest import require_libtorrent
from tests.interop_helpers import (
    MiB,
    ProcessGroup,
    assert_same_files,
    complete,
    loopback_config,
    processes,
)
from torrentgoat.creation import create_torrent
from torrentgoat.infohashes import TorrentFormat
from torrentgoat.magnet import Magnet
from torrentgoat.metainfo import Metainfo
from torrentgoat.primitives import PeerAddress
from torrentgoat.session import Session
from torrentgoat.testing.shards import write_model_folder

pytestmark = pytest.mark.interop

__all__ = ["processes"]  # the fixture, imported for pytest


def make(tmp_path: Path, fmt: TorrentFormat, piece_length: int = 256 * 1024) -> tuple[Metainfo, Path, Path]:
    root = tmp_path / "seed"
    folder = write_model_folder(root / "tiny-model", shards=2, shard_size=3 * MiB + 4321, seed=7)
    metainfo = create_torrent(folder, piece_length=piece_length, format=fmt, creation_date=None)
    torrent_path = tmp_path / f"tiny-{fmt}.torrent"
    torrent_path.write_bytes(metainfo.to_bytes())
    return metainfo, root, torrent_path


@pytest.mark.parametrize("fmt", ["hybrid", "v2"])
async def test_download_from_libtorrent(tmp_path: Path, processes: ProcessGroup, fmt: TorrentFormat) -> None:
    require_libtorrent()
    metainfo, root, torrent_path = make(tmp_path, fmt)
    seeder = await processes.libtorrent("seed", directory=root, torrent=torrent_path)
    dest = tmp_path / "down"
    async with Session(loopback_config()) as session:
        torrent = await session.add(metainfo, dest, peers=[f"127.0.0.1:{seeder.port}"])
        await complete(torrent, timeout=40, peers=[seeder])
        assert torrent.hash_failures == 0
    assert_same_files(metainfo, root, dest)


@pytest.mark.parametrize("fmt", ["hybrid", "v2"])
async def test_libtorrent_downloads_from_torrentgoat(
    tmp_path: Path, processes: ProcessGroup, fmt: TorrentFormat
) -> None:
    require_libtorrent()
    metainfo, root, torrent_path = make(tmp_path, fmt)
    dest = tmp_path / "lt-down"
    dest.mkdir()
    async with Session(loopback_config()) as session:
        torrent = await session.add(metainfo, root, seed=True)
        await asyncio.wait_for(torrent.wait_complete(), timeout=20)
        leech = await processes.libtorrent(
            "leech",
            directory=dest,
            torrent=torrent_path,
            peers=[f"127.0.0.1:{session.listen_port}"],
            extra=["--exit-after-finish", "30"],
        )
        await leech.wait_event("finished", timeout=40)
    assert_same_files(metainfo, root, dest)


async def test_hybrid_magnet_from_libtorrent(tmp_path: Path, processes: ProcessGroup) -> None:
    require_libtorrent()
    metainfo, root, torrent_path = make(tmp_path, "hybrid")
    seeder = await processes.libtorrent("seed", directory=root, torrent=torrent_path)
    magnet = Magnet.from_metainfo(metainfo)
    uri = Magnet(
        info_hash=magnet.info_hash,
        info_hash_v2=magnet.info_hash_v2,
        peers=(PeerAddress("127.0.0.1", seeder.port or 0),),
    ).to_uri()
    assert "xt=urn:btih:" in uri and "xt=urn:btmh:1220" in uri
    dest = tmp_path / "down"
    async with Session(loopback_config()) as session:
        torrent = await session.add(uri, dest)
        info = await asyncio.wait_for(torrent.wait_metadata(), timeout=15)
        assert info.format == "hybrid" and info.info_hashes == metainfo.info_hashes
        await complete(torrent, timeout=40, peers=[seeder])
        assert torrent.hash_failures == 0
    assert_same_files(metainfo, root, dest)
