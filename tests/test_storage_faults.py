"""Storage faults under a running torrent, and a download that cannot be written (issue 16).

* **EIO** while seeding (a failing disk, injected under one file's reads): the seed takes that file's
  pieces back (BEP 54), finds them unreadable at the re-check, drops them, and serves the rest; the
  leecher never receives a byte that fails its hash and completes from another seed.
* A **file removed** under a seed: the same, noticed on the file watch's timer.
* A download that cannot be written -- a read-only download directory, a path component that is a
  file, a name too long for the file system, a folder where the torrent needs a file -- stops with one
  clear :class:`~torrentgoat.errors.StorageError` *before any network traffic*: no peer is dialled and
  no tracker is asked.  (Names that collide on a case-insensitive file system are renamed when the
  torrent is read, as libtorrent does: ``test_metainfo.py``.)
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import shutil
import subprocess
import types
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

import torrentgoat.aio.peer as peer_driver
import torrentgoat.storage.file as storage_file
from torrentgoat import bencode
from torrentgoat.errors import StorageError, TorrentGoatError
from torrentgoat.metainfo import Metainfo, parse_metainfo
from torrentgoat.primitives import PeerAddress
from torrentgoat.session import Session
from torrentgoat.testing.swarm import (
    MiB,
    Payload,
    assert_same_files,
    describe,
    loopback_config,
    make_model_payload,
    wait_until,
)
from torrentgoat.testing.timing import scaled
from torrentgoat.torrent import DataLost, Torrent, TorrentConfig


async def _complete(torrent: Torrent, timeout: float = 30.0) -> None:
    try:
        await asyncio.wait_for(torrent.wait_complete(), scaled(timeout))
    except TimeoutError:
        raise AssertionError(f"not complete after {timeout} s: {describe(torrent)}") from None


def _copy(payload: Payload, where: Path) -> Path:
    where.mkdir()
    shutil.copytree(payload.root / payload.name, where / payload.name)
    return where / payload.name


@contextlib.contextmanager
def failing_reads(path: Path) -> Iterator[list[int]]:
    """Every read of ``path`` (by inode) fails with EIO, as on a dying disk -- ``preadv`` and
    ``sendfile`` from it, in storage and in the peer driver (which serves blocks with ``sendfile``);
    yields the count."""
    inode = os.stat(path).st_ino
    hits: list[int] = [0]
    real_preadv, real_sendfile = os.preadv, os.sendfile

    def preadv(fd: int, buffers: list[memoryview], offset: int, *flags: int) -> int:
        if os.fstat(fd).st_ino == inode:
            hits[0] += 1
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real_preadv(fd, buffers, offset, *flags)

    def sendfile(out_fd: int, in_fd: int, offset: int | None, count: int) -> int:
        if os.fstat(in_fd).st_ino == inode:
            hits[0] += 1
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real_sendfile(out_fd, in_fd, offset, count)

    patched = types.SimpleNamespace(
        **{name: getattr(os, name) for name in dir(os) if not name.startswith("__")}
    )
    patched.preadv = preadv
    patched.sendfile = sendfile
    saved = storage_file.os, peer_driver.os
    storage_file.os = peer_driver.os = patched  # type: ignore[assignment]
    try:
        yield hits
    finally:
        storage_file.os, peer_driver.os = saved


async def _events(torrent: Torrent, into: list[object]) -> None:
    async for event in torrent.events():
        into.append(event)


@pytest.mark.parametrize("fault", ["eio", "removed"])
async def test_a_seed_losing_a_file_stops_serving_it_and_never_sends_unverified_bytes(
    tmp_path: Path, fault: str
) -> None:
    payload = make_model_payload(tmp_path, shards=2, shard_size=2 * MiB, seed=71)
    info = payload.metainfo.info
    shard = next(i for i, f in enumerate(info.files) if f.path[-1].endswith(".safetensors"))
    copy = _copy(payload, tmp_path / "damaged")
    victim = copy.parent / Path(*info.files[shard].path)
    seed_config = TorrentConfig(seed=True, refetch_lost=False, file_check_interval=0.2)
    async with (
        Session(loopback_config(seed=1, torrent=seed_config)) as damaged,
        Session(loopback_config(seed=2)) as honest,
        Session(loopback_config(seed=3)) as leecher,
    ):
        seeding = await damaged.add(payload.metainfo, copy.parent, seed=True)
        await _complete(seeding)
        await wait_until(
            lambda: bool(seeding.recovery.watch and seeding.recovery.watch.watched), timeout=10, what="watch"
        )
        events: list[object] = []
        recorder = asyncio.create_task(_events(seeding, events))
        with failing_reads(victim) if fault == "eio" else contextlib.nullcontext([0]) as hits:
            if fault == "removed":
                victim.unlink()
            down = await leecher.add(
                payload.metainfo, tmp_path / "down", peers=[f"127.0.0.1:{damaged.listen_port}"]
            )
            await wait_until(
                lambda: any(isinstance(e, DataLost) for e in events), timeout=10, what="DataLost"
            )
            await wait_until(lambda: not seeding.recovery.checking, timeout=10, what="the re-check")
            assert seeding.error is None, seeding.error
            lost = set(range(info.num_pieces)) - set(seeding.have or ())
            assert set(seeding.recovery.watch.pieces_of([shard])) <= lost  # type: ignore[union-attr]
            honest_seed = await honest.add(payload.metainfo, payload.root, seed=True)
            await _complete(honest_seed)
            down.add_peers([PeerAddress("127.0.0.1", honest.listen_port)], "manual")
            await _complete(down)
        recorder.cancel()
        assert down.hash_failures == 0  # not one unverified byte reached the leecher
        assert fault == "removed" or hits[0] > 0
        assert seeding.uploaded > 0  # it kept serving the files it still holds
    assert_same_files(payload.metainfo, payload.root, tmp_path / "down")


# --------------------------------------------------------------------------- before any traffic


class Trap:
    """A peer address and a tracker URL that count whoever comes (nobody should)."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        self._servers: list[asyncio.AbstractServer] = []

    async def __aenter__(self) -> Trap:
        async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.hits.append("peer")
            writer.close()

        async def tracker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.hits.append("tracker")
            writer.close()

        self._servers = [
            await asyncio.start_server(peer, "127.0.0.1", 0),
            await asyncio.start_server(tracker, "127.0.0.1", 0),
        ]
        return self

    @property
    def peer(self) -> str:
        return f"127.0.0.1:{self._servers[0].sockets[0].getsockname()[1]}"

    @property
    def announce(self) -> str:
        return f"http://127.0.0.1:{self._servers[1].sockets[0].getsockname()[1]}/announce"

    async def __aexit__(self, *exc: object) -> None:
        for server in self._servers:
            server.close()


def _torrent(name: str, announce: str, files: list[tuple[list[str], int]] | None = None) -> Metainfo:
    piece = 16384
    if files is None:
        info: dict[bytes, object] = {b"name": name.encode(), b"length": piece}
        total = piece
    else:
        info = {
            b"name": name.encode(),
            b"files": [{b"path": [p.encode() for p in path], b"length": n} for path, n in files],
        }
        total = sum(n for _, n in files)
    info.update({b"piece length": piece, b"pieces": b"\x01" * 20 * -(-total // piece)})
    return parse_metainfo(bencode.encode({b"announce": announce.encode(), b"info": info}))


@contextlib.contextmanager
def read_only_dir(where: Path) -> Iterator[Path]:
    """A read-only tmpfs (CI runs as root, for whom a chmod is no obstacle)."""
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(where)], capture_output=True
    )
    if done.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"cannot mount a tmpfs in CI: {done.stderr!r}")
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr!r}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.mark.parametrize("case", ["read-only", "file-in-path", "name-too-long", "folder-for-file"])
async def test_a_download_that_cannot_be_written_fails_before_any_traffic(tmp_path: Path, case: str) -> None:
    async with Trap() as trap:
        expected = {
            "read-only": "is not writable",
            "file-in-path": "is not a directory",
            "name-too-long": "file name too long",
            "folder-for-file": "is a directory where the torrent needs a file",
        }[case]
        with contextlib.ExitStack() as stack:
            dest = tmp_path / "dest"
            metainfo = _torrent("model", trap.announce, [(["config.json"], 100), (["weights.bin"], 20000)])
            if case == "read-only":
                dest = stack.enter_context(read_only_dir(tmp_path / "ro"))
            elif case == "file-in-path":
                (tmp_path / "blocker").write_text("a file, not a folder")
                dest = tmp_path / "blocker" / "below"
            elif case == "name-too-long":
                metainfo = _torrent("n" * 300, trap.announce)
            else:
                (dest / "model" / "weights.bin").mkdir(parents=True)
            config = replace(loopback_config(seed=4), enable_trackers=True)
            async with Session(config) as session:
                torrent = await session.add(metainfo, dest, peers=[trap.peer])
                with pytest.raises(TorrentGoatError, match=expected):
                    await asyncio.wait_for(torrent.wait_complete(), scaled(10))
                await asyncio.wait_for(torrent.wait_stopped(), scaled(5))
                assert isinstance(torrent.error, StorageError)
                await asyncio.sleep(0.2)  # a dial or an announce would have arrived by now
        assert trap.hits == [], f"network traffic before the storage error: {trap.hits}"
