"""Peer wire protocol, sans-IO (level L2): BEP 3 framing, BEP 5 port, BEP 6 Fast, BEP 10
extensions, BEP 9 ``ut_metadata``, BEP 11 ``ut_pex``, BEP 54 ``lt_donthave``, BEP 55 ``ut_holepunch``.

Modules: :mod:`.messages` (one frozen dataclass per message, :class:`MessageId`), :mod:`.codec`
(bytes <-> messages), :mod:`.events` (past-tense notifications), :mod:`.config` (:class:`WireConfig`),
:mod:`.connection` (:class:`PeerConnection`: state, handshakes, what we send, timers), built from
:mod:`.states` (the transition table, one check for both directions), :mod:`.framing` (zero-copy
receive buffer and frame parser), :mod:`.receive` (what each received message means),
:mod:`.requests` (request bookkeeping) and :mod:`.opening` (a peer's opening held while a magnet's
metadata is unknown); :mod:`.metadata` (BEP 9 fetch/serve), :mod:`.pex` (BEP 11 codec and delta
tracker), :mod:`.holepunch` (BEP 55 codec, the relay's rule, the initiator's memory), :mod:`.fast`
(BEP 6 allowed-fast set).  Piece arithmetic is
:class:`torrentgoat.geometry.PieceGeometry` (re-exported here).  Nothing here touches a socket or a
clock.

Driving a :class:`PeerConnection` (what ``aio/peer.py`` does)
----------------------------------------------------------------

Create one engine per TCP connection::

    conn = PeerConnection(peer_id=our_id, now=loop.time(),
                          info_hash=ih,              # outgoing (or known torrent): handshake goes out now
                          have=our_bitfield,         # Bitfield (live reference) or a callable returning it
                          geometry=info.geometry,    # a PieceGeometry; None (with have=None) for magnets
                          metadata_size=len(info.raw),              # advertised in BEP 10 when known
                          listen_port=6881, peer_ip=packed_remote_ip, config=WireConfig(...))

An incoming connection passes ``info_hash=None``; the first event is then
:class:`HandshakeReceived`, after which the driver looks the torrent up and calls
``conn.accept(info_hash=..., have=..., geometry=..., metadata_size=..., config=...)`` (or closes
the socket); ``config`` may switch per torrent (``ut_pex=False`` for private torrents, BEP 27).
Nothing beyond the handshake is parsed before ``accept``.  ``conn.peer_ip`` (packed 4/16 bytes,
sent as ``yourip``) and ``conn.listen_port`` are plain attributes the driver may set until then.
The engine does not refuse a connection to ourselves: compare ``handshake.peer_id`` if needed.

The loop (aioquic vocabulary)::

    conn.receive_data(chunk)                    # never raises; parsing is lazy; bytes kept by reference
    while (event := conn.next_event()) is not None:   # raises RemoteProtocolError: drop the peer
        match event: ...                        # may call conn.send(...), conn.send_piece(...)
    transport.writelines(conn.buffers_to_send())  # or transport.write(conn.data_to_send())
    timer at conn.get_timer() -> conn.handle_timer(loop.time()), then drain events and output again

* Once both handshakes are through, the engine itself queues our opening message (``have all`` /
  ``have none`` with BEP 6, else a ``bitfield`` unless we have nothing) and our BEP 10 handshake
  (``m = {"ut_metadata": 1, "ut_pex": 2, "ut_holepunch": 4, "lt_donthave": 7}``, ``p``, ``v``, ``yourip``, ``reqq``,
  ``metadata_size``).
  ``send()`` before the peer's handshake raises :class:`LocalProtocolError`.
* ``send(message)`` checks the transition table and the request bookkeeping and raises
  :class:`LocalProtocolError` for what is forbidden: requests while choked (unless allowed-fast),
  beyond :attr:`PeerConnection.request_limit` (the peer's ``reqq``), duplicates, out of piece
  bounds, for pieces the peer lacks; fast messages without BEP 6; extension messages the peer did
  not announce.  ``Choke``/``Unchoke``/``Interested``/``NotInterested`` are idempotent.  Choking
  with BEP 6 rejects the peer's pending requests (except allowed-fast ones); without it they are
  discarded.  ``send(Cancel)`` of an already answered request is a no-op.  ``send(MetadataRequest
  | MetadataData | MetadataReject | Pex | DontHave | Holepunch | ExtendedHandshake)`` wraps the payload
  with the peer's id.  ``retract(index)`` takes back a piece that left our have-set (BEP 54: ``lt_donthave``
  when the peer offered it, its pending requests for the piece withdrawn and, with BEP 6, rejected).
* Receive path: ``bytes`` reads are parsed in place and :class:`BlockReceived` ``data`` is a
  zero-copy memoryview slice of the read (a ``bytearray`` when a block straddles two reads, or
  when the read was a mutable buffer):
  copy it into the piece buffer at once.  Only the frame straddling two reads is copied.
* ``send_piece(index, begin, data) -> bool`` answers a pending :class:`BlockRequested`; ``data``
  (bytes/memoryview) is queued by reference, so ``buffers_to_send()`` hands it to
  ``writelines`` without a copy.  ``False`` means the request was cancelled meanwhile.
* ``have`` is read (never written) by the engine to validate the peer's requests; after a piece
  verifies, the driver sets the bit in its Bitfield and ``send(Have(index=i))``.
* ``receive_buffer_size`` is how many received bytes are not parsed yet: frames are capped, but
  a driver that feeds data without draining events (or before ``accept``) should pause reading.
* Allowed-fast (BEP 6): :func:`allowed_fast_set` gives the canonical set for a peer's IPv4
  address; ``send(AllowedFast(index=i))`` lets that peer request piece ``i`` while choked.
* Magnets: create with ``geometry=None, have=None``; the peer's bitfield / have all / haves are
  buffered (bounded) and validated by ``set_metadata(geometry, have)``, which emits
  :class:`BitfieldReceived` (may raise :class:`RemoteProtocolError`).  ``peer_has_all`` is known
  before that.  Our opening message already went out (``have none`` with BEP 6): announce pieces
  found later (resume data) with ``send(Have(...))``.
* BEP 9: feed :class:`MetadataFetcher` from :class:`ExtensionHandshakeReceived`
  (``handshake.metadata_size``) and :class:`MetadataPieceReceived`; answer
  :class:`MetadataRequested` with ``conn.send(MetadataServer(raw_info).respond(piece))``.
  BEP 11: one :class:`PexState` per connection, ``next_message(current_peers, now)`` -> ``send``.
* Timers: ``get_timer()`` is the next deadline; ``handle_timer(now)`` queues a keep-alive when we
  sent nothing for a whole ``keepalive_interval`` and emits :class:`ConnectionTimedOut` when the
  handshake is late or the peer was silent for ``idle_timeout``: close the connection then.

State exposed read-only: ``am_choking``, ``am_interested``, ``peer_choking``, ``peer_interested``,
``peer_have`` (Bitfield or None), ``peer_has_all``, ``peer_allowed_fast``, ``fast``,
``extensions``, ``peer_handshake``, ``peer_extensions``, ``peer_ext_ids``, ``outstanding_requests``,
``peer_requests``, ``request_limit``, ``can_request(index)``, ``downloaded``, ``uploaded``,
``handshake_complete``, ``our_phase``/``their_phase``.

Receive rules (each violation raises :class:`RemoteProtocolError` from ``next_event``):

* frame lengths are checked *before* buffering: fixed-size messages exact, ``piece`` at most
  9 + 128 KiB, ``bitfield`` exactly ``ceil(num_pieces / 8)`` (<= 1 MiB while unknown),
  ``extended`` <= 1 MiB, unknown ids <= 128 KiB;
* unknown message ids are **skipped** (BEP 3 leaves the id space open; BEP 10 extensions rely on
  peers ignoring what they do not understand) -- the size cap above bounds the cost;
* ``bitfield``/``have all``/``have none`` only as the first message (BEP 6; ``keep-alive``,
  ``extended`` and ``port`` may precede it), fast messages only with BEP 6 negotiated,
  ``extended`` only with BEP 10 negotiated.  A peer that sends no opening message at all is
  tolerated (it has nothing), even with BEP 6;
* indices in range, requests inside their piece and <= 128 KiB, spare bitfield bits clear;
* a request for a piece we lack: error without BEP 6, automatic ``reject request`` with it; while
  we choke: silently dropped (BEP 3) or rejected (BEP 6); more than ``max_peer_requests`` queued:
  error (BEP 6: reject);
* ``reject request`` for a request we never sent: error;  a ``piece`` we did not request is
  ignored (counted in ``unrequested_bytes``); one we cancelled arrives as ``BlockReceived(late=True)``;
* a ``cancel`` with BEP 6 is answered by the engine with a ``reject request`` (BEP 6).

Events: :class:`HandshakeReceived`, :class:`ExtensionHandshakeReceived`, :class:`BitfieldReceived`,
:class:`HaveReceived`, :class:`PeerChoked` (``dropped`` requests without BEP 6),
:class:`PeerUnchoked`, :class:`PeerInterested`, :class:`PeerNotInterested`,
:class:`BlockReceived`, :class:`BlockRequested`, :class:`RequestCancelled`,
:class:`RequestRejected`, :class:`AllowedFastReceived`, :class:`PieceSuggested`,
:class:`PortReceived`, :class:`MetadataRequested`, :class:`MetadataPieceReceived`,
:class:`MetadataRejected`, :class:`PexReceived`, :class:`DontHaveReceived` (BEP 54),
:class:`HolepunchReceived` (BEP 55),
:class:`ConnectionTimedOut`.
"""

from __future__ import annotations

from torrentgoat.wire.connection import (
    CLIENT_VERSION,
    LT_DONTHAVE_ID,
    UT_HOLEPUNCH_ID,
    UT_METADATA_ID,
    UT_PEX_ID,
    PeerConnection,
    PieceGeometry,
    WireConfig,
)
from torrentgoat.wire.events import (
    AllowedFastReceived,
    BitfieldReceived,
    BlockReceived,
    BlockRequested,
    BlocksReceived,
    BlocksRequested,
    ConnectionTimedOut,
    DontHaveReceived,
    Event,
    ExtensionHandshakeReceived,
    HandshakeReceived,
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
from torrentgoat.wire.fast import allowed_fast_set
from torrentgoat.wire.messages import (
    AllowedFast,
    BitfieldMsg,
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
    HolepunchErrorCode,
    HolepunchType,
    Interested,
    KeepAlive,
    Message,
    MessageId,
    MetadataData,
    MetadataReject,
    MetadataRequest,
    NotInterested,
    Pex,
    PexPeer,
    Piece,
    Port,
    RejectRequest,
    Request,
    SuggestPiece,
    Unchoke,
)
from torrentgoat.wire.metadata import MetadataFetcher, MetadataServer
from torrentgoat.wire.pex import PexState

__all__ = [
    "CLIENT_VERSION",
    "LT_DONTHAVE_ID",
    "UT_HOLEPUNCH_ID",
    "UT_METADATA_ID",
    "UT_PEX_ID",
    "AllowedFast",
    "AllowedFastReceived",
    "BitfieldMsg",
    "BitfieldReceived",
    "BlockReceived",
    "BlockRequested",
    "BlocksReceived",
    "BlocksRequested",
    "Cancel",
    "Choke",
    "ConnectionTimedOut",
    "DontHave",
    "DontHaveReceived",
    "Event",
    "Extended",
    "ExtendedHandshake",
    "ExtensionHandshakeReceived",
    "Handshake",
    "HandshakeReceived",
    "Have",
    "HaveAll",
    "HaveNone",
    "HaveReceived",
    "Holepunch",
    "HolepunchErrorCode",
    "HolepunchReceived",
    "HolepunchType",
    "Interested",
    "KeepAlive",
    "Message",
    "MessageId",
    "MetadataData",
    "MetadataFetcher",
    "MetadataPieceReceived",
    "MetadataReject",
    "MetadataRejected",
    "MetadataRequest",
    "MetadataRequested",
    "MetadataServer",
    "NotInterested",
    "PeerChoked",
    "PeerConnection",
    "PeerInterested",
    "PeerNotInterested",
    "PeerUnchoked",
    "Pex",
    "PexPeer",
    "PexReceived",
    "PexState",
    "Piece",
    "PieceGeometry",
    "PieceSuggested",
    "Port",
    "PortReceived",
    "RejectRequest",
    "Request",
    "RequestCancelled",
    "RequestRejected",
    "SuggestPiece",
    "Unchoke",
    "WireConfig",
    "allowed_fast_set",
]
