"""BEP 19 web seeds: URL mapping and ranges, the HTTP client against a local hub, and whole downloads.

Everything runs on 127.0.0.1 against :class:`torrentgoat.testing.hub.FakeHub`, which behaves like the
Hugging Face hub: ``/<org>/<repo>/resolve/<commit>/<path>`` answers LFS files with a ``302`` to an
expiring CDN URL.  A snapshot torrent is named after the commit and its ``url-list`` is the repo's
``resolve/`` URL, so BEP 19 requests land on ``resolve/<commit>/<path>`` (issue 5).

Shown here:

* pure parts: url-list -> file URL (percent-encoding per component), torrent range -> file spans
  (pads marked), block runs, ``Retry-After`` / ``Content-Range`` parsing (property tests too);
* the client: exact ranges with pads filled locally (never requested), per-file redirect cache and
  re-resolution after expiry, ``503`` + ``Retry-After`` (seconds and HTTP date), exponential
  back-off on refused connections then dropping, servers that ignore ``Range``, ``404``, and replies
  that break the rules (wrong ``Content-Range``, long bodies, gzip, redirect loops);
* whole downloads through a :class:`Session`: a multi-file model from web seeds alone (every real
  byte served exactly once, no pad range ever asked), a single-file torrent whose URL is the file,
  expiry mid-download, ``Retry-After`` honoured, a corrupt web seed dropped while a torrentgoat
  seeder peer finishes the job, peers and a web seed sharing one download, a magnet's ``ws=``
  joining once BEP 9 metadata arrived, and a dead URL (``404``) dropped at once;
* interop: libtorrent downloads the same snapshot torrent from the fake hub (same URL mapping).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import email.utils
import gzip
import socket
import time
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from conftest import require_libtorrent
from hypothesis import given
from hypothesis import strategies as st

from torrentgoat.aio.webseed import (
    WebSeedClient,
    WebSeedConfig,
    WebSeedRejected,
    WebSeedRetryLater,
    file_url,
    map_range,
    parse_content_range,
    parse_retry_after,
)
from torrentgoat.creation import create_torrent
from torrentgoat.errors import ConfigError
from torrentgoat.magnet import Magnet
from torrentgoat.metainfo import InfoDict, Metainfo
from torrentgoat.primitives import BLOCK_SIZE, BlockRef, PeerAddress
from torrentgoat.session import Session, SessionConfig
from torrentgoat.testing.hub import FakeHub, parse_range_header
from torrentgoat.testing.shards import make_info, write_model_folder, write_safetensors_shard
from torrentgoat.testing.swarm import MiB, assert_same_files, describe, files_on_disk, loopback_config
from torrentgoat.testing.timing import scaled
from torrentgoat.torrent import Torrent
from torrentgoat.torrent.webseed import WebSeedSource, block_runs

COMMIT = "4b0c2f3d5e6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c"
REPO = "tg-test/tiny-llama"
PIECE = 256 * 1024


# --------------------------------------------------------------------------- helpers


def _model(base: Path, *, shard_size: int = 2 * MiB + 4321, seed: int = 0) -> Path:
    """A Hugging Face-like snapshot folder named after the commit (so a seeder can share it too)."""
    return write_model_folder(base / "seed" / COMMIT, shards=2, shard_size=shard_size, seed=seed)


def _snapshot_torrent(folder: Path, hub: FakeHub) -> Metainfo:
    return create_torrent(
        folder, name=COMMIT, piece_length=PIECE, web_seeds=[hub.resolve_url(REPO)], creation_date=None
    )


def _real(info: InfoDict) -> dict[str, int]:
    """Repo path -> size of every non-pad file."""
    if info.single_file:
        return {info.name: info.total_length}
    return {"/".join(f.path[1:]): f.length for f in info.files if not f.pad}


def _torrent_bytes(folder: Path, info: InfoDict) -> bytes:
    """The torrent's concatenated data (pads as zeros)."""
    out = bytearray()
    for entry in info.files:
        out += bytes(entry.length) if entry.pad else (folder / "/".join(entry.path[1:])).read_bytes()
    return bytes(out)


def _own_webseeds(seed: int, **kwargs: Any) -> SessionConfig:
    """A loopback session that does not start web seeds itself (the test runs its own source)."""
    return dataclasses.replace(loopback_config(seed=seed, **kwargs), enable_web_seeds=False)


def _wired_source(torrent: Torrent) -> WebSeedSource:
    """The web seed source :meth:`Session.add` gave the torrent (from its ``url-list``)."""
    found = [s for s in torrent.sources if isinstance(s, WebSeedSource)]
    assert len(found) == 1, f"expected one WebSeedSource, got {torrent.sources}"
    return found[0]


@contextlib.asynccontextmanager
async def _webseeds(torrent: Torrent, source: WebSeedSource) -> AsyncIterator[asyncio.Task[None]]:
    """Run a source of the test's own making (non-default options) for ``torrent``."""
    task = asyncio.create_task(source.run(torrent))
    try:
        yield task
    finally:
        if not task.done():
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _complete(torrent: Torrent, timeout: float = 20.0) -> None:
    timeout = scaled(timeout)
    try:
        await asyncio.wait_for(torrent.wait_complete(), timeout)
    except TimeoutError:
        raise AssertionError(f"not complete after {timeout} s: {describe(torrent)}") from None


def _assert_ranges_tile_files(hub: FakeHub, info: InfoDict) -> None:
    """Every real file was served exactly once, in ranges that never overlap or leave the file."""
    sizes = _real(info)
    by_path: dict[str, list[tuple[int, int]]] = {}
    for path, first, last in hub.served_ranges():
        assert path in sizes, f"served {path!r}, which is not a file of the torrent"
        assert 0 <= first <= last < sizes[path], f"range {first}-{last} outside {path} ({sizes[path]} bytes)"
        by_path.setdefault(path, []).append((first, last))
    for path, size in sizes.items():
        ranges = sorted(by_path.get(path, []))
        position = 0
        for first, last in ranges:
            assert first == position, f"{path}: ranges {ranges} overlap or leave a gap at {position}"
            position = last + 1
        assert position == size, f"{path}: served up to {position} of {size} bytes"


def _closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    sock.close()
    return port


# --------------------------------------------------------------------------- pure parts


def test_file_url_single_file() -> None:
    info, _ = make_info("model weights.safetensors", [("model weights.safetensors", b"x" * 100)])
    assert info.single_file
    assert file_url("http://h/files/", info, 0) == "http://h/files/model%20weights.safetensors"
    # BEP 19: a single-file URL not ending in "/" is the file itself
    assert file_url("http://h/exact/name.bin", info, 0) == "http://h/exact/name.bin"


def test_file_url_multi_file_encodes_each_component() -> None:
    info, _ = make_info(COMMIT, [("a b/c#?.json", b"1"), ("ünï/x%y.bin", b"2"), ("plain.txt", b"3")])
    base = "https://huggingface.co/org/repo/resolve/"
    assert file_url(base, info, 0) == f"{base}{COMMIT}/a%20b/c%23%3F.json"
    assert file_url(base, info, 1) == f"{base}{COMMIT}/%C3%BCn%C3%AF/x%25y.bin"
    # a multi-file URL without the trailing slash names the same directory
    assert file_url(base.rstrip("/"), info, 2) == f"{base}{COMMIT}/plain.txt"


def test_file_url_of_a_renamed_file_uses_the_torrents_name() -> None:
    """``u`` is stored as ``u.1`` next to ``U`` (metainfo's case rule); the web seed has it as ``u``."""
    info, _ = make_info("t", [("U", b"1"), ("u", b"2")])
    assert info.files[1].path == ("t", "u.1")
    assert file_url("http://h/", info, 1) == "http://h/t/u"


def test_map_range_splits_per_file_and_marks_pads() -> None:
    info, _ = make_info(
        "t",
        [("a", b"A" * 10), (".pad/6", bytes(6), "p"), ("empty", b""), ("b", b"B" * 16)],
        piece_length=16384,
    )
    spans = map_range(info, 5, 20)
    got = [(s.file_index, s.file_offset, s.length, s.offset, s.pad) for s in spans]
    assert got == [(0, 5, 5, 0, False), (1, 0, 6, 5, True), (3, 0, 9, 11, False)]
    assert map_range(info, 0, 0) == []
    with pytest.raises(ConfigError, match="outside"):
        map_range(info, 30, 10)


@given(
    sizes=st.lists(st.integers(min_value=0, max_value=5000), min_size=1, max_size=8),
    data=st.data(),
)
def test_map_range_covers_exactly_the_range(sizes: list[int], data: st.DataObject) -> None:
    if sum(sizes) == 0:
        sizes = [*sizes, 1]
    files = [(f"f{i}", bytes([i]) * n) for i, n in enumerate(sizes)]
    info, payload = make_info("t", files, piece_length=16384, single_file=False)
    start = data.draw(st.integers(min_value=0, max_value=len(payload)))
    length = data.draw(st.integers(min_value=0, max_value=len(payload) - start))
    spans = map_range(info, start, length)
    rebuilt = b""
    for span in spans:
        entry = info.files[span.file_index]
        assert span.length > 0 and span.offset == len(rebuilt)
        assert span.file_offset >= 0 and span.file_offset + span.length <= entry.length
        rebuilt += bytes([span.file_index]) * span.length
    assert rebuilt == payload[start : start + length]


def test_block_runs_merge_consecutive_blocks_only() -> None:
    info, _ = make_info("t", [("a", bytes(4 * 32768 + 100))], piece_length=32768)
    blocks = [
        BlockRef(1, 16384, 16384),
        BlockRef(0, 16384, 16384),
        BlockRef(1, 0, 16384),  # piece 0 block 1 + piece 1 blocks 0-1: consecutive bytes
        BlockRef(3, 0, 16384),
        BlockRef(4, 0, 100),  # not right after piece 3's first block: a run of its own
    ]
    runs = block_runs(info, blocks, max_bytes=1 * MiB)
    assert [(r.start, r.length) for r in runs] == [(16384, 49152), (98304, 16384), (131072, 100)]
    assert runs[0].blocks == (BlockRef(0, 16384, 16384), BlockRef(1, 0, 16384), BlockRef(1, 16384, 16384))
    # the size cap splits long runs
    capped = block_runs(info, blocks, max_bytes=32768)
    assert [(r.start, r.length) for r in capped][:2] == [(16384, 32768), (49152, 16384)]


def test_parse_retry_after() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after("120", now=now) == 120.0
    assert parse_retry_after(" 0 ", now=now) == 0.0
    assert parse_retry_after(email.utils.formatdate(now + 30, usegmt=True), now=now) == pytest.approx(
        30, abs=1
    )
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0.0
    for bad in (None, "", "soon", "-5", "1.5", "Mon, 99 Foo 2020"):
        assert parse_retry_after(bad, now=now) is None


def test_parse_content_range() -> None:
    assert parse_content_range("bytes 0-99/1000") == (0, 99, 1000)
    assert parse_content_range("bytes 5-5/*") == (5, 5, None)
    for bad in (
        None,
        "",
        "bytes */1000",
        "bytes 9-5/10",
        "bytes 0-10/10",
        "items 0-1/2",
        "bytes 0-1/2, 4-5/6",
    ):
        assert parse_content_range(bad) is None


@given(first=st.integers(min_value=0, max_value=2**40), size=st.integers(min_value=1, max_value=2**40))
def test_content_range_round_trip(first: int, size: int) -> None:
    last = first + size - 1
    total = last + 1 + first % 7
    assert parse_content_range(f"bytes {first}-{last}/{total}") == (first, last, total)


def test_hub_range_header() -> None:
    assert parse_range_header("bytes=0-9", 100) == (0, 9)
    assert parse_range_header("bytes=90-", 100) == (90, 99)
    assert parse_range_header("bytes=-10", 100) == (90, 99)
    assert parse_range_header("bytes=50-500", 100) == (50, 99)
    for bad in ("bytes=100-", "bytes=5-1", "bytes=0-1,3-4", "items=0-1", "bytes=x-1"):
        with pytest.raises(ValueError):
            parse_range_header(bad, 100)


async def test_config_and_source_validation(http: aiohttp.ClientSession) -> None:
    with pytest.raises(ConfigError, match="positive"):
        WebSeedConfig(read_timeout=0)
    with pytest.raises(ConfigError, match="connections_per_url"):
        WebSeedSource(["http://h/"], http, connections_per_url=0)
    with pytest.raises(ConfigError, match="one block"):
        WebSeedSource(["http://h/"], http, request_bytes=100)


# --------------------------------------------------------------------------- the client


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_client_exact_ranges_pads_filled_locally(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    folder = _model(tmp_path, shard_size=300_000)
    async with FakeHub() as hub:
        hub.add_repo(REPO, COMMIT, folder)
        info = _snapshot_torrent(folder, hub).info
        data = _torrent_bytes(folder, info)
        client = WebSeedClient(hub.resolve_url(REPO), info, http)
        # the end of config.json, its pad, generation_config.json, its pad, the start of shard 1
        config, gen, shard = info.files[0], info.files[2], info.files[4]
        assert info.files[1].pad and info.files[3].pad
        start, stop = config.length - 50, shard.offset + 1000
        got = await client.fetch(start, stop - start)
        assert bytes(got) == data[start:stop]
        assert not any(".pad" in r.path for r in hub.requests)
        assert hub.served_ranges() == [
            ("config.json", config.length - 50, config.length - 1),
            ("generation_config.json", 0, gen.length - 1),
            (shard.path[-1], 0, 999),
        ]
        assert client.stats.bytes_received == 50 + gen.length + 1000


async def test_client_caches_redirects_and_reresolves_after_expiry(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    folder = _model(tmp_path, shard_size=300_000)
    async with FakeHub() as hub:
        hub.add_repo(REPO, COMMIT, folder)
        info = _snapshot_torrent(folder, hub).info
        data = _torrent_bytes(folder, info)
        shard = info.files[4]
        name = shard.path[-1]
        client = WebSeedClient(hub.resolve_url(REPO), info, http)
        for k in range(3):
            start = shard.offset + k * BLOCK_SIZE
            assert bytes(await client.fetch(start, BLOCK_SIZE)) == data[start : start + BLOCK_SIZE]
        assert hub.count(route="resolve", path=name) == 1, "the redirect target is cached per file"
        assert hub.count(route="cdn", path=name, status=206) == 3
        cached = client.cached_url(4)
        assert cached is not None and "/cdn/" in str(cached)

        hub.expire_tokens()
        start = shard.offset + 5 * BLOCK_SIZE
        assert bytes(await client.fetch(start, BLOCK_SIZE)) == data[start : start + BLOCK_SIZE]
        assert hub.expired_hits == 1
        assert hub.count(route="resolve", path=name) == 2
        assert client.stats.reresolved == 1
        assert client.cached_url(4) != cached
        assert not client.dropped


async def test_client_retry_after_seconds_and_date(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    folder = _model(tmp_path, shard_size=300_000)
    async with FakeHub() as hub:
        hub.add_repo(REPO, COMMIT, folder)
        info = _snapshot_torrent(folder, hub).info
        client = WebSeedClient(hub.resolve_url(REPO), info, http)
        loop = asyncio.get_running_loop()

        hub.fail_next(1, retry_after="7")
        with pytest.raises(WebSeedRetryLater, match="HTTP 503") as caught:
            await client.fetch(0, 100)
        assert caught.value.retry_at - loop.time() == pytest.approx(7, abs=1)
        assert client.retry_at == caught.value.retry_at

        hub.fail_next(1, retry_after=email.utils.formatdate(time.time() + 30, usegmt=True))
        with pytest.raises(WebSeedRetryLater) as caught:
            await client.fetch(0, 100)
        assert caught.value.retry_at - loop.time() == pytest.approx(30, abs=2)

        hub.fail_next(1, retry_after="999999")  # capped
        with pytest.raises(WebSeedRetryLater) as caught:
            await client.fetch(0, 100)
        assert caught.value.retry_at - loop.time() <= WebSeedConfig().max_retry_after + 1
        # busy is not broken: the URL is kept and works again
        assert bytes(await client.fetch(0, 100)) == (folder / "config.json").read_bytes()[:100]
        assert not client.dropped


async def test_client_connection_errors_back_off_exponentially_then_drop(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    info, _ = make_info("t", [("a", b"z" * 1000)])
    config = WebSeedConfig(backoff_initial=1.0, max_consecutive_failures=4, connect_timeout=2.0)
    client = WebSeedClient(f"http://127.0.0.1:{_closed_port()}/files/", info, http, config=config)
    loop = asyncio.get_running_loop()
    delays = []
    for _ in range(3):
        with pytest.raises(WebSeedRetryLater, match="retrying in") as caught:
            await client.fetch(0, 100)
        delays.append(round(caught.value.retry_at - loop.time()))
    assert delays == [1, 2, 4]
    with pytest.raises(WebSeedRejected, match="dropped after 4 failures"):
        await client.fetch(0, 100)
    assert client.dropped
    with pytest.raises(WebSeedRejected, match="dropped"):
        await client.fetch(0, 100)


async def test_client_server_without_range_support(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    folder = _model(tmp_path, shard_size=300_000)
    async with FakeHub(ignore_range=True) as hub:
        hub.add_repo(REPO, COMMIT, folder)
        info = _snapshot_torrent(folder, hub).info
        data = _torrent_bytes(folder, info)
        config = WebSeedConfig(full_body_limit=64 * 1024)
        client = WebSeedClient(hub.resolve_url(REPO), info, http, config=config)
        # a range near the start of a file is cut out of the 200 (read no further than needed)
        assert bytes(await client.fetch(10, 50)) == data[10:60]
        shard = info.files[4].offset
        assert bytes(await client.fetch(shard, BLOCK_SIZE)) == data[shard : shard + BLOCK_SIZE]
        # deep in a large file it is refused rather than downloading the file again for every block
        with pytest.raises(WebSeedRejected, match="ignores Range"):
            await client.fetch(shard + 200_000, BLOCK_SIZE)
        assert "ignores Range" in client.dropped


async def test_client_missing_file_is_rejected(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    folder = _model(tmp_path, shard_size=300_000)
    async with FakeHub() as hub:
        hub.add_repo("tg-test/other", COMMIT, folder)
        info = _snapshot_torrent(folder, hub).info  # points at REPO, which the hub does not have
        client = WebSeedClient(hub.resolve_url(REPO), info, http)
        with pytest.raises(WebSeedRejected, match="HTTP 404"):
            await client.fetch(0, 100)
        assert client.dropped


def test_client_refuses_non_http_urls() -> None:
    info, _ = make_info("t", [("a", b"z" * 10)])
    for url in ("ftp://mirror/t", "file:///etc/passwd", "not a url"):
        with pytest.raises(WebSeedRejected, match="only http"):
            WebSeedClient(url, info, None)  # type: ignore[arg-type]


def _bad_server(kind: str, payload: bytes) -> web.Application:
    async def handler(request: web.Request) -> web.StreamResponse:
        asked = parse_range_header(request.headers["Range"], len(payload))
        assert asked is not None
        first, last = asked
        body = payload[first : last + 1]
        size = len(payload)
        if kind == "wrong range":
            return web.Response(
                status=206, body=body, headers={"Content-Range": f"bytes {first + 1}-{last + 1}/{size}"}
            )
        if kind == "no content-range":
            return web.Response(status=206, body=body)
        if kind == "other size":
            return web.Response(
                status=206, body=body, headers={"Content-Range": f"bytes {first}-{last}/{size + 1}"}
            )
        if kind == "long body":
            return web.Response(
                status=206, body=body + b"extra", headers={"Content-Range": f"bytes {first}-{last}/{size}"}
            )
        if kind == "gzip":
            return web.Response(
                status=206,
                body=gzip.compress(body),
                headers={"Content-Range": f"bytes {first}-{last}/{size}", "Content-Encoding": "gzip"},
            )
        if kind == "redirect loop":
            raise web.HTTPFound("/again")
        if kind == "ftp redirect":
            raise web.HTTPFound("ftp://elsewhere/file")
        raise AssertionError(kind)

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    return app


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("wrong range", "sent bytes"),
        ("no content-range", "without a valid Content-Range"),
        ("other size", "the torrent says"),
        ("long body", "Content-Length"),
        ("gzip", "compressed"),
        ("redirect loop", "redirects"),
        ("ftp redirect", "non-HTTP"),
    ],
)
async def test_client_rejects_replies_that_break_the_rules(
    kind: str, message: str, http: aiohttp.ClientSession
) -> None:
    payload = bytes(range(256)) * 1024
    info, _ = make_info("w.bin", [("w.bin", payload)])
    runner = web.AppRunner(_bad_server(kind, payload), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        client = WebSeedClient(f"http://127.0.0.1:{port}/w.bin", info, http)
        with pytest.raises(WebSeedRejected, match=message):
            await client.fetch(1000, 5000)
        assert client.dropped
    finally:
        await runner.cleanup()


# --------------------------------------------------------------------------- whole downloads


async def test_download_from_web_seeds_alone(tmp_path: Path) -> None:
    folder = _model(tmp_path)
    async with FakeHub() as hub:
        hub.add_repo(REPO, COMMIT, folder)
        metainfo = _snapshot_torrent(folder, hub)
        info = metainfo.info
        assert any(f.pad for f in info.files)
        assert metainfo.web_seeds == (f"http://127.0.0.1:{hub.port}/{REPO}/resolve/",)
        async with Session(loopback_config(seed=1)) as session:
            torrent = await session.add(metainfo, tmp_path / "down")
            source = _wired_source(torrent)  # Session.add made it from the url-list
            await _complete(torrent)
            await asyncio.wait_for(torrent.wait_stopped(), scaled(10))
        assert torrent.error is None
        assert torrent.hash_failures == 0
        assert source.dropped() == {}
    assert_same_files(metainfo, folder.parent, tmp_path / "down")
    assert not any(".pad" in p for p in files_on_disk(tmp_path / "down"))
    # BEP 47 pads never asked for, every real byte served exactly once, every request answered
    assert not any(".pad" in r.path for r in hub.requests)
    assert {r.status for r in hub.requests} <= {206, 302}
    _assert_ranges_tile_files(hub, info)
    assert hub.bytes_served() == sum(_real(info).values())
    # LFS files went through the CDN; small git files were served by the resolve route itself
    assert hub.count(route="cdn") > 0
    assert hub.count(route="resolve", status=206, path="config.json") == 1


async def test_single_file_torrent_url_is_the_file(tmp_path: Path) -> None:
    root = tmp_path / "seed" / COMMIT
    shard = write_safetensors_shard(root / "model.safetensors", 1 * MiB + 777, seed=5)
    async with FakeHub() as hub:
        hub.add_repo(REPO, COMMIT, root)
        url = f"{hub.url}/{REPO}/resolve/{COMMIT}/model.safetensors"
        metainfo = create_torrent(
            shard, piece_length=PIECE, web_seeds=[url, "ftp://ignored/x"], creation_date=None
        )
        assert metainfo.info.single_file
        async with Session(loopback_config(seed=2)) as session:
            torrent = await session.add(metainfo, tmp_path / "down")
            source = _wired_source(torrent)
            await _complete(torrent)
        assert set(source.clients) == {url}, "the ftp:// URL is not used"
    assert (tmp_path / "down" / "model.safetensors").read_bytes() == shard.read_bytes()
    _assert_ranges_tile_files(hub, metainfo.info)
    assert hub.bytes_served() == shard.stat().st_size


async def test_expired_redirects_are_resolved_again_mid_download(tmp_path: Path) -> None:
    folder = _model(tmp_path)
    async with FakeHub(token_ttl=0.25, response_delay=0.03) as hub:
        hub.add_repo(REPO, COMMIT, folder)
        metainfo = _snapshot_torrent(folder, hub)
        async with Session(_own_webseeds(3)) as session:
            torrent = await session.add(metainfo, tmp_path / "down")
            source = WebSeedSource(metainfo.web_seeds, session.http, request_bytes=64 * 1024)
            async with _webseeds(torrent, source):
                await _complete(torrent, 30)
        stats = source.stats()[metainfo.web_seeds[0]]
    assert hub.expired_hits >= 1, "the download was expected to outlive a CDN token"
    assert stats.reresolved >= 1
    shard = metainfo.info.files[4].path[-1]
    assert hub.count(route="resolve", path=shard) >= 2, f"{shard} was never resolved again"
    assert source.dropped() == {}
    assert torrent.hash_failures == 0
    assert_same_files(metainfo, folder.parent, tmp_path / "down")
    _assert_ranges_tile_files(hub, metainfo.info)


async def test_retry_after_is_honoured(tmp_path: Path) -> None:
    folder = _model(tmp_path, shard_size=1 * MiB)
    async with FakeHub() as hub:
        hub.add_repo(REPO, COMMIT, folder)
        metainfo = _snapshot_torrent(folder, hub)
        hub.fail_next(2, retry_after="1")
        async with Session(loopback_config(seed=4)) as session:
            torrent = await session.add(metainfo, tmp_path / "down")
            source = _wired_source(torrent)
            await _complete(torrent)
    refused = [r for r in hub.requests if r.status == 503]
    served = [r for r in hub.requests if r.status != 503]
    assert len(refused) == 2
    # nothing was asked between the first refusal and the end of its Retry-After
    first_refusal = refused[0].at
    early = [r for r in served if first_refusal < r.at < first_refusal + 0.9]
    assert not early, f"requests during the back-off: {early}"
    assert source.dropped() == {}
    assert_same_files(metainfo, folder.parent, tmp_path / "down")
    _assert_ranges_tile_files(hub, metainfo.info)


async def _seeder(session: Session, metainfo: Metainfo, folder: Path) -> Torrent:
    torrent = await session.add(metainfo, folder.parent, seed=True)
    await _complete(torrent)
    return torrent


async def test_corrupt_web_seed_is_dropped_and_a_peer_finishes(tmp_path: Path) -> None:
    folder = _model(tmp_path, shard_size=3 * MiB)
    async with FakeHub(response_delay=0.01) as hub:
        hub.add_repo(REPO, COMMIT, folder)
        metainfo = _snapshot_torrent(folder, hub)
        for entry in metainfo.info.files:
            if entry.path[-1].endswith(".safetensors"):
                hub.corrupt(REPO, entry.path[-1])
        async with (
            Session(loopback_config(seed=5, upload_limit=2 * MiB)) as seeding,
            Session(loopback_config(seed=6)) as session,
        ):
            seed_torrent = await _seeder(seeding, metainfo, folder)
            torrent = await session.add(
                metainfo, tmp_path / "down", peers=[f"127.0.0.1:{seeding.listen_port}"]
            )
            source = _wired_source(torrent)
            await _complete(torrent, 30)
            uploaded = seed_torrent.uploaded
        dropped = source.dropped()
    assert set(dropped) == set(metainfo.web_seeds)
    assert "failed its hash check" in dropped[metainfo.web_seeds[0]]
    assert torrent.hash_failures >= 1
    assert not torrent.pool.banned, "the honest peer must not be banned"
    assert uploaded > 0
    assert_same_files(metainfo, folder.parent, tmp_path / "down")


async def test_peers_and_web_seed_share_one_download(tmp_path: Path) -> None:
    folder = _model(tmp_path, shard_size=3 * MiB)
    async with FakeHub(response_delay=0.05) as hub:
        hub.add_repo(REPO, COMMIT, folder)
        metainfo = _snapshot_torrent(folder, hub)
        async with (
            Session(loopback_config(seed=7, upload_limit=2 * MiB)) as seeding,
            Session(_own_webseeds(8)) as session,
        ):
            seed_torrent = await _seeder(seeding, metainfo, folder)
            torrent = await session.add(
                metainfo, tmp_path / "down", peers=[f"127.0.0.1:{seeding.listen_port}"]
            )
            source = WebSeedSource(metainfo.web_seeds, session.http, request_bytes=128 * 1024)
            async with _webseeds(torrent, source):
                await _complete(torrent, 30)
            from_peer = seed_torrent.uploaded
        from_web = hub.bytes_served()
    assert torrent.hash_failures == 0
    assert source.dropped() == {}
    assert from_peer > 0 and from_web > 0, f"peer sent {from_peer} bytes, the web seed {from_web}"
    assert not any(".pad" in r.path for r in hub.requests)
    assert_same_files(metainfo, folder.parent, tmp_path / "down")


async def test_magnet_ws_joins_once_metadata_arrives(tmp_path: Path) -> None:
    """A magnet's ``ws=`` web seed waits for the metadata (BEP 9, from a peer), then serves pieces."""
    folder = _model(tmp_path, shard_size=3 * MiB)
    async with FakeHub(response_delay=0.02) as hub:
        hub.add_repo(REPO, COMMIT, folder)
        metainfo = _snapshot_torrent(folder, hub)
        async with (
            Session(loopback_config(seed=9, upload_limit=1 * MiB)) as seeding,
            Session(loopback_config(seed=10)) as session,
        ):
            seed_torrent = await _seeder(seeding, metainfo, folder)
            magnet = dataclasses.replace(
                Magnet.from_metainfo(metainfo), peers=(PeerAddress("127.0.0.1", seeding.listen_port),)
            )
            assert f"ws={urllib.parse.quote(metainfo.web_seeds[0], safe='')}" in magnet.to_uri()
            torrent = await session.add(magnet.to_uri(), tmp_path / "down")
            assert torrent.info is None
            source = _wired_source(torrent)
            await _complete(torrent, 30)
            from_peer = seed_torrent.uploaded
        from_web = hub.bytes_served()
    assert from_web > 0, f"the ws= web seed sent nothing (peer sent {from_peer})"
    assert source.dropped() == {}
    assert_same_files(metainfo, folder.parent, tmp_path / "down")


async def test_dead_web_seed_is_dropped_and_peers_finish(tmp_path: Path) -> None:
    folder = _model(tmp_path, shard_size=1 * MiB)
    async with FakeHub() as hub:
        hub.add_repo(REPO, COMMIT, folder)
        gone = f"{hub.url}/tg-test/deleted-repo/resolve/"
        metainfo = create_torrent(
            folder, name=COMMIT, piece_length=PIECE, web_seeds=[gone], creation_date=None
        )
        async with (
            Session(loopback_config(seed=11, upload_limit=2 * MiB)) as seeding,
            Session(loopback_config(seed=12)) as session,
        ):
            await _seeder(seeding, metainfo, folder)
            torrent = await session.add(
                metainfo, tmp_path / "down", peers=[f"127.0.0.1:{seeding.listen_port}"]
            )
            source = _wired_source(torrent)
            await _complete(torrent, 30)
        assert list(source.dropped()) == [gone]
        assert "HTTP 404" in source.dropped()[gone]
        # dropped at the first answer: no retry storm against a URL that does not have the files
        assert hub.count(status=404) <= source.connections_per_url
    assert_same_files(metainfo, folder.parent, tmp_path / "down")


@pytest.mark.interop
async def test_libtorrent_downloads_the_same_snapshot_torrent_from_the_fake_hub(tmp_path: Path) -> None:
    """The reference client reads our url-list the same way (BEP 19 mapping, per-file redirects)."""
    lt = require_libtorrent()  # type: ignore[no-untyped-call]
    folder = _model(tmp_path, shard_size=1 * MiB + 5)
    async with FakeHub() as hub:
        hub.add_repo(REPO, COMMIT, folder)
        metainfo = _snapshot_torrent(folder, hub)
        torrent_file = tmp_path / "snapshot.torrent"
        torrent_file.write_bytes(metainfo.to_bytes())
        session = lt.session(
            {
                "listen_interfaces": "127.0.0.1:0",
                "enable_dht": False,
                "enable_lsd": False,
                "enable_upnp": False,
                "enable_natpmp": False,
                "ssrf_mitigation": False,  # CDN URLs on 127.0.0.1 carry a query string
            }
        )
        params = lt.add_torrent_params()
        params.ti = lt.torrent_info(str(torrent_file))
        params.save_path = str(tmp_path / "lt")
        handle = session.add_torrent(params)
        deadline = time.monotonic() + scaled(30)
        while not handle.status().is_seeding:
            assert time.monotonic() < deadline, f"libtorrent stuck: {handle.status().state}"
            await asyncio.sleep(0.1)
        del session
    assert hub.count(route="cdn", status=206) > 0
    assert not any(".pad" in r.path for r in hub.requests)
    assert_same_files(metainfo, folder.parent, tmp_path / "lt")
