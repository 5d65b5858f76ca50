"""BEP 9 metadata exchange: fetcher/server units and an end-to-end magnet fetch between two engines."""

from __future__ import annotations

import hashlib
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from torrentgoat import bencode
from torrentgoat.bitfield import Bitfield
from torrentgoat.errors import LocalProtocolError, RemoteProtocolError
from torrentgoat.primitives import InfoHash
from torrentgoat.testing.wire import ConnectionPair, make_pair
from torrentgoat.wire.codec import METADATA_PIECE_SIZE
from torrentgoat.wire.connection import PeerConnection, PieceGeometry, WireConfig
from torrentgoat.wire.events import (
    BitfieldReceived,
    Event,
    ExtensionHandshakeReceived,
    MetadataPieceReceived,
    MetadataRejected,
    MetadataRequested,
)
from torrentgoat.wire.messages import MetadataData, MetadataReject, MetadataRequest
from torrentgoat.wire.metadata import MetadataFetcher, MetadataServer, metadata_piece_count


def make_info(num_pieces: int = 3000, piece_length: int = 1 << 18) -> tuple[bytes, InfoHash]:
    rng = random.Random(5)
    info = {
        b"name": b"model.safetensors",
        b"piece length": piece_length,
        b"length": num_pieces * piece_length,
        b"pieces": rng.randbytes(20 * num_pieces),
    }
    raw = bencode.encode(info)
    return raw, InfoHash(hashlib.sha1(raw).digest())


def test_server_pieces_and_reject() -> None:
    raw, _ = make_info()
    server = MetadataServer(raw)
    count = metadata_piece_count(len(raw))
    assert count == 4
    pieces = [server.respond(i) for i in range(count)]
    assert all(isinstance(p, MetadataData) for p in pieces)
    assert b"".join(p.data for p in pieces if isinstance(p, MetadataData)) == raw
    assert server.respond(count) == MetadataReject(piece=count)
    assert MetadataServer().respond(0) == MetadataReject(piece=0)
    with pytest.raises(LocalProtocolError):
        MetadataServer().set_metadata(b"")


def test_fetcher_assembles_from_two_peers_and_verifies() -> None:
    raw, info_hash = make_info()
    server = MetadataServer(raw)
    fetcher = MetadataFetcher(info_hash, max_requests_per_peer=2)
    assert fetcher.add_peer("p1", len(raw)) and fetcher.add_peer("p2", len(raw))
    asked = {key: [] for key in ("p1", "p2")}  # type: dict[str, list[int]]
    for key in asked:
        while (piece := fetcher.next_request(key, now=0.0)) is not None:
            asked[key].append(piece)
    assert sorted(asked["p1"] + asked["p2"]) == [0, 1, 2, 3]
    assert len(asked["p1"]) == 2
    result = None
    for key, pieces in asked.items():
        for piece in pieces:
            reply = server.respond(piece)
            assert isinstance(reply, MetadataData)
            result = fetcher.on_data(key, piece, reply.total_size, reply.data) or result
    assert result == raw and fetcher.complete and fetcher.progress == (0, 4)


def test_fetcher_size_cap_and_bad_piece() -> None:
    raw, info_hash = make_info()
    fetcher = MetadataFetcher(info_hash, max_size=1 << 20)
    assert not fetcher.add_peer("huge", (1 << 20) + 1)
    assert not fetcher.add_peer("zero", 0)
    assert not fetcher.add_peer("neg", -5)
    assert fetcher.next_request("huge", 0.0) is None
    assert fetcher.add_peer("p", len(raw))
    piece = fetcher.next_request("p", 0.0)
    assert piece == 0
    with pytest.raises(RemoteProtocolError):
        fetcher.on_data("p", 0, len(raw), b"short")
    assert "p" in fetcher.banned
    assert fetcher.next_request("p", 0.0) is None
    assert not fetcher.add_peer("p", len(raw))


def test_fetcher_hash_mismatch_restarts_without_the_liar() -> None:
    raw, info_hash = make_info(num_pieces=100)
    assert metadata_piece_count(len(raw)) == 1
    fetcher = MetadataFetcher(info_hash)
    fetcher.add_peer("liar", len(raw))
    fetcher.add_peer("honest", len(raw))
    assert fetcher.next_request("liar", 0.0) == 0
    assert fetcher.next_request("honest", 0.0) is None  # piece 0 already in flight
    assert fetcher.on_data("liar", 0, len(raw), bytes(len(raw))) is None
    assert fetcher.failures == 1 and "liar" in fetcher.banned
    assert fetcher.next_request("honest", 1.0) == 0
    assert fetcher.on_data("honest", 0, len(raw), raw) == raw


def test_fetcher_reject_timeout_and_removal() -> None:
    raw, info_hash = make_info()
    fetcher = MetadataFetcher(info_hash, max_requests_per_peer=1, request_timeout=5.0)
    fetcher.add_peer("a", len(raw))
    fetcher.add_peer("b", len(raw))
    assert fetcher.next_request("a", 0.0) == 0
    fetcher.on_reject("a", 0)
    assert fetcher.next_request("a", 0.0) is None  # a refuses: stop asking it for a while
    assert not fetcher.wants("a", 29.0) and fetcher.wants("a", 30.0)
    assert fetcher.next_request("b", 0.0) == 0
    fetcher.add_peer("c", len(raw))
    assert fetcher.next_request("c", 1.0) == 1
    fetcher.remove_peer("c")
    assert fetcher.on_data("c", 1, len(raw), raw[METADATA_PIECE_SIZE : 2 * METADATA_PIECE_SIZE]) is None
    fetcher.add_peer("d", len(raw))
    assert fetcher.next_request("d", 2.0) == 1
    # b's request for piece 0 times out and goes to another peer
    fetcher.add_peer("e", len(raw))
    assert fetcher.next_request("e", 6.0) == 0
    # unrequested data is ignored
    assert fetcher.on_data("b", 0, len(raw), raw[:METADATA_PIECE_SIZE]) is None


def test_fetcher_follows_majority_size() -> None:
    raw, info_hash = make_info()
    fetcher = MetadataFetcher(info_hash)
    fetcher.add_peer("odd", 12345)
    assert fetcher.size == 12345
    fetcher.add_peer("x", len(raw))
    fetcher.add_peer("y", len(raw))
    assert not fetcher.wants("x")  # size chosen by the first peer until a restart
    fetcher.remove_peer("odd")
    fetcher._choose_size()
    assert fetcher.size == len(raw)


def run_magnet_fetch(chunk: int) -> tuple[ConnectionPair, bytes, list[Event]]:
    """a: magnet (no metadata) initiator; b: seed with the info dict, accepting."""
    raw, info_hash = make_info()
    num_pieces = 3000
    geometry = PieceGeometry(num_pieces=num_pieces, piece_length=1 << 18, total_length=num_pieces << 18)
    pair = make_pair(info_hash=info_hash, num_pieces=None, chunk=chunk)
    pair.b_accept = {
        "info_hash": info_hash,
        "have": Bitfield(num_pieces, full=True),
        "geometry": geometry,
        "metadata_size": len(raw),
    }
    server = MetadataServer(raw)
    fetcher = MetadataFetcher(info_hash)
    got: dict[str, bytes] = {}

    def on_event(pair: ConnectionPair, conn: PeerConnection, event: Event) -> None:
        if conn is pair.b and isinstance(event, MetadataRequested):
            conn.send(server.respond(event.piece))
        if conn is pair.a and isinstance(event, ExtensionHandshakeReceived):
            size = event.handshake.metadata_size
            assert size is not None and fetcher.add_peer("b", size)
        if conn is pair.a and isinstance(event, ExtensionHandshakeReceived | MetadataPieceReceived):
            if isinstance(event, MetadataPieceReceived):
                result = fetcher.on_data("b", event.piece, event.total_size, event.data)
                if result is not None:
                    got["raw"] = result
                    conn.set_metadata(geometry, Bitfield(num_pieces), metadata_size=len(result))
                    return
            while (piece := fetcher.next_request("b", 0.0)) is not None:
                conn.send(MetadataRequest(piece=piece))

    pair.on_event = on_event
    pair.pump()
    return pair, got.get("raw", b""), pair.take("a")


@pytest.mark.parametrize("chunk", [1 << 20, 101])
def test_magnet_fetch_end_to_end(chunk: int) -> None:
    pair, raw, a_events = run_magnet_fetch(chunk)
    assert raw and hashlib.sha1(raw).digest() == pair.a.info_hash.raw  # type: ignore[union-attr]
    bitfields = [e for e in a_events if isinstance(e, BitfieldReceived)]
    assert len(bitfields) == 1 and bitfields[0].bitfield.complete  # buffered HaveAll resolved
    assert pair.a.geometry is not None and pair.a.peer_have is not None and pair.a.peer_have.complete


def test_metadata_request_without_metadata_is_rejected_by_server() -> None:
    pair = make_pair(num_pieces=None)
    server = MetadataServer()
    rejected: list[int] = []

    def on_event(pair: ConnectionPair, conn: PeerConnection, event: Event) -> None:
        if conn is pair.b and isinstance(event, MetadataRequested):
            conn.send(server.respond(event.piece))
        if conn is pair.a and isinstance(event, MetadataRejected):
            rejected.append(event.piece)

    pair.on_event = on_event
    pair.pump()
    pair.a.send(MetadataRequest(piece=0))
    pair.pump()
    assert rejected == [0]


def test_metadata_extension_must_be_announced() -> None:
    pair = make_pair(b_config=WireConfig(ut_metadata=False, ut_pex=False))
    pair.pump()
    with pytest.raises(LocalProtocolError, match="ut_metadata"):
        pair.a.send(MetadataRequest(piece=0))
    # b did not offer ut_metadata, so a message on id 1 is ignored (BEP 10: unknown extension)
    pair.take("b")
    pair.a.peer_ext_ids["ut_metadata"] = 1
    pair.a.send(MetadataRequest(piece=0))
    pair.pump()
    assert pair.take("b") == []


@settings(max_examples=60, deadline=None)
@given(
    size=st.integers(1, 5 * METADATA_PIECE_SIZE + 17),
    peers=st.integers(1, 4),
    order_seed=st.integers(0, 2**32 - 1),
)
def test_fetcher_any_arrival_order(size: int, peers: int, order_seed: int) -> None:
    """Pieces answered by several peers in any order (with rejects and timeouts) assemble exactly."""
    rng = random.Random(order_seed)
    raw = rng.randbytes(size)
    info_hash = InfoHash(hashlib.sha1(raw).digest())
    server = MetadataServer(raw)
    fetcher = MetadataFetcher(info_hash, max_requests_per_peer=2, request_timeout=3.0)
    keys = [f"p{i}" for i in range(peers)]
    for key in keys:
        assert fetcher.add_peer(key, size)
    now = 0.0
    result = None
    for _ in range(500):
        if result is not None:
            break
        now += 1.0
        inflight = []
        for key in keys:
            while (piece := fetcher.next_request(key, now)) is not None:
                inflight.append((key, piece))
        rng.shuffle(inflight)
        for key, piece in inflight:
            fate = rng.random()
            if fate < 0.1:
                continue  # lost: times out
            if fate < 0.15 and len(keys) > 1 and key != keys[0]:
                fetcher.on_reject(key, piece)
                continue
            reply = server.respond(piece)
            assert isinstance(reply, MetadataData)
            result = fetcher.on_data(key, piece, reply.total_size, reply.data) or result
    assert result == raw
