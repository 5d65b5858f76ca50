"""Piece -> file-span mapping, level L3 (pure arithmetic, no I/O).

BEP 3: a torrent's files are concatenated, in the order of the ``files`` list, into one byte stream
cut into pieces of ``piece length`` bytes (only the last piece may be shorter).  A piece may
therefore cross one or more file boundaries.

BEP 47: files with ``p`` in ``attr`` are padding; their bytes are zeros, they are never written to
disk or created, and reads of their ranges produce zeros.  Spans of pad files are marked ``pad=True``
so callers can zero-fill them instead of touching the file system.

Zero-length files never appear in a span (they hold no bytes of any piece).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from torrentgoat.bitfield import Bitfield
from torrentgoat.errors import ConfigError, StorageError
from torrentgoat.geometry import PieceGeometry
from torrentgoat.metainfo import FileEntry, InfoDict

__all__ = ["FileSpan", "Layout"]


@dataclass(frozen=True, slots=True, kw_only=True)
class FileSpan:
    """A contiguous run of bytes inside one file that backs part of a requested range."""

    file_index: int
    """Index into ``Layout.files``."""
    file_offset: int
    """Offset of the run inside the file."""
    length: int
    """Number of bytes (always > 0)."""
    buffer_offset: int
    """Offset of the run inside the requested range (0 for the first span)."""
    pad: bool = False
    """The run lies in a BEP 47 pad file: zeros, never on disk."""


class Layout:
    """Where every byte of a torrent lives: ``(file, offset)`` for ``(piece, begin)``.

    Built from an :class:`InfoDict` (``Layout.from_info``) or from raw file entries (tests, creation).
    Lookups are ``O(log files + spans)`` with :mod:`bisect` over the file offsets.
    """

    __slots__ = ("_ends", "_starts", "files", "geometry")

    def __init__(
        self, files: Sequence[FileEntry], piece_length: int, *, num_pieces: int | None = None
    ) -> None:
        if piece_length <= 0:
            raise StorageError(f"piece length must be positive, got {piece_length}")
        self.files: tuple[FileEntry, ...] = tuple(files)
        offset = 0
        for index, entry in enumerate(self.files):
            if entry.offset != offset or entry.length < 0:
                raise StorageError(
                    f"file {index} ({entry.path_str}) is at offset {entry.offset} with length {entry.length};"
                    f" expected offset {offset}"
                )
            offset = entry.end
        try:
            geometry = PieceGeometry(piece_length, offset, num_pieces=num_pieces)
        except ConfigError:
            raise StorageError(
                f"{num_pieces} piece hashes for {offset} bytes of {piece_length}-byte pieces"
            ) from None
        self.geometry = geometry
        """Piece arithmetic of the torrent's byte stream (BEP 3)."""
        # Non-empty files only, so bisect never lands on a zero-length file.
        self._starts = [e.offset for e in self.files if e.length > 0]
        self._ends = [i for i, e in enumerate(self.files) if e.length > 0]

    @classmethod
    def from_info(cls, info: InfoDict) -> Layout:
        return cls(info.files, info.piece_length, num_pieces=info.num_pieces)

    @property
    def piece_length(self) -> int:
        return self.geometry.piece_length

    @property
    def total_length(self) -> int:
        return self.geometry.total_length

    @property
    def num_pieces(self) -> int:
        return self.geometry.num_pieces

    def piece_size(self, index: int) -> int:
        """Length of piece ``index``; only the last piece may be shorter (BEP 3)."""
        try:
            return self.geometry.piece_size(index)
        except IndexError:
            raise StorageError(f"piece index {index} out of range 0..{self.num_pieces - 1}") from None

    def spans(self, piece: int, begin: int = 0, length: int | None = None) -> list[FileSpan]:
        """File spans covering ``length`` bytes at ``begin`` inside ``piece``, in order, pads included.

        ``length=None`` means up to the end of the piece.  Raises :class:`StorageError` when the range
        leaves the piece.
        """
        size = self.piece_size(piece)
        if length is None:
            length = size - begin
        if begin < 0 or length < 0 or begin + length > size:
            raise StorageError(f"range {begin}+{length} outside piece {piece} of {size} bytes")
        return self.range_spans(self.geometry.piece_offset(piece) + begin, length)

    def range_spans(self, offset: int, length: int) -> list[FileSpan]:
        """File spans covering ``length`` bytes at torrent offset ``offset``."""
        if offset < 0 or length < 0 or offset + length > self.total_length:
            raise StorageError(f"range {offset}+{length} outside torrent of {self.total_length} bytes")
        result: list[FileSpan] = []
        if length == 0:
            return result
        k = bisect.bisect_right(self._starts, offset) - 1
        done = 0
        files = self.files
        while done < length:
            entry = files[self._ends[k]]
            file_offset = offset + done - entry.offset
            take = min(entry.length - file_offset, length - done)
            result.append(
                FileSpan(
                    file_index=self._ends[k],
                    file_offset=file_offset,
                    length=take,
                    buffer_offset=done,
                    pad=entry.pad,
                )
            )
            done += take
            k += 1
        return result

    def file_pieces(self, file_index: int) -> range:
        """Pieces holding at least one byte of file ``file_index`` (empty for empty files)."""
        entry = self.files[file_index]
        return self.geometry.pieces_of_span(entry.offset, entry.length)

    def piece_files(self, piece: int) -> list[int]:
        """Indices of the files (pads included) holding bytes of ``piece``."""
        return [span.file_index for span in self.spans(piece)]

    def pieces_for_files(self, file_indices: Iterable[int]) -> Bitfield:
        """Pieces needed to complete the given files (pad files and empty files need none)."""
        result = Bitfield(self.num_pieces)
        for index in file_indices:
            if self.files[index].pad:
                continue
            for piece in self.file_pieces(index):
                result.add(piece)
        return result
