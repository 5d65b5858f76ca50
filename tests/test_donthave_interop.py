"""Interop, BEP 54: libtorrent 2.1 hears our ``lt_donthave`` when a piece we seed changes on disk.

A torrentgoat seed whose file was altered under it (seeding only: it does not fetch the piece again)
serves libtorrent everything but the altered piece, tells it ``lt_donthave``, and never sends the
altered bytes: libtorrent reports no hash failure, counts one piece fewer at our seed, and completes
from an honest seed.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require_libtorrent
from tests.interop_helpers import ProcessGroup, assert_same_files, processes
from torrentgoat.primitives import PeerAddress
from torrentgoat.session import Session
from torrentgoat.testing.swarm import MiB, loopback_config, make_file_payload, wait_until

pytestmark = pytest.mark.interop

__all__ = ["processes"]  # the fixture, imported for pytest

PIECE = 256 * 1024


async def test_libtorrent_hears_lt_donthave_and_never_gets_the_changed_piece(
    tmp_path: Path, processes: ProcessGroup
) -> None:
    require_libtorrent()
    payload = make_file_payload(tmp_path, 4 * MiB, piece_length=PIECE, seed=93)
    info = payload.metainfo.info
    broken_dir = tmp_path / "broken"
    broken_dir.mkdir()
    (broken_dir / info.name).write_bytes((payload.root / info.name).read_bytes())
    lt_dir = tmp_path / "lt"
    lt_dir.mkdir()
    seed_only = replace(loopback_config().torrent, seed=True, refetch_lost=False)
    async with (
        Session(replace(loopback_config(), torrent=seed_only)) as broken_session,
        Session(loopback_config()) as honest_session,
    ):
        broken = await broken_session.add(payload.metainfo, broken_dir)
        await asyncio.wait_for(broken.wait_complete(), 20)
        await wait_until(
            lambda: broken.recovery.watch is not None and bool(broken.recovery.watch.watched),
            timeout=10,
            what="the seed to watch its file",
        )
        with (broken_dir / info.name).open("r+b") as handle:  # piece 7 changes under the seed
            handle.seek(7 * PIECE + 4000)
            handle.write(b"\x00" * 5000)
        leech = await processes.libtorrent(
            "leech",
            directory=lt_dir,
            torrent=payload.torrent_path,
            peers=[f"127.0.0.1:{broken_session.listen_port}"],
            extra=["--report-peers"],
        )

        def views(event: dict[str, Any]) -> dict[int, int]:
            return {p["port"]: p["pieces"] for p in event.get("peer_pieces", [])}

        # libtorrent downloads all but piece 7 and learns that our seed lacks it
        await leech.wait_event(
            "progress",
            timeout=30,
            predicate=lambda e: (
                e.get("done") == info.total_length - PIECE
                and views(e).get(broken_session.listen_port) == info.num_pieces - 1
            ),
        )
        assert broken.have is not None and 7 not in broken.have
        honest = await honest_session.add(payload.metainfo, payload.root, seed=True)
        await asyncio.wait_for(honest.wait_complete(), 20)
        # libtorrent cannot be given a peer after it started: the honest seed dials it
        assert leech.port is not None
        honest.add_peers([PeerAddress("127.0.0.1", leech.port)], "manual")
        await leech.wait_event("finished", timeout=30)
        assert not [e for e in leech.events if e.get("event") == "hash_failed"], leech.tail()
        assert broken.error is None and broken.is_complete
    assert_same_files(payload.metainfo, payload.root, lt_dir)
