"""Hash checks of v2 and hybrid torrents (BEP 52): merkle verification, both halves for hybrids,
whole-file verification when a piece layer is missing."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import pytest

from torrentgoat import bencode
from torrentgoat.aio.hasher import PieceHasher
from torrentgoat.config import IOConfig
from torrentgoat.creation import create_torrent
from torrentgoat.errors import UnsupportedV2Error
from torrentgoat.metainfo import InfoDict, Metainfo, parse_info, parse_metainfo
from torrentgoat.storage import FileStorage, MemoryStorage

KiB = 1024
PIECE = 64 * KiB


def make(root: Path, seed: int = 1) -> dict[str, bytes]:
    rng = random.Random(seed)
    files = {
        "big.bin": rng.randbytes(5 * PIECE + 1000),
        "small.bin": rng.randbytes(3000),
        "sub/mid.bin": rng.randbytes(2 * PIECE),
    }
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return files


def torrent(tmp_path: Path, fmt: str, seed: int = 1) -> tuple[Metainfo, Path]:
    root = tmp_path / f"data{seed}" / "model"
    make(root, seed)
    return create_torrent(root, piece_length=PIECE, format=fmt, creation_date=None), root.parent  # type: ignore[arg-type]


def pieces_of(info: InfoDict, parent: Path) -> list[bytes]:
    storage = FileStorage(parent, info, read_only=True)
    try:
        out = []
        for i in range(info.num_pieces):
            piece = storage.read_piece(i)
            assert piece is not None
            out.append(piece)
        return out
    finally:
        storage.close()


@pytest.mark.parametrize("fmt", ["v2", "hybrid"])
async def test_verify_piece_v2_and_hybrid(tmp_path: Path, fmt: str) -> None:
    meta, parent = torrent(tmp_path, fmt)
    info = meta.info
    pieces = pieces_of(info, parent)
    async with PieceHasher(IOConfig(hash_threads=2)) as hasher:
        for index, data in enumerate(pieces):
            assert await hasher.verify_piece(info, index, data), index
            bad = bytearray(data)
            bad[len(bad) // 3] ^= 1
            assert not await hasher.verify_piece(info, index, bytes(bad)), index
        assert not await hasher.verify_piece(info, 0, pieces[0][:-1])
        assert not await hasher.verify_piece(info, info.num_pieces, pieces[0])
    if fmt == "v2":
        # a v2 piece's pad bytes are not hashed (BEP 52 hashes the file's bytes only)
        last_of_big = 5
        assert info.v2 is not None and info.v2.piece_check(last_of_big).data_length == 1000


async def test_hybrid_needs_both_halves_to_agree(tmp_path: Path) -> None:
    """A hybrid whose SHA-1 half describes data A and whose merkle half describes data B (same names and
    sizes, so the file lists agree) verifies neither A nor B: a v1 and a v2 peer would otherwise get
    different bytes."""
    meta_a, parent_a = torrent(tmp_path, "hybrid", seed=1)
    meta_b, parent_b = torrent(tmp_path, "hybrid", seed=2)
    raw_a = bencode.decode(meta_a.info.raw)
    raw_b = bencode.decode(meta_b.info.raw)
    assert isinstance(raw_a, dict) and isinstance(raw_b, dict)
    mixed = {**raw_a, b"file tree": raw_b[b"file tree"]}
    assert meta_b.info.v2 is not None
    info = parse_info(bencode.encode(mixed))
    assert info.v2 is not None
    info = replace(info, v2=info.v2.with_piece_layers(meta_b.info.v2.piece_layers))
    a, b = pieces_of(info, parent_a), pieces_of(info, parent_b)
    async with PieceHasher(IOConfig(hash_threads=2)) as hasher:
        for index in range(info.num_pieces):
            assert not await hasher.verify_piece(info, index, a[index])
            assert not await hasher.verify_piece(info, index, b[index])
        for parent in (parent_a, parent_b):
            result = await hasher.check(info, FileStorage(parent, info, read_only=True))
            assert result.good.count == 0 and result.bad.count == info.num_pieces


@pytest.mark.parametrize("fmt", ["v2", "hybrid"])
@pytest.mark.parametrize("fused", [False, True])
async def test_check_existing_v2(tmp_path: Path, fmt: str, fused: bool) -> None:
    meta, parent = torrent(tmp_path, fmt)
    info = meta.info
    async with PieceHasher(IOConfig(hash_threads=2, check_window=3)) as hasher:
        result = await hasher.check(
            info, FileStorage(parent, info, read_only=True), fused=fused, batch_bytes=PIECE
        )
        assert result.all_good and result.good.count == info.num_pieces and result.piece_layers == {}
        # flip one byte of the big file's third piece; delete the small file
        path = parent / "model" / "big.bin"
        data = bytearray(path.read_bytes())
        data[2 * PIECE + 7] ^= 0xFF
        path.write_bytes(bytes(data))
        (parent / "model" / "small.bin").unlink()
        result = await hasher.check(info, FileStorage(parent, info, read_only=True), fused=fused)
        assert list(result.bad) == [2]
        assert info.v2 is not None
        small = next(f for f in info.v2.files if info.files[f.index].path[-1] == "small.bin")
        assert list(result.missing) == [small.first_piece]


async def test_v2_without_piece_layers_is_verified_file_by_file(tmp_path: Path) -> None:
    meta, parent = torrent(tmp_path, "v2")
    full = meta.info
    assert full.v2 is not None
    bare = parse_info(full.raw)  # what BEP 9 metadata gives: no piece layers
    assert bare.v2 is not None and len(bare.v2.missing_piece_layers()) == 2
    pieces = pieces_of(bare, parent)
    async with PieceHasher(IOConfig(hash_threads=2)) as hasher:
        with pytest.raises(
            UnsupportedV2Error, match=r"^v2 torrent: the piece layer of file \d+ is not known"
        ):
            await hasher.verify_piece(bare, 0, pieces[0])
        small = next(f for f in bare.v2.files if not bare.v2.needs_layer(f))
        assert await hasher.verify_piece(
            bare, small.first_piece, pieces[small.first_piece]
        )  # the root suffices
        storage = FileStorage(parent, bare, read_only=True)
        result = await hasher.check(bare, storage)
        assert result.all_good
        assert result.piece_layers == dict(full.v2.piece_layers)  # derived from the data, and valid
        assert bare.v2.with_piece_layers(result.piece_layers).has_piece_layers
        # part of a file not wanted: its other pieces cannot be verified alone
        partial = await hasher.check(bare, storage, wanted=[0, 1])
        assert partial.good.count == 0 and list(partial.missing) == [0, 1]
        # one corrupt block: every piece of that file is bad (we cannot tell which), others stay good
        path = parent / "model" / "big.bin"
        data = bytearray(path.read_bytes())
        data[100] ^= 1
        path.write_bytes(bytes(data))
        result = await hasher.check(bare, FileStorage(parent, bare, read_only=True))
        big = bare.v2.file_at_piece(0)
        assert set(result.bad) == set(range(big.first_piece, big.end_piece))
        assert result.good.count == bare.num_pieces - big.num_pieces
        assert big.root not in result.piece_layers


async def test_hybrid_without_layers_falls_back_to_sha1(tmp_path: Path) -> None:
    meta, parent = torrent(tmp_path, "hybrid")
    bare = parse_info(meta.info.raw)
    pieces = pieces_of(bare, parent)
    async with PieceHasher(IOConfig(hash_threads=2)) as hasher:
        assert all([await hasher.verify_piece(bare, i, p) for i, p in enumerate(pieces)])
        result = await hasher.check(bare, MemoryStorage.from_payload(bare, b"".join(pieces)))
        assert result.all_good


async def test_libtorrent_v2_fixtures_check_against_their_data() -> None:
    """libtorrent's test torrents describe files of zeros ("test1MB", "test64K"): a v2-only and a hybrid
    one both check out piece by piece against their piece layers; one flipped byte is caught."""
    for name in ("v2_only", "v2_multipiece_file", "v2"):
        path = Path(__file__).parent / "data" / "libtorrent" / f"{name}.torrent"
        info = parse_metainfo(path.read_bytes()).info
        payload = bytearray(info.total_length)
        async with PieceHasher() as hasher:
            result = await hasher.check(info, MemoryStorage.from_payload(info, bytes(payload)))
            assert result.all_good and result.good.count == info.num_pieces, name
            flipped = min(info.piece_length + 5, info.total_length - 1)
            payload[flipped] = 1
            result = await hasher.check(info, MemoryStorage.from_payload(info, bytes(payload)))
            assert list(result.bad) == [flipped // info.piece_length], name
