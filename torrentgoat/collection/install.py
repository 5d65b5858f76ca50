"""Installing one model of a collection (level L5): fetch it, verify every byte, ready for the switch.

Step 5 of the order of trust in :mod:`torrentgoat.collection.client` and what follows it: the model
torrent must hold exactly the manifest's files; file names are judged by the unsafe-format policy
before any byte is fetched; files already held locally with the right SHA-256 (the previous version,
or another model) are hard-linked into the new version's directory so only new bytes cross the
network; after the torrent completes every file's SHA-256 is checked against the manifest and every
file against the policy (content sniffing for pickles, safetensors headers validated).  Only then
does the model count as installed, and the Hugging Face cache snapshot is placed
(:mod:`torrentgoat.collection.hfcache`); ``ROOT/<model>`` switches with the whole collection when the
client commits the new version (:meth:`~torrentgoat.collection.store.Store.commit`).  A download
interrupted here (even by ``SIGKILL``) resumes at the next run from its resume data.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from torrentgoat.collection._common import Say
from torrentgoat.collection.blockupdate import BlockUpdater, ChangedFile, changed_files, leaf_fetcher
from torrentgoat.collection.hfcache import place_in_hf_cache
from torrentgoat.collection.resolve import Resolved
from torrentgoat.collection.runner import TorrentRunner
from torrentgoat.collection.store import InstalledModel, Store, link_or_copy
from torrentgoat.errors import ManifestError, TorrentGoatError
from torrentgoat.magnet import Magnet
from torrentgoat.manifest import ModelEntry
from torrentgoat.metainfo import Metainfo, load_metainfo
from torrentgoat.modelcheck import scan_model_dir, sha256_file, verify_files_sha256
from torrentgoat.safety import Policy, judge
from torrentgoat.torrent import Torrent

__all__ = ["ModelInstaller", "ModelResult", "ReusableFiles", "check_torrent_files", "post_check"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelResult:
    """What happened to one model during a sync."""

    name: str
    status: str
    """``installed``, ``updated``, ``unchanged``, ``refused``, ``failed`` or ``skipped``."""
    message: str = ""
    downloaded: int = 0
    """Bytes that crossed the network for this model (peers and web seeds)."""
    reused: int = 0
    """Bytes found locally: files with the right SHA-256 linked into the new version, and blocks of
    changed files verified against the new merkle tree (a block-level update)."""
    hash_bytes: int = 0
    """Bytes of BEP 52 hash requests and replies a block-level update exchanged."""
    size: int = 0
    path: Path | None = None
    """``ROOT/<model>`` once installed."""
    hf_snapshot: Path | None = None

    @property
    def ok(self) -> bool:
        return self.status in ("installed", "updated", "unchanged", "skipped")


@dataclass(slots=True)
class ReusableFiles:
    """Where bytes with a given SHA-256 can be found locally (installed models)."""

    by_sha: dict[str, list[Path]] = field(default_factory=dict)

    def add(self, store: Store, model: InstalledModel) -> None:
        base = store.installed_dir(model)
        for f in model.files:
            self.by_sha.setdefault(f.sha256, []).append(base / f.path)


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelInstaller:
    """Installs and seeds the models of the collection held in ``store``."""

    runner: TorrentRunner
    store: Store
    say: Say
    block_updates: bool = True
    """Update changed files block by block (hybrid/v2 torrents): only the blocks that changed move."""

    async def install(
        self,
        entry: ModelEntry,
        resolved: Resolved,
        current: InstalledModel | None,
        reuse: ReusableFiles,
        policy: Policy,
        hf_cache: Path | None,
        seed: bool,
    ) -> ModelResult:
        """Fetch, verify and install one model; the outcome (failures included) as a ModelResult.

        Unchanged models are left alone (seeded when ``seed``).  File names are judged by ``policy``
        before a byte is fetched, locally held files with the right SHA-256 are linked in first, and
        the model counts as installed only once every file passed :func:`post_check` (the client's
        commit then switches ``ROOT/<model>`` with the rest of the collection).
        """
        store = self.store
        size = sum(f.size for f in entry.files)
        if current is not None and current.info_hash == entry.info_hash:
            link_ok = await asyncio.to_thread(store.link_path(entry.name).is_dir)
            if link_ok:
                snapshot = None
                if hf_cache is not None and entry.source is not None:
                    snapshot = await asyncio.to_thread(
                        place_in_hf_cache, store.installed_dir(current), entry, hf_cache
                    )
                if seed:
                    await self.seed_model(current)
                return ModelResult(
                    name=entry.name,
                    status="unchanged",
                    size=size,
                    path=store.link_path(entry.name),
                    hf_snapshot=snapshot,
                )
        # the unsafe-format policy on names: refuse before fetching a byte
        for f in entry.files:
            violation = judge(f.path, b"", policy)
            if violation is not None:
                return ModelResult(name=entry.name, status="refused", message=violation.message, size=size)
        metainfo = resolved.torrents.get(entry.name)
        source: Metainfo | Magnet = metainfo or Magnet(
            info_hash=entry.info_hash, display_name=entry.name, web_seeds=entry.web_seeds
        )
        dest = store.model_dest(entry.name, entry.info_hash)
        try:
            await asyncio.to_thread(store.check_link_free, entry.name)
            changed: list[ChangedFile] = []
            if metainfo is not None:
                check_torrent_files(entry, metainfo)
                linked: set[str] = set()
                reused = await asyncio.to_thread(
                    self.link_reusable, entry, dest / metainfo.info.name, reuse, linked
                )
                if current is not None and self.block_updates:
                    changed = changed_files(
                        entry, metainfo.info, store.installed_dir(current), current.files, linked
                    )
            else:
                reused = 0
            torrent = await self.runner.start(
                source, dest, seed=seed, label=entry.name, held_files=tuple(f.file_index for f in changed)
            )
            updater = BlockUpdater(torrent, changed, leaf_fetcher(torrent)) if changed else None
            updating = asyncio.ensure_future(updater.run()) if updater is not None else None
            try:
                await self.runner.wait(torrent.wait_metadata(), torrent, f"model {entry.name}")
                if metainfo is None:
                    assert torrent.metainfo is not None
                    check_torrent_files(entry, torrent.metainfo)
                    metainfo = torrent.metainfo
                    await asyncio.to_thread(
                        store.write_file, store.torrent_path(entry.info_hash), metainfo.to_bytes()
                    )
                await self.runner.wait(torrent.wait_complete(), torrent, f"model {entry.name}")
            except BaseException:
                torrent.stop("failed")
                raise
            finally:
                if updating is not None:
                    updating.cancel()
                    [outcome] = await asyncio.gather(updating, return_exceptions=True)
                    if isinstance(outcome, Exception):
                        self.say(
                            f"warning: {entry.name}: block-level update failed ({outcome!r}); fetched instead"
                        )
            downloaded = torrent.downloaded
            hash_bytes = 0
            if updater is not None:
                stats = updater.stats
                reused += torrent.local.filled
                hash_bytes = stats.hash_bytes
                self.say(
                    f"{entry.name}: block-level update of {len(changed)} file(s): "
                    f"{stats.pieces_local} pieces verified locally, {stats.pieces_mixed} mixed, "
                    f"{stats.hash_requests} hash requests ({hash_bytes} bytes)"
                )
            model_dir = dest / metainfo.info.name
            problems = await asyncio.to_thread(post_check, model_dir, entry, policy)
            if problems:
                torrent.stop("refused")
                await torrent.wait_stopped()
                await asyncio.to_thread(shutil.rmtree, dest, True)
                status = (
                    "refused"
                    if any("pickle" in p or "safetensors" in p or "GGUF" in p for p in problems)
                    else "failed"
                )
                return ModelResult(
                    name=entry.name,
                    status=status,
                    message="; ".join(problems),
                    downloaded=downloaded,
                    reused=reused,
                    hash_bytes=hash_bytes,
                    size=size,
                )
            snapshot = None
            if hf_cache is not None and entry.source is not None:
                snapshot = await asyncio.to_thread(place_in_hf_cache, model_dir, entry, hf_cache)
            elif hf_cache is not None:
                self.say(
                    f"warning: model {entry.name!r} names no Hugging Face repo; not placed in the HF cache"
                )
        except (TorrentGoatError, OSError) as exc:
            return ModelResult(name=entry.name, status="failed", message=str(exc), size=size)
        return ModelResult(
            name=entry.name,
            status="installed" if current is None else "updated",
            downloaded=downloaded,
            reused=reused,
            hash_bytes=hash_bytes,
            size=size,
            path=store.link_path(entry.name),
            hf_snapshot=snapshot,
        )

    def link_reusable(
        self, entry: ModelEntry, model_dir: Path, reuse: ReusableFiles, linked: set[str] | None = None
    ) -> int:
        """Hard-link locally held files with the right SHA-256 into ``model_dir``; bytes reused.  The
        paths linked are added to ``linked``."""
        reused = 0
        for f in entry.files:
            target = model_dir / f.path
            if target.is_file() and target.stat().st_size == f.size:
                continue  # a previous attempt's file: the torrent's check decides
            for candidate in reuse.by_sha.get(f.sha256, ()):
                try:
                    if (
                        candidate.is_file()
                        and candidate.stat().st_size == f.size
                        and sha256_file(candidate) == f.sha256
                    ):
                        link_or_copy(candidate, target)
                        reused += f.size
                        if linked is not None:
                            linked.add(f.path)
                        break
                except OSError:
                    continue
        return reused

    async def seed_model(self, model: InstalledModel) -> Torrent:
        """Seed an installed model in the session (its .torrent if held, else by info-hash)."""
        existing = self.runner.session.torrents.get(model.info_hash.raw)
        if existing is not None:
            return existing
        path = self.store.torrent_path(model.info_hash)
        source: Metainfo | Magnet
        if await asyncio.to_thread(path.is_file):
            source = await asyncio.to_thread(load_metainfo, path)
        else:
            source = Magnet(info_hash=model.info_hash, display_name=model.name)
        return await self.runner.session.add(
            source, self.store.model_dest(model.name, model.info_hash), seed=True
        )


def check_torrent_files(entry: ModelEntry, metainfo: Metainfo) -> None:
    """The torrent must hold exactly the manifest's files (paths and sizes, pad files aside)."""
    info = metainfo.info
    if info.info_hash != entry.info_hash:
        raise ManifestError(
            f"model {entry.name!r}: torrent info-hash {info.info_hash.hex} is not the manifest's"
        )
    got = [("/".join(f.path[1:]), f.length) for f in info.files if not f.pad]
    want = [(f.path, f.size) for f in entry.files]
    if info.single_file or got != want:
        raise ManifestError(f"model {entry.name!r}: the torrent's files differ from the manifest's list")
    roots = {f.index: f.root.hex() for f in info.v2.files} if info.v2 is not None else {}
    indices = [i for i, f in enumerate(info.files) if not f.pad]
    for f, i in zip(entry.files, indices, strict=True):
        if f.pieces_root is not None and roots.get(i) != f.pieces_root:
            raise ManifestError(
                f"model {entry.name!r}: file {f.path!r} has another pieces root in the torrent than in the manifest"
            )


def post_check(model_dir: Path, entry: ModelEntry, policy: Policy) -> list[str]:
    """Every file's SHA-256 against the manifest, then the unsafe-format policy on the content.

    Files are hashed in parallel threads (hashlib releases the GIL), one file per thread.
    """
    workers = max(1, min(len(entry.files), os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tg-sha256") as pool:
        found = pool.map(lambda f: verify_files_sha256(model_dir, [f]), entry.files)
        problems = [m.message for mismatches in found for m in mismatches]
    if problems:
        return problems
    _, violations = scan_model_dir(model_dir, [f.path for f in entry.files], policy)
    return [v.message for v in violations]
