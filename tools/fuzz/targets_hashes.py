"""Fuzz target ``bep52_hashes``: BEP 52 ``hash request`` / ``hashes`` / ``hash reject`` messages
(:mod:`torrentgoat.wire.hashes`) and the piece-layer fetcher that checks them
(:mod:`torrentgoat.wire.piece_layers`).

Modes: the codec (a payload that decodes must encode to the same frame); the server (any request
is answered, and a ``hashes`` answer proves against its root: the fetcher that asked the same run
accepts it); and the fetcher against a lying seed -- honest answers from a real
:class:`HashServer` that the input may corrupt (a flipped byte, other fields, a reply to a request
never sent, rejects).  The security property: whatever the fetcher accepts as a file's piece
layer is that file's real layer.
"""

from __future__ import annotations

import functools
import random
import tempfile
from dataclasses import replace
from pathlib import Path

from tools.fuzz.harness import Reader, expect, target
from torrentgoat.creation import create_torrent
from torrentgoat.metainfo import InfoDict, parse_info
from torrentgoat.wire.hashes import (
    MSG_HASH_REQUEST,
    Hashes,
    HashReject,
    HashRequest,
    HashServer,
    decode_hash_message,
    encode_hash_message,
)
from torrentgoat.wire.piece_layers import PieceLayerFetcher

__all__: list[str] = []


@functools.cache
def _torrent() -> tuple[InfoDict, InfoDict]:
    """A hybrid torrent of two files (40 and 9 pieces of 16 KiB): with its piece layers, and as BEP 9
    metadata alone (without them)."""
    rng = random.Random(52)
    with tempfile.TemporaryDirectory(prefix="tg-fuzz-bep52-") as tmp:
        root = Path(tmp) / "model"
        root.mkdir()
        (root / "big.bin").write_bytes(rng.randbytes(40 * 16384 - 100))
        (root / "small.bin").write_bytes(rng.randbytes(9 * 16384))
        metainfo = create_torrent(root, piece_length=16384, format="hybrid", creation_date=None)
    full = metainfo.info
    return full, parse_info(full.raw)


def _reject(request: HashRequest) -> HashReject:
    return HashReject(
        pieces_root=request.pieces_root,
        base_layer=request.base_layer,
        index=request.index,
        length=request.length,
        proof_layers=request.proof_layers,
    )


def _mutate(reader: Reader, answer: Hashes) -> Hashes:
    what = reader.byte() % 6
    if what == 0:
        return answer
    if what == 1 and answer.hashes:
        raw = bytearray(answer.hashes)
        raw[reader.uint(2) % len(raw)] ^= 1 << (reader.byte() % 8)
        return replace(answer, hashes=bytes(raw))
    if what == 2:
        return replace(answer, hashes=answer.hashes[: -32 * (1 + reader.byte() % 3)])
    if what == 3:
        return replace(answer, index=answer.index + reader.byte(), length=answer.length * 2)
    if what == 4:
        return replace(answer, proof_layers=reader.byte() % 16)
    return replace(answer, hashes=answer.hashes + reader.take(32).ljust(32, b"\0"))


@target(
    "bep52_hashes",
    "torrentgoat.wire.hashes / piece_layers: BEP 52 hash messages, serving, and fetching piece layers from a lying seed",
)
def fuzz_bep52_hashes(data: bytes) -> None:
    reader = Reader(data)
    mode = reader.byte() % 3
    if mode == 0:
        msg_id = MSG_HASH_REQUEST + reader.byte() % 3
        message = decode_hash_message(msg_id, reader.rest())
        frame = encode_hash_message(message)
        expect(
            frame[4] == msg_id and decode_hash_message(msg_id, frame[5:]) == message,
            "bep52: codec round trip",
        )
        return
    full, metadata = _torrent()
    assert full.v2 is not None
    server = HashServer(full)
    files = full.v2.files
    if mode == 1:
        file = reader.choice(files)
        request = HashRequest(
            pieces_root=file.root if not reader.flag() else reader.take(32).ljust(32, b"\0"),
            base_layer=reader.byte() % 12,
            index=reader.uint(2),
            length=reader.uint(2),
            proof_layers=reader.byte() % 12,
        )
        answer = server.respond(request)
        expect(
            answer.pieces_root == request.pieces_root and answer.index == request.index,
            "bep52: answer to another request",
        )
        return
    fetcher = PieceLayerFetcher(metadata)
    now = 0.0
    while reader.remaining and not fetcher.done:
        peer = reader.byte() % 3
        request = fetcher.next_request(peer, now)
        now += reader.byte() / 4
        if request is None:
            continue
        answer = server.respond(request)
        if isinstance(answer, HashReject) or reader.flag():  # the seed refuses (or is made to)
            fetcher.receive_reject(peer, answer if isinstance(answer, HashReject) else _reject(request))
            continue
        fetcher.receive_hashes(peer, _mutate(reader, answer), now)  # InvalidHashesError: the peer is dropped
    for root, layer in fetcher.piece_layers().items():
        expect(full.v2.piece_layers.get(root) == layer, "bep52: a forged piece layer was accepted")
