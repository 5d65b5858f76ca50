"""Micro-benchmarks of the peer wire engine (pure Python, no sockets).

* parse: 16 KiB ``piece`` messages fed in 64 KiB ``bytes`` chunks through a PeerConnection; MB/s
  of block payload delivered as BlockReceived events (requests are registered outside the timing,
  as a real download does them in its own time); then the same with ``batch_blocks`` on, as a
  torrent's connections run (the blocks of a chunk as one BlocksReceived);
* pair: two engines end to end -- the leecher requests, the seeder answers every BlockRequested
  with ``send_piece`` (a memoryview of its data), the bytes travel in 64 KiB chunks; the timing
  covers both engines' work (request encode/parse, piece framing, join, parse).

Run: ``python benchmarks/wire_parse.py [--megabytes 512] [--chunk 65536]``.
"""

from __future__ import annotations

import argparse
import time

from torrentgoat.bitfield import Bitfield
from torrentgoat.primitives import BLOCK_SIZE, InfoHash, PeerId
from torrentgoat.wire.codec import encode_handshake, encode_message, make_reserved
from torrentgoat.wire.connection import PeerConnection, PieceGeometry, WireConfig
from torrentgoat.wire.events import BlockReceived, BlocksReceived
from torrentgoat.wire.messages import Handshake, HaveAll, Interested, Piece, Request, Unchoke

__all__ = ["run", "run_pair"]


def run(
    megabytes: int = 512, chunk: int = 64 * 1024, piece_length: int = 4 << 20, *, batched: bool = False
) -> float:
    """Return MB/s (10^6 bytes per second) of block payload parsed; ``batched``: with
    ``batch_blocks`` on, as a torrent's connections run (one :class:`BlocksReceived` per read)."""
    total = megabytes * 1024 * 1024
    num_pieces = total // piece_length
    blocks_per_piece = piece_length // BLOCK_SIZE
    info_hash = InfoHash(bytes(range(20)))
    geometry = PieceGeometry(
        num_pieces=num_pieces, piece_length=piece_length, total_length=num_pieces * piece_length
    )
    conn = PeerConnection(
        peer_id=PeerId(b"-TG0001-benchbenchbe"),
        now=0.0,
        info_hash=info_hash,
        have=Bitfield(num_pieces),
        geometry=geometry,
        config=WireConfig(default_peer_reqq=4096, max_outgoing_requests=4096),
    )
    peer = Handshake(info_hash=info_hash, peer_id=PeerId(b"-XX0001-abcdefghijkl"), reserved=make_reserved())
    conn.batch_blocks = batched
    conn.receive_data(encode_handshake(peer) + encode_message(HaveAll()) + encode_message(Unchoke()))
    while conn.next_event() is not None:
        pass
    conn.data_to_send()
    # One piece worth of wire bytes, reused for every piece index (the engine checks index/begin).
    block = bytes(BLOCK_SIZE)
    elapsed = 0.0
    received = 0
    for index in range(num_pieces):
        wire = b"".join(
            encode_message(Piece(index=index, begin=b * BLOCK_SIZE, data=block))
            for b in range(blocks_per_piece)
        )
        # register the requests outside the timing (the driver does this in its own time)
        for b in range(blocks_per_piece):
            conn.send(Request(index=index, begin=b * BLOCK_SIZE, length=BLOCK_SIZE))
        conn.data_to_send()
        chunks = [wire[i : i + chunk] for i in range(0, len(wire), chunk)]
        start = time.perf_counter()
        for part in chunks:
            conn.receive_data(part)
            while (event := conn.next_event()) is not None:
                if type(event) is BlockReceived:
                    received += len(event.data)
                elif type(event) is BlocksReceived:
                    for _, _, data in event.blocks:
                        received += len(data)
        elapsed += time.perf_counter() - start
    assert received == num_pieces * piece_length, (received, num_pieces * piece_length)
    return received / elapsed / 1e6


def run_pair(megabytes: int = 256, chunk: int = 64 * 1024, piece_length: int = 4 << 20) -> float:
    """Return MB/s of block payload moved between two engines (both sides' CPU in one thread)."""
    from torrentgoat.testing.wire import make_pair
    from torrentgoat.wire.events import BlockRequested

    num_pieces = megabytes * 1024 * 1024 // piece_length
    config = WireConfig(default_peer_reqq=1024, max_peer_requests=1024, max_outgoing_requests=1024)
    pair = make_pair(
        num_pieces=num_pieces,
        piece_length=piece_length,
        b_have=Bitfield(num_pieces, full=True),
        a_config=config,
        b_config=config,
    )
    pair.pump()
    a, b = pair.a, pair.b
    a.send(Interested())
    pair.pump()
    b.send(Unchoke())
    pair.pump()
    payload = memoryview(bytes(piece_length))
    blocks = [(i, begin) for i in range(num_pieces) for begin in range(0, piece_length, BLOCK_SIZE)]
    received = 0
    start = time.perf_counter()
    next_block = 0
    while received < num_pieces * piece_length:
        while next_block < len(blocks) and a.can_request():
            index, begin = blocks[next_block]
            a.send(Request(index=index, begin=begin, length=BLOCK_SIZE))
            next_block += 1
        b.receive_data(a.data_to_send())
        while (event := b.next_event()) is not None:
            if type(event) is BlockRequested:
                b.send_piece(event.index, event.begin, payload[event.begin : event.begin + event.length])
        wire = b.data_to_send()
        for offset in range(0, len(wire), chunk):
            a.receive_data(wire[offset : offset + chunk])
            while (event := a.next_event()) is not None:
                if type(event) is BlockReceived:
                    received += len(event.data)
    return received / (time.perf_counter() - start) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--megabytes", type=int, default=512)
    parser.add_argument("--chunk", type=int, default=64 * 1024)
    args = parser.parse_args()
    rate = run(args.megabytes, args.chunk)
    print(f"wire parse: {rate:,.0f} MB/s of 16 KiB piece messages in {args.chunk} B chunks")
    rate = run(args.megabytes, args.chunk, batched=True)
    print(f"wire parse: {rate:,.0f} MB/s batched (BlocksReceived per chunk, as torrents run it)")
    rate = run_pair(max(64, args.megabytes // 2), args.chunk)
    print(f"wire pair:  {rate:,.0f} MB/s seeder engine -> leecher engine (both in this thread)")


if __name__ == "__main__":
    main()
