"""What the gateway asks of a place that holds repositories: the :class:`RepoSource` protocol (pure, L5).

The gateway speaks the Hugging Face Hub's HTTP API; behind it, *sources* hold the repositories.  A
source answers two questions and nothing else:

* :meth:`RepoSource.resolve` -- which commit a revision (branch, tag or commit hash) of a repository
  names, and the files of that commit (:class:`RepoSnapshot`, :class:`RepoFile`); it raises
  :class:`~torrentgoat.errors.RepoNotFoundError` when it does not hold the repository and
  :class:`~torrentgoat.errors.RevisionNotFoundError` when it holds it but not at that revision;
* :meth:`RepoSource.read` -- the bytes ``[start, stop)`` of one file of a snapshot, as an async
  iterator of chunks that have been verified (a chunk may take time to arrive: a swarm-backed source
  yields bytes as pieces around the range are verified; a complete local copy yields at disk speed).
  The gateway closes the iterator (``aclose``) as soon as the client is gone, so a source must release
  what it holds (piece deadlines, file descriptors, a share of a download) in its ``finally``.

Everything else -- HTTP, ranges, headers, listings, pagination, errors, the unsafe-format policy,
path safety -- is the gateway's job, identical for every source.

Hashes follow the Hub (git and Git LFS, https://github.com/git-lfs/git-lfs/blob/main/docs/spec.md):
a small file is a git blob whose id (``git_oid``, SHA-1 of ``"blob <size>\\0" + content``) is its
``ETag``; a weight file is stored in LFS, its ``ETag`` / ``X-Linked-Etag`` is the SHA-256 of the
content, and its git blob id is the id of its LFS *pointer* file (:func:`lfs_pointer`).
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

from torrentgoat.errors import InvalidRequestError

__all__ = [
    "HUB_LFS_SIZE",
    "HUB_LFS_SUFFIXES",
    "REPO_TYPES",
    "RepoFile",
    "RepoSnapshot",
    "RepoSource",
    "RepoType",
    "check_repo_id",
    "check_repo_path",
    "git_blob_oid",
    "hub_stores_in_lfs",
    "lfs_pointer",
]

RepoType = Literal["model", "dataset", "space"]
"""The Hub's repository types the gateway routes (``/{repo}``, ``/datasets/{repo}``, ``/spaces/{repo}``)."""
REPO_TYPES: tuple[RepoType, ...] = ("model", "dataset", "space")

HUB_LFS_SIZE = 10 * 1024 * 1024
"""Files of this size or more are stored in LFS on the Hub (it refuses larger plain git blobs)."""
HUB_LFS_SUFFIXES = (
    ".7z", ".arrow", ".bin", ".bz2", ".ckpt", ".ftz", ".gguf", ".gz", ".h5", ".joblib", ".mlmodel",
    ".model", ".msgpack", ".npy", ".npz", ".onnx", ".ot", ".parquet", ".pb", ".pickle", ".pkl", ".pt",
    ".pth", ".rar", ".safetensors", ".tar", ".tflite", ".tgz", ".wasm", ".xz", ".zip", ".zst",
)  # fmt: skip
"""Suffixes the Hub's default ``.gitattributes`` sends to LFS."""

_HEX40 = re.compile(r"[0-9a-f]{40}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_REPO_PART = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?")
_MAX_PATH = 4096
_MAX_SEGMENT = 255


def check_repo_id(repo_id: str) -> str:
    """``name`` or ``namespace/name`` as the Hub allows them (huggingface_hub's ``validate_repo_id``).

    Letters, digits, ``_``, ``-`` and ``.``; at most 96 characters per part; a part neither starts nor
    ends with ``-`` or ``.``; no ``--`` or ``..`` anywhere.  InvalidRequestError otherwise.
    """
    parts = repo_id.split("/")
    if (
        not 1 <= len(parts) <= 2
        or not all(_REPO_PART.fullmatch(part) for part in parts)
        or "--" in repo_id
        or ".." in repo_id
        or repo_id.endswith(".git")
    ):
        raise InvalidRequestError(f"invalid repo id {repo_id!r}")
    return repo_id


def check_repo_path(path: str) -> str:
    """A file or folder path inside a repository, relative and confined to it.

    POSIX separators only; no empty, ``.`` or ``..`` segment; no backslash, NUL or other control
    character; no leading ``/``.  These are what could make ``<cache>/<path>`` escape its directory
    on any platform.  InvalidRequestError otherwise.
    """
    if not path or len(path) > _MAX_PATH:
        raise InvalidRequestError(f"invalid path {path[:80]!r}")
    if any(ord(c) < 0x20 or c in "\\\x7f" for c in path):
        raise InvalidRequestError(f"invalid character in path {path[:80]!r}")
    for segment in path.split("/"):
        if segment in ("", ".", "..") or len(segment) > _MAX_SEGMENT:
            raise InvalidRequestError(f"invalid path {path[:80]!r}: segment {segment[:40]!r}")
        if len(segment) == 2 and segment[1] == ":" and segment[0].isalpha():
            raise InvalidRequestError(f"invalid path {path[:80]!r}: drive letter")
    return path


def hub_stores_in_lfs(path: str, size: int) -> bool:
    """Whether the Hub would hold this file in LFS: a weight/archive suffix, or 10 MiB and more."""
    return size >= HUB_LFS_SIZE or posixpath.basename(path).lower().endswith(HUB_LFS_SUFFIXES)


def git_blob_oid(content: bytes) -> str:
    """git's object id of a blob: SHA-1 of ``b"blob <len>\\0" + content`` (hex)."""
    return hashlib.sha1(b"blob %d\x00" % len(content) + content).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The Git LFS pointer file (spec v1) that stands for a file in the git tree."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


@dataclass(frozen=True, slots=True, kw_only=True)
class RepoFile:
    """One file of a snapshot, with the hashes the Hub would give it."""

    path: str
    """Relative POSIX path in the repository (checked with :func:`check_repo_path`)."""
    size: int
    """Size of the content in bytes (for an LFS file: of the real file, not of its pointer)."""
    lfs: bool
    """Stored in LFS on the Hub: ``ETag`` / ``X-Linked-Etag`` are then the SHA-256 (see :func:`hub_stores_in_lfs`)."""
    sha256: str | None = None
    """SHA-256 of the content (hex); required when ``lfs``."""
    git_oid: str | None = None
    """git blob id of the content (hex SHA-1, :func:`git_blob_oid`) of a non-LFS file, when known."""
    prefix: bytes = b""
    """The first bytes of the content when the source knows them (up to 16: enough for
    :func:`torrentgoat.safety.sniff`); the gateway refuses a pickle it recognises there."""
    pickle_members: tuple[str, ...] = ()
    """For a zip archive, the pickle members in it (``torch.save`` files), when the source looked."""

    def __post_init__(self) -> None:
        check_repo_path(self.path)
        if self.size < 0:
            raise ValueError(f"{self.path}: negative size")
        if self.sha256 is not None and not _HEX64.fullmatch(self.sha256):
            raise ValueError(f"{self.path}: sha256 must be 64 lowercase hex digits")
        if self.git_oid is not None and not _HEX40.fullmatch(self.git_oid):
            raise ValueError(f"{self.path}: git_oid must be 40 lowercase hex digits")
        if self.lfs and self.sha256 is None:
            raise ValueError(f"{self.path}: an LFS file needs its sha256")
        if self.sha256 is None and self.git_oid is None:
            raise ValueError(f"{self.path}: a file needs a sha256 or a git_oid")

    @property
    def etag(self) -> str:
        """The ``ETag`` the Hub gives the file (unquoted): SHA-256 for LFS, else the git blob id."""
        if self.lfs or self.git_oid is None:
            assert self.sha256 is not None
            return self.sha256
        return self.git_oid

    @property
    def blob_id(self) -> str:
        """The git blob id in the repository's tree (for LFS: of the pointer file)."""
        if self.lfs:
            assert self.sha256 is not None
            return git_blob_oid(lfs_pointer(self.sha256, self.size))
        return self.git_oid if self.git_oid is not None else self.etag

    @property
    def pointer_size(self) -> int:
        """Size of the LFS pointer file (0 for a non-LFS file)."""
        return len(lfs_pointer(self.sha256, self.size)) if self.lfs and self.sha256 else 0


@dataclass(frozen=True, slots=True, kw_only=True)
class RepoSnapshot:
    """A repository at one commit, as a source holds it."""

    repo_type: RepoType
    repo_id: str
    commit: str
    """40 hex digits: what ``X-Repo-Commit`` and ``sha`` say."""
    files: Mapping[str, RepoFile]
    """Path -> file; every regular file of the commit."""
    last_modified: float = 0.0
    """POSIX time of the commit (or of the local copy), for ``lastModified``."""
    source_name: str = field(default="", compare=False)
    """Who holds it, for logs (e.g. ``"folder"``, ``"hf-cache"``, ``"swarm"``)."""

    def __post_init__(self) -> None:
        check_repo_id(self.repo_id)
        if not _HEX40.fullmatch(self.commit):
            raise ValueError(f"{self.repo_id}: commit must be 40 lowercase hex digits")
        for path, entry in self.files.items():
            if entry.path != path:
                raise ValueError(f"{self.repo_id}: file {entry.path!r} listed under {path!r}")


@runtime_checkable
class RepoSource(Protocol):
    """Where repositories come from (see the module docstring): local copies, the swarm."""

    async def resolve(self, repo_type: RepoType, repo_id: str, revision: str) -> RepoSnapshot:
        """The snapshot ``revision`` names: a branch or tag name (``main``, ``refs/pr/1``, ``v1.0``) or a
        40-hex commit.  RepoNotFoundError / RevisionNotFoundError when not held (the gateway then asks
        the next source, then the upstream hub)."""
        ...

    def read(self, snapshot: RepoSnapshot, file: RepoFile, start: int, stop: int) -> AsyncIterator[bytes]:
        """The verified bytes ``[start, stop)`` of ``file`` (``0 <= start < stop <= file.size``), in
        order, in chunks of at most a few MiB, exactly ``stop - start`` bytes in all.  May wait for
        data.  Raises a TorrentGoatError if the bytes cannot be had (the gateway cuts the response)."""
        ...
