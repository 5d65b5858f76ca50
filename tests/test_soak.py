"""A short soak (``benchmarks/soak.py``; the long one is ``python -m benchmarks.soak --duration 30m``).

Leecher processes join, download, seed and leave, some are SIGKILLed mid-download and taken up again,
a corrupting seed is handed out by a tracker that goes down and comes back: every folder ends
complete and identical to the original, and the driver's descriptors are back where they started.
"""

from __future__ import annotations

import os
from pathlib import Path

from benchmarks import soak
from torrentgoat.testing.swarm import MiB, wait_until


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_short_soak_every_peer_completes_with_no_unverified_byte(tmp_path: Path) -> None:
    before = _fds()
    lines: list[str] = []
    result = await soak.soak(
        duration=8.0,
        size=4 * MiB,
        peers=3,
        report=2.0,
        kill=0.5,
        flap=(4.0, 1.5),
        work=tmp_path,
        out=lines.append,
    )
    assert result.peers >= 3 and result.runs >= result.peers, lines
    assert not result.mismatched, f"bytes differ in {result.mismatched}"
    assert not result.incomplete, f"never completed: {result.incomplete}\n" + "\n".join(lines)
    assert result.completed == result.peers
    assert result.flaps >= 1
    assert lines and all("rss=" in line and "fds=" in line and "tasks=" in line for line in lines)
    await wait_until(lambda: _fds() <= before + 2, timeout=10, what=f"descriptors back to {before}")
