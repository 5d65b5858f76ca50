"""Following one collection for the gateway (level L5): its latest signed version, checked like ``collection get``.

:meth:`CollectionFollower.refresh` resolves the collection's BEP 46 item and verifies what it points at
with the collection client's own code (:meth:`CollectionClient.resolve
<torrentgoat.collection.CollectionClient.resolve>`: the manifest's signature against the key *in the
magnet*, the publisher, the salt, every model ``.torrent`` against the manifest's info-hash), then
applies the seq rules against the version held on disk (:func:`admit`: a lower ``seq`` -- a replay or
a rollback -- is refused, the same ``seq`` with other bytes is refused, and
:func:`~torrentgoat.manifest.check_update` refuses a changed collection name or key and a model that
keeps its info-hash with other files).  An accepted version is written to the collection's root in the
layout of :mod:`torrentgoat.collection.store` (``state.json``, the held manifest and signature, the
manifest torrent and every model ``.torrent``), so a restarted gateway starts from it and the seq
rules hold across restarts; its manifest torrent is seeded, so the next gateway of a cluster can
fetch it from this one, and the publisher's signed item is stored in the DHT again from time to
time (BEP 44 lets anyone do that), so the magnet keeps resolving while the publisher is away.

Model files are not installed here: the gateway fetches them on demand
(:mod:`torrentgoat.gateway.fetch`) into the same root (``.torrentgoat/models/<model>/<info-hash>/``).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from torrentgoat import bencode
from torrentgoat.collection import CollectionClient, CollectionState, Resolved, Store
from torrentgoat.dht.items import info_hash_value
from torrentgoat.errors import ManifestError, SignatureError, TorrentGoatError
from torrentgoat.magnet import Magnet
from torrentgoat.manifest import SIGNATURE_FILENAME, Manifest, UpdatePlan, check_update
from torrentgoat.metainfo import Metainfo, load_metainfo
from torrentgoat.primitives import InfoHash
from torrentgoat.session import Session
from torrentgoat.torrent import Torrent

__all__ = ["CollectionFollower", "admit", "root_name"]

log = logging.getLogger("torrentgoat.gateway")

ITEM_REFRESH = 30 * 60.0
"""Seconds between stores of the publisher's signed item (DHT nodes drop items after about 2 hours)."""


def root_name(magnet: Magnet) -> str:
    """The folder a followed collection lives in under the gateway's cache: ``<salt>-<key prefix>``."""
    assert magnet.public_key is not None
    salt = magnet.salt.decode("ascii", errors="replace")
    safe = (
        salt
        if salt and all(c.isalnum() or c in "._-" for c in salt) and salt[0] != "."
        else magnet.salt.hex()
    )
    return f"{safe or 'collection'}-{magnet.public_key.hex()[:16]}"


def admit(
    resolved: Resolved, held: tuple[CollectionState, Manifest] | None, store: Store
) -> UpdatePlan | None:
    """Whether ``resolved`` may replace the held version: its update plan, or None when it *is* the
    held version.  ManifestError / SignatureError when it is refused (see the module docstring)."""
    new = resolved.manifest
    if held is None:
        return check_update(None, new)
    current = held[1]
    if new.seq == current.seq:
        current_bytes = store.held_manifest()
        if current_bytes is not None and current_bytes[0] == resolved.signed.data:
            return None
        raise ManifestError(
            f"seq: the offered manifest has seq {new.seq}, like the held one, but different content; refusing it"
        )
    return check_update(current, new)


Changed = Callable[[Manifest, dict[str, Metainfo]], None]
"""Called with each accepted version: the manifest and the model torrents it ships (name -> torrent)."""


class CollectionFollower:
    """One followed collection (see the module docstring)."""

    def __init__(
        self,
        session: Session,
        magnet: Magnet,
        root: Path,
        *,
        changed: Changed,
        peers: tuple[str, ...] = (),
        timeout: float = 120.0,
    ) -> None:
        if magnet.public_key is None:
            raise TorrentGoatError("a collection is followed by its BEP 46 magnet (xs=urn:btpk:...)")
        self.session = session
        self.magnet = magnet
        self.client = CollectionClient(session, root, peers=peers, timeout=timeout)
        self.store = self.client.store
        self.changed = changed
        self.manifest: Manifest | None = None
        self.attempted = asyncio.Event()
        """Set once the first resolution ended (accepted, unchanged or failed)."""
        self.error: str | None = None
        """Why the last resolution failed (None: it did not)."""
        self._lock = asyncio.Lock()
        self._manifest_torrent: Torrent | None = None
        self._item_stored = 0.0

    @property
    def name(self) -> str:
        return (
            self.manifest.collection
            if self.manifest is not None
            else self.magnet.salt.decode(errors="replace")
        )

    async def load_held(self) -> Manifest | None:
        """The version held on disk from an earlier run (verified again under the magnet's key), or None."""
        held = await asyncio.to_thread(self.client.held)
        if held is None:
            return None
        state, manifest = held
        if (state.public_key, state.salt) != (self.magnet.public_key, self.magnet.salt):
            raise SignatureError(
                f"{self.store.root} follows key {state.public_key.hex()} (salt {state.salt.hex()}), "
                f"not the magnet's {self.magnet.public_key.hex()}"  # type: ignore[union-attr]
            )
        torrents = await asyncio.to_thread(self._held_torrents, manifest)
        self.manifest = manifest
        self.changed(manifest, torrents)
        log.info(
            "%s: held version seq %d (%d models)", manifest.collection, manifest.seq, len(manifest.models)
        )
        if state.manifest_info_hash is not None:
            await self._seed_manifest(state.manifest_info_hash)
        return manifest

    def _held_torrents(self, manifest: Manifest) -> dict[str, Metainfo]:
        out: dict[str, Metainfo] = {}
        for entry in manifest.models:
            path = self.store.torrent_path(entry.info_hash)
            try:
                meta = load_metainfo(path)
            except (OSError, TorrentGoatError):
                continue
            if meta.info_hash == entry.info_hash:
                out[entry.name] = meta
        return out

    async def refresh(self) -> bool:
        """Resolve the latest version now; True when a new one was accepted.

        Raises what resolving raises (DHTError when nothing is published or the DHT is unreachable;
        SignatureError / ManifestError when the version found is refused).
        """
        async with self._lock:
            try:
                changed = await self._refresh()
            except TorrentGoatError as exc:
                self.error = str(exc)
                raise
            finally:
                self.attempted.set()  # once the catalog has the version, or it failed
            self.error = None
            return changed

    async def _refresh(self) -> bool:
        held = await asyncio.to_thread(self.client.held)
        resolved = await self.client.resolve(self.magnet)
        plan = admit(resolved, held, self.store)
        if plan is None:
            await self._keep_item_alive()
            return False
        manifest = resolved.manifest
        for warning in plan.warnings:
            log.warning("%s: %s", manifest.collection, warning)
        state = held[0] if held is not None else None
        item = await self._signed_item(manifest, resolved.info_hash)
        await asyncio.to_thread(self._commit, resolved, state, item)
        self.manifest = manifest
        self.changed(manifest, dict(resolved.torrents))
        previous = f" (held: seq {held[1].seq})" if held is not None else ""
        log.info("%s: signed version seq %d verified%s", manifest.collection, manifest.seq, previous)
        await self._seed_manifest(resolved.info_hash)
        return True

    def _commit(
        self, resolved: Resolved, state: CollectionState | None, item: tuple[int, bytes, bytes] | None
    ) -> None:
        """Write the accepted version to the root (blocking): what ``collection get`` writes, models aside."""
        store = self.store
        store.meta.mkdir(parents=True, exist_ok=True)
        name = resolved.metainfo.info.name
        folder = store.manifest_dest(resolved.info_hash) / name
        for relative, content in resolved.files.items():
            target = folder / relative
            if not target.is_file() or target.read_bytes() != content:
                store.write_file(target, content)
        for meta in resolved.torrents.values():
            store.write_file(store.torrent_path(meta.info_hash), meta.to_bytes())
        manifest = resolved.manifest
        assert self.magnet.public_key is not None
        store.commit(  # one atomic switch to the new version (collection/store.py)
            CollectionState(
                public_key=self.magnet.public_key,
                salt=self.magnet.salt,
                collection=manifest.collection,
                seq=manifest.seq,
                manifest_info_hash=resolved.info_hash,
                manifest_torrent_name=name,
                selection=state.selection if state is not None else None,
                models=state.models if state is not None else {},
                item=item if item is not None else (state.item if state is not None else None),
            ),
            manifest=resolved.signed.data,
            signature=resolved.files[SIGNATURE_FILENAME],
            manifest_torrent=resolved.metainfo.to_bytes(),
        )
        if state is not None and state.manifest_info_hash not in (None, resolved.info_hash):
            assert state.manifest_info_hash is not None
            shutil.rmtree(store.manifest_dest(state.manifest_info_hash), ignore_errors=True)

    async def _signed_item(self, manifest: Manifest, info_hash: InfoHash) -> tuple[int, bytes, bytes] | None:
        """The publisher's BEP 46 item pointing at this version, kept to store it again later."""
        dht = self.session.dht
        if dht is None:
            return None
        try:
            item = await dht.get_mutable(manifest.publisher, manifest.collection.encode())
        except TorrentGoatError:
            return None
        if item is None or item.seq != manifest.seq or item.value != info_hash_value(info_hash):
            return None
        return int(item.seq), bencode.encode(item.value), bytes(item.signature)

    async def _keep_item_alive(self) -> None:
        now = time.monotonic()
        if now - self._item_stored < ITEM_REFRESH:
            return
        self._item_stored = now
        try:
            await self.client.refresh_item()
        except TorrentGoatError as exc:
            log.debug("%s: storing the signed item again failed: %s", self.name, exc)

    async def _seed_manifest(self, info_hash: InfoHash) -> None:
        """Seed the held manifest torrent (and stop the one it replaces)."""
        old = self._manifest_torrent
        if old is not None and old.info_hash == info_hash and not old.stopping:
            return
        try:
            existing = self.session.torrents.get(info_hash.raw)
            if existing is None:
                meta = await asyncio.to_thread(load_metainfo, self.store.manifest_torrent_path)
                if meta.info_hash != info_hash:
                    return
                existing = await self.session.add(meta, self.store.manifest_dest(info_hash), seed=True)
            self._manifest_torrent = existing
        except (OSError, TorrentGoatError) as exc:
            log.warning("%s: cannot seed the manifest torrent: %s", self.name, exc)
            return
        if old is not None and old.info_hash != info_hash:
            old.stop("superseded by a new version")
