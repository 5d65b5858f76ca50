"""Block-level updates, the pure parts: reuse plans (blockplan) and pieces held in the picker."""

from __future__ import annotations

import json
import random
import struct
from pathlib import Path

import pytest

from torrentgoat.bitfield import Bitfield
from torrentgoat.blockplan import Segment, assemble, block_sources, plan_safetensors, plan_same_offset
from torrentgoat.creation import create_torrent
from torrentgoat.infohashes import TorrentFormat
from torrentgoat.merkle import BLOCK_SIZE
from torrentgoat.picker import PickerConfig, PieceLayout, PiecePicker
from torrentgoat.primitives import BlockRef
from torrentgoat.safety import validate_safetensors_header
from torrentgoat.testing.swarm import Payload, assert_same_files, local_swarm
from torrentgoat.torrent.blocks import pad_ranges


def header(tensors: list[tuple[str, str, list[int], int]], meta: str = "") -> tuple[bytes, int]:
    """A safetensors header (tensors in order: name, dtype, shape, bytes) and the file size."""
    doc: dict[str, object] = {"__metadata__": {"m": meta}}
    at = 0
    for name, dtype, shape, size in tensors:
        doc[name] = {"dtype": dtype, "shape": shape, "data_offsets": [at, at + size]}
        at += size
    raw = json.dumps(doc).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw, 8 + len(raw) + at


def parsed(tensors: list[tuple[str, str, list[int], int]], meta: str = "") -> tuple[object, int]:
    data, size = header(tensors, meta)
    return validate_safetensors_header(data, size), size


A = ("a", "BF16", [64, 128], 64 * 128 * 2)
B = ("b", "BF16", [64, 128], 64 * 128 * 2)
C = ("c", "F32", [100], 400)


def test_same_offset_plan_covers_the_common_prefix() -> None:
    plan = plan_same_offset(100_000, 70_000)
    assert plan.segments == (Segment(new=0, old=0, length=70_000),)
    assert block_sources(plan, 4) == [
        Segment(new=4 * BLOCK_SIZE, old=4 * BLOCK_SIZE, length=70_000 - 4 * BLOCK_SIZE)
    ]
    assert block_sources(plan, 5) is None
    assert plan.touches(69_999, 80_000) and not plan.touches(70_000, 80_000)


def test_tensors_follow_a_grown_header_and_a_new_order() -> None:
    old, old_size = parsed([A, B, C])
    new, new_size = parsed([C, B, A], meta="x" * 20)  # header grows, order reversed
    plan = plan_safetensors(old, old_size, new, new_size)  # type: ignore[arg-type]
    assert plan.matched == 3 and plan.covered == A[3] + B[3] + C[3]
    c_new = new.data_start  # type: ignore[attr-defined]
    c_old = old.data_start + A[3] + B[3]  # type: ignore[attr-defined]
    assert plan.sources(c_new, c_new + 400) == [Segment(new=c_new, old=c_old, length=400)]
    # a range over two tensors takes each from its own place; a header byte is not covered
    got = plan.sources(c_new + 390, c_new + 410)
    assert got is not None and [s.length for s in got] == [10, 10]
    assert plan.sources(c_new - 1, c_new + 1) is None
    assert plan.touches(c_new - 1, c_new + 1) and not plan.touches(0, c_new)


def test_changed_dtype_or_shape_is_not_matched() -> None:
    old, old_size = parsed([A, B])
    new, new_size = parsed([("a", "F16", [64, 128], A[3]), ("b", "BF16", [128, 64], B[3])])
    plan = plan_safetensors(old, old_size, new, new_size)  # type: ignore[arg-type]
    assert plan.matched == 0 and plan.segments == ()


def test_neighbouring_tensors_coalesce_and_assemble_reads_them() -> None:
    old, old_size = parsed([A, B, C])
    new, new_size = parsed([A, B, C], meta="yy")
    plan = plan_safetensors(old, old_size, new, new_size)  # type: ignore[arg-type]
    assert len(plan.segments) == 1
    data = random.Random(1).randbytes(old_size)
    sources = plan.sources(plan.segments[0].new, plan.segments[0].new + 1000)
    assert sources is not None
    start = old.data_start  # type: ignore[attr-defined]
    assert assemble(lambda at, n: data[at : at + n], sources) == data[start : start + 1000]


# -- held pieces in the picker ------------------------------------------------------------------------


def picker(n: int = 4, blocks: int = 4, cap_pieces: int = 1) -> PiecePicker:
    plen = blocks * BLOCK_SIZE
    return PiecePicker(
        PieceLayout.uniform(n, plen),
        rng=random.Random(0),
        config=PickerConfig(
            initial_random_pieces=0, max_partial_bytes=cap_pieces * plen, strategy="sequential"
        ),
    )


def test_held_blocks_are_never_requested_until_unreserved() -> None:
    p = picker()
    assert p.hold(1) and p.held_pieces == [1]
    got = p.pick("peer", Bitfield(4, full=True), 100, now=0.0)
    assert {b.piece for b in got} == {0}  # held pieces take no partial slot, and none of their blocks
    p.unreserve(1, [2])
    got = p.pick("peer", Bitfield(4, full=True), 100, now=0.0)
    assert got == [BlockRef(1, 2 * BLOCK_SIZE, BLOCK_SIZE)]
    assert p.block_state(1, 0) == "reserved" and p.block_state(1, 2) == "requested"


def test_local_blocks_complete_a_held_piece_with_the_network() -> None:
    p = picker()
    p.hold(2)
    for b in (0, 1, 3):
        arrival = p.block_received("local", BlockRef(2, b * BLOCK_SIZE, BLOCK_SIZE))
        assert arrival.new and not arrival.piece_complete
    p.unreserve(2)
    assert p.held_pieces == []
    got = p.pick("peer", Bitfield.from_indices(4, [2]), 100, now=0.0)
    assert got == [BlockRef(2, 2 * BLOCK_SIZE, BLOCK_SIZE)]
    arrival = p.block_received("peer", got[0])
    assert arrival.piece_complete
    assert p.contributors(2) == {0: "local", 1: "local", 2: "peer", 3: "local"}
    p.piece_verified(2)
    assert p.block_state(2, 0) == "have"


def test_a_held_piece_keeps_the_torrent_incomplete_and_a_failed_one_is_fetched_whole() -> None:
    p = picker(n=2)
    p.piece_verified(0)
    p.hold(1)
    assert not p.is_complete and p.interesting(Bitfield(2, full=True))
    p.block_received("local", BlockRef(1, 0, BLOCK_SIZE))
    p.unreserve(1)
    for block in p.pick("peer", Bitfield(2, full=True), 100, now=0.0):
        p.block_received("peer", block)
    assert p.piece_complete(1)
    p.piece_failed(1)
    assert len(p.pick("peer", Bitfield(2, full=True), 100, now=0.0)) == 4
    assert not p.hold(0)  # a piece we have is never held


@pytest.mark.parametrize("release", [True, False])
def test_unreserving_an_untouched_piece_makes_it_ordinary(release: bool) -> None:
    p = picker(n=2)
    p.hold(1)
    if release:
        p.unreserve(1)
        assert p.partial_pieces == [] and p.held_pieces == []
    else:
        assert p.partial_pieces == [1]


# -- pad blocks are never downloaded -------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["v1", "hybrid"])
async def test_pad_bytes_are_never_downloaded(tmp_path: Path, fmt: TorrentFormat) -> None:
    """A 40-byte config.json and a file ending mid-piece: only their bytes (whole blocks) move, not the
    BEP 47 pads that align the next file (v1: before it, hybrid: after each file)."""
    root = tmp_path / "seed" / "m"
    root.mkdir(parents=True)
    (root / "a.json").write_bytes(b"{" + b" " * 38 + b"}")
    (root / "b.bin").write_bytes(random.Random(3).randbytes(300_000))
    (root / "c.bin").write_bytes(random.Random(4).randbytes(100_000))
    metainfo = create_torrent(root, piece_length=256 * 1024, format=fmt, creation_date=None)
    assert sum(f.length for f in metainfo.info.files if f.pad) > 256 * 1024
    payload = Payload(root=tmp_path / "seed", metainfo=metainfo, torrent_path=tmp_path / "m.torrent")
    async with local_swarm(payload, tmp_path / "swarm", leechers=1) as swarm:
        await swarm.wait_complete(timeout=30)
        [torrent] = swarm.torrents
        assert torrent.hash_failures == 0
        blocks = sum(-(-f.length // BLOCK_SIZE) * BLOCK_SIZE for f in metainfo.info.files if not f.pad)
        assert torrent.downloaded <= blocks, torrent.downloaded
    assert_same_files(metainfo, payload.root, swarm.leecher_dirs[0])


def test_pad_ranges_per_piece(tmp_path: Path) -> None:
    root = tmp_path / "m"
    root.mkdir()
    (root / "a.json").write_bytes(b"x" * 40)
    (root / "b.bin").write_bytes(b"y" * 100_000)
    info = create_torrent(root, piece_length=64 * 1024, format="hybrid", creation_date=None).info
    # hybrid: a pad after each file up to its piece's end
    assert pad_ranges(info) == {0: [(40, 65536)], 2: [(100_000 - 65536, 65536)]}
