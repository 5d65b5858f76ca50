"""Serving block requests from verified data (level L5): BEP 3 ``request`` -> ``piece``.

One task per requesting peer answers its queue in order.  Data comes from the
:class:`~torrentgoat.torrent.pieces.ReadCache` (chunks read once on the disk pool), passes the
session's upload token bucket, and is handed to the wire engine by reference.  When the socket's
write buffer is full the task waits for the transport to drain (backpressure), so memory stays
bounded whatever the peer asks.  Only pieces in our verified have-set are ever served (the wire
engine refuses requests for others before they get here).  With a
:class:`~torrentgoat.torrent.filewatch.FileWatch`, every read from disk also checks that the files
under it did not change since their pieces were verified; a read that fails or finds a changed file
hands the piece to the torrent's ``data_lost`` (which takes it back, BEP 54) and serving goes on with
the peer's other requests.

Peers whose bytes reach a TCP socket unchanged (plain TCP, or MSE with a plaintext payload) are
served from files with ``sendfile`` (``PeerDriver.send_block_direct``): the disk pool lends the
chunk (:class:`~torrentgoat.torrent.pieces.LeaseCache`: descriptors held open, the bytes brought
into the page cache, the files checked unchanged since verification) and the event loop writes each
block's header and sends the block from the page cache -- no copy into Python, no thread hop per
read.  Leases last :data:`LEASE_TTL` seconds, then the files are checked again (their size and
modification time with ``fstat`` before every burst meanwhile).  Encrypted and uTP connections,
pads, skipped files and paced uploads take the read cache.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

from torrentgoat.errors import DataChangedError, StorageError
from torrentgoat.metainfo import InfoDict
from torrentgoat.primitives import BlockRef
from torrentgoat.storage import FileStorage, Storage
from torrentgoat.storage.file import FileLease
from torrentgoat.torrent.filewatch import FileWatch
from torrentgoat.torrent.handle import TorrentHandle
from torrentgoat.torrent.pieces import CHANGED, READ, Lease, LeaseCache, ReadCache
from torrentgoat.torrent.wirepeer import WirePeer
from torrentgoat.wire.fast import allowed_fast_set
from torrentgoat.wire.messages import AllowedFast

__all__ = ["Uploader"]

log = logging.getLogger("torrentgoat.upload")


ALLOWED_FAST = 10
"""Size of the allowed-fast set we offer (BEP 6 suggests 10)."""

BURST = 256 * 1024
"""Bytes of blocks one serving burst queues before it books them and flushes (the driver's own
``WRITE_NOW``: one ``writelines`` per burst)."""

DIRECT_BURST = 4 * 1024 * 1024
"""Bytes of blocks one ``sendfile`` burst writes before the peer yields to the others (no copy is
queued anywhere: what the socket does not take waits in the transport, one block at most)."""
LEASE_CHUNK = 4 * 1024 * 1024
"""Bytes of a piece lent for ``sendfile`` at a time (one disk-pool call each)."""
LEASE_TTL = 1.0
"""Seconds a lease is trusted before its files are checked again."""
LEASES = 128
"""Chunks lent at once: one for each piece in flight to each peer (many peers fetch different
pieces), but each may hold a file open, so no more than the storage's own descriptor cache."""


class Uploader:
    """Answers one torrent's block requests."""

    def __init__(
        self, torrent: TorrentHandle, info: InfoDict, storage: Storage, *, watch: FileWatch | None = None
    ) -> None:
        self.torrent = torrent
        self.info = info
        self.storage = storage
        self.watch = watch if watch is not None and watch.enabled else None
        config = torrent.config
        self.cache = ReadCache(
            self._read,
            chunk=min(config.read_chunk, info.piece_length),
            budget=config.read_cache,
            reader_into=self._read_into,  # chunks land in recycled buffers: no fresh copy per read
        )
        self.leases: LeaseCache | None = None
        if isinstance(storage, FileStorage) and config.sendfile:
            self.leases = LeaseCache(
                self._lend, chunk=min(LEASE_CHUNK, info.piece_length), ttl=LEASE_TTL, capacity=LEASES
            )

    async def _read(self, piece: int, begin: int, length: int) -> bytes:
        buf = bytearray(length)
        await self._read_into(piece, begin, buf)
        return bytes(buf)

    async def _read_into(self, piece: int, begin: int, buf: bytearray | memoryview) -> None:
        # On the disk pool even when the chunk is in the page cache: reading it on the event loop
        # (FileStorage.read_cached_into, RWF_NOWAIT) saves the thread hop and ~0.3 CPU s/GB in all, but
        # moves the 1 MiB copy onto the loop's thread, the one a seeder's speed depends on (measured:
        # +0.2 s/GB there, no faster; benchmarks/README.md, issue 15).
        if self.watch is not None:
            await self.torrent.ctx.disk.run(self.watch.read_into, piece, begin, buf)
        else:
            await self.torrent.ctx.disk.read_into(self.storage, piece, begin, buf)

    async def _lend(self, piece: int, begin: int, length: int) -> Lease | None:
        lease = await self.torrent.ctx.disk.run(self._lend_now, piece, begin, length)
        if lease is not None:
            # Only complete files are watched (we write into the others ourselves, so their size and
            # time change with every piece that arrives): only they are checked before each burst.
            lease.check_only(self.watch.watched if self.watch is not None else ())
        return lease

    def _lend_now(self, piece: int, begin: int, length: int) -> FileLease | None:
        """Disk pool: the lease, its bytes in the page cache, its files unchanged since verified."""
        assert isinstance(self.storage, FileStorage)
        lease = self.storage.lend(piece, begin, length)
        if lease is not None and self.watch is not None:
            try:
                self.watch.check(piece, begin, length)
            except BaseException:
                lease.release()
                raise
        return lease

    def invalidate(self, piece: int) -> None:
        """Piece ``piece`` was taken back: forget its cached bytes and its leases."""
        self.cache.invalidate(piece)
        if self.leases is not None:
            self.leases.invalidate(piece)

    def close(self) -> None:
        """The torrent stops: release every lent descriptor."""
        if self.leases is not None:
            self.leases.close()

    def offer_allowed_fast(self, wp: WirePeer) -> None:
        """BEP 6: tell a starting peer (fewer than ``ALLOWED_FAST`` pieces) with the fast extension which
        pieces of its canonical allowed-fast set we have; it may request those while we choke it, so a
        newcomer gets its first pieces to trade without waiting for an unchoke.  Once per connection;
        never while super-seeding (it would reveal pieces)."""
        engine = wp.driver.engine
        have = self.torrent.have
        address = wp.address
        if wp.allowed_fast_sent or not engine.fast or have is None or address is None:
            return
        if self.torrent.super_seeding:
            return
        theirs = engine.peer_have
        if theirs is not None and theirs.count >= ALLOWED_FAST:
            return
        wp.allowed_fast_sent = True
        for index in allowed_fast_set(address.host, self.info.info_hash, self.info.num_pieces, ALLOWED_FAST):
            if index in have and (theirs is None or index not in theirs):
                engine.send(AllowedFast(index=index))

    def on_requests(self, wp: WirePeer, requests: list[tuple[int, int, int]]) -> None:
        """:meth:`on_request` for the requests of one socket read (``(index, begin, length)`` each)."""
        have = self.torrent.have
        if have is None:
            return
        queue = wp.upload_queue
        queue.extend(r for r in requests if r[0] in have)  # the engine refused the others already
        if queue and not wp.serving:
            wp.serving = True
            self.torrent.spawn(self._serve(wp))

    def on_request(self, wp: WirePeer, block: BlockRef) -> None:
        have = self.torrent.have
        if have is None or block.piece not in have:
            return  # the engine already refused requests for pieces we lack
        wp.upload_queue.append((block.piece, block.begin, block.length))
        if not wp.serving:
            wp.serving = True
            self.torrent.spawn(self._serve(wp))

    async def _serve(self, wp: WirePeer) -> None:
        """Answer one peer's requests in order (read cache, rate limit, backpressure).

        Requests are served in bursts of up to :data:`BURST` bytes: blocks whose chunk is cached go
        to the wire engine without any ``await``, and the burst's bookkeeping (rate meter, counters)
        and its flush to the socket happen once per burst, not once per 16 KiB block.  Only a cache
        miss (a disk read), the rate limit or a full socket buffer suspends the task."""
        torrent, info, cache = self.torrent, self.info, self.cache
        driver = wp.driver
        engine = driver.engine
        queue = wp.upload_queue
        limit = torrent.ctx.upload_limit
        leases = self.leases
        try:
            while queue and not driver.closed:
                if (
                    leases is not None
                    and limit.unlimited
                    and driver.direct
                    and await self._burst_direct(wp, leases)
                ):
                    if not driver.writable:
                        wp.writable.clear()
                        await wp.writable.wait()
                    elif queue:
                        await asyncio.sleep(0)
                    continue
                sent = 0
                while queue and sent < BURST:
                    piece, begin, length = queue.popleft()
                    if not engine.has_peer_request(piece, begin, length):
                        continue  # cancelled, or dropped by our choke
                    data = cache.cached(piece, begin, length)
                    if data is None:
                        if sent:  # what is ready goes out before we wait for the disk
                            self._sent(wp, sent)
                            sent = 0
                        try:
                            data = await cache.read(piece, begin, length, info.piece_size(piece))
                        except StorageError as exc:
                            # Verified data that cannot be read back (or whose file changed) was
                            # altered under us: the torrent takes the piece back, which withdraws
                            # this request.
                            torrent.data_lost(piece, exc)
                            continue
                        if driver.closed:
                            return
                        if not engine.has_peer_request(piece, begin, length):
                            continue  # cancelled meanwhile, or its piece was taken back
                    if not limit.unlimited:
                        await limit.acquire(length)
                        if driver.closed:
                            return
                    if engine.send_piece(piece, begin, data):
                        sent += length
                        if not limit.unlimited:  # a paced upload goes out block by block
                            self._sent(wp, sent)
                            sent = 0
                if sent:
                    self._sent(wp, sent)
                if not driver.writable:
                    wp.writable.clear()
                    await wp.writable.wait()
                elif queue:
                    await asyncio.sleep(0)  # the other peers' bursts first: every peer served in turn
        finally:
            wp.serving = False

    async def _burst_direct(self, wp: WirePeer, leases: LeaseCache) -> bool:
        """Serve up to :data:`BURST` bytes of ``wp``'s queue with ``sendfile``; False when the block at
        the head of the queue cannot be sent from a file (the caller reads it)."""
        torrent, info = self.torrent, self.info
        driver = wp.driver
        engine = driver.engine
        queue = wp.upload_queue
        if not driver.begin_direct():
            return True  # wait until the transport drained
        now = torrent.now()
        leases.next_burst()
        sent = 0
        ahead = True
        direct = True
        at = -1  # the piece of the span in hand: its bytes [lo, hi) are in file fd at offset + delta
        fd = delta = lo = hi = 0
        while queue and sent < DIRECT_BURST:
            piece, begin, length = queue[0]
            if piece != at or begin < lo or begin + length > hi:
                at = -1
                where = leases.find(piece, begin, length, now)
                if where is None:
                    if sent:
                        self._sent(wp, sent)
                        sent = 0
                    try:
                        await leases.lend(piece, begin, info.piece_size(piece), now)
                    except StorageError as exc:
                        queue.popleft()
                        torrent.data_lost(piece, exc)  # as a failed read: the piece is taken back
                        continue
                    if not driver.begin_direct():  # other code ran meanwhile: its output goes first
                        return True
                    now = torrent.now()
                    continue
                if where is READ:
                    direct = False
                    break
                if where is CHANGED:
                    queue.popleft()
                    torrent.data_lost(
                        piece, DataChangedError(f"a file of piece {piece} changed on disk while seeding")
                    )
                    continue
                fd, delta, lo, hi = where
                at = piece
                if ahead:  # lend the chunk of the last queued request before it is needed
                    ahead = False
                    self._lend_ahead(queue, leases, now)
            queue.popleft()
            header = engine.answer_request(piece, begin, length)
            if header is None:
                continue  # cancelled, or dropped by our choke
            if not driver.send_block_direct(header, fd, begin + delta, length):
                torrent.data_lost(piece, StorageError(f"piece {piece}: {driver.close_reason}"))
                return True
            sent += length
            if not driver.writable or driver.closed:
                break
        if sent:
            self._sent(wp, sent)
        return direct

    def _lend_ahead(self, queue: deque[tuple[int, int, int]], leases: LeaseCache, now: float) -> None:
        piece, begin, _ = queue[-1]
        if not leases.pending(piece, begin):
            self.torrent.spawn(self._lend_quietly(leases, piece, begin, now))

    async def _lend_quietly(self, leases: LeaseCache, piece: int, begin: int, now: float) -> None:
        try:
            await leases.lend(piece, begin, self.info.piece_size(piece), now)
        except StorageError:
            pass  # the request itself will meet the error and report it

    def _sent(self, wp: WirePeer, size: int) -> None:
        """Book ``size`` bytes of blocks queued on ``wp``'s engine and write them out."""
        torrent = self.torrent
        wp.up.add(size, torrent.now())
        torrent.counters.uploaded += size
        wp.driver.flush()
