"""BEP 6 allowed-fast set: the test vectors of the BEP."""

from __future__ import annotations

from torrentgoat.primitives import InfoHash
from torrentgoat.wire.fast import allowed_fast_set

IH = InfoHash(b"\xaa" * 20)
FIRST_SEVEN = [1059, 431, 808, 1217, 287, 376, 1188]


def test_bep6_vectors() -> None:
    assert allowed_fast_set("80.4.4.200", IH, 1313, 7) == FIRST_SEVEN
    assert allowed_fast_set("80.4.4.200", IH, 1313, 9) == [*FIRST_SEVEN, 353, 508]


def test_same_slash24_same_set_and_small_torrents() -> None:
    assert allowed_fast_set("80.4.4.1", IH, 1313, 7) == FIRST_SEVEN
    assert sorted(allowed_fast_set("10.0.0.1", IH, 3, 10)) == [0, 1, 2]
    assert allowed_fast_set("::1", IH, 100) == []
    assert allowed_fast_set("10.0.0.1", IH, 0) == []
