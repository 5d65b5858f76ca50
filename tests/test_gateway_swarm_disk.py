"""What a gateway keeps on disk: checked files survive a restart and are served without the swarm; a
file damaged on disk is noticed before a byte of it is sent, and repaired from the swarm."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp

from torrentgoat.gateway import Gateway, GatewayConfig
from torrentgoat.gateway.swarm import SwarmConfig, SwarmSource
from torrentgoat.session import Session
from torrentgoat.testing.swarm import MiB, Payload, loopback_config, make_file_payload, wait_until

NAME = "model.safetensors"
PIECE = 256 * 1024


@contextlib.asynccontextmanager
async def gateway(payload: Payload, cache: Path, seeder: Session) -> AsyncIterator[tuple[SwarmSource, str]]:
    async with Session(loopback_config(seed=2)) as session:
        config = SwarmConfig(cache_dir=cache, peers=(f"127.0.0.1:{seeder.listen_port}",))
        async with SwarmSource(session, config) as swarm:
            await swarm.add_torrent("org/m", payload.metainfo)
            async with Gateway([swarm], GatewayConfig(port=0, upstream=None)) as server:
                yield swarm, f"{server.url}/org/m/resolve/main/{NAME}"


async def _read(url: str) -> bytes:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        assert response.status == 200
        return await response.read()


async def test_checked_files_survive_a_restart_and_damage_is_repaired(tmp_path: Path) -> None:
    payload = make_file_payload(tmp_path, 8 * MiB, name=NAME, piece_length=PIECE, seed=9)
    data = (payload.root / NAME).read_bytes()
    cache = tmp_path / "cache"
    async with Session(loopback_config(seed=1)) as seeder:
        seed = await seeder.add(payload.metainfo, payload.root, seed=True)
        await asyncio.wait_for(seed.wait_complete(), 30)
        async with gateway(payload, cache, seeder) as (swarm, url):
            assert await _read(url) == data
            [fetch] = list(swarm.fetches())
            await wait_until(lambda: fetch.local(NAME) is not None, timeout=60, what="the file checked")
        uploaded = seed.uploaded
        assert uploaded >= len(data)

        # a new gateway on the same cache: served from disk, nothing crosses the network
        async with gateway(payload, cache, seeder) as (swarm, url):
            [fetch] = list(swarm.fetches())
            assert fetch.local(NAME) is not None
            assert await _read(url) == data
            assert seed.uploaded == uploaded

            # a byte changes on disk (same size): caught before sending, the piece is fetched again
            local = fetch.local(NAME)
            assert local is not None
            with open(local.path, "r+b") as handle:
                handle.seek(3 * PIECE + 17)
                handle.write(bytes([data[3 * PIECE + 17] ^ 0xFF]))
            os.utime(local.path, ns=(1, 1))
            assert await asyncio.wait_for(_read(url), 60) == data
            assert uploaded < seed.uploaded <= uploaded + 2 * PIECE
            await wait_until(lambda: fetch.local(NAME) is not None, timeout=60, what="the file checked again")
            assert local.path.read_bytes() == data


async def test_without_seeding_a_reader_outlives_the_torrent(tmp_path: Path) -> None:
    """``--no-seed``: the torrent stops once complete; a client still reading goes on from disk."""
    payload = make_file_payload(tmp_path, 8 * MiB, name=NAME, piece_length=PIECE, seed=10)
    data = (payload.root / NAME).read_bytes()
    async with Session(loopback_config(seed=1)) as seeder, Session(loopback_config(seed=2)) as session:
        seed = await seeder.add(payload.metainfo, payload.root, seed=True)
        await asyncio.wait_for(seed.wait_complete(), 30)
        config = SwarmConfig(
            cache_dir=tmp_path / "cache", peers=(f"127.0.0.1:{seeder.listen_port}",), seed=False
        )
        async with SwarmSource(session, config) as swarm:
            await swarm.add_torrent("org/m", payload.metainfo)
            async with (
                Gateway([swarm], GatewayConfig(port=0, upstream=None)) as server,
                aiohttp.ClientSession() as http,
                http.get(f"{server.url}/org/m/resolve/main/{NAME}") as response,
            ):
                first = await response.content.readany()
                [fetch] = list(swarm.fetches())
                assert fetch.torrent is not None
                await asyncio.wait_for(fetch.torrent.wait_stopped(), 60)
                assert fetch.torrent.stop_reason == "complete"
                assert first + await response.read() == data
