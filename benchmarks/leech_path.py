"""The leecher's per-block work without sockets or threads: CPU seconds per GB of each stage.

    python -m benchmarks.leech_path [--megabytes 256] [--repeat 5] [--per-read 16]

One wire engine (``batch_blocks`` on, as a torrent's connections run) and one picker, driven as the
torrent drives them for each socket read of ``--per-read`` 16 KiB blocks: the seeder's ``piece``
frames (built outside the timing) go into ``receive_data`` and come out as one ``BlocksReceived``
(**parse**; each read but the last ends 7,000 bytes into a frame, completed by the next read, as
real reads do), the picker takes the run (**picker**: ``blocks_received``), the new blocks are copied
into their piece buffers (**copy**: ``PieceBuffers.write_blocks``, mostly memory bandwidth), the
picker picks as many blocks again (**pick**: ``pick_spans``) and the engine encodes the requests
(**send**: ``send_requests``).  Complete pieces are marked verified at once (no hashing here).

What it leaves out, and the full process pays (see ``throughput.py`` and ``profile_pair.py``): the
socket read itself (kernel), the event loop, the driver and the torrent's per-read bookkeeping
(rate meter, request budget), hashing and writing pieces in threads.  Timings are ``perf_counter``
per stage, the total is the thread's CPU time; the median of ``--repeat`` runs is printed.
"""

from __future__ import annotations

import argparse
import random
import statistics
import struct
import time

from torrentgoat.bitfield import Bitfield
from torrentgoat.geometry import PieceGeometry
from torrentgoat.picker import PickerConfig, PiecePicker
from torrentgoat.primitives import BLOCK_SIZE, InfoHash, PeerId
from torrentgoat.torrent.pieces import PieceBuffers
from torrentgoat.wire.codec import encode_handshake, encode_message, make_reserved
from torrentgoat.wire.connection import PeerConnection, WireConfig
from torrentgoat.wire.events import BlocksReceived
from torrentgoat.wire.messages import Handshake, HaveAll, Interested, Unchoke

__all__ = ["STAGES", "run"]

STAGES = ("parse", "picker", "copy", "pick", "send")
_HEAD = struct.Struct(">IBII")
_STRADDLE = 7000
"""Bytes of each read's last frame left for the next read (a socket read rarely ends on a frame)."""


def run(megabytes: int = 256, *, per_read: int = 16, piece_length: int = 4 << 20) -> dict[str, float]:
    """CPU seconds per GB (10^9 bytes) of each stage and ``total``."""
    n = megabytes * (1 << 20) // piece_length
    geometry = PieceGeometry(num_pieces=n, piece_length=piece_length, total_length=n * piece_length)
    info_hash = InfoHash(bytes(range(20)))
    conn = PeerConnection(
        peer_id=PeerId(b"-TG0001-benchbenchbe"),
        now=0.0,
        info_hash=info_hash,
        have=Bitfield(n),
        geometry=geometry,
        config=WireConfig(default_peer_reqq=4096, max_outgoing_requests=4096),
    )
    conn.batch_blocks = True
    peer = Handshake(info_hash=info_hash, peer_id=PeerId(b"-XX0001-abcdefghijkl"), reserved=make_reserved())
    conn.receive_data(encode_handshake(peer) + encode_message(HaveAll()) + encode_message(Unchoke()))
    while conn.next_event() is not None:
        pass
    conn.send(Interested())
    conn.data_to_send()
    picker = PiecePicker(geometry, rng=random.Random(0), config=PickerConfig(initial_random_pieces=0))
    everything = Bitfield(n, full=True)
    picker.peer_joined("seed", everything)
    buffers = PieceBuffers(budget=48 << 20)
    payload = bytes(BLOCK_SIZE)
    spent = dict.fromkeys(STAGES, 0.0)
    clock = time.perf_counter
    inflight = picker.pick_spans("seed", everything, 4 * per_read, now=0.0)
    conn.send_requests(inflight)
    conn.data_to_send()
    received = 0
    carry = b""
    outside = 0.0
    cpu = time.thread_time()
    while inflight:
        batch, inflight = inflight[:per_read], inflight[per_read:]
        t = time.thread_time()
        frames = [
            _HEAD.pack(9 + length, 7, index, begin) + payload[:length] for index, begin, length in batch
        ]
        wire = carry + b"".join(frames)
        cut = len(wire) - _STRADDLE if inflight else len(wire)  # reads end inside a frame, as real ones do
        wire, carry = wire[:cut], wire[cut:]
        outside += time.thread_time() - t
        t0 = clock()
        conn.receive_data(wire)
        while (event := conn.next_event()) is not None:
            assert type(event) is BlocksReceived
            t1 = clock()
            arrival = picker.blocks_received("seed", event.blocks)
            t2 = clock()
            buffers.write_blocks(arrival.new, geometry.piece_size)
            t3 = clock()
            spent["parse"] += t1 - t0
            spent["picker"] += t2 - t1
            spent["copy"] += t3 - t2
            received += arrival.new_size
            for index in arrival.complete:
                picker.piece_verified(index)
                buffers.drop(index)
            t0 = clock()
        t4 = clock()
        spans = picker.pick_spans("seed", everything, per_read, now=1.0)
        t5 = clock()
        conn.send_requests(spans)
        conn.buffers_to_send()
        spent["pick"] += t5 - t4
        spent["send"] += clock() - t5
        inflight += spans
    total = time.thread_time() - cpu - outside
    assert picker.is_complete and received == n * piece_length
    gb = received / 1e9
    out = {stage: seconds / gb for stage, seconds in spent.items()}
    out["total"] = total / gb
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--megabytes", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--per-read", type=int, default=16, help="16 KiB blocks per socket read")
    args = parser.parse_args()
    runs = [run(args.megabytes, per_read=args.per_read) for _ in range(args.repeat)]
    keys = (*STAGES, "total")
    medians = "  ".join(f"{k} {statistics.median(r[k] for r in runs):.3f}" for k in keys)
    print(f"CPU s/GB (median of {args.repeat}): {medians}")


if __name__ == "__main__":
    main()
