"""Interop: the torrentgoat engine against transmission-cli 3.00, both directions, on loopback.

transmission treats 127.x / ::1 addresses it learns from trackers as bogus and never dials them
(INTEROP-NOTES), so in both tests *torrentgoat* dials transmission's listen port:

* transmission seeds (it verifies the data first, ``-v``), our session joins by magnet with
  ``x.pe=transmission`` and takes the info dict (BEP 9) and the data from it;
* our session seeds with ``peers=[transmission]`` and dials the transmission leech, which
  downloads everything and runs its ``--finish`` script.

Each transmission run gets its own config dir (its resume files would override ``-w``); DHT,
LPD, PEX, uTP and port mapping are off in its settings.json.  It waits about 10 s before
unchoking a new peer, so these tests take ~10-15 s each whatever the payload.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.conftest import require_binary
from tests.interop_helpers import (
    MiB,
    ProcessGroup,
    assert_same_files,
    complete,
    loopback_config,
    make_model_torrent,
    make_shard_torrent,
    processes,
    wait_listening,
    wait_until,
)
from torrentgoat.magnet import Magnet
from torrentgoat.primitives import PeerAddress
from torrentgoat.session import Session
from torrentgoat.testing.timing import scaled

pytestmark = pytest.mark.interop

__all__ = ["processes"]  # the fixture, imported for pytest


async def test_torrentgoat_downloads_from_transmission_seeder(
    tmp_path: Path, processes: ProcessGroup
) -> None:
    binary = require_binary("transmission-cli")
    shared = make_shard_torrent(tmp_path, 3 * MiB + 555, seed=31)
    started = time.monotonic()
    seeder, verified = await processes.transmission(
        torrent=shared.torrent_path, directory=shared.root, binary=binary, verify=True
    )
    # its --finish script also runs once it has verified complete data: then it seeds
    try:
        await wait_until(verified.exists, timeout=15, what="transmission to verify its data")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{seeder.tail(60)}") from None
    checked = time.monotonic()
    dest = tmp_path / "down"
    # by magnet with x.pe: the info dict comes from transmission too (BEP 9)
    magnet = Magnet(
        info_hash=shared.metainfo.info_hash, peers=(PeerAddress("127.0.0.1", seeder.port or 0),)
    ).to_uri()
    async with Session(loopback_config()) as session:
        torrent = await session.add(magnet, dest)
        info = await asyncio.wait_for(torrent.wait_metadata(), timeout=scaled(10))
        assert info.raw == shared.metainfo.info.raw
        await complete(torrent, timeout=28, peers=[seeder])
        print(
            f"transmission checked in {checked - started:.1f} s, we downloaded in {time.monotonic() - checked:.1f} s"
        )
        assert torrent.hash_failures == 0
    assert_same_files(shared.metainfo, shared.root, dest)


async def test_transmission_downloads_from_torrentgoat_seeder(
    tmp_path: Path, processes: ProcessGroup
) -> None:
    """From a .torrent: started from a magnet, transmission takes the info dict from us (BEP 9,
    measured to work) but then drops every connection to restart with the metadata, and since it
    never dials 127.x itself, the transfer waits for our next dial (~10 s later) and its own ~10 s
    before showing interest -- 16 to 28 s, too close to the time budget."""
    binary = require_binary("transmission-cli")
    shared = make_model_torrent(tmp_path, shards=2, shard_size=MiB + 333, seed=32)
    dest = tmp_path / "tr-down"
    dest.mkdir()
    leech, finished = await processes.transmission(torrent=shared.torrent_path, directory=dest, binary=binary)
    await wait_listening(leech.port or 0, timeout=10)
    # it closes connections for a torrent it has not started yet (then we would retry ~6 s later):
    # it starts shortly after checking for existing data
    await leech.wait_line("Verification is done", timeout=10)
    await asyncio.sleep(0.5)
    async with Session(loopback_config()) as session:
        torrent = await session.add(
            shared.torrent_path, shared.root, seed=True, peers=[f"127.0.0.1:{leech.port}"]
        )
        await asyncio.wait_for(torrent.wait_complete(), timeout=scaled(10))
        try:
            await wait_until(finished.exists, timeout=28, what="transmission to finish")
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}: uploaded={torrent.uploaded} peers={torrent.num_peers}\n{leech.tail()}"
            ) from None
        assert torrent.uploaded >= shared.size
    assert_same_files(shared.metainfo, shared.root, dest)
