"""The send side's bookkeeping for a uTP connection (BEP 29): the byte queue the application writes
into, the packets in flight, and path MTU discovery.

Path MTU discovery follows libtorrent's scheme: data packets use the largest UDP payload known to
work (``floor``); one packet at a time may be a *probe* of the midpoint of ``[floor, ceiling]``.
An acknowledged probe raises the floor, a lost one lowers the ceiling (and is not counted as
congestion).  The search starts between the smallest payload every path must carry (576-byte
IPv4 / 1280-byte IPv6 packets) and the ceiling: the path's limit (the local route's MTU) and,
unless the peer announced a larger one (torrentgoat's datagram-limit extension, see
:mod:`.packet`), an Ethernet-sized payload, because libtorrent truncates larger datagrams.
"""

from __future__ import annotations

from collections import deque

__all__ = ["PROBE_GRANULARITY", "OutPacket", "PathMtu", "SendQueue"]

PROBE_GRANULARITY = 16
"""Probing stops once ``ceiling - floor`` is this small (bytes)."""
_IPV4_OVERHEAD = 28
_IPV6_OVERHEAD = 48


class OutPacket:
    """A packet we sent and that is not acknowledged yet (the datagram as first sent: a
    retransmission puts a fresh header in front of the same payload)."""

    __slots__ = (
        "datagram",
        "fast_resent",
        "header_size",
        "kind",
        "length",
        "lost",
        "probe",
        "sent_at",
        "transmissions",
    )

    def __init__(self, kind: int, datagram: bytes, header_size: int, now: float, probe: bool) -> None:
        self.kind = kind
        self.datagram = datagram
        self.header_size = header_size
        self.length = len(datagram) - header_size
        """Payload bytes."""
        self.sent_at = now
        self.transmissions = 1
        self.lost = False
        self.fast_resent = False
        self.probe = probe

    @property
    def size(self) -> int:
        """Datagram size when first sent (MTU probing)."""
        return len(self.datagram)


class SendQueue:
    """Bytes written but not yet packetized; taken as views to join into a datagram."""

    __slots__ = ("_chunks", "_head", "_offset", "size")

    def __init__(self) -> None:
        self._chunks: deque[bytes | memoryview] = deque()
        self._head: memoryview | None = None
        """The first chunk, being taken from at ``_offset`` (None: start on ``_chunks[0]``)."""
        self._offset = 0
        self.size = 0

    def append(self, data: bytes | bytearray | memoryview) -> None:
        """Queue ``data``: by reference when immutable, else copied (asyncio's ``write()`` lets
        the caller reuse its buffer at once)."""
        if isinstance(data, bytes):
            chunk: bytes | memoryview = data
        elif isinstance(data, memoryview) and data.readonly and isinstance(data.obj, bytes):
            chunk = data
        else:
            chunk = bytes(data)
        self._chunks.append(chunk)
        self.size += len(chunk)

    def take(self, size: int, parts: list[bytes | memoryview]) -> None:
        """Append the next ``size`` bytes to ``parts`` as views of the queued buffers (no copy:
        the caller joins them with the header into the datagram)."""
        self.size -= size
        head = self._head
        offset = self._offset
        while size:
            if head is None:
                chunk = self._chunks.popleft()
                if len(chunk) <= size:
                    parts.append(chunk)
                    size -= len(chunk)
                    continue
                head = chunk if isinstance(chunk, memoryview) else memoryview(chunk)
                offset = 0
            end = offset + size
            if end < len(head):
                parts.append(head[offset:end])
                offset = end
                break
            parts.append(head[offset:])
            size = end - len(head)
            head = None
        self._head = head
        self._offset = offset

    def clear(self) -> None:
        self._chunks.clear()
        self._head = None
        self.size = 0


class PathMtu:
    """The binary search for the largest datagram the path carries (see the module docstring)."""

    __slots__ = ("ceiling", "floor", "path", "probe_seq")

    def __init__(self, *, path: int, peer: int | None, ethernet: int, ipv6: bool) -> None:
        self.path = path
        """The local route's limit: no probe goes beyond it."""
        default = ethernet - (_IPV6_OVERHEAD - _IPV4_OVERHEAD if ipv6 else 0)
        minimum = (1280 - _IPV6_OVERHEAD) if ipv6 else (576 - _IPV4_OVERHEAD)
        if peer is not None:
            # Every host takes datagrams of the IP minimum; a peer announcing less (a SYN's extension
            # is anyone's to forge) once made a data packet smaller than its header: an endless loop.
            peer = max(peer, minimum)
        self.ceiling = min(path, peer or default)
        self.floor = min(minimum, self.ceiling)
        self.probe_seq: int | None = None

    def peer_limit(self, size: int) -> None:
        """The peer announced the largest datagram it accepts."""
        ceiling = max(self.floor, min(self.path, size))
        if ceiling > self.ceiling:
            self.ceiling = ceiling

    def probe_size(self, cwnd: int, room: int, queued: int, header_size: int) -> int | None:
        """The size of the next data packet if it should be a probe (None: use ``floor``): no
        probe outstanding, the window holds three floor-sized packets, and enough data is queued
        to fill it within the room the windows leave."""
        if self.probe_seq is not None or self.ceiling - self.floor <= PROBE_GRANULARITY:
            return None
        if cwnd < 3 * self.floor:
            return None
        candidate = (self.floor + self.ceiling) // 2
        payload = candidate - header_size
        return candidate if queued >= payload and payload <= room else None

    def acked(self, seq: int, size: int) -> bool:
        """Packet ``seq`` of ``size`` bytes arrived; True if it was the probe and raised the floor."""
        if seq != self.probe_seq:
            return False
        self.probe_seq = None
        if size > self.floor:
            self.floor = min(size, self.ceiling)
            return True
        return False

    def lost(self, seq: int, size: int) -> bool:
        """Packet ``seq`` was lost; True if it was the probe (presumably too big: not congestion)."""
        if seq != self.probe_seq:
            return False
        self.probe_seq = None
        self.ceiling = max(self.floor, size - 1)
        return True
