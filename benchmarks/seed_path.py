"""The seeder's per-block work in parts, without a second client: CPU seconds per GB of blocks served.

    python -m benchmarks.seed_path [--megabytes 1024] [--per-read 73] [--data FILE]

* ``engine``: the wire engine alone -- 16 KiB ``request`` frames fed in reads of ``--per-read``
  frames (73 is what a libtorrent leecher's reads carried in ``throughput.py``), batched
  (``BlocksRequested``), each answered with ``answer_request`` (the header of its ``piece`` message);
* ``kernel``: the same bytes over a loopback TCP connection to a reading child process, two ways:
  ``read+writev`` -- ``preadv`` of 1 MiB chunks into a buffer and one ``sendmsg`` of header + block
  views per 256 KiB (what the read cache does: the path of encrypted and uTP connections), and
  ``sendfile`` -- per block the header with ``MSG_MORE`` and the block by ``os.sendfile`` from the page
  cache (the path of plain TCP connections).  CPU of the sending process (user, system) and of the
  reader, per GB.

Linux only (``MSG_MORE``).  The file (``--data``, or a temporary one of ``--megabytes``) is read once
first, so both ways send from the page cache.
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import struct
import tempfile
import time
from pathlib import Path

from torrentgoat.bitfield import Bitfield
from torrentgoat.geometry import PieceGeometry
from torrentgoat.primitives import InfoHash, PeerId
from torrentgoat.wire.codec import encode_handshake, encode_message, make_reserved
from torrentgoat.wire.connection import PeerConnection, WireConfig
from torrentgoat.wire.events import BlocksRequested
from torrentgoat.wire.messages import Handshake, Interested, Unchoke

__all__ = ["engine", "kernel"]

BLOCK = 16 * 1024
PIECE = 4 * 1024 * 1024
_REQUEST = struct.Struct(">IBIII")
_HEADER = struct.Struct(">IBII")


def engine(megabytes: int, per_read: int) -> float:
    """CPU s/GB of parsing the requests and answering them (the engine's share of serving)."""
    blocks = megabytes * 1024 * 1024 // BLOCK
    geometry = PieceGeometry(PIECE, blocks * BLOCK, num_pieces=-(-blocks * BLOCK // PIECE))
    info_hash = InfoHash(b"i" * 20)
    seed = PeerConnection(
        peer_id=PeerId(b"s" * 20),
        now=0.0,
        info_hash=info_hash,
        have=Bitfield(geometry.num_pieces, full=True),
        geometry=geometry,
        config=WireConfig(max_peer_requests=blocks + 1),
        listen_port=1,
        peer_ip=b"\x7f\x00\x00\x01",
    )
    seed.batch_requests = True
    reserved = make_reserved(extensions=True, fast=True)
    seed.receive_data(
        encode_handshake(Handshake(reserved=reserved, info_hash=info_hash, peer_id=PeerId(b"l" * 20)))
    )
    seed.receive_data(encode_message(Interested()))
    while seed.next_event() is not None:
        pass
    seed.send(Unchoke())
    seed.buffers_to_send()
    per_piece = PIECE // BLOCK
    frames = [_REQUEST.pack(13, 6, i // per_piece, (i % per_piece) * BLOCK, BLOCK) for i in range(blocks)]
    reads = [b"".join(frames[i : i + per_read]) for i in range(0, blocks, per_read)]
    answered = 0
    started = time.process_time()
    for data in reads:
        seed.receive_data(data)
        while (event := seed.next_event()) is not None:
            if isinstance(event, BlocksRequested):
                for index, begin, length in event.requests:
                    if seed.answer_request(index, begin, length) is not None:
                        answered += 1
    cpu = time.process_time() - started
    assert answered == blocks
    return cpu / (blocks * BLOCK / 1e9)


def _reader(listener: socket.socket) -> None:
    conn, _ = listener.accept()
    buf = bytearray(1 << 20)
    while conn.recv_into(buf):
        pass


def kernel(path: Path, how: str) -> tuple[float, float, float, float]:
    """(MB/s, sender user s/GB, sender system s/GB, reader CPU s/GB) of sending ``path`` ``how``."""
    size = path.stat().st_size // (1 << 20) << 20
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    child = os.fork()
    if child == 0:  # pragma: no cover - the reading process
        try:
            _reader(listener)
        finally:
            os._exit(0)
    address = listener.getsockname()
    listener.close()
    sock = socket.create_connection(address)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    fd = os.open(path, os.O_RDONLY)
    before = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    try:
        if how == "read+writev":
            chunk = bytearray(1 << 20)
            view = memoryview(chunk)
            for offset in range(0, size, 1 << 20):
                os.preadv(fd, [chunk], offset)
                for burst in range(0, 1 << 20, 256 * 1024):
                    buffers: list[bytes | memoryview] = []
                    for begin in range(burst, burst + 256 * 1024, BLOCK):
                        buffers += [
                            _HEADER.pack(9 + BLOCK, 7, offset // PIECE, begin),
                            view[begin : begin + BLOCK],
                        ]
                    sock.sendmsg(buffers)
        else:
            out = sock.fileno()
            cork = how == "sendfile+cork"
            for offset in range(0, size, BLOCK):
                if cork and offset % (1 << 20) == 0:
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
                sock.send(_HEADER.pack(9 + BLOCK, 7, offset // PIECE, offset % PIECE), socket.MSG_MORE)
                done = 0
                while done < BLOCK:
                    done += os.sendfile(out, fd, offset + done, BLOCK - done)
                if cork and (offset + BLOCK) % (1 << 20) == 0:
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 0)
    finally:
        sock.close()
        os.close(fd)
        os.waitpid(child, 0)
    seconds = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    reader = resource.getrusage(resource.RUSAGE_CHILDREN)
    gb = size / 1e9
    return (
        size / seconds / 1e6,
        (after.ru_utime - before.ru_utime) / gb,
        (after.ru_stime - before.ru_stime) / gb,
        (reader.ru_utime + reader.ru_stime - children.ru_utime - children.ru_stime) / gb,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--megabytes", type=int, default=1024)
    parser.add_argument("--per-read", type=int, default=73)
    parser.add_argument("--data", type=Path, default=None, help="a file to send (default: a temporary one)")
    args = parser.parse_args(argv)
    print(f"load {os.getloadavg()[0]:.1f}")
    print(
        f"engine: parse + answer, {args.per_read} requests per read: {engine(args.megabytes, args.per_read):.3f} CPU s/GB"
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = args.data
        if path is None:
            path = Path(tmp) / "payload"
            with path.open("wb") as f:
                for _ in range(args.megabytes):
                    f.write(os.urandom(1 << 20))
        with path.open("rb", buffering=0) as f:  # into the page cache
            while f.read(8 << 20):
                pass
        for how in ("read+writev", "sendfile", "read+writev", "sendfile"):
            mbps, user, system, reader = kernel(path, how)
            print(
                f"kernel {how:<12} {mbps:6.0f} MB/s  sender user {user:.2f} + system {system:.2f} s/GB, "
                f"reader {reader:.2f} s/GB"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
