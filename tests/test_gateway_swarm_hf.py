"""The gateway over the swarm, against the real ``huggingface_hub`` and ``safetensors``.

A collection is published on loopback (a 3-node DHT, a publisher seeding it, a fake hub as the
upstream and the models' web seed); a gateway session follows the btpk magnet.  ``huggingface_hub``
downloads through ``HF_ENDPOINT`` (the gateway's URL given as ``endpoint``), in a worker thread while
the gateway runs in the test's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import filecmp
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path

import aiohttp
import huggingface_hub
import pytest
from huggingface_hub import HfApi
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from safetensors import safe_open

from tests.gateway_helpers import InterruptingSource, hf_offline_off, make_model
from tests.test_collection_e2e import local_dht, rewrite_shard
from tests.test_collection_e2e import session_config as collection_config
from torrentgoat.aio.dht import DHTNode
from torrentgoat.collection import ModelSpec, Publisher, build_collection
from torrentgoat.gateway import Gateway, GatewayConfig
from torrentgoat.gateway.swarm import SwarmConfig, SwarmSource
from torrentgoat.keys import SigningKey
from torrentgoat.session import Session, SessionConfig
from torrentgoat.testing.hub import FakeHub
from torrentgoat.testing.swarm import loopback_config


def session_config(boot: DHTNode, *, upload_limit: int = 0, seed: int = 0) -> SessionConfig:
    """The collection tests' loopback session with a local DHT, without LSD (no cross-talk)."""
    return replace(collection_config(boot, upload_limit=upload_limit, seed=seed), enable_lsd=False)


C1 = "1" * 40
C2 = "2" * 40
PIECE = 256 * 1024


@pytest.fixture(autouse=True)
def _online(monkeypatch: pytest.MonkeyPatch) -> None:
    hf_offline_off(monkeypatch)


@dataclass
class World:
    boot: DHTNode
    hub: FakeHub
    publisher: Publisher
    pub_session: Session
    magnet: str
    root: Path
    key: SigningKey


@contextlib.asynccontextmanager
async def published(tmp_path: Path, specs: list[ModelSpec], *, upload_limit: int = 0) -> AsyncIterator[World]:
    """A 3-node DHT, a fake hub, and a publisher seeding ``specs`` as collection ``zoo``."""
    key = SigningKey(bytes(range(32)))
    root = tmp_path / "publisher"
    async with local_dht() as nodes, FakeHub() as hub:
        await asyncio.to_thread(
            build_collection, "zoo", specs, root, key.public_key, hub=hub.url, piece_length=PIECE
        )
        async with Session(session_config(nodes[0], upload_limit=upload_limit, seed=1)) as pub_session:
            publisher = Publisher(pub_session, root, key)
            publication = await publisher.publish()
            yield World(nodes[0], hub, publisher, pub_session, publication.magnet, root, key)


@contextlib.asynccontextmanager
async def gateway_for(
    world: World, tmp_path: Path, **config: object
) -> AsyncIterator[tuple[SwarmSource, Gateway]]:
    async with Session(session_config(world.boot, seed=7)) as session:
        swarm = SwarmSource(session, SwarmConfig(cache_dir=tmp_path / "gateway-cache", refresh=3600.0))
        swarm.follow(world.magnet)
        async with swarm:
            await swarm.refresh()
            async with Gateway([swarm], GatewayConfig(port=0, upstream=world.hub.url, **config)) as gateway:  # type: ignore[arg-type]
                yield swarm, gateway


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


async def test_snapshot_download_model_info_and_a_new_version(tmp_path: Path) -> None:
    model = make_model(tmp_path / "src" / "tiny", shard_size=2 * 1024 * 1024)
    specs = [ModelSpec(name="tiny", path=model, hf_repo="org/tiny", commit=C1)]
    async with published(tmp_path, specs) as world, gateway_for(world, tmp_path) as (swarm, gateway):
        cache = tmp_path / "hf-cache"
        folder = Path(
            await asyncio.to_thread(
                huggingface_hub.snapshot_download, "org/tiny", cache_dir=cache, endpoint=gateway.url
            )
        )
        assert folder.name == C1
        assert gateway.stats.upstream_requests == 0  # all of it from the swarm source
        expected = [f for f in _files(model) if f != "pytorch_model.bin"]  # refused by the default policy
        assert _files(folder) == expected
        for name in expected:
            assert filecmp.cmp(model / name, folder / name, shallow=False), name
        with safe_open(str(folder / "model-00001-of-00002.safetensors"), framework="numpy") as handle:
            keys = list(handle.keys())
            assert keys and handle.get_tensor(keys[0]).size > 0
        # LFS files are named by their SHA-256 in the client's cache, as with the Hub
        blob = (folder / "model-00002-of-00002.safetensors").resolve()
        assert blob.name == hashlib.sha256(blob.read_bytes()).hexdigest()

        api = HfApi(endpoint=gateway.url)
        info = await asyncio.to_thread(api.model_info, "org/tiny", files_metadata=True)
        assert info.sha == C1
        siblings = {s.rfilename: s for s in info.siblings or []}
        assert set(siblings) == set(expected)
        shard = siblings["model-00001-of-00002.safetensors"]
        assert shard.lfs is not None and shard.size == (model / shard.rfilename).stat().st_size
        assert await asyncio.to_thread(api.list_repo_files, "org/tiny") == expected
        # the whole model went through the swarm, and every file is checked against the manifest
        fetch = next(swarm.fetches())
        await asyncio.wait_for(_done(fetch), 60)
        assert fetch.local("config.json") is not None

        # a new version: config and one shard change; main follows it, the old commit stays
        (model / "config.json").write_text('{"version": 2}\n')
        rewrite_shard(model / "model-00002-of-00002.safetensors", seed=42)
        specs2 = [ModelSpec(name="tiny", path=model, hf_repo="org/tiny", commit=C2)]
        await asyncio.to_thread(
            build_collection,
            "zoo",
            specs2,
            world.root,
            world.key.public_key,
            hub=world.hub.url,
            piece_length=PIECE,
        )
        await world.publisher.publish()
        assert await swarm.refresh() == [True]
        assert (await asyncio.to_thread(api.model_info, "org/tiny")).sha == C2
        path = await asyncio.to_thread(
            huggingface_hub.hf_hub_download, "org/tiny", "config.json", cache_dir=cache, endpoint=gateway.url
        )
        assert Path(path).read_text() == '{"version": 2}\n' and C2 in path
        old = await asyncio.to_thread(
            huggingface_hub.hf_hub_download,
            "org/tiny",
            "config.json",
            revision=C1,
            cache_dir=tmp_path / "other-cache",
            endpoint=gateway.url,
        )
        assert Path(old).read_text() != '{"version": 2}\n'
        new_folder = Path(
            await asyncio.to_thread(
                huggingface_hub.snapshot_download, "org/tiny", cache_dir=cache, endpoint=gateway.url
            )
        )
        assert new_folder.name == C2
        for name in expected:
            assert filecmp.cmp(model / name, new_folder / name, shallow=False), name
        # the files v2 shares with v1 were linked from the checked v1 copy: only changes crossed
        changed = (model / "model-00002-of-00002.safetensors").stat().st_size
        v2 = next(f for f in swarm.fetches() if f.version.snapshot.commit == C2)
        assert v2.torrent is not None
        assert v2.torrent.downloaded <= changed + 4 * PIECE, v2.torrent.downloaded
        assert await swarm.refresh() == [False]  # the same version again: nothing changes


async def _done(fetch: object) -> None:
    while not getattr(fetch, "done"):  # noqa: B009 - a ModelFetch
        await asyncio.sleep(0.05)


async def test_errors_and_the_pickle_policy(tmp_path: Path) -> None:
    model = make_model(tmp_path / "src" / "tiny", shard_size=1024 * 1024)
    specs = [ModelSpec(name="tiny", path=model, hf_repo="org/tiny", commit=C1)]
    async with published(tmp_path, specs) as world, gateway_for(world, tmp_path) as (swarm, gateway):

        def download(repo: str, name: str, revision: str | None = None) -> str:
            return huggingface_hub.hf_hub_download(
                repo, name, revision=revision, cache_dir=tmp_path / "cache", endpoint=gateway.url
            )

        with pytest.raises(RepositoryNotFoundError):  # asked upstream (the fake hub), which has none
            await asyncio.to_thread(download, "org/unknown", "config.json")
        with pytest.raises(RevisionNotFoundError):
            await asyncio.to_thread(download, "org/tiny", "config.json", "f" * 40)
        with pytest.raises(EntryNotFoundError):
            await asyncio.to_thread(download, "org/tiny", "missing.json")
        with pytest.raises(EntryNotFoundError, match=r"pickle.*--allow-pickle"):
            await asyncio.to_thread(download, "org/tiny", "pytorch_model.bin")
        with pytest.raises(ValueError, match=r"\.\."):
            await asyncio.to_thread(download, "org/tiny", "../config.json")
        url = f"{gateway.url}/org/tiny/resolve/main/%2e%2e/%2e%2e/etc/passwd"
        with pytest.raises(HfHubHTTPError) as caught:
            await asyncio.to_thread(huggingface_hub.get_hf_file_metadata, url)
        assert caught.value.response.status_code == 400
        assert (
            Path(await asyncio.to_thread(download, "org/tiny", "config.json")).read_bytes()
            == (model / "config.json").read_bytes()
        )
        # the pickle was never fetched: it is not even on the gateway's disk
        fetch = next(swarm.fetches())
        assert fetch.torrent is not None
        await asyncio.wait_for(fetch.torrent.wait_complete(), 60)
        assert not list((tmp_path / "gateway-cache").rglob("pytorch_model.bin"))


async def test_an_interrupted_download_resumes_with_range(tmp_path: Path) -> None:
    """The connection drops mid-file; huggingface_hub resumes with ``Range`` from the swarm source."""
    model = make_model(tmp_path / "src" / "big", shard_size=24 * 1024 * 1024, pickle=False)
    name = "model-00001-of-00002.safetensors"
    size = (model / name).stat().st_size
    specs = [ModelSpec(name="big", path=model, hf_repo="org/big", commit=C1)]
    async with published(tmp_path, specs) as world, Session(session_config(world.boot, seed=8)) as session:
        swarm = SwarmSource(session, SwarmConfig(cache_dir=tmp_path / "gw", refresh=3600.0))
        swarm.follow(world.magnet)
        async with swarm:
            await swarm.refresh()
            source = InterruptingSource(swarm, cut_after=15 * 1024 * 1024)
            async with Gateway([source], GatewayConfig(port=0, upstream=None)) as gateway:
                path = await asyncio.to_thread(
                    huggingface_hub.hf_hub_download,
                    "org/big",
                    name,
                    cache_dir=tmp_path / "c",
                    endpoint=gateway.url,
                )
    assert Path(path).read_bytes() == (model / name).read_bytes()
    reads = [r for r in source.reads if r[0] == name]
    assert reads[0] == (name, 0, size)
    _, start, stop = reads[1]
    assert 0 < start <= 15 * 1024 * 1024 and stop == size


async def test_raw_range_requests_stream_verified_bytes(tmp_path: Path) -> None:
    model = make_model(tmp_path / "src" / "tiny", shard_size=3 * 1024 * 1024, pickle=False)
    name = "model-00002-of-00002.safetensors"
    data = (model / name).read_bytes()
    specs = [ModelSpec(name="tiny", path=model, hf_repo="org/tiny", commit=C1)]
    async with (
        published(tmp_path, specs) as world,
        gateway_for(world, tmp_path) as (_swarm, gateway),
        aiohttp.ClientSession() as http,
    ):
        url = f"{gateway.url}/org/tiny/resolve/main/{name}"
        async with http.head(url, allow_redirects=False) as r:
            assert r.status == 200 and r.headers["X-Repo-Commit"] == C1
            assert r.headers["X-Linked-Etag"] == f'"{hashlib.sha256(data).hexdigest()}"'
        middle = len(data) // 2
        async with http.get(url, headers={"Range": f"bytes={middle}-{middle + 99_999}"}) as r:
            assert r.status == 206 and await r.read() == data[middle : middle + 100_000]
        async with http.get(url, headers={"Range": "bytes=-10"}) as r:
            assert r.status == 206 and await r.read() == data[-10:]
        results = await asyncio.gather(*(_get(http, url) for _ in range(3)))  # three clients, one download
        assert all(body == data for body in results)


async def _get(http: aiohttp.ClientSession, url: str) -> bytes:
    async with http.get(url) as response:
        assert response.status == 200
        return await response.read()


async def test_the_hub_is_a_web_seed_and_main_follows_by_itself(tmp_path: Path) -> None:
    """A publisher that uploads slowly: the manifest's url-list (the hub) serves the bytes too.  With a
    short ``refresh``, the gateway picks up a new version on its own."""
    model = make_model(tmp_path / "src" / "tiny", shard_size=2 * 1024 * 1024, pickle=False)
    specs = [ModelSpec(name="tiny", path=model, hf_repo="org/tiny", commit=C1)]
    async with published(tmp_path, specs, upload_limit=64 * 1024) as world:
        world.hub.add_repo("org/tiny", C1, model)
        async with Session(session_config(world.boot, seed=9)) as session:
            swarm = SwarmSource(session, SwarmConfig(cache_dir=tmp_path / "gw", refresh=0.5))
            swarm.follow(world.magnet)
            async with swarm, Gateway([swarm], GatewayConfig(port=0, upstream=None)) as gateway:
                folder = await asyncio.to_thread(
                    huggingface_hub.snapshot_download,
                    "org/tiny",
                    cache_dir=tmp_path / "c",
                    endpoint=gateway.url,
                )
                for name in _files(model):
                    assert filecmp.cmp(model / name, Path(folder) / name, shallow=False), name
                assert world.hub.bytes_served() > 1024 * 1024  # most of it came from the web seed

                (model / "config.json").write_text('{"version": 2}\n')
                await asyncio.to_thread(
                    build_collection,
                    "zoo",
                    [ModelSpec(name="tiny", path=model, hf_repo="org/tiny", commit=C2)],
                    world.root,
                    world.key.public_key,
                    hub=world.hub.url,
                    piece_length=PIECE,
                )
                await world.publisher.publish()
                api = HfApi(endpoint=gateway.url)
                loop = asyncio.get_running_loop()
                deadline = loop.time() + 60
                while (await asyncio.to_thread(api.model_info, "org/tiny")).sha != C2:
                    assert loop.time() < deadline, "the gateway did not pick up seq 2"
                    await asyncio.sleep(0.2)


async def test_a_restarted_gateway_serves_what_it_holds_offline(tmp_path: Path) -> None:
    """The version held on disk (verified again under the magnet's key) and the checked files are
    enough: a gateway restarted without the DHT serves the model with nothing crossing the network."""
    model = make_model(tmp_path / "src" / "tiny", shard_size=1024 * 1024, pickle=False)
    specs = [ModelSpec(name="tiny", path=model, hf_repo="org/tiny", commit=C1)]
    async with published(tmp_path, specs) as world:
        async with gateway_for(world, tmp_path) as (swarm, gateway):
            await asyncio.to_thread(
                huggingface_hub.snapshot_download, "org/tiny", cache_dir=tmp_path / "c1", endpoint=gateway.url
            )
            await asyncio.wait_for(_done(next(swarm.fetches())), 60)
        uploaded = sum(t.uploaded for t in world.pub_session.torrents.values())
        async with Session(loopback_config(seed=5)) as offline:  # no DHT: it cannot resolve anything
            swarm = SwarmSource(offline, SwarmConfig(cache_dir=tmp_path / "gateway-cache", refresh=3600.0))
            follower = swarm.follow(world.magnet)
            async with swarm:
                assert await swarm.wait_ready(30) == []
                assert follower.manifest is not None and follower.manifest.seq == 1
                async with Gateway([swarm], GatewayConfig(port=0, upstream=None)) as again:
                    folder = await asyncio.to_thread(
                        huggingface_hub.snapshot_download,
                        "org/tiny",
                        cache_dir=tmp_path / "c2",
                        endpoint=again.url,
                    )
                for name in _files(model):
                    assert filecmp.cmp(model / name, Path(folder) / name, shallow=False), name
                assert all(f.torrent is None or f.done for f in swarm.fetches())
        assert sum(t.uploaded for t in world.pub_session.torrents.values()) == uploaded
