"""The hash-checking pipeline, level L4: SHA-1 of whole pieces on a thread pool (BEP 3 ``pieces``).

Two jobs share one :class:`PieceHasher`:

* :meth:`PieceHasher.verify_piece` -- a piece assembled from peers' blocks is hashed in a thread and
  compared with its 20-byte hash from the info dictionary (BEP 3: "pieces ... SHA1 hash of the piece
  at the corresponding index").
* :meth:`PieceHasher.check` / :meth:`PieceHasher.check_existing` -- data already on disk is read in
  ascending piece order by at most ``window`` workers, each owning one reusable buffer of one piece
  (or of several small pieces, up to ``batch_bytes``): reads run on the
  :class:`~torrentgoat.aio.disk.DiskExecutor`, hashing on this pool.  Memory is
  ``window * max(piece_length, batch_bytes)`` whatever the size of the torrent.

Why threads scale here: ``os.preadv`` and OpenSSL's SHA-1 (``hashlib`` releases the GIL for buffers
over 2 KiB) both run without the GIL, so N hash threads use N cores while the loop stays responsive.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, InvalidStateError, ThreadPoolExecutor
from dataclasses import dataclass

from torrentgoat.aio.disk import DiskExecutor
from torrentgoat.bitfield import Bitfield
from torrentgoat.config import IOConfig
from torrentgoat.errors import ConfigError, StorageError
from torrentgoat.metainfo import InfoDict
from torrentgoat.storage import BytesLike, Storage

__all__ = ["DEFAULT_CHECK_BATCH", "CheckResult", "PieceHasher", "ProgressCallback", "sha1_digest"]

ProgressCallback = Callable[[int, int], None]
"""``progress(done_bytes, total_bytes)``, called on the event loop after each checked batch of pieces."""

DEFAULT_CHECK_BATCH = 4 * 1024 * 1024
"""Pieces smaller than this are checked several at a time, up to this many bytes per thread job, so
the per-job cost of a thread hop (~0.1 ms) stays small next to hashing (~1 ms per MB)."""

_INLINE_HASH_LIMIT = 64 * 1024
"""Below this many bytes a thread round trip costs more than hashing on the loop."""


def sha1_digest(data: BytesLike) -> bytes:
    """SHA-1 of ``data`` (releases the GIL for buffers over 2 KiB)."""
    return hashlib.sha1(data).digest()


def _hash_and_classify(view: memoryview, expected: bytes) -> int:
    """0 good, 1 bad, 2 missing (a wrong piece made only of zeros is a never-written sparse hole)."""
    if hashlib.sha1(view).digest() == expected:
        return 0
    return 2 if _all_zero(view) else 1


_Batch = list[tuple[int, memoryview, bytes]]
"""(piece index, its slice of a worker's buffer, expected SHA-1) for each piece of one job."""


def _read_batch(storage: Storage, batch: _Batch) -> list[bool]:
    return [storage.read_piece_into(index, view) for index, view, _ in batch]


def _hash_batch(batch: _Batch, present: list[bool]) -> list[int]:
    return [
        _hash_and_classify(view, expected) if ok else 2
        for (_, view, expected), ok in zip(batch, present, strict=True)
    ]


def _settle(future: Future[list[int]], source: Future[list[int]] | None, result: list[int] | None) -> None:
    """Copy ``source``'s outcome (or ``result``) into ``future`` unless it was cancelled meanwhile."""
    try:
        if source is None:
            future.set_result(result or [])
        elif source.cancelled():
            future.cancel()
        elif (error := source.exception()) is not None:
            future.set_exception(error)
        else:
            future.set_result(source.result())
    except InvalidStateError:  # the awaiting task was cancelled: nobody wants the result
        pass


def _read_then_hash(
    disk_pool: Executor, hash_pool: Executor, storage: Storage, batch: _Batch
) -> Future[list[int]]:
    """Read ``batch`` on the disk pool, then -- from that thread -- hand it to the hash pool.

    The event loop wakes once per job (when the hash is done) instead of once per stage: measured
    ~5-10% less CPU than awaiting each stage from the loop.
    """
    outcome: Future[list[int]] = Future()

    def read_stage() -> None:
        try:
            present = _read_batch(storage, batch)
            if not any(present):
                _settle(outcome, None, [2] * len(batch))
                return
            hashing = hash_pool.submit(_hash_batch, batch, present)
        except BaseException as exc:
            try:
                outcome.set_exception(exc)
            except InvalidStateError:
                pass
            return
        hashing.add_done_callback(lambda done: _settle(outcome, done, None))

    disk_pool.submit(read_stage)
    return outcome


def _read_and_hash_batch(storage: Storage, batch: _Batch) -> list[int]:
    """One job for the fused pipeline: read each piece, then hash it, on the same thread."""
    return [
        _hash_and_classify(view, expected) if storage.read_piece_into(index, view) else 2
        for index, view, expected in batch
    ]


_ZEROS = bytes(64 * 1024)


def _all_zero(view: memoryview) -> bool:
    step = len(_ZEROS)
    for start in range(0, len(view), step):
        chunk = view[start : start + step]
        if chunk.tobytes() != _ZEROS[: len(chunk)]:
            return False
    return True


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckResult:
    """Outcome of checking existing data; ``good``, ``bad`` and ``missing`` are disjoint."""

    good: Bitfield
    """Pieces whose data hashes to the expected SHA-1."""
    bad: Bitfield
    """Pieces present on disk whose hash does not match."""
    missing: Bitfield
    """Pieces with bytes in a file that does not exist or is too short, or made only of zeros
    (a hole of a sparse file never written) while not matching."""
    checked: Bitfield
    """The pieces that were examined (``wanted``)."""
    checked_bytes: int
    """Sum of the sizes of the examined pieces."""

    @property
    def all_good(self) -> bool:
        return self.good.count == self.checked.count


class PieceHasher:
    """A pool of ``IOConfig.hash_threads`` threads (0 = one per core) hashing whole pieces."""

    def __init__(
        self,
        config: IOConfig | None = None,
        *,
        threads: int | None = None,
        disk: DiskExecutor | None = None,
    ) -> None:
        self._config = config or IOConfig()
        count = threads if threads is not None else self._config.hash_threads
        if count < 0:
            raise ConfigError(f"hash_threads must be >= 0, got {count}")
        self.threads = count or os.cpu_count() or 1
        self._executor = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="torrentgoat-hash")
        self._disk = disk
        self._own_disk = False

    @property
    def disk(self) -> DiskExecutor:
        """The disk executor used by checks (created from the config on first use if none was given)."""
        if self._disk is None:
            self._disk = DiskExecutor(self._config)
            self._own_disk = True
        return self._disk

    async def hash(self, data: BytesLike) -> bytes:
        """SHA-1 of ``data``, on the pool unless it is small."""
        if len(memoryview(data)) * memoryview(data).itemsize < _INLINE_HASH_LIMIT:
            return sha1_digest(data)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, sha1_digest, data)

    async def verify_piece(self, info: InfoDict, index: int, data: BytesLike) -> bool:
        """Whether ``data`` is exactly piece ``index`` of ``info`` (right length and SHA-1, BEP 3)."""
        if not 0 <= index < info.num_pieces:
            return False
        view = memoryview(data).cast("B")
        if len(view) != info.piece_size(index):
            return False
        return await self.hash(view) == info.piece_hash(index)

    async def check(
        self,
        info: InfoDict,
        storage: Storage,
        *,
        wanted: Bitfield | Iterable[int] | None = None,
        window: int | None = None,
        progress: ProgressCallback | None = None,
        fused: bool = False,
        batch_bytes: int = DEFAULT_CHECK_BATCH,
    ) -> CheckResult:
        """Hash the pieces of ``storage`` in ``wanted`` (default: those of non-skipped files).

        Pieces are taken in ascending order, ``max(1, batch_bytes // piece_length)`` per job; at most
        ``window`` (default ``IOConfig.check_window``) jobs are being read or hashed at once, each in its
        own reused buffer, so memory stays ``window * max(piece_length, batch_bytes)`` whatever the size
        of the torrent (32 MiB with the defaults and pieces up to 4 MiB).

        By default a job's pieces are read on the disk executor, which then hands them to this pool for
        hashing, so reads (which may wait on a cold disk) overlap hashing; measured on a cold 2 GiB file
        this beats N raw ``pread``+``sha1`` threads.  ``fused=True`` reads and hashes in one job on this
        pool -- exactly the shape of those N raw threads, one thread hand-off fewer; it suits data
        already in the page cache.
        """
        num = info.num_pieces
        if storage.layout.num_pieces != num or storage.layout.piece_length != info.piece_length:
            raise StorageError("storage layout does not match the torrent's info dictionary")
        window = window if window is not None else self._config.check_window
        if window < 1:
            raise ConfigError(f"check window must be >= 1, got {window}")
        if wanted is None:
            selected = storage.wanted_pieces()
        elif isinstance(wanted, Bitfield):
            selected = wanted.copy()
        else:
            try:
                selected = Bitfield.from_indices(num, wanted)
            except IndexError as exc:
                raise ConfigError(f"wanted pieces: {exc}") from None
        if selected.length != num:
            raise ConfigError(f"wanted bitfield has {selected.length} pieces, torrent has {num}")
        good, bad, missing = Bitfield(num), Bitfield(num), Bitfield(num)
        total = sum(info.piece_size(i) for i in selected)
        done = 0
        indices: Iterator[int] = iter(selected)
        loop = asyncio.get_running_loop()
        disk = self.disk
        hash_pool = self._executor
        pieces = info.pieces
        piece_length = info.piece_length
        per_job = max(1, batch_bytes // piece_length)
        workers = min(window, -(-selected.count // per_job))
        outcome = (good, bad, missing)

        async def worker() -> None:
            nonlocal done
            whole = memoryview(bytearray(piece_length * min(per_job, selected.count)))
            while True:
                batch: _Batch = []
                for slot, index in enumerate(itertools.islice(indices, per_job)):
                    start = slot * piece_length
                    view = whole[start : start + info.piece_size(index)]
                    batch.append((index, view, pieces[index * 20 : index * 20 + 20]))
                if not batch:
                    return
                if fused:
                    statuses = await loop.run_in_executor(hash_pool, _read_and_hash_batch, storage, batch)
                else:
                    statuses = await asyncio.wrap_future(
                        _read_then_hash(disk.executor, hash_pool, storage, batch)
                    )
                for (index, view, _), status in zip(batch, statuses, strict=True):
                    outcome[status].add(index)
                    done += len(view)
                if progress is not None:
                    progress(done, total)

        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(workers):
                    group.create_task(worker())
        except BaseExceptionGroup as errors:
            # One worker failed (e.g. StorageError on a refused path): surface that error itself.
            raise errors.exceptions[0] from None
        return CheckResult(good=good, bad=bad, missing=missing, checked=selected, checked_bytes=total)

    async def check_existing(
        self,
        info: InfoDict,
        storage: Storage,
        *,
        wanted: Bitfield | Iterable[int] | None = None,
        window: int | None = None,
        progress: ProgressCallback | None = None,
        fused: bool = False,
        batch_bytes: int = DEFAULT_CHECK_BATCH,
    ) -> Bitfield:
        """The verified pieces among ``wanted`` (see :meth:`check`)."""
        result = await self.check(
            info,
            storage,
            wanted=wanted,
            window=window,
            progress=progress,
            fused=fused,
            batch_bytes=batch_bytes,
        )
        return result.good

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        if self._own_disk and self._disk is not None:
            self._disk.close()

    async def aclose(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.close)

    def __enter__(self) -> PieceHasher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> PieceHasher:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
