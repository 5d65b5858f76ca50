"""Serving block requests from verified data (level L5): BEP 3 ``request`` -> ``piece``.

One task per requesting peer answers its queue in order.  Data comes from the
:class:`~torrentgoat.torrent.pieces.ReadCache` (chunks read once on the disk pool), passes the
session's upload token bucket, and is handed to the wire engine by reference.  When the socket's
write buffer is full the task waits for the transport to drain (backpressure), so memory stays
bounded whatever the peer asks.  Only pieces in our verified have-set are ever served (the wire
engine refuses requests for others before they get here).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from torrentgoat.errors import StorageError
from torrentgoat.metainfo import InfoDict
from torrentgoat.primitives import BlockRef
from torrentgoat.storage import Storage
from torrentgoat.torrent.pieces import ReadCache
from torrentgoat.wire.fast import allowed_fast_set
from torrentgoat.wire.messages import AllowedFast

if TYPE_CHECKING:
    from torrentgoat.torrent.core import Torrent
    from torrentgoat.torrent.peers import PeerState

__all__ = ["Uploader"]

log = logging.getLogger("torrentgoat.upload")


ALLOWED_FAST = 10
"""Size of the allowed-fast set we offer (BEP 6 suggests 10)."""


class Uploader:
    """Answers one torrent's block requests."""

    def __init__(self, torrent: Torrent, info: InfoDict, storage: Storage) -> None:
        self.torrent = torrent
        self.info = info
        self.storage = storage
        config = torrent.config
        self.cache = ReadCache(
            self._read,
            chunk=min(config.read_chunk, info.piece_length),
            budget=config.read_cache,
            reader_into=self._read_into,  # chunks land in recycled buffers: no fresh copy per read
        )

    async def _read(self, piece: int, begin: int, length: int) -> bytes:
        return await self.torrent.ctx.disk.read(self.storage, piece, begin, length)

    async def _read_into(self, piece: int, begin: int, buf: bytearray | memoryview) -> None:
        await self.torrent.ctx.disk.read_into(self.storage, piece, begin, buf)

    def offer_allowed_fast(self, ps: PeerState) -> None:
        """BEP 6: tell a starting peer (fewer than ``ALLOWED_FAST`` pieces) with the fast extension which
        pieces of its canonical allowed-fast set we have; it may request those while we choke it, so a
        newcomer gets its first pieces to trade without waiting for an unchoke.  Once per connection;
        never while super-seeding (it would reveal pieces)."""
        engine = ps.driver.engine
        have = self.torrent.have
        address = ps.address
        if ps.allowed_fast_sent or not engine.fast or have is None or address is None:
            return
        superseeding = self.torrent.superseeding
        if superseeding is not None and superseeding.active:
            return
        theirs = engine.peer_have
        if theirs is not None and theirs.count >= ALLOWED_FAST:
            return
        ps.allowed_fast_sent = True
        for index in allowed_fast_set(address.host, self.info.info_hash, self.info.num_pieces, ALLOWED_FAST):
            if index in have and (theirs is None or index not in theirs):
                engine.send(AllowedFast(index=index))

    def on_request(self, ps: PeerState, block: BlockRef) -> None:
        have = self.torrent.have
        if have is None or block.piece not in have:
            return  # the engine already refused requests for pieces we lack
        ps.upload_queue.append(block)
        if not ps.serving:
            ps.serving = True
            self.torrent.spawn(self._serve(ps))

    async def _serve(self, ps: PeerState) -> None:
        """Answer one peer's requests in order (read cache, rate limit, backpressure)."""
        torrent, info, cache = self.torrent, self.info, self.cache
        engine = ps.driver.engine
        limit = torrent.ctx.upload_limit
        try:
            while ps.upload_queue and not ps.driver.closed:
                block = ps.upload_queue.popleft()
                if not engine.has_peer_request(block.piece, block.begin, block.length):
                    continue  # cancelled, or dropped by our choke
                try:
                    data = await cache.read(
                        block.piece, block.begin, block.length, info.piece_size(block.piece)
                    )
                except StorageError as exc:
                    # Verified data that cannot be read back was changed or removed under us: stop
                    # claiming anything (libtorrent puts the torrent in an error state likewise).
                    torrent.data_lost(block.piece, exc)
                    return
                await limit.acquire(block.length)
                if ps.driver.closed:
                    return
                if engine.send_piece(block.piece, block.begin, data):
                    ps.up.add(block.length, torrent.now())
                    torrent.uploaded += block.length
                    ps.driver.flush()
                if not ps.driver.writable:
                    ps.writable.clear()
                    await ps.writable.wait()
        finally:
            ps.serving = False
