"""The storage interface and the span logic shared by every backend, level L3 (blocking, no asyncio).

The shape follows anacrolix/torrent's ``storage.ClientImpl``: the engine speaks in pieces and offsets
inside pieces; a backend only knows how to read and write runs of bytes inside one file.  Everything
else -- cutting a range into file spans (:mod:`torrentgoat.storage.layout`), BEP 47 pad files, skipped
files -- lives here once, in :class:`SpanStorage`.

Semantics every backend shares (documented choices):

* **Pad files** (BEP 47) are never created or written; their bytes read as zeros.  This covers the pads
  implied by BitTorrent v2's per-file piece alignment (BEP 52), which are pad entries of the layout.
* **Symlinks** (BEP 47 ``attr`` ``l``) hold no payload; :meth:`flush` creates each wanted one as a link
  (``_create_symlink``), never as a regular file, and only when its target stays inside the download
  directory -- otherwise it is skipped with a warning (:attr:`SpanStorage.skipped_symlinks`).
* **Skipped files** are never created by a write: the spans of a write that fall into a skipped file
  are dropped, the rest of the piece is written.  A skipped file that already exists is still read.
* **Missing data**: :meth:`Storage.read` / :meth:`Storage.read_into` (serving a peer, a piece we
  claim to have) raise :class:`StorageError` when a byte they need is in a file that does not exist or
  is too short -- skipped or not -- so we never send zeros we did not verify.
  :meth:`Storage.read_piece` / :meth:`Storage.read_piece_into` (checking existing data) instead
  report the piece as absent (``None`` / ``False``) so a check can count it *missing* rather than bad.
  Reading never creates a file.
* Writes to a read-only storage raise :class:`StorageError`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Protocol, Self, runtime_checkable

from torrentgoat.bitfield import Bitfield
from torrentgoat.errors import StorageError
from torrentgoat.storage.layout import FileSpan, Layout

__all__ = ["BytesLike", "SpanStorage", "Storage"]

log = logging.getLogger("torrentgoat.storage")

BytesLike = bytes | bytearray | memoryview
"""Anything exposing a contiguous byte buffer."""


@runtime_checkable
class Storage(Protocol):
    """What the engine, the hasher and the disk executor need from torrent data on some medium.

    Implementations must be safe to call from several threads at once (the disk executor is a pool).
    """

    @property
    def layout(self) -> Layout: ...

    @property
    def read_only(self) -> bool: ...

    def read(self, piece: int, begin: int, length: int) -> bytes:
        """Bytes ``begin:begin+length`` of ``piece``; raises :class:`StorageError` if any is not on disk."""
        ...

    def read_into(self, piece: int, begin: int, buf: BytesLike) -> None:
        """Fill writable ``buf`` with bytes of ``piece`` from ``begin``; raises like :meth:`read`."""
        ...

    def read_piece(self, index: int) -> bytes | None:
        """The whole piece, or ``None`` when part of it is not on disk (file missing or too short)."""
        ...

    def read_piece_into(self, index: int, buf: BytesLike) -> bool:
        """Fill ``buf[:piece_size]`` with the piece; ``False`` when part of it is not on disk."""
        ...

    def write(self, piece: int, begin: int, data: BytesLike) -> None:
        """Write ``data`` at ``begin`` inside ``piece`` (pad and skipped spans dropped)."""
        ...

    def write_piece(self, index: int, data: BytesLike) -> None:
        """Write a whole piece: one positional write per file span."""
        ...

    def set_file_skipped(self, file_index: int, skipped: bool) -> None:
        """Skip (never create, drop writes to) or un-skip a file."""
        ...

    def is_file_skipped(self, file_index: int) -> bool: ...

    def wanted_pieces(self) -> Bitfield:
        """Pieces holding bytes of at least one file that is neither a pad nor skipped."""
        ...

    def flush(self) -> None:
        """Make written data durable and create wanted zero-length files."""
        ...

    def close(self) -> None:
        """Release every resource; the storage must not be used afterwards."""
        ...


def _as_view(buf: BytesLike) -> memoryview:
    view = memoryview(buf)
    if view.ndim != 1 or view.itemsize != 1 or not view.c_contiguous:
        view = view.cast("B")
    return view


class SpanStorage:
    """Shared piece/span logic; subclasses implement the three per-file primitives.

    ``_read_file_into(file_index, offset, view) -> int`` returns the number of bytes read (less than
    ``len(view)`` at end of file) or ``-1`` when the file does not exist; it must never create it.
    ``_write_file(file_index, offset, view)`` writes all of ``view``, creating the file if needed.
    ``_create_empty(file_index)`` creates a zero-length file.
    """

    def __init__(self, layout: Layout, *, read_only: bool = False, skipped: Iterable[int] = ()) -> None:
        self._layout = layout
        self._read_only = read_only
        self._skipped: set[int] = set()
        self._skip_lock = threading.Lock()
        self._closed = False
        self._symlinks_done: set[int] = set()
        self.skipped_symlinks: list[tuple[str, str]] = []
        """``(path, reason)`` of each BEP 47 symlink that was not created (target unusable or outside)."""
        for index in skipped:
            self.set_file_skipped(index, True)

    # -- properties ---------------------------------------------------------------------------

    @property
    def layout(self) -> Layout:
        return self._layout

    @property
    def read_only(self) -> bool:
        return self._read_only

    def _file_label(self, file_index: int) -> str:
        return self._layout.files[file_index].path_str

    # -- skipped files --------------------------------------------------------------------------

    def set_file_skipped(self, file_index: int, skipped: bool) -> None:
        if not 0 <= file_index < len(self._layout.files):
            raise StorageError(f"file index {file_index} out of range 0..{len(self._layout.files) - 1}")
        with self._skip_lock:
            if skipped:
                self._skipped.add(file_index)
            else:
                self._skipped.discard(file_index)

    def is_file_skipped(self, file_index: int) -> bool:
        return file_index in self._skipped

    @property
    def skipped_files(self) -> frozenset[int]:
        return frozenset(self._skipped)

    def wanted_pieces(self) -> Bitfield:
        """Pieces holding bytes of at least one file that is neither a pad nor skipped."""
        files = self._layout.files
        return self._layout.pieces_for_files(
            i for i in range(len(files)) if not files[i].pad and i not in self._skipped
        )

    # -- primitives (subclasses) ----------------------------------------------------------------

    def _read_file_into(self, file_index: int, offset: int, view: memoryview) -> int:
        raise NotImplementedError

    def _write_file(self, file_index: int, offset: int, view: memoryview) -> None:
        raise NotImplementedError

    def _create_empty(self, file_index: int) -> None:
        raise NotImplementedError

    def _create_symlink(self, file_index: int) -> str | None:
        """Create the BEP 47 symlink of entry ``file_index``; a reason string when it was skipped."""
        return "this storage does not create symlinks"

    def _read_part_into(self, offset: int, view: memoryview) -> int:
        """Read the *part file* at torrent byte ``offset`` (bytes read, ``-1`` if there is none)."""
        raise NotImplementedError

    def _write_part(self, offset: int, view: memoryview) -> None:
        """Write the *part file* at torrent byte ``offset``."""
        raise NotImplementedError

    # -- the part file ---------------------------------------------------------------------------
    #
    # A piece can straddle a wanted file and a skipped one.  Its skipped bytes are not written to the
    # skipped file (that file must never appear), but without them the piece could neither be served
    # to peers nor re-verified after a restart.  Like libtorrent's part file, such bytes go to one
    # sparse file addressed by torrent offset; reads of a skipped span look in the real file first
    # (it may exist from an earlier download), then in the part file.

    def _straddles_wanted(self, piece: int) -> bool:
        return any(
            not span.pad and span.file_index not in self._skipped for span in self._layout.spans(piece)
        )

    def _read_skipped_span(self, piece: int, span: FileSpan, part: memoryview) -> int:
        real = self._read_file_into(span.file_index, span.file_offset, part)
        if real == span.length or not self._straddles_wanted(piece):
            return real
        offset = self._layout.files[span.file_index].offset + span.file_offset
        return self._read_part_into(offset, part)

    # -- reads ----------------------------------------------------------------------------------

    def _fill(self, piece: int, spans: list[FileSpan], view: memoryview, *, strict: bool, what: str) -> bool:
        if self._closed:
            raise StorageError("storage is closed")
        for span in spans:
            part = view[span.buffer_offset : span.buffer_offset + span.length]
            if span.pad:
                part[:] = bytes(span.length)
                continue
            if span.file_index in self._skipped:
                got = self._read_skipped_span(piece, span, part)
            else:
                got = self._read_file_into(span.file_index, span.file_offset, part)
            if got != span.length:
                if not strict:
                    return False
                if got < 0:
                    raise StorageError(f"{what}: file {self._file_label(span.file_index)} does not exist")
                raise StorageError(
                    f"{what}: file {self._file_label(span.file_index)} ends before byte"
                    f" {span.file_offset + span.length}"
                )
        return True

    def read_into(self, piece: int, begin: int, buf: BytesLike) -> None:
        view = _as_view(buf)
        spans = self._layout.spans(piece, begin, len(view))
        self._fill(piece, spans, view, strict=True, what=f"reading piece {piece} at {begin}")

    def read(self, piece: int, begin: int, length: int) -> bytes:
        buf = bytearray(length)
        self.read_into(piece, begin, buf)
        return bytes(buf)

    def read_piece_into(self, index: int, buf: BytesLike) -> bool:
        size = self._layout.piece_size(index)
        view = _as_view(buf)
        if len(view) < size:
            raise StorageError(f"buffer of {len(view)} bytes for piece {index} of {size} bytes")
        spans = self._layout.spans(index)
        return self._fill(index, spans, view[:size], strict=False, what=f"reading piece {index}")

    def read_piece(self, index: int) -> bytes | None:
        buf = bytearray(self._layout.piece_size(index))
        if not self.read_piece_into(index, buf):
            return None
        return bytes(buf)

    # -- writes ---------------------------------------------------------------------------------

    def write(self, piece: int, begin: int, data: BytesLike) -> None:
        if self._closed:
            raise StorageError("storage is closed")
        if self._read_only:
            raise StorageError(f"storage is read-only: cannot write piece {piece}")
        view = _as_view(data)
        part_file: bool | None = None
        for span in self._layout.spans(piece, begin, len(view)):
            if span.pad:
                continue
            if span.file_index in self._skipped:
                if part_file is None:
                    part_file = self._straddles_wanted(piece)
                if part_file:
                    offset = self._layout.files[span.file_index].offset + span.file_offset
                    self._write_part(offset, view[span.buffer_offset : span.buffer_offset + span.length])
                continue
            self._write_file(
                span.file_index, span.file_offset, view[span.buffer_offset : span.buffer_offset + span.length]
            )

    def write_piece(self, index: int, data: BytesLike) -> None:
        size = self._layout.piece_size(index)
        view = _as_view(data)
        if len(view) != size:
            raise StorageError(f"piece {index} is {size} bytes, got {len(view)}")
        self.write(index, 0, view)

    # -- lifecycle ------------------------------------------------------------------------------

    def _create_empty_files(self) -> None:
        if self._read_only:
            return
        for index, entry in enumerate(self._layout.files):
            if entry.length == 0 and not entry.pad and index not in self._skipped:
                if not entry.is_symlink:
                    self._create_empty(index)
                elif index not in self._symlinks_done:
                    self._symlinks_done.add(index)
                    reason = self._create_symlink(index)
                    if reason is not None:
                        self.skipped_symlinks.append((entry.path_str, reason))
                        log.warning("symlink %s skipped: %s", entry.path_str, reason)

    def flush(self) -> None:
        self._create_empty_files()

    def close(self) -> None:
        self._closed = True

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
