"""CPU per uTP datagram of the sans-IO engine (BEP 29), without sockets: microseconds per data packet.

Run: ``python -m benchmarks.utp_engine [--size 256MiB] [--datagram 1472] [--repeat 3]``.

Two :class:`~torrentgoat.utp.manager.UTPSocketManager` s in one process, one connection, the
sender's path limited to ``--datagram`` bytes (1472: what a libtorrent peer accepts, so the
packets are the ones exchanged with libtorrent).  Each round the sender's output goes to the
receiver, whose acks (one per round, as the asyncio driver sends one per read burst) go back.
A fake clock advances 25 us each way (and 50 us between rounds).  Timed separately with :func:`time.process_time`:

* **send** = the sender's ``datagrams_to_send`` + its ``receive_datagram`` of the acks
  (packetizing, headers, in-flight bookkeeping, ack processing, LEDBAT);
* **receive** = the receiver's ``receive_datagram`` of the data + ``next_event`` + its acks.

Both per data datagram.  The system calls (``sendto``/``recvfrom``, ~2-4 us each on loopback) are
not included: see :mod:`benchmarks.throughput` ``--utp`` for the whole clients.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from torrentgoat.testing.shards import parse_size
from torrentgoat.utp.config import UTPConfig
from torrentgoat.utp.events import ConnectionAccepted
from torrentgoat.utp.manager import UTPSocketManager

__all__ = ["main", "run_once"]

_A = ("127.0.0.1", 1000)
_B = ("127.0.0.1", 2000)


def run_once(size: int, datagram: int) -> tuple[float, float, int]:
    """(send us, receive us, data datagrams) for one transfer of ``size`` bytes."""
    now = 1000.0
    config = UTPConfig()
    sender = UTPSocketManager(rng=random.Random(1), now=now, config=config, path_datagram=lambda _: datagram)
    receiver = UTPSocketManager(
        rng=random.Random(2), now=now, config=config, path_datagram=lambda _: datagram
    )
    key = sender.connect(_B, now)
    for data, _ in sender.datagrams_to_send(now):
        receiver.receive_datagram(data, _A, now)
    peer_key = 0
    while (event := receiver.next_event()) is not None:
        if isinstance(event, ConnectionAccepted):
            peer_key = event.key
    for data, _ in receiver.datagrams_to_send(now):
        sender.receive_datagram(data, _B, now)
    while sender.next_event() is not None:
        pass
    block = bytes(range(256)) * 64  # 16 KiB, as the peer wire writes blocks
    written = 0
    send_cpu = receive_cpu = 0.0
    packets = 0
    received = 0
    clock = time.process_time
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
    assert peer_key
    return send_cpu / packets * 1e6, receive_cpu / packets * 1e6, packets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", default="256MiB")
    parser.add_argument("--datagram", type=int, default=1472, help="largest UDP payload (1472: libtorrent's)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    size = parse_size(args.size)
    sends, receives = [], []
    for i in range(args.repeat):
        send, receive, packets = run_once(size, args.datagram)
        sends.append(send)
        receives.append(receive)
        print(
            f"run {i + 1}: {packets} data datagrams, send {send:.2f} us, receive {receive:.2f} us", flush=True
        )
    print(
        f"median per data datagram: send {statistics.median(sends):.2f} us, "
        f"receive {statistics.median(receives):.2f} us"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
