"""Interop: our MSE engine and asyncio glue against libtorrent 2.1 (in process, like
``test_wire_interop``, so the test can set its encryption settings and read its peer flags) and
aria2c with ``--bt-require-crypto=true``.  No session: unchanged PeerDrivers and PeerConnections,
driven by the small handlers of ``tests/mse_helpers.py``.

libtorrent runs with ``out_enc_policy = in_enc_policy = forced`` and ``allowed_enc_level = rc4``
(it then refuses plain BitTorrent and MSE-plaintext both ways), or with MSE allowed and plaintext
preferred, to see the other ``crypto_select``.  Its own peer list says which the connection was
(``peer_info.rc4_encrypted`` / ``plaintext_encrypted``).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.conftest import require_binary, require_libtorrent
from tests.interop_helpers import ProcessGroup, free_port, processes
from tests.mse_helpers import LeechHandler, Payload, SeedHandler
from torrentgoat.aio.mse import EncryptedListener, MSEInfo, open_encrypted_connection
from torrentgoat.bencode import decode, encode
from torrentgoat.mse import CryptoMethod, EncryptionPolicy, MSEConfig, StreamKeys
from torrentgoat.primitives import PeerAddress, PeerId
from torrentgoat.testing.tracker import LoopbackTracker

pytestmark = pytest.mark.interop

__all__ = ["processes"]  # the fixture, imported for pytest

TIMEOUT = 60.0
PAYLOAD = Payload.make(3 * 1024 * 1024 + 4321, piece_length=256 * 1024, seed=31)
SECOND = Payload.make(1024 * 1024 + 5, piece_length=64 * 1024, seed=32, name="second.safetensors")


def torrent_file(payload: Payload, announce: str | None = None) -> bytes:
    meta: dict[bytes, Any] = {b"info": decode(payload.raw_info)}
    if announce:
        meta[b"announce"] = announce.encode()
    data = encode(meta)
    assert payload.raw_info in data  # canonical bencoding: the info bytes survive the round trip
    return data


def lt_session(lt: Any, port: int, *, forced: bool = True, prefer_rc4: bool = True) -> Any:
    return lt.session(
        {
            "listen_interfaces": f"127.0.0.1:{port}",
            "max_retry_port_bind": 0,
            "listen_system_port_fallback": False,
            "enable_dht": False,
            "enable_lsd": False,
            "enable_upnp": False,
            "enable_natpmp": False,
            "enable_outgoing_utp": False,
            "enable_incoming_utp": False,
            "allow_multiple_connections_per_ip": True,
            "out_enc_policy": lt.enc_policy.forced if forced else lt.enc_policy.enabled,
            "in_enc_policy": lt.enc_policy.forced if forced else lt.enc_policy.enabled,
            "allowed_enc_level": lt.enc_level.rc4 if forced else lt.enc_level.both,
            "prefer_rc4": prefer_rc4,
            "alert_mask": lt.alert_category.status | lt.alert_category.error,
        }
    )


def add_torrent(lt: Any, session: Any, payload: Payload, directory: Path, *, seed: bool) -> Any:
    directory.mkdir(parents=True, exist_ok=True)
    if seed:
        (directory / payload.name).write_bytes(payload.data)
    params = lt.add_torrent_params()
    params.ti = lt.torrent_info(lt.bdecode(torrent_file(payload)))
    params.save_path = str(directory)
    params.flags &= ~(lt.torrent_flags.paused | lt.torrent_flags.auto_managed)
    return session.add_torrent(params)


async def until(predicate: Any, what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def lt_peer_flags(lt: Any, handle: Any) -> list[str]:
    """How libtorrent's established connections are encrypted; one still connecting or in its
    (MSE or BitTorrent) handshake shows no encryption flag yet and is left out."""
    kinds = []
    unsettled = lt.peer_info.connecting | lt.peer_info.handshake | lt.peer_info.queued
    for peer in handle.get_peer_info():
        if peer.flags & unsettled:
            continue
        if peer.flags & lt.peer_info.rc4_encrypted:
            kinds.append("rc4")
        elif peer.flags & lt.peer_info.plaintext_encrypted:
            kinds.append("mse-plaintext")
        else:
            kinds.append("plain")
    return kinds


@pytest.fixture
def lt_seed(tmp_path: Path) -> Iterator[Any]:
    """Factory: a libtorrent seed of PAYLOAD with the given encryption settings."""
    lt = require_libtorrent()
    made: list[Any] = []

    def start(*, forced: bool = True, prefer_rc4: bool = True) -> tuple[Any, Any, int]:
        port = free_port()
        session = lt_session(lt, port, forced=forced, prefer_rc4=prefer_rc4)
        handle = add_torrent(lt, session, PAYLOAD, tmp_path / f"lt-seed-{len(made)}", seed=True)
        made.append(session)
        deadline = time.monotonic() + 20
        while not handle.status().is_seeding:
            assert time.monotonic() < deadline, "libtorrent seed did not finish checking"
            time.sleep(0.05)
        return session, handle, port

    yield start
    for session in made:
        session.pause()
    made.clear()


async def fetch_from(port: int, config: MSEConfig) -> tuple[LeechHandler, Any]:
    leech = LeechHandler(PAYLOAD.info_hash)  # no geometry: the metadata comes over BEP 9 first
    driver = await open_encrypted_connection(
        PeerAddress("127.0.0.1", port), leech.new_engine(), leech, config=config, timeout=TIMEOUT
    )
    got = await asyncio.wait_for(leech.done, TIMEOUT)
    assert leech.metadata == PAYLOAD.raw_info
    assert b"".join(bytes(got[i]) for i in sorted(got)) == PAYLOAD.data
    return leech, driver


# ----------------------------------------------------------------------------- we dial libtorrent


@pytest.mark.parametrize("policy", [EncryptionPolicy.REQUIRE, EncryptionPolicy.PREFER])
async def test_encrypted_dial_to_a_forced_rc4_libtorrent_seed(lt_seed: Any, policy: EncryptionPolicy) -> None:
    """libtorrent refuses anything but MSE with RC4; we complete the BitTorrent handshake inside it,
    fetch the metadata (BEP 9) and every block."""
    lt = require_libtorrent()
    _, handle, port = lt_seed(forced=True)
    _, driver = await fetch_from(port, MSEConfig(policy=policy))
    info = driver.transport.get_extra_info("mse")
    assert isinstance(info, MSEInfo) and info.method is CryptoMethod.RC4
    assert lt_peer_flags(lt, handle) == ["rc4"]
    assert driver.engine.peer_handshake is not None and driver.engine.peer_handshake.supports_extensions
    driver.close("done")


async def test_libtorrent_selects_plaintext_payload_when_it_prefers_it(lt_seed: Any) -> None:
    """libtorrent's default (MSE allowed, prefer_rc4 off) answers our offer of both with plaintext:
    obfuscated handshake, plain payload -- the other crypto_select."""
    lt = require_libtorrent()
    _, handle, port = lt_seed(forced=False, prefer_rc4=False)
    _, driver = await fetch_from(port, MSEConfig(policy=EncryptionPolicy.PREFER))
    assert driver.transport.get_extra_info("mse").method is CryptoMethod.PLAINTEXT
    assert lt_peer_flags(lt, handle) == ["mse-plaintext"]
    driver.close("done")


async def test_plain_dial_is_refused_by_a_forced_libtorrent(lt_seed: Any) -> None:
    _, _, port = lt_seed(forced=True)
    leech = LeechHandler(PAYLOAD.info_hash)
    await open_encrypted_connection(
        PeerAddress("127.0.0.1", port),
        leech.new_engine(),
        leech,
        config=MSEConfig(policy=EncryptionPolicy.DISABLE),
        timeout=TIMEOUT,
    )
    with pytest.raises(ConnectionError):
        await asyncio.wait_for(leech.done, TIMEOUT)


# ----------------------------------------------------------------------------- libtorrent dials us


@pytest_asyncio.fixture
async def our_listener() -> AsyncIterator[Any]:
    """Factory: our EncryptedListener serving PAYLOAD and SECOND from memory."""
    made: list[tuple[EncryptedListener, SeedHandler, asyncio.Server]] = []

    async def start(config: MSEConfig) -> tuple[EncryptedListener, SeedHandler, int]:
        seed = SeedHandler(PAYLOAD, SECOND)
        listener = EncryptedListener(
            seed.new_driver,
            info_hash_for_req2=StreamKeys([PAYLOAD.info_hash, SECOND.info_hash]),
            config=config,
        )
        server = await asyncio.get_running_loop().create_server(listener, "127.0.0.1", 0)
        made.append((listener, seed, server))
        return listener, seed, server.sockets[0].getsockname()[1]

    yield start
    for listener, seed, server in made:
        listener.close()
        for driver in seed.drivers:
            driver.close("test over")
        server.close()
        await server.wait_closed()


async def lt_flush(lt: Any, session: Any, handle: Any) -> None:
    """INTEROP-NOTES: make libtorrent write its store buffer before the file is compared."""
    handle.pause()
    deadline = time.monotonic() + 20
    while True:
        if any(isinstance(a, lt.torrent_paused_alert) for a in session.pop_alerts()):
            return
        assert time.monotonic() < deadline, "libtorrent did not pause"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("payload", [PAYLOAD, SECOND], ids=["first-torrent", "second-torrent"])
async def test_forced_libtorrent_downloads_from_our_listener(
    tmp_path: Path, our_listener: Any, payload: Payload
) -> None:
    """libtorrent (RC4 forced) dials our listener, which serves two torrents and finds the one the
    stream key names; the whole payload reaches libtorrent over RC4."""
    lt = require_libtorrent()
    listener, seed, port = await our_listener(MSEConfig(policy=EncryptionPolicy.REQUIRE))
    session = lt_session(lt, free_port(), forced=True)
    try:
        handle = add_torrent(lt, session, payload, tmp_path / "lt-leech", seed=False)
        handle.connect_peer(("127.0.0.1", port))
        seen: set[str] = set()

        def finished() -> bool:
            seen.update(lt_peer_flags(lt, handle))  # a finished leech drops its seed: look while it runs
            return bool(handle.status().is_seeding)

        await until(finished, "libtorrent to finish downloading")
        assert seen <= {"rc4"}  # a small download may finish between two looks
        await lt_flush(lt, session, handle)
        assert (tmp_path / "lt-leech" / payload.name).read_bytes() == payload.data
    finally:
        session.pause()
    assert listener.counts["encrypted"] >= 1 and listener.counts["plain"] == 0
    incoming = seed.drivers[0]
    assert incoming.transport is not None
    info = incoming.transport.get_extra_info("mse")
    assert info.info_hash == payload.info_hash and info.method is CryptoMethod.RC4 and not info.outgoing
    assert seed.served >= len(payload.data)


async def test_require_listener_refuses_a_plain_libtorrent(tmp_path: Path, our_listener: Any) -> None:
    lt = require_libtorrent()
    listener, seed, port = await our_listener(MSEConfig(policy=EncryptionPolicy.REQUIRE))
    session = lt.session(
        {
            "listen_interfaces": f"127.0.0.1:{free_port()}",
            "enable_dht": False,
            "enable_lsd": False,
            "enable_upnp": False,
            "enable_natpmp": False,
            "enable_outgoing_utp": False,
            "enable_incoming_utp": False,
            "out_enc_policy": lt.enc_policy.disabled,
            "in_enc_policy": lt.enc_policy.disabled,
        }
    )
    try:
        handle = add_torrent(lt, session, PAYLOAD, tmp_path / "lt-plain", seed=False)
        handle.connect_peer(("127.0.0.1", port))
        await until(lambda: listener.counts["failed"] >= 1, "our listener to refuse libtorrent")
    finally:
        session.pause()
    assert listener.failures[0] == "plain BitTorrent handshake refused (encryption required)"
    assert seed.drivers == []


# ----------------------------------------------------------------------------- aria2c


async def test_aria2_with_required_crypto_downloads_from_our_listener(
    tmp_path: Path, processes: ProcessGroup, our_listener: Any
) -> None:
    """aria2 finds peers only through a tracker: the loopback tracker lists our listener as a seed."""
    binary = require_binary("aria2c")
    listener, seed, port = await our_listener(MSEConfig(policy=EncryptionPolicy.REQUIRE))
    async with LoopbackTracker(interval=60, min_interval=1) as tracker:
        tracker.add_peer(
            PAYLOAD.info_hash, PeerAddress("127.0.0.1", port), peer_id=PeerId.generate(random.Random(1))
        )
        torrent = tmp_path / "payload.torrent"
        torrent.write_bytes(torrent_file(PAYLOAD, tracker.http_url))
        dest = tmp_path / "aria2-down"
        dest.mkdir()
        leech = await processes.aria2(
            "leech",
            torrent=torrent,
            directory=dest,
            binary=binary,
            extra=["--bt-require-crypto=true", "--bt-min-crypto-level=arc4"],
        )
        code = await leech.wait_exit(timeout=TIMEOUT)
        assert code == 0, f"aria2c exited {code}\n{leech.tail()}"
    assert (dest / "model.bin").read_bytes() == PAYLOAD.data
    assert listener.counts["encrypted"] >= 1 and listener.counts["plain"] == 0
    methods = {d.transport.get_extra_info("mse").method for d in seed.drivers if d.transport is not None}
    assert methods == {CryptoMethod.RC4}


async def test_we_download_from_an_aria2_seed_with_required_crypto(
    tmp_path: Path, processes: ProcessGroup
) -> None:
    binary = require_binary("aria2c")
    root = tmp_path / "seed"
    root.mkdir()
    (root / "model.bin").write_bytes(PAYLOAD.data)
    async with LoopbackTracker(interval=60, min_interval=1) as tracker:
        torrent = tmp_path / "payload.torrent"
        torrent.write_bytes(torrent_file(PAYLOAD, tracker.http_url))
        aria2 = await processes.aria2(
            "seed",
            torrent=torrent,
            directory=root,
            binary=binary,
            extra=["--bt-require-crypto=true", "--bt-min-crypto-level=arc4"],
        )
        # aria2 checks its data, then announces as a seed: then it listens
        announce = await tracker.wait_for(
            lambda a: a.request.info_hash == PAYLOAD.info_hash and a.request.left == 0, timeout=TIMEOUT
        )
        assert announce.request.port == aria2.port
        _, driver = await fetch_from(aria2.port, MSEConfig(policy=EncryptionPolicy.REQUIRE))
        assert driver.transport.get_extra_info("mse").method is CryptoMethod.RC4
        driver.close("done")
