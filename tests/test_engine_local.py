"""The download/seed engine (Session / Torrent) in torrentgoat-only swarms on 127.0.0.1.

Shown here, each with small payloads (a few MiB, 256 KiB pieces):

* one seeder and three leechers, single-file and multi-file (BEP 47 pad files) torrents: every
  leecher completes with identical bytes, pad files are never created, and the leechers trade
  pieces among themselves (the seeder's upload is rate limited so they have a reason to) -- when
  they all dial each other at once, and when they only know the seeder (PEX introduces them);
* a freed upload slot goes to a waiting leecher at once (not at the next rechoke round);
* magnet links: the metadata comes over BEP 9 from a torrentgoat seeder (also ~90 KB of metadata
  for 700 files);
* file selection by glob (``files=["*.json"]``), by index and by BEP 53 ``so=``: only the selected
  files are downloaded and no other file is ever created (with or without pads); a selection that
  matches nothing stops the torrent with that reason;
* IPv6 loopback; the sequential strategy; a session download limit slows the transfer down (only
  a generous lower bound on the elapsed time is asserted: no flaky timing);
* ``python -m torrentgoat get`` against an in-test seeding session exits 0 with identical bytes;
  exit codes 1 (``--timeout`` without peers), 2 (missing .torrent), 130 (Ctrl-C).
"""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import socket
import sys
import time
from pathlib import Path

import pytest

from torrentgoat.choker import ChokerConfig
from torrentgoat.magnet import Magnet
from torrentgoat.primitives import PeerAddress
from torrentgoat.session import Session
from torrentgoat.storage.file import PARTS_DIR
from torrentgoat.storage.resume import RESUME_DIR
from torrentgoat.testing.swarm import (
    MiB,
    Payload,
    assert_same_files,
    describe,
    files_on_disk,
    local_swarm,
    loopback_config,
    make_file_payload,
    make_model_payload,
)
from torrentgoat.testing.timing import scaled
from torrentgoat.torrent import Completed, MetadataReceived, TorrentConfig, TorrentEvent


async def _complete(torrent: object, timeout: float = 20.0) -> None:
    from torrentgoat.torrent import Torrent

    assert isinstance(torrent, Torrent)
    timeout = scaled(timeout)
    try:
        await asyncio.wait_for(torrent.wait_complete(), timeout)
    except TimeoutError:
        raise AssertionError(f"not complete after {timeout} s: {describe(torrent)}") from None


def _real_files(payload: Payload, *, only: set[int] | None = None) -> set[str]:
    """Relative paths (under the download directory) of the torrent's non-pad files."""
    info = payload.metainfo.info
    out = set()
    for index, entry in enumerate(info.files):
        if entry.pad or (only is not None and index not in only):
            continue
        out.add(info.name if info.single_file else "/".join(entry.path))
    return out


# --------------------------------------------------------------------------- swarms


async def test_single_file_one_seeder_three_leechers(tmp_path: Path) -> None:
    payload = make_file_payload(tmp_path, 6 * MiB + 4321, piece_length=256 * 1024, seed=11)
    seeder = loopback_config(seed=0, upload_limit=4 * MiB)  # slow seeder: leechers must trade
    async with local_swarm(
        payload, tmp_path / "swarm", leechers=3, mesh="half", seeder_config=seeder
    ) as swarm:
        await swarm.wait_complete(timeout=30)
        for torrent in swarm.torrents:
            assert torrent.is_complete
            assert torrent.hash_failures == 0
            assert torrent.have is not None and torrent.have.complete
        leecher_upload = sum(t.uploaded for t in swarm.torrents)
        assert leecher_upload > 0, "leechers never served each other"
        assert swarm.seed_torrent.uploaded > 0
    for directory in swarm.leecher_dirs:
        assert_same_files(payload.metainfo, payload.root, directory)
        assert files_on_disk(directory) == {payload.name}


async def test_multi_file_with_pads_one_seeder_three_leechers(tmp_path: Path) -> None:
    payload = make_model_payload(tmp_path, shards=2, shard_size=3 * MiB + 12345, seed=12)
    assert any(f.pad for f in payload.metainfo.info.files), "expected BEP 47 pad files"
    seeder = loopback_config(seed=0, upload_limit=4 * MiB)
    async with local_swarm(
        payload, tmp_path / "swarm", leechers=3, mesh="half", seeder_config=seeder
    ) as swarm:
        await swarm.wait_complete(timeout=30)
        assert sum(t.uploaded for t in swarm.torrents) > 0
        assert all(t.hash_failures == 0 for t in swarm.torrents)
    for directory in swarm.leecher_dirs:
        assert assert_same_files(payload.metainfo, payload.root, directory) == len(_real_files(payload))
        on_disk = files_on_disk(directory)
        assert on_disk == _real_files(payload), "pad files (or strays) were created"
        assert not any(".pad" in p for p in on_disk)


async def test_leechers_that_all_dial_each_other_trade_pieces(tmp_path: Path) -> None:
    """Simultaneous dials between leechers: one connection per pair must survive (regression test:
    both sides used to close their outgoing connection as a duplicate, so none survived)."""
    payload = make_file_payload(tmp_path, 6 * MiB, piece_length=256 * 1024, seed=13)
    seeder = loopback_config(seed=0, upload_limit=3 * MiB)
    async with local_swarm(
        payload, tmp_path / "swarm", leechers=3, mesh="full", seeder_config=seeder
    ) as swarm:
        await swarm.wait_complete(timeout=30)
        uploads = [t.uploaded for t in swarm.torrents]
    for directory in swarm.leecher_dirs:
        assert_same_files(payload.metainfo, payload.root, directory)
    assert sum(uploads) > 0, f"leechers dialled each other but never traded: uploads={uploads}"


async def test_leechers_that_only_know_the_seeder_meet_through_pex(tmp_path: Path) -> None:
    payload = make_file_payload(tmp_path, 3 * MiB, piece_length=256 * 1024, seed=14)
    seeder = loopback_config(seed=0, upload_limit=2 * MiB)
    async with local_swarm(
        payload, tmp_path / "swarm", leechers=3, mesh="none", seeder_config=seeder
    ) as swarm:
        await swarm.wait_complete(timeout=30)
        uploads = [t.uploaded for t in swarm.torrents]
    for directory in swarm.leecher_dirs:
        assert_same_files(payload.metainfo, payload.root, directory)
    assert sum(uploads) > 0, f"leechers never met: uploads={uploads}"


async def test_freed_upload_slot_is_given_to_a_waiting_leecher_at_once(tmp_path: Path) -> None:
    payload = make_file_payload(tmp_path, 2 * MiB, piece_length=256 * 1024, seed=15)
    seeder = loopback_config(seed=0, torrent=TorrentConfig(choker=ChokerConfig(upload_slots=1)))
    async with local_swarm(
        payload, tmp_path / "swarm", leechers=3, mesh="none", seeder_config=seeder
    ) as swarm:
        await swarm.wait_complete(timeout=5)  # unthrottled loopback: a fraction of a second of work
    for directory in swarm.leecher_dirs:
        assert_same_files(payload.metainfo, payload.root, directory)


async def test_many_torrents_between_two_sessions_into_one_directory(tmp_path: Path) -> None:
    """Six torrents over one listen port each way: connections are routed by info-hash."""
    payloads = [
        make_file_payload(tmp_path / f"p{i}", 1 * MiB + i * 4096, seed=60 + i, name=f"m{i}.safetensors")
        for i in range(6)
    ]
    dest = tmp_path / "down"
    async with Session(loopback_config(seed=1)) as seeder, Session(loopback_config(seed=2)) as leecher:
        for payload in payloads:
            await _seeding(seeder, payload)
        torrents = [
            await leecher.add(p.metainfo, dest, peers=[f"127.0.0.1:{seeder.listen_port}"]) for p in payloads
        ]
        await asyncio.wait_for(asyncio.gather(*(t.wait_complete() for t in torrents)), scaled(30))
    for payload in payloads:
        assert_same_files(payload.metainfo, payload.root, dest)
    assert files_on_disk(dest) == {p.name for p in payloads}


# --------------------------------------------------------------------------- magnets and selection


async def _seeding(session: Session, payload: Payload) -> None:
    torrent = await session.add(payload.metainfo, payload.root, seed=True)
    await _complete(torrent, 20)


async def test_magnet_metadata_over_bep9_from_torrentgoat_seeder(tmp_path: Path) -> None:
    payload = make_model_payload(tmp_path, shards=2, shard_size=2 * MiB + 999, seed=21)
    async with Session(loopback_config(seed=1)) as seeder, Session(loopback_config(seed=2)) as leecher:
        await _seeding(seeder, payload)
        magnet = dataclasses.replace(
            Magnet.from_metainfo(payload.metainfo), peers=(PeerAddress("127.0.0.1", seeder.listen_port),)
        )
        torrent = await leecher.add(magnet.to_uri(), tmp_path / "down")
        assert torrent.info is None
        events: list[TorrentEvent] = []

        async def watch() -> None:
            async for event in torrent.events():
                events.append(event)

        watcher = asyncio.create_task(watch())
        info = await asyncio.wait_for(torrent.wait_metadata(), scaled(10))
        assert info.raw == payload.metainfo.info.raw
        assert info.info_hash == payload.metainfo.info_hash
        await _complete(torrent)
        assert torrent.hash_failures == 0
        await asyncio.wait_for(torrent.wait_stopped(), scaled(10))  # not seeding: stops once complete
        await asyncio.wait_for(watcher, scaled(5))
    assert torrent.stop_reason == "complete"
    kinds = [type(e) for e in events]
    assert MetadataReceived in kinds and Completed in kinds
    assert kinds.index(MetadataReceived) < kinds.index(Completed)
    assert_same_files(payload.metainfo, payload.root, tmp_path / "down")


async def test_magnet_with_multi_piece_metadata_and_hundreds_of_files(tmp_path: Path) -> None:
    """BEP 9 metadata of ~90 KB (several 16 KiB pieces), 700 small files (some empty) with pads."""
    import random

    from torrentgoat.creation import create_torrent

    rng = random.Random(30)
    root = tmp_path / "seed"
    folder = root / "many"
    folder.mkdir(parents=True)
    for i in range(700):
        (folder / f"shard-{i:05d}-of-many-with-a-long-name.bin").write_bytes(
            rng.randbytes(rng.randint(0, 3000))
        )
    metainfo = create_torrent(folder, piece_length=16384, creation_date=None)
    assert len(metainfo.info.raw) > 4 * 16384
    payload = Payload(root=root, metainfo=metainfo, torrent_path=tmp_path / "many.torrent")
    async with Session(loopback_config(seed=1)) as seeder, Session(loopback_config(seed=2)) as leecher:
        await _seeding(seeder, payload)
        magnet = dataclasses.replace(
            Magnet.from_metainfo(metainfo), peers=(PeerAddress("127.0.0.1", seeder.listen_port),)
        )
        torrent = await leecher.add(magnet.to_uri(), tmp_path / "down")
        info = await asyncio.wait_for(torrent.wait_metadata(), scaled(10))
        assert info.raw == metainfo.info.raw
        await _complete(torrent, 30)
    assert assert_same_files(metainfo, root, tmp_path / "down") == 700
    assert files_on_disk(tmp_path / "down") == _real_files(payload)


async def test_file_globs_download_only_matching_files(tmp_path: Path) -> None:
    payload = make_model_payload(tmp_path, shards=2, shard_size=2 * MiB + 555, seed=22)
    info = payload.metainfo.info
    json_files = {i for i, f in enumerate(info.files) if not f.pad and f.path[-1].endswith(".json")}
    assert len(json_files) == 4
    dest = tmp_path / "down"
    async with Session(loopback_config(seed=1)) as seeder, Session(loopback_config(seed=2)) as leecher:
        await _seeding(seeder, payload)
        magnet = Magnet.from_metainfo(payload.metainfo).to_uri()  # metadata over BEP 9 as well
        torrent = await leecher.add(magnet, dest, files=["*.json"], peers=[f"127.0.0.1:{seeder.listen_port}"])
        await _complete(torrent)
        wanted = torrent.wanted_bytes
        assert torrent.hash_failures == 0
    assert files_on_disk(dest) == _real_files(payload, only=json_files)
    assert_same_files(payload.metainfo, payload.root, dest, only=sorted(json_files))
    shard_bytes = sum(f.length for f in info.files if f.path[-1].endswith(".safetensors"))
    assert wanted < info.total_length - shard_bytes + len(json_files) * info.piece_length
    assert torrent.downloaded < shard_bytes  # no shard was fetched


async def test_magnet_select_only_indices(tmp_path: Path) -> None:
    """BEP 53: ``so=`` in the magnet selects files by index."""
    payload = make_model_payload(tmp_path, shards=2, shard_size=2 * MiB + 555, seed=23)
    info = payload.metainfo.info
    shard = next(i for i, f in enumerate(info.files) if f.path[-1] == "model-00002-of-00002.safetensors")
    config = next(i for i, f in enumerate(info.files) if f.path[-1] == "config.json")
    selected = tuple(sorted({shard, config}))
    dest = tmp_path / "down"
    async with Session(loopback_config(seed=1)) as seeder, Session(loopback_config(seed=2)) as leecher:
        await _seeding(seeder, payload)
        magnet = dataclasses.replace(
            Magnet.from_metainfo(payload.metainfo),
            peers=(PeerAddress("127.0.0.1", seeder.listen_port),),
            select_only=selected,
        )
        assert "so=" in magnet.to_uri()
        torrent = await leecher.add(magnet.to_uri(), dest)
        await _complete(torrent)
        assert torrent.have is not None and not torrent.have.complete
    assert files_on_disk(dest) == _real_files(payload, only=set(selected))
    assert_same_files(payload.metainfo, payload.root, dest, only=selected)


@pytest.mark.parametrize("selection", [{"files": ["*.nomatch"]}, {"file_indices": [99]}])
async def test_selection_matching_no_file_is_reported(tmp_path: Path, selection: dict[str, object]) -> None:
    from torrentgoat.errors import ConfigError, TorrentGoatError

    payload = make_model_payload(tmp_path, shards=1, shard_size=1 * MiB, seed=29)
    async with Session(loopback_config(seed=1)) as seeder, Session(loopback_config(seed=2)) as leecher:
        await _seeding(seeder, payload)
        try:
            torrent = await leecher.add(
                payload.metainfo,
                tmp_path / "down",
                peers=[f"127.0.0.1:{seeder.listen_port}"],
                **selection,  # type: ignore[arg-type]
            )
        except ConfigError:
            return  # refused up front: fine too
        with pytest.raises(TorrentGoatError, match="selection"):
            await asyncio.wait_for(torrent.wait_complete(), scaled(10))
        await asyncio.wait_for(torrent.wait_stopped(), scaled(5))
        assert isinstance(torrent.error, ConfigError)
        assert "selection" in torrent.stop_reason
    assert not (tmp_path / "down").exists() or not files_on_disk(tmp_path / "down")


async def test_file_selection_without_pads_never_creates_unselected_files(tmp_path: Path) -> None:
    """Without BEP 47 pads, boundary pieces are shared with unselected files: those stay uncreated."""
    from torrentgoat.creation import create_torrent
    from torrentgoat.testing.shards import write_model_folder

    root = tmp_path / "seed"
    write_model_folder(root / "nopad", shards=2, shard_size=1 * MiB + 333, seed=24)
    metainfo = create_torrent(root / "nopad", piece_length=256 * 1024, pad=False, creation_date=None)
    payload = Payload(root=root, metainfo=metainfo, torrent_path=tmp_path / "nopad.torrent")
    assert not any(f.pad for f in metainfo.info.files)
    info = metainfo.info
    shard = next(i for i, f in enumerate(info.files) if f.path[-1] == "model-00001-of-00002.safetensors")
    dest = tmp_path / "down"
    async with Session(loopback_config(seed=1)) as seeder, Session(loopback_config(seed=2)) as leecher:
        await _seeding(seeder, payload)
        torrent = await leecher.add(
            metainfo, dest, file_indices=[shard], peers=[f"127.0.0.1:{seeder.listen_port}"]
        )
        await _complete(torrent)
    assert files_on_disk(dest) == _real_files(payload, only={shard})
    assert_same_files(metainfo, root, dest, only=[shard])
    # the bytes of the neighbours' shared pieces live in a part file, not in the neighbour files
    assert {p.split("/", 1)[0] for p in files_on_disk(dest, parts=True)} <= {"nopad", PARTS_DIR, RESUME_DIR}


async def test_download_over_ipv6_loopback(tmp_path: Path) -> None:
    payload = make_file_payload(tmp_path, 1 * MiB + 1, piece_length=256 * 1024, seed=31)
    seeder_config = dataclasses.replace(loopback_config(seed=1), listen_ipv6="::1")
    async with Session(seeder_config) as seeder, Session(loopback_config(seed=2)) as leecher:
        await _seeding(seeder, payload)
        torrent = await leecher.add(
            payload.metainfo, tmp_path / "down", peers=[f"[::1]:{seeder.listen_port}"]
        )
        await _complete(torrent)
    assert_same_files(payload.metainfo, payload.root, tmp_path / "down")


async def test_sequential_strategy_completes(tmp_path: Path) -> None:
    payload = make_file_payload(tmp_path, 4 * MiB + 77, piece_length=256 * 1024, seed=25)
    dest = tmp_path / "down"
    async with Session(loopback_config(seed=1)) as seeder, Session(loopback_config(seed=2)) as leecher:
        await _seeding(seeder, payload)
        torrent = await leecher.add(
            payload.torrent_path, dest, sequential=True, peers=[f"127.0.0.1:{seeder.listen_port}"]
        )
        assert torrent.config.picker.strategy == "sequential"
        await _complete(torrent)
        assert torrent.hash_failures == 0
    assert_same_files(payload.metainfo, payload.root, dest)


async def test_download_limit_slows_the_transfer(tmp_path: Path) -> None:
    size = 2 * MiB
    limit = 1 * MiB  # bytes per second: ideal time ~2 s minus the bucket's burst (rate / 4)
    payload = make_file_payload(tmp_path, size, piece_length=256 * 1024, seed=26)
    dest = tmp_path / "down"
    async with (
        Session(loopback_config(seed=1)) as seeder,
        Session(loopback_config(seed=2, download_limit=limit)) as leecher,
    ):
        await _seeding(seeder, payload)
        started = time.monotonic()
        torrent = await leecher.add(payload.metainfo, dest, peers=[f"127.0.0.1:{seeder.listen_port}"])
        await _complete(torrent, 30)
        elapsed = time.monotonic() - started
    assert_same_files(payload.metainfo, payload.root, dest)
    # Lower bound only, with a big margin (a burst of rate/4 and measurement slop are allowed for).
    assert elapsed >= 0.5 * size / limit, f"{size} bytes at {limit} B/s took only {elapsed:.2f} s"


# --------------------------------------------------------------------------- CLI


async def test_cli_get_from_in_test_seeder_exits_zero(tmp_path: Path) -> None:
    payload = make_model_payload(tmp_path, shards=2, shard_size=1 * MiB + 99, seed=27)
    dest = tmp_path / "cli-down"
    async with Session(loopback_config(seed=1)) as seeder:
        await _seeding(seeder, payload)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "torrentgoat", "get", str(payload.torrent_path), "-o", str(dest),
            "--peer", f"127.0.0.1:{seeder.listen_port}", "--no-dht", "--no-trackers",
            "--listen", "127.0.0.1", "--listen6", "", "--port", "0", "--quiet",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            out, err = await asyncio.wait_for(proc.communicate(), scaled(40))
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise
    assert proc.returncode == 0, f"exit {proc.returncode}\n{out.decode()}\n{err.decode()}"
    assert_same_files(payload.metainfo, payload.root, dest)
    assert files_on_disk(dest) == _real_files(payload)


@pytest.mark.slow
async def test_cli_get_exit_codes_without_peers_bad_input_and_ctrl_c(tmp_path: Path) -> None:
    """``--timeout`` with nobody to download from: 1; a missing .torrent: 2; Ctrl-C while waiting
    for metadata: 130, cleanly (no traceback)."""
    payload = make_file_payload(tmp_path, 1 * MiB, piece_length=256 * 1024, seed=28)
    magnet = Magnet.from_metainfo(payload.metainfo).to_uri()
    common = ["--no-dht", "--no-trackers", "--listen", "127.0.0.1", "--listen6", "", "--quiet"]

    async def start(*args: str) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "torrentgoat", "get", *args, *common,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip

    timed = await start(magnet, "-o", str(tmp_path / "a"), "--timeout", "1", "--port", "0")
    missing = await start(str(tmp_path / "nope.torrent"), "-o", str(tmp_path / "b"), "--port", "0")
    port = _free_port()
    interrupted = await start(magnet, "-o", str(tmp_path / "c"), "--port", str(port))
    await _until_listening(port, 30)  # the session runs: the torrent waits for metadata
    await asyncio.sleep(0.5)
    interrupted.send_signal(signal.SIGINT)
    results = {}
    for name, proc in (("timed", timed), ("missing", missing), ("interrupted", interrupted)):
        try:
            out, err = await asyncio.wait_for(proc.communicate(), scaled(20))
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise AssertionError(f"{name}: did not exit") from None
        results[name] = (proc.returncode, (out + err).decode())
    assert results["timed"][0] == 1, results["timed"]
    assert results["missing"][0] == 2, results["missing"]
    assert "nope.torrent" in results["missing"][1]
    assert results["interrupted"][0] == 130, results["interrupted"]
    for _code, output in results.values():
        assert "Traceback" not in output, output


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _until_listening(port: int, timeout: float) -> None:
    deadline = time.monotonic() + scaled(timeout)
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"nothing listens on {port} after {timeout} s") from None
            await asyncio.sleep(0.1)
        else:
            writer.close()
            return
