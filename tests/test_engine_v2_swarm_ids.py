"""A hybrid torrent's two swarm ids (BEP 52) in torrentgoat-only swarms on 127.0.0.1.

* a peer found under the v2 id (a tracker's, the DHT's or LSD's answer to the truncated SHA-256) is
  dialled with that id -- a client that knows the torrent only by its v2 id would refuse the v1 one --
  and one found under both ids with the v1 id and the upgrade bit;
* a ``btih``-only magnet that turns out hybrid registers its v2 id once the metadata arrives: the session
  answers handshakes and MSE under it, and the torrent announces it to its trackers.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

from tests.test_engine_v2 import complete, make_payload
from torrentgoat.magnet import Magnet
from torrentgoat.merkle import BLOCK_SIZE
from torrentgoat.mse import EncryptionPolicy, MSEConfig
from torrentgoat.primitives import InfoHash, PeerAddress, PeerId
from torrentgoat.session import Session
from torrentgoat.testing.swarm import assert_same_files, loopback_config
from torrentgoat.testing.timing import scaled
from torrentgoat.testing.tracker import LoopbackTracker
from torrentgoat.torrent.peers import CandidatePool

V1 = InfoHash(b"\x01" * 20)
V2 = InfoHash(b"\x02" * 20)


def test_candidate_keeps_the_id_it_was_found_under_until_found_under_both() -> None:
    pool = CandidatePool()
    a, b = PeerAddress("10.0.0.1", 1), PeerAddress("10.0.0.2", 2)
    assert pool.add(a, "tracker", V2)
    assert pool.add(b, "dht")
    assert pool.candidates[a].swarm_id == V2 and pool.candidates[b].swarm_id is None
    assert not pool.add(a, "dht", V2)
    assert pool.candidates[a].swarm_id == V2
    assert not pool.add(a, "tracker")  # under the torrent's own id too: that one reaches it
    assert pool.candidates[a].swarm_id is None
    assert not pool.add(b, "tracker", V2)
    assert pool.candidates[b].swarm_id is None


async def test_a_peer_found_under_the_v2_id_is_dialled_with_it(tmp_path: Path) -> None:
    """The tracker lists a recorder (it keeps the handshake it gets) and the seed under the v2 id only:
    both get a handshake naming the truncated SHA-256, and the download runs in the v2 swarm."""
    metainfo, root = make_payload(
        tmp_path, {"x.bin": 30 * BLOCK_SIZE + 9}, fmt="hybrid", piece_length=BLOCK_SIZE
    )
    hashes = metainfo.info_hashes
    assert hashes.v1 is not None and hashes.v2 is not None
    v2 = hashes.v2.truncated
    handshakes: list[bytes] = []
    got = asyncio.Event()

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            handshakes.append(await reader.readexactly(68))
            got.set()
        finally:
            writer.close()

    server = await asyncio.start_server(record, "127.0.0.1", 0)
    recorder = PeerAddress("127.0.0.1", server.sockets[0].getsockname()[1])
    plain = MSEConfig(policy=EncryptionPolicy.DISABLE)  # the recorder reads a plain handshake
    async with server, LoopbackTracker(interval=60, min_interval=1) as tracker:
        metainfo = dataclasses.replace(metainfo, announce_tiers=((tracker.http_url,),))
        async with Session(loopback_config(seed=1)) as seeder:  # announces nowhere (trackers off)
            seed = await seeder.add(metainfo, root, seed=True)
            await complete(seed)
            tracker.add_peer(
                v2, PeerAddress("127.0.0.1", seeder.listen_port), peer_id=PeerId(b"-XX0000-seed00000000")
            )
            tracker.add_peer(v2, recorder, peer_id=PeerId(b"-XX0000-recorder0000"))
            config = dataclasses.replace(loopback_config(seed=2), enable_trackers=True, encryption=plain)
            async with Session(config) as leecher:
                torrent = await leecher.add(metainfo, tmp_path / "down")
                await asyncio.wait_for(got.wait(), scaled(15))
                assert handshakes[0][28:48] == v2.raw
                assert handshakes[0][1:20] == b"BitTorrent protocol"
                await complete(torrent)
                assert torrent.hash_failures == 0
                assert seed.uploaded > 0
    assert_same_files(metainfo, root, tmp_path / "down")


async def test_btih_magnet_of_a_hybrid_registers_its_v2_id(tmp_path: Path) -> None:
    """After the metadata, the leecher of a ``btih``-only magnet is found by the v2 id: a third peer with a
    ``btmh``-only magnet (MSE first, keyed by the v2 id) downloads from it alone, and it announces the v2
    id to the magnet's tracker."""
    metainfo, root = make_payload(
        tmp_path, {"x.bin": 30 * BLOCK_SIZE + 9}, fmt="hybrid", piece_length=BLOCK_SIZE
    )
    hashes = metainfo.info_hashes
    assert hashes.v1 is not None and hashes.v2 is not None
    v2 = hashes.v2.truncated
    async with (
        LoopbackTracker(interval=60, min_interval=1) as tracker,
        Session(loopback_config(seed=1)) as seeder,
    ):
        seed = await seeder.add(metainfo, root, seed=True)
        await complete(seed)
        config = dataclasses.replace(loopback_config(seed=2), enable_trackers=True)
        btih = Magnet(
            info_hash=hashes.v1,
            trackers=(tracker.http_url,),
            peers=(PeerAddress("127.0.0.1", seeder.listen_port),),
        ).to_uri()
        assert "btmh" not in btih
        async with Session(config) as middle:
            torrent = await middle.add(btih, tmp_path / "middle", seed=True)
            assert middle.torrent_for(v2.raw) is None  # not known before the metadata
            await complete(torrent)
            assert middle.torrent_for(v2.raw) is torrent and middle.torrent_for(hashes.v1.raw) is torrent
            await tracker.wait_for(
                lambda a: a.request.info_hash == v2 and a.request.port == middle.listen_port,
                timeout=scaled(10),
            )
            seed.stop("the test")  # the middle one is the only source now
            await asyncio.wait_for(seed.wait_stopped(), scaled(10))
            btmh = Magnet(
                info_hash_v2=hashes.v2, peers=(PeerAddress("127.0.0.1", middle.listen_port),)
            ).to_uri()
            assert "btih" not in btmh
            async with Session(loopback_config(seed=3)) as last:
                third = await last.add(btmh, tmp_path / "last")
                assert third.info_hash == v2
                await complete(third)
                assert third.hash_failures == 0
    assert_same_files(metainfo, root, tmp_path / "last")
