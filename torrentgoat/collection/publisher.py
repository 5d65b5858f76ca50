"""Publishing a collection (level L5): sign the next version, ship it as a torrent, point the key at it.

    async with Session(config) as session:
        publisher = Publisher(session, "out/", SigningKey.load("publisher.key"))
        publication = await publisher.publish()     # sign draft.yaml, seed everything, BEP 46 put
        print(publication.magnet)                   # magnet:?xs=urn:btpk:<key>&s=<salt hex>
        await publisher.serve(refresh=3600)         # seed, re-put the item, publish new drafts

The manifest torrent holds ``collection.yaml``, its detached signature ``collection.yaml.sig`` and
``torrents/<model>.torrent`` for every model.  The BEP 46 item is ``{"ih": <manifest torrent
info-hash>}`` under the publisher's key with the collection name as salt and the manifest's ``seq`` as
the item's sequence number (BEP 44), so the DHT itself keeps only the newest version.  DHT nodes drop
items after about two hours, so :meth:`Publisher.serve` puts it again periodically.
"""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from torrentgoat.atomicwrite import write_atomic
from torrentgoat.collection._common import TORRENTS_DIR, Say, quiet, wait_dht
from torrentgoat.collection.build import installed_from_manifest, load_draft, state_for
from torrentgoat.collection.store import Store
from torrentgoat.creation import create_torrent
from torrentgoat.dht.items import SigningKey as DHTSigningKey
from torrentgoat.dht.items import btpk_magnet
from torrentgoat.errors import ConfigError, DHTError, TorrentGoatError
from torrentgoat.keys import SigningKey
from torrentgoat.manifest import (
    SIGNATURE_FILENAME,
    Manifest,
    SignedManifest,
    parse_signature,
    verify_manifest,
)
from torrentgoat.metainfo import Metainfo, load_metainfo
from torrentgoat.primitives import InfoHash
from torrentgoat.session import Session
from torrentgoat.torrent import Torrent

__all__ = ["DEFAULT_REFRESH", "Publication", "Publisher"]

DEFAULT_REFRESH = 30 * 60.0
"""Seconds between re-puts of the BEP 46 item (BEP 44 nodes may drop items after 2 hours)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Publication:
    """What :meth:`Publisher.publish` put in the DHT."""

    magnet: str
    """``magnet:?xs=urn:btpk:<key hex>&s=<salt hex>``: always the latest signed version."""
    seq: int
    manifest_info_hash: InfoHash
    signed: SignedManifest
    torrents: tuple[Torrent, ...]
    """The seeding torrents: the manifest torrent first, then the models."""


class Publisher:
    """Signs, seeds and announces the collection built into ``root`` (see the module docstring)."""

    def __init__(self, session: Session, root: str | Path, key: SigningKey, *, say: Say = quiet) -> None:
        self.session = session
        self.store = Store(root)
        self.key = key
        self.say = say
        self._signed: SignedManifest | None = None
        self._manifest_ih: InfoHash | None = None
        self._torrents: dict[bytes, Torrent] = {}

    @property
    def salt(self) -> bytes:
        assert self._signed is not None
        return self._signed.manifest.collection.encode()

    async def _current_dht_seq(self, salt: bytes) -> int | None:
        await wait_dht(self.session)
        item = await self.session.dht.get_mutable(self.key.public_key, salt)
        return None if item is None else int(item.seq)

    def _write_manifest_torrent(self, signed: SignedManifest) -> tuple[InfoHash, Metainfo]:
        """Lay out the manifest torrent's files in the store, hash them, save the .torrent."""
        store = self.store
        name = signed.torrent_name
        building = store.meta / "manifest" / ".building"
        shutil.rmtree(building, ignore_errors=True)
        folder = building / name
        (folder / TORRENTS_DIR).mkdir(parents=True)
        for filename, content in signed.folder_files().items():
            write_atomic(folder / filename, content)
        for entry in signed.manifest.models:
            shutil.copyfile(
                store.torrent_path(entry.info_hash), folder / TORRENTS_DIR / f"{entry.name}.torrent"
            )
        metainfo = create_torrent(folder, name=name, creation_date=None)
        dest = store.manifest_dest(metainfo.info_hash)
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        folder.rename(dest / name)
        shutil.rmtree(building, ignore_errors=True)
        return metainfo.info_hash, metainfo

    def _draft_held(self, draft: Manifest) -> bool:
        """Whether ``draft`` was signed and committed already (a publish killed before it removed the
        draft): the held version has at least its seq and the same models."""
        held = self.store.held_manifest()
        if held is None:
            return False
        current = verify_manifest(held[0], parse_signature(held[1]), self.key.public_key)
        return (
            current.seq >= draft.seq
            and current.models == draft.models
            and current.collection == draft.collection
            and current.publisher == draft.publisher
        )

    async def publish(self, *, seq: int | None = None) -> Publication:
        """Sign the draft (or re-publish the held version), seed it all and put the BEP 46 item."""
        store = self.store
        state = await asyncio.to_thread(store.load_state)
        draft = await asyncio.to_thread(load_draft, store)
        if draft is not None and state is not None and await asyncio.to_thread(self._draft_held, draft):
            await asyncio.to_thread(store.draft_path.unlink)
            draft = None
        if draft is None and state is None:
            raise ConfigError(f"nothing to publish in {store.root}: run 'collection build' first")
        if state is not None and state.public_key != self.key.public_key:
            raise ConfigError(f"{store.root} was published with key {state.public_key.hex()}, not this key")
        if draft is not None and draft.publisher != self.key.public_key:
            raise ConfigError(f"the draft in {store.root} names key {draft.publisher.hex()}, not this key")
        collection = draft.collection if draft is not None else state.collection  # type: ignore[union-attr]
        salt = collection.encode()
        dht_seq = await self._current_dht_seq(salt)
        if draft is not None:
            floor = max(draft.seq, (state.seq + 1) if state else 1, (dht_seq + 1) if dht_seq else 1)
            if seq is not None and seq < floor:
                raise ConfigError(f"seq {seq} is too low: at least {floor} is needed")
            manifest = replace(
                draft, seq=seq or floor, created=datetime.now(UTC).isoformat(timespec="seconds")
            )
            signed = SignedManifest.create(manifest, self.key)
            ih, metainfo = await asyncio.to_thread(self._write_manifest_torrent, signed)
            old = state

            def commit() -> None:
                models = installed_from_manifest(signed.manifest, store)
                new_state = replace(
                    state_for(signed.manifest, old),
                    manifest_info_hash=ih,
                    manifest_torrent_name=signed.torrent_name,
                    models=models,
                )
                store.commit(
                    new_state,
                    manifest=signed.data,
                    signature=signed.folder_files()[SIGNATURE_FILENAME],
                    manifest_torrent=metainfo.to_bytes(),
                )
                store.draft_path.unlink()  # a kill before this line: the next publish drops it (_draft_held)

            await asyncio.to_thread(commit)
            self.say(f"signed {collection} v{signed.manifest.seq} ({len(signed.manifest.models)} models)")
        else:
            assert state is not None
            held = await asyncio.to_thread(store.held_manifest)
            if held is None or state.manifest_info_hash is None:
                raise ConfigError(f"{store.root} holds no signed version to publish")
            verified = verify_manifest(held[0], parse_signature(held[1]), self.key.public_key)
            signed = SignedManifest(manifest=verified, data=held[0], signature=parse_signature(held[1]))
            if dht_seq is not None and dht_seq > verified.seq:
                raise DHTError(
                    f"the DHT already holds seq {dht_seq} for this key and collection, above our {verified.seq}: "
                    "is another publisher using this key?"
                )
            metainfo = await asyncio.to_thread(load_metainfo, store.manifest_torrent_path)
            ih = metainfo.info_hash
        self._signed, self._manifest_ih = signed, ih
        torrents = await self._seed(signed, metainfo)
        keep = {(m.name, m.info_hash.hex) for m in signed.manifest.models}
        await asyncio.to_thread(_prune, store, keep, ih)
        await self._announce([t.info_hash for t in torrents])
        await self.put_item()
        magnet = btpk_magnet(self.key.public_key, salt)
        self.say(f"published seq {signed.manifest.seq}: {magnet}")
        return Publication(
            magnet=magnet, seq=signed.manifest.seq, manifest_info_hash=ih, signed=signed, torrents=torrents
        )

    async def _seed(self, signed: SignedManifest, metainfo: Metainfo) -> tuple[Torrent, ...]:
        store = self.store
        wanted: list[tuple[Metainfo, Path]] = [(metainfo, store.manifest_dest(metainfo.info_hash))]
        for entry in signed.manifest.models:
            model_meta = await asyncio.to_thread(load_metainfo, store.torrent_path(entry.info_hash))
            wanted.append((model_meta, store.model_dest(entry.name, entry.info_hash)))
        keep = {m.info_hash.raw for m, _ in wanted}
        for raw, torrent in list(self._torrents.items()):
            if raw not in keep:
                torrent.stop("superseded by a new version")
                await torrent.wait_stopped()
                del self._torrents[raw]
        out = []
        for meta, dest in wanted:
            existing = self._torrents.get(meta.info_hash.raw) or self.session.torrents.get(meta.info_hash.raw)
            torrent = existing if existing is not None else await self.session.add(meta, dest, seed=True)
            self._torrents[meta.info_hash.raw] = torrent
            out.append(torrent)
        return tuple(out)

    async def _announce(self, hashes: list[InfoHash]) -> None:
        """Announce every torrent on the DHT now, so consumers find us as soon as the item is out."""
        port = self.session.listen_port

        async def one(ih: InfoHash) -> None:
            try:
                await self.session.dht.announce(ih, port=port)
            except DHTError as exc:
                self.say(f"DHT announce of {ih.hex} failed: {exc}")

        await asyncio.gather(*(one(ih) for ih in hashes))

    async def put_item(self) -> None:
        """Put (or refresh) the BEP 46 item pointing at the current manifest torrent."""
        assert self._signed is not None and self._manifest_ih is not None
        await self.session.dht.publish_torrent(
            DHTSigningKey(self.key.seed), self._manifest_ih, salt=self.salt, seq=self._signed.manifest.seq
        )

    async def serve(self, *, refresh: float = DEFAULT_REFRESH, poll: float = 5.0) -> None:
        """Seed; re-put the item every ``refresh`` seconds; publish a new draft within ``poll`` seconds.

        ``collection build`` writes ``draft.yaml`` last and atomically, so a running publisher picks a
        new version up as soon as it is complete.  Runs until cancelled or every torrent stopped.
        """
        loop = asyncio.get_running_loop()
        last_put = loop.time()
        while any(t.state != "stopped" for t in self._torrents.values()):
            await asyncio.sleep(min(poll, refresh))
            try:
                if await asyncio.to_thread(self.store.draft_path.is_file):
                    await self.publish()
                    last_put = loop.time()
                elif loop.time() - last_put >= refresh:
                    await self.put_item()
                    await self._announce([InfoHash(raw) for raw in self._torrents])
                    last_put = loop.time()
            except TorrentGoatError as exc:
                self.say(f"publishing failed (will retry): {exc}")


def _prune(store: Store, keep: set[tuple[str, str]], manifest_ih: InfoHash) -> None:
    """Remove stored model versions and manifest torrents that the published version no longer names."""
    manifests = store.meta / "manifest"
    if manifests.is_dir():
        for version in manifests.iterdir():
            if version.name != manifest_ih.hex:
                shutil.rmtree(version, ignore_errors=True)
    models = store.meta / "models"
    if not models.is_dir():
        return
    for model_dir in models.iterdir():
        for version in model_dir.iterdir():
            if (model_dir.name, version.name) not in keep:
                shutil.rmtree(version, ignore_errors=True)
        if not any(model_dir.iterdir()):
            model_dir.rmdir()
