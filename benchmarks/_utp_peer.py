"""torrentgoat's uTP stack as a one-torrent peer process for ``benchmarks/utp.py``.

    python -m benchmarks._utp_peer seed  --torrent T --dir D [--port P]
    python -m benchmarks._utp_peer leech --torrent T --dir D [--port P] --peer HOST:PORT

What runs: a :class:`~torrentgoat.aio.utp.UTPEndpoint` (4 MiB socket buffers) carrying the real
peer wire engine (:class:`~torrentgoat.wire.PeerConnection`) through unchanged
:class:`~torrentgoat.aio.peer.PeerDriver` s, with the in-memory payload handlers of
:mod:`torrentgoat.testing.peers`: the seed serves the (single-file) torrent's data from an mmap; the
leech requests every block with a 256-deep pipeline, checks each piece's SHA-1 and writes it to
``--dir`` with ``os.pwrite``.  No picker, choker or session (uTP is not wired into the session yet).

JSON lines on stdout like ``tools/lt_peer.py``: ``listening`` (port), ``seeding``, ``finished``
(``seconds``, ``bytes``); the seed prints ``stats`` (packet size, retransmissions, timeouts, cwnd,
RTT of its sending side) when a connection closes.  A seed
runs until stdin closes.  ``--no-uvloop`` uses the plain asyncio loop.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import mmap
import os
import random
import sys
import threading
import time
from pathlib import Path
from typing import Any

from torrentgoat.aio.utp import UTPEndpoint, open_utp_peer_connection
from torrentgoat.metainfo import parse_metainfo
from torrentgoat.primitives import PeerAddress, PeerId
from torrentgoat.testing.peers import PayloadLeecher, PayloadSeeder


def emit(**fields: Any) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


async def seed(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    meta = parse_metainfo(Path(args.torrent).read_bytes())
    info = meta.info
    path = Path(args.dir) / info.name
    with open(path, "rb") as f:
        data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    seeder = PayloadSeeder(info.info_hash, memoryview(data), info.piece_length)
    rng = random.Random(1)
    stop = asyncio.Event()
    threading.Thread(
        target=lambda: (sys.stdin.read(), loop.call_soon_threadsafe(stop.set)), daemon=True
    ).start()
    async with UTPEndpoint(host="127.0.0.1", port=args.port) as endpoint:
        served_closed = seeder.peer_closed

        def peer_closed(peer: Any, reason: str) -> None:
            transport = peer.transport
            conn = endpoint.manager.get(transport.key) if transport is not None else None
            if conn is not None:  # the sending side's view of the connection (lingering now)
                emit(
                    event="stats",
                    packet_size=conn.packet_size,
                    retransmits=conn.retransmits,
                    fast_retransmits=conn.fast_retransmits,
                    timeouts=conn.timeouts,
                    cwnd=conn.cc.window,
                    rtt_ms=round((conn.rtt.rtt or 0) * 1000, 2),
                )
            served_closed(peer, reason)

        seeder.peer_closed = peer_closed  # type: ignore[method-assign]
        endpoint.serve(lambda: seeder.driver(PeerId.generate(rng), loop))
        emit(event="listening", port=endpoint.address[1], buffers=endpoint.socket_buffers)
        emit(event="seeding", seconds=0.0, bytes=info.total_length)
        await stop.wait()


async def leech(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    started = time.monotonic()
    meta = parse_metainfo(Path(args.torrent).read_bytes())
    info = meta.info
    hashes = [info.piece_hash(i) for i in range(len(info.pieces) // 20)]
    fd = os.open(Path(args.dir) / info.name, os.O_WRONLY | os.O_CREAT, 0o644)

    def write(index: int, data: memoryview) -> None:
        os.pwrite(fd, data, index * info.piece_length)

    leecher = PayloadLeecher(
        info.info_hash, info.total_length, info.piece_length, verify=hashes, on_piece=write
    )
    host, _, port = args.peer.rpartition(":")
    async with UTPEndpoint(host="127.0.0.1", port=args.port) as endpoint:
        emit(event="listening", port=endpoint.address[1], buffers=endpoint.socket_buffers)
        engine = leecher.engine(PeerId.generate(random.Random(2)), loop)
        driver = await open_utp_peer_connection(
            PeerAddress(host, int(port)), engine, leecher, endpoint=endpoint
        )
        assert leecher.done is not None
        await leecher.done
        os.close(fd)
        emit(event="finished", seconds=time.monotonic() - started, bytes=info.total_length)
        driver.close("finished")
        await asyncio.sleep(0.05)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["seed", "leech"])
    parser.add_argument("--torrent", required=True)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--peer")
    parser.add_argument("--no-uvloop", action="store_true")
    args = parser.parse_args()
    if not args.no_uvloop:
        try:
            import uvloop

            uvloop.install()
        except ImportError:
            pass
    asyncio.run(seed(args) if args.mode == "seed" else leech(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
