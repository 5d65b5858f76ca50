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
the new version committed -- the state, the signed manifest and every ``ROOT/<model>`` switch in one
atomic step (:meth:`~torrentgoat.collection.store.Store.commit`): a kill at any moment leaves the
old version or the new one, never a mix.

The publisher's signed BEP 46 item of the held version is kept in the state: BEP 44 lets anyone store
a signed item again, so seeding consumers keep the btpk magnet resolvable while the publisher is
offline (DHT nodes forget items after about two hours); nobody but the key holder can change it.

Modules: :mod:`~torrentgoat.collection.resolve` (steps 1-3: the key -> a verified version),
:mod:`~torrentgoat.collection.install` (step 5 and after: one model fetched, checked, installed),
:mod:`~torrentgoat.collection.runner` (the downloads' peers, time limit and watcher).  This module's
own job is the sync: what to fetch against the held version (step 4), committing the new state,
seeding, and storing the publisher's item again.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from torrentgoat import bencode
from torrentgoat.collection._common import Say, quiet, wait_dht
from torrentgoat.collection.install import ModelInstaller, ModelResult, ReusableFiles
from torrentgoat.collection.resolve import NotACollection, Resolved, fetch_version, is_btpk, key_and_salt
from torrentgoat.collection.runner import TorrentRunner, Watch
from torrentgoat.collection.store import CollectionState, InstalledModel, Store
from torrentgoat.dht.items import MutableItem, info_hash_value
from torrentgoat.errors import ConfigError, ManifestError, TorrentGoatError
from torrentgoat.magnet import Magnet, parse_magnet
from torrentgoat.manifest import (
    SIGNATURE_FILENAME,
    Manifest,
    ModelEntry,
    UpdatePlan,
    check_update,
    parse_signature,
    verify_manifest,
)
from torrentgoat.metainfo import load_metainfo
from torrentgoat.primitives import InfoHash
from torrentgoat.safety import Policy
from torrentgoat.session import Session
from torrentgoat.torrent import Torrent

__all__ = ["CollectionClient", "ModelResult", "NotACollection", "Resolved", "SyncReport", "Watch", "is_btpk"]


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
        block_updates: bool = True,
    ) -> None:
        self.session = session
        self.store = Store(root)
        self.say = say
        self.peers = tuple(peers)
        """Extra ``HOST:PORT`` peers dialled for every torrent (besides the DHT's)."""
        self.timeout = timeout
        """Seconds allowed for each torrent (manifest or model); None: no limit."""
        self.watch = watch
        self.block_updates = block_updates
        """Update changed files of hybrid/v2 model torrents block by block
        (:mod:`torrentgoat.collection.blockupdate`); False: whole files, as v1 torrents are."""

    def _runner(self) -> TorrentRunner:
        return TorrentRunner(session=self.session, peers=self.peers, timeout=self.timeout, watch=self.watch)

    def _installer(self) -> ModelInstaller:
        return ModelInstaller(
            runner=self._runner(), store=self.store, say=self.say, block_updates=self.block_updates
        )

    # -- resolving --------------------------------------------------------------------------------------

    async def resolve(self, source: str | Magnet | None = None) -> Resolved:
        """The latest version published under the magnet's key (or the held key), verified.

        Raises DHTError when nothing is published, SignatureError / ManifestError when the version
        found is not authentic or not well formed.  Writes nothing under the root.
        """
        state = await asyncio.to_thread(self.store.load_state)
        public_key, salt = key_and_salt(source, state, self.store.root)
        return await fetch_version(self._runner(), self.store, state, public_key, salt, self.say)

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
        reuse = ReusableFiles()
        installer = self._installer()
        for model in installed.values():
            reuse.add(self.store, model)
        results = await asyncio.gather(
            *(
                installer.install(entry, resolved, installed.get(entry.name), reuse, policy, hf_cache, seed)
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

        # commit: the manifest torrent's files (shared from now on), then the held version in one
        # atomic switch (Store.commit), then the versions it replaced are removed
        def commit() -> CollectionState:
            store = self.store
            store.meta.mkdir(parents=True, exist_ok=True)
            tname = resolved.metainfo.info.name
            folder = store.manifest_dest(resolved.info_hash) / tname
            for name, content in resolved.files.items():
                target = folder / name
                if not target.is_file() or target.read_bytes() != content:
                    store.write_file(target, content)
            new_models = dict(installed)
            replaced: list[InstalledModel] = []
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
                        replaced.append(old)
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
            store.commit(
                new_state,
                manifest=resolved.signed.data,
                signature=resolved.files[SIGNATURE_FILENAME],
                manifest_torrent=resolved.metainfo.to_bytes(),
            )
            for old in replaced:
                store.remove_version(old.name, old.info_hash)
            if state is not None and state.manifest_info_hash not in (None, resolved.info_hash):
                shutil.rmtree(store.manifest_dest(state.manifest_info_hash), ignore_errors=True)
            return new_state

        item = await self._signed_item(manifest, resolved.info_hash)
        new_state = await asyncio.to_thread(commit)
        if seed:
            await self._seed_manifest(new_state)
        return SyncReport(
            manifest=manifest, previous_seq=previous_seq, results=tuple(results), warnings=tuple(warnings)
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

    async def seed(self) -> list[Torrent]:
        """Seed the held manifest torrent and every installed model (peers find us through the DHT)."""
        state = await asyncio.to_thread(self.store.load_state)
        if state is None:
            raise ConfigError(f"{self.store.root} holds no collection")
        out: list[Torrent] = []
        installer = self._installer()
        manifest_torrent = await self._seed_manifest(state)
        if manifest_torrent is not None:
            out.append(manifest_torrent)
        for model in state.models.values():
            out.append(await installer.seed_model(model))
        return out


def _salt_of(source: str | Magnet | None, manifest: Manifest) -> bytes:
    if source is None:
        return manifest.collection.encode()
    magnet = parse_magnet(source) if isinstance(source, str) else source
    return magnet.salt


def _torrent_name_on_disk(store: Store, entry: ModelEntry) -> str:
    meta = load_metainfo(store.torrent_path(entry.info_hash))
    return meta.info.name


def _describe(result: ModelResult) -> str:
    from torrentgoat.units import format_size

    match result.status:
        case "installed" | "updated":
            text = f"{result.name}: {result.status}, {format_size(result.size)} verified"
            text += f" ({format_size(result.downloaded)} downloaded"
            if result.reused:
                text += f", {format_size(result.reused)} reused from local files"
            if result.hash_bytes:
                text += f", {format_size(result.hash_bytes)} of BEP 52 hashes"
            return text + ")"
        case "unchanged":
            return f"{result.name}: unchanged"
        case _:
            return f"{result.name}: {result.status}: {result.message}"
