"""Building collections: model torrents, manifests, spec files, HF snapshot folders, the store and the HF cache."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import huggingface_hub
import pytest

from torrentgoat.cli import main as cli_main
from torrentgoat.collection import ModelSpec, Store, build_collection, build_model, place_in_hf_cache
from torrentgoat.collection.build import load_draft, read_spec_file
from torrentgoat.collection.store import CollectionState, InstalledModel
from torrentgoat.errors import ConfigError, StorageError
from torrentgoat.keys import SigningKey
from torrentgoat.manifest import parse_manifest
from torrentgoat.metainfo import load_metainfo
from torrentgoat.modelcheck import sha256_file
from torrentgoat.testing.shards import write_model_folder

KEY = SigningKey(b"\x31" * 32)
PIECE = 16 * 1024


def test_snapshot_model_torrent_is_named_after_the_commit_with_hub_web_seeds(tmp_path: Path) -> None:
    folder = write_model_folder(tmp_path / "m", shards=2, shard_size=64 * 1024, seed=1)
    commit = "0123456789abcdef" * 2 + "01234567"
    built = build_model(
        ModelSpec(name="tiny", path=folder, hf_repo="org/tiny", commit=commit),
        hub="https://huggingface.co/",
        piece_length=PIECE,
    )
    assert built.metainfo.info.name == commit
    assert built.metainfo.web_seeds == ("https://huggingface.co/org/tiny/resolve/",)
    entry = built.entry
    assert entry.format == "safetensors" and entry.source is not None and entry.source.commit == commit
    assert [f.path for f in entry.files] == sorted(p.name for p in folder.iterdir())
    for f in entry.files:
        assert f.sha256 == sha256_file(folder / f.path) and f.size == (folder / f.path).stat().st_size
    # every file starts on a piece boundary (BEP 47 pads): unchanged files hash to the same pieces
    assert all(f.offset % PIECE == 0 for f in built.metainfo.info.files if not f.pad and f.length)
    # the same folder gives the same info-hash (no creation date in the info dict)
    again = build_model(
        ModelSpec(name="tiny", path=folder, hf_repo="org/tiny", commit=commit), piece_length=PIECE
    )
    assert again.entry.info_hash == entry.info_hash


def test_build_refuses_corrupt_safetensors_unless_no_check(tmp_path: Path) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    header = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}).encode()
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 8)
    with pytest.raises(ConfigError, match=r"model\.safetensors.*--no-check"):
        build_model(ModelSpec(name="bad", path=folder))
    assert build_model(ModelSpec(name="bad", path=folder), check=False).entry.format == "safetensors"


def test_spec_checks() -> None:
    with pytest.raises(ConfigError, match="both"):
        ModelSpec(name="x", path=Path("."), hf_repo="org/x")
    with pytest.raises(ConfigError, match="40 lowercase hex"):
        ModelSpec(name="x", path=Path("."), hf_repo="org/x", commit="abc")
    with pytest.raises(ConfigError, match="repo id"):
        ModelSpec(name="x", path=Path("."), hf_repo="../x", commit="a" * 40)


def test_cli_build_from_hf_snapshot_folders_and_a_spec_file(tmp_path: Path) -> None:
    key_file = tmp_path / "k.key"
    KEY.save(key_file)
    commit = "f" * 40
    snapshot = write_model_folder(
        tmp_path / "hub" / "models--org--snap" / "snapshots" / commit, shards=1, shard_size=32 * 1024
    )
    other = write_model_folder(tmp_path / "other", shards=1, shard_size=32 * 1024, seed=2)
    spec = tmp_path / "spec.yaml"
    spec.write_text("- {name: from-spec, path: other, license: mit, yanked: superseded}\n")
    assert [s.name for s in read_spec_file(spec)] == ["from-spec"]
    out = tmp_path / "out"
    code = cli_main(
        ["collection", "build", "zoo", str(snapshot), "renamed=" + str(other), "--spec", str(spec),
         "-o", str(out), "--key", str(key_file), "--piece-size", "16KiB", "--yank", "renamed=old"]
    )  # fmt: skip
    assert code == 0
    draft = load_draft(Store(out))
    assert draft is not None and draft.seq == 1
    by_name = {m.name: m for m in draft.models}
    assert sorted(by_name) == ["from-spec", "renamed", "snap"]
    assert by_name["snap"].source is not None and by_name["snap"].source.hf_repo == "org/snap"
    assert by_name["snap"].source.commit == commit
    assert by_name["from-spec"].license == "mit" and by_name["from-spec"].yanked == "superseded"
    assert by_name["renamed"].yanked == "old"
    # the files are in the store, the .torrent beside them
    for model in draft.models:
        meta = load_metainfo(Store(out).torrent_path(model.info_hash))
        folder = Store(out).model_dir(model.name, model.info_hash, meta.info.name)
        for f in model.files:
            assert sha256_file(folder / f.path) == f.sha256
    # a model option naming no model is an error
    assert (
        cli_main(
            [
                "collection",
                "build",
                "zoo",
                str(other),
                "-o",
                str(out),
                "--key",
                str(key_file),
                "--hf",
                "x=o/x@" + "a" * 40,
            ]
        )
        == 2
    )


def test_build_refuses_another_key_or_collection_in_the_same_root(tmp_path: Path) -> None:
    folder = write_model_folder(tmp_path / "m", shards=1, shard_size=32 * 1024)
    store = Store(tmp_path / "out")
    manifest = build_collection("zoo", [ModelSpec(name="m", path=folder)], store.root, KEY.public_key)
    from torrentgoat.collection.build import installed_from_manifest, state_for

    state = state_for(manifest, None)
    store.commit(state, manifest=b"", signature=b"", manifest_torrent=b"")
    with pytest.raises(ConfigError, match="not of key"):
        build_collection("zoo", [ModelSpec(name="m", path=folder)], store.root, b"\x01" * 32)
    with pytest.raises(ConfigError, match="not 'other'"):
        build_collection("other", [ModelSpec(name="m", path=folder)], store.root, KEY.public_key)
    with pytest.raises(ConfigError, match="given twice"):
        build_collection(
            "zoo",
            [ModelSpec(name="m", path=folder), ModelSpec(name="M", path=folder)],
            store.root,
            KEY.public_key,
        )
    assert parse_manifest(store.draft_path.read_bytes()) == manifest
    assert sorted(installed_from_manifest(manifest, store)) == ["m"]


def test_store_state_round_trip_and_damage(tmp_path: Path) -> None:
    store = Store(tmp_path)
    assert store.load_state() is None
    store.meta.mkdir()
    legacy = store.meta / "state.json"  # a root written before the single commit point is still read
    legacy.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        store.load_state()
    legacy.write_text(json.dumps({"format": "torrentgoat-collection-state/1", "models": {"../x": {}}}))
    with pytest.raises(ConfigError, match=r"bad model name|damaged"):
        store.load_state()


def _state(seq: int, *models: InstalledModel) -> CollectionState:
    return CollectionState(
        public_key=KEY.public_key,
        salt=b"zoo",
        collection="zoo",
        seq=seq,
        models={m.name: m for m in models},
    )


def test_commit_switches_state_manifest_and_every_link_at_once(tmp_path: Path) -> None:
    from torrentgoat.primitives import InfoHash

    store = Store(tmp_path)
    a1 = InstalledModel(name="a", info_hash=InfoHash(b"\x01" * 20), torrent_name="t", files=())
    b1 = InstalledModel(name="b", info_hash=InfoHash(b"\x02" * 20), torrent_name="t", files=())
    a2 = InstalledModel(name="a", info_hash=InfoHash(b"\x03" * 20), torrent_name="t", files=())
    for model in (a1, b1, a2):
        store.installed_dir(model).mkdir(parents=True)
        (store.installed_dir(model) / "f").write_text(model.info_hash.hex)
    store.commit(_state(1, a1, b1), manifest=b"m1", signature=b"s1", manifest_torrent=b"t1")
    assert os.readlink(tmp_path / "a") == ".torrentgoat/current/a"
    assert (tmp_path / "a" / "f").read_text() == a1.info_hash.hex
    assert store.load_state() == _state(1, a1, b1)
    assert store.held_manifest() == (b"m1", b"s1")
    assert store.link_problem(a1) is None and store.link_problem(a2) is not None

    store.commit(_state(2, a2, b1), manifest=b"m2", signature=b"s2", manifest_torrent=b"t2")
    assert (tmp_path / "a" / "f").read_text() == a2.info_hash.hex
    assert store.load_state() == _state(2, a2, b1)
    assert (store.held_manifest(), store.manifest_torrent_path.read_bytes()) == ((b"m2", b"s2"), b"t2")
    assert [p.name for p in (store.meta / "versions").iterdir()] == [os.readlink(store.meta / "current")[9:]]
    assert not list(tmp_path.glob(".*.tmp")) and not list(store.meta.glob(".*.tmp"))


def test_commit_moves_a_root_of_the_older_layout(tmp_path: Path) -> None:
    from torrentgoat.primitives import InfoHash

    store = Store(tmp_path)
    model = InstalledModel(name="ok", info_hash=InfoHash(b"\x01" * 20), torrent_name="t", files=())
    store.installed_dir(model).mkdir(parents=True)
    (store.meta / "state.json").write_text(json.dumps(_state(1, model).to_json()))
    (store.meta / "collection.yaml").write_bytes(b"m1")
    (store.meta / "collection.yaml.sig").write_bytes(b"s1")
    os.symlink(f".torrentgoat/models/ok/{'01' * 20}/t", tmp_path / "ok")
    assert store.load_state() == _state(1, model) and store.held_manifest() == (b"m1", b"s1")
    assert store.link_problem(model) is None
    store.commit(_state(2, model), manifest=b"m2", signature=b"s2", manifest_torrent=b"t2")
    assert os.readlink(tmp_path / "ok") == ".torrentgoat/current/ok"
    assert store.load_state() == _state(2, model) and store.link_problem(model) is None
    assert not (store.meta / "state.json").exists() and not (store.meta / "collection.yaml").exists()


def test_model_link_never_replaces_a_users_directory(tmp_path: Path) -> None:
    store = Store(tmp_path)
    (tmp_path / "mine").mkdir()
    with pytest.raises(StorageError, match="not a torrentgoat model link"):
        store.check_link_free("mine")
    store.ensure_link("ok")
    assert os.readlink(tmp_path / "ok") == ".torrentgoat/current/ok"
    store.ensure_link("ok")  # idempotent


def test_hf_cache_layout_is_what_huggingface_hub_reads(tmp_path: Path) -> None:
    folder = write_model_folder(tmp_path / "m", shards=1, shard_size=32 * 1024)
    (folder / "deep" / "er").mkdir(parents=True)
    (folder / "deep" / "er" / "f.txt").write_text("x")
    commit = "9" * 40
    entry = build_model(
        ModelSpec(name="m", path=folder, hf_repo="org/m", commit=commit), piece_length=PIECE
    ).entry
    cache = tmp_path / "cache"
    snapshot = place_in_hf_cache(folder, entry, cache)
    assert (cache / "models--org--m" / "refs" / "main").read_text() == commit
    assert os.readlink(snapshot / "deep" / "er" / "f.txt") == "../../../../blobs/" + next(
        f.sha256 for f in entry.files if f.path == "deep/er/f.txt"
    )
    path = huggingface_hub.hf_hub_download("org/m", "deep/er/f.txt", cache_dir=cache, local_files_only=True)
    assert Path(path).read_text() == "x"
    # blobs are hard links of the verified files: no extra space
    config = next(f for f in entry.files if f.path == "config.json")
    assert os.path.samefile(cache / "models--org--m" / "blobs" / config.sha256, folder / "config.json")
    no_source = build_model(ModelSpec(name="m", path=folder), piece_length=PIECE).entry
    with pytest.raises(ConfigError, match="no Hugging Face repo"):
        place_in_hf_cache(folder, no_source, cache)


def test_model_torrents_are_hybrid_and_the_manifest_holds_each_files_pieces_root(tmp_path: Path) -> None:
    from dataclasses import replace

    from torrentgoat.collection.install import check_torrent_files
    from torrentgoat.errors import ManifestError
    from torrentgoat.manifest import Manifest, dump_manifest

    folder = write_model_folder(tmp_path / "m", shards=1, shard_size=256 * 1024)
    built = build_model(ModelSpec(name="m", path=folder), piece_length=64 * 1024)
    info = built.metainfo.info
    assert info.format == "hybrid" and info.v2 is not None
    roots = {f.index: f.root.hex() for f in info.v2.files}
    paths = ["/".join(f.path[1:]) for f in info.files]
    for f in built.entry.files:
        assert f.pieces_root == roots[paths.index(f.path)]
    manifest = Manifest(collection="c", publisher=b"\x01" * 32, seq=1, models=(built.entry,))
    data = dump_manifest(manifest)
    assert b"pieces_root: " in data and parse_manifest(data) == manifest
    # a manifest without roots (today's) still reads; a v1 build has none
    legacy = build_model(ModelSpec(name="m", path=folder), piece_length=64 * 1024, format="v1")
    assert all(f.pieces_root is None for f in legacy.entry.files)
    assert b"pieces_root" not in dump_manifest(replace(manifest, models=(legacy.entry,)))
    check_torrent_files(built.entry, built.metainfo)
    wrong = replace(built.entry.files[0], pieces_root="ab" * 32)
    with pytest.raises(ManifestError, match="another pieces root"):
        check_torrent_files(replace(built.entry, files=(wrong, *built.entry.files[1:])), built.metainfo)
    bad = data.replace(b"pieces_root: " + built.entry.files[0].pieces_root.encode(), b"pieces_root: xyz", 1)  # type: ignore[union-attr]
    with pytest.raises(ManifestError, match=r"files\[0\]\.pieces_root: not 64 hex digits"):
        parse_manifest(bad)
