"""Fuzz target ``utp``: uTP packets and the socket manager (:mod:`torrentgoat.utp`, BEP 29).

One flag picks the packet codec alone (a datagram must decode to a packet that encodes and decodes
back to itself).  Otherwise the input scripts a peer talking to one :class:`UTPSocketManager`, as
the responder (the peer's SYN opens the connection) or the initiator (we dial): packets whose
connection id, ``seq_nr`` and ``ack_nr`` follow the real connection's (so they get past the
demultiplexer and the sequence checks) with the input's offsets, types, windows, selective acks,
extensions and payloads; raw datagrams from the right or a wrong address; our application's
sends, closes, aborts and read pauses; and time passing through the timers.

Checked beyond the contract: every datagram we send is valid uTP, the receive side never holds more
than its budget, the manager never holds more connections than its cap, and no more payload is
delivered than the peer sent.
"""

from __future__ import annotations

import random

from tools.fuzz.harness import ContractViolation, Reader, expect, target
from torrentgoat.errors import LocalProtocolError, UTPPacketError
from torrentgoat.utp import ConnectionAccepted, DataReceived, UTPConfig, UTPSocketManager
from torrentgoat.utp.packet import ST_DATA, ST_FIN, ST_RESET, ST_STATE, ST_SYN, Packet, decode, encode

__all__: list[str] = []

PEER = ("10.0.0.2", 6881)
STRANGER = ("10.0.0.3", 6881)
_CONFIG = UTPConfig(
    max_connections=4, max_half_open=2, max_buffered_bytes=128 * 1024, receive_buffer=64 * 1024
)
_TYPES = (ST_DATA, ST_STATE, ST_DATA, ST_FIN, ST_RESET, ST_SYN, ST_STATE, ST_DATA)


def _signed(reader: Reader) -> int:
    return reader.byte() - 128


class _Peer:
    """The adversary's view of the connection: ids and sequence numbers it keeps in step with ours."""

    def __init__(self, manager: UTPSocketManager, reader: Reader) -> None:
        self.manager = manager
        self.reader = reader
        self.now = 0.0
        self.conn_id = reader.uint(2)
        """The id our side receives on (what the peer puts in its packets)."""
        self.seq = reader.uint(2)
        """The peer's next sequence number."""
        self.our_seq = 0
        """Our last sequence number used on the wire (what the peer acks)."""
        self.key: int | None = None
        self.sent_payload = 0
        self.delivered = 0

    def pump(self) -> None:
        manager = self.manager
        for datagram, _addr in manager.datagrams_to_send(self.now):
            try:
                packet = decode(datagram)
            except UTPPacketError as exc:
                raise ContractViolation(f"utp: we sent a datagram that is not uTP: {exc}") from exc
            # ST_STATE carries the next sequence number without using it: the peer acks the one before
            self.our_seq = (packet.seq_nr - (packet.type == ST_STATE)) & 0xFFFF
        while (event := manager.next_event()) is not None:
            if isinstance(event, ConnectionAccepted) and self.key is None:
                self.key = event.key
            elif isinstance(event, DataReceived):
                self.delivered += len(event.data)
        expect(manager.buffered_bytes <= _CONFIG.max_buffered_bytes, "utp: receive budget exceeded")
        expect(len(manager) <= _CONFIG.max_connections, "utp: more connections than the cap")
        expect(self.delivered <= self.sent_payload, "utp: more bytes delivered than the peer sent")

    def packet(self, kind: int) -> None:
        reader = self.reader
        flags = reader.byte()
        ptype = _TYPES[kind]
        seq = (self.seq + (_signed(reader) if flags & 1 else 0)) & 0xFFFF
        ack = (self.our_seq + (_signed(reader) if flags & 2 else 0)) & 0xFFFF
        payload = reader.sized() if ptype == ST_DATA or flags & 4 else b""
        packet = Packet(
            type=ptype,
            connection_id=(self.conn_id - 1) & 0xFFFF if ptype == ST_SYN else self.conn_id,
            seq_nr=seq,
            ack_nr=ack,
            timestamp=reader.uint(4) if flags & 8 else int(self.now * 1e6),
            timestamp_difference=reader.uint(4) if flags & 8 else 0,
            wnd_size=reader.uint(3) if flags & 16 else 1 << 20,
            sack=(reader.sized(8) or None) if flags & 32 else None,
            close_reason=reader.uint(2) if flags & 64 else None,
            max_datagram=reader.uint(2) if flags & 128 else None,
            payload=payload,
        )
        if ptype == ST_DATA and not flags & 1:
            self.seq = (self.seq + 1) & 0xFFFF
        self.sent_payload += len(payload)
        self.manager.receive_datagram(encode(packet), PEER, self.now)

    def app(self) -> None:
        reader = self.reader
        key = self.key
        if key is None or self.manager.get(key) is None:
            return
        action = reader.byte() % 6
        try:
            if action < 3:
                self.manager.send(key, reader.sized() * (1 + action * 40))
            elif action == 3:
                self.manager.close(key, self.now)
            elif action == 4 and reader.flag():
                self.manager.pause_reading(key)
            elif action == 4:
                self.manager.resume_reading(key)
            else:
                self.manager.abort(key, self.now)
        except LocalProtocolError:
            pass  # the application asked for something the state forbids: not the peer's doing

    def tick(self) -> None:
        self.now += self.reader.byte() / 8
        timer = self.manager.get_timer()
        if timer is not None and timer <= self.now:
            self.manager.handle_timer(self.now)


@target(
    "utp",
    "torrentgoat.utp: packet codec round trip, and a UTPSocketManager driven by a scripted peer (both roles)",
)
def fuzz_utp(data: bytes) -> None:
    reader = Reader(data)
    flags = reader.byte()
    if flags & 1:
        packet = decode(reader.rest())
        encoded = encode(packet)
        expect(decode(encoded) == packet, "utp: decode(encode(packet)) != packet")
        return
    manager = UTPSocketManager(rng=random.Random(reader.uint(2)), now=0.0, config=_CONFIG)
    peer = _Peer(manager, reader)
    if flags & 2:  # we dial: the peer answers on the id our SYN names
        peer.key = manager.connect(PEER, 0.0)
        syn = decode(manager.datagrams_to_send(0.0)[0][0])
        peer.conn_id, peer.our_seq = syn.connection_id, syn.seq_nr
    else:  # the peer dials: its SYN names the id it receives on, we receive on that + 1
        peer.conn_id = (peer.conn_id + 1) & 0xFFFF
        peer.packet(_TYPES.index(ST_SYN))
        peer.seq = (peer.seq + 1) & 0xFFFF
    peer.pump()
    while reader.remaining:
        op = reader.byte() % 12
        if op < 8:
            peer.packet(op)
        elif op == 8:
            raw = reader.sized()
            manager.receive_datagram(raw, STRANGER if reader.flag() else PEER, peer.now)
        elif op == 9:
            peer.app()
        else:
            peer.tick()
        peer.pump()
    peer.now += 120.0
    manager.handle_timer(peer.now)
    peer.pump()
