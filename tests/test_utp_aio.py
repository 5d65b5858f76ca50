"""The asyncio uTP driver on real loopback UDP sockets: the transport's asyncio semantics (data both
ways, close, EOF, abort, flow control, refused and timed-out dials), the peer wire protocol through
unchanged PeerDrivers, and one UDP port shared with the DHT."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
from collections.abc import AsyncIterator

import pytest

from torrentgoat.aio.dht import DHTNode
from torrentgoat.aio.utp import UTPEndpoint, UTPTransport, open_utp_connection, open_utp_peer_connection
from torrentgoat.dht import DHTConfig
from torrentgoat.errors import UTPError
from torrentgoat.primitives import InfoHash, PeerAddress, PeerId
from torrentgoat.testing.peers import PayloadLeecher, PayloadSeeder

TIMEOUT = 60


class Recorder(asyncio.Protocol):
    """Collects what arrives; optionally streams ``outgoing`` with flow control."""

    def __init__(self, outgoing: bytes = b"", chunk: int = 100_000) -> None:
        self.received = bytearray()
        self.outgoing = memoryview(outgoing)
        self.chunk = chunk
        self.offset = 0
        self.transport: UTPTransport | None = None
        self.paused = False
        self.pauses = 0
        self.eof = asyncio.Event()
        self.lost: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()
        self.made = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, UTPTransport)
        self.transport = transport
        self.made.set()
        self.pump()

    def pump(self) -> None:
        while not self.paused and self.offset < len(self.outgoing) and self.transport is not None:
            self.transport.write(self.outgoing[self.offset : self.offset + self.chunk])
            self.offset += self.chunk

    def pause_writing(self) -> None:
        self.paused = True
        self.pauses += 1

    def resume_writing(self) -> None:
        self.paused = False
        self.pump()

    def data_received(self, data: bytes) -> None:
        self.received.extend(data)

    def eof_received(self) -> bool | None:
        self.eof.set()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(exc)


async def wait_until(predicate: object, timeout: float = TIMEOUT) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():  # type: ignore[operator]
            await asyncio.sleep(0.01)


@pytest.fixture
async def pair() -> AsyncIterator[tuple[UTPEndpoint, UTPEndpoint]]:
    a = UTPEndpoint(host="127.0.0.1")
    b = UTPEndpoint(host="127.0.0.1")
    await a.start()
    await b.start()
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


async def test_socket_buffers_are_sized_on_purpose(pair: tuple[UTPEndpoint, UTPEndpoint]) -> None:
    a, _ = pair
    rcvbuf, sndbuf = a.socket_buffers
    assert rcvbuf >= 1024 * 1024 and sndbuf >= 1024 * 1024  # far above the 208 KiB default


async def test_data_both_ways_eof_and_close(pair: tuple[UTPEndpoint, UTPEndpoint]) -> None:
    a, b = pair
    up, down = os.urandom(3_000_000), os.urandom(2_000_000)
    served: list[Recorder] = []
    b.serve(lambda: served.append(Recorder(down)) or served[-1])
    transport, client = await open_utp_connection(b.address, lambda: Recorder(up), endpoint=a)
    assert transport.get_extra_info("peername") == b.address
    assert transport.get_extra_info("sockname") == a.address
    assert transport.get_extra_info("socket") is None
    await wait_until(
        lambda: served and len(served[0].received) == len(up) and len(client.received) == len(down)
    )
    server = served[0]
    assert bytes(server.received) == up and bytes(client.received) == down
    assert server.transport is not None and server.transport.get_extra_info("peername") == a.address
    transport.close()
    assert transport.is_closing()
    transport.write(b"ignored after close")
    async with asyncio.timeout(TIMEOUT):
        await server.eof.wait()  # our FIN; the server's transport closes in turn
        assert await server.lost is None
        assert await client.lost is None
    assert a.manager.connection(transport.key).closed if transport.key in a.manager._by_key else True


async def test_abort_is_a_reset_at_the_peer(pair: tuple[UTPEndpoint, UTPEndpoint]) -> None:
    a, b = pair
    served: list[Recorder] = []
    b.serve(lambda: served.append(Recorder()) or served[-1])
    transport, client = await a.open_connection(b.address, Recorder)
    transport.write(b"hello")
    await wait_until(lambda: served and served[0].received == b"hello")
    transport.abort()
    async with asyncio.timeout(TIMEOUT):
        assert isinstance(await served[0].lost, ConnectionResetError)
        assert await client.lost is None


async def test_flow_control_pauses_the_writer_and_the_reader(pair: tuple[UTPEndpoint, UTPEndpoint]) -> None:
    a, b = pair
    data = os.urandom(8_000_000)
    served: list[Recorder] = []

    def accept() -> Recorder:
        protocol = Recorder()
        served.append(protocol)
        return protocol

    b.serve(accept)
    transport, client = await a.open_connection(b.address, lambda: Recorder(data, chunk=1_000_000))
    transport.set_write_buffer_limits(high=512 * 1024)
    assert transport.get_write_buffer_limits() == (128 * 1024, 512 * 1024)
    await wait_until(lambda: bool(served) and served[0].transport is not None)
    server = served[0]
    assert server.transport is not None
    server.transport.pause_reading()
    assert not server.transport.is_reading()
    before = len(server.received)
    await asyncio.sleep(0.5)
    assert client.pauses >= 1 and client.paused  # the receiver's window closed, so did our buffer
    assert len(server.received) == before < len(data)
    assert b.manager.buffered_bytes <= b.config.receive_buffer
    server.transport.resume_reading()
    await wait_until(lambda: len(server.received) == len(data))
    assert bytes(server.received) == data and not client.paused


async def test_refused_and_unanswered_dials(pair: tuple[UTPEndpoint, UTPEndpoint]) -> None:
    a, b = pair
    b.serve(None)  # not accepting: incoming SYNs are answered with RESET
    with pytest.raises(UTPError, match="refused"):
        await a.open_connection(b.address, Recorder)
    silent = UTPEndpoint(host="127.0.0.1")
    await silent.start()
    address = silent.address
    await silent.close()  # nobody listens there any more
    with pytest.raises(ConnectionError, match="timed out"):
        await a.open_connection(address, Recorder, timeout=0.5)
    assert len(a.manager) <= 2  # the given-up dial is aborted


async def test_peer_wire_pieces_over_utp_with_unchanged_peer_drivers(
    pair: tuple[UTPEndpoint, UTPEndpoint],
) -> None:
    a, b = pair
    loop = asyncio.get_running_loop()
    piece_length = 64 * 1024
    payload = os.urandom(50 * piece_length + 4321)
    hashes = [
        hashlib.sha1(payload[i : i + piece_length]).digest() for i in range(0, len(payload), piece_length)
    ]
    info_hash = InfoHash(hashlib.sha1(b"utp-test").digest())
    rng = random.Random(1)
    seeder = PayloadSeeder(info_hash, payload, piece_length)
    b.serve(lambda: seeder.driver(PeerId.generate(rng), loop))
    leecher = PayloadLeecher(info_hash, len(payload), piece_length, verify=hashes)
    created = []
    driver = await open_utp_peer_connection(
        PeerAddress(*b.address),
        leecher.engine(PeerId.generate(rng), loop),
        leecher,
        endpoint=a,
        on_created=created.append,
    )
    assert created == [driver] and driver.address == PeerAddress(*b.address) and driver.outgoing
    assert leecher.done is not None
    async with asyncio.timeout(TIMEOUT):
        got = await leecher.done
    assert got == payload
    assert seeder.blocks_served == (len(payload) + 16383) // 16384
    driver.close("done")
    await wait_until(lambda: bool(seeder.closed))  # the seeder's driver saw our FIN


async def test_one_port_for_utp_and_the_dht(pair: tuple[UTPEndpoint, UTPEndpoint]) -> None:
    a, b = pair
    config = DHTConfig(query_timeout=1.0)
    shared = DHTNode(host="127.0.0.1", config=config, datagram_transport=a.dht_transport)
    other = DHTNode(host="127.0.0.1", config=config)
    await shared.start()
    await other.start()
    try:
        assert shared.address == PeerAddress(*a.address)  # the DHT answers on the uTP port
        served: list[Recorder] = []
        b.serve(lambda: served.append(Recorder()) or served[-1])
        _transport, _ = await a.open_connection(b.address, lambda: Recorder(os.urandom(2_000_000)))
        assert await other.ping(shared.address) == shared.node_id
        assert await shared.ping(other.address) == other.node_id
        await wait_until(lambda: served and len(served[0].received) == 2_000_000)
        with pytest.raises(UTPError, match="already"):
            a.dht_transport(asyncio.DatagramProtocol())
    finally:
        await shared.close()
        await other.close()
    assert a._dht is None  # detached; the uTP socket stays open
    assert await other_ping_fails(a)


async def other_ping_fails(endpoint: UTPEndpoint) -> bool:
    probe = DHTNode(host="127.0.0.1", config=DHTConfig(query_timeout=0.3))
    await probe.start()
    try:
        return await probe.ping(PeerAddress(*endpoint.address)) is None
    finally:
        await probe.close()


async def test_a_failing_protocol_only_loses_its_connection(pair: tuple[UTPEndpoint, UTPEndpoint]) -> None:
    a, b = pair

    class Broken(Recorder):
        def data_received(self, data: bytes) -> None:
            raise RuntimeError("boom")

    errors: list[dict[str, object]] = []
    asyncio.get_running_loop().set_exception_handler(lambda loop, context: errors.append(context))
    served: list[Recorder] = []
    b.serve(lambda: served.append(Broken()) or served[-1])
    transport, client = await a.open_connection(b.address, Recorder)
    transport.write(b"trigger")
    async with asyncio.timeout(TIMEOUT):
        assert isinstance(await client.lost, ConnectionResetError)
    assert errors and "boom" in str(errors[0].get("exception"))
    # the endpoint still works
    b.serve(lambda: served.append(Recorder()) or served[-1])
    transport2, _ = await a.open_connection(b.address, Recorder)
    transport2.write(b"fine")
    await wait_until(lambda: served[-1].received == b"fine")


async def test_ipv6_loopback_and_large_packets() -> None:
    async with UTPEndpoint(host="::1") as a, UTPEndpoint(host="::1") as b:
        data = os.urandom(8_000_000)
        served: list[Recorder] = []
        b.serve(lambda: served.append(Recorder()) or served[-1])
        transport, _ = await a.open_connection(b.address, lambda: Recorder(data))
        await wait_until(lambda: served and len(served[0].received) == len(data))
        assert bytes(served[0].received) == data
        conn = a.manager.connection(transport.key)
        # path MTU discovery between two torrentgoat ends: close to the IPv6 loopback limit
        assert conn.mtu_ceiling == 65536 - 48 and conn.packet_size > 60_000


async def test_writes_after_the_engine_closed_are_dropped_quietly(
    pair: tuple[UTPEndpoint, UTPEndpoint],
) -> None:
    a, b = pair
    served: list[Recorder] = []
    b.serve(lambda: served.append(Recorder()) or served[-1])
    transport, client = await a.open_connection(b.address, Recorder)
    transport.write(b"x")
    await wait_until(lambda: bool(served) and served[0].received == b"x")
    # the engine ends the connection (as on a RESET read in the same burst as data the protocol
    # answers) before the transport hears of it
    a.manager.abort(transport.key, asyncio.get_running_loop().time())
    transport.write(b"after the end")  # no exception: connection_lost is on its way
    transport.writelines([b"more"])
    a._pump()  # the rest of that burst's pump: the RESET goes out, connection_lost follows
    async with asyncio.timeout(TIMEOUT):
        assert await client.lost is None
        assert isinstance(await served[0].lost, ConnectionResetError)


async def test_mse_runs_over_utp_unchanged(pair: tuple[UTPEndpoint, UTPEndpoint]) -> None:
    """The MSE layer (aio/mse.py) on a uTP transport, both ways: EncryptedListener as the uTP
    endpoint's accept factory, open_encrypted_connection with a uTP dialer; RC4 required."""
    from torrentgoat.aio.mse import EncryptedListener, open_encrypted_connection
    from torrentgoat.aio.utp import utp_connector
    from torrentgoat.mse import CryptoMethod, EncryptionPolicy, MSEConfig, StreamKeys

    a, b = pair
    loop = asyncio.get_running_loop()
    piece_length = 64 * 1024
    payload = os.urandom(20 * piece_length + 333)
    hashes = [
        hashlib.sha1(payload[i : i + piece_length]).digest() for i in range(0, len(payload), piece_length)
    ]
    info_hash = InfoHash(hashlib.sha1(b"utp-mse").digest())
    rng = random.Random(4)
    seeder = PayloadSeeder(info_hash, payload, piece_length)
    strict = MSEConfig(policy=EncryptionPolicy.REQUIRE)
    listener = EncryptedListener(
        lambda: seeder.driver(PeerId.generate(rng), loop),
        info_hash_for_req2=StreamKeys([info_hash]),
        config=strict,
    )
    b.serve(listener)
    leecher = PayloadLeecher(info_hash, len(payload), piece_length, verify=hashes)
    driver = await open_encrypted_connection(
        PeerAddress(*b.address),
        leecher.engine(PeerId.generate(rng), loop),
        leecher,
        config=strict,
        connect=utp_connector(a, *b.address),
    )
    assert leecher.done is not None
    async with asyncio.timeout(TIMEOUT):
        assert await leecher.done == payload
    assert driver.transport is not None
    info = driver.transport.get_extra_info("mse")
    assert info is not None and info.method is CryptoMethod.RC4
    assert listener.counts["encrypted"] == 1
