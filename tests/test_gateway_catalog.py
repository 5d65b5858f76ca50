"""The swarm source's catalog (pure) and the seq rules a followed collection's versions must pass."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import pytest

from torrentgoat.collection import CollectionState, Resolved, Store
from torrentgoat.creation import create_torrent
from torrentgoat.errors import ManifestError, RepoNotFoundError, RevisionNotFoundError
from torrentgoat.gateway.catalog import (
    Catalog,
    collection_repo,
    file_paths,
    mapped_file_id,
    version_of_entry,
    version_of_torrent,
)
from torrentgoat.gateway.follow import admit, root_name
from torrentgoat.keys import SigningKey
from torrentgoat.magnet import Magnet
from torrentgoat.manifest import Manifest, ManifestFile, ModelEntry, ModelSource, SignedManifest
from torrentgoat.primitives import InfoHash

KEY = SigningKey(b"\x01" * 32)
SHA = hashlib.sha256(b"x").hexdigest()


def entry(
    name: str, ih: str, *, repo: str | None = "org/m", commit: str = "a" * 40, big: int = 1000
) -> ModelEntry:
    return ModelEntry(
        name=name,
        format="safetensors",
        info_hash=InfoHash.from_hex(ih * 40),
        files=(
            ManifestFile(path="config.json", size=10, sha256=SHA),
            ManifestFile(path="model.safetensors", size=big, sha256=SHA),
            ManifestFile(path="sub/notes.txt", size=20 * 1024 * 1024, sha256=SHA),
        ),
        source=ModelSource(hf_repo=repo, commit=commit) if repo else None,
        web_seeds=("http://hub.example/org/m/resolve/",),
    )


def manifest(seq: int, *models: ModelEntry) -> Manifest:
    return Manifest(collection="zoo", publisher=KEY.public_key, seq=seq, models=models)


def test_collection_models_become_repos(tmp_path: Path) -> None:
    m = manifest(1, entry("m", "1"), entry("plain", "2", repo=None), entry("Bad--", "3", repo=None))
    assert collection_repo(m, m.models[0]) == ("org/m", "a" * 40)
    assert collection_repo(m, m.models[1]) == ("zoo/plain", "2" * 40)  # the info-hash spells the commit
    assert collection_repo(m, m.models[2]) is None
    version = version_of_entry(m, m.models[0], metainfo=None, dest=tmp_path)
    assert version is not None
    files = version.snapshot.files
    assert files["model.safetensors"].lfs and files["model.safetensors"].etag == SHA
    assert not files["config.json"].lfs and files["config.json"].etag == SHA  # no git blob id in a manifest
    assert files["sub/notes.txt"].lfs  # 10 MiB and more: LFS on the Hub
    assert version.magnet.web_seeds == ("http://hub.example/org/m/resolve/",)
    assert version.label == "org/m@aaaaaaaa" and version.sha256["config.json"] == SHA


def test_mapped_torrents_are_their_info_hash(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    (folder / "sub").mkdir(parents=True)
    (folder / "config.json").write_bytes(b"{}" * 100)
    (folder / "sub" / "weights.safetensors").write_bytes(bytes(70_000))
    meta = create_torrent(folder, piece_length=16 * 1024, pad=True, creation_date=None)
    assert any(f.pad for f in meta.info.files)
    assert set(file_paths(meta.info)) == {"config.json", "sub/weights.safetensors"}
    version = version_of_torrent("model", "org/mapped", meta, dest=tmp_path / "d")
    assert version.snapshot.commit == meta.info_hash.hex
    weights = version.snapshot.files["sub/weights.safetensors"]
    assert not weights.lfs and weights.etag == mapped_file_id(meta.info_hash, "sub/weights.safetensors")
    assert weights.etag != version.snapshot.files["config.json"].etag
    single = create_torrent(folder / "config.json", piece_length=16 * 1024, creation_date=None)
    assert file_paths(single.info) == {"config.json": 0}


def test_catalog_main_commits_and_removals(tmp_path: Path) -> None:
    catalog = Catalog("collection zoo")
    v1 = version_of_entry(manifest(1, entry("m", "1")), entry("m", "1"), metainfo=None, dest=tmp_path)
    v2 = version_of_entry(
        manifest(2, entry("m", "2", commit="b" * 40)),
        entry("m", "2", commit="b" * 40),
        metainfo=None,
        dest=tmp_path,
    )
    other = version_of_entry(
        manifest(1, entry("o", "3", repo="org/o")),
        entry("o", "3", repo="org/o"),
        metainfo=None,
        dest=tmp_path,
    )
    assert v1 is not None and v2 is not None and other is not None
    catalog.replace([v1, other])
    assert catalog.lookup("model", "org/m", "main") is v1
    catalog.replace([v2])  # a new version; org/o left the collection
    assert catalog.lookup("model", "org/m", "main") is v2
    assert catalog.lookup("model", "org/m", "a" * 40) is v1  # the older commit stays reachable
    assert catalog.find(v1.key) is v1
    with pytest.raises(RevisionNotFoundError):
        catalog.lookup("model", "org/m", "v1.0")
    with pytest.raises(RepoNotFoundError):
        catalog.lookup("model", "org/o", "main")
    with pytest.raises(RepoNotFoundError):
        catalog.lookup("dataset", "org/m", "main")
    assert [v.snapshot.commit for v in catalog.current()] == ["b" * 40]


def _resolved(tmp_path: Path, signed: SignedManifest) -> Resolved:
    (tmp_path / "t").write_bytes(b"t")
    meta = create_torrent(tmp_path / "t", creation_date=None)
    return Resolved(
        signed=signed, info_hash=meta.info_hash, metainfo=meta, files=signed.folder_files(), torrents={}
    )


def test_seq_rules(tmp_path: Path) -> None:
    store = Store(tmp_path / "root")
    v1 = SignedManifest.create(manifest(1, entry("m", "1")), KEY)
    v2 = SignedManifest.create(manifest(2, entry("m", "2", commit="b" * 40)), KEY)
    assert admit(_resolved(tmp_path, v1), None, store) is not None  # a first version
    store.meta.mkdir(parents=True)
    store.write_file(store.manifest_path, v2.data)
    store.write_file(store.signature_path, v2.folder_files()["collection.yaml.sig"])
    held = (CollectionState(public_key=KEY.public_key, salt=b"zoo", collection="zoo", seq=2), v2.manifest)
    assert admit(_resolved(tmp_path, v2), held, store) is None  # the held version itself
    with pytest.raises(ManifestError, match="already held"):
        admit(_resolved(tmp_path, v1), held, store)
    twin = SignedManifest.create(replace(v2.manifest, created="2030-01-01T00:00:00Z"), KEY)
    with pytest.raises(ManifestError, match="like the held one"):
        admit(_resolved(tmp_path, twin), held, store)
    v3 = SignedManifest.create(manifest(3, entry("m", "2", commit="b" * 40)), KEY)
    plan = admit(_resolved(tmp_path, v3), held, store)
    assert plan is not None


def test_collection_folders() -> None:
    key = bytes(range(32))
    assert root_name(Magnet(public_key=key, salt=b"zoo")) == "zoo-0001020304050607"
    assert root_name(Magnet(public_key=key, salt=b"../x")) == "2e2e2f78-0001020304050607"
    assert root_name(Magnet(public_key=key, salt=b"")) == "collection-0001020304050607"
