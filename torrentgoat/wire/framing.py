"""Zero-copy framing of the bytes a peer sends (level L2): the receive half of a connection.

BEP 3: a connection starts with a fixed 68-byte handshake; every later message is
``<length: u32 big-endian><id: u8><payload>``, length 0 being a keep-alive.

Received bytes live in two places: ``_buf`` (a bytearray holding at most the frame that straddles
two reads, plus whatever arrived while events were not drained) and ``_chunk``, a memoryview of the
latest immutable ``bytes`` object from the socket, parsed in place.  Blocks parsed from the chunk
are handed out as zero-copy memoryview slices; only the tail frame of each read is copied.  Nothing
is ever sliced off the front of a growing buffer (no O(n^2)).

Frame lengths are checked *before* buffering (fixed-size messages exactly, ``piece`` at most
9 + 128 KiB, the rest against caps from :func:`frame_caps`), so a peer cannot make us hold more than
one frame's worth of bytes.

:class:`FrameReceiver` is the base class of :class:`~torrentgoat.wire.connection.PeerConnection`:
it owns the buffers, :meth:`~FrameReceiver.receive_data` and :meth:`~FrameReceiver.next_event`, and
cuts frames; what a frame *means* is the connection's (the ``_on_*`` hooks).  A base class rather
than a helper object so the two hot frames, ``piece`` and ``request``, stay one call deep from
:meth:`~FrameReceiver.next_event` with no extra indirection per block.
"""

from __future__ import annotations

import enum
import struct
from collections import deque
from typing import Final, Literal

from torrentgoat.errors import RemoteProtocolError
from torrentgoat.wire import codec
from torrentgoat.wire.events import BlocksReceived, BlocksRequested, Event
from torrentgoat.wire.hashes import MAX_HASHES_PAYLOAD
from torrentgoat.wire.messages import PROTOCOL, Buffer, Handshake, KeepAlive, MessageId, Request, WireMessage
from torrentgoat.wire.states import Phase, Side

__all__ = ["FIXED_PAYLOAD", "NO_EVENT", "FrameReceiver", "Handled", "NoEvent", "frame_caps"]


class NoEvent(enum.Enum):
    """A frame was handled and gives the driver nothing to hear about (keep-alive, a repeated
    ``choke``, a piece nobody requested ...)."""

    NO_EVENT = "no event"


NO_EVENT: Final = NoEvent.NO_EVENT
Handled = Event | Literal[NoEvent.NO_EVENT]
"""What a frame handler returns: the event for the driver, or :data:`NO_EVENT`."""

FIXED_PAYLOAD: dict[int, int] = {
    MessageId.CHOKE: 1,
    MessageId.UNCHOKE: 1,
    MessageId.INTERESTED: 1,
    MessageId.NOT_INTERESTED: 1,
    MessageId.HAVE: 5,
    MessageId.REQUEST: 13,
    MessageId.CANCEL: 13,
    MessageId.PORT: 3,
    MessageId.SUGGEST_PIECE: 5,
    MessageId.HAVE_ALL: 1,
    MessageId.HAVE_NONE: 1,
    MessageId.REJECT_REQUEST: 13,
    MessageId.ALLOWED_FAST: 5,
    MessageId.HASH_REQUEST: 49,
    MessageId.HASH_REJECT: 49,
}
"""Exact frame length (id byte + payload) of the fixed-size messages (BEP 3, BEP 5, BEP 6, BEP 52)."""

# Enum attribute lookups are slow on Python 3.11: the hot path compares with these module constants.
_PIECE: Final = MessageId.PIECE
_ACTIVE: Final = Phase.ACTIVE
_HANDSHAKE: Final = Phase.HANDSHAKE
_REQUEST: Final = MessageId.REQUEST
_MAX_PIECE_FRAME: Final = 9 + codec.MAX_REQUEST_LENGTH
_U32 = struct.Struct(">I")
_II = struct.Struct(">II")
_III = struct.Struct(">III")
_HANDSHAKE_PREFIX = bytes([len(PROTOCOL)]) + PROTOCOL


def frame_caps(
    num_pieces: int | None, *, max_bitfield_length: int, max_extended_length: int
) -> dict[int, int]:
    """Largest frame (id byte + payload) accepted per message id, checked before buffering: a
    ``bitfield`` is exactly ``ceil(num_pieces / 8)`` bytes once the piece count is known (BEP 3)."""
    caps = dict(FIXED_PAYLOAD)
    caps[MessageId.PIECE] = _MAX_PIECE_FRAME
    if num_pieces is not None:
        caps[MessageId.BITFIELD] = 1 + (num_pieces + 7) // 8
    else:
        caps[MessageId.BITFIELD] = 1 + max_bitfield_length
    caps[MessageId.EXTENDED] = 1 + max_extended_length
    caps[MessageId.HASHES] = 1 + MAX_HASHES_PAYLOAD
    return caps


class FrameReceiver:
    """Bytes in, frames cut and handed to the ``_on_*`` hooks, events out (see the module docstring)."""

    # Set by the subclass: the peer's side of the state table, and whether parsing waits for accept().
    _theirs: Side
    _awaiting_accept: bool

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pos = 0
        self._chunk: memoryview | None = None
        self._cpos = 0
        self._need = 0
        """Bytes known to belong to the partial frame in ``_buf`` (0 = unknown); small reads go
        straight into ``_buf``."""
        self._events: deque[Event] = deque()
        self.batch_blocks = False
        """Deliver runs of requested blocks as one :class:`BlocksReceived` (see there)."""
        self.batch_requests = False
        """Deliver runs of the peer's requests as one :class:`BlocksRequested` (see there)."""
        self._batch: list[tuple[int, int, Buffer]] = []
        self._rbatch: list[tuple[int, int, int]] = []
        self._error: RemoteProtocolError | None = None
        self._received_since_tick = False
        self._caps: dict[int, int] = {}
        """Frame caps per message id (:func:`frame_caps`), set by the subclass ..."""
        self._unknown_cap = 0
        """... and the cap of a frame with an id we do not know (such frames are skipped)."""

    # --- hooks: what a frame means (MessageReceiver) -----------------------------------------------

    def _on_handshake(self, handshake: Handshake) -> Handled:
        raise NotImplementedError

    def _received(self, kind: type) -> None:
        """Check a message of type ``kind`` from the peer against the state table."""
        raise NotImplementedError

    def _on_piece(self, index: int, begin: int, data: bytearray | memoryview) -> Handled:
        raise NotImplementedError

    def _on_request(self, index: int, begin: int, length: int) -> Handled:
        raise NotImplementedError

    def _take_pieces(self, src: memoryview, pos: int, end: int) -> int:
        """Batch the complete ``piece`` frames of ``src[pos:end]`` that answer our requests, back to
        back, in one loop (the download hot path with :attr:`batch_blocks`); returns where it stopped:
        at the first frame that is anything else (left to :meth:`_parse_frame`)."""
        return pos

    def _on_message(self, message: WireMessage) -> Handled:
        raise NotImplementedError

    # --- input --------------------------------------------------------------------------------------

    @property
    def receive_buffer_size(self) -> int:
        """Bytes received but not yet parsed (for driver back-pressure: stop reading when large)."""
        pending = len(self._buf) - self._pos
        if self._chunk is not None:
            pending += len(self._chunk) - self._cpos
        return pending

    def receive_data(self, data: Buffer, *, borrowed: bool = False) -> None:
        """Take bytes from the socket; they are parsed lazily by :meth:`next_event`.

        ``bytes`` input is kept by reference (blocks are sliced out of it without a copy); mutable
        buffers (bytearray, memoryview) are copied, since the caller may reuse them -- unless
        ``borrowed``: then ``data`` is parsed in place too, and the caller drains the events and
        calls :meth:`release_borrowed` before it writes into that buffer again (a driver reading
        with ``recv_into``: :class:`~torrentgoat.aio.peer.PeerDriver`).
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
        if type(data) is not bytes and not borrowed:
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

    def release_borrowed(self) -> None:
        """The buffer of the last ``receive_data(..., borrowed=True)`` is about to be reused: copy
        the bytes of it not parsed yet (a frame cut by the end of the read, events not drained)."""
        chunk = self._chunk
        if chunk is not None:
            self._buf += chunk[self._cpos :]
            self._chunk = None
            self._need = 0

    def _missing(self) -> int:
        """Bytes still missing for the first buffered frame (or its length prefix) to be complete."""
        avail = len(self._buf) - self._pos
        if self._theirs.phase is _HANDSHAKE:
            return codec.HANDSHAKE_LENGTH - avail
        if avail < 4:
            return 4 - avail
        length: int = _U32.unpack_from(self._buf, self._pos)[0]
        return 4 + length - avail

    def next_event(self) -> Event | None:
        """The next event, or ``None`` when more data is needed.

        Raises :class:`RemoteProtocolError` when the peer broke the protocol (and again on every
        later call): the driver drops the connection.  With :attr:`batch_blocks` /
        :attr:`batch_requests`, the blocks and requests parsed before an event (or before the data ran
        out, or before a protocol error) come first, as one :class:`BlocksReceived` and one
        :class:`BlocksRequested`.
        """
        event = self._next_event()
        if not self._batch and not self._rbatch:
            return event
        events = self._events
        if event is not None:
            events.appendleft(event)  # it was parsed after the batched blocks and requests
        if self._rbatch:
            requests, self._rbatch = self._rbatch, []
            if not self._batch:
                return BlocksRequested(requests=requests)
            events.appendleft(BlocksRequested(requests=requests))
        batch, self._batch = self._batch, []
        return BlocksReceived(blocks=batch)

    def _next_event(self) -> Event | None:
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
                    if self.batch_blocks and self._theirs.phase is _ACTIVE and not self._awaiting_accept:
                        self._cpos = self._take_pieces(chunk, self._cpos, len(chunk))
                        if self._cpos == len(chunk):
                            self._chunk = None
                            continue
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
                if result is not NO_EVENT:
                    return result
                if self._events:
                    return self._events.popleft()
        except RemoteProtocolError as exc:
            self._error = exc
            if self._batch or self._rbatch:
                return None  # what came before the violation first; the next call raises
            raise

    def _parse_frame(self, src: bytearray | memoryview, pos: int, end: int) -> tuple[Handled | None, int]:
        """Parse one frame of ``src[pos:end]``: (event | :data:`NO_EVENT` | ``None`` = need more, new pos)."""
        avail = end - pos
        if self._theirs.phase is _HANDSHAKE:
            return self._parse_handshake(src, pos, avail)
        if self._awaiting_accept or avail < 4:
            return None, pos
        length = _U32.unpack_from(src, pos)[0]
        if length == 0:
            self._received(KeepAlive)
            return NO_EVENT, pos + 4
        if avail < 5:
            return None, pos
        msg_id = src[pos + 4]
        if msg_id == _PIECE:  # the download hot path
            if length > _MAX_PIECE_FRAME or length < 10:
                raise RemoteProtocolError(f"piece message of {length} bytes")
            stop = pos + 4 + length
            if end < stop:
                return None, pos
            index, begin = _II.unpack_from(src, pos + 5)
            return self._on_piece(index, begin, src[pos + 13 : stop]), stop
        if msg_id == _REQUEST and length == 13:  # the seeding hot path
            stop = pos + 17
            if end < stop:
                return None, pos
            index, begin, size = _III.unpack_from(src, pos + 5)
            if not 0 < size <= codec.MAX_REQUEST_LENGTH:
                raise RemoteProtocolError(f"request length {size} outside 1..{codec.MAX_REQUEST_LENGTH}")
            if self._theirs.phase is not _ACTIVE:
                self._received(Request)
            handled = self._on_request(index, begin, size)
            if handled is NO_EVENT and self.batch_requests:  # batched: the requests after it in one loop
                return self._more_requests(src, stop, end)
            return handled, stop
        cap = self._caps.get(msg_id, self._unknown_cap)
        if msg_id in FIXED_PAYLOAD and length != cap:
            raise RemoteProtocolError(f"message id {msg_id} with length {length} (must be {cap})")
        if length > cap:
            raise RemoteProtocolError(f"message id {msg_id} of {length} bytes exceeds the limit of {cap}")
        stop = pos + 4 + length
        if end < stop:
            return None, pos
        message = codec.decode_message(msg_id, src[pos + 5 : stop])
        if message is None:
            return NO_EVENT, stop  # unknown id: skipped (see codec.decode_message)
        return self._on_message(message), stop

    def _more_requests(self, src: bytearray | memoryview, pos: int, end: int) -> tuple[Handled, int]:
        """The complete ``request`` frames right after a batched one, in one loop (the seeding hot
        path: a peer's requests arrive back to back); stops at any other frame, or at a request that
        produced an event, and returns it with the position after it."""
        return NO_EVENT, pos

    def _parse_handshake(
        self, src: bytearray | memoryview, pos: int, avail: int
    ) -> tuple[Handled | None, int]:
        if avail < codec.HANDSHAKE_LENGTH:
            # Fail early on a wrong protocol string (e.g. an encrypted handshake, BEP 8 / MSE).
            head = bytes(src[pos : pos + min(avail, 20)])
            if head != _HANDSHAKE_PREFIX[: len(head)]:
                raise RemoteProtocolError(f"not a BitTorrent handshake (starts with {head!r})")
            return None, pos
        handshake = codec.decode_handshake(src[pos : pos + codec.HANDSHAKE_LENGTH])
        return self._on_handshake(handshake), pos + codec.HANDSHAKE_LENGTH
