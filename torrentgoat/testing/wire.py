"""Connection pairs for the peer wire engine: two :class:`PeerConnection` feeding each other bytes.

Like ``h11``'s and ``aioquic``'s test helpers: no sockets, deterministic, optionally byte-by-byte.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from torrentgoat.bitfield import Bitfield
from torrentgoat.geometry import PieceGeometry
from torrentgoat.primitives import InfoHash, PeerId
from torrentgoat.wire.connection import PeerConnection, WireConfig
from torrentgoat.wire.events import Event, HandshakeReceived

__all__ = ["ConnectionPair", "RecordingHandler", "make_pair", "unchoked"]


class RecordingHandler:
    """A ``PeerHandler`` for driver tests: ignores events, records close reasons, and sets
    :attr:`writable` when the driver's transport drained."""

    def __init__(self) -> None:
        self.closed: list[str] = []
        self.writable = asyncio.Event()

    def peer_event(self, peer: object, event: object) -> None:
        pass

    def peer_closed(self, peer: object, reason: str) -> None:
        self.closed.append(reason)

    def peer_writable(self, peer: object) -> None:
        self.writable.set()


@dataclass
class ConnectionPair:
    """``a`` (initiator) and ``b`` (responder) with the events each produced so far.

    :meth:`pump` moves bytes both ways until neither side has anything to send, collecting events.
    ``chunk`` feeds data in pieces of that many bytes (1 = byte by byte).  ``on_event`` lets a test
    react to events while pumping (e.g. answer requests); by default a responder created without an
    info-hash is accepted with ``b_accept`` keyword arguments.
    """

    a: PeerConnection
    b: PeerConnection
    chunk: int = 1 << 20
    b_accept: dict[str, object] | None = None
    a_events: list[Event] = field(default_factory=list)
    b_events: list[Event] = field(default_factory=list)
    on_event: Callable[[ConnectionPair, PeerConnection, Event], None] | None = None
    bytes_a_to_b: int = 0
    bytes_b_to_a: int = 0

    def _feed(self, source: PeerConnection, target: PeerConnection) -> int:
        data = source.data_to_send()
        for start in range(0, len(data), self.chunk):
            target.receive_data(data[start : start + self.chunk])
            self._drain(target)
        return len(data)

    def _drain(self, conn: PeerConnection) -> None:
        sink = self.a_events if conn is self.a else self.b_events
        while (event := conn.next_event()) is not None:
            sink.append(event)
            if (
                isinstance(event, HandshakeReceived)
                and conn.info_hash is None
                and self.b_accept is not None
                and conn is self.b
            ):
                conn.accept(**self.b_accept)  # type: ignore[arg-type]
            if self.on_event is not None:
                self.on_event(self, conn, event)

    def pump(self, max_rounds: int = 10_000) -> None:
        for _ in range(max_rounds):
            moved_ab = self._feed(self.a, self.b)
            moved_ba = self._feed(self.b, self.a)
            self.bytes_a_to_b += moved_ab
            self.bytes_b_to_a += moved_ba
            if not moved_ab and not moved_ba:
                self._drain(self.a)
                self._drain(self.b)
                return
        raise RuntimeError("connection pair did not settle")

    def take(self, side: str) -> list[Event]:
        """Events of ``"a"`` or ``"b"`` since the last take, clearing them."""
        events = self.a_events if side == "a" else self.b_events
        result = list(events)
        events.clear()
        return result


def make_pair(
    *,
    info_hash: InfoHash | None = None,
    num_pieces: int | None = 8,
    piece_length: int = 32 * 1024,
    total_length: int | None = None,
    a_have: Bitfield | None = None,
    b_have: Bitfield | None = None,
    a_config: WireConfig | None = None,
    b_config: WireConfig | None = None,
    a_metadata_size: int | None = None,
    b_metadata_size: int | None = None,
    b_knows_torrent: bool = False,
    chunk: int = 1 << 20,
    seed: int = 0,
    now: float = 0.0,
) -> ConnectionPair:
    """A connected-to-be pair; ``num_pieces=None`` makes both sides metadata-less (magnet)."""
    rng = random.Random(seed)
    info_hash = info_hash or InfoHash(rng.randbytes(20))
    geometry: PieceGeometry | None = None
    if num_pieces is not None:
        total = total_length if total_length is not None else num_pieces * piece_length
        geometry = PieceGeometry(piece_length, total, num_pieces=num_pieces)
        a_have = a_have if a_have is not None else Bitfield(num_pieces)
        b_have = b_have if b_have is not None else Bitfield(num_pieces)
    a = PeerConnection(
        peer_id=PeerId.generate(rng),
        now=now,
        info_hash=info_hash,
        have=a_have,
        geometry=geometry,
        metadata_size=a_metadata_size,
        config=a_config,
        listen_port=6881,
        peer_ip=bytes([127, 0, 0, 2]),
    )
    b_accept: dict[str, object] = {
        "info_hash": info_hash,
        "have": b_have,
        "geometry": geometry,
        "metadata_size": b_metadata_size,
    }
    b = PeerConnection(
        peer_id=PeerId.generate(rng),
        now=now,
        info_hash=info_hash if b_knows_torrent else None,
        have=b_have if b_knows_torrent else None,
        geometry=geometry if b_knows_torrent else None,
        metadata_size=b_metadata_size if b_knows_torrent else None,
        config=b_config,
        listen_port=6882,
        peer_ip=bytes([127, 0, 0, 1]),
    )
    return ConnectionPair(a=a, b=b, chunk=chunk, b_accept=None if b_knows_torrent else b_accept)


def unchoked(pair: ConnectionPair) -> ConnectionPair:
    """``pair`` after its handshakes, ``a`` interested in ``b`` and unchoked by it; what that sent is
    taken off both sides."""
    from torrentgoat.wire.messages import Interested, Unchoke

    pair.pump()
    pair.a.send(Interested())
    pair.pump()
    pair.b.send(Unchoke())
    pair.pump()
    pair.take("a")
    pair.take("b")
    return pair
