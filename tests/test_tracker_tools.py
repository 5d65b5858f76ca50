"""tools/tracker.py: the standalone loopback tracker starts, answers, and stops on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from torrentgoat.aio.tracker import announce
from torrentgoat.primitives import InfoHash, PeerId
from torrentgoat.testing.timing import scaled
from torrentgoat.tracker.messages import AnnounceRequest

TOOL = Path(__file__).resolve().parent.parent / "tools" / "tracker.py"


async def test_tool_serves_http_and_udp_until_sigterm() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(TOOL), "--port", "0", "--interval", "60", stdout=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        ready = json.loads(await asyncio.wait_for(proc.stdout.readline(), scaled(20)))
        assert ready["event"] == "listening"
        request = AnnounceRequest(
            info_hash=InfoHash(b"\x42" * 20), peer_id=PeerId(b"-TG0001-toolsaaaaaaa"), port=9
        )
        for url in (ready["http"], ready["udp"]):
            reply = await announce(url, request, timeout=10)
            assert reply.interval == 60
    finally:
        proc.terminate()
        out, _ = await asyncio.wait_for(proc.communicate(), scaled(20))
    assert proc.returncode == 0
    assert json.loads(out.decode().strip().splitlines()[-1]) == {"event": "stopped", "announces": 2}
