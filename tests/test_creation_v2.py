"""Creating v2 and hybrid torrents (BEP 52): libtorrent 2.x's info-hashes, layouts and piece layers."""

from __future__ import annotations

import os
import random
import warnings
from pathlib import Path
from typing import Any

import pytest
from conftest import require_libtorrent

from torrentgoat import bencode
from torrentgoat.creation import create_torrent
from torrentgoat.errors import ConfigError, HybridMismatchError
from torrentgoat.merkle import piece_layer, root_of_data
from torrentgoat.metainfo import Metainfo, parse_metainfo

KiB = 1024
MiB = 1024 * KiB


def write(path: Path, size: int, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(random.Random(seed).randbytes(size))
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "model"
    write(root / "config.json", 700, 1)
    write(root / "weights" / "shard-1.bin", 3 * MiB + 5, 2)
    write(root / "weights" / "shard-2.bin", 70_000, 3)
    write(root / "zz.bin", 16 * KiB, 4)
    (root / "empty.txt").write_bytes(b"")
    os.chmod(root / "zz.bin", 0o755)
    return root


def lt_make(lt: Any, path: Path, piece: int, flags: int) -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        fs = lt.file_storage()
        lt.add_files(fs, str(path))
        ct = lt.create_torrent(fs, piece, flags=flags)
        lt.set_piece_hashes(ct, str(path.parent))
        return bytes(lt.bencode(ct.generate()))


def lt_layout(lt: Any, data: bytes) -> list[tuple[str, int, int, bool]]:
    ti = lt.torrent_info(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        fs = ti.files()
    return [
        (fs.file_path(i), fs.file_size(i), fs.file_offset(i), bool(fs.file_flags(i) & fs.flag_pad_file))
        for i in range(fs.num_files())
    ]


def layout(m: Metainfo) -> list[tuple[str, int, int, bool]]:
    return [(os.path.join(*f.path), f.length, f.offset, f.pad) for f in m.info.files]


def test_v2_single_file_structure(tmp_path: Path) -> None:
    path = write(tmp_path / "w.bin", 5 * 64 * KiB + 100)
    m = create_torrent(path, piece_length=64 * KiB, format="v2", creation_date=None)
    info = m.info
    assert info.format == "v2" and info.pieces == b"" and info.single_file
    assert info.v2 is not None and info.v2.has_piece_layers
    data = path.read_bytes()
    (file,) = info.v2.files
    assert file.root == root_of_data(data) and file.num_pieces == 6 and file.first_piece == 0
    from torrentgoat.merkle import block_hashes

    assert info.v2.piece_layers[file.root] == piece_layer(block_hashes(data), 64 * KiB)
    # libtorrent's v2 layout: the single file is followed by a pad up to the piece boundary
    assert [(f.path, f.length, f.pad) for f in info.files] == [
        (("w.bin",), len(data), False),
        (("w.bin", ".pad", str(64 * KiB - 100)), 64 * KiB - 100, True),
    ]
    assert info.total_length == 6 * 64 * KiB and info.num_pieces == 6
    raw = bencode.decode(m.to_bytes())
    assert isinstance(raw, dict) and b"piece layers" in raw
    again = parse_metainfo(m.to_bytes())
    assert again.info_hashes == m.info_hashes and again.info.v2 is not None and again.info.v2.has_piece_layers


def test_hybrid_folder_structure(folder: Path) -> None:
    m = create_torrent(folder, piece_length=64 * KiB, format="hybrid", creation_date=None)
    info = m.info
    assert info.format == "hybrid" and info.info_hashes.v1 == info.info_hash and info.v2 is not None
    real = [f for f in info.files if not f.pad]
    assert [f.path_str for f in real] == [
        "model/config.json",
        "model/empty.txt",
        "model/weights/shard-1.bin",
        "model/weights/shard-2.bin",
        "model/zz.bin",
    ]
    for f in info.files:
        if f.length and not f.pad:
            assert f.offset % info.piece_length == 0, f
    assert info.total_length % info.piece_length == 0  # tail padding (libtorrent >= 2.0.8)
    assert [f.attr for f in real][-1] == "x"


def test_formats_refuse_turning_pads_off(folder: Path) -> None:
    for fmt in ("v2", "hybrid"):
        with pytest.raises(ConfigError, match="pad"):
            create_torrent(folder, pad=False, format=fmt)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="format"):
        create_torrent(folder, format="v3")  # type: ignore[arg-type]


@pytest.mark.interop
@pytest.mark.parametrize("piece", [16 * KiB, 64 * KiB, 1 * MiB])
@pytest.mark.parametrize("fmt", ["hybrid", "v2"])
@pytest.mark.parametrize("kind", ["single", "folder"])
def test_same_info_hashes_as_libtorrent(folder: Path, piece: int, fmt: str, kind: str) -> None:
    """Issue 12: for a file and a folder, hybrid and v2 give libtorrent 2.x's info-hashes."""
    lt = require_libtorrent()
    path = folder if kind == "folder" else folder / "weights" / "shard-1.bin"
    flags = lt.create_torrent.v2_only if fmt == "v2" else 0
    theirs = lt_make(lt, path, piece, flags)
    ours = create_torrent(path, piece_length=piece, format=fmt, creation_date=None)  # type: ignore[arg-type]
    lt_hashes = lt.torrent_info(theirs).info_hashes()
    assert ours.info_hashes.v2 is not None and str(lt_hashes.v2) == ours.info_hashes.v2.hex
    if fmt == "hybrid":
        assert ours.info_hashes.v1 is not None and str(lt_hashes.v1) == ours.info_hashes.v1.hex
    else:
        assert not lt_hashes.has_v1() and ours.info_hashes.v1 is None
    # the info dictionaries are byte for byte the same, and so are the piece layers
    parsed = parse_metainfo(theirs)
    assert parsed.info.raw == ours.info.raw
    assert parsed.info.v2 is not None and ours.info.v2 is not None
    assert dict(parsed.info.v2.piece_layers) == dict(ours.info.v2.piece_layers)
    # each reads the other's torrent with the same files, pads and offsets
    assert lt_layout(lt, ours.to_bytes()) == layout(parsed) == layout(ours)
    assert lt.torrent_info(ours.to_bytes()).info_hashes() == lt_hashes


@pytest.mark.interop
def test_libtorrents_own_inconsistent_hybrid_is_refused_ours_is_not(tmp_path: Path) -> None:
    """INTEROP-NOTES: libtorrent 2.1.1 sorts ``tokenizer.json`` before ``tokenizer/`` in its v1 list but the
    v2 file tree (a bencoded dictionary) puts ``tokenizer`` first, so its own hybrid has halves that disagree.
    We refuse it as libtorrent does; ours sorts by path components, so its halves agree and libtorrent
    reads it."""
    lt = require_libtorrent()
    root = tmp_path / "tok"
    write(root / "tokenizer.json", 1000, 1)
    write(root / "tokenizer" / "vocab.txt", 2000, 2)
    theirs = lt_make(lt, root, 16 * KiB, 0)
    with pytest.raises(HybridMismatchError, match="disagree"):
        parse_metainfo(theirs)
    ours = create_torrent(root, piece_length=16 * KiB, format="hybrid", creation_date=None)
    assert [f.path_str for f in ours.info.files if not f.pad] == [
        "tok/tokenizer/vocab.txt",
        "tok/tokenizer.json",
    ]
    ti = lt.torrent_info(ours.to_bytes())
    assert str(ti.info_hashes().v1) == ours.info_hash.hex


@pytest.mark.interop
@pytest.mark.parametrize("fmt", ["v1", "hybrid", "v2"])
def test_folder_holding_one_file_as_libtorrent_makes_and_reads_it(tmp_path: Path, fmt: str) -> None:
    """A folder holding a single file: the same info dictionary as libtorrent 2.1's create_torrent, and the
    same reading.  v1 and hybrid: a multi-file torrent named by the folder, the file at
    ``<folder>/<file>``.  v2 only: ``name`` is the folder's but the file tree holds one file at its top,
    which libtorrent (and BEP 52's tree) reads as a single-file torrent named by the file, at ``<file>``
    in the download directory -- so it is seeded from inside the folder."""
    lt = require_libtorrent()
    folder = tmp_path / "data" / "folder"
    write(folder / "model.bin", 100_000, 5)
    flags = {"v1": lt.create_torrent.v1_only, "v2": lt.create_torrent.v2_only, "hybrid": 0}[fmt]
    theirs = lt_make(lt, folder, 16 * KiB, flags)
    ours = create_torrent(folder, piece_length=16 * KiB, format=fmt, creation_date=None)  # type: ignore[arg-type]
    assert parse_metainfo(theirs).info.raw == ours.info.raw
    assert lt_layout(lt, ours.to_bytes()) == layout(ours)
    info = ours.info
    assert info.name == lt.torrent_info(ours.to_bytes()).name()
    (real,) = [f for f in info.files if not f.pad]
    if fmt == "v2":
        assert info.single_file and info.name == "model.bin" and real.path == ("model.bin",)
    else:
        assert not info.single_file and info.name == "folder" and real.path == ("folder", "model.bin")
    for f in info.files:
        assert f.pad or f.path == (info.name,) or f.path[0] == info.name
