"""The piece picker: which blocks to request from which peer (level L2, pure).

The picker knows the swarm only through opaque hashable *peer keys*, their have-sets
(:class:`~torrentgoat.bitfield.Bitfield`), per-piece availability counts, piece priorities and
:class:`~torrentgoat.primitives.BlockRef` s -- never peer objects, sockets or clocks (time comes in as
``now``, randomness from the injected ``rng``).  The same object runs in the download engine and in the
swarm simulator.

Rules (BEP 3 only says pieces are fetched "in random order"; the refinements every client uses are from
Cohen, "Incentives Build Robustness in BitTorrent" (2003), section 2 "Piece selection", also described in
the theory.org specification, "Piece downloading strategy" and "End game"; plus libtorrent's):

* started (partial) pieces are finished before new ones are opened ("strict priority": a complete
  piece can be verified and shared sooner);
* new pieces come in the order of the :class:`~torrentgoat.picker.PieceStrategy` (rarest first by
  default), except that while we own fewer than ``initial_random_pieces`` pieces a random piece is taken
  ("random first piece");
* a block is requested from one peer at a time, except in *endgame* ("endgame mode"): once every
  missing block of every wanted piece is in flight, in-flight blocks may be requested again from up to
  ``endgame_max_requesters`` peers, and :meth:`PiecePicker.block_received` names the duplicate requests
  to cancel (BEP 3 ``cancel``: "mostly used during the end of a download");
* priority-0 pieces are never requested; pieces a peer lacks are never requested from it;
* memory is bounded whatever the file size: per-block state exists only for partial pieces, and at most
  ``PickerConfig.partial_cap(piece_length)`` pieces are partial at once.

Speed: untouched candidate pieces sit in buckets keyed by ``(priority, availability)`` (libtorrent's
sorted piece list); each availability change moves one piece between adjacent buckets in O(1), and a
rarest-first pick walks the buckets from the front, so a pick costs O(blocks returned) when the peer has
the rarest pieces, rather than O(pieces).
"""

from __future__ import annotations

import heapq
import random
from bisect import bisect_left, insort
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass

from torrentgoat.bitfield import Bitfield
from torrentgoat.errors import ConfigError, LocalProtocolError, RemoteProtocolError
from torrentgoat.geometry import PieceGeometry
from torrentgoat.metainfo import InfoDict
from torrentgoat.picker.config import PickerConfig
from torrentgoat.picker.layout import (
    MAX_PRIORITY,
    SpanLike,
    file_priorities_to_piece_priorities,
)
from torrentgoat.picker.strategy import PieceStrategy, create_strategy, random_order
from torrentgoat.primitives import BLOCK_SIZE, BlockRef

__all__ = ["BlockArrival", "PeerKey", "PiecePicker"]

PeerKey = Hashable
"""Any hashable value naming a peer (the driver's choice: an address, a connection id ...)."""

_FREE = 0
_REQUESTED = 1
_RECEIVED = 2

_AVAIL_BITS = 32
_AVAIL_MASK = (1 << _AVAIL_BITS) - 1


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


_OLD = BlockArrival(new=False)
_NEW = BlockArrival(new=True)
_NEW_COMPLETE = BlockArrival(new=True, piece_complete=True)


class _Partial:
    """Per-block state of one started piece."""

    __slots__ = (
        "free",
        "hint",
        "nblocks",
        "received",
        "received_from",
        "requested_at",
        "requesters",
        "size",
        "state",
    )

    def __init__(self, size: int) -> None:
        self.size = size
        self.nblocks = -(-size // BLOCK_SIZE)
        self.state = bytearray(self.nblocks)
        self.free = self.nblocks
        self.received = 0
        self.requesters: dict[int, list[PeerKey]] = {}
        self.requested_at: dict[int, float] = {}
        self.received_from: dict[int, PeerKey] = {}
        self.hint = 0


class PiecePicker:
    """Block request planning for one torrent.  See the module docstring for the rules.

    The driver calls, for each peer: :meth:`peer_joined` (bitfield, or ``have none``) or
    :meth:`peer_have_all` (BEP 6), :meth:`peer_have` per ``have``, :meth:`peer_left` on disconnect;
    :meth:`pick` when the peer unchokes us or has room in its request queue; :meth:`block_received`
    per ``piece`` message; :meth:`request_rejected` (BEP 6) / :meth:`request_cancelled`;
    :meth:`peer_timed_out` / :meth:`peer_snubbed` to give a slow peer's blocks to others; and per piece:
    :meth:`piece_verified` / :meth:`piece_failed` after hashing.

    A choked peer with a BEP 6 *allowed fast* set is served by passing ``peer_have`` restricted to that
    set to :meth:`pick`.
    """

    def __init__(
        self,
        layout: PieceGeometry,
        *,
        rng: random.Random,
        config: PickerConfig | None = None,
        have: Bitfield | None = None,
        priorities: Sequence[int] | None = None,
        strategy: PieceStrategy | str | None = None,
    ) -> None:
        self._layout = layout
        self._config = config or PickerConfig()
        self._rng = rng
        n = layout.num_pieces
        self._n = n
        self._cap = self._config.partial_cap(layout.piece_length)
        if have is not None and have.length != n:
            raise ConfigError(f"have-set of {have.length} pieces for a torrent of {n} pieces")
        self._have = have.copy() if have is not None else Bitfield(n)
        self._prio = bytearray(b"\x01" * n)
        self._avail = [0] * n
        self._seeds = 0
        self._peers: dict[PeerKey, Bitfield | None] = {}
        self._partials: dict[int, _Partial] = {}
        self._open: set[int] = set()
        # requests in flight per peer, as block ids: piece * blocks-per-piece + block index
        self._peer_reqs: dict[PeerKey, set[int]] = {}
        self._bpp = -(-layout.piece_length // BLOCK_SIZE)
        self._plen = layout.piece_length
        self._last_size = layout.piece_size(n - 1) if n else 0
        # candidate index: bucket key -> pieces (random order), sorted keys, per-piece key/position
        self._bucket: dict[int, list[int]] = {}
        self._keys: list[int] = []
        self._keyof = [-1] * n
        self._pos = [0] * n
        self._index_size = 0
        self._need = bytearray((n + 7) // 8)
        self._wanted_missing = 0
        self._first_missing = 0
        self._strategy: PieceStrategy = self._make_strategy(strategy or self._config.strategy)
        if priorities is not None:
            if len(priorities) != n:
                raise ConfigError(f"{len(priorities)} piece priorities for {n} pieces")
            for i, p in enumerate(priorities):
                self._prio[i] = self._check_priority(p)
        for i in range(n):
            if self._prio[i] and i not in self._have:
                self._wanted_missing += 1
                self._need[i >> 3] |= 0x80 >> (i & 7)
                self._sync(i)

    @classmethod
    def from_info(
        cls,
        info: InfoDict,
        *,
        rng: random.Random,
        config: PickerConfig | None = None,
        have: Bitfield | None = None,
        file_priorities: Sequence[int] | None = None,
        strategy: PieceStrategy | str | None = None,
    ) -> PiecePicker:
        """A picker for a torrent's ``info``; ``file_priorities`` (one per entry of ``info.files``, pad files
        included) become piece priorities, and pad-only pieces are skipped (BEP 47)."""
        layout = info.geometry
        prios = file_priorities if file_priorities is not None else [1] * len(info.files)
        return cls(
            layout,
            rng=rng,
            config=config,
            have=have,
            priorities=file_priorities_to_piece_priorities(layout, info.files, prios),
            strategy=strategy,
        )

    def _make_strategy(self, strategy: PieceStrategy | str) -> PieceStrategy:
        return create_strategy(strategy, self._config) if isinstance(strategy, str) else strategy

    @staticmethod
    def _check_priority(priority: int) -> int:
        if not isinstance(priority, int) or not 0 <= priority <= MAX_PRIORITY:
            raise ConfigError(f"piece priority must be an int 0..{MAX_PRIORITY}, got {priority!r}")
        return priority

    # ------------------------------------------------------------------ read-only view (PickerView)

    @property
    def layout(self) -> PieceGeometry:
        return self._layout

    @property
    def config(self) -> PickerConfig:
        return self._config

    @property
    def num_pieces(self) -> int:
        return self._n

    @property
    def rng(self) -> random.Random:
        return self._rng

    @property
    def strategy(self) -> PieceStrategy:
        return self._strategy

    def set_strategy(self, strategy: PieceStrategy | str) -> None:
        """Switch strategy at any time (e.g. to ``sequential`` when a reader starts streaming)."""
        self._strategy = self._make_strategy(strategy)

    @property
    def have(self) -> Bitfield:
        """Our verified pieces.  Read-only: mutate through :meth:`piece_verified` / :meth:`set_have`."""
        return self._have

    def availability(self, index: int) -> int:
        """Number of connected peers that have piece ``index`` (seeds included)."""
        return self._avail[index] + self._seeds

    def availability_list(self) -> list[int]:
        seeds = self._seeds
        return [a + seeds for a in self._avail]

    def priority(self, index: int) -> int:
        return self._prio[index]

    def distributed_copies(self) -> float:
        """Swarm health as libtorrent reports it: complete copies of the torrent among connected peers
        (the lowest availability) plus the fraction of pieces above that level."""
        if not self._n:
            return 0.0
        low = min(self._avail)
        above = sum(1 for a in self._avail if a > low)
        return self._seeds + low + above / self._n

    def is_candidate(self, index: int) -> bool:
        return self._keyof[index] >= 0

    def first_missing(self) -> int:
        c = self._first_missing
        n, prio, have = self._n, self._prio, self._have
        while c < n and (not prio[c] or c in have):
            c += 1
        self._first_missing = c
        return c

    def candidate_levels(self) -> list[int]:
        return sorted({MAX_PRIORITY - (k >> _AVAIL_BITS) for k in self._keys}, reverse=True)

    def rarest_order(self, peer_have: Bitfield) -> Iterator[int]:
        """Candidates the peer has: priority high first, availability low first, random tie-break."""
        keyof = self._keyof
        count = peer_have.count
        # Walking the buckets inspects about index_size / count pieces per piece found; listing the
        # peer's own pieces costs a pass over its bitfield.  Take the cheaper (assume ~4 pieces wanted).
        if count < self._n and self._n // 8 + 2 * count < 4 * self._index_size // max(1, count):
            # A peer with few pieces: rank just its pieces (the in-bucket position is already random).
            pos = self._pos
            cands = [i for i in peer_have if keyof[i] >= 0]
            cands.sort(key=lambda i: (keyof[i], pos[i]))
            yield from cands
            return
        no_seeds = self._seeds == 0
        for key in tuple(self._keys):
            if no_seeds and not key & _AVAIL_MASK:
                continue  # nobody has these pieces
            bucket = self._bucket.get(key)
            if not bucket:
                continue
            for i in bucket.copy():
                if i in peer_have and keyof[i] >= 0:
                    yield i

    @property
    def seeds(self) -> int:
        """Connected peers known to have every piece."""
        return self._seeds

    @property
    def num_peers(self) -> int:
        return len(self._peers)

    def peer_has(self, peer_key: PeerKey, index: int) -> bool:
        if peer_key not in self._peers:
            return False
        hv = self._peers[peer_key]
        return hv is None or index in hv

    @property
    def partial_pieces(self) -> list[int]:
        """Started pieces (including those complete and awaiting their hash check), ascending."""
        return sorted(self._partials)

    @property
    def partial_cap(self) -> int:
        return self._cap

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
        return frozenset(part.requesters.get(block.begin // BLOCK_SIZE, ()))

    def block_received_already(self, block: BlockRef) -> bool:
        if block.piece in self._have:
            return True
        part = self._partials.get(block.piece)
        return part is not None and part.state[block.begin // BLOCK_SIZE] == _RECEIVED

    def contributors(self, index: int) -> dict[int, PeerKey]:
        """Block index -> peer that delivered it, for started piece ``index`` (for smart banning)."""
        part = self._partials.get(index)
        return dict(part.received_from) if part is not None else {}

    @property
    def is_complete(self) -> bool:
        """Every wanted (priority > 0) piece is verified."""
        return self._wanted_missing == 0

    @property
    def wanted_missing(self) -> int:
        """Wanted pieces not yet verified."""
        return self._wanted_missing

    def interesting(self, peer_have: Bitfield) -> bool:
        """Peer has a wanted piece we lack (BEP 3 ``interested``)."""
        if self._wanted_missing == 0:
            return False
        if peer_have.complete:
            return True
        return bool(int.from_bytes(peer_have.to_bytes(), "big") & int.from_bytes(self._need, "big"))

    @property
    def in_endgame(self) -> bool:
        """Endgame is enabled and every available missing block of a wanted piece is in flight."""
        if not self._config.endgame or self._wanted_missing == 0:
            return False
        # untouched candidates left: endgame only if no connected peer has any of them
        if self._index_size and (self._seeds or any(key & _AVAIL_MASK for key in self._keys)):
            return False
        prio, avail, seeds = self._prio, self._avail, self._seeds
        return not any(prio[i] and (avail[i] or seeds) for i in self._open)

    # ------------------------------------------------------------------ candidate index maintenance

    def _sync(self, i: int) -> None:
        """Put piece ``i`` in the right bucket, or out of the index if it is not a candidate."""
        prio = self._prio[i]
        cur = self._keyof[i]
        if prio and i not in self._have and i not in self._partials:
            key = ((MAX_PRIORITY - prio) << _AVAIL_BITS) | self._avail[i]
            if cur == key:
                return
            if cur >= 0:
                self._idx_remove(i)
            self._idx_add(i, key)
        elif cur >= 0:
            self._idx_remove(i)

    def _idx_add(self, i: int, key: int) -> None:
        bucket = self._bucket.get(key)
        if bucket is None:
            bucket = self._bucket[key] = []
            insort(self._keys, key)
        size = len(bucket)
        j = int(self._rng.random() * (size + 1))
        pos = self._pos
        if j >= size:
            bucket.append(i)
            pos[i] = size
        else:
            other = bucket[j]
            bucket.append(other)
            pos[other] = size
            bucket[j] = i
            pos[i] = j
        self._keyof[i] = key
        self._index_size += 1

    def _idx_remove(self, i: int) -> None:
        key = self._keyof[i]
        bucket = self._bucket[key]
        p = self._pos[i]
        last = bucket.pop()
        if last != i:
            bucket[p] = last
            self._pos[last] = p
        self._keyof[i] = -1
        self._index_size -= 1
        if not bucket:
            del self._bucket[key]
            del self._keys[bisect_left(self._keys, key)]

    # ------------------------------------------------------------------ swarm: availability

    def _check_index(self, index: int) -> None:
        if not 0 <= index < self._n:
            raise RemoteProtocolError(f"piece index {index} out of range 0..{self._n - 1}")

    def peer_joined(self, peer_key: PeerKey, have: Bitfield | None = None) -> None:
        """A peer's first have-set: its ``bitfield``, or ``None`` for an empty one (BEP 6 ``have none``).

        A full have-set makes it a seed (counted once, like :meth:`peer_have_all`)."""
        if peer_key in self._peers:
            raise LocalProtocolError(f"peer {peer_key!r} joined twice")
        if have is None:
            self._peers[peer_key] = Bitfield(self._n)
            return
        if have.length != self._n:
            raise LocalProtocolError(f"have-set of {have.length} pieces for a torrent of {self._n}")
        if have.complete and self._n:
            self._peers[peer_key] = None
            self._seeds += 1
            return
        self._peers[peer_key] = have.copy()
        avail = self._avail
        for i in have:
            avail[i] += 1
            self._sync(i)

    def peer_bitfield(self, peer_key: PeerKey, have: Bitfield) -> None:
        """Set (or replace) a peer's whole have-set: its ``bitfield`` when the driver already called
        :meth:`peer_joined` at handshake time (BEP 3 lets a peer with no pieces omit the bitfield).
        Requests in flight are kept."""
        if peer_key not in self._peers:
            self.peer_joined(peer_key, have)
            return
        if have.length != self._n:
            raise LocalProtocolError(f"have-set of {have.length} pieces for a torrent of {self._n}")
        self._forget_pieces(peer_key)
        del self._peers[peer_key]
        self.peer_joined(peer_key, have)

    def _forget_pieces(self, peer_key: PeerKey) -> None:
        hv = self._peers[peer_key]
        if hv is None:
            self._seeds -= 1
            return
        avail = self._avail
        for i in hv:
            avail[i] -= 1
            self._sync(i)
        self._peers[peer_key] = Bitfield(self._n)

    def peer_have(self, peer_key: PeerKey, index: int) -> None:
        """The peer announced piece ``index`` (BEP 3 ``have``); repeats are ignored."""
        self._check_index(index)
        try:
            hv = self._peers[peer_key]
        except KeyError:
            raise LocalProtocolError(f"have from unknown peer {peer_key!r}") from None
        if hv is None or not hv.add(index):
            return
        self._avail[index] += 1
        self._sync(index)
        if hv.complete:
            self._make_seed(peer_key, hv)

    def peer_have_all(self, peer_key: PeerKey) -> None:
        """The peer has every piece (BEP 6 ``have all``, or it completed): an O(1) seed count."""
        if peer_key not in self._peers:
            self._peers[peer_key] = None
            self._seeds += 1
            return
        hv = self._peers[peer_key]
        if hv is not None:
            self._make_seed(peer_key, hv)

    def peer_lost(self, peer_key: PeerKey, index: int) -> None:
        """The peer no longer has piece ``index`` (BEP 54 ``lt_donthave``): availability goes down; a
        seed becomes a peer with every piece but this one.  A piece it did not have is ignored.  Its
        requests for the piece are released by the caller (:meth:`request_cancelled`)."""
        self._check_index(index)
        try:
            hv = self._peers[peer_key]
        except KeyError:
            raise LocalProtocolError(f"lt_donthave from unknown peer {peer_key!r}") from None
        if hv is None:
            self._seeds -= 1
            hv = self._peers[peer_key] = Bitfield(self._n, full=True)
            avail = self._avail
            for i in range(self._n):
                avail[i] += 1
                self._sync(i)
        if not hv.discard(index):
            return
        self._avail[index] -= 1
        self._sync(index)

    def _make_seed(self, peer_key: PeerKey, hv: Bitfield) -> None:
        avail = self._avail
        for i in hv:
            avail[i] -= 1
            self._sync(i)
        self._peers[peer_key] = None
        self._seeds += 1

    def peer_left(self, peer_key: PeerKey) -> list[BlockRef]:
        """The peer disconnected: forget its pieces and release its requests (returned, ascending)."""
        released = self.release_peer(peer_key)
        self._peer_reqs.pop(peer_key, None)
        if peer_key in self._peers:
            self._forget_pieces(peer_key)
            del self._peers[peer_key]
        return released

    # ------------------------------------------------------------------ our state: priorities, have

    def set_piece_priority(self, index: int, priority: int) -> None:
        """0 skips the piece, 1 is normal, higher is more urgent (up to :data:`MAX_PRIORITY`).

        Blocks already requested for a piece set to 0 stay requested; no more are picked."""
        if not 0 <= index < self._n:
            raise ConfigError(f"piece index {index} out of range 0..{self._n - 1}")
        new = self._check_priority(priority)
        old = self._prio[index]
        if old == new:
            return
        self._prio[index] = new
        if index not in self._have:
            if not old:
                self._set_wanted_missing(index, True)
            elif not new:
                self._set_wanted_missing(index, False)
        self._sync(index)

    def set_piece_priorities(self, priorities: Sequence[int]) -> None:
        if len(priorities) != self._n:
            raise ConfigError(f"{len(priorities)} piece priorities for {self._n} pieces")
        for i, p in enumerate(priorities):
            self.set_piece_priority(i, p)

    def set_file_priorities(
        self, spans: Sequence[SpanLike | tuple[int, int, bool]], file_priorities: Sequence[int]
    ) -> None:
        """Piece priorities from file priorities (see :func:`file_priorities_to_piece_priorities`)."""
        self.set_piece_priorities(file_priorities_to_piece_priorities(self._layout, spans, file_priorities))

    def piece_priorities(self) -> list[int]:
        return list(self._prio)

    def _set_wanted_missing(self, index: int, wanted: bool) -> None:
        if wanted:
            self._wanted_missing += 1
            self._need[index >> 3] |= 0x80 >> (index & 7)
            if index < self._first_missing:
                self._first_missing = index
        else:
            self._wanted_missing -= 1
            self._need[index >> 3] &= ~(0x80 >> (index & 7)) & 0xFF

    def set_have(self, index: int) -> None:
        """We own piece ``index`` (resume data, or a check of existing files)."""
        self.piece_verified(index)

    def clear_have(self, index: int) -> None:
        """We lost piece ``index`` (data deleted or found corrupt on re-check): fetch it again."""
        if not 0 <= index < self._n:
            raise ConfigError(f"piece index {index} out of range 0..{self._n - 1}")
        if self._have.discard(index):
            if self._prio[index]:
                self._set_wanted_missing(index, True)
            self._sync(index)

    def piece_verified(self, index: int) -> None:
        """Piece ``index`` passed its hash check: it is ours; its partial state is dropped."""
        if not 0 <= index < self._n:
            raise ConfigError(f"piece index {index} out of range 0..{self._n - 1}")
        self._drop_partial(index)
        if self._have.add(index) and self._prio[index]:
            self._set_wanted_missing(index, False)
        self._sync(index)

    def piece_failed(self, index: int) -> frozenset[PeerKey]:
        """Piece ``index`` failed its hash check: every block is fetched again.  Returns the peers that
        delivered its blocks, so the driver can ban repeat offenders (read :meth:`contributors` first
        for the block-by-block map)."""
        part = self._partials.get(index)
        if part is None:
            return frozenset()
        contributors = frozenset(part.received_from.values())
        self._drop_partial(index)
        self._sync(index)
        return contributors

    def _drop_partial(self, index: int) -> None:
        part = self._partials.pop(index, None)
        if part is None:
            return
        self._open.discard(index)
        base = index * self._bpp
        for b, keys in part.requesters.items():
            for k in keys:
                reqs = self._peer_reqs.get(k)
                if reqs is not None:
                    reqs.discard(base + b)

    def _start(self, index: int) -> _Partial:
        part = self._partials[index] = _Partial(self._layout.piece_size(index))
        self._open.add(index)
        self._sync(index)
        return part

    # ------------------------------------------------------------------ picking

    def pick(self, peer_key: PeerKey, peer_have: Bitfield, count: int, *, now: float) -> list[BlockRef]:
        """Up to ``count`` new block requests for ``peer_key``, recorded as requested from it.

        Never a block the peer lacks, a block of a priority-0 piece, or a block already received;
        never a block already requested unless in endgame (then never twice from the same peer)."""
        out: list[BlockRef] = []
        if count <= 0 or self._wanted_missing == 0:
            return out
        if peer_have.length != self._n:
            raise LocalProtocolError(f"have-set of {peer_have.length} pieces for a torrent of {self._n}")
        reqs = self._peer_reqs.get(peer_key)
        if reqs is None:
            reqs = self._peer_reqs[peer_key] = set()
        prio = self._prio
        # 1. finish started pieces first
        if self._open:
            opened = [i for i in self._open if prio[i] and i in peer_have]
            if len(opened) > 1:
                strategy = self._strategy
                opened.sort(key=lambda i: strategy.partial_key(self, i))
            for i in opened:
                self._take(i, self._partials[i], peer_key, reqs, out, count, now)
                if len(out) >= count:
                    return out
        # 2. open new pieces in strategy order
        partials = self._partials
        if len(partials) < self._cap and self._index_size:
            if self._have.count < self._config.initial_random_pieces and self._strategy.random_start:
                order = random_order(self, peer_have)
            else:
                order = self._strategy.order(self, peer_have)
            keyof = self._keyof
            for i in order:
                if keyof[i] < 0 or i not in peer_have:
                    continue
                self._take(i, self._start(i), peer_key, reqs, out, count, now)
                if len(out) >= count or len(partials) >= self._cap:
                    break
        # 3. endgame: duplicate in-flight blocks
        if len(out) < count and self.in_endgame:
            self._pick_endgame(peer_key, peer_have, reqs, out, count, now)
        return out

    def _take(
        self,
        index: int,
        part: _Partial,
        peer_key: PeerKey,
        reqs: set[int],
        out: list[BlockRef],
        count: int,
        now: float,
    ) -> None:
        base = index * self._bpp
        state = part.state
        b = state.find(_FREE, part.hint)
        size = part.size
        requesters, requested_at = part.requesters, part.requested_at
        while b >= 0 and len(out) < count:
            state[b] = _REQUESTED
            begin = b * BLOCK_SIZE
            ref = BlockRef(index, begin, min(BLOCK_SIZE, size - begin))
            requesters[b] = [peer_key]
            requested_at[b] = now
            part.free -= 1
            reqs.add(base + b)
            out.append(ref)
            b = state.find(_FREE, b + 1)
        part.hint = b if b >= 0 else part.nblocks
        if not part.free:
            self._open.discard(index)

    def _pick_endgame(
        self,
        peer_key: PeerKey,
        peer_have: Bitfield,
        reqs: set[int],
        out: list[BlockRef],
        count: int,
        now: float,
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
            if not prio[i] or i not in peer_have:
                continue
            at = part.requested_at
            for b, keys in part.requesters.items():
                if len(keys) < limit and peer_key not in keys:
                    cands.append((len(keys), at[b], i, b))
        for _, _, i, b in heapq.nsmallest(count - len(out), cands):
            part = self._partials[i]
            part.requesters[b].append(peer_key)
            begin = b * BLOCK_SIZE
            ref = BlockRef(i, begin, min(BLOCK_SIZE, part.size - begin))
            reqs.add(i * self._bpp + b)
            out.append(ref)

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
            if not self._prio[index] or len(self._partials) >= self._cap:
                return _OLD
            part = self._start(index)
        state = part.state[b]
        if state == _RECEIVED:
            return _OLD
        keys = part.requesters.pop(b, ())
        part.requested_at.pop(b, None)
        if state == _FREE:
            part.free -= 1
            if not part.free:
                self._open.discard(index)
        part.state[b] = _RECEIVED
        part.received += 1
        part.received_from[b] = peer_key
        complete = part.received == part.nblocks
        if len(keys) <= 1 and (not keys or keys[0] == peer_key):
            return _NEW_COMPLETE if complete else _NEW
        cancel = tuple(k for k in keys if k != peer_key)
        for k in cancel:
            other = self._peer_reqs.get(k)
            if other is not None:
                other.discard(bid)
        return BlockArrival(new=True, cancel=cancel, piece_complete=complete)

    def _release(self, peer_key: PeerKey, index: int, b: int) -> bool:
        part = self._partials.get(index)
        if part is None:
            return False
        keys = part.requesters.get(b)
        if keys is None or peer_key not in keys:
            return False
        keys.remove(peer_key)
        if not keys:
            del part.requesters[b]
            del part.requested_at[b]
            part.state[b] = _FREE
            part.free += 1
            if b < part.hint:
                part.hint = b
            self._open.add(index)
            if not part.received and not part.requesters:
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
