"""uTP interop with libtorrent 2.1 (TCP disabled on its side, so every byte crosses BEP 29): our
uTP dial carries a BitTorrent handshake and fetches a whole payload from a libtorrent seed, and
libtorrent downloads a torrent from a uTP listener of ours.  Both through unchanged PeerDrivers."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require_libtorrent
from torrentgoat.aio.utp import UTPEndpoint, open_utp_peer_connection
from torrentgoat.primitives import InfoHash, PeerAddress, PeerId
from torrentgoat.testing.peers import PayloadLeecher, PayloadSeeder

pytestmark = pytest.mark.interop

PIECE_LENGTH = 64 * 1024
TIMEOUT = 60


def free_udp_port(host: str = "127.0.0.1") -> int:
    """A port free for UDP and TCP on ``host`` (libtorrent binds both with the same number)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(50):
        with (
            socket.socket(family, socket.SOCK_DGRAM) as udp,
            socket.socket(family, socket.SOCK_STREAM) as tcp,
        ):
            udp.bind((host, 0))
            port: int = udp.getsockname()[1]
            try:
                tcp.bind((host, port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


def utp_only_session(lt: Any, port: int, host: str = "127.0.0.1", *, encrypted: bool = False) -> Any:
    """libtorrent listening on host:port with TCP off and uTP on (INTEROP-NOTES.md); with
    ``encrypted``, MSE with RC4 forced both ways, else encryption off."""
    policy = lt.enc_policy.forced if encrypted else lt.enc_policy.pe_disabled
    return lt.session(
        {
            "listen_interfaces": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
            "max_retry_port_bind": 0,
            "listen_system_port_fallback": False,
            "enable_dht": False,
            "enable_lsd": False,
            "enable_upnp": False,
            "enable_natpmp": False,
            "enable_incoming_tcp": False,
            "enable_outgoing_tcp": False,
            "enable_incoming_utp": True,
            "enable_outgoing_utp": True,
            "in_enc_policy": policy,
            "out_enc_policy": policy,
            "allowed_enc_level": lt.enc_level.rc4 if encrypted else lt.enc_level.both,
            "alert_mask": lt.alert_category.error | lt.alert_category.peer | lt.alert_category.connect,
        }
    )


def make_torrent(lt: Any, directory: Path, payload: bytes) -> tuple[Any, InfoHash, list[bytes]]:
    (directory / "model.bin").write_bytes(payload)
    creator = lt.create_torrent(lt.list_files(str(directory / "model.bin")), PIECE_LENGTH)
    lt.set_piece_hashes(creator, str(directory))
    info = lt.torrent_info(creator.generate())
    info_hash = InfoHash(hashlib.sha1(bytes(info.info_section())).digest())
    hashes = [
        hashlib.sha1(payload[i : i + PIECE_LENGTH]).digest() for i in range(0, len(payload), PIECE_LENGTH)
    ]
    return info, info_hash, hashes


def add(lt: Any, session: Any, info: Any, save_path: Path) -> Any:
    params = lt.add_torrent_params()
    params.ti = info
    params.save_path = str(save_path)
    params.flags &= ~(lt.torrent_flags.paused | lt.torrent_flags.auto_managed)
    return session.add_torrent(params)


def alert_messages(session: Any) -> list[str]:
    return [alert.message() for alert in session.pop_alerts()]


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_our_utp_dial_fetches_everything_from_a_utp_only_libtorrent_seed(tmp_path: Path, host: str) -> None:
    lt = require_libtorrent()
    payload = os.urandom(40 * PIECE_LENGTH + 777)
    info, info_hash, hashes = make_torrent(lt, tmp_path, payload)
    port = free_udp_port(host)
    session = utp_only_session(lt, port, host)
    handle = add(lt, session, info, tmp_path)
    deadline = time.monotonic() + 10
    while not handle.status().is_seeding:
        assert time.monotonic() < deadline, "libtorrent did not finish checking"
        time.sleep(0.05)

    async def fetch() -> tuple[bytes, dict[str, int]]:
        loop = asyncio.get_running_loop()
        async with UTPEndpoint(host=host) as endpoint:
            leecher = PayloadLeecher(info_hash, len(payload), PIECE_LENGTH, verify=hashes)
            engine = leecher.engine(PeerId.generate(random.Random(1)), loop)
            driver = await open_utp_peer_connection(
                PeerAddress(host, port), engine, leecher, endpoint=endpoint
            )
            assert leecher.done is not None
            async with asyncio.timeout(TIMEOUT):
                got = await leecher.done
            conn = endpoint.manager.connection(driver.transport.key)  # type: ignore[union-attr]
            stats = {"packet_size": conn.packet_size, "ceiling": conn.mtu_ceiling}
            driver.close("done")
            return got, stats

    try:
        got, stats = asyncio.run(fetch())
        messages = alert_messages(session)
    finally:
        session.remove_torrent(handle)
        del session
    assert got == payload
    assert any("incoming connection" in m and "uTP" in m for m in messages), messages
    # libtorrent did not announce large datagrams: we stay at or below an Ethernet payload
    ethernet = 1452 if ":" in host else 1472  # 1500 minus IP and UDP headers
    assert stats["ceiling"] == ethernet and stats["packet_size"] <= ethernet


def test_libtorrent_downloads_from_our_utp_listener(tmp_path: Path) -> None:
    lt = require_libtorrent()
    payload = os.urandom(64 * PIECE_LENGTH + 12345)
    seed_dir, leech_dir = tmp_path / "seed", tmp_path / "leech"
    seed_dir.mkdir()
    leech_dir.mkdir()
    info, info_hash, _ = make_torrent(lt, seed_dir, payload)
    session = utp_only_session(lt, free_udp_port())

    async def serve(session: Any) -> tuple[int, list[str], dict[str, int]]:
        loop = asyncio.get_running_loop()
        seeder = PayloadSeeder(info_hash, payload, PIECE_LENGTH)
        rng = random.Random(2)
        async with UTPEndpoint(host="127.0.0.1") as endpoint:
            endpoint.serve(lambda: seeder.driver(PeerId.generate(rng), loop))
            handle = add(lt, session, info, leech_dir)
            handle.connect_peer(endpoint.address)
            try:
                async with asyncio.timeout(TIMEOUT):
                    while not handle.status().is_seeding:
                        await asyncio.sleep(0.05)
                handle.pause()  # libtorrent flushes its store buffer to the file (INTEROP-NOTES)
                async with asyncio.timeout(TIMEOUT):
                    while not handle.status().paused:
                        await asyncio.sleep(0.05)
                    await asyncio.sleep(0.2)
            finally:
                session.remove_torrent(handle)
            return seeder.blocks_served, alert_messages(session), endpoint.manager.stats.as_dict()

    try:
        served, messages, stats = asyncio.run(serve(session))
    finally:
        del session
    assert (leech_dir / "model.bin").read_bytes() == payload
    assert served >= len(payload) // 16384
    assert stats["accepted"] >= 1 and stats["invalid"] == 0
    assert any("uTP" in m for m in messages), messages


def test_libtorrent_reaches_our_dht_and_our_utp_on_one_port(tmp_path: Path) -> None:
    """One UDP port, told apart by the first byte: libtorrent's DHT bootstraps from our node and its
    uTP connection downloads from us, both at ``endpoint.address``."""
    lt = require_libtorrent()
    from torrentgoat.aio.dht import DHTNode
    from torrentgoat.dht import DHTConfig

    payload = os.urandom(16 * PIECE_LENGTH + 99)
    seed_dir, leech_dir = tmp_path / "seed", tmp_path / "leech"
    seed_dir.mkdir()
    leech_dir.mkdir()
    info, info_hash, _ = make_torrent(lt, seed_dir, payload)

    async def run() -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        seeder = PayloadSeeder(info_hash, payload, PIECE_LENGTH)
        rng = random.Random(3)
        async with UTPEndpoint(host="127.0.0.1") as endpoint:
            endpoint.serve(lambda: seeder.driver(PeerId.generate(rng), loop))
            dht = DHTNode(
                host="127.0.0.1",
                config=DHTConfig(query_timeout=1.0),
                datagram_transport=endpoint.dht_transport,
            )
            await dht.start()
            host, port = endpoint.address
            lt_port = free_udp_port()
            session = lt.session(
                {
                    "listen_interfaces": f"127.0.0.1:{lt_port}",
                    "max_retry_port_bind": 0,
                    "listen_system_port_fallback": False,
                    "enable_dht": True,
                    "enable_lsd": False,
                    "enable_upnp": False,
                    "enable_natpmp": False,
                    "enable_incoming_tcp": False,
                    "enable_outgoing_tcp": False,
                    "in_enc_policy": lt.enc_policy.pe_disabled,
                    "out_enc_policy": lt.enc_policy.pe_disabled,
                    "dht_restrict_routing_ips": False,
                    "dht_restrict_search_ips": False,
                    "dht_enforce_node_id": False,
                    "dht_prefer_verified_node_ids": False,
                    "dht_ignore_dark_internet": False,
                    "dht_block_ratelimit": 1000000,
                    "dht_block_timeout": 1,
                    "dht_bootstrap_nodes": f"{host}:{port}",
                }
            )
            session.add_dht_node((host, port))
            try:
                async with asyncio.timeout(TIMEOUT):
                    while dht.routing_table_size == 0:  # libtorrent's node queried ours
                        await asyncio.sleep(0.05)
                    node_id = await dht.ping(PeerAddress("127.0.0.1", lt_port))
                    assert node_id is not None
                handle = add(lt, session, info, leech_dir)
                handle.connect_peer(endpoint.address)
                async with asyncio.timeout(TIMEOUT):
                    while not handle.status().is_seeding:
                        await asyncio.sleep(0.05)
                session.remove_torrent(handle)
            finally:
                await dht.close()
                del session
            return dht.routing_table_size, seeder.blocks_served

    table, served = asyncio.run(run())
    assert table >= 1 and served >= len(payload) // 16384


def test_mse_over_utp_with_libtorrent_forcing_encryption_both_ways(tmp_path: Path) -> None:
    """libtorrent with TCP off and RC4 forced: we fetch from its seed over MSE-over-uTP, and it
    downloads from our uTP listener through EncryptedListener (aio/mse.py, unchanged)."""
    lt = require_libtorrent()
    from torrentgoat.aio.mse import EncryptedListener, open_encrypted_connection
    from torrentgoat.aio.utp import utp_connector
    from torrentgoat.mse import CryptoMethod, EncryptionPolicy, MSEConfig, StreamKeys

    payload = os.urandom(24 * PIECE_LENGTH + 4321)
    seed_dir, leech_dir = tmp_path / "seed", tmp_path / "leech"
    seed_dir.mkdir()
    leech_dir.mkdir()
    info, info_hash, hashes = make_torrent(lt, seed_dir, payload)
    strict = MSEConfig(policy=EncryptionPolicy.REQUIRE)
    port = free_udp_port()
    seed_session = utp_only_session(lt, port, encrypted=True)
    seed_handle = add(lt, seed_session, info, seed_dir)
    leech_session = utp_only_session(lt, free_udp_port(), encrypted=True)

    async def run(leech_session: Any) -> tuple[bytes, Any, dict[str, int]]:
        loop = asyncio.get_running_loop()
        rng = random.Random(5)
        async with asyncio.timeout(TIMEOUT):
            while not seed_handle.status().is_seeding:
                await asyncio.sleep(0.05)
        async with UTPEndpoint(host="127.0.0.1") as endpoint:
            # 1. we download from libtorrent's seed
            leecher = PayloadLeecher(info_hash, len(payload), PIECE_LENGTH, verify=hashes)
            driver = await open_encrypted_connection(
                PeerAddress("127.0.0.1", port),
                leecher.engine(PeerId.generate(rng), loop),
                leecher,
                config=strict,
                connect=utp_connector(endpoint, "127.0.0.1", port),
            )
            assert leecher.done is not None
            async with asyncio.timeout(TIMEOUT):
                got = await leecher.done
            assert driver.transport is not None
            mse = driver.transport.get_extra_info("mse")
            driver.close("done")
            # 2. libtorrent downloads from us
            seeder = PayloadSeeder(info_hash, payload, PIECE_LENGTH)
            listener = EncryptedListener(
                lambda: seeder.driver(PeerId.generate(rng), loop),
                info_hash_for_req2=StreamKeys([info_hash]),
                config=strict,
            )
            endpoint.serve(listener)
            handle = add(lt, leech_session, info, leech_dir)
            handle.connect_peer(endpoint.address)
            try:
                async with asyncio.timeout(TIMEOUT):
                    while not handle.status().is_seeding:
                        await asyncio.sleep(0.05)
                    handle.pause()
                    while not handle.status().paused:
                        await asyncio.sleep(0.05)
                    await asyncio.sleep(0.2)
            finally:
                leech_session.remove_torrent(handle)
            return got, mse, listener.counts

    try:
        got, mse, counts = asyncio.run(run(leech_session))
    finally:
        seed_session.remove_torrent(seed_handle)
        del seed_session, leech_session
    assert got == payload
    assert mse is not None and mse.method is CryptoMethod.RC4
    assert counts["encrypted"] >= 1 and counts["plain"] == 0
    assert (leech_dir / "model.bin").read_bytes() == payload
