"""Strict bencoding (BEP 3): round-trips, every strictness rule, and hostile input properties."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from torrentgoat import bencode
from torrentgoat.errors import BencodeError

values: st.SearchStrategy[Any] = st.recursive(
    st.integers() | st.binary(max_size=40),
    lambda children: (
        st.lists(children, max_size=6) | st.dictionaries(st.binary(max_size=12), children, max_size=6)
    ),
    max_leaves=30,
)


@given(values)
def test_round_trip(value: Any) -> None:
    data = bencode.encode(value)
    assert bencode.decode(data) == value
    assert bencode.encode(bencode.decode(data)) == data


@given(values)
def test_decode_prefix_reports_end(value: Any) -> None:
    data = bencode.encode(value)
    decoded, end = bencode.decode_prefix(data + b"trailing raw bytes")
    assert decoded == value and end == len(data)


@given(st.dictionaries(st.binary(max_size=8), values, max_size=6))
def test_spans_cover_exact_value_bytes(value: dict[bytes, Any]) -> None:
    data = bencode.encode(value)
    decoded, spans = bencode.decode_with_spans(data)
    assert decoded == value
    assert set(spans) == set(value)
    for key, (start, stop) in spans.items():
        assert data[start:stop] == bencode.encode(value[key])


def test_spans_of_unsorted_dict_are_the_original_bytes() -> None:
    info = b"d4:name1:x12:piece lengthi16384ee"  # 'name' before 'piece length' is sorted; reverse it
    unsorted = b"d12:piece lengthi16384e4:name1:xe"
    data = b"d4:info" + unsorted + b"3:foo3:bare"
    decoded, spans = bencode.decode_with_spans(data)
    start, stop = spans[b"info"]
    assert data[start:stop] == unsorted != info
    assert isinstance(decoded, dict) and decoded[b"foo"] == b"bar"


def test_str_and_key_encoding() -> None:
    assert bencode.encode({"b": 1, "a": "é"}) == b"d1:a2:\xc3\xa91:bi1ee"
    assert bencode.encode([1, -1, 0, b""]) == b"li1ei-1ei0e0:e"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"i01e",  # leading zero
        b"i-0e",  # negative zero
        b"i-01e",
        b"ie",
        b"i-e",
        b"i1",  # truncated
        b"i1.5e",
        b"i 1e",
        b"i+1e",
        b"01:a",  # leading zero in a length
        b"5:abc",  # truncated string
        b"-1:a",
        b"1a",
        b"l",  # truncated list
        b"li1e",
        b"d",  # truncated dict
        b"d1:a",
        b"d1:ai1e",
        b"di1ei2ee",  # non-bytes key
        b"dli1eei2ee",
        b"d1:ai1e1:ai2ee",  # duplicate key
        b"i1ei2e",  # trailing bytes
        b"0:0:",
        b"le ",
        b"x",
        b"99999999999999999999999:a",  # huge length prefix
        b"999999999999999999999999999999:a",
        b"i" + b"9" * 100 + b"e",  # absurd integer
    ],
)
def test_malformed_is_refused(data: bytes) -> None:
    with pytest.raises(BencodeError):
        bencode.decode(data)


def test_depth_is_bounded() -> None:
    deep = b"l" * 10_000 + b"e" * 10_000
    with pytest.raises(BencodeError, match="nesting"):
        bencode.decode(deep)
    ok = b"l" * bencode.MAX_DEPTH + b"e" * bencode.MAX_DEPTH
    assert bencode.decode(ok) is not None
    too_deep = b"l" * (bencode.MAX_DEPTH + 1) + b"e" * (bencode.MAX_DEPTH + 1)
    with pytest.raises(BencodeError):
        bencode.decode(too_deep)


def test_encode_refuses_what_bencoding_cannot_hold() -> None:
    for bad in (True, 1.5, None, {1: 2}, {"a": 1, b"a": 2}, object()):
        with pytest.raises(BencodeError):
            bencode.encode(bad)


def test_negative_and_big_integers() -> None:
    assert bencode.decode(b"i-42e") == -42
    assert bencode.decode(b"i" + b"9" * 60 + b"e") == int("9" * 60)


mutations = st.lists(
    st.tuples(
        st.sampled_from(["flip", "insert", "delete", "truncate"]),
        st.integers(0, 10_000),
        st.binary(min_size=1, max_size=3),
    ),
    min_size=1,
    max_size=5,
)


def _mutate(data: bytes, ops: list[tuple[str, int, bytes]]) -> bytes:
    buf = bytearray(data)
    for op, pos, payload in ops:
        pos = pos % (len(buf) + 1)
        if op == "flip" and buf:
            buf[pos % len(buf)] ^= payload[0] or 1
        elif op == "insert":
            buf[pos:pos] = payload
        elif op == "delete":
            del buf[pos : pos + len(payload)]
        else:
            del buf[pos:]
    return bytes(buf)


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=300)
@given(values, mutations)
def test_mutated_input_only_raises_bencode_error(value: Any, ops: list[tuple[str, int, bytes]]) -> None:
    data = _mutate(bencode.encode(value), ops)
    with contextlib.suppress(BencodeError):
        bencode.decode(data)
    with contextlib.suppress(BencodeError):
        bencode.decode_with_spans(data)


@given(st.binary(max_size=200))
def test_random_bytes_only_raise_bencode_error(data: bytes) -> None:
    with contextlib.suppress(BencodeError):
        bencode.decode(data)


@given(values, st.integers(min_value=0))
def test_every_truncation_is_refused(value: Any, cut: int) -> None:
    data = bencode.encode(value)
    cut %= len(data)
    with pytest.raises(BencodeError):
        bencode.decode(data[:cut])
