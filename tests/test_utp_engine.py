"""uTP engines (BEP 29) in pairs over the in-memory network with a fake clock: connection setup,
data both ways, FIN, RESET, sequence wrap-around, reordering, duplication, loss, timeouts, flow
control, keep-alive and path MTU probing."""

from __future__ import annotations

import random
import struct

import pytest

from torrentgoat.errors import LocalProtocolError
from torrentgoat.testing.utp import UTPNetwork
from torrentgoat.utp import CloseReason, State, UTPConfig, UTPSocketManager
from torrentgoat.utp.packet import HEADER, ST_DATA, ST_STATE, ST_SYN, decode

A = ("10.0.0.1", 6881)
B = ("10.0.0.2", 6881)


def payload(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def connect(net: UTPNetwork) -> tuple[int, int]:
    """Dial B from A; returns (A's key, B's key) once both ends know the connection."""
    key = net.manager(A).connect(B, net.now)
    assert net.run_until(lambda: net.established(A, key) and bool(net.accepted(B)), timeout=30)
    return key, net.accepted(B)[0]


def transfer(
    net: UTPNetwork, data_ab: bytes, data_ba: bytes = b"", *, timeout: float = 600
) -> tuple[int, int]:
    a, b = net.manager(A), net.manager(B)
    ka, kb = connect(net)
    a.send(ka, data_ab)
    if data_ba:
        b.send(kb, data_ba)
    done = net.run_until(
        lambda: len(net.received(B, kb)) >= len(data_ab) and len(net.received(A, ka)) >= len(data_ba),
        timeout=timeout,
    )
    assert done, (len(net.received(B, kb)), len(data_ab), len(net.received(A, ka)), len(data_ba))
    assert bytes(net.received(B, kb)) == data_ab
    assert bytes(net.received(A, ka)) == data_ba
    return ka, kb


def test_handshake_ids_and_sequence_numbers() -> None:
    net = UTPNetwork(seed=1)
    a, b = net.add(A), net.add(B)
    sent: list[tuple[bytes, tuple[str, int]]] = []

    def record(data: bytes, source: tuple[str, int], dest: tuple[str, int]) -> bytes:
        sent.append((data, source))
        return data

    net.mangle = record
    ka, kb = connect(net)
    syn, synack = decode(sent[0][0]), decode(sent[1][0])
    ca, cb = a.connection(ka), b.connection(kb)
    # BEP 29: the SYN carries the id the initiator receives on; the rest use recv_id + 1 / recv_id
    assert syn.type == ST_SYN and syn.connection_id == ca.recv_id and ca.send_id == (ca.recv_id + 1) & 0xFFFF
    assert cb.recv_id == ca.send_id and cb.send_id == ca.recv_id
    assert synack.type == ST_STATE and synack.connection_id == ca.recv_id and synack.ack_nr == syn.seq_nr
    assert syn.max_datagram == 65507 and synack.max_datagram == 65507  # torrentgoat's extension
    assert ca.state is State.CONNECTED and cb.state is State.SYN_RECV
    a.send(ka, b"x")
    net.run_until(lambda: net.received(B, kb) == b"x")
    assert cb.state is State.CONNECTED  # the initiator's first data confirmed it
    data = decode(next(d for d, s in sent if s == A and decode(d).type == ST_DATA))
    assert data.seq_nr == (syn.seq_nr + 1) & 0xFFFF and data.ack_nr == (synack.seq_nr - 1) & 0xFFFF


def test_data_both_ways_and_graceful_close() -> None:
    net = UTPNetwork(seed=2, auto_close_on_fin=True)
    a, b = net.add(A), net.add(B)
    up, down = payload(300_000, 1), payload(200_000, 2)
    ka, kb = transfer(net, up, down)
    a.close(ka, net.now)
    assert net.run_until(lambda: net.closed(A, ka) is not None and net.closed(B, kb) is not None)
    assert net.fin_received(B, kb) and net.fin_received(A, ka)
    assert net.closed(A, ka).reason is CloseReason.CLOSED  # type: ignore[union-attr]
    assert net.closed(B, kb).reason is CloseReason.CLOSED  # type: ignore[union-attr]
    net.run_for(10)
    assert len(a) == 0 and len(b) == 0  # lingered, then forgotten
    with pytest.raises(KeyError):
        a.send(ka, b"more")


def test_peer_that_forgets_after_its_own_fin_still_ends_gracefully() -> None:
    net = UTPNetwork(seed=21, auto_close_on_fin=True)
    net.add(A)
    b = net.add(B)
    ka, kb = transfer(net, b"ping", b"pong")

    def silent_after_fin(data: bytes, source: tuple[str, int], dest: tuple[str, int]) -> bytes | None:
        return None if source == A and net.fin_received(A, ka) else data  # libtorrent deleted it

    net.mangle = silent_after_fin
    b.close(kb, net.now)
    assert net.run_until(lambda: net.closed(A, ka) is not None, timeout=60)
    assert net.closed(A, ka).reason is CloseReason.CLOSED  # type: ignore[union-attr]


def test_close_flushes_queued_data_before_fin() -> None:
    net = UTPNetwork(seed=3)
    a, _ = net.add(A), net.add(B)
    ka, kb = connect(net)
    data = payload(500_000, 3)
    a.send(ka, data)
    a.close(ka, net.now)
    with pytest.raises(LocalProtocolError):
        a.send(ka, b"late")
    assert net.run_until(lambda: net.fin_received(B, kb))
    assert bytes(net.received(B, kb)) == data
    assert net.run_until(lambda: net.closed(A, ka) is not None)


def test_abort_sends_reset() -> None:
    net = UTPNetwork(seed=4)
    _a, b = net.add(A), net.add(B)
    ka, kb = transfer(net, b"hello")
    b.abort(kb, net.now)
    assert net.run_until(lambda: net.closed(A, ka) is not None)
    assert net.closed(A, ka).reason is CloseReason.RESET  # type: ignore[union-attr]
    assert net.closed(B, kb).reason is CloseReason.ABORTED  # type: ignore[union-attr]


def test_syn_to_a_refusing_peer_and_to_nobody() -> None:
    net = UTPNetwork(seed=5)
    a = net.add(A)
    net.add(B, UTPConfig(accept_incoming=False))
    key = a.connect(B, net.now)
    assert net.run_until(lambda: net.closed(A, key) is not None, timeout=60)
    assert net.closed(A, key).reason is CloseReason.REFUSED  # type: ignore[union-attr]
    assert net.now - 1000 < 0.1  # at once, like a refused TCP connect
    start = net.now
    key = a.connect(("10.0.0.9", 6881), net.now)  # nobody there
    assert net.run_until(lambda: net.closed(A, key) is not None, timeout=60)
    assert net.closed(A, key).reason is CloseReason.TIMED_OUT  # type: ignore[union-attr]
    assert 6 <= net.now - start <= 8  # SYN at 0, retries after 1 s and 2 s, given up after 4 s more


def test_unknown_packet_gets_one_reset_and_closes_a_half_dead_connection() -> None:
    net = UTPNetwork(seed=6)
    a, b = net.add(A), net.add(B)
    ka, _kb = transfer(net, b"abc")
    # B forgets the connection (crash): A's next data is answered with a RESET and A gives up
    b._conns.clear()
    b._by_key.clear()
    a.send(ka, b"more")
    assert net.run_until(lambda: net.closed(A, ka) is not None, timeout=5)
    assert net.closed(A, ka).reason is CloseReason.RESET  # type: ignore[union-attr]
    assert b.stats.resets_sent == 1


@pytest.mark.parametrize("start", [0xFFF0, 0xFFFF, 0x7FF8])
def test_sequence_numbers_wrap(start: int) -> None:
    class Rng(random.Random):
        def getrandbits(self, k: int) -> int:
            return start if k == 16 else super().getrandbits(k)

    net = UTPNetwork(seed=7, jitter=0.003)
    a, b = net.add(A), net.add(B)
    a.rng = Rng(1)
    b.rng = Rng(2)
    ka, _kb = transfer(net, payload(200_000, 7), payload(100_000, 8))
    ca = a.connection(ka)
    assert ca.packets_sent > 32 and ca.state is State.CONNECTED


def test_reordering_and_duplication() -> None:
    net = UTPNetwork(seed=8, jitter=0.02, duplicate=0.1)
    net.add(A), net.add(B)
    _ka, kb = transfer(net, payload(400_000, 9), payload(100_000, 10))
    assert net.manager(B).connection(kb).duplicates > 0


@pytest.mark.parametrize("loss", [0.01, 0.05])
def test_lossy_link_still_delivers_every_byte(loss: float) -> None:
    net = UTPNetwork(seed=9, loss=loss, jitter=0.001)
    net.add(A), net.add(B)
    data = payload(1_000_000, 11)
    ka, _ = transfer(net, data, payload(50_000, 12))
    conn = net.manager(A).connection(ka)
    assert conn.retransmits > 0


def test_heavy_loss_of_acks_and_data_both_ways() -> None:
    net = UTPNetwork(seed=10, loss=0.2)
    net.add(A), net.add(B)
    transfer(net, payload(100_000, 13), payload(100_000, 14))


def test_fast_retransmit_on_selective_ack() -> None:
    net = UTPNetwork(seed=11)
    a, _ = net.add(A), net.add(B)
    ka, kb = connect(net)
    lost: list[int] = []

    def drop_one(data: bytes, source: tuple[str, int], dest: tuple[str, int]) -> bytes | None:
        packet = decode(data)
        if source == A and packet.type == ST_DATA and not lost and len(packet.payload) > 100:
            lost.append(packet.seq_nr)
            return None
        return data

    net.mangle = drop_one
    data = payload(400_000, 15)
    a.send(ka, data)
    start = net.now
    assert net.run_until(lambda: len(net.received(B, kb)) == len(data))
    conn = a.connection(ka)
    assert lost and conn.fast_retransmits == 1 and conn.timeouts == 0
    assert net.now - start < 1.0  # recovered without waiting for a timeout


def test_peer_vanishes_connection_times_out() -> None:
    net = UTPNetwork(seed=12)
    a, _ = net.add(A), net.add(B)
    ka, _ = transfer(net, b"x")
    del net.managers[B]
    a.send(ka, b"are you there")
    assert net.run_until(lambda: net.closed(A, ka) is not None, timeout=300)
    assert net.closed(A, ka).reason is CloseReason.TIMED_OUT  # type: ignore[union-attr]
    assert a.connection(ka).timeouts >= 5 if ka in a._by_key else True


def test_receive_window_flow_control_and_pause() -> None:
    config = UTPConfig(receive_buffer=128 * 1024)
    net = UTPNetwork(seed=13)
    a, b = net.add(A), net.add(B, config)
    ka, kb = connect(net)
    b.pause_reading(kb)
    data = payload(1_000_000, 16)
    a.send(ka, data)
    net.run_for(120)  # far beyond every retransmission limit: a closed window is not a dead peer
    cb = b.connection(kb)
    assert cb.receive_window < 1500 and len(net.received(B, kb)) == 0  # full: less than a packet free
    assert b.buffered_bytes <= 128 * 1024
    assert a.connection(ka).state is State.CONNECTED
    b.resume_reading(kb)
    net.flush(B)
    assert net.run_until(lambda: len(net.received(B, kb)) == len(data), timeout=60)
    assert bytes(net.received(B, kb)) == data and b.buffered_bytes == 0


def test_keepalive_keeps_an_idle_connection() -> None:
    net = UTPNetwork(seed=14)
    a, b = net.add(A), net.add(B)
    ka, kb = transfer(net, b"x", b"y")
    sent = net.sent_datagrams
    net.run_for(300)
    assert a.connection(ka).state is State.CONNECTED and b.connection(kb).state is State.CONNECTED
    assert 10 <= net.sent_datagrams - sent <= 40  # one ST_STATE per side every 29 s


def test_syn_recv_without_confirmation_times_out() -> None:
    net = UTPNetwork(seed=15)
    net.add(B)
    syn = HEADER.pack(ST_SYN << 4 | 1, 0, 1000, 1, 0, 65536, 500, 0)
    net.inject(syn, A, B)
    net.run_until(lambda: bool(net.accepted(B)))
    kb = net.accepted(B)[0]
    assert net.run_until(lambda: net.closed(B, kb) is not None, timeout=30)
    assert net.closed(B, kb).reason is CloseReason.TIMED_OUT  # type: ignore[union-attr]


def test_duplicate_syn_is_answered_again() -> None:
    net = UTPNetwork(seed=16)
    net.add(A), net.add(B)
    first: list[bytes] = []

    def lose_first_synack(data: bytes, source: tuple[str, int], dest: tuple[str, int]) -> bytes | None:
        if source == B and not first:
            first.append(data)
            return None
        return data

    net.mangle = lose_first_synack
    _ka, _kb = connect(net)
    assert first and len(net.accepted(B)) == 1  # the retried SYN found the same connection


@pytest.mark.parametrize(("path", "expected"), [(65507, 65000), (9000, 8900)])
def test_path_mtu_probing_finds_large_packets(path: int, expected: int) -> None:
    net = UTPNetwork(seed=17, latency=0.001)
    a = net.add(A, datagram=65507)
    net.add(B, datagram=65507)

    first_sends: set[int] = set()

    def path_mtu(data: bytes, source: tuple[str, int], dest: tuple[str, int]) -> bytes | None:
        # a datagram above the path MTU is lost the first time (DF set, ICMP "fragmentation
        # needed" comes back); the kernel then knows the path MTU and fragments retransmissions
        if len(data) > path:
            seq = decode(data).seq_nr
            if seq not in first_sends:
                first_sends.add(seq)
                return None
        return data

    net.mangle = path_mtu
    ka, _ = transfer(net, payload(20_000_000, 18))
    conn = a.connection(ka)
    assert expected <= conn.packet_size <= path
    assert conn.cc.window >= conn.packet_size


def test_peer_without_the_datagram_extension_gets_ethernet_sized_packets() -> None:
    net = UTPNetwork(seed=18, latency=0.001)
    a = net.add(A, datagram=65507)
    net.add(B, datagram=65507)

    def strip_extension(data: bytes, source: tuple[str, int], dest: tuple[str, int]) -> bytes | None:
        if source == B and data[1] != 0:  # drop B's datagram limit, as libtorrent would not send it
            packet = decode(data)
            if packet.max_datagram is not None:
                return HEADER.pack(data[0], 0, *struct.unpack_from(">HIIIHH", data, 2)) + packet.payload
        return data

    net.mangle = strip_extension
    ka, _ = transfer(net, payload(3_000_000, 19))
    conn = a.connection(ka)
    assert conn.mtu_ceiling == 1472 and 1400 <= conn.packet_size <= 1472


def test_connection_cap_and_local_errors() -> None:
    net = UTPNetwork(seed=19)
    a = net.add(A, UTPConfig(max_connections=2))
    a.connect(B, net.now)
    a.connect(B, net.now)
    with pytest.raises(LocalProtocolError, match="limit"):
        a.connect(B, net.now)


def test_manager_alone_ignores_garbage() -> None:
    manager = UTPSocketManager(rng=random.Random(1), now=0.0)
    for junk in (b"", b"d1:ad2:id20:", b"\x41" * 5, bytes(range(256))):
        manager.receive_datagram(junk, A, 1.0)
    assert manager.stats.invalid == 4
    assert manager.datagrams_to_send(1.0) == [] and manager.next_event() is None
