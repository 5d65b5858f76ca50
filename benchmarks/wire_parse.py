"""Micro-benchmark: parse 16 KiB ``piece`` messages fed in 64 KiB chunks through PeerConnection.

Run: ``python benchmarks/wire_parse.py [--megabytes 1024] [--chunk 65536]``.  Prints MB/s of block
payload delivered as BlockReceived events (requests are registered first, as a real download does).
"""

from __future__ import annotations

import argparse
import time

from torrentgoat.bitfield import Bitfield
from torrentgoat.primitives import BLOCK_SIZE, InfoHash, PeerId
from torrentgoat.wire.codec import encode_handshake, encode_message, make_reserved
from torrentgoat.wire.connection import PeerConnection, PieceGeometry, WireConfig
from torrentgoat.wire.events import BlockReceived
from torrentgoat.wire.messages import Handshake, HaveAll, Piece, Request, Unchoke

__all__ = ["run"]


def run(megabytes: int = 512, chunk: int = 64 * 1024, piece_length: int = 4 << 20) -> float:
    """Return MB/s (10^6 bytes per second) of block payload parsed."""
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
        elapsed += time.perf_counter() - start
    assert received == num_pieces * piece_length, (received, num_pieces * piece_length)
    return received / elapsed / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--megabytes", type=int, default=512)
    parser.add_argument("--chunk", type=int, default=64 * 1024)
    args = parser.parse_args()
    rate = run(args.megabytes, args.chunk)
    print(f"wire parse: {rate:,.0f} MB/s of 16 KiB piece messages in {args.chunk} B chunks")


if __name__ == "__main__":
    main()
