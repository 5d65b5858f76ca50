"""Fuzz the decoder after a valid handshake: hostile bytes raise RemoteProtocolError, nothing else."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from torrentgoat.bitfield import Bitfield
from torrentgoat.errors import RemoteProtocolError
from torrentgoat.primitives import InfoHash, PeerId
from torrentgoat.wire import codec
from torrentgoat.wire.connection import PeerConnection, PieceGeometry, WireConfig
from torrentgoat.wire.messages import Handshake, Unchoke

IH = InfoHash(b"\x22" * 20)
GEOMETRY = PieceGeometry(num_pieces=10, piece_length=32768, total_length=10 * 32768 - 5)


def engine(*, fast: bool, magnet: bool, responder: bool) -> PeerConnection:
    have = None if magnet else Bitfield.from_indices(10, [0, 1, 2, 9])
    conn = PeerConnection(
        peer_id=PeerId(b"-TG0001-fuzzfuzzfuzz"),
        now=0.0,
        info_hash=None if responder else IH,
        have=None if responder else have,
        geometry=None if responder or magnet else GEOMETRY,
        config=WireConfig(enable_fast=fast),
    )
    hs = Handshake(info_hash=IH, peer_id=PeerId(b"-XX0001-otherotherot"), reserved=codec.make_reserved())
    conn.receive_data(codec.encode_handshake(hs))
    conn.next_event()
    if responder:
        conn.accept(info_hash=IH, have=have, geometry=None if magnet else GEOMETRY)
    conn.send(Unchoke())
    return conn


def drain(conn: PeerConnection, data: bytes, chunk: int) -> None:
    try:
        for start in range(0, len(data), chunk):
            conn.receive_data(data[start : start + chunk])
            while conn.next_event() is not None:
                pass
            conn.data_to_send()
        if conn.geometry is None:
            conn.set_metadata(GEOMETRY, Bitfield(10))
            while conn.next_event() is not None:
                pass
        conn.handle_timer(1000.0)
        while conn.next_event() is not None:
            pass
    except RemoteProtocolError:
        pass


flags = st.fixed_dictionaries(
    {"fast": st.booleans(), "magnet": st.booleans(), "responder": st.booleans(), "chunk": st.integers(1, 64)}
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), flags)
def test_random_bytes(data: bytes, opts: dict[str, object]) -> None:
    chunk = int(opts.pop("chunk"))  # type: ignore[call-overload]
    drain(engine(**opts), data, chunk)  # type: ignore[arg-type]


frames = st.lists(
    st.tuples(
        st.sampled_from([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 14, 15, 16, 17, 20, 21, 99]),
        st.one_of(
            st.binary(max_size=40),
            st.tuples(st.integers(0, 12), st.integers(0, 70000), st.integers(0, 140000)).map(
                lambda t: struct.pack(">III", *t)
            ),
            st.sampled_from(
                [
                    b"\x00d1:md6:ut_pexi1e11:ut_metadatai2eee",
                    b"\x01d8:msg_typei0e5:piecei0ee",
                    b"\x01d8:msg_typei1e5:piecei0e10:total_sizei5eeabcde",
                    b"\x02d5:added6:\x7f\x00\x00\x01\x1a\xe1e",
                    b"\x00d1:mi5ee",
                    b"\x02d5:added5:\x7f\x00\x00\x01\x1ae",
                ]
            ),
        ),
    ),
    max_size=12,
)


@settings(max_examples=300, deadline=None)
@given(frames, flags)
def test_structured_frames(items: list[tuple[int, bytes]], opts: dict[str, object]) -> None:
    chunk = int(opts.pop("chunk"))  # type: ignore[call-overload]
    data = b"".join(struct.pack(">IB", len(payload) + 1, msg_id) + payload for msg_id, payload in items)
    drain(engine(**opts), data, chunk)  # type: ignore[arg-type]
