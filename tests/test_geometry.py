"""PieceGeometry: the one place piece and block arithmetic lives (wire, picker, storage, metainfo)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from torrentgoat.errors import ConfigError
from torrentgoat.geometry import PieceGeometry
from torrentgoat.picker import PieceLayout
from torrentgoat.primitives import BLOCK_SIZE, BlockRef
from torrentgoat.wire.connection import PieceGeometry as WireGeometry


def test_old_names_are_the_same_class() -> None:
    assert PieceLayout is PieceGeometry and WireGeometry is PieceGeometry
    # both old spellings construct it
    assert PieceLayout(32768, 40000) == WireGeometry(num_pieces=2, piece_length=32768, total_length=40000)


def test_short_last_piece_and_blocks() -> None:
    g = PieceGeometry(2 * BLOCK_SIZE, 5 * BLOCK_SIZE + 100)
    assert g.num_pieces == 3
    assert [g.piece_size(i) for i in range(3)] == [2 * BLOCK_SIZE, 2 * BLOCK_SIZE, BLOCK_SIZE + 100]
    assert [g.blocks_in_piece(i) for i in range(3)] == [2, 2, 2]
    assert g.blocks(2) == [BlockRef(2, 0, BLOCK_SIZE), BlockRef(2, BLOCK_SIZE, 100)]
    assert g.block(2, 1) == BlockRef(2, BLOCK_SIZE, 100)
    assert g.piece_offset(2) == 4 * BLOCK_SIZE
    with pytest.raises(IndexError):
        g.piece_size(3)
    with pytest.raises(IndexError):
        g.block(2, 2)


def test_contains_bounds_requests() -> None:
    g = PieceGeometry(32768, 32768 + 1000)
    assert g.contains(0, 0, 32768) and g.contains(1, 0, 1000) and g.contains(1, 999, 1)
    assert not g.contains(1, 0, 1001)
    assert not g.contains(2, 0, 1) and not g.contains(-1, 0, 1)
    assert not g.contains(0, 0, 0) and not g.contains(0, -1, 2)


def test_validation() -> None:
    for bad in [(0, 10), (-1, 10), (16, -1)]:
        with pytest.raises(ConfigError):
            PieceGeometry(*bad)
    with pytest.raises(ValueError):  # ConfigError is a ValueError, as the wire's old class raised
        PieceGeometry(16, 33, num_pieces=2)
    assert PieceGeometry(16, 0).num_pieces == 0
    assert PieceGeometry.uniform(4, 16).total_length == 64


def test_pieces_of_span() -> None:
    g = PieceGeometry(4, 20)
    assert g.pieces_of_span(0, 0) == range(0)
    assert g.pieces_of_span(3, 2) == range(0, 2)
    assert g.pieces_of_span(4, 4) == range(1, 2)


@given(
    piece_length=st.integers(1, 3 * BLOCK_SIZE),
    whole_pieces=st.integers(0, 40),
    tail=st.integers(0, 3 * BLOCK_SIZE),
    data=st.data(),
)
def test_geometry_matches_brute_force(
    piece_length: int, whole_pieces: int, tail: int, data: st.DataObject
) -> None:
    total_length = whole_pieces * piece_length + tail % piece_length
    g = PieceGeometry(piece_length, total_length)
    starts = list(range(0, total_length, piece_length))
    assert g.num_pieces == len(starts)
    for index, start in enumerate(starts):
        size = min(piece_length, total_length - start)
        assert g.piece_size(index) == size
        blocks = g.blocks(index)
        assert sum(b.length for b in blocks) == size and len(blocks) == g.blocks_in_piece(index)
        assert all(b.length <= BLOCK_SIZE for b in blocks)
        assert [g.block(index, k) for k in range(len(blocks))] == blocks
    index = data.draw(st.integers(-1, g.num_pieces))
    begin = data.draw(st.integers(-1, piece_length + 1))
    length = data.draw(st.integers(-1, piece_length + 1))
    expected = (
        0 <= index < g.num_pieces and length > 0 and begin >= 0 and begin + length <= g.piece_size(index)
    )
    assert g.contains(index, begin, length) is expected
    offset = data.draw(st.integers(0, total_length))
    span = data.draw(st.integers(0, total_length - offset))
    touched = {i for i, s in enumerate(starts) if span and s < offset + span and offset < s + piece_length}
    assert set(g.pieces_of_span(offset, span)) == touched
