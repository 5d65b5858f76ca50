"""Notifications a :class:`~torrentgoat.wire.connection.PeerConnection` hands to its driver (level L2).

One frozen dataclass per event, named in the past tense (DESIGN rule 1).  "Peer" means the remote
side; requests "to us" are the peer's requests for our data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from torrentgoat.bitfield import Bitfield
from torrentgoat.primitives import BlockRef, PeerAddress
from torrentgoat.wire.hashes import Hashes, HashReject, HashRequest
from torrentgoat.wire.messages import Buffer, ExtendedHandshake, Handshake, Holepunch, PexPeer

__all__ = [
    "AllowedFastReceived",
    "BitfieldReceived",
    "BlockReceived",
    "BlockRequested",
    "BlocksReceived",
    "BlocksRequested",
    "ConnectionTimedOut",
    "DontHaveReceived",
    "Event",
    "ExtensionHandshakeReceived",
    "HandshakeReceived",
    "HashRejected",
    "HashRequested",
    "HashesReceived",
    "HaveReceived",
    "HolepunchReceived",
    "MetadataPieceReceived",
    "MetadataRejected",
    "MetadataRequested",
    "PeerChoked",
    "PeerInterested",
    "PeerNotInterested",
    "PeerUnchoked",
    "PexReceived",
    "PieceSuggested",
    "PortReceived",
    "RequestCancelled",
    "RequestRejected",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class HandshakeReceived:
    """The peer's BEP 3 handshake arrived.  A responder created without an info-hash must now call
    :meth:`PeerConnection.accept` (or drop the connection); nothing more is parsed until then."""

    handshake: Handshake


@dataclass(frozen=True, slots=True, kw_only=True)
class ExtensionHandshakeReceived:
    """The peer's BEP 10 extension handshake (may come more than once; later ones update)."""

    handshake: ExtendedHandshake


@dataclass(frozen=True, slots=True, kw_only=True)
class BitfieldReceived:
    """The peer's have-set became known: from ``bitfield``, ``have all`` or ``have none`` (BEP 6),
    or -- for a magnet download -- when :meth:`PeerConnection.set_metadata` resolved what was
    buffered (merged with buffered ``have`` messages).  ``bitfield`` is a snapshot copy."""

    bitfield: Bitfield


@dataclass(frozen=True, slots=True, kw_only=True)
class HaveReceived:
    """The peer announced piece ``index`` (only emitted when it is new to the peer's have-set)."""

    index: int


@dataclass(frozen=True, slots=True, kw_only=True)
class DontHaveReceived:
    """BEP 54: the peer no longer has piece ``index`` (it had announced it).  Our requests for that
    piece still pending at this peer will not be answered with data: they are ``dropped`` (oldest
    first) and become late (a block already on its way is still used)."""

    index: int
    dropped: tuple[BlockRef, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerChoked:
    """The peer choked us.  Without the Fast extension a choke discards all our pending requests
    (BEP 3); they are listed in ``dropped`` so the picker can re-issue them elsewhere.  With Fast,
    ``dropped`` is empty: the peer rejects requests explicitly (BEP 6)."""

    dropped: tuple[BlockRef, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerUnchoked:
    """The peer unchoked us: we may request."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerInterested:
    """The peer is interested in our pieces."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerNotInterested:
    """The peer is no longer interested."""


@dataclass(frozen=True, slots=True, kw_only=True)
class BlockReceived:
    """A block we requested arrived.

    ``data`` is a ``memoryview`` slice of what the driver passed to ``receive_data`` (zero-copy:
    the ``bytes`` of a read, or the driver's own read buffer, which it overwrites with the next
    read) or, for a block that straddled two reads, a fresh ``bytearray``.  Copy it into the piece
    buffer right away; do not keep it.

    ``late`` is true when the request had already been cancelled by us (or dropped by a choke):
    the data is still valid and may be used."""

    index: int
    begin: int
    data: Buffer
    late: bool = False

    @property
    def ref(self) -> BlockRef:
        return BlockRef(self.index, self.begin, len(self.data))


@dataclass(frozen=True, slots=True, kw_only=True)
class BlocksReceived:
    """Requested blocks that arrived back to back, as one event: produced instead of one
    :class:`BlockReceived` each when the connection's ``batch_blocks`` is on (the torrent turns it
    on; the per-event cost -- an object, a dispatch, a clock read -- is then paid once per socket
    read instead of once per 16 KiB block).  ``blocks`` holds ``(index, begin, data)`` in arrival
    order, ``data`` as in :class:`BlockReceived` (copy it right away).  Late blocks are never
    batched: they arrive as ``BlockReceived(late=True)``, in order with the batches."""

    blocks: list[tuple[int, int, Buffer]]


@dataclass(frozen=True, slots=True, kw_only=True)
class BlocksRequested:
    """Valid requests of the peer that arrived back to back, as one event: produced instead of one
    :class:`BlockRequested` each when the connection's ``batch_requests`` is on (the torrent turns it
    on).  ``requests`` holds ``(index, begin, length)`` in arrival order, each already checked as for
    :class:`BlockRequested`.  When one read holds both, its :class:`BlocksReceived` comes first."""

    requests: list[tuple[int, int, int]]


@dataclass(frozen=True, slots=True, kw_only=True)
class BlockRequested:
    """The peer asked us for a block; answer with :meth:`PeerConnection.send_piece` (or ``send(
    RejectRequest)`` with the Fast extension).  Already validated: we have the piece, the span is
    inside it, we are not choking the peer (or the piece is allowed-fast), the queue is bounded."""

    index: int
    begin: int
    length: int

    @property
    def ref(self) -> BlockRef:
        return BlockRef(self.index, self.begin, self.length)


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestCancelled:
    """The peer withdrew a request it made to us (drop any pending disk read for it)."""

    index: int
    begin: int
    length: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestRejected:
    """The peer rejected one of our requests (BEP 6): re-request the block elsewhere."""

    index: int
    begin: int
    length: int

    @property
    def ref(self) -> BlockRef:
        return BlockRef(self.index, self.begin, self.length)


@dataclass(frozen=True, slots=True, kw_only=True)
class AllowedFastReceived:
    """BEP 6: we may request piece ``index`` from the peer even while it chokes us."""

    index: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PieceSuggested:
    """BEP 6: the peer suggests piece ``index``."""

    index: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PortReceived:
    """BEP 5: the peer's DHT node listens on UDP ``port``."""

    port: int


@dataclass(frozen=True, slots=True, kw_only=True)
class MetadataRequested:
    """BEP 9: the peer asked for metadata piece ``piece`` (answer via :class:`MetadataServer`)."""

    piece: int


@dataclass(frozen=True, slots=True, kw_only=True)
class MetadataPieceReceived:
    """BEP 9: a metadata piece arrived (feed it to :class:`MetadataFetcher`)."""

    piece: int
    total_size: int
    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class MetadataRejected:
    """BEP 9: the peer refused metadata piece ``piece``."""

    piece: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PexReceived:
    """BEP 11: peers the remote side connected to (``added``) or dropped since its last message."""

    added: tuple[PexPeer, ...]
    dropped: tuple[PeerAddress, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class HolepunchReceived:
    """BEP 55: a ``ut_holepunch`` message (rendezvous, connect or error) from a peer that offered the
    extension; malformed ones and those of peers that did not offer it are ignored (BEP 55)."""

    message: Holepunch


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionTimedOut:
    """The handshake did not complete in time, or the peer sent nothing for too long: close."""

    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class HashRequested:
    """BEP 52 ``hash request``: the peer asks for hashes of one file's merkle tree (answer with
    ``hashes`` or ``hash reject``).  Only on a v2 or hybrid torrent; its fields are not checked yet."""

    request: HashRequest


@dataclass(frozen=True, slots=True, kw_only=True)
class HashesReceived:
    """BEP 52 ``hashes``: hashes and their proof; whether we asked for them, and whether they prove
    against the file's ``pieces root``, is for the driver to check."""

    hashes: Hashes


@dataclass(frozen=True, slots=True, kw_only=True)
class HashRejected:
    """BEP 52 ``hash reject``: the peer declines one of our hash requests."""

    reject: HashReject


Event: TypeAlias = (
    HandshakeReceived
    | ExtensionHandshakeReceived
    | BitfieldReceived
    | HaveReceived
    | DontHaveReceived
    | PeerChoked
    | PeerUnchoked
    | PeerInterested
    | PeerNotInterested
    | BlockReceived
    | BlocksReceived
    | BlocksRequested
    | BlockRequested
    | RequestCancelled
    | RequestRejected
    | AllowedFastReceived
    | PieceSuggested
    | PortReceived
    | MetadataRequested
    | MetadataPieceReceived
    | MetadataRejected
    | PexReceived
    | HashRequested
    | HashesReceived
    | HashRejected
    | HolepunchReceived
    | ConnectionTimedOut
)
