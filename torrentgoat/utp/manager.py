"""The uTP socket manager (BEP 29), sans-IO: every connection behind one UDP socket.

:class:`UTPSocketManager` is what a driver pumps (aioquic's vocabulary)::

    manager = UTPSocketManager(rng=random.Random(), now=loop.time(), config=UTPConfig(...),
                               path_datagram=lambda host: 65507 if host.startswith("127.") else 1472)
    key = manager.connect(("10.0.0.5", 6881), now)         # outgoing: SYN queued
    manager.receive_datagram(data, addr, now)              # every uTP datagram from the socket
    for data, addr in manager.datagrams_to_send(now): sock.sendto(data, addr)
    while (event := manager.next_event()) is not None: ...  # ConnectionAccepted, DataReceived, ...
    manager.send(key, b"..."); manager.close(key, now); manager.abort(key, now)
    manager.pause_reading(key); manager.resume_reading(key)
    timer at manager.get_timer() -> manager.handle_timer(now)

Demultiplexing: a connection is found by ``(peer address, connection_id)`` -- its *receive* id.
A SYN that matches nothing creates an incoming connection (unless over the caps); a duplicate SYN
goes to the connection it created.  A RESET must match a connection's id *and* come from that
connection's peer address; its ``ack_nr`` must echo a sequence number the connection sent recently
(see :meth:`UTPConnection.receive`).  libutp peers answer with *our* send id in a RESET, so a
RESET is also matched on ``send_id`` (as libutp does).

Any other packet for an unknown connection is answered with one 20-byte ST_RESET carrying the
packet's connection id (libutp's reply; libtorrent drops such packets silently), rate-limited by a
token bucket (:attr:`UTPConfig.reset_rate`): never more bytes out than in, never a flood.  A RESET
for an unknown connection is never answered.

Bounded state: at most ``max_connections`` connections (a SYN beyond it is ignored), at most
``max_half_open`` unconfirmed incoming ones (a new SYN evicts the oldest, silently), and at most
``max_buffered_bytes`` buffered on the receive side across connections.  Packets with random
connection ids cost one dictionary lookup each.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections import OrderedDict, deque
from collections.abc import Callable

from torrentgoat.errors import LocalProtocolError, UTPPacketError
from torrentgoat.utp.config import UTPConfig
from torrentgoat.utp.connection import State, UTPConnection, _micros
from torrentgoat.utp.events import Addr, ConnectionAccepted, Event
from torrentgoat.utp.packet import (
    HEADER,
    HEADER_SIZE,
    ST_DATA,
    ST_RESET,
    ST_STATE,
    ST_SYN,
    VERSION,
    Packet,
    decode,
)
from torrentgoat.utp.receiver import PendingData, ReceiveBudget

__all__ = ["ManagerStats", "UTPSocketManager"]

_unpack_header = HEADER.unpack_from
_FAST_TYPES = (ST_DATA << 4 | VERSION, ST_STATE << 4 | VERSION)
"""First header bytes of the packets :meth:`UTPConnection.receive_fast` may take."""


class ManagerStats:
    """Counters of what the manager saw (for tests, logs and hostile-input accounting)."""

    __slots__ = (
        "accepted",
        "datagrams_in",
        "datagrams_out",
        "evicted_half_open",
        "invalid",
        "resets_sent",
        "resets_suppressed",
        "syn_refused",
        "unknown",
    )

    def __init__(self) -> None:
        self.datagrams_in = 0
        self.datagrams_out = 0
        self.invalid = 0
        """Datagrams that were not valid uTP."""
        self.unknown = 0
        """Valid packets for no known connection."""
        self.resets_sent = 0
        self.resets_suppressed = 0
        """RESET answers the rate limit withheld."""
        self.accepted = 0
        self.syn_refused = 0
        self.evicted_half_open = 0

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


class UTPSocketManager:
    """All uTP connections of one UDP socket.  See the module docstring."""

    def __init__(
        self,
        *,
        rng: random.Random,
        now: float,
        config: UTPConfig | None = None,
        path_datagram: Callable[[str], int] | None = None,
    ) -> None:
        self.config = config or UTPConfig()
        self.rng = rng
        self._path_datagram = path_datagram
        self._conns: dict[tuple[Addr, int], UTPConnection] = {}
        self._by_key: dict[int, UTPConnection] = {}
        self._half_open: OrderedDict[int, UTPConnection] = OrderedDict()
        self._events: deque[Event | PendingData] = deque()
        self._active: dict[int, UTPConnection] = {}
        self._timers: list[tuple[float, int]] = []
        self._armed: dict[int, float] = {}
        self._dirty: dict[int, UTPConnection] = {}
        self._raw: list[tuple[bytes, Addr]] = []
        self._keys = itertools.count(1)
        self._budget = ReceiveBudget(self.config.max_buffered_bytes)
        self._reset_tokens = float(self.config.reset_rate)
        self._reset_refill = now
        self.accept_incoming = self.config.accept_incoming
        """Answer SYNs (the driver turns this off while nobody listens): when False, a SYN gets
        a (rate-limited) RESET, so the dial fails at once as a refused TCP connect does."""
        self.stats = ManagerStats()

    # --- introspection ---------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._by_key)

    def connection(self, key: int) -> UTPConnection:
        """The connection ``key`` (KeyError once it is gone)."""
        return self._by_key[key]

    def get(self, key: int) -> UTPConnection | None:
        return self._by_key.get(key)

    @property
    def buffered_bytes(self) -> int:
        """Bytes held on the receive side by all connections (out of order or not yet read)."""
        return self._budget.used

    # --- application calls -----------------------------------------------------------------------

    def connect(self, addr: Addr, now: float) -> int:
        """Open a connection to ``addr``; returns its key.  The SYN goes out with the next
        :meth:`datagrams_to_send`; :class:`ConnectionEstablished` or :class:`ConnectionClosed` follows."""
        if len(self._by_key) >= self.config.max_connections:
            raise LocalProtocolError(f"uTP connection limit ({self.config.max_connections}) reached")
        addr = (addr[0], int(addr[1]))
        for _ in range(64):
            recv_id = self.rng.getrandbits(16)
            if (addr, recv_id) not in self._conns and (addr, (recv_id + 1) & 0xFFFF) not in self._conns:
                break
        else:
            raise LocalProtocolError(f"no free uTP connection id towards {addr[0]}:{addr[1]}")
        conn = self._new(addr, recv_id, (recv_id + 1) & 0xFFFF, True, now)
        self._wake(conn)
        return conn.key

    def send(self, key: int, data: bytes | bytearray | memoryview) -> None:
        conn = self._by_key[key]
        conn.send(data)
        self._wake(conn)

    def close(self, key: int, now: float) -> None:
        """Graceful close (FIN after the queued data); unknown keys are ignored."""
        conn = self._by_key.get(key)
        if conn is not None:
            conn.close(now)
            self._wake(conn)

    def abort(self, key: int, now: float) -> None:
        """ST_RESET and forget; unknown keys are ignored."""
        conn = self._by_key.get(key)
        if conn is not None:
            conn.abort(now)
            self._wake(conn)

    def pause_reading(self, key: int) -> None:
        conn = self._by_key.get(key)
        if conn is not None:
            conn.pause_reading()

    def resume_reading(self, key: int) -> None:
        conn = self._by_key.get(key)
        if conn is not None:
            conn.resume_reading()
            self._wake(conn)

    def close_all(self, now: float) -> None:
        """Abort every connection (shutdown): RESETs queued, ConnectionClosed for each."""
        for conn in list(self._by_key.values()):
            if not conn.closed:
                conn.abort(now)
                self._wake(conn)

    # --- datagrams in ----------------------------------------------------------------------------

    def receive_datagram(self, data: bytes, addr: Addr, now: float) -> None:
        """One datagram from the socket (anything: invalid ones are counted and dropped).

        Most datagrams of a transfer are ST_DATA or ST_STATE without extensions for a connected
        connection: for those the 20-byte header (BEP 29 "Header format") is unpacked once and
        handed to :meth:`UTPConnection.receive_fast`; everything else is decoded into a
        :class:`Packet` and goes through the transition table."""
        self.stats.datagrams_in += 1
        if type(data) is not bytes:
            data = bytes(data)
        if len(data) >= HEADER_SIZE:
            type_ver, extension, conn_id, ts, ts_diff, wnd, seq_nr, ack_nr = _unpack_header(data)
            if not extension and type_ver in _FAST_TYPES:
                conn = self._conns.get((addr, conn_id))
                if conn is not None and conn.receive_fast(
                    type_ver >> 4, seq_nr, ack_nr, ts, ts_diff, wnd, data, now
                ):
                    key = conn.key
                    self._active[key] = conn
                    self._dirty[key] = conn
                    return
        try:
            packet = decode(data)
        except UTPPacketError:
            self.stats.invalid += 1
            return
        conn = self._conns.get((addr, packet.connection_id))
        if conn is None:
            if packet.type == ST_SYN:
                conn = self._conns.get((addr, (packet.connection_id + 1) & 0xFFFF))
                if conn is None:
                    self._incoming(packet, addr, now)
                    return
                if conn.initiator or conn.send_id != packet.connection_id:
                    self.stats.syn_refused += 1  # collides with one of our own ids
                    return
            elif packet.type == ST_RESET:
                conn = self._reset_target(addr, packet.connection_id)
                if conn is None:
                    self.stats.unknown += 1
                    return
            else:
                self.stats.unknown += 1
                self._answer_reset(packet.connection_id, packet.seq_nr, addr, now)
                return
        was_half_open = conn.state is State.SYN_RECV
        conn.receive(packet, now)
        if was_half_open and conn.state is not State.SYN_RECV:
            self._half_open.pop(conn.key, None)
        self._wake(conn)

    def _reset_target(self, addr: Addr, conn_id: int) -> UTPConnection | None:
        """libutp answers with the id it saw (our send id): our recv id is that +-1."""
        for recv_id in ((conn_id + 1) & 0xFFFF, (conn_id - 1) & 0xFFFF):
            conn = self._conns.get((addr, recv_id))
            if conn is not None and conn.send_id == conn_id:
                return conn
        return None

    def _incoming(self, packet: Packet, addr: Addr, now: float) -> None:
        conn_id = packet.connection_id
        config = self.config
        if not self.accept_incoming:
            self.stats.syn_refused += 1
            self._answer_reset(conn_id, packet.seq_nr, addr, now)
            return
        if len(self._half_open) >= config.max_half_open:
            _, oldest = self._half_open.popitem(last=False)
            self.stats.evicted_half_open += 1
            oldest.evict(now)  # no RESET: its peer never confirmed, it may be spoofed
            self._wake(oldest)
        if len(self._by_key) >= config.max_connections:
            self.stats.syn_refused += 1
            return
        conn = self._new(addr, (conn_id + 1) & 0xFFFF, conn_id, False, now, packet.max_datagram)
        conn.accept_syn(packet, now)
        self._half_open[conn.key] = conn
        self.stats.accepted += 1
        self._events.append(ConnectionAccepted(key=conn.key, addr=addr))
        self._wake(conn)

    def _new(
        self,
        addr: Addr,
        recv_id: int,
        send_id: int,
        initiator: bool,
        now: float,
        peer_datagram: int | None = None,
    ) -> UTPConnection:
        path = self._path_datagram(addr[0]) if self._path_datagram is not None else self.config.max_datagram
        conn = UTPConnection(
            key=next(self._keys),
            addr=addr,
            recv_id=recv_id,
            send_id=send_id,
            initiator=initiator,
            now=now,
            rng=self.rng,
            config=self.config,
            events=self._events,
            budget=self._budget,
            path_datagram=path,
            peer_datagram=peer_datagram,
        )
        self._conns[(addr, recv_id)] = conn
        self._by_key[conn.key] = conn
        return conn

    def _answer_reset(self, conn_id: int, seq_nr: int, addr: Addr, now: float) -> None:
        rate = self.config.reset_rate
        tokens = min(rate, self._reset_tokens + (now - self._reset_refill) * rate)
        self._reset_refill = now
        if tokens < 1.0:
            self._reset_tokens = tokens
            self.stats.resets_suppressed += 1
            return
        self._reset_tokens = tokens - 1.0
        reset = HEADER.pack(
            ST_RESET << 4 | 1, 0, conn_id, _micros(now), 0, 0, self.rng.getrandbits(16), seq_nr
        )
        self._raw.append((reset, addr))
        self.stats.resets_sent += 1

    # --- datagrams out ---------------------------------------------------------------------------

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Addr]]:
        """Everything to send now, across connections (acks coalesced: one per connection per call
        unless data carries it)."""
        result = self._raw
        self._raw = []
        if self._active:
            active = self._active
            self._active = {}
            batch: list[bytes] = []
            for conn in active.values():
                if conn.wants_output:
                    conn.datagrams(now, batch)
                    if batch:
                        addr = conn.addr
                        result.extend([(data, addr) for data in batch])
                        batch.clear()
                self._dirty[conn.key] = conn
                if conn.closed and now >= conn.linger_until:
                    self._forget(conn)
        self.stats.datagrams_out += len(result)
        return result

    # --- events ----------------------------------------------------------------------------------

    def next_event(self) -> Event | None:
        events = self._events
        if not events:
            return None
        event = events.popleft()
        if isinstance(event, PendingData):
            return event.event()
        return event

    # --- timers ----------------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        """The earliest deadline of any connection (None: no connection needs a timer)."""
        if self._dirty:
            timers = self._timers
            armed = self._armed
            for key, conn in self._dirty.items():
                if key not in self._by_key:
                    armed.pop(key, None)
                    continue
                when = conn.get_timer()
                if when is None:
                    armed.pop(key, None)
                elif armed.get(key) != when:
                    armed[key] = when
                    heapq.heappush(timers, (when, key))
            self._dirty = {}
            if len(timers) > 4 * len(armed) + 64:  # superseded entries pile up: rebuild
                timers = self._timers = [(when, key) for key, when in armed.items()]
                heapq.heapify(timers)
        timers = self._timers
        while timers:
            when, key = timers[0]
            if self._armed.get(key) == when:
                return when
            heapq.heappop(timers)
        return None

    def handle_timer(self, now: float) -> None:
        self.get_timer()  # fold in pending changes
        timers = self._timers
        while timers and timers[0][0] <= now:
            when, key = heapq.heappop(timers)
            if self._armed.get(key) != when:
                continue
            del self._armed[key]
            conn = self._by_key.get(key)
            if conn is None:
                continue
            if conn.closed:
                if now >= conn.linger_until and not conn.wants_output:
                    self._forget(conn)
                else:
                    self._wake(conn)
                continue
            was_half_open = conn.state is State.SYN_RECV
            conn.handle_timer(now)
            if was_half_open and conn.state is not State.SYN_RECV:
                self._half_open.pop(conn.key, None)
            self._wake(conn)

    # --- bookkeeping -----------------------------------------------------------------------------

    def _wake(self, conn: UTPConnection) -> None:
        self._active[conn.key] = conn
        self._dirty[conn.key] = conn

    def _forget(self, conn: UTPConnection) -> None:
        self._conns.pop((conn.addr, conn.recv_id), None)
        self._by_key.pop(conn.key, None)
        self._half_open.pop(conn.key, None)
        self._armed.pop(conn.key, None)
