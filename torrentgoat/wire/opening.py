"""A peer's opening, held while a magnet link's metadata is unknown (level L2).

BEP 3/BEP 6: right after the handshake a peer announces its pieces with ``bitfield``, ``have all`` or
``have none``, then ``have`` messages.  BEP 9: a magnet download learns the piece count only once
the info dictionary has been fetched, so until then these cannot be checked (bitfield length, spare
bits, have indices).  :class:`PendingOpening` keeps them, bounded, and :meth:`PendingOpening.resolve`
validates them against the piece count when it becomes known.
"""

from __future__ import annotations

from collections.abc import Iterable

from torrentgoat.bitfield import Bitfield
from torrentgoat.errors import RemoteProtocolError
from torrentgoat.wire.messages import Buffer

__all__ = ["PendingOpening"]


class PendingOpening:
    """The peer's piece announcements received before the piece count was known."""

    __slots__ = ("bitfield", "haves", "opened")

    def __init__(self) -> None:
        self.bitfield: bytes | None = None
        """The raw bitfield (the union of several, for aria2's mid-connection bitfields)."""
        self.haves: set[int] = set()
        self.opened = False
        """The peer sent a bitfield, have all or have none: the driver hears about its pieces."""

    def add_bitfield(self, data: Buffer, *, max_length: int) -> None:
        """A ``bitfield``: kept as is, or merged into an earlier one of the same length."""
        if len(data) > max_length:
            raise RemoteProtocolError(f"bitfield of {len(data)} bytes is too large")
        if self.bitfield is not None and len(self.bitfield) == len(data):
            self.bitfield = bytes(a | b for a, b in zip(self.bitfield, data, strict=True))
        else:
            self.bitfield = bytes(data)
        self.opened = True

    def add_have(self, index: int, *, max_haves: int) -> None:
        if len(self.haves) >= max_haves:
            raise RemoteProtocolError("too many have messages before the metadata is known")
        self.haves.add(index)

    def resolve(
        self, num_pieces: int, *, has_all: bool, allowed_fast: Iterable[int]
    ) -> tuple[Bitfield, bool]:
        """The peer's have-set for ``num_pieces`` pieces, and whether it announced anything (then the
        driver gets a :class:`~torrentgoat.wire.events.BitfieldReceived`).  ``has_all`` is what
        ``have all`` / ``have none`` said; the peer's ``allowed fast`` indices are checked too.
        Raises :class:`RemoteProtocolError` for what does not fit the torrent."""
        n = num_pieces
        bitfield = (
            Bitfield.from_bytes(self.bitfield, n) if self.bitfield is not None else Bitfield(n, full=has_all)
        )
        for index in self.haves:
            if index >= n:
                raise RemoteProtocolError(f"peer sent have {index} but the torrent has {n} pieces")
            bitfield.add(index)
        for index in allowed_fast:
            if index >= n:
                raise RemoteProtocolError(f"allowed fast piece {index} but the torrent has {n} pieces")
        announced = self.opened or bool(self.haves)
        self.bitfield = None
        self.haves = set()
        self.opened = False
        return bitfield, announced
