"""One torrent being downloaded and/or seeded (level L5): the orchestration of the pure engines.

The :class:`Torrent` owns, for one info-hash: the wire engines of its peers (through their
:class:`~torrentgoat.aio.peer.PeerDriver` s), the piece picker, the choker, piece buffers, storage
and the peer sources (magnet/``--peer`` addresses, trackers, DHT, PEX).  Everything protocol-shaped is
decided by the sans-IO engines; this module only routes their events and awaits disk, hash threads
and sockets.

Invariants kept here (issue 3, "Verified pieces only"):

* a piece is announced (``have``), served, counted and reported only after its SHA-1 matched and
  it was written; a failed piece is dropped and fetched again, and its contributors get a strike
  (a sole contributor is banned at once; with several, only those whose blocks differ from the
  piece once it verifies -- :mod:`torrentgoat.torrent.smartban`);
* memory held by pieces in flight is bounded by ``TorrentConfig.piece_memory`` (the picker's
  partial-piece cap);
* a peer that breaks the protocol is dropped; nothing a peer sends can stop the torrent.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import fnmatch
import ipaddress
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Hashable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from torrentgoat.aio.disk import DiskExecutor
from torrentgoat.aio.hasher import PieceHasher
from torrentgoat.aio.peer import PeerDriver, open_peer_connection
from torrentgoat.aio.ratelimit import TokenBucket
from torrentgoat.bitfield import Bitfield
from torrentgoat.errors import (
    ConfigError,
    LocalProtocolError,
    RemoteProtocolError,
    StorageError,
    TorrentGoatError,
)
from torrentgoat.magnet import Magnet
from torrentgoat.metainfo import InfoDict, Metainfo, parse_info
from torrentgoat.picker import PickerConfig, PiecePicker
from torrentgoat.picker.layout import PieceLayout
from torrentgoat.primitives import BLOCK_SIZE, BlockRef, InfoHash, PeerAddress, PeerId
from torrentgoat.rates import RateMeter
from torrentgoat.storage import FileStorage, Layout, Storage
from torrentgoat.torrent.choking import ChokeScheduler
from torrentgoat.torrent.config import TorrentConfig
from torrentgoat.torrent.events import (
    CheckProgressed,
    Completed,
    MetadataReceived,
    PeerBanned,
    PeerConnected,
    PeerDisconnected,
    PieceFailed,
    ProgressReported,
    Stopped,
    TorrentEvent,
)
from torrentgoat.torrent.peers import CandidatePool, PeerState
from torrentgoat.torrent.pieces import PieceBuffers
from torrentgoat.torrent.smartban import SmartBan
from torrentgoat.torrent.superseeding import SuperSeeding
from torrentgoat.torrent.upload import Uploader
from torrentgoat.wire.connection import PeerConnection, PieceGeometry, WireConfig
from torrentgoat.wire.events import (
    AllowedFastReceived,
    BitfieldReceived,
    BlockReceived,
    BlockRequested,
    ConnectionTimedOut,
    Event,
    ExtensionHandshakeReceived,
    HandshakeReceived,
    HaveReceived,
    MetadataPieceReceived,
    MetadataRejected,
    MetadataRequested,
    PeerChoked,
    PeerInterested,
    PeerNotInterested,
    PeerUnchoked,
    PexReceived,
    PortReceived,
    RequestRejected,
)
from torrentgoat.wire.messages import (
    Cancel,
    Have,
    Interested,
    MetadataRequest,
    NotInterested,
)
from torrentgoat.wire.metadata import MetadataFetcher, MetadataServer

__all__ = ["PeerSource", "Torrent", "TorrentContext"]

log = logging.getLogger("torrentgoat.torrent")


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class PeerSource(abc.ABC):
    """Something that finds peers for a torrent over time (trackers, the DHT).

    ``run(torrent)`` runs until cancelled and calls ``torrent.add_peers``; ``completed()`` and
    ``stopped()`` are hooks for tracker events (BEP 3 ``completed`` / ``stopped``).
    """

    name = "source"

    @abc.abstractmethod
    async def run(self, torrent: Torrent) -> None:
        """Find peers (or fetch blocks) for ``torrent`` until cancelled."""

    def completed(self) -> None:  # noqa: B027 - an optional hook, empty by default
        """The download finished."""

    async def stopped(self) -> None:  # noqa: B027 - an optional hook, empty by default
        """The torrent is stopping: say goodbye (best effort, short)."""


@dataclass(slots=True, kw_only=True)
class TorrentContext:
    """What the session lends each torrent."""

    peer_id: PeerId
    listen_port: int
    hasher: PieceHasher
    disk: DiskExecutor
    rng: random.Random
    wire: WireConfig = field(default_factory=WireConfig)
    upload_limit: TokenBucket = field(default_factory=lambda: TokenBucket(0))
    download_limit: TokenBucket = field(default_factory=lambda: TokenBucket(0))
    add_dht_node: Callable[[PeerAddress], None] | None = None
    """Called with ``(peer ip, port)`` when a peer sends a BEP 5 ``port`` message."""
    max_open_files: int = 128
    """File descriptors one torrent's storage keeps open at once."""
    storage_factory: Callable[[Path, Layout, frozenset[int]], Storage] | None = None
    """Builds storage for a torrent (default: :class:`FileStorage` under the download directory)."""


class Torrent:
    """A torrent in a session.  Create through :meth:`Session.add`; see the README for the API."""

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
        self.info: InfoDict | None = metainfo.info if metainfo is not None else None
        self.name = (
            self.info.name
            if self.info
            else (magnet.display_name if magnet and magnet.display_name else info_hash.hex)
        )
        self.state = "starting"
        self.error: BaseException | None = None
        self.peers: dict[int, PeerState] = {}
        self.pool = CandidatePool()
        self.have: Bitfield | None = None
        self.picker: PiecePicker | None = None
        self.storage: Storage | None = None
        self.buffers = PieceBuffers()
        self.uploader: Uploader | None = None
        self.superseeding: SuperSeeding | None = None
        """BEP 16 state while super-seeding (``config.super_seed`` and complete when checked)."""
        """Serves block requests once the data is known (after the check)."""
        self.uploaded = 0
        self.downloaded = 0
        self.wasted = 0
        self.hash_failures = 0
        self.started_at = time.monotonic()
        self.completed_at: float | None = None
        self._loop = asyncio.get_running_loop()
        self._smartban = SmartBan()
        self._block_sources: dict[Hashable, Callable[[int], None]] = {}
        self._full_have: Bitfield | None = None
        self._source_meter = RateMeter(time_constant=5.0)
        self._verifying: set[int] = set()
        self._connecting = 0
        self._wake_connector = asyncio.Event()
        self._stop = asyncio.Event()
        self._complete = asyncio.Event()
        self._stopped = asyncio.Event()
        self._subscribers: list[asyncio.Queue[TorrentEvent | None]] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._fetcher = MetadataFetcher(info_hash) if self.info is None else None
        self._metadata = MetadataServer(self.info.raw if self.info else None)
        self._metadata_ready = asyncio.Event()
        if self.info is not None:
            self._metadata_ready.set()
        self._choker = ChokeScheduler(
            slots=config.upload_slots, rng=ctx.rng, optimistic_mode=config.optimistic_unchoke
        )
        self._down_meter_total = 0
        self._wanted_bytes = 0
        self._verified_bytes = 0
        self._stop_reason = ""
        self._private = bool(self.info and self.info.private)
        for text in config.extra_peers:
            self.pool.add(PeerAddress.parse(text), "manual")

    # ------------------------------------------------------------------ public API

    @property
    def is_complete(self) -> bool:
        return self._complete.is_set()

    @property
    def num_peers(self) -> int:
        return len(self.peers)

    @property
    def verified_bytes(self) -> int:
        return self._verified_bytes

    @property
    def wanted_bytes(self) -> int:
        return self._wanted_bytes

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

    @property
    def stop_reason(self) -> str:
        """Why the torrent stopped ("complete", "interrupted", "seed ratio reached", an error ...)."""
        return self._stop_reason

    async def wait_stopped(self) -> None:
        """Return once the torrent has fully stopped (peers closed, storage flushed)."""
        await self._stopped.wait()

    async def wait_metadata(self) -> InfoDict:
        await self._metadata_ready.wait()
        assert self.info is not None
        return self.info

    async def events(self) -> AsyncIterator[TorrentEvent]:
        """Progress and notifications until the torrent stops (a bounded queue per subscriber)."""
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

    def add_peers(self, addresses: list[PeerAddress], source: str) -> int:
        """Addresses to dial (deduplicated, banned ones ignored); returns how many were new.

        Our own listen port on a loopback address is never dialled (trackers hand our own address
        back; dialling it only ends in "connected to ourselves")."""
        port = self.ctx.listen_port
        added = sum(
            1
            for address in addresses
            if not (address.port == port and _is_loopback(address.host)) and self.pool.add(address, source)
        )
        if added:
            self._wake_connector.set()
        return added

    def stop(self, reason: str = "stopped") -> None:
        if not self._stop.is_set():
            self._stop_reason = reason
            self._stop.set()

    # ------------------------------------------------------------------ running

    async def run(self) -> None:
        """Run until stopped (or until complete, when not seeding)."""
        try:
            self.spawn(self._connector())
            self.spawn(self._ticker())
            for source in self.sources:
                self.spawn(source.run(self))
            if self.info is None:
                self.state = "metadata"
                waiter = self.spawn(self._metadata_ready.wait())
                stopper = self.spawn(self._stop.wait())
                await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
                if self._stop.is_set():
                    return
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

    def data_lost(self, index: int, exc: BaseException) -> None:
        """Piece ``index`` was verified but cannot be read back: the files changed under us.  The
        torrent stops with the error (a new session re-checks and re-fetches what is gone)."""
        self._fail(f"verified piece {index} can no longer be read from disk: {exc}", exc)

    def _fail(self, reason: str, exc: BaseException) -> None:
        """Stop because of ``exc``; ``wait_complete`` raises with ``reason``."""
        if self.error is None:
            self.error = exc
        log.error("%s: %s", self.name, reason)
        self.stop(reason)

    def now(self) -> float:
        """The event loop's clock (the ``now`` given to the pure engines)."""
        return self._loop.time()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` as a task owned by this torrent (cancelled on stop; a crash stops the torrent)."""
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

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
        self.state = "stopping"
        self._stop.set()
        for source in self.sources:
            with contextlib.suppress(TimeoutError, OSError, TorrentGoatError):
                await asyncio.wait_for(source.stopped(), timeout=3.0)
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for ps in list(self.peers.values()):
            ps.driver.close("torrent stopped")
        if self.storage is not None:
            try:
                await self.ctx.disk.run(self.storage.flush)
            except StorageError as exc:
                log.warning("%s: flush failed: %s", self.name, exc)
            await self.ctx.disk.run(self.storage.close)
        self.buffers.clear()
        self.state = "stopped"
        self._stopped.set()
        self._emit(Stopped(reason=self._stop_reason or "stopped"))
        for queue in self._subscribers:
            try:
                queue.put_nowait(None)
            except asyncio.QueueFull:
                queue.get_nowait()
                queue.put_nowait(None)

    def _emit(self, event: TorrentEvent) -> None:
        for queue in self._subscribers:
            if queue.full():
                try:
                    queue.get_nowait()  # drop the oldest: observers must not stall the torrent
                except asyncio.QueueEmpty:
                    pass
            queue.put_nowait(event)

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
        if info.info_hash != self.info_hash:  # the fetcher checked already; defence in depth
            raise LocalProtocolError("metadata does not match the info-hash")
        self.info = info
        self.name = info.name
        self._private = info.private
        self._metadata.set_metadata(info.raw)
        self.metainfo = Metainfo(info=info)
        self._fetcher = None
        self._emit(MetadataReceived(name=info.name, total_size=info.total_length))
        self._metadata_ready.set()

    def _files_skipped(self, info: InfoDict) -> frozenset[int]:
        """Files not selected by index (BEP 53 ``so=``, API) or by ``--files`` glob; pads never count."""
        selected = self.config.selected_files
        globs = self.config.file_globs
        if selected is None and not globs:
            return frozenset()
        chosen: set[int] = set(selected or ())
        for index, entry in enumerate(info.files):
            relative = "/".join(entry.path[1:]) if not info.single_file else entry.path_str
            if any(fnmatch.fnmatchcase(relative, g) or fnmatch.fnmatchcase(entry.path_str, g) for g in globs):
                chosen.add(index)
        if not any(i in chosen for i, f in enumerate(info.files) if not f.pad):
            raise ConfigError(f"no file of {info.name!r} matches the selection")
        return frozenset(i for i in range(len(info.files)) if i not in chosen)

    async def _prepare(self) -> None:
        """Open storage, verify what is on disk (resume), build the picker, start exchanging pieces."""
        info = self.info
        assert info is not None
        self.state = "checking"
        layout = Layout.from_info(info)
        skipped = self._files_skipped(info)
        if self.ctx.storage_factory is not None:
            storage = self.ctx.storage_factory(self.dest, layout, skipped)
        else:
            storage = FileStorage(self.dest, layout, skipped=skipped, max_open_files=self.ctx.max_open_files)
        self.storage = storage
        wanted = storage.wanted_pieces()
        self._wanted_bytes = sum(info.piece_size(i) for i in wanted)

        def progress(done: int, total: int) -> None:
            self._emit(CheckProgressed(done_bytes=done, total_bytes=total))

        if isinstance(storage, FileStorage):
            for path in await self.ctx.disk.run(storage.trim_oversized):
                log.warning("%s: %s was longer than the torrent says; cut to size", self.name, path)
        have = await self.ctx.hasher.check_existing(info, storage, wanted=wanted, progress=progress)
        self.have = have
        self._verified_bytes = sum(info.piece_size(i) for i in have)
        priorities = [1 if i in wanted else 0 for i in range(info.num_pieces)]
        piece_memory = self.config.piece_memory
        self.picker = PiecePicker(
            PieceLayout(piece_length=info.piece_length, total_length=info.total_length),
            rng=self.ctx.rng,
            config=PickerConfig(
                strategy=self.config.strategy,
                endgame=self.config.endgame,
                max_partial_bytes=piece_memory,
            ),
            have=have,
            priorities=priorities,
        )
        self.uploader = Uploader(self, info, storage)
        if self.config.super_seed and have.complete:
            self.superseeding = SuperSeeding(info.num_pieces, self._have_fn, self.ctx.rng)
        for key in self._block_sources:
            self.picker.peer_have_all(key)
        geometry = PieceGeometry.from_info(info)
        for ps in list(self.peers.values()):
            engine = ps.driver.engine
            if engine.geometry is None:
                try:
                    source = self._have_source()
                    engine.set_metadata(geometry, source, metadata_size=len(info.raw))
                    if self.superseeding is not None:
                        self.superseeding.attach(engine, source)
                        self.superseeding.peer_ready(ps)
                except RemoteProtocolError as exc:
                    ps.driver.close(f"protocol violation: {exc}")
                    continue
            if engine.handshake_complete and self.superseeding is None:
                # the peer met us while we were checking (our opening said "have none"): tell it now
                for index in have:
                    engine.send(Have(index=index))
            self._join(ps)
            ps.driver.pump()
        self.state = "downloading"
        if self.picker.is_complete:
            self._mark_complete()
        for ps in list(self.peers.values()):
            self._update_interest(ps)
            self._fill_requests(ps)
            ps.driver.flush()

    def _have_fn(self) -> Bitfield | None:
        return self.have

    def _have_source(self) -> Callable[[], Bitfield | None]:
        """What a new connection advertises and serves: our have-set, or while super-seeding (BEP 16)
        only the pieces revealed on that connection (then :meth:`SuperSeeding.attach` the engine)."""
        ss = self.superseeding
        return ss.view() if ss is not None and ss.active else self._have_fn

    # ------------------------------------------------------------------ connections

    def _new_engine(self, address: PeerAddress | None) -> PeerConnection:
        info = self.info
        peer_ip = None
        if address is not None:
            try:
                peer_ip = ipaddress.ip_address(address.host).packed
            except ValueError:
                peer_ip = None
        wire = self.ctx.wire
        if self._private and wire.ut_pex:
            wire = replace(wire, ut_pex=False)
        ready = info is not None and self.have is not None
        source = self._have_source() if ready else None
        engine = PeerConnection(
            peer_id=self.ctx.peer_id,
            now=self._loop.time(),
            info_hash=self.info_hash,
            have=source,
            geometry=PieceGeometry.from_info(info) if info is not None and self.have is not None else None,
            metadata_size=len(info.raw) if info is not None else None,
            listen_port=self.ctx.listen_port or None,
            peer_ip=peer_ip,
            config=wire,
        )
        if source is not None and self.superseeding is not None:
            self.superseeding.attach(engine, source)
        return engine

    def adopt(self, driver: PeerDriver) -> bool:
        """Take over an incoming connection whose handshake asked for our info-hash."""
        if self._stop.is_set():
            driver.close("torrent stopped")
            return False
        if len(self.peers) >= self.config.max_peers and not self._evict_useless_peer():
            driver.close("too many peers")
            return False
        address = driver.address
        if address is not None and address in self.pool.banned:
            driver.close("banned")
            return False
        handshake = driver.engine.peer_handshake
        if handshake is not None and handshake.peer_id == self.ctx.peer_id:
            driver.close("connected to ourselves")
            return False
        ready = self.info is not None and self.have is not None
        driver.handler = self
        source = self._have_source() if ready else None
        driver.engine.accept(
            info_hash=self.info_hash,
            have=source,
            geometry=PieceGeometry.from_info(self.info) if ready and self.info is not None else None,
            metadata_size=len(self.info.raw) if self.info is not None else None,
        )
        if source is not None and self.superseeding is not None:
            self.superseeding.attach(driver.engine, source)
        self._register(driver)
        ps = self.peers[driver.id]
        if self.superseeding is not None:
            self.superseeding.peer_ready(ps)
        driver.flush()
        return self._survives_duplicate(ps)

    def _evict_useless_peer(self, grace: float = 2.0) -> bool:
        """Make room for a newcomer by closing a connection that gives us nothing (libtorrent does the
        same): a snubbed peer first, else one where neither side is interested, else one that has
        choked us for a minute while we wanted its pieces and wants nothing of ours.  Connections
        younger than ``grace`` seconds are left alone."""
        now = self._loop.time()

        def uselessness(ps: PeerState) -> int:
            engine = ps.driver.engine
            if ps.snubbed:
                return 3
            if not engine.peer_interested and not engine.am_interested:
                return 2
            if engine.peer_choking and not engine.peer_interested and now - ps.last_block_at > 60.0:
                return 1
            return 0

        scored = [
            (uselessness(ps), -max(ps.last_block_at, ps.connected_at), ps)
            for ps in self.peers.values()
            if not ps.driver.closed and now - ps.connected_at > grace
        ]
        scored = [item for item in scored if item[0] > 0]
        if not scored:
            return False
        victim = max(scored, key=lambda item: (item[0], item[1]))[2]
        victim.driver.close("evicted to make room for a more useful peer")
        return True

    def _survives_duplicate(self, ps: PeerState) -> bool:
        """Keep one connection per remote peer id; close the other (returns whether ``ps`` stays).

        When two peers dial each other at the same moment, each sees two connections.  Both sides
        must drop the *same* one, so the rule depends only on the two peer ids: keep the connection
        initiated by the greater peer id (libtorrent's rule); an exact tie keeps the older one.
        """
        handshake = ps.driver.engine.peer_handshake
        if handshake is None:
            return True
        theirs = handshake.peer_id.raw
        ours = self.ctx.peer_id.raw
        for other in list(self.peers.values()):
            h = other.driver.engine.peer_handshake
            if other is ps or other.driver.closed or h is None or h.peer_id.raw != theirs:
                continue
            initiator_new = ours if ps.driver.outgoing else theirs
            initiator_old = ours if other.driver.outgoing else theirs
            if initiator_new > initiator_old:
                other.driver.close("duplicate connection to the same peer id")
                return True
            ps.driver.close("duplicate connection to the same peer id")
            return False
        return True

    def _register(self, driver: PeerDriver) -> None:
        """Track a connection from its creation on, so that none of its events is missed."""
        self.peers[driver.id] = PeerState(driver, self._loop.time())
        if driver.address is not None and not driver.outgoing:
            self._emit(PeerConnected(address=driver.address, client="", outgoing=False))

    async def _connector(self) -> None:
        """Dial candidate addresses while below the peer and half-open limits."""
        while not self._stop.is_set():
            now = self._loop.time()
            free = self.config.max_peers - len(self.peers) - self._connecting
            if (
                free <= 0
                and self._connecting == 0
                and not self.is_complete_and_idle()
                and self.pool.ready(now)
                and self._evict_useless_peer()
            ):
                free = 1
            if free > 0 and not self.is_complete_and_idle():
                connected = {ps.address for ps in self.peers.values()}
                for candidate in self.pool.ready(now):
                    if free <= 0 or self._connecting >= self.config.max_half_open:
                        break
                    if candidate.address in connected:
                        continue
                    candidate.connected = True
                    self._connecting += 1
                    free -= 1
                    self.spawn(self._dial(candidate.address))
            self._wake_connector.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake_connector.wait(), timeout=2.0)

    def is_complete_and_idle(self) -> bool:
        """A finished torrent that does not seed dials nobody."""
        return self.is_complete and not self.config.seed

    async def _dial(self, address: PeerAddress) -> None:
        try:
            engine = self._new_engine(address)
            await open_peer_connection(
                address, engine, self, download_limit=self.ctx.download_limit, on_created=self._register
            )
        except ConnectionError as exc:
            log.debug("%s: %s", self.name, exc)
            self.pool.failed(address, self._loop.time())
        finally:
            self._connecting -= 1
            self._wake_connector.set()

    # ------------------------------------------------------------------ PeerHandler

    def peer_closed(self, peer: PeerDriver, reason: str) -> None:
        ps = self.peers.pop(peer.id, None)
        if ps is None:
            return
        log.debug("%s: peer %s closed: %s", self.name, peer.address, reason)
        if self.picker is not None and ps.joined:
            self.picker.peer_left(ps.key)
        elif self.picker is not None:
            self.picker.release_peer(ps.key)
        if self._fetcher is not None:
            self._fetcher.remove_peer(ps.key)
        if self.superseeding is not None:
            self.superseeding.peer_closed(ps)
        ps.upload_queue.clear()
        ps.writable.set()
        if ps.unchoked_since is not None and self.have is not None and not self._stop.is_set():
            self._choker.run(self, self._loop.time())  # its upload slot goes to someone else now
        if peer.address is not None and peer.outgoing:
            candidate = self.pool.candidates.get(peer.address)
            if candidate is not None:
                candidate.connected = False
                if not peer.engine.handshake_complete or "protocol" in reason:
                    self.pool.failed(peer.address, self._loop.time())
                else:
                    candidate.next_try = self._loop.time() + 10.0
        if peer.address is not None:
            self._emit(PeerDisconnected(address=peer.address, reason=reason))
        self._wake_connector.set()

    def peer_pumped(self, peer: PeerDriver) -> None:
        """After all events of one socket read: refill the peer's request pipeline once (asking the
        picker for many blocks at a time costs far less than one call per received block)."""
        ps = self.peers.get(peer.id)
        if ps is not None and ps.got_blocks:
            ps.got_blocks = False
            self._fill_requests(ps)

    def peer_writable(self, peer: PeerDriver) -> None:
        ps = self.peers.get(peer.id)
        if ps is not None:
            ps.writable.set()

    def peer_event(self, peer: PeerDriver, event: Event) -> None:
        ps = self.peers.get(peer.id)
        if ps is None:
            return
        engine = peer.engine
        match event:
            case BlockReceived(index=index, begin=begin, data=data):
                self._on_block(ps, index, begin, data)
            case BlockRequested(index=index, begin=begin, length=length):
                if self.uploader is not None:
                    self.uploader.on_request(ps, BlockRef(index, begin, length))
            case HaveReceived(index=index):
                if self.superseeding is not None:
                    self.superseeding.peer_have(ps, index)
                if self.picker is not None:
                    if ps.joined:
                        self.picker.peer_have(ps.key, index)
                    else:
                        self._join(ps)
                    self._update_interest(ps)
                    self._fill_requests(ps)
                self._maybe_drop_seed(ps)
            case BitfieldReceived():
                if self.superseeding is not None:
                    self.superseeding.peer_ready(ps)
                if self.uploader is not None:
                    self.uploader.offer_allowed_fast(ps)
                if self.picker is not None:
                    if ps.joined:
                        self.picker.peer_left(ps.key)
                        ps.joined = False
                    self._join(ps)
                    self._update_interest(ps)
                self._maybe_drop_seed(ps)
            case PeerUnchoked() | AllowedFastReceived():
                self._fill_requests(ps)
            case PeerChoked(dropped=dropped):
                if self.picker is not None:
                    for block in dropped:
                        self.picker.request_cancelled(ps.key, block)
            case RequestRejected(index=index, begin=begin, length=length):
                if self.picker is not None:
                    self.picker.request_rejected(ps.key, BlockRef(index, begin, length))
                # BEP 6 lets a peer refuse requests.  Rejects right after a choke only echo the choke;
                # otherwise do not ask this peer for that piece again for a while (other pieces are
                # fine), and if it refuses everything, back off from it altogether (no request storm).
                now = self._loop.time()
                if not engine.peer_choking and len(ps.refused) < 4096:
                    ps.refused[index] = now
                ps.reject_streak += 1
                if ps.reject_streak > 64:
                    ps.hold_until = now + min(30.0, 2.0 ** min(5, ps.reject_streak // 64))
            case PeerInterested():
                self._choker.peer_interested(self, ps, self._loop.time())
            case PeerNotInterested():
                if ps.unchoked_since is not None:
                    self._choker.run(self, self._loop.time())  # give the freed slot away at once
            case HandshakeReceived(handshake=handshake):
                if handshake.peer_id == self.ctx.peer_id:
                    if peer.address is not None:
                        self.pool.ourselves.add(peer.address)
                        self.pool.candidates.pop(peer.address, None)
                    peer.close("connected to ourselves")
                    return
                if not self._survives_duplicate(ps):
                    return
                if self.superseeding is not None:
                    self.superseeding.peer_ready(ps)
                if peer.address is not None:
                    self._emit(PeerConnected(address=peer.address, client="", outgoing=True))
            case ExtensionHandshakeReceived(handshake=ext):
                ps.client = ext.v or ""
                if self._fetcher is not None and ext.metadata_size and "ut_metadata" in engine.peer_ext_ids:
                    if self._fetcher.add_peer(ps.key, ext.metadata_size):
                        self._request_metadata(ps)
            case MetadataRequested(piece=piece):
                engine.send(self._metadata.respond(piece))
            case MetadataPieceReceived(piece=piece, total_size=total, data=data):
                if self._fetcher is not None:
                    raw = self._fetcher.on_data(ps.key, piece, total, data)
                    if raw is not None:
                        self._on_metadata(raw)
                    else:
                        self._request_metadata(ps)
            case MetadataRejected(piece=piece):
                if self._fetcher is not None:
                    self._fetcher.on_reject(ps.key, piece)
            case PexReceived(added=added):
                if not self._private and self.config.pex:
                    self.add_peers([p.address for p in added], "pex")
            case PortReceived(port=port):
                if self.ctx.add_dht_node is not None and peer.address is not None and 0 < port < 65536:
                    self.ctx.add_dht_node(PeerAddress(peer.address.host, port))
            case ConnectionTimedOut(reason=reason):
                peer.close(reason)
            case _:
                pass

    # ------------------------------------------------------------------ downloading

    def _peer_have(self, ps: PeerState) -> Bitfield | None:
        engine = ps.driver.engine
        if engine.peer_have is not None:
            return engine.peer_have
        if engine.peer_has_all and self.info is not None:
            return Bitfield(self.info.num_pieces, full=True)
        return None

    def _join(self, ps: PeerState) -> None:
        assert self.picker is not None
        have = self._peer_have(ps)
        if have is None:
            return
        self.picker.peer_joined(ps.key, have)
        ps.joined = True

    def _update_interest(self, ps: PeerState) -> None:
        if self.picker is None or ps.driver.closed or not ps.driver.engine.handshake_complete:
            return
        have = self._peer_have(ps)
        interested = have is not None and not self.picker.is_complete and self.picker.interesting(have)
        engine = ps.driver.engine
        if interested and not engine.am_interested:
            engine.send(Interested())
        elif not interested and engine.am_interested:
            engine.send(NotInterested())

    def _queue_target(self, ps: PeerState, now: float) -> int:
        """Requests to keep in flight: ``queue_time`` seconds of the peer's rate (libtorrent style)."""
        rate = ps.down.rate(now)
        target = int(rate * self.config.queue_time / BLOCK_SIZE)
        return max(self.config.min_queue, min(self.config.max_queue, target))

    def _fill_requests(self, ps: PeerState) -> None:
        picker = self.picker
        if picker is None or ps.snubbed:
            return
        engine = ps.driver.engine
        if not engine.am_interested or ps.driver.closed:
            return
        if engine.peer_choking and not engine.peer_allowed_fast:
            return
        have = self._peer_have(ps)
        if have is None:
            return
        now = self._loop.time()
        if now < ps.hold_until:
            return
        limit = min(self._queue_target(ps, now), engine.request_limit)
        want = limit - engine.outstanding_count
        if want <= 0:
            return
        if engine.peer_choking:  # BEP 6: only its allowed-fast pieces may be requested now
            have = Bitfield.from_indices(have.length, (i for i in engine.peer_allowed_fast if i in have))
        if ps.refused:
            have = have.copy()
            for index in ps.refused:
                have.discard(index)
        for block in picker.pick(ps.key, have, want, now=now):
            if not engine.can_request(block.piece):
                picker.request_cancelled(ps.key, block)
                continue
            engine.send_request(block.piece, block.begin, block.length)
        if ps.last_request_at is None:
            ps.last_request_at = now

    def _on_block(self, ps: PeerState, index: int, begin: int, data: Any) -> None:
        now = self._loop.time()
        ps.down.add(len(data), now)
        ps.last_block_at = now
        ps.snubbed = False
        ps.reject_streak = 0
        ps.got_blocks = True  # the pipeline is refilled once per socket read (peer_pumped)
        self._store_block(ps.key, index, begin, data)

    def _store_block(self, key: Hashable, index: int, begin: int, data: Any) -> bool:
        """One block from a peer or a web seed: keep it if the picker wants it; hash full pieces."""
        picker = self.picker
        info = self.info
        length = len(data)
        self.downloaded += length
        if picker is None or info is None:
            return False
        arrival = picker.block_received(key, BlockRef(index, begin, length))
        if not arrival.new:
            self.wasted += length
            return False
        self.buffers.write(index, info.piece_size(index), begin, data)
        for other_key in arrival.cancel:
            other = self.peers.get(other_key)  # type: ignore[call-overload]
            if other is not None:
                other.driver.engine.send(Cancel(index=index, begin=begin, length=length))
                other.driver.flush()
        if arrival.piece_complete:
            self._verifying.add(index)
            self.spawn(self._verify(index))
        return True

    # ------------------------------------------------------------------ non-peer sources (web seeds)

    def register_source(self, key: Hashable, on_piece_failed: Callable[[int], None]) -> None:
        """A block source that is not a wire peer (a BEP 19 web seed) joins as a seed named ``key``.

        ``on_piece_failed(index)`` is called when a piece it contributed to fails its hash check.
        """
        self._block_sources[key] = on_piece_failed
        if self.picker is not None:
            self.picker.peer_have_all(key)  # a seed: counts in every piece's availability

    def unregister_source(self, key: Hashable) -> None:
        if self._block_sources.pop(key, None) is not None and self.picker is not None:
            self.picker.peer_left(key)

    def source_pick(self, key: Hashable, count: int) -> list[BlockRef]:
        """Up to ``count`` blocks for a source that has every piece (recorded as requested by it)."""
        if self.picker is None or self.info is None or self._stop.is_set():
            return []
        full = self._full_have
        if full is None or full.length != self.info.num_pieces:
            full = self._full_have = Bitfield(self.info.num_pieces, full=True)
        picker = self.picker
        picked = picker.pick(key, full, count, now=self._loop.time())
        if not picker.in_endgame:
            return picked
        # An HTTP range cannot be cancelled: in endgame a source takes no block already in flight
        # elsewhere (it would only duplicate a peer's work), and runs only over blocks nobody has.
        mine = []
        for block in picked:
            if picker.requesters(block) - {key}:
                picker.request_cancelled(key, block)
            else:
                mine.append(block)
        return mine

    def source_block(self, key: Hashable, block: BlockRef, data: bytes | memoryview) -> bool:
        """A block a source fetched; returns whether it was new.  Verified like any other block."""
        if len(data) != block.length:
            raise LocalProtocolError(f"source delivered {len(data)} bytes for {block}")
        self._source_meter.add(len(data), self._loop.time())
        return self._store_block(key, block.piece, block.begin, data)

    def source_release(self, key: Hashable, blocks: list[BlockRef] | None = None) -> None:
        """The source will not deliver these blocks (all of its blocks when ``None``)."""
        if self.picker is None:
            return
        if blocks is None:
            self.picker.release_peer(key)
        else:
            for block in blocks:
                self.picker.request_cancelled(key, block)

    async def _verify(self, index: int) -> None:
        """Hash a completed piece; write it and announce it only if the SHA-1 matches (BEP 3)."""
        info, picker, storage = self.info, self.picker, self.storage
        assert info is not None and picker is not None and storage is not None and self.have is not None
        buf = self.buffers.get(index)
        try:
            if buf is None:
                picker.piece_failed(index)
                return
            ok = await self.ctx.hasher.verify_piece(info, index, buf)
            if not ok:
                self._piece_failed(index, buf)
                return
            for culprit in self._smartban.piece_passed(index, buf):
                self._ban_address(culprit.key, culprit.address, f"sent a corrupt block of piece {index}")
            await self.ctx.disk.write_piece(storage, index, buf)
        finally:
            self._verifying.discard(index)
            self.buffers.drop(index)
        if self._stop.is_set():
            return
        picker.piece_verified(index)
        self.have.add(index)
        self._verified_bytes += info.piece_size(index)
        for ps in list(self.peers.values()):
            engine = ps.driver.engine
            if ps.driver.closed or not engine.handshake_complete or engine.geometry is None:
                continue
            engine.send(Have(index=index))
            self._update_interest(ps)
            self._fill_requests(ps)
            ps.driver.flush()
        if picker.is_complete and not self._verifying:
            self._mark_complete()

    def _piece_failed(self, index: int, data: bytearray) -> None:
        """A piece failed its hash check: fetch it again, and find out who to blame.

        A sole contributor is certainly at fault and banned at once.  With several contributors the
        blocks are remembered (:class:`SmartBan`) and only the senders of blocks that differ from the
        piece once it verifies are banned.  Web seeds get their own callback (BEP 19: drop the URL).
        """
        assert self.picker is not None
        senders = self.picker.contributors(index)
        contributors = self.picker.piece_failed(index)
        self.hash_failures += 1
        self._emit(PieceFailed(index=index))
        log.warning("%s: piece %d failed its hash check (from %d peers)", self.name, index, len(contributors))
        witnesses: dict[int, tuple[Hashable, PeerAddress | None]] = {}
        for block, key in senders.items():
            ps = self.peers.get(key)  # type: ignore[call-overload]
            witnesses[block] = (key, ps.address if ps is not None else None)
        self._smartban.piece_failed(index, data, witnesses)
        for key in contributors:
            on_failed = self._block_sources.get(key)
            if on_failed is not None:
                on_failed(index)
            elif len(contributors) == 1:
                ps = self.peers.get(key)  # type: ignore[call-overload]
                self._ban_address(
                    key,
                    ps.address if ps is not None else None,
                    f"sent piece {index}, which failed its hash check",
                )
        for ps in list(self.peers.values()):
            self._fill_requests(ps)
            ps.driver.flush()

    def _ban_address(self, key: Hashable, address: PeerAddress | None, reason: str) -> None:
        """Ban a peer (by connection key, and by address so it is never dialled or admitted again)."""
        if key in self._block_sources:
            return
        ps = self.peers.get(key)  # type: ignore[call-overload]
        if address is None and ps is not None:
            address = ps.address
        if address is not None and address not in self.pool.banned:
            self.pool.ban(address)
            self._emit(PeerBanned(address=address, reason=reason))
        if ps is not None:
            ps.driver.close(f"banned: {reason}")

    def _mark_complete(self) -> None:
        if self._complete.is_set():
            return
        self.completed_at = time.monotonic()
        self.state = "seeding"
        self._complete.set()
        self._emit(Completed(seconds=self.completed_at - self.started_at))
        for source in self.sources:
            source.completed()
        for ps in list(self.peers.values()):
            self._update_interest(ps)
            self._maybe_drop_seed(ps)
            ps.driver.flush()
        if not self.config.seed:
            self.stop("complete")

    def _maybe_drop_seed(self, ps: PeerState) -> None:
        """Two seeds have nothing to say to each other."""
        if not self.is_complete or ps.driver.closed:
            return
        have = self._peer_have(ps)
        if have is not None and have.complete:
            ps.driver.close("both sides are seeds")

    def _request_metadata(self, ps: PeerState) -> None:
        fetcher = self._fetcher
        if fetcher is None:
            return
        now = self._loop.time()
        while (piece := fetcher.next_request(ps.key, now)) is not None:
            ps.driver.engine.send(MetadataRequest(piece=piece))

    # ------------------------------------------------------------------ periodic work

    async def _choke_loop(self) -> None:
        while not self._stop.is_set():
            self._choker.run(self, self._loop.time())
            await asyncio.sleep(self._choker.interval)

    async def _ticker(self) -> None:
        """Once a second: snub detection, metadata retries, PEX, progress, seeding limits."""
        while not self._stop.is_set():
            await asyncio.sleep(1.0)
            now = self._loop.time()
            self._tick(now)

    @staticmethod
    def _listen_address(ps: PeerState) -> PeerAddress | None:
        """Where others can reach a peer (BEP 11): the address we dialled, or for an incoming peer
        its IP with the listen port from its extension handshake (BEP 10 ``p``)."""
        address = ps.address
        if address is None or ps.driver.outgoing:
            return address
        ext = ps.driver.engine.peer_extensions
        if ext is None or not ext.p or not 0 < ext.p < 65536:
            return None
        return PeerAddress(address.host, ext.p)

    def _tick(self, now: float) -> None:
        picker = self.picker
        down_rate = self._source_meter.rate(now)
        up_rate = 0.0
        for ps in list(self.peers.values()):
            if ps.driver.closed:
                continue
            engine = ps.driver.engine
            down_rate += ps.down.rate(now)
            up_rate += ps.up.rate(now)
            if picker is not None and engine.outstanding_count and not ps.snubbed:
                if now - max(ps.last_block_at, ps.last_request_at or 0.0) > self.config.snub_timeout:
                    ps.snubbed = True
                    picker.peer_snubbed(ps.key)
                    log.debug("%s: peer %s snubbed", self.name, ps.address)
            if ps.refused:
                for index in [i for i, at in ps.refused.items() if now - at > 60.0]:
                    del ps.refused[index]
            if picker is not None:
                self._fill_requests(ps)
            if self._fetcher is not None:
                self._fetcher.expire(now)
                self._request_metadata(ps)
            if (
                self.config.pex
                and not self._private
                and engine.handshake_complete
                and "ut_pex" in engine.peer_ext_ids
                and ps.pex.due(now)
            ):
                current = {
                    address: 0x10 if other.driver.outgoing else 0
                    for other in self.peers.values()
                    if other is not ps and (address := self._listen_address(other)) is not None
                }
                message = ps.pex.next_message(current, now)
                if message is not None:
                    with contextlib.suppress(LocalProtocolError):
                        engine.send(message)
            ps.driver.flush()
        state = self.state
        self._emit(
            ProgressReported(
                verified_bytes=self._verified_bytes,
                wanted_bytes=self._wanted_bytes,
                download_rate=down_rate,
                upload_rate=up_rate,
                peers=len(self.peers),
                uploaded=self.uploaded,
                downloaded=self.downloaded,
                state=state,
            )
        )
        if self.is_complete and self.config.seed and self.info is not None:
            if self.config.seed_ratio and self.uploaded >= self.config.seed_ratio * self.info.total_length:
                self.stop("seed ratio reached")
            if self.config.seed_time and self.completed_at is not None:
                if time.monotonic() - self.completed_at >= self.config.seed_time:
                    self.stop("seed time reached")
