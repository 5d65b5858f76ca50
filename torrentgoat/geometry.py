"""Piece and block geometry of a torrent (level L0, pure arithmetic).

BEP 3, info dictionary: a torrent's files are concatenated into one byte stream of ``total_length``
bytes, cut into pieces of ``piece length`` bytes; every piece has that length except possibly the
last, which is truncated.  BEP 3, ``request``: pieces are requested in blocks, 2^14 bytes in current
implementations (:data:`~torrentgoat.primitives.BLOCK_SIZE`); the last block of a piece is shorter
when the piece is not a multiple of it.

:class:`PieceGeometry` is the one place this arithmetic lives.  The wire engine bounds indices and
requests with it, the picker cuts pieces into blocks with it, storage maps pieces to file spans on
top of it and :attr:`torrentgoat.metainfo.InfoDict.geometry` builds it from a parsed ``info``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from torrentgoat.errors import ConfigError
from torrentgoat.primitives import BLOCK_SIZE, BlockRef

__all__ = ["PieceGeometry", "SizedTorrent"]


class SizedTorrent(Protocol):
    """Anything that knows its piece length and total length (e.g. ``metainfo.InfoDict``)."""

    @property
    def piece_length(self) -> int: ...

    @property
    def total_length(self) -> int: ...


@dataclass(frozen=True, slots=True, init=False)
class PieceGeometry:
    """How ``total_length`` bytes split into pieces of ``piece_length`` bytes, and pieces into blocks.

    ``PieceGeometry(piece_length, total_length)``; ``num_pieces`` is derived.  Passing
    ``num_pieces=`` as well checks it (e.g. against the count of piece hashes) and raises
    :class:`~torrentgoat.errors.ConfigError` (a ``ValueError``) when it does not match.
    """

    piece_length: int
    """Bytes per piece (BEP 3 ``piece length``); every piece but the last has exactly this size."""
    total_length: int
    """Bytes in the whole torrent (the sum of its files' lengths, BEP 47 pad files included)."""
    num_pieces: int
    """``ceil(total_length / piece_length)``: stored, not recomputed, since the wire's hot path reads it."""

    def __init__(self, piece_length: int, total_length: int, *, num_pieces: int | None = None) -> None:
        if piece_length <= 0:
            raise ConfigError(f"piece length must be positive, got {piece_length}")
        if total_length < 0:
            raise ConfigError(f"total length must be >= 0, got {total_length}")
        computed = -(-total_length // piece_length)
        if num_pieces is not None and num_pieces != computed:
            raise ConfigError(
                f"{num_pieces} pieces do not match {total_length} bytes in {piece_length}-byte pieces "
                f"({computed} pieces)"
            )
        object.__setattr__(self, "piece_length", piece_length)
        object.__setattr__(self, "total_length", total_length)
        object.__setattr__(self, "num_pieces", computed)

    @classmethod
    def uniform(cls, num_pieces: int, piece_length: int = BLOCK_SIZE) -> PieceGeometry:
        """``num_pieces`` pieces all exactly ``piece_length`` bytes (handy for tests and simulators)."""
        return cls(piece_length, num_pieces * piece_length)

    @classmethod
    def from_info(cls, info: SizedTorrent) -> PieceGeometry:
        """The geometry of a parsed ``info`` dictionary (prefer ``info.geometry``)."""
        return cls(info.piece_length, info.total_length)

    def piece_size(self, index: int) -> int:
        """Bytes in piece ``index``: ``piece_length`` except for the shorter last piece (BEP 3).

        Raises :class:`IndexError` outside ``0 .. num_pieces - 1``.
        """
        if not 0 <= index < self.num_pieces:
            raise IndexError(f"piece index {index} out of range 0..{self.num_pieces - 1}")
        if index == self.num_pieces - 1:
            return self.total_length - index * self.piece_length
        return self.piece_length

    def piece_offset(self, index: int) -> int:
        """Offset of piece ``index``'s first byte in the torrent's byte stream."""
        return index * self.piece_length

    def blocks_in_piece(self, index: int) -> int:
        """How many :data:`~torrentgoat.primitives.BLOCK_SIZE` blocks piece ``index`` is requested in."""
        return -(-self.piece_size(index) // BLOCK_SIZE)

    def block(self, index: int, block_index: int) -> BlockRef:
        """The ``block_index``-th block of piece ``index`` (the last block may be shorter)."""
        size = self.piece_size(index)
        begin = block_index * BLOCK_SIZE
        if not 0 <= begin < size:
            raise IndexError(f"block {block_index} out of range for piece {index} of {size} bytes")
        return BlockRef(index, begin, min(BLOCK_SIZE, size - begin))

    def blocks(self, index: int) -> list[BlockRef]:
        """Every block of piece ``index``, in order."""
        size = self.piece_size(index)
        return [BlockRef(index, begin, min(BLOCK_SIZE, size - begin)) for begin in range(0, size, BLOCK_SIZE)]

    def pieces_of_span(self, offset: int, length: int) -> range:
        """Indices of the pieces overlapping bytes ``[offset, offset + length)`` (empty when length is 0)."""
        if length <= 0:
            return range(0)
        return range(offset // self.piece_length, (offset + length - 1) // self.piece_length + 1)

    def contains(self, index: int, begin: int, length: int) -> bool:
        """True when ``[begin, begin + length)`` is non-empty and lies inside piece ``index``.

        The bound every ``request``, ``cancel`` and ``piece`` must respect (BEP 3); on the wire's hot
        path, so :meth:`piece_size` is inlined.
        """
        num_pieces = self.num_pieces
        if not 0 <= index < num_pieces or length <= 0 or begin < 0:
            return False
        if index == num_pieces - 1:
            return begin + length <= self.total_length - index * self.piece_length
        return begin + length <= self.piece_length
