"""The asyncio MSE glue over loopback TCP and over a non-TCP transport: unchanged PeerDrivers and
PeerConnections exchange pieces through it; policies (prefer with plain fallback, require, disable);
the listener's sniffing, limits and hostile connections."""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import AsyncIterator, Callable

import pytest
import pytest_asyncio

from tests.mse_helpers import LeechHandler, Payload, SeedHandler, memory_connector
from torrentgoat.aio.mse import (
    EncryptedListener,
    MSEInfo,
    MSETransport,
    open_encrypted_connection,
    open_mse_stream,
    tcp_connector,
)
from torrentgoat.aio.peer import PeerDriver
from torrentgoat.mse import (
    CryptoMethod,
    DHKeyPair,
    EncryptionPolicy,
    MSEConfig,
    MSEHandshake,
    StreamKeys,
)
from torrentgoat.primitives import PeerAddress

TIMEOUT = 30.0
PAYLOAD = Payload.make(1 << 20, seed=1)
SECOND = Payload.make(300 * 1024 + 17, seed=2, name="second.bin")


class Server:
    def __init__(self, listener: EncryptedListener | None, seed: SeedHandler, server: asyncio.Server) -> None:
        self.listener = listener
        self.seed = seed
        self.server = server
        self.port: int = server.sockets[0].getsockname()[1]
        self.address = PeerAddress("127.0.0.1", self.port)


async def start_server(
    config: MSEConfig | None = None, *, plain_only: bool = False, max_pending: int = 256
) -> Server:
    """A listener serving PAYLOAD and SECOND; ``plain_only``: today's listener, no MSE at all."""
    seed = SeedHandler(PAYLOAD, SECOND)
    loop = asyncio.get_running_loop()
    if plain_only:
        server = await loop.create_server(seed.new_driver, "127.0.0.1", 0)
        return Server(None, seed, server)
    listener = EncryptedListener(
        seed.new_driver,
        info_hash_for_req2=StreamKeys([PAYLOAD.info_hash, SECOND.info_hash]),
        config=config,
        rng=random.Random(5),
        max_pending=max_pending,
    )
    server = await loop.create_server(listener, "127.0.0.1", 0)
    return Server(listener, seed, server)


@pytest_asyncio.fixture
async def servers() -> AsyncIterator[list[Server]]:
    made: list[Server] = []
    yield made
    for s in made:
        if s.listener is not None:
            s.listener.close()
        for driver in s.seed.drivers:
            driver.close("test over")
        s.server.close()
        await s.server.wait_closed()


async def download(
    address: PeerAddress, payload: Payload, config: MSEConfig, **kwargs: object
) -> tuple[LeechHandler, PeerDriver]:
    leech = LeechHandler(payload.info_hash, geometry=None)
    driver = await open_encrypted_connection(
        address, leech.new_engine(), leech, config=config, rng=random.Random(7), timeout=TIMEOUT, **kwargs
    )
    got = await asyncio.wait_for(leech.done, TIMEOUT)
    data = b"".join(bytes(got[i]) for i in sorted(got))
    assert data == payload.data
    return leech, driver


def mse_info(driver: PeerDriver) -> MSEInfo | None:
    assert driver.transport is not None
    info = driver.transport.get_extra_info("mse")
    assert info is None or isinstance(info, MSEInfo)
    return info


# ----------------------------------------------------------------------------- good paths


@pytest.mark.parametrize(
    ("client", "server", "method"),
    [
        (MSEConfig(), MSEConfig(), CryptoMethod.RC4),
        (
            MSEConfig(policy=EncryptionPolicy.REQUIRE),
            MSEConfig(policy=EncryptionPolicy.REQUIRE),
            CryptoMethod.RC4,
        ),
        (MSEConfig(), MSEConfig(prefer_rc4=False), CryptoMethod.PLAINTEXT),
        (
            MSEConfig(policy=EncryptionPolicy.REQUIRE, cipher_thread=True),
            MSEConfig(policy=EncryptionPolicy.REQUIRE, cipher_thread=True),
            CryptoMethod.RC4,
        ),
    ],
    ids=["prefer-rc4", "require", "prefer-plaintext-selected", "require-cipher-thread"],
)
async def test_two_peer_connections_exchange_pieces_over_mse(
    servers: list[Server], client: MSEConfig, server: MSEConfig, method: CryptoMethod
) -> None:
    srv = await start_server(server)
    servers.append(srv)
    _, driver = await download(srv.address, PAYLOAD, client)
    info = mse_info(driver)
    assert (
        info is not None and info.method is method and info.outgoing and info.info_hash == PAYLOAD.info_hash
    )
    assert isinstance(driver.transport, MSETransport)
    incoming = srv.seed.drivers[0]
    assert incoming.transport is not None
    server_info = incoming.transport.get_extra_info("mse")
    assert server_info.info_hash == PAYLOAD.info_hash and not server_info.outgoing
    assert incoming.transport.get_extra_info("peername")[0] == "127.0.0.1"
    assert srv.listener is not None and srv.listener.counts["encrypted"] == 1 and not srv.listener.pending
    assert srv.seed.served == len(PAYLOAD.data)
    # a plaintext payload: MSE steps aside, the socket is read straight into the driver (recv_into)
    assert isinstance(incoming.transport, MSETransport)
    plaintext = method is CryptoMethod.PLAINTEXT
    assert (driver.transport.raw.get_protocol() is driver) is plaintext
    assert (incoming.transport.raw.get_protocol() is incoming) is plaintext
    driver.close("done")


async def test_one_listener_serves_the_second_torrent_through_its_stream_key(servers: list[Server]) -> None:
    srv = await start_server()
    servers.append(srv)
    _, driver = await download(srv.address, SECOND, MSEConfig(policy=EncryptionPolicy.REQUIRE))
    info = mse_info(driver)
    assert info is not None and info.info_hash == SECOND.info_hash
    driver.close("done")


async def test_disable_dials_plain_and_a_prefer_listener_takes_it(servers: list[Server]) -> None:
    srv = await start_server()
    servers.append(srv)
    _, driver = await download(srv.address, PAYLOAD, MSEConfig(policy=EncryptionPolicy.DISABLE))
    assert mse_info(driver) is None
    assert srv.listener is not None and srv.listener.counts["plain"] == 1
    # the raw transport was handed to the driver: the listener's protocol stepped out of the way
    incoming = srv.seed.drivers[0]
    assert incoming.transport is not None and incoming.transport.get_protocol() is incoming
    driver.close("done")


async def test_prefer_falls_back_to_plain_when_the_peer_drops_mse(servers: list[Server]) -> None:
    """Against a listener without MSE (torrentgoat before this change): it drops the encrypted
    handshake as garbage; we dial again in plain text with the same engine and driver."""
    srv = await start_server(plain_only=True)
    servers.append(srv)
    leech, driver = await download(srv.address, PAYLOAD, MSEConfig())
    assert mse_info(driver) is None
    assert leech.closed == []  # the handler saw one connection, never a close
    assert len(srv.seed.drivers) == 2 and "protocol violation" in srv.seed.closed[0]
    driver.close("done")


async def test_require_does_not_fall_back(servers: list[Server]) -> None:
    srv = await start_server(plain_only=True)
    servers.append(srv)
    leech = LeechHandler(PAYLOAD.info_hash)
    with pytest.raises(ConnectionError, match="MSE handshake failed: peer closed the connection"):
        await open_encrypted_connection(
            srv.address,
            leech.new_engine(),
            leech,
            config=MSEConfig(policy=EncryptionPolicy.REQUIRE),
            timeout=TIMEOUT,
        )
    assert len(leech.closed) == 1 and "MSE handshake failed" in leech.closed[0]
    assert len(srv.seed.drivers) == 1


async def test_connect_failure_is_not_retried() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connection refused
        leech = LeechHandler(PAYLOAD.info_hash)
        with pytest.raises(ConnectionError, match="connect failed"):
            await open_encrypted_connection(
                PeerAddress("127.0.0.1", port), leech.new_engine(), leech, config=MSEConfig(), timeout=TIMEOUT
            )
    assert len(leech.closed) == 1


async def test_require_listener_refuses_plain_and_disable_listener_refuses_mse(servers: list[Server]) -> None:
    strict = await start_server(MSEConfig(policy=EncryptionPolicy.REQUIRE))
    plain = await start_server(MSEConfig(policy=EncryptionPolicy.DISABLE))
    servers += [strict, plain]
    # a plain dial connects (as open_peer_connection does), then the strict listener drops it
    leech = LeechHandler(PAYLOAD.info_hash)
    driver = await open_encrypted_connection(
        strict.address,
        leech.new_engine(),
        leech,
        config=MSEConfig(policy=EncryptionPolicy.DISABLE),
        timeout=TIMEOUT,
    )
    await wait_for(lambda: driver.closed)
    # an encrypted-only dial to the plain-only listener fails in the handshake
    leech = LeechHandler(PAYLOAD.info_hash)
    with pytest.raises(ConnectionError, match="MSE handshake failed"):
        await open_encrypted_connection(
            plain.address,
            leech.new_engine(),
            leech,
            config=MSEConfig(policy=EncryptionPolicy.REQUIRE),
            timeout=TIMEOUT,
        )
    for srv, expected in (
        (strict, "plain BitTorrent handshake refused"),
        (plain, "MSE handshake refused"),
    ):
        assert srv.listener is not None
        await wait_for(lambda srv=srv: srv.listener.counts["failed"] == 1)  # type: ignore[misc]
        assert srv.listener.failures[-1].startswith(expected)
        assert srv.seed.drivers == []  # accept() never ran
    # a plain dial to the disable listener still works
    _, driver = await download(plain.address, PAYLOAD, MSEConfig(policy=EncryptionPolicy.PREFER))
    assert mse_info(driver) is None
    driver.close("done")


# ----------------------------------------------------------------------------- hostile connections


async def closed_by_peer(reader: asyncio.StreamReader) -> None:
    try:
        while await asyncio.wait_for(reader.read(65536), TIMEOUT):
            pass
    except ConnectionResetError:
        pass  # aborted with our bytes unread: RST instead of FIN


async def wait_for(predicate: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


async def test_garbage_endless_padding_and_silence_are_dropped_while_a_good_peer_is_served(
    servers: list[Server],
) -> None:
    srv = await start_server(MSEConfig(handshake_timeout=3.0))
    servers.append(srv)
    listener = srv.listener
    assert listener is not None
    # a good encrypted download runs while the hostile connections come and go
    leech = LeechHandler(PAYLOAD.info_hash, depth=4)
    good = asyncio.ensure_future(
        open_encrypted_connection(
            srv.address,
            leech.new_engine(),
            leech,
            config=MSEConfig(policy=EncryptionPolicy.REQUIRE),
            timeout=TIMEOUT,
        )
    )

    # 1. garbage: a megabyte of random bytes
    r1, w1 = await asyncio.open_connection("127.0.0.1", srv.port)
    w1.write(random.Random(1).randbytes(1 << 20))
    # 2. endless padding after a valid public key
    r2, w2 = await asyncio.open_connection("127.0.0.1", srv.port)
    w2.write(DHKeyPair(random.Random(2)).public_key)
    for _ in range(20):
        w2.write(b"\x00" * 64)
    # 3. silence: connect and say nothing
    r3, w3 = await asyncio.open_connection("127.0.0.1", srv.port)
    # 4. a half-open handshake: step 1 only, then nothing
    r4, w4 = await asyncio.open_connection("127.0.0.1", srv.port)
    half = MSEHandshake.initiator(info_hash=PAYLOAD.info_hash, now=0, rng=random.Random(3))
    w4.write(half.data_to_send())

    driver = await asyncio.wait_for(good, TIMEOUT)
    got = await asyncio.wait_for(leech.done, TIMEOUT)
    assert b"".join(bytes(got[i]) for i in sorted(got)) == PAYLOAD.data
    for reader in (r1, r2, r3, r4):
        await closed_by_peer(reader)
    await wait_for(lambda: listener.counts["failed"] == 4 and not listener.pending)
    assert sorted(listener.failures) == sorted(
        [
            "no MSE sync pattern HASH('req1', S) within 628 bytes",  # garbage
            "no MSE sync pattern HASH('req1', S) within 628 bytes",  # endless padding
            "no handshake within 3 s",  # silence: not even sniffed
            "MSE handshake not complete within 3 s (still searching PadA for HASH('req1', S))",  # half-open
        ]
    )
    assert listener.counts["encrypted"] == 1 and len(srv.seed.drivers) == 1
    assert not driver.closed
    for w in (w1, w2, w3, w4):
        w.close()
    driver.close("done")


async def test_pending_handshakes_are_capped(servers: list[Server]) -> None:
    srv = await start_server(max_pending=1)
    servers.append(srv)
    assert srv.listener is not None
    r1, w1 = await asyncio.open_connection("127.0.0.1", srv.port)  # holds the only slot
    await wait_for(lambda: len(srv.listener.pending) == 1)  # type: ignore[union-attr]
    r2, w2 = await asyncio.open_connection("127.0.0.1", srv.port)
    assert await asyncio.wait_for(r2.read(), TIMEOUT) == b""  # closed at once
    assert srv.listener.counts["over_limit"] == 1
    srv.listener.close()
    assert await asyncio.wait_for(r1.read(), TIMEOUT) == b""
    w1.close()
    w2.close()


# ----------------------------------------------------------------------------- not TCP


@pytest.mark.parametrize("policy", [EncryptionPolicy.REQUIRE, EncryptionPolicy.DISABLE])
async def test_runs_over_a_transport_that_is_not_tcp(policy: EncryptionPolicy) -> None:
    """The glue needs only the asyncio.Transport methods (the uTP transport will be one of these);
    without set_protocol, a plain connection is forwarded instead of handed over."""
    seed = SeedHandler(PAYLOAD)
    listener = EncryptedListener(seed.new_driver, info_hash_for_req2=StreamKeys([PAYLOAD.info_hash]))
    leech = LeechHandler(PAYLOAD.info_hash)
    driver = await open_encrypted_connection(
        PeerAddress("memory", 1),
        leech.new_engine(),
        leech,
        config=MSEConfig(policy=policy),
        connect=memory_connector(listener),
        timeout=TIMEOUT,
    )
    got = await asyncio.wait_for(leech.done, TIMEOUT)
    assert b"".join(bytes(got[i]) for i in sorted(got)) == PAYLOAD.data
    info = mse_info(driver)
    assert (info is not None) is (policy is EncryptionPolicy.REQUIRE)
    # flow control passes through: the raw side's pause_writing reaches the driver
    assert driver.transport is not None
    endpoint = driver.transport._endpoint if isinstance(driver.transport, MSETransport) else None
    if endpoint is not None:
        endpoint.pause_writing()
        assert not driver.writable
        endpoint.resume_writing()
        assert driver.writable
    driver.close("done")
    await wait_for(lambda: len(seed.closed) == 1)


def test_the_same_under_uvloop() -> None:
    """uvloop's transports are not asyncio's classes: MSE and the plain hand-over work there too."""
    uvloop = pytest.importorskip("uvloop")

    async def scenario() -> None:
        servers: list[Server] = []
        try:
            srv = await start_server()
            servers.append(srv)
            for policy in (EncryptionPolicy.REQUIRE, EncryptionPolicy.DISABLE):
                _, driver = await download(srv.address, PAYLOAD, MSEConfig(policy=policy))
                assert (mse_info(driver) is not None) is (policy is EncryptionPolicy.REQUIRE)
                driver.close("done")
            plain = await start_server(MSEConfig(prefer_rc4=False))  # MSE, plaintext payload: stepped aside
            servers.append(plain)
            _, driver = await download(plain.address, PAYLOAD, MSEConfig())
            info = mse_info(driver)
            assert info is not None and info.method is CryptoMethod.PLAINTEXT
            assert (
                isinstance(driver.transport, MSETransport) and driver.transport.raw.get_protocol() is driver
            )
            driver.close("done")
        finally:
            for s in servers:
                assert s.listener is not None
                s.listener.close()
                for d in s.seed.drivers:
                    d.close("test over")
                s.server.close()
                await s.server.wait_closed()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(asyncio.wait_for(scenario(), TIMEOUT))


class _Collect(asyncio.Protocol):
    def __init__(self) -> None:
        self.data = bytearray()
        self.transport: asyncio.BaseTransport | None = None
        self.lost = asyncio.get_event_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.data += data

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)


async def test_generic_stream_with_a_long_initial_payload() -> None:
    """open_mse_stream carries any protocol; what does not fit in IA (68 bytes) follows encrypted,
    in order, before anything the app writes."""
    received: list[_Collect] = []

    def accept() -> _Collect:
        received.append(_Collect())
        return received[-1]

    listener = EncryptedListener(accept, info_hash_for_req2=StreamKeys([PAYLOAD.info_hash]))
    server = await asyncio.get_running_loop().create_server(listener, "127.0.0.1", 0)
    try:
        sender = _Collect()
        initial = bytes(range(256)) * 3
        transport = await open_mse_stream(
            tcp_connector("127.0.0.1", server.sockets[0].getsockname()[1]),
            lambda: sender,
            info_hash=PAYLOAD.info_hash,
            initial_payload=initial,
        )
        assert sender.transport is transport
        transport.writelines([b"first ", memoryview(b"second "), bytearray(b"third")])
        transport.write(b"")
        transport.write(b"!")
        await wait_for(lambda: len(received) == 1 and len(received[0].data) == len(initial) + 19)
        assert bytes(received[0].data) == initial + b"first second third!"
        transport.close()
        await asyncio.wait_for(received[0].lost, TIMEOUT)
    finally:
        listener.close()
        server.close()
        await server.wait_closed()


async def test_prefer_falls_back_when_the_peer_stays_silent() -> None:
    """A peer that neither answers nor closes: the MSE deadline passes, then plain text works."""
    seed = SeedHandler(PAYLOAD)
    calls: list[asyncio.BaseProtocol] = []

    def factory() -> asyncio.BaseProtocol:
        calls.append(_Collect() if not calls else seed.new_driver())  # first connection: a black hole
        return calls[-1]

    server = await asyncio.get_running_loop().create_server(factory, "127.0.0.1", 0)
    try:
        address = PeerAddress("127.0.0.1", server.sockets[0].getsockname()[1])
        _, driver = await download(address, PAYLOAD, MSEConfig(handshake_timeout=0.5))
        assert mse_info(driver) is None and len(calls) == 2
        driver.close("done")
    finally:
        for d in seed.drivers:
            d.close("test over")
        server.close()
        await server.wait_closed()
