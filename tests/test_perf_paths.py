"""Hot-path mechanics added for speed: write coalescing in the peer driver, piece-buffer reuse."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from torrentgoat.aio import peer as peer_mod
from torrentgoat.aio.peer import HOLD_DELAY, HOLD_IN_FLIGHT, WRITE_NOW, PeerDriver
from torrentgoat.testing.wire import RecordingHandler
from torrentgoat.torrent.pieces import PieceBuffers
from torrentgoat.wire.connection import PeerConnection

# ---------------------------------------------------------------- piece buffers


def test_dropped_buffer_is_reused_once_unreferenced() -> None:
    buffers = PieceBuffers()
    buffers.write(0, 1000, 0, b"a" * 10)
    first = buffers.get(0)
    buffers.drop(0)
    buffers.write(1, 1000, 0, b"b")
    assert buffers.get(1) is not first  # still referenced here: never handed out again
    del first
    buffers.write(2, 1000, 0, b"c")
    reused = buffers.get(2)
    assert reused is not None and reused[:1] == b"c" and len(reused) == 1000
    assert buffers.bytes_held == 2000


def test_buffer_with_a_live_memoryview_is_not_reused() -> None:
    buffers = PieceBuffers()
    buffers.write(0, 64, 0, b"x")
    view = memoryview(cast(bytearray, buffers.get(0)))
    buffers.drop(0)
    buffers.write(1, 64, 0, b"y")
    assert buffers.get(1) is not view.obj
    assert bytes(view[:1]) == b"x"  # the old contents were not overwritten


def test_only_same_size_buffers_are_reused() -> None:
    buffers = PieceBuffers()
    buffers.write(0, 64, 0, b"x")
    buffers.drop(0)
    buffers.write(9, 20, 0, b"y")  # e.g. the short last piece
    assert len(cast(bytearray, buffers.get(9))) == 20
    assert buffers.spare_bytes == 64


def test_spare_buffers_are_bounded() -> None:
    buffers = PieceBuffers(spare_buffers=3, spare_bytes=250)
    for i in range(10):
        buffers.write(i, 100, 0, b"z")
    for i in range(10):
        buffers.drop(i)
    assert buffers.spare_bytes <= 250 and len(buffers) == 0 and buffers.bytes_held == 0
    buffers.clear()
    assert buffers.spare_bytes == 0


def test_buffers_larger_than_the_spare_budget_are_not_kept() -> None:
    buffers = PieceBuffers(spare_bytes=50)
    buffers.write(0, 100, 0, b"z")
    buffers.drop(0)
    assert buffers.spare_bytes == 0


# ---------------------------------------------------------------- peer driver write coalescing


class _Engine:
    def __init__(self) -> None:
        self.out: list[bytes] = []
        self.outstanding_count = 0

    def queue(self, *frames: bytes) -> None:
        self.out.extend(frames)

    def buffers_to_send(self) -> list[bytes]:
        out, self.out = self.out, []
        return out


class _Transport:
    def __init__(self) -> None:
        self.writes: list[list[bytes]] = []
        self.closed = False

    def writelines(self, buffers: list[bytes]) -> None:
        assert not self.closed
        self.writes.append(list(buffers))

    def close(self) -> None:
        self.closed = True


def _driver() -> tuple[PeerDriver, _Engine, _Transport, RecordingHandler]:
    engine, transport, handler = _Engine(), _Transport(), RecordingHandler()
    driver = PeerDriver(cast(PeerConnection, engine), handler, outgoing=True)
    driver.transport = cast(asyncio.Transport, transport)
    return driver, engine, transport, handler


async def test_flushes_in_one_iteration_become_one_write_in_order() -> None:
    driver, engine, transport, _ = _driver()
    for i in range(20):
        engine.queue(b"header%d" % i, b"block%d" % i)
        driver.flush()
    assert transport.writes == []
    await asyncio.sleep(0)
    assert len(transport.writes) == 1
    assert transport.writes[0] == [x for i in range(20) for x in (b"header%d" % i, b"block%d" % i)]


async def test_large_output_is_written_at_once() -> None:
    driver, engine, transport, _ = _driver()
    engine.queue(b"a" * 100, b"b" * WRITE_NOW)
    driver.flush()
    assert transport.writes == [[b"a" * 100, b"b" * WRITE_NOW]]
    await asyncio.sleep(0)
    assert len(transport.writes) == 1  # nothing left for the deferred flush


async def test_small_output_waits_briefly_while_the_pipeline_is_deep() -> None:
    driver, engine, transport, _ = _driver()
    engine.outstanding_count = HOLD_IN_FLIGHT + 10
    engine.queue(b"r" * 17)
    driver.flush()
    await asyncio.sleep(0)
    assert transport.writes == []  # held: plenty of requests are still in flight
    engine.queue(b"s" * 17)
    driver.flush()
    await asyncio.sleep(HOLD_DELAY * 5 + 0.01)
    assert transport.writes == [[b"r" * 17, b"s" * 17]]


async def test_small_output_is_not_held_when_the_pipeline_is_shallow() -> None:
    driver, engine, transport, _ = _driver()
    engine.outstanding_count = 3
    engine.queue(b"r" * 17)
    driver.flush()
    await asyncio.sleep(0)
    assert transport.writes == [[b"r" * 17]]


async def test_close_sends_pending_output_before_closing() -> None:
    driver, engine, transport, handler = _driver()
    engine.outstanding_count = HOLD_IN_FLIGHT * 2
    engine.queue(b"last words")
    driver.flush()
    driver.close("done")
    assert transport.writes == [[b"last words"]] and transport.closed
    assert handler.closed == ["done"]
    await asyncio.sleep(HOLD_DELAY * 5)
    assert len(transport.writes) == 1


async def test_nothing_is_written_after_the_connection_is_lost() -> None:
    driver, engine, transport, _ = _driver()
    engine.queue(b"x")
    driver.flush()
    driver.connection_lost(None)
    await asyncio.sleep(HOLD_DELAY * 5)
    assert transport.writes == []


def test_thresholds_are_sane() -> None:
    assert peer_mod.HOLD_BYTES < WRITE_NOW
    assert HOLD_DELAY <= 0.005  # held requests must never starve a fast peer


# ---------------------------------------------------------------- read cache with recycled buffers


class _Disk:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.reads = 0

    async def read(self, piece: int, begin: int, length: int) -> bytes:
        self.reads += 1
        return self.data[begin : begin + length]

    async def read_into(self, piece: int, begin: int, buf: bytearray) -> None:
        self.reads += 1
        buf[:] = self.data[begin : begin + len(buf)]


async def test_read_cache_into_recycled_buffers_serves_the_right_bytes() -> None:
    from torrentgoat.torrent.pieces import ReadCache

    data = bytes(range(256)) * 1024  # one 256 KiB piece
    disk = _Disk(data)
    chunk = 16 * 1024
    cache = ReadCache(disk.read, chunk=chunk, budget=2 * chunk, reader_into=disk.read_into)
    held = []
    for begin in range(0, len(data), chunk):
        view = await cache.read(0, begin, chunk, len(data))
        assert bytes(view) == data[begin : begin + chunk]
        if begin // chunk in (1, 2):
            held.append(view)  # a block still queued for a socket: its buffer must not be reused
    assert disk.reads == 16
    assert [bytes(v) for v in held] == [data[chunk : 2 * chunk], data[2 * chunk : 3 * chunk]]
    again = await cache.read(0, 5, 100, len(data))  # evicted long ago: read again, into a reused buffer
    assert bytes(again) == data[5:105]
    straddling = await cache.read(0, chunk - 10, 20, len(data))
    assert bytes(straddling) == data[chunk - 10 : chunk + 10]


async def test_read_cache_hits_do_not_read_again() -> None:
    from torrentgoat.torrent.pieces import ReadCache

    data = b"q" * (64 * 1024)
    disk = _Disk(data)
    cache = ReadCache(disk.read, chunk=32 * 1024, budget=1 << 20, reader_into=disk.read_into)
    for begin in range(0, 32 * 1024, 16 * 1024):
        await cache.read(0, begin, 16 * 1024, len(data))
    assert disk.reads == 1 and cache.hits == 1 and cache.misses == 1


async def test_optional_peer_pumped_hook_runs_once_per_pump_after_the_events() -> None:
    from torrentgoat.wire.events import Event

    seen: list[str] = []

    class Engine(_Engine):
        def __init__(self) -> None:
            super().__init__()
            self.events: list[Any] = ["a", "b", "c"]

        def next_event(self) -> Event | None:
            return self.events.pop(0) if self.events else None

    class Handler(RecordingHandler):
        def peer_event(self, peer: Any, event: Any) -> None:
            seen.append(event)

        def peer_pumped(self, peer: Any) -> None:
            seen.append("pumped")

    engine = Engine()
    driver = PeerDriver(cast(PeerConnection, engine), Handler(), outgoing=True)
    driver.transport = cast(asyncio.Transport, _Transport())
    driver.pump()
    assert seen == ["a", "b", "c", "pumped"]
    # handlers without the hook (e.g. the session's pre-handshake handler) are fine
    plain = PeerDriver(cast(PeerConnection, Engine()), RecordingHandler(), outgoing=True)
    plain.transport = cast(asyncio.Transport, _Transport())
    plain.pump()


def test_spare_buffers_stay_within_the_piece_memory_budget() -> None:
    """Held and spare piece buffers together never exceed the budget (the picker's byte cap)."""
    buffers = PieceBuffers(budget=300)
    for i in range(3):
        buffers.write(i, 100, 0, b"z")
    buffers.drop(0)
    assert buffers.spare_bytes == 100  # 200 held + 100 spare fit
    buffers.write(3, 100, 0, b"z")  # reuses the spare
    assert buffers.spare_bytes == 0 and buffers.bytes_held == 300
    held = buffers.get(1)
    buffers.drop(1)
    buffers.drop(2)
    assert buffers.spare_bytes == 200 and buffers.bytes_held == 100
    buffers.write(4, 50, 0, b"y")  # no spare fits: the unusable ones go before a fresh allocation
    assert buffers.bytes_held + buffers.spare_bytes <= 300
    del held


def test_read_cache_cached_is_a_synchronous_hit_only() -> None:
    async def reader(piece: int, begin: int, length: int) -> bytes:
        return bytes([piece]) * length

    async def body() -> None:
        from torrentgoat.torrent.pieces import ReadCache

        cache = ReadCache(reader, chunk=64 * 1024, budget=1 << 20)
        assert cache.cached(3, 0, 16384) is None  # a miss is not read here
        await cache.read(3, 0, 16384, 1 << 20)
        hit = cache.cached(3, 16384, 16384)
        assert hit is not None and bytes(hit) == b"\x03" * 16384
        assert cache.cached(3, 60 * 1024, 16384) is None  # spans two chunks: the async path

    asyncio.run(body())
