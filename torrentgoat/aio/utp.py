"""The asyncio driver of uTP (level L4): one UDP socket, a :class:`UTPSocketManager`, and an
:class:`asyncio.Transport` per connection -- so any :class:`asyncio.Protocol` (the peer wire
driver :class:`~torrentgoat.aio.peer.PeerDriver`, an MSE layer) runs over uTP as over TCP.

    async with UTPEndpoint(host="0.0.0.0", port=6881) as endpoint:
        endpoint.serve(lambda: MyProtocol())                     # accept incoming connections
        transport, protocol = await endpoint.open_connection(("10.0.0.5", 6881), MyProtocol)
        dht = DHTNode(host="0.0.0.0", datagram_transport=endpoint.dht_transport)   # same port

One UDP port for uTP and the DHT (as libtorrent does): a datagram starting with ``d`` is a KRPC
message (a bencoded dictionary) and goes to the protocol registered with :meth:`dht_transport`;
one whose first byte is ``type << 4 | 1`` with type 0..4 is uTP; anything else is dropped.

Socket buffers are set to ``socket_buffer`` bytes (4 MiB) on purpose: with Linux's default 208 KiB
receive buffer a burst of large datagrams on loopback overflows it (libtorrent's uTP drops from
~145 MB/s to ~8 MB/s).  The kernel caps the value at ``net.core.rmem_max``/``wmem_max``;
:attr:`UTPEndpoint.socket_buffers` says what was granted.

Batching: a readable socket is drained (up to :data:`READ_BATCH` datagrams) before the manager is
asked for output, so one ack answers a burst and data piggybacks on it; writes on any transport
during a loop iteration are packetized together at its end (one ``call_soon``).  Sending is
:class:`~torrentgoat.aio.udpsend.DatagramSender`'s: a connection's run of data packets leaves in
one ``sendmsg`` with UDP segmentation offload where Linux has it, and a full socket send buffer
keeps the rest in a backlog until the socket is writable again.

Transport semantics follow asyncio's: ``write``/``writelines`` queue bytes (flow control calls
``protocol.pause_writing()`` above the high-water mark of queued-but-unsent bytes and
``resume_writing()`` below the low one); ``close()`` sends a FIN after the queued data;
``abort()`` sends a RESET; ``connection_lost`` is called exactly once (``None`` after a local
close, :class:`ConnectionResetError` / :class:`TimeoutError` otherwise); the peer's FIN calls
``eof_received()`` and, unless it returns True, closes the transport.  ``get_extra_info``:
``peername``, ``sockname``, ``socket`` (None: the UDP socket is shared).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import sys
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, TypeVar

from torrentgoat.aio.peer import PeerDriver, PeerHandler
from torrentgoat.aio.ratelimit import TokenBucket
from torrentgoat.aio.udpsend import DatagramSender
from torrentgoat.errors import LocalProtocolError, UTPError
from torrentgoat.primitives import PeerAddress
from torrentgoat.utp.config import UTPConfig
from torrentgoat.utp.events import (
    Addr,
    CloseReason,
    ConnectionAccepted,
    ConnectionClosed,
    ConnectionEstablished,
    DataReceived,
    Event,
    FinReceived,
)
from torrentgoat.utp.manager import UTPSocketManager
from torrentgoat.wire.connection import PeerConnection

__all__ = [
    "READ_BATCH",
    "UTPEndpoint",
    "UTPTransport",
    "open_utp_connection",
    "open_utp_peer_connection",
    "utp_connector",
]

READ_BATCH = 512
"""Datagrams read per readable event before the manager is pumped."""
SOCKET_BUFFER = 4 * 1024 * 1024
_IP_MTU = 14  # <linux/in.h>
_IPV6_MTU = 24  # <linux/in6.h>
_KRPC = 0x64  # "d"

P = TypeVar("P", bound=asyncio.BaseProtocol)


def path_datagram(host: str) -> int:
    """Largest UDP payload towards ``host`` the local route carries (Linux ``IP_MTU`` of a
    connected socket minus IP and UDP headers); 1472 where it cannot be asked."""
    ipv6 = ":" in host
    if sys.platform.startswith("linux"):
        try:
            with socket.socket(socket.AF_INET6 if ipv6 else socket.AF_INET, socket.SOCK_DGRAM) as probe:
                probe.connect((host, 9))
                mtu = probe.getsockopt(
                    socket.IPPROTO_IPV6 if ipv6 else socket.IPPROTO_IP, _IPV6_MTU if ipv6 else _IP_MTU
                )
            return int(max(548, min(65507, mtu - (48 if ipv6 else 28))))
        except OSError:
            pass
    return 1452 if ipv6 else 1472


class UTPTransport(asyncio.Transport):
    """One uTP connection as an :class:`asyncio.Transport` (see the module docstring)."""

    def __init__(self, endpoint: UTPEndpoint, key: int, addr: Addr, protocol: asyncio.BaseProtocol) -> None:
        super().__init__()
        self._endpoint = endpoint
        self.key = key
        self._addr = addr
        self._protocol = protocol
        self._closing = False
        self._lost = False
        self._reading = True
        self._writing_paused = False
        self._high = 64 * 1024
        self._low = 16 * 1024

    # --- information ---------------------------------------------------------------------------

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return self._addr
        if name == "sockname":
            return self._endpoint.address
        if name == "socket":
            return None  # shared UDP socket: not this connection's
        if name == "utp":
            return True  # a uTP stream (a TCP transport answers None)
        return default

    def is_closing(self) -> bool:
        return self._closing

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    # --- writing -------------------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing or not data:
            return
        endpoint = self._endpoint
        try:
            endpoint.manager.send(self.key, data)
        except (KeyError, LocalProtocolError):
            return  # reset or timed out a moment ago: connection_lost is already queued
        endpoint._schedule_pump()
        self._check_high_water()

    def writelines(self, list_of_data: Any) -> None:
        if self._closing:
            return
        endpoint = self._endpoint
        send = endpoint.manager.send
        key = self.key
        try:
            for data in list_of_data:
                if data:
                    send(key, data)
        except (KeyError, LocalProtocolError):
            return  # as in write()
        endpoint._schedule_pump()
        self._check_high_water()

    def can_write_eof(self) -> bool:
        return False

    def write_eof(self) -> None:
        raise NotImplementedError("uTP has no half-close: use close()")

    def get_write_buffer_size(self) -> int:
        conn = self._endpoint.manager.get(self.key)
        return conn.send_buffer_size if conn is not None else 0

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._low, self._high

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if high is None:
            high = 64 * 1024 if low is None else 4 * low
        if low is None:
            low = high // 4
        if not 0 <= low <= high:
            raise ValueError(f"high ({high}) must be >= low ({low}) must be >= 0")
        self._high, self._low = high, low
        self._check_high_water()

    def _check_high_water(self) -> None:
        if not self._writing_paused and self.get_write_buffer_size() > self._high:
            self._writing_paused = True
            self._endpoint._paused_writers[self.key] = self
            self._call(self._protocol.pause_writing)

    def _check_low_water(self) -> None:
        if self._writing_paused and self.get_write_buffer_size() <= self._low:
            self._writing_paused = False
            self._endpoint._paused_writers.pop(self.key, None)
            if not self._lost:
                self._call(self._protocol.resume_writing)

    # --- reading -------------------------------------------------------------------------------

    def is_reading(self) -> bool:
        return self._reading and not self._lost

    def pause_reading(self) -> None:
        if self._reading and not self._lost:
            self._reading = False
            self._endpoint.manager.pause_reading(self.key)

    def resume_reading(self) -> None:
        if not self._reading and not self._lost:
            self._reading = True
            self._endpoint.manager.resume_reading(self.key)
            self._endpoint._schedule_pump()

    # --- closing -------------------------------------------------------------------------------

    def close(self) -> None:
        """FIN after the queued data; ``connection_lost(None)`` once the connection is done."""
        if self._closing:
            return
        self._closing = True
        endpoint = self._endpoint
        endpoint.manager.close(self.key, endpoint.loop.time())
        endpoint._schedule_pump()

    def abort(self) -> None:
        """RESET at once; ``connection_lost(None)`` soon."""
        endpoint = self._endpoint
        self._closing = True
        endpoint.manager.abort(self.key, endpoint.loop.time())
        endpoint._schedule_pump()
        endpoint.loop.call_soon(self._connection_lost, None)

    def _connection_lost(self, exc: Exception | None) -> None:
        if self._lost:
            return
        self._lost = True
        self._closing = True
        self._endpoint._transports.pop(self.key, None)
        self._endpoint._paused_writers.pop(self.key, None)
        self._call(self._protocol.connection_lost, exc)

    def _call(self, method: Callable[..., Any], *args: Any) -> Any:
        try:
            return method(*args)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._endpoint.loop.call_exception_handler(
                {"message": "uTP protocol callback failed", "exception": exc, "transport": self}
            )
            if not self._closing:
                self.abort()
            return None

    def __repr__(self) -> str:
        return f"<UTPTransport #{self.key} {self._addr[0]}:{self._addr[1]}>"


class _DHTTransport(asyncio.DatagramTransport):
    """The DHT's view of the shared socket: ``sendto`` goes out of the uTP endpoint's socket."""

    def __init__(self, endpoint: UTPEndpoint, protocol: asyncio.DatagramProtocol) -> None:
        super().__init__()
        self._endpoint = endpoint
        self._protocol = protocol
        self._closing = False

    def sendto(self, data: Any, addr: Any = None) -> None:
        if not self._closing and addr is not None:
            self._endpoint._send_raw(bytes(data), (addr[0], addr[1]))

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "sockname":
            return self._endpoint.address
        return default

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        if self._endpoint._dht is self:
            self._endpoint._dht = None
        self._endpoint.loop.call_soon(self._protocol.connection_lost, None)

    def abort(self) -> None:
        self.close()

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        assert isinstance(protocol, asyncio.DatagramProtocol)
        self._protocol = protocol


class UTPEndpoint:
    """One UDP socket carrying uTP connections (and optionally the DHT).  See the module docstring."""

    def __init__(
        self,
        *,
        host: str = "0.0.0.0",
        port: int = 0,
        config: UTPConfig | None = None,
        rng: random.Random | None = None,
        socket_buffer: int = SOCKET_BUFFER,
        gso: bool = True,
    ) -> None:
        self.host = host
        self.port = port
        self.config = config or UTPConfig()
        self.rng = rng or random.Random(os.urandom(16))
        self.socket_buffer = socket_buffer
        self.socket_buffers: tuple[int, int] = (0, 0)
        """(SO_RCVBUF, SO_SNDBUF) as the kernel granted them (Linux reports twice the request)."""
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._manager: UTPSocketManager | None = None
        self._transports: dict[int, UTPTransport] = {}
        self._connecting: dict[
            int, tuple[asyncio.Future[UTPTransport], Callable[[], asyncio.BaseProtocol]]
        ] = {}
        self._paused_writers: dict[int, UTPTransport] = {}
        self._factory: Callable[[], asyncio.BaseProtocol] | None = None
        self._dht: _DHTTransport | None = None
        self._gso = gso
        self._sender: DatagramSender | None = None
        self._pump_scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_when: float | None = None
        self._mtu_cache: dict[str, int] = {}
        self.address: Addr = (host, port)
        self._dropped_in = 0

    # --- lifecycle -----------------------------------------------------------------------------

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise UTPError("uTP endpoint is not started")
        return self._loop

    @property
    def dropped_datagrams(self) -> int:
        """Datagrams that were neither uTP nor KRPC, or failed to send."""
        return self._dropped_in + (self._sender.dropped if self._sender is not None else 0)

    @property
    def gso(self) -> bool:
        """Runs of datagrams leave with UDP segmentation offload (:mod:`~torrentgoat.aio.udpsend`)."""
        return self._sender is not None and self._sender.gso

    @property
    def gso_sends(self) -> int:
        """``sendmsg`` calls that carried several datagrams."""
        return self._sender.gso_sends if self._sender is not None else 0

    @property
    def manager(self) -> UTPSocketManager:
        if self._manager is None:
            raise UTPError("uTP endpoint is not started")
        return self._manager

    async def start(self) -> None:
        if self._sock is not None:
            return
        loop = self._loop = asyncio.get_running_loop()
        ipv6 = ":" in self.host
        sock = socket.socket(socket.AF_INET6 if ipv6 else socket.AF_INET, socket.SOCK_DGRAM)
        try:
            if ipv6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, option, self.socket_buffer)
            sock.bind((self.host, self.port))
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise UTPError(f"cannot bind the uTP socket to {self.host}:{self.port}: {exc.strerror}") from None
        self.socket_buffers = (
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF),
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF),
        )
        name = sock.getsockname()
        self.address = (str(name[0]), int(name[1]))
        self._sock = sock
        self._sender = DatagramSender(sock, loop, self._pump, gso=self._gso)
        self._manager = UTPSocketManager(
            rng=self.rng, now=loop.time(), config=self.config, path_datagram=self._path_datagram
        )
        self._manager.accept_incoming = self._factory is not None  # refused until serve()
        loop.add_reader(sock.fileno(), self._on_readable)

    async def close(self) -> None:
        """Abort every connection (RESETs go out), fail pending dials, close the socket."""
        sock, loop, manager = self._sock, self._loop, self._manager
        if sock is None or loop is None or manager is None:
            return
        manager.close_all(loop.time())
        self._pump()
        for fut, _ in self._connecting.values():
            if not fut.done():
                fut.set_exception(UTPError("uTP endpoint closed"))
        self._connecting.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        loop.remove_reader(sock.fileno())
        if self._sender is not None:
            self._sender.close()
        for transport in list(self._transports.values()):
            transport._connection_lost(None)
        if self._dht is not None:
            self._dht.close()
        self._sock = None
        sock.close()

    async def __aenter__(self) -> UTPEndpoint:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def _path_datagram(self, host: str) -> int:
        size = self._mtu_cache.get(host)
        if size is None:
            if len(self._mtu_cache) > 4096:
                self._mtu_cache.clear()
            size = self._mtu_cache[host] = path_datagram(host)
        return size

    # --- connections ---------------------------------------------------------------------------

    def serve(self, protocol_factory: Callable[[], asyncio.BaseProtocol] | None) -> None:
        """Accept incoming connections with ``protocol_factory`` (None: refuse them with RESET)."""
        self._factory = protocol_factory
        self.manager.accept_incoming = protocol_factory is not None

    async def open_connection(
        self, addr: tuple[str, int], protocol_factory: Callable[[], P], *, timeout: float = 10.0
    ) -> tuple[UTPTransport, P]:
        """Dial ``addr`` (an IP literal and port); the protocol sees ``connection_made`` before
        this returns.  :class:`UTPError` if it is refused, times out, or the endpoint closes."""
        manager = self.manager
        loop = self.loop
        target = (str(addr[0]), int(addr[1]))
        key = manager.connect(target, loop.time())
        fut: asyncio.Future[UTPTransport] = loop.create_future()
        self._connecting[key] = (fut, protocol_factory)
        self._pump()
        try:
            transport = await asyncio.wait_for(asyncio.shield(fut), timeout)
        except TimeoutError:
            self._connecting.pop(key, None)
            manager.abort(key, loop.time())
            self._schedule_pump()
            raise UTPError(f"uTP connection to {target[0]}:{target[1]} timed out") from None
        except asyncio.CancelledError:
            self._connecting.pop(key, None)
            manager.abort(key, loop.time())
            self._schedule_pump()
            raise
        protocol = transport.get_protocol()
        return transport, protocol  # type: ignore[return-value]

    def dht_transport(self, protocol: asyncio.DatagramProtocol) -> asyncio.DatagramTransport:
        """Route KRPC datagrams of the shared socket to ``protocol`` and give it a transport whose
        ``sendto`` uses that socket (for ``DHTNode(datagram_transport=endpoint.dht_transport)``)."""
        if self._dht is not None and not self._dht.is_closing():
            raise UTPError("a DHT protocol is already attached to this uTP endpoint")
        transport = _DHTTransport(self, protocol)
        self._dht = transport
        protocol.connection_made(transport)
        return transport

    # --- socket I/O ----------------------------------------------------------------------------

    def _on_readable(self) -> None:
        sock, manager, loop = self._sock, self._manager, self._loop
        if sock is None or manager is None or loop is None:
            return
        now = loop.time()
        receive = manager.receive_datagram
        recvfrom = sock.recvfrom
        for _ in range(READ_BATCH):
            try:
                data, addr = recvfrom(65536)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                continue  # e.g. an ICMP error reported on the socket
            if not data:
                continue
            first = data[0]
            if first == _KRPC:
                dht = self._dht
                if dht is not None:
                    dht._protocol.datagram_received(data, (addr[0], addr[1]))
                else:
                    self._dropped_in += 1
            elif first & 0x0F == 1 and first >> 4 <= 4:
                receive(data, (addr[0], addr[1]), now)
            else:
                self._dropped_in += 1
        self._pump(ack_first=True)

    def _send_raw(self, data: bytes, addr: Addr) -> None:
        if self._sender is not None:
            self._sender.send_one(data, addr)

    # --- pumping -------------------------------------------------------------------------------

    def _schedule_pump(self) -> None:
        if not self._pump_scheduled and self._loop is not None:
            self._pump_scheduled = True
            self._loop.call_soon(self._pump)

    def _pump(self, *, ack_first: bool = False) -> None:
        """Dispatch the manager's events, send its datagrams, update flow control and the timer.

        ``ack_first`` (after a read): send the acks before the application sees the data, so the
        peer's clock does not include our processing of the whole burst (its window turns over
        sooner); what the application writes meanwhile goes out in the second round."""
        self._pump_scheduled = False
        manager, loop, sender = self._manager, self._loop, self._sender
        if manager is None or loop is None or sender is None:
            return
        if ack_first and not sender.blocked:
            datagrams = manager.datagrams_to_send(loop.time())
            if datagrams:
                sender.send(datagrams)
        while (event := manager.next_event()) is not None:
            self._dispatch(event)
        if not sender.blocked:
            datagrams = manager.datagrams_to_send(loop.time())
            if datagrams:
                sender.send(datagrams)
        if self._paused_writers:
            for transport in list(self._paused_writers.values()):
                transport._check_low_water()
        # A deadline that moved later keeps the armed timer: it fires early, finds nothing due and
        # re-arms here.  (Every ack moves the keepalive and retransmission deadlines: cancelling
        # and re-arming a TimerHandle per burst cost more than the rare early wake-up.)
        when = manager.get_timer()
        if when is not None and (self._timer_when is None or when < self._timer_when):
            if self._timer is not None:
                self._timer.cancel()
            self._timer_when = when
            self._timer = loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_when = None
        if self._manager is None or self._loop is None:
            return
        self._manager.handle_timer(self._loop.time())
        self._pump()

    def _dispatch(self, event: Event) -> None:
        if isinstance(event, DataReceived):
            transport = self._transports.get(event.key)
            if transport is not None and not transport._lost:
                protocol = transport._protocol
                receive = getattr(protocol, "data_received", None)  # bytes as they are, if it takes them
                if receive is not None:
                    transport._call(receive, event.data)
                else:
                    transport._call(_feed_buffered, protocol, event.data)
        elif isinstance(event, FinReceived):
            transport = self._transports.get(event.key)
            if transport is not None and not transport._lost:
                keep_open = transport._call(transport._protocol.eof_received)  # type: ignore[attr-defined]
                if not keep_open:
                    transport.close()
        elif isinstance(event, ConnectionClosed):
            pending = self._connecting.pop(event.key, None)
            if pending is not None and not pending[0].done():
                pending[0].set_exception(UTPError(f"uTP connection failed: {event.reason.value}"))
            transport = self._transports.get(event.key)
            if transport is not None:
                transport._connection_lost(_exception(event.reason))
        elif isinstance(event, ConnectionEstablished):
            pending = self._connecting.pop(event.key, None)
            if pending is None or pending[0].done():
                self.manager.abort(event.key, self.loop.time())  # the dial was given up
                return
            fut, factory = pending
            transport = self._attach(event.key, event.addr, factory)
            if transport is not None:
                fut.set_result(transport)
            else:
                fut.set_exception(UTPError("protocol factory failed"))
        elif isinstance(event, ConnectionAccepted):
            accept = self._factory
            if accept is None:
                self.manager.abort(event.key, self.loop.time())
                return
            self._attach(event.key, event.addr, accept)

    def _attach(
        self, key: int, addr: Addr, factory: Callable[[], asyncio.BaseProtocol]
    ) -> UTPTransport | None:
        try:
            protocol = factory()
        except Exception as exc:
            self.loop.call_exception_handler({"message": "uTP protocol factory failed", "exception": exc})
            self.manager.abort(key, self.loop.time())
            return None
        transport = UTPTransport(self, key, addr, protocol)
        self._transports[key] = transport
        transport._call(protocol.connection_made, transport)
        return transport


def _feed_buffered(protocol: asyncio.BufferedProtocol, data: bytes) -> None:
    view = memoryview(data)
    while view:
        buf = memoryview(protocol.get_buffer(len(view)))
        size = min(len(buf), len(view))
        if size <= 0:
            raise RuntimeError("get_buffer() returned an empty buffer")
        buf[:size] = view[:size]
        protocol.buffer_updated(size)
        view = view[size:]


def _exception(reason: CloseReason) -> Exception | None:
    if reason is CloseReason.RESET:
        return ConnectionResetError("uTP connection reset by peer")
    if reason is CloseReason.TIMED_OUT:
        return TimeoutError("uTP connection timed out")
    if reason is CloseReason.REFUSED:
        return ConnectionRefusedError("uTP connection refused")
    return None


async def open_utp_connection(
    addr: tuple[str, int],
    protocol_factory: Callable[[], P],
    *,
    endpoint: UTPEndpoint,
    timeout: float = 10.0,
) -> tuple[UTPTransport, P]:
    """``endpoint.open_connection(addr, protocol_factory)`` as a function (asyncio's shape)."""
    return await endpoint.open_connection(addr, protocol_factory, timeout=timeout)


async def open_utp_peer_connection(
    address: PeerAddress,
    engine: PeerConnection,
    handler: PeerHandler,
    *,
    endpoint: UTPEndpoint,
    timeout: float = 10.0,
    download_limit: TokenBucket | None = None,
    on_created: Callable[[PeerDriver], None] | None = None,
) -> PeerDriver:
    """:func:`~torrentgoat.aio.peer.open_peer_connection` over uTP: dial ``address`` from
    ``endpoint`` and pump ``engine`` with an unchanged :class:`PeerDriver`.  Raises
    :class:`ConnectionError` (a :class:`UTPError`) if the dial fails, like the TCP version."""
    driver = PeerDriver(engine, handler, address=address, outgoing=True, download_limit=download_limit)
    if on_created is not None:
        on_created(driver)
    try:
        await endpoint.open_connection((address.host, address.port), lambda: driver, timeout=timeout)
    except UTPError as exc:
        driver._finish(f"uTP connect failed: {exc}")
        raise
    return driver


def utp_connector(
    endpoint: UTPEndpoint, host: str, port: int, *, timeout: float = 10.0
) -> Callable[[Callable[[], asyncio.BaseProtocol]], Awaitable[tuple[asyncio.BaseTransport, Any]]]:
    """A dialer with ``loop.create_connection``'s shape (``connect(protocol_factory)``) that opens a
    uTP connection from ``endpoint``: the ``connect=`` of
    :func:`torrentgoat.aio.mse.open_encrypted_connection` / ``open_mse_stream``, so MSE runs over uTP
    exactly as over TCP (a failed dial raises :class:`UTPError`, a :class:`ConnectionError`)."""

    async def connect(factory: Callable[[], asyncio.BaseProtocol]) -> tuple[asyncio.BaseTransport, Any]:
        return await endpoint.open_connection((host, port), factory, timeout=timeout)

    return connect
