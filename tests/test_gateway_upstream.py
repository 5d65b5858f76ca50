"""Pass-through to an upstream hub (a local FakeHub, never the network) for repos no source holds."""

from __future__ import annotations

import asyncio
import filecmp
import hashlib
import socket
from pathlib import Path

import aiohttp
import huggingface_hub
import pytest
from huggingface_hub import HfApi
from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

from tests.gateway_helpers import hf_offline_off, make_model
from torrentgoat.gateway import FolderSource, Gateway, GatewayConfig
from torrentgoat.testing.hub import FakeHub

COMMIT = "c0ffee" + "0" * 34


@pytest.fixture(autouse=True)
def _online(monkeypatch: pytest.MonkeyPatch) -> None:
    hf_offline_off(monkeypatch)


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


async def test_repos_no_source_holds_come_from_upstream(tmp_path: Path) -> None:
    remote = make_model(tmp_path / "remote")
    async with FakeHub(xet=True, page_size=3, cdn_host="localhost") as hub:
        hub.add_repo("org/remote", COMMIT, remote)
        async with Gateway([FolderSource()], GatewayConfig(port=0, upstream=hub.url)) as gateway:
            folder = Path(
                await asyncio.to_thread(
                    huggingface_hub.snapshot_download,
                    "org/remote",
                    cache_dir=tmp_path / "cache",
                    endpoint=gateway.url,
                    token="hf_secret_token",
                )
            )
            api = HfApi(endpoint=gateway.url)
            files = await asyncio.to_thread(api.list_repo_files, "org/remote")  # 3 entries a page upstream
            info = await asyncio.to_thread(api.model_info, "org/remote")
            url = huggingface_hub.hf_hub_url(
                "org/remote", "model-00001-of-00002.safetensors", endpoint=gateway.url
            )
            meta = await asyncio.to_thread(huggingface_hub.get_hf_file_metadata, url)
            async with aiohttp.ClientSession() as http:
                async with http.head(url) as head:
                    head_headers = dict(head.headers)
                async with http.get(url, headers={"Range": "bytes=10-19"}) as ranged:
                    assert ranged.status == 206
                    piece = await ranged.read()
                async with http.get(f"{gateway.url}/api/models/org/remote/tree/main?recursive=true") as tree:
                    link = tree.headers.get("Link", "")
                    tree_text = await tree.text()
    expected = [f for f in _files(remote) if f != "pytorch_model.bin"]
    assert _files(folder) == expected and folder.name == COMMIT
    for name in expected:
        assert filecmp.cmp(remote / name, folder / name, shallow=False), name
    assert files == expected and info.sha == COMMIT
    assert "pytorch_model.bin" not in [s.rfilename for s in info.siblings or []]
    # the client sees one origin: metadata points at the gateway, the gateway went to the CDN
    shard = remote / "model-00001-of-00002.safetensors"
    assert meta.location == url and meta.commit_hash == COMMIT and meta.size == shard.stat().st_size
    assert meta.etag == hashlib.sha256(shard.read_bytes()).hexdigest()
    assert hub.count(route="cdn", status=200) >= 2
    assert piece == shard.read_bytes()[10:20]
    # no Xet: neither headers nor listing fields reach the client; pagination links point at the gateway
    assert not [h for h in head_headers if h.lower().startswith("x-xet") or h.lower() == "link"]
    assert "xetHash" not in tree_text
    assert link.startswith(f"<{gateway.url}/api/models/org/remote/tree/main?")
    # the token went to the hub's own routes, never to the CDN it redirected to
    seen = [(path.split("/")[1], auth) for path, auth in hub.authorizations]
    assert ("org", "Bearer hf_secret_token") in seen
    assert all(auth is None for route, auth in seen if route == "cdn")


async def test_upstream_errors_and_policy(tmp_path: Path) -> None:
    remote = make_model(tmp_path / "remote")
    (remote / "weights.dat").write_bytes(
        b"\x80\x04\x95\x05\x00\x00\x00" + b"\x00" * 40
    )  # a pickle by content
    async with FakeHub() as hub:
        hub.add_repo("org/remote", COMMIT, remote)
        async with Gateway([], GatewayConfig(port=0, upstream=hub.url)) as gateway:

            def download(repo: str, name: str, revision: str | None = None) -> str:
                return huggingface_hub.hf_hub_download(
                    repo, name, revision=revision, cache_dir=tmp_path / "cache", endpoint=gateway.url
                )

            with pytest.raises(RepositoryNotFoundError):
                await asyncio.to_thread(download, "org/unknown", "config.json")
            with pytest.raises(RevisionNotFoundError):
                await asyncio.to_thread(download, "org/remote", "config.json", "f" * 40)
            with pytest.raises(EntryNotFoundError):
                await asyncio.to_thread(download, "org/remote", "missing.json")
            before = len(hub.requests)
            with pytest.raises(EntryNotFoundError, match="pickle"):
                await asyncio.to_thread(download, "org/remote", "pytorch_model.bin")
            assert len(hub.requests) == before  # refused by name: upstream never asked
            with pytest.raises(EntryNotFoundError, match="the content is a Python pickle"):
                await asyncio.to_thread(download, "org/remote", "weights.dat")
            with pytest.raises(RepositoryNotFoundError):
                await asyncio.to_thread(HfApi(endpoint=gateway.url).model_info, "org/unknown")
            assert (
                Path(await asyncio.to_thread(download, "org/remote", "config.json")).read_bytes()
                == (remote / "config.json").read_bytes()
            )


async def test_local_sources_win_and_upstream_none_means_not_found(tmp_path: Path) -> None:
    local = make_model(tmp_path / "local", pickle=False)
    remote = make_model(tmp_path / "remote", shard_size=2 * 1024 * 1024, pickle=False)
    (local / "config.json").write_text('{"from": "local"}\n')
    source = FolderSource()
    await source.add("org/both", local, commit="1" * 40)
    async with FakeHub() as hub:
        hub.add_repo("org/both", "2" * 40, remote)
        hub.add_repo("org/remote", "3" * 40, remote)
        async with Gateway([source], GatewayConfig(port=0, upstream=hub.url)) as gateway:
            api = HfApi(endpoint=gateway.url)
            assert (await asyncio.to_thread(api.model_info, "org/both")).sha == "1" * 40
            # a revision the local source does not hold goes upstream
            assert (await asyncio.to_thread(api.model_info, "org/both", revision="2" * 40)).sha == "2" * 40
        async with Gateway([source], GatewayConfig(port=0, upstream=None)) as closed:
            with pytest.raises(RepositoryNotFoundError):
                await asyncio.to_thread(
                    huggingface_hub.hf_hub_download,
                    "org/remote",
                    "config.json",
                    cache_dir=tmp_path / "c",
                    endpoint=closed.url,
                )
            with pytest.raises(RevisionNotFoundError):
                await asyncio.to_thread(HfApi(endpoint=closed.url).model_info, "org/both", revision="2" * 40)


async def test_an_unreachable_upstream_is_a_bad_gateway() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"
    async with (
        Gateway([], GatewayConfig(port=0, upstream=dead, upstream_connect_timeout=5)) as gateway,
        aiohttp.ClientSession() as http,
    ):
        async with http.head(f"{gateway.url}/org/x/resolve/main/config.json") as response:
            assert response.status == 502
        async with http.get(f"{gateway.url}/api/models/org/x") as response:
            assert response.status == 502
            assert "upstream" in (await response.json())["error"]
