"""Streaming through the gateway from a rate-limited seeder: first bytes before the torrent is complete.

One seeder limited to 4 MiB/s holds a 32 MiB safetensors file; a gateway session maps it to
``org/big`` (``--torrent``).  A client's first bytes arrive while most of the file is still missing,
a ``Range`` from the middle is fetched first, several clients share the one download, a client that
leaves lets go of its priorities, and once complete (and checked) the file is served from disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import huggingface_hub
import pytest

from tests.gateway_helpers import hf_offline_off
from torrentgoat.gateway import Gateway, GatewayConfig
from torrentgoat.gateway.fetch import ModelFetch
from torrentgoat.gateway.swarm import SwarmConfig, SwarmSource
from torrentgoat.session import Session
from torrentgoat.testing.swarm import MiB, Payload, loopback_config, make_file_payload, wait_until

SIZE = 32 * MiB
RATE = 4 * MiB
NAME = "model.safetensors"


@pytest.fixture(autouse=True)
def _online(monkeypatch: pytest.MonkeyPatch) -> None:
    hf_offline_off(monkeypatch)


@contextlib.asynccontextmanager
async def streaming(
    tmp_path: Path, *, size: int = SIZE, rate: int = RATE
) -> AsyncIterator[tuple[Payload, SwarmSource, Gateway]]:
    payload = make_file_payload(tmp_path, size, name=NAME, piece_length=256 * 1024, seed=5)
    async with (
        Session(loopback_config(upload_limit=rate, seed=1)) as seeder,
        Session(loopback_config(seed=2)) as session,
    ):
        seed = await seeder.add(payload.metainfo, payload.root, seed=True)
        await asyncio.wait_for(seed.wait_complete(), 30)
        config = SwarmConfig(cache_dir=tmp_path / "cache", peers=(f"127.0.0.1:{seeder.listen_port}",))
        async with SwarmSource(session, config) as swarm:
            await swarm.add_torrent("org/big", payload.metainfo)
            async with Gateway([swarm], GatewayConfig(port=0, upstream=None)) as gateway:
                yield payload, swarm, gateway


def _fetch(swarm: SwarmSource) -> ModelFetch:
    [fetch] = list(swarm.fetches())
    return fetch


async def test_first_bytes_before_the_torrent_is_complete(tmp_path: Path) -> None:
    async with streaming(tmp_path) as (payload, swarm, gateway), aiohttp.ClientSession() as http:
        data = (payload.root / NAME).read_bytes()
        commit = payload.metainfo.info_hash.hex
        url = f"{gateway.url}/org/big/resolve/main/{NAME}"
        async with http.head(url) as head:
            assert head.status == 200 and head.headers["X-Repo-Commit"] == commit
            assert head.headers["Content-Length"] == str(SIZE)
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with http.get(url) as response:
            assert response.status == 200
            first = await response.content.readany()
            ttfb = loop.time() - started
            torrent = _fetch(swarm).torrent
            assert torrent is not None
            assert not torrent.is_complete
            assert torrent.verified_bytes < SIZE // 2, "the client waited for most of the file"
            # a second client, from the middle, is served ahead of the pieces before it
            middle = SIZE // 2 + 12345
            async with http.get(url, headers={"Range": f"bytes={middle}-"}) as ranged:
                assert ranged.status == 206
                piece = await ranged.content.readexactly(100_000)
                assert piece == data[middle : middle + 100_000]
                assert not torrent.is_complete
            body = first + await response.read()
        assert hashlib.sha256(body).digest() == hashlib.sha256(data).digest()
        assert ttfb < SIZE / RATE / 2, f"first byte after {ttfb:.1f} s"
        await asyncio.wait_for(torrent.wait_complete(), 60)


async def test_clients_share_one_download_and_leave_cleanly(tmp_path: Path) -> None:
    async with streaming(tmp_path) as (payload, swarm, gateway), aiohttp.ClientSession() as http:
        data = (payload.root / NAME).read_bytes()
        url = f"{gateway.url}/org/big/resolve/main/{NAME}"
        # a client that reads one chunk and vanishes
        response = await http.get(url)
        await response.content.readany()
        fetch = _fetch(swarm)
        torrent = fetch.torrent
        assert torrent is not None and torrent.streams.readers >= 1
        response.close()
        await wait_until(lambda: fetch.readers == 0, timeout=20, what="the reader to leave")
        assert torrent.streams.readers == 0 and torrent.streams.raised == {}
        picker = torrent.picker
        assert picker is not None and set(picker.piece_priorities()) == {1}

        # huggingface_hub and a plain client at once: one torrent, both byte-identical
        def download() -> str:
            return huggingface_hub.hf_hub_download(
                "org/big", NAME, cache_dir=tmp_path / "hf", endpoint=gateway.url
            )

        hf_path, body = await asyncio.gather(asyncio.to_thread(download), _read(http, url))
        assert body == data and Path(hf_path).read_bytes() == data
        assert len(swarm.session.torrents) == 1
        # complete and checked: later reads come from disk, without the torrent
        await wait_until(lambda: fetch.local(NAME) is not None, timeout=60, what="the file to be checked")
        assert '"sha256": null' in fetch.record.read_text()  # a mapped torrent: piece hashes only
        torrent.stop("test")
        await torrent.wait_stopped()
        assert await _read(http, url) == data
        assert fetch.torrent is torrent  # not started again


async def _read(http: aiohttp.ClientSession, url: str) -> bytes:
    async with http.get(url) as response:
        assert response.status == 200
        return await response.read()


async def test_a_client_leaving_before_its_first_byte_lets_go(tmp_path: Path) -> None:
    """The file's first bytes (for the pickle check) and the range's are being fetched side by side,
    from a seeder so slow that neither can have come, when the client hangs up."""
    size = 4 * MiB
    async with streaming(tmp_path, size=size, rate=32 * 1024) as (_payload, swarm, gateway):
        fetch = _fetch(swarm)
        _, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
        target = f"/org/big/resolve/main/{NAME}"
        writer.write(f"GET {target} HTTP/1.1\r\nHost: x\r\nRange: bytes={size - 100}-\r\n\r\n".encode())
        await writer.drain()
        await wait_until(lambda: fetch.readers == 1, timeout=30, what="the ranged reader")
        torrent = fetch.torrent
        assert torrent is not None
        await wait_until(lambda: torrent.streams.readers == 2, timeout=30, what="both reads waiting")
        assert len(torrent.streams.raised) >= 2  # the first piece and the last one, at least
        writer.transport.abort()
        await wait_until(lambda: fetch.readers == 0, timeout=30, what="the ranged reader to leave")
        assert torrent.streams.readers == 0 and torrent.streams.raised == {}
        assert not torrent.streams._waiting
