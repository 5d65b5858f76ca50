"""BEP 55 hole punching with libtorrent 2.1 (which offers ``ut_holepunch`` as id 4), both ways:

* libtorrent as the **relay** between two torrentgoat sessions behind emulated NATs: they reach it
  over uTP from their listen sockets (libtorrent finds a target by the remote endpoint of its
  connection), A asks it for a rendezvous with B, libtorrent sends ``connect`` to both, and the two
  simultaneous uTP dials get B's data to A;
* libtorrent as the **target**: our relay R tells it to connect to A (behind an emulated NAT, never
  dialled by libtorrent before) while A dials it; libtorrent's uTP SYN gets through the hole A's SYN
  opened and A downloads from libtorrent's seed.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require_libtorrent
from tests.holepunch_helpers import EmulatedNat
from tests.test_holepunch_swarm import complete, config, link, linked
from tests.test_utp_interop_libtorrent import add, free_udp_port, make_torrent
from torrentgoat.metainfo import Metainfo, parse_info
from torrentgoat.primitives import PeerAddress
from torrentgoat.session import Session
from torrentgoat.testing.swarm import wait_until
from torrentgoat.torrent import Torrent
from torrentgoat.torrent.wirepeer import WirePeer

pytestmark = pytest.mark.interop

PIECE = 64 * 1024


def lt_session(lt: Any, port: int, *, download_limit: int = 0) -> Any:
    return lt.session(
        {
            "listen_interfaces": f"127.0.0.1:{port}",
            "max_retry_port_bind": 0,
            "listen_system_port_fallback": False,
            "enable_dht": False,
            "enable_lsd": False,
            "enable_upnp": False,
            "enable_natpmp": False,
            "enable_incoming_utp": True,
            "enable_outgoing_utp": True,
            # several peers on 127.0.0.1: without this, a second one is dropped ("duplicate peer-id")
            "allow_multiple_connections_per_ip": True,
            "download_rate_limit": download_limit,
            "ignore_limits_on_local_network": False,
            "alert_mask": lt.alert_category.error | lt.alert_category.peer | lt.alert_category.connect,
        }
    )


def metainfo_of(info: Any) -> Metainfo:
    return Metainfo(info=parse_info(bytes(info.info_section())))


def by_address(torrent: Torrent, address: PeerAddress) -> WirePeer | None:
    for wp in torrent.peers.values():
        if wp.live and wp.address == address:
            return wp
    return None


async def test_libtorrent_relays_a_hole_punch_between_two_natted_sessions(tmp_path: Path) -> None:
    lt = require_libtorrent()
    seed_dir = tmp_path / "seed"
    seed_dir.mkdir()
    info, _, _ = make_torrent(lt, seed_dir, os.urandom(32 * PIECE + 100))
    metainfo = metainfo_of(info)
    relay_port = free_udp_port()
    relay = lt_session(lt, relay_port, download_limit=16 * 1024)  # it downloads too, slowly
    handle = add(lt, relay, info, tmp_path / "relay")
    try:
        # uTP first: each reaches libtorrent from its listen socket, the endpoint libtorrent knows it by
        def natted(seed: int, **kw: Any) -> Any:
            return replace(config(seed, pex=False, **kw), utp_first=True)

        async with (
            Session(natted(21)) as as_,
            Session(natted(22, upload_limit=1 << 20)) as bs,
        ):
            EmulatedNat(as_)
            EmulatedNat(bs)
            peer = [f"127.0.0.1:{relay_port}"]
            b = await bs.add(metainfo, seed_dir, seed=True, peers=peer)
            a = await as_.add(metainfo, tmp_path / "a", peers=peer)
            lt_address = PeerAddress("127.0.0.1", relay_port)

            def ready(torrent: Torrent) -> bool:  # libtorrent's extension handshake arrived
                wp = by_address(torrent, lt_address)
                return wp is not None and wp.driver.engine.peer_extensions is not None

            await wait_until(
                lambda: len(handle.get_peer_info()) >= 2 and ready(a) and ready(b),
                timeout=30,
                what="libtorrent connected to A and B",
            )
            via = by_address(a, lt_address)
            assert via is not None and via.transport == "utp" and via.driver.engine.peer_supports_holepunch
            assert a.holepunch.rendezvous(PeerAddress("127.0.0.1", bs.listen_port), via=via.key)
            await wait_until(
                lambda: linked(a, bs.peer_id), timeout=30, what="A connected to B through the hole"
            )
            wp = link(a, bs.peer_id)
            assert wp is not None and wp.transport == "utp"
            await complete(a)
            assert wp.driver.engine.downloaded > 0
            assert a.holepunch.connects == 1
    finally:
        relay.remove_torrent(handle)
        del relay


async def test_libtorrent_obeys_our_relays_connect_as_the_target(tmp_path: Path) -> None:
    lt = require_libtorrent()
    seed_dir = tmp_path / "seed"
    seed_dir.mkdir()
    info, _, _ = make_torrent(lt, seed_dir, os.urandom(32 * PIECE + 100))
    metainfo = metainfo_of(info)
    lt_port = free_udp_port()
    seed = lt_session(lt, lt_port)
    handle = add(lt, seed, info, seed_dir)
    try:
        async with (
            Session(config(23, pex=False, download_limit=16 * 1024)) as rs,
            # A downloads at 512 KiB/s: the 2 MiB take ~4 s, time enough to see the connection (lt
            # drops it once both are seeds, and unlimited uTP moves the whole torrent in a poll step)
            Session(config(24, pex=False, download_limit=512 * 1024)) as as_,
        ):
            EmulatedNat(as_)
            r = await rs.add(metainfo, tmp_path / "r")
            a = await as_.add(metainfo, tmp_path / "a", peers=[f"127.0.0.1:{rs.listen_port}"])
            await asyncio.to_thread(handle.connect_peer, ("127.0.0.1", rs.listen_port))
            lt_address = PeerAddress("127.0.0.1", lt_port)
            await wait_until(
                lambda: (
                    linked(r, as_.peer_id)
                    and linked(a, rs.peer_id)
                    and any(wp.live and wp.listen_address() == lt_address for wp in r.peers.values())
                ),
                timeout=30,
                what="R connected to A and to libtorrent",
            )
            assert by_address(a, lt_address) is None  # A never heard of libtorrent
            assert a.holepunch.rendezvous(lt_address)
            await wait_until(
                lambda: (wp := by_address(a, lt_address)) is not None and wp.transport == "utp",
                timeout=30,
                what="libtorrent and A connected through the hole",
            )
            assert r.holepunch.relayed == 1 and a.holepunch.connects == 1
            await complete(a)
    finally:
        seed.remove_torrent(handle)
        del seed


async def test_libtorrent_initiates_through_our_relay_after_its_dial_fails(tmp_path: Path) -> None:
    """libtorrent as the **initiator**: our relay's PEX lists B with flag 0x08; libtorrent's dial to B
    fails (B is behind an emulated NAT), so it sends ``rendezvous`` to the peer that introduced B --
    our relay -- which sends ``connect`` to both; B's data then reaches libtorrent."""
    lt = require_libtorrent()
    seed_dir = tmp_path / "seed"
    seed_dir.mkdir()
    info, _, _ = make_torrent(lt, seed_dir, os.urandom(32 * PIECE + 100))
    metainfo = metainfo_of(info)
    lt_port = free_udp_port()
    leech = lt_session(lt, lt_port)
    handle = add(lt, leech, info, tmp_path / "lt")
    try:
        async with (
            Session(config(25, download_limit=16 * 1024)) as rs,
            Session(config(26, pex=False, upload_limit=512 * 1024)) as bs,  # see the test above
        ):
            EmulatedNat(bs)
            r = await rs.add(metainfo, tmp_path / "r")
            b = await bs.add(metainfo, seed_dir, seed=True, peers=[f"127.0.0.1:{rs.listen_port}"])
            await wait_until(lambda: linked(r, bs.peer_id), timeout=30, what="B connected to R")
            await asyncio.to_thread(handle.connect_peer, ("127.0.0.1", rs.listen_port))
            lt_address = PeerAddress("127.0.0.1", lt_port)
            await wait_until(
                lambda: (wp := by_address(b, lt_address)) is not None and wp.transport == "utp",
                timeout=60,
                what="libtorrent connected to B through the hole",
            )
            assert r.holepunch.relayed >= 1 and b.holepunch.connects >= 1
            await wait_until(lambda: handle.status().is_seeding, timeout=60, what="libtorrent complete")
    finally:
        leech.remove_torrent(handle)
        del leech
