"""Metainfo v1 (.torrent files), level L1: pure data and validation.

BEP 3 (single- and multi-file), BEP 12 (``announce-list``), BEP 19 (``url-list``), BEP 27 (``private``),
BEP 47 (pad files and ``attr``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torrentgoat.primitives import InfoHash

__all__ = ["FileEntry", "InfoDict", "Metainfo"]


@dataclass(frozen=True, slots=True, kw_only=True)
class FileEntry:
    """One file of a torrent, placed in the torrent's concatenated byte stream.

    ``path`` is the file's path relative to the download directory, *including* the torrent's name:
    ``("name",)`` for a single-file torrent, ``("name", "dir", "file")`` for a multi-file one.
    Every component has been checked to be safe (see ``UnsafePathError``).
    """

    path: tuple[str, ...]
    length: int
    offset: int
    """Byte offset of the file's first byte in the torrent's concatenated data."""
    attr: str = ""
    """BEP 47 attribute letters: ``p`` pad, ``x`` executable, ``h`` hidden, ``l`` symlink."""

    @property
    def pad(self) -> bool:
        """A BEP 47 padding file: its bytes are zeros, never written to disk, never requested."""
        return "p" in self.attr

    @property
    def end(self) -> int:
        return self.offset + self.length

    @property
    def path_str(self) -> str:
        return "/".join(self.path)


@dataclass(frozen=True, slots=True, kw_only=True)
class InfoDict:
    """The validated ``info`` dictionary and the identity derived from its exact bytes."""

    name: str
    piece_length: int
    pieces: bytes
    """Concatenated 20-byte SHA-1 piece hashes."""
    files: tuple[FileEntry, ...]
    single_file: bool
    private: bool = False
    raw: bytes = field(repr=False)
    """The exact bencoded bytes of ``info`` as they appeared in the input (BEP 3 info_hash)."""
    info_hash: InfoHash

    @property
    def total_length(self) -> int:
        return self.files[-1].end if self.files else 0

    @property
    def num_pieces(self) -> int:
        return len(self.pieces) // 20

    def piece_size(self, index: int) -> int:
        """Length of piece ``index``; only the last piece may be shorter."""
        if not 0 <= index < self.num_pieces:
            raise IndexError(f"piece index {index} out of range 0..{self.num_pieces - 1}")
        if index == self.num_pieces - 1:
            return self.total_length - index * self.piece_length
        return self.piece_length

    def piece_hash(self, index: int) -> bytes:
        return self.pieces[index * 20 : index * 20 + 20]


@dataclass(frozen=True, slots=True, kw_only=True)
class Metainfo:
    """A whole .torrent file."""

    info: InfoDict
    announce_tiers: tuple[tuple[str, ...], ...] = ()
    """Tracker URLs by tier (BEP 12); a lone ``announce`` becomes one tier of one URL."""
    web_seeds: tuple[str, ...] = ()
    """BEP 19 ``url-list`` entries."""
    comment: str = ""
    created_by: str = ""
    creation_date: int | None = None

    @property
    def info_hash(self) -> InfoHash:
        return self.info.info_hash
