"""Pieces filled from local data (level L5): the torrent's side of a block-level update.

A new version of a model file mostly holds bytes of the old one.  The torrent is started with that
file's missing pieces *held* (``TorrentConfig.held_files``; :meth:`PiecePicker.hold` reserves their
blocks, so no peer is asked for them), and whoever knows where the old bytes are (the collection's
updater, :mod:`torrentgoat.collection.blockupdate`) then, per held piece:

* :meth:`LocalBlocks.fill` -- supplies blocks it verified (against the piece's merkle node, or each
  against its BEP 52 leaf hash); the piece's other blocks go to the network;
* :meth:`LocalBlocks.fetch` -- hands chosen blocks to the network (the bytes of a new header, say) and
  :meth:`LocalBlocks.wait_blocks` / :meth:`LocalBlocks.read` wait for and read them, *unverified*
  until their piece is: good enough to plan with, never to install;
* :meth:`LocalBlocks.release` -- gives the whole piece to the network.

Every block, local or not, lands in its piece's buffer and the complete piece is hashed (SHA-1 and
the merkle node of a hybrid) before it is written, counted or announced: nothing unverified is ever
installed.  Local blocks are not counted as downloaded; :attr:`LocalBlocks.filled` counts them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping

from torrentgoat.errors import TorrentGoatError
from torrentgoat.merkle import BLOCK_SIZE
from torrentgoat.torrent.blocks import BlockFlow
from torrentgoat.torrent.handle import TorrentHandle
from torrentgoat.torrent.swarm import Swarm

__all__ = ["LocalBlocks"]


class LocalBlocks:
    """Held pieces of one torrent, and the blocks supplied for them from local data."""

    def __init__(
        self, swarm: Swarm, host: TorrentHandle, flow: BlockFlow, *, refill: Callable[[], None]
    ) -> None:
        self.swarm = swarm
        self.host = host
        self.flow = flow
        self._refill = refill
        self._waiters: dict[int, list[asyncio.Future[None]]] = {}
        self.filled = 0
        """Bytes supplied from local data (new blocks only)."""
        self.ready = asyncio.Event()
        """Set once the picker exists and the held files' pieces are held."""
        flow.piece_settled = self._wake  # flow.block_stored is hooked only while someone waits

    # ------------------------------------------------------------------ holding

    def hold_files(self, file_indices: Iterable[int]) -> list[int]:
        """Hold every piece of these files that is not verified yet; returns the pieces held."""
        info = self.swarm.info
        assert info is not None
        held: list[int] = []
        plen = info.piece_length
        for i in file_indices:
            entry = info.files[i]
            if entry.length == 0 or entry.pad:
                continue
            first, last = entry.offset // plen, (entry.offset + entry.length - 1) // plen
            held.extend(self.hold(range(first, last + 1)))
        return held

    def hold(self, pieces: Iterable[int]) -> list[int]:
        """Hold these pieces (those verified or not wanted are skipped); returns the pieces held."""
        picker = self.swarm.picker
        assert picker is not None
        return [i for i in pieces if picker.hold(i)]

    @property
    def held(self) -> list[int]:
        """Pieces with blocks still held back from the network, ascending."""
        picker = self.swarm.picker
        return picker.held_pieces if picker is not None else []

    def is_held(self, index: int) -> bool:
        picker = self.swarm.picker
        return picker is not None and picker.is_held(index)

    def block_state(self, index: int, block: int) -> str:
        """``have``, ``received``, ``requested``, ``reserved`` or ``free`` (see the picker)."""
        picker = self.swarm.picker
        assert picker is not None
        return picker.block_state(index, block)

    # ------------------------------------------------------------------ supplying and releasing

    def fill(self, index: int, blocks: Mapping[int, bytes]) -> int:
        """Supply verified blocks of piece ``index`` (block number -> bytes, pad zeros included) and hand
        its other held blocks to the network; returns the bytes taken."""
        taken = 0
        for b, data in sorted(blocks.items()):
            if self.flow.fill(index, b * BLOCK_SIZE, data):
                taken += len(data)
        self.filled += taken
        self.release(index)
        return taken

    def fetch(self, index: int, blocks: Iterable[int]) -> None:
        """Let the network fetch these held blocks of piece ``index``."""
        picker = self.swarm.picker
        if picker is not None and picker.unreserve(index, blocks):
            self._refill()

    def release(self, index: int) -> None:
        """Let the network fetch every held block of piece ``index``."""
        picker = self.swarm.picker
        if picker is not None and picker.unreserve(index):
            self._refill()

    def release_all(self) -> None:
        """Give every held piece to the network (the local data could not be used)."""
        picker = self.swarm.picker
        if picker is None:
            return
        freed = sum(picker.unreserve(i) for i in picker.held_pieces)
        if freed:
            self._refill()

    # ------------------------------------------------------------------ reading fetched blocks

    def _received(self, index: int, block: int) -> bool:
        return self.block_state(index, block) in ("received", "have")

    async def wait_blocks(self, index: int, blocks: Iterable[int]) -> None:
        """Return once each of these blocks of piece ``index`` is received or its piece verified;
        TorrentGoatError if the torrent stops first."""
        wanted = list(blocks)
        while not all(self._received(index, b) for b in wanted):
            if self.host.stopping:
                raise TorrentGoatError("the torrent stopped")
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.setdefault(index, []).append(future)
            self.flow.block_stored = self._stored  # a call per stored block: only while needed
            await future

    async def wait_settled(self, index: int) -> None:
        """Return once piece ``index`` holds no buffer any more: verified (or, if it failed, given back to
        the network and not yet started again); TorrentGoatError if the torrent stops first."""
        while self.swarm.have is None or index not in self.swarm.have:
            if self.flow.buffers.get(index) is None and index not in self.flow.verifying:
                return
            if self.host.stopping:
                raise TorrentGoatError("the torrent stopped")
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.setdefault(index, []).append(future)
            await future

    async def read(self, index: int, begin: int, length: int) -> bytes | None:
        """Bytes ``[begin, begin + length)`` of piece ``index``: from its buffer while it is partial
        (unverified), from storage once verified; None when some block of the range is missing."""
        first, last = begin // BLOCK_SIZE, (begin + length - 1) // BLOCK_SIZE
        picker, storage = self.swarm.picker, self.swarm.storage
        if picker is None or storage is None:
            return None
        if index in picker.have:
            return await self.host.ctx.disk.read(storage, index, begin, length)
        buf = self.flow.buffers.get(index)
        if buf is None or not all(picker.block_state(index, b) == "received" for b in range(first, last + 1)):
            return None
        return bytes(buf[begin : begin + length])

    def _stored(self, index: int, begin: int) -> None:
        self._wake(index)

    def _wake(self, index: int) -> None:
        for future in self._waiters.pop(index, ()):
            if not future.done():
                future.set_result(None)
        if not self._waiters:
            self.flow.block_stored = None

    def close(self) -> None:
        """The torrent stops: wake every waiter (it raises)."""
        for index in list(self._waiters):
            self._wake(index)
