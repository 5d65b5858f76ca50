"""When verified data vanishes or changes on disk (level L5): take it back, tell peers, check again.

A seed's files can be deleted, truncated or overwritten while it runs.  Stopping the whole torrent
for that (what we did before, and what libtorrent's file error does) wastes what is still good;
serving on would send bytes nobody verified.  :class:`Recovery` does neither:

1. **Notice.**  A read for serving fails (:class:`~torrentgoat.errors.StorageError`), or the
   :class:`~torrentgoat.torrent.filewatch.FileWatch` sees a complete file's signature change -- after
   a read from disk, or on its timer.
2. **Take back.**  Every verified piece of the affected files leaves our have-set at once: it is no
   longer served (its pending requests are withdrawn), no longer counted, dropped from the read
   cache, and peers hear BEP 54 ``lt_donthave``.  Peers without ``lt_donthave`` learn the way
   libtorrent lets them (``peer_connection::on_disk_read_complete``): their requests for the piece
   are rejected (BEP 6); a peer with neither extension that was waiting for blocks of it is
   disconnected, since nothing else could ever tell it they will not come.
3. **Check again.**  Those pieces are hashed from disk.  The ones that still match come back
   (``have`` to every peer); the others are missing: fetched again from peers, or, with
   ``TorrentConfig.refetch_lost=False`` (seeding only), dropped from what the torrent wants.  A
   complete torrent that has to fetch again goes back to downloading until it is complete again.

A piece that cannot even be read for the check (EIO: a failing disk) counts as lost, like one whose
bytes changed: the check goes on piece by piece, so one unreadable file costs only its own pieces.
Only if the check cannot read the storage at all (the download directory is gone) does the torrent
stop with the error.  The picker keeps counting suspect pieces as ours while they are being
checked, so they are neither requested nor half-downloaded meanwhile; only pieces found bad are
handed back to it.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Iterable

from torrentgoat.bitfield import Bitfield
from torrentgoat.errors import StorageError
from torrentgoat.storage import FileStorage, Layout
from torrentgoat.torrent.events import DataLost, DataRechecked
from torrentgoat.torrent.exchange import PeerExchange
from torrentgoat.torrent.filewatch import FileWatch
from torrentgoat.torrent.handle import TorrentHandle
from torrentgoat.torrent.swarm import Swarm

__all__ = ["Recovery"]

log = logging.getLogger("torrentgoat.torrent")


class Recovery:
    """Takes back, announces and re-checks verified pieces whose data changed on disk."""

    def __init__(
        self,
        swarm: Swarm,
        host: TorrentHandle,
        exchange: PeerExchange,
        *,
        reopened: Callable[[], None],
        settled: Callable[[], None],
        failed: Callable[[str, BaseException], None],
    ) -> None:
        self.swarm = swarm
        self.host = host
        self.exchange = exchange
        self._reopened = reopened
        self._settled = settled
        self._failed = failed
        self.watch: FileWatch | None = None
        self.checking: set[int] = set()
        """Pieces taken back and being hashed again."""
        self.lost_pieces = 0
        """Pieces found missing or changed so far (counted once per time they were lost)."""

    # ------------------------------------------------------------------ start and bookkeeping

    def start(self) -> None:
        """After the check: count verified pieces per file, watch the complete files, scan on a timer."""
        info, storage, have = self.swarm.info, self.swarm.storage, self.swarm.have
        assert info is not None and storage is not None and have is not None
        self.watch = watch = FileWatch(storage, Layout.from_info(info))
        if not watch.enabled:
            return
        self._watch_files(watch.count(have))
        if self.host.config.file_check_interval > 0:
            self.host.spawn(self._scan())

    def piece_verified(self, index: int) -> None:
        """A piece joined the have-set: watch the files it completed."""
        watch = self.watch
        if watch is not None and watch.enabled:
            self._watch_files(watch.piece_added(index))

    def _watch_files(self, files: list[int]) -> None:
        watch = self.watch
        if files and watch is not None:
            self.host.spawn(self._snapshot(watch, files))

    async def _snapshot(self, watch: FileWatch, files: list[int]) -> None:
        watch.watch(await self.host.ctx.disk.run(watch.signatures, files))

    async def _scan(self) -> None:
        """Every ``file_check_interval`` seconds: did a watched file change?"""
        watch = self.watch
        assert watch is not None
        interval = self.host.config.file_check_interval
        while not self.host.stopping:
            await asyncio.sleep(interval)
            if not watch.watched:
                continue
            changed = await self.host.ctx.disk.run(watch.changed)
            if changed:
                self.files_changed(changed, "changed on disk since it was verified")

    # ------------------------------------------------------------------ losing data

    def lost(self, index: int, exc: BaseException) -> None:
        """Verified piece ``index`` could not be read back, or its file changed (``exc`` says how):
        take back every verified piece of its files and check them again."""
        have, watch = self.swarm.have, self.watch
        if have is None or index not in have:
            return  # already taken back
        files = watch.files_of(index) if watch is not None else []
        self._take_back({index} | (watch.pieces_of(files) if watch is not None else set()), str(exc), files)

    def files_changed(self, files: Iterable[int], reason: str) -> None:
        """Watched files changed: take back their verified pieces and check them again."""
        watch = self.watch
        if watch is not None:
            files = list(files)
            self._take_back(watch.pieces_of(files), reason, files)

    def _take_back(self, pieces: set[int], reason: str, files: list[int]) -> None:
        swarm = self.swarm
        if isinstance(swarm.storage, FileStorage):
            swarm.storage.reopen_files(files)  # check what is on disk now, not an old descriptor
        have, info = swarm.have, swarm.info
        assert have is not None and info is not None
        suspects = sorted(i for i in pieces if i in have)
        if not suspects:
            return
        log.warning(
            "%s: verified data changed on disk (%s): %d pieces taken back and checked again",
            self.host.name,
            reason,
            len(suspects),
        )
        uploader = self.exchange.uploader
        for index in suspects:
            have.discard(index)
            swarm.counters.verified -= info.piece_size(index)
            if self.watch is not None:
                self.watch.piece_removed(index)
            if uploader is not None:
                uploader.invalidate(index)
        self.checking.update(suspects)
        if swarm.superseeding is not None:
            swarm.superseeding.finish()  # BEP 16 views assume every piece: seed normally from now on
        self._tell_peers(suspects)
        self.host.emit(DataLost(pieces=len(suspects), reason=reason))
        self.host.spawn(self._recheck(suspects))

    def _tell_peers(self, pieces: list[int]) -> None:
        """BEP 54 to those who offered it; BEP 6 rejects of their pending requests; and a peer that
        can be neither told nor refused, yet waits for blocks of these pieces, is disconnected."""
        for wp in self.swarm.live_peers():
            engine = wp.driver.engine
            if not engine.handshake_complete or engine.geometry is None:
                continue
            stuck = False
            for index in pieces:
                _, unanswered = engine.retract(index)
                stuck = stuck or bool(unanswered)
            if stuck:
                wp.close(
                    f"piece {pieces[0]} vanished from disk and this peer has neither lt_donthave nor BEP 6"
                )
            else:
                wp.driver.flush()

    # ------------------------------------------------------------------ checking again

    async def _recheck(self, pieces: list[int]) -> None:
        swarm, host = self.swarm, self.host
        info, storage, picker, have = swarm.info, swarm.storage, swarm.picker, swarm.have
        assert info is not None and storage is not None and picker is not None and have is not None
        try:
            try:
                result = await host.ctx.hasher.check(
                    info, storage, wanted=Bitfield.from_indices(info.num_pieces, pieces)
                )
                verified = set(result.good)
            except StorageError as exc:
                root = getattr(storage, "root", None)
                if root is not None and not os.path.isdir(root):
                    self._failed(f"verified data vanished and cannot be checked again: {exc}", exc)
                    return
                log.warning("%s: %s; checking the %d pieces one by one", host.name, exc, len(pieces))
                verified = await self._check_each(pieces)
        finally:
            self.checking.difference_update(pieces)
        if host.stopping:
            return
        good = [i for i in pieces if i in verified]
        bad = [i for i in pieces if i not in verified]
        for index in good:
            if have.add(index):
                swarm.counters.verified += info.piece_size(index)
                self.piece_verified(index)
                self.exchange.announce(index)
        refetch = host.config.refetch_lost
        for index in bad:
            self.lost_pieces += 1
            picker.clear_have(index)
            if not refetch and picker.priority(index):
                picker.set_piece_priority(index, 0)
                swarm.counters.wanted -= info.piece_size(index)
        if bad and refetch and picker.wanted_missing:
            self._reopened()
        for wp in swarm.live_peers():
            self.exchange.update_interest(wp)
            self.exchange.fill_requests(wp)
            wp.driver.flush()
        host.emit(DataRechecked(pieces=len(pieces), verified=len(good)))
        log.info(
            "%s: %d of %d pieces checked again are still good%s",
            host.name,
            len(good),
            len(pieces),
            "" if not bad else (", the others are fetched again" if refetch else ", the others are dropped"),
        )
        self._settled()

    async def _check_each(self, pieces: list[int]) -> set[int]:
        """The pieces among ``pieces`` that read back and verify, each checked on its own: a read
        error (EIO) costs only the piece it hit."""
        swarm = self.swarm
        info, storage = swarm.info, swarm.storage
        assert info is not None and storage is not None
        good: set[int] = set()
        for index in pieces:
            try:
                result = await self.host.ctx.hasher.check(info, storage, wanted=[index])
            except StorageError:
                continue
            if index in result.good:
                good.add(index)
        return good
