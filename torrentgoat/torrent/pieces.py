"""Piece buffers for downloading and a read cache for seeding (level L5 helpers, no I/O of their own).

Downloading: each started piece gets one ``bytearray`` of its size; blocks are copied straight in
(one copy from the socket buffer), the whole piece is hashed and written with one positional write
per file span, then the buffer is dropped.  The picker caps how many pieces are started, so the
memory held here is bounded by ``TorrentConfig.piece_memory`` whatever the file size.

Seeding: block requests are served from chunks of up to ``read_chunk`` bytes read from disk once and
kept in a small LRU (``read_cache`` bytes), so a peer streaming a piece costs one disk read per chunk,
not one per 16 KiB block.  Only verified pieces are ever read for serving.  For peers whose bytes
reach a TCP socket unchanged, a :class:`LeaseCache` instead keeps file descriptors lent for
``sendfile`` (chunks brought into the page cache on the disk pool, no copy into Python).
"""

from __future__ import annotations

import asyncio
import sys
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol, TypeVar

_T = TypeVar("_T")

__all__ = [
    "CHANGED",
    "READ",
    "ChunkReader",
    "ChunkReaderInto",
    "Lease",
    "LeaseCache",
    "Lender",
    "PieceBuffers",
    "ReadCache",
    "Span",
    "load_once",
]

_CAN_COUNT_REFS = hasattr(sys, "getrefcount")

Buffer = bytes | bytearray | memoryview
"""Bytes of one received block."""


async def load_once(
    pending: dict[tuple[int, int], asyncio.Future[_T]],
    key: tuple[int, int],
    load: Callable[[], Awaitable[_T]],
) -> _T:
    """One load per ``key`` at a time: the first caller runs ``load``; callers arriving meanwhile
    await its result or its error (shielded: a cancelled waiter does not cancel the load)."""
    waiting = pending.get(key)
    if waiting is not None:
        return await asyncio.shield(waiting)
    future: asyncio.Future[_T] = asyncio.get_running_loop().create_future()
    pending[key] = future
    try:
        result = await load()
    except BaseException as exc:
        future.set_exception(exc)
        future.exception()  # retrieved: there may be no waiter
        raise
    finally:
        pending.pop(key, None)
    future.set_result(result)
    return result


class PieceBuffers:
    """In-memory buffers of pieces being downloaded, recycled once nobody references them.

    A fresh ``bytearray`` of a few MiB is a fresh ``mmap``: every 4 KiB page of it faults on its
    first write, which cost about 1 s of CPU per GB downloaded.  Dropped buffers are therefore
    kept (at most ``spare_buffers`` of them, at most ``spare_bytes`` in all) and reused for the
    next piece of the same size -- but only when the buffer has no other reference left (the
    hash or disk thread that used it is done, no memoryview of it is alive), checked with
    :func:`sys.getrefcount`, so a buffer still being hashed or written is never overwritten.
    A reused buffer is not zeroed: a piece is only hashed once every block of it was written.
    With a ``budget`` (the picker's cap on the bytes of started pieces), spares are kept only while
    held and spare buffers together fit in it, so the piece memory of a download never exceeds the
    budget (plus at most one buffer still held by a hash or disk thread).
    """

    __slots__ = ("_buffers", "_spare", "_spare_bytes", "budget", "bytes_held", "max_spare", "max_spare_bytes")

    def __init__(
        self, *, spare_buffers: int = 8, spare_bytes: int = 32 * 1024 * 1024, budget: int | None = None
    ) -> None:
        self._buffers: dict[int, bytearray] = {}
        self._spare: list[bytearray] = []
        self._spare_bytes = 0
        self.max_spare = spare_buffers if _CAN_COUNT_REFS else 0
        self.max_spare_bytes = spare_bytes
        self.budget = budget
        self.bytes_held = 0

    def write(self, index: int, size: int, begin: int, data: bytes | memoryview) -> None:
        buf = self._buffers.get(index)
        if buf is None:
            buf = self._buffers[index] = self._allocate(size)
            self.bytes_held += size
        buf[begin : begin + len(data)] = data

    def write_blocks(
        self, blocks: Iterable[tuple[int, int, Buffer]], piece_size: Callable[[int], int]
    ) -> None:
        """:meth:`write` of each ``(index, begin, data)``, the buffer looked up once per run of one piece."""
        buffers = self._buffers
        last = -1
        buf = bytearray()
        for index, begin, data in blocks:
            if index != last:
                last = index
                found = buffers.get(index)
                if found is None:
                    size = piece_size(index)
                    found = buffers[index] = self._allocate(size)
                    self.bytes_held += size
                buf = found
            buf[begin : begin + len(data)] = data

    def _allocate(self, size: int) -> bytearray:
        spare = self._spare
        # Newest first: the buffer hashed and written last is the likeliest to be still in the CPU's
        # cache, and the blocks are copied into it at memory speed either way.
        for i in range(len(spare) - 1, -1, -1):  # not enumerate(): its result tuple holds a reference
            buf = spare[i]
            # references: the list, ``buf`` and getrefcount's argument -- nobody else's
            if len(buf) == size and sys.getrefcount(buf) <= 3:
                del spare[i]
                self._spare_bytes -= size
                return buf
        budget = self.budget
        while spare and budget is not None and self.bytes_held + self._spare_bytes + size > budget:
            self._spare_bytes -= len(spare.pop(0))  # still referenced or the wrong size: let it go
        return bytearray(size)

    def get(self, index: int) -> bytearray | None:
        return self._buffers.get(index)

    def drop(self, index: int) -> None:
        buf = self._buffers.pop(index, None)
        if buf is None:
            return
        size = len(buf)
        self.bytes_held -= size
        if self.max_spare <= 0 or size > self.max_spare_bytes:
            return
        spare = self._spare
        spare.append(buf)
        self._spare_bytes += size
        budget = self.budget if self.budget is not None else self.bytes_held + self.max_spare_bytes
        while spare and (
            len(spare) > self.max_spare
            or self._spare_bytes > self.max_spare_bytes
            or self.bytes_held + self._spare_bytes > budget
        ):
            self._spare_bytes -= len(spare.pop(0))

    def clear(self) -> None:
        self._buffers.clear()
        self._spare.clear()
        self._spare_bytes = 0
        self.bytes_held = 0

    @property
    def spare_bytes(self) -> int:
        """Bytes of dropped buffers kept for reuse (on top of :attr:`bytes_held`)."""
        return self._spare_bytes

    def __len__(self) -> int:
        return len(self._buffers)


ChunkReader = Callable[[int, int, int], Awaitable[bytes]]
"""``read(piece, begin, length)`` of verified data, run off the event loop."""

ChunkReaderInto = Callable[[int, int, bytearray], Awaitable[None]]
"""``read_into(piece, begin, buf)``: fill ``buf`` with verified data, run off the event loop."""


class ReadCache:
    """LRU of aligned chunks of verified pieces; concurrent misses for one chunk share one read.

    With ``reader_into`` the cache reads into its own buffers and recycles evicted ones (only when
    nothing references them any more: no block of theirs is still queued for a socket), so serving
    costs neither a fresh allocation nor a copy per chunk; ``reader`` is used otherwise.
    """

    def __init__(
        self,
        reader: ChunkReader,
        *,
        chunk: int,
        budget: int,
        reader_into: ChunkReaderInto | None = None,
        spare_buffers: int = 4,
    ) -> None:
        self._reader = reader
        self._reader_into = reader_into
        self._chunk = max(16 * 1024, chunk)
        self._budget = max(budget, self._chunk)
        self._cache: OrderedDict[tuple[int, int], bytes | bytearray] = OrderedDict()
        self._pending: dict[tuple[int, int], asyncio.Future[bytes | bytearray]] = {}
        self._spare: list[bytearray] = []
        self._max_spare = spare_buffers if _CAN_COUNT_REFS and reader_into is not None else 0
        self._held = 0
        self.hits = 0
        self.misses = 0

    def cached(self, piece: int, begin: int, length: int) -> memoryview | None:
        """The bytes if their chunk is in the cache (no coroutine: the seeding hot path), else ``None``."""
        chunk = self._chunk
        first = begin // chunk
        if first != (begin + length - 1) // chunk:
            return None
        key = (piece, first)
        data = self._cache.get(key)
        if data is None:
            return None
        self._cache.move_to_end(key)
        self.hits += 1
        offset = begin - first * chunk
        return memoryview(data)[offset : offset + length]

    async def read(self, piece: int, begin: int, length: int, piece_size: int) -> memoryview:
        """``length`` bytes at ``begin`` of ``piece``; a request never spans two chunks' worth of reads
        unless it crosses a chunk boundary (then both chunks are read)."""
        chunk = self._chunk
        first = begin // chunk
        last = (begin + length - 1) // chunk
        offset = begin - first * chunk
        if first == last:
            key = (piece, first)
            data = self._cache.get(key)  # hit: no nested coroutine (this runs once per block)
            if data is not None:
                self._cache.move_to_end(key)
                self.hits += 1
            else:
                data = await self._get(piece, first, piece_size)
            return memoryview(data)[offset : offset + length]
        parts = [await self._get(piece, c, piece_size) for c in range(first, last + 1)]
        joined = b"".join(parts)
        return memoryview(joined)[offset : offset + length]

    async def _get(self, piece: int, chunk_index: int, piece_size: int) -> bytes | bytearray:
        key = (piece, chunk_index)
        data = self._cache.get(key)
        if data is not None:
            self._cache.move_to_end(key)
            self.hits += 1
            return data
        return await load_once(self._pending, key, lambda: self._load(piece, chunk_index, piece_size))

    async def _load(self, piece: int, chunk_index: int, piece_size: int) -> bytes | bytearray:
        key = (piece, chunk_index)
        self.misses += 1
        start = chunk_index * self._chunk
        length = min(self._chunk, piece_size - start)
        data: bytes | bytearray
        if self._reader_into is not None:
            data = self._buffer(length)
            await self._reader_into(piece, start, data)
        else:
            data = await self._reader(piece, start, length)
        self._cache[key] = data
        self._held += len(data)
        while self._held > self._budget and self._cache:
            _, old = self._cache.popitem(last=False)
            self._held -= len(old)
            if type(old) is bytearray and len(self._spare) < self._max_spare:
                self._spare.append(old)
        return data

    def _buffer(self, size: int) -> bytearray:
        spare = self._spare
        # Newest first: the buffer hashed and written last is the likeliest to be still in the CPU's
        # cache, and the blocks are copied into it at memory speed either way.
        for i in range(len(spare) - 1, -1, -1):  # not enumerate(): its result tuple holds a reference
            buf = spare[i]
            # references: the list, ``buf`` and getrefcount's argument -- no queued block view
            if len(buf) == size and sys.getrefcount(buf) <= 3:
                del spare[i]
                return buf
        if len(spare) >= self._max_spare > 0:
            spare.pop(0)  # long referenced (a stalled socket): let it go when its views do
        return bytearray(size)

    def invalidate(self, piece: int) -> None:
        for key in [k for k in self._cache if k[0] == piece]:
            self._held -= len(self._cache.pop(key))

    def clear(self) -> None:
        self._cache.clear()
        self._spare.clear()
        self._held = 0


class Lease(Protocol):
    """Open descriptors under a range of a piece (``storage.FileLease``)."""

    spans: list[tuple[int, int, int]]
    """``(fd, file offset, length)`` in range order."""

    def unchanged(self) -> bool:
        """Whether the (complete) files still have the size and modification time they had when lent."""

    def release(self) -> None: ...


Lender = Callable[[int, int, int], Awaitable[Lease | None]]
"""``(piece, begin, length)`` -> a lease with the bytes in the page cache and unchanged since they
were verified, or ``None`` when they are not in one file each (pads, skipped files)."""

Span = tuple[int, int, int, int]
"""``(fd, delta, lo, hi)``: the bytes ``[lo, hi)`` of a piece lie in file ``fd`` at ``offset + delta``."""
READ: Span = (-1, -1, -1, -1)
"""What :meth:`LeaseCache.find` returns for a block that cannot be sent from a file: read it."""
CHANGED: Span = (-2, -2, -2, -2)
"""What :meth:`LeaseCache.find` returns when a file under the block changed since it was lent."""


class LeaseCache:
    """Chunks of verified pieces lent for ``sendfile``: ``(fd, file offset)`` of a block, or a miss.

    A lease holds no memory, only open descriptors, and is trusted for ``ttl`` seconds: the lender
    checked on the disk pool that the files had not changed since verification (``FileWatch``) and
    brought the bytes into the page cache, and ``sendfile`` reads them when they are sent, so a lease
    is renewed (checked again) rather than kept.  Between, the first :meth:`find` of each burst
    (:meth:`next_burst`) compares the files' size and modification time with those at lending
    (``fstat``), so a file written in place is noticed before the next burst, not a second later.
    At most ``capacity`` chunks are held; concurrent requests for one chunk share one call of the
    lender."""

    def __init__(self, lender: Lender, *, chunk: int, ttl: float = 1.0, capacity: int = 64) -> None:
        self._lender = lender
        self._chunk = max(16 * 1024, chunk)
        self._ttl = ttl
        self._capacity = capacity
        self._leases: OrderedDict[tuple[int, int], tuple[Lease | None, float, list[int]]] = OrderedDict()
        self._pending: dict[tuple[int, int], asyncio.Future[None]] = {}
        self._closed = False
        self._burst = 0
        self.lent = 0

    def next_burst(self) -> None:
        """Blocks found from now on belong to a new burst: each lease's files are checked again."""
        self._burst += 1

    def find(self, piece: int, begin: int, length: int, now: float) -> Span | None:
        """The :data:`Span` holding the block when a live lease covers it within one file (the
        blocks after it in the same span need no other call);
        :data:`READ` when its chunk is lent but the block is not in one file; :data:`CHANGED` when a
        file under it changed since lent; ``None``: no lease."""
        chunk = self._chunk
        index = begin // chunk
        entry = self._leases.get((piece, index))
        if entry is None:
            return None
        lease, expires, checked = entry
        if now >= expires:
            del self._leases[(piece, index)]
            if lease is not None:
                lease.release()
            return None
        if lease is None:
            return READ
        if checked[0] != self._burst:
            if not lease.unchanged():
                del self._leases[(piece, index)]
                lease.release()
                return CHANGED
            checked[0] = self._burst
        lo = index * chunk
        for fd, file_offset, span in lease.spans:
            hi = lo + span
            if begin < hi:
                return (fd, file_offset - lo, lo, hi) if begin + length <= hi else READ
            lo = hi
        return READ

    def pending(self, piece: int, begin: int) -> bool:
        key = (piece, begin // self._chunk)
        return key in self._pending or key in self._leases

    async def lend(self, piece: int, begin: int, piece_size: int, now: float) -> None:
        """Lend the chunk holding byte ``begin`` of ``piece`` (the lender's errors propagate)."""
        key = (piece, begin // self._chunk)
        await load_once(self._pending, key, lambda: self._lend(key, piece_size, now))

    async def _lend(self, key: tuple[int, int], piece_size: int, now: float) -> None:
        piece, start = key[0], key[1] * self._chunk
        lease = await self._lender(piece, start, min(self._chunk, piece_size - start))
        if self._closed:
            if lease is not None:
                lease.release()
            return
        self._keep(key, lease, now)

    def _keep(self, key: tuple[int, int], lease: Lease | None, now: float) -> None:
        old = self._leases.pop(key, None)
        if old is not None and old[0] is not None:
            old[0].release()
        self._leases[key] = (lease, now + self._ttl, [self._burst])
        self.lent += 1
        while len(self._leases) > self._capacity:
            _, (gone, _, _) = self._leases.popitem(last=False)
            if gone is not None:
                gone.release()

    def invalidate(self, piece: int) -> None:
        for key in [k for k in self._leases if k[0] == piece]:
            lease, _, _ = self._leases.pop(key)
            if lease is not None:
                lease.release()

    def close(self) -> None:
        """Release every lease; leases still being made are released when they arrive."""
        self._closed = True
        for lease, _, _ in self._leases.values():
            if lease is not None:
                lease.release()
        self._leases.clear()
