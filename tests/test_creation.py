"""Torrent creation: layout, pads, piece hashes, refusals, and interop with libtorrent and mktorrent."""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import warnings
from pathlib import Path
from typing import Any

import pytest
from conftest import require_binary, require_libtorrent

from torrentgoat import bencode
from torrentgoat.creation import (
    AUTO_MAX_PIECE_LENGTH,
    DEFAULT_CREATED_BY,
    auto_piece_length,
    create_torrent,
    scan_files,
)
from torrentgoat.errors import ConfigError, StorageError, UnsafePathError
from torrentgoat.metainfo import InfoDict, Metainfo, parse_metainfo

KiB = 1024
MiB = 1024 * 1024


def write(path: Path, size: int, seed: int = 0, mode: int = 0o644) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = random.Random(seed * 1_000_003 + size).randbytes(size)
    path.write_bytes(data)
    path.chmod(mode)
    return data


def stream_of(info: InfoDict, root: Path) -> bytes:
    """The torrent's concatenated data read back from ``root`` (pad files as zeros)."""
    parts = []
    for f in info.files:
        if f.pad:
            parts.append(bytes(f.length))
        elif info.single_file:
            parts.append(root.read_bytes())
        else:
            parts.append(root.joinpath(*f.path[1:]).read_bytes())
    return b"".join(parts)


def check_pieces(info: InfoDict, root: Path) -> None:
    data = stream_of(info, root)
    assert len(data) == info.total_length
    for i in range(info.num_pieces):
        start = i * info.piece_length
        assert hashlib.sha1(data[start : start + info.piece_length]).digest() == info.piece_hash(i), i


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "model"
    write(root / "config.json", 700, 1)
    write(root / "weights" / "part-00001.safetensors", 100_000, 2)
    write(root / "weights" / "part-00002.safetensors", 3 * 16 * KiB, 3)  # ends piece-aligned
    write(root / ".hidden", 5, 4)
    write(root / "empty", 0, 5)
    write(root / "z-last.txt", 10, 6)
    return root


# ------------------------------------------------------------------------------------ piece length


def test_auto_piece_length_rule() -> None:
    assert auto_piece_length(1) == 16 * KiB
    assert auto_piece_length(2048 * 16 * KiB) == 16 * KiB
    assert auto_piece_length(2048 * 16 * KiB + 1) == 32 * KiB
    assert auto_piece_length(500 * MiB) == 256 * KiB
    assert auto_piece_length(32 * 1024 * MiB) == 16 * MiB
    assert auto_piece_length(140 * 1000 * MiB) == AUTO_MAX_PIECE_LENGTH
    for total in (1, 10**6, 10**8, 10**9, 10**10, 10**11):
        piece = auto_piece_length(total)
        assert piece & (piece - 1) == 0 and 16 * KiB <= piece <= 16 * MiB
        count = -(-total // piece)
        assert count <= 2048 or piece == 16 * MiB
        assert piece == 16 * KiB or -(-total // (piece // 2)) > 2048  # smallest that fits


@pytest.mark.parametrize("bad", [0, -16384, 1000, 3 * 16 * KiB, 8 * KiB, 256 * MiB])
def test_bad_piece_length(tmp_path: Path, bad: int) -> None:
    write(tmp_path / "f", 10)
    with pytest.raises(ConfigError, match="power of two"):
        create_torrent(tmp_path / "f", piece_length=bad)


# ------------------------------------------------------------------------------------------ layout


def test_single_file(tmp_path: Path) -> None:
    write(tmp_path / "model.bin", 100_000)
    m = create_torrent(tmp_path / "model.bin", piece_length=32 * KiB, creation_date=None)
    info = m.info
    assert info.single_file and info.name == "model.bin" and info.num_pieces == 4
    assert bencode.decode(info.raw) == {
        b"length": 100_000,
        b"name": b"model.bin",
        b"piece length": 32 * KiB,
        b"pieces": info.pieces,
    }
    assert m.created_by == DEFAULT_CREATED_BY and m.creation_date is None
    check_pieces(info, tmp_path / "model.bin")


def test_directory_order_pads_and_hashes(tree: Path) -> None:
    m = create_torrent(tree, piece_length=16 * KiB)
    info = m.info
    layout = [(f.path_str, f.length, f.offset, f.attr) for f in info.files]
    assert layout == [
        ("model/.hidden", 5, 0, ""),
        ("model/.pad/16379", 16379, 5, "p"),
        ("model/config.json", 700, 16384, ""),
        ("model/empty", 0, 17084, ""),
        ("model/.pad/15684", 15684, 17084, "p"),
        ("model/weights/part-00001.safetensors", 100_000, 32768, ""),
        ("model/.pad/14688", 14688, 132768, "p"),
        ("model/weights/part-00002.safetensors", 49152, 147456, ""),
        ("model/z-last.txt", 10, 196608, ""),  # no pad after the last file
    ]
    # every non-empty file starts on a piece boundary
    assert all(f.offset % info.piece_length == 0 for f in info.files if not f.pad and f.length)
    check_pieces(info, tree)
    assert parse_metainfo(m.to_bytes()) == m


def test_component_order_keeps_directories_together(tmp_path: Path) -> None:
    root = tmp_path / "t"
    for name in ("a.b", "a/b", "a/c/d", "a-", "B", "a0"):
        write(root / name, 3)
    m = create_torrent(root, pad=False)
    assert [f.path_str for f in m.info.files] == ["t/B", "t/a/b", "t/a/c/d", "t/a-", "t/a.b", "t/a0"]
    assert [tuple(f.components) for f in scan_files(root)] == [
        ("B",),
        ("a", "b"),
        ("a", "c", "d"),
        ("a-",),
        ("a.b",),
        ("a0",),
    ]


def test_default_name_is_the_normalised_base_name(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert create_torrent(tree / "weights" / "..").info.name == "model"
    monkeypatch.chdir(tree)
    assert create_torrent(".").info.name == "model"


def test_no_pad(tree: Path) -> None:
    info = create_torrent(tree, piece_length=16 * KiB, pad=False).info
    assert not any(f.pad for f in info.files)
    assert info.total_length == sum(f.length for f in info.files) == 700 + 100_000 + 49152 + 5 + 10
    check_pieces(info, tree)


def test_metadata_fields(tree: Path) -> None:
    m = create_torrent(
        tree,
        trackers=[
            ["http://127.0.0.1:1/a", "http://127.0.0.1:2/a"],
            "udp://127.0.0.1:3",
            [],
            ["http://127.0.0.1:1/a"],
        ],
        web_seeds=["http://127.0.0.1:4/", "http://127.0.0.1:4/", " "],
        private=True,
        name="renamed",
        comment="for tests",
        created_by="me",
        creation_date=1_700_000_000,
    )
    assert m.announce_tiers == (("http://127.0.0.1:1/a", "http://127.0.0.1:2/a"), ("udp://127.0.0.1:3",))
    assert m.web_seeds == ("http://127.0.0.1:4/",)
    assert m.info.private and m.info.name == "renamed" and m.info.files[0].path[0] == "renamed"
    assert (m.comment, m.created_by, m.creation_date) == ("for tests", "me", 1_700_000_000)
    assert parse_metainfo(m.to_bytes()) == m
    assert isinstance(create_torrent(tree).creation_date, int)


def test_executable_attr(tmp_path: Path) -> None:
    write(tmp_path / "d" / "run.sh", 10, mode=0o755)
    write(tmp_path / "d" / "data", 10)
    info = create_torrent(tmp_path / "d", pad=False).info
    assert [(f.path[-1], f.attr) for f in info.files] == [("data", ""), ("run.sh", "x")]


@pytest.mark.parametrize("threads", [1, 3])
def test_large_file_multi_chunk_and_threads(tmp_path: Path, threads: int) -> None:
    """Several 4 MiB read chunks, a short last piece, and identical output whatever the thread count."""
    write(tmp_path / "big" / "a", 9 * MiB + 12345, 7)
    write(tmp_path / "big" / "b", 1 * MiB + 1, 8)
    seen: list[tuple[int, int]] = []
    m = create_torrent(
        tmp_path / "big",
        piece_length=64 * KiB,
        threads=threads,
        creation_date=None,
        progress=lambda done, total: seen.append((done, total)),
    )
    check_pieces(m.info, tmp_path / "big")
    assert seen[-1] == (m.info.total_length, m.info.total_length)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen) and len(seen) >= 3
    big_piece = create_torrent(tmp_path / "big", piece_length=8 * MiB, threads=threads)
    check_pieces(big_piece.info, tmp_path / "big")
    assert create_torrent(tmp_path / "big", piece_length=64 * KiB, threads=0, creation_date=None) == m


# ---------------------------------------------------------------------------------------- refusals


def test_symlinks_refused_unless_followed(tmp_path: Path) -> None:
    root = tmp_path / "d"
    write(root / "real", 100)
    (root / "link").symlink_to(root / "real")
    with pytest.raises(StorageError, match="symbolic link"):
        create_torrent(root)
    m = create_torrent(root, follow_symlinks=True, pad=False)
    assert [f.path_str for f in m.info.files] == ["d/link", "d/real"]
    check_pieces(m.info, root)
    with pytest.raises(StorageError, match="symbolic link"):
        create_torrent(root / "link")
    assert create_torrent(root / "link", follow_symlinks=True).info.total_length == 100


def test_symlink_cycle_refused(tmp_path: Path) -> None:
    root = tmp_path / "d"
    write(root / "sub" / "f", 10)
    (root / "sub" / "loop").symlink_to(root)
    with pytest.raises(StorageError, match="cycle"):
        create_torrent(root, follow_symlinks=True)


def test_special_files_refused(tmp_path: Path) -> None:
    root = tmp_path / "d"
    write(root / "f", 10)
    os.mkfifo(root / "fifo")
    with pytest.raises(StorageError, match="not a regular file"):
        create_torrent(root)


def test_nothing_to_share(tmp_path: Path) -> None:
    (tmp_path / "empty-dir").mkdir()
    with pytest.raises(ConfigError, match="no bytes"):
        create_torrent(tmp_path / "empty-dir")
    write(tmp_path / "zeros" / "a", 0)
    with pytest.raises(ConfigError, match="no bytes"):
        create_torrent(tmp_path / "zeros")
    with pytest.raises(StorageError, match="cannot read"):
        create_torrent(tmp_path / "missing")


def test_unsafe_or_undecodable_names_refused(tmp_path: Path) -> None:
    root = tmp_path / "d"
    write(root / "ok", 10)
    write(root / "back\\slash", 10)
    with pytest.raises(UnsafePathError, match="separator"):
        create_torrent(root)
    (root / "back\\slash").unlink()
    fd = os.open(os.path.join(os.fsencode(root), b"bad\xff"), os.O_CREAT | os.O_WRONLY)
    os.close(fd)
    with pytest.raises(StorageError, match="UTF-8"):
        create_torrent(root)
    with pytest.raises(UnsafePathError):
        create_torrent(tmp_path / "d" / "ok", name="../evil")


@pytest.mark.parametrize(
    ("files", "names"),
    [(["README.md", "readme.md"], "'README.md' and 'readme.md'"), (["W/x", "w"], "'W' and 'w'")],
)
def test_names_equal_ignoring_case_refused(tmp_path: Path, files: list[str], names: str) -> None:
    """One file on macOS / Windows, and renamed by every client (metainfo): the folder could not
    seed its own torrent."""
    root = tmp_path / "d"
    for name in files:
        write(root / name, 10)
    with pytest.raises(UnsafePathError, match=f"{names} differ only in case"):
        create_torrent(root)


def test_file_changing_while_hashed_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "f"
    write(path, 20 * MiB)

    def shrink(done: int, total: int) -> None:
        if done < total:
            os.truncate(path, 1)

    with pytest.raises(StorageError, match="shrank"):
        create_torrent(path, piece_length=MiB, threads=1, progress=shrink)
    write(path, 20 * MiB)

    def grow(done: int, total: int) -> None:
        if done == 4 * MiB:
            with path.open("ab") as handle:
                handle.write(b"more")

    with pytest.raises(StorageError, match="changed size"):
        create_torrent(path, piece_length=MiB, threads=1, progress=grow)


# ----------------------------------------------------------------------------------------- interop


def lt_make(lt: Any, path: Path, piece: int, flags: int, trackers: tuple[str, ...] = ()) -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        fs = lt.file_storage()
        lt.add_files(fs, str(path))
        ct = lt.create_torrent(fs, piece, flags=flags)
        for tier, url in enumerate(trackers):
            ct.add_tracker(url, tier)
        lt.set_piece_hashes(ct, str(path.parent))
        return bytes(lt.bencode(ct.generate()))


def lt_files(lt: Any, data: bytes) -> tuple[str, list[tuple[str, int, int, bool]]]:
    ti = lt.torrent_info(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        fs = ti.files()
    files = [
        (fs.file_path(i), fs.file_size(i), fs.file_offset(i), bool(fs.file_flags(i) & fs.flag_pad_file))
        for i in range(fs.num_files())
    ]
    return str(ti.info_hashes().v1), files


def our_files(m: Metainfo) -> list[tuple[str, int, int, bool]]:
    return [(f.path_str, f.length, f.offset, f.pad) for f in m.info.files]


@pytest.mark.interop
@pytest.mark.parametrize("piece", [16 * KiB, 32 * KiB, 256 * KiB, 4 * MiB])
@pytest.mark.parametrize("size", [1, 16 * KiB, 100_000, 5 * MiB + 3])
def test_single_file_info_hash_equals_libtorrent(tmp_path: Path, piece: int, size: int) -> None:
    lt = require_libtorrent()
    path = tmp_path / "weights.safetensors"
    write(path, size, 9)
    theirs = lt_make(lt, path, piece, lt.create_torrent.v1_only)
    ours = create_torrent(path, piece_length=piece)
    assert bencode.decode(ours.info.raw) == bencode.decode(theirs)[b"info"]  # type: ignore[index]
    assert ours.info_hash.hex == str(lt.torrent_info(theirs).info_hashes().v1)
    assert ours.info_hash == parse_metainfo(theirs).info_hash


@pytest.mark.interop
def test_single_file_flags_equal_libtorrent(tmp_path: Path) -> None:
    lt = require_libtorrent()
    path = tmp_path / "run.sh"
    write(path, 50_000, mode=0o755)
    theirs = lt_make(lt, path, 16 * KiB, lt.create_torrent.v1_only)
    assert create_torrent(path, piece_length=16 * KiB).info.raw == parse_metainfo(theirs).info.raw


@pytest.mark.interop
def test_our_multi_file_torrent_loads_in_libtorrent(tree: Path) -> None:
    lt = require_libtorrent()
    m = create_torrent(tree, piece_length=16 * KiB, trackers=[["http://127.0.0.1:1/a"]])
    info_hash, files = lt_files(lt, m.to_bytes())
    assert info_hash == m.info_hash.hex
    assert files == our_files(m)
    # Same layout rule as libtorrent's canonical files without tail padding: same identity.
    theirs = lt_make(
        lt, tree, 16 * KiB, lt.create_torrent.v1_only | lt.create_torrent.canonical_files_no_tail_padding
    )
    assert parse_metainfo(theirs).info_hash == m.info_hash


@pytest.mark.interop
@pytest.mark.parametrize("canonical", ["canonical_files", "canonical_files_no_tail_padding", None])
def test_libtorrent_torrents_parse_with_their_info_hash(tmp_path: Path, canonical: str | None) -> None:
    lt = require_libtorrent()
    root = tmp_path / "lt"
    for i, size in enumerate([100, 16 * KiB - 100, 0, 16 * KiB - 100, 70_000, 7]):
        write(root / f"dir{i % 2}" / f"f{i}", size, i)
    write(root / "a.b", 5000)  # sorts differently by string and by component
    write(root / "a" / "b", 5000)
    flags = lt.create_torrent.v1_only | (getattr(lt.create_torrent, canonical) if canonical else 0)
    data = lt_make(lt, root, 16 * KiB, flags, trackers=("http://127.0.0.1:1/a", "http://127.0.0.1:2/a"))
    info_hash, files = lt_files(lt, data)
    m = parse_metainfo(data)
    assert m.info_hash.hex == info_hash
    assert our_files(m) == files
    assert m.announce_tiers == (("http://127.0.0.1:1/a",), ("http://127.0.0.1:2/a",))
    if canonical:
        assert any(f.pad for f in m.info.files)
    check_pieces(m.info, root)


@pytest.mark.interop
@pytest.mark.parametrize("single", [True, False])
def test_mktorrent_torrents_parse_with_libtorrents_info_hash(tmp_path: Path, single: bool) -> None:
    mktorrent = require_binary("mktorrent")
    lt = require_libtorrent()
    if single:
        target = tmp_path / "one.bin"
        write(target, 300_000, 3)
    else:
        target = tmp_path / "many"
        write(target / "x" / "1", 40_000, 1)
        write(target / "y", 123, 2)
        write(target / "x.z", 99_999, 3)
    out = tmp_path / "out.torrent"
    subprocess.run(
        [
            mktorrent,
            "-l",
            "15",
            "-p",
            "-a",
            "http://127.0.0.1:1/a",
            "-w",
            "http://127.0.0.1:2/",
            "-o",
            str(out),
            str(target),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    data = out.read_bytes()
    m = parse_metainfo(data)
    info_hash, files = lt_files(lt, data)
    assert m.info_hash.hex == info_hash and our_files(m) == files
    assert m.info.private and m.info.piece_length == 32 * KiB
    assert m.web_seeds == ("http://127.0.0.1:2/",) and m.trackers == ("http://127.0.0.1:1/a",)
    check_pieces(m.info, target)
