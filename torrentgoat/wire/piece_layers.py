"""Piece layers from peers (BEP 52), level L2: a pure engine for the hash-request side of a download.

A torrent started from a magnet gets its ``info`` by BEP 9 but not the ``piece layers`` (they live
outside ``info``), so the pieces of a file larger than one piece cannot be verified until its layer has
come from peers by ``hash request`` / ``hashes``.  :class:`PieceLayerFetcher` decides what to ask and
checks every answer:

* **what** -- each file's piece layer, in runs of at most :data:`CHUNK` hashes (libtorrent's 512), at the
  piece layer (``base layer`` = log2(piece length / 16 KiB)), ``index`` a multiple of 512, ``length``
  the next power of two of what is left (at least 2: BEP 52 "Length MUST be equal-to-or-greater-than
  two", the rule libtorrent 2.1 itself breaks for 512 n + 1 pieces), ``proof layers`` reaching the root
  (we trust nothing but the ``pieces root`` from the verified ``info``);
* **from whom** -- a peer that has at least one piece the run covers (BEP 52: prefer requests "where they
  can be certain that the other party must have the necessary data"), never a run that peer rejected,
  one run at a time per peer unless ``max_per_peer`` says more; a run asked longer than ``timeout`` ago
  may be asked of another peer too;
* **checks** -- a ``hashes`` reply must answer a request we sent that peer, carry exactly ``length`` plus
  :func:`~torrentgoat.merkle.uncle_count` hashes, lead through its uncles to the file's root, and hold
  pad hashes beyond the file's last piece; anything else raises
  :class:`~torrentgoat.errors.InvalidHashesError` (drop and ban the peer, as for bad data);
* **events** -- :class:`PieceLayerVerified` for each file whose layer is complete and
  :class:`PieceLayersCompleted` once none is missing; :meth:`PieceLayerFetcher.piece_layers` then goes
  to :meth:`torrentgoat.metainfo_v2.InfoV2.with_piece_layers`.

No clock and no I/O: ``now`` is passed in; peers are any hashable keys the driver chooses.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

from torrentgoat.errors import InvalidHashesError
from torrentgoat.merkle import (
    HASH_SIZE,
    pad_hash,
    piece_height,
    root_from_piece_layer,
    tree_height,
    verify_range,
)
from torrentgoat.metainfo import InfoDict
from torrentgoat.metainfo_v2 import V2File
from torrentgoat.wire.hashes import Hashes, HashReject, HashRequest

__all__ = [
    "CHUNK",
    "PieceLayerEvent",
    "PieceLayerFetcher",
    "PieceLayerVerified",
    "PieceLayersCompleted",
]

CHUNK = 512
"""Most piece-layer hashes asked in one request (BEP 52: "Length SHOULD NOT be greater than 512")."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PieceLayerVerified:
    """Every hash of one file's piece layer arrived and proved against its ``pieces root``."""

    file_index: int
    pieces_root: bytes
    layer: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class PieceLayersCompleted:
    """No piece layer is missing any more: every piece can be verified."""

    piece_layers: dict[bytes, bytes]


PieceLayerEvent = PieceLayerVerified | PieceLayersCompleted


@dataclass(slots=True)
class _Run:
    file: V2File
    start: int
    """First piece-layer index (a multiple of :data:`CHUNK`)."""
    length: int
    """Hashes asked: a power of two >= 2 covering the run's real pieces."""
    hashes: bytes | None = None
    asked: dict[Hashable, float] = field(default_factory=dict)
    refused: set[Hashable] = field(default_factory=set)

    @property
    def real(self) -> int:
        """Pieces of the file inside this run (the rest of ``length`` is padding)."""
        return min(self.length, self.file.num_pieces - self.start)


class PieceLayerFetcher:
    """Which hash requests to send and how to check the answers (see the module docstring)."""

    def __init__(self, info: InfoDict, *, timeout: float = 10.0, max_per_peer: int = 1) -> None:
        if info.v2 is None:
            raise ValueError("a v1 torrent has no piece layers to fetch")
        self._info = info
        self._timeout = timeout
        self._max_per_peer = max_per_peer
        self._base = piece_height(info.piece_length)
        self._runs: list[_Run] = []
        self._done: dict[bytes, bytes] = {}
        roots: set[bytes] = set()
        for file in info.v2.missing_piece_layers():
            if file.root in roots:
                continue  # identical files share one tree
            roots.add(file.root)
            for start in range(0, file.num_pieces, CHUNK):
                left = file.num_pieces - start
                length = max(2, min(CHUNK, 1 << (left - 1).bit_length()))
                self._runs.append(_Run(file=file, start=start, length=length))
        self._pending = len(self._runs)
        self._finished = not self._runs

    # ------------------------------------------------------------------------------------ state

    @property
    def done(self) -> bool:
        """Every missing piece layer has arrived (true at once when none was missing)."""
        return self._pending == 0

    @property
    def runs_left(self) -> int:
        return self._pending

    def piece_layers(self) -> dict[bytes, bytes]:
        """The piece layers verified so far, ``pieces root`` -> layer."""
        return dict(self._done)

    def _height(self, file: V2File) -> int:
        return tree_height(file.blocks)

    def _request(self, run: _Run) -> HashRequest:
        return HashRequest(
            pieces_root=run.file.root,
            base_layer=self._base,
            index=run.start,
            length=run.length,
            proof_layers=self._height(run.file) - self._base - 1,
        )

    def layer_known(self, root: bytes, layer: bytes) -> None:
        """The layer of ``root`` was learnt some other way (proved by the caller): ask no more for it.
        Answers still in flight for it are checked and then ignored."""
        for run in self._runs:
            if run.file.root == root and run.hashes is None:
                run.hashes = layer[run.start * HASH_SIZE : (run.start + run.real) * HASH_SIZE]
                self._pending -= 1
        self._done.setdefault(root, layer)
        if self._pending == 0:
            self._finished = True

    # ---------------------------------------------------------------------------------- asking

    def next_request(
        self, peer: Hashable, now: float, *, peer_has: Callable[[int], bool] | None = None
    ) -> HashRequest | None:
        """The next request to send ``peer``, or ``None``; ``peer_has(piece)`` tells which pieces it has
        (``None``: assume all, e.g. a seed).  The request counts as in flight from ``now``."""
        if sum(1 for run in self._runs if peer in run.asked) >= self._max_per_peer:
            return None
        for run in self._runs:
            if run.hashes is not None or peer in run.refused or peer in run.asked:
                continue
            if any(now - when < self._timeout for when in run.asked.values()):
                continue
            first = run.file.first_piece + run.start
            if peer_has is not None and not any(peer_has(p) for p in range(first, first + run.real)):
                continue
            run.asked[peer] = now
            return self._request(run)
        return None

    def _outstanding(self, peer: Hashable, request: HashRequest) -> _Run:
        for run in self._runs:
            if peer in run.asked and self._request(run) == request:
                return run
        raise InvalidHashesError(
            f"hashes for root {request.pieces_root.hex()[:16]}.. index {request.index} length {request.length}"
            " answer no hash request we sent this peer"
        )

    def receive_reject(self, peer: Hashable, message: HashReject) -> None:
        """The peer declined: ask someone else, never this peer again for that run."""
        run = self._outstanding(peer, message.request)
        del run.asked[peer]
        run.refused.add(peer)

    def peer_gone(self, peer: Hashable) -> None:
        """Forget ``peer``'s requests in flight (disconnected)."""
        for run in self._runs:
            run.asked.pop(peer, None)
            run.refused.discard(peer)

    # -------------------------------------------------------------------------------- receiving

    def receive_hashes(self, peer: Hashable, message: Hashes, now: float) -> list[PieceLayerEvent]:
        """Check a ``hashes`` reply and keep its hashes; raises :class:`InvalidHashesError` when the peer is
        at fault (unsolicited, wrong size, bad proof)."""
        request = message.request
        run = self._outstanding(peer, request)
        del run.asked[peer]
        expected = (request.length + request.uncles) * HASH_SIZE
        if len(message.hashes) != expected:
            raise InvalidHashesError(
                f"hashes reply holds {len(message.hashes) // HASH_SIZE} hashes, the request needs"
                f" {expected // HASH_SIZE}"
            )
        base, uncles = message.base_hashes, message.uncle_hashes
        ok = verify_range(
            run.file.root,
            total_height=self._height(run.file),
            base=request.base_layer,
            index=request.index,
            hashes=base,
            uncles=uncles,
        )
        if not ok:
            raise InvalidHashesError("hashes reply does not prove against the file's pieces root")
        pad = pad_hash(self._base)
        if any(base[i * HASH_SIZE : (i + 1) * HASH_SIZE] != pad for i in range(run.real, run.length)):
            raise InvalidHashesError("hashes reply has a non-padding hash beyond the file's last piece")
        if run.hashes is not None:
            return []  # asked twice after a timeout; the first answer already counted
        run.hashes = base[: run.real * HASH_SIZE]
        self._pending -= 1
        return self._complete(run.file)

    def _complete(self, file: V2File) -> list[PieceLayerEvent]:
        runs = [run for run in self._runs if run.file is file]
        if any(run.hashes is None for run in runs):
            return []
        layer = b"".join(run.hashes or b"" for run in sorted(runs, key=lambda r: r.start))
        if root_from_piece_layer(layer, file.blocks, self._info.piece_length) != file.root:
            raise InvalidHashesError(
                "assembled piece layer does not hash to the pieces root"
            )  # pragma: no cover
        events: list[PieceLayerEvent] = [
            PieceLayerVerified(file_index=file.index, pieces_root=file.root, layer=layer)
        ]
        if file.root not in self._done:
            self._done[file.root] = layer
        if self._pending == 0 and not self._finished:
            self._finished = True
            events.append(PieceLayersCompleted(piece_layers=dict(self._done)))
        return events
