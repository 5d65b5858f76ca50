"""What each message the peer sends means (level L2): the receive handlers of a connection.

:class:`MessageReceiver` sits between :class:`~torrentgoat.wire.framing.FrameReceiver` (which cuts
frames out of the bytes) and :class:`~torrentgoat.wire.connection.PeerConnection` (which owns the
state, the send side, the handshakes and the timers): it implements the framing hooks.  Rules, by
source:

* BEP 3: every message is checked against the state table (:func:`~torrentgoat.wire.states.advance`);
  ``have`` and ``request`` indices must be in range and requests inside their piece; a request for
  a piece we lack is an error, one that arrives while we choke is dropped; a ``piece`` nobody asked
  for is ignored (counted), one we cancelled is still used (``late``); a ``choke`` discards all our
  pending requests;
* BEP 6: with the Fast extension, requests we cannot serve are answered with ``reject request``
  (pieces we lack, while we choke unless allowed-fast, beyond our queue), a ``cancel`` is answered
  with a reject, a choke discards nothing, and a reject for a request we never sent is an error;
* BEP 10: the extension handshake sets the peer's message ids (id 0 disables one); extension
  messages we did not offer are ignored; BEP 9 ``ut_metadata`` and BEP 11 ``ut_pex`` payloads
  become events;
* BEP 55: a ``ut_holepunch`` message becomes :class:`HolepunchReceived` when the peer offered the
  extension too (otherwise it is ignored silently, as BEP 55 says); a malformed one is ignored (as
  libtorrent does: the extension may grow message types);
* BEP 54: ``lt_donthave`` takes a piece out of the peer's have-set (a redundant one is ignored, as
  libtorrent does; before a magnet's metadata is known it is ignored too) and our requests for it
  become late: the peer will not answer them with data.

* BEP 52: ``hash request``, ``hashes`` and ``hash reject`` become events on a v2 or hybrid torrent
  (their meaning is the driver's: :mod:`torrentgoat.wire.hashes`); on a v1 torrent they break the
  protocol, and while a v1 magnet's metadata is unknown (it may be a hybrid) they are ignored.

Not BEP 6, but tolerated: aria2 sends a whole ``bitfield`` (or ``have all``) mid-connection instead of
``have`` messages; its pieces are added as if they were haves.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from collections.abc import Callable
from typing import Final

from torrentgoat.bitfield import Bitfield
from torrentgoat.errors import RemoteProtocolError
from torrentgoat.geometry import PieceGeometry
from torrentgoat.primitives import InfoHash
from torrentgoat.wire import codec
from torrentgoat.wire.config import LT_DONTHAVE_ID, UT_HOLEPUNCH_ID, UT_METADATA_ID, UT_PEX_ID, WireConfig
from torrentgoat.wire.events import (
    AllowedFastReceived,
    BitfieldReceived,
    BlockReceived,
    BlockRequested,
    DontHaveReceived,
    ExtensionHandshakeReceived,
    HandshakeReceived,
    HashesReceived,
    HashRejected,
    HashRequested,
    HaveReceived,
    HolepunchReceived,
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
from torrentgoat.wire.framing import NO_EVENT, FrameReceiver, Handled
from torrentgoat.wire.hashes import Hashes, HashReject, HashRequest
from torrentgoat.wire.holepunch import decode_holepunch
from torrentgoat.wire.messages import (
    AllowedFast,
    BitfieldMsg,
    Cancel,
    Choke,
    Extended,
    ExtendedHandshake,
    Handshake,
    Have,
    HaveAll,
    HaveNone,
    Interested,
    MessageId,
    MetadataData,
    MetadataReject,
    MetadataRequest,
    NotInterested,
    Piece,
    Port,
    RejectRequest,
    Request,
    SuggestPiece,
    Unchoke,
    WireMessage,
)
from torrentgoat.wire.opening import PendingOpening
from torrentgoat.wire.pex import decode_pex
from torrentgoat.wire.requests import Key, RequestBook
from torrentgoat.wire.states import FLAGS, Phase, Side, advance

__all__ = ["MessageReceiver"]

_ACTIVE: Final = Phase.ACTIVE
_PIECE_ID: Final = int(MessageId.PIECE)
_PIECE_HEAD: Final = struct.Struct(">IBII")
"""length, message id, index, begin: the head of a ``piece`` frame (BEP 3)."""
_MAX_PIECE_FRAME: Final = 9 + codec.MAX_REQUEST_LENGTH
_MISSING: Final = object()
_FLAG_EVENTS: dict[type, type[PeerChoked | PeerUnchoked | PeerInterested | PeerNotInterested]] = {
    Choke: PeerChoked,
    Unchoke: PeerUnchoked,
    Interested: PeerInterested,
    NotInterested: PeerNotInterested,
}

_REQUEST_ID: Final = 6
"""BEP 3 ``request``."""
_REQUEST_FRAME: Final = struct.Struct(">IBIII")
"""length, message id, index, begin, length: a whole ``request`` frame (BEP 3)."""


class MessageReceiver(FrameReceiver):
    """The receive handlers of :class:`~torrentgoat.wire.connection.PeerConnection` (its base class)."""

    # State owned and initialised by PeerConnection, read and updated here.
    config: WireConfig
    info_hash: InfoHash | None
    upgrade_info_hash: InfoHash | None
    fast: bool
    extensions: bool
    peer_handshake: Handshake | None
    peer_extensions: ExtendedHandshake | None
    peer_ext_ids: dict[str, int]
    hash_messages: bool | None
    peer_have: Bitfield | None
    peer_has_all: bool
    peer_allowed_fast: set[int]
    our_allowed_fast: set[int]
    downloaded: int
    unrequested_bytes: int
    _request_limit: int
    _ours: Side
    _geometry: PieceGeometry | None
    _have: Callable[[], Bitfield | None]
    _requests: RequestBook
    _our_requests: dict[Key, None]
    _late: OrderedDict[Key, int]
    _peer_requests: dict[Key, None]
    _opening: PendingOpening
    _retracted: set[int]

    def _handshakes_done(self) -> None:
        """Both handshakes seen: send our opening (PeerConnection)."""
        raise NotImplementedError

    def _reject(self, index: int, begin: int, length: int) -> None:
        """BEP 6: queue a ``reject request`` (PeerConnection)."""
        raise NotImplementedError

    def _on_handshake(self, handshake: Handshake) -> Handled:
        if handshake.info_hash == self.upgrade_info_hash and self.info_hash is not None:
            self.info_hash = handshake.info_hash  # BEP 52: the peer upgraded our v1 handshake to v2
        elif self.info_hash is not None and handshake.info_hash != self.info_hash:
            raise RemoteProtocolError(
                f"peer handshake for info-hash {handshake.info_hash}, expected {self.info_hash}"
            )
        self.peer_handshake = handshake
        self._received(Handshake)
        self.fast = self.config.enable_fast and handshake.supports_fast
        self.extensions = self.config.enable_extensions and handshake.supports_extensions
        event = HandshakeReceived(handshake=handshake)
        if self.info_hash is None:
            self._awaiting_accept = True
        else:
            self._handshakes_done()
        return event

    def _received(self, kind: type) -> None:
        """The state table for a message of type ``kind`` the peer sent."""
        advance(
            self._theirs,
            kind,
            fast=self.fast,
            extensions=self.extensions,
            error=RemoteProtocolError,
            sender="peer sent",
        )

    def _on_piece(self, index: int, begin: int, data: bytearray | memoryview) -> Handled:
        if self._theirs.phase is not _ACTIVE:
            self._received(Piece)
        key = (index, begin, len(data))
        requests = self._our_requests
        if key in requests:
            del requests[key]
            self.downloaded += len(data)
            if self.batch_blocks and not self._events:  # see BlocksReceived
                self._batch.append((index, begin, data))
                return NO_EVENT
            return BlockReceived(index=index, begin=begin, data=data)
        if self._late and self._requests.take_late(key):
            self.downloaded += len(data)
            return BlockReceived(index=index, begin=begin, data=data, late=True)
        self.unrequested_bytes += len(data)
        return NO_EVENT

    def _take_pieces(self, src: memoryview, pos: int, end: int) -> int:
        # Only requested blocks, as _on_piece's first case; late and unrequested ones, frames of
        # other kinds and malformed lengths stop the loop and take the general path.
        requests = self._our_requests
        append = self._batch.append
        unpack = _PIECE_HEAD.unpack_from
        size = 0
        while end - pos >= 13:
            length, msg_id, index, begin = unpack(src, pos)
            if msg_id != _PIECE_ID or length > _MAX_PIECE_FRAME or length < 10:
                break
            stop = pos + 4 + length
            if stop > end:
                break
            if requests.pop((index, begin, length - 9), _MISSING) is _MISSING:
                break  # not requested (the values are None): the general path decides
            append((index, begin, src[pos + 13 : stop]))
            size += length - 9
            pos = stop
        self.downloaded += size
        return pos

    def _on_request(self, index: int, begin: int, length: int) -> Handled:
        geometry = self._geometry
        have = self._have()
        if geometry is None or have is None or index not in have:
            if self.fast:  # BEP 6: a request for a piece we lack is rejected
                self._reject(index, begin, length)
                return NO_EVENT
            if index in self._retracted:
                return NO_EVENT  # we took it back (BEP 54) and could not tell this peer: not its fault
            raise RemoteProtocolError(f"peer requested piece {index}, which we do not have")
        if not geometry.contains(index, begin, length):
            raise RemoteProtocolError(f"peer requested ({index}, {begin}, {length}) outside the piece")
        key = (index, begin, length)
        requests = self._peer_requests
        if key in requests:
            return NO_EVENT
        if self._ours.choking and not (self.fast and index in self.our_allowed_fast):
            if self.fast:  # BEP 6: a choked peer's requests are rejected explicitly
                self._reject(index, begin, length)
            return NO_EVENT  # BEP 3: a request in flight when we choked is simply dropped
        if len(requests) >= self.config.max_peer_requests:
            if self.fast:
                self._reject(index, begin, length)
                return NO_EVENT
            raise RemoteProtocolError(f"peer has more than {self.config.max_peer_requests} requests queued")
        requests[key] = None
        if self.batch_requests and not self._events:  # see BlocksRequested
            self._rbatch.append(key)
            return NO_EVENT
        return BlockRequested(index=index, begin=begin, length=length)

    def _check_index(self, index: int, what: str) -> None:
        geometry = self._geometry
        if geometry is not None and not 0 <= index < geometry.num_pieces:
            raise RemoteProtocolError(
                f"{what} for piece {index} but the torrent has {geometry.num_pieces} pieces"
            )

    def _more_requests(self, src: bytearray | memoryview, pos: int, end: int) -> tuple[Handled, int]:
        # The rules of _on_request, inlined for the common case (a piece we have, inside it, new,
        # under reqq, the peer unchoked); any other request takes _on_request itself -- every one of
        # them when the inlined rules cannot apply (no metadata yet, we choke, events queued).
        geometry = self._geometry
        have = self._have()
        inline = geometry is not None and have is not None and not self._ours.choking and not self._events
        unpack = _REQUEST_FRAME.unpack_from
        requests = self._peer_requests
        batch = self._rbatch
        cap = self.config.max_peer_requests
        limit = codec.MAX_REQUEST_LENGTH
        piece_length = geometry.piece_length if geometry is not None else 0
        last = geometry.num_pieces - 1 if geometry is not None else -1
        held = -1  # a piece already found in the have-set (requests come piece by piece)
        while end - pos >= 17:
            length, msg_id, index, begin, size = unpack(src, pos)
            if length != 13 or msg_id != _REQUEST_ID:
                break
            if not 0 < size <= limit:
                raise RemoteProtocolError(f"request length {size} outside 1..{limit}")
            pos += 17
            if inline:
                key = (index, begin, size)
                if index != held and 0 <= index < last and index in have:  # type: ignore[operator]
                    held = index
                if (
                    index == held
                    and begin >= 0
                    and begin + size <= piece_length
                    and key not in requests
                    and len(requests) < cap
                ):
                    requests[key] = None
                    batch.append(key)
                    continue
            handled = self._on_request(index, begin, size)  # the last piece, or any exception
            if handled is not NO_EVENT:
                return handled, pos
        return NO_EVENT, pos

    def _on_message(self, message: WireMessage) -> Handled:
        kind = type(message)
        late = self._theirs.phase is _ACTIVE
        self._received(kind)
        if kind in FLAGS:
            return self._on_flag(kind)
        if late and isinstance(message, BitfieldMsg | HaveAll):
            return self._on_late_pieces(message)
        match message:
            case Have(index=index):
                self._check_index(index, "have")
                if self.peer_have is not None:
                    return HaveReceived(index=index) if self.peer_have.add(index) else NO_EVENT
                self._opening.add_have(index, max_haves=self.config.max_buffered_haves)
            case Request(index=index, begin=begin, length=length):
                return self._on_request(index, begin, length)
            case Cancel(index=index, begin=begin, length=length):
                if not self._requests.withdrawn((index, begin, length)):
                    return NO_EVENT  # already served or rejected: a normal race
                if self.fast:  # BEP 6: a cancelled request is answered with a reject
                    self._reject(index, begin, length)
                return RequestCancelled(index=index, begin=begin, length=length)
            case BitfieldMsg(data=data):
                if self._geometry is None:
                    self._opening.add_bitfield(data, max_length=self.config.max_bitfield_length)
                    return NO_EVENT
                bitfield = Bitfield.from_bytes(data, self._geometry.num_pieces)
                self.peer_have = bitfield
                self.peer_has_all = bitfield.complete
                return BitfieldReceived(bitfield=bitfield.copy())
            case HaveAll() | HaveNone():
                self.peer_has_all = kind is HaveAll
                if self._geometry is None:
                    self._opening.opened = True
                    return NO_EVENT
                self.peer_have = Bitfield(self._geometry.num_pieces, full=self.peer_has_all)
                return BitfieldReceived(bitfield=self.peer_have.copy())
            case RejectRequest(index=index, begin=begin, length=length):
                pending = self._requests.rejected((index, begin, length))
                if pending is None:
                    raise RemoteProtocolError(
                        f"peer rejected a request we never sent: {(index, begin, length)}"
                    )
                return RequestRejected(index=index, begin=begin, length=length) if pending else NO_EVENT
            case AllowedFast(index=index):
                self._check_index(index, "allowed fast")
                allowed = self.peer_allowed_fast
                if len(allowed) >= self.config.max_allowed_fast or index in allowed:
                    return NO_EVENT
                allowed.add(index)
                return AllowedFastReceived(index=index)
            case SuggestPiece(index=index):
                self._check_index(index, "suggest piece")
                return PieceSuggested(index=index)
            case Port(port=port):
                return PortReceived(port=port) if port else NO_EVENT
            case Extended(ext_id=ext_id, payload=payload):
                return self._on_extended(ext_id, payload)
            case HashRequest() | Hashes() | HashReject():
                return self._on_hash_message(message)
        return NO_EVENT  # keep-alive; Piece takes the fast path

    def _on_hash_message(self, message: HashRequest | Hashes | HashReject) -> Handled:
        """BEP 52 messages: events on a v2/hybrid torrent, an error on a v1 one, ignored while unknown."""
        if self.hash_messages is None:
            return NO_EVENT
        if not self.hash_messages:
            raise RemoteProtocolError(f"peer sent BEP 52 {type(message).__name__} on a v1 torrent")
        match message:
            case HashRequest():
                return HashRequested(request=message)
            case Hashes():
                return HashesReceived(hashes=message)
            case HashReject():
                return HashRejected(reject=message)

    def _on_flag(self, kind: type) -> Handled:
        """The peer's choke/unchoke/interested/not interested (BEP 3; repeats are no-ops).  Without
        BEP 6 a choke discards our pending requests; with it the peer rejects them one by one."""
        if not self._theirs.changes(kind):
            return NO_EVENT
        self._theirs.set_flag(kind)
        if kind is Choke and not self.fast:
            return PeerChoked(dropped=self._requests.drop_ours())
        return _FLAG_EVENTS[kind]()

    def _on_late_pieces(self, message: BitfieldMsg | HaveAll) -> Handled:
        """A bitfield / have all after the opening (aria2): add its pieces as if they were haves."""
        geometry = self._geometry
        if geometry is None:
            if isinstance(message, HaveAll):
                self.peer_has_all = True
                self._opening.opened = True
            else:
                self._opening.add_bitfield(message.data, max_length=self.config.max_bitfield_length)
            return NO_EVENT
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
        return NO_EVENT

    def _on_extended(self, ext_id: int, payload: bytes) -> Handled:
        """BEP 10: id 0 is the extension handshake; other ids are the ones we announced in ``m``."""
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
            self._request_limit = self.config.request_limit(handshake.reqq)
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
            return NO_EVENT
        if ext_id == UT_PEX_ID and self.config.ut_pex:
            pex = decode_pex(payload)
            return PexReceived(added=pex.added, dropped=pex.dropped)
        if ext_id == LT_DONTHAVE_ID and self.config.lt_donthave:
            return self._on_dont_have(codec.decode_dont_have(payload).index)
        if ext_id == UT_HOLEPUNCH_ID and self.config.ut_holepunch and "ut_holepunch" in self.peer_ext_ids:
            try:
                return HolepunchReceived(message=decode_holepunch(payload))
            except RemoteProtocolError:
                return NO_EVENT
        return NO_EVENT  # an extension we did not offer: ignored (BEP 10)

    def _on_dont_have(self, index: int) -> Handled:
        """BEP 54: the peer takes back piece ``index``."""
        if self._geometry is None:
            return NO_EVENT  # a magnet's opening is still buffered: requests for it will be rejected
        self._check_index(index, "lt_donthave")
        have = self.peer_have
        if have is None or not have.discard(index):
            return NO_EVENT  # it never announced the piece: nothing to take back
        self.peer_has_all = False
        return DontHaveReceived(index=index, dropped=self._requests.drop_piece(index))
