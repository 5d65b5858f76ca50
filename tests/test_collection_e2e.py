"""Model collections end to end on loopback: a publisher, two consumers and a small local DHT.

v1 (two small models with real safetensors files) is published under a key; consumer A gets one
model by btpk magnet; v2 changes one shard and adds a model; A updates and fetches only the changed
shard's bytes; consumer B gets v2 from A and the publisher together.  Then what must be refused is:
a tampered manifest, a manifest of another key, a replayed older seq, a pickle file, a corrupt
safetensors header -- each with a clear error and nothing on disk touched.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from torrentgoat.aio.dht import DHTNode
from torrentgoat.collection import (
    CollectionClient,
    ModelSpec,
    Publisher,
    Store,
    build_collection,
)
from torrentgoat.collection._common import read_manifest_tree
from torrentgoat.collection.store import META_DIR
from torrentgoat.creation import create_torrent
from torrentgoat.dht.items import SigningKey as DHTKey
from torrentgoat.errors import ManifestError, SignatureError
from torrentgoat.keys import SigningKey
from torrentgoat.manifest import SignedManifest
from torrentgoat.modelcheck import sha256_file
from torrentgoat.session import Session, SessionConfig
from torrentgoat.storage.resume import RESUME_DIR
from torrentgoat.testing.localdht import local_dht
from torrentgoat.testing.shards import read_safetensors_header, write_model_folder, write_safetensors_shard
from torrentgoat.torrent import TorrentConfig

SHARD = 1024 * 1024
PIECE = 64 * 1024


def session_config(boot: DHTNode, *, upload_limit: int = 0, seed: int = 0) -> SessionConfig:
    return SessionConfig(
        listen_host="127.0.0.1",
        listen_ipv6=None,
        listen_port=0,
        enable_dht=True,
        dht_bootstrap=(("127.0.0.1", boot.address.port),),
        enable_trackers=False,
        upload_limit=upload_limit,
        seed=seed,
        torrent=TorrentConfig(max_peers=20),
    )


def rewrite_shard(path: Path, seed: int) -> None:
    """Same size and tensor names, new weights (a fine-tuned shard), written aside and renamed into
    place as tools do (the publisher's store holds hard links of the previous version)."""
    header = read_safetensors_header(path)
    first = min(int(name.split(".")[2]) for name in header if name.startswith("model.layers."))
    tmp = path.with_name(path.name + ".new")
    write_safetensors_shard(tmp, path.stat().st_size, seed=seed, first_layer=first)
    tmp.replace(path)


@dataclass
class World:
    work: Path
    key: SigningKey
    boot: DHTNode


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``root`` with its size and mtime (to show nothing was touched)."""
    out = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(directory) / name
            st = path.lstat()
            out[str(path.relative_to(root))] = (st.st_size, st.st_mtime_ns)
    return out


async def test_publish_get_update_share_and_refuse(tmp_path: Path) -> None:
    key = SigningKey(bytes(range(32)))
    src = tmp_path / "src"
    alpha = write_model_folder(src / "alpha", shards=2, shard_size=SHARD, seed=1)
    beta = write_model_folder(src / "beta", shards=3, shard_size=SHARD, seed=2)
    pub_root, a_root, b_root = tmp_path / "publisher", tmp_path / "a", tmp_path / "b"
    commit1 = "1" * 40
    specs = [
        ModelSpec(name="alpha", path=alpha, hf_repo="org/alpha", commit=commit1, license="apache-2.0"),
        ModelSpec(name="beta", path=beta),
    ]
    v1 = build_collection(
        "goats", specs, pub_root, key.public_key, hub="http://127.0.0.1:9", piece_length=PIECE
    )
    assert v1.seq == 1 and [m.name for m in v1.models] == ["alpha", "beta"]
    alpha_v1 = v1.model("alpha")
    assert alpha_v1 is not None and alpha_v1.web_seeds == ("http://127.0.0.1:9/org/alpha/resolve/",)

    async with local_dht() as nodes:
        boot = nodes[0]
        # the publisher's upload is limited so that B has to take bytes from A too
        async with (
            Session(session_config(boot, upload_limit=3 * SHARD, seed=1)) as pub_session,
            Session(session_config(boot, seed=2)) as a_session,
        ):
            publisher = Publisher(pub_session, pub_root, key)
            first = await publisher.publish()
            assert first.seq == 1
            v1_name = first.signed.torrent_name
            v1_copy = tmp_path / "v1-manifest"
            # the manifest only: the live seed may be replacing its resume file meanwhile
            shutil.copytree(
                pub_root / META_DIR / "manifest" / first.manifest_info_hash.hex,
                v1_copy,
                ignore=shutil.ignore_patterns(RESUME_DIR),
            )
            magnet = first.magnet
            assert magnet == f"magnet:?xs=urn:btpk:{key.public_key.hex()}&s={b'goats'.hex()}"
            # the publisher's root is laid out like a consumer's
            assert (pub_root / "alpha" / "config.json").is_file()

            # -- consumer A gets one model by btpk magnet
            a = CollectionClient(a_session, a_root, timeout=30)
            report = await a.sync(magnet, models=["beta"], seed=True)
            assert report.ok, report
            [beta_result] = report.results
            assert beta_result.status == "installed"
            assert not (a_root / "alpha").exists()
            for f in report.manifest.model("beta").files:  # type: ignore[union-attr]
                assert sha256_file(a_root / "beta" / f.path) == f.sha256
            assert Store(a_root).load_state().seq == 1  # type: ignore[union-attr]

            # -- v2: beta's shard changes, gamma is added; alpha keeps its info-hash
            rewrite_shard(beta / "model-00002-of-00003.safetensors", seed=99)
            gamma = write_model_folder(src / "gamma", shards=1, shard_size=SHARD // 2, seed=3)
            specs.append(ModelSpec(name="gamma", path=gamma))
            v2 = build_collection(
                "goats", specs, pub_root, key.public_key, piece_length=PIECE, hub="http://127.0.0.1:9"
            )
            assert v2.model("alpha").info_hash == alpha_v1.info_hash  # type: ignore[union-attr]
            assert v2.model("beta").info_hash != v1.model("beta").info_hash  # type: ignore[union-attr]
            second = await publisher.publish()
            assert second.seq == 2

            # -- A updates: only the changed shard's bytes cross the network
            report = await a.sync(seed=True)
            assert report.ok, report
            assert report.previous_seq == 1 and report.manifest.seq == 2
            [beta_update] = report.results  # gamma is not followed by A
            assert beta_update.status == "updated"
            beta_v2 = v2.model("beta")
            assert beta_v2 is not None
            beta_size = sum(f.size for f in beta_v2.files)
            assert SHARD <= beta_update.downloaded <= SHARD + 4 * PIECE, beta_update
            assert beta_update.reused == beta_size - SHARD
            assert beta_update.downloaded < 0.4 * beta_size
            new_shard = a_root / "beta" / "model-00002-of-00003.safetensors"
            assert sha256_file(new_shard) == sha256_file(beta / "model-00002-of-00003.safetensors")
            assert not (a_root / "gamma").exists()
            # the old version is gone, the link points at the new one
            versions = list((a_root / META_DIR / "models" / "beta").iterdir())
            assert [v.name for v in versions] == [v2.model("beta").info_hash.hex]  # type: ignore[union-attr]

            # running update again: the same version, nothing fetched
            again = await a.sync()
            assert again.ok and [r.status for r in again.results] == ["unchanged"]

            # -- B gets v2 from A and the publisher together
            async with Session(session_config(boot, seed=3)) as b_session:
                b = CollectionClient(b_session, b_root, timeout=60)
                a_beta = a_session.torrents[v2.model("beta").info_hash.raw]  # type: ignore[union-attr]
                uploaded_before = a_beta.uploaded
                report = await b.sync(magnet)
                assert report.ok, report
                assert sorted(r.name for r in report.results) == ["alpha", "beta", "gamma"]
                for model in v2.models:
                    for f in model.files:
                        assert sha256_file(b_root / model.name / f.path) == f.sha256
                assert a_beta.uploaded > uploaded_before, "A shared nothing with B"

            # a restarted publisher re-publishes the held version (same seq); the item can be refreshed
            again = await Publisher(pub_session, pub_root, key).publish()
            assert again.seq == 2 and again.manifest_info_hash == second.manifest_info_hash
            await publisher.put_item()

            # -- refusals; A's root must stay exactly as it is
            before = snapshot(a_root)
            v1_files = read_manifest_tree(v1_copy / v1_name)

            # a replayed older version: the genuine v1 item and manifest torrent, served again
            with pytest.raises(ManifestError, match=r"seq 1 .*seq 2 is already held"):
                await attack(a_root, key, v1_files, seq=1, name=v1_name)
            # a tampered manifest: the v2 manifest with a changed hash, the signature kept
            v2_files = read_manifest_tree(
                pub_root / META_DIR / "manifest" / second.manifest_info_hash.hex / second.signed.torrent_name
            )
            tampered = dict(v2_files)
            tampered["collection.yaml"] = v2_files["collection.yaml"].replace(b"seq: 2", b"seq: 3")
            with pytest.raises(SignatureError, match="manifest signature is not valid"):
                await attack(a_root, key, tampered, seq=3, name="goats-v3")
            # a manifest signed by another key, pointed at by the collection's key
            stranger = SigningKey(b"\x07" * 32)
            forged = replace(second.signed.manifest, publisher=stranger.public_key, seq=3)
            signed = SignedManifest.create(forged, stranger)
            with pytest.raises(SignatureError, match="manifest signature is not valid"):
                await attack(a_root, key, {**v2_files, **signed.folder_files()}, seq=3, name="goats-v3")
            # a magnet of another key is refused by a root that follows this one
            with pytest.raises(SignatureError, match="follows collection"):
                await a.sync(f"magnet:?xs=urn:btpk:{stranger.public_key.hex()}&s={b'goats'.hex()}")
            assert snapshot(a_root) == before
            assert Store(a_root).load_state().seq == 2  # type: ignore[union-attr]

            # A keeps the publisher's signed item: it can store it again once the DHT forgot it
            assert await a.refresh_item()
            async with local_dht() as fresh, Session(session_config(fresh[0], seed=9)) as a_again:
                assert await fresh[2].resolve_torrent(key.public_key, b"goats") is None
                assert await CollectionClient(a_again, a_root).refresh_item()
                assert await fresh[2].resolve_torrent(key.public_key, b"goats") == second.manifest_info_hash


async def attack(root: Path, key: SigningKey, files: dict[str, bytes], *, seq: int, name: str) -> None:
    """Serve a manifest torrent of ``files`` in a DHT of its own, pointed at by ``key`` with ``seq``,
    and let a client of ``root`` update from there."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / name
        for relative, content in files.items():
            (folder / relative).parent.mkdir(parents=True, exist_ok=True)
            (folder / relative).write_bytes(content)
        metainfo = create_torrent(folder, name=name, creation_date=None)
        async with local_dht() as nodes:
            await nodes[1].publish_torrent(DHTKey(key.seed), metainfo.info_hash, salt=b"goats", seq=seq)
            async with (
                Session(session_config(nodes[0], seed=7)) as evil,
                Session(session_config(nodes[0], seed=8)) as victim,
            ):
                await evil.add(metainfo, tmp, seed=True)
                client = CollectionClient(victim, root, timeout=20, peers=[f"127.0.0.1:{evil.listen_port}"])
                await client.sync()


async def test_interrupted_get_resumes_and_nothing_is_installed_half_way(tmp_path: Path) -> None:
    key = SigningKey(b"\x21" * 32)
    model = write_model_folder(tmp_path / "src" / "big", shards=2, shard_size=2 * SHARD, seed=5)
    build_collection(
        "resume", [ModelSpec(name="big", path=model)], tmp_path / "pub", key.public_key, piece_length=PIECE
    )
    async with local_dht() as nodes, Session(session_config(nodes[0], seed=1)) as pub:
        publication = await Publisher(pub, tmp_path / "pub", key).publish()
        slow = replace(session_config(nodes[0], seed=2), download_limit=1024 * 1024)
        async with Session(slow) as session:
            report = await CollectionClient(session, tmp_path / "c", timeout=1.5).sync(publication.magnet)
        [result] = report.results
        assert result.status == "failed" and "no data within" in result.message
        assert not (tmp_path / "c" / "big").exists()  # not installed half way
        state = Store(tmp_path / "c").load_state()
        assert state is not None and state.models == {} and state.seq == 1
        async with Session(session_config(nodes[0], seed=3)) as session:
            report = await CollectionClient(session, tmp_path / "c", timeout=30).sync()
        [result] = report.results
        assert result.status == "installed", result
        assert result.downloaded < result.size - SHARD // 2  # the pieces fetched before were kept
        for f in publication.signed.manifest.models[0].files:
            assert sha256_file(tmp_path / "c" / "big" / f.path) == f.sha256
