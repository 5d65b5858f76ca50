"""BEP 52 hash messages: codecs (property tests), request rules, serving, and the piece-layer fetcher
against a server through bytes, with hostile answers."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from torrentgoat.creation import create_torrent
from torrentgoat.errors import InvalidHashesError, LocalProtocolError, RemoteProtocolError
from torrentgoat.merkle import BLOCK_SIZE, MerkleTree, block_hashes, pad_hash
from torrentgoat.metainfo import InfoDict, Metainfo, parse_info
from torrentgoat.testing.wire import ConnectionPair, make_pair
from torrentgoat.wire.codec import make_reserved
from torrentgoat.wire.config import WireConfig
from torrentgoat.wire.events import HashesReceived, HashRejected, HashRequested
from torrentgoat.wire.hashes import (
    MSG_HASH_REJECT,
    MSG_HASH_REQUEST,
    MSG_HASHES,
    Hashes,
    HashReject,
    HashRequest,
    HashServer,
    check_request,
    decode_hash_message,
    encode_hash_message,
    serve_hash_request,
    set_v2_bit,
    supports_v2,
)
from torrentgoat.wire.piece_layers import CHUNK, PieceLayerFetcher, PieceLayersCompleted, PieceLayerVerified

ROOT = b"\x07" * 32

u32 = st.integers(min_value=0, max_value=2**32 - 1)


def roundtrip(message: HashRequest | Hashes | HashReject) -> HashRequest | Hashes | HashReject:
    frame = encode_hash_message(message)
    assert int.from_bytes(frame[:4], "big") == len(frame) - 4
    return decode_hash_message(frame[4], frame[5:])


@settings(max_examples=200)
@given(
    root=st.binary(min_size=32, max_size=32), base=u32, index=u32, length=u32, proof=u32, n=st.integers(0, 20)
)
def test_codec_roundtrip(root: bytes, base: int, index: int, length: int, proof: int, n: int) -> None:
    fields = {
        "pieces_root": root,
        "base_layer": base,
        "index": index,
        "length": length,
        "proof_layers": proof,
    }
    for message in (
        HashRequest(**fields),
        HashReject(**fields),
        Hashes(**fields, hashes=bytes(range(32)) * n),
    ):
        assert roundtrip(message) == message


def test_wire_layout_matches_bep52() -> None:
    frame = encode_hash_message(
        HashRequest(pieces_root=ROOT, base_layer=2, index=512, length=512, proof_layers=9)
    )
    assert frame == (49).to_bytes(4, "big") + bytes([21]) + ROOT + b"".join(
        v.to_bytes(4, "big") for v in (2, 512, 512, 9)
    )
    assert (
        encode_hash_message(HashReject(pieces_root=ROOT, base_layer=0, index=0, length=2, proof_layers=0))[4]
        == 23
    )
    hashes = Hashes(pieces_root=ROOT, base_layer=0, index=0, length=2, proof_layers=1, hashes=b"\1" * 96)
    assert (
        encode_hash_message(hashes)[4] == 22
        and hashes.base_hashes == b"\1" * 64
        and hashes.uncle_hashes == b"\1" * 32
    )


@pytest.mark.parametrize(
    ("msg_id", "payload", "message"),
    [
        (MSG_HASH_REQUEST, b"\0" * 47, "48 bytes"),
        (MSG_HASH_REQUEST, b"\0" * 49, "48 bytes"),
        (MSG_HASH_REJECT, b"", "48 bytes"),
        (MSG_HASHES, b"\0" * 47, "48 \\+ a multiple of 32"),
        (MSG_HASHES, b"\0" * 50, "48 \\+ a multiple of 32"),
        (MSG_HASHES, b"\0" * (48 + 32 * 9000), "cap"),
        (20, b"\0" * 48, "not a BEP 52"),
    ],
)
def test_malformed_payloads_are_the_peers_fault(msg_id: int, payload: bytes, message: str) -> None:
    with pytest.raises(RemoteProtocolError, match=message):
        decode_hash_message(msg_id, payload)


def test_reserved_bit() -> None:
    reserved = make_reserved()
    assert not supports_v2(reserved)
    marked = set_v2_bit(reserved)
    assert supports_v2(marked) and marked[7] & 0x10 and marked[:7] == reserved[:7]


def request(base: int, index: int, length: int, proof: int, root: bytes = ROOT) -> HashRequest:
    return HashRequest(pieces_root=root, base_layer=base, index=index, length=length, proof_layers=proof)


def test_request_rules() -> None:
    blocks = 40  # tree height 6: 64 leaves
    assert check_request(request(0, 0, 64, 5), blocks=blocks) is None
    assert check_request(request(0, 32, 32, 5), blocks=blocks) is None
    assert check_request(request(2, 8, 8, 3), blocks=blocks) is None
    assert check_request(request(0, 38, 1, 5), blocks=blocks) is None  # length 1: libtorrent sends it
    for bad, why in [
        (request(0, 0, 3, 1), "power of two"),
        (request(0, 0, 0, 1), "power of two"),
        (request(0, 2, 4, 1), "aligned"),
        (request(0, 64, 2, 1), "aligned"),
        (request(6, 0, 1, 0), "below the root"),
        (request(0, 0, 2, 6), "past the root"),
        (request(0, 0, 16384, 1), "power of two"),
    ]:
        assert why in (check_request(bad, blocks=blocks) or ""), bad


# ------------------------------------------------------------------------------------------ serving


def make_v2(
    tmp_path: Path, sizes: dict[str, int], piece_length: int = 4 * BLOCK_SIZE, fmt: str = "v2"
) -> Metainfo:
    root = tmp_path / "model"
    rng = random.Random(len(sizes))
    for name, size in sizes.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(rng.randbytes(size))
    return create_torrent(root, piece_length=piece_length, format=fmt, creation_date=None)  # type: ignore[arg-type]


def test_server_answers_from_the_piece_layers(tmp_path: Path) -> None:
    meta = make_v2(tmp_path, {"a.bin": 11 * BLOCK_SIZE + 5, "b.bin": 100})
    info = meta.info
    assert info.v2 is not None
    big = info.v2.files[0]
    server = HashServer(info)
    # piece layer (base 2), whole layer: no uncles needed
    answer = server.respond(request(2, 0, 4, 1, big.root))
    assert isinstance(answer, Hashes) and answer.base_hashes[:96] == info.v2.piece_layers[big.root]
    assert answer.base_hashes[96:] == pad_hash(2) and answer.uncle_hashes == b""
    # leaves of a piece not added yet: rejected; after its data verified: served like a full tree
    leaf_request = request(0, 4, 4, 3, big.root)
    assert isinstance(server.respond(leaf_request), HashReject)
    data = (tmp_path / "model" / "a.bin").read_bytes()
    assert not server.add_piece(big.first_piece + 1, b"\0" * len(data[4 * BLOCK_SIZE : 8 * BLOCK_SIZE]))
    assert server.add_piece(big.first_piece + 1, data[4 * BLOCK_SIZE : 8 * BLOCK_SIZE])
    full = MerkleTree.from_leaves(block_hashes(data), info.piece_length)
    assert server.respond(leaf_request) == serve_hash_request(leaf_request, full)
    # unknown root, invalid requests: rejected
    assert isinstance(server.respond(request(2, 0, 4, 1, b"\x09" * 32)), HashReject)
    assert isinstance(server.respond(request(2, 1, 4, 1, big.root)), HashReject)


def fetch_all(
    info: InfoDict, server: HashServer, *, tamper: object = None
) -> tuple[PieceLayerFetcher, list[object]]:
    """Drive a fetcher against a server through encoded bytes, as two peers would."""
    fetcher = PieceLayerFetcher(info, max_per_peer=2)
    events: list[object] = []
    now = 0.0
    while not fetcher.done:
        req = fetcher.next_request("seed", now)
        assert req is not None
        reply = server.respond(roundtrip(req))  # type: ignore[arg-type]
        decoded = roundtrip(reply)
        if isinstance(decoded, HashReject):
            fetcher.receive_reject("seed", decoded)
            continue
        assert isinstance(decoded, Hashes)
        events.extend(fetcher.receive_hashes("seed", decoded, now))
        now += 1
    return fetcher, events


@pytest.mark.parametrize("pieces", [2, 3, 512, 513, 1025])
def test_fetcher_gets_every_layer_from_a_server(tmp_path: Path, pieces: int) -> None:
    """Files of 513 and 1025 pieces included (INTEROP-NOTES: libtorrent 2.1.1 fails those itself)."""
    meta = make_v2(tmp_path, {"big.bin": pieces * BLOCK_SIZE - 7, "mid.bin": 3 * BLOCK_SIZE}, BLOCK_SIZE)
    full = meta.info
    assert full.v2 is not None
    bare = parse_info(full.raw)  # a magnet download: metadata without piece layers
    assert bare.v2 is not None and not bare.v2.has_piece_layers
    fetcher, events = fetch_all(bare, HashServer(full))
    assert fetcher.piece_layers() == dict(full.v2.piece_layers)
    verified = [e for e in events if isinstance(e, PieceLayerVerified)]
    assert {e.pieces_root for e in verified} == set(full.v2.piece_layers)
    assert isinstance(events[-1], PieceLayersCompleted) and events[-1].piece_layers == dict(
        full.v2.piece_layers
    )
    assert bare.v2.with_piece_layers(fetcher.piece_layers()).has_piece_layers
    assert len(verified) == 2
    assert PieceLayerFetcher(bare).runs_left == -(-full.v2.files[0].num_pieces // CHUNK) + 1


def test_fetcher_asks_only_peers_that_have_the_pieces_and_handles_rejects(tmp_path: Path) -> None:
    meta = make_v2(tmp_path, {"big.bin": 600 * BLOCK_SIZE}, BLOCK_SIZE)
    full = meta.info
    bare = parse_info(full.raw)
    fetcher = PieceLayerFetcher(bare, timeout=5.0)
    assert fetcher.runs_left == 2
    # a peer with only piece 550 is asked for the run covering 512..599 only
    first = fetcher.next_request("p1", 0.0, peer_has=lambda p: p == 550)
    assert first is not None and first.index == 512 and first.length == 128 and first.base_layer == 0
    assert fetcher.next_request("p1", 0.0) is None  # one request in flight per peer
    assert (
        fetcher.next_request("p2", 0.0, peer_has=lambda p: p == 550) is None
    )  # already asked, not timed out
    reject = HashReject(
        **{k: getattr(first, k) for k in ("pieces_root", "base_layer", "index", "length", "proof_layers")}
    )
    fetcher.receive_reject("p1", reject)
    assert (
        fetcher.next_request("p1", 1.0, peer_has=lambda p: p == 550) is None
    )  # never asked twice after a reject
    again = fetcher.next_request("p2", 1.0, peer_has=lambda p: p == 550)
    assert again == first
    # after the timeout a third peer may be asked too; both answers count once
    assert fetcher.next_request("p3", 7.0, peer_has=lambda p: p == 550) == first
    server = HashServer(full)
    answer = server.respond(first)
    assert isinstance(answer, Hashes)
    assert fetcher.receive_hashes("p2", answer, 8.0) == []  # run 0..511 still missing
    assert fetcher.receive_hashes("p3", answer, 8.0) == []
    assert fetcher.runs_left == 1
    fetcher.peer_gone("p1")
    last = fetcher.next_request("p1", 9.0)
    assert last is not None and last.index == 0 and last.length == 512
    answer = server.respond(last)
    assert isinstance(answer, Hashes)
    events = fetcher.receive_hashes("p1", answer, 9.0)
    assert fetcher.done and isinstance(events[-1], PieceLayersCompleted)


def test_hostile_hashes_replies_raise(tmp_path: Path) -> None:
    meta = make_v2(tmp_path, {"big.bin": 600 * BLOCK_SIZE, "other.bin": 40 * BLOCK_SIZE}, BLOCK_SIZE)
    full = meta.info
    bare = parse_info(full.raw)
    server = HashServer(full)
    fetcher = PieceLayerFetcher(bare, max_per_peer=8)
    req = fetcher.next_request("evil", 0.0)
    assert req is not None
    good = server.respond(req)
    assert isinstance(good, Hashes)
    with pytest.raises(InvalidHashesError, match="no hash request"):
        fetcher.receive_hashes("stranger", good, 0.0)  # unsolicited
    with pytest.raises(InvalidHashesError, match="no hash request"):
        fetcher.receive_hashes("evil", replace(good, index=good.index + good.length), 0.0)
    for bad in (
        replace(good, hashes=good.hashes[:-32]),  # a missing uncle
        replace(good, hashes=good.hashes + b"\0" * 32),  # one too many
        replace(good, hashes=b"\x01" + good.hashes[1:]),  # a flipped base hash
        replace(good, hashes=good.hashes[:-1] + b"\x00"),  # a flipped uncle
    ):
        fetcher2 = PieceLayerFetcher(bare)
        assert fetcher2.next_request("evil", 0.0) == req
        with pytest.raises(InvalidHashesError):
            fetcher2.receive_hashes("evil", bad, 0.0)
    fetcher3 = PieceLayerFetcher(bare, max_per_peer=8)
    reqs = [fetcher3.next_request("evil", 0.0) for _ in range(3)]
    assert all(r is not None for r in reqs)
    with pytest.raises(InvalidHashesError, match="no hash request"):
        fetcher3.receive_reject(
            "stranger", HashReject(pieces_root=ROOT, base_layer=0, index=0, length=2, proof_layers=0)
        )


def test_padding_entries_must_be_pad_hashes(tmp_path: Path) -> None:
    """A run past the file's end must carry pad hashes; a root made over other values is caught."""
    meta = make_v2(tmp_path, {"big.bin": 3 * BLOCK_SIZE}, BLOCK_SIZE)
    full = meta.info
    bare = parse_info(full.raw)
    assert full.v2 is not None
    fetcher = PieceLayerFetcher(bare)
    req = fetcher.next_request("peer", 0.0)
    assert req is not None and req.length == 4 and req.proof_layers == 1
    layer = full.v2.piece_layers[full.v2.files[0].root]
    assert fetcher.receive_hashes(
        "peer",
        Hashes(
            **{k: getattr(req, k) for k in ("pieces_root", "base_layer", "index", "length", "proof_layers")},
            hashes=layer + pad_hash(0),
        ),
        0.0,
    )


def test_v1_torrent_has_nothing_to_fetch_or_serve(tmp_path: Path) -> None:
    meta = make_v2(tmp_path, {"a.bin": 100}, fmt="v1")
    with pytest.raises(ValueError):
        PieceLayerFetcher(meta.info)
    with pytest.raises(ValueError):
        HashServer(meta.info)
    hybrid = make_v2(tmp_path / "h", {"a.bin": 100}, fmt="hybrid")
    assert PieceLayerFetcher(hybrid.info).done  # one-piece files need no layer


# --------------------------------------------------------------------------- the wire engine


def _dispatch_pair(bep52: bool | None) -> ConnectionPair:
    pair = make_pair(a_config=WireConfig(bep52=True), b_config=WireConfig(bep52=bep52), b_knows_torrent=True)
    pair.pump()
    return pair


def test_engine_dispatches_hash_messages_on_a_v2_torrent() -> None:
    pair = _dispatch_pair(True)
    assert supports_v2(pair.a.peer_handshake.reserved) and supports_v2(pair.b.peer_handshake.reserved)  # type: ignore[union-attr]
    request = HashRequest(pieces_root=ROOT, base_layer=2, index=0, length=4, proof_layers=3)
    pair.a.send(request)
    reply = Hashes(pieces_root=ROOT, base_layer=2, index=0, length=4, proof_layers=3, hashes=bytes(32 * 6))
    reject = HashReject(pieces_root=ROOT, base_layer=2, index=4, length=4, proof_layers=3)
    pair.b.send(reply)
    pair.b.send(reject)
    pair.pump()
    assert HashRequested(request=request) in pair.take("b")
    events = pair.take("a")
    assert HashesReceived(hashes=reply) in events and HashRejected(reject=reject) in events


def test_engine_hash_messages_on_a_v1_torrent_break_the_protocol() -> None:
    pair = _dispatch_pair(False)
    assert not supports_v2(pair.b.our_reserved)
    with pytest.raises(LocalProtocolError):
        pair.b.send(HashRequest(pieces_root=ROOT, base_layer=0, index=0, length=2, proof_layers=0))
    pair.a.send(HashRequest(pieces_root=ROOT, base_layer=0, index=0, length=2, proof_layers=0))
    with pytest.raises(RemoteProtocolError, match="v1 torrent"):
        pair.pump()


def test_engine_ignores_hash_messages_while_the_format_is_unknown() -> None:
    pair = _dispatch_pair(None)
    pair.a.send(HashRequest(pieces_root=ROOT, base_layer=0, index=0, length=2, proof_layers=0))
    pair.pump()
    assert not [e for e in pair.take("b") if isinstance(e, HashRequested)]


def test_engine_refuses_a_hash_request_of_the_wrong_size() -> None:
    pair = _dispatch_pair(True)
    pair.b.receive_data(b"\x00\x00\x00\x05\x15" + bytes(4))
    with pytest.raises(RemoteProtocolError):
        while pair.b.next_event() is not None:
            pass
