"""Swarm availability and the candidate index of the piece picker (level L2, pure).

:class:`AvailabilityIndex` is the lowest base class of :class:`~torrentgoat.picker.PiecePicker`: it
knows who has what -- each connected peer's have-set (its BEP 3 ``bitfield`` and ``have`` messages, or
BEP 6 ``have all`` / ``have none``), the per-piece availability counts and the number of seeds -- and
keeps the *candidate* pieces (wanted, not ours, not started) sorted for rarest-first picking.

Rarest first is Cohen's rule ("Incentives Build Robustness in BitTorrent" (2003), section 2 "Piece selection",
"Rarest First"; the theory.org specification, "Piece downloading strategy"): request the pieces the
fewest peers have, so that rare pieces spread before their owners leave.  The index is libtorrent's sorted piece list: untouched candidates sit in buckets keyed by
``(priority, availability)``; each availability change moves one piece between adjacent buckets in
O(1) (:meth:`AvailabilityIndex._sync`), and a rarest-first walk goes through the buckets from the
front, so a pick costs O(blocks returned) when the peer has the rarest pieces, rather than O(pieces).
Ties are broken at random: a piece enters its bucket at a random position drawn from the injected
``rng``.

A base class rather than a helper object so that ``peer_have`` and the picker's hot paths reach the
index in one call, with no extra indirection per ``have`` or per block.  The state it reads but does
not own (our have-set, piece priorities, which pieces are started) is set by the subclasses.
"""

from __future__ import annotations

import random
from bisect import bisect_left, insort
from collections.abc import Container, Hashable, Iterator

from torrentgoat.bitfield import Bitfield
from torrentgoat.errors import LocalProtocolError, RemoteProtocolError
from torrentgoat.picker.layout import MAX_PRIORITY

__all__ = ["AvailabilityIndex", "PeerKey"]

PeerKey = Hashable
"""Any hashable value naming a peer (the driver's choice: an address, a connection id ...)."""

_AVAIL_BITS = 32
_AVAIL_MASK = (1 << _AVAIL_BITS) - 1


class AvailabilityIndex:
    """Who has which piece, and the candidate pieces by (priority, availability); see the module
    docstring.  Base class of :class:`~torrentgoat.picker.PiecePicker`."""

    # Set by the subclasses: our side of the state the index reads.
    _rng: random.Random
    _have: Bitfield
    """Our verified pieces: never candidates."""
    _prio: bytearray
    """Piece priorities: priority-0 pieces are never candidates."""
    _partials: Container[int]
    """Started pieces (they have per-block state): no longer candidates."""

    def __init__(self, num_pieces: int) -> None:
        n = num_pieces
        self._n = n
        self._avail = [0] * n
        """Per piece: peers with a have-set holding it (seeds are counted once, in ``_seeds``)."""
        self._seeds = 0
        self._peers: dict[PeerKey, Bitfield | None] = {}
        """Per peer: its have-set, or ``None`` for a seed."""
        # candidate index: bucket key -> pieces (random order), sorted keys, per-piece key/position
        self._bucket: dict[int, list[int]] = {}
        self._keys: list[int] = []
        self._keyof = [-1] * n
        self._pos = [0] * n
        self._index_size = 0

    # ------------------------------------------------------------------ read-only view (PickerView)

    def availability(self, index: int) -> int:
        """Number of connected peers that have piece ``index`` (seeds included)."""
        return self._avail[index] + self._seeds

    def availability_list(self) -> list[int]:
        seeds = self._seeds
        return [a + seeds for a in self._avail]

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

    def _untouched_available(self) -> bool:
        """Some candidate piece is held by a connected peer (so endgame has not begun)."""
        return bool(self._index_size) and bool(self._seeds or any(key & _AVAIL_MASK for key in self._keys))

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
