"""torrentgoat's DHT against libtorrent's on loopback (BEP 5 peers, BEP 44 items both ways).

libtorrent settings follow shared/INTEROP-NOTES.md: explicit 127.0.0.1 listen address, loopback
restrictions off, rate-limit blocking effectively off, bootstrap nodes = our node, and add_dht_node
(libtorrent never keeps a bootstrap "router" in its table).
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require_libtorrent
from torrentgoat.aio.dht import DHTNode
from torrentgoat.dht import DHTConfig, SigningKey, info_hash_value, parse_info_hash_value
from torrentgoat.dht.items import immutable_target
from torrentgoat.primitives import InfoHash
from torrentgoat.testing.timing import scaled

pytestmark = [pytest.mark.interop, pytest.mark.filterwarnings("ignore::DeprecationWarning")]


def _free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (libtorrent uses the same number for both)."""
    for _ in range(50):
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1", 0))
        port: int = udp.getsockname()[1]
        tcp = socket.socket()
        try:
            tcp.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            tcp.close()
            udp.close()
    raise RuntimeError("no free port")


def _lt_session(lt: Any, port: int, bootstrap: str, listen: str | None = None) -> Any:
    return lt.session(
        {
            "listen_interfaces": listen or f"127.0.0.1:{port}",
            "max_retry_port_bind": 0,
            "listen_system_port_fallback": False,
            "enable_dht": True,
            "enable_lsd": False,
            "enable_upnp": False,
            "enable_natpmp": False,
            "enable_outgoing_utp": False,
            "enable_incoming_utp": False,
            "dht_restrict_routing_ips": False,
            "dht_restrict_search_ips": False,
            "dht_enforce_node_id": False,
            "dht_prefer_verified_node_ids": False,
            "dht_ignore_dark_internet": False,
            "dht_block_ratelimit": 1000000,
            "dht_block_timeout": 1,
            "dht_bootstrap_nodes": bootstrap,
            "alert_mask": lt.alert_category.dht
            | lt.alert_category.dht_operation
            | lt.alert_category.status
            | lt.alert_category.error,
        }
    )


async def _wait_alert(
    session: Any, kind: Any, pred: Callable[[Any], bool] = lambda a: True, timeout: float = 20.0
) -> Any:
    deadline = time.monotonic() + scaled(timeout)
    while time.monotonic() < deadline:
        for alert in session.pop_alerts():
            if isinstance(alert, kind) and pred(alert):
                return alert
        await asyncio.sleep(0.05)
    raise AssertionError(f"libtorrent sent no {kind.__name__} within {timeout} s")


class Net:
    """libtorrent's node ``lt_node`` plus two torrentgoat nodes: ``node`` under test and ``helper``.

    A lookup never asks the node that runs it, so a value announced by ``node`` must live on some
    third node for libtorrent to find it: ``helper`` is that node .
    """

    def __init__(self, lt: Any, node: DHTNode, helper: DHTNode, lt_node: Any, lt_port: int) -> None:
        self.lt = lt
        self.node = node
        self.helper = helper
        self.lt_node = lt_node
        self.lt_port = lt_port


async def _join(node: DHTNode, port: int, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + scaled(10)
    while True:
        try:
            await node.bootstrap([(host, port)])
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


@pytest.fixture
async def net() -> AsyncIterator[Net]:
    lt = require_libtorrent()
    config = DHTConfig(query_timeout=scaled(1.0))
    async with (
        DHTNode(host="127.0.0.1", config=config) as node,
        DHTNode(host="127.0.0.1", config=config) as helper,
    ):
        port = _free_port()
        session = _lt_session(lt, port, f"127.0.0.1:{node.address.port}")
        session.add_dht_node(("127.0.0.1", node.address.port))
        session.add_dht_node(("127.0.0.1", helper.address.port))
        # Our nodes join through libtorrent's node: no public router anywhere.
        await _join(node, port)
        await _join(helper, port)
        await node.bootstrap([("127.0.0.1", port)])
        yield Net(lt, node, helper, session, port)
        session.pause()
        del session


async def test_bootstrap_from_libtorrent_and_find_its_dht_only_seeder(net: Net, tmp_path: Path) -> None:
    lt = net.lt
    assert net.node.routing_table_size >= 1
    seeder_port = _free_port()
    seeder = _lt_session(lt, seeder_port, f"127.0.0.1:{net.lt_port}")
    seeder.add_dht_node(("127.0.0.1", net.lt_port))
    seeder.add_dht_node(("127.0.0.1", net.node.address.port))
    (tmp_path / "model.bin").write_bytes(hashlib.sha256(b"weights").digest() * 5000)
    fs = lt.file_storage()
    lt.add_files(fs, str(tmp_path / "model.bin"))
    creator = lt.create_torrent(fs)
    lt.set_piece_hashes(creator, str(tmp_path))
    info = lt.torrent_info(lt.bencode(creator.generate()))
    info_hash = info.info_hashes().v1.to_bytes()
    seeder.add_torrent({"ti": info, "save_path": str(tmp_path)})  # no tracker: the DHT is the only way
    try:
        peers: list[Any] = []
        deadline = time.monotonic() + scaled(30)
        while not peers and time.monotonic() < deadline:
            peers = await net.node.get_peers(InfoHash(info_hash))
            if not peers:
                await asyncio.sleep(0.5)
        assert ("127.0.0.1", seeder_port) in [(p.host, p.port) for p in peers]
    finally:
        seeder.pause()
        del seeder


async def test_libtorrent_finds_a_peer_torrentgoat_announced(net: Net) -> None:
    info_hash = hashlib.sha1(b"announced by torrentgoat").digest()
    stored = await net.node.announce(info_hash, 4242)
    assert stored >= 1
    net.lt_node.dht_get_peers(net.lt.sha1_hash(info_hash))
    alert = await _wait_alert(
        net.lt_node, net.lt.dht_get_peers_reply_alert, lambda a: ("127.0.0.1", 4242) in a.peers()
    )
    assert ("127.0.0.1", 4242) in alert.peers()


async def test_mutable_item_put_by_torrentgoat_is_read_by_libtorrent(net: Net) -> None:
    key = SigningKey(hashlib.sha256(b"torrentgoat publisher").digest())
    target_ih = InfoHash(hashlib.sha1(b"model v1").digest())
    item = await net.node.publish_torrent(key, target_ih, salt=b"llama")
    net.lt_node.dht_get_mutable_item(key.public_key, b"llama")
    alert = await _wait_alert(net.lt_node, net.lt.dht_mutable_item_alert, lambda a: a.seq >= 1)
    assert alert.seq == item.seq == 1
    assert alert.signature == item.signature  # byte-exact BEP 44 signature buffer
    assert alert.salt == b"llama"
    assert parse_info_hash_value(alert.item) == target_ih
    assert alert.item == info_hash_value(target_ih)


async def test_mutable_item_put_by_libtorrent_is_read_by_torrentgoat(net: Net) -> None:
    key = SigningKey(hashlib.sha256(b"libtorrent publisher").digest())
    net.lt_node.dht_put_mutable_item(key.expanded(), key.public_key, b"hello from libtorrent", b"salt")
    alert = await _wait_alert(net.lt_node, net.lt.dht_put_alert)
    assert alert.num_success >= 1
    item = await net.node.get_mutable(key.public_key, b"salt")
    assert item is not None
    assert item.value == b"hello from libtorrent"  # libtorrent stores a bencoded string
    assert item.seq == alert.seq
    item.verify()
    # and a newer version put by torrentgoat is picked up by libtorrent
    newer = await net.node.put_mutable(key, b"updated by torrentgoat", salt=b"salt")
    assert newer.seq == item.seq + 1
    net.lt_node.dht_get_mutable_item(key.public_key, b"salt")
    seen = await _wait_alert(net.lt_node, net.lt.dht_mutable_item_alert, lambda a: a.seq == newer.seq)
    assert seen.item == b"updated by torrentgoat"


async def test_immutable_items_both_ways(net: Net) -> None:
    target = await net.node.put_immutable(b"immutable from torrentgoat")
    assert target == immutable_target(b"immutable from torrentgoat")
    net.lt_node.dht_get_immutable_item(net.lt.sha1_hash(target))
    alert = await _wait_alert(net.lt_node, net.lt.dht_immutable_item_alert)
    assert alert.item == b"immutable from torrentgoat"

    lt_target = net.lt_node.dht_put_immutable_item(b"immutable from libtorrent")
    await _wait_alert(net.lt_node, net.lt.dht_put_alert)
    value = await net.node.get_immutable(lt_target.to_bytes())
    assert value == b"immutable from libtorrent"


def _free_port6() -> int:
    udp = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    tcp = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    try:
        udp.bind(("::1", 0))
        port: int = udp.getsockname()[1]
        tcp.bind(("::1", port))
        return port
    finally:
        udp.close()
        tcp.close()


async def test_ipv6_peers_both_ways_bep32() -> None:
    lt = require_libtorrent()
    config = DHTConfig(query_timeout=scaled(1.0))
    async with DHTNode(host="::1", config=config) as node, DHTNode(host="::1", config=config) as helper:
        port = _free_port6()
        session = _lt_session(lt, port, f"[::1]:{node.address.port}", listen=f"[::1]:{port}")
        session.add_dht_node(("::1", node.address.port))
        session.add_dht_node(("::1", helper.address.port))
        try:
            await _join(node, port, host="::1")
            await _join(helper, port, host="::1")
            info_hash = hashlib.sha1(b"over ipv6 from torrentgoat").digest()
            assert await node.announce(info_hash, 4242) >= 1
            session.dht_get_peers(lt.sha1_hash(info_hash))
            await _wait_alert(session, lt.dht_get_peers_reply_alert, lambda a: ("::1", 4242) in a.peers())

            lt_hash = hashlib.sha1(b"over ipv6 from libtorrent").digest()
            session.dht_announce(lt.sha1_hash(lt_hash), 5151, 0)
            peers: list[Any] = []
            deadline = time.monotonic() + scaled(20)
            while ("::1", 5151) not in peers and time.monotonic() < deadline:
                await asyncio.sleep(0.3)
                peers = [(p.host, p.port) for p in await node.get_peers(lt_hash)]
            assert ("::1", 5151) in peers
        finally:
            session.pause()
            del session
