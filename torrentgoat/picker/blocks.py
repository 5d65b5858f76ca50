"""Blocks of the started pieces and what became of our requests (level L2, pure).

:class:`BlockBook` sits between :class:`~torrentgoat.picker.availability.AvailabilityIndex` (who has
what, the candidate pieces) and :class:`~torrentgoat.picker.PiecePicker` (construction, priorities, our
have-set, :meth:`~torrentgoat.picker.PiecePicker.pick`).  It owns the per-block state of *partial*
pieces and every request in flight, per peer and per block:

* taking the free blocks of a started piece for a peer (:meth:`BlockBook._take`): a block is
  requested from one peer at a time;
* *endgame* (:meth:`BlockBook._pick_endgame`): once every missing block is in flight, in-flight blocks
  are requested again from up to ``endgame_max_requesters`` peers, those with the fewest requesters and
  the oldest requests first (Cohen, "Incentives Build Robustness in BitTorrent" (2003), section 2 "Piece
  selection", "Endgame Mode"; theory.org "End game"); when one copy arrives
  :meth:`BlockBook.block_received` names the other requesters, to be sent BEP 3 ``cancel`` ("mostly
  used during the end of a download");
* request outcomes: a ``piece`` message (:meth:`BlockBook.block_received`, checked against the
  piece/block grid), our ``cancel``, a BEP 6 ``reject request``, a choke (BEP 3: the choking side
  discards pending requests), a timeout or a *snubbed* peer (libtorrent's term: nothing received for too
  long) -- each gives the peer's blocks back to be picked from others;
* who delivered each block (:meth:`BlockBook.contributors`), so a piece that fails its hash check can be
  blamed on the right peers (libtorrent's smart ban);
* *held* pieces (:meth:`BlockBook.hold`): wanted pieces whose blocks are *reserved* -- never requested
  -- while local data is matched against them (a block-level update: blocks of the previous version
  that the new one still holds).  :meth:`BlockBook.unreserve` hands reserved blocks to the network, and a
  block supplied locally arrives like any other (:meth:`BlockBook.block_received` with the local key), so
  the whole piece is still hashed before it counts.  Held pieces do not take partial slots: the cap
  bounds piece buffers, and a held piece has none until a block arrives.

Memory stays bounded whatever the file size: per-block state exists only for partial pieces, and at
most ``PickerConfig.partial_cap(piece_length)`` pieces are partial at once.  A base class rather than a
helper object so that ``pick`` and ``block_received`` reach the block state in one call.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence, Sized
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from torrentgoat.bitfield import Bitfield
from torrentgoat.errors import RemoteProtocolError
from torrentgoat.geometry import PieceGeometry
from torrentgoat.picker.availability import AvailabilityIndex, PeerKey
from torrentgoat.picker.config import PickerConfig
from torrentgoat.primitives import BLOCK_SIZE, BlockRef

__all__ = ["BlockArrival", "BlockBook", "BlocksArrival"]

_FREE = 0
_REQUESTED = 1
_RECEIVED = 2
_RESERVED = 3

_NOT_FREE = (_REQUESTED, _RECEIVED, _RESERVED)
_REQUESTED_BYTE = bytes([_REQUESTED])
_RECEIVED_BYTE = bytes([_RECEIVED])

_B = TypeVar("_B", bound=Sized)
_BLOCK_SHIFT = BLOCK_SIZE.bit_length() - 1
_BLOCK_MASK = BLOCK_SIZE - 1
assert 1 << _BLOCK_SHIFT == BLOCK_SIZE  # a power of two: shifts and masks on the hot path


@dataclass(frozen=True, slots=True, kw_only=True)
class BlockArrival:
    """What :meth:`PiecePicker.block_received` learned.  Truthy when the block was new."""

    new: bool
    """First arrival of this block: the driver stores its bytes.  False for duplicates (endgame races)
    and for blocks of pieces we already have or never wanted: the driver drops the bytes."""

    cancel: tuple[PeerKey, ...] = ()
    """Other peers that still had this block requested (endgame): send them ``cancel`` (BEP 3)."""

    piece_complete: bool = False
    """Every block of the piece is now received: hash it, then call ``piece_verified`` or ``piece_failed``."""

    def __bool__(self) -> bool:
        return self.new


@dataclass(slots=True, kw_only=True)
class BlocksArrival(Generic[_B]):
    """What :meth:`PiecePicker.blocks_received` learned of a run of blocks from one peer."""

    new: list[tuple[int, int, _B]]
    """The blocks that arrived first (store their bytes), as given, in order; the rest were
    duplicates or blocks of pieces we have or do not want (their bytes are waste)."""

    complete: list[int]
    """Pieces whose every block is now received: hash them (in this order)."""

    cancel: list[tuple[PeerKey, BlockRef]]
    """Other peers that still had one of these blocks requested (endgame): send them ``cancel``."""

    size: int = 0
    """Bytes of the blocks looked at (all of them, or those before :attr:`error`)."""

    new_size: int = 0
    """Bytes of :attr:`new`."""

    error: RemoteProtocolError | None = None
    """A block off the piece/block grid stopped the run there (the blocks before it count): raise it
    once the others are stored."""


_OLD = BlockArrival(new=False)
_NEW = BlockArrival(new=True)
_NEW_COMPLETE = BlockArrival(new=True, piece_complete=True)


class _Partial:
    """Per-block state of one started piece: one slot per block in each list, so that a run of
    consecutive blocks is taken or received with slice operations (the download hot path)."""

    __slots__ = (
        "extra",
        "free",
        "hint",
        "known",
        "nblocks",
        "owner",
        "received",
        "received_from",
        "requested_at",
        "reserved",
        "size",
        "state",
    )

    def __init__(self, size: int) -> None:
        self.size = size
        n = self.nblocks = -(-size // BLOCK_SIZE)
        self.state = bytearray(n)
        self.free = n
        self.received = 0
        self.owner: list[PeerKey | None] = [None] * n
        """The first peer a requested block is requested from (``None``: not requested)."""
        self.extra: dict[int, list[PeerKey]] = {}
        """Endgame: the further peers a requested block is requested from."""
        self.requested_at: list[float] = [0.0] * n
        """When each requested block was first requested (meaningless for the others)."""
        self.received_from: list[PeerKey | None] = [None] * n
        self.hint = 0
        self.reserved = 0
        """Blocks held back from requests (:meth:`BlockBook.hold`)."""
        self.known = 0
        """Blocks known without a download (BEP 47 pad bytes), counted as received from the start."""

    @property
    def requested(self) -> int:
        """Blocks in flight (requested from at least one peer)."""
        return self.nblocks - self.free - self.received - self.reserved

    def requesters(self, b: int) -> list[PeerKey]:
        """The peers block ``b`` is requested from, first requester first."""
        first = self.owner[b]
        if first is None:
            return []
        more = self.extra.get(b)
        return [first, *more] if more else [first]


class BlockBook(AvailabilityIndex):
    """Per-block state of partial pieces and requests in flight; see the module docstring.  Base class
    of :class:`~torrentgoat.picker.PiecePicker`."""

    # Set by the subclass.
    _config: PickerConfig

    def __init__(self, layout: PieceGeometry, partial_cap: int) -> None:
        n = layout.num_pieces
        super().__init__(n)
        self._layout = layout
        self._cap = partial_cap
        """At most this many pieces are partial at once (``PickerConfig.partial_cap``)."""
        self._partials: dict[int, _Partial] = {}
        self._held: set[int] = set()
        """Partial pieces with reserved blocks: they take no partial slot."""
        self._known: dict[int, tuple[int, ...]] = {}
        """Blocks known without a download, per piece (:meth:`set_known_blocks`)."""
        self._open: set[int] = set()
        """Started pieces with a free block."""
        # requests in flight per peer, as block ids: piece * blocks-per-piece + block index
        self._peer_reqs: dict[PeerKey, set[int]] = {}
        self._bpp = -(-layout.piece_length // BLOCK_SIZE)
        self._plen = layout.piece_length
        self._last_size = layout.piece_size(n - 1) if n else 0

    # ------------------------------------------------------------------ read-only view

    @property
    def partial_pieces(self) -> list[int]:
        """Started pieces (including those complete and awaiting their hash check), ascending."""
        return sorted(self._partials)

    @property
    def partial_cap(self) -> int:
        return self._cap

    @property
    def held_pieces(self) -> list[int]:
        """Pieces with blocks held back from requests (:meth:`hold`), ascending."""
        return sorted(self._held)

    def is_held(self, index: int) -> bool:
        """Piece ``index`` has blocks held back from requests."""
        return index in self._held

    def _busy(self) -> int:
        """Partial slots taken (held pieces take none)."""
        return len(self._partials) - len(self._held)

    def block_state(self, index: int, b: int) -> str:
        """``have``, ``received``, ``requested``, ``reserved`` or ``free`` for block ``b`` of piece ``index``."""
        if index in self._have:
            return "have"
        part = self._partials.get(index)
        if part is None:
            return "free"
        return ("free", "requested", "received", "reserved")[part.state[b]]

    def piece_complete(self, index: int) -> bool:
        """All blocks of started piece ``index`` received: ready to hash."""
        part = self._partials.get(index)
        return part is not None and part.received == part.nblocks

    def outstanding(self, peer_key: PeerKey) -> frozenset[BlockRef]:
        """Blocks currently requested from ``peer_key`` according to the picker."""
        return frozenset(self._ref(bid) for bid in self._peer_reqs.get(peer_key, ()))

    def _size(self, index: int) -> int:
        return self._last_size if index == self._n - 1 else self._plen

    def _ref(self, bid: int) -> BlockRef:
        index, b = divmod(bid, self._bpp)
        begin = b * BLOCK_SIZE
        return BlockRef(index, begin, min(BLOCK_SIZE, self._size(index) - begin))

    def requesters(self, block: BlockRef) -> frozenset[PeerKey]:
        part = self._partials.get(block.piece)
        if part is None:
            return frozenset()
        b = block.begin // BLOCK_SIZE
        return frozenset(part.requesters(b)) if 0 <= b < part.nblocks else frozenset()

    def block_received_already(self, block: BlockRef) -> bool:
        if block.piece in self._have:
            return True
        part = self._partials.get(block.piece)
        return part is not None and part.state[block.begin // BLOCK_SIZE] == _RECEIVED

    def contributors(self, index: int) -> dict[int, PeerKey]:
        """Block index -> peer that delivered it, for started piece ``index`` (for smart banning)."""
        part = self._partials.get(index)
        if part is None:
            return {}
        return {b: key for b, key in enumerate(part.received_from) if key is not None}

    # ------------------------------------------------------------------ partial pieces

    def set_known_blocks(self, known: Mapping[int, Sequence[int]]) -> None:
        """Blocks (piece -> block numbers) whose bytes are known without a download -- BEP 47 pad files,
        zeros -- so they are never requested: they count as received when their piece starts, and the
        driver supplies their bytes before hashing."""
        self._known = {i: tuple(blocks) for i, blocks in known.items() if blocks}

    def _new_partial(self, index: int) -> _Partial:
        part = self._partials[index] = _Partial(self._layout.piece_size(index))
        known = self._known.get(index)
        if known:
            state = part.state
            for b in known:
                state[b] = _RECEIVED
            part.known = part.received = len(known)
            part.free -= len(known)
            part.hint = state.find(_FREE)
            if part.hint < 0:
                part.hint = part.nblocks
        return part

    def _start(self, index: int) -> _Partial:
        part = self._new_partial(index)
        if part.free:
            self._open.add(index)
        self._sync(index)
        return part

    def _drop_partial(self, index: int) -> None:
        part = self._partials.pop(index, None)
        if part is None:
            return
        self._open.discard(index)
        self._held.discard(index)
        base = index * self._bpp
        for b, first in enumerate(part.owner):
            if first is None:
                continue
            for k in part.requesters(b):
                reqs = self._peer_reqs.get(k)
                if reqs is not None:
                    reqs.discard(base + b)

    def hold(self, index: int) -> bool:
        """Reserve every block of piece ``index`` not received nor in flight: none is requested until
        :meth:`unreserve`.  False (nothing held) for a piece we have or do not want."""
        if not 0 <= index < self._n or index in self._have or not self._prio[index]:
            return False
        part = self._partials.get(index)
        if part is None:
            part = self._new_partial(index)
        state = part.state
        for b in range(part.nblocks):
            if state[b] == _FREE:
                state[b] = _RESERVED
                part.reserved += 1
                part.free -= 1
        if part.reserved:
            self._held.add(index)
        if not part.free:
            self._open.discard(index)
        self._sync(index)
        return bool(part.reserved)

    def unreserve(self, index: int, blocks: Iterable[int] | None = None) -> int:
        """Reserved blocks of piece ``index`` (all when ``None``) may be requested again; returns how many."""
        part = self._partials.get(index)
        if part is None or not part.reserved:
            return 0
        state = part.state
        freed = 0
        for b in range(part.nblocks) if blocks is None else blocks:
            if 0 <= b < part.nblocks and state[b] == _RESERVED:
                state[b] = _FREE
                part.reserved -= 1
                part.free += 1
                part.hint = min(part.hint, b)
                freed += 1
        if not part.reserved:
            self._held.discard(index)
        if part.free:
            self._open.add(index)
        if part.received == part.known and not part.requested and not part.reserved:
            self._drop_partial(index)  # nothing invested: an ordinary piece again
            self._sync(index)
        return freed

    # ------------------------------------------------------------------ taking blocks (from pick)

    def _take(
        self,
        index: int,
        part: _Partial,
        peer_key: PeerKey,
        reqs: set[int],
        out: list[Any],
        count: int,
        now: float,
        spans: bool = False,
    ) -> None:
        """Take free blocks of ``part`` for the peer into ``out``: as :class:`BlockRef` s, or with
        ``spans`` as ``(index, begin, length)`` tuples (cheaper: the download hot path).  Each run of
        consecutive free blocks is taken with slice operations."""
        base = index * self._bpp
        state = part.state
        find = state.find
        nblocks, size = part.nblocks, part.size
        room = count - len(out)
        b = find(_FREE, part.hint)
        taken = 0
        while b >= 0 and taken < room:
            e = min(nblocks, b + room - taken)
            for other in _NOT_FREE:  # the run ends at the first block in another state
                x = find(other, b, e)
                if x >= 0:
                    e = x
            k = e - b
            state[b:e] = _REQUESTED_BYTE * k
            part.owner[b:e] = [peer_key] * k
            part.requested_at[b:e] = [now] * k
            reqs.update(range(base + b, base + e))
            begin, end = b << _BLOCK_SHIFT, e << _BLOCK_SHIFT
            full = end if end <= size else end - BLOCK_SIZE  # the piece's last block may be short
            if spans:
                out.extend([(index, at, BLOCK_SIZE) for at in range(begin, full, BLOCK_SIZE)])
                if full < end:
                    out.append((index, full, size - full))
            else:
                out.extend([BlockRef(index, at, BLOCK_SIZE) for at in range(begin, full, BLOCK_SIZE)])
                if full < end:
                    out.append(BlockRef(index, full, size - full))
            taken += k
            b = find(_FREE, e)
        part.free -= taken
        part.hint = b if b >= 0 else nblocks
        if not part.free:
            self._open.discard(index)

    def _pick_endgame(
        self,
        peer_key: PeerKey,
        peer_have: Bitfield,
        reqs: set[int],
        out: list[Any],
        count: int,
        now: float,
        spans: bool = False,
    ) -> None:
        # Every in-flight block has its requesters in ``_peer_reqs``: when no other peer has a
        # request out, each in-flight block is ours alone and there is nothing to duplicate.  This
        # skips a scan of every partial's blocks per pick (one peer: each pick of the endgame).
        if not any(reqs_k for k, reqs_k in self._peer_reqs.items() if k != peer_key):
            return
        limit = self._config.endgame_max_requesters
        prio = self._prio
        cands: list[tuple[int, float, int, int]] = []
        for i, part in self._partials.items():
            if not prio[i] or i not in peer_have or not part.requested:
                continue
            at, extra = part.requested_at, part.extra
            for b, first in enumerate(part.owner):
                if first is None:
                    continue
                more = extra.get(b)
                n = 1 + len(more) if more else 1
                if n < limit and first != peer_key and not (more and peer_key in more):
                    cands.append((n, at[b], i, b))
        for _, _, i, b in heapq.nsmallest(count - len(out), cands):
            part = self._partials[i]
            part.extra.setdefault(b, []).append(peer_key)
            begin = b * BLOCK_SIZE
            length = min(BLOCK_SIZE, part.size - begin)
            reqs.add(i * self._bpp + b)
            out.append((i, begin, length) if spans else BlockRef(i, begin, length))

    # ------------------------------------------------------------------ request outcomes

    def _check_block(self, block: BlockRef) -> None:
        index, begin = block.piece, block.begin
        if not 0 <= index < self._n:
            raise RemoteProtocolError(f"block {block} names a piece out of range 0..{self._n - 1}")
        size = self._last_size if index == self._n - 1 else self._plen
        if begin % BLOCK_SIZE or not 0 <= begin < size:
            raise RemoteProtocolError(f"block {block} is not on a block boundary of a {size}-byte piece")
        if block.length != min(BLOCK_SIZE, size - begin):
            raise RemoteProtocolError(f"block {block} has the wrong length for a {size}-byte piece")

    def block_received(self, peer_key: PeerKey, block: BlockRef) -> BlockArrival:
        """A ``piece`` message arrived (BEP 3).  Blocks that do not match the piece/block grid raise
        :class:`RemoteProtocolError`.  Unrequested blocks of wanted pieces are accepted if a partial
        slot is free; late blocks after a cancel or timeout count when still missing."""
        self._check_block(block)
        index = block.piece
        b = block.begin // BLOCK_SIZE
        bid = index * self._bpp + b
        reqs = self._peer_reqs.get(peer_key)
        if reqs is not None:
            reqs.discard(bid)
        if index in self._have:
            return _OLD
        part = self._partials.get(index)
        if part is None:
            if not self._prio[index] or self._busy() >= self._cap:
                return _OLD
            part = self._start(index)
        state = part.state[b]
        if state == _RECEIVED:
            return _OLD
        cancel = self._mark_received(index, part, b, state, peer_key)
        complete = part.received == part.nblocks
        if not cancel:
            return _NEW_COMPLETE if complete else _NEW
        return BlockArrival(new=True, cancel=cancel, piece_complete=complete)

    def _mark_received(
        self, index: int, part: _Partial, b: int, state: int, peer_key: PeerKey
    ) -> tuple[PeerKey, ...]:
        """Block ``b`` of started piece ``index`` (not received yet, in ``state``) arrived from
        ``peer_key``: record it, and take it out of the other peers' requests; returns those peers
        (endgame duplicates or a late block: to be sent ``cancel``)."""
        others: tuple[PeerKey, ...] = ()
        first = part.owner[b]
        if first is not None:
            part.owner[b] = None
            more = part.extra.pop(b, None) if part.extra else None
            if more is not None or first != peer_key:
                others = tuple(k for k in (first, *(more or ())) if k != peer_key)
                bid = index * self._bpp + b
                for k in others:
                    other = self._peer_reqs.get(k)
                    if other is not None:
                        other.discard(bid)
        if state == _FREE:
            part.free -= 1
            if not part.free:
                self._open.discard(index)
        elif state == _RESERVED:
            part.reserved -= 1
            if not part.reserved:
                self._held.discard(index)
        part.state[b] = _RECEIVED
        part.received += 1
        part.received_from[b] = peer_key
        return others

    def blocks_received(self, peer_key: PeerKey, blocks: Sequence[tuple[int, int, _B]]) -> BlocksArrival[_B]:
        """A run of ``piece`` messages from one peer, ``(index, begin, data)`` each: what
        :meth:`block_received` does for each, in one loop (the download hot path).  A block off the
        grid stops the run (:attr:`BlocksArrival.error`).  Consecutive full blocks of one piece that
        were all requested from this peer alone -- the common case -- are taken in one step."""
        new: list[tuple[int, int, _B]] = []
        complete: list[int] = []
        cancel: list[tuple[PeerKey, BlockRef]] = []
        out = BlocksArrival(new=new, complete=complete, cancel=cancel)
        reqs = self._peer_reqs.get(peer_key)
        n, plen, bpp, last_size = self._n, self._plen, self._bpp, self._last_size
        have, partials, prio = self._have, self._partials, self._prio
        last = -1
        size = total = new_total = 0
        part: _Partial | None = None
        pstate = bytearray()
        owner: list[PeerKey | None] = []
        received_from: list[PeerKey | None] = []
        count = len(blocks)
        i = 0
        while i < count:
            index, begin, data = blocks[i]
            if index != last:  # blocks come in runs of one piece: look the piece up once per run
                if not 0 <= index < n:
                    out.error = RemoteProtocolError(f"block {(index, begin)} names a piece out of range")
                    break
                last = index
                size = last_size if index == n - 1 else plen
                part = None if index in have else partials.get(index)
                if part is None and index not in have and prio[index] and self._busy() < self._cap:
                    part = self._start(index)
                if part is not None:
                    pstate, owner, received_from = part.state, part.owner, part.received_from
            length = len(data)
            if begin & _BLOCK_MASK or not 0 <= begin < size or length != min(BLOCK_SIZE, size - begin):
                out.error = RemoteProtocolError(
                    f"block {(index, begin, length)} is not a block of a {size}-byte piece"
                )
                break
            # the run of full blocks of this piece that follow back to back (each checked here)
            j = i + 1
            if length == BLOCK_SIZE:
                at = begin + BLOCK_SIZE
                while j < count:
                    index_j, begin_j, data_j = blocks[j]
                    if (
                        index_j != index
                        or begin_j != at
                        or len(data_j) != BLOCK_SIZE
                        or at + BLOCK_SIZE > size
                    ):
                        break
                    j += 1
                    at += BLOCK_SIZE
            b = begin >> _BLOCK_SHIFT
            k = j - i
            if (
                k > 1
                and part is not None
                and not part.extra
                and pstate.count(_REQUESTED, b, b + k) == k
                and owner[b : b + k].count(peer_key) == k
            ):
                e = b + k
                pstate[b:e] = _RECEIVED_BYTE * k
                owner[b:e] = [None] * k
                received_from[b:e] = [peer_key] * k
                if reqs is not None:
                    reqs.difference_update(range(index * bpp + b, index * bpp + e))
                new.extend(blocks[i:j])
                total += k * BLOCK_SIZE
                new_total += k * BLOCK_SIZE
                part.received += k
                if part.received == part.nblocks:
                    complete.append(index)
                i = j
                continue
            for item in blocks[i:j]:
                begin = item[1]
                length = len(item[2])
                b = begin >> _BLOCK_SHIFT
                total += length
                if reqs is not None:
                    reqs.discard(index * bpp + b)
                if part is None:
                    continue
                state = pstate[b]
                if state == _RECEIVED:
                    continue
                others = self._mark_received(index, part, b, state, peer_key)
                new.append(item)
                new_total += length
                if part.received == part.nblocks:
                    complete.append(index)
                if others:
                    ref = BlockRef(index, begin, length)
                    cancel += [(key, ref) for key in others]
            i = j
        out.size, out.new_size = total, new_total
        return out

    def _release(self, peer_key: PeerKey, index: int, b: int) -> bool:
        part = self._partials.get(index)
        if part is None or not 0 <= b < part.nblocks:
            return False
        first = part.owner[b]
        if first is None:
            return False
        more = part.extra.get(b)
        if first != peer_key and not (more and peer_key in more):
            return False
        if more:  # endgame: the block stays requested from the others
            if first == peer_key:
                part.owner[b] = more.pop(0)
            else:
                more.remove(peer_key)
            if not more:
                del part.extra[b]
            return True
        part.owner[b] = None
        part.state[b] = _FREE
        part.free += 1
        if b < part.hint:
            part.hint = b
        self._open.add(index)
        if part.received == part.known and not part.requested and not part.reserved:
            self._drop_partial(index)  # nothing invested: give the slot back
            self._sync(index)
        return True

    def request_cancelled(self, peer_key: PeerKey, block: BlockRef) -> None:
        """We cancelled our request (BEP 3 ``cancel``): the block may be picked again."""
        if not 0 <= block.piece < self._n:
            return
        b = block.begin // BLOCK_SIZE
        reqs = self._peer_reqs.get(peer_key)
        if reqs is not None:
            reqs.discard(block.piece * self._bpp + b)
        self._release(peer_key, block.piece, b)

    def request_rejected(self, peer_key: PeerKey, block: BlockRef) -> None:
        """The peer rejected our request (BEP 6 ``reject request``): the block may be picked again."""
        self.request_cancelled(peer_key, block)

    def release_peer(self, peer_key: PeerKey) -> list[BlockRef]:
        """Release every request of ``peer_key`` so other peers can pick them; returns them ascending.
        A block the peer still delivers later is accepted by :meth:`block_received` if still missing."""
        reqs = self._peer_reqs.get(peer_key)
        if not reqs:
            return []
        bids = sorted(reqs)
        reqs.clear()
        bpp = self._bpp
        for bid in bids:
            self._release(peer_key, *divmod(bid, bpp))
        return [self._ref(bid) for bid in bids]

    def peer_timed_out(self, peer_key: PeerKey) -> list[BlockRef]:
        """The peer's requests timed out: release them (returned, so the driver may send cancels)."""
        return self.release_peer(peer_key)

    def peer_snubbed(self, peer_key: PeerKey) -> list[BlockRef]:
        """The peer sent nothing for too long while we waited (libtorrent "snubbed"): release its
        requests to faster peers.  Its requests stay on the wire; late blocks still count."""
        return self.release_peer(peer_key)

    def peer_choked_us(self, peer_key: PeerKey) -> list[BlockRef]:
        """The peer choked us: BEP 3 says pending requests are discarded by the choking side (BEP 6
        peers send ``reject`` per request instead, which lands in :meth:`request_rejected`)."""
        return self.release_peer(peer_key)

    def peer_left(self, peer_key: PeerKey) -> list[BlockRef]:
        """The peer disconnected: forget its pieces and release its requests (returned, ascending)."""
        released = self.release_peer(peer_key)
        self._peer_reqs.pop(peer_key, None)
        if peer_key in self._peers:
            self._forget_pieces(peer_key)
            del self._peers[peer_key]
        return released
