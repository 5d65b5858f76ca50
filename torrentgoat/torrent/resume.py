"""When a torrent reads and writes its fast-resume data (level L5).

The format, the trust rules and the blocking I/O are :mod:`torrentgoat.storage.resume`'s; this part
decides when:

* **at the check** (:meth:`ResumeKeeper.check`, the one call of ``Torrent._prepare``): the resume
  file is read and every file stamped on the disk pool, :func:`~torrentgoat.storage.resume.plan_check`
  says which pieces to trust and which to hash, and only those are hashed
  (:meth:`~torrentgoat.aio.hasher.PieceHasher.check_existing` with ``wanted`` = the pieces to hash).
  When anything was hashed, resume data is written at once, so a kill right after a long check does
  not cost the check again;
* **periodically** (:meth:`ResumeKeeper.run`, a task of the torrent): every ``resume_interval``
  seconds while pieces are being verified (not on every piece), and within a second of completion;
* **on stop** (:meth:`ResumeKeeper.save`, from the shutdown, after the storage flush and before it
  closes); never when the check did not finish (the previous file stays as it was);
* **within a second** when verified pieces were taken back (data lost on disk,
  :mod:`torrentgoat.torrent.recovery`), so a kill soon after never trusts them, and when BEP 52 piece
  layers arrived from peers.

BEP 52 piece layers the torrent lacked at its check (a v2 or hybrid magnet: BEP 9 moves only ``info``)
go into the resume data once known; the next check takes them back -- each proved against its file's
``pieces root`` again -- *before* it hashes anything, so a restarted magnet can check its v2 pieces,
answer hash requests and skip fetching the layers again.  The metadata itself is not kept: a restarted
magnet still gets ``info`` from peers (BEP 9).

Writing it flushes the storage first and stamps the files after (see
:func:`~torrentgoat.storage.resume.save_resume`), so a piece it calls verified is durable and older
than the stamps.  A failure to write it is logged once and never stops the torrent.  ``verify`` and
storage other than :class:`~torrentgoat.storage.FileStorage` always get a full check.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path

from torrentgoat.aio.hasher import ProgressCallback
from torrentgoat.bitfield import Bitfield
from torrentgoat.errors import MetainfoError, ResumeDataError, StorageError
from torrentgoat.metainfo import InfoDict
from torrentgoat.storage import FileStorage, Storage
from torrentgoat.storage.resume import (
    MAX_RESUME_BYTES,
    RESUME_DIR,
    ResumeData,
    ResumeIdentity,
    ResumePlan,
    Stamps,
    load_resume,
    plan_check,
    resume_path,
    save_resume,
    stamp_files,
)
from torrentgoat.torrent.handle import TorrentHandle
from torrentgoat.torrent.swarm import Swarm

__all__ = ["ResumeKeeper"]

log = logging.getLogger("torrentgoat.torrent")

TICK = 1.0
"""Seconds between looks at whether resume data is due."""


class ResumeKeeper:
    """Reads one torrent's resume data at its check and writes it while it runs (module docstring)."""

    def __init__(
        self,
        swarm: Swarm,
        host: TorrentHandle,
        dest: Path,
        *,
        layers_restored: Callable[[], None] = lambda: None,
    ) -> None:
        self.swarm = swarm
        self.host = host
        self._layers_restored = layers_restored
        config = host.config
        self.enabled = config.resume_data
        folder = Path(config.resume_dir) if config.resume_dir is not None else Path(dest) / RESUME_DIR
        self.path = resume_path(folder, host.info_hash)
        self.plan: ResumePlan | None = None
        """What the last check did (for tests and reports)."""
        self.saves = 0
        """Resume files written so far."""
        self._identity: ResumeIdentity | None = None
        self._stamped: Stamps | None = None
        """The stamps recorded last (at the check, then by each write) ..."""
        self._stamped_have: Bitfield | None = None
        """... and the verified pieces they went with: files of pieces verified since are ours to restamp."""
        self._saved_have: Bitfield | None = None
        """The have-set the last resume data says."""
        self._saved_at = 0.0
        self._generation = 0
        self._written_generation = 0
        self._write_lock = threading.Lock()
        self._warned = False
        self._keep_roots: frozenset[bytes] = frozenset()
        """``pieces root`` of each file whose piece layer the torrent lacked at its check."""
        self._layers_dirty = False
        self.layers_restored = 0
        """Piece layers the last check took from resume data (BEP 52)."""

    def _storage(self) -> FileStorage | None:
        storage = self.swarm.storage
        if not self.enabled or not isinstance(storage, FileStorage):
            return None
        return storage

    # ------------------------------------------------------------------ the check at start

    async def check(
        self, info: InfoDict, storage: Storage, *, wanted: Bitfield, progress: ProgressCallback
    ) -> Bitfield:
        """The verified pieces among ``wanted``: trusted from resume data where its stamps still hold,
        hashed everywhere else."""
        ctx = self.host.ctx
        v2 = info.v2
        self._keep_roots = (
            frozenset(f.root for f in v2.missing_piece_layers()) if v2 is not None else frozenset()
        )
        file_storage = self._storage()
        if file_storage is None:
            return await self._hash(info, storage, wanted, progress)
        identity = self._identity = ResumeIdentity.of(info)
        plan, stamps, layers = await ctx.disk.run(self._plan, file_storage, identity, wanted)
        info = self._learn_layers(info, layers, "taken from resume data")
        self.layers_restored = len(self._keep_roots - self._missing(info))
        self.plan = plan
        log.info(
            "%s: %s: %d pieces trusted, %d to check",
            self.host.name,
            plan.reason,
            plan.trusted.count,
            plan.to_check.count,
        )
        if plan.to_check.count:
            good = await self._hash(info, storage, plan.to_check, progress)
        else:
            good = Bitfield(info.num_pieces)
        have = plan.trusted.copy()
        for index in good:
            have.add(index)
        self._stamped, self._stamped_have = stamps, have.copy()  # what the files looked like for ``have``
        if plan.to_check.count or not plan.used:
            await self.save(have)  # a kill from now on does not cost this check again
        else:
            self._saved_have, self._saved_at = have.copy(), self.host.now()
        return have

    def _plan(
        self, storage: FileStorage, identity: ResumeIdentity, wanted: Bitfield
    ) -> tuple[ResumePlan, Stamps, Mapping[bytes, bytes]]:
        resume: ResumeData | None
        try:
            resume, problem = load_resume(self.path), ""
        except ResumeDataError as exc:
            resume, problem = None, str(exc)
        stamps, part = stamp_files(storage)
        plan = plan_check(
            resume,
            identity=identity,
            layout=storage.layout,
            stamps=stamps,
            part_file=part,
            skipped=storage.skipped_files,
            wanted=wanted,
            problem=problem,
        )
        layers = resume.piece_layers if resume is not None and resume.identity == identity else {}
        return plan, (stamps, part), layers

    async def _hash(
        self, info: InfoDict, storage: Storage, wanted: Bitfield, progress: ProgressCallback
    ) -> Bitfield:
        """Hash ``wanted``; the piece layers of v2 files verified whole without one are learnt too."""
        result = await self.host.ctx.hasher.check(info, storage, wanted=wanted, progress=progress)
        self._learn_layers(info, result.piece_layers, "derived from the data on disk")
        return result.good

    @staticmethod
    def _missing(info: InfoDict) -> frozenset[bytes]:
        return (
            frozenset(f.root for f in info.v2.missing_piece_layers()) if info.v2 is not None else frozenset()
        )

    def _learn_layers(self, info: InfoDict, layers: Mapping[bytes, bytes], how: str) -> InfoDict:
        """``info`` with the piece layers it lacks taken from ``layers`` (each proved against its
        ``pieces root``; on any failure none is taken: they are fetched from peers); ``swarm.info`` too."""
        missing = self._missing(info)
        usable = {root: layer for root, layer in layers.items() if root in missing}
        if not usable or info.v2 is None:
            return info
        try:
            info = replace(info, v2=info.v2.with_piece_layers(usable))
        except MetainfoError as exc:
            log.warning("%s: piece layers %s are not used: %s", self.host.name, how, exc)
            return info
        self.swarm.info = info
        log.info("%s: %d piece layer(s) %s", self.host.name, len(usable), how)
        self._layers_restored()
        return info

    def layers_changed(self) -> None:
        """Piece layers arrived from peers: write them at the next tick (:meth:`due`)."""
        if self._keep_roots:
            self._layers_dirty = True

    def _layers_to_keep(self) -> dict[bytes, bytes]:
        info = self.swarm.info
        if not self._keep_roots or info is None or info.v2 is None:
            return {}
        layers = {r: layer for r, layer in info.v2.piece_layers.items() if r in self._keep_roots}
        if sum(len(layer) for layer in layers.values()) > MAX_RESUME_BYTES // 2:
            return {}  # a file we could not read back whole: fetched again after a restart
        return layers

    # ------------------------------------------------------------------ writing it

    def due(self, now: float) -> bool:
        """The have-set changed since the last write, and the interval passed, or the torrent is
        complete, or pieces were taken back (verified data lost: written out at the next tick, so
        that a kill soon after never trusts them)."""
        have, saved = self.swarm.have, self._saved_have
        if have is None:
            return False
        if self._layers_dirty:
            return True
        if have == saved:
            return False
        if saved is not None and int.from_bytes(saved.to_bytes()) & ~int.from_bytes(have.to_bytes()):
            return True  # pieces taken back
        return self.host.is_complete or now - self._saved_at >= self.host.config.resume_interval

    async def run(self) -> None:
        """Write resume data when :meth:`due`, until cancelled (a task of the torrent)."""
        if self._storage() is None:
            return
        while True:
            await asyncio.sleep(min(TICK, self.host.config.resume_interval))
            if self.due(self.host.now()):
                await self.save()

    async def save(self, have: Bitfield | None = None) -> None:
        """Write resume data now (our have-set, or ``have``); nothing before the check finished."""
        storage = self._storage()
        have = have if have is not None else self.swarm.have
        if storage is None or have is None or self._identity is None:
            return
        snapshot = have.copy()
        layers = self._layers_to_keep()
        self._layers_dirty = False
        self._generation += 1
        generation = self._generation
        try:
            await self.host.ctx.disk.run(self._write, storage, snapshot, generation, layers)
        except (OSError, StorageError) as exc:
            self._layers_dirty = self._layers_dirty or bool(layers)
            if not self._warned:
                self._warned = True
                log.warning("%s: cannot write resume data to %s: %s", self.host.name, self.path, exc)
            return
        self._saved_have, self._saved_at = snapshot, self.host.now()

    def _write(
        self, storage: FileStorage, have: Bitfield, generation: int, layers: Mapping[bytes, bytes]
    ) -> None:
        # a periodic write still running in its thread when the final one starts must not land after it
        with self._write_lock:
            if generation <= self._written_generation or not self.enabled:
                return
            assert self._identity is not None
            data = save_resume(
                self.path,
                storage,
                identity=self._identity,
                have=have,
                previous=self._stamped,
                before=self._stamped_have,
                piece_layers=layers,
            )
            self._stamped, self._stamped_have = (data.files, data.part_file), have
            self._written_generation = generation
            self.saves += 1
