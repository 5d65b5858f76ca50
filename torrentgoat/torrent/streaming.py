"""Range reads of verified data with piece deadlines (level L5): a file served while it downloads.

A reader asks for the bytes ``[start, stop)`` of one file of the torrent (:meth:`Streams.read`, reached
through :meth:`Torrent.stream <torrentgoat.torrent.core.Torrent.stream>`) and receives them in order,
as soon as the pieces that hold them are verified and written -- never a byte of an unverified piece
(issue 3, "Verified pieces only").  The torrent keeps downloading the rest of its pieces as usual; a
reader only moves its next pieces to the front:

* **Deadlines as priorities.**  The piece picker has no clock-based deadlines; what it has are piece
  priorities (0 skip, 1 normal, up to :data:`~torrentgoat.picker.MAX_PRIORITY`), and it opens the
  highest first (libtorrent's streaming mode does the same with its time-critical pieces).  A reader
  waiting at piece *p* gives *p* the top priority, *p + 1* one less, and so on down to
  :data:`FLOOR` for the rest of a read-ahead window (:data:`READAHEAD` bytes, at least
  :data:`MIN_WINDOW` and at most :data:`MAX_WINDOW` pieces): "sequential from the range start,
  highest first".  Several readers raise a piece to the highest priority any of them wants; the
  window slides as the reader moves on.
* **Notification, not polling.**  The torrent calls :meth:`Streams.piece_verified` after each piece
  is written and added to the have-set (and :meth:`Streams.have_changed` when pieces taken back by
  :mod:`torrentgoat.torrent.recovery` come back after their re-check); a reader waiting for that
  piece wakes up and reads it from storage on the disk pool (the page cache usually still holds it).
* **Letting go.**  A reader that finishes, fails or is closed early (``aclose``: the HTTP client left)
  withdraws its window -- each piece goes back to the priority it had before any reader raised it --
  and stops waiting.  When the torrent stops, every reader raises
  :class:`~torrentgoat.errors.TorrentGoatError` naming the reason.

Only files the torrent downloads can be read (a file excluded by the file selection raises
:class:`~torrentgoat.errors.ConfigError`): raising the priority of a piece from 0 would make the
torrent want data it will not write.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Iterable
from dataclasses import dataclass, field
from typing import NoReturn, TypeVar

from torrentgoat.errors import ConfigError, StorageError, TorrentGoatError
from torrentgoat.metainfo import FileEntry, InfoDict
from torrentgoat.picker import MAX_PRIORITY, PiecePicker
from torrentgoat.torrent.handle import TorrentHandle
from torrentgoat.torrent.swarm import Swarm

__all__ = ["CHUNK", "FLOOR", "MAX_WINDOW", "MIN_WINDOW", "READAHEAD", "Streams"]

T = TypeVar("T")

READAHEAD = 32 * 1024 * 1024
"""Bytes ahead of a reader's position whose pieces get a raised priority."""
MIN_WINDOW = 4
"""Fewest pieces in a reader's window (large pieces)."""
MAX_WINDOW = 32
"""Most pieces in a reader's window (small pieces): bounds the priority updates per piece read."""
FLOOR = 2
"""Priority of the far end of a window: still ahead of the torrent's normal pieces (1)."""
CHUNK = 1024 * 1024
"""Largest chunk a reader yields (one disk read)."""


@dataclass(eq=False, slots=True)
class _Reader:
    """One open range read: the priorities it wants."""

    window: dict[int, int] = field(default_factory=dict)
    """Piece -> the priority this reader wants for it."""


@dataclass(eq=False, slots=True)
class _Waiting:
    """Readers waiting for one piece."""

    event: asyncio.Event = field(default_factory=asyncio.Event)
    count: int = 0


class Streams:
    """The torrent's range readers (see the module docstring).  One per :class:`Torrent`."""

    def __init__(
        self,
        swarm: Swarm,
        host: TorrentHandle,
        *,
        readahead: int = READAHEAD,
        chunk: int = CHUNK,
    ) -> None:
        if readahead < 1 or chunk < 1:
            raise ConfigError("readahead and chunk must be positive")
        self.swarm = swarm
        self.host = host
        self.readahead = readahead
        self.chunk = chunk
        self._readers: set[_Reader] = set()
        self._base: dict[int, int] = {}
        """Priority a piece had before a reader raised it."""
        self._waiting: dict[int, _Waiting] = {}
        self._ready = asyncio.Event()
        self._closed = asyncio.Event()
        self._reason = ""

    # ------------------------------------------------------------------ what the torrent tells us

    def ready(self) -> None:
        """The picker exists and the have-set is known (after the check of what is on disk)."""
        self._ready.set()

    def piece_verified(self, index: int) -> None:
        """Piece ``index`` is verified, written and in the have-set: wake its readers."""
        waiting = self._waiting.pop(index, None)
        if waiting is not None:
            waiting.event.set()

    def have_changed(self) -> None:
        """Pieces came back into the have-set without being downloaded (taken back after a change on
        disk, then found good by the re-check): every waiting reader looks again."""
        waiting, self._waiting = self._waiting, {}
        for entry in waiting.values():
            entry.event.set()

    def close(self, reason: str) -> None:
        """The torrent stops: every reader fails with ``reason``; priorities are left as they are."""
        if self._closed.is_set():
            return
        self._reason = reason
        self._closed.set()
        for waiting in self._waiting.values():
            waiting.event.set()
        self._waiting.clear()
        self._readers.clear()
        self._base.clear()

    # ------------------------------------------------------------------ what readers see

    @property
    def readers(self) -> int:
        """Range reads open now."""
        return len(self._readers)

    @property
    def raised(self) -> dict[int, int]:
        """Pieces whose priority readers raised -> the priority they had before (a copy, for tests)."""
        return dict(self._base)

    def window_pieces(self, info: InfoDict) -> int:
        """Pieces in a reader's window for this torrent's piece length."""
        return max(MIN_WINDOW, min(MAX_WINDOW, -(-self.readahead // info.piece_length)))

    async def read(
        self, file_index: int, start: int = 0, stop: int | None = None
    ) -> AsyncGenerator[bytes, None]:
        """The verified bytes ``[start, stop)`` of file ``file_index`` (``stop`` None: its end), in order.

        Chunks are at most :attr:`chunk` bytes and never cross a piece boundary.  Waits for metadata,
        the check of what is on disk, and each piece.  ConfigError for a bad file index or range, or
        a file the torrent does not download; TorrentGoatError when the torrent stops first.
        """
        if self._closed.is_set():
            self._raise_closed()
        info = await self._until(self.host.wait_metadata())
        entry = _file(info, file_index)
        stop = entry.length if stop is None else stop
        if not 0 <= start <= stop <= entry.length:
            raise ConfigError(f"range {start}..{stop} is outside {entry.path_str} ({entry.length} bytes)")
        if start == stop:
            return
        await self._until(self._ready.wait())
        storage, picker = self.swarm.storage, self.swarm.picker
        assert storage is not None and picker is not None
        if storage.is_file_skipped(file_index):
            raise ConfigError(f"{entry.path_str} is not selected for download; it cannot be streamed")
        plen = info.piece_length
        position, end = entry.offset + start, entry.offset + stop
        last = (end - 1) // plen
        width = self.window_pieces(info)
        reader = _Reader()
        self._readers.add(reader)
        try:
            while position < end:
                piece = position // plen
                self._move(reader, picker, range(piece, min(piece + width, last + 1)))
                await self._wait_piece(piece)
                piece_end = min((piece + 1) * plen, end)
                while position < piece_end:
                    length = min(self.chunk, piece_end - position)
                    data = await self._read(piece, position - piece * plen, length)
                    position += length
                    yield data
        finally:
            self._leave(reader, picker)

    # ------------------------------------------------------------------ inside

    async def _until(self, awaitable: Awaitable[T]) -> T:
        """``awaitable``'s result, or TorrentGoatError when the torrent stops first."""
        job = asyncio.ensure_future(awaitable)
        closed = asyncio.ensure_future(self._closed.wait())
        try:
            await asyncio.wait({job, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closed.cancel()
            if not job.done():
                job.cancel()
        if not job.done() or job.cancelled():
            self._raise_closed()
        return job.result()

    def _raise_closed(self) -> NoReturn:
        raise TorrentGoatError(f"{self.host.name}: the torrent stopped ({self._reason or 'stopped'})")

    async def _wait_piece(self, piece: int) -> None:
        have = self.swarm.have
        assert have is not None
        while piece not in have:
            if self._closed.is_set():
                self._raise_closed()
            waiting = self._waiting.get(piece)
            if waiting is None:
                waiting = self._waiting[piece] = _Waiting()
            waiting.count += 1
            try:
                await waiting.event.wait()
            finally:
                waiting.count -= 1
                if not waiting.count and self._waiting.get(piece) is waiting:
                    del self._waiting[piece]  # the last reader left before the piece came
        if self._closed.is_set():
            self._raise_closed()

    async def _read(self, piece: int, begin: int, length: int) -> bytes:
        storage = self.swarm.storage
        if self._closed.is_set() or storage is None:
            self._raise_closed()
        try:
            return await self.host.ctx.disk.read(storage, piece, begin, length)
        except StorageError as exc:
            if self._closed.is_set():
                self._raise_closed()
            self.host.data_lost(piece, exc)  # verified, yet unreadable: the files changed under us
            raise

    def _move(self, reader: _Reader, picker: PiecePicker, pieces: range) -> None:
        """Point ``reader``'s window at ``pieces`` (the first one most urgent)."""
        have = self.swarm.have
        assert have is not None
        old = reader.window
        new = {index: max(FLOOR, MAX_PRIORITY - k) for k, index in enumerate(pieces) if index not in have}
        if new == old:
            return
        reader.window = new
        self._apply(picker, old.keys() | new.keys())

    def _leave(self, reader: _Reader, picker: PiecePicker) -> None:
        if reader not in self._readers:
            return  # the torrent closed: nothing to restore
        self._readers.discard(reader)
        pieces = reader.window.keys()
        reader.window = {}
        self._apply(picker, pieces)

    def _apply(self, picker: PiecePicker, pieces: Iterable[int]) -> None:
        """Give each piece the highest priority a reader wants, or back its own when none does."""
        readers = self._readers
        for index in pieces:
            want = max((r.window.get(index, 0) for r in readers), default=0)
            if want:
                base = self._base.setdefault(index, picker.priority(index))
                picker.set_piece_priority(index, max(want, base))
            elif index in self._base:
                picker.set_piece_priority(index, self._base.pop(index))


def _file(info: InfoDict, file_index: int) -> FileEntry:
    if not 0 <= file_index < len(info.files):
        raise ConfigError(f"file index {file_index} out of range 0..{len(info.files) - 1}")
    entry = info.files[file_index]
    if entry.pad:
        raise ConfigError(f"file {file_index} is a padding file")
    return entry
