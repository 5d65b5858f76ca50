"""Collections: the unsafe-format policy, yanked models, web seeds from a fake hub and the HF cache layout."""

from __future__ import annotations

import asyncio
import contextlib
import json
import pickle
import struct
from pathlib import Path

import huggingface_hub

from tests.test_collection_e2e import local_dht, session_config
from torrentgoat.collection import CollectionClient, ModelSpec, Publisher, Store, build_collection
from torrentgoat.keys import SigningKey
from torrentgoat.modelcheck import sha256_file
from torrentgoat.safety import Policy
from torrentgoat.session import Session
from torrentgoat.testing.hub import FakeHub
from torrentgoat.testing.shards import write_model_folder

PIECE = 32 * 1024


def small_model(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text('{"model_type": "tiny"}\n')
    return folder


def corrupt_safetensors(path: Path) -> None:
    """A header whose tensor claims more bytes than the file holds."""
    header = json.dumps({"w": {"dtype": "F32", "shape": [1024], "data_offsets": [0, 4096]}}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 100)


async def test_pickle_and_corrupt_headers_are_refused(tmp_path: Path) -> None:
    key = SigningKey(b"\x11" * 32)
    src = tmp_path / "src"
    good = write_model_folder(src / "good", shards=1, shard_size=256 * 1024, seed=1)
    pickled = small_model(src / "pickled")
    (pickled / "pytorch_model.bin").write_bytes(pickle.dumps({"w": list(range(1000))}, protocol=4))
    sneaky = small_model(src / "sneaky")
    (sneaky / "weights.dat").write_bytes(pickle.dumps({"w": list(range(1000))}, protocol=4))
    corrupt = small_model(src / "corrupt")
    corrupt_safetensors(corrupt / "model.safetensors")
    specs = [
        ModelSpec(name="good", path=good),
        ModelSpec(name="pickled", path=pickled),
        ModelSpec(name="sneaky", path=sneaky),
        ModelSpec(name="corrupt", path=corrupt),
    ]
    manifest = build_collection(
        "mixed", specs, tmp_path / "pub", key.public_key, piece_length=PIECE, check=False
    )
    assert manifest.model("pickled").format == "pickle"  # type: ignore[union-attr]

    async with (
        local_dht() as nodes,
        Session(session_config(nodes[0], seed=1)) as pub,
        Session(session_config(nodes[0], seed=2)) as con,
    ):
        publication = await Publisher(pub, tmp_path / "pub", key).publish()
        client = CollectionClient(con, tmp_path / "c", timeout=30)
        report = await client.sync(publication.magnet)
        results = {r.name: r for r in report.results}
        assert not report.ok
        assert results["good"].status == "installed"
        # refused by name before a byte was fetched
        assert results["pickled"].status == "refused" and results["pickled"].downloaded == 0
        assert "--allow-pickle" in results["pickled"].message
        assert "pytorch_model.bin" in results["pickled"].message
        # refused by content after the download, and removed
        assert results["sneaky"].status == "refused" and "pickle" in results["sneaky"].message
        assert results["corrupt"].status == "refused" and "model.safetensors" in results["corrupt"].message
        for name in ("pickled", "sneaky", "corrupt"):
            assert not (tmp_path / "c" / name).exists()
        state = Store(tmp_path / "c").load_state()
        assert state is not None and sorted(state.models) == ["good"]

        # with --allow-pickle the pickle models complete; a corrupt safetensors header never does
        report = await client.sync(publication.magnet, policy=Policy(allow_pickle=True))
        results = {r.name: r for r in report.results}
        assert results["good"].status == "unchanged"
        assert results["pickled"].status == "installed" and results["sneaky"].status == "installed"
        assert results["corrupt"].status == "refused"
        assert (tmp_path / "c" / "pickled" / "pytorch_model.bin").is_file()


async def test_yanked_models_web_seeds_and_hf_cache(tmp_path: Path) -> None:
    key = SigningKey(b"\x12" * 32)
    src = tmp_path / "src"
    commit = "ab" * 20
    llama = write_model_folder(src / "llama", shards=2, shard_size=512 * 1024, seed=4)
    (llama / "sub").mkdir()
    (llama / "sub" / "extra.txt").write_text("nested files get deeper links\n")
    old = write_model_folder(src / "old", shards=1, shard_size=128 * 1024, seed=5)
    async with FakeHub() as hub:
        hub.add_repo("org/llama", commit, llama)
        specs = [
            ModelSpec(name="llama", path=llama, hf_repo="org/llama", commit=commit),
            ModelSpec(name="old", path=old),
        ]
        build_collection("hf", specs, tmp_path / "pub", key.public_key, hub=hub.url, piece_length=PIECE)
        async with (
            local_dht() as nodes,
            Session(session_config(nodes[0], seed=1, upload_limit=256 * 1024)) as pub,
            Session(session_config(nodes[0], seed=2)) as con,
        ):
            publisher = Publisher(pub, tmp_path / "pub", key)
            first = await publisher.publish()
            cache = tmp_path / "hf-cache"
            client = CollectionClient(con, tmp_path / "c", timeout=30)
            report = await client.sync(first.magnet, hf_cache=cache)
            assert report.ok, report
            # the hub served part of llama as a BEP 19 web seed (the publisher's upload is slow)
            assert hub.bytes_served() > 0
            results = {r.name: r for r in report.results}
            assert results["llama"].hf_snapshot == cache / "models--org--llama" / "snapshots" / commit

            # huggingface_hub finds the model offline
            folder = huggingface_hub.snapshot_download(
                "org/llama", revision=commit, cache_dir=cache, local_files_only=True
            )
            assert Path(folder) == results["llama"].hf_snapshot
            entry = report.manifest.model("llama")
            assert entry is not None
            for f in entry.files:
                assert sha256_file(Path(folder) / f.path) == f.sha256
            config = huggingface_hub.hf_hub_download(
                "org/llama", "config.json", cache_dir=cache, local_files_only=True
            )
            assert Path(config).read_bytes() == (llama / "config.json").read_bytes()
            nested = huggingface_hub.hf_hub_download(
                "org/llama", "sub/extra.txt", cache_dir=cache, local_files_only=True
            )
            assert Path(nested).read_text() == "nested files get deeper links\n"

            # v2 yanks "old": update keeps the held copy, warns, fetches nothing
            specs[1] = ModelSpec(name="old", path=old, yanked="license problem")
            build_collection("hf", specs, tmp_path / "pub", key.public_key, hub=hub.url, piece_length=PIECE)
            await publisher.publish()
            report = await client.sync()
            assert report.ok and report.manifest.seq == 2
            assert any("yanked" in w and "license problem" in w for w in report.warnings)
            assert [r.name for r in report.results] == ["llama"]
            assert (tmp_path / "c" / "old" / "config.json").is_file()

            # a fresh consumer does not get a yanked model unless asked for it
            other = CollectionClient(con, tmp_path / "d", timeout=30)
            report = await other.sync(first.magnet, models=None)
            assert [r.name for r in report.results] == ["llama"]
            report = await other.sync(first.magnet, models=["old"])
            assert [r.name for r in report.results] == ["old"] and report.ok
            # ... or unless yanked models are included
            third = CollectionClient(con, tmp_path / "e", timeout=30)
            report = await third.sync(first.magnet, include_yanked=True)
            assert sorted(r.name for r in report.results) == ["llama", "old"] and report.ok


async def test_a_running_publisher_publishes_a_new_build(tmp_path: Path) -> None:
    key = SigningKey(b"\x13" * 32)
    first_model = write_model_folder(tmp_path / "src" / "one", shards=1, shard_size=64 * 1024, seed=1)
    specs = [ModelSpec(name="one", path=first_model)]
    build_collection("live", specs, tmp_path / "pub", key.public_key, piece_length=PIECE)
    async with local_dht() as nodes, Session(session_config(nodes[0], seed=1)) as pub:
        publisher = Publisher(pub, tmp_path / "pub", key)
        first = await publisher.publish()
        serving = asyncio.create_task(publisher.serve(refresh=0.2, poll=0.05))
        try:
            second_model = write_model_folder(
                tmp_path / "src" / "two", shards=1, shard_size=64 * 1024, seed=2
            )
            specs.append(ModelSpec(name="two", path=second_model))
            build_collection("live", specs, tmp_path / "pub", key.public_key, piece_length=PIECE)
            for _ in range(200):  # the state is saved before the item is put: wait for both
                state = Store(tmp_path / "pub").load_state()
                if state is not None and state.seq == 2:
                    ih = await nodes[2].resolve_torrent(key.public_key, b"live")
                    if ih == state.manifest_info_hash:
                        break
                await asyncio.sleep(0.05)
            assert state is not None and state.seq == 2
            assert state.manifest_info_hash != first.manifest_info_hash
            assert ih == state.manifest_info_hash
            async with Session(session_config(nodes[0], seed=2)) as con:
                report = await CollectionClient(con, tmp_path / "c", timeout=30).sync(first.magnet)
            assert report.ok and sorted(r.name for r in report.results) == ["one", "two"]
            assert not serving.done()
        finally:
            serving.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await serving
