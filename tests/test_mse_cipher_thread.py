"""RC4 off the event loop (``MSEConfig.cipher_thread``): the worker keeps each direction's order,
accounts for what it holds, and the MSE transport keeps asyncio's contract around it -- data before
``connection_lost``, a ``close()`` that flushes, nothing delivered while the app paused reading."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

from tests.mse_helpers import Payload
from torrentgoat.aio.cipherthread import OUTPUT_CHUNK, CipherPool, OrderedCipher
from torrentgoat.aio.mse import EncryptedListener, MSETransport, open_mse_stream, tcp_connector
from torrentgoat.mse import EncryptionPolicy, MSEConfig, StreamKeys
from torrentgoat.mse.crypto import RC4
from torrentgoat.testing.swarm import wait_until

TIMEOUT = 30.0
INFO_HASH = Payload.make(1024, seed=3).info_hash
THREADED = MSEConfig(policy=EncryptionPolicy.REQUIRE, cipher_thread=True)


async def wait_for(predicate: Callable[[], bool]) -> None:
    await wait_until(predicate, timeout=TIMEOUT, what="the cipher thread's results", step=0.01)


async def test_ordered_cipher_matches_the_inline_keystream_in_order() -> None:
    """Buffers of every size fed while jobs run come out as one in-order keystream."""
    rng = random.Random(1)
    buffers = [rng.randbytes(rng.choice((0, 1, 13, 16384, 70000, 300000))) for _ in range(60)]
    expected = RC4(b"k" * 20).update(b"".join(buffers))
    out = bytearray()
    idle = asyncio.Event()
    cipher = OrderedCipher(
        RC4(b"k" * 20).update_into,
        out.extend,
        pool=CipherPool(workers=2),
        loop=asyncio.get_running_loop(),
        on_idle=idle.set,
    )
    for start in range(0, len(buffers), 7):
        cipher.feed(buffers[start : start + 7])
        assert cipher.pending >= 0
        await asyncio.sleep(0)
    await asyncio.wait_for(idle.wait(), TIMEOUT)
    await wait_for(lambda: cipher.idle)
    assert bytes(out) == expected and cipher.pending == 0


async def test_ordered_cipher_outputs_are_recycled_sized_and_close_drops_the_rest() -> None:
    sizes: list[int] = []
    cipher = OrderedCipher(
        RC4(b"k" * 20).update_into,
        lambda b: sizes.append(len(b)),
        pool=CipherPool(),
        loop=asyncio.get_running_loop(),
    )
    cipher.feed([bytes(200_000)])
    await wait_for(lambda: cipher.idle)
    assert max(sizes) == OUTPUT_CHUNK and sum(sizes) == 200_000
    cipher.feed([bytes(10)])
    cipher.close()
    assert cipher.pending == 0
    cipher.feed([bytes(10)])  # ignored once closed
    await asyncio.sleep(0.05)
    assert sum(sizes) == 200_000


class _Collect(asyncio.Protocol):
    def __init__(self) -> None:
        self.data = bytearray()
        self.transport: asyncio.Transport | None = None
        self.at_lost = -1
        self.lost = asyncio.get_event_loop().create_future()
        self.paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.data += data

    def connection_lost(self, exc: Exception | None) -> None:
        self.at_lost = len(self.data)
        if not self.lost.done():
            self.lost.set_result(None)


async def _pair(received: list[_Collect]) -> tuple[MSETransport, _Collect, Callable[[], object]]:
    def accept() -> _Collect:
        received.append(_Collect())
        return received[-1]

    listener = EncryptedListener(accept, info_hash_for_req2=StreamKeys([INFO_HASH]), config=THREADED)
    server = await asyncio.get_running_loop().create_server(listener, "127.0.0.1", 0)
    sender = _Collect()
    transport = await open_mse_stream(
        tcp_connector("127.0.0.1", server.sockets[0].getsockname()[1]),
        lambda: sender,
        info_hash=INFO_HASH,
        config=THREADED,
    )
    assert isinstance(transport, MSETransport)

    def cleanup() -> None:
        listener.close()
        server.close()

    return transport, sender, cleanup


async def test_close_flushes_and_the_peer_gets_every_byte_before_connection_lost() -> None:
    received: list[_Collect] = []
    transport, _, cleanup = await _pair(received)
    try:
        data = random.Random(2).randbytes(3 << 20)
        view = memoryview(data)
        transport.writelines([view[i : i + 16397] for i in range(0, len(data), 16397)])
        assert transport.get_write_buffer_size() > 0  # still at the worker or in the socket
        transport.close()
        assert transport.is_closing()
        await wait_for(lambda: len(received) == 1)
        await asyncio.wait_for(received[0].lost, TIMEOUT)
        assert received[0].at_lost == len(data) and bytes(received[0].data) == data
    finally:
        cleanup()


async def test_nothing_is_delivered_while_the_app_paused_reading() -> None:
    """The app pauses reading from inside ``data_received`` (as the download rate limit does) while
    decrypted buffers of the same job and of later jobs are on their way: they wait for resume."""
    received: list[_Collect] = []
    transport, _, cleanup = await _pair(received)
    try:
        await wait_for(lambda: len(received) == 1 and received[0].transport is not None)
        reader = received[0]
        assert isinstance(reader.transport, MSETransport)
        endpoint = reader.transport._endpoint

        def pause_on_first(data: bytes) -> None:
            _Collect.data_received(reader, data)
            if not reader.paused:
                reader.paused = True
                reader.data_received = _Collect.data_received.__get__(reader)  # type: ignore[method-assign]
                assert reader.transport is not None
                reader.transport.pause_reading()

        reader.data_received = pause_on_first  # type: ignore[method-assign]
        data = random.Random(3).randbytes(2 << 20)
        transport.write(data)
        transport.write(b"end")
        await wait_for(lambda: reader.paused and endpoint._rx is not None and endpoint._rx.idle)
        assert 0 < len(reader.data) <= OUTPUT_CHUNK  # the first output only; the rest is held
        assert endpoint._held
        reader.transport.resume_reading()
        await wait_for(lambda: len(reader.data) == len(data) + 3)
        assert bytes(reader.data) == data + b"end"
        transport.close()
        await asyncio.wait_for(reader.lost, TIMEOUT)
    finally:
        cleanup()
