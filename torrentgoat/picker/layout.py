"""File priorities mapped to piece priorities, and BEP 53 file selections (level L2, pure).

The piece and block arithmetic itself is :class:`torrentgoat.geometry.PieceGeometry` (re-exported
here under its old name ``PieceLayout``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from torrentgoat.errors import ConfigError, MagnetError
from torrentgoat.geometry import PieceGeometry

__all__ = [
    "MAX_PRIORITY",
    "FileSpan",
    "PieceGeometry",
    "PieceLayout",
    "SpanLike",
    "file_priorities_to_piece_priorities",
    "parse_select_only",
    "select_only_priorities",
]

MAX_PRIORITY = 7
"""Highest piece priority (libtorrent's range: 0 = skip, 1 = normal ... 7 = top)."""


class SpanLike(Protocol):
    """Anything placing a file in the torrent's byte stream (e.g. ``metainfo.FileEntry``)."""

    @property
    def offset(self) -> int: ...

    @property
    def length(self) -> int: ...

    @property
    def pad(self) -> bool: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class FileSpan:
    """A file's place in the torrent's byte stream."""

    offset: int
    """Byte offset of the file's first byte in the concatenated stream."""

    length: int
    """File length in bytes (may be 0)."""

    pad: bool = False
    """BEP 47 pad file: zeros never downloaded nor written, so it never makes a piece wanted."""


PieceLayout = PieceGeometry
"""Old name of :class:`torrentgoat.geometry.PieceGeometry` (same class), kept for existing callers."""


def _span(span: SpanLike | tuple[int, int, bool]) -> tuple[int, int, bool]:
    if isinstance(span, tuple):
        offset, length, pad = span
        return int(offset), int(length), bool(pad)
    return span.offset, span.length, span.pad


def file_priorities_to_piece_priorities(
    layout: PieceGeometry,
    spans: Sequence[SpanLike | tuple[int, int, bool]],
    file_priorities: Sequence[int],
) -> list[int]:
    """Piece priorities from per-file priorities: each piece gets the highest priority of the files it
    overlaps (libtorrent's rule), so a piece shared by a skipped and a wanted file is still fetched.

    ``spans`` are ``(offset, length, pad)`` tuples or objects with those attributes (``FileEntry``).
    BEP 47 pad files and empty files never raise a piece's priority; a piece touched only by pad files
    stays at 0 (its bytes are known zeros).
    """
    if len(spans) != len(file_priorities):
        raise ConfigError(f"{len(file_priorities)} file priorities for {len(spans)} files")
    result = [0] * layout.num_pieces
    for span, prio in zip(spans, file_priorities, strict=True):
        if not 0 <= prio <= MAX_PRIORITY:
            raise ConfigError(f"file priority {prio} out of range 0..{MAX_PRIORITY}")
        offset, length, pad = _span(span)
        if pad or prio == 0:
            continue
        if offset < 0 or offset + length > layout.total_length:
            raise ConfigError(f"file span ({offset}, {length}) past the's {layout.total_length} bytes")
        for index in layout.pieces_of_span(offset, length):
            if result[index] < prio:
                result[index] = prio
    return result


def parse_select_only(text: str, num_files: int | None = None) -> frozenset[int]:
    """File indices of a BEP 53 ``so=`` value: comma-separated indices and inclusive ranges
    (``"0,2,4-6"``).  With ``num_files``, indices past the end raise :class:`MagnetError`."""
    result: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        first, dash, last = part.partition("-")
        if not first.isdigit() or (dash and not last.isdigit()):
            raise MagnetError(f"BEP 53 so= item is not an index or range: {part!r} in {text!r}")
        lo = int(first)
        hi = int(last) if dash else lo
        if hi < lo:
            raise MagnetError(f"BEP 53 so= range runs backwards: {part!r}")
        if num_files is not None and hi >= num_files:
            raise MagnetError(f"BEP 53 so= index {hi} past the last file ({num_files} files)")
        if hi - lo > 10_000_000:
            raise MagnetError(f"BEP 53 so= range too large: {part!r}")
        result.update(range(lo, hi + 1))
    return frozenset(result)


def select_only_priorities(num_files: int, selection: Iterable[int], *, priority: int = 1) -> list[int]:
    """File priorities for a BEP 53 selection: ``priority`` for selected files, 0 (skip) for the rest."""
    chosen = set(selection)
    bad = [i for i in chosen if not 0 <= i < num_files]
    if bad:
        raise ConfigError(f"selected file index {min(bad)} out of range 0..{num_files - 1}")
    return [priority if i in chosen else 0 for i in range(num_files)]
