"""Incremental parsing: any split of the byte stream, any input type, any draining pattern gives
the same events as feeding everything at once; blocks from ``bytes`` input are zero-copy views."""

from __future__ import annotations

import itertools
from dataclasses import fields, replace

from hypothesis import given, settings
from hypothesis import strategies as st

from torrentgoat.bitfield import Bitfield
from torrentgoat.primitives import BLOCK_SIZE, InfoHash, PeerId
from torrentgoat.wire import codec
from torrentgoat.wire.connection import PeerConnection, PieceGeometry
from torrentgoat.wire.events import BlockReceived, Event
from torrentgoat.wire.messages import (
    Extended,
    Handshake,
    Have,
    HaveAll,
    KeepAlive,
    Piece,
    Request,
    Unchoke,
)

IH = InfoHash(b"\x33" * 20)
NUM = 4
GEOMETRY = PieceGeometry(num_pieces=NUM, piece_length=2 * BLOCK_SIZE, total_length=NUM * 2 * BLOCK_SIZE - 100)
BLOCKS = [
    (index, begin, min(BLOCK_SIZE, GEOMETRY.piece_size(index) - begin))
    for index in range(NUM)
    for begin in range(0, GEOMETRY.piece_size(index), BLOCK_SIZE)
]


def make_engine() -> PeerConnection:
    conn = PeerConnection(
        peer_id=PeerId(b"-TG0001-incrincrincr"), now=0.0, info_hash=IH, have=Bitfield(NUM), geometry=GEOMETRY
    )
    return conn


def stream() -> bytes:
    hs = Handshake(info_hash=IH, peer_id=PeerId(b"-XX0001-peerpeerpeer"), reserved=codec.make_reserved())
    parts = [codec.encode_handshake(hs), codec.encode_message(HaveAll()), codec.encode_message(Unchoke())]
    for n, (index, begin, length) in enumerate(BLOCKS):
        data = bytes([n % 251]) * length
        parts.append(codec.encode_message(Piece(index=index, begin=begin, data=data)))
        parts.append(codec.encode_message(KeepAlive() if n % 2 else Have(index=index)))
        if n == 3:
            parts.append(codec.encode_message(Extended(ext_id=0, payload=b"d1:md6:ut_pexi9eee")))
    return b"".join(parts)


def normalize(event: Event) -> Event:
    if isinstance(event, BlockReceived):
        return replace(event, data=bytes(event.data))
    return event


def drain(conn: PeerConnection, events: list[Event], requested: bool) -> bool:
    """Take the engine's events; once the peer unchoked us, request :data:`BLOCKS` (once).  Returns
    whether the requests went out."""
    while (event := conn.next_event()) is not None:
        events.append(normalize(event))
    if not requested and conn.handshake_complete and not conn.peer_choking:
        for index, begin, length in BLOCKS:
            conn.send(Request(index=index, begin=begin, length=length))
        return True
    return requested


def run(chunks: list[bytes | bytearray | memoryview], drains: list[bool]) -> list[Event]:
    conn = make_engine()
    events: list[Event] = []
    requested = False
    for chunk, drained in zip(chunks, drains, strict=True):
        conn.receive_data(chunk)
        if drained:
            requested = drain(conn, events, requested)
    while (event := conn.next_event()) is not None:
        events.append(normalize(event))
    return events


def reference() -> list[Event]:
    data = stream()
    # the requests must be in place before blocks arrive: feed the opening, then the rest
    opening = 68 + 5 + 5
    return run([data[:opening], data[opening:]], [True, True])


def draw_split(data: st.DataObject) -> tuple[list[bytes], list[bool]]:
    """The stream cut at up to 40 random places after the opening, and whether events are drained
    after each piece (always after the opening)."""
    whole = stream()
    opening = 68 + 5 + 5
    cuts = sorted(data.draw(st.sets(st.integers(opening + 1, len(whole) - 1), max_size=40)))
    bounds = [0, opening, *cuts, len(whole)]
    pieces = [whole[start:stop] for start, stop in itertools.pairwise(bounds)]
    return pieces, [True] + [data.draw(st.booleans()) for _ in pieces[1:]]


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_any_split_gives_same_events(data: st.DataObject) -> None:
    pieces, drains = draw_split(data)
    chunks: list[bytes | bytearray | memoryview] = []
    for piece in pieces:
        kind = data.draw(st.sampled_from(["bytes", "bytearray", "memoryview"]))
        chunks.append(
            piece if kind == "bytes" else bytearray(piece) if kind == "bytearray" else memoryview(piece)
        )
    assert run(chunks, drains) == reference()


def run_borrowed(chunks: list[bytes], drains: list[bool]) -> list[Event]:
    """As :func:`run`, every read landing in one reused buffer (``recv_into``, as ``PeerDriver``
    reads): ``receive_data(borrowed=True)``, the events drained or not, ``release_borrowed``, then
    the buffer is overwritten -- any reference kept into it would show as wrong bytes."""
    conn = make_engine()
    shared = bytearray(max(len(chunk) for chunk in chunks))
    view = memoryview(shared)
    events: list[Event] = []
    requested = False
    for chunk, drained in zip(chunks, drains, strict=True):
        view[: len(chunk)] = chunk
        conn.receive_data(view[: len(chunk)], borrowed=True)
        if drained:
            requested = drain(conn, events, requested)
        conn.release_borrowed()
        view[:] = b"\xee" * len(shared)
    while (event := conn.next_event()) is not None:
        events.append(normalize(event))
    return events


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_borrowed_reads_of_one_reused_buffer_give_same_events(data: st.DataObject) -> None:
    assert run_borrowed(*draw_split(data)) == reference()


def test_byte_by_byte() -> None:
    whole = stream()
    opening = 68 + 5 + 5
    chunks: list[bytes | bytearray | memoryview] = [whole[:opening]]
    chunks += [whole[i : i + 1] for i in range(opening, len(whole))]
    assert run(chunks, [True] * len(chunks)) == reference()


def test_blocks_from_bytes_are_zero_copy_views() -> None:
    conn = make_engine()
    hs = Handshake(info_hash=IH, peer_id=PeerId(b"-XX0001-peerpeerpeer"), reserved=codec.make_reserved())
    conn.receive_data(
        codec.encode_handshake(hs) + codec.encode_message(HaveAll()) + codec.encode_message(Unchoke())
    )
    while conn.next_event() is not None:
        pass
    conn.send(Request(index=0, begin=0, length=BLOCK_SIZE))
    conn.send(Request(index=0, begin=BLOCK_SIZE, length=BLOCK_SIZE))
    chunk = codec.encode_message(Piece(index=0, begin=0, data=b"a" * BLOCK_SIZE))
    chunk += codec.encode_message(Piece(index=0, begin=BLOCK_SIZE, data=b"b" * BLOCK_SIZE))[:100]
    conn.receive_data(chunk)
    first = conn.next_event()
    assert isinstance(first, BlockReceived) and isinstance(first.data, memoryview)
    assert first.data.obj is chunk and bytes(first.data) == b"a" * BLOCK_SIZE
    assert conn.next_event() is None
    assert conn.receive_buffer_size == 100
    rest = codec.encode_message(Piece(index=0, begin=BLOCK_SIZE, data=b"b" * BLOCK_SIZE))[100:]
    conn.receive_data(rest)
    second = conn.next_event()
    assert isinstance(second, BlockReceived) and bytes(second.data) == b"b" * BLOCK_SIZE
    assert conn.receive_buffer_size == 0


def test_event_fields_are_plain() -> None:
    # BlockReceived is comparable by content whatever the buffer type
    a = BlockReceived(index=1, begin=0, data=memoryview(b"xy"))
    assert a == BlockReceived(index=1, begin=0, data=bytearray(b"xy"))
    assert [f.name for f in fields(BlockReceived)] == ["index", "begin", "data", "late"]
