"""asyncio glue of Message Stream Encryption (level L4): a protocol/transport stack like asyncio's SSL.

:class:`MSEProtocol` sits on the raw transport (TCP, or any :class:`asyncio.Transport`, e.g. uTP), pumps
a sans-IO :class:`~torrentgoat.mse.MSEHandshake`, and once the stream is established starts the
application protocol (an unchanged :class:`~torrentgoat.aio.peer.PeerDriver`) on an
:class:`MSETransport`: writes are encrypted (each buffer once, the cipher's output being the only copy),
reads are decrypted (in 64 KiB pieces) before ``data_received``, and flow control (``pause_writing``/``resume_writing``,
``pause_reading``), ``get_extra_info`` and closing pass straight through.  Only the
:class:`asyncio.Transport` / :class:`asyncio.Protocol` methods are used; ``set_protocol`` (to step out
of the way of a plain connection) is optional.

Entry points:

* :func:`open_encrypted_connection` -- dial a peer for a :class:`~torrentgoat.wire.PeerConnection`
  under an :class:`~torrentgoat.mse.EncryptionPolicy`: ``prefer`` tries MSE and, if the peer drops
  it, dials again in plain text; ``require`` is MSE only; ``disable`` is plain only.  Same contract
  as :func:`~torrentgoat.aio.peer.open_peer_connection`.
* :func:`open_mse_stream` -- the generic dial: MSE handshake, then any protocol on top.
* :class:`EncryptedListener` -- the protocol factory for ``loop.create_server``: sniffs the first
  bytes of each incoming connection (``\\x13BitTorrent protocol`` = plain, else MSE), refuses what
  the policy forbids, answers MSE for every torrent ``info_hash_for_req2`` knows, and only then calls
  ``accept()`` for the application protocol.  Garbage, endless padding and silent connections are
  dropped by the engine's limits and deadline without ever reaching ``accept``.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, cast

from torrentgoat.aio.cipherthread import CipherPool, OrderedCipher, default_pool
from torrentgoat.aio.peer import PeerDriver, PeerHandler
from torrentgoat.aio.ratelimit import TokenBucket
from torrentgoat.errors import EncryptionError, LocalProtocolError
from torrentgoat.mse import (
    MAX_IA_LIBTORRENT,
    CryptoMethod,
    EncryptionPolicy,
    FirstBytes,
    MSEConfig,
    MSEHandshake,
    PayloadCipher,
    Role,
    sniff,
)
from torrentgoat.primitives import InfoHash, PeerAddress
from torrentgoat.wire.connection import PeerConnection

__all__ = [
    "DECRYPT_CHUNK",
    "Connector",
    "EncryptedListener",
    "MSEInfo",
    "MSEProtocol",
    "MSETransport",
    "open_encrypted_connection",
    "open_mse_stream",
    "tcp_connector",
]

log = logging.getLogger(__name__)

DECRYPT_CHUNK = 64 * 1024
"""Largest piece of a read decrypted at once.  The cipher's output is a new ``bytes`` the wire
engine slices blocks from without copying; glibc serves allocations of this size from recycled heap
memory, while reads of 256 KiB decrypted whole get fresh pages every time (measured: RC4 ~2x slower)."""

RX_BACKLOG = 4 * 1024 * 1024
"""With the cipher on a worker thread: received bytes waiting for decryption at which reading pauses
until the worker has caught up (the kernel's buffers and TCP flow control hold the rest)."""

Connector = Callable[[Callable[[], asyncio.BaseProtocol]], Awaitable[tuple[asyncio.BaseTransport, Any]]]
"""``connect(protocol_factory) -> (transport, protocol)``: how to open one raw connection (TCP by
default, :func:`tcp_connector`; a uTP dialer has the same shape as ``loop.create_connection``)."""


def tcp_connector(host: str, port: int) -> Connector:
    """A :data:`Connector` dialing TCP ``host:port``."""

    def connect(factory: Callable[[], asyncio.BaseProtocol]) -> Awaitable[tuple[asyncio.BaseTransport, Any]]:
        return asyncio.get_running_loop().create_connection(factory, host, port)

    return connect


@dataclass(frozen=True, slots=True, kw_only=True)
class MSEInfo:
    """``transport.get_extra_info("mse")`` of an encrypted stream (``None`` on a plain one)."""

    method: CryptoMethod
    """RC4 or plaintext payload."""
    info_hash: InfoHash
    """The torrent the MSE handshake was for (SKEY); an incoming handshake named it."""
    outgoing: bool


class MSETransport(asyncio.Transport):
    """The payload side of an MSE stream: what the application protocol writes to and reads from."""

    def __init__(
        self, raw: asyncio.Transport, cipher: PayloadCipher, endpoint: MSEProtocol, info: MSEInfo
    ) -> None:
        super().__init__()
        self._raw = raw
        self._endpoint = endpoint
        self._info = info
        encryptor = cipher.encryptor
        self._encrypt = encryptor.update if encryptor is not None else None
        self._threaded: OrderedCipher | None = None
        self._close_when_idle = False
        if encryptor is not None and endpoint._pool is not None:
            self._threaded = OrderedCipher(
                encryptor.update_into, raw.write, pool=endpoint._pool, loop=endpoint._loop, on_idle=self._idle
            )

    @property
    def raw(self) -> asyncio.Transport:
        """The transport the encrypted stream runs over (TCP or uTP)."""
        return self._raw

    # --- writing ---------------------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if self._threaded is not None:
            self._threaded.feed((bytes(data),))  # the caller may reuse its buffer
            return
        encrypt = self._encrypt
        self._raw.write(encrypt(data) if encrypt is not None else data)

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        """Encrypt each buffer (one copy, the cipher's output) and hand the list to the raw transport.

        Each output is as small as the buffer it comes from (a 16 KiB block, a 13-byte header):
        allocations of that size are recycled by the allocator, while one big output per call
        (hundreds of KiB) costs fresh pages every time and halves RC4's speed.
        """
        encrypt = self._encrypt
        if encrypt is None:
            self._raw.writelines(list_of_data)
            return
        if self._threaded is not None:
            self._threaded.feed(list_of_data)
            return
        self._raw.writelines([encrypt(buf) for buf in list_of_data])

    def _idle(self) -> None:
        if self._close_when_idle:
            self._raw.close()

    def _stop_cipher(self) -> None:
        if self._threaded is not None:
            self._threaded.close()

    def can_write_eof(self) -> bool:
        return self._raw.can_write_eof()

    def write_eof(self) -> None:
        self._raw.write_eof()

    def get_write_buffer_size(self) -> int:
        threaded = self._threaded.pending if self._threaded is not None else 0
        return self._raw.get_write_buffer_size() + threaded

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._raw.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._raw.set_write_buffer_limits(high=high, low=low)

    # --- reading, closing, info ------------------------------------------------------------------

    def pause_reading(self) -> None:
        self._endpoint._app_paused = True
        self._raw.pause_reading()

    def resume_reading(self) -> None:
        self._endpoint._app_paused = False
        if not self._endpoint._rx_throttled:
            self._raw.resume_reading()
        self._endpoint._release_held()

    def is_reading(self) -> bool:
        return self._raw.is_reading()

    def close(self) -> None:
        """Close once every written buffer is encrypted and handed to the raw transport."""
        if self._threaded is not None and not self._threaded.idle:
            self._close_when_idle = True
            return
        self._raw.close()

    def abort(self) -> None:
        self._stop_cipher()
        self._raw.abort()

    def is_closing(self) -> bool:
        return self._close_when_idle or self._raw.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "mse":
            return self._info
        return self._raw.get_extra_info(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._endpoint._app = protocol
        if self._endpoint._mode is _Mode.ASIDE:
            self._raw.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        app = self._endpoint._app
        assert app is not None
        return app


class _Mode(enum.Enum):
    SNIFF = "sniffing an incoming connection"
    PREFIX = "plain connection, writing the held-back handshake first"
    HANDSHAKE = "MSE handshake"
    STREAM = "encrypted stream"
    PASSTHROUGH = "plain stream (the transport cannot switch protocols)"
    ASIDE = "MSE with a plaintext payload, the raw transport handed to the app"
    DONE = "handed over or closed"


class MSEProtocol(asyncio.Protocol):
    """Raw-side protocol: runs the MSE handshake (or sniffs), then carries the app protocol.

    ``done`` resolves with the transport the app got (an :class:`MSETransport`, or the raw transport
    for a plain incoming connection) or fails with :class:`EncryptionError` (handshake failed,
    refused by policy, or the peer closed during it).  Build through the module's entry points.
    """

    def __init__(
        self,
        app_factory: Callable[[], asyncio.BaseProtocol],
        *,
        mode: _Mode,
        config: MSEConfig,
        rng: random.Random,
        info_hash: InfoHash | None = None,
        info_hash_for_req2: Callable[[bytes], InfoHash | None] | None = None,
        initial_payload: bytes = b"",
        on_finished: Callable[[MSEProtocol], None] | None = None,
        pool: CipherPool | None = None,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._pool = pool if pool is not None else default_pool() if config.cipher_thread else None
        self._stream: MSETransport | None = None
        self._rx: OrderedCipher | None = None
        self._app_paused = False
        self._rx_throttled = False
        self._eof = False
        self._held: deque[bytes] = deque()
        self._lost: tuple[Exception | None] | None = None
        self._app_factory = app_factory
        self._app: asyncio.BaseProtocol | None = None
        self._mode = mode
        self._config = config
        self._rng = rng
        self._info_hash = info_hash
        self._lookup = info_hash_for_req2
        self._ia = initial_payload[:MAX_IA_LIBTORRENT]
        self._after_ia = initial_payload[MAX_IA_LIBTORRENT:]
        self._prefix = initial_payload
        self._on_finished = on_finished
        self._raw: asyncio.Transport | None = None
        self._engine: MSEHandshake | None = None
        self._decrypt: Callable[[Any], bytes] | None = None
        self._sniffed = bytearray()
        self._timer: asyncio.TimerHandle | None = None
        self._started = 0.0
        self.done: asyncio.Future[asyncio.Transport] = self._loop.create_future()
        self.failure = ""

    # --- asyncio.Protocol: before and during the handshake ---------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        raw = self._raw = cast(asyncio.Transport, transport)
        if self._mode is _Mode.PREFIX:
            raw.write(self._prefix)
            self._hand_over(b"")
            return
        now = self._started = self._loop.time()
        if self._mode is _Mode.HANDSHAKE:
            assert self._info_hash is not None
            self._engine = MSEHandshake.initiator(
                info_hash=self._info_hash,
                now=now,
                rng=self._rng,
                config=self._config,
                initial_payload=self._ia,
            )
            raw.write(self._engine.data_to_send())
        self._timer = self._loop.call_at(now + self._config.handshake_timeout, self._on_timer)

    def data_received(self, data: bytes) -> None:
        mode = self._mode
        if mode is _Mode.STREAM:
            rx = self._rx
            if rx is not None:
                rx.feed((data,))
                if rx.pending > RX_BACKLOG and not self._rx_throttled:
                    self._rx_throttled = True
                    cast(asyncio.Transport, self._raw).pause_reading()
                return
            decrypt = self._decrypt
            app = cast(asyncio.Protocol, self._app)
            if decrypt is None:
                app.data_received(data)
            elif len(data) <= DECRYPT_CHUNK:
                app.data_received(decrypt(data))
            else:  # see DECRYPT_CHUNK
                view = memoryview(data)
                for start in range(0, len(data), DECRYPT_CHUNK):
                    app.data_received(decrypt(view[start : start + DECRYPT_CHUNK]))
                    if self._mode is not _Mode.STREAM:
                        return
        elif mode is _Mode.PASSTHROUGH:
            cast(asyncio.Protocol, self._app).data_received(data)
        elif mode is _Mode.HANDSHAKE:
            self._feed(data)
        elif mode is _Mode.SNIFF:
            self._sniff(data)

    def eof_received(self) -> bool | None:
        if self._rx is not None and not (self._rx.idle and not self._held):
            self._eof = True  # passed on once the data still being decrypted is delivered
            return True
        if self._mode in (_Mode.STREAM, _Mode.PASSTHROUGH) and self._app is not None:
            return cast(asyncio.Protocol, self._app).eof_received()
        if self._mode in (_Mode.HANDSHAKE, _Mode.SNIFF):
            self._fail("peer closed the connection during the MSE handshake")
        return None

    def pause_writing(self) -> None:
        if self._app is not None:
            self._app.pause_writing()

    def resume_writing(self) -> None:
        if self._app is not None:
            self._app.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        if self._mode is _Mode.STREAM and self._rx is not None and not self._rx.idle:
            self._lost = (exc,)  # delivered after the data still being decrypted (see _rx_idle)
            return
        app, mode = self._app, self._mode
        if mode in (_Mode.HANDSHAKE, _Mode.SNIFF):
            detail = f": {exc}" if exc else ""
            self._fail(f"peer closed the connection during the MSE handshake{detail}", close=False)
        self._mode = _Mode.DONE
        if self._rx is not None:
            self._rx.close()
        if self._stream is not None:
            self._stream._stop_cipher()
        if app is not None and mode in (_Mode.STREAM, _Mode.PASSTHROUGH):
            app.connection_lost(exc)

    # --- internals -------------------------------------------------------------------------------

    def _sniff(self, data: bytes) -> None:
        self._sniffed += data
        kind = sniff(self._sniffed)
        if kind is None:
            return
        first = bytes(self._sniffed)
        self._sniffed = bytearray()
        if kind is FirstBytes.PLAINTEXT:
            if not self._config.accepts_plaintext_connections:
                self._fail("plain BitTorrent handshake refused (encryption required)")
                return
            self._cancel_timer()
            self._hand_over(first)
            return
        if not self._config.accepts_encrypted_connections:
            self._fail("MSE handshake refused (encryption disabled)")
            return
        assert self._lookup is not None
        self._engine = MSEHandshake.responder(
            info_hash_for_req2=self._lookup,
            now=self._started,  # one deadline from the connection's start
            rng=self._rng,
            config=self._config,
        )
        self._mode = _Mode.HANDSHAKE
        self._feed(first)

    def _feed(self, data: bytes) -> None:
        engine = self._engine
        assert engine is not None and self._raw is not None
        engine.receive_data(data)
        out = engine.data_to_send()
        if out:
            self._raw.write(out)
        try:
            event = engine.next_event()
        except EncryptionError as exc:
            self._fail(str(exc))
            return
        if event is None:
            return
        self._cancel_timer()
        assert engine.cipher is not None
        info = MSEInfo(method=event.method, info_hash=event.info_hash, outgoing=engine.role is Role.INITIATOR)
        self._establish(engine.cipher, info, event.payload)

    def _establish(self, cipher: PayloadCipher, info: MSEInfo, payload: bytes) -> None:
        assert self._raw is not None
        self._mode = _Mode.STREAM
        self._decrypt = cipher.decryptor.update if cipher.decryptor is not None else None
        if cipher.decryptor is not None and self._pool is not None:
            self._rx = OrderedCipher(
                cipher.decryptor.update_into,
                self._deliver,
                pool=self._pool,
                loop=self._loop,
                on_idle=self._rx_idle,
            )
        transport = self._stream = MSETransport(self._raw, cipher, self, info)
        if self._after_ia:
            transport.write(self._after_ia)  # what did not fit in IA goes first (ENCRYPT2)
        app = self._app = self._app_factory()
        app.connection_made(transport)
        if not self.done.done():
            self.done.set_result(transport)
        if payload and self._mode is _Mode.STREAM:
            cast(asyncio.Protocol, app).data_received(payload)
        if self._decrypt is None and self._mode is _Mode.STREAM:
            self._step_aside(app)
        self._finished()

    def _step_aside(self, app: asyncio.BaseProtocol) -> None:
        """A plaintext payload: reads go from the raw transport straight to the app (which may then
        read into its own buffer, :class:`asyncio.BufferedProtocol`); the app keeps writing through
        the :class:`MSETransport` (pass-through, and ``get_extra_info("mse")`` still answers)."""
        raw = self._raw
        assert raw is not None
        try:
            raw.set_protocol(app)
        except NotImplementedError:
            return  # this transport cannot switch: keep forwarding
        self._mode = _Mode.ASIDE

    def _deliver(self, data: bytes) -> None:
        """A decrypted buffer from the cipher thread, in order; held while the app paused reading."""
        if self._mode is not _Mode.STREAM:
            return
        if self._app_paused or self._held:
            self._held.append(data)
            return
        cast(asyncio.Protocol, self._app).data_received(data)

    def _release_held(self) -> None:
        held = self._held
        while held and not self._app_paused and self._mode is _Mode.STREAM:
            cast(asyncio.Protocol, self._app).data_received(held.popleft())
        self._rx_idle()

    def _rx_idle(self) -> None:
        if self._rx_throttled and self._mode is _Mode.STREAM:
            self._rx_throttled = False
            if not self._app_paused:
                cast(asyncio.Transport, self._raw).resume_reading()
        rx_idle = self._rx is None or self._rx.idle
        if self._eof and rx_idle and not self._held and self._mode is _Mode.STREAM:
            self._eof = False
            if not cast(asyncio.Protocol, self._app).eof_received():
                cast(asyncio.Transport, self._raw).close()
        if self._lost is not None and rx_idle:
            (exc,), self._lost = self._lost, None
            self._held.clear()
            self.connection_lost(exc)

    def _hand_over(self, first: bytes) -> None:
        """A plain connection: give the raw transport to the app (or forward, if it cannot switch)."""
        raw = self._raw
        assert raw is not None
        app = self._app = self._app_factory()
        try:
            raw.set_protocol(app)
            self._mode = _Mode.DONE
        except NotImplementedError:
            self._mode = _Mode.PASSTHROUGH
        app.connection_made(raw)
        if not self.done.done():
            self.done.set_result(raw)
        if first:
            cast(asyncio.Protocol, app).data_received(first)
        self._finished()

    def _on_timer(self) -> None:
        self._timer = None
        engine = self._engine
        if engine is not None:
            engine.handle_timer(self._loop.time())
            try:
                engine.next_event()
            except EncryptionError as exc:
                self._fail(str(exc))
                return
        if self._mode in (_Mode.HANDSHAKE, _Mode.SNIFF):
            self._fail(f"no handshake within {self._config.handshake_timeout:g} s")

    def _fail(self, reason: str, *, close: bool = True) -> None:
        if self._mode not in (_Mode.HANDSHAKE, _Mode.SNIFF):
            return
        self._mode = _Mode.DONE
        self.failure = reason
        self._cancel_timer()
        if close and self._raw is not None:
            self._raw.abort()
        if not self.done.done():
            self.done.set_exception(EncryptionError(reason))
            self.done.exception()  # retrieved: a listener's handshakes have no awaiter
        log.debug("MSE: %s", reason)
        self._finished()

    def _finished(self) -> None:
        if self._on_finished is not None:
            callback, self._on_finished = self._on_finished, None
            callback(self)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def abort(self, reason: str) -> None:
        """Drop a connection still in its handshake (e.g. the listener is closing)."""
        self._fail(reason)


async def open_mse_stream(
    connect: Connector,
    app_factory: Callable[[], asyncio.BaseProtocol],
    *,
    info_hash: InfoHash,
    config: MSEConfig | None = None,
    rng: random.Random | None = None,
    initial_payload: bytes = b"",
    timeout: float = 10.0,
) -> asyncio.Transport:
    """Dial with ``connect``, run the MSE handshake for ``info_hash``, then start ``app_factory()``.

    ``initial_payload`` (e.g. the BitTorrent handshake) rides in IA -- its first 68 bytes, what
    libtorrent accepts -- and the rest follows encrypted.  Returns the app's :class:`MSETransport`.
    Raises :class:`ConnectionError` when the connection cannot be opened within ``timeout`` and
    :class:`EncryptionError` when the handshake fails or the peer drops it; the app protocol is then
    never started.
    """
    config = config or MSEConfig()
    endpoint = MSEProtocol(
        app_factory,
        mode=_Mode.HANDSHAKE,
        config=config,
        rng=rng or random.SystemRandom(),
        info_hash=info_hash,
        initial_payload=initial_payload,
    )
    try:
        transport, _ = await asyncio.wait_for(connect(lambda: endpoint), timeout=timeout)
    except (OSError, TimeoutError) as exc:
        raise ConnectionError(f"connect failed: {exc or type(exc).__name__}") from exc
    try:
        return await endpoint.done
    except asyncio.CancelledError:
        cast(asyncio.Transport, transport).abort()
        raise


async def _open_plain(connect: Connector, app: asyncio.BaseProtocol, prefix: bytes, timeout: float) -> None:
    endpoint = MSEProtocol(
        lambda: app, mode=_Mode.PREFIX, config=MSEConfig(), rng=random.Random(0), initial_payload=prefix
    )
    try:
        await asyncio.wait_for(connect(lambda: endpoint), timeout=timeout)
    except (OSError, TimeoutError) as exc:
        raise ConnectionError(f"connect failed: {exc or type(exc).__name__}") from exc


async def open_encrypted_connection(
    address: PeerAddress,
    engine: PeerConnection,
    handler: PeerHandler,
    *,
    config: MSEConfig | None = None,
    rng: random.Random | None = None,
    timeout: float = 10.0,
    download_limit: TokenBucket | None = None,
    on_created: Callable[[PeerDriver], None] | None = None,
    connect: Connector | None = None,
) -> PeerDriver:
    """Dial ``address`` for ``engine`` (an initiator: its BitTorrent handshake is queued) under
    ``config.policy``; the drop-in for :func:`~torrentgoat.aio.peer.open_peer_connection`.

    * ``prefer``: MSE first, with the BitTorrent handshake in IA; if the handshake fails or the peer
      closes the connection during it, dial again and speak plain BitTorrent (the same engine and
      driver; the handler sees one connection).  A connect failure is not retried.
    * ``require``: MSE only (RC4); ``disable``: plain only.

    ``connect`` opens the raw connection (default TCP to ``address``; pass a uTP dialer here).
    On failure the driver is closed (``handler.peer_closed``) and :class:`ConnectionError` raised,
    as :func:`open_peer_connection` does.  ``transport.get_extra_info("mse")`` tells which it became.
    """
    config = config or MSEConfig()
    if engine.info_hash is None:
        raise LocalProtocolError("an outgoing connection needs an engine created with its info_hash")
    connect = connect or tcp_connector(address.host, address.port)
    driver = PeerDriver(engine, handler, address=address, outgoing=True, download_limit=download_limit)
    if on_created is not None:
        on_created(driver)
    first = engine.data_to_send()  # our BitTorrent handshake: IA, or the first bytes of a plain retry
    policy = config.policy
    try:
        if policy is not EncryptionPolicy.DISABLE:
            try:
                await open_mse_stream(
                    connect,
                    lambda: driver,
                    info_hash=engine.info_hash,
                    config=config,
                    rng=rng,
                    initial_payload=first,
                    timeout=timeout,
                )
                return driver
            except EncryptionError as exc:
                if policy is EncryptionPolicy.REQUIRE:
                    raise ConnectionError(f"MSE handshake failed: {exc}") from exc
                log.debug("%s: MSE handshake failed (%s); retrying in plain text", address, exc)
        await _open_plain(connect, driver, first, timeout)
        return driver
    except ConnectionError as exc:
        driver.close(str(exc))
        raise ConnectionError(f"cannot connect to {address}: {exc}") from exc


class EncryptedListener:
    """Protocol factory for ``loop.create_server``: one listener for every torrent of a session.

    Each incoming connection is sniffed (:func:`~torrentgoat.mse.sniff`): a plain BitTorrent
    handshake goes to ``accept()`` at once (unless the policy is ``require``); an MSE handshake is
    answered for any torrent ``info_hash_for_req2(HASH('req2', info_hash))`` returns (a
    :class:`~torrentgoat.mse.StreamKeys` fits), and ``accept()`` is called only once it is complete.
    ``accept`` returns the application protocol (the session's ``PeerDriver`` factory); it then reads
    ``transport.get_extra_info("mse")`` to know the stream key's torrent, if it wants to.

    At most ``max_pending`` connections may be in their handshake at once (more are closed at once);
    each has ``config.handshake_timeout`` seconds.  :meth:`close` aborts the pending ones.
    """

    def __init__(
        self,
        accept: Callable[[], asyncio.BaseProtocol],
        *,
        info_hash_for_req2: Callable[[bytes], InfoHash | None],
        config: MSEConfig | None = None,
        rng: random.Random | None = None,
        max_pending: int = 256,
    ) -> None:
        self.accept = accept
        self.info_hash_for_req2 = info_hash_for_req2
        self.config = config or MSEConfig()
        self.rng = rng or random.SystemRandom()
        self.max_pending = max_pending
        self.pending: set[MSEProtocol] = set()
        self.counts: dict[str, int] = {"plain": 0, "encrypted": 0, "failed": 0, "over_limit": 0}
        """Connections by outcome (for logs and tests)."""
        self.failures: deque[str] = deque(maxlen=64)
        """Why the latest failed handshakes failed (newest last)."""

    def __call__(self) -> asyncio.BaseProtocol:
        if len(self.pending) >= self.max_pending:
            self.counts["over_limit"] += 1
            return _Refuse()
        endpoint = MSEProtocol(
            self.accept,
            mode=_Mode.SNIFF,
            config=self.config,
            rng=self.rng,
            info_hash_for_req2=self.info_hash_for_req2,
            on_finished=self._finished,
        )
        self.pending.add(endpoint)
        return endpoint

    def _finished(self, endpoint: MSEProtocol) -> None:
        self.pending.discard(endpoint)
        if endpoint.failure:
            self.counts["failed"] += 1
            self.failures.append(endpoint.failure)
        elif endpoint._mode in (_Mode.STREAM, _Mode.ASIDE):
            self.counts["encrypted"] += 1
        else:
            self.counts["plain"] += 1

    def close(self) -> None:
        """Abort every connection still in its handshake."""
        for endpoint in list(self.pending):
            endpoint.abort("listener closed")


class _Refuse(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        cast(asyncio.Transport, transport).abort()
