"""A slow or vanished client frees what its transfer held; memory stays bounded; the gateway closes cleanly."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from tests.gateway_helpers import EndlessSource
from torrentgoat.gateway import Gateway, GatewayConfig

TARGET = "/org/endless/resolve/main/big.safetensors"


async def _until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def _request(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {TARGET} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    return reader, writer


async def test_a_vanished_client_closes_the_source_iterator() -> None:
    source = EndlessSource()
    async with Gateway([source], GatewayConfig(port=0, upstream=None)) as gateway:
        reader, writer = await _request(gateway.port)
        await reader.readuntil(b"\r\n\r\n")
        await reader.readexactly(1024 * 1024)
        writer.transport.abort()
        await asyncio.wait_for(source.closed.wait(), 20)
        await _until(lambda: gateway.stats.streams_open == 0)


async def test_a_stalled_client_is_cut_off_with_bounded_memory() -> None:
    source = EndlessSource()
    async with Gateway([source], GatewayConfig(port=0, upstream=None, stall_timeout=0.5)) as gateway:
        reader, writer = await _request(gateway.port)
        await reader.readuntil(b"\r\n\r\n")  # then never reads again
        await asyncio.wait_for(source.closed.wait(), 30)
        await _until(lambda: gateway.stats.streams_open == 0)
        # what was produced fits in the socket buffers plus one chunk, not the 16 GiB file
        assert source.produced < 64 * 1024 * 1024
        writer.close()


async def test_too_many_transfers_get_429_and_close_ends_open_ones() -> None:
    source = EndlessSource()
    gateway = Gateway([source], GatewayConfig(port=0, upstream=None, max_streams=1))
    await gateway.start()
    try:
        reader, writer = await _request(gateway.port)
        await reader.readuntil(b"\r\n\r\n")
        await _until(lambda: gateway.stats.streams_open == 1)
        second_reader, second_writer = await _request(gateway.port)
        status_line = await second_reader.readline()
        assert b" 429 " in status_line
        second_writer.close()
    finally:
        await asyncio.wait_for(gateway.close(), 20)
    await asyncio.wait_for(source.closed.wait(), 20)
    writer.close()


class _WaitingSource(EndlessSource):
    """Sends one chunk, then waits for data that never comes (a swarm with no peers)."""

    async def read(self, snapshot, file, start, stop):  # type: ignore[no-untyped-def,override]
        self.opened += 1
        try:
            yield bytes(self.chunk)
            await asyncio.Event().wait()
        finally:
            self.closed.set()


async def test_a_client_leaving_while_the_source_waits_releases_it_at_once() -> None:
    source = _WaitingSource()
    async with Gateway([source], GatewayConfig(port=0, upstream=None)) as gateway:
        reader, writer = await _request(gateway.port)
        await reader.readuntil(b"\r\n\r\n")
        await reader.readexactly(source.chunk)
        writer.transport.abort()
        await asyncio.wait_for(source.closed.wait(), 20)  # the handler was cancelled, not left waiting
        await _until(lambda: gateway.stats.streams_open == 0)
