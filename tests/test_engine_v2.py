"""BEP 52 in torrentgoat-only swarms on 127.0.0.1: v2 and hybrid torrents over the wire.

* a v2-only magnet (``btmh``): the metadata is checked by SHA-256, the piece layers come from the seed by
  ``hash request`` (runs of 512, so files of 513 and 1025 pieces take several), and only then are the
  pieces of each file requested and checked against its merkle tree;
* a hybrid magnet: pieces are checked by SHA-1 until the layers arrive, and the layers arrive too (so the
  leecher can answer v2 peers' hash requests);
* a hybrid seed answers handshakes under either info-hash (v1 and the truncated SHA-256);
* a peer sending hashes or proofs that do not lead to the root is banned, for piece layers and for
  ``Torrent.fetch_hashes`` alike;
* ``Torrent.fetch_hashes``: block hashes (layer 0) and piece-layer hashes proved against the file's root,
  across run boundaries, from a peer or from our own tree.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

from torrentgoat.creation import create_torrent
from torrentgoat.errors import HashesUnavailableError
from torrentgoat.infohashes import TorrentFormat
from torrentgoat.magnet import Magnet
from torrentgoat.merkle import BLOCK_SIZE, MerkleTree, block_hashes, piece_height, split_hashes
from torrentgoat.metainfo import Metainfo
from torrentgoat.primitives import PeerAddress
from torrentgoat.session import Session
from torrentgoat.testing.swarm import MiB, assert_same_files, describe, loopback_config
from torrentgoat.testing.timing import scaled
from torrentgoat.torrent import PeerBanned, Torrent
from torrentgoat.wire.hashes import Hashes, HashReject, HashRequest, HashServer


def make_payload(
    base: Path, sizes: dict[str, int], *, fmt: TorrentFormat, piece_length: int
) -> tuple[Metainfo, Path]:
    """A folder of files of pseudo-random bytes and its torrent (``fmt``); returns it and the seed root."""
    root = base / "seed"
    folder = root / "payload"
    folder.mkdir(parents=True)
    for index, (name, size) in enumerate(sorted(sizes.items())):
        data = bytes((i * 131 + index * 7 + (i >> 12)) & 0xFF for i in range(min(size, 1 << 16)))
        with (folder / name).open("wb") as handle:
            left = size
            while left:
                chunk = data[: min(left, len(data))]
                handle.write(chunk)
                left -= len(chunk)
    metainfo = create_torrent(folder, piece_length=piece_length, format=fmt, creation_date=None)
    return metainfo, root


async def complete(torrent: Torrent, timeout: float = 30.0) -> None:
    timeout = scaled(timeout)
    try:
        await asyncio.wait_for(torrent.wait_complete(), timeout)
    except TimeoutError:
        raise AssertionError(f"not complete after {timeout} s: {describe(torrent)}") from None


def magnet_of(metainfo: Metainfo, port: int, *, v1: bool = True) -> str:
    magnet = Magnet.from_metainfo(metainfo)
    return dataclasses.replace(
        magnet,
        info_hash=magnet.info_hash if v1 else None,
        trackers=(),
        peers=(PeerAddress("127.0.0.1", port),),
    ).to_uri()


SIZES = {
    "a-513.bin": 513 * BLOCK_SIZE - 100,  # 513 pieces: two piece-layer runs (512 + a run of 2)
    "b-1025.bin": 1025 * BLOCK_SIZE,  # 1025 pieces: three runs
    "c-small.json": 3000,  # one piece: no layer needed
}


async def test_v2_magnet_fetches_piece_layers_then_pieces(tmp_path: Path) -> None:
    metainfo, root = make_payload(tmp_path, SIZES, fmt="v2", piece_length=BLOCK_SIZE)
    assert metainfo.info.format == "v2"
    async with Session(loopback_config(seed=1)) as seeder, Session(loopback_config(seed=2)) as leecher:
        seed = await seeder.add(metainfo, root, seed=True)
        await complete(seed)
        uri = magnet_of(metainfo, seeder.listen_port, v1=False)
        assert "btih" not in uri
        torrent = await leecher.add(uri, tmp_path / "down")
        info = await asyncio.wait_for(torrent.wait_metadata(), scaled(10))
        assert info.raw == metainfo.info.raw and not info.v2.has_piece_layers  # type: ignore[union-attr]
        await complete(torrent)
        assert torrent.hash_failures == 0
        assert torrent.info is not None and torrent.info.v2 is not None
        assert dict(torrent.info.v2.piece_layers) == dict(metainfo.info.v2.piece_layers)  # type: ignore[union-attr]
    assert_same_files(metainfo, root, tmp_path / "down")


async def test_hybrid_magnet_gets_layers_and_seed_answers_both_info_hashes(tmp_path: Path) -> None:
    metainfo, root = make_payload(
        tmp_path, {"x.bin": 40 * BLOCK_SIZE + 5}, fmt="hybrid", piece_length=BLOCK_SIZE
    )
    hashes = metainfo.info_hashes
    assert hashes.v1 is not None and hashes.v2 is not None
    async with (
        Session(loopback_config(seed=1)) as seeder,
        Session(loopback_config(seed=2)) as one,
        Session(loopback_config(seed=3)) as two,
    ):
        seed = await seeder.add(metainfo, root, seed=True)
        await complete(seed)
        assert (
            seeder.torrent_for(hashes.v1.raw) is seed and seeder.torrent_for(hashes.v2.truncated.raw) is seed
        )
        by_v1 = await one.add(magnet_of(metainfo, seeder.listen_port), tmp_path / "one")
        by_v2 = await two.add(magnet_of(metainfo, seeder.listen_port, v1=False), tmp_path / "two")
        assert by_v2.info_hash == hashes.v2.truncated  # dials the v2 swarm id
        for torrent in (by_v1, by_v2):
            await complete(torrent)
            assert torrent.hash_failures == 0
            assert torrent.info is not None and torrent.info.v2 is not None
            assert torrent.info.v2.has_piece_layers  # fetched from the seed (the connection was upgraded)
    for folder in ("one", "two"):
        assert_same_files(metainfo, root, tmp_path / folder)


@pytest.mark.parametrize("fmt", ["v2", "hybrid"])
async def test_fetch_hashes_from_a_peer_and_from_our_tree(tmp_path: Path, fmt: TorrentFormat) -> None:
    piece_length = 4 * BLOCK_SIZE
    metainfo, root = make_payload(
        tmp_path, {"big.bin": 9 * MiB + 123, "tiny.txt": 10}, fmt=fmt, piece_length=piece_length
    )
    folder = root / "payload"
    leaves = block_hashes((folder / "big.bin").read_bytes())
    tree = MerkleTree.from_leaves(leaves, piece_length)
    info = metainfo.info
    assert info.v2 is not None
    big = next(f for f in info.v2.files if info.files[f.index].path[-1] == "big.bin")
    slow = loopback_config(seed=2, download_limit=256 * 1024)  # still downloading while we ask
    async with Session(loopback_config(seed=1)) as seeder, Session(slow) as leecher:
        seed = await seeder.add(metainfo, root, seed=True)
        await complete(seed)
        torrent = await leecher.add(metainfo, tmp_path / "down", peers=[f"127.0.0.1:{seeder.listen_port}"])
        got = await asyncio.wait_for(torrent.fetch_hashes(big.index, 0, 3, 570), scaled(20))
        assert got == split_hashes(leaves[3 * 32 : 573 * 32])
        level = piece_height(piece_length)
        layer = tree.layer(level)
        assert layer is not None
        got = await asyncio.wait_for(torrent.fetch_hashes(big.index, level, 0, big.num_pieces), scaled(20))
        assert b"".join(got) == layer
        top = await torrent.fetch_hashes(big.index, tree.height, 0, 1)
        assert top == [big.root]
        # the seed answers from its own tree
        assert await seed.fetch_hashes(big.index, 1, 5, 3) == [tree.node(1, i) for i in range(5, 8)]
        with pytest.raises(ValueError):
            await torrent.fetch_hashes(big.index, 0, 0, big.blocks + 1)


def _corrupt(server: HashServer, *, proof_only: bool) -> None:
    """Make ``server`` answer with a flipped base hash (or a flipped uncle: a bad proof)."""
    respond = server.respond

    def bad(request: HashRequest) -> Hashes | HashReject:
        reply = respond(request)
        if not isinstance(reply, Hashes):
            return reply
        at = len(reply.hashes) - 1 if proof_only else 0
        data = bytearray(reply.hashes)
        data[at] ^= 0xFF
        return dataclasses.replace(reply, hashes=bytes(data))

    server.respond = bad  # type: ignore[method-assign]


@pytest.mark.parametrize("proof_only", [False, True], ids=["bad-hashes", "bad-proof"])
async def test_a_peer_sending_bad_hashes_is_banned(tmp_path: Path, proof_only: bool) -> None:
    """Piece layers that do not prove against the root ban the peer (like bad data), and nothing is
    downloaded from it; the same for :meth:`Torrent.fetch_hashes`."""
    sizes = {"x.bin": 40 * BLOCK_SIZE + 5, "y.txt": 10}
    metainfo, root = make_payload(tmp_path, sizes, fmt="v2", piece_length=BLOCK_SIZE)
    async with Session(loopback_config(seed=1)) as seeder, Session(loopback_config(seed=2)) as leecher:
        seed = await seeder.add(metainfo, root, seed=True)
        await complete(seed)
        assert seed.hashes.server is not None
        _corrupt(seed.hashes.server, proof_only=proof_only)
        torrent = await leecher.add(magnet_of(metainfo, seeder.listen_port, v1=False), tmp_path / "down")
        events = torrent.events()
        banned = None
        async with asyncio.timeout(scaled(20)):
            async for event in events:
                if isinstance(event, PeerBanned):
                    banned = event
                    break
        assert banned is not None and banned.address.port == seeder.listen_port
        assert "pieces root" in banned.reason or "prove" in banned.reason
        assert torrent.counters.verified == 0 and torrent.info is not None
        assert not torrent.info.v2.has_piece_layers  # type: ignore[union-attr]
        # fetch_hashes: a second torrent (by .torrent) asks the same corrupt seed
    async with (
        Session(loopback_config(seed=3)) as seeder,
        Session(loopback_config(seed=4, download_limit=64 * 1024)) as leecher,
    ):
        seed = await seeder.add(metainfo, root, seed=True)
        await complete(seed)
        assert seed.hashes.server is not None
        _corrupt(seed.hashes.server, proof_only=proof_only)
        torrent = await leecher.add(metainfo, tmp_path / "down2", peers=[f"127.0.0.1:{seeder.listen_port}"])
        file = metainfo.info.v2.files[0]  # type: ignore[union-attr]
        with pytest.raises(HashesUnavailableError):
            await torrent.fetch_hashes(file.index, 0, 0, 8, timeout=scaled(5))
        assert PeerAddress("127.0.0.1", seeder.listen_port) in torrent.pool.banned
