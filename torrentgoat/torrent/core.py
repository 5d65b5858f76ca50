"""One torrent being downloaded and/or seeded (level L5): the composition of its parts.

The :class:`Torrent` owns, for one info-hash, the parts that each do one job -- see
``docs/ARCHITECTURE.md`` for the whole picture:

* :class:`~torrentgoat.torrent.connections.Connections`: dialling, admitting, evicting connections;
* :class:`~torrentgoat.torrent.exchange.PeerExchange`: every wire event, requests and interest (the
  pure rules of :mod:`torrentgoat.torrent.policy`), metadata (BEP 9), PEX;
* :class:`~torrentgoat.torrent.blocks.BlockFlow`: blocks in, verified pieces out, bans;
* the :class:`~torrentgoat.torrent.upload.Uploader` and the
  :class:`~torrentgoat.torrent.choking.ChokeScheduler`;
* the peer sources (trackers, the DHT, web seeds), which see it only as a
  :class:`~torrentgoat.torrent.handle.TorrentHandle`.

They share one :class:`~torrentgoat.torrent.swarm.Swarm` record.  This class runs the lifecycle
(:mod:`torrentgoat.torrent.lifecycle`): metadata, storage and the check of what is on disk, the
periodic work, completion and shutdown, and it is the public face users await.

Invariants (issue 3, "Verified pieces only"): a piece is announced, served, counted and reported only
after its hash matched and it was written; a peer that breaks the protocol is dropped; nothing a peer
sends can stop the torrent; memory held by pieces in flight is bounded by
``TorrentConfig.picker.max_partial_bytes``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Coroutine, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from torrentgoat.aio.peer import PeerDriver
from torrentgoat.bitfield import Bitfield
from torrentgoat.errors import (
    DiskFullError,
    LocalProtocolError,
    NoPeerSourcesError,
    RemoteProtocolError,
    StorageError,
    TorrentGoatError,
)
from torrentgoat.infohashes import InfoHashes
from torrentgoat.magnet import Magnet
from torrentgoat.metainfo import InfoDict, Metainfo, parse_info
from torrentgoat.picker import PiecePicker
from torrentgoat.primitives import BlockRef, InfoHash, PeerAddress
from torrentgoat.storage import FileStorage, Storage
from torrentgoat.torrent.blocks import BlockFlow
from torrentgoat.torrent.choking import ChokeScheduler
from torrentgoat.torrent.config import TorrentConfig
from torrentgoat.torrent.connections import Connections
from torrentgoat.torrent.datadir import check_free_space, open_storage
from torrentgoat.torrent.events import (
    CheckCompleted,
    CheckProgressed,
    Completed,
    MetadataReceived,
    ProgressReported,
    Stopped,
    TorrentEvent,
)
from torrentgoat.torrent.exchange import PeerExchange
from torrentgoat.torrent.handle import PeerSource, TorrentContext
from torrentgoat.torrent.hashexchange import HashExchange
from torrentgoat.torrent.holepunch import Holepunching
from torrentgoat.torrent.lifecycle import Counters, Lifecycle, TorrentState
from torrentgoat.torrent.localfill import LocalBlocks
from torrentgoat.torrent.opening import Opening
from torrentgoat.torrent.peer import Peer
from torrentgoat.torrent.peers import CandidatePool
from torrentgoat.torrent.peersearch import PeerSearchReport
from torrentgoat.torrent.pieces import PieceBuffers
from torrentgoat.torrent.recovery import Recovery
from torrentgoat.torrent.resume import ResumeKeeper
from torrentgoat.torrent.streaming import Streams
from torrentgoat.torrent.superseeding import SuperSeeding
from torrentgoat.torrent.swarm import Swarm
from torrentgoat.torrent.upload import Uploader
from torrentgoat.torrent.wirepeer import WirePeer
from torrentgoat.units import format_size

__all__ = ["PeerSource", "Torrent", "TorrentContext"]

log = logging.getLogger("torrentgoat.torrent")


class Torrent:
    """A torrent in a session.  Create through :meth:`Session.add`; see the README for the API.

    It implements :class:`~torrentgoat.torrent.handle.TorrentHandle` for its helpers."""

    def __init__(
        self,
        ctx: TorrentContext,
        *,
        info_hash: InfoHash,
        dest: Path,
        config: TorrentConfig,
        metainfo: Metainfo | None = None,
        magnet: Magnet | None = None,
        sources: list[PeerSource] | None = None,
    ) -> None:
        self.ctx = ctx
        self.info_hash = info_hash
        self.dest = Path(dest)
        self.config = config
        self.metainfo = metainfo
        self.magnet = magnet
        self.sources = list(sources or [])
        self.swarm = Swarm(info=metainfo.info if metainfo is not None else None)
        info = self.swarm.info
        self.name = (
            info.name if info else (magnet.display_name if magnet and magnet.display_name else info_hash.hex)
        )
        self.error: BaseException | None = None
        self.started_at = time.monotonic()
        self.completed_at: float | None = None
        self._lifecycle = Lifecycle()
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._complete = asyncio.Event()
        self._stopped = asyncio.Event()
        self._metadata_ready = asyncio.Event()
        if info is not None:
            self._metadata_ready.set()
        self._stop_reason = ""
        self._subscribers: list[asyncio.Queue[TorrentEvent | None]] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self.opening = Opening(self.swarm, self)
        self.blocks = BlockFlow(
            self.swarm,
            self,
            ban=lambda key, address, reason: self.connections.ban(key, address, reason),
            piece_verified=self._piece_verified,
            piece_retry=lambda: self.exchange.refill_all(),
            write_failed=self._write_failed,
        )
        self.hashes = HashExchange(
            self.swarm,
            self,
            ban=lambda key, address, reason: self.connections.ban(key, address, reason),
            layers_changed=self._layers_changed,
        )
        """BEP 52: hash requests served, piece layers fetched from peers, :meth:`fetch_hashes`."""
        self.exchange = PeerExchange(
            self.swarm,
            self,
            blocks=self.blocks,
            hashes=self.hashes,
            choking=ChokeScheduler(config.choker, rng=ctx.rng),
            metadata_received=self._on_metadata,
        )
        self.local = LocalBlocks(self.swarm, self, self.blocks, refill=lambda: self.exchange.refill_all())
        """Pieces held for, and filled from, local data (a block-level update)."""
        self.connections = Connections(
            self.swarm, self, self.opening, handler=self.exchange, admitted=self._admitted
        )
        self.exchange.connections = self.connections
        self.holepunch = Holepunching(
            self.swarm, self, dial=lambda address: self.connections.dial_now(address, "holepunch")
        )
        """BEP 55: relay, initiator and target of hole punching."""
        self.exchange.holepunch = self.holepunch
        self.connections.dial_failed = self.holepunch.dial_failed
        self.peer_search = PeerSearchReport(self, self.sources, self.connections.pool)
        self.recovery = Recovery(
            self.swarm, self, self.exchange, reopened=self._reopen, settled=self._settled, failed=self._fail
        )
        self.streams = Streams(self.swarm, self)
        self.resume = ResumeKeeper(self.swarm, self, self.dest, layers_restored=self._metainfo_follows)
        """Fast-resume data: read at the check, written periodically and on stop."""
        for text in config.extra_peers:
            self.connections.pool.add(PeerAddress.parse(text), "manual")

    # ------------------------------------------------------------------ what it is and where it is

    @property
    def info(self) -> InfoDict | None:
        return self.swarm.info

    @property
    def info_hashes(self) -> InfoHashes:
        """The v1 and/or v2 info-hashes: from the metadata, else the magnet (BEP 52)."""
        info = self.swarm.info
        if info is not None:
            return info.info_hashes
        named = self.magnet.info_hashes if self.magnet is not None else None
        return named if named is not None else InfoHashes(v1=self.info_hash)

    @property
    def state(self) -> TorrentState:
        return self._lifecycle.state

    @property
    def is_complete(self) -> bool:
        return self._complete.is_set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def counters(self) -> Counters:
        return self.swarm.counters

    @property
    def have(self) -> Bitfield | None:
        return self.swarm.have

    @property
    def picker(self) -> PiecePicker | None:
        return self.swarm.picker

    @property
    def storage(self) -> Storage | None:
        return self.swarm.storage

    @property
    def superseeding(self) -> SuperSeeding | None:
        return self.swarm.superseeding

    @property
    def super_seeding(self) -> bool:
        ss = self.swarm.superseeding
        return ss is not None and ss.active

    @property
    def peers(self) -> dict[int, WirePeer]:
        """Live wire connections by key."""
        return self.swarm.peers

    @property
    def num_peers(self) -> int:
        return len(self.swarm.peers)

    @property
    def pool(self) -> CandidatePool:
        """Addresses we may dial, and the banned ones."""
        return self.connections.pool

    @property
    def buffers(self) -> PieceBuffers:
        return self.blocks.buffers

    @property
    def uploader(self) -> Uploader | None:
        return self.exchange.uploader

    @property
    def uploaded(self) -> int:
        return self.swarm.counters.uploaded

    @property
    def downloaded(self) -> int:
        return self.swarm.counters.downloaded

    @property
    def wasted(self) -> int:
        return self.swarm.counters.wasted

    @property
    def hash_failures(self) -> int:
        return self.swarm.counters.hash_failures

    @property
    def verified_bytes(self) -> int:
        return self.swarm.counters.verified

    @property
    def wanted_bytes(self) -> int:
        return self.swarm.counters.wanted

    @property
    def stop_reason(self) -> str:
        """Why the torrent stopped ("complete", "interrupted", "seed ratio reached", an error ...)."""
        return self._stop_reason

    # ------------------------------------------------------------------ awaiting it

    async def wait_complete(self) -> None:
        """Return once every selected piece is verified; raise if the torrent stopped before that."""
        done = asyncio.ensure_future(self._complete.wait())
        stopped = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({done, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            done.cancel()
            stopped.cancel()
        if not self._complete.is_set():
            if self.error is not None:
                raise TorrentGoatError(f"{self.name}: {self.error}") from self.error
            raise TorrentGoatError(f"{self.name}: stopped before completion ({self._stop_reason})")

    async def wait_stopped(self) -> None:
        """Return once the torrent has fully stopped (peers closed, storage flushed)."""
        await self._stopped.wait()

    async def wait_metadata(self) -> InfoDict:
        await self._metadata_ready.wait()
        assert self.info is not None
        return self.info

    async def events(self) -> AsyncIterator[TorrentEvent]:
        """Progress and notifications until the torrent stops (a bounded queue per subscriber);
        nothing when it has stopped already."""
        if self._stopped.is_set():
            return
        queue: asyncio.Queue[TorrentEvent | None] = asyncio.Queue(maxsize=1000)
        self._subscribers.append(queue)
        try:
            while True:
                event = await queue.get()
                if event is None:
                    return
                yield event
        finally:
            if queue in self._subscribers:
                self._subscribers.remove(queue)

    def emit(self, event: TorrentEvent) -> None:
        for queue in self._subscribers:
            if queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()  # drop the oldest: observers must not stall the torrent
            queue.put_nowait(event)

    # ------------------------------------------------------------------ acting on it

    def add_peers(
        self, addresses: Sequence[PeerAddress], source: str, *, swarm_id: InfoHash | None = None
    ) -> int:
        """Addresses to dial (deduplicated, banned ones ignored); returns how many were new.  ``swarm_id``:
        the swarm id they were found under (dialled with it when it is not the torrent's info-hash)."""
        return self.connections.add(addresses, source, swarm_id)

    def adopt(self, driver: PeerDriver) -> bool:
        """Take over an incoming connection whose handshake asked for our info-hash."""
        return self.connections.adopt(driver)

    def stop(self, reason: str = "stopped", *, error: BaseException | None = None) -> None:
        """Stop the torrent (verified pieces stay on disk); with ``error``, it stopped because of it
        (``error`` is kept, and ``wait_complete`` raises with it)."""
        if not self._stop.is_set():
            self._stop_reason = reason
            if error is not None and self.error is None:
                self.error = error
            self._stop.set()

    def now(self) -> float:
        """The event loop's clock (the ``now`` given to the pure engines)."""
        return self._loop.time()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` as a task owned by this torrent (cancelled on stop; a crash stops the torrent)."""
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def data_lost(self, index: int, exc: BaseException) -> None:
        """Piece ``index`` was verified but cannot be read back, or its file changed: the pieces of
        its files are taken back (BEP 54), checked again, and what is gone is fetched again
        (:mod:`torrentgoat.torrent.recovery`)."""
        self.recovery.lost(index, exc)

    async def fetch_hashes(
        self, file_index: int, base_layer: int, index: int, length: int, *, timeout: float = 30.0
    ) -> list[bytes]:
        """Nodes ``[index, index + length)`` of layer ``base_layer`` of file ``file_index``'s merkle tree
        (BEP 52; layer 0 holds the SHA-256 of each 16 KiB block, the piece layer is
        ``log2(piece_length / 16 KiB)``), each 32 bytes, proved against the file's ``pieces root``.

        ``file_index`` indexes :attr:`InfoDict.files <torrentgoat.metainfo.InfoDict.files>` (a non-empty
        file of a v2 or hybrid torrent); any run inside the layer's data-covering nodes may be asked.
        Our own tree answers when it can, else peers are asked by ``hash request`` one after another
        (a peer whose proof fails is banned).  Waits for the metadata first.  Raises ``ValueError`` for a
        file or range outside the tree, :class:`~torrentgoat.errors.UnsupportedV2Error` on a v1 torrent,
        :class:`~torrentgoat.errors.HashesUnavailableError` when no peer proved them in ``timeout`` s."""
        await self.wait_metadata()
        return await self.hashes.fetch_hashes(file_index, base_layer, index, length, timeout=timeout)

    def stream(self, file_index: int, start: int = 0, stop: int | None = None) -> AsyncGenerator[bytes, None]:
        """The verified bytes ``[start, stop)`` of file ``file_index``, in order, as their pieces arrive:
        the pieces ahead of the reader are fetched first (:mod:`torrentgoat.torrent.streaming`).  Close
        the iterator (``aclose``) to give up early; TorrentGoatError when the torrent stops first."""
        return self.streams.read(file_index, start, stop)

    # --- blocks for peers that are not wire connections (TorrentHandle) ---------------------------

    def attach_peer(self, peer: Peer) -> None:
        self.blocks.attach(peer)

    def detach_peer(self, peer: Peer) -> None:
        self.blocks.detach(peer)

    def pick_blocks(self, peer: Peer, count: int) -> list[BlockRef]:
        return self.blocks.pick(peer, count)

    def deliver_block(self, peer: Peer, block: BlockRef, data: bytes | memoryview) -> bool:
        return self.blocks.take(peer, block, data)

    def release_blocks(self, peer: Peer, blocks: Sequence[BlockRef] | None = None) -> None:
        self.blocks.release(peer, blocks)

    # ------------------------------------------------------------------ running

    async def run(self) -> None:
        """Run until stopped (or until complete, when not seeding)."""
        try:
            if self.info is not None:  # a storage problem is reported before any network traffic
                self.swarm.storage = open_storage(self.info, self.dest, self.config, self.ctx)
            self.spawn(self.connections.run())
            self.spawn(self._ticker())
            for source in self.sources:
                self.spawn(source.run(self))
            if self.info is None:
                self._lifecycle.advance(TorrentState.METADATA)
                waiter = self.spawn(self._metadata_ready.wait())
                stopper = self.spawn(self._stop.wait())
                await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
                if self._stop.is_set():
                    return
                info = await self.wait_metadata()
                self.swarm.storage = open_storage(info, self.dest, self.config, self.ctx)
            await self._prepare()
            if not self._stop.is_set():
                self.spawn(self._choke_loop())
                await self._stop.wait()
        except StorageError as exc:
            self._fail(f"storage error: {exc}", exc)
        except TorrentGoatError as exc:  # e.g. a file selection that matches nothing
            self._fail(str(exc), exc)
        finally:
            await self._shutdown()

    def _fail(self, reason: str, exc: BaseException) -> None:
        """Stop because of ``exc``; ``wait_complete`` raises with ``reason`` (the first one only)."""
        if self.error is not None:
            return
        self.error = exc
        log.info("%s: %s", self.name, reason)  # the error is the torrent's: error, wait_complete()
        self.stop(reason)

    def _write_failed(self, index: int, exc: StorageError) -> None:
        """A verified piece could not be written: stop (what was verified before stays verified)."""
        if isinstance(exc, DiskFullError):
            left = self.swarm.counters.left
            exc = DiskFullError(f"{exc}: {format_size(left)} still to download")
        self._fail(str(exc), exc)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None and not isinstance(exc, asyncio.CancelledError):
            log.error("%s: internal task failed: %r", self.name, exc, exc_info=exc)
            if self.error is None:
                self.error = exc
            self.stop(f"internal error: {exc!r}")

    async def _shutdown(self) -> None:
        self._lifecycle.advance(TorrentState.STOPPING)
        self._stop.set()
        self.streams.close(self._stop_reason or "stopped")
        self.local.close()
        for source in self.sources:
            with contextlib.suppress(TimeoutError, OSError, TorrentGoatError):
                await asyncio.wait_for(source.stopped(), timeout=3.0)
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.connections.close_all("torrent stopped")
        if self.exchange.uploader is not None:
            self.exchange.uploader.close()  # lent descriptors back before the storage closes
        storage = self.swarm.storage
        if storage is not None:
            try:
                await self.ctx.disk.run(storage.flush)
            except StorageError as exc:
                log.warning("%s: flush failed: %s", self.name, exc)
            await self.resume.save()
            await self.ctx.disk.run(storage.close)
        self.blocks.buffers.clear()
        self._lifecycle.advance(TorrentState.STOPPED)
        self._stopped.set()
        self.emit(Stopped(reason=self._stop_reason or "stopped"))
        for queue in self._subscribers:
            try:
                queue.put_nowait(None)
            except asyncio.QueueFull:
                queue.get_nowait()
                queue.put_nowait(None)

    # ------------------------------------------------------------------ metadata and storage

    def _on_metadata(self, raw: bytes) -> None:
        """BEP 9 metadata verified against the info-hash: the torrent becomes a normal one.

        Metadata that hashes to the info-hash but is not a valid (or safe) info dictionary cannot be
        fixed by any peer: the torrent stops with the reason."""
        try:
            info = parse_info(raw)
        except TorrentGoatError as exc:
            self._fail(f"the torrent's metadata is invalid: {exc}", exc)
            return
        named, found = self.info_hashes, info.info_hashes
        if (named.v1 is not None and found.v1 != named.v1) or (named.v2 is not None and found.v2 != named.v2):
            raise LocalProtocolError("metadata does not match the info-hash")  # the fetcher checked it
        self.swarm.info = info
        self.name = info.name
        if self.ctx.swarm_id_found is not None:
            for swarm_id in info.info_hashes.swarm_ids():
                if swarm_id not in named.swarm_ids():  # a btih magnet turned out hybrid (BEP 52)
                    self.ctx.swarm_id_found(swarm_id)
        self.exchange.metadata.set_metadata(info.raw)
        self.exchange.fetcher = None
        self.metainfo = Metainfo(info=info)
        self.emit(MetadataReceived(name=info.name, total_size=info.total_length))
        self._metadata_ready.set()

    async def _prepare(self) -> None:
        """Open storage, verify what is on disk (resume), build the picker, start exchanging pieces."""
        info = self.info
        assert info is not None
        swarm = self.swarm
        self._lifecycle.advance(TorrentState.CHECKING)
        storage = swarm.storage
        assert storage is not None
        wanted = storage.wanted_pieces()
        swarm.counters.wanted = sum(info.piece_size(i) for i in wanted)

        def progress(done: int, total: int) -> None:
            self.emit(CheckProgressed(done_bytes=done, total_bytes=total))

        if isinstance(storage, FileStorage):
            for path in await self.ctx.disk.run(storage.trim_oversized):
                log.warning("%s: %s was longer than the torrent says; cut to size", self.name, path)
        started = time.monotonic()
        have = await self.resume.check(info, storage, wanted=wanted, progress=progress)
        info = self.swarm.info  # with the piece layers the resume data held (BEP 52)
        assert info is not None
        self.spawn(self.resume.run())
        swarm.have = have
        swarm.counters.verified = sum(info.piece_size(i) for i in have)
        self.emit(
            CheckCompleted(
                verified_bytes=swarm.counters.verified,
                wanted_bytes=swarm.counters.wanted,
                seconds=time.monotonic() - started,
            )
        )
        if self.config.check_free_space:
            check_free_space(storage, swarm.counters.left)
        if self.config.require_peer_sources and swarm.counters.left and not self.source_report():
            raise NoPeerSourcesError(
                f"no peer sources for {self.name}: no tracker, DHT, web seed or peer address to find "
                "peers with"
            )
        swarm.picker = PiecePicker(
            info.geometry,
            rng=self.ctx.rng,
            config=self.config.picker,
            have=have,
            priorities=[1 if i in wanted else 0 for i in range(info.num_pieces)],
        )
        self.recovery.start()
        self.exchange.uploader = Uploader(self, info, storage, watch=self.recovery.watch)
        if self.config.super_seed and have.complete:
            swarm.superseeding = SuperSeeding(info.num_pieces, lambda: swarm.have, self.ctx.rng)
        self.blocks.joined_picker()
        if self.config.held_files:
            self.local.hold_files(self.config.held_files)
        self.local.ready.set()
        self.hashes.start()
        self.streams.ready()
        for wp in list(swarm.peers.values()):
            try:
                self.opening.metadata_known(wp)
            except RemoteProtocolError as exc:
                wp.driver.close(f"protocol violation: {exc}")
                continue
            self.exchange.join(wp)
            wp.driver.pump()
        self._lifecycle.advance(TorrentState.DOWNLOADING)
        if swarm.picker.is_complete:
            self._mark_complete()
        for wp in list(swarm.peers.values()):
            self.exchange.update_interest(wp)
            self.exchange.fill_requests(wp)
            wp.driver.flush()

    # ------------------------------------------------------------------ pieces

    def _layers_changed(self) -> None:
        """Piece layers arrived from peers (BEP 52): the .torrent we would save holds them, and the pieces
        they make checkable can be requested."""
        self._metainfo_follows()
        self.resume.layers_changed()
        self.exchange.refill_all()
        if self.is_complete and not self.hashes.layers_missing:
            self.exchange.completed()  # seeds kept for their layers part now

    def _metainfo_follows(self) -> None:
        """The .torrent we would save holds the piece layers known now."""
        info = self.swarm.info
        if info is not None and self.metainfo is not None:
            self.metainfo = replace(self.metainfo, info=info)

    def _admitted(self, wp: WirePeer) -> None:
        """An incoming connection joined: a super-seed reveals its first pieces to it."""
        if self.swarm.superseeding is not None:
            self.swarm.superseeding.peer_ready(wp)

    def _piece_verified(self, index: int) -> None:
        self.recovery.piece_verified(index)
        self.streams.piece_verified(index)
        self.exchange.announce(index)
        picker = self.swarm.picker
        if picker is not None and picker.is_complete and not self.blocks.verifying:
            self._mark_complete()

    def _reopen(self) -> None:
        """Verified pieces of a complete torrent vanished and are fetched again: downloading again."""
        if self._complete.is_set() and not self._stop.is_set():
            self._complete.clear()
            self.completed_at = None
            self._lifecycle.advance(TorrentState.DOWNLOADING)

    def _settled(self) -> None:
        """Pieces taken back were checked again: complete again if nothing is missing."""
        self.streams.have_changed()
        picker = self.swarm.picker
        if picker is not None and picker.is_complete and not self.blocks.verifying:
            self._mark_complete()

    def _mark_complete(self) -> None:
        if self._complete.is_set():
            return
        self.completed_at = time.monotonic()
        self._lifecycle.advance(TorrentState.SEEDING)
        self._complete.set()
        self.emit(Completed(seconds=self.completed_at - self.started_at))
        for source in self.sources:
            source.completed()
        self.exchange.completed()
        self.hashes.derive_from_data()
        if not self.config.seed:
            self.stop("complete")

    def source_report(self) -> list[str]:
        """One line per way of finding peers, saying what it tried (empty: there is none)."""
        return self.peer_search.lines()

    # ------------------------------------------------------------------ periodic work

    async def _choke_loop(self) -> None:
        while not self._stop.is_set():
            self.exchange.rechoke()
            await asyncio.sleep(self.exchange.choking.interval)

    async def _ticker(self) -> None:
        """Once a second: snub detection, metadata retries, PEX, progress, seeding limits."""
        while not self._stop.is_set():
            await asyncio.sleep(1.0)
            self._tick(self._loop.time())

    def _tick(self, now: float) -> None:
        down_rate, up_rate = self.exchange.tick(now)
        self.hashes.pump_all()
        down_rate += self.blocks.meter.rate(now)
        counters = self.swarm.counters
        self.emit(
            ProgressReported(
                verified_bytes=counters.verified,
                wanted_bytes=counters.wanted,
                download_rate=down_rate,
                upload_rate=up_rate,
                peers=len(self.swarm.peers),
                uploaded=counters.uploaded,
                downloaded=counters.downloaded,
                state=self.state,
            )
        )
        self.peer_search.tick(now)
        info = self.info
        if self.is_complete and self.config.seed and info is not None:
            if self.config.seed_ratio and counters.uploaded >= self.config.seed_ratio * info.total_length:
                self.stop("seed ratio reached")
            if self.config.seed_time and self.completed_at is not None:
                if time.monotonic() - self.completed_at >= self.config.seed_time:
                    self.stop("seed time reached")
