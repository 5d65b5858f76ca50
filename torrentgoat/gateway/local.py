"""Sources over complete local copies (level L5): plain folders and a Hugging Face cache.

* :class:`FolderSource` -- ``await source.add("org/name", folder)``: every regular file under
  ``folder`` is hashed once (SHA-256, and the git blob id of small files) in worker threads; the
  snapshot's commit is the one given, or a stable id derived from the content.  Several versions of one
  repo can be added; ``refs`` (default ``main``) point at the last one added with them.
* :class:`HFCacheSource` -- a ``huggingface_hub`` cache (``models--org--name/{refs,snapshots,blobs}``,
  also ``datasets--`` and ``spaces--``), for instance one filled by ``torrentgoat get --hf-cache``.
  Hashes come from the blob names (``blobs/<sha256>`` for LFS files, ``blobs/<git sha1>`` for the
  others), so nothing is re-hashed; a ``trees/<commit>.json`` listing (written by recent
  ``huggingface_hub`` versions) is the authority on which files a commit has, and a snapshot missing
  one of them is not served (the next source or the upstream hub answers instead).

Both are read with positional reads in worker threads, in bounded chunks.  A file is never served when
it changed on disk since it was indexed (size, mtime, inode), nor when it lies outside its root
(symlinks are resolved and must stay inside the folder, or inside the repo's ``blobs/``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
import stat
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path

from torrentgoat.errors import (
    InvalidRequestError,
    RepoNotFoundError,
    RevisionNotFoundError,
    StorageError,
    UnsafeModelError,
    VerificationError,
)
from torrentgoat.gateway.hubjson import synthetic_commit
from torrentgoat.gateway.source import (
    RepoFile,
    RepoSnapshot,
    RepoType,
    check_repo_id,
    check_repo_path,
    hub_stores_in_lfs,
)
from torrentgoat.safety import SNIFF_SIZE, sniff, zip_pickle_members

__all__ = ["FileSignature", "FolderSource", "HFCacheSource", "read_local_range", "repo_folder_name"]

log = logging.getLogger(__name__)

CHUNK_SIZE = 1024 * 1024
"""Bytes per read when streaming a local file."""
_HASH_BUFFER = 1024 * 1024
_HASH_WORKERS = 2
_HEX40 = re.compile(r"[0-9a-f]{40}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_SKIP_DIRS = frozenset({".git", ".hg", ".svn", ".torrentgoat-parts", ".torrentgoat-resume"})
"""Folders never served: version control, and torrentgoat's own part files and resume data when a
folder is a download directory."""
_MAX_TREE_CACHE = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class FileSignature:
    """What must not change between indexing a file and serving it."""

    size: int
    mtime_ns: int
    inode: int

    @classmethod
    def of(cls, st: os.stat_result) -> FileSignature:
        return cls(st.st_size, st.st_mtime_ns, st.st_ino)


@dataclass(frozen=True, slots=True)
class _Located:
    """Where a snapshot file's bytes are, and the signature they had when indexed."""

    path: Path
    signature: FileSignature


def repo_folder_name(repo_type: RepoType, repo_id: str) -> str:
    """``models--org--name`` (the cache's folder for a repo; ``datasets--`` and ``spaces--`` likewise)."""
    return f"{repo_type}s--" + repo_id.replace("/", "--")


# ---------------------------------------------------------------------------------------------- reading


async def read_local_range(
    located: Path, signature: FileSignature | None, start: int, stop: int, *, chunk_size: int = CHUNK_SIZE
) -> AsyncIterator[bytes]:
    """Bytes ``[start, stop)`` of a local file in ``chunk_size`` pieces, read in a worker thread.

    VerificationError when the file no longer matches ``signature`` (changed since it was indexed) or
    comes up short.  The descriptor is closed when the iterator is closed, finished or not.
    """
    fd = os.open(located, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        if signature is not None:
            st = os.fstat(fd)
            if FileSignature.of(st) != signature:
                raise VerificationError(
                    f"{located.name} changed on disk since it was indexed; not serving it"
                )
        position = start
        while position < stop:
            want = min(chunk_size, stop - position)
            data = await asyncio.to_thread(os.pread, fd, want, position)
            if len(data) != want:
                raise VerificationError(f"{located.name} is shorter on disk than indexed")
            position += want
            yield data
    finally:
        os.close(fd)


# --------------------------------------------------------------------------------------------- indexing


def _inspect_prefix(handle_path: Path, size: int) -> tuple[bytes, tuple[str, ...]]:
    """First bytes of a file and, for a zip archive, its pickle members (blocking)."""
    with open(handle_path, "rb") as handle:
        prefix = handle.read(min(size, SNIFF_SIZE))
        members: tuple[str, ...] = ()
        if sniff(prefix) == "zip":
            try:
                members = tuple(zip_pickle_members(handle))
            except UnsafeModelError as exc:
                members = (f"(zip archive that cannot be inspected: {exc})",)
    return prefix, members


def _hash_file(path: Path, lfs_hint: bool) -> tuple[str, str | None]:
    """SHA-256 of a file and, unless it will be stored in LFS, its git blob id (one read, blocking)."""
    size = path.stat().st_size
    sha256 = hashlib.sha256()
    git = None if lfs_hint else hashlib.sha1(b"blob %d\x00" % size)
    buffer = bytearray(_HASH_BUFFER)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as handle:
        while True:
            n = handle.readinto(buffer)
            if not n:
                break
            sha256.update(view[:n])
            if git is not None:
                git.update(view[:n])
    return sha256.hexdigest(), (git.hexdigest() if git is not None else None)


def _walk_folder(root: Path) -> list[tuple[str, Path, os.stat_result]]:
    """(repo path, real file, stat) of every regular file under ``root`` that stays inside it (blocking)."""
    real_root = root.resolve(strict=True)
    found: list[tuple[str, Path, os.stat_result]] = []
    for directory, dirnames, filenames in os.walk(real_root, followlinks=False):
        here = Path(directory)
        relative_dir = here.relative_to(real_root).as_posix()
        dirnames[:] = sorted(
            d for d in dirnames if d not in _SKIP_DIRS and not (relative_dir == "." and d == ".cache")
        )
        for name in sorted(filenames):
            candidate = here / name
            relative = (candidate.relative_to(real_root)).as_posix()
            try:
                check_repo_path(relative)
                real = candidate.resolve(strict=True)
                real.relative_to(real_root)
                st = real.stat()
            except (InvalidRequestError, OSError, ValueError, RuntimeError):
                log.warning("skipping %s: unsafe name, dangling link or link out of %s", candidate, root)
                continue
            if stat.S_ISREG(st.st_mode):
                found.append((relative, real, st))
    return found


class _Repo:
    """Snapshots of one repo held by a source, and its refs."""

    def __init__(self) -> None:
        self.snapshots: dict[str, RepoSnapshot] = {}
        self.refs: dict[str, str] = {}


class FolderSource:
    """Repos from plain local folders (see the module docstring)."""

    name = "folder"

    def __init__(self, *, chunk_size: int = CHUNK_SIZE) -> None:
        self.chunk_size = chunk_size
        self._repos: dict[tuple[RepoType, str], _Repo] = {}
        self._located: dict[tuple[RepoType, str, str, str], _Located] = {}

    async def add(
        self,
        repo_id: str,
        folder: str | os.PathLike[str],
        *,
        repo_type: RepoType = "model",
        commit: str | None = None,
        refs: Iterable[str] = ("main",),
    ) -> RepoSnapshot:
        """Hash ``folder`` and serve it as ``repo_id`` at ``commit`` (and at each ref in ``refs``)."""
        check_repo_id(repo_id)
        if commit is not None and not _HEX40.fullmatch(commit):
            raise InvalidRequestError(f"commit must be 40 lowercase hex digits, not {commit!r}")
        ref_names = [check_repo_path(ref) for ref in refs]
        root = Path(folder)
        try:
            listing = await asyncio.to_thread(_walk_folder, root)
        except OSError as exc:
            raise StorageError(f"cannot read {root}: {exc.strerror or exc}") from exc
        limiter = asyncio.Semaphore(_HASH_WORKERS)

        async def index(relative: str, real: Path, st: os.stat_result) -> tuple[RepoFile, _Located]:
            lfs = hub_stores_in_lfs(relative, st.st_size)
            async with limiter:
                sha256, git_oid = await asyncio.to_thread(_hash_file, real, lfs)
                prefix, members = await asyncio.to_thread(_inspect_prefix, real, st.st_size)
            entry = RepoFile(
                path=relative,
                size=st.st_size,
                lfs=lfs,
                sha256=sha256,
                git_oid=git_oid,
                prefix=prefix,
                pickle_members=members,
            )
            return entry, _Located(real, FileSignature.of(st))

        try:
            indexed = await asyncio.gather(*(index(*item) for item in listing))
        except OSError as exc:
            raise StorageError(f"cannot read a file under {root}: {exc}") from exc
        files = {entry.path: entry for entry, _ in indexed}
        snapshot = RepoSnapshot(
            repo_type=repo_type,
            repo_id=repo_id,
            commit=commit or synthetic_commit(files.values()),
            files=files,
            last_modified=max((st.st_mtime for _, _, st in listing), default=time.time()),
            source_name=self.name,
        )
        repo = self._repos.setdefault((repo_type, repo_id), _Repo())
        repo.snapshots[snapshot.commit] = snapshot
        for ref in ref_names:
            repo.refs[ref] = snapshot.commit
        for entry, located in indexed:
            self._located[(repo_type, repo_id, snapshot.commit, entry.path)] = located
        return snapshot

    async def resolve(self, repo_type: RepoType, repo_id: str, revision: str) -> RepoSnapshot:
        repo = self._repos.get((repo_type, repo_id))
        if repo is None:
            raise RepoNotFoundError(f"{repo_type} {repo_id} is not held here")
        commit = repo.refs.get(revision, revision)
        snapshot = repo.snapshots.get(commit)
        if snapshot is None:
            raise RevisionNotFoundError(f"{repo_id} has no revision {revision!r} here")
        return snapshot

    def read(self, snapshot: RepoSnapshot, file: RepoFile, start: int, stop: int) -> AsyncIterator[bytes]:
        located = self._located[(snapshot.repo_type, snapshot.repo_id, snapshot.commit, file.path)]
        return read_local_range(located.path, located.signature, start, stop, chunk_size=self.chunk_size)


# ---------------------------------------------------------------------------------------------- HF cache


@dataclass(frozen=True, slots=True)
class _CachedFile:
    signature: FileSignature
    entry: RepoFile


def _read_small(path: Path, limit: int) -> bytes:
    with open(path, "rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise StorageError(f"{path} is larger than {limit} bytes")
    return data


class HFCacheSource:
    """Repos in a ``huggingface_hub`` cache directory (see the module docstring)."""

    name = "hf-cache"

    def __init__(self, cache_dir: str | os.PathLike[str], *, chunk_size: int = CHUNK_SIZE) -> None:
        self.cache_dir = Path(cache_dir)
        self.chunk_size = chunk_size
        self._files: dict[Path, _CachedFile] = {}
        self._located: dict[tuple[RepoType, str, str, str], _Located] = {}

    async def resolve(self, repo_type: RepoType, repo_id: str, revision: str) -> RepoSnapshot:
        check_repo_id(repo_id)
        check_repo_path(revision)
        return await asyncio.to_thread(self._resolve, repo_type, repo_id, revision)

    def read(self, snapshot: RepoSnapshot, file: RepoFile, start: int, stop: int) -> AsyncIterator[bytes]:
        located = self._located[(snapshot.repo_type, snapshot.repo_id, snapshot.commit, file.path)]
        return read_local_range(located.path, located.signature, start, stop, chunk_size=self.chunk_size)

    # blocking part, in a worker thread

    def _resolve(self, repo_type: RepoType, repo_id: str, revision: str) -> RepoSnapshot:
        repo_dir = self.cache_dir / repo_folder_name(repo_type, repo_id)
        if not (repo_dir / "snapshots").is_dir():
            raise RepoNotFoundError(f"{repo_type} {repo_id} is not in the cache")
        commit = self._commit(repo_dir, revision)
        if commit is None or not (repo_dir / "snapshots" / commit).is_dir():
            raise RevisionNotFoundError(f"{repo_id} has no revision {revision!r} in the cache")
        snapshot_dir = repo_dir / "snapshots" / commit
        blobs = (repo_dir / "blobs").resolve()
        files: dict[str, RepoFile] = {}
        located: dict[str, _Located] = {}
        try:
            listing = _walk_snapshot(snapshot_dir, blobs)
        except OSError as exc:
            raise StorageError(f"cannot read {snapshot_dir}: {exc}") from exc
        for relative, real, st in listing:
            entry = self._entry(relative, real, st)
            files[relative] = entry
            located[relative] = _Located(real, FileSignature.of(st))
        listed = self._tree_listing(repo_dir, commit)
        if listed is not None:
            missing = sorted(set(listed) - set(files))
            if missing:
                raise RevisionNotFoundError(
                    f"{repo_id}@{commit[:12]} is incomplete in the cache ({len(missing)} of {len(listed)} "
                    f"files missing, e.g. {missing[0]!r})"
                )
            files = {path: self._with_listing(files[path], listed[path]) for path in listed}
        snapshot = RepoSnapshot(
            repo_type=repo_type,
            repo_id=repo_id,
            commit=commit,
            files=files,
            last_modified=snapshot_dir.stat().st_mtime,
            source_name=self.name,
        )
        for relative in files:
            self._located[(repo_type, repo_id, commit, relative)] = located[relative]
        return snapshot

    @staticmethod
    def _commit(repo_dir: Path, revision: str) -> str | None:
        if _HEX40.fullmatch(revision) and (repo_dir / "snapshots" / revision).is_dir():
            return revision
        ref = repo_dir / "refs" / revision
        try:
            text = _read_small(ref, 128).decode("ascii", errors="replace").strip()
        except (OSError, StorageError):
            return None
        return text if _HEX40.fullmatch(text) else None

    def _entry(self, relative: str, real: Path, st: os.stat_result) -> RepoFile:
        signature = FileSignature.of(st)
        cached = self._files.get(real)
        if cached is not None and cached.signature == signature and cached.entry.path == relative:
            return cached.entry
        name = real.name
        prefix, members = _inspect_prefix(real, st.st_size)
        lfs = hub_stores_in_lfs(relative, st.st_size)
        if _HEX64.fullmatch(name):
            sha256, git_oid = name, None
        elif _HEX40.fullmatch(name) and not lfs:
            sha256, git_oid = None, name
        else:  # a plain file (symlinks disabled) or an odd blob name: hash it
            sha256, git_oid = _hash_file(real, lfs)
        if lfs and sha256 is None:
            lfs = False  # a git blob the Hub kept out of LFS
        entry = RepoFile(
            path=relative,
            size=st.st_size,
            lfs=lfs,
            sha256=sha256,
            git_oid=git_oid,
            prefix=prefix,
            pickle_members=members,
        )
        self._files[real] = _CachedFile(signature, entry)
        return entry

    @staticmethod
    def _with_listing(entry: RepoFile, listed: dict[str, object]) -> RepoFile:
        """The hashes the Hub's own listing gave, when they agree with what is on disk."""
        lfs_sha = listed.get("lfs_sha256")
        blob_id = listed.get("blob_id")
        if listed.get("size") != entry.size:
            return entry
        if isinstance(lfs_sha, str) and _HEX64.fullmatch(lfs_sha):
            if entry.sha256 not in (None, lfs_sha):
                return entry
            return RepoFile(
                path=entry.path,
                size=entry.size,
                lfs=True,
                sha256=lfs_sha,
                git_oid=None,
                prefix=entry.prefix,
                pickle_members=entry.pickle_members,
            )
        if isinstance(blob_id, str) and _HEX40.fullmatch(blob_id) and entry.git_oid in (None, blob_id):
            return RepoFile(
                path=entry.path,
                size=entry.size,
                lfs=False,
                sha256=entry.sha256,
                git_oid=blob_id,
                prefix=entry.prefix,
                pickle_members=entry.pickle_members,
            )
        return entry

    @staticmethod
    def _tree_listing(repo_dir: Path, commit: str) -> dict[str, dict[str, object]] | None:
        """``trees/<commit>.json`` (huggingface_hub's tree cache): path -> metadata, or None."""
        path = repo_dir / "trees" / f"{commit}.json"
        try:
            document = json.loads(_read_small(path, _MAX_TREE_CACHE))
        except (OSError, StorageError, ValueError):
            return None
        files = document.get("files") if isinstance(document, dict) else None
        if not isinstance(files, dict):
            return None
        listing: dict[str, dict[str, object]] = {}
        for path_text, info in files.items():
            if not isinstance(path_text, str) or not isinstance(info, dict):
                return None
            try:
                check_repo_path(path_text)
            except InvalidRequestError:
                return None
            listing[path_text] = info
        return listing


def _walk_snapshot(snapshot_dir: Path, blobs: Path) -> list[tuple[str, Path, os.stat_result]]:
    """Files of a snapshot folder: links into ``blobs`` (or regular files inside the snapshot)."""
    real_snapshot = snapshot_dir.resolve(strict=True)
    found: list[tuple[str, Path, os.stat_result]] = []
    for directory, dirnames, filenames in os.walk(snapshot_dir, followlinks=False):
        here = Path(directory)
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        for name in sorted(filenames):
            candidate = here / name
            relative = candidate.relative_to(snapshot_dir).as_posix()
            try:
                check_repo_path(relative)
                real = candidate.resolve(strict=True)
                if not (real.is_relative_to(blobs) or real.is_relative_to(real_snapshot)):
                    raise ValueError("outside the repo")
                st = real.stat()
            except (InvalidRequestError, OSError, ValueError, RuntimeError):
                log.warning("skipping %s: unsafe name, dangling link or link out of the cache", candidate)
                continue
            if stat.S_ISREG(st.st_mode):
                found.append((relative, real, st))
    return found
