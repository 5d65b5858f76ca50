"""The swarm as a repository source (level L5): models from followed collections and mapped torrents.

::

    async with Session(config) as session:
        swarm = SwarmSource(session, SwarmConfig(cache_dir=Path("~/.cache/torrentgoat").expanduser()))
        swarm.follow("magnet:?xs=urn:btpk:<key>&s=<salt hex>")        # a collection (BEP 46)
        await swarm.add_torrent("org/name", "magnet:?xt=urn:btih:...")   # or a .torrent path / URL
        async with swarm, Gateway([swarm], GatewayConfig(port=8080)) as gateway:
            ...   # HF_ENDPOINT=http://127.0.0.1:8080

Where repositories come from (:mod:`torrentgoat.gateway.catalog`):

* each followed collection (:mod:`torrentgoat.gateway.follow`) is resolved at start and every
  ``refresh`` seconds; a model built from a Hugging Face snapshot is served as its repo at its commit,
  ``main`` meaning the commit in the latest signed manifest and a commit hash the version it names;
* each mapped torrent is served as its repo at the commit spelled by its info-hash (and as ``main``).

Mapped torrents are asked first, then the collections in the order they were followed.
:meth:`SwarmSource.resolve` never waits for data: snapshots come from the manifest or the torrent's
metadata (a mapped magnet's metadata is fetched at start; a request arriving before it waits at most
``metadata_wait`` seconds, then gets a 503 the client retries).

Reading (:meth:`SwarmSource.read`): a file checked complete on disk is read from disk (one that
changed since is noticed before a byte is sent, and the model's torrent checks its pieces again and
repairs it from the swarm); otherwise its model's torrent is started or joined
(:class:`~torrentgoat.gateway.fetch.ModelFetch`) and the bytes are streamed as verified pieces
arrive, the pieces ahead of the reader first (:meth:`Torrent.stream
<torrentgoat.torrent.core.Torrent.stream>`).  The first bytes of a file are judged by the
unsafe-format policy before anything of it is sent (for a range further in, they are fetched side by
side with the range's first piece), so a pickle in disguise is refused with a 403.  A reader that
goes away (``aclose``) lets go of its priorities and waits at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Coroutine, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any

from torrentgoat.errors import (
    ConfigError,
    DHTError,
    ManifestError,
    RepoNotFoundError,
    RevisionNotFoundError,
    SignatureError,
    SourceUnavailableError,
    TorrentGoatError,
    UnsafeModelError,
    VerificationError,
)
from torrentgoat.gateway.catalog import (
    Catalog,
    ModelVersion,
    parse_torrent_spec,
    version_of_entry,
    version_of_torrent,
)
from torrentgoat.gateway.defaults import DEFAULT_REFRESH
from torrentgoat.gateway.fetch import FetchStatus, ModelFetch
from torrentgoat.gateway.follow import CollectionFollower, root_name
from torrentgoat.gateway.local import read_local_range
from torrentgoat.gateway.source import RepoFile, RepoSnapshot, RepoType
from torrentgoat.magnet import Magnet, parse_magnet
from torrentgoat.manifest import Manifest
from torrentgoat.metainfo import Metainfo
from torrentgoat.primitives import InfoHash
from torrentgoat.safety import SNIFF_SIZE, Policy, judge
from torrentgoat.session import Session

__all__ = ["SwarmConfig", "SwarmSource"]

log = logging.getLogger("torrentgoat.gateway")


@dataclass(frozen=True, slots=True, kw_only=True)
class SwarmConfig:
    """Where the swarm source keeps models and how it behaves."""

    cache_dir: Path
    """Collections under ``<cache>/collections/<salt>-<key>/`` (the layout of ``collection get``),
    mapped torrents under ``<cache>/torrents/<info-hash>/``."""
    policy: Policy = field(default_factory=Policy)
    """The unsafe-format policy (the gateway's): files it refuses by name are never fetched."""
    peers: tuple[str, ...] = ()
    """``HOST:PORT`` peers dialled for every torrent (``--peer``: other gateways of a cluster)."""
    refresh: float = DEFAULT_REFRESH
    """Seconds between re-resolutions of followed collections (BEP 46 items)."""
    seed: bool = True
    """Keep torrents seeding after they complete, and seed models complete on disk at start."""
    metadata_wait: float = 8.0
    """Seconds a request waits for a collection's first resolution or a mapped magnet's metadata
    (below ``huggingface_hub``'s 10 s timeout)."""
    manifest_timeout: float = 120.0
    """Seconds allowed to fetch a collection's manifest torrent."""

    def __post_init__(self) -> None:
        if self.refresh <= 0 or self.metadata_wait < 0 or self.manifest_timeout <= 0:
            raise ConfigError("refresh and manifest_timeout must be positive, metadata_wait >= 0")


class _Mapped:
    """Torrents mapped to repo ids by the operator."""

    def __init__(self) -> None:
        self.catalog = Catalog("the mapped torrents")
        self.pending: dict[tuple[RepoType, str], asyncio.Task[None]] = {}
        """Magnets whose metadata is being fetched."""


class SwarmSource:
    """A :class:`~torrentgoat.gateway.source.RepoSource` over the swarm (see the module docstring)."""

    name = "swarm"

    def __init__(self, session: Session, config: SwarmConfig) -> None:
        self.session = session
        self.config = config
        self._mapped = _Mapped()
        self._followers: list[tuple[CollectionFollower, Catalog]] = []
        self._fetches: dict[bytes, ModelFetch] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._started = False

    # ------------------------------------------------------------------ what it serves

    def follow(self, magnet: str | Magnet) -> CollectionFollower:
        """Follow a collection by its BEP 46 magnet (resolved once :meth:`start` ran, then periodically)."""
        parsed = parse_magnet(magnet) if isinstance(magnet, str) else magnet
        if parsed.public_key is None or parsed.info_hash is not None:
            raise ConfigError("--follow takes a collection's magnet: magnet:?xs=urn:btpk:<key>&s=<salt hex>")
        if any(
            f.magnet.public_key == parsed.public_key and f.magnet.salt == parsed.salt
            for f, _ in self._followers
        ):
            raise ConfigError("that collection is followed already")
        root = self.config.cache_dir / "collections" / root_name(parsed)
        catalog = Catalog(f"collection {parsed.salt.decode(errors='replace')}")
        follower = CollectionFollower(
            self.session,
            parsed,
            root,
            changed=lambda manifest, torrents: self._accepted(catalog, follower, manifest, torrents),
            peers=self.config.peers,
            timeout=self.config.manifest_timeout,
        )
        self._followers.append((follower, catalog))
        if self._started:
            self._spawn(self._follow(follower, load=True))
        return follower

    async def add_torrent(
        self, repo_id: str, source: str | Path | Metainfo | Magnet, *, repo_type: RepoType = "model"
    ) -> None:
        """Serve a torrent as ``repo_id`` (a magnet's metadata is fetched in the background)."""
        loaded = await self.session.load(source)
        if isinstance(loaded, Metainfo):
            version = self._map(repo_type, repo_id, loaded)
            await self._fetch(version).load()
            return
        if loaded.info_hash is None:
            raise ConfigError(f"--torrent {repo_id}: a magnet with an info-hash (xt=urn:btih:), not a key")
        if self._mapped.catalog.holds(repo_type, repo_id) or (repo_type, repo_id) in self._mapped.pending:
            raise ConfigError(f"--torrent {repo_id}: mapped twice")
        self._mapped.pending[(repo_type, repo_id)] = self._spawn(
            self._fetch_metadata(repo_type, repo_id, loaded)
        )

    async def add_torrent_spec(self, spec: str) -> None:
        """``[datasets/]ORG/NAME=MAGNET_OR_TORRENT`` (the command line's ``--torrent``)."""
        repo_type, repo_id, source = parse_torrent_spec(spec)
        await self.add_torrent(repo_id, source, repo_type=repo_type)

    def _map(self, repo_type: RepoType, repo_id: str, metainfo: Metainfo) -> ModelVersion:
        if self._mapped.catalog.holds(repo_type, repo_id):
            raise ConfigError(f"--torrent {repo_id}: mapped twice")
        dest = self.config.cache_dir / "torrents" / metainfo.info_hash.hex
        version = version_of_torrent(repo_type, repo_id, metainfo, dest=dest, created=time.time())
        self._mapped.catalog.add(version)
        self._spawn(self._known(version))
        return version

    async def _fetch_metadata(self, repo_type: RepoType, repo_id: str, magnet: Magnet) -> None:
        """A mapped magnet: fetch its metadata (BEP 9), keep the .torrent, stop until a file is asked."""
        assert magnet.info_hash is not None
        ih = magnet.info_hash
        saved = self.config.cache_dir / "torrents" / f"{ih.hex}.torrent"
        try:
            try:
                metainfo = await self.session.load(saved)
            except (OSError, TorrentGoatError):
                metainfo = await self._metadata_from_peers(magnet)
                await asyncio.to_thread(_write_atomic, saved, metainfo.to_bytes())
            assert isinstance(metainfo, Metainfo)
            if metainfo.info_hash != ih:
                raise VerificationError(f"{saved} is not the torrent {ih.hex}")
            self._map(
                repo_type,
                repo_id,
                Metainfo(info=metainfo.info, web_seeds=magnet.web_seeds or metainfo.web_seeds),
            )
            log.info("%s: torrent %s (%s) mapped", repo_id, ih.hex, metainfo.info.name)
        except TorrentGoatError as exc:
            log.error("%s: cannot get the torrent %s: %s", repo_id, ih.hex, exc)
        finally:
            self._mapped.pending.pop((repo_type, repo_id), None)

    async def _metadata_from_peers(self, magnet: Magnet) -> Metainfo:
        assert magnet.info_hash is not None
        existing = self.session.torrents.get(magnet.info_hash.raw)
        if existing is not None:
            await existing.wait_metadata()
            assert existing.metainfo is not None
            return existing.metainfo
        dest = self.config.cache_dir / "torrents" / magnet.info_hash.hex
        torrent = await self.session.add(magnet, dest, peers=self.config.peers)
        try:
            await torrent.wait_metadata()
        finally:
            torrent.stop("metadata fetched; files are fetched when asked for")
        await torrent.wait_stopped()
        assert torrent.metainfo is not None
        return torrent.metainfo

    def _accepted(
        self,
        catalog: Catalog,
        follower: CollectionFollower,
        manifest: Manifest,
        torrents: dict[str, Metainfo],
    ) -> None:
        """A collection version was accepted: serve its models (older commits stay reachable)."""
        versions: list[ModelVersion] = []
        for entry in manifest.models:
            if entry.yanked is not None:
                continue
            dest = follower.store.model_dest(entry.name, entry.info_hash)
            version = version_of_entry(manifest, entry, metainfo=torrents.get(entry.name), dest=dest)
            if version is None:
                log.warning(
                    "%s: model %s has no repo id or path the Hub accepts; not served",
                    manifest.collection,
                    entry.name,
                )
                continue
            versions.append(version)
        catalog.replace(versions)
        for version in versions:
            self._spawn(self._known(version))

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> SwarmSource:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Load the versions held on disk, then resolve every followed collection (and keep doing so)."""
        if self._started:
            return
        self._started = True
        for follower, _ in self._followers:
            await self._load_held(follower)
            self._spawn(self._follow(follower))

    async def _load_held(self, follower: CollectionFollower) -> None:
        try:
            await follower.load_held()
        except TorrentGoatError as exc:
            log.error("%s: the version held on disk is refused: %s", follower.store.root, exc)

    async def _follow(self, follower: CollectionFollower, *, load: bool = False) -> None:
        if load:
            await self._load_held(follower)
        while True:
            try:
                await follower.refresh()
            except DHTError as exc:
                log.info("%s: not resolved yet: %s", follower.name, exc)
            except (SignatureError, ManifestError) as exc:
                log.error("%s: a version was refused: %s", follower.name, exc)
            except TorrentGoatError as exc:
                log.warning("%s: resolving failed (will retry): %s", follower.name, exc)
            await asyncio.sleep(self.config.refresh)

    async def wait_ready(self, timeout: float) -> list[str]:
        """Wait (at most ``timeout`` seconds) until every followed collection has a version to serve or
        its first resolution failed, and every mapped magnet's metadata came or failed.  The names of
        what is still unresolved (empty: everything is ready)."""
        waits: list[asyncio.Future[Any]] = [
            asyncio.ensure_future(follower.attempted.wait())
            for follower, _ in self._followers
            if follower.manifest is None and not follower.attempted.is_set()
        ]
        waits += [asyncio.ensure_future(asyncio.shield(task)) for task in self._mapped.pending.values()]
        if waits:
            try:
                await asyncio.wait(waits, timeout=timeout)
            finally:
                for wait in waits:
                    wait.cancel()
        pending = [
            f"collection {f.name}" for f, _ in self._followers if f.manifest is None and f.error is None
        ]
        return pending + [f"torrent for {repo_id}" for _, repo_id in self._mapped.pending]

    async def refresh(self) -> list[bool]:
        """Resolve every followed collection now; whether each accepted a new version.  Raises what
        resolving raises (see :meth:`CollectionFollower.refresh`)."""
        return [await follower.refresh() for follower, _ in self._followers]

    async def close(self) -> None:
        """Stop following and watching (the torrents belong to the session, which stops them)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for fetch in self._fetches.values():
            await fetch.close()

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("swarm source: internal task failed: %r", task.exception(), exc_info=task.exception())

    # ------------------------------------------------------------------ model fetches

    def _fetch(self, version: ModelVersion) -> ModelFetch:
        fetch = self._fetches.get(version.info_hash.raw)
        if fetch is None:
            fetch = ModelFetch(
                version,
                self.session,
                policy=self.config.policy,
                peers=self.config.peers,
                seed=self.config.seed,
                reuse=self._verified_with,
            )
            self._fetches[version.info_hash.raw] = fetch
        return fetch

    async def _known(self, version: ModelVersion) -> None:
        """A version became servable: read what an earlier run checked; seed it when it is all there."""
        fetch = self._fetch(version)
        await fetch.load()
        if self.config.seed and fetch.done and fetch.torrent is None and version.metainfo is not None:
            try:
                await fetch.start()
            except TorrentGoatError as exc:
                log.warning("%s: cannot seed it: %s", version.label, exc)

    def _verified_with(self, sha256: str) -> Path | None:
        """A file anywhere in the cache checked to hold that SHA-256 (for a new version's torrent)."""
        for fetch in self.fetches():
            found = fetch.verified_with(sha256)
            if found is not None:
                return found
        return None

    def fetches(self) -> Iterator[ModelFetch]:
        return iter(list(self._fetches.values()))

    def status(self) -> list[FetchStatus]:
        """One entry per model whose torrent runs (for progress lines)."""
        return [s for s in (f.status() for f in self.fetches()) if s is not None]

    def fetch_of(self, info_hash: InfoHash) -> ModelFetch | None:
        return self._fetches.get(info_hash.raw)

    # ------------------------------------------------------------------ RepoSource

    def _catalogs(self) -> list[Catalog]:
        return [self._mapped.catalog, *(catalog for _, catalog in self._followers)]

    def _lookup(self, repo_type: RepoType, repo_id: str, revision: str) -> ModelVersion:
        revision_error: RevisionNotFoundError | None = None
        for catalog in self._catalogs():
            try:
                return catalog.lookup(repo_type, repo_id, revision)
            except RevisionNotFoundError as exc:
                revision_error = revision_error or exc
            except RepoNotFoundError:
                continue
        raise revision_error or RepoNotFoundError(f"{repo_type} {repo_id} is not in the swarm's catalog")

    async def resolve(self, repo_type: RepoType, repo_id: str, revision: str) -> RepoSnapshot:
        try:
            version = self._lookup(repo_type, repo_id, revision)
        except RepoNotFoundError:
            if not await self._wait_first_answers(repo_type, repo_id):
                raise
            version = self._lookup(repo_type, repo_id, revision)
        return self._snapshot(version)

    async def _wait_first_answers(self, repo_type: RepoType, repo_id: str) -> bool:
        """Wait (bounded) for what may still bring the repo: a mapped magnet's metadata, collections
        not resolved yet.  Whether anything was waited for."""
        waits: list[asyncio.Future[Any]] = []
        pending = self._mapped.pending.get((repo_type, repo_id))
        if pending is not None:
            waits.append(asyncio.ensure_future(asyncio.shield(pending)))
        for follower, _ in self._followers:
            if not follower.attempted.is_set() and follower.manifest is None:
                waits.append(asyncio.ensure_future(follower.attempted.wait()))
        if not waits:
            return False
        try:
            await asyncio.wait(waits, timeout=self.config.metadata_wait)
        finally:
            for wait in waits:
                wait.cancel()
        if (repo_type, repo_id) in self._mapped.pending:
            raise SourceUnavailableError(
                f"{repo_id}: the torrent's metadata has not arrived yet (no peers?); retry soon"
            )
        return True

    def _snapshot(self, version: ModelVersion) -> RepoSnapshot:
        """The version's snapshot with the first bytes of files known so far (for pickle sniffing)."""
        fetch = self._fetches.get(version.info_hash.raw)
        if fetch is None or not fetch.prefixes:
            return version.snapshot
        files = {
            path: replace(entry, prefix=fetch.prefixes[path])
            if path in fetch.prefixes and not entry.prefix
            else entry
            for path, entry in version.snapshot.files.items()
        }
        return replace(version.snapshot, files=files)

    def _version(self, snapshot: RepoSnapshot) -> ModelVersion:
        key = (snapshot.repo_type, snapshot.repo_id, snapshot.commit)
        for catalog in self._catalogs():
            version = catalog.find(key)
            if version is not None:
                return version
        raise RevisionNotFoundError(f"{snapshot.repo_id}@{snapshot.commit[:12]} is no longer served")

    def read(self, snapshot: RepoSnapshot, file: RepoFile, start: int, stop: int) -> AsyncIterator[bytes]:
        return self._read(snapshot, file, start, stop)

    async def _read(
        self, snapshot: RepoSnapshot, file: RepoFile, start: int, stop: int
    ) -> AsyncIterator[bytes]:
        version = self._version(snapshot)
        fetch = self._fetch(version)
        await fetch.load()
        reason = fetch.refusal(file.path)
        if reason is not None:
            raise UnsafeModelError(reason) if "SHA-256" not in reason else VerificationError(reason)
        local = fetch.local(file.path)
        if local is not None:
            sent = 0
            try:
                async for chunk in read_local_range(local.path, local.signature, start, stop):
                    sent += len(chunk)
                    yield chunk
                return
            except VerificationError:
                if sent:
                    raise
                await fetch.recheck(file.path)  # then from the torrent, which checks every piece again
        finished = fetch.finished_path(file.path)
        if finished is not None:  # the torrent completed and stopped (no seeding); the check is to come
            async for chunk in read_local_range(finished, None, start, stop):
                yield chunk
            return
        torrent = await fetch.start()
        index = await fetch.index_of(torrent, file.path, file.size)
        fetch.readers += 1
        chunks = torrent.stream(index, start, stop)
        position = start
        try:
            if file.path in fetch.prefixes:
                ahead: list[bytes] = []
            elif start == 0:
                ahead = await _first_bytes(chunks, min(SNIFF_SIZE, file.size))
                self._sniffed(fetch, file, b"".join(ahead)[:SNIFF_SIZE])
            else:  # the file's first bytes and the range's, fetched side by side
                first = asyncio.ensure_future(anext(chunks, b""))
                try:
                    head = b"".join([c async for c in torrent.stream(index, 0, min(SNIFF_SIZE, file.size))])
                    self._sniffed(fetch, file, head)
                    ahead = [await first]
                finally:
                    if not first.done():
                        first.cancel()
                        await asyncio.gather(first, return_exceptions=True)  # before closing ``chunks``
            for chunk in ahead:
                position += len(chunk)
                yield chunk
            try:
                async for chunk in chunks:
                    position += len(chunk)
                    yield chunk
            except TorrentGoatError:
                finished = fetch.finished_path(file.path)
                if finished is None:
                    raise
                async for chunk in read_local_range(finished, None, position, stop):  # completed, stopped
                    yield chunk
        finally:
            await chunks.aclose()
            fetch.readers -= 1
            fetch.after_read(file.path)

    def _sniffed(self, fetch: ModelFetch, file: RepoFile, head: bytes) -> None:
        """The file's first bytes: kept for later snapshots, judged by the unsafe-format policy now."""
        fetch.prefixes[file.path] = head
        violation = judge(file.path, head, self.config.policy)
        if violation is not None:
            raise UnsafeModelError(violation.message)


async def _first_bytes(chunks: AsyncIterator[bytes], count: int) -> list[bytes]:
    """Chunks from ``chunks`` until they hold ``count`` bytes (or it ends); the iterator stays open."""
    taken: list[bytes] = []
    got = 0
    while got < count:
        chunk = await anext(chunks, None)
        if chunk is None:
            break
        taken.append(chunk)
        got += len(chunk)
    return taken


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
