"""Hostile datagrams against the uTP socket manager: floods of random connection ids, SYN floods from
spoofed addresses, forged RESETs, garbage -- a real connection keeps working and memory stays
bounded; stray packets get at most one 20-byte RESET each, rate-limited."""

from __future__ import annotations

import random

from torrentgoat.testing.utp import UTPNetwork
from torrentgoat.utp import CloseReason, State, UTPConfig
from torrentgoat.utp.packet import HEADER, HEADER_SIZE, ST_DATA, ST_FIN, ST_RESET, ST_STATE, ST_SYN

A = ("10.0.0.1", 6881)
B = ("10.0.0.2", 6881)


def packet(ptype: int, conn_id: int, seq: int = 0, ack: int = 0, payload: bytes = b"") -> bytes:
    return HEADER.pack(ptype << 4 | 1, 0, conn_id, 0, 0, 65536, seq, ack) + payload


def start_transfer(net: UTPNetwork, size: int) -> tuple[int, int, bytes]:
    a = net.manager(A)
    key = a.connect(B, net.now)
    assert net.run_until(lambda: net.established(A, key) and bool(net.accepted(B)))
    data = random.Random(5).randbytes(size)
    a.send(key, data)
    net.flush(A)
    return key, net.accepted(B)[0], data


def test_flood_of_random_ids_and_spoofed_syns_leaves_real_connection_working() -> None:
    config = UTPConfig(max_half_open=32, reset_rate=50.0)
    net = UTPNetwork(seed=1, latency=0.005)
    net.add(A)
    b = net.add(B, config)
    _ka, kb, data = start_transfer(net, 2_000_000)
    rng = random.Random(2)
    flood_seconds = 4.0
    step = 0.002
    injected = 0
    while net.now < 1000 + 1 + flood_seconds:
        for _ in range(20):  # 10,000 packets per second
            source = (f"192.0.2.{rng.randrange(256)}", rng.randrange(1, 65536))
            kind = rng.choice((ST_DATA, ST_STATE, ST_FIN, ST_SYN))
            net.inject(
                packet(
                    kind, rng.getrandbits(16), rng.getrandbits(16), rng.getrandbits(16), rng.randbytes(64)
                ),
                A if rng.random() < 0.3 else source,  # some claim to come from the real peer
                B,
            )
            injected += 1
        net.run_for(step)
        assert len(b) <= 1 + config.max_half_open  # the real one + capped half-open ones
        assert b.buffered_bytes <= config.receive_buffer
    assert net.run_until(lambda: len(net.received(B, kb)) == len(data), timeout=120)
    assert bytes(net.received(B, kb)) == data
    assert b.connection(kb).state is State.CONNECTED
    stats = b.stats
    assert stats.evicted_half_open > 1000
    # stray packets: at most reset_rate RESETs per second (plus the initial burst), 20 bytes each
    assert stats.resets_sent <= config.reset_rate * (flood_seconds + 2) + config.reset_rate
    assert stats.resets_sent + stats.resets_suppressed <= stats.unknown
    assert injected > 30_000
    net.run_for(30)
    assert len(b) == 1  # every spoofed half-open connection expired
    assert len(b._timers) < 200


def test_forged_resets_do_not_kill_a_connection() -> None:
    net = UTPNetwork(seed=3, latency=0.005)
    a = net.add(A)
    b = net.add(B)
    ka, kb, data = start_transfer(net, 1_000_000)
    net.run_for(0.1)
    cb = b.connection(kb)
    rng = random.Random(4)
    # 1. the right connection id from the wrong address (every port of the peer's neighbours)
    for port in range(1, 2000):
        net.inject(packet(ST_RESET, cb.recv_id, 0, cb._seq_nr), ("10.0.0.1", 6881 + port), B)
        net.inject(packet(ST_RESET, cb.recv_id, 0, cb._seq_nr), ("10.0.0.3", 6881), B)
    # 2. the right address, every other connection id
    for conn_id in range(65536):
        if conn_id not in (cb.recv_id, cb.send_id):
            net.inject(packet(ST_RESET, conn_id, rng.getrandbits(16), rng.getrandbits(16)), A, B)
    # 3. the right address and id, but an ack_nr that echoes nothing we sent
    for _ in range(200):
        bad_ack = (cb._acked_nr - 10 - rng.randrange(30000)) & 0xFFFF
        net.inject(packet(ST_RESET, cb.recv_id, 0, bad_ack), A, B)
    assert net.run_until(lambda: len(net.received(B, kb)) == len(data), timeout=120)
    assert bytes(net.received(B, kb)) == data
    assert cb.state is State.CONNECTED and net.closed(B, kb) is None
    assert b.stats.resets_sent == 0  # a RESET is never answered
    # a RESET that matches id, address and a recent sequence number does end it
    net.inject(packet(ST_RESET, cb.recv_id, 0, cb._seq_nr), A, B)
    assert net.run_until(lambda: net.closed(B, kb) is not None)
    assert net.closed(B, kb).reason is CloseReason.RESET  # type: ignore[union-attr]
    assert a.connection(ka).state is State.CONNECTED


def test_libutp_style_reset_with_our_send_id_is_matched() -> None:
    net = UTPNetwork(seed=5)
    net.add(A)
    b = net.add(B)
    _ka, kb, _ = start_transfer(net, 10_000)
    net.run_for(1)
    cb = b.connection(kb)
    net.inject(packet(ST_RESET, cb.send_id, 0, cb._seq_nr), A, B)
    assert net.run_until(lambda: net.closed(B, kb) is not None)


def test_stray_packets_are_answered_without_amplification() -> None:
    net = UTPNetwork(seed=6)
    b = net.add(B, UTPConfig(reset_rate=10.0))
    sent: list[bytes] = []

    def record(data: bytes, source: tuple[str, int], dest: tuple[str, int]) -> bytes:
        sent.append(data)
        return data

    net.mangle = record
    for i in range(100):
        net.inject(packet(ST_DATA, 4000 + i, i, 0, b"x" * 10), A, B)
    net.run_for(0.5)
    assert len(sent) == 10  # the token bucket's depth
    assert all(len(d) == HEADER_SIZE and d[0] >> 4 == ST_RESET for d in sent)
    assert {int.from_bytes(d[2:4], "big") for d in sent} == set(range(4000, 4010))  # echoes the id
    net.run_for(1.0)
    net.inject(packet(ST_STATE, 9, 0, 0), A, B)
    net.inject(packet(ST_RESET, 10, 0, 0), A, B)  # never answered
    net.run_for(0.1)
    assert len(sent) == 11 and b.stats.resets_suppressed == 90


def test_garbage_and_truncated_packets_are_counted_and_dropped() -> None:
    net = UTPNetwork(seed=7)
    net.add(A)
    b = net.add(B)
    _ka, kb, data = start_transfer(net, 200_000)
    cb = b.connection(kb)
    rng = random.Random(8)
    for _ in range(5000):
        raw = bytearray(packet(ST_DATA, cb.recv_id, rng.getrandbits(16), rng.getrandbits(16)))
        raw[1] = rng.choice((1, 3, 0x54, 0x99))  # extensions that run past the end
        net.inject(bytes(raw[: rng.randrange(0, 24)]), A, B)
    assert net.run_until(lambda: len(net.received(B, kb)) == len(data), timeout=60)
    assert bytes(net.received(B, kb)) == data
    assert b.stats.invalid > 4000


def test_connection_cap_refuses_more_syns() -> None:
    config = UTPConfig(max_connections=4, max_half_open=64)
    net = UTPNetwork(seed=9)
    b = net.add(B, config)
    for i in range(10):
        net.inject(packet(ST_SYN, 100 + 2 * i, 1, 0), (f"10.1.0.{i}", 6881), B)
    net.run_for(0.1)
    assert len(b) == 4 and b.stats.syn_refused == 6


def test_a_spoofed_syn_gets_one_small_answer_even_if_the_application_writes() -> None:
    net = UTPNetwork(seed=10)
    b = net.add(B)
    sent: list[bytes] = []

    def record(data: bytes, source: tuple[str, int], dest: tuple[str, int]) -> bytes:
        sent.append(data)
        return data

    net.mangle = record
    net.inject(packet(ST_SYN, 777, 1, 0), ("192.0.2.7", 6881), B)  # the "victim" never answers
    net.run_until(lambda: bool(net.accepted(B)))
    kb = net.accepted(B)[0]
    b.send(kb, b"x" * 100_000)  # an application that talks first
    b.close(kb, net.now)
    assert net.run_until(lambda: net.closed(B, kb) is not None, timeout=60)
    data_bytes = sum(len(d) for d in sent if d[0] >> 4 == ST_DATA)
    assert data_bytes == 0 and sum(len(d) for d in sent) < 200
    net.run_for(5)
    assert len(b) == 0


def test_a_tiny_max_datagram_in_a_syn_cannot_stall_the_sender() -> None:
    """Found by tools/fuzz utp: a SYN announcing a 9-byte max datagram (our extension, anyone can
    forge it) made every data packet smaller than its own header, and datagrams_to_send() never
    returned: one UDP packet hung the event loop.  The peer's limit is raised to the IP minimum."""
    from torrentgoat.utp import ConnectionAccepted, UTPSocketManager
    from torrentgoat.utp.packet import Packet, decode, encode

    manager = UTPSocketManager(rng=random.Random(1), now=0.0)
    syn = Packet(type=ST_SYN, connection_id=100, seq_nr=1, ack_nr=0, wnd_size=1 << 20, max_datagram=9)
    manager.receive_datagram(encode(syn), A, 0.0)
    accepted = manager.next_event()
    assert isinstance(accepted, ConnectionAccepted)
    ((synack, _addr),) = manager.datagrams_to_send(0.0)
    ours = decode(synack).seq_nr - 1
    confirm = Packet(type=ST_STATE, connection_id=101, seq_nr=2, ack_nr=ours, wnd_size=1 << 20)
    manager.receive_datagram(encode(confirm), A, 0.01)
    manager.send(accepted.key, bytes(5000))
    datagrams = [decode(data) for data, _addr in manager.datagrams_to_send(0.02)]
    sent = [p for p in datagrams if p.type == ST_DATA]
    assert sent and all(len(p.payload) >= 500 for p in sent[:-1])
