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

``--floor`` also times the reference for the same stream: the least pure Python can do for it, one
loop per read that cuts each frame, pops its request, marks its block, copies it into its piece
buffer and then picks and encodes as many requests again -- no layers, no events, and none of the
checks the real path makes (lengths, endgame duplicates, blocks in other states, rates).  The gap
between the two totals is the most that fusing the wire engine, the picker and the piece buffers
into one loop could save.

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

__all__ = ["STAGES", "floor", "run"]

STAGES = ("parse", "picker", "copy", "pick", "send")
_HEAD = struct.Struct(">IBII")
_REQUEST = struct.Struct(">IBIII")
"""length, id, index, begin, length: a whole ``request`` frame (BEP 3), for the reference loop."""
_SHIFT = BLOCK_SIZE.bit_length() - 1
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
        wire, carry = _stream(batch, carry, payload, not inflight)  # reads end inside a frame
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


def _stream(
    batch: list[tuple[int, int, int]], carry: bytes, payload: bytes, last: bool
) -> tuple[bytes, bytes]:
    """The seeder's ``piece`` frames for ``batch`` after ``carry``, cut as a socket read: the bytes of
    this read and the carry into the next."""
    wire = carry + b"".join(
        _HEAD.pack(9 + length, 7, index, begin) + payload[:length] for index, begin, length in batch
    )
    cut = len(wire) if last else len(wire) - _STRADDLE
    return wire[:cut], wire[cut:]


def floor(megabytes: int = 256, *, per_read: int = 16, piece_length: int = 4 << 20) -> float:
    """CPU seconds per GB of the reference: the same stream through one fused loop (module docstring)."""
    n = megabytes * (1 << 20) // piece_length
    per_piece = piece_length // BLOCK_SIZE
    requested: list[list[bool]] = [[False] * per_piece for _ in range(n)]
    done = [0] * n
    buffers: dict[int, bytearray] = {}
    spare: list[bytearray] = []
    requests: dict[tuple[int, int, int], None] = {}
    out = bytearray(17 * per_read)
    cursor = 0

    def pick(count: int) -> list[tuple[int, int, int]]:
        nonlocal cursor
        stop = min(cursor + count, n * per_piece)
        spans = []
        for block in range(cursor, stop):
            index, slot = divmod(block, per_piece)
            requested[index][slot] = True
            spans.append((index, slot * BLOCK_SIZE, BLOCK_SIZE))
        cursor = stop
        return spans

    payload = bytes(BLOCK_SIZE)
    inflight = pick(4 * per_read)
    requests.update(dict.fromkeys(inflight))
    carry = b""
    received = 0
    outside = 0.0
    unpack = _HEAD.unpack_from
    cpu = time.thread_time()
    while inflight:
        batch, inflight = inflight[:per_read], inflight[per_read:]
        t = time.thread_time()
        wire, carry = _stream(batch, carry, payload, not inflight)
        outside += time.thread_time() - t
        src = memoryview(wire)
        pos, end, last, slots = 0, len(wire), -1, requested[0]
        buf = bytearray()
        while end - pos >= 13:
            length, _, index, begin = unpack(src, pos)
            stop = pos + 4 + length
            if stop > end:
                break
            del requests[(index, begin, length - 9)]
            if index != last:
                last, slots = index, requested[index]
                found = buffers.get(index)
                if found is None:  # recycled, as PieceBuffers does
                    found = buffers[index] = spare.pop() if spare else bytearray(piece_length)
                buf = found
            slots[begin >> _SHIFT] = False
            buf[begin : stop - pos - 13 + begin] = src[pos + 13 : stop]
            done[index] += 1
            if done[index] == per_piece:
                spare.append(buffers.pop(index))
            received += length - 9
            pos = stop
        carry = bytes(src[pos:]) + carry
        src.release()
        spans = pick(per_read)
        for i, (index, begin, length) in enumerate(spans):
            _REQUEST.pack_into(out, 17 * i, 13, 6, index, begin, length)
            requests[(index, begin, length)] = None
        inflight += spans
    total = time.thread_time() - cpu - outside
    assert received == n * piece_length and not buffers
    return total / (received / 1e9)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--megabytes", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--per-read", type=int, default=16, help="16 KiB blocks per socket read")
    parser.add_argument("--floor", action="store_true", help="also time the one-loop reference")
    args = parser.parse_args()
    runs, floors = [], []
    for _ in range(args.repeat):  # interleaved: both see the same machine
        runs.append(run(args.megabytes, per_read=args.per_read))
        if args.floor:
            floors.append(floor(args.megabytes, per_read=args.per_read))
    keys = (*STAGES, "total")
    medians = "  ".join(f"{k} {statistics.median(r[k] for r in runs):.3f}" for k in keys)
    print(f"CPU s/GB (median of {args.repeat}): {medians}")
    if floors:
        total, least = statistics.median(r["total"] for r in runs), statistics.median(floors)
        print(
            f"floor (one fused loop, no checks): {least:.3f} s/GB; "
            f"the real path is {total / least:.2f}x it, {total - least:.3f} s/GB above"
        )


if __name__ == "__main__":
    main()
