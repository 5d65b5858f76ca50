"""The asyncio DHT driver on real loopback UDP sockets, the node cache, IPv6 (::1) and the CLI."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import random
import stat
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from torrentgoat.aio.dht import DHTNode
from torrentgoat.cli import main as cli_main
from torrentgoat.dht import DHTConfig, SigningKey
from torrentgoat.errors import ConfigError, DHTError, SignatureError
from torrentgoat.primitives import InfoHash, PeerAddress
from torrentgoat.testing.swarm import wait_until
from torrentgoat.testing.timing import scaled

CONFIG = DHTConfig(query_timeout=scaled(0.5))  # real sockets: answers come later on a busy machine


@contextlib.asynccontextmanager
async def cluster(count: int, host: str = "127.0.0.1") -> AsyncIterator[list[DHTNode]]:
    nodes = [DHTNode(host=host, config=CONFIG, rng=random.Random(i)) for i in range(count)]
    for node in nodes:
        await node.start()
    try:
        for i, node in enumerate(nodes[1:], start=1):
            await node.bootstrap([n.address for n in nodes[max(0, i - 3) : i]])
        yield nodes
    finally:
        for node in nodes:
            await node.close()


async def test_peers_and_items_over_udp() -> None:
    async with cluster(20) as nodes:
        info_hash = InfoHash(b"\x10" * 20)
        assert await nodes[2].announce(info_hash, 6000) >= 1
        assert PeerAddress("127.0.0.1", 6000) in await nodes[15].get_peers(info_hash)
        seen = [peer async for peer in nodes[11].iter_peers(info_hash)]
        assert PeerAddress("127.0.0.1", 6000) in seen
        peers, stored = await nodes[13].announce_and_get_peers(info_hash, 6001)
        assert PeerAddress("127.0.0.1", 6000) in peers and stored >= 1
        assert {PeerAddress("127.0.0.1", 6000), PeerAddress("127.0.0.1", 6001)} <= set(
            await nodes[8].get_peers(info_hash)
        )

        key = SigningKey(b"\x01" * 32)
        first = await nodes[4].put_mutable(key, b"v1", salt=b"s")
        assert first.seq == 1
        second = await nodes[6].put_mutable(key, b"v2", salt=b"s")  # seq defaults to current + 1
        assert second.seq == 2
        got = await nodes[18].get_mutable(key.public_key, b"s")
        assert got is not None and got.value == b"v2" and got.seq == 2
        with pytest.raises(ConfigError, match="lower"):
            await nodes[7].put_mutable(key, b"old", salt=b"s", seq=1)
        with pytest.raises(ConfigError, match="already holds a different value"):
            await nodes[7].put_mutable(key, b"other", salt=b"s", seq=2)
        assert (await nodes[7].put_mutable(key, b"v2", salt=b"s", seq=2)).seq == 2  # a refresh is fine

        new_ih = InfoHash(b"\x20" * 20)
        await nodes[3].publish_torrent(key, new_ih, salt=b"model")
        assert await nodes[19].resolve_torrent(key.public_key, b"model") == new_ih
        assert await nodes[19].resolve_torrent(key.public_key, b"nothing") is None

        target = await nodes[5].put_immutable({b"weights": b"sha256..."})
        assert await nodes[12].get_immutable(target) == {b"weights": b"sha256..."}
        with pytest.raises(DHTError, match="1000"):
            await nodes[5].put_immutable(b"x" * 2000)


async def test_bad_signature_is_refused_before_sending() -> None:
    async with cluster(3) as nodes:
        key = SigningKey(b"\x02" * 32)
        item = await nodes[1].put_mutable(key, b"v", seq=5)
        from torrentgoat.dht.items import MutableItem

        forged = MutableItem(public_key=item.public_key, seq=6, value=b"evil", signature=item.signature)
        with pytest.raises(SignatureError):
            await nodes[2].put_signed(forged)


async def test_node_cache_restart_without_routers(tmp_path: Path) -> None:
    cache = tmp_path / "dht" / "nodes.dat"
    async with cluster(8) as nodes:
        first = DHTNode(host="127.0.0.1", config=CONFIG, node_cache=cache)
        await first.start()
        await first.bootstrap([nodes[0].address])
        node_id = first.node_id
        assert first.routing_table_size >= 3
        await first.close()
        assert cache.exists()

        second = DHTNode(host="127.0.0.1", config=CONFIG, node_cache=cache)
        async with second:
            assert second.node_id == node_id
            assert second.routing_table_size >= 3
            # the only router given is dead: the cached nodes are enough
            assert await second.bootstrap([PeerAddress("127.0.0.1", 9)]) >= 3
            assert second.engine.stats.timeouts == 0


async def test_bootstrap_with_dead_routers_raises() -> None:
    async with DHTNode(host="127.0.0.1", config=CONFIG) as node:
        with pytest.raises(DHTError, match="bootstrap failed"):
            await node.bootstrap([PeerAddress("127.0.0.1", 9)])


async def test_add_node_and_ping() -> None:
    async with DHTNode(host="127.0.0.1", config=CONFIG) as a, DHTNode(host="127.0.0.1", config=CONFIG) as b:
        assert await a.ping(b.address) == b.node_id
        b.add_node(a.address)
        await wait_until(lambda: b.routing_table_size > 0, timeout=5, what="a in b's table", step=0.01)
        assert a.node_id in b.engine.table


async def test_ipv6_loopback_network() -> None:
    async with cluster(8, host="::1") as nodes:
        info_hash = b"\x30" * 20
        assert await nodes[1].announce(info_hash, 7000) >= 1
        assert PeerAddress("::1", 7000) in await nodes[6].get_peers(info_hash)


async def run_cli_process(*args: str) -> tuple[int, str, str]:
    """``python -m torrentgoat ...`` in a child process."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "torrentgoat",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "TORRENTGOAT_NO_UVLOOP": "1"},
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def _cli_in_thread(args: tuple[str, ...]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli_main(list(args))
    return code, out.getvalue(), err.getvalue()


async def run_cli(*args: str) -> tuple[int, str, str]:
    """The CLI entry point in a worker thread (its own event loop), output captured."""
    return await asyncio.to_thread(_cli_in_thread, args)


async def test_cli_keygen_put_get(tmp_path: Path) -> None:
    keyfile = tmp_path / "publisher.key"
    code, out, _ = await run_cli_process("keygen", "-o", str(keyfile))
    assert code == 0
    assert stat.S_IMODE(keyfile.stat().st_mode) == 0o600 and len(keyfile.read_bytes()) == 32
    public_key = out.strip()
    assert SigningKey(keyfile.read_bytes()).public_key.hex() == public_key
    code, _, err = await run_cli("keygen", "-o", str(keyfile))
    assert code == 2 and "exists" in err

    async with cluster(6) as nodes:
        boot = ["--dht-bootstrap", str(nodes[0].address), "--dht-bootstrap", str(nodes[1].address)]
        boot += ["--listen", "127.0.0.1"]
        ih = "ab" * 20
        code, out, err = await run_cli(
            "dht", "put", "--key", str(keyfile), "--salt", "v", "--info-hash", ih, *boot
        )
        assert code == 0, err
        assert "seq:        1" in out
        code, out, err = await run_cli(
            "dht", "put", "--key", str(keyfile), "--salt", "v", "--info-hash", ih, *boot
        )
        assert code == 0 and "seq:        2" in out, err
        code, out, err = await run_cli("dht", "get", public_key, "--salt", "v", *boot)
        assert code == 0, err
        lines = out.splitlines()
        assert lines[0] == ih
        assert lines[1] == f"magnet:?xs=urn:btpk:{public_key}&s=76"
        code, _, err = await run_cli(
            "dht", "put", "--key", str(keyfile), "--salt", "v", "--info-hash", ih, "--seq", "1", *boot
        )
        assert code == 2 and "lower" in err
        code, _, err = await run_cli("dht", "get", "00" * 32, *boot)
        assert code == 1 and "no item" in err  # nothing published there: the lookup failed
        code, out, err = await run_cli("dht", "put-immutable", "hello", *boot)
        assert code == 0, err
        code, out2, err = await run_cli("dht", "get-immutable", out.strip(), *boot)
        assert code == 0 and out2.strip() == "hello", err


async def test_node_cache_is_saved_periodically(tmp_path: Path) -> None:
    cache = tmp_path / "nodes.dat"
    async with cluster(4) as nodes:
        node = DHTNode(host="127.0.0.1", config=CONFIG, node_cache=cache, cache_save_interval=0.05)
        async with node:
            await node.bootstrap([nodes[0].address])
            # written while the node is still running
            await wait_until(cache.exists, timeout=5, what="the node cache", step=0.02)
            assert node.load_node_cache() >= 1
