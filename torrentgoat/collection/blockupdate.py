"""Block-level update of changed model files (level L5): move only the blocks that changed.

When a model's new version changes a file the previous version held (a fine-tuned layer, a grown
header, tensors appended or reordered), most of its 16 KiB blocks (BEP 52 leaves) are still held
locally, at the same offset or moved.  The new model torrent is hybrid, so its ``.torrent`` (pinned by
the signed manifest) carries every file's merkle ``piece layers``.  The installer starts the torrent
with the changed files *held* (:class:`~torrentgoat.torrent.localfill.LocalBlocks`: no block is
requested) and a :class:`BlockUpdater` then, per changed file:

1. **plans** (:mod:`torrentgoat.blockplan`): for a safetensors file it fetches the new header's blocks
   from the swarm (the only way to know the new layout; they are verified with their piece later) and
   matches tensors with the old header by name, dtype and shape; any other file is planned at the same
   offsets;
2. per held piece, **assembles** the candidate blocks from the old file and, when the whole piece is
   covered, checks its merkle node against the piece layer: a match is verified with no network at
   all;
3. otherwise gets the piece's **leaf hashes** from a peer (BEP 52 ``hash request`` at base layer 0,
   checked with their proof against the piece layer: a :data:`LeafFetcher`) and keeps each block whose
   SHA-256 equals its leaf;
4. **fills** the kept blocks into the torrent, whose peers then fetch only the rest.

The torrent still hashes every complete piece (SHA-1 and merkle node) before writing it, and the
installer checks every file's SHA-256 after that: a wrong guess costs bytes, never correctness.
Anything that goes wrong here (an unreadable old file, an invalid header, no peer answering hash
requests) gives the pieces back to the network.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from torrentgoat.blockplan import ReusePlan, assemble, plan_safetensors, plan_same_offset
from torrentgoat.errors import TorrentGoatError, UnsafeModelError
from torrentgoat.manifest import ManifestFile, ModelEntry
from torrentgoat.merkle import BLOCK_SIZE, HASH_SIZE, piece_root, tree_height, uncle_count
from torrentgoat.metainfo import InfoDict
from torrentgoat.metainfo_v2 import V2File
from torrentgoat.safety import (
    SafetensorsHeader,
    classify_filename,
    safetensors_header_length,
    validate_safetensors_header,
)
from torrentgoat.torrent import Torrent
from torrentgoat.torrent.hashexchange import aligned_runs

__all__ = [
    "HASH_MESSAGE_OVERHEAD",
    "MAX_HEADER_FETCH",
    "V1_ONLY_WAIT",
    "BlockUpdater",
    "ChangedFile",
    "LeafFetcher",
    "UpdateStats",
    "changed_files",
    "leaf_fetcher",
]

log = logging.getLogger("torrentgoat.collection")

LeafFetcher = Callable[[V2File, int, int], Awaitable[bytes | None]]
"""``(file, first leaf, count)`` -> ``count`` leaf hashes of ``file`` (concatenated, proved against its
``pieces root``), or None when no peer gives them; the run covers file data only (BEP 52 ``hash
request`` at base layer 0)."""

HASH_MESSAGE_OVERHEAD = 2 * (4 + 1 + 48)
"""Bytes of a ``hash request`` and the framing of its ``hashes`` reply (BEP 52: length prefix, message
id, pieces root, base layer, index, length, proof layers), besides the hashes themselves."""

V1_ONLY_WAIT = 3.0
"""Seconds a leaf-hash request waits when every connected peer is in the v1 swarm only."""

MAX_HEADER_FETCH = 16 * 1024 * 1024
"""A new safetensors header longer than this is not fetched for planning (the file is planned at the
same offsets instead)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ChangedFile:
    """A file of the new version whose bytes are not held whole, and its previous version."""

    file_index: int
    """Index in the new torrent's ``info.files`` (pad files counted)."""
    new: ManifestFile
    old_path: Path
    old_size: int


@dataclass(slots=True)
class UpdateStats:
    """What a block-level update did (bytes)."""

    reused: int = 0
    """Bytes filled from local data (pad zeros included)."""
    hash_bytes: int = 0
    """Bytes of BEP 52 hash requests and replies (estimated from the hashes received)."""
    hash_requests: int = 0
    pieces_local: int = 0
    """Pieces verified whole from local data, with no network at all."""
    pieces_mixed: int = 0
    """Pieces with some blocks kept by their leaf hash, the rest fetched."""
    pieces_released: int = 0
    """Held pieces handed to the network whole."""
    plans: dict[str, str] = field(default_factory=dict)
    """File path -> how it was planned (``tensors``, ``same-offset``)."""


def changed_files(
    entry: ModelEntry, info: InfoDict, old_dir: Path, old_files: Sequence[ManifestFile], linked: set[str]
) -> list[ChangedFile]:
    """Files of the new version (not ``linked`` whole) that have a previous version of the same path."""
    if info.v2 is None:
        return []
    old_by_path = {f.path: f for f in old_files}
    indices = [i for i, f in enumerate(info.files) if not f.pad]
    out = []
    for f, index in zip(entry.files, indices, strict=True):
        old = old_by_path.get(f.path)
        if f.path in linked or old is None or f.size == 0 or old.size == 0 or old.sha256 == f.sha256:
            continue
        path = old_dir / old.path
        out.append(ChangedFile(file_index=index, new=f, old_path=path, old_size=old.size))
    return out


def leaf_fetcher(torrent: Torrent, *, timeout: float = 15.0) -> LeafFetcher:
    """The torrent's BEP 52 hash requests (:meth:`Torrent.fetch_hashes`, proved against the file's
    ``pieces root``) as a :data:`LeafFetcher`."""

    async def leaves(file: V2File, first: int, count: int) -> bytes | None:
        # connected, but none of them in the v2 swarm (libtorrent over MSE stays v1): do not wait long
        live = list(torrent.peers.values())
        v1_only = bool(live) and not any(torrent.hashes.speaks_v2(wp) for wp in live)
        try:
            hashes = await torrent.fetch_hashes(
                file.index, 0, first, count, timeout=min(timeout, V1_ONLY_WAIT) if v1_only else timeout
            )
        except (TorrentGoatError, ValueError) as exc:
            log.info(
                "%s: leaf hashes %d..%d of file %d: %s",
                torrent.name,
                first,
                first + count - 1,
                file.index,
                exc,
            )
            return None
        return b"".join(hashes)

    return leaves


class BlockUpdater:
    """Fills the held pieces of ``torrent``'s changed files from their previous versions."""

    def __init__(
        self,
        torrent: Torrent,
        files: Sequence[ChangedFile],
        fetch_leaves: LeafFetcher | None,
        *,
        window: int = 8,
    ) -> None:
        self.torrent = torrent
        self.files = list(files)
        self.fetch_leaves = fetch_leaves
        self.window = window
        """Pieces filled but not yet verified at once, at most (bounds the piece buffers)."""
        self.stats = UpdateStats()
        self._no_leaves = False

    @property
    def held_files(self) -> tuple[int, ...]:
        return tuple(f.file_index for f in self.files)

    async def run(self) -> UpdateStats:
        """Fill what can be filled; every held piece is given back to the network in the end."""
        local = self.torrent.local
        try:
            await local.ready.wait()
            for changed in self.files:
                if self.torrent.stopping:
                    break
                try:
                    await self._update_file(changed)
                except (OSError, TorrentGoatError, ValueError) as exc:
                    log.warning(
                        "%s: block-level update of %s failed: %s", self.torrent.name, changed.new.path, exc
                    )
                    self._release_file(changed)
        finally:
            local.release_all()
        self.stats.reused = local.filled
        return self.stats

    # ------------------------------------------------------------------ one file

    def _v2file(self, changed: ChangedFile) -> V2File:
        info = self.torrent.info
        assert info is not None and info.v2 is not None
        for f in info.v2.files:
            if f.index == changed.file_index:
                return f
        raise ValueError(f"file {changed.file_index} has no pieces root")

    def _release_file(self, changed: ChangedFile) -> None:
        file = self._v2file(changed)
        for p in range(file.first_piece, file.end_piece):
            if self.torrent.local.is_held(p):
                self.torrent.local.release(p)
                self.stats.pieces_released += 1

    async def _update_file(self, changed: ChangedFile) -> None:
        file = self._v2file(changed)
        fd = await asyncio.to_thread(os.open, changed.old_path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        try:
            if os.fstat(fd).st_size != changed.old_size:
                raise ValueError(f"{changed.old_path} is not {changed.old_size} bytes long any more")
            plan = await self._plan(changed, file, fd)
            self.stats.plans[changed.new.path] = plan.how
            self._release_uncovered(file, plan)  # the network starts on them while the rest is read
            pending: list[int] = []
            for p in range(file.first_piece, file.end_piece):
                if self.torrent.stopping:
                    return
                if not self.torrent.local.is_held(p):
                    continue
                if await self._fill_piece(file, p, plan, fd):
                    pending.append(p)
                while len(pending) > self.window:
                    oldest = pending.pop(0)
                    await self._wait_settled(oldest)
        finally:
            os.close(fd)

    def _release_uncovered(self, file: V2File, plan: ReusePlan) -> None:
        """Give the network the held pieces of which the plan covers no byte (no I/O needed); their pad
        after the file's end is filled with zeros, never fetched."""
        info, local = self.torrent.info, self.torrent.local
        assert info is not None
        plen = info.piece_length
        for p in range(file.first_piece, file.end_piece):
            start = (p - file.first_piece) * plen
            end = min(file.length, start + plen)
            if local.is_held(p) and not plan.touches(start, end):
                size = info.piece_size(p)
                first_pad = -(-(end - start) // BLOCK_SIZE)
                pads = {
                    b: bytes(min(BLOCK_SIZE, size - b * BLOCK_SIZE))
                    for b in range(first_pad, -(-size // BLOCK_SIZE))
                    if local.block_state(p, b) == "reserved"
                }
                local.fill(p, pads)
                self.stats.pieces_released += 1

    async def _wait_settled(self, index: int) -> None:
        local, info = self.torrent.local, self.torrent.info
        assert info is not None
        blocks = range(-(-info.piece_size(index) // BLOCK_SIZE))
        await local.wait_blocks(index, blocks)
        await local.wait_settled(index)

    # ------------------------------------------------------------------ planning

    async def _plan(self, changed: ChangedFile, file: V2File, fd: int) -> ReusePlan:
        size = changed.new.size
        if classify_filename(changed.new.path) != "safetensors":
            return plan_same_offset(changed.old_size, size)
        try:
            old_header = await asyncio.to_thread(_read_old_header, fd, changed.old_size, changed.new.path)
            new_header = await self._fetch_header(file, size, changed.new.path)
        except UnsafeModelError as exc:
            log.info("%s: %s: planned at the same offsets (%s)", self.torrent.name, changed.new.path, exc)
            return plan_same_offset(changed.old_size, size)
        return plan_safetensors(old_header, changed.old_size, new_header, size)

    async def _read_new(self, file: V2File, start: int, end: int) -> bytes:
        """New-file bytes ``[start, end)`` fetched from the swarm (unverified until their piece is)."""
        info, local = self.torrent.info, self.torrent.local
        assert info is not None
        plen = info.piece_length
        out = []
        at = start
        while at < end:
            piece = file.first_piece + at // plen
            begin = at % plen
            stop = min(end - at + begin, plen)
            blocks = range(begin // BLOCK_SIZE, -(-stop // BLOCK_SIZE))
            local.fetch(piece, blocks)
            while True:
                await local.wait_blocks(piece, blocks)
                data = await local.read(piece, begin, stop - begin)
                if data is not None:
                    break
            out.append(data)
            at += stop - begin
        return b"".join(out)

    async def _fetch_header(self, file: V2File, size: int, name: str) -> SafetensorsHeader:
        prefix = await self._read_new(file, 0, min(8, size))
        length = safetensors_header_length(prefix, size, name=name)
        if length > MAX_HEADER_FETCH:
            raise UnsafeModelError(f"{name}: a {length}-byte header is not fetched for planning")
        data = prefix + await self._read_new(file, 8, 8 + length)
        return validate_safetensors_header(data, size, name=name)

    # ------------------------------------------------------------------ one piece

    async def _fill_piece(self, file: V2File, index: int, plan: ReusePlan, fd: int) -> bool:
        """Fill what can be verified of held piece ``index``; returns whether anything was filled."""
        info, local = self.torrent.info, self.torrent.local
        assert info is not None and info.v2 is not None
        plen = info.piece_length
        size = info.piece_size(index)
        nblocks = -(-size // BLOCK_SIZE)
        file_start = (index - file.first_piece) * plen
        data_length = min(plen, file.length - file_start)
        states = [local.block_state(index, b) for b in range(nblocks)]
        received: dict[int, bytes] = {}
        for b, state in enumerate(states):
            if state == "received":
                begin = b * BLOCK_SIZE
                length = min(BLOCK_SIZE, size - begin)
                if begin >= data_length:
                    received[b] = bytes(length)  # pad: zeros, never downloaded
                    continue
                got = await local.read(index, begin, length)
                if got is not None:
                    received[b] = got
        wanted = [b for b, state in enumerate(states) if state == "reserved"]
        candidates = await asyncio.to_thread(_candidates, plan, fd, wanted, file_start, data_length, size)
        # pad-only blocks (after the file's end) must be zeros for the piece to verify: never fetched
        pads = {b: data for b, data in candidates.items() if b * BLOCK_SIZE >= data_length}
        if len(pads) == len(candidates):
            local.fill(index, pads)  # and the file's blocks go to the network
            self.stats.pieces_released += 1
            return False
        check = info.v2.piece_check(index)
        if len(candidates) + len(received) == nblocks:
            whole = b"".join({**received, **candidates}[b] for b in range(nblocks))
            if (
                await asyncio.to_thread(piece_root, memoryview(whole)[: check.data_length], check.width)
                == check.expected
            ):
                local.fill(index, candidates)
                self.stats.pieces_local += 1
                return True
        leaves = await self._leaves(file, index)
        good = pads if leaves is None else await asyncio.to_thread(_matching, candidates, leaves, data_length)
        if len(good) == len(pads):
            local.fill(index, pads)
            self.stats.pieces_released += 1
            return False
        local.fill(index, good)
        self.stats.pieces_mixed += 1
        return True

    async def _leaves(self, file: V2File, index: int) -> bytes | None:
        """The leaf hashes of piece ``index`` (one per block of the piece's file data)."""
        if self.fetch_leaves is None or self._no_leaves:
            return None
        info = self.torrent.info
        assert info is not None and info.v2 is not None
        per_piece = info.v2.blocks_per_piece
        first = (index - file.first_piece) * per_piece
        count = min(per_piece, file.blocks - first)
        leaves = await self.fetch_leaves(file, first, count)
        self.stats.hash_requests += 1
        if leaves is None or len(leaves) != count * HASH_SIZE:
            self._no_leaves = True  # no peer gives them: do not wait for each piece again
            return None
        # what the requests cost: one per aligned run, its reply carrying the run and its proof to the root
        height = tree_height(file.blocks)
        for _, run in aligned_runs(first, count, 1 << height):
            self.stats.hash_bytes += HASH_MESSAGE_OVERHEAD + HASH_SIZE * (run + uncle_count(run, height - 1))
        return leaves


def _read_old_header(fd: int, size: int, name: str) -> SafetensorsHeader:
    prefix = os.pread(fd, 8, 0)
    length = safetensors_header_length(prefix, size, name=name)
    data = prefix + os.pread(fd, length, 8)
    return validate_safetensors_header(data, size, name=name)


def _candidates(
    plan: ReusePlan, fd: int, blocks: Sequence[int], file_start: int, data_length: int, piece_size: int
) -> dict[int, bytes]:
    """Candidate bytes of the held blocks of one piece (file data from the old file, pad zeros)."""

    def read(offset: int, length: int) -> bytes:
        return os.pread(fd, length, offset)

    out: dict[int, bytes] = {}
    for b in blocks:
        begin = b * BLOCK_SIZE
        length = min(BLOCK_SIZE, piece_size - begin)
        data_len = max(0, min(length, data_length - begin))
        if data_len == 0:
            out[b] = bytes(length)  # all pad: zeros (the piece check demands them)
            continue
        sources = plan.sources(file_start + begin, file_start + begin + data_len)
        if sources is None:
            continue
        out[b] = assemble(read, sources) + bytes(length - data_len)
    return out


def _matching(candidates: dict[int, bytes], leaves: bytes, data_length: int) -> dict[int, bytes]:
    """The candidates whose file bytes hash to their leaf (pad-only blocks kept: they are zeros)."""
    out = {}
    for b, data in candidates.items():
        begin = b * BLOCK_SIZE
        data_len = max(0, min(len(data), data_length - begin))
        if data_len == 0:
            out[b] = data
            continue
        leaf = leaves[b * HASH_SIZE : (b + 1) * HASH_SIZE]
        if hashlib.sha256(memoryview(data)[:data_len]).digest() == leaf:
            out[b] = data
    return out
