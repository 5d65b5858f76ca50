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
  :mod:`torrentgoat.torrent.recovery`), so a kill soon after never trusts them.

Writing it flushes the storage first and stamps the files after (see
:func:`~torrentgoat.storage.resume.save_resume`), so a piece it calls verified is durable and older
than the stamps.  A failure to write it is logged once and never stops the torrent.  ``verify`` and
storage other than :class:`~torrentgoat.storage.FileStorage` always get a full check.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path

from torrentgoat.aio.hasher import ProgressCallback
from torrentgoat.bitfield import Bitfield
from torrentgoat.errors import ResumeDataError, StorageError
from torrentgoat.metainfo import InfoDict
from torrentgoat.storage import FileStorage, Storage
from torrentgoat.storage.resume import (
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

    def __init__(self, swarm: Swarm, host: TorrentHandle, dest: Path) -> None:
        self.swarm = swarm
        self.host = host
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
        file_storage = self._storage()
        if file_storage is None:
            return await ctx.hasher.check_existing(info, storage, wanted=wanted, progress=progress)
        identity = self._identity = ResumeIdentity.of(info)
        plan, stamps = await ctx.disk.run(self._plan, file_storage, identity, wanted)
        self.plan = plan
        log.info(
            "%s: %s: %d pieces trusted, %d to check",
            self.host.name,
            plan.reason,
            plan.trusted.count,
            plan.to_check.count,
        )
        if plan.to_check.count:
            good = await ctx.hasher.check_existing(info, storage, wanted=plan.to_check, progress=progress)
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
    ) -> tuple[ResumePlan, Stamps]:
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
        return plan, (stamps, part)

    # ------------------------------------------------------------------ writing it

    def due(self, now: float) -> bool:
        """The have-set changed since the last write, and the interval passed, or the torrent is
        complete, or pieces were taken back (verified data lost: written out at the next tick, so
        that a kill soon after never trusts them)."""
        have, saved = self.swarm.have, self._saved_have
        if have is None or have == saved:
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
        self._generation += 1
        generation = self._generation
        try:
            await self.host.ctx.disk.run(self._write, storage, snapshot, generation)
        except (OSError, StorageError) as exc:
            if not self._warned:
                self._warned = True
                log.warning("%s: cannot write resume data to %s: %s", self.host.name, self.path, exc)
            return
        self._saved_have, self._saved_at = snapshot, self.host.now()

    def _write(self, storage: FileStorage, have: Bitfield, generation: int) -> None:
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
            )
            self._stamped, self._stamped_have = (data.files, data.part_file), have
            self._written_generation = generation
            self.saves += 1
