"""Interop: the torrentgoat engine (Session / Torrent) against libtorrent 2.1, both directions.

libtorrent runs in its own process (``tools/lt_peer.py``) on 127.0.0.1; payloads are real
safetensors shards.  Shown here:

* torrentgoat downloads from a libtorrent seeder given a .torrent and the seeder's address;
* torrentgoat joins by magnet with ``x.pe=`` (metadata over BEP 9) and downloads everything;
* libtorrent downloads from a torrentgoat seeder and reports ``finished``;
* the ``python -m torrentgoat get`` command does the magnet download and ``verify`` agrees.

Files are compared byte for byte with the originals after each transfer.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import require_libtorrent
from tests.interop_helpers import (
    MiB,
    ProcessGroup,
    assert_same_files,
    loopback_config,
    make_model_torrent,
    make_shard_torrent,
    processes,
)
from torrentgoat.magnet import Magnet
from torrentgoat.primitives import PeerAddress
from torrentgoat.session import Session

pytestmark = pytest.mark.interop

__all__ = ["processes"]  # the fixture, imported for pytest


async def test_download_torrent_file_from_libtorrent_seeder(tmp_path: Path, processes: ProcessGroup) -> None:
    require_libtorrent()
    shared = make_shard_torrent(tmp_path, 24 * MiB + 4321, piece_length=256 * 1024, seed=1)
    seeder = await processes.libtorrent("seed", directory=shared.root, torrent=shared.torrent_path)
    dest = tmp_path / "down"
    started = time.monotonic()
    async with Session(loopback_config()) as session:
        torrent = await session.add(shared.torrent_path, dest, peers=[f"127.0.0.1:{seeder.port}"])
        try:
            await asyncio.wait_for(torrent.wait_complete(), timeout=25)
        except TimeoutError:
            raise AssertionError(
                f"not complete: state={torrent.state} have={torrent.have and torrent.have.count()}"
                f"/{shared.metainfo.info.num_pieces} peers={torrent.num_peers}\n{seeder.tail()}"
            ) from None
        assert torrent.downloaded >= shared.size
        assert torrent.hash_failures == 0
    elapsed = time.monotonic() - started
    assert_same_files(shared.metainfo, shared.root, dest)
    print(f"torrentgoat <- libtorrent: {shared.size / MiB:.1f} MiB in {elapsed:.2f} s")


async def test_download_magnet_with_peer_from_libtorrent_seeder(
    tmp_path: Path, processes: ProcessGroup
) -> None:
    """BEP 9: only the info-hash and ``x.pe`` are known; the metadata comes from libtorrent."""
    require_libtorrent()
    shared = make_model_torrent(tmp_path, shards=2, shard_size=6 * MiB + 777, seed=2)
    seeder = await processes.libtorrent("seed", directory=shared.root, torrent=shared.torrent_path)
    magnet = Magnet(
        info_hash=shared.metainfo.info_hash,
        display_name=shared.name,
        peers=(PeerAddress("127.0.0.1", seeder.port or 0),),
    ).to_uri()
    assert "x.pe=127.0.0.1" in magnet
    dest = tmp_path / "down"
    async with Session(loopback_config()) as session:
        torrent = await session.add(magnet, dest)
        info = await asyncio.wait_for(torrent.wait_metadata(), timeout=10)
        assert info.info_hash == shared.metainfo.info_hash
        assert info.raw == shared.metainfo.info.raw
        await asyncio.wait_for(torrent.wait_complete(), timeout=25)
        assert torrent.hash_failures == 0
    assert_same_files(shared.metainfo, shared.root, dest)


async def test_libtorrent_downloads_from_torrentgoat_seeder(tmp_path: Path, processes: ProcessGroup) -> None:
    require_libtorrent()
    shared = make_shard_torrent(tmp_path, 24 * MiB + 999, piece_length=512 * 1024, seed=3)
    dest = tmp_path / "lt-down"
    dest.mkdir()
    async with Session(loopback_config()) as session:
        torrent = await session.add(shared.metainfo, shared.root, seed=True)
        await asyncio.wait_for(torrent.wait_complete(), timeout=10)  # checked: everything is there
        assert torrent.state != "stopped"
        leech = await processes.libtorrent(
            "leech",
            directory=dest,
            torrent=shared.torrent_path,
            peers=[f"127.0.0.1:{session.listen_port}"],
            extra=["--exit-after-finish", "30"],
        )
        finished = await leech.wait_event("finished", timeout=25)
        assert finished["bytes"] == shared.size
        assert torrent.uploaded >= shared.size
        print(f"libtorrent <- torrentgoat: {shared.size / MiB:.1f} MiB in {finished['seconds']:.2f} s")
    assert_same_files(shared.metainfo, shared.root, dest)


def _cli(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "torrentgoat", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


async def test_cli_get_magnet_from_libtorrent_then_verify(tmp_path: Path, processes: ProcessGroup) -> None:
    require_libtorrent()
    shared = make_model_torrent(tmp_path, shards=2, shard_size=4 * MiB + 99, seed=4)
    seeder = await processes.libtorrent("seed", directory=shared.root, torrent=shared.torrent_path)
    magnet = Magnet(
        info_hash=shared.metainfo.info_hash, peers=(PeerAddress("127.0.0.1", seeder.port or 0),)
    ).to_uri()
    dest = tmp_path / "cli-down"
    argv = ["get", magnet, "-o", str(dest), "--no-dht", "--listen", "127.0.0.1", "--listen6", ""]
    argv += ["--port", "0", "--quiet", "--timeout", "25"]
    get = await asyncio.to_thread(_cli, *argv, timeout=40)
    assert get.returncode == 0, f"get exited {get.returncode}\n{get.stdout}\n{get.stderr}\n{seeder.tail()}"
    assert_same_files(shared.metainfo, shared.root, dest)
    verify = await asyncio.to_thread(
        _cli, "verify", str(shared.torrent_path), str(dest), "--quiet", timeout=30
    )
    assert verify.returncode == 0, f"verify exited {verify.returncode}\n{verify.stdout}\n{verify.stderr}"
