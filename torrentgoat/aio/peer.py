"""The asyncio driver of one peer wire connection (level L4), aioquic style.

:class:`PeerDriver` is an :class:`asyncio.Protocol` that only *pumps* a sans-IO
:class:`~torrentgoat.wire.PeerConnection`: bytes from the socket go into the engine, every event
the engine produces goes to a :class:`PeerHandler` (the torrent), and the engine's queued output is
coalesced and written with one ``writelines`` per loop iteration (see :meth:`PeerDriver.flush`).  Protocol violations
(:class:`~torrentgoat.errors.RemoteProtocolError`) close this connection only.

Flow control: when the transport's write buffer is full (``pause_writing``), :attr:`writable`
turns False and the handler stops serving blocks until :meth:`PeerHandler.peer_writable`.
A download rate limit pauses reading while its token bucket is in debt.

Blocks straight from files: when the connection's bytes reach its TCP socket unchanged (plain TCP,
or MSE with a plaintext payload; never RC4 or uTP), :attr:`PeerDriver.direct` is True and a seeder
may write piece messages with :meth:`PeerDriver.send_block_direct`: the 13-byte header with
``MSG_MORE``, then the block with ``sendfile`` from the page cache -- no copy into Python, no disk
thread per read.  This happens only while the transport's own buffer is empty
(:meth:`PeerDriver.begin_direct`), so the stream keeps its order; whatever the socket does not take
goes to the transport, and :attr:`writable` stays False until the transport drained it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import os
import socket
import threading
from collections.abc import Callable
from typing import Protocol, cast

from torrentgoat.aio.ratelimit import TokenBucket
from torrentgoat.errors import LocalProtocolError, RemoteProtocolError
from torrentgoat.mse import CryptoMethod
from torrentgoat.primitives import PeerAddress
from torrentgoat.wire.connection import PeerConnection
from torrentgoat.wire.events import Event
from torrentgoat.wire.messages import Buffer

__all__ = [
    "HOLD_BYTES",
    "HOLD_DELAY",
    "HOLD_IN_FLIGHT",
    "READ_BUFFER",
    "WRITE_NOW",
    "PeerDriver",
    "PeerHandler",
    "next_peer_key",
    "open_peer_connection",
]

_ids = itertools.count(1)


def next_peer_key() -> int:
    """A process-unique key for a peer: every :class:`PeerDriver` takes one, and so does any other
    kind of peer (a web seed), so one key type names them all in the picker."""
    return next(_ids)


WRITE_NOW = 256 * 1024
"""Pending output at which :meth:`PeerDriver.flush` writes at once instead of at the end of the
loop iteration."""
HOLD_BYTES = 1024
"""Pending output below this size (about 60 requests) may be held back for :data:`HOLD_DELAY`."""
HOLD_IN_FLIGHT = 128
"""Requests (2 MiB of blocks) that must still be in flight at the peer for small output to wait."""
HOLD_DELAY = 0.001
"""Longest wait of held-back small output (seconds)."""
HIGH_WATER = 4 * 1024 * 1024
"""Transport buffer at which :attr:`PeerDriver.writable` turns False (``pause_writing``)."""
LOW_WATER = 1024 * 1024
"""... and back to True (``resume_writing``)."""

_MSG_MORE: int = getattr(socket, "MSG_MORE", 0)
_SOCKET_GONE = {
    errno.EPIPE,
    errno.ECONNRESET,
    errno.ENOTCONN,
    errno.ESHUTDOWN,
    errno.ETIMEDOUT,
    errno.ECONNABORTED,
    errno.EHOSTUNREACH,
    errno.ENETUNREACH,
}
"""``sendfile`` errors of the socket (the peer is gone); any other is the file's (a failing disk)."""


def _direct_socket(transport: asyncio.BaseTransport) -> socket.socket | None:
    """A socket object on the connection's descriptor when the payload reaches a TCP socket unchanged
    (plain TCP, or MSE with a plaintext payload), else ``None``.  It shares the transport's
    descriptor: :meth:`socket.socket.detach` it, never close it."""
    if not _MSG_MORE or not hasattr(os, "sendfile"):
        return None  # not Linux: no way to hold a header back for the block that follows
    mse = transport.get_extra_info("mse")
    if mse is not None and getattr(mse, "method", None) != CryptoMethod.PLAINTEXT:
        return None
    raw = transport.get_extra_info("socket")
    if raw is None or raw.type != socket.SOCK_STREAM or raw.family not in (socket.AF_INET, socket.AF_INET6):
        return None
    try:
        return socket.socket(fileno=raw.fileno())
    except OSError:
        return None


class PeerHandler(Protocol):
    """What a driver reports to (implemented by the torrent, or the session before a handshake)."""

    def peer_event(self, peer: PeerDriver, event: Event) -> None:
        """One engine event; may call ``peer.engine.send(...)`` (flushed after the pump)."""

    def peer_closed(self, peer: PeerDriver, reason: str) -> None:
        """The connection is gone (called exactly once)."""

    def peer_writable(self, peer: PeerDriver) -> None:
        """The transport drained its write buffer after having been full."""

    # Optional: ``peer_pumped(peer)`` -- if the handler has it, it is called once after each pump,
    # when every event of one socket read was handled (before the output is flushed): the place for
    # per-read work such as refilling the request pipeline once instead of once per block.


READ_BUFFER = 1024 * 1024
"""Size of the buffer the socket is read into (:meth:`PeerDriver.get_buffer`): one per thread, shared
by every connection, since each read is parsed and released before the next one starts."""

_reads = threading.local()


def _read_buffer() -> memoryview:
    """This thread's read buffer (one event loop per thread)."""
    view: memoryview | None = getattr(_reads, "view", None)
    if view is None:
        view = _reads.view = memoryview(bytearray(READ_BUFFER))
    return view


class PeerDriver(asyncio.BufferedProtocol):
    """Pumps one :class:`PeerConnection` over one TCP transport.

    A :class:`asyncio.BufferedProtocol`: a TCP socket is read with ``recv_into`` into one shared
    :data:`READ_BUFFER` (reads of up to 1 MiB where ``data_received`` gets at most 256 KiB from uvloop,
    and no ``bytes`` copy of each read); the engine parses it in place, the pump hands every event to
    the handler (which copies blocks into piece buffers at once, see
    :class:`~torrentgoat.wire.events.BlockReceived`), and whatever is left unparsed is copied out
    before the next read.  Transports that deliver ``bytes`` (MSE with RC4, uTP) call
    :meth:`data_received` as before.
    """

    def __init__(
        self,
        engine: PeerConnection,
        handler: PeerHandler,
        *,
        address: PeerAddress | None = None,
        outgoing: bool,
        download_limit: TokenBucket | None = None,
    ) -> None:
        self.id = next_peer_key()
        """Process-unique key of this connection (the picker's opaque peer key)."""
        self.engine = engine
        self.handler = handler
        self.address = address
        self.outgoing = outgoing
        self.transport: asyncio.Transport | None = None
        self.writable = True
        self.closed = False
        self.close_reason = ""
        self._download_limit = download_limit
        self._reading_paused = False
        self._timer: asyncio.TimerHandle | None = None
        self._in_pump = False
        self._pending: list[Buffer] = []
        self._pending_bytes = 0
        self._flush_scheduled = False
        self._hold: asyncio.TimerHandle | None = None
        self._sock: socket.socket | None = None
        self._draining = False
        self._loop = asyncio.get_running_loop()
        self.connected = self._loop.create_future()

    # --- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not asyncio subclasses
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.address is None:
            peername = transport.get_extra_info("peername")
            if peername:
                self.address = PeerAddress(str(peername[0]), int(peername[1]))
        self.transport.set_write_buffer_limits(high=HIGH_WATER, low=LOW_WATER)
        self._sock = _direct_socket(transport)
        if not self.connected.done():
            self.connected.set_result(None)
        self.flush()
        self._arm_timer()

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self.engine.receive_data(data)
        self._received(len(data))

    def get_buffer(self, sizehint: int) -> memoryview:
        return _read_buffer()

    def buffer_updated(self, nbytes: int) -> None:
        if self.closed:
            return
        engine = self.engine
        engine.receive_data(_read_buffer()[:nbytes], borrowed=True)
        try:
            self._received(nbytes)
        finally:
            engine.release_borrowed()

    def _received(self, size: int) -> None:
        if self._download_limit is not None and not self._download_limit.unlimited:
            delay = self._download_limit.consume(size)
            if delay > 0 and self.transport is not None and not self._reading_paused:
                self._reading_paused = True
                self.transport.pause_reading()
                self._loop.call_later(delay, self._resume_reading)
        self.pump()

    def pause_writing(self) -> None:
        self.writable = False

    def resume_writing(self) -> None:
        if self._draining and self.transport is not None:
            self._draining = False
            self.transport.set_write_buffer_limits(high=HIGH_WATER, low=LOW_WATER)
        self.writable = True
        if not self.closed:
            self.handler.peer_writable(self)

    def connection_lost(self, exc: Exception | None) -> None:
        reason = self.close_reason or (f"connection lost: {exc}" if exc else "closed by peer")
        self._finish(reason)

    def eof_received(self) -> bool | None:
        return None  # close the transport

    # --- pumping ---------------------------------------------------------------------------------

    def pump(self) -> None:
        """Hand every pending engine event to the handler, then write the engine's output."""
        if self._in_pump or self.closed:
            return
        self._in_pump = True
        engine = self.engine
        try:
            while not self.closed:
                event = engine.next_event()
                if event is None:
                    break
                self.handler.peer_event(self, event)  # re-read: an incoming peer changes hands
            hook = getattr(self.handler, "peer_pumped", None)
            if hook is not None and not self.closed:
                hook(self)
        except RemoteProtocolError as exc:
            self.close(f"protocol violation: {exc}")
            return
        except LocalProtocolError as exc:
            self.close(f"internal error: {exc}")
            return
        finally:
            self._in_pump = False
        self.flush()

    def flush(self) -> None:
        """Send whatever the engine has queued, coalescing small writes.

        Each write to a socket is a system call (on loopback it also runs the receiver's TCP
        stack), so the driver batches: output is moved to a pending list and written with one
        ``writelines`` at the end of the current loop iteration, so every block served or
        request queued in one burst goes out in one call.  At :data:`WRITE_NOW` pending bytes it
        is written at once, which keeps the transport's backpressure (:attr:`writable`) prompt
        and the pending list bounded.  Small output (requests) waits up to :data:`HOLD_DELAY`
        seconds for more while at least :data:`HOLD_IN_FLIGHT` of our requests are in flight, so
        the peer never runs dry while we save most of the small writes of a fast download.
        """
        if self.transport is None or self.closed:
            return
        buffers = self.engine.buffers_to_send()
        if buffers:
            self._pending.extend(buffers)
            size = self._pending_bytes
            for buf in buffers:
                size += len(buf)
            self._pending_bytes = size
        if not self._pending:
            return
        if self._pending_bytes >= WRITE_NOW:
            self._write_pending()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._deferred_flush)

    def _deferred_flush(self) -> None:
        self._flush_scheduled = False
        if self.closed or not self._pending:
            return
        small = self._pending_bytes
        if small < HOLD_BYTES and self.engine.outstanding_count - small // 17 >= HOLD_IN_FLIGHT:
            if self._hold is None:
                self._hold = self._loop.call_later(HOLD_DELAY, self._write_pending)
            return
        self._write_pending()

    def _write_pending(self) -> None:
        if self._hold is not None:
            self._hold.cancel()
            self._hold = None
        pending = self._pending
        if not pending or self.transport is None or self.closed:
            return
        self._pending = []
        self._pending_bytes = 0
        self.transport.writelines(pending)

    # --- blocks straight from files -------------------------------------------------------------

    @property
    def direct(self) -> bool:
        """Whether :meth:`send_block_direct` may be used (plain TCP payload, Linux)."""
        return self._sock is not None and not self.closed

    def begin_direct(self) -> bool:
        """Write out everything queued (engine output included); True when the transport's buffer is
        then empty, so blocks may go straight to the socket until :attr:`writable` turns False or the
        loop runs other code.  False: wait for :attr:`writable`."""
        transport = self.transport
        if transport is None or self.closed:
            return False
        buffers = self.engine.buffers_to_send()
        if buffers:
            self._pending.extend(buffers)
        if self._pending:
            self._write_pending()
        if transport.get_write_buffer_size():
            self._wait_drained()
            return False
        return self.writable

    def send_block_direct(self, header: bytes, fd: int, offset: int, length: int) -> bool:
        """Write one piece message: ``header`` (from ``PeerConnection.answer_request``), then
        ``length`` bytes of file ``fd`` at ``offset`` (in the page cache: ``sendfile`` runs on the
        event loop).  What the socket does not take is read and handed to the transport.  Only
        after :meth:`begin_direct` returned True and while :attr:`writable`.  Returns False when the
        file ended before the block did or could not be read: the message cannot be completed, the
        connection is closed (the caller reports the piece lost)."""
        sock = self._sock
        if sock is None or self.transport is None:
            return True  # closed meanwhile: nothing more goes out
        rest = header
        done = 0
        try:
            rest = header[sock.send(header, _MSG_MORE) :]
            if not rest:
                out = sock.fileno()
                while done < length:
                    sent = os.sendfile(out, fd, offset + done, length - done)
                    if sent <= 0:
                        break  # the file ended
                    done += sent
                else:
                    return True
        except (BlockingIOError, InterruptedError):
            pass  # the socket is full: the transport takes the rest
        except OSError as exc:
            if exc.errno in _SOCKET_GONE:
                self.close(f"connection lost: {exc}")
                return True
            self.close(f"reading a served file failed: {exc.strerror or exc}")  # the block is cut
            return False
        try:
            data = os.pread(fd, length - done, offset + done)
        except OSError:
            data = b""
        if len(data) != length - done:
            self.close("a served file ended in the middle of a block")
            return False
        self.transport.writelines([rest, data])
        self._wait_drained()
        return True

    def _wait_drained(self) -> None:
        """:attr:`writable` False until the transport's buffer is empty (limits of 0: the transport
        calls ``pause_writing`` now and ``resume_writing`` once it drained)."""
        if not self._draining and self.transport is not None:
            self._draining = True
            self.transport.set_write_buffer_limits(high=0, low=0)

    def _resume_reading(self) -> None:
        if self._reading_paused and self.transport is not None and not self.closed:
            self._reading_paused = False
            self.transport.resume_reading()

    def _arm_timer(self) -> None:
        if self.closed:
            return
        when = self.engine.get_timer()
        self._timer = self._loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self.closed:
            return
        self.engine.handle_timer(self._loop.time())
        self.pump()
        self._arm_timer()

    # --- closing ---------------------------------------------------------------------------------

    def close(self, reason: str) -> None:
        """Close the connection (idempotent); the handler hears :meth:`PeerHandler.peer_closed` once."""
        if self.closed:
            return
        self.close_reason = reason
        if self.transport is not None:
            self._write_pending()  # a last message (reject, bitfield...) goes out before the FIN
            self.transport.close()
            # connection_lost follows from the loop and calls _finish; be explicit for aborts too
        self._finish(reason)

    def _finish(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._hold is not None:
            self._hold.cancel()
            self._hold = None
        self._pending = []
        self._pending_bytes = 0
        if self._sock is not None:
            self._sock.detach()  # the transport's descriptor: never ours to close
            self._sock = None
        if not self.connected.done():
            self.connected.set_exception(ConnectionError(reason))
            self.connected.exception()  # mark retrieved
        self.handler.peer_closed(self, reason)

    def __repr__(self) -> str:
        return f"<PeerDriver #{self.id} {self.address} {'out' if self.outgoing else 'in'}>"


async def open_peer_connection(
    address: PeerAddress,
    engine: PeerConnection,
    handler: PeerHandler,
    *,
    timeout: float = 10.0,
    download_limit: TokenBucket | None = None,
    on_created: Callable[[PeerDriver], None] | None = None,
) -> PeerDriver:
    """Dial ``address`` and start pumping ``engine`` (an initiator: it already queued its handshake).

    ``on_created`` sees the driver before the socket connects, so a handler can register it before
    its first event (the peer may answer within the same loop iteration as the connect).
    """
    loop = asyncio.get_running_loop()
    driver = PeerDriver(engine, handler, address=address, outgoing=True, download_limit=download_limit)
    if on_created is not None:
        on_created(driver)
    try:
        await asyncio.wait_for(
            loop.create_connection(lambda: driver, address.host, address.port), timeout=timeout
        )
    except (OSError, TimeoutError) as exc:
        driver._finish(f"connect failed: {exc or type(exc).__name__}")
        raise ConnectionError(f"cannot connect to {address}: {exc or type(exc).__name__}") from exc
    return driver
