"""The gateway against the real ``huggingface_hub`` (and ``safetensors``), serving complete local copies.

``huggingface_hub`` is synchronous: it runs in a worker thread while the gateway runs in the test's
event loop; every call gets the gateway's URL as ``endpoint`` and a temporary cache.
"""

from __future__ import annotations

import asyncio
import filecmp
import hashlib
import os
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
from torrentgoat.gateway import FolderSource, Gateway, GatewayConfig, HFCacheSource
from torrentgoat.safety import Policy
from torrentgoat.testing.shards import read_safetensors_header

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return make_model(tmp_path / "model")


@pytest.fixture(autouse=True)
def _online(monkeypatch: pytest.MonkeyPatch) -> None:
    hf_offline_off(monkeypatch)


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


async def test_snapshot_download_is_byte_identical_and_loads(model: Path, tmp_path: Path) -> None:
    source = FolderSource()
    await source.add("org/tiny", model, commit=COMMIT)
    async with Gateway([source], GatewayConfig(port=0, upstream=None)) as gateway:
        folder = await asyncio.to_thread(
            huggingface_hub.snapshot_download, "org/tiny", cache_dir=tmp_path / "cache", endpoint=gateway.url
        )
    snapshot = Path(folder)
    assert snapshot.name == COMMIT
    expected = [f for f in _files(model) if f != "pytorch_model.bin"]  # refused by the default policy
    assert _files(snapshot) == expected
    for name in expected:
        assert filecmp.cmp(model / name, snapshot / name, shallow=False), name
    shard = snapshot / "model-00001-of-00002.safetensors"
    with safe_open(str(shard), framework="numpy") as handle:
        keys = list(handle.keys())
        assert keys
        tensor = handle.get_tensor(keys[0])
    header = read_safetensors_header(shard)
    assert list(tensor.shape) == header[keys[0]]["shape"]
    # the cache names weight blobs by SHA-256, as with the Hub
    blob = (snapshot / "model-00001-of-00002.safetensors").resolve()
    assert blob.name == hashlib.sha256(shard.read_bytes()).hexdigest()
    assert (tmp_path / "cache" / "models--org--tiny" / "refs" / "main").read_text() == COMMIT


async def test_hf_hub_download_model_info_and_listings(model: Path, tmp_path: Path) -> None:
    source = FolderSource()
    await source.add("org/tiny", model, commit=COMMIT, refs=("main", "v1.0"))
    config = GatewayConfig(port=0, upstream=None, page_size=2)  # several pages of listing
    async with Gateway([source], config) as gateway:
        api = HfApi(endpoint=gateway.url)
        path = await asyncio.to_thread(
            huggingface_hub.hf_hub_download,
            "org/tiny",
            "sub/deeper/notes.txt",
            revision="v1.0",
            cache_dir=tmp_path / "cache",
            endpoint=gateway.url,
        )
        assert Path(path).read_text() == "nested\n"
        files = await asyncio.to_thread(api.list_repo_files, "org/tiny")
        assert files == [f for f in _files(model) if f != "pytorch_model.bin"]
        info = await asyncio.to_thread(api.model_info, "org/tiny", files_metadata=True)
        assert info.sha == COMMIT and info.id == "org/tiny"
        siblings = {s.rfilename: s for s in info.siblings or []}
        assert set(siblings) == set(files)
        shard = siblings["model-00002-of-00002.safetensors"]
        assert shard.lfs is not None and shard.size == (model / shard.rfilename).stat().st_size
        assert shard.lfs.sha256 == hashlib.sha256((model / shard.rfilename).read_bytes()).hexdigest()
        assert siblings["config.json"].lfs is None and siblings["config.json"].blob_id
        top = await asyncio.to_thread(lambda: list(api.list_repo_tree("org/tiny", revision=COMMIT)))
        assert {e.path for e in top} >= {"config.json", "sub"}
        nested = await asyncio.to_thread(lambda: list(api.list_repo_tree("org/tiny", "sub", recursive=True)))
        assert [e.path for e in nested] == ["sub/deeper", "sub/deeper/notes.txt"]
        assert await asyncio.to_thread(api.file_exists, "org/tiny", "config.json")
        assert not await asyncio.to_thread(api.file_exists, "org/tiny", "missing.json")
        assert not await asyncio.to_thread(api.file_exists, "org/tiny", "pytorch_model.bin")
        meta = await asyncio.to_thread(
            huggingface_hub.get_hf_file_metadata,
            huggingface_hub.hf_hub_url("org/tiny", "model-00001-of-00002.safetensors", endpoint=gateway.url),
        )
        assert meta.commit_hash == COMMIT and meta.location.startswith(gateway.url)
        assert meta.size == (model / "model-00001-of-00002.safetensors").stat().st_size
        assert (
            meta.etag == hashlib.sha256((model / "model-00001-of-00002.safetensors").read_bytes()).hexdigest()
        )


async def test_errors_become_the_usual_exceptions(model: Path, tmp_path: Path) -> None:
    source = FolderSource()
    await source.add("org/tiny", model)
    async with Gateway([source], GatewayConfig(port=0, upstream=None)) as gateway:

        def download(repo: str, name: str, revision: str | None = None) -> str:
            return huggingface_hub.hf_hub_download(
                repo, name, revision=revision, cache_dir=tmp_path / "cache", endpoint=gateway.url
            )

        with pytest.raises(RepositoryNotFoundError):
            await asyncio.to_thread(download, "org/unknown", "config.json")
        with pytest.raises(RevisionNotFoundError):
            await asyncio.to_thread(download, "org/tiny", "config.json", "v9")
        with pytest.raises(EntryNotFoundError):
            await asyncio.to_thread(download, "org/tiny", "missing.json")
        with pytest.raises(EntryNotFoundError, match=r"pickle.*--allow-pickle"):
            await asyncio.to_thread(download, "org/tiny", "pytorch_model.bin")
        with pytest.raises(ValueError, match=r"\.\."):  # huggingface_hub refuses it before asking
            await asyncio.to_thread(download, "org/tiny", "../config.json")
        with pytest.raises(RepositoryNotFoundError):
            await asyncio.to_thread(
                huggingface_hub.snapshot_download,
                "org/unknown",
                cache_dir=tmp_path / "c2",
                endpoint=gateway.url,
            )
        with pytest.raises(RevisionNotFoundError):
            await asyncio.to_thread(
                huggingface_hub.snapshot_download,
                "org/tiny",
                revision="f" * 40,
                cache_dir=tmp_path / "c3",
                endpoint=gateway.url,
            )
        with pytest.raises(RepositoryNotFoundError):  # datasets are routed, and none is held
            await asyncio.to_thread(HfApi(endpoint=gateway.url).dataset_info, "org/tiny")
        # an encoded '..' reaches the server only from other clients: 400, which is BadRequestError
        url = f"{gateway.url}/org/tiny/resolve/main/%2e%2e/%2e%2e/etc/passwd"
        with pytest.raises(HfHubHTTPError) as caught:
            await asyncio.to_thread(huggingface_hub.get_hf_file_metadata, url)
        assert caught.value.response.status_code == 400
        assert gateway.stats.refused >= 1


async def test_allow_pickle_serves_the_pickle(model: Path, tmp_path: Path) -> None:
    source = FolderSource()
    await source.add("org/tiny", model)
    async with Gateway(
        [source], GatewayConfig(port=0, upstream=None, policy=Policy(allow_pickle=True))
    ) as gw:
        path = await asyncio.to_thread(
            huggingface_hub.hf_hub_download,
            "org/tiny",
            "pytorch_model.bin",
            cache_dir=tmp_path,
            endpoint=gw.url,
        )
        files = await asyncio.to_thread(HfApi(endpoint=gw.url).list_repo_files, "org/tiny")
    assert Path(path).read_bytes() == (model / "pytorch_model.bin").read_bytes()
    assert "pytorch_model.bin" in files


async def test_a_pickle_by_content_is_refused_too(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "weights.dat").write_bytes(b"\x80\x05\x95\x00\x00\x00\x00" + b"\x00" * 32)
    (folder / "config.json").write_text("{}")
    source = FolderSource()
    await source.add("org/sneaky", folder)
    async with Gateway([source], GatewayConfig(port=0, upstream=None)) as gateway:
        with pytest.raises(EntryNotFoundError, match="the content is a Python pickle"):
            await asyncio.to_thread(
                huggingface_hub.hf_hub_download,
                "org/sneaky",
                "weights.dat",
                cache_dir=tmp_path,
                endpoint=gateway.url,
            )
        files = await asyncio.to_thread(HfApi(endpoint=gateway.url).list_repo_files, "org/sneaky")
    assert files == ["config.json"]


async def test_an_interrupted_download_resumes_with_range(tmp_path: Path) -> None:
    """The connection drops mid-file; huggingface_hub asks for the rest with ``Range`` and the file is whole.

    (It writes what it received in 10 MiB blocks, ``constants.DOWNLOAD_CHUNK_SIZE``, so it resumes from
    the last whole block it wrote: the cut is placed past the first one.)
    """
    model = make_model(tmp_path / "big", shard_size=24 * 1024 * 1024, pickle=False)
    name = "model-00001-of-00002.safetensors"
    size = (model / name).stat().st_size
    cut = 15 * 1024 * 1024
    inner = FolderSource()
    await inner.add("org/big", model)
    source = InterruptingSource(inner, cut_after=cut)
    async with Gateway([source], GatewayConfig(port=0, upstream=None)) as gateway:
        path = await asyncio.to_thread(
            huggingface_hub.hf_hub_download, "org/big", name, cache_dir=tmp_path / "c", endpoint=gateway.url
        )
    assert Path(path).read_bytes() == (model / name).read_bytes()
    reads = [r for r in source.reads if r[0] == name]
    assert reads[0] == (name, 0, size)
    _, start, stop = reads[1]
    assert 0 < start <= cut and stop == size  # resumed with Range: bytes=<start>-


async def test_hf_cache_is_served_to_another_client(model: Path, tmp_path: Path) -> None:
    """A cache one client filled (through the gateway) is served by HFCacheSource to a second client."""
    source = FolderSource()
    await source.add("org/tiny", model, commit=COMMIT)
    async with Gateway([source], GatewayConfig(port=0, upstream=None)) as first:
        await asyncio.to_thread(
            huggingface_hub.snapshot_download, "org/tiny", cache_dir=tmp_path / "cache1", endpoint=first.url
        )
    cache_source = HFCacheSource(tmp_path / "cache1")
    async with Gateway([cache_source], GatewayConfig(port=0, upstream=None)) as second:
        api = HfApi(endpoint=second.url)
        info = await asyncio.to_thread(api.model_info, "org/tiny", files_metadata=True)
        assert info.sha == COMMIT
        folder = await asyncio.to_thread(
            huggingface_hub.snapshot_download, "org/tiny", cache_dir=tmp_path / "cache2", endpoint=second.url
        )
        for name in _files(Path(folder)):
            assert filecmp.cmp(model / name, Path(folder) / name, shallow=False), name
        # ETags are the cache's blob names: git blob ids for small files, SHA-256 for weights
        blob = (tmp_path / "cache1/models--org--tiny/snapshots" / COMMIT / "config.json").resolve()
        async with (
            aiohttp.ClientSession() as http,
            http.head(f"{second.url}/org/tiny/resolve/main/config.json") as response,
        ):
            assert response.headers["ETag"] == f'"{blob.name}"'
        # a snapshot missing a file its tree listing names is not served as complete
        (tmp_path / "cache1/models--org--tiny/snapshots" / COMMIT / "config.json").unlink()
        with pytest.raises(RevisionNotFoundError, match="incomplete"):
            await asyncio.to_thread(api.model_info, "org/tiny")


async def test_raw_http_headers_ranges_and_unsafe_paths(model: Path) -> None:
    source = FolderSource()
    await source.add("org/tiny", model, commit=COMMIT)
    name = "model-00002-of-00002.safetensors"
    data = (model / name).read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    async with Gateway([source], GatewayConfig(port=0, upstream=None)) as gateway:
        url = f"{gateway.url}/org/tiny/resolve/main/{name}"
        async with aiohttp.ClientSession(auto_decompress=False) as http:
            async with http.head(url, allow_redirects=False) as r:
                assert r.status == 200
                assert r.headers["X-Repo-Commit"] == COMMIT
                assert r.headers["ETag"] == r.headers["X-Linked-Etag"] == f'"{sha}"'
                assert r.headers["X-Linked-Size"] == r.headers["Content-Length"] == str(len(data))
                assert r.headers["Accept-Ranges"] == "bytes"
                assert not [h for h in r.headers if h.lower().startswith("x-xet") or h.lower() == "link"]
            async with http.get(url, headers={"Range": "bytes=100-199"}) as r:
                assert r.status == 206 and r.headers["Content-Range"] == f"bytes 100-199/{len(data)}"
                assert await r.read() == data[100:200]
            async with http.get(url, headers={"Range": "bytes=-10"}) as r:
                assert r.status == 206 and await r.read() == data[-10:]
            async with http.get(url, headers={"Range": f"bytes={len(data)}-"}) as r:
                assert r.status == 416 and r.headers["Content-Range"] == f"bytes */{len(data)}"
            async with http.get(url, headers={"Range": "bytes=5-", "If-Range": '"other"'}) as r:
                assert r.status == 200 and len(await r.read()) == len(data)
            async with http.get(url, headers={"Range": "bytes=5-", "If-Range": f'"{sha}"'}) as r:
                assert r.status == 206 and await r.read() == data[5:]
            async with http.post(url) as r:
                assert r.status == 405
            async with http.get(f"{gateway.url}/api/models/org/tiny/tree/main?cursor=zz") as r:
                assert r.status == 400
    secret = b"root:x:0:0"
    for target in (
        "/org/tiny/resolve/main/../../../../etc/passwd",
        "/org/tiny/resolve/main/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/org/tiny/resolve/main/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
        "/org/tiny/resolve/main/..%5C..%5Cetc%5Cpasswd",
        "/org/tiny/resolve/main/sub%00/x",
        "/org/tiny/resolve/main//etc/passwd",
        "/api/models/org/tiny/tree/main/..%2F..%2F..",
    ):
        status, body = await _raw_get(gateway_port=None, source=source, target=target)
        assert status in (400, 404), (target, status)
        assert secret not in body


async def _raw_get(*, gateway_port: int | None, source: FolderSource, target: str) -> tuple[int, bytes]:
    """Send ``target`` verbatim (no client-side normalisation of dot segments)."""
    async with Gateway([source], GatewayConfig(port=0, upstream=None)) as gateway:
        reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
        writer.write(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        response = await reader.read()
        writer.close()
    status = int(response.split(b" ", 2)[1])
    return status, response


async def test_sources_are_asked_in_order_and_refs_move(model: Path, tmp_path: Path) -> None:
    v2 = make_model(tmp_path / "v2", shard_size=2 * 1024 * 1024, pickle=False)
    (v2 / "config.json").write_text('{"v": 2}\n')
    first = FolderSource()
    second = FolderSource()
    await first.add("org/a", model, commit="1" * 40)
    await second.add("org/a", v2, commit="2" * 40, refs=())
    await second.add("org/b", v2, commit="3" * 40)
    async with Gateway([first, second], GatewayConfig(port=0, upstream=None)) as gateway:
        api = HfApi(endpoint=gateway.url)
        assert (await asyncio.to_thread(api.model_info, "org/a")).sha == "1" * 40  # first source wins
        assert (await asyncio.to_thread(api.model_info, "org/a", revision="2" * 40)).sha == "2" * 40
        assert (await asyncio.to_thread(api.model_info, "org/b")).sha == "3" * 40
        await first.add("org/a", v2, commit="4" * 40)  # a new version moves main
        assert (await asyncio.to_thread(api.model_info, "org/a")).sha == "4" * 40
        path = await asyncio.to_thread(
            huggingface_hub.hf_hub_download,
            "org/a",
            "config.json",
            cache_dir=tmp_path / "c",
            endpoint=gateway.url,
        )
        assert Path(path).read_text() == '{"v": 2}\n'


async def test_a_file_changed_on_disk_is_not_served(model: Path, tmp_path: Path) -> None:
    source = FolderSource()
    await source.add("org/tiny", model)
    target = model / "config.json"
    target.write_text(target.read_text() + " ")
    os.utime(target, ns=(1, 1))
    async with (
        Gateway([source], GatewayConfig(port=0, upstream=None)) as gateway,
        aiohttp.ClientSession() as http,
        http.get(f"{gateway.url}/org/tiny/resolve/main/config.json") as response,
    ):
        assert response.status == 500  # said before the first byte, not a truncated body
        assert "changed on disk" in response.headers["X-Error-Message"]


async def test_datasets_are_served_under_their_prefix(model: Path, tmp_path: Path) -> None:
    source = FolderSource()
    await source.add("org/data", model, repo_type="dataset", commit=COMMIT)
    async with Gateway([source], GatewayConfig(port=0, upstream=None)) as gateway:
        folder = await asyncio.to_thread(
            huggingface_hub.snapshot_download,
            "org/data",
            repo_type="dataset",
            cache_dir=tmp_path / "cache",
            endpoint=gateway.url,
        )
        info = await asyncio.to_thread(HfApi(endpoint=gateway.url).dataset_info, "org/data")
        with pytest.raises(RepositoryNotFoundError):  # the same name as a model is another repo
            await asyncio.to_thread(HfApi(endpoint=gateway.url).model_info, "org/data")
    assert Path(folder).parent.parent.name == "datasets--org--data"
    assert info.sha == COMMIT
    assert filecmp.cmp(model / "config.json", Path(folder) / "config.json", shallow=False)


async def test_links_out_of_the_served_folders_are_not_followed(model: Path, tmp_path: Path) -> None:
    outside = tmp_path / "secret.txt"
    outside.write_text("secret\n")
    (model / "leak.txt").symlink_to(outside)
    (model / "inside.txt").symlink_to(model / "config.json")
    cache = tmp_path / "cache" / "models--org--cached"
    snapshot = cache / "snapshots" / COMMIT
    (cache / "blobs").mkdir(parents=True)
    snapshot.mkdir(parents=True)
    (cache / "refs").mkdir()
    (cache / "refs" / "main").write_text(COMMIT)
    blob = cache / "blobs" / hashlib.sha256(b"{}").hexdigest()
    blob.write_bytes(b"{}")
    (snapshot / "config.json").symlink_to(os.path.relpath(blob, snapshot))
    (snapshot / "leak.txt").symlink_to(outside)
    (cache / "refs" / "..%2F..").write_text(COMMIT)  # a hostile ref name stays a name
    folder_source = FolderSource()
    await folder_source.add("org/tiny", model)
    sources = [folder_source, HFCacheSource(tmp_path / "cache")]
    async with Gateway(sources, GatewayConfig(port=0, upstream=None)) as gateway:
        api = HfApi(endpoint=gateway.url)
        files = await asyncio.to_thread(api.list_repo_files, "org/tiny")
        cached = await asyncio.to_thread(api.list_repo_files, "org/cached")
        with pytest.raises(EntryNotFoundError):
            await asyncio.to_thread(
                huggingface_hub.hf_hub_download,
                "org/cached",
                "leak.txt",
                cache_dir=tmp_path / "c",
                endpoint=gateway.url,
            )
    assert "leak.txt" not in files and "inside.txt" in files
    assert cached == ["config.json"]
