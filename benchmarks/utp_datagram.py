"""CPU per uTP datagram (BEP 29) of 1472 bytes -- the size a libtorrent peer takes -- in microseconds.

Run: ``python -m benchmarks.utp_datagram [--size 128MiB] [--repeat 3]``; to compare trees, run it
with another checkout first on the path: ``PYTHONPATH=/other/checkout python benchmarks/utp_datagram.py``.

**engine** (no sockets): two :class:`~torrentgoat.utp.manager.UTPSocketManager` s, one connection;
each round the sender's output goes to the receiver, whose acks (one per round, as the driver acks
once per read burst) go back; a fake clock advances 25 us each way.  ``send`` = the sender's
``datagrams_to_send`` + its ``receive_datagram`` of the acks (packetizing, in-flight bookkeeping,
acks, LEDBAT); ``receive`` = the receiver's ``receive_datagram`` of the data + ``next_event`` + its
acks.

**endpoint** (loopback UDP, the asyncio driver, system calls included): one
:class:`~torrentgoat.aio.utp.UTPEndpoint` connected to another.  ``receive``: 400 data datagrams
are written to its socket with plain ``sendto`` (as libtorrent sends them, untimed), then one
``_on_readable()`` reads, acks and delivers them to a protocol that counts bytes.  ``send``: 400
packets' worth is written to a transport (after 10 rounds of path MTU probing), then one ``_pump()`` packetizes and sends them (UDP
segmentation offload where the tree has it), and the peer's ack is fed back (timed too); the
window is held open so every round is 400 full packets.  :func:`time.thread_time`, per datagram.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
from typing import Any

from torrentgoat.aio.utp import UTPEndpoint
from torrentgoat.testing.shards import parse_size
from torrentgoat.utp.config import UTPConfig
from torrentgoat.utp.events import ConnectionAccepted
from torrentgoat.utp.manager import UTPSocketManager
from torrentgoat.utp.packet import HEADER

__all__ = ["endpoint_costs", "engine_costs", "main"]

_A = ("127.0.0.1", 1000)
_B = ("127.0.0.1", 2000)
DATAGRAM = 1472
BURST = 400


def engine_costs(size: int) -> tuple[float, float]:
    """(send us, receive us) per data datagram for one transfer of ``size`` bytes."""
    now = 1000.0
    config = UTPConfig()
    sender = UTPSocketManager(rng=random.Random(1), now=now, config=config, path_datagram=lambda _: DATAGRAM)
    receiver = UTPSocketManager(
        rng=random.Random(2), now=now, config=config, path_datagram=lambda _: DATAGRAM
    )
    key = sender.connect(_B, now)
    for data, _ in sender.datagrams_to_send(now):
        receiver.receive_datagram(data, _A, now)
    accepted = False
    while (event := receiver.next_event()) is not None:
        accepted = accepted or isinstance(event, ConnectionAccepted)
    for data, _ in receiver.datagrams_to_send(now):
        sender.receive_datagram(data, _B, now)
    while sender.next_event() is not None:
        pass
    assert accepted
    block = bytes(range(256)) * 64  # 16 KiB, as the peer wire writes blocks
    written = received = packets = 0
    send_cpu = receive_cpu = 0.0
    clock = time.thread_time
    while received < size:
        while written < size and sender.connection(key).send_buffer_size < 1 << 20:
            sender.send(key, block)
            written += len(block)
        now += 50e-6
        t0 = clock()
        out = sender.datagrams_to_send(now)
        t1 = clock()
        now += 25e-6  # one-way delay
        for data, _ in out:
            receiver.receive_datagram(data, _A, now)
        while (event := receiver.next_event()) is not None:
            received += len(getattr(event, "data", b""))
        acks = receiver.datagrams_to_send(now)
        t2 = clock()
        now += 25e-6
        for data, _ in acks:
            sender.receive_datagram(data, _B, now)
        while sender.next_event() is not None:
            pass
        t3 = clock()
        send_cpu += (t1 - t0) + (t3 - t2)
        receive_cpu += t2 - t1
        packets += len(out)
        if not out and not acks:
            sender.handle_timer(now + 5)
    return send_cpu / packets * 1e6, receive_cpu / packets * 1e6


class _Sink(asyncio.Protocol):
    received = 0

    def data_received(self, data: bytes) -> None:
        _Sink.received += len(data)


async def endpoint_costs(rounds: int) -> tuple[float, float]:
    """(send us, receive us) per datagram through a real endpoint (see the module docstring)."""
    config = UTPConfig(max_datagram=DATAGRAM)
    a = UTPEndpoint(host="127.0.0.1", config=config)
    b = UTPEndpoint(host="127.0.0.1", config=config)
    await a.start()
    await b.start()
    try:
        a.serve(_Sink)
        transport, _ = await b.open_connection(a.address, asyncio.Protocol)
        transport.write(b"x")
        async with asyncio.timeout(10):
            while not _Sink.received:
                await asyncio.sleep(0.01)
        # from here on the test drives both sockets itself
        a_sock: Any = a._sock
        b_sock: Any = b._sock
        a.loop.remove_reader(a_sock.fileno())
        b.loop.remove_reader(b_sock.fileno())
        conn_b = b.manager.connection(transport.key)
        payload = bytes(DATAGRAM - 20)
        clock = time.thread_time
        receive_cpu = send_cpu = 0.0
        seq = conn_b._seq_nr
        for _ in range(rounds):
            for _ in range(BURST):  # as libtorrent would send them
                stamp = int(time.monotonic() * 1e6) & 0xFFFFFFFF
                header = HEADER.pack(0x01, 0, conn_b.send_id, stamp, 0, 1 << 20, seq, conn_b.rx.ack_nr)
                b_sock.sendto(header + payload, a.address)
                seq = (seq + 1) & 0xFFFF
            t = clock()
            a._on_readable()
            receive_cpu += clock() - t
            _drain(b_sock)
        conn_b._seq_nr = seq
        conn_b._acked_nr = conn_b._loss_seq = (seq - 1) & 0xFFFF  # and a acked them
        # send: b writes, b's pump packetizes and sends to a's socket (drained untimed)
        for index in range(-10, rounds):  # 10 rounds untimed: path MTU probing finds 1472 bytes
            conn_b.cc.cwnd = 1e9  # every round is BURST full packets, whatever LEDBAT thinks
            transport.write(bytes(BURST * (conn_b.packet_size - 20)))
            t = clock()
            b._pump()
            spent = clock() - t
            _drain(a_sock)
            last = (conn_b._seq_nr - 1) & 0xFFFF
            stamp = int(time.monotonic() * 1e6) & 0xFFFFFFFF
            ack = HEADER.pack(0x21, 0, conn_b.recv_id, stamp, 1000, 1 << 22, 0, last)
            t = clock()
            b.manager.receive_datagram(ack, a.address, b.loop.time())
            if index >= 0:
                send_cpu += spent + clock() - t
        assert conn_b.packet_size == DATAGRAM - 15, conn_b.packet_size  # probing stops within 16 bytes
        return send_cpu / (rounds * BURST) * 1e6, receive_cpu / (rounds * BURST) * 1e6
    finally:
        await a.close()
        await b.close()


def _drain(sock: Any) -> None:
    while True:
        try:
            sock.recvfrom(65536)
        except BlockingIOError:
            return


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", default="128MiB", help="engine transfer size")
    parser.add_argument("--rounds", type=int, default=200, help="endpoint bursts of 400 datagrams")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    size = parse_size(args.size)
    rows: list[tuple[float, float, float, float]] = []
    for i in range(args.repeat):
        engine_send, engine_receive = engine_costs(size)
        endpoint_send, endpoint_receive = asyncio.run(endpoint_costs(args.rounds))
        rows.append((engine_send, engine_receive, endpoint_send, endpoint_receive))
        print(
            f"run {i + 1}: engine send {engine_send:.2f} receive {engine_receive:.2f} us, "
            f"endpoint send {endpoint_send:.2f} receive {endpoint_receive:.2f} us",
            flush=True,
        )
    med = [statistics.median(column) for column in zip(*rows, strict=True)]
    print(f"median us per 1472-byte datagram: engine send {med[0]:.2f}, receive {med[1]:.2f}; ", end="")
    print(f"endpoint (with system calls) send {med[2]:.2f}, receive {med[3]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
