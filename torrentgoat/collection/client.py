"""Following a collection (level L5): resolve the latest signed version, fetch models, update them.

    async with Session(config) as session:
        client = CollectionClient(session, "models/")
        report = await client.sync("magnet:?xs=urn:btpk:<key>&s=<salt hex>", models=["tiny"])
        report = await client.sync()            # update: re-resolve the key held in models/
        torrents = await client.seed()          # share the held manifest and installed models
        await client.serve(refresh=1800)        # seed, and store the publisher's signed item again

The order of trust, and what is refused (``ManifestError`` / ``SignatureError``, nothing on disk
touched -- the manifest torrent is fetched into a temporary directory outside the root):

1. the key (and salt) come from the magnet the user typed, or from the root's state on update;
   a magnet whose key differs from the one the root follows is refused;
2. the DHT item (BEP 44 signature checked by the DHT layer) names the manifest torrent; its
   info-hash pins the manifest, the signature and the model ``.torrent`` files;
3. the manifest's detached signature must verify under the key *from step 1* and name it as
   publisher; the collection name must equal the salt;
4. against the held version: a lower ``seq`` (a replay or rollback) is refused, the same ``seq``
   with other bytes is refused, and :func:`~torrentgoat.manifest.check_update` refuses a changed
   collection name or key and a model that keeps its info-hash with a different file list;
5. each model ``.torrent`` must have the manifest's info-hash and exactly the manifest's files.

Then, per model: file names are judged by the unsafe-format policy *before* any byte is fetched
(pickle weights are refused unless ``Policy(allow_pickle=True)``); files already present locally
with the right SHA-256 (the previous version, or another model) are verified and hard-linked into
the new version's directory so the torrent's resume check counts them and only new bytes cross the
network; after the torrent completes, every file's SHA-256 is checked against the manifest and every
file against the policy (content sniffing for pickles, safetensors headers validated).  Only then is
``ROOT/<model>`` switched to the new version (see :mod:`torrentgoat.collection.store`).

The publisher's signed BEP 46 item of the held version is kept in the state: BEP 44 lets anyone store
a signed item again, so seeding consumers keep the btpk magnet resolvable while the publisher is
offline (DHT nodes forget items after about two hours); nobody but the key holder can change it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from torrentgoat import bencode
from torrentgoat.collection._common import (
    MAX_MANIFEST_TORRENT,
    TORRENTS_DIR,
    Say,
    quiet,
    read_manifest_tree,
    wait_dht,
)
from torrentgoat.collection.hfcache import place_in_hf_cache
from torrentgoat.collection.store import CollectionState, InstalledModel, Store, link_or_copy
from torrentgoat.dht.items import MutableItem, info_hash_value
from torrentgoat.errors import ConfigError, ManifestError, SignatureError, TorrentGoatError
from torrentgoat.magnet import Magnet, parse_magnet
from torrentgoat.manifest import (
    MANIFEST_FILENAME,
    SIGNATURE_FILENAME,
    Manifest,
    ModelEntry,
    SignedManifest,
    UpdatePlan,
    check_update,
    parse_signature,
    read_manifest_folder,
    verify_manifest,
)
from torrentgoat.metainfo import Metainfo, load_metainfo, parse_metainfo
from torrentgoat.modelcheck import scan_model_dir, sha256_file, verify_files_sha256
from torrentgoat.primitives import InfoHash
from torrentgoat.safety import Policy, judge
from torrentgoat.session import Session
from torrentgoat.torrent import Torrent

T = TypeVar("T")

__all__ = ["CollectionClient", "ModelResult", "NotACollection", "Resolved", "SyncReport", "Watch", "is_btpk"]

Watch = Callable[[Torrent, str], None]
"""Called with every torrent the client starts and a label (``"manifest"`` or the model name)."""


class NotACollection(TorrentGoatError):
    """The btpk magnet points at a torrent that is not a collection manifest torrent."""

    def __init__(self, message: str, info_hash: InfoHash) -> None:
        super().__init__(message)
        self.info_hash = info_hash


def is_btpk(source: str) -> bool:
    """Whether ``source`` is a BEP 46 magnet naming a key and no info-hash."""
    if not source.startswith("magnet:"):
        return False
    try:
        magnet = parse_magnet(source)
    except TorrentGoatError:
        return False
    return magnet.public_key is not None and magnet.info_hash is None


@dataclass(frozen=True, slots=True, kw_only=True)
class Resolved:
    """A verified collection version, as fetched (nothing written to the root yet)."""

    signed: SignedManifest
    info_hash: InfoHash
    """The manifest torrent's info-hash (what the BEP 46 item points at)."""
    metainfo: Metainfo
    """The manifest torrent."""
    files: dict[str, bytes]
    """The manifest torrent's files, relative path -> content."""
    torrents: dict[str, Metainfo]
    """Model name -> its torrent (checked against the manifest's info-hash)."""

    @property
    def manifest(self) -> Manifest:
        return self.signed.manifest


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
    """Bytes of files found locally (verified SHA-256) and linked into the new version."""
    size: int = 0
    path: Path | None = None
    """``ROOT/<model>`` once installed."""
    hf_snapshot: Path | None = None

    @property
    def ok(self) -> bool:
        return self.status in ("installed", "updated", "unchanged", "skipped")


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncReport:
    """The outcome of :meth:`CollectionClient.sync`."""

    manifest: Manifest
    previous_seq: int | None
    results: tuple[ModelResult, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    @property
    def downloaded(self) -> int:
        return sum(r.downloaded for r in self.results)


@dataclass(slots=True)
class _Reuse:
    """Where bytes with a given SHA-256 can be found locally (installed models)."""

    by_sha: dict[str, list[Path]] = field(default_factory=dict)

    def add(self, store: Store, model: InstalledModel) -> None:
        base = store.installed_dir(model)
        for f in model.files:
            self.by_sha.setdefault(f.sha256, []).append(base / f.path)


class CollectionClient:
    """Gets and updates one collection under ``root`` through ``session`` (see the module docstring)."""

    def __init__(
        self,
        session: Session,
        root: str | Path,
        *,
        say: Say = quiet,
        peers: Sequence[str] = (),
        timeout: float | None = None,
        watch: Watch | None = None,
    ) -> None:
        self.session = session
        self.store = Store(root)
        self.say = say
        self.peers = tuple(peers)
        """Extra ``HOST:PORT`` peers dialled for every torrent (besides the DHT's)."""
        self.timeout = timeout
        """Seconds allowed for each torrent (manifest or model); None: no limit."""
        self.watch = watch

    # -- resolving --------------------------------------------------------------------------------------

    def _key_and_salt(
        self, source: str | Magnet | None, state: CollectionState | None
    ) -> tuple[bytes, bytes]:
        if source is None:
            if state is None:
                raise ConfigError(f"{self.store.root} follows no collection yet: 'get' a btpk magnet first")
            return state.public_key, state.salt
        magnet = parse_magnet(source) if isinstance(source, str) else source
        if magnet.public_key is None:
            raise ConfigError(
                "a collection is named by a BEP 46 magnet: magnet:?xs=urn:btpk:<key>&s=<salt hex>"
            )
        if state is not None and (magnet.public_key, magnet.salt) != (state.public_key, state.salt):
            raise SignatureError(
                f"{self.store.root} follows collection {state.collection!r} of key {state.public_key.hex()} "
                f"(salt {state.salt.hex()}); refusing a magnet for key {magnet.public_key.hex()} "
                f"(salt {magnet.salt.hex()})"
            )
        return magnet.public_key, magnet.salt

    async def resolve(self, source: str | Magnet | None = None) -> Resolved:
        """The latest version published under the magnet's key (or the held key), verified.

        Raises DHTError when nothing is published, SignatureError / ManifestError when the version
        found is not authentic or not well formed.  Writes nothing under the root.
        """
        state = await asyncio.to_thread(self.store.load_state)
        public_key, salt = self._key_and_salt(source, state)
        info_hash = await self.session.resolve_btpk(Magnet(public_key=public_key, salt=salt))
        self.say(f"key {public_key.hex()[:16]}... points at manifest torrent {info_hash.hex}")
        if state is not None and state.manifest_info_hash == info_hash and state.manifest_torrent_name:
            folder = self.store.manifest_dest(info_hash) / state.manifest_torrent_name
            if await asyncio.to_thread(folder.is_dir):
                files = await asyncio.to_thread(read_manifest_tree, folder)
                metainfo = await asyncio.to_thread(load_metainfo, self.store.manifest_torrent_path)
                return self._verify(files, public_key, salt, info_hash, metainfo)
        work = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="torrentgoat-manifest-"))
        try:
            torrent = await self.session.add(Magnet(info_hash=info_hash), work, seed=False, peers=self.peers)
            if self.watch is not None:
                self.watch(torrent, "manifest")
            try:
                info = await self._wait(torrent.wait_metadata(), torrent, "the manifest torrent's metadata")
                names = {"/".join(f.path[1:]) for f in info.files if not info.single_file}
                if MANIFEST_FILENAME not in names or SIGNATURE_FILENAME not in names:
                    raise NotACollection(
                        f"torrent {info_hash.hex} ({info.name!r}) is not a collection manifest torrent",
                        info_hash,
                    )
                if info.total_length > MAX_MANIFEST_TORRENT or len(info.files) > 4 * 4096 + 16:
                    torrent.stop("manifest torrent too large")
                    raise ManifestError(
                        f"the manifest torrent holds {info.total_length} bytes in {len(info.files)} files; "
                        f"refusing more than {MAX_MANIFEST_TORRENT} bytes"
                    )
                await self._wait(torrent.wait_complete(), torrent, "the manifest torrent")
            finally:
                torrent.stop("manifest fetched")
                await torrent.wait_stopped()
            assert torrent.metainfo is not None
            metainfo = torrent.metainfo
            files = await asyncio.to_thread(read_manifest_tree, work / metainfo.info.name)
        finally:
            await asyncio.to_thread(shutil.rmtree, work, True)
        return self._verify(files, public_key, salt, info_hash, metainfo)

    def _verify(
        self, files: dict[str, bytes], public_key: bytes, salt: bytes, info_hash: InfoHash, metainfo: Metainfo
    ) -> Resolved:
        signed = read_manifest_folder(files, public_key)
        manifest = signed.manifest
        if salt and salt != manifest.collection.encode():
            raise ManifestError(
                f"the key's item with salt {salt!r} points at collection {manifest.collection!r}; refusing it"
            )
        torrents: dict[str, Metainfo] = {}
        for entry in manifest.models:
            raw = files.get(f"{TORRENTS_DIR}/{entry.name}.torrent")
            if raw is None:
                continue  # fetched by info-hash (BEP 9) instead
            meta = parse_metainfo(raw)
            if meta.info_hash != entry.info_hash:
                raise ManifestError(
                    f"model {entry.name!r}: the manifest torrent's .torrent has info-hash {meta.info_hash.hex}, "
                    f"the manifest says {entry.info_hash.hex}"
                )
            torrents[entry.name] = meta
        return Resolved(signed=signed, info_hash=info_hash, metainfo=metainfo, files=files, torrents=torrents)

    async def _wait(self, awaitable: Awaitable[T], torrent: Torrent, what: str) -> T:
        try:
            return await asyncio.wait_for(awaitable, timeout=self.timeout)
        except TimeoutError:
            torrent.stop(f"timed out after {self.timeout:.0f} s")
            raise TorrentGoatError(f"{what}: no data within {self.timeout:.0f} s (no peers?)") from None

    # -- checking a version against the held one -------------------------------------------------------

    def held(self) -> tuple[CollectionState, Manifest] | None:
        """The root's state and held manifest (verified again under the state's key), or None."""
        state = self.store.load_state()
        if state is None:
            return None
        held = self.store.held_manifest()
        if held is None:
            raise ConfigError(
                f"{self.store.root}: state without a manifest; remove {self.store.meta} to start over"
            )
        manifest = verify_manifest(held[0], parse_signature(held[1]), state.public_key)
        return state, manifest

    def _admit(self, resolved: Resolved, held: tuple[CollectionState, Manifest] | None) -> UpdatePlan | None:
        """Refuse a version that may not replace the held one; the update plan otherwise (None: same)."""
        new = resolved.manifest
        if held is None:
            return check_update(None, new)
        current = held[1]
        if new.seq == current.seq:
            current_bytes = self.store.held_manifest()
            if current_bytes is not None and current_bytes[0] == resolved.signed.data:
                return None
            raise ManifestError(
                f"seq: the offered manifest has seq {new.seq}, like the held one, but different content; "
                "refusing it"
            )
        return check_update(current, new)

    # -- syncing ----------------------------------------------------------------------------------------

    async def sync(
        self,
        source: str | Magnet | None = None,
        *,
        models: Sequence[str] | None = None,
        policy: Policy | None = None,
        include_yanked: bool = False,
        hf_cache: Path | None = None,
        seed: bool = False,
    ) -> SyncReport:
        """Get (``source`` given) or update (``source`` None) the collection under the root.

        ``models``: names to fetch, yanked ones included when named -- only those on a get, those
        besides the followed ones on an update; the names join the models followed from then on.
        Default: the models followed so far (every model, unless a first get named some).  ``seed``: keep the torrents seeding afterwards
        (the manifest torrent too).  Raises on a refused version; per-model failures are in the report.
        """
        policy = policy or Policy()
        held = await asyncio.to_thread(self.held)
        resolved = await self.resolve(source)
        manifest = resolved.manifest
        plan = self._admit(resolved, held)
        state = held[0] if held is not None else None
        previous_seq = held[1].seq if held is not None else None
        warnings = list(plan.warnings) if plan is not None else []
        if plan is None:
            self.say(f"{manifest.collection}: seq {manifest.seq} is the version already held")
        else:
            self.say(
                f"{manifest.collection}: signed version seq {manifest.seq} verified"
                + (f" (held: seq {previous_seq})" if previous_seq is not None else "")
            )
        for text in warnings:
            self.say(f"warning: {text}")

        if models:
            unknown = [n for n in models if manifest.model(n) is None]
            if unknown:
                names = ", ".join(m.name for m in manifest.models)
                raise ConfigError(
                    f"no model named {', '.join(map(repr, unknown))} in the collection ({names})"
                )
        explicit = set(models or ())
        if state is None:
            selection = tuple(sorted(explicit)) if explicit else None
        elif state.selection is None:
            selection = None
        else:
            selection = tuple(sorted(set(state.selection) | explicit))
        chosen: list[ModelEntry] = []
        for entry in manifest.models:
            if entry.name in explicit:
                chosen.append(entry)  # asked for by name: fetched even when yanked
                continue
            if explicit and source is not None:
                continue  # get --model: only those; update --model: those and the followed ones
            if selection is not None and entry.name not in selection:
                continue
            if entry.yanked is not None and not include_yanked:
                if state is not None and entry.name in state.models:
                    warnings.append(f"model {entry.name!r} is yanked ({entry.yanked}); the copy held is kept")
                    self.say(
                        f"warning: model {entry.name!r} is yanked ({entry.yanked}); the copy held is kept"
                    )
                continue
            chosen.append(entry)

        installed = dict(state.models) if state is not None else {}
        self._list(manifest, chosen, installed)
        reuse = _Reuse()
        for model in installed.values():
            reuse.add(self.store, model)
        results = await asyncio.gather(
            *(
                self._fetch(entry, resolved, installed.get(entry.name), reuse, policy, hf_cache, seed)
                for entry in chosen
            )
        )
        for result in results:
            self.say(_describe(result))

        # torrents of versions about to be removed stop first (they may be seeding in this session)
        retired = [state.manifest_info_hash] if state is not None and state.manifest_info_hash else []
        for result, entry in zip(results, chosen, strict=True):
            old = installed.get(entry.name)
            if result.status == "updated" and old is not None:
                retired.append(old.info_hash)
        for ih in retired:
            torrent = self.session.torrents.get(ih.raw)
            if torrent is not None and ih != resolved.info_hash:
                torrent.stop("superseded by a new version")
                await torrent.wait_stopped()

        # commit: the held manifest, the manifest torrent (shared from now on) and the state
        def commit() -> CollectionState:
            store = self.store
            store.meta.mkdir(parents=True, exist_ok=True)
            tname = resolved.metainfo.info.name
            folder = store.manifest_dest(resolved.info_hash) / tname
            for name, content in resolved.files.items():
                target = folder / name
                if not target.is_file() or target.read_bytes() != content:
                    store.write_file(target, content)
            store.write_file(store.manifest_torrent_path, resolved.metainfo.to_bytes())
            store.write_file(store.manifest_path, resolved.signed.data)
            store.write_file(store.signature_path, resolved.files[SIGNATURE_FILENAME])
            new_models = dict(installed)
            for result, entry in zip(results, chosen, strict=True):
                if result.status in ("installed", "updated"):
                    old = new_models.get(entry.name)
                    new_models[entry.name] = InstalledModel(
                        name=entry.name,
                        info_hash=entry.info_hash,
                        torrent_name=resolved.torrents[entry.name].info.name
                        if entry.name in resolved.torrents
                        else _torrent_name_on_disk(store, entry),
                        files=entry.files,
                    )
                    if entry.name in resolved.torrents:
                        store.write_file(
                            store.torrent_path(entry.info_hash), resolved.torrents[entry.name].to_bytes()
                        )
                    if old is not None and old.info_hash != entry.info_hash:
                        store.remove_version(entry.name, old.info_hash)
            if state is not None and state.manifest_info_hash not in (None, resolved.info_hash):
                shutil.rmtree(store.manifest_dest(state.manifest_info_hash), ignore_errors=True)
            new_state = CollectionState(
                public_key=manifest.publisher,
                salt=state.salt if state is not None else _salt_of(source, manifest),
                collection=manifest.collection,
                seq=manifest.seq,
                manifest_info_hash=resolved.info_hash,
                manifest_torrent_name=tname,
                selection=selection,
                models=new_models,
                item=item if item is not None else (state.item if state is not None else None),
            )
            store.save_state(new_state)
            return new_state

        item = await self._signed_item(manifest, resolved.info_hash)
        new_state = await asyncio.to_thread(commit)
        if seed:
            await self._seed_manifest(new_state)
        return SyncReport(
            manifest=manifest, previous_seq=previous_seq, results=tuple(results), warnings=tuple(warnings)
        )

    async def _fetch(
        self,
        entry: ModelEntry,
        resolved: Resolved,
        current: InstalledModel | None,
        reuse: _Reuse,
        policy: Policy,
        hf_cache: Path | None,
        seed: bool,
    ) -> ModelResult:
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
                    await self._seed_model(current)
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
            if metainfo is not None:
                _check_torrent_files(entry, metainfo)
                reused = await asyncio.to_thread(self._link_reusable, entry, dest / metainfo.info.name, reuse)
            else:
                reused = 0
            torrent = await self.session.add(source, dest, seed=seed, peers=self.peers)
            if self.watch is not None:
                self.watch(torrent, entry.name)
            try:
                info = await self._wait(torrent.wait_metadata(), torrent, f"model {entry.name}")
                if metainfo is None:
                    assert torrent.metainfo is not None
                    _check_torrent_files(entry, torrent.metainfo)
                    metainfo = torrent.metainfo
                    await asyncio.to_thread(
                        store.write_file, store.torrent_path(entry.info_hash), metainfo.to_bytes()
                    )
                del info
                await self._wait(torrent.wait_complete(), torrent, f"model {entry.name}")
            except BaseException:
                torrent.stop("failed")
                raise
            downloaded = torrent.downloaded
            model_dir = dest / metainfo.info.name
            problems = await asyncio.to_thread(_post_check, model_dir, entry, policy)
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
                    size=size,
                )
            installed = InstalledModel(
                name=entry.name, info_hash=entry.info_hash, torrent_name=metainfo.info.name, files=entry.files
            )
            await asyncio.to_thread(store.point_link, installed)
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
            size=size,
            path=store.link_path(entry.name),
            hf_snapshot=snapshot,
        )

    def _list(
        self, manifest: Manifest, chosen: list[ModelEntry], installed: dict[str, InstalledModel]
    ) -> None:
        from torrentgoat.units import format_size

        names = {e.name for e in chosen}
        for entry in manifest.models:
            held = installed.get(entry.name)
            if entry.name in names:
                what = "up to date" if held and held.info_hash == entry.info_hash else "to fetch"
            elif entry.yanked is not None:
                what = f"yanked: {entry.yanked}"
            else:
                what = "not followed"
            size = format_size(sum(f.size for f in entry.files))
            self.say(f"  {entry.name:<24} {entry.format:<12} {size:>10}  {what}")

    def _link_reusable(self, entry: ModelEntry, model_dir: Path, reuse: _Reuse) -> int:
        """Hard-link locally held files with the right SHA-256 into ``model_dir``; bytes reused."""
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
                        break
                except OSError:
                    continue
        return reused

    # -- keeping the BEP 46 item alive -----------------------------------------------------------------------

    async def _signed_item(self, manifest: Manifest, info_hash: InfoHash) -> tuple[int, bytes, bytes] | None:
        """The publisher's item pointing at this version (kept to store it again later), or None."""
        if self.session.dht is None:
            return None
        try:
            item = await self.session.dht.get_mutable(manifest.publisher, manifest.collection.encode())
        except TorrentGoatError:
            return None
        if item is None or item.seq != manifest.seq or item.value != info_hash_value(info_hash):
            return None
        return int(item.seq), bencode.encode(item.value), bytes(item.signature)

    async def refresh_item(self) -> bool:
        """Store the held version's signed item again in the DHT (BEP 44 lets anyone do that).

        Nothing is stored when the DHT already holds a newer seq.  Returns whether it was stored.
        """
        state = await asyncio.to_thread(self.store.load_state)
        if state is None or state.item is None or self.session.dht is None:
            return False
        seq, value, signature = state.item
        item = MutableItem(
            public_key=state.public_key,
            seq=seq,
            value=bencode.decode(value),
            signature=signature,
            salt=state.salt,
        )
        item.verify()
        await wait_dht(self.session)  # a session just started may not know a node yet
        current = await self.session.dht.get_mutable(state.public_key, state.salt)
        if current is not None and current.seq > seq:
            self.say(f"the DHT holds a newer version (seq {current.seq}); run update")
            return False
        await self.session.dht.put_signed(item)
        return True

    async def serve(self, *, refresh: float = 1800.0) -> None:
        """Seed the held version and store its DHT item again every ``refresh`` seconds, until cancelled."""
        await self.seed()
        while True:
            try:
                await self.refresh_item()
            except TorrentGoatError as exc:
                self.say(f"refreshing the DHT item failed (will retry): {exc}")
            await asyncio.sleep(refresh)

    # -- seeding and listing ----------------------------------------------------------------------------

    async def _seed_manifest(self, state: CollectionState) -> Torrent | None:
        if state.manifest_info_hash is None:
            return None
        existing = self.session.torrents.get(state.manifest_info_hash.raw)
        if existing is not None:
            return existing
        metainfo = await asyncio.to_thread(load_metainfo, self.store.manifest_torrent_path)
        return await self.session.add(metainfo, self.store.manifest_dest(metainfo.info_hash), seed=True)

    async def _seed_model(self, model: InstalledModel) -> Torrent:
        existing = self.session.torrents.get(model.info_hash.raw)
        if existing is not None:
            return existing
        path = self.store.torrent_path(model.info_hash)
        source: Metainfo | Magnet
        if await asyncio.to_thread(path.is_file):
            source = await asyncio.to_thread(load_metainfo, path)
        else:
            source = Magnet(info_hash=model.info_hash, display_name=model.name)
        return await self.session.add(source, self.store.model_dest(model.name, model.info_hash), seed=True)

    async def seed(self) -> list[Torrent]:
        """Seed the held manifest torrent and every installed model (peers find us through the DHT)."""
        state = await asyncio.to_thread(self.store.load_state)
        if state is None:
            raise ConfigError(f"{self.store.root} holds no collection")
        out: list[Torrent] = []
        manifest_torrent = await self._seed_manifest(state)
        if manifest_torrent is not None:
            out.append(manifest_torrent)
        for model in state.models.values():
            out.append(await self._seed_model(model))
        return out


def _salt_of(source: str | Magnet | None, manifest: Manifest) -> bytes:
    if source is None:
        return manifest.collection.encode()
    magnet = parse_magnet(source) if isinstance(source, str) else source
    return magnet.salt


def _torrent_name_on_disk(store: Store, entry: ModelEntry) -> str:
    meta = load_metainfo(store.torrent_path(entry.info_hash))
    return meta.info.name


def _check_torrent_files(entry: ModelEntry, metainfo: Metainfo) -> None:
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


def _post_check(model_dir: Path, entry: ModelEntry, policy: Policy) -> list[str]:
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


def _describe(result: ModelResult) -> str:
    from torrentgoat.units import format_size

    match result.status:
        case "installed" | "updated":
            text = f"{result.name}: {result.status}, {format_size(result.size)} verified"
            text += f" ({format_size(result.downloaded)} downloaded"
            if result.reused:
                text += f", {format_size(result.reused)} reused from local files"
            return text + ")"
        case "unchanged":
            return f"{result.name}: unchanged"
        case _:
            return f"{result.name}: {result.status}: {result.message}"


def held_manifest_bytes(store: Store) -> tuple[bytes, bytes] | None:
    """``(manifest, signature file)`` held in ``store`` (re-exported for the CLI's ``ls``)."""
    return store.held_manifest()
