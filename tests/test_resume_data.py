"""Resume data (storage/resume.py): the file format and the trust rules, without a session.

The rules (issue 15): a missing, truncated, corrupt, unknown-version or foreign resume file means a
full check; a file whose size, mtime, inode or ctime changed is re-checked -- only its pieces, and a
piece spanning two files if either changed; a piece not verified when the stamps were taken is not
read again while its files stay unchanged.  Writing is atomic: a kill during the write leaves the old
file (or none), never a half-written one that is trusted.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from torrentgoat.atomicwrite import remove_stale_temps, temp_path_for, write_atomic
from torrentgoat.bitfield import Bitfield
from torrentgoat.errors import ResumeDataError
from torrentgoat.metainfo import FileEntry
from torrentgoat.storage import FileStorage, Layout
from torrentgoat.storage.resume import (
    ABSENT,
    FileStamp,
    ResumeData,
    ResumeIdentity,
    ResumePlan,
    keep_foreign_changes,
    load_resume,
    plan_check,
    save_resume,
    stamp_files,
    written_since,
)

PIECE = 16


def _layout(*lengths: int, pads: tuple[int, ...] = ()) -> Layout:
    files, offset = [], 0
    for index, length in enumerate(lengths):
        files.append(
            FileEntry(
                path=("t", f"f{index}"), length=length, offset=offset, attr="p" if index in pads else ""
            )
        )
        offset += length
    return Layout(files, PIECE)


IDENTITY = ResumeIdentity(v1=b"\x01" * 20)


def _stamps(layout: Layout) -> tuple[FileStamp, ...]:
    return tuple(
        ABSENT if f.pad else FileStamp(size=f.length, mtime_ns=1000 + i, inode=50 + i, ctime_ns=2000 + i)
        for i, f in enumerate(layout.files)
    )


def _resume(layout: Layout, pattern: str, **changes: object) -> ResumeData:
    bits = Bitfield.from_indices(len(pattern), [i for i, c in enumerate(pattern) if c == "*"])
    fields: dict[str, object] = {
        "identity": IDENTITY,
        "piece_length": layout.piece_length,
        "num_pieces": layout.num_pieces,
        "have": bits,
        "files": _stamps(layout),
    }
    fields.update(changes)
    return ResumeData(**fields)  # type: ignore[arg-type]


def _pattern(bits: Bitfield) -> str:
    return "".join("*" if i in bits else "." for i in range(bits.length))


def _plan(
    layout: Layout,
    resume: ResumeData | None,
    *,
    stamps: Sequence[FileStamp] | None = None,
    part: FileStamp = ABSENT,
    skipped: frozenset[int] = frozenset(),
    wanted: Bitfield | None = None,
) -> ResumePlan:
    return plan_check(
        resume,
        identity=IDENTITY,
        layout=layout,
        stamps=stamps if stamps is not None else _stamps(layout),
        part_file=part,
        skipped=skipped,
        wanted=wanted if wanted is not None else Bitfield(layout.num_pieces, full=True),
    )


# --------------------------------------------------------------------------- format


def test_round_trip_keeps_every_field() -> None:
    layout = _layout(40, 24)
    data = _resume(
        layout,
        "*.*.",
        identity=ResumeIdentity(v1=b"\x02" * 20, v2=b"\x03" * 32),
        part_file=FileStamp(size=64, mtime_ns=5, inode=6, ctime_ns=7),
        skipped=frozenset({1}),
        saved_ns=123,
    )
    again = ResumeData.decode(data.encode())
    assert again == data
    v2_only = _resume(layout, "....", identity=ResumeIdentity(v1=None, v2=b"\x04" * 32))
    assert ResumeData.decode(v2_only.encode()).identity == v2_only.identity


def test_piece_layers_round_trip_and_malformed_ones_are_refused() -> None:
    """BEP 52 piece layers fetched by a magnet are kept (``pieces root`` -> layer, as in a .torrent)."""
    layout = _layout(40, 24)
    layers = {b"\x05" * 32: b"\x06" * 64, b"\x07" * 32: b"\x08" * 32}
    data = _resume(layout, "*...", identity=ResumeIdentity(v1=None, v2=b"\x04" * 32), piece_layers=layers)
    assert dict(ResumeData.decode(data.encode()).piece_layers) == layers
    assert ResumeData.decode(_resume(layout, "....").encode()).piece_layers == {}
    for bad in ({b"\x05" * 31: b"\x06" * 32}, {b"\x05" * 32: b"\x06" * 33}, {b"\x05" * 32: 7}):
        with pytest.raises(ResumeDataError, match="piece layers"):
            ResumeData.decode(_resume(layout, "....", piece_layers=bad).encode())


def test_every_truncation_is_refused() -> None:
    encoded = _resume(_layout(40, 24), "**..").encode()
    for cut in range(len(encoded)):
        with pytest.raises(ResumeDataError):
            ResumeData.decode(encoded[:cut])


def test_every_flipped_byte_is_refused_or_harmless() -> None:
    """A flipped bit is caught by the checksum (or the bencoding), never read as other data."""
    data = _resume(_layout(40, 24), "**..")
    encoded = data.encode()
    for position in range(len(encoded)):
        damaged = bytearray(encoded)
        damaged[position] ^= 0x10
        try:
            decoded = ResumeData.decode(bytes(damaged))
        except ResumeDataError:
            continue
        assert decoded == data  # e.g. a flip inside a key that still decodes to the same fields


def test_unknown_format_version_and_foreign_files_are_refused() -> None:
    from torrentgoat import bencode

    body = bencode.decode(_resume(_layout(40), "***").encode())
    assert isinstance(body, dict)
    with pytest.raises(ResumeDataError, match="format"):
        ResumeData.decode(bencode.encode({**body, b"torrentgoat resume": 2}))
    with pytest.raises(ResumeDataError, match="not a torrentgoat resume file"):
        ResumeData.decode(bencode.encode({b"file-format": b"libtorrent resume file"}))
    with pytest.raises(ResumeDataError):
        ResumeData.decode(b"")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_never_crash(data: bytes) -> None:
    try:
        ResumeData.decode(data)
    except ResumeDataError:
        pass


# --------------------------------------------------------------------------- trust rules


def test_no_resume_data_means_a_full_check() -> None:
    layout = _layout(40, 24)
    plan = _plan(layout, None)
    assert not plan.used and plan.trusted.count == 0 and plan.to_check.complete


def test_foreign_resume_data_means_a_full_check() -> None:
    layout = _layout(40, 24)
    foreign = _resume(layout, "****", identity=ResumeIdentity(v1=b"\x09" * 20))
    plan = _plan(layout, foreign)
    assert not plan.used and "another torrent" in plan.reason and plan.to_check.complete
    other_v2 = _resume(layout, "****", identity=ResumeIdentity(v1=IDENTITY.v1, v2=b"\x05" * 32))
    assert not _plan(layout, other_v2).used
    other_geometry = _resume(layout, "*****", num_pieces=5)
    assert not _plan(layout, other_geometry).used


def test_unchanged_files_are_trusted_and_nothing_is_read() -> None:
    layout = _layout(40, 24)  # pieces 0-2 in f0 (piece 2 spans f0 and f1), piece 3 in f1
    plan = _plan(layout, _resume(layout, "**.*"))
    assert plan.used and plan.changed_files == ()
    assert _pattern(plan.trusted) == "**.*"
    assert plan.to_check.count == 0  # piece 2 was not verified and nothing wrote it since: missing


def test_stale_mtime_rechecks_only_that_files_pieces_including_shared_ones() -> None:
    layout = _layout(40, 24, 32)  # f0: pieces 0-2, f1: 2-3 (piece 2 shared), f2: 4-5
    stamps = list(_stamps(layout))
    stamps[1] = FileStamp(size=24, mtime_ns=999_999, inode=51, ctime_ns=2001)
    plan = _plan(layout, _resume(layout, "******"), stamps=stamps)
    assert plan.changed_files == (1,)
    assert _pattern(plan.to_check) == "..**.."
    assert _pattern(plan.trusted) == "**..**"


def test_changed_size_inode_or_ctime_rechecks_the_file() -> None:
    layout = _layout(32, 32)
    for change in ({"size": 31}, {"inode": 999}, {"ctime_ns": 1}):
        stamps = list(_stamps(layout))
        stamps[0] = _changed(stamps[0], **change)
        plan = _plan(layout, _resume(layout, "****"), stamps=stamps)
        assert _pattern(plan.to_check) == "**..", change
        assert _pattern(plan.trusted) == "..**", change


def _changed(stamp: FileStamp, **change: int) -> FileStamp:
    values = {
        "size": stamp.size,
        "mtime_ns": stamp.mtime_ns,
        "inode": stamp.inode,
        "ctime_ns": stamp.ctime_ns,
    }
    values.update(change)
    return FileStamp(**values)


def test_a_file_that_could_not_be_examined_is_never_trusted() -> None:
    layout = _layout(32, 32)
    unknown = FileStamp(size=-2)
    resume = _resume(layout, "****", files=(unknown, _stamps(layout)[1]))
    plan = _plan(layout, resume, stamps=(unknown, _stamps(layout)[1]))
    assert _pattern(plan.to_check) == "**.."


def test_a_file_created_since_is_checked_and_an_absent_one_is_not_read() -> None:
    layout = _layout(32, 32)
    resume = _resume(layout, "**..", files=(_stamps(layout)[0], ABSENT))
    assert _plan(layout, resume, stamps=(_stamps(layout)[0], ABSENT)).to_check.count == 0
    plan = _plan(layout, resume)  # f1 appeared (a kill after its first write, before the next save)
    assert _pattern(plan.to_check) == "..**" and _pattern(plan.trusted) == "**.."


def test_only_wanted_pieces_are_trusted_or_checked() -> None:
    layout = _layout(32, 32)
    stamps = list(_stamps(layout))
    stamps[1] = _changed(stamps[1], mtime_ns=5)
    wanted = Bitfield.from_indices(4, [0, 3])
    plan = _plan(layout, _resume(layout, "****"), stamps=stamps, wanted=wanted)
    assert _pattern(plan.trusted) == "*..." and _pattern(plan.to_check) == "...*"


def test_a_changed_skip_status_rechecks_the_file() -> None:
    """Pieces verified while a neighbour was skipped read its bytes from the part file; once it is
    selected they come from the real file, so they must be checked again."""
    layout = _layout(40, 24)
    resume = _resume(layout, "****", skipped=frozenset({1}))
    plan = _plan(layout, resume)
    assert plan.changed_files == (1,) and _pattern(plan.to_check) == "..**"


def test_a_changed_part_file_rechecks_the_straddling_pieces() -> None:
    layout = _layout(40, 30, 26)  # pieces 2 (f0|f1) and 4 (f1|f2) straddle files
    resume = _resume(layout, "******", part_file=FileStamp(size=96, mtime_ns=1, inode=2, ctime_ns=3))
    plan = _plan(layout, resume, part=FileStamp(size=96, mtime_ns=9, inode=2, ctime_ns=3))
    assert _pattern(plan.to_check) == "..*.*."
    assert _pattern(plan.trusted) == "**.*.*"


def test_pad_files_never_count_as_changed() -> None:
    layout = _layout(20, 12, 32, pads=(1,))
    stamps = list(_stamps(layout))
    stamps[1] = FileStamp(size=12, mtime_ns=1)  # someone created a file where the pad is: ignored
    assert _plan(layout, _resume(layout, "****"), stamps=stamps).changed_files == ()


def test_only_our_writes_move_a_stamp_forward() -> None:
    layout = _layout(32, 40, 24)  # f0: 0-1, f1: 2-4 (piece 4 shared with f2), f2: 4-5
    old = _stamps(layout)
    now = tuple(_changed(stamp, mtime_ns=stamp.mtime_ns + 7) for stamp in old)
    before = Bitfield.from_indices(6, [0, 1])
    have = Bitfield.from_indices(6, [0, 1, 4])  # piece 4 verified and written since: f1 and f2 are ours
    written, part_written = written_since(layout, have, before)
    assert written == {1, 2} and part_written
    old_part, new_part = FileStamp(size=96, mtime_ns=1), FileStamp(size=96, mtime_ns=2)
    files, part = keep_foreign_changes((old, old_part), (now, new_part), written, part_written)
    assert files == (old[0], now[1], now[2])  # f0 changed though we wrote nothing there: old stamp kept
    assert part == new_part
    assert keep_foreign_changes((old, old_part), (now, new_part), written, False)[1] == old_part
    assert written_since(layout, before, before) == (frozenset(), False)


# --------------------------------------------------------------------------- files on disk


def _storage(tmp_path: Path) -> FileStorage:
    return FileStorage(tmp_path / "dl", _layout(40, 24))


def test_save_stamps_after_the_flush_and_load_reads_it_back(tmp_path: Path) -> None:
    storage = _storage(tmp_path)
    storage.write_piece(0, b"a" * PIECE)
    path = tmp_path / "dl" / ".torrentgoat-resume" / "x.resume"
    saved = save_resume(path, storage, identity=IDENTITY, have=Bitfield.from_indices(4, [0]))
    assert load_resume(path) == saved
    stamps, part = stamp_files(storage)
    assert saved.files == stamps and part == ABSENT
    assert saved.files[0].size == 40 and saved.files[1] == ABSENT
    storage.close()


def test_load_refuses_missing_truncated_and_corrupt_files(tmp_path: Path) -> None:
    storage = _storage(tmp_path)
    path = tmp_path / "r.resume"
    with pytest.raises(ResumeDataError, match="no resume data"):
        load_resume(path)
    save_resume(path, storage, identity=IDENTITY, have=Bitfield(4))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ResumeDataError):
        load_resume(path)
    path.write_bytes(data.replace(b"have", b"hbve"))
    with pytest.raises(ResumeDataError, match="checksum"):
        load_resume(path)
    storage.close()


def test_a_kill_during_the_write_leaves_the_old_file(tmp_path: Path) -> None:
    """A half-written temporary file (killed before the rename) is never read, and the next write
    sweeps it; the file under the real name is the previous, complete one."""
    storage = _storage(tmp_path)
    path = tmp_path / "r.resume"
    old = save_resume(path, storage, identity=IDENTITY, have=Bitfield.from_indices(4, [1]))
    half = temp_path_for(path)
    half.write_bytes(old.encode()[:17])  # what a SIGKILL mid-write leaves
    assert load_resume(path) == old
    save_resume(path, storage, identity=IDENTITY, have=Bitfield.from_indices(4, [1, 2]))
    assert not half.exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "dl") == ["r.resume"]
    storage.close()


def test_write_atomic_modes_and_no_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "secret"
    write_atomic(target, b"one", mode=0o600)
    assert target.read_bytes() == b"one" and (target.stat().st_mode & 0o777) == 0o600
    with pytest.raises(FileExistsError):
        write_atomic(target, b"two", overwrite=False)
    assert target.read_bytes() == b"one"
    write_atomic(target, b"three")
    assert target.read_bytes() == b"three"
    assert [p.name for p in tmp_path.iterdir()] == ["secret"]
    stale = temp_path_for(target)
    stale.write_bytes(b"x")
    (tmp_path / ".other.1.2.tmp").write_bytes(b"y")
    assert remove_stale_temps(target) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.1.2.tmp", "secret"]
    os.unlink(tmp_path / ".other.1.2.tmp")
