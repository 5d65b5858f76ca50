"""Sizes and rates as typed on the command line (torrentgoat.units)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from torrentgoat.errors import ConfigError
from torrentgoat.units import format_size, parse_size


def test_binary_and_decimal_suffixes() -> None:
    assert parse_size("16384") == 16384
    assert parse_size("16KiB") == parse_size("16k") == parse_size("16K") == 16384
    assert parse_size("16KB") == parse_size("16 kB") == 16000
    assert parse_size("4MiB") == parse_size("4m") == 4 << 20
    assert parse_size("20MB") == 20_000_000
    assert parse_size("1GiB") == 1 << 30
    assert parse_size("1.5MiB") == 1572864
    assert parse_size("2TiB") == 2 << 40


@pytest.mark.parametrize("bad", ["", "abc", "-4MiB", "4 MiB extra", "1.3B", "4PiB", "\uff14MiB", "0x10"])
def test_refused_with_a_clear_error(bad: str) -> None:
    with pytest.raises(ConfigError, match="not a"):
        parse_size(bad)


@given(st.integers(min_value=0, max_value=1 << 50))
def test_plain_integers_round_trip(n: int) -> None:
    assert parse_size(str(n)) == n


def test_format_size() -> None:
    assert format_size(0) == "0 B"
    assert format_size(1536) == "1.5 KiB"
    assert format_size(3 << 30) == "3.0 GiB"
