"""Peer wire messages as data (level L2): one frozen dataclass per message, named by its BEP noun.

BEP 3 (core), BEP 5 (``port``), BEP 6 (Fast extension), BEP 10 (extension protocol), BEP 9
(``ut_metadata``), BEP 11 (``ut_pex``), BEP 54 (``lt_donthave``) and BEP 55 (``ut_holepunch``); BEP 52's
``hash request``, ``hashes`` and ``hash reject`` are defined with their rules in :mod:`torrentgoat.wire.hashes`.
These are pure values; :mod:`torrentgoat.wire.codec`
turns them into bytes and back, :mod:`torrentgoat.wire.connection` decides when each is allowed.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TypeAlias

from torrentgoat.primitives import InfoHash, PeerAddress, PeerId
from torrentgoat.wire.hashes import Hashes, HashReject, HashRequest

__all__ = [
    "PROTOCOL",
    "AllowedFast",
    "BitfieldMsg",
    "Buffer",
    "Cancel",
    "Choke",
    "DontHave",
    "Extended",
    "ExtendedHandshake",
    "ExtensionMessage",
    "Handshake",
    "Have",
    "HaveAll",
    "HaveNone",
    "Holepunch",
    "HolepunchErrorCode",
    "HolepunchType",
    "Interested",
    "KeepAlive",
    "Message",
    "MessageId",
    "MetadataData",
    "MetadataReject",
    "MetadataRequest",
    "NotInterested",
    "Pex",
    "PexPeer",
    "Piece",
    "Port",
    "RejectRequest",
    "Request",
    "SuggestPiece",
    "Unchoke",
    "WireMessage",
]

Buffer: TypeAlias = bytes | bytearray | memoryview
"""Bytes-like payloads; received block data is a fresh object owned by whoever receives it."""

PROTOCOL = b"BitTorrent protocol"
"""BEP 3 handshake protocol string (preceded by its length byte, 19)."""


class MessageId(enum.IntEnum):
    """The id byte after a message's length prefix (BEP 3 "messages"; BEP 5, BEP 6, BEP 10 add ids)."""

    CHOKE = 0
    UNCHOKE = 1
    INTERESTED = 2
    NOT_INTERESTED = 3
    HAVE = 4
    BITFIELD = 5
    REQUEST = 6
    PIECE = 7
    CANCEL = 8
    PORT = 9
    """BEP 5: the sender's DHT port."""
    SUGGEST_PIECE = 0x0D
    """BEP 6 (Fast extension) ids 0x0D..0x11."""
    HAVE_ALL = 0x0E
    HAVE_NONE = 0x0F
    REJECT_REQUEST = 0x10
    ALLOWED_FAST = 0x11
    EXTENDED = 20
    """BEP 10: extension protocol messages (sub-id in the first payload byte)."""
    HASH_REQUEST = 21
    """BEP 52 ids 21..23 (v2 and hybrid torrents only)."""
    HASHES = 22
    HASH_REJECT = 23


@dataclass(frozen=True, slots=True, kw_only=True)
class Handshake:
    """BEP 3 handshake: ``<19>"BitTorrent protocol"<reserved 8><info_hash 20><peer_id 20>``."""

    info_hash: InfoHash
    peer_id: PeerId
    reserved: bytes = bytes(8)
    protocol: bytes = PROTOCOL

    @property
    def supports_extensions(self) -> bool:
        """BEP 10: reserved byte 5, bit 0x10."""
        return bool(self.reserved[5] & 0x10)

    @property
    def supports_fast(self) -> bool:
        """BEP 6: reserved byte 7, bit 0x04."""
        return bool(self.reserved[7] & 0x04)

    @property
    def supports_dht(self) -> bool:
        """BEP 5: reserved byte 7, bit 0x01."""
        return bool(self.reserved[7] & 0x01)


@dataclass(frozen=True, slots=True, kw_only=True)
class KeepAlive:
    """BEP 3: a zero-length message."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Choke:
    """BEP 3 id 0."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Unchoke:
    """BEP 3 id 1."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Interested:
    """BEP 3 id 2."""


@dataclass(frozen=True, slots=True, kw_only=True)
class NotInterested:
    """BEP 3 id 3."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Have:
    """BEP 3 id 4: the sender completed and verified piece ``index``."""

    index: int


@dataclass(frozen=True, slots=True, kw_only=True)
class BitfieldMsg:
    """BEP 3 id 5: raw bitfield bytes (validated against the piece count by the connection)."""

    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """BEP 3 id 6: ask for ``length`` bytes of piece ``index`` at offset ``begin``."""

    index: int
    begin: int
    length: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Piece:
    """BEP 3 id 7: a block of piece ``index`` at offset ``begin``."""

    index: int
    begin: int
    data: Buffer

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Piece)
            and self.index == other.index
            and self.begin == other.begin
            and bytes(self.data) == bytes(other.data)
        )

    def __hash__(self) -> int:
        return hash((self.index, self.begin, bytes(self.data)))


@dataclass(frozen=True, slots=True, kw_only=True)
class Cancel:
    """BEP 3 id 8: withdraw an earlier :class:`Request`."""

    index: int
    begin: int
    length: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Port:
    """BEP 5 id 9: the sender's DHT node listens on UDP ``port``."""

    port: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SuggestPiece:
    """BEP 6 id 0x0D: the sender suggests downloading piece ``index``."""

    index: int


@dataclass(frozen=True, slots=True, kw_only=True)
class HaveAll:
    """BEP 6 id 0x0E: the sender has every piece (replaces the bitfield)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class HaveNone:
    """BEP 6 id 0x0F: the sender has no piece (replaces the bitfield)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RejectRequest:
    """BEP 6 id 0x10: the sender will not serve this request."""

    index: int
    begin: int
    length: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AllowedFast:
    """BEP 6 id 0x11: piece ``index`` may be requested even while the sender chokes us."""

    index: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Extended:
    """BEP 10 id 20: extension message ``ext_id`` (0 = extension handshake) with a raw payload."""

    ext_id: int
    payload: bytes


# --- decoded extension messages (payloads of Extended) ------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ExtendedHandshake:
    """BEP 10 extension handshake (``Extended`` id 0), with the BEP 9 ``metadata_size`` field.

    ``m`` maps extension names to the message id the *sender* wants to receive them with
    (0 means "disabled", BEP 10).  ``yourip``/``ipv4``/``ipv6`` are raw 4- or 16-byte addresses.
    Unknown keys are ignored on decode (BEP 10: "unknown names should be ignored").
    """

    m: dict[str, int] = field(default_factory=dict)
    p: int | None = None
    v: str | None = None
    yourip: bytes | None = None
    ipv4: bytes | None = None
    ipv6: bytes | None = None
    reqq: int | None = None
    metadata_size: int | None = None
    upload_only: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class MetadataRequest:
    """BEP 9 ``ut_metadata`` msg_type 0: ask for 16 KiB metadata piece ``piece``."""

    piece: int


@dataclass(frozen=True, slots=True, kw_only=True)
class MetadataData:
    """BEP 9 ``ut_metadata`` msg_type 1: metadata piece ``piece`` of a ``total_size``-byte info dict."""

    piece: int
    total_size: int
    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class MetadataReject:
    """BEP 9 ``ut_metadata`` msg_type 2: the sender will not send piece ``piece``."""

    piece: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PexPeer:
    """One peer in a BEP 11 ``added`` list with its ``added.f`` flags byte.

    Flags (BEP 11): 0x01 prefers encryption, 0x02 seed/upload-only, 0x04 supports uTP,
    0x08 supports holepunch, 0x10 outgoing connection (reachable).
    """

    address: PeerAddress
    flags: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Pex:
    """BEP 11 ``ut_pex``: peers added and dropped since the previous message (IPv4 and IPv6 mixed).

    The codec splits by family into ``added``/``added.f``/``dropped`` and ``added6``/``added6.f``/
    ``dropped6``.
    """

    added: tuple[PexPeer, ...] = ()
    dropped: tuple[PeerAddress, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class DontHave:
    """BEP 54 ``lt_donthave``: the sender no longer has piece ``index`` (the opposite of ``have``);
    requests for it that it has not answered will not be answered with data."""

    index: int


class HolepunchType(enum.IntEnum):
    """BEP 55 ``msg_type``: what a ``ut_holepunch`` message asks for."""

    RENDEZVOUS = 0
    """Initiator to relay: send ``connect`` to both me and the peer at ``address``."""
    CONNECT = 1
    """Relay to both sides: start a uTP connection to ``address`` (the other side) now."""
    ERROR = 2
    """Relay to initiator: the rendezvous with ``address`` cannot be done (``error`` says why)."""


class HolepunchErrorCode(enum.IntEnum):
    """BEP 55 ``err_code`` of an ``error`` message (0 in the other messages)."""

    NONE = 0
    NO_SUCH_PEER = 1
    """The endpoint is invalid."""
    NOT_CONNECTED = 2
    """The relay is not connected to the receiving peer."""
    NO_SUPPORT = 3
    """The receiving peer does not support the holepunch extension."""
    NO_SELF = 4
    """The endpoint belongs to the relay (libtorrent also answers it when it is the initiator's own)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Holepunch:
    """BEP 55 ``ut_holepunch``: a rendezvous request, a connect order or an error about ``address``.

    ``error`` is a :class:`HolepunchErrorCode` value for known codes (a plain int otherwise), 0 unless
    ``msg_type`` is :attr:`HolepunchType.ERROR`."""

    msg_type: HolepunchType
    address: PeerAddress
    error: int = 0


WireMessage: TypeAlias = (
    KeepAlive
    | Choke
    | Unchoke
    | Interested
    | NotInterested
    | Have
    | BitfieldMsg
    | Request
    | Piece
    | Cancel
    | Port
    | SuggestPiece
    | HaveAll
    | HaveNone
    | RejectRequest
    | AllowedFast
    | Extended
    | HashRequest
    | Hashes
    | HashReject
)
"""A length-prefixed message of the message phase (everything but the handshake)."""

ExtensionMessage: TypeAlias = (
    ExtendedHandshake | MetadataRequest | MetadataData | MetadataReject | Pex | DontHave | Holepunch
)
"""A decoded BEP 10 extension message; the connection wraps it in :class:`Extended` with the peer's id."""

Message: TypeAlias = Handshake | WireMessage | ExtensionMessage
"""Anything :meth:`PeerConnection.send` accepts."""
