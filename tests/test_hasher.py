"""Disk executor and the hash-checking pipeline (PieceHasher)."""

from __future__ import annotations

import asyncio
import hashlib
import random
import threading
import time
import tracemalloc
from pathlib import Path

import pytest

from torrentgoat.aio.disk import DiskExecutor
from torrentgoat.aio.hasher import DEFAULT_CHECK_BATCH, PieceHasher
from torrentgoat.bitfield import Bitfield
from torrentgoat.config import IOConfig
from torrentgoat.errors import ConfigError, StorageError
from torrentgoat.metainfo import InfoDict
from torrentgoat.storage import BytesLike, FileStorage, MemoryStorage
from torrentgoat.testing.shards import make_info, pseudo_random_chunks

PL = 16 * 1024


def sample(n_pieces: int = 12, seed: int = 0) -> tuple[InfoDict, bytes]:
    rng = random.Random(seed)
    total = n_pieces * PL - 123
    sizes = [total // 3, total // 3, total - 2 * (total // 3)]
    return make_info("t", [(f"f{i}", rng.randbytes(size)) for i, size in enumerate(sizes)])


def piece_of(info: InfoDict, payload: bytes, index: int) -> bytes:
    return payload[index * PL : index * PL + info.piece_size(index)]


async def test_runs_on_the_plain_asyncio_loop() -> None:
    loop = asyncio.get_running_loop()
    assert type(loop).__module__.startswith("asyncio")
    info, payload = sample()
    async with PieceHasher(IOConfig(hash_threads=2)) as hasher:
        assert await hasher.verify_piece(info, 0, piece_of(info, payload, 0))


def test_runs_on_uvloop() -> None:
    import uvloop  # a declared dependency on POSIX

    info, payload = sample()
    storage = MemoryStorage.from_payload(info, payload)

    async def main() -> Bitfield:
        async with PieceHasher(IOConfig(hash_threads=2)) as hasher:
            return await hasher.check_existing(info, storage)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert runner.run(main()).complete


async def test_verify_piece() -> None:
    rng = random.Random(1)
    big = rng.randbytes(256 * 1024 + 17)
    info, payload = make_info("t", [("a", big)], piece_length=256 * 1024)
    async with PieceHasher(IOConfig(hash_threads=1)) as hasher:
        assert hasher.threads == 1
        assert await hasher.verify_piece(info, 0, payload[: 256 * 1024])  # hashed in a thread
        assert await hasher.verify_piece(info, 1, payload[256 * 1024 :])  # small: hashed inline
        assert await hasher.verify_piece(info, 0, bytearray(payload[: 256 * 1024]))
        corrupt = bytearray(payload[: 256 * 1024])
        corrupt[1000] ^= 1
        assert not await hasher.verify_piece(info, 0, corrupt)
        assert not await hasher.verify_piece(info, 1, payload[256 * 1024 : -1])  # wrong length
        assert not await hasher.verify_piece(info, 2, b"")  # no such piece
        assert await hasher.hash(b"abc") == hashlib.sha1(b"abc").digest()


async def test_verify_piece_then_runs_in_the_hashing_thread_only_for_a_good_piece() -> None:
    """``then`` (the downloaded piece's write) follows a matching hash in the same worker, never a
    failed one; what it raises (a full disk) comes out of ``verify_piece``."""
    rng = random.Random(2)
    info, payload = make_info("t", [("a", rng.randbytes(2 * 256 * 1024))], piece_length=256 * 1024)
    ran: list[tuple[int, str]] = []

    def then(index: int) -> None:
        ran.append((index, threading.current_thread().name))

    async with PieceHasher(IOConfig(hash_threads=1)) as hasher:
        assert await hasher.verify_piece(info, 1, payload[256 * 1024 :], then=lambda: then(1))
        corrupt = bytearray(payload[: 256 * 1024])
        corrupt[7] ^= 1
        assert not await hasher.verify_piece(info, 0, corrupt, then=lambda: then(0))
        assert [index for index, _ in ran] == [1] and ran[0][1].startswith("torrentgoat-hash")

        def full() -> None:
            raise StorageError("no space left on the device")

        with pytest.raises(StorageError, match="no space"):
            await hasher.verify_piece(info, 0, payload[: 256 * 1024], then=full)


def test_hash_threads_default_to_cpu_count() -> None:
    import os

    with PieceHasher(IOConfig(hash_threads=0)) as hasher:
        assert hasher.threads == (os.cpu_count() or 1)
    with pytest.raises(ConfigError):
        PieceHasher(threads=-1)
    with pytest.raises(ConfigError):
        DiskExecutor(threads=0)


@pytest.mark.parametrize("batch_bytes", [0, 5 * PL, DEFAULT_CHECK_BATCH])
@pytest.mark.parametrize("fused", [False, True])
async def test_check_classifies_good_bad_missing(tmp_path: Path, fused: bool, batch_bytes: int) -> None:
    info, payload = sample(12)
    storage = FileStorage(tmp_path, info)
    for index in range(info.num_pieces):
        if index not in (3, 4):  # never written: a sparse hole
            storage.write_piece(index, piece_of(info, payload, index))
    storage.write(7, 100, b"corrupt!")
    storage.close()
    seen: list[tuple[int, int]] = []
    async with PieceHasher(IOConfig(hash_threads=2, check_window=3)) as hasher:
        result = await hasher.check(
            info,
            FileStorage(tmp_path, info, read_only=True),
            progress=lambda d, t: seen.append((d, t)),
            fused=fused,
            batch_bytes=batch_bytes,
        )
    assert set(result.missing) == {3, 4}
    assert set(result.bad) == {7}
    assert set(result.good) == set(range(12)) - {3, 4, 7}
    assert not result.all_good
    assert result.checked_bytes == info.total_length
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert seen[-1] == (info.total_length, info.total_length)
    assert len(seen) == {0: 12, 5 * PL: 3, DEFAULT_CHECK_BATCH: 1}[batch_bytes]  # once per job


async def test_check_missing_files_and_wanted_subset(tmp_path: Path) -> None:
    info, payload = sample(12)
    storage = FileStorage(tmp_path, info)
    for index in range(info.num_pieces):
        storage.write_piece(index, piece_of(info, payload, index))
    storage.close()
    (tmp_path / "t" / "f2").unlink()
    ro = FileStorage(tmp_path, info, read_only=True)
    async with PieceHasher(IOConfig(hash_threads=2)) as hasher:
        good = await hasher.check_existing(info, ro)
        first_two = await hasher.check(info, ro, wanted=ro.layout.pieces_for_files([0, 1]))
        subset = await hasher.check_existing(info, ro, wanted=[0, 5])
    last_of_f1 = (info.files[1].end - 1) // PL
    assert set(good) == set(range(last_of_f1))  # the piece straddling f1/f2 and all of f2 are missing
    assert set(first_two.missing) == {last_of_f1}
    assert set(first_two.checked) == set(range(last_of_f1 + 1))
    assert set(subset) == {0, 5}
    assert not (tmp_path / "t" / "f2").exists()  # checking never creates files


class SlowStorage(MemoryStorage):
    """Counts reads in flight and records their order; each read takes a little while."""

    def __init__(self, info: InfoDict, payload: bytes) -> None:
        super().__init__(info)
        self.files.update(MemoryStorage.from_payload(info, payload).files)
        self.started: list[int] = []
        self.lock = threading.Lock()

    def read_piece_into(self, index: int, buf: BytesLike) -> bool:
        with self.lock:
            self.started.append(index)
        time.sleep(0.002)
        return super().read_piece_into(index, buf)


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("window", [1, 3, 5])
async def test_check_keeps_a_bounded_window_in_order(window: int, fused: bool) -> None:
    info, payload = sample(40, seed=2)
    storage = SlowStorage(info, payload)
    finished = 0
    max_in_flight = 0

    def progress(done: int, total: int) -> None:
        nonlocal finished, max_in_flight
        with storage.lock:
            max_in_flight = max(max_in_flight, len(storage.started) - finished)
        finished += 1

    async with PieceHasher(IOConfig(hash_threads=2, disk_threads=8)) as hasher:
        result = await hasher.check(
            info, storage, window=window, progress=progress, fused=fused, batch_bytes=0
        )
    assert result.all_good
    assert storage.started == list(range(40))  # reads start in ascending piece order
    assert max_in_flight <= window
    if window > 1:
        assert max_in_flight > 1  # the pipeline does overlap pieces


@pytest.mark.parametrize("batch_bytes", [0, 1024 * 1024])
async def test_check_memory_is_bounded_by_the_window(tmp_path: Path, batch_bytes: int) -> None:
    piece_length = 256 * 1024
    size = 24 * 1024 * 1024
    path = tmp_path / "t"
    with path.open("wb") as handle:
        for chunk in pseudo_random_chunks(size, seed=3):
            handle.write(chunk)
    data = path.read_bytes()
    info, _ = make_info("t", [("t", data)], piece_length=piece_length, single_file=True)
    del data
    storage = FileStorage(tmp_path, info, read_only=True)
    async with PieceHasher(IOConfig(hash_threads=2, check_window=4)) as hasher:
        tracemalloc.start()
        try:
            result = await hasher.check(info, storage, batch_bytes=batch_bytes)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert result.all_good
    assert peak < 4 * max(piece_length, batch_bytes) + 512 * 1024, peak


async def test_check_rejects_mismatched_inputs() -> None:
    info, _payload = sample(4)
    other, _ = sample(9)
    async with PieceHasher() as hasher:
        with pytest.raises(StorageError):
            await hasher.check(info, MemoryStorage(other))
        with pytest.raises(ConfigError):
            await hasher.check(info, MemoryStorage(info), window=0)
        with pytest.raises(ConfigError):
            await hasher.check(info, MemoryStorage(info), wanted=Bitfield(3))
        with pytest.raises(ConfigError):
            await hasher.check(info, MemoryStorage(info), wanted=[99])


async def test_check_skipped_files_by_default(tmp_path: Path) -> None:
    info, payload = sample(12)
    storage = MemoryStorage.from_payload(info, payload, skipped=[1])
    async with PieceHasher() as hasher:
        result = await hasher.check(info, storage)
    assert set(result.checked) == set(storage.wanted_pieces())
    assert result.all_good is False  # pieces straddling the skipped (absent) file are missing
    assert set(result.good) | set(result.missing) == set(result.checked)


async def test_disk_executor_round_trip(tmp_path: Path) -> None:
    info, payload = sample(6)
    storage = FileStorage(tmp_path, info)
    async with DiskExecutor(IOConfig(disk_threads=2)) as disk:
        assert disk.threads == 2
        await asyncio.gather(
            *(disk.write_piece(storage, i, piece_of(info, payload, i)) for i in range(info.num_pieces))
        )
        await disk.flush(storage)
        assert await disk.read(storage, 1, 10, 20) == payload[PL + 10 : PL + 30]
        assert await disk.read_piece(storage, 2) == piece_of(info, payload, 2)
        buf = bytearray(PL)
        assert await disk.read_piece_into(storage, 0, buf)
        assert bytes(buf) == piece_of(info, payload, 0)
        await disk.write(storage, 0, 0, b"zz")
        await disk.read_into(storage, 0, 0, buf)
        assert buf[:2] == b"zz"
        with pytest.raises(StorageError):
            await disk.read(storage, 99, 0, 1)
        assert await disk.run(int.from_bytes, b"\x01\x00", byteorder="little") == 1
        await disk.close_storage(storage)


async def test_check_surfaces_storage_errors_and_empty_selection(tmp_path: Path) -> None:
    info, _payload = sample(4)
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "root"
    root.mkdir()
    (root / "t").symlink_to(outside)
    async with PieceHasher() as hasher:
        with pytest.raises(StorageError, match="outside"):
            await hasher.check(info, FileStorage(root, info, read_only=True))
        empty = await hasher.check(info, MemoryStorage(info), wanted=[])
    assert empty.all_good and empty.checked.empty and empty.checked_bytes == 0


@pytest.mark.parametrize("fused", [False, True])
async def test_cancelled_check_leaves_the_hasher_usable(fused: bool) -> None:
    info, payload = sample(40, seed=4)
    storage = SlowStorage(info, payload)
    async with PieceHasher(IOConfig(hash_threads=2, disk_threads=2)) as hasher:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(hasher.check(info, storage, fused=fused, batch_bytes=0), timeout=0.01)
        assert len(storage.started) < 40
        result = await hasher.check(info, MemoryStorage.from_payload(info, payload), fused=fused)
        assert result.all_good
