"""Local Service Discovery (BEP 14) across a real LAN: two network namespaces joined by a veth pair.

No tracker, no DHT, no ``--peer``: each node learns the other only from its multicast announces on
239.192.152.143:6771 (or [ff15::efc0:988f]:6771), dials it, and the download completes.  Shown with
two torrentgoat nodes (IPv4, and IPv6 only), and with libtorrent 2.1 (``enable_lsd``) both ways.
The namespaces, the veth pair and the multicast route are made and removed by each test
(``tests/netns_helpers.py``); the host's interfaces are never touched.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.conftest import require_libtorrent
from tests.interop_helpers import (
    LT_PEER,
    MiB,
    ProcessGroup,
    RefProcess,
    assert_same_files,
    make_shard_torrent,
    processes,
)
from tests.netns_helpers import LanNode, veth_lan

pytestmark = pytest.mark.interop

__all__ = ["processes"]  # the fixture, imported for pytest

TG = [sys.executable, "-m", "torrentgoat"]
NO_OTHER_SOURCES = ["--no-dht", "--no-trackers"]


def _tg_net(node: LanNode, *, ipv6: bool, ipv4_lan: bool = True) -> list[str]:
    """Listen options: the node's LAN IPv4 address (or 127.0.0.1, which keeps IPv4 LSD inside the
    namespace) and its IPv6 address or none."""
    return [
        "--listen", node.ip4 if ipv4_lan else "127.0.0.1",
        "--listen6", node.ip6 if ipv6 else "",
        "--port", "6881",
    ]  # fmt: skip


async def _tg_seed(
    processes: ProcessGroup, node: LanNode, torrent: Path, root: Path, net: list[str]
) -> RefProcess:
    argv = node.run([*TG, "seed", torrent, root, *NO_OTHER_SOURCES, *net])
    seeder = await processes.spawn(f"torrentgoat-seed@{node.namespace}", argv)
    await seeder.wait_line("seeding", timeout=30)
    return seeder


async def _tg_get(
    processes: ProcessGroup, node: LanNode, torrent: Path, dest: Path, net: list[str]
) -> RefProcess:
    argv = node.run([*TG, "get", torrent, "-o", dest, *NO_OTHER_SOURCES, *net, "--quiet"])
    return await processes.spawn(f"torrentgoat-get@{node.namespace}", argv)


async def _lt(
    processes: ProcessGroup, node: LanNode, mode: str, torrent: Path, directory: Path
) -> RefProcess:
    argv = [sys.executable, LT_PEER, mode, "--torrent", torrent, "--dir", directory]
    argv += ["--host", node.ip4, "--port", "6881", "--lsd", "--report", "0.5", "--timeout", "120"]
    if mode == "leech":
        argv += ["--exit-after-finish", "0.5"]
    process = await processes.spawn(f"libtorrent-{mode}@{node.namespace}", node.run(argv))
    await process.wait_event("listening", timeout=30)
    if mode == "seed":
        await process.wait_event("seeding", timeout=30)
    return process


async def _finished(getter: RefProcess, *others: RefProcess) -> None:
    code = await getter.wait_exit(timeout=90)
    tails = "\n".join(p.tail() for p in (getter, *others))
    assert code == 0, f"get exited {code}\n{tails}"


async def test_two_torrentgoat_nodes_find_each_other_over_ipv4(
    tmp_path: Path, processes: ProcessGroup
) -> None:
    shared = make_shard_torrent(tmp_path, 6 * MiB + 333, piece_length=256 * 1024, seed=41)
    dest = tmp_path / "down"
    with veth_lan() as lan:
        a, b = lan.nodes
        seeder = await _tg_seed(processes, a, shared.torrent_path, shared.root, _tg_net(a, ipv6=False))
        getter = await _tg_get(processes, b, shared.torrent_path, dest, _tg_net(b, ipv6=False))
        await _finished(getter, seeder)
    assert_same_files(shared.metainfo, shared.root, dest)


async def test_two_torrentgoat_nodes_find_each_other_over_ipv6(
    tmp_path: Path, processes: ProcessGroup
) -> None:
    """IPv4 listens on 127.0.0.1 (its LSD stays inside each namespace): only [ff15::efc0:988f] links them."""
    shared = make_shard_torrent(tmp_path, 3 * MiB + 5, piece_length=128 * 1024, seed=42)
    dest = tmp_path / "down"
    with veth_lan() as lan:
        a, b = lan.nodes
        net_a = _tg_net(a, ipv6=True, ipv4_lan=False)
        seeder = await _tg_seed(processes, a, shared.torrent_path, shared.root, net_a)
        getter = await _tg_get(processes, b, shared.torrent_path, dest, _tg_net(b, ipv6=True, ipv4_lan=False))
        await _finished(getter, seeder)
    assert_same_files(shared.metainfo, shared.root, dest)


async def test_libtorrent_finds_and_downloads_from_torrentgoat(
    tmp_path: Path, processes: ProcessGroup
) -> None:
    require_libtorrent()
    shared = make_shard_torrent(tmp_path, 5 * MiB + 77, piece_length=256 * 1024, seed=43)
    dest = tmp_path / "lt-down"
    dest.mkdir()
    with veth_lan() as lan:
        a, b = lan.nodes
        seeder = await _tg_seed(processes, a, shared.torrent_path, shared.root, _tg_net(a, ipv6=False))
        leech = await _lt(processes, b, "leech", shared.torrent_path, dest)
        await leech.wait_event("finished", timeout=90)
        code = await leech.wait_exit(timeout=30)
        assert code == 0, leech.tail() + "\n" + seeder.tail()
    assert_same_files(shared.metainfo, shared.root, dest)


async def test_torrentgoat_finds_and_downloads_from_libtorrent(
    tmp_path: Path, processes: ProcessGroup
) -> None:
    require_libtorrent()
    shared = make_shard_torrent(tmp_path, 5 * MiB + 99, piece_length=256 * 1024, seed=44)
    dest = tmp_path / "down"
    with veth_lan() as lan:
        a, b = lan.nodes
        seeder = await _lt(processes, a, "seed", shared.torrent_path, shared.root)
        getter = await _tg_get(processes, b, shared.torrent_path, dest, _tg_net(b, ipv6=False))
        await _finished(getter, seeder)
    assert_same_files(shared.metainfo, shared.root, dest)
