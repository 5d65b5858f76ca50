"""v2 and hybrid torrents (BEP 52) with the swarm features made for v1: super-seeding (BEP 16), PEX
(BEP 11), and piece layers a torrent computes from its own data -- torrentgoat-only swarms on 127.0.0.1.

* a super-seed of a v2 or hybrid torrent serves a leecher by .torrent and a v2-only magnet leecher (that
  one asks the seed for the piece layers of the pieces it is shown, then for the pieces);
* leechers that only know the seeder meet through PEX and trade pieces, in v2 and hybrid swarms;
* a hybrid magnet downloaded from a peer that refuses every hash request (as a v1-only client would):
  pieces are checked by SHA-1, and at completion the torrent computes its piece layers from its data,
  proved against each file's ``pieces root``, so that it can serve v2 peers -- which a second, v2-only
  magnet leecher then shows by taking the layers from it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.test_engine_v2 import complete, magnet_of, make_payload
from torrentgoat.infohashes import TorrentFormat
from torrentgoat.session import Session
from torrentgoat.testing.swarm import MiB, Payload, assert_same_files, local_swarm, loopback_config
from torrentgoat.testing.timing import scaled
from torrentgoat.torrent import TorrentConfig
from torrentgoat.wire.hashes import HashReject, HashRequest

SUPER = TorrentConfig(seed=True, super_seed=True)
SIZES = {"a.bin": 2 * MiB + 333, "b.bin": 1 * MiB + 5, "c.json": 900}


def payload_of(tmp_path: Path, fmt: TorrentFormat, piece_length: int = 64 * 1024) -> Payload:
    metainfo, root = make_payload(tmp_path, SIZES, fmt=fmt, piece_length=piece_length)
    path = tmp_path / f"{fmt}.torrent"
    path.write_bytes(metainfo.to_bytes())
    return Payload(root=root, metainfo=metainfo, torrent_path=path)


@pytest.mark.parametrize("fmt", ["v2", "hybrid"])
async def test_super_seed_serves_a_torrent_leecher_and_a_v2_magnet_leecher(
    tmp_path: Path, fmt: TorrentFormat
) -> None:
    payload = payload_of(tmp_path, fmt)
    metainfo = payload.metainfo
    async with Session(loopback_config(seed=1, torrent=SUPER)) as seeder:
        seed = await seeder.add(metainfo, payload.root, config=SUPER)
        await complete(seed)
        assert seed.superseeding is not None and seed.superseeding.active
        async with Session(loopback_config(seed=2)) as one, Session(loopback_config(seed=3)) as two:
            by_torrent = await one.add(metainfo, tmp_path / "one", peers=[f"127.0.0.1:{seeder.listen_port}"])
            by_magnet = await two.add(magnet_of(metainfo, seeder.listen_port, v1=False), tmp_path / "two")
            await asyncio.gather(complete(by_torrent, 60), complete(by_magnet, 60))
            for torrent in (by_torrent, by_magnet):
                assert torrent.hash_failures == 0
                assert torrent.info is not None and torrent.info.v2 is not None
                assert torrent.info.v2.has_piece_layers
    for folder in ("one", "two"):
        assert_same_files(metainfo, payload.root, tmp_path / folder)


@pytest.mark.parametrize("fmt", ["v2", "hybrid"])
async def test_leechers_that_only_know_the_seeder_meet_through_pex(
    tmp_path: Path, fmt: TorrentFormat
) -> None:
    payload = payload_of(tmp_path, fmt, piece_length=16 * 1024)
    seeder = loopback_config(seed=0, upload_limit=1 * MiB)
    async with local_swarm(
        payload, tmp_path / "swarm", leechers=3, mesh="none", seeder_config=seeder
    ) as swarm:
        await swarm.wait_complete(timeout=40)
        uploads = [t.uploaded for t in swarm.torrents]
        assert all(t.hash_failures == 0 for t in swarm.torrents)
    for directory in swarm.leecher_dirs:
        assert_same_files(payload.metainfo, payload.root, directory)
    assert sum(uploads) > 0, f"leechers never met: uploads={uploads}"


async def test_hybrid_magnet_from_a_peer_without_hashes_computes_its_layers(tmp_path: Path) -> None:
    payload = payload_of(tmp_path, "hybrid", piece_length=16 * 1024)
    metainfo = payload.metainfo
    info = metainfo.info
    assert info.v2 is not None and len(info.v2.piece_layers) == 2
    async with Session(loopback_config(seed=1)) as seeder:
        seed = await seeder.add(metainfo, payload.root, seed=True)
        await complete(seed)
        assert seed.hashes.server is not None

        def refuse(request: HashRequest) -> HashReject:
            return HashReject(
                pieces_root=request.pieces_root,
                base_layer=request.base_layer,
                index=request.index,
                length=request.length,
                proof_layers=request.proof_layers,
            )

        seed.hashes.server.respond = refuse  # type: ignore[method-assign]
        async with Session(loopback_config(seed=2)) as middle_session:
            middle = await middle_session.add(
                magnet_of(metainfo, seeder.listen_port), tmp_path / "middle", seed=True
            )
            await complete(middle)
            assert middle.hash_failures == 0
            async with asyncio.timeout(scaled(15)):
                while not (middle.info and middle.info.v2 and middle.info.v2.has_piece_layers):
                    await asyncio.sleep(0.05)
            assert dict(middle.info.v2.piece_layers) == dict(info.v2.piece_layers)
            assert middle.metainfo is not None and middle.metainfo.info.v2 is not None
            assert middle.metainfo.info.v2.has_piece_layers  # the .torrent it would save holds them
            seed.stop("the test")
            await asyncio.wait_for(seed.wait_stopped(), scaled(10))
            async with Session(loopback_config(seed=3)) as last_session:
                uri = magnet_of(metainfo, middle_session.listen_port, v1=False)
                last = await last_session.add(uri, tmp_path / "last")
                await complete(last)
                assert last.hash_failures == 0
    assert_same_files(metainfo, payload.root, tmp_path / "last")
