"""One uTP connection (BEP 29), sans-IO: packets in, datagrams out, time passed in.

A :class:`UTPConnection` is created and driven by :class:`~torrentgoat.utp.manager.UTPSocketManager`
(which demultiplexes datagrams by connection id and address); it is not used alone.

States and the transition table (:mod:`.state`, h11's split: everything that changes
:attr:`UTPConnection.state` is in :data:`~torrentgoat.utp.state.TRANSITIONS`; a packet whose type
the table does not list for the current state is ignored, a local call it does not list raises
:class:`~torrentgoat.errors.LocalProtocolError`)::

    SYN_SENT  --STATE/DATA/FIN acking our SYN-->  CONNECTED      (initiator)
    SYN_RECV  --any non-SYN packet from the peer-->  CONNECTED   (responder: the peer is confirmed)
    SYN_RECV | CONNECTED  --close()-->  CLOSING  --our FIN acked-->  CLOSED
    any  --RESET / too many timeouts / abort()-->  CLOSED

Sequence numbers (BEP 29 "Connection setup"): each side picks a random initial ``seq_nr``; DATA
and the SYN consume one, ST_STATE carries the next one without consuming it, and our FIN takes
``seq_nr`` without advancing it (as libtorrent does: our later ST_STATEs carry the FIN's number,
which a libtorrent peer requires).  The SYN goes out with ``connection_id = recv_id``; everything
else with ``send_id`` (``recv_id + 1`` for the initiator, ``recv_id - 1`` for the responder).
All comparisons are modulo 2**16.

Reliability: cumulative ``ack_nr`` plus the selective-ack bitmask; a packet is retransmitted at
once when 3 later packets were acked (selective ack) or 3 duplicate ST_STATE acks arrived, and
everything in flight when the retransmission timeout (``rtt + 4 rtt_var``, at least 500 ms,
doubled per consecutive timeout) expires.  Karn's rule: RTT samples only from packets sent once.

Congestion: :class:`~torrentgoat.utp.congestion.Ledbat`; the send window is
``min(cwnd, peer's wnd_size)``.  Flow control: we advertise our free receive buffer; a closed
window is probed at the retransmission timeout without counting towards giving up.

The receive half (delivery, reordering, the peer's FIN, our window) is a
:class:`~torrentgoat.utp.receiver.Receiver`; the send queue, packets in flight and path MTU
discovery are in :mod:`.outgoing`.  A responder sends no data until the initiator has confirmed
the connection with a second packet (a spoofed SYN gets only our small ST_STATE); an initiator
acks the SYN-ACK at once for that reason.
"""

from __future__ import annotations

import random
import struct
from collections import deque
from itertools import takewhile
from typing import Final

from torrentgoat.errors import LocalProtocolError
from torrentgoat.utp.config import UTPConfig
from torrentgoat.utp.congestion import DelayHistory, Ledbat, RttEstimator
from torrentgoat.utp.events import (
    Addr,
    CloseReason,
    ConnectionClosed,
    ConnectionEstablished,
    Event,
)
from torrentgoat.utp.outgoing import PROBE_GRANULARITY, OutPacket, PathMtu, SendQueue
from torrentgoat.utp.packet import (
    EXT_NONE,
    HEADER,
    HEADER_SIZE,
    ST_DATA,
    ST_FIN,
    ST_RESET,
    ST_STATE,
    ST_SYN,
    Packet,
    encode_extensions,
    sack_positions,
)
from torrentgoat.utp.receiver import HALF, MASK, PendingData, ReceiveBudget, Receiver, seq_after
from torrentgoat.utp.state import _INPUT_OF_TYPE, TRANSITIONS, Input, State

__all__ = ["TRANSITIONS", "Input", "State", "UTPConnection"]

_U32: Final = 0xFFFFFFFF
_HEAD: Final = struct.Struct(">BBHIII")
"""The header up to ``seq_nr`` (:data:`~torrentgoat.utp.packet.HEADER` without its last two fields)."""
_CONNECTED: Final = State.CONNECTED


class UTPConnection:
    """One connection; see the module docstring.  Created by the manager."""

    def __init__(
        self,
        *,
        key: int,
        addr: Addr,
        recv_id: int,
        send_id: int,
        initiator: bool,
        now: float,
        rng: random.Random,
        config: UTPConfig,
        events: deque[Event | PendingData],
        budget: ReceiveBudget,
        path_datagram: int,
        peer_datagram: int | None = None,
    ) -> None:
        self.key = key
        self.addr = addr
        self.recv_id = recv_id
        self.send_id = send_id
        self.initiator = initiator
        self.config = config
        self.created = now
        self.rx = Receiver(key=key, config=config, events=events, budget=budget)
        """The receive half: in-order delivery, reordering, the peer's FIN, our window."""
        self.state = State.SYN_SENT if initiator else State.SYN_RECV
        self.close_reason: CloseReason | None = None
        self.linger_until = 0.0

        # send side
        self._seq_nr = rng.getrandbits(16)
        self._acked_nr = (self._seq_nr - 1) & MASK
        self._syn_seq = self._seq_nr
        self._inflight: dict[int, OutPacket] = {}
        self._resend: set[int] = set()
        self._bytes_in_flight = 0
        self._queue = SendQueue()
        self._dup_acks = 0
        self._loss_seq = self._acked_nr
        self._fin_seq: int | None = None
        self._peer_wnd = 65536
        self._window_limited = False
        self._window_probe = False
        self._rto_deadline: float | None = None
        self._syn_pending = initiator
        self._confirmed = False
        """A packet other than the SYN came from the peer (for a responder: the SYN was not
        spoofed).  Until then a responder sends no data: a forged SYN must not make us send
        more than the 20-odd bytes of its ST_STATE answer to someone else's address."""
        self._reset_due = False
        self.last_sent = now
        self.last_received = now
        self.rtt = RttEstimator(initial_rto=config.initial_rto, min_rto=config.min_rto)
        self._delays = DelayHistory()
        self._recent_delays: deque[int] = deque(maxlen=3)
        self._reply_micro = 0

        # path MTU discovery (sizes are whole UDP payloads)
        self.mtu = PathMtu(
            path=min(path_datagram, config.max_datagram),
            peer=peer_datagram,
            ethernet=config.default_peer_datagram,
            ipv6=":" in addr[0],
        )
        self.cc = Ledbat(
            mss=self.mtu.floor - HEADER_SIZE,
            target=int(config.target_delay * 1_000_000),
            gain=config.gain,
        )

        # receive side (the rest is in self.rx)
        self._peer_syn_seq: int | None = None
        self._ack_due = False

        # statistics
        self.packets_sent = 0
        self.packets_received = 0
        self.retransmits = 0
        self.fast_retransmits = 0
        self.timeouts = 0
        self.ignored = 0
        """Packets the state machine or the ack check dropped (the receiver counts its own)."""
        self.bytes_sent = 0

    # --- public state ------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self.state is State.CLOSED

    @property
    def send_buffer_size(self) -> int:
        """Bytes written but not yet packetized (flow control for the writer)."""
        return self._queue.size

    @property
    def bytes_in_flight(self) -> int:
        return self._bytes_in_flight

    @property
    def packet_size(self) -> int:
        """UDP payload size used for data packets now (MTU discovery's floor)."""
        return self.mtu.floor

    @property
    def mtu_ceiling(self) -> int:
        return self.mtu.ceiling

    @property
    def receive_window(self) -> int:
        """What we advertise: free receive buffer, bounded by the manager-wide budget."""
        return self.rx.window

    @property
    def duplicates(self) -> int:
        """Data packets received again (already delivered or already buffered)."""
        return self.rx.duplicates

    @property
    def bytes_received(self) -> int:
        return self.rx.bytes_received

    @property
    def peer_window(self) -> int:
        return self._peer_wnd

    @property
    def wants_output(self) -> bool:
        """True if :meth:`datagrams` would produce something now."""
        if self.state is State.CLOSED:
            return self._ack_due or self._reset_due
        return bool(
            self._ack_due
            or self._syn_pending
            or self._resend
            or self._window_probe
            or (self._queue.size and self._confirmed)
            or (self.state is State.CLOSING and self._fin_seq is None and not self._queue.size)
        )

    # --- application calls -------------------------------------------------------------------

    def _local(self, inp: Input) -> State:
        new = TRANSITIONS[self.state].get(inp)
        if new is None:
            raise LocalProtocolError(f"uTP connection in state {self.state.value}: {inp.value} not allowed")
        return new

    def send(self, data: bytes | bytearray | memoryview) -> None:
        """Queue stream bytes (copied unless ``bytes``); sent as the windows allow."""
        if self.state in (State.CLOSING, State.CLOSED):
            raise LocalProtocolError(f"cannot send on a uTP connection in state {self.state.value}")
        if not data:
            return
        self._queue.append(data)

    def close(self, now: float) -> None:
        """Graceful close: FIN after everything queued.  Before the SYN is answered: just gone."""
        new = self._local(Input.CLOSE)
        if new is State.CLOSED and self.state is not State.CLOSED:
            self._terminate(CloseReason.CLOSED, now)
        else:
            self.state = new

    def abort(self, now: float) -> None:
        """Send ST_RESET and forget the connection."""
        self._local(Input.ABORT)
        if self.state is State.CLOSED:
            return
        self._reset_due = self.state is not State.SYN_SENT or not self._syn_pending
        self._ack_due = False  # a RESET says it all (an aborted SYN is refused, not accepted)
        self._terminate(CloseReason.ABORTED, now)

    def evict(self, now: float) -> None:
        """(Manager) drop the connection silently (no RESET): over a cap, or shutting down."""
        if self.state is not State.CLOSED:
            self._terminate(CloseReason.ABORTED, now)

    def pause_reading(self) -> None:
        """Hold received data (the advertised window shrinks as it accumulates)."""
        self.rx.pause()

    def resume_reading(self) -> None:
        """Deliver held data and send a window update."""
        if self.rx.resume() and self.state is not State.CLOSED:
            self._ack_due = True

    # --- incoming packets --------------------------------------------------------------------

    def accept_syn(self, packet: Packet, now: float) -> None:
        """(Manager) the SYN that created this responder connection."""
        self._peer_syn_seq = packet.seq_nr
        self.rx.ack_nr = packet.seq_nr
        self._peer_wnd = packet.wnd_size or 65536  # libtorrent's SYN says 0
        if packet.timestamp:
            self._reply_micro = (_micros(now) - packet.timestamp) & _U32
        self.packets_received += 1
        self.last_received = now
        self._ack_due = True

    def receive_fast(
        self,
        ptype: int,
        seq_nr: int,
        ack_nr: int,
        timestamp: int,
        ts_diff: int,
        wnd: int,
        data: bytes,
        now: float,
    ) -> bool:
        """:meth:`receive` for an ST_DATA or ST_STATE without extensions (BEP 29 "Header format",
        unpacked by the manager) on a confirmed CONNECTED connection, acking nothing we did not
        send: the same rules (the table maps DATA/STATE in CONNECTED to CONNECTED) without a
        :class:`Packet`.  Anything else returns False having changed nothing."""
        if self.state is not _CONNECTED or not self._confirmed:
            return False
        beyond = (ack_nr - self._seq_nr + 1) & MASK  # ack_nr after our last sent seq_nr: forged
        if beyond and beyond < HALF:
            return False
        self.packets_received += 1
        self.last_received = now
        if timestamp:
            self._reply_micro = (int(now * 1_000_000) - timestamp) & _U32
        self._peer_wnd = wnd
        if ack_nr != self._acked_nr or ptype == ST_STATE or self._window_probe or self._dup_acks >= 3:
            self._process_ack(ptype, ack_nr, None, ts_diff, now)
        if ptype == ST_DATA:
            self._ack_due = True
            self.rx.payload(seq_nr, data[HEADER_SIZE:])
        return True

    def receive(self, packet: Packet, now: float) -> None:
        """One packet addressed to this connection (connection id and address already matched)."""
        state = self.state
        ptype = packet.type
        inp = _INPUT_OF_TYPE[ptype]
        new_state = TRANSITIONS[state].get(inp)
        if new_state is None:
            self.ignored += 1
            return
        if state is State.CLOSED:
            self._receive_while_closed(packet)
            return
        if ptype == ST_RESET:
            if self._reset_plausible(packet.ack_nr):
                self._terminate(CloseReason.REFUSED if state is State.SYN_SENT else CloseReason.RESET, now)
            else:
                self.ignored += 1
            return
        if ptype == ST_SYN:
            if packet.seq_nr == self._peer_syn_seq:
                self._ack_due = True  # our answer to it was lost: say it again
            else:
                self.ignored += 1
            return
        if state is State.SYN_SENT:
            if packet.ack_nr != self._syn_seq:
                self.ignored += 1
                return
            self.rx.ack_nr = (packet.seq_nr - 1) & MASK
        elif seq_after(packet.ack_nr, self._last_sent_seq()):
            self.ignored += 1  # acks something we never sent: forged or broken
            return
        self.state = new_state
        if not self._confirmed:
            # the peer answered from its address: no longer possibly a spoofed SYN.  An initiator
            # acks the SYN-ACK at once, so a responder holding its data learns that too.
            self._confirmed = True
            self._ack_due = True
        self.packets_received += 1
        self.last_received = now
        if packet.timestamp:
            self._reply_micro = (_micros(now) - packet.timestamp) & _U32
        if packet.max_datagram is not None:
            self.mtu.peer_limit(packet.max_datagram)
        if state is State.SYN_SENT:
            self.rx.emit(ConnectionEstablished(key=self.key, addr=self.addr))
        self._peer_wnd = packet.wnd_size
        self._process_ack(ptype, packet.ack_nr, packet.sack, packet.timestamp_difference, now)
        if self.state is State.CLOSED:
            return
        if ptype == ST_DATA:
            self._ack_due = True
            self.rx.payload(packet.seq_nr, packet.payload)
        elif ptype == ST_FIN:
            self._ack_due = True
            self.rx.fin(packet.seq_nr)
        if self.state is State.CLOSING and self._fin_seq is not None and self._acked_nr == self._fin_seq:
            self.state = TRANSITIONS[self.state][Input.FIN_ACKED]
            self._terminate(CloseReason.CLOSED, now, linger=True)

    def _receive_while_closed(self, packet: Packet) -> None:
        if packet.type == ST_FIN:
            if self.rx.late_fin(packet.seq_nr):
                self._ack_due = True
        elif packet.type == ST_DATA:
            self._reset_due = True

    def _last_sent_seq(self) -> int:
        return self._fin_seq if self._fin_seq is not None else (self._seq_nr - 1) & MASK

    def _reset_plausible(self, ack_nr: int) -> bool:
        """A RESET's ack_nr must echo a sequence number we used recently: within
        ``[acked_nr - 3, seq_nr]`` (what a RESET sent in answer to one of our packets carries)."""
        low = (self._acked_nr - 3) & MASK
        top = self._fin_seq if self._fin_seq is not None else self._seq_nr
        return (ack_nr - low) & MASK <= (top - low) & MASK

    # --- acks ----------------------------------------------------------------------------------

    def _process_ack(self, ptype: int, ack: int, sack: bytes | None, ts_diff: int, now: float) -> None:
        inflight = self._inflight
        in_flight_before = self._bytes_in_flight
        acked = 0
        min_rtt: float | None = None
        distance = (ack - self._acked_nr) & MASK
        if 0 < distance < HALF:
            start = self._acked_nr
            acked, min_rtt = self._ack_each([(start + i) & MASK for i in range(1, distance + 1)], now)
            self._acked_nr = ack
            self._dup_acks = 0
            self.rtt.backoff = 0
            self._rto_deadline = now + self.rtt.rto if inflight else None
        elif distance == 0 and ptype == ST_STATE and inflight:
            self._dup_acks += 1
        if sack is not None and inflight:
            got, sack_rtt = self._process_sack(ack, sack, now)
            acked += got
            if sack_rtt is not None and (min_rtt is None or sack_rtt < min_rtt):
                min_rtt = sack_rtt
        if min_rtt is not None:
            self.rtt.sample(min_rtt)
        if self._dup_acks >= 3:
            first = (self._acked_nr + 1) & MASK
            out = inflight.get(first)
            if out is not None and not out.lost and not out.fast_resent:
                self._mark_lost(first, out, now, fast=True)
        if acked and ts_diff and in_flight_before:
            delay = self._delays.add(ts_diff, now)
            recent = self._recent_delays
            recent.append(delay)
            delay = min(recent)
            if min_rtt is not None:
                delay = min(delay, int(min_rtt * 1_000_000))
            saturated = self._window_limited or in_flight_before + self.cc.mss > self.cc.cwnd
            self.cc.on_ack(acked, delay, in_flight_before, saturated)
        if self._window_probe and self._peer_wnd >= self.mtu.floor:
            self._window_probe = False

    def _ack_each(self, seqs: list[int], now: float) -> tuple[int, float | None]:
        """Take the packets ``seqs`` out of flight: the bytes acked, and the shortest round trip of
        those sent only once (Karn: a resent packet's ack cannot tell which copy it answers)."""
        inflight = self._inflight
        acked = 0
        min_rtt: float | None = None
        for seq in seqs:
            out = inflight.pop(seq, None)
            if out is not None:
                acked += self._acked(seq, out)
                if out.transmissions == 1:
                    rtt = now - out.sent_at
                    if min_rtt is None or rtt < min_rtt:
                        min_rtt = rtt
        return acked, min_rtt

    def _acked(self, seq: int, out: OutPacket) -> int:
        if out.lost:
            self._resend.discard(seq)
        else:
            self._bytes_in_flight -= out.length
        if out.probe and self.mtu.acked(seq, out.size):
            self.cc.set_mss(self.mtu.floor - HEADER_SIZE)
        return out.length

    def _process_sack(self, ack: int, mask: bytes, now: float) -> tuple[int, float | None]:
        inflight = self._inflight
        base = (ack + 2) & MASK
        limit = (self._last_sent_seq() - base) & MASK
        sacked = list(takewhile(lambda pos: pos <= limit, sack_positions(mask)))
        acked, min_rtt = self._ack_each([(base + pos) & MASK for pos in sacked], now)
        if len(sacked) >= 3:
            # a packet with three acknowledged packets after it is lost (BEP 29, libtorrent)
            threshold = sacked[-3]
            resent = 0
            for pos in range(-1, threshold):
                seq = (base + pos) & MASK
                out = inflight.get(seq)
                if out is not None and not out.lost and not out.fast_resent:
                    self._mark_lost(seq, out, now, fast=True)
                    resent += 1
                    if resent >= self.config.max_fast_resends:
                        break
        return acked, min_rtt

    def _mark_lost(self, seq: int, out: OutPacket, now: float, *, fast: bool) -> None:
        out.lost = True
        if fast:
            out.fast_resent = True
        self._bytes_in_flight -= out.length
        self._resend.add(seq)
        if out.probe and self.mtu.lost(seq, out.size):
            out.probe = False
            return
        if seq_after(seq, self._loss_seq):
            self.cc.on_loss(now)
            self._loss_seq = (self._seq_nr - 1) & MASK

    # --- outgoing packets ----------------------------------------------------------------------

    def datagrams(self, now: float, out: list[bytes]) -> None:
        """Append every datagram this connection should send now (retransmissions first, then
        new data within the windows, the FIN, and an ST_STATE if an ack is still owed)."""
        state = self.state
        count = len(out)
        if state is State.CLOSED:
            if self._ack_due:
                out.append(self._header(ST_STATE, self._state_seq(), now, EXT_NONE))
            if self._reset_due:
                out.append(self._header(ST_RESET, self._seq_nr, now, EXT_NONE))
            self._ack_due = self._reset_due = False
            self.packets_sent += len(out) - count
            return
        ext_type, ext = self._extensions()
        if self._syn_pending:
            self._syn_pending = False
            seq = self._syn_seq
            self._seq_nr = (seq + 1) & MASK
            self._inflight[seq] = OutPacket(ST_SYN, b"", 0, now, False)
            out.append(self._syn(now))
        if self._resend:
            self._retransmit(now, out, ext_type, ext)
        if self._queue.size and self._confirmed:
            self._send_new(now, out, ext_type, ext)
        if state is State.CLOSING and self._fin_seq is None and not self._queue.size:
            seq = self._fin_seq = self._seq_nr
            self._inflight[seq] = OutPacket(ST_FIN, b"", 0, now, False)
            out.append(self._header(ST_FIN, seq, now, ext_type) + ext)
        sent = len(out) - count
        if sent:
            self._ack_due = False
        elif self._ack_due:
            self._ack_due = False
            out.append(self._header(ST_STATE, self._state_seq(), now, ext_type) + ext)
            sent = 1
        if sent:
            self.packets_sent += sent
            self.last_sent = now
            if self._inflight and self._rto_deadline is None:
                self._rto_deadline = now + self.rtt.rto

    def _state_seq(self) -> int:
        return self._fin_seq if self._fin_seq is not None else self._seq_nr

    def _extensions(self) -> tuple[int, bytes]:
        """The extension chain for packets sent now: the selective ack while packets wait out of
        order, and our datagram limit until the peer has confirmed the connection."""
        limit = self.config.max_datagram if self.state is State.SYN_RECV else None
        return encode_extensions(sack=self.rx.sack(), max_datagram=limit)

    def _header(self, ptype: int, seq: int, now: float, ext_type: int) -> bytes:
        rx = self.rx
        micros, reply = _micros(now), self._reply_micro
        return HEADER.pack(ptype << 4 | 1, ext_type, self.send_id, micros, reply, rx.window, seq, rx.ack_nr)

    def _syn(self, now: float) -> bytes:
        first, ext = encode_extensions(max_datagram=self.config.max_datagram)
        header = HEADER.pack(
            ST_SYN << 4 | 1, first, self.recv_id, _micros(now), 0, self.rx.window, self._syn_seq, 0
        )
        return header + ext

    def _retransmit(self, now: float, out: list[bytes], ext_type: int, ext: bytes) -> None:
        base = self._acked_nr
        window = min(self.cc.window, self._peer_wnd)
        inflight = self._inflight
        for seq in sorted(self._resend, key=lambda s: (s - base) & MASK):
            packet = inflight.get(seq)
            if packet is None:
                self._resend.discard(seq)
                continue
            size = packet.length
            if self._bytes_in_flight and self._bytes_in_flight + size > window and not packet.fast_resent:
                self._window_limited = self.cc.window <= self._peer_wnd
                break
            self._resend.discard(seq)
            packet.lost = False
            packet.transmissions += 1
            packet.sent_at = now
            self._bytes_in_flight += size
            self.retransmits += 1
            if packet.fast_resent:
                self.fast_retransmits += 1
            if packet.kind == ST_SYN:
                out.append(self._syn(now))
            else:
                payload = memoryview(packet.datagram)[packet.header_size :]
                out.append(b"".join((self._header(packet.kind, seq, now, ext_type), ext, payload)))

    def _send_new(self, now: float, out: list[bytes], ext_type: int, ext: bytes) -> None:
        """New data packets while both windows allow.  The congestion window never stops the
        first packet of an idle connection (it may be smaller than one large packet); the peer's
        window does, until the persist timer sets ``_window_probe``."""
        header_size = HEADER_SIZE + len(ext)
        mtu = self.mtu
        floor = mtu.floor
        cwnd = self.cc.window
        peer_wnd = self._peer_wnd
        inflight = self._inflight
        queue = self._queue
        take = queue.take
        self._window_limited = False
        # the headers of this batch differ only in seq_nr (bytes 16-17, BEP 29 "Header format"):
        # everything before it and after it is packed once
        head = _HEAD.pack(
            ST_DATA << 4 | 1, ext_type, self.send_id, _micros(now), self._reply_micro, self.rx.window
        )
        tail = self.rx.ack_nr.to_bytes(2, "big") + ext
        may_probe = (
            mtu.probe_seq is None and mtu.ceiling - mtu.floor > PROBE_GRANULARITY and cwnd >= 3 * floor
        )
        in_flight = self._bytes_in_flight
        seq = self._seq_nr
        sent = 0
        while queue.size:
            queued = queue.size
            probe = False
            size = floor
            if may_probe:
                probe_size = mtu.probe_size(cwnd, min(cwnd, peer_wnd) - in_flight, queued, header_size)
                if probe_size is not None:
                    probe = True
                    may_probe = False
                    size = probe_size
            payload_size = size - header_size
            if queued < payload_size:
                payload_size = queued
            if in_flight + payload_size > peer_wnd and (in_flight or not self._window_probe):
                if not in_flight and self._rto_deadline is None:
                    self._rto_deadline = now + self.rtt.rto  # probe the closed window later
                break
            if in_flight and in_flight + payload_size > cwnd:
                self._window_limited = True
                break
            self._window_probe = False
            parts: list[bytes | memoryview] = [head, seq.to_bytes(2, "big"), tail]
            take(payload_size, parts)
            datagram = b"".join(parts)  # the only copy of the payload on the way out
            inflight[seq] = OutPacket(ST_DATA, datagram, header_size, now, probe)
            if probe:
                mtu.probe_seq = seq
            seq = (seq + 1) & MASK
            in_flight += payload_size
            sent += payload_size
            out.append(datagram)
        self._seq_nr = seq
        self._bytes_in_flight = in_flight
        self.bytes_sent += sent

    # --- timers --------------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must run next (None: nothing pending)."""
        state = self.state
        if state is State.CLOSED:
            return self.linger_until
        deadline = self._rto_deadline
        if not self._confirmed and not self.initiator:
            confirm = self.created + self.config.syn_recv_timeout
            deadline = confirm if deadline is None else min(deadline, confirm)
        if state is not State.SYN_SENT:
            keepalive = self.last_sent + self.config.keepalive_interval
            deadline = keepalive if deadline is None else min(deadline, keepalive)
        return deadline

    def handle_timer(self, now: float) -> None:
        state = self.state
        if state is State.CLOSED:
            return
        if not self._confirmed and not self.initiator and now >= self.created + self.config.syn_recv_timeout:
            self._timed_out(now)
            return
        if self._rto_deadline is not None and now >= self._rto_deadline:
            self._on_rto(now)
            if self.state is State.CLOSED:
                return
        if state is not State.SYN_SENT and now >= self.last_sent + self.config.keepalive_interval:
            self._ack_due = True

    def _on_rto(self, now: float) -> None:
        inflight = self._inflight
        if not inflight:
            self._rto_deadline = None
            if self._queue.size and self._confirmed:
                self._window_probe = True  # the peer's window stayed closed: send one packet
            return
        self.timeouts += 1
        state = self.state
        zero_window = self._peer_wnd < self.mtu.floor and self.state is not State.SYN_SENT
        first_seq = min(inflight, key=lambda s: (s - self._acked_nr) & MASK)
        first = inflight[first_seq]
        if state is State.SYN_SENT:
            if first.transmissions > self.config.max_syn_retransmits:
                self._timed_out(now)
                return
        elif state is State.SYN_RECV:
            self._timed_out(now)  # an unconfirmed peer (maybe a spoofed SYN): no second chance
            return
        elif first.kind == ST_FIN and first.transmissions > self.config.max_fin_retransmits:
            if self.rx.eof_reached:
                # the peer closed first and forgot the connection once its FIN was acked (as
                # libtorrent does): our FIN needs no answer, this is a graceful end
                self.state = TRANSITIONS[self.state][Input.FIN_ACKED]
                self._terminate(CloseReason.CLOSED, now)
            else:
                self._timed_out(now)
            return
        elif not zero_window and self.rtt.backoff >= self.config.max_retransmits:
            self._timed_out(now)
            return
        if len(inflight) == 1 and first.probe and self.mtu.lost(first_seq, first.size):
            first.probe = False
        else:
            self.cc.on_timeout(idle=False)
        for seq, packet in inflight.items():
            if not packet.lost:
                packet.lost = True
                self._bytes_in_flight -= packet.length
                self._resend.add(seq)
        self._loss_seq = (self._seq_nr - 1) & MASK
        self._dup_acks = 0
        if not zero_window or self.rtt.backoff < 4:
            self.rtt.backoff += 1
        self._rto_deadline = now + self.rtt.rto

    def _timed_out(self, now: float) -> None:
        self.state = TRANSITIONS[self.state][Input.TIMED_OUT]
        self._terminate(CloseReason.TIMED_OUT, now)

    # --- the end -------------------------------------------------------------------------------

    def _terminate(self, reason: CloseReason, now: float, *, linger: bool = False) -> None:
        self.state = State.CLOSED
        self.close_reason = reason
        self.linger_until = now + self.config.linger if linger else now
        self._inflight.clear()
        self._resend.clear()
        self._queue.clear()
        self._bytes_in_flight = 0
        self._rto_deadline = None
        self._syn_pending = False
        self.rx.release()
        self.rx.emit(ConnectionClosed(key=self.key, reason=reason))

    def __repr__(self) -> str:
        return f"<UTPConnection #{self.key} {self.addr} {self.state.value} recv_id={self.recv_id}>"


def _micros(now: float) -> int:
    return int(now * 1_000_000) & _U32
