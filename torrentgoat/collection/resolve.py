"""Resolving a collection (level L5): a BEP 46 key -> the latest signed version, fetched and verified.

Steps 1-3 of the order of trust in :mod:`torrentgoat.collection.client`, and the model ``.torrent``
check of step 5: the key and salt come from the magnet typed or from the root's state (a magnet
for another key is refused); the DHT item names the manifest torrent, which is fetched into a
temporary directory outside the root; the manifest's detached signature must verify under that key,
the collection name must equal the salt, and every ``.torrent`` it ships must carry the manifest's
info-hash.  Nothing here writes under the root.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from torrentgoat.collection._common import (
    MAX_MANIFEST_TORRENT,
    TORRENTS_DIR,
    Say,
    read_manifest_tree,
)
from torrentgoat.collection.runner import TorrentRunner
from torrentgoat.collection.store import CollectionState, Store
from torrentgoat.errors import ConfigError, ManifestError, SignatureError, TorrentGoatError
from torrentgoat.magnet import Magnet, parse_magnet
from torrentgoat.manifest import (
    MANIFEST_FILENAME,
    SIGNATURE_FILENAME,
    Manifest,
    SignedManifest,
    read_manifest_folder,
)
from torrentgoat.metainfo import Metainfo, load_metainfo, parse_metainfo
from torrentgoat.primitives import InfoHash

__all__ = ["NotACollection", "Resolved", "fetch_version", "is_btpk", "key_and_salt", "verify_version"]


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


def key_and_salt(
    source: str | Magnet | None, state: CollectionState | None, root: Path
) -> tuple[bytes, bytes]:
    """The key and salt to resolve: ``source``'s, or the one ``root`` follows (``state``) when None.

    ConfigError when neither names a key; SignatureError when ``source`` names another collection
    than the one ``root`` already follows.
    """
    if source is None:
        if state is None:
            raise ConfigError(f"{root} follows no collection yet: 'get' a btpk magnet first")
        return state.public_key, state.salt
    magnet = parse_magnet(source) if isinstance(source, str) else source
    if magnet.public_key is None:
        raise ConfigError("a collection is named by a BEP 46 magnet: magnet:?xs=urn:btpk:<key>&s=<salt hex>")
    if state is not None and (magnet.public_key, magnet.salt) != (state.public_key, state.salt):
        raise SignatureError(
            f"{root} follows collection {state.collection!r} of key {state.public_key.hex()} "
            f"(salt {state.salt.hex()}); refusing a magnet for key {magnet.public_key.hex()} "
            f"(salt {magnet.salt.hex()})"
        )
    return magnet.public_key, magnet.salt


async def fetch_version(
    runner: TorrentRunner,
    store: Store,
    state: CollectionState | None,
    public_key: bytes,
    salt: bytes,
    say: Say,
) -> Resolved:
    """The version the key's BEP 46 item points at, verified (see :func:`verify_version`).

    The held copy is read when the item still names the held manifest torrent; otherwise the
    manifest torrent is downloaded into a temporary directory, which is removed afterwards.
    """
    info_hash = await runner.session.resolve_btpk(Magnet(public_key=public_key, salt=salt))
    say(f"key {public_key.hex()[:16]}... points at manifest torrent {info_hash.hex}")
    if state is not None and state.manifest_info_hash == info_hash and state.manifest_torrent_name:
        folder = store.manifest_dest(info_hash) / state.manifest_torrent_name
        if await asyncio.to_thread(folder.is_dir):
            files = await asyncio.to_thread(read_manifest_tree, folder)
            metainfo = await asyncio.to_thread(load_metainfo, store.manifest_torrent_path)
            return verify_version(files, public_key, salt, info_hash, metainfo)
    work = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="torrentgoat-manifest-"))
    try:
        torrent = await runner.start(Magnet(info_hash=info_hash), work, seed=False, label="manifest")
        try:
            info = await runner.wait(torrent.wait_metadata(), torrent, "the manifest torrent's metadata")
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
            await runner.wait(torrent.wait_complete(), torrent, "the manifest torrent")
        finally:
            torrent.stop("manifest fetched")
            await torrent.wait_stopped()
        assert torrent.metainfo is not None
        metainfo = torrent.metainfo
        files = await asyncio.to_thread(read_manifest_tree, work / metainfo.info.name)
    finally:
        await asyncio.to_thread(shutil.rmtree, work, True)
    return verify_version(files, public_key, salt, info_hash, metainfo)


def verify_version(
    files: dict[str, bytes], public_key: bytes, salt: bytes, info_hash: InfoHash, metainfo: Metainfo
) -> Resolved:
    """Check a manifest torrent's ``files`` under ``public_key``: signature, publisher, salt, .torrents.

    SignatureError / ManifestError when the version is not authentic or not well formed.
    """
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
