"""A fixed-length set of piece indices packed as BEP 3's ``bitfield`` (level L0).

Bit ``i`` is the high bit of byte ``i // 8`` shifted right by ``i % 8`` (BEP 3, "bitfield": "the
high bit in the first byte corresponds to piece index 0").  Spare bits at the end must be zero.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from torrentgoat.errors import RemoteProtocolError

__all__ = ["Bitfield"]

_POPCOUNT = bytes(bin(i).count("1") for i in range(256))


class Bitfield:
    """Mutable bit set of ``length`` pieces with O(1) membership and a cached count."""

    __slots__ = ("_bits", "_count", "length")

    def __init__(self, length: int, *, full: bool = False) -> None:
        if length < 0:
            raise ValueError("bitfield length must be >= 0")
        self.length = length
        nbytes = (length + 7) // 8
        if full:
            self._bits = bytearray(b"\xff" * nbytes)
            spare = nbytes * 8 - length
            if spare:
                self._bits[-1] &= (0xFF << spare) & 0xFF
            self._count = length
        else:
            self._bits = bytearray(nbytes)
            self._count = 0

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview, length: int) -> Bitfield:
        """Parse a peer's ``bitfield`` payload; wrong size or set spare bits break BEP 3."""
        nbytes = (length + 7) // 8
        if len(data) != nbytes:
            raise RemoteProtocolError(f"bitfield of {len(data)} bytes for {length} pieces (want {nbytes})")
        result = cls(length)
        result._bits[:] = data
        spare = nbytes * 8 - length
        if spare and result._bits[-1] & ((1 << spare) - 1):
            raise RemoteProtocolError("bitfield has spare bits set past the last piece")
        result._count = sum(_POPCOUNT[b] for b in result._bits)
        return result

    @classmethod
    def from_indices(cls, length: int, indices: Iterable[int]) -> Bitfield:
        result = cls(length)
        for index in indices:
            result.add(index)
        return result

    def to_bytes(self) -> bytes:
        return bytes(self._bits)

    def copy(self) -> Bitfield:
        result = Bitfield(self.length)
        result._bits[:] = self._bits
        result._count = self._count
        return result

    def _check(self, index: int) -> None:
        if not 0 <= index < self.length:
            raise IndexError(f"piece index {index} out of range 0..{self.length - 1}")

    def __contains__(self, index: object) -> bool:
        if not isinstance(index, int) or not 0 <= index < self.length:
            return False
        return bool(self._bits[index >> 3] & (0x80 >> (index & 7)))

    def add(self, index: int) -> bool:
        """Set bit ``index``; return True if it was not set before."""
        self._check(index)
        mask = 0x80 >> (index & 7)
        byte = self._bits[index >> 3]
        if byte & mask:
            return False
        self._bits[index >> 3] = byte | mask
        self._count += 1
        return True

    def discard(self, index: int) -> bool:
        """Clear bit ``index``; return True if it was set before."""
        self._check(index)
        mask = 0x80 >> (index & 7)
        byte = self._bits[index >> 3]
        if not byte & mask:
            return False
        self._bits[index >> 3] = byte & ~mask & 0xFF
        self._count -= 1
        return True

    def set_all(self) -> None:
        full = Bitfield(self.length, full=True)
        self._bits[:] = full._bits
        self._count = self.length

    @property
    def count(self) -> int:
        return self._count

    def __len__(self) -> int:
        return self._count

    @property
    def complete(self) -> bool:
        return self._count == self.length

    @property
    def empty(self) -> bool:
        return self._count == 0

    def __iter__(self) -> Iterator[int]:
        """Set indices in ascending order."""
        bits = self._bits
        for byte_index, byte in enumerate(bits):
            if not byte:
                continue
            base = byte_index << 3
            for bit in range(8):
                if byte & (0x80 >> bit):
                    yield base + bit

    def missing(self) -> Iterator[int]:
        """Clear indices in ascending order."""
        bits = self._bits
        for byte_index, byte in enumerate(bits):
            if byte == 0xFF:
                continue
            base = byte_index << 3
            for bit in range(8):
                index = base + bit
                if index < self.length and not byte & (0x80 >> bit):
                    yield index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Bitfield) and self.length == other.length and self._bits == other._bits

    def __hash__(self) -> int:
        raise TypeError("Bitfield is mutable and unhashable")

    def __repr__(self) -> str:
        return f"Bitfield({self._count}/{self.length})"
