"""Storage layer: piece -> file-span layout, FileStorage and MemoryStorage semantics."""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from torrentgoat.errors import StorageError
from torrentgoat.metainfo import FileEntry, InfoDict
from torrentgoat.storage import FileStorage, Layout, MemoryStorage, SpanStorage, Storage
from torrentgoat.testing.shards import make_info

PL = 16 * 1024


def entries(sizes: list[int], pads: set[int] = frozenset()) -> list[FileEntry]:  # type: ignore[assignment]
    out: list[FileEntry] = []
    offset = 0
    for i, size in enumerate(sizes):
        out.append(FileEntry(path=("t", f"f{i}"), length=size, offset=offset, attr="p" if i in pads else ""))
        offset += size
    return out


# ------------------------------------------------------------------------------------------ layout


@settings(max_examples=300, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 300), min_size=1, max_size=12).filter(lambda s: sum(s) > 0),
    piece_length=st.integers(1, 97),
    pad_seed=st.integers(0, 2**16),
)
def test_layout_spans_cover_each_piece_exactly(sizes: list[int], piece_length: int, pad_seed: int) -> None:
    rng = random.Random(pad_seed)
    pads = {i for i in range(len(sizes)) if rng.random() < 0.25}
    files = entries(sizes, pads)
    layout = Layout(files, piece_length)
    total = sum(sizes)
    assert layout.num_pieces == -(-total // piece_length)
    covered = 0
    for piece in range(layout.num_pieces):
        spans = layout.spans(piece)
        size = layout.piece_size(piece)
        assert size == min(piece_length, total - piece * piece_length)
        position = 0
        last_file = -1
        for span in spans:
            entry = files[span.file_index]
            assert span.length > 0
            assert span.buffer_offset == position
            assert span.file_index > last_file  # in file order, each file at most once
            assert span.file_offset >= 0 and span.file_offset + span.length <= entry.length
            assert entry.offset + span.file_offset == piece * piece_length + position
            assert span.pad == (span.file_index in pads)
            position += span.length
            last_file = span.file_index
        assert position == size
        covered += size
        # the non-pad spans are exactly what a write would touch
        assert sum(s.length for s in spans if not s.pad) == sum(
            max(0, min(e.end, piece * piece_length + size) - max(e.offset, piece * piece_length))
            for i, e in enumerate(files)
            if i not in pads
        )
    assert covered == total


@settings(max_examples=200, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 200), min_size=1, max_size=8).filter(lambda s: sum(s) > 0),
    piece_length=st.integers(1, 64),
    data=st.data(),
)
def test_layout_subranges_and_pieces_for_files(
    sizes: list[int], piece_length: int, data: st.DataObject
) -> None:
    files = entries(sizes)
    layout = Layout(files, piece_length)
    piece = data.draw(st.integers(0, layout.num_pieces - 1))
    size = layout.piece_size(piece)
    begin = data.draw(st.integers(0, size))
    length = data.draw(st.integers(0, size - begin))
    spans = layout.spans(piece, begin, length)
    assert sum(s.length for s in spans) == length
    if spans:
        first = files[spans[0].file_index]
        assert first.offset + spans[0].file_offset == piece * piece_length + begin
    chosen = data.draw(st.sets(st.integers(0, len(files) - 1)))
    needed = layout.pieces_for_files(chosen)
    expected = {
        p
        for p in range(layout.num_pieces)
        for i in chosen
        if files[i].length and files[i].offset < (p + 1) * piece_length and files[i].end > p * piece_length
    }
    assert set(needed) == expected


@settings(max_examples=150, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 120), min_size=1, max_size=8).filter(lambda s: sum(s) > 0),
    piece_length=st.integers(1, 50),
    seed=st.integers(0, 2**16),
)
def test_memory_storage_model(sizes: list[int], piece_length: int, seed: int) -> None:
    """Random layouts, pads and skipped files: writes land exactly where the layout says."""
    rng = random.Random(seed)
    pads = {i for i in range(len(sizes)) if rng.random() < 0.2}
    skipped = {i for i in range(len(sizes)) if i not in pads and rng.random() < 0.3}
    files = entries(sizes, pads)
    layout = Layout(files, piece_length)
    payload = bytearray(rng.randbytes(sum(sizes)))
    for i in pads:
        payload[files[i].offset : files[i].end] = bytes(files[i].length)
    storage = MemoryStorage(layout, skipped=skipped)
    blocks = []
    for piece in range(layout.num_pieces):
        size = layout.piece_size(piece)
        cut = rng.randrange(size + 1)
        blocks += [(piece, 0, cut), (piece, cut, size - cut)]
    rng.shuffle(blocks)
    for piece, begin, length in blocks:
        start = piece * piece_length + begin
        storage.write(piece, begin, payload[start : start + length])
    for i, entry in enumerate(files):
        if i in pads or i in skipped or entry.length == 0:
            assert i not in storage.files
        else:
            assert storage.files[i] == payload[entry.offset : entry.end]
    wanted = storage.wanted_pieces()
    for piece in range(layout.num_pieces):
        data = storage.read_piece(piece)
        touches_skipped = any(s.file_index in skipped and not s.pad and s.length for s in layout.spans(piece))
        touches_wanted = any(s.file_index not in skipped and not s.pad for s in layout.spans(piece))
        # a piece shared by a skipped and a wanted file keeps its skipped bytes in the part file
        assert (data is None) == (touches_skipped and not touches_wanted)
        if data is not None:
            assert data == payload[piece * piece_length : piece * piece_length + layout.piece_size(piece)]
        non_pad = {s.file_index for s in layout.spans(piece) if not s.pad}
        assert (piece in wanted) == bool(non_pad - skipped)


def test_layout_rejects_bad_ranges_and_offsets() -> None:
    layout = Layout(entries([10, 10]), 8)
    with pytest.raises(StorageError):
        layout.spans(3)
    with pytest.raises(StorageError):
        layout.spans(0, 4, 5)
    with pytest.raises(StorageError):
        Layout([FileEntry(path=("t", "a"), length=5, offset=1)], 8)
    with pytest.raises(StorageError):
        Layout(entries([10]), 4, num_pieces=2)


# -------------------------------------------------------------------------------- shared fixtures


def payload_files(rng: random.Random) -> list[tuple[str, bytes] | tuple[str, bytes, str]]:
    return [
        ("a.bin", rng.randbytes(PL + 1000)),
        ("dir/b.bin", rng.randbytes(700)),  # entirely inside piece 1
        ("dir/empty", b""),
        ("dir/sub/c.bin", rng.randbytes(2 * PL + 5)),
        ("d.bin", rng.randbytes(PL // 2)),
    ]


StorageFactory = Callable[..., SpanStorage]


@pytest.fixture(params=["file", "memory"])
def make_storage(request: pytest.FixtureRequest, tmp_path: Path) -> StorageFactory:
    def factory(info: InfoDict, **kwargs: object) -> SpanStorage:
        if request.param == "file":
            return FileStorage(tmp_path, info, **kwargs)  # type: ignore[arg-type]
        kwargs.pop("max_open_files", None)
        return MemoryStorage(info, **kwargs)  # type: ignore[arg-type]

    return factory


def file_bytes(storage: SpanStorage, index: int) -> bytes | None:
    if isinstance(storage, FileStorage):
        path = Path(storage.path_of(index))
        return path.read_bytes() if path.exists() else None
    assert isinstance(storage, MemoryStorage)
    data = storage.files.get(index)
    return None if data is None else bytes(data)


# ------------------------------------------------------------------------------------ round trips


def test_storage_satisfies_protocol(tmp_path: Path) -> None:
    info, _ = make_info("t", [("x", b"1" * 100)])
    assert isinstance(FileStorage(tmp_path, info), Storage)
    assert isinstance(MemoryStorage(info), Storage)


def test_round_trip_across_file_boundaries(make_storage: StorageFactory) -> None:
    rng = random.Random(1)
    info, payload = make_info("t", payload_files(rng))
    storage = make_storage(info)
    for piece in range(info.num_pieces):
        assert storage.read_piece(piece) is None  # nothing there yet; reading created nothing
    assert all(file_bytes(storage, i) is None for i in range(len(info.files)))
    order = list(range(info.num_pieces))
    rng.shuffle(order)
    for piece in order:
        storage.write_piece(piece, payload[piece * PL : piece * PL + info.piece_size(piece)])
    storage.flush()
    for piece in range(info.num_pieces):
        assert storage.read_piece(piece) == payload[piece * PL : piece * PL + info.piece_size(piece)]
    for i, entry in enumerate(info.files):
        assert file_bytes(storage, i) == payload[entry.offset : entry.end]
    for _ in range(50):
        piece = rng.randrange(info.num_pieces)
        size = info.piece_size(piece)
        begin = rng.randrange(size)
        length = rng.randrange(size - begin + 1)
        start = piece * PL + begin
        assert storage.read(piece, begin, length) == payload[start : start + length]
    storage.close()


def test_block_writes_in_random_order(make_storage: StorageFactory) -> None:
    rng = random.Random(2)
    info, payload = make_info("t", payload_files(rng))
    storage = make_storage(info)
    blocks = [(p, b) for p in range(info.num_pieces) for b in range(0, info.piece_size(p), 3000)]
    rng.shuffle(blocks)
    for piece, begin in blocks:
        length = min(3000, info.piece_size(piece) - begin)
        start = piece * PL + begin
        storage.write(piece, begin, memoryview(payload)[start : start + length])
    buf = bytearray(PL)
    for piece in range(info.num_pieces):
        assert storage.read_piece_into(piece, buf)
        size = info.piece_size(piece)
        assert buf[:size] == payload[piece * PL : piece * PL + size]


def test_empty_files_created_on_flush_only_when_writable(tmp_path: Path) -> None:
    info, _payload = make_info("t", payload_files(random.Random(3)))
    ro = FileStorage(tmp_path, info, read_only=True)
    ro.flush()
    ro.close()
    assert not (tmp_path / "t").exists()
    rw = FileStorage(tmp_path, info)
    rw.close()
    assert (tmp_path / "t/dir/empty").read_bytes() == b""
    assert not (tmp_path / "t/a.bin").exists()


def test_writes_to_one_file_take_turns_and_other_files_do_not_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two threads writing pieces of one file run ``pwrite`` one at a time (the kernel would make
    the second spin on the file's lock); a write to another file goes ahead meanwhile."""
    from torrentgoat.storage import file as file_module

    info, payload = make_info("t", [("a.bin", bytes(4 * PL)), ("b.bin", bytes(PL))])
    storage = FileStorage(tmp_path, info)
    storage.write_piece(0, payload[:PL])  # both files exist: no open races the writes below
    storage.write_piece(4, payload[4 * PL :])
    inside: dict[int, int] = {}
    most: dict[int, int] = {}
    lock = threading.Lock()
    a_entered = threading.Event()
    b_done = threading.Event()
    real_pwrite = os.pwrite

    def pwrite(fd: int, data: object, offset: int) -> int:
        with lock:
            inside[fd] = inside.get(fd, 0) + 1
            most[fd] = max(most.get(fd, 0), inside[fd])
        try:
            if fd == fd_a:
                a_entered.set()
                assert b_done.wait(10)  # b's write is not held up by a's
            return real_pwrite(fd, data, offset)  # type: ignore[arg-type]
        finally:
            with lock:
                inside[fd] -= 1

    fd_a = storage._acquire(0, write=True).fd  # type: ignore[union-attr]
    storage._release(storage._handles[0])
    monkeypatch.setattr(file_module.os, "pwrite", pwrite)
    writers = [
        threading.Thread(target=storage.write_piece, args=(i, payload[i * PL : (i + 1) * PL]))
        for i in (1, 2, 3)
    ]
    for t in writers:
        t.start()
    assert a_entered.wait(10)
    storage.write_piece(4, payload[4 * PL :])  # file b, while a is being written
    b_done.set()
    for t in writers:
        t.join(10)
    assert most[fd_a] == 1
    storage.close()


def test_first_write_makes_a_full_length_sparse_file(tmp_path: Path) -> None:
    info, _payload = make_info("t", [("big", bytes(8 * PL))], piece_length=PL)
    storage = FileStorage(tmp_path, info)
    storage.write(7, 0, b"x" * 10)
    path = tmp_path / "t"
    assert path.stat().st_size == 8 * PL
    assert path.stat().st_blocks * 512 < 8 * PL  # holes were not allocated
    storage.close()


def test_wrong_sizes_and_ranges_raise(make_storage: StorageFactory) -> None:
    info, _ = make_info("t", payload_files(random.Random(4)))
    storage = make_storage(info)
    with pytest.raises(StorageError):
        storage.write_piece(0, b"short")
    with pytest.raises(StorageError):
        storage.write(0, PL - 2, b"abcd")
    with pytest.raises(StorageError):
        storage.read_piece(info.num_pieces)
    with pytest.raises(StorageError):
        storage.read_piece_into(0, bytearray(10))
    with pytest.raises(StorageError, match="does not exist"):
        storage.read(0, 0, 10)


def test_read_only_never_writes_or_creates(make_storage: StorageFactory, tmp_path: Path) -> None:
    info, _ = make_info("t", payload_files(random.Random(5)))
    storage = make_storage(info, read_only=True)
    assert storage.read_piece(0) is None
    with pytest.raises(StorageError, match="read-only"):
        storage.write_piece(0, bytes(PL))
    storage.close()
    assert not (tmp_path / "t").exists()


def test_short_file_reads_as_missing(tmp_path: Path) -> None:
    rng = random.Random(6)
    info, payload = make_info("t", payload_files(rng))
    (tmp_path / "t").mkdir()
    (tmp_path / "t/a.bin").write_bytes(payload[:100])  # truncated
    storage = FileStorage(tmp_path, info, read_only=True)
    assert storage.read_piece(0) is None
    assert storage.read(0, 0, 100) == payload[:100]
    with pytest.raises(StorageError, match="ends before"):
        storage.read(0, 0, 200)


# ----------------------------------------------------------------------------------------- BEP 47


def padded_info() -> tuple[InfoDict, bytes]:
    rng = random.Random(7)
    return make_info(
        "t",
        [
            ("a.bin", rng.randbytes(1000)),
            (".pad/15384", bytes(PL - 1000), "p"),
            ("b.bin", rng.randbytes(PL + 10)),
            (".pad/16374", bytes(PL - 10), "p"),
            ("c.bin", rng.randbytes(500)),
        ],
    )


def test_pad_files_never_created_and_read_as_zeros(make_storage: StorageFactory, tmp_path: Path) -> None:
    info, payload = padded_info()
    storage = make_storage(info)
    for piece in range(info.num_pieces):
        storage.write_piece(piece, payload[piece * PL : piece * PL + info.piece_size(piece)])
    storage.close()
    assert file_bytes(storage, 1) is None and file_bytes(storage, 3) is None
    if isinstance(storage, FileStorage):
        assert not (tmp_path / "t/.pad").exists()
        assert sorted(p.name for p in (tmp_path / "t").iterdir()) == ["a.bin", "b.bin", "c.bin"]
    assert storage.layout.pieces_for_files([1, 3]).empty
    reopened = make_storage(info, read_only=True)
    if isinstance(storage, MemoryStorage):
        assert isinstance(reopened, MemoryStorage)
        reopened.files.update(storage.files)
    assert reopened.read(0, 1000, 50) == bytes(50)
    for piece in range(info.num_pieces):
        assert reopened.read_piece(piece) == payload[piece * PL : piece * PL + info.piece_size(piece)]


# ------------------------------------------------------------------------------------ skipped files


def test_skipped_files_never_created_but_neighbours_written(make_storage: StorageFactory) -> None:
    rng = random.Random(8)
    info, payload = make_info(
        "t",
        [("a", rng.randbytes(PL + 100)), ("skip", rng.randbytes(PL * 2)), ("c", rng.randbytes(300))],
    )
    storage = make_storage(info, skipped=[1])
    assert storage.is_file_skipped(1)
    # piece 0 is all a; piece 1 straddles a and skip; piece 2 is all skip; piece 3 straddles skip and c
    assert set(storage.wanted_pieces()) == {0, 1, 3}
    for piece in range(info.num_pieces):
        storage.write_piece(piece, payload[piece * PL : piece * PL + info.piece_size(piece)])
    assert file_bytes(storage, 1) is None
    assert file_bytes(storage, 0) == payload[: PL + 100]
    assert file_bytes(storage, 2) == payload[-300:]
    assert storage.read_piece(0) == payload[:PL]
    # piece 1's skipped bytes live in the part file, so it can still be served and re-verified
    assert storage.read_piece(1) == payload[PL : 2 * PL]
    assert storage.read(1, 0, 101) == payload[PL : PL + 101]
    assert storage.read_piece(2) is None  # all skipped, never stored
    with pytest.raises(StorageError, match="skip"):
        storage.read(2, 0, 100)
    storage.set_file_skipped(1, False)
    storage.write_piece(2, payload[2 * PL : 3 * PL])
    assert storage.read_piece(2) == payload[2 * PL : 3 * PL]
    with pytest.raises(StorageError):
        storage.set_file_skipped(9, True)


# ------------------------------------------------------------------------------------ path safety


def test_unsafe_components_refused(tmp_path: Path) -> None:
    for bad in ("..", ".", "", "a/b", "x\x00"):
        files = [FileEntry(path=("t", bad), length=10, offset=0)]
        with pytest.raises(StorageError, match="unsafe"):
            FileStorage(tmp_path, Layout(files, PL))


def test_symlinked_directory_pointing_outside_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "t").symlink_to(outside)
    info, payload = make_info("t", [("a", b"x" * 100), ("b", b"y" * 100)])
    storage = FileStorage(root, info)
    with pytest.raises(StorageError, match="outside"):
        storage.write_piece(0, payload)
    with pytest.raises(StorageError, match="outside"):
        storage.read_piece(0)
    assert list(outside.iterdir()) == []


def test_symlinked_file_pointing_outside_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "t").mkdir(parents=True)
    secret = tmp_path / "secret"
    secret.write_bytes(b"s" * 100)
    (root / "t" / "a").symlink_to(secret)
    info, payload = make_info("t", [("a", b"x" * 100), ("b", b"y" * 100)])
    for read_only in (True, False):
        storage = FileStorage(root, info, read_only=read_only)
        with pytest.raises(StorageError, match="outside"):
            storage.read(0, 0, 10)
        if not read_only:
            with pytest.raises(StorageError, match="outside"):
                storage.write_piece(0, payload)
    assert secret.read_bytes() == b"s" * 100


def test_symlink_staying_inside_root_is_followed(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "t").mkdir(parents=True)
    (root / "blob").write_bytes(b"x" * 100)
    (root / "t" / "a").symlink_to(root / "blob")
    info, _ = make_info("t", [("a", b"x" * 100), ("b", b"y" * 100)])
    storage = FileStorage(root, info, read_only=True)
    assert storage.read(0, 0, 100) == b"x" * 100


# -------------------------------------------------------------------------------------- fd cache


def open_fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_open_file_cap_respected(tmp_path: Path) -> None:
    rng = random.Random(9)
    info, payload = make_info("t", [(f"f{i:02d}", rng.randbytes(3000)) for i in range(20)])
    before = open_fd_count()
    storage = FileStorage(tmp_path, info, max_open_files=3)
    for piece in range(info.num_pieces):
        storage.write_piece(piece, payload[piece * PL : piece * PL + info.piece_size(piece)])
        assert storage.open_files <= 3
        assert open_fd_count() - before <= 3
    for _ in range(100):
        piece = rng.randrange(info.num_pieces)
        assert storage.read_piece(piece) == payload[piece * PL : piece * PL + info.piece_size(piece)]
        assert storage.open_files <= 3
    storage.close()
    assert storage.open_files == 0
    assert open_fd_count() == before


def test_concurrent_threads_share_a_tiny_fd_cache(tmp_path: Path) -> None:
    rng = random.Random(10)
    info, payload = make_info("t", [(f"f{i:02d}", rng.randbytes(5000)) for i in range(30)])
    storage = FileStorage(tmp_path, info, max_open_files=2)
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        local = random.Random(seed)
        try:
            for _ in range(60):
                piece = local.randrange(info.num_pieces)
                chunk = payload[piece * PL : piece * PL + info.piece_size(piece)]
                storage.write_piece(piece, chunk)
                assert storage.read_piece(piece) == chunk
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    storage.close()
    assert storage.open_files == 0


# ------------------------------------------------------------------------------ test data helpers


def test_parse_size() -> None:
    from torrentgoat.testing.shards import parse_size

    assert parse_size("2GiB") == 2 * 2**30
    assert parse_size("4MiB") == 4 * 2**20
    assert parse_size("1.5KiB") == 1536
    assert parse_size("4MB") == 4_000_000
    assert parse_size("100") == 100
    with pytest.raises(ValueError):
        parse_size("lots")


@pytest.mark.parametrize("size", [200, 8193, 3 * 2**20 + 7])
def test_safetensors_shard_is_valid_exact_and_deterministic(tmp_path: Path, size: int) -> None:
    import json
    import struct

    from torrentgoat.testing.shards import read_safetensors_header, write_safetensors_shard

    a = write_safetensors_shard(tmp_path / "a.safetensors", size, seed=1)
    b = write_safetensors_shard(tmp_path / "b.safetensors", size, seed=1)
    c = write_safetensors_shard(tmp_path / "c.safetensors", size, seed=2)
    raw = a.read_bytes()
    assert len(raw) == size
    assert raw == b.read_bytes()
    assert raw != c.read_bytes()
    (header_len,) = struct.unpack("<Q", raw[:8])
    assert header_len % 8 == 0
    header = json.loads(raw[8 : 8 + header_len])
    assert header == read_safetensors_header(a)
    assert header.pop("__metadata__") == {"format": "pt"}
    position = 0
    widths = {"BF16": 2, "U8": 1}
    for spec in header.values():
        begin, end = spec["data_offsets"]
        assert begin == position
        count = 1
        for dim in spec["shape"]:
            count *= dim
        assert end - begin == count * widths[spec["dtype"]]
        position = end
    assert 8 + header_len + position == size
    with pytest.raises(ValueError):
        write_safetensors_shard(tmp_path / "tiny.safetensors", 20)


def test_model_folder_index_matches_shards(tmp_path: Path) -> None:
    import json

    from torrentgoat.testing.shards import read_safetensors_header, write_model_folder

    root = write_model_folder(tmp_path / "m", shards=3, shard_size=300_000)
    names = sorted(p.name for p in root.iterdir())
    assert names == [
        "config.json",
        "generation_config.json",
        "model-00001-of-00003.safetensors",
        "model-00002-of-00003.safetensors",
        "model-00003-of-00003.safetensors",
        "model.safetensors.index.json",
        "tokenizer.json",
    ]
    index = json.loads((root / "model.safetensors.index.json").read_text())
    total = 0
    seen = set()
    for shard in names:
        if not shard.endswith(".safetensors"):
            continue
        header = read_safetensors_header(root / shard)
        header.pop("__metadata__")
        for tensor, spec in header.items():
            assert index["weight_map"][tensor] == shard
            assert tensor not in seen
            seen.add(tensor)
            total += spec["data_offsets"][1] - spec["data_offsets"][0]
    assert set(index["weight_map"]) == seen
    assert index["metadata"]["total_size"] == total
    json.loads((root / "config.json").read_text())
    json.loads((root / "tokenizer.json").read_text())


def test_make_shard_tool(tmp_path: Path) -> None:
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    out = tmp_path / "x.safetensors"
    proc = subprocess.run(
        [sys.executable, str(root / "tools" / "make_shard.py"), str(out), "--size", "1MiB"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert out.stat().st_size == 2**20


def test_special_files_refused_without_blocking(tmp_path: Path) -> None:
    (tmp_path / "t").mkdir()
    os.mkfifo(tmp_path / "t" / "a")  # opening a FIFO for reading would block until a writer came
    (tmp_path / "t" / "b").mkdir()
    info, payload = make_info("t", [("a", b"x" * 100), ("b", b"y" * 100)])
    for read_only in (True, False):
        storage = FileStorage(tmp_path, info, read_only=read_only)
        with pytest.raises(StorageError, match="not a regular file"):
            storage.read(0, 0, 10)
        with pytest.raises(StorageError, match=r"not a regular file|Is a directory"):
            storage.read(0, 100, 10)
        if not read_only:
            with pytest.raises(StorageError):
                storage.write_piece(0, payload)
        storage.close()


def test_read_cached_into_serves_page_cache_bytes_without_blocking(tmp_path: Path) -> None:
    """RWF_NOWAIT reads (seeding from the event loop): the right bytes when every byte is cached and
    the file is open, ``False`` -- never an exception -- otherwise."""
    if not getattr(os, "RWF_NOWAIT", 0):
        if os.environ.get("CI"):
            pytest.fail("CI runs on Linux, which has RWF_NOWAIT")
        pytest.skip("no RWF_NOWAIT on this platform")
    rng = random.Random(3)
    info, payload = make_info("t", [("a", rng.randbytes(50_000)), ("b", rng.randbytes(70_000))])
    root = tmp_path / "data"
    writer = FileStorage(root, info)
    for piece in range(info.num_pieces):
        start = piece * info.piece_length
        writer.write_piece(piece, payload[start : start + info.piece_size(piece)])
    writer.close()
    storage = FileStorage(root, info, read_only=True)
    buf = bytearray(1000)
    assert not storage.read_cached_into(0, 0, buf)  # file not open yet: opening may block
    storage.read_into(0, 0, buf)  # the disk pool's path opens it
    last = info.num_pieces - 1
    begin = info.piece_size(last) - 1000
    start = last * info.piece_length + begin
    storage.read_into(last, begin, buf)  # opens the second file
    buf[:] = bytes(1000)
    assert storage.read_cached_into(last, begin, buf)  # just written and read: in the page cache
    assert bytes(buf) == payload[start : start + 1000]
    span = bytearray(info.piece_length)  # a piece across both files
    boundary = 50_000 // info.piece_length
    assert storage.read_cached_into(boundary, 0, span)
    assert bytes(span) == payload[boundary * info.piece_length : (boundary + 1) * info.piece_length]
    storage.close()
    assert not storage.read_cached_into(0, 0, buf)  # closed: never raises
