"""One model version's torrent, shared by every request for it (level L5).

A :class:`ModelFetch` owns what the gateway knows of one :class:`~torrentgoat.gateway.catalog.ModelVersion`
on disk and in the session:

* **Starting or joining the torrent.**  The first request for a file that is not complete on disk adds
  the model's torrent to the session (every file the unsafe-format policy allows by name, so a refused
  pickle is never fetched); later requests join it.  The torrent keeps seeding once complete, so the
  next gateway of the cluster fetches from this one.  A torrent that stopped (a full disk ...) is
  started again by the next request.
* **Files that are done.**  A file whose pieces are all verified is checked once more as
  ``collection get`` checks it -- its SHA-256 against the signed manifest (a collection model) and its
  content against the unsafe-format policy (pickles by content, safetensors / GGUF headers) -- in a
  worker thread.  Then it is recorded with its size, mtime and inode in ``<dest>/verified.json`` and
  served straight from disk at disk speed (:func:`~torrentgoat.gateway.local.read_local_range`, which
  refuses a file changed since), across restarts too.  A file that fails the check is refused from
  then on, with the reason.
* **Progress.**  The torrent's latest progress event, for one status line per model being fetched.

Until a file is done, its bytes are served by :meth:`Torrent.stream
<torrentgoat.torrent.core.Torrent.stream>`: verified by the piece hashes of a torrent whose info-hash
the signed manifest (or the operator's ``--torrent``) pins.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torrentgoat.collection.store import link_or_copy
from torrentgoat.errors import ConfigError, DataChangedError, TorrentGoatError, VerificationError
from torrentgoat.gateway.catalog import ModelVersion, file_paths
from torrentgoat.gateway.local import FileSignature
from torrentgoat.metainfo import InfoDict
from torrentgoat.modelcheck import inspect_model_file, sha256_file
from torrentgoat.safety import Policy, judge
from torrentgoat.session import Session
from torrentgoat.torrent import Completed, ProgressReported, Torrent

__all__ = ["FetchStatus", "LocalFile", "ModelFetch", "check_file"]

log = logging.getLogger("torrentgoat.gateway")

VERIFIED_FILE = "verified.json"
_FORMAT = "torrentgoat-gateway-verified/1"
_MAX_VERIFIED = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class LocalFile:
    """A file checked complete on disk, and what it looked like when checked."""

    path: Path
    signature: FileSignature
    sha256: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchStatus:
    """One model's torrent, for a progress line."""

    label: str
    state: str
    verified_bytes: int
    wanted_bytes: int
    download_rate: float
    upload_rate: float
    peers: int
    readers: int
    """Range reads open now (clients being served from the torrent)."""

    @property
    def complete(self) -> bool:
        return self.state in ("seeding", "stopped") and self.verified_bytes >= self.wanted_bytes


def check_file(
    path: Path, display: str, size: int, sha256: str | None, policy: Policy
) -> tuple[LocalFile | None, str | None]:
    """Check a complete file (blocking): size, SHA-256 (when known), the unsafe-format policy.

    ``(LocalFile, None)`` when it may be served from disk; ``(None, reason)`` when it must be refused;
    ``(None, None)`` when it changed while being checked (check again later).  OSError propagates.
    """
    before = FileSignature.of(os.stat(path))
    if before.size != size:
        return None, f"{display}: {before.size} bytes on disk, {size} expected"
    if sha256 is not None and sha256_file(path) != sha256:
        return None, f"{display}: SHA-256 differs from the signed manifest"
    _, violation = inspect_model_file(path, policy, display=display)
    if violation is not None:
        return None, violation.message
    if FileSignature.of(os.stat(path)) != before:
        return None, None
    return LocalFile(path, before, sha256), None


class ModelFetch:
    """One version's torrent and files (see the module docstring)."""

    def __init__(
        self,
        version: ModelVersion,
        session: Session,
        *,
        policy: Policy,
        peers: Sequence[str] = (),
        seed: bool = True,
        reuse: Callable[[str], Path | None] | None = None,
    ) -> None:
        self.version = version
        self.reuse = reuse
        """SHA-256 -> a file verified with that content elsewhere in the cache (another version)."""
        self.session = session
        self.policy = policy
        self.peers = tuple(peers)
        self.seed = seed
        self.torrent: Torrent | None = None
        self.readers = 0
        self.prefixes: dict[str, bytes] = {}
        """First bytes of files, once read (the gateway's pickle sniffing)."""
        self._local: dict[str, LocalFile] = {}
        self._refused: dict[str, str] = {}
        self._checking: set[str] = set()
        self._progress: ProgressReported | None = None
        self._lock = asyncio.Lock()
        self._saving = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False
        self._loaded: asyncio.Future[dict[str, LocalFile]] | None = None

    # ------------------------------------------------------------------ what is on disk

    @property
    def label(self) -> str:
        return self.version.label

    @property
    def record(self) -> Path:
        return self.version.dest / VERIFIED_FILE

    def _info(self) -> InfoDict | None:
        if self.torrent is not None and self.torrent.info is not None:
            return self.torrent.info
        return self.version.metainfo.info if self.version.metainfo is not None else None

    def _disk_path(self, info: InfoDict, path: str) -> Path:
        return self.version.dest / info.name if info.single_file else self.version.dest / info.name / path

    def finished_path(self, path: str) -> Path | None:
        """Where ``path`` is on disk when the torrent completed and then stopped cleanly (it does not
        seed): every piece of it verified, its final check still to come.  None otherwise."""
        torrent, info = self.torrent, self._info()
        if torrent is None or info is None or torrent.error is not None:
            return None
        if not torrent.stopping or torrent.stop_reason != "complete":  # not stopped by anything else
            return None
        if not torrent.is_complete or not self.file_complete(path):
            return None
        return self._disk_path(info, path)

    def local(self, path: str) -> LocalFile | None:
        """The file checked complete on disk, or None (not yet, or never)."""
        return self._local.get(path)

    def refusal(self, path: str) -> str | None:
        """Why a complete file was refused by the check, or None."""
        return self._refused.get(path)

    async def recheck(self, path: str) -> None:
        """``path`` changed on disk since it was checked: forget it, and have the torrent take back the
        pieces of that file and check them again (damaged ones are fetched again from the swarm,
        :mod:`torrentgoat.torrent.recovery`); a torrent not running checks every piece when it starts."""
        log.warning("%s: %s changed on disk since it was checked; checking it again", self.label, path)
        self._local.pop(path, None)
        async with self._saving:
            with contextlib.suppress(OSError):
                await asyncio.to_thread(self._save)
        torrent, info = self.torrent, self._info()
        if torrent is None or torrent.stopping or info is None or torrent.have is None:
            return
        index = file_paths(info).get(path)
        if index is None:
            return
        entry = info.files[index]
        first = entry.offset // info.piece_length
        if first in torrent.have:
            torrent.data_lost(first, DataChangedError(f"{path} changed on disk since it was checked"))

    @property
    def done(self) -> bool:
        """Every file the policy allows by name is checked complete on disk."""
        return all(p in self._local for p in self._wanted_paths())

    def _wanted_paths(self) -> list[str]:
        return [p for p in self.version.snapshot.files if judge(p, b"", self.policy) is None]

    async def load(self) -> None:
        """Read ``verified.json`` once: files checked by an earlier run that did not change since."""
        if self._loaded is None:
            self._loaded = asyncio.ensure_future(asyncio.to_thread(self._load))
        found = await asyncio.shield(self._loaded)
        for path, local in found.items():
            self._local.setdefault(path, local)

    def _load(self) -> dict[str, LocalFile]:
        try:
            with open(self.record, "rb") as handle:
                data = handle.read(_MAX_VERIFIED + 1)
            document = json.loads(data) if len(data) <= _MAX_VERIFIED else None
        except (OSError, ValueError):
            return {}
        if not isinstance(document, dict) or document.get("format") != _FORMAT:
            return {}
        if document.get("info_hash") != self.version.info_hash.hex or not isinstance(
            document.get("files"), dict
        ):
            return {}
        found: dict[str, LocalFile] = {}
        files = self.version.snapshot.files
        for path, item in document["files"].items():
            try:
                entry = files[path]
                signature = FileSignature(int(item["size"]), int(item["mtime_ns"]), int(item["inode"]))
                disk = self.version.dest / str(item["file"])
                sha = item.get("sha256")
                if entry.size != signature.size or sha != self.version.sha256.get(path):
                    continue
                if not disk.resolve().is_relative_to(self.version.dest.resolve()):
                    continue
                if FileSignature.of(os.stat(disk)) != signature:
                    continue
            except (KeyError, TypeError, ValueError, OSError):
                continue
            found[path] = LocalFile(disk, signature, sha)
        return found

    def _save(self) -> None:
        dest = self.version.dest
        document = {
            "format": _FORMAT,
            "info_hash": self.version.info_hash.hex,
            "files": {
                path: {
                    "file": local.path.relative_to(dest).as_posix(),
                    "size": local.signature.size,
                    "mtime_ns": local.signature.mtime_ns,
                    "inode": local.signature.inode,
                    "sha256": local.sha256,
                }
                for path, local in sorted(self._local.items())
            },
        }
        dest.mkdir(parents=True, exist_ok=True)
        tmp = self.record.with_name(f".{VERIFIED_FILE}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(document, indent=1) + "\n")
        os.replace(tmp, self.record)

    # ------------------------------------------------------------------ the torrent

    async def start(self) -> Torrent:
        """The running torrent (started, or joined when already in the session)."""
        async with self._lock:
            torrent = self.torrent
            if torrent is not None and not torrent.stopping:
                return torrent
            if self._closed:
                raise TorrentGoatError(f"{self.label}: the gateway is closing")
            ih = self.version.info_hash
            if torrent is not None:
                await torrent.wait_stopped()
                for _ in range(100):  # the session forgets it right after it stopped
                    if self.session.torrents.get(ih.raw) is not torrent:
                        break
                    await asyncio.sleep(0.01)
            existing = self.session.torrents.get(ih.raw)
            if existing is not None and not existing.stopping:
                torrent = existing
            else:
                if not self.done:
                    reused = await asyncio.to_thread(self._link_reusable)
                    if reused:
                        log.info("%s: %s already held (files of another version)", self.label, _size(reused))
                source = self.version.metainfo or self.version.magnet
                torrent = await self.session.add(
                    source, self.version.dest, seed=self.seed, files=self._globs(), peers=self.peers
                )
                log.info(
                    "%s: %s %s (%s)",
                    self.label,
                    "seeding" if self.done else "fetching",
                    _size(self.version.size),
                    self.version.origin,
                )
            self.torrent = torrent
            self._spawn(self._watch(torrent))
            return torrent

    def _link_reusable(self) -> int:
        """Hard-link files of other versions with the same SHA-256 into place before the torrent
        starts (blocking): its check counts their pieces, so only changed files cross the network
        (what ``collection update`` does).  Bytes reused."""
        info = self._info()
        if self.reuse is None or info is None:
            return 0
        reused = 0
        wanted = set(self._wanted_paths())
        for path, sha256 in self.version.sha256.items():
            entry = self.version.snapshot.files.get(path)
            target = self._disk_path(info, path)
            if entry is None or path not in wanted or os.path.lexists(target):
                continue
            source = self.reuse(sha256)
            if source is None:
                continue
            try:
                if os.stat(source).st_size != entry.size:
                    continue
                link_or_copy(source, target)
            except OSError as exc:
                log.debug("%s: cannot reuse %s for %s: %s", self.label, source, path, exc)
                continue
            reused += entry.size
        return reused

    def verified_with(self, sha256: str) -> Path | None:
        """A file of this version checked to hold that SHA-256 and unchanged since, or None."""
        for local in self._local.values():
            if local.sha256 == sha256:
                try:
                    if FileSignature.of(os.stat(local.path)) == local.signature:
                        return local.path
                except OSError:
                    continue
        return None

    def _globs(self) -> list[str]:
        """Patterns of the files to fetch: none (every file) unless the policy refuses some by name."""
        wanted = self._wanted_paths()
        if len(wanted) == len(self.version.snapshot.files):
            return []
        if not wanted:
            raise ConfigError(f"{self.label}: the unsafe-format policy refuses every file")
        return [glob.escape(path) for path in wanted]

    async def index_of(self, torrent: Torrent, path: str, size: int) -> int:
        """The torrent's file index of repo path ``path`` (waits for a magnet's metadata).

        VerificationError when the torrent has no such file of that size (a manifest that does not
        describe its own torrent)."""
        info = torrent.info or await torrent.wait_metadata()
        index = file_paths(info).get(path)
        if index is None or info.files[index].length != size:
            raise VerificationError(f"{self.label}: the torrent has no file {path!r} of {size} bytes")
        return index

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _watch(self, torrent: Torrent) -> None:
        """Keep the latest progress; once complete, check every file."""
        async for event in torrent.events():
            if isinstance(event, ProgressReported):
                self._progress = event
            elif isinstance(event, Completed):
                log.info("%s: complete, checking the files", self.label)
                await self.check_all()

    async def check_all(self) -> None:
        info = self._info()
        if info is None:
            return
        checked = await asyncio.gather(*(self.check(path) for path in self._wanted_paths()))
        if any(checked) and self.done:
            log.info("%s: every file verified (%s), served from disk", self.label, _size(self.version.size))

    def file_complete(self, path: str) -> bool:
        """Every piece holding ``path`` is verified."""
        torrent, info = self.torrent, self._info()
        if torrent is None or info is None or torrent.have is None:
            return False
        index = file_paths(info).get(path)
        if index is None:
            return False
        entry = info.files[index]
        if not entry.length:
            return True
        have = torrent.have
        plen = info.piece_length
        return all(i in have for i in range(entry.offset // plen, (entry.end - 1) // plen + 1))

    def after_read(self, path: str) -> None:
        """A read of ``path`` ended: check the file in the background if all of it is verified now."""
        if path not in self._local and path not in self._checking and self.file_complete(path):
            self._spawn(self.check(path))

    async def check(self, path: str) -> bool:
        """Check one complete file (see :func:`check_file`) and record the outcome; whether it passed
        now (False: it did not, it is not complete, or it was checked before)."""
        info = self._info()
        if info is None or path in self._local or path in self._checking or path in self._refused:
            return False
        entry = self.version.snapshot.files.get(path)
        if entry is None or not self.file_complete(path):
            return False
        self._checking.add(path)
        try:
            disk = self._disk_path(info, path)
            sha = self.version.sha256.get(path)
            try:
                local, reason = await asyncio.to_thread(check_file, disk, path, entry.size, sha, self.policy)
            except OSError as exc:
                log.warning("%s: cannot check %s: %s", self.label, path, exc)
                return False
            if reason is not None:
                self._refused[path] = reason
                log.error("%s: %s: refused: %s", self.label, path, reason)
            elif local is not None:
                self._local[path] = local
                async with self._saving:
                    try:
                        await asyncio.to_thread(self._save)
                    except OSError as exc:  # served from disk in this run all the same
                        log.warning(
                            "%s: cannot record the checked files in %s: %s", self.label, self.record, exc
                        )
                return True
            return False
        finally:
            self._checking.discard(path)

    # ------------------------------------------------------------------ status

    def status(self) -> FetchStatus | None:
        """Where the torrent is (None when it never started in this run)."""
        torrent = self.torrent
        if torrent is None:
            return None
        progress = self._progress
        return FetchStatus(
            label=self.label,
            state=str(torrent.state),
            verified_bytes=torrent.verified_bytes,
            wanted_bytes=torrent.wanted_bytes or self.version.size,
            download_rate=progress.download_rate if progress is not None else 0.0,
            upload_rate=progress.upload_rate if progress is not None else 0.0,
            peers=torrent.num_peers,
            readers=self.readers,
        )

    async def close(self) -> None:
        """Stop watching (the torrent belongs to the session, which stops it)."""
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self._tasks, return_exceptions=True)


def _size(size: int) -> str:
    from torrentgoat.units import format_size

    return format_size(size)
