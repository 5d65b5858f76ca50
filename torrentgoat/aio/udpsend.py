"""Sending datagrams out of one non-blocking UDP socket (level L4), for the uTP endpoint (BEP 29).

:class:`DatagramSender` takes ``(data, address)`` lists in order and sends them:

* runs of equal-size datagrams to one address (a uTP connection's data packets; the last of a
  run may be shorter) leave in one ``sendmsg`` with Linux UDP generic segmentation offload
  (``UDP_SEGMENT``, kernel 4.18+): the kernel cuts the buffer into the same datagrams, so the
  peer sees no difference, at a fraction of the cost of a ``sendto`` each.  Where the option is
  missing, or the route's device refuses it (``EIO``: no checksum offload), datagrams go one
  ``sendto`` each from then on;
* a full socket send buffer keeps the rest, in order, in a backlog until the socket is writable
  (then ``on_drained`` is called so the owner can produce more);
* a datagram the kernel refuses (``EMSGSIZE`` for a path MTU probe that is too big, an
  unreachable network) is counted in :attr:`DatagramSender.dropped` and otherwise lost: uTP's
  loss handling takes it from there.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import struct
import sys
from collections.abc import Callable

__all__ = ["GSO_SEGMENTS", "DatagramSender", "gso_available"]

Addr = tuple[str, int]

_UDP_SEGMENT = 103  # <linux/udp.h>: a SOL_UDP cmsg (or socket option) with the u16 segment size
GSO_SEGMENTS = 64
"""Most datagrams in one segmentation-offload send (the kernel's ``UDP_MAX_SEGMENTS`` of old)."""
_GSO_BYTES = 65000
"""Most bytes in one such send (below the 65507 of one IPv4 UDP datagram)."""
_GSO_UNSUPPORTED = frozenset((errno.EIO, errno.ENOPROTOOPT, errno.EOPNOTSUPP, errno.EINVAL))


def gso_available(sock: socket.socket) -> bool:
    """True if the kernel knows ``UDP_SEGMENT`` (Linux 4.18+) for this socket."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        sock.getsockopt(socket.IPPROTO_UDP, _UDP_SEGMENT)
    except OSError:
        return False
    return True


class DatagramSender:
    """See the module docstring.  ``gso=False`` sends every datagram with its own ``sendto``."""

    def __init__(
        self,
        sock: socket.socket,
        loop: asyncio.AbstractEventLoop,
        on_drained: Callable[[], None],
        *,
        gso: bool = True,
    ) -> None:
        self._sock = sock
        self._loop = loop
        self._on_drained = on_drained
        self.gso = gso and gso_available(sock)
        """Segmentation offload in use (turned off after the first refusal)."""
        self.gso_sends = 0
        """``sendmsg`` calls that carried several datagrams."""
        self.dropped = 0
        """Datagrams the kernel refused."""
        self._backlog: list[tuple[bytes, Addr]] = []
        self._writer_added = False
        self._cmsg: dict[int, list[tuple[int, int, bytes]]] = {}
        self._closed = False

    @property
    def blocked(self) -> bool:
        """The socket buffer was full: datagrams wait for it to drain."""
        return bool(self._backlog)

    def send_one(self, data: bytes, addr: Addr) -> None:
        """One datagram (after anything waiting)."""
        if self._backlog:
            self._backlog.append((data, addr))
        else:
            self.send([(data, addr)])

    def send(self, datagrams: list[tuple[bytes, Addr]]) -> None:
        """Send in order (the caller checks :attr:`blocked` first; see the module docstring)."""
        if self._closed:
            return
        sock = self._sock
        sendto = sock.sendto
        count = len(datagrams)
        index = 0
        single = not self.gso
        while index < count:
            data, addr = datagrams[index]
            end = index + 1
            size = len(data)
            if not single and size:
                limit = min(count, index + min(GSO_SEGMENTS, _GSO_BYTES // size))
                while end < limit:
                    other, dest = datagrams[end]
                    length = len(other)
                    if length != size or dest != addr:
                        if 0 < length < size and dest == addr:
                            end += 1  # a shorter last segment
                        break
                    end += 1
            try:
                if end - index == 1:
                    sendto(data, addr)
                else:
                    sock.sendmsg([d for d, _ in datagrams[index:end]], self._segment(size), 0, addr)
                    self.gso_sends += 1
            except (BlockingIOError, InterruptedError):
                self._backlog.extend(datagrams[index:])
                if not self._writer_added:
                    self._loop.add_writer(sock.fileno(), self._on_writable)
                    self._writer_added = True
                return
            except OSError as exc:
                if end - index > 1:
                    # segmentation refused: this run one datagram at a time, and no offload at
                    # all any more if the kernel or the device cannot do it
                    if exc.errno in _GSO_UNSUPPORTED:
                        self.gso = False
                    single = True
                    continue
                self.dropped += 1
            single = not self.gso
            index = end

    def _segment(self, size: int) -> list[tuple[int, int, bytes]]:
        cmsg = self._cmsg.get(size)
        if cmsg is None:
            cmsg = self._cmsg[size] = [(socket.IPPROTO_UDP, _UDP_SEGMENT, struct.pack("=H", size))]
        return cmsg

    def _on_writable(self) -> None:
        backlog = self._backlog
        self._backlog = []
        self._remove_writer()
        self.send(backlog)
        if not self._backlog:
            self._on_drained()

    def _remove_writer(self) -> None:
        if self._writer_added:
            self._loop.remove_writer(self._sock.fileno())
            self._writer_added = False

    def close(self) -> None:
        """Stop watching the socket; what waits in the backlog is dropped."""
        self._remove_writer()
        self._backlog.clear()
        self._closed = True
