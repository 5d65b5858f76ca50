"""Fast resume of v2 and hybrid torrents (BEP 52) in torrentgoat-only swarms on 127.0.0.1.

* a magnet-started v2 or hybrid torrent keeps the piece layers it fetched from peers in its resume data:
  after a restart (``info`` from BEP 9 again) they are back before the check, proved against the roots,
  and no hash request goes out for them; with a file changed on disk meanwhile, the check hashes that
  file's pieces against the restored layer and only the one damaged piece is fetched again;
* resume data whose piece layers do not prove is ignored for the layers (then computed from the data);
* a v2 and a hybrid torrent started from a .torrent restart complete without hashing anything.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace
from pathlib import Path

import pytest

from tests.test_engine_v2 import complete, magnet_of, make_payload
from torrentgoat.infohashes import TorrentFormat
from torrentgoat.merkle import BLOCK_SIZE
from torrentgoat.session import Session
from torrentgoat.storage.resume import RESUME_DIR, load_resume, resume_path
from torrentgoat.testing.swarm import assert_same_files, loopback_config
from torrentgoat.testing.timing import scaled

SIZES = {
    "a-600.bin": 600 * BLOCK_SIZE - 77,  # 600 pieces: piece layer runs of 512 and more
    "b-40.bin": 40 * BLOCK_SIZE,
    "c-small.json": 3000,  # one piece: needs no layer
}


@pytest.mark.parametrize("fmt", ["v2", "hybrid"])
async def test_magnet_restart_takes_piece_layers_from_resume_data(tmp_path: Path, fmt: TorrentFormat) -> None:
    metainfo, root = make_payload(tmp_path, SIZES, fmt=fmt, piece_length=BLOCK_SIZE)
    info = metainfo.info
    assert info.v2 is not None and len(info.v2.piece_layers) == 2
    dest = tmp_path / "down"
    async with Session(loopback_config(seed=1)) as seeder:
        seed = await seeder.add(metainfo, root, seed=True)
        await complete(seed)
        uri = magnet_of(metainfo, seeder.listen_port, v1=fmt == "hybrid")
        async with Session(loopback_config(seed=2)) as leecher:
            torrent = await leecher.add(uri, dest)
            await complete(torrent)
            assert torrent.info is not None and torrent.info.v2 is not None
            assert torrent.info.v2.has_piece_layers
        saved = load_resume(resume_path(dest / RESUME_DIR, torrent.info_hash))
        assert dict(saved.piece_layers) == dict(info.v2.piece_layers)

        # a file changed on disk while we were away: one piece of a-600.bin is damaged
        damaged = dest / "payload" / "a-600.bin"
        with damaged.open("r+b") as handle:
            handle.seek(300 * BLOCK_SIZE + 5)
            byte = handle.read(1)
            handle.seek(300 * BLOCK_SIZE + 5)
            handle.write(bytes([byte[0] ^ 0xFF]))
        os.utime(damaged, ns=(1, 1))

        async with Session(loopback_config(seed=3)) as again:
            torrent = await again.add(uri, dest)
            await asyncio.wait_for(torrent.wait_metadata(), scaled(10))
            await complete(torrent)
            assert torrent.resume.layers_restored == 2
            assert torrent.hashes.fetcher is None  # no piece layer was asked of a peer
            plan = torrent.resume.plan
            assert plan is not None and plan.used
            a600 = next(f for f in info.v2.files if info.files[f.index].path[-1] == "a-600.bin")
            assert set(plan.to_check) == set(range(a600.first_piece, a600.end_piece))
            assert torrent.downloaded == BLOCK_SIZE  # the damaged piece alone, not the whole file
            assert torrent.hash_failures == 0
    assert_same_files(metainfo, root, dest)


async def test_layers_in_resume_data_that_do_not_prove_are_not_used(tmp_path: Path) -> None:
    """Resume data is ours, but a layer that does not hash to its root (a disk error, an edit) is never
    trusted: the torrent starts without it and, holding every piece (trusted by their stamps), computes
    the layers from its own data."""
    metainfo, root = make_payload(tmp_path, SIZES, fmt="v2", piece_length=BLOCK_SIZE)
    info = metainfo.info
    assert info.v2 is not None
    dest = tmp_path / "down"
    async with Session(loopback_config(seed=1)) as seeder:
        seed = await seeder.add(metainfo, root, seed=True)
        await complete(seed)
        uri = magnet_of(metainfo, seeder.listen_port, v1=False)
        async with Session(loopback_config(seed=2)) as leecher:
            torrent = await leecher.add(uri, dest)
            await complete(torrent)
        path = resume_path(dest / RESUME_DIR, torrent.info_hash)
        saved = load_resume(path)
        bad = {r: layer[:-1] + bytes([layer[-1] ^ 1]) for r, layer in saved.piece_layers.items()}
        path.write_bytes(replace(saved, piece_layers=bad).encode())
        async with Session(loopback_config(seed=3)) as again:
            torrent = await again.add(uri, dest, seed=True)
            await complete(torrent)
            assert torrent.resume.layers_restored == 0
            async with asyncio.timeout(scaled(10)):
                while not (torrent.info and torrent.info.v2 and torrent.info.v2.has_piece_layers):
                    await asyncio.sleep(0.05)
            assert dict(torrent.info.v2.piece_layers) == dict(info.v2.piece_layers)  # computed from our data
            assert torrent.hash_failures == 0
    assert_same_files(metainfo, root, dest)


@pytest.mark.parametrize("fmt", ["v2", "hybrid"])
async def test_restart_of_a_complete_torrent_hashes_nothing(tmp_path: Path, fmt: TorrentFormat) -> None:
    metainfo, root = make_payload(tmp_path, SIZES, fmt=fmt, piece_length=BLOCK_SIZE)
    dest = tmp_path / "down"
    async with Session(loopback_config(seed=1)) as seeder:
        seed = await seeder.add(metainfo, root, seed=True)
        await complete(seed)
        async with Session(loopback_config(seed=2)) as leecher:
            torrent = await leecher.add(metainfo, dest, peers=[f"127.0.0.1:{seeder.listen_port}"])
            await complete(torrent)
    async with Session(loopback_config(seed=3)) as again:  # no peer at all
        torrent = await again.add(metainfo, dest, seed=True)
        await complete(torrent)
        plan = torrent.resume.plan
        assert plan is not None and plan.used and plan.to_check.count == 0
        assert plan.trusted.count == metainfo.info.num_pieces
        assert torrent.downloaded == 0 and torrent.resume.layers_restored == 0
    assert_same_files(metainfo, root, dest)
