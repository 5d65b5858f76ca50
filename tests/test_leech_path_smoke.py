"""Smoke test of benchmarks/leech_path.py: the real per-block path and its one-loop reference both take
every block of the stream exactly once (each asserts it) and report a CPU cost per GB."""

from __future__ import annotations

import math

import pytest

from benchmarks import leech_path

__all__: list[str] = []


@pytest.mark.parametrize("per_read", [1, 16, 43])
def test_both_paths_take_the_whole_stream(per_read: int) -> None:
    stages = leech_path.run(8, per_read=per_read)
    assert set(stages) == {*leech_path.STAGES, "total"}
    assert all(math.isfinite(v) and v >= 0 for v in stages.values())
    assert stages["total"] > 0
    least = leech_path.floor(8, per_read=per_read)
    assert math.isfinite(least) and least > 0


def test_reads_cut_inside_frames_are_carried_over() -> None:
    batch = [(0, 0, 16384), (0, 16384, 16384)]
    payload = bytes(16384)
    wire, carry = leech_path._stream(batch, b"", payload, last=False)
    assert len(carry) == 7000 and len(wire) + len(carry) == 2 * (13 + 16384)
    wire, carry = leech_path._stream(batch, b"xy", payload, last=True)
    assert carry == b"" and wire[:2] == b"xy"
