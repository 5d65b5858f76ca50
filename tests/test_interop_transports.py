"""Interop of the session's transports (issue 13): encrypted connections (MSE/PE with RC4) and uTP
(BEP 29), both directions, with libtorrent and aria2, through the real ``Session`` -- the listener
that sniffs plain from encrypted handshakes for every torrent, and dials that pick TCP or uTP and
MSE or plain by policy.  Plus hostile input on the same port while a real peer downloads."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
from dataclasses import replace
from pathlib import Path

import pytest

from tests.conftest import require_binary
from tests.interop_helpers import (
    MiB,
    ProcessGroup,
    assert_same_files,
    complete,
    loopback_config,
    make_model_torrent,
    make_shard_torrent,
    processes,
    wait_scrape,
    wait_until,
)
from tests.test_interop_aria2 import tracker_for
from torrentgoat.mse import EncryptionPolicy, MSEConfig
from torrentgoat.session import Session, SessionConfig
from torrentgoat.torrent import Torrent

pytestmark = pytest.mark.interop

__all__ = ["processes"]  # the fixture, imported for pytest


def config(
    *, policy: EncryptionPolicy = EncryptionPolicy.PREFER, utp: bool = True, **kw: object
) -> SessionConfig:
    return replace(
        loopback_config(),
        encryption=MSEConfig(policy=policy, prefer_rc4=False),
        enable_utp=utp,
        **kw,  # type: ignore[arg-type]
    )


def kinds(torrent: Torrent) -> set[tuple[str, str]]:
    """(transport, encryption) of the torrent's live connections."""
    return {(wp.transport, wp.encryption) for wp in torrent.peers.values() if not wp.driver.closed}


async def seen(torrent: Torrent, kind: tuple[str, str]) -> None:
    await wait_until(lambda: kind in kinds(torrent), timeout=20, what=f"a {kind} connection")


# ---------------------------------------------------------------- MSE with libtorrent (RC4 forced)


@pytest.mark.parametrize("policy", [EncryptionPolicy.PREFER, EncryptionPolicy.REQUIRE])
async def test_torrentgoat_downloads_from_libtorrent_forcing_rc4(
    tmp_path: Path, processes: ProcessGroup, policy: EncryptionPolicy
) -> None:
    shared = make_shard_torrent(tmp_path, 8 * MiB + 17, seed=131)
    seeder = await processes.libtorrent(
        "seed", directory=shared.root, torrent=shared.torrent_path, extra=["--force-encryption"]
    )
    dest = tmp_path / "down"
    async with Session(config(policy=policy)) as session:
        torrent = await session.add(shared.torrent_path, dest, peers=[f"127.0.0.1:{seeder.port}"])
        await seen(torrent, ("tcp", "rc4"))
        await complete(torrent, timeout=60, peers=[seeder])
    assert_same_files(shared.metainfo, shared.root, dest)


async def test_libtorrent_forcing_rc4_downloads_the_second_of_two_torrents(
    tmp_path: Path, processes: ProcessGroup
) -> None:
    """An incoming encrypted handshake names its torrent only through HASH('req2', SKEY): the
    session's one listener answers for every torrent it holds."""
    first = make_shard_torrent(tmp_path / "one", 2 * MiB + 5, seed=132)
    second = make_model_torrent(tmp_path / "two", shards=1, shard_size=6 * MiB + 7, seed=133)
    async with Session(config()) as session:
        for shared in (first, second):
            torrent = await session.add(shared.torrent_path, shared.root, seed=True)
            await asyncio.wait_for(torrent.wait_complete(), 30)
        dest = tmp_path / "lt-down"
        dest.mkdir()
        leech = await processes.libtorrent(
            "leech",
            directory=dest,
            torrent=second.torrent_path,
            peers=[f"127.0.0.1:{session.listen_port}"],
            extra=["--force-encryption"],
        )
        await leech.wait_event("finished", timeout=60)
        seeding = session.torrents[second.metainfo.info_hash.raw]
        assert ("tcp", "rc4") in kinds(seeding) or seeding.uploaded >= second.size
    assert_same_files(second.metainfo, second.root, dest)


async def test_a_require_session_refuses_plain_libtorrent(tmp_path: Path, processes: ProcessGroup) -> None:
    shared = make_shard_torrent(tmp_path, 1 * MiB + 3, seed=134)
    async with Session(config(policy=EncryptionPolicy.REQUIRE)) as session:
        torrent = await session.add(shared.torrent_path, shared.root, seed=True)
        await asyncio.wait_for(torrent.wait_complete(), 30)
        dest = tmp_path / "lt-down"
        dest.mkdir()
        leech = await processes.libtorrent(
            "leech",
            directory=dest,
            torrent=shared.torrent_path,
            peers=[f"127.0.0.1:{session.listen_port}"],
            extra=["--no-encryption"],
        )
        with pytest.raises(AssertionError):
            await leech.wait_event("finished", timeout=8)
        assert torrent.uploaded == 0


# ---------------------------------------------------------------- MSE with aria2 (--bt-require-crypto)


async def test_aria2_requiring_crypto_both_ways(tmp_path: Path, processes: ProcessGroup) -> None:
    binary = require_binary("aria2c")
    crypto = ["--bt-require-crypto=true", "--bt-min-crypto-level=arc4"]
    shared = make_model_torrent(tmp_path, shards=1, shard_size=5 * MiB + 11, seed=135)
    async with tracker_for("loopback", shared) as url:
        # aria2 leeches from our seed
        dest = tmp_path / "aria2-down"
        dest.mkdir()
        async with Session(config(policy=EncryptionPolicy.REQUIRE)) as session:
            torrent = await session.add(shared.torrent_path, shared.root, seed=True)
            await asyncio.wait_for(torrent.wait_complete(), 30)
            await wait_scrape(url, shared.metainfo.info_hash, complete=1)
            leech = await processes.aria2(
                "leech", torrent=shared.torrent_path, directory=dest, binary=binary, extra=crypto
            )
            code = await leech.wait_exit(timeout=60)
            assert code == 0, f"aria2c exited {code}\n{leech.tail()}"
        assert_same_files(shared.metainfo, shared.root, dest)
        # we leech from aria2 seeding what it just downloaded
        seeder = await processes.aria2(
            "seed", torrent=shared.torrent_path, directory=dest, binary=binary, extra=crypto
        )
        await wait_scrape(url, shared.metainfo.info_hash, complete=1, timeout=30)
        ours = tmp_path / "ours"
        async with Session(config(policy=EncryptionPolicy.REQUIRE)) as session:
            torrent = await session.add(shared.torrent_path, ours)
            await complete(torrent, timeout=60, peers=[seeder])
        assert_same_files(shared.metainfo, shared.root, ours)


# ---------------------------------------------------------------- uTP with libtorrent (TCP off)


async def test_torrentgoat_downloads_from_a_utp_only_libtorrent(
    tmp_path: Path, processes: ProcessGroup
) -> None:
    """Our dial tries TCP first on loopback; libtorrent listens on uTP only, so the dial falls back
    to uTP (and remembers it)."""
    shared = make_shard_torrent(tmp_path, 8 * MiB + 19, seed=136)
    seeder = await processes.libtorrent(
        "seed", directory=shared.root, torrent=shared.torrent_path, extra=["--utp-only"]
    )
    dest = tmp_path / "down"
    async with Session(config()) as session:
        torrent = await session.add(shared.torrent_path, dest, peers=[f"127.0.0.1:{seeder.port}"])
        await wait_until(lambda: any(k[0] == "utp" for k in kinds(torrent)), timeout=30, what="a uTP peer")
        await complete(torrent, timeout=90, peers=[seeder])
    assert_same_files(shared.metainfo, shared.root, dest)


async def test_utp_only_libtorrent_downloads_from_torrentgoat(
    tmp_path: Path, processes: ProcessGroup
) -> None:
    shared = make_model_torrent(tmp_path, shards=1, shard_size=6 * MiB + 23, seed=137)
    async with Session(config()) as session:
        torrent = await session.add(shared.torrent_path, shared.root, seed=True)
        await asyncio.wait_for(torrent.wait_complete(), 30)
        dest = tmp_path / "lt-down"
        dest.mkdir()
        leech = await processes.libtorrent(
            "leech",
            directory=dest,
            torrent=shared.torrent_path,
            peers=[f"127.0.0.1:{session.listen_port}"],
            extra=["--utp-only"],
        )
        await leech.wait_event("finished", timeout=90)
        assert any(k[0] == "utp" for k in kinds(torrent)) or torrent.uploaded >= shared.size
    assert_same_files(shared.metainfo, shared.root, dest)


async def test_a_swarm_mixing_utp_and_tcp(tmp_path: Path) -> None:
    """One seed, a leecher dialling over uTP and one over TCP, all torrentgoat: every byte verified."""
    shared = make_shard_torrent(tmp_path, 12 * MiB + 29, seed=138)
    async with (
        Session(config()) as seed_session,
        Session(config(utp_first=True)) as over_utp,
        Session(config(utp=False)) as over_tcp,
    ):
        seeding = await seed_session.add(shared.torrent_path, shared.root, seed=True)
        await asyncio.wait_for(seeding.wait_complete(), 30)
        peer = [f"127.0.0.1:{seed_session.listen_port}"]
        a = await over_utp.add(shared.torrent_path, tmp_path / "a", peers=peer)
        b = await over_tcp.add(shared.torrent_path, tmp_path / "b", peers=peer)
        await wait_until(
            lambda: {k[0] for k in kinds(seeding)} == {"utp", "tcp"}, timeout=30, what="one uTP, one TCP peer"
        )
        await asyncio.gather(complete(a, timeout=90), complete(b, timeout=90))
    for dest in (tmp_path / "a", tmp_path / "b"):
        assert_same_files(shared.metainfo, shared.root, dest)


# ---------------------------------------------------------------- hostile input on the same port


async def test_garbage_handshakes_and_a_utp_flood_do_not_stop_a_real_download(tmp_path: Path) -> None:
    shared = make_shard_torrent(tmp_path, 16 * MiB + 31, seed=139)
    seed_config = replace(config(), encryption=MSEConfig(handshake_timeout=2.0, prefer_rc4=False))
    async with Session(seed_config) as seed_session, Session(config(utp_first=True)) as leech_session:
        seeding = await seed_session.add(shared.torrent_path, shared.root, seed=True)
        await asyncio.wait_for(seeding.wait_complete(), 30)
        port = seed_session.listen_port
        leeching = await leech_session.add(
            shared.torrent_path, tmp_path / "down", peers=[f"127.0.0.1:{port}"]
        )
        stop = asyncio.Event()

        async def garbage_tcp() -> None:
            while not stop.is_set():
                try:
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                except OSError:
                    await asyncio.sleep(0.05)
                    continue
                writer.write(os.urandom(700))  # no MSE sync pattern within 628 bytes
                await writer.drain()
                await asyncio.sleep(0.02)
                writer.write(b"\x00" * 4096)  # then endless padding
                with_timeout = asyncio.wait_for(reader.read(1), 5)
                try:
                    await with_timeout
                except (TimeoutError, OSError):
                    pass
                writer.close()

        async def utp_flood() -> None:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.setblocking(False)
                sent = 0
                while not stop.is_set() and sent < 20000:
                    for _ in range(200):
                        kind = os.urandom(1)[0] % 5
                        header = struct.pack(
                            ">BBHIIIHH", (kind << 4) | 1, 0, int.from_bytes(os.urandom(2)), 0, 0, 0, 0, 0
                        )
                        try:
                            sock.sendto(header + os.urandom(32), ("127.0.0.1", port))
                        except BlockingIOError:
                            break
                        sent += 1
                    await asyncio.sleep(0.01)

        tasks = [asyncio.create_task(garbage_tcp()) for _ in range(4)] + [asyncio.create_task(utp_flood())]
        try:
            await complete(leeching, timeout=120)
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
        assert leeching.hash_failures == 0
    assert_same_files(shared.metainfo, shared.root, tmp_path / "down")
