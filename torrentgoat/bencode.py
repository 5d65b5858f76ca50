"""Strict bencoding (BEP 3), level L0.

Encoding is delegated to the ``bencode.py`` package (it sorts dictionary keys as raw bytes, as BEP 3
requires).  Decoding is our own, because two things matter here that the package does not give:

* **strictness** -- every rule of BEP 3 is enforced with a :class:`~torrentgoat.errors.BencodeError`
  naming the offset: integers without leading zeros or ``-0``, byte strings with a canonical length,
  dictionary keys that are byte strings, no trailing bytes, bounded nesting depth and lengths, so
  hostile input can neither crash nor hang us;
* **exact spans** -- the info-hash is SHA-1 over the *exact bytes* of the ``info`` value as they
  appear in the file (BEP 3, "info_hash"), so :func:`decode_with_spans` reports where each top-level
  value sits.  A torrent with unsorted keys thus still gets the hash every other client computes.

Decoded values use ``bytes`` for strings, ``int``, ``list`` and ``dict[bytes, ...]``.
Dictionary key order is *not* required to be sorted on input (real-world torrents break this rule and
every client accepts them), but duplicate keys are refused.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import bencodepy

from torrentgoat.errors import BencodeError

__all__ = [
    "MAX_DEPTH",
    "BValue",
    "decode",
    "decode_prefix",
    "decode_with_spans",
    "encode",
]

BValue: TypeAlias = "int | bytes | list[BValue] | dict[bytes, BValue]"

MAX_DEPTH = 64
"""Deepest nesting of lists/dicts accepted; real torrents and KRPC packets need fewer than 8."""

_MAX_INT_DIGITS = 64
"""Longest integer literal accepted (BEP 3 sets no bound; 64 digits is far beyond any real field)."""

_DIGITS = frozenset(b"0123456789")


class _Decoder:
    """One strict pass over ``data``; recursion depth bounded by ``max_depth``."""

    __slots__ = ("data", "end", "max_depth", "spans")

    def __init__(self, data: bytes | bytearray | memoryview, max_depth: int) -> None:
        self.data = bytes(data)
        self.end = len(self.data)
        self.max_depth = max_depth
        self.spans: dict[bytes, tuple[int, int]] = {}

    def fail(self, message: str, pos: int) -> BencodeError:
        return BencodeError(f"invalid bencoding at offset {pos}: {message}")

    def value(self, pos: int, depth: int) -> tuple[BValue, int]:
        if pos >= self.end:
            raise self.fail("truncated input, a value was expected", pos)
        lead = self.data[pos]
        if lead in _DIGITS:
            return self.string(pos)
        if lead == 0x69:  # i
            return self.integer(pos)
        if depth >= self.max_depth:
            raise self.fail(f"nesting deeper than {self.max_depth}", pos)
        if lead == 0x6C:  # l
            return self.list(pos, depth)
        if lead == 0x64:  # d
            return self.dict(pos, depth)
        raise self.fail(f"unexpected byte {bytes([lead])!r}", pos)

    def integer(self, pos: int) -> tuple[int, int]:
        close = self.data.find(b"e", pos + 1, pos + 2 + _MAX_INT_DIGITS)
        if close < 0:
            if self.data.find(b"e", pos + 1) < 0:
                raise self.fail("truncated integer", pos)
            raise self.fail(f"integer longer than {_MAX_INT_DIGITS} digits", pos)
        text = self.data[pos + 1 : close]
        digits = text[1:] if text[:1] == b"-" else text
        if not digits or not all(c in _DIGITS for c in digits):
            raise self.fail(f"malformed integer {text!r}", pos)
        if digits[:1] == b"0" and (len(digits) > 1 or text[:1] == b"-"):
            raise self.fail(f"non-canonical integer {text!r} (leading zero or -0)", pos)
        return int(text), close + 1

    def string(self, pos: int) -> tuple[bytes, int]:
        colon = self.data.find(b":", pos, pos + 21)
        if colon < 0:
            raise self.fail("byte string length without ':' (or absurdly long)", pos)
        text = self.data[pos:colon]
        if not all(c in _DIGITS for c in text):
            raise self.fail(f"malformed string length {text!r}", pos)
        if text[:1] == b"0" and len(text) > 1:
            raise self.fail(f"non-canonical string length {text!r}", pos)
        length = int(text)
        start = colon + 1
        stop = start + length
        if stop > self.end:
            raise self.fail(f"byte string of {length} bytes runs past the end of input", pos)
        return self.data[start:stop], stop

    def list(self, pos: int, depth: int) -> tuple[list[BValue], int]:
        items: list[BValue] = []
        pos += 1
        while True:
            if pos >= self.end:
                raise self.fail("truncated list", pos)
            if self.data[pos] == 0x65:  # e
                return items, pos + 1
            item, pos = self.value(pos, depth + 1)
            items.append(item)

    def dict(self, pos: int, depth: int) -> tuple[dict[bytes, BValue], int]:
        result: dict[bytes, BValue] = {}
        top = depth == 0
        pos += 1
        while True:
            if pos >= self.end:
                raise self.fail("truncated dictionary", pos)
            lead = self.data[pos]
            if lead == 0x65:  # e
                return result, pos + 1
            if lead not in _DIGITS:
                raise self.fail("dictionary key is not a byte string", pos)
            key, pos = self.string(pos)
            if key in result:
                raise self.fail(f"duplicate dictionary key {key!r}", pos)
            start = pos
            result[key], pos = self.value(pos, depth + 1)
            if top:
                self.spans[key] = (start, pos)


def decode_prefix(data: bytes | bytearray | memoryview, *, max_depth: int = MAX_DEPTH) -> tuple[BValue, int]:
    """Decode one value at the start of ``data``; return it and the offset just past it.

    Used where bencoding is followed by raw bytes (BEP 9 ``ut_metadata`` data messages).
    """
    decoder = _Decoder(data, max_depth)
    return decoder.value(0, 0)


def decode(data: bytes | bytearray | memoryview, *, max_depth: int = MAX_DEPTH) -> BValue:
    """Decode exactly one value; trailing bytes are an error."""
    value, end = decode_prefix(data, max_depth=max_depth)
    if end != len(data):
        raise BencodeError(f"invalid bencoding: {len(data) - end} trailing bytes after the value")
    return value


def decode_with_spans(
    data: bytes | bytearray | memoryview, *, max_depth: int = MAX_DEPTH
) -> tuple[BValue, dict[bytes, tuple[int, int]]]:
    """Decode exactly one value and report the byte span of each top-level dictionary value.

    ``spans[b"info"]`` is ``(start, stop)`` such that ``data[start:stop]`` are the exact bytes
    hashed for the info-hash (BEP 3).  For a non-dictionary value the span map is empty.
    """
    decoder = _Decoder(data, max_depth)
    value, end = decoder.value(0, 0)
    if end != len(decoder.data):
        raise BencodeError(f"invalid bencoding: {len(decoder.data) - end} trailing bytes after the value")
    return value, decoder.spans


def _check_encodable(value: Any, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise BencodeError(f"cannot bencode: nesting deeper than {MAX_DEPTH}")
    if isinstance(value, bool):
        raise BencodeError("cannot bencode a bool; use 0 or 1")
    if isinstance(value, int | bytes | str):
        return
    if isinstance(value, list | tuple):
        for item in value:
            _check_encodable(item, depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, bytes | str):
                raise BencodeError(f"cannot bencode dictionary key of type {type(key).__name__}")
            _check_encodable(item, depth + 1)
        if len({k.encode() if isinstance(k, str) else k for k in value}) != len(value):
            raise BencodeError("cannot bencode: two keys are equal once encoded as UTF-8")
        return
    raise BencodeError(f"cannot bencode a value of type {type(value).__name__}")


def encode(value: Any) -> bytes:
    """Bencode ``value`` (``str`` is encoded as UTF-8); dictionary keys are emitted sorted as bytes."""
    _check_encodable(value, 0)
    result: bytes = bencodepy.encode(value)
    return result
