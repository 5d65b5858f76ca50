"""``PeerConnection``: the sans-IO engine of one peer wire connection (level L2).

BEP 3 (handshake, messages, choking), BEP 5 (``port``), BEP 6 (Fast extension), BEP 10 (extension
protocol) with BEP 9 (``ut_metadata``), BEP 11 (``ut_pex``), BEP 54 (``lt_donthave``), BEP 55
(``ut_holepunch``) and BEP 52 (``hash request`` / ``hashes`` / ``hash reject`` on v2 and hybrid torrents,
and the v2 reserved bit).  See the package docstring
(:mod:`torrentgoat.wire`) for the driver's view of the API.  The engine is split by job:

* :mod:`.states` -- the transition table and the one check both directions run through (h11 style,
  DESIGN rule 2): a received message the table forbids raises
  :class:`~torrentgoat.errors.RemoteProtocolError` (drop the peer), one we try to send raises
  :class:`~torrentgoat.errors.LocalProtocolError`;
* :mod:`.framing` -- the zero-copy receive buffer and frame parser
  (:class:`~torrentgoat.wire.framing.FrameReceiver`);
* :mod:`.receive` -- what each message the peer sends means
  (:class:`~torrentgoat.wire.receive.MessageReceiver`, the base class of :class:`PeerConnection`,
  itself a ``FrameReceiver``);
* :mod:`.requests` -- our requests, recently cancelled ones, the peer's requests;
* :mod:`.opening` -- the peer's opening held while a magnet's metadata is unknown;
* this module -- the connection's state and what we send: construction, :meth:`~PeerConnection.accept`,
  :meth:`~PeerConnection.set_metadata`, the handshakes, :meth:`~PeerConnection.send` and the block
  hot paths, output and timers.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from typing import Final

from torrentgoat.bitfield import Bitfield
from torrentgoat.errors import LocalProtocolError, RemoteProtocolError
from torrentgoat.geometry import PieceGeometry
from torrentgoat.primitives import BlockRef, InfoHash, PeerId
from torrentgoat.wire import codec
from torrentgoat.wire.config import (
    CLIENT_VERSION,
    LT_DONTHAVE_ID,
    UT_HOLEPUNCH_ID,
    UT_METADATA_ID,
    UT_PEX_ID,
    WireConfig,
    misannounced_extension,
)
from torrentgoat.wire.events import BitfieldReceived, ConnectionTimedOut
from torrentgoat.wire.framing import frame_caps
from torrentgoat.wire.hashes import Hashes, HashReject, HashRequest, set_v2_bit
from torrentgoat.wire.holepunch import encode_holepunch
from torrentgoat.wire.messages import (
    AllowedFast,
    BitfieldMsg,
    Buffer,
    Cancel,
    Choke,
    DontHave,
    Extended,
    ExtendedHandshake,
    Handshake,
    Have,
    HaveAll,
    HaveNone,
    Holepunch,
    Interested,
    KeepAlive,
    Message,
    MessageId,
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
from torrentgoat.wire.opening import PendingOpening
from torrentgoat.wire.pex import encode_pex
from torrentgoat.wire.receive import MessageReceiver
from torrentgoat.wire.requests import RequestBook
from torrentgoat.wire.states import REQUIRES, TRANSITIONS, Feature, Phase, Side, advance

__all__ = [
    "CLIENT_VERSION",
    "LT_DONTHAVE_ID",
    "REQUIRES",
    "TRANSITIONS",
    "UT_HOLEPUNCH_ID",
    "UT_METADATA_ID",
    "UT_PEX_ID",
    "Feature",
    "PeerConnection",
    "Phase",
    "PieceGeometry",
    "WireConfig",
]

_TRIPLE = struct.Struct(">IBIII")
Span = tuple[int, int, int]
"""``(index, begin, length)`` of a block."""
_PIECE_HEADER = struct.Struct(">IBII")
"""length, id, index, begin: the 13 bytes before a ``piece`` message's block (BEP 3)."""
_PIECE_ID: Final = 7
_REQUEST_ID: Final = MessageId.REQUEST
_REJECT_ID: Final = MessageId.REJECT_REQUEST
_ACTIVE: Final = Phase.ACTIVE


def _reserved(config: WireConfig) -> bytes:
    """Our handshake's reserved bytes: BEP 10, BEP 6, BEP 5, and BEP 52's v2 bit for a v2/hybrid torrent."""
    reserved = codec.make_reserved(
        extensions=config.enable_extensions, fast=config.enable_fast, dht=config.enable_dht
    )
    return set_v2_bit(reserved) if config.bep52 else reserved


class PeerConnection(MessageReceiver):
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
        upgrade_info_hash: InfoHash | None = None,
    ) -> None:
        super().__init__()
        self.config = config or WireConfig()
        self.our_peer_id = peer_id
        self.info_hash: InfoHash | None = None
        self.upgrade_info_hash = upgrade_info_hash
        """BEP 52 "Upgrade Path": a hybrid's truncated v2 info-hash, which the peer may answer our v1
        handshake with; :attr:`info_hash` then becomes it (the connection is in the v2 swarm)."""
        self.listen_port = listen_port
        self.peer_ip = peer_ip
        self.our_reserved = _reserved(self.config)
        self.hash_messages: bool | None = self.config.bep52
        """BEP 52 hash messages: allowed (True), a protocol error (False) or ignored (None); see
        :attr:`WireConfig.bep52`.  The driver sets it once a magnet's metadata says."""
        self.peer_handshake: Handshake | None = None
        self.peer_extensions: ExtendedHandshake | None = None
        self.peer_ext_ids: dict[str, int] = {}
        self._request_limit = self.config.request_limit(None)
        self.fast = False
        self.extensions = False
        self._ours = Side()
        self._theirs = Side()
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
        self._requests = RequestBook(self.config.max_late_requests)
        # The hot paths use the book's dicts directly (they are never rebound).
        self._our_requests = self._requests.ours
        self._late = self._requests.late
        self._peer_requests = self._requests.theirs
        self._opening = PendingOpening()
        self._retracted: set[int] = set()
        """Pieces we took back (BEP 54) and have not announced again."""
        self._out: list[Buffer] = []
        self._awaiting_accept = False
        self._sent_since_tick = False
        self._idle_ticks = 0
        self._next_tick = now + self.config.keepalive_interval
        self._handshake_deadline: float | None = now + self.config.handshake_timeout
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
        cfg = self.config
        self._caps = frame_caps(
            geometry.num_pieces if geometry is not None else None,
            max_bitfield_length=cfg.max_bitfield_length,
            max_extended_length=cfg.max_extended_length,
        )
        self._unknown_cap = 1 + cfg.max_unknown_length

    # --- state exposed read-only ----------------------------------------------------------------

    @property
    def our_phase(self) -> Phase:
        return self._ours.phase

    @property
    def their_phase(self) -> Phase:
        return self._theirs.phase

    @property
    def am_choking(self) -> bool:
        return self._ours.choking

    @property
    def am_interested(self) -> bool:
        return self._ours.interested

    @property
    def peer_choking(self) -> bool:
        return self._theirs.choking

    @property
    def peer_interested(self) -> bool:
        return self._theirs.interested

    @property
    def geometry(self) -> PieceGeometry | None:
        return self._geometry

    @property
    def our_have(self) -> Bitfield | None:
        return self._have()

    @property
    def handshake_complete(self) -> bool:
        return self._ours.phase is not Phase.HANDSHAKE and self._theirs.phase is not Phase.HANDSHAKE

    @property
    def request_limit(self) -> int:
        """How many requests we may have outstanding at this peer (its ``reqq``, BEP 10)."""
        return self._request_limit

    @property
    def outstanding_requests(self) -> tuple[BlockRef, ...]:
        """Our requests to the peer not yet answered, oldest first."""
        return self._requests.outstanding()

    @property
    def peer_requests(self) -> tuple[BlockRef, ...]:
        """The peer's requests to us not yet answered, oldest first."""
        return self._requests.pending()

    @property
    def outstanding_count(self) -> int:
        """How many of our requests to the peer are unanswered (O(1), for the request pipeline)."""
        return len(self._our_requests)

    def has_peer_request(self, index: int, begin: int, length: int) -> bool:
        """Whether the peer's request ``(index, begin, length)`` is still pending (not cancelled)."""
        return (index, begin, length) in self._peer_requests

    def can_request(self, index: int | None = None) -> bool:
        """Whether :meth:`send` of a ``Request`` (for piece ``index``) would be accepted now."""
        if (
            self._ours.phase is Phase.HANDSHAKE
            or self._theirs.phase is Phase.HANDSHAKE
            or self._geometry is None
        ):
            return False
        if len(self._our_requests) >= self._request_limit:
            return False
        if self._theirs.choking:
            return index is not None and self.fast and index in self.peer_allowed_fast
        return True

    # --- handshakes (BEP 3), accept, metadata -----------------------------------------------------

    def accept(
        self,
        *,
        info_hash: InfoHash,
        have: Bitfield | Callable[[], Bitfield | None] | None = None,
        geometry: PieceGeometry | None = None,
        metadata_size: int | None = None,
        config: WireConfig | None = None,
        reply_info_hash: InfoHash | None = None,
    ) -> None:
        """Responder side: serve ``info_hash`` after :class:`HandshakeReceived`; sends our handshake.

        ``reply_info_hash``: answer with this info-hash instead (BEP 52: a hybrid torrent asked by its
        v1 info-hash with the v2 bit set answers with its truncated v2 one, upgrading the connection).

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
            self.config = cfg = config
            self.our_reserved = _reserved(cfg)
            self.hash_messages = cfg.bep52
            self.fast = cfg.enable_fast and handshake.supports_fast
            self.extensions = cfg.enable_extensions and handshake.supports_extensions
            self._requests.max_late = cfg.max_late_requests
            self._request_limit = cfg.request_limit(None)  # no extension handshake before ours
        self._awaiting_accept = False
        self.info_hash = reply_info_hash or info_hash
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
        if self._theirs.phase is Phase.HANDSHAKE:
            return
        try:
            bitfield, announced = self._opening.resolve(
                geometry.num_pieces, has_all=self.peer_has_all, allowed_fast=self.peer_allowed_fast
            )
        except RemoteProtocolError as exc:
            self._error = exc
            raise
        self.peer_have = bitfield
        if announced:
            self._events.append(BitfieldReceived(bitfield=bitfield.copy()))

    def _send_handshake(self) -> None:
        assert self.info_hash is not None
        self._queue(
            codec.encode_handshake(
                Handshake(info_hash=self.info_hash, peer_id=self.our_peer_id, reserved=self.our_reserved)
            )
        )
        advance(
            self._ours,
            Handshake,
            fast=self.fast,
            extensions=self.extensions,
            error=LocalProtocolError,
            sender="cannot send",
        )

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
        if self.config.lt_donthave:
            m["lt_donthave"] = LT_DONTHAVE_ID
        if self.config.ut_holepunch:
            m["ut_holepunch"] = UT_HOLEPUNCH_ID
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

    def _reject(self, index: int, begin: int, length: int) -> None:
        """BEP 6: answer the peer's request ``(index, begin, length)`` with ``reject request``."""
        self._queue(_TRIPLE.pack(13, _REJECT_ID, index, begin, length))

    def _check_send(self, kind: type) -> None:
        """The state table for a message of type ``kind`` we are about to send."""
        if self._error is not None:
            raise LocalProtocolError(f"connection already failed: {self._error}")
        if self._theirs.phase is Phase.HANDSHAKE:
            raise LocalProtocolError(f"cannot send {kind.__name__} before the peer's handshake")
        advance(
            self._ours,
            kind,
            fast=self.fast,
            extensions=self.extensions,
            error=LocalProtocolError,
            sender="cannot send",
        )

    def _send_checked(self, message: WireMessage | ExtendedHandshake) -> None:
        if isinstance(message, ExtendedHandshake):
            if (wrong := misannounced_extension(message.m)) is not None:
                raise LocalProtocolError(wrong)
            self._check_send(Extended)
            self._queue(
                codec.encode_message(Extended(ext_id=0, payload=codec.encode_extended_handshake(message)))
            )
            return
        self._check_send(type(message))
        self._queue(codec.encode_message(message))

    def _ext_id(self, name: str) -> int:
        ext_id = self.peer_ext_ids.get(name, 0)
        if not ext_id:
            raise LocalProtocolError(f"peer does not support {name}")
        return ext_id

    def _check_piece_index(self, index: int, what: str) -> None:
        if self._geometry is None or not 0 <= index < self._geometry.num_pieces:
            raise LocalProtocolError(f"{what} {index} outside the torrent's pieces")

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
            case Choke() | Unchoke() | Interested() | NotInterested():
                self._send_flag(message)
            case Cancel(index=index, begin=begin, length=length):
                if (index, begin, length) not in self._our_requests:
                    return  # already answered: nothing to cancel
                self._check_send(Cancel)
                self._requests.cancel((index, begin, length))
                self._queue(codec.encode_message(message))
            case RejectRequest(index=index, begin=begin, length=length):
                self._check_send(RejectRequest)
                if not self._requests.withdrawn((index, begin, length)):
                    raise LocalProtocolError(
                        f"reject of a request the peer did not make: {(index, begin, length)}"
                    )
                self._reject(index, begin, length)
            case Have(index=index):
                self._check_piece_index(index, "have")
                self._send_checked(message)
                self._retracted.discard(index)
            case AllowedFast(index=index):
                self._check_piece_index(index, "allowed fast")
                self._send_checked(message)
                self.our_allowed_fast.add(index)
            case SuggestPiece(index=index):
                self._check_piece_index(index, "suggest piece")
                self._send_checked(message)
            case BitfieldMsg(data=data):
                if self._geometry is None:
                    raise LocalProtocolError("cannot send a bitfield before the piece count is known")
                try:
                    Bitfield.from_bytes(data, self._geometry.num_pieces)
                except RemoteProtocolError as exc:
                    raise LocalProtocolError(f"our bitfield is malformed: {exc}") from None
                self._send_checked(message)
            case KeepAlive() | Port() | HaveAll() | HaveNone() | Extended() | ExtendedHandshake():
                self._send_checked(message)
            case MetadataRequest() | MetadataData() | MetadataReject():
                ext_id = self._ext_id("ut_metadata")
                self._send_checked(Extended(ext_id=ext_id, payload=codec.encode_metadata_message(message)))
            case Pex():
                ext_id = self._ext_id("ut_pex")
                self._send_checked(Extended(ext_id=ext_id, payload=encode_pex(message)))
            case HashRequest() | Hashes() | HashReject():
                if not self.hash_messages:
                    raise LocalProtocolError("BEP 52 hash messages need a v2 or hybrid torrent")
                self._send_checked(message)
            case DontHave(index=index):
                self._check_piece_index(index, "lt_donthave")
                ext_id = self._ext_id("lt_donthave")
                self._send_checked(Extended(ext_id=ext_id, payload=codec.encode_dont_have(message)))
            case Holepunch():
                if not self.config.ut_holepunch:
                    raise LocalProtocolError("ut_holepunch is turned off")
                ext_id = self._ext_id("ut_holepunch")
                self._send_checked(Extended(ext_id=ext_id, payload=encode_holepunch(message)))
            case Handshake():
                raise LocalProtocolError(
                    "the handshake is sent by the engine itself (constructor or accept())"
                )
            case _:
                raise LocalProtocolError(f"not a message: {message!r}")

    @property
    def peer_supports_holepunch(self) -> bool:
        """Both sides offered BEP 55 ``ut_holepunch``."""
        return self.config.ut_holepunch and self.extensions and bool(self.peer_ext_ids.get("ut_holepunch"))

    @property
    def peer_supports_dont_have(self) -> bool:
        """The peer offered BEP 54 ``lt_donthave`` (and we did not turn it off)."""
        return self.config.lt_donthave and self.extensions and bool(self.peer_ext_ids.get("lt_donthave"))

    def retract(self, index: int) -> tuple[bool, tuple[BlockRef, ...]]:
        """We no longer have piece ``index`` (it already left the have-set this engine reads), BEP 54.

        The peer is told with ``lt_donthave`` when it offered the extension; its pending requests for
        the piece are withdrawn (never served) and, with BEP 6, rejected.  A later request for the
        piece from a peer that could not be told is dropped instead of being its protocol error,
        until :class:`Have` announces the piece again.  Returns whether the peer was told, and its
        withdrawn requests that could not be rejected (no BEP 6): those stay unanswered, and only
        closing the connection frees the peer from waiting for them."""
        self._check_piece_index(index, "lt_donthave")
        if not self.handshake_complete or self._error is not None:
            return False, ()
        told = self.peer_supports_dont_have
        if told:
            self.send(DontHave(index=index))
        self._retracted.add(index)
        self.our_allowed_fast.discard(index)
        unanswered: list[BlockRef] = []
        for key in self._requests.withdraw_piece(index):
            if self.fast:
                self._reject(*key)
            else:
                unanswered.append(BlockRef(*key))
        return told, tuple(unanswered)

    def _send_flag(self, message: Choke | Unchoke | Interested | NotInterested) -> None:
        """BEP 3 state messages are idempotent.  Choking drops the peer's pending requests (BEP 3);
        with BEP 6 they are rejected instead, except those for allowed-fast pieces, which survive."""
        kind = type(message)
        if not self._ours.changes(kind):
            return
        self._check_send(kind)
        self._ours.set_flag(kind)
        self._queue(codec.encode_message(message))
        if kind is Choke:
            dropped = self._requests.choke_theirs(self.our_allowed_fast if self.fast else ())
            if self.fast:
                for key in dropped:
                    self._reject(*key)

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
        requests = self._our_requests
        if key in requests:
            raise LocalProtocolError(f"duplicate request {key}")
        if self.peer_have is not None and index not in self.peer_have:
            raise LocalProtocolError(f"request for piece {index} the peer does not have")
        if self._theirs.choking and not (self.fast and index in self.peer_allowed_fast):
            raise LocalProtocolError("request while the peer chokes us (and the piece is not allowed-fast)")
        if len(requests) >= self._request_limit:
            raise LocalProtocolError(f"more than {self._request_limit} outstanding requests")
        if self._ours.phase is not _ACTIVE or self._error is not None:
            self._check_send(Request)  # the table allows Request in ACTIVE: skip it on the hot path
        requests[key] = None
        # A cancelled request of the same block stays counted in ``_late``: with BEP 6 each request
        # gets its own answer, so the reject (or block) of the cancelled one may still come.
        self._out.append(_TRIPLE.pack(13, _REQUEST_ID, index, begin, length))
        self._sent_since_tick = True

    def send_requests(self, blocks: Iterable[Span]) -> list[Span]:
        """:meth:`send_request` of each ``(index, begin, length)``, in one pass and one queued buffer
        (the download hot path).  Blocks :meth:`can_request` refuses now (the request limit reached,
        or choked and the piece not allowed-fast) are not sent but returned; anything else invalid
        raises as there (the blocks before it are sent)."""
        refused: list[Span] = []
        geometry = self._geometry
        if self._ours.phase is not _ACTIVE or self._theirs.phase is Phase.HANDSHAKE or geometry is None:
            for block in blocks:  # not the hot path: one by one, with every check
                if self.can_request(block[0]):
                    self._send_request(*block)
                else:
                    refused.append(block)
            return refused
        if self._error is not None:
            self._check_send(Request)  # raises
        n, requests, limit = geometry.num_pieces, self._our_requests, self._request_limit
        have, choked = self.peer_have, self._theirs.choking
        allowed = self.peer_allowed_fast if self.fast else set()
        pack, frames = _TRIPLE.pack, []
        last = size = -1
        try:  # what was recorded is queued, also when a bad block raises
            for key in blocks:
                index, begin, length = key
                if len(requests) >= limit or (choked and index not in allowed):
                    refused.append(key)
                    continue
                if index != last:
                    if not 0 <= index < n or (have is not None and index not in have):
                        raise LocalProtocolError(
                            f"request for piece {index}: out of range or the peer lacks it"
                        )
                    last, size = index, geometry.piece_size(index)
                if not 0 < length <= codec.MAX_REQUEST_LENGTH or begin < 0 or begin + length > size:
                    raise LocalProtocolError(f"request ({index}, {begin}, {length}) outside the piece")
                if key in requests:
                    raise LocalProtocolError(f"duplicate request {key}")
                requests[key] = None
                frames.append(pack(13, _REQUEST_ID, index, begin, length))
        finally:
            if frames:
                self._queue(b"".join(frames))
        return refused

    def send_piece(self, index: int, begin: int, data: Buffer) -> bool:
        """Answer a pending :class:`BlockRequested` with ``data`` (kept by reference, no copy until
        :meth:`data_to_send`, or until the transport copies what :meth:`buffers_to_send` returned:
        do not mutate ``data`` before then).  Returns False and sends nothing when the request is
        no longer pending (cancelled by the peer, or dropped by our choke)."""
        key = (index, begin, len(data))
        if key not in self._peer_requests:
            return False
        if self._ours.phase is not _ACTIVE or self._error is not None:
            self._check_send(Piece)  # the table allows Piece in ACTIVE: skip it on the hot path
        del self._peer_requests[key]
        self._queue(codec.encode_piece_header(index, begin, len(data)))
        self._out.append(data)
        self.uploaded += len(data)
        return True

    def answer_request(self, index: int, begin: int, length: int) -> bytes | None:
        """:meth:`send_piece` for a caller that writes the block itself (``sendfile``): the pending
        request is answered and the piece message's 13-byte header returned, to be written right
        after everything :meth:`buffers_to_send` returned so far and followed by exactly ``length``
        bytes of the block.  Nothing may be queued meanwhile (``LocalProtocolError``).  ``None`` when
        the request is no longer pending."""
        key = (index, begin, length)
        if key not in self._peer_requests:
            return None
        if self._out:
            raise LocalProtocolError("answer_request with output still queued: take buffers_to_send first")
        if self._ours.phase is not _ACTIVE or self._error is not None:
            self._check_send(Piece)
        del self._peer_requests[key]
        self._sent_since_tick = True
        self.uploaded += length
        return _PIECE_HEADER.pack(9 + length, _PIECE_ID, index, begin)

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
        cfg = self.config
        self._next_tick = now + cfg.keepalive_interval
        if self._received_since_tick:
            self._idle_ticks = 0
        else:
            self._idle_ticks += 1
            if self._idle_ticks * cfg.keepalive_interval >= cfg.idle_timeout:
                self._events.append(ConnectionTimedOut(reason=f"peer silent for {cfg.idle_timeout:.0f} s"))
        self._received_since_tick = False
        if not self._sent_since_tick and self.handshake_complete:
            self._queue(codec.encode_message(KeepAlive()))
        self._sent_since_tick = False
