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

:class:`PiecePicker` is built from two base classes over one shared state, one job per module (as
:class:`~torrentgoat.wire.PeerConnection` is), so that :meth:`~PiecePicker.pick`,
:meth:`~PiecePicker.block_received` and :meth:`~PiecePicker.peer_have` stay one call deep:

* :mod:`torrentgoat.picker.availability` -- :class:`~torrentgoat.picker.availability.AvailabilityIndex`:
  who has what (peers' have-sets, availability, seeds) and the candidate pieces in buckets keyed by
  ``(priority, availability)`` (libtorrent's sorted piece list), so a rarest-first pick costs
  O(blocks returned) rather than O(pieces);
* :mod:`torrentgoat.picker.blocks` -- :class:`~torrentgoat.picker.blocks.BlockBook`: per-block state of
  the partial pieces, endgame duplicates and request outcomes (``piece``, ``cancel``, ``reject``,
  choke, timeout, snub);
* this module -- the face: construction, the strategy, piece priorities, our have-set and hash
  results, interest, endgame detection and :meth:`~PiecePicker.pick`.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from torrentgoat.bitfield import Bitfield
from torrentgoat.errors import ConfigError, LocalProtocolError
from torrentgoat.geometry import PieceGeometry
from torrentgoat.metainfo import InfoDict
from torrentgoat.picker.availability import PeerKey
from torrentgoat.picker.blocks import BlockArrival, BlockBook, BlocksArrival
from torrentgoat.picker.config import PickerConfig
from torrentgoat.picker.layout import (
    MAX_PRIORITY,
    SpanLike,
    file_priorities_to_piece_priorities,
)
from torrentgoat.picker.strategy import PieceStrategy, create_strategy, random_order
from torrentgoat.primitives import BlockRef

__all__ = ["BlockArrival", "BlocksArrival", "PeerKey", "PiecePicker"]


class PiecePicker(BlockBook):
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
        self._config = config or PickerConfig()
        self._rng = rng
        n = layout.num_pieces
        if have is not None and have.length != n:
            raise ConfigError(f"have-set of {have.length} pieces for a torrent of {n} pieces")
        super().__init__(layout, self._config.partial_cap(layout.piece_length))
        self._have = have.copy() if have is not None else Bitfield(n)
        self._prio = bytearray(b"\x01" * n)
        self._need = bytearray((n + 7) // 8)
        """Wanted pieces we lack, as a big-endian bit string (for :meth:`interesting`)."""
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

    def priority(self, index: int) -> int:
        return self._prio[index]

    def first_missing(self) -> int:
        c = self._first_missing
        n, prio, have = self._n, self._prio, self._have
        while c < n and (not prio[c] or c in have):
            c += 1
        self._first_missing = c
        return c

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
        if self._untouched_available():
            return False
        prio, avail, seeds = self._prio, self._avail, self._seeds
        return not any(prio[i] and (avail[i] or seeds) for i in self._open)

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
        contributors = frozenset(key for key in part.received_from if key is not None)
        self._drop_partial(index)
        self._sync(index)
        return contributors

    # ------------------------------------------------------------------ picking

    def pick(self, peer_key: PeerKey, peer_have: Bitfield, count: int, *, now: float) -> list[BlockRef]:
        """Up to ``count`` new block requests for ``peer_key``, recorded as requested from it.

        Never a block the peer lacks, a block of a priority-0 piece, or a block already received;
        never a block already requested unless in endgame (then never twice from the same peer)."""
        blocks: list[BlockRef] = self._pick(peer_key, peer_have, count, now, False)
        return blocks

    def pick_spans(
        self, peer_key: PeerKey, peer_have: Bitfield, count: int, *, now: float
    ) -> list[tuple[int, int, int]]:
        """:meth:`pick`, the blocks as ``(index, begin, length)`` tuples (no object per block: the
        download hot path)."""
        spans: list[tuple[int, int, int]] = self._pick(peer_key, peer_have, count, now, True)
        return spans

    def _pick(self, peer_key: PeerKey, peer_have: Bitfield, count: int, now: float, spans: bool) -> list[Any]:
        out: list[Any] = []
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
                self._take(i, self._partials[i], peer_key, reqs, out, count, now, spans)
                if len(out) >= count:
                    return out
        # 2. open new pieces in strategy order
        if self._busy() < self._cap and self._index_size:
            if self._have.count < self._config.initial_random_pieces and self._strategy.random_start:
                order = random_order(self, peer_have)
            else:
                order = self._strategy.order(self, peer_have)
            keyof = self._keyof
            for i in order:
                if keyof[i] < 0 or i not in peer_have:
                    continue
                self._take(i, self._start(i), peer_key, reqs, out, count, now, spans)
                if len(out) >= count or self._busy() >= self._cap:
                    break
        # 3. endgame: duplicate in-flight blocks
        if len(out) < count and self.in_endgame:
            self._pick_endgame(peer_key, peer_have, reqs, out, count, now, spans)
        return out
