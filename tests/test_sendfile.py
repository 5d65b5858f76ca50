"""Seeding with ``sendfile``: the engine's header-only answer, storage leases, the lease cache, and the
driver writing piece messages straight to a TCP socket (with the transport taking what the socket
does not)."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path
from typing import Any, cast

import pytest

from torrentgoat.aio.peer import PeerDriver, _direct_socket
from torrentgoat.bitfield import Bitfield
from torrentgoat.errors import LocalProtocolError, RemoteProtocolError, StorageError
from torrentgoat.metainfo import FileEntry
from torrentgoat.mse import CryptoMethod
from torrentgoat.session import Session
from torrentgoat.storage import FileStorage, Layout
from torrentgoat.testing.hostile import RawPeer
from torrentgoat.testing.swarm import (
    MiB,
    assert_same_files,
    loopback_config,
    make_file_payload,
    make_model_payload,
    wait_until,
)
from torrentgoat.testing.wire import RecordingHandler, make_pair, unchoked
from torrentgoat.torrent import upload
from torrentgoat.torrent.pieces import CHANGED, READ, LeaseCache
from torrentgoat.wire import codec
from torrentgoat.wire.connection import PeerConnection, WireConfig
from torrentgoat.wire.events import (
    BlockReceived,
    BlockRequested,
    BlocksRequested,
    RequestCancelled,
)
from torrentgoat.wire.messages import Cancel, Interested, Piece, RejectRequest, Request, Unchoke

linux_only = pytest.mark.skipif(sys.platform != "linux", reason="sendfile serving is Linux-only (MSG_MORE)")

BLOCK = 16 * 1024

# ---------------------------------------------------------------- the engine: answer_request


def _unchoked_seed_pair() -> Any:
    return unchoked(make_pair(b_have=Bitfield(8, full=True)))


def test_answer_request_returns_the_header_once_and_the_block_follows_it() -> None:
    pair = _unchoked_seed_pair()
    pair.a.send(Request(index=3, begin=BLOCK, length=BLOCK))
    pair.pump()
    assert [type(e) for e in pair.take("b")] == [BlockRequested]
    header = pair.b.answer_request(3, BLOCK, BLOCK)
    assert header == codec.encode_piece_header(3, BLOCK, BLOCK)
    assert pair.b.answer_request(3, BLOCK, BLOCK) is None  # answered: no longer pending
    assert pair.b.uploaded == BLOCK and pair.b.peer_requests == ()
    assert header is not None
    pair.a.receive_data(header + b"\x07" * BLOCK)  # what the driver writes for it
    blocks = [e for e in iter(pair.a.next_event, None) if isinstance(e, BlockReceived)]
    assert [(b.index, b.begin, bytes(b.data)) for b in blocks] == [(3, BLOCK, b"\x07" * BLOCK)]


def test_answer_request_refuses_while_output_is_queued() -> None:
    pair = _unchoked_seed_pair()
    pair.a.send(Request(index=1, begin=0, length=BLOCK))
    pair.a.send(Request(index=2, begin=0, length=BLOCK))
    pair.pump()
    assert pair.b.send_piece(1, 0, bytes(BLOCK))  # queued, not yet taken by the driver
    with pytest.raises(LocalProtocolError):
        pair.b.answer_request(2, 0, BLOCK)  # its header would overtake the queued block
    pair.b.buffers_to_send()
    assert pair.b.answer_request(2, 0, BLOCK) is not None


def _batching_seed() -> Any:
    pair = _unchoked_seed_pair()
    pair.b.batch_requests = True
    return pair


def _request(index: int, begin: int, length: int = BLOCK) -> bytes:
    return codec.encode_message(Request(index=index, begin=begin, length=length))


def test_a_run_of_requests_is_one_event_and_other_frames_keep_their_place() -> None:
    pair = _batching_seed()
    run = b"".join(_request(i % 8, (i // 8) * BLOCK) for i in range(12))
    cancel = codec.encode_message(Cancel(index=0, begin=0, length=BLOCK))
    pair.b.receive_data(run + cancel + _request(7, BLOCK) + _request(6, BLOCK) + _request(6, BLOCK))
    events = list(iter(pair.b.next_event, None))
    assert [type(e) for e in events] == [BlocksRequested, RequestCancelled, BlocksRequested]
    first, second = cast(BlocksRequested, events[0]), cast(BlocksRequested, events[2])
    assert first.requests == [(i % 8, (i // 8) * BLOCK, BLOCK) for i in range(12)]
    assert second.requests == [(7, BLOCK, BLOCK), (6, BLOCK, BLOCK)]  # the duplicate dropped


def test_a_run_keeps_every_rule_of_a_single_request() -> None:
    have = Bitfield(8)
    for index in (0, 1, 7):
        have.add(index)
    pair = unchoked(make_pair(b_have=have, a_config=WireConfig(), b_config=WireConfig(max_peer_requests=4)))
    pair.b.batch_requests = True
    pair.b.receive_data(
        _request(0, 0)
        + _request(2, 0)  # a piece we lack: rejected (BEP 6), not queued
        + _request(7, BLOCK)  # the last piece: checked by the general rules
        + _request(1, 0)
        + _request(1, 0)  # a duplicate: dropped
        + _request(1, BLOCK)  # the fourth queued: reqq is 4
        + _request(0, BLOCK)  # over reqq: rejected (BEP 6)
    )
    events = list(iter(pair.b.next_event, None))
    assert [type(e) for e in events] == [BlocksRequested]
    assert cast(BlocksRequested, events[0]).requests == [
        (0, 0, BLOCK),
        (7, BLOCK, BLOCK),
        (1, 0, BLOCK),
        (1, BLOCK, BLOCK),
    ]
    assert pair.b.data_to_send() == codec.encode_message(
        RejectRequest(index=2, begin=0, length=BLOCK)
    ) + codec.encode_message(RejectRequest(index=0, begin=BLOCK, length=BLOCK))
    pair.b.receive_data(_request(0, 2 * BLOCK) + _request(0, 32 * 1024 - 1))  # outside the piece
    with pytest.raises(RemoteProtocolError):
        pair.b.next_event()


def test_requests_before_a_malformed_one_are_delivered_first() -> None:
    pair = _batching_seed()
    pair.b.receive_data(_request(1, 0) + _request(1, BLOCK) + _request(1, 2 * BLOCK, 0))
    first = pair.b.next_event()
    assert isinstance(first, BlocksRequested) and first.requests == [(1, 0, BLOCK), (1, BLOCK, BLOCK)]
    with pytest.raises(RemoteProtocolError):
        pair.b.next_event()


def test_a_run_split_across_reads_loses_nothing() -> None:
    pair = _batching_seed()
    data = b"".join(_request(i % 8, (i // 8) * BLOCK) for i in range(16))
    got: list[tuple[int, int, int]] = []
    for cut in range(0, len(data), 23):  # frames split at every odd place
        pair.b.receive_data(data[cut : cut + 23])
        for event in iter(pair.b.next_event, None):
            assert isinstance(event, BlocksRequested)
            got += event.requests
    assert got == [(i % 8, (i // 8) * BLOCK, BLOCK) for i in range(16)]


# ---------------------------------------------------------------- storage leases


def _files(root: Path, sizes: list[int], pads: frozenset[int] = frozenset()) -> tuple[Layout, bytes]:
    entries, offset, data = [], 0, b""
    for i, size in enumerate(sizes):
        entries.append(
            FileEntry(path=("t", f"f{i}"), length=size, offset=offset, attr="p" if i in pads else "")
        )
        offset += size
        body = os.urandom(size) if i not in pads else bytes(size)
        data += body
        if i not in pads:
            (root / "t").mkdir(exist_ok=True)
            (root / "t" / f"f{i}").write_bytes(body)
    return Layout(entries, 64 * 1024), data


def _fd_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


@linux_only
def test_lend_gives_descriptors_of_each_span_in_order(tmp_path: Path) -> None:
    layout, data = _files(tmp_path, [40_000, 100_000])
    storage = FileStorage(tmp_path, layout, read_only=True)
    lease = storage.lend(0, 30_000, 20_000)  # 10_000 bytes of f0, then 10_000 of f1
    assert lease is not None
    assert [(off, n) for _, off, n in lease.spans] == [(30_000, 10_000), (0, 10_000)]
    got = b"".join(os.pread(fd, n, off) for fd, off, n in lease.spans)
    assert got == data[30_000:50_000]
    lease.release()
    lease.release()  # idempotent
    storage.close()


@linux_only
def test_a_lease_outlives_the_storage_until_released(tmp_path: Path) -> None:
    layout, _ = _files(tmp_path, [70_000])
    storage = FileStorage(tmp_path, layout, read_only=True)
    lease = storage.lend(1, 0, 4_000)
    assert lease is not None
    fd = lease.spans[0][0]
    storage.close()
    assert _fd_open(fd)  # a sendfile in flight still reads the right file
    lease.release()
    assert not _fd_open(fd)


@linux_only
def test_lend_refuses_pads_and_reports_missing_or_short_files(tmp_path: Path) -> None:
    layout, _ = _files(tmp_path, [30_000, 10_000, 30_000], pads=frozenset({1}))
    storage = FileStorage(tmp_path, layout, read_only=True)
    assert storage.lend(0, 25_000, 10_000) is None  # crosses into the pad: read it instead
    os.truncate(tmp_path / "t" / "f2", 1000)
    with pytest.raises(StorageError, match="ends before"):
        storage.lend(0, 45_000, 5_000)
    storage.close()
    os.unlink(tmp_path / "t" / "f0")
    fresh = FileStorage(tmp_path, layout, read_only=True)
    with pytest.raises(StorageError, match="does not exist"):
        fresh.lend(0, 0, 1000)
    fresh.close()


# ---------------------------------------------------------------- the lease cache


class _Lease:
    def __init__(self, spans: list[tuple[int, int, int]]) -> None:
        self.spans = spans
        self.released = 0

    def unchanged(self) -> bool:
        return True

    def release(self) -> None:
        self.released += 1


class _Lender:
    def __init__(self, spans: dict[int, list[tuple[int, int, int]] | None]) -> None:
        self.spans = spans
        self.calls: list[tuple[int, int, int]] = []
        self.made: list[_Lease] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def __call__(self, piece: int, begin: int, length: int) -> _Lease | None:
        self.calls.append((piece, begin, length))
        await self.gate.wait()
        spans = self.spans[piece]
        if spans is None:
            return None
        lease = _Lease(spans)
        self.made.append(lease)
        return lease


async def test_lease_cache_finds_blocks_within_one_file_and_says_read_otherwise() -> None:
    lender = _Lender({0: [(5, 1000, 40_000), (6, 0, 25_536)], 1: None})
    cache = LeaseCache(lender, chunk=64 * 1024, ttl=1.0)
    assert cache.find(0, 0, BLOCK, now=0.0) is None
    await cache.lend(0, 0, 64 * 1024, now=0.0)
    assert lender.calls == [(0, 0, 64 * 1024)]
    assert cache.find(0, BLOCK, BLOCK, now=0.5) == (5, 1000, 0, 40_000)  # file offset = begin + 1000
    assert cache.find(0, 2 * BLOCK, BLOCK, now=0.5) is READ  # crosses from file 5 into file 6
    assert cache.find(0, 3 * BLOCK, BLOCK, now=0.5) == (6, -40_000, 40_000, 64 * 1024)
    await cache.lend(1, 0, 64 * 1024, now=0.0)
    assert cache.find(1, 0, BLOCK, now=0.1) is READ  # not lendable (pads): read
    assert cache.find(0, 0, BLOCK, now=1.0) is None  # expired: the files are checked again
    assert lender.made[0].released == 1


async def test_lease_cache_shares_one_lend_and_releases_on_invalidate_capacity_and_close() -> None:
    lender = _Lender({p: [(p, 0, 64 * 1024)] for p in range(5)})
    cache = LeaseCache(lender, chunk=64 * 1024, capacity=2)
    lender.gate.clear()
    both = asyncio.gather(cache.lend(0, 0, 64 * 1024, 0.0), cache.lend(0, BLOCK, 64 * 1024, 0.0))
    await asyncio.sleep(0)
    assert cache.pending(0, 0)
    lender.gate.set()
    await both
    assert len(lender.calls) == 1
    await cache.lend(1, 0, 64 * 1024, 0.0)
    await cache.lend(2, 0, 64 * 1024, 0.0)  # over capacity: the oldest goes
    assert [lease.released for lease in lender.made] == [1, 0, 0]
    cache.invalidate(1)
    assert [lease.released for lease in lender.made] == [1, 1, 0]
    lender.gate.clear()
    late = asyncio.ensure_future(cache.lend(3, 0, 64 * 1024, 0.0))
    await asyncio.sleep(0)
    cache.close()
    assert [lease.released for lease in lender.made] == [1, 1, 1]
    lender.gate.set()
    await late
    assert lender.made[-1].released == 1  # arrived after close: given back at once
    assert cache.find(3, 0, BLOCK, 0.0) is None


@linux_only
async def test_a_file_written_in_place_is_noticed_at_the_next_burst(tmp_path: Path) -> None:
    layout, _ = _files(tmp_path, [200_000])
    storage = FileStorage(tmp_path, layout, read_only=True)

    async def lend(piece: int, begin: int, length: int) -> Any:
        return storage.lend(piece, begin, length)

    cache = LeaseCache(lend, chunk=64 * 1024)
    await cache.lend(1, 0, 64 * 1024, now=0.0)
    cache.next_burst()
    assert cache.find(1, 0, BLOCK, now=0.1) not in (None, READ, CHANGED)
    with open(tmp_path / "t" / "f0", "r+b") as f:
        f.seek(70_000)
        f.write(b"changed")
    os.utime(tmp_path / "t" / "f0", ns=(1, 1))  # a new modification time, whatever the clock's grain
    assert cache.find(1, BLOCK, BLOCK, now=0.1) not in (None, READ, CHANGED)  # same burst: not again
    cache.next_burst()
    assert cache.find(1, BLOCK, BLOCK, now=0.2) is CHANGED
    assert cache.find(1, BLOCK, BLOCK, now=0.2) is None  # dropped: lend again (and fail the check)
    cache.close()
    storage.close()
    assert storage.open_files == 0


@linux_only
async def test_a_seed_never_sends_bytes_written_in_place_after_lending(tmp_path: Path) -> None:
    """End to end over plain TCP: a block is served with sendfile, then the same chunk of the file is
    overwritten in place; the next request for it is refused (BEP 6), never answered with the bytes."""
    payload = make_file_payload(tmp_path, 1 * MiB, piece_length=256 * 1024, seed=31)
    info = payload.metainfo.info
    path = payload.root / payload.name
    original = path.read_bytes()
    async with Session(loopback_config(seed=1)) as session:
        seed = await session.add(payload.metainfo, payload.root, seed=True)
        await asyncio.wait_for(seed.wait_complete(), 30)
        await wait_until(
            lambda: seed.recovery.watch is not None and bool(seed.recovery.watch.watched),
            timeout=10,
            what="the seed to watch its file",
        )
        async with await RawPeer.connect("127.0.0.1", session.listen_port) as peer:
            await peer.handshake(info.info_hash, reserved=codec.make_reserved(extensions=True, fast=True))
            await peer.send(Interested())
            assert isinstance(await peer.read_until(Unchoke, timeout=10), Unchoke)
            await peer.send(Request(index=0, begin=0, length=BLOCK))
            block = await peer.read_until(Piece, timeout=10)
            assert isinstance(block, Piece) and bytes(block.data) == original[:BLOCK]
            uploader = seed.uploader
            assert uploader is not None and uploader.leases is not None and uploader.leases.lent >= 1
            with path.open("r+b") as f:
                f.seek(5 * BLOCK)
                f.write(bytes(b ^ 0xFF for b in original[5 * BLOCK : 6 * BLOCK]))
            os.utime(path, ns=(1, 1))
            await peer.send(Request(index=0, begin=5 * BLOCK, length=BLOCK))
            answer = await peer.read_until((Piece, RejectRequest), timeout=10)
            assert isinstance(answer, RejectRequest), "bytes changed on disk were sent"


@linux_only
async def test_a_multi_file_torrent_in_small_leases_arrives_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Leases of 64 KiB (4 per piece), files with pads between them: blocks inside one file go by
    sendfile, the others through the read cache, and the copy is byte for byte the same."""
    monkeypatch.setattr(upload, "LEASE_CHUNK", 64 * 1024)
    payload = make_model_payload(
        tmp_path, shards=2, shard_size=1 * MiB + 777, piece_length=256 * 1024, seed=5
    )
    async with Session(loopback_config(seed=1)) as seeding, Session(loopback_config(seed=2)) as leeching:
        seed = await seeding.add(payload.metainfo, payload.root, seed=True)
        await asyncio.wait_for(seed.wait_complete(), 30)
        leech = await leeching.add(
            payload.metainfo, tmp_path / "down", peers=[f"127.0.0.1:{seeding.listen_port}"]
        )
        await asyncio.wait_for(leech.wait_complete(), 60)
        assert leech.hash_failures == 0
        uploader = seed.uploader
        assert uploader is not None and uploader.leases is not None and uploader.leases.lent >= 8
        assert uploader.cache.misses > 0  # blocks across a file boundary were read
    assert_same_files(payload.metainfo, payload.root, tmp_path / "down")


@linux_only
async def test_a_file_still_downloading_is_not_checked_by_its_lease(tmp_path: Path) -> None:
    """We write the pieces of an incomplete file ourselves: its size and time change with each, and
    that is no reason to take its verified pieces back (only complete, watched files are checked)."""
    layout, _ = _files(tmp_path, [200_000])
    storage = FileStorage(tmp_path, layout, read_only=True)

    async def lend(piece: int, begin: int, length: int) -> Any:
        lease = storage.lend(piece, begin, length)
        assert lease is not None
        lease.check_only(())  # no file complete yet
        return lease

    cache = LeaseCache(lend, chunk=64 * 1024)
    await cache.lend(0, 0, 64 * 1024, now=0.0)
    with open(tmp_path / "t" / "f0", "r+b") as f:  # another piece of the file arrives
        f.seek(150_000)
        f.write(b"a new piece")
    os.utime(tmp_path / "t" / "f0", ns=(1, 1))
    cache.next_burst()
    assert cache.find(0, 0, BLOCK, now=0.1) not in (None, READ, CHANGED)
    cache.close()
    storage.close()


# ---------------------------------------------------------------- the driver, over a real socket


class _Engine:
    def __init__(self) -> None:
        self.out: list[bytes] = []
        self.outstanding_count = 0

    def buffers_to_send(self) -> list[bytes]:
        out, self.out = self.out, []
        return out

    def get_timer(self) -> float:
        return asyncio.get_running_loop().time() + 3600

    def receive_data(self, data: bytes) -> None:
        pass

    def next_event(self) -> None:
        return None


class _Sink(asyncio.Protocol):
    def __init__(self, paused: bool) -> None:
        self.data = bytearray()
        self.paused = paused
        self.transport: asyncio.Transport | None = None
        self.lost = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        if self.paused:
            self.transport.pause_reading()

    def data_received(self, data: bytes) -> None:
        self.data += data

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set()


async def _connected(
    paused: bool = False,
) -> tuple[PeerDriver, _Engine, RecordingHandler, _Sink, asyncio.Server]:
    loop = asyncio.get_running_loop()
    sink = _Sink(paused)
    server = await loop.create_server(lambda: sink, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    engine, handler = _Engine(), RecordingHandler()
    driver = PeerDriver(cast(PeerConnection, engine), handler, outgoing=True)
    await loop.create_connection(lambda: driver, "127.0.0.1", port)
    return driver, engine, handler, sink, server


async def _until(predicate: Any, what: str) -> None:
    async with asyncio.timeout(10):
        while not predicate():
            await asyncio.sleep(0.001)


@linux_only
async def test_direct_blocks_keep_the_stream_order_with_queued_output(tmp_path: Path) -> None:
    path = tmp_path / "data"
    body = os.urandom(4 * BLOCK)
    path.write_bytes(body)
    driver, engine, _, sink, server = await _connected()
    assert driver.direct
    fd = os.open(path, os.O_RDONLY)
    try:
        engine.out.append(b"HAVE")  # queued by the engine earlier: goes first
        assert driver.begin_direct()
        for i in range(4):
            assert driver.send_block_direct(b"H%d" % i, fd, i * BLOCK, BLOCK)
        expected = b"HAVE" + b"".join(b"H%d" % i + body[i * BLOCK : (i + 1) * BLOCK] for i in range(4))
        await _until(lambda: len(sink.data) >= len(expected), "the blocks")
        assert bytes(sink.data) == expected
    finally:
        os.close(fd)
        driver.close("done")
        server.close()


@linux_only
async def test_a_full_socket_hands_the_rest_to_the_transport_until_it_drained(tmp_path: Path) -> None:
    path = tmp_path / "data"
    body = os.urandom(64 * BLOCK)
    path.write_bytes(body)
    driver, _, handler, sink, server = await _connected(paused=True)
    assert driver.transport is not None
    driver.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    fd = os.open(path, os.O_RDONLY)
    expected = bytearray()
    try:
        assert driver.begin_direct()
        for n in range(100_000):
            i = n % 64
            header = codec.encode_piece_header(0, i * BLOCK, BLOCK)
            assert driver.send_block_direct(header, fd, i * BLOCK, BLOCK)
            expected += header + body[i * BLOCK : (i + 1) * BLOCK]
            if not driver.writable:
                break
        assert not driver.writable, "the socket never filled"
        assert not driver.begin_direct()  # the transport holds bytes: no direct write now
        assert sink.transport is not None
        sink.transport.resume_reading()
        await asyncio.wait_for(handler.writable.wait(), 10)
        assert driver.writable and driver.begin_direct()
        await _until(lambda: len(sink.data) >= len(expected), "every byte")
        assert bytes(sink.data) == bytes(expected)
        assert driver.transport.get_write_buffer_limits()[1] > 0  # the usual limits are back
    finally:
        os.close(fd)
        driver.close("done")
        server.close()


@linux_only
def test_a_full_socket_on_uvloop(tmp_path: Path) -> None:
    """The same on uvloop (what the command line runs on): its transports pause and resume alike."""
    uvloop = pytest.importorskip("uvloop")
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(test_a_full_socket_hands_the_rest_to_the_transport_until_it_drained(tmp_path))


@linux_only
async def test_a_file_ending_inside_a_block_closes_the_connection(tmp_path: Path) -> None:
    path = tmp_path / "data"
    path.write_bytes(os.urandom(BLOCK))
    driver, _, handler, sink, server = await _connected()
    fd = os.open(path, os.O_RDONLY)
    try:
        assert driver.begin_direct()
        assert not driver.send_block_direct(b"HDR", fd, BLOCK // 2, BLOCK)
        assert driver.closed and handler.closed == ["a served file ended in the middle of a block"]
        await asyncio.wait_for(sink.lost.wait(), 10)  # the descriptor was detached, the FIN sent
    finally:
        os.close(fd)
        server.close()


@linux_only
async def test_a_peer_gone_mid_burst_closes_the_connection_and_later_blocks_are_dropped(
    tmp_path: Path,
) -> None:
    path = tmp_path / "data"
    path.write_bytes(os.urandom(BLOCK))
    driver, _, handler, sink, server = await _connected()
    fd = os.open(path, os.O_RDONLY)
    try:
        assert sink.transport is not None
        sink.transport.abort()  # the peer resets the connection
        await asyncio.wait_for(sink.lost.wait(), 10)
        for _ in range(1000):  # the reset reaches us on a send (or as connection_lost)
            if driver.closed:
                break
            if driver.begin_direct():
                driver.send_block_direct(b"HDR", fd, 0, BLOCK)
            await asyncio.sleep(0.001)
        assert driver.closed and handler.closed
        assert driver.send_block_direct(b"HDR", fd, 0, BLOCK)  # nothing more goes out, no error
        assert not driver.begin_direct()
    finally:
        os.close(fd)
        server.close()


class _Transport:
    def __init__(self, extra: dict[str, Any]) -> None:
        self.extra = extra

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.extra.get(name, default)


def test_only_plain_tcp_payloads_are_sent_directly() -> None:
    class _MSE:
        def __init__(self, method: CryptoMethod) -> None:
            self.method = method

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        assert _direct_socket(cast(asyncio.BaseTransport, _Transport({"socket": udp}))) is None
    assert _direct_socket(cast(asyncio.BaseTransport, _Transport({"socket": None, "utp": True}))) is None
    with socket.socket() as tcp:
        rc4 = _Transport({"socket": tcp, "mse": _MSE(CryptoMethod.RC4)})
        assert _direct_socket(cast(asyncio.BaseTransport, rc4)) is None
        if sys.platform == "linux":
            plain = _direct_socket(
                cast(asyncio.BaseTransport, _Transport({"socket": tcp, "mse": _MSE(CryptoMethod.PLAINTEXT)}))
            )
            assert plain is not None and plain.fileno() == tcp.fileno()
            plain.detach()
