"""Interop with libtorrent 2.1 (and aria2 for the v1 half) for v2 and hybrid torrents (BEP 52).

* by .torrent, both ways, for a **hybrid** (torrentgoat's default format) and a **v2-only** torrent: the
  v2 swarm is joined with the truncated SHA-256 (a hybrid dials with its SHA-1 and the v2 bit, and is
  upgraded to v2 when the other side answers with the truncated SHA-256); every piece is checked against
  both halves of a hybrid;
* by magnet, libtorrent -> torrentgoat: the metadata over BEP 9 (checked by SHA-256 for ``btmh``), then
  the piece layers by ``hash request`` -- files of 513 and 1025 pieces, so that the layer of each takes
  several runs of 512 -- and only then the pieces of a v2-only torrent (a hybrid's are checked by SHA-1
  meanwhile);
* by magnet, torrentgoat -> libtorrent: libtorrent fetches the metadata and then the piece layers from us
  (our answers to its hash requests);
* a hybrid swarm: torrentgoat downloads over a v1 connection and a v2 connection at the same time, both
  contributing (two libtorrent seeds; with a v1-only client, aria2 1.37, in ``test_interop_hybrid_aria2.py``:
  aria2 1.36 computes a wrong info-hash for a hybrid, transmission-cli 3.00 refuses the file).

libtorrent under MSE: a connection it accepted encrypted with the v1 stream key stays v1 for it even when
the handshake inside carries the v2 bit, and it drops a peer that sends a hash request there; torrentgoat
then sends none (a hybrid's pieces are checked by SHA-1).  The hybrid magnet tests that prove piece layers
by hash request therefore dial libtorrent without MSE.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
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
from torrentgoat.merkle import BLOCK_SIZE
from torrentgoat.metainfo import Metainfo
from torrentgoat.mse import EncryptionPolicy, MSEConfig
from torrentgoat.primitives import PeerAddress
from torrentgoat.session import Session, SessionConfig
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


async def test_hybrid_magnet_from_libtorrent_under_mse(tmp_path: Path, processes: ProcessGroup) -> None:
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
    async with Session(loopback_config()) as session:  # MSE first: libtorrent keeps the connection v1
        torrent = await session.add(uri, dest)
        info = await asyncio.wait_for(torrent.wait_metadata(), timeout=15)
        assert info.format == "hybrid" and info.info_hashes == metainfo.info_hashes
        await complete(torrent, timeout=40, peers=[seeder])
        assert torrent.hash_failures == 0
    assert_same_files(metainfo, root, dest)


# --------------------------------------------------------------------------- magnets and piece layers

LAYER_SIZES = {
    "a-513.bin": 513 * BLOCK_SIZE - 1000,  # 513 pieces: runs of 512 and 2 (libtorrent asks for 1 alone)
    "b-1025.bin": 1025 * BLOCK_SIZE,  # 1025 pieces: runs of 512, 512 and 2
    "c-note.txt": 777,  # one piece: needs no layer
}


def make_layers(tmp_path: Path, fmt: TorrentFormat) -> tuple[Metainfo, Path, Path]:
    """Files of 513 and 1025 pieces of 16 KiB (so each piece layer takes several hash requests)."""
    folder = tmp_path / "seed" / "layers"
    folder.mkdir(parents=True)
    for index, (name, size) in enumerate(sorted(LAYER_SIZES.items())):
        block = bytes((i * 97 + index * 13 + (i >> 9)) & 0xFF for i in range(BLOCK_SIZE * 3))
        with (folder / name).open("wb") as handle:
            left = size
            while left:
                chunk = block[: min(left, len(block))]
                handle.write(chunk)
                left -= len(chunk)
    metainfo = create_torrent(folder, piece_length=BLOCK_SIZE, format=fmt, creation_date=None)
    torrent_path = tmp_path / f"layers-{fmt}.torrent"
    torrent_path.write_bytes(metainfo.to_bytes())
    return metainfo, tmp_path / "seed", torrent_path


def plain(config: SessionConfig) -> SessionConfig:
    """No MSE: libtorrent upgrades a hybrid's connection to v2 only on a plain handshake (module doc)."""
    return replace(config, encryption=MSEConfig(policy=EncryptionPolicy.DISABLE))


@pytest.mark.parametrize("fmt", ["v2", "hybrid"])
async def test_magnet_from_libtorrent_fetches_piece_layers(
    tmp_path: Path, processes: ProcessGroup, fmt: TorrentFormat
) -> None:
    require_libtorrent()
    metainfo, root, torrent_path = make_layers(tmp_path, fmt)
    info = metainfo.info
    assert info.v2 is not None and len(info.v2.piece_layers) == 2
    seeder = await processes.libtorrent("seed", directory=root, torrent=torrent_path, timeout=30)
    magnet = Magnet.from_metainfo(metainfo)
    uri = Magnet(
        info_hash=magnet.info_hash if fmt == "hybrid" else None,
        info_hash_v2=magnet.info_hash_v2,
        peers=(PeerAddress("127.0.0.1", seeder.port or 0),),
    ).to_uri()
    dest = tmp_path / "down"
    async with Session(plain(loopback_config())) as session:
        torrent = await session.add(uri, dest)
        got = await asyncio.wait_for(torrent.wait_metadata(), timeout=15)
        assert got.raw == info.raw and not got.v2.has_piece_layers  # type: ignore[union-attr]
        await complete(torrent, timeout=60, peers=[seeder])
        assert torrent.hash_failures == 0
        assert torrent.info is not None and torrent.info.v2 is not None
        assert dict(torrent.info.v2.piece_layers) == dict(info.v2.piece_layers)
    assert_same_files(metainfo, root, dest)


@pytest.mark.parametrize("fmt", ["v2", "hybrid"])
async def test_libtorrent_magnet_fetches_piece_layers_from_torrentgoat(
    tmp_path: Path, processes: ProcessGroup, fmt: TorrentFormat
) -> None:
    """libtorrent takes the metadata and every piece layer from us (it has no .torrent).

    The hybrid case uses the model folder: with the 513/1025-piece files libtorrent 2.1.1 fails a hybrid
    magnet even from another libtorrent ("v1 and v2 hashes do not describe the same data", or a stall)."""
    require_libtorrent()
    metainfo, root, _ = make_layers(tmp_path, fmt) if fmt == "v2" else make(tmp_path, fmt)
    dest = tmp_path / "lt-down"
    dest.mkdir()
    magnet = Magnet.from_metainfo(metainfo)
    async with Session(loopback_config()) as session:
        torrent = await session.add(metainfo, root, seed=True)
        await asyncio.wait_for(torrent.wait_complete(), timeout=30)
        uri = Magnet(
            info_hash=magnet.info_hash if fmt == "hybrid" else None,
            info_hash_v2=magnet.info_hash_v2,
            peers=(PeerAddress("127.0.0.1", session.listen_port),),
        ).to_uri()
        leech = await processes.libtorrent(
            "leech", directory=dest, magnet=uri, extra=["--exit-after-finish", "30"]
        )
        try:
            await leech.wait_event("finished", timeout=60)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{leech.tail(40)}") from None
        assert not [e for e in leech.events if e.get("event") == "hash_failed"]
    assert_same_files(metainfo, root, dest)


# --------------------------------------------------------------------------- a hybrid swarm


async def test_hybrid_swarm_v1_and_v2_connections_at_once(tmp_path: Path, processes: ProcessGroup) -> None:
    """One hybrid swarm, a v1 connection and a v2 connection: torrentgoat downloads from both at once.

    Both seeds are libtorrent here (the same with aria2 1.37 as the v1 seed is in
    ``test_interop_hybrid_aria2.py``; aria2 1.36 and transmission-cli 3.00 cannot join a hybrid swarm): one that
    accepts only MSE keeps our connection in the v1 swarm (libtorrent does not upgrade a connection
    encrypted with the v1 stream key), one without MSE is upgraded to the v2 swarm (BEP 52).  Both are
    slowed down so that both contribute; every piece is checked against both halves."""
    require_libtorrent()
    folder = write_model_folder(tmp_path / "seed" / "tiny-model", shards=2, shard_size=6 * MiB + 999, seed=9)
    metainfo = create_torrent(folder, piece_length=256 * 1024, format="hybrid", creation_date=None)
    hashes = metainfo.info_hashes
    assert hashes.v1 is not None and hashes.v2 is not None
    torrent_path = tmp_path / "hybrid.torrent"
    torrent_path.write_bytes(metainfo.to_bytes())
    limit = ["--upload-limit", str(2 * MiB)]
    v1 = await processes.libtorrent(
        "seed", directory=tmp_path / "seed", torrent=torrent_path, extra=[*limit, "--force-encryption"]
    )
    v2 = await processes.libtorrent(
        "seed", directory=tmp_path / "seed", torrent=torrent_path, extra=[*limit, "--no-encryption"]
    )
    dest = tmp_path / "down"
    by_swarm: dict[str, int] = {}
    async with Session(loopback_config()) as session:  # MSE preferred, plain as the fallback
        torrent = await session.add(metainfo, dest, peers=[f"127.0.0.1:{v1.port}", f"127.0.0.1:{v2.port}"])

        async def watch() -> None:
            while True:
                for wp in list(torrent.peers.values()):
                    engine = wp.driver.engine
                    swarm = "v2" if engine.info_hash == hashes.v2.truncated else "v1"
                    port = wp.address.port if wp.address is not None else 0
                    if port in (v1.port, v2.port):
                        key = f"{swarm}@{'mse' if port == v1.port else 'plain'}"
                        by_swarm[key] = max(by_swarm.get(key, 0), engine.downloaded)
                await asyncio.sleep(0.1)

        watcher = asyncio.create_task(watch())
        try:
            await complete(torrent, timeout=60, peers=[v1, v2])
        finally:
            watcher.cancel()
        assert torrent.hash_failures == 0
    # (a plain connection counts as v1 until libtorrent's handshake upgrades it: no bytes then)
    assert {key for key, count in by_swarm.items() if count} == {"v1@mse", "v2@plain"}, by_swarm
    assert_same_files(metainfo, tmp_path / "seed", dest)
