"""``PeerConnection``: the sans-IO state machine of one peer wire connection (level L2).

Everything that affects the connection's state lives in this file (h11 style, DESIGN rule 2): the
transition table :data:`TRANSITIONS` says which message each side may send in each phase, and
:data:`REQUIRES` which negotiated feature a message needs.  A received message the table forbids
raises :class:`~torrentgoat.errors.RemoteProtocolError` (drop the peer); a message we try to send
that it forbids raises :class:`~torrentgoat.errors.LocalProtocolError`.

Phases of each side (BEP 3, BEP 6):

* ``HANDSHAKE`` -- the side's 68-byte handshake has not been seen yet;
* ``OPENING`` -- handshake done; BEP 6: ``bitfield``/``have all``/``have none`` "must" be the
  first message after the handshake.  ``keep-alive``, ``extended`` and ``port`` do not end the
  opening (clients send the BEP 10 handshake before or after the bitfield);
* ``ACTIVE`` -- everything else.

See the package docstring (:mod:`torrentgoat.wire`) for the driver's view of the API.
"""

from __future__ import annotations

import enum
import struct
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from torrentgoat.bitfield import Bitfield
from torrentgoat.errors import LocalProtocolError, RemoteProtocolError
from torrentgoat.geometry import PieceGeometry
from torrentgoat.primitives import BlockRef, InfoHash, PeerId
from torrentgoat.wire import codec
from torrentgoat.wire.events import (
    AllowedFastReceived,
    BitfieldReceived,
    BlockReceived,
    BlockRequested,
    ConnectionTimedOut,
    Event,
    ExtensionHandshakeReceived,
    HandshakeReceived,
    HaveReceived,
    MetadataPieceReceived,
    MetadataRejected,
    MetadataRequested,
    PeerChoked,
    PeerInterested,
    PeerNotInterested,
    PeerUnchoked,
    PexReceived,
    PieceSuggested,
    PortReceived,
    RequestCancelled,
    RequestRejected,
)
from torrentgoat.wire.messages import (
    PROTOCOL,
    AllowedFast,
    BitfieldMsg,
    Buffer,
    Cancel,
    Choke,
    Extended,
    ExtendedHandshake,
    Handshake,
    Have,
    HaveAll,
    HaveNone,
    Interested,
    KeepAlive,
    Message,
    MetadataData,
    MetadataReject,
    MetadataRequest,
    NotInterested,
    Pex,
    Piece,
    Port,
    RejectRequest,
    Request,
    SuggestPiece,
    Unchoke,
    WireMessage,
)
from torrentgoat.wire.pex import decode_pex, encode_pex

__all__ = [
    "CLIENT_VERSION",
    "REQUIRES",
    "TRANSITIONS",
    "UT_METADATA_ID",
    "UT_PEX_ID",
    "Feature",
    "PeerConnection",
    "Phase",
    "PieceGeometry",
    "WireConfig",
]

CLIENT_VERSION = "torrentgoat/0.1.0"
UT_METADATA_ID = 1
"""The id we ask peers to use for ``ut_metadata`` messages to us (our ``m`` dictionary, BEP 10)."""
UT_PEX_ID = 2
"""The id we ask peers to use for ``ut_pex`` messages to us."""


class Phase(enum.Enum):
    HANDSHAKE = "handshake"
    OPENING = "opening"
    ACTIVE = "active"


class Feature(enum.Enum):
    FAST = "fast extension (BEP 6)"
    EXTENSIONS = "extension protocol (BEP 10)"


_OPENING_MESSAGES: tuple[type, ...] = (BitfieldMsg, HaveAll, HaveNone)
_TRANSPARENT_MESSAGES: tuple[type, ...] = (KeepAlive, Extended, Port)
_ACTIVE_MESSAGES: tuple[type, ...] = (
    Choke,
    Unchoke,
    Interested,
    NotInterested,
    Have,
    Request,
    Piece,
    Cancel,
    SuggestPiece,
    RejectRequest,
    AllowedFast,
)


def _build_transitions() -> dict[tuple[Phase, type], Phase]:
    table: dict[tuple[Phase, type], Phase] = {(Phase.HANDSHAKE, Handshake): Phase.OPENING}
    for kind in _OPENING_MESSAGES:
        table[(Phase.OPENING, kind)] = Phase.ACTIVE  # BEP 6: only as the first message
    for kind in _TRANSPARENT_MESSAGES:
        table[(Phase.OPENING, kind)] = Phase.OPENING
        table[(Phase.ACTIVE, kind)] = Phase.ACTIVE
    for kind in _ACTIVE_MESSAGES:
        table[(Phase.OPENING, kind)] = Phase.ACTIVE
        table[(Phase.ACTIVE, kind)] = Phase.ACTIVE
    # Not BEP 6, but aria2 1.36 announces new pieces with a whole bitfield (or have all) mid-connection
    # whenever that is shorter than the haves: accepted as a union of pieces.  A late have none could
    # only take pieces away, so it stays a violation.
    for kind in (BitfieldMsg, HaveAll):
        table[(Phase.ACTIVE, kind)] = Phase.ACTIVE
    return table


TRANSITIONS: dict[tuple[Phase, type], Phase] = _build_transitions()
"""(phase of the sending side, message type) -> next phase.  Missing pairs are protocol errors."""

# The hot paths (request, piece) skip the table lookup in ACTIVE; this is what the table says there.
assert TRANSITIONS[(Phase.ACTIVE, Request)] is Phase.ACTIVE
assert TRANSITIONS[(Phase.ACTIVE, Piece)] is Phase.ACTIVE

REQUIRES: dict[type, Feature] = {
    HaveAll: Feature.FAST,
    HaveNone: Feature.FAST,
    SuggestPiece: Feature.FAST,
    RejectRequest: Feature.FAST,
    AllowedFast: Feature.FAST,
    Extended: Feature.EXTENSIONS,
}
"""BEP 6: fast messages without the negotiated bit close the connection; likewise BEP 10 messages."""


@dataclass(frozen=True, slots=True, kw_only=True)
class WireConfig:
    """Tunables of a peer connection; defaults suit a fast LAN/WAN client."""

    enable_extensions: bool = True
    """Advertise BEP 10 (reserved[5] & 0x10)."""
    enable_fast: bool = True
    """Advertise BEP 6 (reserved[7] & 0x04)."""
    enable_dht: bool = False
    """Advertise a DHT node (BEP 5, reserved[7] & 0x01); the driver then sends ``Port``."""
    ut_metadata: bool = True
    """Offer BEP 9 in our extension handshake."""
    ut_pex: bool = True
    """Offer BEP 11; turn off for private torrents (BEP 27)."""
    client_version: str = CLIENT_VERSION
    """``v`` of our extension handshake."""
    max_peer_requests: int = 500
    """Our ``reqq``: how many of the peer's requests we queue; more is a protocol error (or a reject
    with BEP 6)."""
    default_peer_reqq: int = 250
    """Outstanding requests we allow ourselves when the peer advertises no ``reqq``."""
    max_outgoing_requests: int = 2000
    """Hard cap on our outstanding requests to one peer, whatever its ``reqq``."""
    max_extended_length: int = 1 << 20
    """Largest BEP 10 message payload accepted."""
    max_bitfield_length: int = 1 << 20
    """Largest bitfield accepted while the piece count is unknown (8 Mi pieces)."""
    max_unknown_length: int = 1 << 17
    """Largest payload of a message with an unknown id (such messages are skipped)."""
    max_metadata_size: int = codec.MAX_METADATA_SIZE
    """Largest ``ut_metadata`` total_size accepted (BEP 9)."""
    max_allowed_fast: int = 256
    """Allowed-fast pieces remembered from the peer (BEP 6 suggests k = 10)."""
    max_buffered_haves: int = 1 << 16
    """``have`` messages buffered while the piece count is unknown."""
    max_late_requests: int = 4096
    """Cancelled/choke-dropped requests remembered so late blocks can still be used."""
    keepalive_interval: float = 60.0
    """Tick of the timer: a keep-alive goes out when nothing was sent for a whole tick (BEP 3:
    peers time out after ~2 minutes)."""
    idle_timeout: float = 180.0
    """Close when nothing arrived for this long (rounded up to whole ticks)."""
    handshake_timeout: float = 30.0
    """Close when the peer's handshake did not arrive (or the driver did not accept) in time."""


_U32 = struct.Struct(">I")
_II = struct.Struct(">II")
_III = struct.Struct(">III")
_REQUEST = struct.Struct(">IBIII")
_NO_EVENT = object()

_FIXED_PAYLOAD = {
    codec.MSG_CHOKE: 1,
    codec.MSG_UNCHOKE: 1,
    codec.MSG_INTERESTED: 1,
    codec.MSG_NOT_INTERESTED: 1,
    codec.MSG_HAVE: 5,
    codec.MSG_REQUEST: 13,
    codec.MSG_CANCEL: 13,
    codec.MSG_PORT: 3,
    codec.MSG_SUGGEST_PIECE: 5,
    codec.MSG_HAVE_ALL: 1,
    codec.MSG_HAVE_NONE: 1,
    codec.MSG_REJECT_REQUEST: 13,
    codec.MSG_ALLOWED_FAST: 5,
}

_Key = tuple[int, int, int]


class PeerConnection:
    """One peer wire connection: bytes in, events out; messages in, bytes out.

    See :mod:`torrentgoat.wire` for the full contract.  Not thread-safe; one driver pumps it.
    """

    def __init__(
        self,
        *,
        peer_id: PeerId,
        now: float,
        info_hash: InfoHash | None = None,
        have: Bitfield | Callable[[], Bitfield | None] | None = None,
        geometry: PieceGeometry | None = None,
        metadata_size: int | None = None,
        listen_port: int | None = None,
        peer_ip: bytes | None = None,
        config: WireConfig | None = None,
    ) -> None:
        self.config = config or WireConfig()
        self.our_peer_id = peer_id
        self.info_hash: InfoHash | None = None
        self.listen_port = listen_port
        self.peer_ip = peer_ip
        self.our_reserved = codec.make_reserved(
            extensions=self.config.enable_extensions, fast=self.config.enable_fast, dht=self.config.enable_dht
        )
        self.peer_handshake: Handshake | None = None
        self.peer_extensions: ExtendedHandshake | None = None
        self.peer_ext_ids: dict[str, int] = {}
        self.fast = False
        self.extensions = False
        self.our_phase = Phase.HANDSHAKE
        self.their_phase = Phase.HANDSHAKE
        self.am_choking = True
        self.am_interested = False
        self.peer_choking = True
        self.peer_interested = False
        self.peer_has_all = False
        self.peer_have: Bitfield | None = None
        self.peer_allowed_fast: set[int] = set()
        self.our_allowed_fast: set[int] = set()
        self.downloaded = 0
        """Block payload bytes received (requested or late)."""
        self.uploaded = 0
        """Block payload bytes sent."""
        self.unrequested_bytes = 0
        """Block payload bytes received that matched no request (ignored)."""
        self._geometry: PieceGeometry | None = None
        self._have: Callable[[], Bitfield | None] = lambda: None
        self._metadata_size: int | None = None
        self._our_requests: dict[_Key, None] = {}
        self._late: OrderedDict[_Key, None] = OrderedDict()
        self._peer_requests: dict[_Key, None] = {}
        self._buffered_bitfield: bytes | None = None
        self._buffered_haves: set[int] = set()
        self._buffered_opening = False
        self._buf = bytearray()
        self._pos = 0
        self._chunk: memoryview | None = None
        self._cpos = 0
        self._need = 0
        """Bytes known to belong to the partial frame in ``_buf`` (0 = unknown); small reads go
        straight into ``_buf``."""
        self._out: list[Buffer] = []
        self._events: deque[Event] = deque()
        self._error: RemoteProtocolError | None = None
        self._awaiting_accept = False
        self._sent_since_tick = False
        self._received_since_tick = False
        self._idle_ticks = 0
        self._next_tick = now + self.config.keepalive_interval
        self._handshake_deadline: float | None = now + self.config.handshake_timeout
        self._caps: dict[int, int] = {}
        self._set_torrent(geometry, have, metadata_size)
        if info_hash is not None:
            self.info_hash = info_hash
            self._send_handshake()

    # --- configuration ------------------------------------------------------------------------

    def _set_torrent(
        self,
        geometry: PieceGeometry | None,
        have: Bitfield | Callable[[], Bitfield | None] | None,
        metadata_size: int | None,
    ) -> None:
        if isinstance(have, Bitfield):
            bitfield = have
            self._have = lambda: bitfield
        elif have is None:
            self._have = lambda: None
        else:
            self._have = have
        current = self._have()
        if (geometry is None) != (current is None):
            raise LocalProtocolError("geometry and our have-set must be given together (or neither)")
        if geometry is not None and current is not None and current.length != geometry.num_pieces:
            raise LocalProtocolError(
                f"our have-set has {current.length} bits for {geometry.num_pieces} pieces"
            )
        self._geometry = geometry
        self._metadata_size = metadata_size
        if geometry is not None and self.peer_have is None:
            self.peer_have = Bitfield(geometry.num_pieces)  # BEP 3: no bitfield means no pieces
        self._update_caps()

    def _update_caps(self) -> None:
        """Largest frame (id byte + payload) accepted per message id, checked before buffering."""
        cfg = self.config
        caps = dict(_FIXED_PAYLOAD)
        caps[codec.MSG_PIECE] = 9 + codec.MAX_REQUEST_LENGTH
        if self._geometry is not None:
            caps[codec.MSG_BITFIELD] = 1 + (self._geometry.num_pieces + 7) // 8
        else:
            caps[codec.MSG_BITFIELD] = 1 + cfg.max_bitfield_length
        caps[codec.MSG_EXTENDED] = 1 + cfg.max_extended_length
        self._caps = caps

    @property
    def geometry(self) -> PieceGeometry | None:
        return self._geometry

    @property
    def our_have(self) -> Bitfield | None:
        return self._have()

    @property
    def receive_buffer_size(self) -> int:
        """Bytes received but not yet parsed (for driver back-pressure: stop reading when large)."""
        pending = len(self._buf) - self._pos
        if self._chunk is not None:
            pending += len(self._chunk) - self._cpos
        return pending

    @property
    def handshake_complete(self) -> bool:
        return self.our_phase is not Phase.HANDSHAKE and self.their_phase is not Phase.HANDSHAKE

    @property
    def request_limit(self) -> int:
        """How many requests we may have outstanding at this peer (its ``reqq``, BEP 10)."""
        reqq = self.peer_extensions.reqq if self.peer_extensions is not None else None
        return min(reqq or self.config.default_peer_reqq, self.config.max_outgoing_requests)

    @property
    def outstanding_requests(self) -> tuple[BlockRef, ...]:
        """Our requests to the peer not yet answered, oldest first."""
        return tuple(BlockRef(*key) for key in self._our_requests)

    @property
    def peer_requests(self) -> tuple[BlockRef, ...]:
        """The peer's requests to us not yet answered, oldest first."""
        return tuple(BlockRef(*key) for key in self._peer_requests)

    @property
    def outstanding_count(self) -> int:
        """How many of our requests to the peer are unanswered (O(1), for the request pipeline)."""
        return len(self._our_requests)

    def has_peer_request(self, index: int, begin: int, length: int) -> bool:
        """Whether the peer's request ``(index, begin, length)`` is still pending (not cancelled)."""
        return (index, begin, length) in self._peer_requests

    def can_request(self, index: int | None = None) -> bool:
        """Whether :meth:`send` of a ``Request`` (for piece ``index``) would be accepted now."""
        if self.our_phase is Phase.HANDSHAKE or self.their_phase is Phase.HANDSHAKE or self._geometry is None:
            return False
        if len(self._our_requests) >= self.request_limit:
            return False
        if self.peer_choking:
            return index is not None and self.fast and index in self.peer_allowed_fast
        return True

    def accept(
        self,
        *,
        info_hash: InfoHash,
        have: Bitfield | Callable[[], Bitfield | None] | None = None,
        geometry: PieceGeometry | None = None,
        metadata_size: int | None = None,
        config: WireConfig | None = None,
    ) -> None:
        """Responder side: serve ``info_hash`` after :class:`HandshakeReceived`; sends our handshake.

        ``config`` replaces the engine's configuration for this torrent (e.g. ``ut_pex=False`` for a
        private torrent, BEP 27); our reserved bits are derived from it, since our handshake has not
        gone out yet.
        """
        handshake = self.peer_handshake
        if not self._awaiting_accept or handshake is None:
            raise LocalProtocolError("accept() is only valid after HandshakeReceived on a responder")
        if info_hash != handshake.info_hash:
            raise LocalProtocolError("accept() with an info-hash the peer did not ask for")
        if config is not None:
            self.config = config
            cfg = config
            self.our_reserved = codec.make_reserved(
                extensions=cfg.enable_extensions, fast=cfg.enable_fast, dht=cfg.enable_dht
            )
            self.fast = cfg.enable_fast and handshake.supports_fast
            self.extensions = cfg.enable_extensions and handshake.supports_extensions
        self._awaiting_accept = False
        self.info_hash = info_hash
        self._set_torrent(geometry, have, metadata_size)
        self._send_handshake()
        self._handshakes_done()

    def set_metadata(
        self,
        geometry: PieceGeometry,
        have: Bitfield | Callable[[], Bitfield | None],
        *,
        metadata_size: int | None = None,
    ) -> None:
        """Magnet downloads: the piece count became known.  Validates what the peer sent so far
        (buffered bitfield / have all / have none / haves) and emits :class:`BitfieldReceived` if it
        sent any.  Raises :class:`RemoteProtocolError` when that data does not fit (drop the peer)."""
        if self._geometry is not None:
            raise LocalProtocolError("set_metadata() called twice")
        self._set_torrent(geometry, have, metadata_size)
        if self.their_phase is Phase.HANDSHAKE:
            return
        try:
            self._resolve_buffered()
        except RemoteProtocolError as exc:
            self._error = exc
            raise

    def _resolve_buffered(self) -> None:
        geometry = self._geometry
        assert geometry is not None
        n = geometry.num_pieces
        if self._buffered_bitfield is not None:
            bitfield = Bitfield.from_bytes(self._buffered_bitfield, n)
        else:
            bitfield = Bitfield(n, full=self.peer_has_all)
        for index in self._buffered_haves:
            if index >= n:
                raise RemoteProtocolError(f"peer sent have {index} but the torrent has {n} pieces")
            bitfield.add(index)
        for index in self.peer_allowed_fast:
            if index >= n:
                raise RemoteProtocolError(f"allowed fast piece {index} but the torrent has {n} pieces")
        self.peer_have = bitfield
        emit = self._buffered_opening or bool(self._buffered_haves)
        self._buffered_bitfield = None
        self._buffered_haves = set()
        if emit:
            self._events.append(BitfieldReceived(bitfield=bitfield.copy()))

    # --- output ---------------------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        """All bytes queued so far, joined (one copy of each block)."""
        if not self._out:
            return b""
        out = self._out
        self._out = []
        return b"".join(out)

    def buffers_to_send(self) -> list[Buffer]:
        """Queued bytes as a list of buffers, for ``transport.writelines`` (no copy of blocks)."""
        out = self._out
        self._out = []
        return out

    def _queue(self, frame: Buffer) -> None:
        self._out.append(frame)
        self._sent_since_tick = True

    def _send_handshake(self) -> None:
        assert self.info_hash is not None
        self._queue(
            codec.encode_handshake(
                Handshake(info_hash=self.info_hash, peer_id=self.our_peer_id, reserved=self.our_reserved)
            )
        )
        self.our_phase = Phase.OPENING

    def _handshakes_done(self) -> None:
        """Both handshakes seen: send our opening (BEP 6 / BEP 3) and extension handshake (BEP 10)."""
        self._handshake_deadline = None
        have = self._have()
        if have is None or have.empty:
            if self.fast:
                self._send_checked(HaveNone())
        elif have.complete and self.fast:
            self._send_checked(HaveAll())
        else:
            self._send_checked(BitfieldMsg(data=have.to_bytes()))
        if self.extensions:
            self._send_checked(self.our_extension_handshake())

    def our_extension_handshake(self) -> ExtendedHandshake:
        """The BEP 10 handshake we send (``m``, ``p``, ``v``, ``yourip``, ``reqq``, ``metadata_size``)."""
        m: dict[str, int] = {}
        if self.config.ut_metadata:
            m["ut_metadata"] = UT_METADATA_ID
        if self.config.ut_pex:
            m["ut_pex"] = UT_PEX_ID
        have = self._have()
        return ExtendedHandshake(
            m=m,
            p=self.listen_port,
            v=self.config.client_version,
            yourip=self.peer_ip,
            reqq=self.config.max_peer_requests,
            metadata_size=self._metadata_size if self.config.ut_metadata else None,
            upload_only=have is not None and have.complete and have.length > 0,
        )

    def _check_send(self, kind: type) -> None:
        if self._error is not None:
            raise LocalProtocolError(f"connection already failed: {self._error}")
        if self.their_phase is Phase.HANDSHAKE:
            raise LocalProtocolError(f"cannot send {kind.__name__} before the peer's handshake")
        feature = REQUIRES.get(kind)
        if feature is Feature.FAST and not self.fast:
            raise LocalProtocolError(f"{kind.__name__} needs the {feature.value}, not negotiated")
        if feature is Feature.EXTENSIONS and not self.extensions:
            raise LocalProtocolError(f"{kind.__name__} needs the {feature.value}, not negotiated")
        nxt = TRANSITIONS.get((self.our_phase, kind))
        if nxt is None:
            raise LocalProtocolError(f"cannot send {kind.__name__} in phase {self.our_phase.value}")
        self.our_phase = nxt

    def _ext_id(self, name: str) -> int:
        ext_id = self.peer_ext_ids.get(name, 0)
        if not ext_id:
            raise LocalProtocolError(f"peer does not support {name}")
        return ext_id

    def _send_checked(self, message: WireMessage | ExtendedHandshake) -> None:
        if isinstance(message, ExtendedHandshake):
            self._check_send(Extended)
            self._queue(
                codec.encode_message(Extended(ext_id=0, payload=codec.encode_extended_handshake(message)))
            )
            return
        self._check_send(type(message))
        self._queue(codec.encode_message(message))

    def send(self, message: Message) -> None:
        """Queue ``message`` after checking it against the state machine (``LocalProtocolError``).

        Idempotent state messages (``Choke`` when already choking, ...) queue nothing.  ``Piece`` is
        :meth:`send_piece` (silently dropped when the request is no longer pending).  Extension
        messages (``MetadataRequest``, ``Pex``, ...) are wrapped with the peer's extension id.
        """
        match message:
            case Piece(index=index, begin=begin, data=data):
                self.send_piece(index, begin, data)
            case Request(index=index, begin=begin, length=length):
                self._send_request(index, begin, length)
            case Cancel(index=index, begin=begin, length=length):
                key = (index, begin, length)
                if key not in self._our_requests:
                    return  # already answered: nothing to cancel
                self._check_send(Cancel)
                del self._our_requests[key]
                self._remember_late(key)
                self._queue(codec.encode_message(message))
            case Choke():
                if self.am_choking:
                    return
                self._check_send(Choke)
                self.am_choking = True
                self._queue(codec.encode_message(message))
                pending = list(self._peer_requests)
                self._peer_requests.clear()
                for key in pending:
                    if self.fast and key[0] in self.our_allowed_fast:
                        self._peer_requests[key] = None  # BEP 6: allowed-fast requests survive a choke
                    elif self.fast:
                        self._queue(
                            codec.encode_message(RejectRequest(index=key[0], begin=key[1], length=key[2]))
                        )
            case Unchoke():
                if not self.am_choking:
                    return
                self._check_send(Unchoke)
                self.am_choking = False
                self._queue(codec.encode_message(message))
            case Interested():
                if self.am_interested:
                    return
                self._check_send(Interested)
                self.am_interested = True
                self._queue(codec.encode_message(message))
            case NotInterested():
                if not self.am_interested:
                    return
                self._check_send(NotInterested)
                self.am_interested = False
                self._queue(codec.encode_message(message))
            case Have(index=index):
                if self._geometry is None or not 0 <= index < self._geometry.num_pieces:
                    raise LocalProtocolError(f"have {index} outside the torrent's pieces")
                self._send_checked(message)
            case BitfieldMsg(data=data):
                if self._geometry is None:
                    raise LocalProtocolError("cannot send a bitfield before the piece count is known")
                try:
                    Bitfield.from_bytes(data, self._geometry.num_pieces)
                except RemoteProtocolError as exc:
                    raise LocalProtocolError(f"our bitfield is malformed: {exc}") from None
                self._send_checked(message)
            case RejectRequest(index=index, begin=begin, length=length):
                key = (index, begin, length)
                self._check_send(RejectRequest)
                if key not in self._peer_requests:
                    raise LocalProtocolError(f"reject of a request the peer did not make: {key}")
                del self._peer_requests[key]
                self._queue(codec.encode_message(message))
            case AllowedFast(index=index):
                if self._geometry is None or not 0 <= index < self._geometry.num_pieces:
                    raise LocalProtocolError(f"allowed fast {index} outside the torrent's pieces")
                self._send_checked(message)
                self.our_allowed_fast.add(index)
            case SuggestPiece(index=index):
                if self._geometry is None or not 0 <= index < self._geometry.num_pieces:
                    raise LocalProtocolError(f"suggest piece {index} outside the torrent's pieces")
                self._send_checked(message)
            case KeepAlive() | Port() | HaveAll() | HaveNone() | Extended():
                self._send_checked(message)
            case ExtendedHandshake():
                self._send_checked(message)
            case MetadataRequest() | MetadataData() | MetadataReject():
                ext_id = self._ext_id("ut_metadata")
                self._send_checked(Extended(ext_id=ext_id, payload=codec.encode_metadata_message(message)))
            case Pex():
                ext_id = self._ext_id("ut_pex")
                self._send_checked(Extended(ext_id=ext_id, payload=encode_pex(message)))
            case Handshake():
                raise LocalProtocolError(
                    "the handshake is sent by the engine itself (constructor or accept())"
                )
            case _:
                raise LocalProtocolError(f"not a message: {message!r}")

    def send_request(self, index: int, begin: int, length: int) -> None:
        """``send(Request(...))`` without building the message object (the download hot path)."""
        self._send_request(index, begin, length)

    def _send_request(self, index: int, begin: int, length: int) -> None:
        geometry = self._geometry
        if geometry is None:
            raise LocalProtocolError("cannot request before the piece count is known")
        if not geometry.contains(index, begin, length) or length > codec.MAX_REQUEST_LENGTH:
            raise LocalProtocolError(f"request ({index}, {begin}, {length}) outside the piece")
        key = (index, begin, length)
        if key in self._our_requests:
            raise LocalProtocolError(f"duplicate request {key}")
        if self.peer_have is not None and index not in self.peer_have:
            raise LocalProtocolError(f"request for piece {index} the peer does not have")
        if self.peer_choking and not (self.fast and index in self.peer_allowed_fast):
            raise LocalProtocolError("request while the peer chokes us (and the piece is not allowed-fast)")
        if len(self._our_requests) >= self.request_limit:
            raise LocalProtocolError(f"more than {self.request_limit} outstanding requests")
        if self.our_phase is not Phase.ACTIVE or self._error is not None:
            self._check_send(Request)  # the table allows Request in ACTIVE: skip it on the hot path
        self._our_requests[key] = None
        if self._late:
            self._late.pop(key, None)
        self._out.append(_REQUEST.pack(13, codec.MSG_REQUEST, index, begin, length))
        self._sent_since_tick = True

    def send_piece(self, index: int, begin: int, data: Buffer) -> bool:
        """Answer a pending :class:`BlockRequested` with ``data`` (kept by reference, no copy until
        :meth:`data_to_send`, or until the transport copies what :meth:`buffers_to_send` returned:
        do not mutate ``data`` before then).  Returns False and sends nothing when the request is
        no longer pending (cancelled by the peer, or dropped by our choke)."""
        key = (index, begin, len(data))
        if key not in self._peer_requests:
            return False
        if self.our_phase is not Phase.ACTIVE or self._error is not None:
            self._check_send(Piece)  # the table allows Piece in ACTIVE: skip it on the hot path
        del self._peer_requests[key]
        self._queue(codec.encode_piece_header(index, begin, len(data)))
        self._out.append(data)
        self.uploaded += len(data)
        return True

    def _remember_late(self, key: _Key) -> None:
        self._late[key] = None
        if len(self._late) > self.config.max_late_requests:
            self._late.popitem(last=False)

    # --- timers ---------------------------------------------------------------------------------

    def get_timer(self) -> float:
        """When :meth:`handle_timer` should next be called (loop time)."""
        if self._handshake_deadline is not None:
            return min(self._handshake_deadline, self._next_tick)
        return self._next_tick

    def handle_timer(self, now: float) -> None:
        """Send keep-alives (BEP 3) and detect a silent peer (emits :class:`ConnectionTimedOut`)."""
        if self._handshake_deadline is not None and now >= self._handshake_deadline:
            self._handshake_deadline = None
            self._events.append(ConnectionTimedOut(reason="handshake not completed in time"))
            return
        if now < self._next_tick:
            return
        self._next_tick = now + self.config.keepalive_interval
        if self._received_since_tick:
            self._idle_ticks = 0
        else:
            self._idle_ticks += 1
            cfg = self.config
            if self._idle_ticks * cfg.keepalive_interval >= cfg.idle_timeout:
                self._events.append(
                    ConnectionTimedOut(reason=f"peer silent for {self.config.idle_timeout:.0f} s")
                )
        self._received_since_tick = False
        if not self._sent_since_tick and self.handshake_complete:
            self._queue(codec.encode_message(KeepAlive()))
        self._sent_since_tick = False

    # --- input ----------------------------------------------------------------------------------
    #
    # Received bytes live in two places: ``_buf`` (a bytearray holding at most the frame that
    # straddles two reads, plus whatever arrived while events were not drained) and ``_chunk``, a
    # memoryview of the latest immutable ``bytes`` object from the socket, parsed in place.  Blocks
    # parsed from the chunk are handed out as zero-copy memoryview slices; only the tail frame
    # of each read is copied.  Nothing is ever sliced off the front of a growing buffer (no O(n^2)).

    def receive_data(self, data: Buffer) -> None:
        """Take bytes from the socket; they are parsed lazily by :meth:`next_event`.

        ``bytes`` input is kept by reference (blocks are sliced out of it without a copy); mutable
        buffers (bytearray, memoryview) are copied, since the caller may reuse them.
        """
        n = len(data)
        if not n:
            return
        self._received_since_tick = True
        need = self._need
        if need >= n:  # small reads (slow links): all of it belongs to the buffered partial frame
            self._buf += data
            self._need = need - n
            return
        self._need = 0
        if self._chunk is not None:  # the previous read was not fully parsed: fall back to copying
            self._buf += self._chunk[self._cpos :]
            self._chunk = None
            self._buf += data
            return
        if type(data) is not bytes:
            self._buf += data
            return
        if self._pos == len(self._buf):
            if self._pos:
                self._buf.clear()
                self._pos = 0
            self._chunk = memoryview(data)
            self._cpos = 0
            return
        # A partial frame is buffered: complete just that frame, keep the rest of ``data`` in place.
        view = memoryview(data)
        off = 0
        while off < len(view):
            need = self._missing()
            if need <= 0:
                break
            take = min(need, len(view) - off)
            self._buf += view[off : off + take]
            off += take
        if off < len(view):
            self._chunk = view
            self._cpos = off

    def _missing(self) -> int:
        """Bytes still missing for the first buffered frame (or its length prefix) to be complete."""
        avail = len(self._buf) - self._pos
        if self.their_phase is Phase.HANDSHAKE:
            return codec.HANDSHAKE_LENGTH - avail
        if avail < 4:
            return 4 - avail
        length: int = _U32.unpack_from(self._buf, self._pos)[0]
        return 4 + length - avail

    def next_event(self) -> Event | None:
        """The next event, or ``None`` when more data is needed.

        Raises :class:`RemoteProtocolError` when the peer broke the protocol (and again on every
        later call): the driver drops the connection.
        """
        if self._events:
            return self._events.popleft()
        if self._error is not None:
            raise self._error
        if self._need:  # the buffered frame is known to be incomplete
            return None
        try:
            while True:
                buf = self._buf
                if self._pos < len(buf):
                    result, self._pos = self._parse_frame(buf, self._pos, len(buf))
                    if result is None:
                        if self._chunk is not None:  # frame continues in the chunk: merge (rare)
                            buf += self._chunk[self._cpos :]
                            self._chunk = None
                            continue
                        if self._pos:
                            del buf[: self._pos]
                            self._pos = 0
                        self._need = self._missing()
                        return self._events.popleft() if self._events else None
                    if self._pos == len(buf):
                        buf.clear()
                        self._pos = 0
                elif self._chunk is not None:
                    chunk = self._chunk
                    result, self._cpos = self._parse_frame(chunk, self._cpos, len(chunk))
                    if result is None:  # keep the incomplete tail frame
                        buf += chunk[self._cpos :]
                        self._chunk = None
                        self._need = self._missing()
                        return self._events.popleft() if self._events else None
                    if self._cpos == len(chunk):
                        self._chunk = None
                else:
                    return self._events.popleft() if self._events else None
                if result is not _NO_EVENT:
                    return result  # type: ignore[return-value]
                if self._events:
                    return self._events.popleft()
        except RemoteProtocolError as exc:
            self._error = exc
            raise

    def _parse_frame(self, src: bytearray | memoryview, pos: int, end: int) -> tuple[object, int]:
        """Parse one frame of ``src[pos:end]``: (event | ``_NO_EVENT`` | ``None`` = need more, new pos)."""
        avail = end - pos
        if self.their_phase is Phase.HANDSHAKE:
            return self._parse_handshake(src, pos, avail)
        if self._awaiting_accept or avail < 4:
            return None, pos
        length = _U32.unpack_from(src, pos)[0]
        if length == 0:
            return self._received(KeepAlive), pos + 4
        if avail < 5:
            return None, pos
        msg_id = src[pos + 4]
        if msg_id == 7:  # piece: the hot path
            if length > 9 + codec.MAX_REQUEST_LENGTH or length < 10:
                raise RemoteProtocolError(f"piece message of {length} bytes")
            stop = pos + 4 + length
            if end < stop:
                return None, pos
            index, begin = _II.unpack_from(src, pos + 5)
            return self._on_piece(index, begin, src[pos + 13 : stop]), stop
        if msg_id == 6 and length == 13:  # request: the seeding hot path
            stop = pos + 17
            if end < stop:
                return None, pos
            index, begin, size = _III.unpack_from(src, pos + 5)
            if not 0 < size <= codec.MAX_REQUEST_LENGTH:
                raise RemoteProtocolError(f"request length {size} outside 1..{codec.MAX_REQUEST_LENGTH}")
            if self.their_phase is not Phase.ACTIVE:
                self._received(Request)
            return self._on_request(index, begin, size), stop
        cap = self._caps.get(msg_id)
        if cap is None:
            cap = 1 + self.config.max_unknown_length
        if msg_id in _FIXED_PAYLOAD and length != cap:
            raise RemoteProtocolError(f"message id {msg_id} with length {length} (must be {cap})")
        if length > cap:
            raise RemoteProtocolError(f"message id {msg_id} of {length} bytes exceeds the limit of {cap}")
        stop = pos + 4 + length
        if end < stop:
            return None, pos
        message = codec.decode_message(msg_id, src[pos + 5 : stop])
        if message is None:
            return _NO_EVENT, stop  # unknown id: skipped (see codec.decode_message)
        return self._on_message(message), stop

    def _parse_handshake(self, src: bytearray | memoryview, pos: int, avail: int) -> tuple[object, int]:
        if avail < codec.HANDSHAKE_LENGTH:
            # Fail early on a wrong protocol string (e.g. an encrypted handshake, BEP 8 / MSE).
            head = bytes(src[pos : pos + min(avail, 20)])
            expect = bytes([len(PROTOCOL)]) + PROTOCOL
            if head != expect[: len(head)]:
                raise RemoteProtocolError(f"not a BitTorrent handshake (starts with {head!r})")
            return None, pos
        handshake = codec.decode_handshake(src[pos : pos + codec.HANDSHAKE_LENGTH])
        if self.info_hash is not None and handshake.info_hash != self.info_hash:
            raise RemoteProtocolError(
                f"peer handshake for info-hash {handshake.info_hash}, expected {self.info_hash}"
            )
        self.peer_handshake = handshake
        self.their_phase = Phase.OPENING
        self.fast = self.config.enable_fast and handshake.supports_fast
        self.extensions = self.config.enable_extensions and handshake.supports_extensions
        event = HandshakeReceived(handshake=handshake)
        if self.info_hash is None:
            self._awaiting_accept = True
        else:
            self._handshakes_done()
        return event, pos + codec.HANDSHAKE_LENGTH

    def _received(self, kind: type) -> object:
        """Apply the transition table to a received message of type ``kind``."""
        feature = REQUIRES.get(kind)
        if feature is Feature.FAST and not self.fast:
            raise RemoteProtocolError(f"peer sent {kind.__name__} without the {feature.value}")
        if feature is Feature.EXTENSIONS and not self.extensions:
            raise RemoteProtocolError(f"peer sent {kind.__name__} without the {feature.value}")
        nxt = TRANSITIONS.get((self.their_phase, kind))
        if nxt is None:
            raise RemoteProtocolError(
                f"peer sent {kind.__name__} in phase {self.their_phase.value} (BEP 6: the "
                "bitfield, have all and have none may only be the first message)"
            )
        self.their_phase = nxt
        return _NO_EVENT

    def _on_piece(self, index: int, begin: int, data: bytearray | memoryview) -> object:
        if self.their_phase is not Phase.ACTIVE:
            self._received(Piece)
        key = (index, begin, len(data))
        requests = self._our_requests
        if key in requests:
            del requests[key]
            self.downloaded += len(data)
            return BlockReceived(index=index, begin=begin, data=data)
        if key in self._late:
            del self._late[key]
            self.downloaded += len(data)
            return BlockReceived(index=index, begin=begin, data=data, late=True)
        self.unrequested_bytes += len(data)
        return _NO_EVENT

    def _check_index(self, index: int, what: str) -> None:
        geometry = self._geometry
        if geometry is not None and not 0 <= index < geometry.num_pieces:
            raise RemoteProtocolError(
                f"{what} for piece {index} but the torrent has {geometry.num_pieces} pieces"
            )

    def _on_message(self, message: WireMessage) -> object:
        late = self.their_phase is Phase.ACTIVE
        self._received(type(message))
        if late and isinstance(message, BitfieldMsg | HaveAll):
            return self._on_late_pieces(message)
        match message:
            case Have(index=index):
                self._check_index(index, "have")
                if self.peer_have is not None:
                    return HaveReceived(index=index) if self.peer_have.add(index) else _NO_EVENT
                if len(self._buffered_haves) >= self.config.max_buffered_haves:
                    raise RemoteProtocolError("too many have messages before the metadata is known")
                self._buffered_haves.add(index)
                return _NO_EVENT
            case Request(index=index, begin=begin, length=length):
                return self._on_request(index, begin, length)
            case Cancel(index=index, begin=begin, length=length):
                key = (index, begin, length)
                if key not in self._peer_requests:
                    return _NO_EVENT  # already served or rejected: a normal race
                del self._peer_requests[key]
                if self.fast:  # BEP 6: a cancelled request is answered with a reject
                    self._queue(codec.encode_message(RejectRequest(index=index, begin=begin, length=length)))
                return RequestCancelled(index=index, begin=begin, length=length)
            case Choke():
                if self.peer_choking:
                    return _NO_EVENT
                self.peer_choking = True
                if self.fast:
                    return PeerChoked()
                dropped = tuple(BlockRef(*key) for key in self._our_requests)
                for key in self._our_requests:
                    self._remember_late(key)
                self._our_requests.clear()
                return PeerChoked(dropped=dropped)
            case Unchoke():
                if not self.peer_choking:
                    return _NO_EVENT
                self.peer_choking = False
                return PeerUnchoked()
            case Interested():
                if self.peer_interested:
                    return _NO_EVENT
                self.peer_interested = True
                return PeerInterested()
            case NotInterested():
                if not self.peer_interested:
                    return _NO_EVENT
                self.peer_interested = False
                return PeerNotInterested()
            case BitfieldMsg(data=data):
                if self._geometry is None:
                    if len(data) > self.config.max_bitfield_length:
                        raise RemoteProtocolError(f"bitfield of {len(data)} bytes is too large")
                    self._buffered_bitfield = data
                    self._buffered_opening = True
                    return _NO_EVENT
                bitfield = Bitfield.from_bytes(data, self._geometry.num_pieces)
                self.peer_have = bitfield
                self.peer_has_all = bitfield.complete
                return BitfieldReceived(bitfield=bitfield.copy())
            case HaveAll() | HaveNone():
                self.peer_has_all = isinstance(message, HaveAll)
                if self._geometry is None:
                    self._buffered_opening = True
                    return _NO_EVENT
                self.peer_have = Bitfield(self._geometry.num_pieces, full=self.peer_has_all)
                return BitfieldReceived(bitfield=self.peer_have.copy())
            case RejectRequest(index=index, begin=begin, length=length):
                key = (index, begin, length)
                if key in self._our_requests:
                    del self._our_requests[key]
                    return RequestRejected(index=index, begin=begin, length=length)
                if key in self._late:
                    del self._late[key]
                    return _NO_EVENT
                raise RemoteProtocolError(f"peer rejected a request we never sent: {key}")
            case AllowedFast(index=index):
                self._check_index(index, "allowed fast")
                if (
                    len(self.peer_allowed_fast) >= self.config.max_allowed_fast
                    or index in self.peer_allowed_fast
                ):
                    return _NO_EVENT
                self.peer_allowed_fast.add(index)
                return AllowedFastReceived(index=index)
            case SuggestPiece(index=index):
                self._check_index(index, "suggest piece")
                return PieceSuggested(index=index)
            case Port(port=port):
                return PortReceived(port=port) if port else _NO_EVENT
            case Extended(ext_id=ext_id, payload=payload):
                return self._on_extended(ext_id, payload)
            case KeepAlive():
                return _NO_EVENT
        return _NO_EVENT  # pragma: no cover - Piece takes the fast path

    def _on_late_pieces(self, message: BitfieldMsg | HaveAll) -> object:
        """A bitfield / have all after the opening (aria2): add its pieces as if they were haves."""
        geometry = self._geometry
        if geometry is None:
            if isinstance(message, HaveAll):
                self.peer_has_all = True
            elif len(message.data) > self.config.max_bitfield_length:
                raise RemoteProtocolError(f"bitfield of {len(message.data)} bytes is too large")
            elif self._buffered_bitfield is not None and len(self._buffered_bitfield) == len(message.data):
                self._buffered_bitfield = bytes(
                    a | b for a, b in zip(self._buffered_bitfield, message.data, strict=True)
                )
            else:
                self._buffered_bitfield = bytes(message.data)
            self._buffered_opening = True
            return _NO_EVENT
        n = geometry.num_pieces
        incoming = (
            Bitfield(n, full=True) if isinstance(message, HaveAll) else Bitfield.from_bytes(message.data, n)
        )
        if self.peer_have is None:
            self.peer_have = Bitfield(n)
        for index in incoming:
            if self.peer_have.add(index):
                self._events.append(HaveReceived(index=index))
        self.peer_has_all = self.peer_have.complete
        return _NO_EVENT

    def _on_request(self, index: int, begin: int, length: int) -> object:
        geometry = self._geometry
        have = self._have()
        if geometry is None or have is None or index not in have:
            if self.fast:
                self._queue(codec.encode_message(RejectRequest(index=index, begin=begin, length=length)))
                return _NO_EVENT
            raise RemoteProtocolError(f"peer requested piece {index}, which we do not have")
        if not geometry.contains(index, begin, length):
            raise RemoteProtocolError(f"peer requested ({index}, {begin}, {length}) outside the piece")
        key = (index, begin, length)
        if key in self._peer_requests:
            return _NO_EVENT
        if self.am_choking and not (self.fast and index in self.our_allowed_fast):
            if self.fast:  # BEP 6: a choked peer's requests are rejected explicitly
                self._queue(codec.encode_message(RejectRequest(index=index, begin=begin, length=length)))
            return _NO_EVENT  # BEP 3: a request in flight when we choked is simply dropped
        if len(self._peer_requests) >= self.config.max_peer_requests:
            if self.fast:
                self._queue(codec.encode_message(RejectRequest(index=index, begin=begin, length=length)))
                return _NO_EVENT
            raise RemoteProtocolError(f"peer has more than {self.config.max_peer_requests} requests queued")
        self._peer_requests[key] = None
        return BlockRequested(index=index, begin=begin, length=length)

    def _on_extended(self, ext_id: int, payload: bytes) -> object:
        if ext_id == 0:
            handshake = codec.decode_extended_handshake(payload)
            if self.peer_extensions is None:
                self.peer_ext_ids = {}
            for name, peer_id in handshake.m.items():
                if peer_id:
                    self.peer_ext_ids[name] = peer_id
                else:
                    self.peer_ext_ids.pop(name, None)  # BEP 10: id 0 disables
            self.peer_extensions = handshake
            return ExtensionHandshakeReceived(handshake=handshake)
        if ext_id == UT_METADATA_ID and self.config.ut_metadata:
            message = codec.decode_metadata_message(payload, max_metadata_size=self.config.max_metadata_size)
            match message:
                case MetadataRequest(piece=piece):
                    return MetadataRequested(piece=piece)
                case MetadataData(piece=piece, total_size=total_size, data=data):
                    return MetadataPieceReceived(piece=piece, total_size=total_size, data=data)
                case MetadataReject(piece=piece):
                    return MetadataRejected(piece=piece)
            return _NO_EVENT
        if ext_id == UT_PEX_ID and self.config.ut_pex:
            pex = decode_pex(payload)
            return PexReceived(added=pex.added, dropped=pex.dropped)
        return _NO_EVENT  # an extension we did not offer: ignored (BEP 10)
