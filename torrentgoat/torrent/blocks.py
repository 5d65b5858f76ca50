"""Blocks in, verified pieces out (level L5): the one path every received block takes.

A block from a wire peer or a web seed is offered to the picker; a new one is copied into its
piece's buffer (:class:`~torrentgoat.torrent.pieces.PieceBuffers`), duplicates are counted as waste,
and peers that still had it requested are told ``cancel`` (BEP 3 endgame).  A complete piece is
hashed on the hash pool; only if it matches is it written and announced (issue 3, "Verified pieces
only").  A failed piece is fetched again and its contributors are blamed: a sole contributor at once,
several through :class:`~torrentgoat.torrent.smartban.SmartBan` once the piece verifies; a web seed
drops its URL (BEP 19).  Memory held by pieces in flight is bounded by the picker's partial-piece cap
(``TorrentConfig.picker.max_partial_bytes``).

BEP 47 pad bytes are never downloaded: blocks wholly inside pad files count as received when their
piece starts (:meth:`PiecePicker.set_known_blocks`), and every pad byte of a piece is zeroed in its
buffer before the piece is hashed.

Blocks supplied from local data (:meth:`BlockFlow.fill`, a block-level update) take the same path under
the contributor key :data:`LOCAL`, without counting as downloaded: their piece is hashed like any other
before it counts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Sequence
from functools import partial
from typing import Any

from torrentgoat.bitfield import Bitfield
from torrentgoat.errors import LocalProtocolError, StorageError
from torrentgoat.metainfo import InfoDict
from torrentgoat.picker import BlockArrival
from torrentgoat.primitives import BLOCK_SIZE, BlockRef, PeerAddress
from torrentgoat.rates import RateMeter
from torrentgoat.torrent.events import PieceFailed
from torrentgoat.torrent.handle import TorrentHandle
from torrentgoat.torrent.peer import Peer
from torrentgoat.torrent.pieces import PieceBuffers
from torrentgoat.torrent.policy import pick_requests
from torrentgoat.torrent.smartban import SmartBan
from torrentgoat.torrent.swarm import Swarm

__all__ = ["LOCAL", "BlockFlow", "pad_ranges"]

LOCAL = "local data"
"""The contributor key of blocks supplied from local data (never a peer's key)."""

log = logging.getLogger("torrentgoat.torrent")

Ban = Callable[[Hashable, PeerAddress | None, str], None]
"""Ban a peer by key and address, with a reason."""


def pad_ranges(info: InfoDict) -> dict[int, list[tuple[int, int]]]:
    """Per piece, the byte ranges ``(begin, end)`` of BEP 47 pad files inside it."""
    plen = info.piece_length
    out: dict[int, list[tuple[int, int]]] = {}
    for entry in info.files:
        if not entry.pad or entry.length == 0:
            continue
        at, end = entry.offset, entry.offset + entry.length
        while at < end:
            index = at // plen
            stop = min(end, (index + 1) * plen)
            out.setdefault(index, []).append((at - index * plen, stop - index * plen))
            at = stop
    return out


class BlockFlow:
    """Stores, verifies and writes one torrent's blocks; picks for peers that are not wire peers."""

    def __init__(
        self,
        swarm: Swarm,
        host: TorrentHandle,
        *,
        ban: Ban,
        piece_verified: Callable[[int], None],
        piece_retry: Callable[[], None],
        write_failed: Callable[[int, StorageError], None],
    ) -> None:
        self.swarm = swarm
        self.host = host
        self.buffers = PieceBuffers(budget=host.config.picker.max_partial_bytes)
        self.verifying: set[int] = set()
        """Pieces being hashed or written."""
        self.meter = RateMeter(time_constant=5.0)
        """Download rate from peers that are not wire connections (web seeds)."""
        self._ban = ban
        self._piece_verified = piece_verified
        self._piece_retry = piece_retry
        self._write_failed = write_failed
        self._smartban = SmartBan()
        self._full_have: Bitfield | None = None
        self.block_stored: Callable[[int, int], None] | None = None
        """Called with (piece, begin) after each new block is stored in its piece's buffer."""
        self._pads: dict[int, list[tuple[int, int]]] = {}
        """Pad byte ranges ``(begin, end)`` inside each piece (BEP 47: zeros)."""
        self.piece_settled: Callable[[int], None] | None = None
        """Called with a piece's index once its hash check (and write) is over and its buffer dropped,
        whether it passed or not."""

    # ------------------------------------------------------------------ every block

    def deliver(self, key: Hashable, index: int, begin: int, data: Any) -> bool:
        """One block from peer ``key``: keep it if the picker wants it; hash complete pieces."""
        swarm = self.swarm
        picker, info = swarm.picker, swarm.info
        length = len(data)
        counters = swarm.counters
        counters.downloaded += length
        if picker is None or info is None:
            return False
        arrival = picker.block_received(key, BlockRef(index, begin, length))
        if not arrival.new:
            counters.wasted += length
            return False
        return self._store(index, begin, data, arrival)

    def deliver_blocks(self, key: Hashable, blocks: list[tuple[int, int, Any]]) -> int:
        """:meth:`deliver` of a run of blocks from peer ``key`` (one socket read), in one pass through
        the picker and one through the piece buffers; returns the bytes delivered.  A block off the
        piece/block grid raises :class:`RemoteProtocolError` after the blocks before it are stored."""
        swarm = self.swarm
        picker, info = swarm.picker, swarm.info
        counters = swarm.counters
        if picker is None or info is None:
            size = 0
            for _, _, data in blocks:
                size += len(data)
            counters.downloaded += size
            return size
        arrival = picker.blocks_received(key, blocks)
        new, size = arrival.new, arrival.size
        counters.downloaded += size
        counters.wasted += size - arrival.new_size
        self.buffers.write_blocks(new, info.piece_size)
        for index, begin, _ in new if self.block_stored is not None else ():
            hook = self.block_stored  # re-read: a woken waiter may unhook it (LocalBlocks)
            if hook is None:
                break
            hook(index, begin)
        for other_key, block in arrival.cancel:
            other = swarm.peer(other_key)
            if other is not None:
                other.cancel(block)
        for index in arrival.complete:
            self.verifying.add(index)
            self.host.spawn(self._verify(index))
        if arrival.error is not None:
            raise arrival.error
        return size

    def fill(self, index: int, begin: int, data: bytes | memoryview) -> bool:
        """A block from local data (see the module docstring); returns whether it was new."""
        picker, info = self.swarm.picker, self.swarm.info
        if picker is None or info is None:
            return False
        arrival = picker.block_received(LOCAL, BlockRef(index, begin, len(data)))
        return bool(arrival) and self._store(index, begin, data, arrival)

    def _store(self, index: int, begin: int, data: Any, arrival: BlockArrival) -> bool:
        swarm = self.swarm
        info = swarm.info
        assert info is not None
        length = len(data)
        self.buffers.write(index, info.piece_size(index), begin, data)
        if self.block_stored is not None:
            self.block_stored(index, begin)
        for other_key in arrival.cancel:
            other = swarm.peer(other_key)
            if other is not None:
                other.cancel(BlockRef(index, begin, length))
        if arrival.piece_complete:
            self.verifying.add(index)
            self.host.spawn(self._verify(index))
        return True

    async def _verify(self, index: int) -> None:
        """Hash a completed piece; write it and announce it only if it matches (BEP 3)."""
        swarm, host = self.swarm, self.host
        info, picker, storage = swarm.info, swarm.picker, swarm.storage
        assert info is not None and picker is not None and storage is not None and swarm.have is not None
        buf = self.buffers.get(index)
        try:
            if buf is None:
                picker.piece_failed(index)
                return
            for begin, end in self._pads.get(index, ()):
                buf[begin:end] = bytes(end - begin)
            try:  # written by the hashing thread right after its hash matched (one hop per piece)
                ok = await host.ctx.hasher.verify_piece(
                    info, index, buf, then=partial(storage.write_piece, index, buf)
                )
            except StorageError as exc:  # a full disk, a vanished directory: the piece stays missing
                picker.piece_failed(index)
                self._write_failed(index, exc)
                return
            if not ok:
                self._piece_failed(index, buf)
                return
            for culprit in self._smartban.piece_passed(index, buf):
                self._ban(culprit.key, culprit.address, f"sent a corrupt block of piece {index}")
        finally:
            self.verifying.discard(index)
            self.buffers.drop(index)
            if self.piece_settled is not None:
                self.piece_settled(index)
        if host.stopping:
            return
        picker.piece_verified(index)
        swarm.have.add(index)
        swarm.counters.verified += info.piece_size(index)
        self._piece_verified(index)

    def _piece_failed(self, index: int, data: bytearray) -> None:
        """A piece failed its hash check: fetch it again, and find out who to blame."""
        swarm = self.swarm
        picker = swarm.picker
        assert picker is not None
        senders = picker.contributors(index)
        contributors = picker.piece_failed(index)
        swarm.counters.hash_failures += 1
        self.host.emit(PieceFailed(index=index))
        log.warning(
            "%s: piece %d failed its hash check (from %d peers)", self.host.name, index, len(contributors)
        )
        witnesses: dict[int, tuple[Hashable, PeerAddress | None]] = {}
        for block, key in senders.items():
            if key == LOCAL:
                continue
            peer = swarm.peer(key)
            witnesses[block] = (key, peer.address if peer is not None else None)
        self._smartban.piece_failed(index, data, witnesses)
        sole = len(contributors) == 1
        for key in contributors:
            peer = swarm.peer(key) if key != LOCAL else None
            if peer is not None and peer.piece_failed(index, sole=sole):
                self._ban(peer.key, peer.address, f"sent piece {index}, which failed its hash check")
        self._piece_retry()

    # ------------------------------------------------------------------ peers that are not wire peers

    def attach(self, peer: Peer) -> None:
        """A web seed joins: a seed counted in every piece's availability (BEP 19: "the server acts as
        a permanently unchoked seed"), or it would never be asked for a piece no wire peer has."""
        self.swarm.others[peer.key] = peer
        if self.swarm.picker is not None:
            self.swarm.picker.peer_have_all(peer.key)

    def detach(self, peer: Peer) -> None:
        if self.swarm.others.pop(peer.key, None) is not None and self.swarm.picker is not None:
            self.swarm.picker.peer_left(peer.key)

    def joined_picker(self) -> None:
        """The picker exists now (after the check): count the attached peers in it, tell it the pad
        blocks it never needs to request."""
        picker, info = self.swarm.picker, self.swarm.info
        assert picker is not None and info is not None
        for key in self.swarm.others:
            picker.peer_have_all(key)
        self._pads = pad_ranges(info)
        known: dict[int, list[int]] = {}
        for index, ranges in self._pads.items():
            size = info.piece_size(index)
            for begin, end in ranges:
                # blocks wholly inside the pad (a piece's short last block too)
                last = (end - 1) // BLOCK_SIZE if end == size else end // BLOCK_SIZE - 1
                known.setdefault(index, []).extend(range(-(-begin // BLOCK_SIZE), last + 1))
        picker.set_known_blocks(known)

    def pick(self, peer: Peer, count: int) -> list[BlockRef]:
        """Up to ``count`` blocks for an attached peer (recorded as requested by it)."""
        swarm = self.swarm
        picker, info = swarm.picker, swarm.info
        if picker is None or info is None or self.host.stopping or peer.key not in swarm.others:
            return []
        pieces = peer.pieces()
        if pieces is None:
            full = self._full_have
            if full is None or full.length != info.num_pieces:
                full = self._full_have = Bitfield(info.num_pieces, full=True)
            pieces = full
        if swarm.unverifiable:  # BEP 52: pieces without their piece layer cannot be checked yet
            pieces = pieces.copy()
            for index in swarm.unverifiable:
                pieces.discard(index)
        return pick_requests(
            picker, peer.key, pieces, count, now=self.host.now(), cancellable=peer.cancellable
        )

    def take(self, peer: Peer, block: BlockRef, data: bytes | memoryview) -> bool:
        """A block an attached peer fetched; returns whether it was new."""
        if len(data) != block.length:
            raise LocalProtocolError(f"{peer!r} delivered {len(data)} bytes for {block}")
        self.meter.add(len(data), self.host.now())
        return self.deliver(peer.key, block.piece, block.begin, data)

    def release(self, peer: Peer, blocks: Sequence[BlockRef] | None = None) -> None:
        """The peer will not deliver these blocks (all of its blocks when ``None``)."""
        picker = self.swarm.picker
        if picker is None:
            return
        if blocks is None:
            picker.release_peer(peer.key)
        else:
            for block in blocks:
                picker.request_cancelled(peer.key, block)
