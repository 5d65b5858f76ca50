"""Sending uTP datagrams with UDP segmentation offload (torrentgoat.aio.udpsend), and without."""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import sys
from typing import Any, cast

from torrentgoat.aio.udpsend import DatagramSender
from torrentgoat.aio.utp import UTPEndpoint
from torrentgoat.testing.timing import scaled
from torrentgoat.utp.config import UTPConfig

A = ("127.0.0.1", 1000)
B = ("127.0.0.1", 2000)


class FakeSocket:
    """Records what would have been sent; ``sendmsg`` may be made to fail."""

    def __init__(self, sendmsg_error: OSError | None = None) -> None:
        self.sent: list[tuple[str, list[bytes], tuple[str, int], int]] = []
        self.sendmsg_error = sendmsg_error

    def getsockopt(self, *_: Any) -> int:
        return 0

    def fileno(self) -> int:
        return 99

    def sendto(self, data: bytes, addr: tuple[str, int]) -> int:
        self.sent.append(("sendto", [data], addr, 0))
        return len(data)

    def sendmsg(self, buffers: list[bytes], cmsg: list[tuple[int, int, bytes]], flags: int, addr: Any) -> int:
        if self.sendmsg_error is not None:
            raise self.sendmsg_error
        segment = int.from_bytes(cmsg[0][2], sys.byteorder)
        self.sent.append(("sendmsg", list(buffers), addr, segment))
        return sum(map(len, buffers))


class FakeLoop:
    def __init__(self) -> None:
        self.writers: dict[int, Any] = {}

    def add_writer(self, fd: int, callback: Any) -> None:
        self.writers[fd] = callback

    def remove_writer(self, fd: int) -> None:
        self.writers.pop(fd, None)


def make(sock: FakeSocket, loop: FakeLoop | None = None, drained: list[int] | None = None) -> DatagramSender:
    return DatagramSender(
        cast(socket.socket, sock),
        cast(asyncio.AbstractEventLoop, loop or FakeLoop()),
        lambda: drained.append(1) if drained is not None else None,
    )


def packets(size: int, count: int, tag: int = 0) -> list[bytes]:
    return [bytes([tag, i % 256]) * (size // 2) for i in range(count)]


def test_runs_of_equal_datagrams_to_one_address_share_a_sendmsg() -> None:
    sock = FakeSocket()
    sender = make(sock)
    if not sys.platform.startswith("linux"):
        assert not sender.gso
        return
    data = [*packets(1472, 70), b"x" * 500]
    datagrams = [(d, A) for d in data] + [(b"a" * 20, B), (b"b" * 20, A)]
    sender.send(datagrams)
    kinds = [(kind, len(bufs), addr, segment) for kind, bufs, addr, segment in sock.sent]
    # 65000 // 1472 = 44 a run; the shorter 500 bytes end the second run; other sizes/addresses alone
    assert kinds == [
        ("sendmsg", 44, A, 1472),
        ("sendmsg", 27, A, 1472),
        ("sendto", 1, B, 0),
        ("sendto", 1, A, 0),
    ]
    assert [b for _, bufs, _, _ in sock.sent for b in bufs] == [d for d, _ in datagrams]
    assert sender.gso_sends == 2


def test_a_refused_segmentation_falls_back_to_one_sendto_each() -> None:
    sock = FakeSocket(OSError(errno.EIO, "no checksum offload"))
    sender = make(sock)
    datagrams = [(d, A) for d in packets(1000, 5)]
    sender.send(datagrams)
    assert [bufs[0] for kind, bufs, _, _ in sock.sent if kind == "sendto"] == [d for d, _ in datagrams]
    assert not sender.gso and sender.dropped == 0
    sock.sendmsg_error = None
    sender.send(datagrams)  # offload stays off
    assert all(kind == "sendto" for kind, *_ in sock.sent)


def test_a_full_socket_keeps_the_rest_in_order_until_writable() -> None:
    sock = FakeSocket(BlockingIOError())
    loop = FakeLoop()
    drained: list[int] = []
    sender = make(sock, loop, drained)
    if not sender.gso:
        return
    datagrams = [(d, A) for d in packets(1000, 3)]
    sender.send(datagrams)
    assert sender.blocked and not sock.sent and 99 in loop.writers
    sender.send_one(b"late", B)  # queued behind the backlog
    sock.sendmsg_error = None
    loop.writers[99]()
    assert not sender.blocked and drained == [1] and not loop.writers
    assert [b for _, bufs, _, _ in sock.sent for b in bufs] == [d for d, _ in datagrams] + [b"late"]


async def transfer(gso: bool) -> tuple[UTPEndpoint, UTPEndpoint, bytes, bytearray]:
    config = UTPConfig(max_datagram=1472)  # the packets a libtorrent peer gets
    a = UTPEndpoint(host="127.0.0.1", config=config, gso=gso)
    b = UTPEndpoint(host="127.0.0.1", config=config, gso=gso)
    await a.start()
    await b.start()
    data = os.urandom(3_000_000)
    received = bytearray()
    done = asyncio.Event()

    class Sink(asyncio.Protocol):
        def data_received(self, chunk: bytes) -> None:
            received.extend(chunk)
            if len(received) >= len(data):
                done.set()

    class Source(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            cast(asyncio.Transport, transport).write(data)

    b.serve(Sink)
    await a.open_connection(b.address, Source)
    async with asyncio.timeout(scaled(30)):
        await done.wait()
    return a, b, data, received


async def test_transfer_with_segmentation_offload() -> None:
    a, b, data, received = await transfer(gso=True)
    try:
        assert bytes(received) == data
        if sys.platform.startswith("linux"):
            assert a.gso and a.gso_sends > 0  # loopback takes it (kernel 4.18+)
    finally:
        await a.close()
        await b.close()


async def test_transfer_without_segmentation_offload() -> None:
    a, b, data, received = await transfer(gso=False)
    try:
        assert bytes(received) == data
        assert not a.gso and a.gso_sends == 0
    finally:
        await a.close()
        await b.close()
