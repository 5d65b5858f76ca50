"""Storage of v2/hybrid torrents (per-file piece alignment, BEP 52) and BEP 47 symlinks."""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path

import pytest

from torrentgoat import bencode
from torrentgoat.creation import create_torrent
from torrentgoat.metainfo import InfoDict, parse_info
from torrentgoat.storage import FileStorage, MemoryStorage

PIECE = 16384


def make_folder(root: Path) -> dict[str, bytes]:
    rng = random.Random(3)
    files = {
        "a.bin": rng.randbytes(40_000),
        "dir/b.bin": rng.randbytes(100),
        "z.bin": rng.randbytes(3 * PIECE),
    }
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    (root / "dir" / "empty").write_bytes(b"")
    return files


@pytest.mark.parametrize("fmt", ["v2", "hybrid"])
def test_v2_layout_round_trips_through_file_storage(tmp_path: Path, fmt: str) -> None:
    src = tmp_path / "src" / "model"
    files = make_folder(src)
    info = create_torrent(src, piece_length=PIECE, format=fmt, creation_date=None).info  # type: ignore[arg-type]
    seed = FileStorage(tmp_path / "src", info, read_only=True)
    dest = FileStorage(tmp_path / "dest", info)
    for piece in range(info.num_pieces):
        data = seed.read_piece(piece)
        assert data is not None and len(data) == info.piece_size(piece)
        dest.write_piece(piece, data)
    dest.flush()
    dest.close()
    seed.close()
    out = tmp_path / "dest" / "model"
    for name, data in files.items():
        assert (out / name).read_bytes() == data
    assert (out / "dir" / "empty").read_bytes() == b""
    assert not (out / ".pad").exists()  # implied v2 pads are never written
    # every piece holds one file's bytes: a piece never straddles two real files
    for piece in range(info.num_pieces):
        real = [
            i for i in FileStorage(tmp_path / "dest", info).layout.piece_files(piece) if not info.files[i].pad
        ]
        assert len(real) == 1


def symlink_info(target: list[bytes] | None, *, link: bytes = b"link") -> InfoDict:
    entry: dict[bytes, object] = {b"attr": b"l", b"length": 0, b"path": [link]}
    if target is not None:
        entry[b"symlink path"] = target
    raw = {
        b"name": b"t",
        b"piece length": PIECE,
        b"pieces": b"\0" * 20,
        b"files": [{b"length": 5, b"path": [b"dir", b"real.txt"]}, entry],
    }
    return parse_info(bencode.encode(raw))


def test_symlink_inside_is_created_as_a_relative_link(tmp_path: Path) -> None:
    info = symlink_info([b"dir", b"real.txt"])
    storage = FileStorage(tmp_path, info)
    storage.write_piece(0, b"hello")
    storage.flush()
    link = tmp_path / "t" / "link"
    assert link.is_symlink() and os.readlink(link) == os.path.join("dir", "real.txt")
    assert link.read_bytes() == b"hello"
    assert storage.skipped_symlinks == []
    # a second flush (or a resumed run) leaves it alone
    storage.flush()
    assert storage.trim_oversized() == [] and (tmp_path / "t" / "dir" / "real.txt").read_bytes() == b"hello"
    storage.close()


def test_symlink_escaping_through_the_disk_is_skipped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"s")
    root = tmp_path / "dl"
    (root / "t").mkdir(parents=True)
    os.symlink(outside, root / "t" / "escape")  # planted on disk, pointing out of the download dir
    info = symlink_info([b"escape", b"secret"])
    storage = FileStorage(root, info)
    with caplog.at_level(logging.WARNING, logger="torrentgoat.storage"):
        storage.flush()
    assert not (root / "t" / "link").exists() and not (root / "t" / "link").is_symlink()
    assert storage.skipped_symlinks and "outside" in storage.skipped_symlinks[0][1]
    assert "symlink t/link skipped" in caplog.text
    storage.close()


@pytest.mark.parametrize("target", [None, [b".."], [b"..", b"..", b"etc", b"passwd"], [b"/etc/passwd"]])
def test_unusable_symlink_targets_are_never_created(tmp_path: Path, target: list[bytes] | None) -> None:
    info = symlink_info(target)
    storage = FileStorage(tmp_path, info)
    storage.flush()
    assert not os.path.lexists(tmp_path / "t" / "link")
    assert len(storage.skipped_symlinks) == 1
    storage.close()


def test_symlink_never_clobbers_an_existing_file(tmp_path: Path) -> None:
    info = symlink_info([b"dir", b"real.txt"])
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "link").write_bytes(b"mine")
    storage = FileStorage(tmp_path, info)
    storage.flush()
    assert (tmp_path / "t" / "link").read_bytes() == b"mine" and not (tmp_path / "t" / "link").is_symlink()
    assert "already exists" in storage.skipped_symlinks[0][1]
    storage.close()


def test_read_only_and_skipped_storage_create_no_symlink(tmp_path: Path) -> None:
    info = symlink_info([b"dir", b"real.txt"])
    FileStorage(tmp_path, info, read_only=True).close()
    FileStorage(tmp_path, info, skipped=[1]).close()
    assert not os.path.lexists(tmp_path / "t" / "link")


def test_symlink_self_loop_is_skipped(tmp_path: Path) -> None:
    storage = FileStorage(tmp_path, symlink_info([b"link"]))
    storage.flush()
    assert not os.path.lexists(tmp_path / "t" / "link") and "itself" in storage.skipped_symlinks[0][1]
    storage.close()


def test_trim_never_truncates_through_a_symlink(tmp_path: Path) -> None:
    """A symlink entry has length 0: trimming "oversized" files must not truncate its target."""
    info = symlink_info([b"dir", b"real.txt"])
    storage = FileStorage(tmp_path, info)
    storage.write_piece(0, b"hello")
    storage.flush()
    assert storage.trim_oversized() == []
    assert (tmp_path / "t" / "dir" / "real.txt").read_bytes() == b"hello"
    storage.close()


def test_memory_storage_records_symlinks() -> None:
    storage = MemoryStorage(symlink_info([b"dir", b"real.txt"]))
    storage.flush()
    assert storage.symlinks == {1: ("t", "dir", "real.txt")}
