"""Range reads of verified data while the torrent downloads (torrent/streaming.py, ``Torrent.stream``).

A rate-limited seeder and one leecher on loopback: a reader of a range far from the start gets its
bytes before the torrent is complete, the pieces ahead of it are raised in the picker and go back to
their own priority when the reader leaves, two readers share the download, and a stopped torrent ends
its readers with an error.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from torrentgoat.errors import ConfigError, DataChangedError, TorrentGoatError
from torrentgoat.picker import MAX_PRIORITY
from torrentgoat.session import Session
from torrentgoat.testing.swarm import MiB, Payload, loopback_config, make_file_payload, wait_until
from torrentgoat.torrent import Torrent
from torrentgoat.torrent.streaming import FLOOR

PIECE = 256 * 1024
SIZE = 8 * MiB


@pytest.fixture
def payload(tmp_path: Path) -> Payload:
    return make_file_payload(tmp_path, SIZE, piece_length=PIECE, seed=3)


@contextlib.asynccontextmanager
async def seeded(
    payload: Payload, tmp_path: Path, *, rate: int
) -> AsyncIterator[tuple[Torrent, Torrent, bytes]]:
    """A seeder limited to ``rate`` bytes/s and a leecher dialling it: (seed torrent, leecher, data)."""
    data = (payload.root / payload.name).read_bytes()
    async with (
        Session(loopback_config(upload_limit=rate, seed=1)) as seeder,
        Session(loopback_config(seed=2)) as leecher,
    ):
        seed = await seeder.add(payload.metainfo, payload.root, seed=True)
        await asyncio.wait_for(seed.wait_complete(), 30)
        torrent = await leecher.add(
            payload.metainfo, tmp_path / "leecher", peers=[f"127.0.0.1:{seeder.listen_port}"], seed=True
        )
        yield seed, torrent, data


async def test_a_range_arrives_before_the_torrent_is_complete(payload: Payload, tmp_path: Path) -> None:
    async with seeded(payload, tmp_path, rate=2 * MiB) as (_, torrent, data):
        start, stop = 6 * MiB + 1000, 6 * MiB + 700_000  # three pieces, starting mid-piece
        chunks = torrent.stream(0, start, stop)
        first = await asyncio.wait_for(anext(chunks), 30)
        assert not torrent.is_complete
        assert torrent.verified_bytes < SIZE // 2, "the range was not fetched first"
        picker = torrent.picker
        assert picker is not None
        raised = torrent.streams.raised
        assert raised and all(before == 1 for before in raised.values())
        window = [picker.priority(i) for i in sorted(raised)]
        assert window == sorted(window, reverse=True) and window[-1] >= FLOOR
        received = bytearray(first)
        async for chunk in chunks:
            received += chunk
        assert bytes(received) == data[start:stop]
        # the reader is gone: every raised piece is back to its own priority
        assert torrent.streams.readers == 0 and torrent.streams.raised == {}
        assert set(picker.piece_priorities()) == {1}
        await asyncio.wait_for(torrent.wait_complete(), 60)


async def test_readers_share_and_a_closed_reader_lets_go(payload: Payload, tmp_path: Path) -> None:
    async with seeded(payload, tmp_path, rate=1 * MiB) as (_, torrent, data):
        start = 5 * MiB
        one = torrent.stream(0, start, start + 3 * PIECE)
        two = torrent.stream(0, start, start + 3 * PIECE)
        got_one, got_two = await asyncio.wait_for(asyncio.gather(anext(one), anext(two)), 30)
        assert got_one == got_two == data[start : start + len(got_one)]
        assert torrent.streams.readers == 2
        await one.aclose()
        assert torrent.streams.readers == 1 and torrent.streams.raised  # the other one still reads
        rest = b"".join([chunk async for chunk in two])
        assert got_two + rest == data[start : start + 3 * PIECE]
        assert torrent.streams.raised == {}

        # a reader cancelled while it waits for a piece removes its wait and its priorities
        far = torrent.stream(0, SIZE - PIECE, SIZE)
        waiting = asyncio.ensure_future(anext(far))
        await wait_until(lambda: bool(torrent.streams._waiting), timeout=10, what="a waiting reader")
        picker = torrent.picker
        assert picker is not None
        last = SIZE // PIECE - 1
        if last not in (torrent.have or ()):
            assert picker.priority(last) == MAX_PRIORITY
        waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
            await waiting
        await far.aclose()
        assert not torrent.streams._waiting and torrent.streams.raised == {}
        assert torrent.streams.readers == 0


async def test_a_stopped_torrent_ends_its_readers(payload: Payload, tmp_path: Path) -> None:
    async with seeded(payload, tmp_path, rate=256 * 1024) as (_, torrent, _data):
        chunks = torrent.stream(0, SIZE - 2 * PIECE, SIZE)
        pending = asyncio.ensure_future(anext(chunks))
        await wait_until(lambda: bool(torrent.streams._waiting), timeout=10, what="a waiting reader")
        torrent.stop("test over")
        with pytest.raises(TorrentGoatError, match="test over"):
            await asyncio.wait_for(pending, 10)
        await torrent.wait_stopped()
        with pytest.raises(TorrentGoatError, match="stopped"):
            await anext(torrent.stream(0, 0, 10))


async def test_complete_data_and_bad_arguments(payload: Payload, tmp_path: Path) -> None:
    async with seeded(payload, tmp_path, rate=0) as (seed, _torrent, data):
        whole = b"".join([chunk async for chunk in seed.stream(0)])
        assert whole == data
        assert b"".join([c async for c in seed.stream(0, 10, 10)]) == b""
        with pytest.raises(ConfigError, match="outside"):
            await anext(seed.stream(0, 0, SIZE + 1))
        with pytest.raises(ConfigError, match="out of range"):
            await anext(seed.stream(1))


async def test_a_reader_waits_through_a_recheck(payload: Payload, tmp_path: Path) -> None:
    """A piece taken back after a change on disk (torrent/recovery.py) and found good again by the
    re-check wakes the reader waiting for it, though it was never downloaded."""
    async with seeded(payload, tmp_path, rate=0) as (seed, _torrent, data):
        piece = 5
        seed.data_lost(piece, DataChangedError("test: pretend the file changed"))
        assert seed.have is not None and piece not in seed.have
        chunks = seed.stream(0, piece * PIECE, (piece + 1) * PIECE)
        body = b"".join(await asyncio.wait_for(_collect(chunks), 30))
        assert body == data[piece * PIECE : (piece + 1) * PIECE]
        assert seed.streams.readers == 0 and not seed.streams._waiting


async def _collect(chunks: AsyncIterator[bytes]) -> list[bytes]:
    return [chunk async for chunk in chunks]
