"""Super-seeding (BEP 16): a seed that reveals its pieces one peer at a time (level L2, pure).

BEP 16: "the seeder [...] masquerades as a normal client with no data.  As peers connect, it will then
inform them that it received a piece -- a piece that was never sent, or if all pieces were already sent,
is very rare."  A seed that sends each piece once before it sends any piece twice is what an initial
seed of a big checkpoint wants: while the seed's upload is the bottleneck (one origin, many equal
nodes: T* = F / u_seed), every duplicate byte it sends adds straight to everybody's completion time.

:class:`SuperSeeder` decides only *which* pieces each peer may see; the driver sends the handshake-time
``have none`` (BEP 6) or an empty bitfield, a ``have`` for every piece this engine reveals, and serves
requests only for revealed pieces (:meth:`may_serve`; others are rejected, BEP 6, or dropped).

Rules (after BEP 16, with libtorrent's relaxed pacing):

* Each peer holds at most ``per_peer`` revealed pieces it does not have yet.  When it announces one of
  them (``have``), it gets the next one -- BEP 16's stricter rule (wait until the piece is seen at a
  *third* peer) stalls a lone leecher and is not used.
* The last piece a peer lacks is never revealed alone: once a batch would leave exactly one piece
  unrevealed to a peer, that piece joins the batch.  A ``have`` that completes a peer's view of us
  makes us a seed in its eyes; libtorrent 2 then drops us as an "uninteresting upload-only peer" if it
  was not interested in us just before -- it checks for a redundant seed *before* it updates its
  interest for that very ``have`` -- and does not dial us again for a minute.  A peer that had finished
  its other revealed pieces before the last reveal arrived (a loaded seed answers late) stalled so,
  one piece short.  In a batch, the first ``have`` (a piece it lacks) makes it interested in time.
* The next piece for a peer is the one revealed to the fewest peers so far, then the one the fewest
  connected peers hold, among the pieces the peer lacks; ties are broken by a per-seeder shuffle, so
  two seeders in one swarm do not reveal the same order.
* :attr:`distributed` becomes true once every piece is held by at least one connected peer: from then on
  the swarm no longer needs this seed to hold a unique copy, and the driver may switch to normal
  seeding (announce the rest with ``have``); :meth:`finish` reports the pieces each peer has not seen.
"""

from __future__ import annotations

import random
from collections.abc import Hashable

from torrentgoat.bitfield import Bitfield
from torrentgoat.errors import ConfigError

__all__ = ["SuperSeeder"]


class _PeerState:
    __slots__ = ("have", "outstanding", "revealed")

    def __init__(self, have: Bitfield) -> None:
        self.have = have
        self.revealed: set[int] = set()
        """Every piece announced to this peer."""
        self.outstanding: set[int] = set()
        """Revealed pieces the peer does not have yet."""


class SuperSeeder:
    """Which pieces a super-seeding seed announces to each peer (BEP 16)."""

    def __init__(self, num_pieces: int, *, per_peer: int = 2, rng: random.Random | None = None) -> None:
        if num_pieces <= 0:
            raise ConfigError(f"num_pieces must be positive, got {num_pieces}")
        if per_peer < 1:
            raise ConfigError(f"per_peer must be >= 1, got {per_peer}")
        self.num_pieces = num_pieces
        self.per_peer = per_peer
        self._peers: dict[Hashable, _PeerState] = {}
        self._reveals = [0] * num_pieces
        self._availability = [0] * num_pieces
        self._held = 0  # pieces with availability > 0
        order = list(range(num_pieces))
        (rng or random.Random()).shuffle(order)
        # buckets[k]: pieces revealed k times (a dict keeps the shuffled insertion order)
        self._buckets: list[dict[int, None]] = [dict.fromkeys(order)]

    # ------------------------------------------------------------------ queries

    @property
    def distributed(self) -> bool:
        """Every piece is held by at least one connected peer."""
        return self._held == self.num_pieces

    def revealed(self, key: Hashable) -> frozenset[int]:
        """Pieces announced to ``key`` so far."""
        st = self._peers.get(key)
        return frozenset(st.revealed) if st is not None else frozenset()

    def may_serve(self, key: Hashable, piece: int) -> bool:
        """A request from ``key`` for ``piece`` is honoured only for a piece revealed to it (BEP 16)."""
        st = self._peers.get(key)
        return st is not None and piece in st.revealed

    def times_revealed(self, piece: int) -> int:
        return self._reveals[piece]

    # ------------------------------------------------------------------ events

    def peer_joined(self, key: Hashable, have: Bitfield) -> list[int]:
        """What ``key`` holds became known (its bitfield, or nothing yet): the pieces to announce to it
        now.  Called again with a later bitfield, the pieces in it are merged in."""
        st = self._peers.get(key)
        if st is None:
            st = self._peers[key] = _PeerState(Bitfield(self.num_pieces))
        for i in have:
            self._holds(st, i)
        return self._top_up(st)

    def peer_have(self, key: Hashable, piece: int) -> list[int]:
        """``key`` announced ``piece``: the pieces to announce to it now."""
        st = self._peers.get(key)
        if st is None or not 0 <= piece < self.num_pieces:
            return []
        self._holds(st, piece)
        return self._top_up(st)

    def peer_left(self, key: Hashable) -> None:
        st = self._peers.pop(key, None)
        if st is None:
            return
        for i in st.have:
            self._availability[i] -= 1
            if self._availability[i] == 0:
                self._held -= 1
        # a piece revealed to a peer that never got it counts as not revealed
        for i in st.outstanding:
            self._move(i, -1)

    def finish(self) -> dict[Hashable, list[int]]:
        """Leave super-seeding: for each peer, the pieces it has neither been told of nor holds (announce
        them with ``have``).  The engine reveals everything from then on."""
        out: dict[Hashable, list[int]] = {}
        for key, st in self._peers.items():
            out[key] = [i for i in range(self.num_pieces) if i not in st.revealed and i not in st.have]
            st.revealed.update(out[key])
            st.outstanding.clear()
        return out

    # ------------------------------------------------------------------ internals

    def _holds(self, st: _PeerState, piece: int) -> None:
        if st.have.add(piece):
            st.outstanding.discard(piece)
            self._gain(piece)

    def _gain(self, piece: int) -> None:
        self._availability[piece] += 1
        if self._availability[piece] == 1:
            self._held += 1

    def _move(self, piece: int, delta: int) -> None:
        k = self._reveals[piece]
        del self._buckets[k][piece]
        k += delta
        self._reveals[piece] = k
        if k == len(self._buckets):
            self._buckets.append({})
        self._buckets[k][piece] = None

    def _top_up(self, st: _PeerState) -> list[int]:
        out: list[int] = []
        while len(st.outstanding) < self.per_peer:
            piece = self._choose(st)
            if piece is None:
                break
            self._reveal(st, piece, out)
        if out and len(st.revealed) == self.num_pieces - 1:
            # never the last piece alone (module docstring): it goes out with this batch
            last = next(i for i in range(self.num_pieces) if i not in st.revealed)
            if last not in st.have:
                self._reveal(st, last, out)
        return out

    def _reveal(self, st: _PeerState, piece: int, out: list[int]) -> None:
        st.revealed.add(piece)
        st.outstanding.add(piece)
        self._move(piece, +1)
        out.append(piece)

    def _choose(self, st: _PeerState) -> int | None:
        """Fewest reveals first, then fewest holders, among pieces the peer lacks and was not told of."""
        have, told, avail = st.have, st.revealed, self._availability
        for bucket in self._buckets:
            best: int | None = None
            best_avail = 0
            for i in bucket:
                if i in have or i in told:
                    continue
                a = avail[i]
                if best is None or a < best_avail:
                    best, best_avail = i, a
                    if a == 0:
                        break
            if best is not None:
                return best
        return None
