"""Which repositories a swarm-backed source holds, at which commits (pure: no I/O, no asyncio).

A *model version* (:class:`ModelVersion`) is one torrent seen as one repository at one commit:

* a model of a followed collection (:mod:`torrentgoat.collection`): the manifest names its Hugging
  Face repo and commit (``source:``), its files with their SHA-256, and its torrent's info-hash.  A
  model without a ``source:`` is served as ``<collection>/<model name>`` at the commit spelled by its
  info-hash (40 hex digits, like a git commit).  The snapshot's hashes are the manifest's: the
  ``ETag`` of every file is its SHA-256 (the Hub gives small files their git blob id instead, which a
  manifest does not record; ``huggingface_hub`` only uses the ETag to name the blob in its cache);
* a torrent mapped to a repo id on the command line (``--torrent ORG/NAME=MAGNET_OR_TORRENT``): its
  commit is its info-hash, its files are the torrent's (pad files left out); no SHA-256 is known
  before a file is complete, so each file's ETag is an opaque id derived from the info-hash and the
  path (:func:`mapped_file_id`), stable across runs.  The piece hashes the info-hash pins are what
  verifies the bytes.

A :class:`Catalog` holds the versions one origin (the mapped torrents, or one followed collection)
offers: ``main`` is the newest (for a collection: the model's commit in the latest accepted manifest),
and any commit hash seen during the run names its version.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from torrentgoat.errors import ConfigError, InvalidRequestError, RepoNotFoundError, RevisionNotFoundError
from torrentgoat.gateway.source import (
    RepoFile,
    RepoSnapshot,
    RepoType,
    check_repo_id,
    check_repo_path,
    hub_stores_in_lfs,
)
from torrentgoat.magnet import Magnet
from torrentgoat.manifest import Manifest, ModelEntry
from torrentgoat.metainfo import InfoDict, Metainfo
from torrentgoat.primitives import InfoHash

__all__ = [
    "Catalog",
    "ModelVersion",
    "collection_repo",
    "file_paths",
    "mapped_file_id",
    "parse_torrent_spec",
    "version_of_entry",
    "version_of_torrent",
]

_SPEC = re.compile(r"(?:(?P<type>datasets|spaces|models)/)?(?P<repo>[^=]+?)=(?P<source>.+)")
_TYPES: dict[str, RepoType] = {"datasets": "dataset", "spaces": "space", "models": "model"}


def parse_torrent_spec(text: str) -> tuple[RepoType, str, str]:
    """``[datasets/|spaces/]ORG/NAME=MAGNET_OR_TORRENT`` -> (repo type, repo id, the magnet, path or URL).

    ConfigError when the text is not of that form or the repo id is not one the Hub allows.
    """
    match = _SPEC.fullmatch(text.strip())
    if match is None:
        raise ConfigError(f"--torrent {text[:80]!r}: expected ORG/NAME=MAGNET_OR_TORRENT")
    try:
        repo_id = check_repo_id(match["repo"])
    except InvalidRequestError as exc:
        raise ConfigError(f"--torrent {text[:80]!r}: {exc}") from None
    repo_type = _TYPES[match["type"]] if match["type"] else "model"
    return repo_type, repo_id, match["source"]


def mapped_file_id(info_hash: InfoHash, path: str) -> str:
    """The opaque 40-hex ETag of a file of a mapped torrent (no SHA-256 is known for it)."""
    return hashlib.sha1(b"torrentgoat mapped file\x00" + info_hash.raw + path.encode()).hexdigest()


def file_paths(info: InfoDict) -> dict[str, int]:
    """Repo path -> file index of every real file of a torrent (multi-file: the path under the
    torrent's folder; single-file: the torrent's name).  Pad files are left out."""
    if info.single_file:
        return {info.name: 0}
    return {"/".join(entry.path[1:]): index for index, entry in enumerate(info.files) if not entry.pad}


def collection_repo(manifest: Manifest, entry: ModelEntry) -> tuple[str, str] | None:
    """(repo id, commit) a collection model is served as, or None when no valid repo id fits.

    The Hugging Face source the manifest names; else ``<collection>/<model>`` at the info-hash.
    """
    if entry.source is not None:
        repo_id, commit = entry.source.hf_repo, entry.source.commit
    else:
        repo_id, commit = f"{manifest.collection}/{entry.name}", entry.info_hash.hex
    try:
        return check_repo_id(repo_id), commit
    except InvalidRequestError:
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelVersion:
    """One torrent served as one repository at one commit."""

    snapshot: RepoSnapshot
    info_hash: InfoHash
    metainfo: Metainfo | None
    """The torrent, when known (a collection ships its models' ``.torrent`` files); else fetched by
    ``magnet`` (BEP 9)."""
    magnet: Magnet
    """The info-hash with its name and web seeds (the manifest's ``url-list``)."""
    dest: Path
    """Download directory: the torrent's files are under ``dest/<torrent name>/``."""
    origin: str
    """Where it comes from, for messages (``collection goats seq 3, model alpha``, ``--torrent``)."""
    sha256: Mapping[str, str] = field(default_factory=dict)
    """The manifest's SHA-256 of each file (empty for a mapped torrent)."""

    @property
    def key(self) -> tuple[RepoType, str, str]:
        return self.snapshot.repo_type, self.snapshot.repo_id, self.snapshot.commit

    @property
    def label(self) -> str:
        """``org/name@0123abcd``: how progress lines name it."""
        prefix = "" if self.snapshot.repo_type == "model" else f"{self.snapshot.repo_type}s/"
        return f"{prefix}{self.snapshot.repo_id}@{self.snapshot.commit[:8]}"

    @property
    def size(self) -> int:
        return sum(f.size for f in self.snapshot.files.values())


def version_of_entry(
    manifest: Manifest,
    entry: ModelEntry,
    *,
    metainfo: Metainfo | None,
    dest: Path,
    created: float = 0.0,
) -> ModelVersion | None:
    """The version a collection model is served as (None: no valid repo id, or a file path the Hub
    would not accept)."""
    repo = collection_repo(manifest, entry)
    if repo is None:
        return None
    repo_id, commit = repo
    files: dict[str, RepoFile] = {}
    for f in entry.files:
        try:
            check_repo_path(f.path)
        except InvalidRequestError:
            return None
        files[f.path] = RepoFile(
            path=f.path, size=f.size, lfs=hub_stores_in_lfs(f.path, f.size), sha256=f.sha256
        )
    snapshot = RepoSnapshot(
        repo_type="model",
        repo_id=repo_id,
        commit=commit,
        files=files,
        last_modified=created,
        source_name="swarm",
    )
    magnet = Magnet(info_hash=entry.info_hash, display_name=entry.name, web_seeds=entry.web_seeds)
    return ModelVersion(
        snapshot=snapshot,
        info_hash=entry.info_hash,
        metainfo=metainfo,
        magnet=magnet,
        dest=dest,
        origin=f"collection {manifest.collection} seq {manifest.seq}, model {entry.name}",
        sha256={f.path: f.sha256 for f in entry.files},
    )


def version_of_torrent(
    repo_type: RepoType, repo_id: str, metainfo: Metainfo, *, dest: Path, created: float = 0.0
) -> ModelVersion:
    """A mapped torrent as ``repo_id`` at the commit spelled by its info-hash.  Files whose path the
    Hub would not accept are left out."""
    info = metainfo.info
    files: dict[str, RepoFile] = {}
    for path, index in file_paths(info).items():
        try:
            check_repo_path(path)
        except InvalidRequestError:
            continue
        files[path] = RepoFile(
            path=path,
            size=info.files[index].length,
            lfs=False,
            git_oid=mapped_file_id(info.info_hash, path),
        )
    snapshot = RepoSnapshot(
        repo_type=repo_type,
        repo_id=repo_id,
        commit=info.info_hash.hex,
        files=files,
        last_modified=created,
        source_name="swarm",
    )
    magnet = Magnet(info_hash=info.info_hash, display_name=info.name, web_seeds=metainfo.web_seeds)
    return ModelVersion(
        snapshot=snapshot,
        info_hash=info.info_hash,
        metainfo=metainfo,
        magnet=magnet,
        dest=dest,
        origin=f"--torrent {repo_id}",
    )


@dataclass(slots=True)
class _Repo:
    versions: dict[str, ModelVersion] = field(default_factory=dict)
    """Commit -> version."""
    main: str | None = None


class Catalog:
    """The versions one origin offers (see the module docstring)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._repos: dict[tuple[RepoType, str], _Repo] = {}

    def add(self, version: ModelVersion, *, main: bool = True) -> None:
        """Offer ``version`` (as ``main`` too, unless told otherwise)."""
        snapshot = version.snapshot
        repo = self._repos.setdefault((snapshot.repo_type, snapshot.repo_id), _Repo())
        repo.versions[snapshot.commit] = version
        if main:
            repo.main = snapshot.commit

    def replace(self, versions: list[ModelVersion]) -> None:
        """A new accepted manifest: its versions become ``main``; older commits of repos it still holds
        stay reachable by hash; repos it no longer holds (removed or yanked) are dropped."""
        keep = {(v.snapshot.repo_type, v.snapshot.repo_id) for v in versions}
        self._repos = {key: repo for key, repo in self._repos.items() if key in keep}
        for version in versions:
            self.add(version)

    def __iter__(self) -> Iterator[ModelVersion]:
        for repo in self._repos.values():
            yield from repo.versions.values()

    def current(self) -> Iterator[ModelVersion]:
        """The ``main`` version of every repo."""
        for repo in self._repos.values():
            if repo.main is not None:
                yield repo.versions[repo.main]

    def holds(self, repo_type: RepoType, repo_id: str) -> bool:
        return (repo_type, repo_id) in self._repos

    def lookup(self, repo_type: RepoType, repo_id: str, revision: str) -> ModelVersion:
        """The version ``revision`` names: ``main`` or a commit hash.

        RepoNotFoundError when this origin does not hold the repo, RevisionNotFoundError when it holds
        it but not at that revision.
        """
        repo = self._repos.get((repo_type, repo_id))
        if repo is None:
            raise RepoNotFoundError(f"{repo_type} {repo_id} is not in {self.name}")
        commit = repo.main if revision == "main" else revision
        version = repo.versions.get(commit) if commit is not None else None
        if version is None:
            raise RevisionNotFoundError(
                f"{repo_id} has no revision {revision!r} in {self.name} (main and commit hashes are served)"
            )
        return version

    def find(self, key: tuple[RepoType, str, str]) -> ModelVersion | None:
        """The version of a snapshot's (type, repo id, commit), if still offered."""
        repo = self._repos.get((key[0], key[1]))
        return None if repo is None else repo.versions.get(key[2])
