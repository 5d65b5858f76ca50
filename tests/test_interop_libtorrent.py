"""Interop: the torrentgoat engine (Session / Torrent) against libtorrent 2.1, both directions.

libtorrent runs in its own process (``tools/lt_peer.py``) on 127.0.0.1 (and ``::1``); payloads are
real safetensors shards and Hugging Face-like model folders.  Shown here:

* torrentgoat downloads from a libtorrent seeder given a .torrent and the seeder's address;
* torrentgoat joins by magnet with ``x.pe=`` (metadata over BEP 9) and downloads everything;
* libtorrent downloads from a torrentgoat seeder (.torrent, and by magnet: BEP 9 from us);
* the ``get`` command does the magnet download and ``verify`` agrees; ``seed`` serves libtorrent
  and exits 0 on SIGTERM;
* selected files only (globs), resume of a damaged partial copy, 16 KiB and 4 MiB pieces, empty
  files / nested folders / non-ASCII names, IPv6 loopback, a seeder dying mid-download, six
  leeches at once, session upload / download rate limits.

Files are compared byte for byte with the originals after each transfer.
"""

from __future__ import annotations

import asyncio
import hashlib
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from tests.conftest import require_libtorrent
from tests.interop_helpers import (
    MiB,
    ProcessGroup,
    assert_same_files,
    complete,
    free_port,
    loopback_config,
    make_model_torrent,
    make_shard_torrent,
    processes,
    wait_listening,
    wait_until,
)
from torrentgoat import bencode
from torrentgoat.creation import create_torrent
from torrentgoat.magnet import Magnet
from torrentgoat.primitives import PeerAddress
from torrentgoat.session import Session
from torrentgoat.testing.shards import write_safetensors_shard
from torrentgoat.testing.timing import scaled

pytestmark = pytest.mark.interop

__all__ = ["processes"]  # the fixture, imported for pytest


async def test_download_torrent_file_from_libtorrent_seeder(tmp_path: Path, processes: ProcessGroup) -> None:
    require_libtorrent()
    shared = make_shard_torrent(tmp_path, 24 * MiB + 4321, piece_length=256 * 1024, seed=1)
    seeder = await processes.libtorrent("seed", directory=shared.root, torrent=shared.torrent_path)
    dest = tmp_path / "down"
    started = time.monotonic()
    async with Session(loopback_config()) as session:
        torrent = await session.add(shared.torrent_path, dest, peers=[f"127.0.0.1:{seeder.port}"])
        await complete(torrent, timeout=25, peers=[seeder])
        assert torrent.downloaded >= shared.size
        assert torrent.hash_failures == 0
    elapsed = time.monotonic() - started
    assert_same_files(shared.metainfo, shared.root, dest)
    print(f"torrentgoat <- libtorrent: {shared.size / MiB:.1f} MiB in {elapsed:.2f} s")


async def test_download_magnet_with_peer_from_libtorrent_seeder(
    tmp_path: Path, processes: ProcessGroup
) -> None:
    """BEP 9: only the info-hash and ``x.pe`` are known; the metadata comes from libtorrent."""
    require_libtorrent()
    shared = make_model_torrent(tmp_path, shards=2, shard_size=6 * MiB + 777, seed=2)
    seeder = await processes.libtorrent("seed", directory=shared.root, torrent=shared.torrent_path)
    magnet = Magnet(
        info_hash=shared.metainfo.info_hash,
        display_name=shared.name,
        peers=(PeerAddress("127.0.0.1", seeder.port or 0),),
    ).to_uri()
    assert "x.pe=127.0.0.1" in magnet
    dest = tmp_path / "down"
    async with Session(loopback_config()) as session:
        torrent = await session.add(magnet, dest)
        info = await asyncio.wait_for(torrent.wait_metadata(), timeout=scaled(10))
        assert info.info_hash == shared.metainfo.info_hash
        assert info.raw == shared.metainfo.info.raw
        await asyncio.wait_for(torrent.wait_complete(), timeout=scaled(25))
        assert torrent.hash_failures == 0
    assert_same_files(shared.metainfo, shared.root, dest)


async def test_libtorrent_downloads_from_torrentgoat_seeder(tmp_path: Path, processes: ProcessGroup) -> None:
    require_libtorrent()
    shared = make_shard_torrent(tmp_path, 24 * MiB + 999, piece_length=512 * 1024, seed=3)
    dest = tmp_path / "lt-down"
    dest.mkdir()
    async with Session(loopback_config()) as session:
        torrent = await session.add(shared.metainfo, shared.root, seed=True)
        await asyncio.wait_for(torrent.wait_complete(), timeout=scaled(10))  # checked: everything is there
        assert torrent.state != "stopped"
        leech = await processes.libtorrent(
            "leech",
            directory=dest,
            torrent=shared.torrent_path,
            peers=[f"127.0.0.1:{session.listen_port}"],
            extra=["--exit-after-finish", "30"],
        )
        finished = await leech.wait_event("finished", timeout=25)
        assert finished["bytes"] == shared.size
        assert torrent.uploaded >= shared.size
        print(f"libtorrent <- torrentgoat: {shared.size / MiB:.1f} MiB in {finished['seconds']:.2f} s")
    assert_same_files(shared.metainfo, shared.root, dest)


def _cli(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "torrentgoat", *args],
        capture_output=True,
        text=True,
        timeout=scaled(timeout),
        check=False,
    )


async def test_cli_get_magnet_from_libtorrent_then_verify(tmp_path: Path, processes: ProcessGroup) -> None:
    require_libtorrent()
    shared = make_model_torrent(tmp_path, shards=2, shard_size=4 * MiB + 99, seed=4)
    seeder = await processes.libtorrent("seed", directory=shared.root, torrent=shared.torrent_path)
    magnet = Magnet(
        info_hash=shared.metainfo.info_hash, peers=(PeerAddress("127.0.0.1", seeder.port or 0),)
    ).to_uri()
    dest = tmp_path / "cli-down"
    argv = ["get", magnet, "-o", str(dest), "--no-dht", "--listen", "127.0.0.1", "--listen6", ""]
    argv += ["--port", "0", "--quiet", "--timeout", "25"]
    get = await asyncio.to_thread(_cli, *argv, timeout=40)
    assert get.returncode == 0, f"get exited {get.returncode}\n{get.stdout}\n{get.stderr}\n{seeder.tail()}"
    assert_same_files(shared.metainfo, shared.root, dest)
    verify = await asyncio.to_thread(
        _cli, "verify", str(shared.torrent_path), str(dest), "--quiet", timeout=30
    )
    assert verify.returncode == 0, f"verify exited {verify.returncode}\n{verify.stdout}\n{verify.stderr}"


async def test_libtorrent_joins_torrentgoat_seeder_by_magnet(tmp_path: Path, processes: ProcessGroup) -> None:
    """libtorrent knows only the info-hash: it fetches the info dict from us (BEP 9), then the data."""
    require_libtorrent()
    shared = make_model_torrent(tmp_path, shards=2, shard_size=5 * MiB + 5, seed=5)
    dest = tmp_path / "lt-down"
    dest.mkdir()
    async with Session(loopback_config()) as session:
        torrent = await session.add(shared.torrent_path, shared.root, seed=True)
        await asyncio.wait_for(torrent.wait_complete(), timeout=scaled(10))
        magnet = Magnet(info_hash=shared.metainfo.info_hash).to_uri()
        leech = await processes.libtorrent(
            "leech", directory=dest, magnet=magnet, peers=[f"127.0.0.1:{session.listen_port}"]
        )
        finished = await leech.wait_event("finished", timeout=25)
        assert finished["bytes"] == shared.size
    assert_same_files(shared.metainfo, shared.root, dest)


async def test_download_selected_files_from_libtorrent(tmp_path: Path, processes: ProcessGroup) -> None:
    """Only the configs and the second shard of a model folder (``files=`` globs); pads keep the
    other shards' pieces apart, so none of their bytes is fetched."""
    require_libtorrent()
    shared = make_model_torrent(tmp_path, shards=3, shard_size=4 * MiB + 3, seed=6)
    seeder = await processes.libtorrent("seed", directory=shared.root, torrent=shared.torrent_path)
    dest = tmp_path / "down"
    async with Session(loopback_config()) as session:
        torrent = await session.add(
            shared.torrent_path,
            dest,
            files=["*.json", "model-00002-of-00003.safetensors"],
            peers=[f"127.0.0.1:{seeder.port}"],
        )
        await complete(torrent, timeout=25, peers=[seeder])
        info = shared.metainfo.info
        selected = {
            piece
            for f in info.files
            if not f.pad
            and f.length
            and (f.path[-1].endswith(".json") or f.path[-1].startswith("model-00002"))
            for piece in range(f.offset // info.piece_length, (f.end - 1) // info.piece_length + 1)
        }
        assert torrent.have is not None and set(torrent.have) == selected
        # whole pieces travel (a small file's piece is mostly pad), nothing of the other shards
        assert torrent.downloaded <= sum(info.piece_size(i) for i in selected)
    for entry in shared.metainfo.info.files:
        if entry.pad:
            continue
        copy = dest.joinpath(*entry.path)
        original = shared.root.joinpath(*entry.path)
        name = entry.path[-1]
        if name.endswith(".json") or name.startswith("model-00002"):
            assert copy.read_bytes() == original.read_bytes(), f"{name} differs"
        else:
            assert not copy.exists() or copy.read_bytes() != original.read_bytes(), f"{name} was fetched"


async def test_ipv6_loopback_both_directions(tmp_path: Path, processes: ProcessGroup) -> None:
    """Over ``::1``: libtorrent seeds to us dialing ``[::1]:port``, then dials our IPv6 listener."""
    require_libtorrent()
    shared = make_shard_torrent(tmp_path, 8 * MiB + 66, seed=7)
    seeder = await processes.libtorrent(
        "seed", directory=shared.root, torrent=shared.torrent_path, host="::1"
    )
    dest = tmp_path / "down"
    config = replace(loopback_config(seed=True), listen_ipv6="::1")
    async with Session(config) as session:
        torrent = await session.add(shared.torrent_path, dest, peers=[f"[::1]:{seeder.port}"])
        await complete(torrent, timeout=25, peers=[seeder])
        await seeder.stop()
        assert_same_files(shared.metainfo, shared.root, dest)
        lt_dest = tmp_path / "lt-down"
        lt_dest.mkdir()
        leech = await processes.libtorrent(
            "leech",
            directory=lt_dest,
            torrent=shared.torrent_path,
            host="::1",
            peers=[f"[::1]:{session.listen_port}"],
        )
        await leech.wait_event("finished", timeout=25)
        assert torrent.uploaded >= shared.size
    assert_same_files(shared.metainfo, shared.root, lt_dest)


async def test_cli_seed_to_libtorrent_and_stop_on_sigterm(tmp_path: Path, processes: ProcessGroup) -> None:
    """``python -m torrentgoat seed`` serves a libtorrent leech, then stops cleanly on SIGTERM."""
    require_libtorrent()
    shared = make_model_torrent(tmp_path, shards=2, shard_size=4 * MiB + 1, seed=8)
    port = free_port()
    argv = [sys.executable, "-m", "torrentgoat", "seed", str(shared.torrent_path), str(shared.root)]
    argv += ["--port", str(port), "--listen", "127.0.0.1", "--listen6", "", "--no-dht", "--quiet"]
    seeder = await processes.spawn("torrentgoat-seed", argv)
    await wait_listening(port, timeout=15)
    dest = tmp_path / "lt-down"
    dest.mkdir()
    leech = await processes.libtorrent(
        "leech", directory=dest, torrent=shared.torrent_path, peers=[f"127.0.0.1:{port}"]
    )
    await leech.wait_event("finished", timeout=25)
    assert_same_files(shared.metainfo, shared.root, dest)
    assert seeder.process is not None and seeder.returncode is None
    seeder.process.send_signal(signal.SIGTERM)
    code = await seeder.wait_exit(timeout=10)
    assert code == 0, f"seed exited {code} on SIGTERM\n{seeder.tail()}"


async def test_resume_fetches_only_missing_pieces_from_libtorrent(
    tmp_path: Path, processes: ProcessGroup
) -> None:
    """A partial copy on disk (as left by Ctrl-C): verified pieces stay, only the bad ones travel."""
    require_libtorrent()
    piece = 256 * 1024
    shared = make_shard_torrent(tmp_path, 16 * MiB + 100, piece_length=piece, seed=9)
    dest = tmp_path / "down"
    dest.mkdir()
    data = bytearray((shared.root / shared.name).read_bytes())
    damaged = {3, 20, 40, len(data) // piece}  # a few pieces, the short last one too
    for index in damaged:
        data[index * piece] ^= 0xFF
    del data[-piece // 2 :]  # and the file is short, as after an interrupted download
    damaged.add((len(data)) // piece)
    (dest / shared.name).write_bytes(bytes(data))
    seeder = await processes.libtorrent("seed", directory=shared.root, torrent=shared.torrent_path)
    async with Session(loopback_config()) as session:
        torrent = await session.add(shared.torrent_path, dest, peers=[f"127.0.0.1:{seeder.port}"])
        await complete(torrent, timeout=25, peers=[seeder])
        budget = sum(shared.metainfo.info.piece_size(i) for i in damaged)
        assert 0 < torrent.downloaded <= budget, f"downloaded {torrent.downloaded}, damaged {budget}"
    assert_same_files(shared.metainfo, shared.root, dest)


@pytest.mark.parametrize(
    ("piece_length", "size"),
    [(16 * 1024, 6 * MiB + 1), (4 * MiB, 14 * MiB + 16385)],
    ids=["16KiB-pieces", "4MiB-pieces"],
)
async def test_piece_sizes_both_directions(
    tmp_path: Path, processes: ProcessGroup, piece_length: int, size: int
) -> None:
    """The smallest pieces (one block each, hundreds of HAVEs) and large ones (256 blocks), with a
    short last piece: libtorrent -> us, then us -> a fresh libtorrent leech."""
    require_libtorrent()
    shared = make_shard_torrent(tmp_path, size, piece_length=piece_length, seed=10)
    seeder = await processes.libtorrent("seed", directory=shared.root, torrent=shared.torrent_path)
    dest = tmp_path / "down"
    async with Session(loopback_config(seed=True)) as session:
        torrent = await session.add(shared.torrent_path, dest, peers=[f"127.0.0.1:{seeder.port}"])
        await complete(torrent, timeout=25, peers=[seeder])
        assert_same_files(shared.metainfo, shared.root, dest)
        await seeder.stop()
        lt_dest = tmp_path / "lt-down"
        lt_dest.mkdir()
        leech = await processes.libtorrent(
            "leech",
            directory=lt_dest,
            torrent=shared.torrent_path,
            peers=[f"127.0.0.1:{session.listen_port}"],
        )
        await leech.wait_event("finished", timeout=25)
    assert_same_files(shared.metainfo, shared.root, lt_dest)


async def test_odd_folder_both_directions(tmp_path: Path, processes: ProcessGroup) -> None:
    """Empty files, nested folders, non-ASCII names and a file smaller than a block, padded."""
    require_libtorrent()
    root = tmp_path / "seed" / "odd-model"
    write_safetensors_shard(root / "weights" / "model.safetensors", 3 * MiB + 7, seed=11)
    (root / "empty.txt").write_bytes(b"")
    (root / "weights" / "empty-too.bin").write_bytes(b"")
    (root / "tokenizer" / "vocabulário.json").parent.mkdir(parents=True)
    (root / "tokenizer" / "vocabulário.json").write_text('{"ok": true}\n', encoding="utf-8")
    (root / "README.md").write_text("tiny\n")
    metainfo = create_torrent(root, piece_length=64 * 1024, pad=True)
    torrent_path = tmp_path / "odd.torrent"
    torrent_path.write_bytes(metainfo.to_bytes())
    seeder = await processes.libtorrent("seed", directory=root.parent, torrent=torrent_path)
    dest = tmp_path / "down"
    async with Session(loopback_config(seed=True)) as session:
        torrent = await session.add(torrent_path, dest, peers=[f"127.0.0.1:{seeder.port}"])
        await complete(torrent, timeout=25, peers=[seeder])
        await seeder.stop()
        lt_dest = tmp_path / "lt-down"
        lt_dest.mkdir()
        leech = await processes.libtorrent(
            "leech", directory=lt_dest, torrent=torrent_path, peers=[f"127.0.0.1:{session.listen_port}"]
        )
        await leech.wait_event("finished", timeout=25)
    for copy_root in (dest, lt_dest):
        for relative in ("empty.txt", "weights/empty-too.bin", "tokenizer/vocabulário.json", "README.md"):
            copy = copy_root / "odd-model" / relative
            assert copy.is_file(), f"{copy} missing"
            assert copy.read_bytes() == (root / relative).read_bytes()
        assert_same_files(metainfo, root.parent, copy_root)


async def test_names_equal_but_for_case_land_where_libtorrent_puts_them(
    tmp_path: Path, processes: ProcessGroup
) -> None:
    """``U`` and ``u`` in one torrent: libtorrent stores the second as ``u.1`` and so do we (metainfo),
    so a folder either client filled serves the other."""
    require_libtorrent()
    contents = {"U": b"upper" * 5000, "u": b"lower" * 7000}
    stream = b"".join(contents.values())
    piece = 16384
    info = {
        b"name": b"cases",
        b"piece length": piece,
        b"files": [{b"length": len(data), b"path": [name.encode()]} for name, data in contents.items()],
        b"pieces": b"".join(
            hashlib.sha1(stream[i : i + piece]).digest() for i in range(0, len(stream), piece)
        ),
    }
    torrent_path = tmp_path / "cases.torrent"
    torrent_path.write_bytes(bencode.encode({b"info": info}))
    seed_dir = tmp_path / "seed"
    (seed_dir / "cases").mkdir(parents=True)
    (seed_dir / "cases" / "U").write_bytes(contents["U"])
    (seed_dir / "cases" / "u.1").write_bytes(contents["u"])  # where libtorrent looks for "u"
    seeder = await processes.libtorrent("seed", directory=seed_dir, torrent=torrent_path)
    dest = tmp_path / "down"
    async with Session(loopback_config()) as session:
        torrent = await session.add(torrent_path, dest, peers=[f"127.0.0.1:{seeder.port}"])
        await complete(torrent, timeout=25, peers=[seeder])
    assert sorted(p.name for p in (dest / "cases").iterdir()) == ["U", "u.1"]
    assert (dest / "cases" / "U").read_bytes() == contents["U"]
    assert (dest / "cases" / "u.1").read_bytes() == contents["u"]


async def test_seeder_churn_mid_download(tmp_path: Path, processes: ProcessGroup) -> None:
    """The only (slow) seeder dies mid-download; a second libtorrent seeder appears and we finish
    from it: requests in flight to the dead peer are not lost."""
    require_libtorrent()
    shared = make_shard_torrent(tmp_path, 10 * MiB + 3, piece_length=256 * 1024, seed=12)
    first = await processes.libtorrent(
        "seed", directory=shared.root, torrent=shared.torrent_path, extra=["--upload-limit", str(2 * MiB)]
    )
    dest = tmp_path / "down"
    async with Session(loopback_config()) as session:
        torrent = await session.add(shared.torrent_path, dest, peers=[f"127.0.0.1:{first.port}"])
        await wait_until(
            lambda: torrent.verified_bytes >= shared.size // 4, timeout=15, what="a quarter of the data"
        )
        await first.stop()
        assert not torrent.is_complete
        second = await processes.libtorrent("seed", directory=shared.root, torrent=shared.torrent_path)
        torrent.add_peers([PeerAddress("127.0.0.1", second.port or 0)], "manual")
        await complete(torrent, timeout=20, peers=[second])
        assert torrent.hash_failures == 0
    assert_same_files(shared.metainfo, shared.root, dest)


async def test_seeder_serves_six_libtorrent_leeches_at_once(tmp_path: Path, processes: ProcessGroup) -> None:
    """Six libtorrent leeches, each given only our address, dial our seeder together: more
    leeches than upload slots (4 + the optimistic one).  Everyone finishes, identical data."""
    require_libtorrent()
    shared = make_shard_torrent(tmp_path, 6 * MiB + 8, seed=13)
    async with Session(loopback_config()) as session:
        torrent = await session.add(shared.torrent_path, shared.root, seed=True)
        await asyncio.wait_for(torrent.wait_complete(), timeout=scaled(10))
        dests = [tmp_path / f"lt-{i}" for i in range(6)]
        leeches = []
        for dest in dests:
            dest.mkdir()
            leeches.append(
                await processes.libtorrent(
                    "leech",
                    directory=dest,
                    torrent=shared.torrent_path,
                    peers=[f"127.0.0.1:{session.listen_port}"],
                    extra=["--exit-after-finish", "30"],
                )
            )
        await asyncio.gather(*(leech.wait_event("finished", timeout=25) for leech in leeches))
    for dest in dests:
        assert_same_files(shared.metainfo, shared.root, dest)


@pytest.mark.parametrize("direction", ["upload", "download"])
async def test_rate_limit_holds_against_libtorrent(
    tmp_path: Path, processes: ProcessGroup, direction: str
) -> None:
    """A session-wide limit of 3 MiB/s: 9 MiB cannot move in much less than 3 s (a token bucket
    may burst at most about one second's worth)."""
    require_libtorrent()
    limit = 3 * MiB
    shared = make_shard_torrent(tmp_path, 9 * MiB + 1, seed=14)
    config = replace(loopback_config(), **{f"{direction}_limit": limit})
    async with Session(config) as session:
        if direction == "upload":
            torrent = await session.add(shared.torrent_path, shared.root, seed=True)
            await asyncio.wait_for(torrent.wait_complete(), timeout=scaled(10))
            dest = tmp_path / "lt-down"
            dest.mkdir()
            started = time.monotonic()
            leech = await processes.libtorrent(
                "leech",
                directory=dest,
                torrent=shared.torrent_path,
                peers=[f"127.0.0.1:{session.listen_port}"],
            )
            await leech.wait_event("finished", timeout=20)
        else:
            seeder = await processes.libtorrent("seed", directory=shared.root, torrent=shared.torrent_path)
            dest = tmp_path / "down"
            started = time.monotonic()
            torrent = await session.add(shared.torrent_path, dest, peers=[f"127.0.0.1:{seeder.port}"])
            await complete(torrent, timeout=20, peers=[seeder])
        elapsed = time.monotonic() - started
    assert elapsed >= shared.size / limit - 1.5, f"{shared.size / MiB:.0f} MiB in {elapsed:.2f} s at 3 MiB/s"
    assert_same_files(shared.metainfo, shared.root, dest)
