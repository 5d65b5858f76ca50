"""BEP 55 hole punching between three sessions on loopback.

A and B sit behind emulated NATs (:class:`tests.holepunch_helpers.EmulatedNat`: no incoming TCP, uTP
only from endpoints they sent to), so neither can dial the other; R is reachable and connected to
both.  A asks R for a rendezvous with B (explicitly, or by itself after its dial to the B that R's PEX
introduced failed); R sends ``connect`` to both, both dial each other over uTP from their listen
sockets at once, the SYNs open the NATs, and B's data reaches A.  The relay's four error codes come
back to the initiator as :class:`HolepunchFailed` events.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

from tests.holepunch_helpers import EmulatedNat
from torrentgoat.creation import create_torrent
from torrentgoat.primitives import PeerAddress, PeerId
from torrentgoat.session import Session, SessionConfig
from torrentgoat.testing.swarm import (
    MiB,
    assert_same_files,
    describe,
    loopback_config,
    make_file_payload,
    wait_until,
)
from torrentgoat.testing.timing import scaled
from torrentgoat.torrent import HolepunchFailed, Torrent, TorrentEvent
from torrentgoat.torrent.wirepeer import WirePeer

PIECE = 64 * 1024


def config(
    seed: int, *, pex: bool = True, holepunch: bool = True, download_limit: int = 0, upload_limit: int = 0
) -> SessionConfig:
    base = loopback_config(seed=seed, download_limit=download_limit, upload_limit=upload_limit)
    return replace(base, enable_pex=pex, wire=replace(base.wire, ut_holepunch=holepunch))


def link(torrent: Torrent, peer_id: PeerId) -> WirePeer | None:
    """The live connection of ``torrent`` to the peer with ``peer_id``."""
    for wp in torrent.peers.values():
        handshake = wp.driver.engine.peer_handshake
        if wp.live and handshake is not None and handshake.peer_id == peer_id:
            return wp
    return None


def linked(torrent: Torrent, *peer_ids: PeerId) -> bool:
    """Connected to each of ``peer_ids``, with its extension handshake (BEP 10) received: its listen
    port and whether it offers ``ut_holepunch`` are known."""
    for peer_id in peer_ids:
        wp = link(torrent, peer_id)
        if wp is None or wp.driver.engine.peer_extensions is None:
            return False
    return True


async def complete(torrent: Torrent, timeout: float = 60.0) -> None:
    try:
        await asyncio.wait_for(torrent.wait_complete(), scaled(timeout))
    except TimeoutError:
        raise AssertionError(f"not complete: {describe(torrent)}") from None


async def test_explicit_rendezvous_connects_two_natted_peers_and_the_transfer_completes(
    tmp_path: Path,
) -> None:
    payload = make_file_payload(tmp_path, 2 * MiB, piece_length=PIECE, seed=55)
    async with (
        # R downloads too, slowly: A's data comes from B through the punched hole
        Session(config(1, pex=False, download_limit=32 * 1024)) as rs,
        Session(config(2, pex=False)) as as_,
        Session(config(3, pex=False, upload_limit=1 * MiB)) as bs,  # ~2 s: time to look at A's link
    ):
        nat_a, nat_b = EmulatedNat(as_), EmulatedNat(bs)
        relay_addr = f"127.0.0.1:{rs.listen_port}"
        r = await rs.add(payload.metainfo, tmp_path / "r")
        b = await bs.add(payload.metainfo, payload.root, seed=True, peers=[relay_addr])
        a = await as_.add(payload.metainfo, tmp_path / "a", peers=[relay_addr])
        await wait_until(
            lambda: linked(r, as_.peer_id, bs.peer_id), timeout=20, what="R connected to A and B"
        )
        await wait_until(lambda: linked(a, rs.peer_id), timeout=20, what="A connected to R")
        assert link(a, bs.peer_id) is None
        assert a.holepunch.rendezvous(PeerAddress("127.0.0.1", bs.listen_port))
        await wait_until(lambda: linked(a, bs.peer_id), timeout=20, what="A connected to B")
        wp = link(a, bs.peer_id)
        assert wp is not None and wp.transport == "utp", describe(a)
        await complete(a)
        assert wp.driver.engine.downloaded > payload.metainfo.info.total_length // 2
        assert r.holepunch.relayed == 1
        assert a.holepunch.connects == 1 and b.holepunch.connects == 1
        assert nat_a.sent_to and nat_b.sent_to
        assert_same_files(payload.metainfo, payload.root, tmp_path / "a")


async def test_a_failed_dial_to_a_pex_introduced_peer_asks_its_introducer(tmp_path: Path) -> None:
    """No explicit call: R's PEX says B supports holepunch (flag 0x08); A's direct dial fails (NAT),
    so A asks R, the peer that introduced B (libtorrent's rule).  B takes no PEX: had both learned of
    each other at once, their two dials (TCP refused at once, then uTP) would cross and open both NATs
    without any relay."""
    payload = make_file_payload(tmp_path, 1 * MiB, piece_length=PIECE, seed=56)
    async with (
        Session(config(4, download_limit=32 * 1024)) as rs,
        Session(config(5)) as as_,
        Session(config(6, pex=False, upload_limit=512 * 1024)) as bs,
    ):
        nat_b = EmulatedNat(bs)
        EmulatedNat(as_)
        relay_addr = f"127.0.0.1:{rs.listen_port}"
        r = await rs.add(payload.metainfo, tmp_path / "r")
        await bs.add(payload.metainfo, payload.root, seed=True, peers=[relay_addr])
        a = await as_.add(payload.metainfo, tmp_path / "a", peers=[relay_addr])
        await wait_until(lambda: linked(a, bs.peer_id), timeout=30, what="A connected to B")
        wp = link(a, bs.peer_id)
        assert wp is not None and wp.transport == "utp"
        assert a.holepunch.rendezvous_sent == 1 and r.holepunch.relayed == 1
        assert nat_b.dropped > 0  # A's first, unsolicited SYNs never reached B
        await complete(a)
        assert_same_files(payload.metainfo, payload.root, tmp_path / "a")


class Recorder:
    def __init__(self, torrent: Torrent) -> None:
        self.events: list[TorrentEvent] = []
        self.task = asyncio.create_task(self._run(torrent))

    async def _run(self, torrent: Torrent) -> None:
        async for event in torrent.events():
            self.events.append(event)

    def failures(self) -> list[HolepunchFailed]:
        return [e for e in self.events if isinstance(e, HolepunchFailed)]


async def test_relay_error_codes_reach_the_initiator(tmp_path: Path) -> None:
    payload = make_file_payload(tmp_path, 256 * 1024, piece_length=PIECE, seed=57)
    async with (
        Session(config(7, pex=False)) as rs,
        Session(config(8, pex=False)) as as_,
        Session(config(9, pex=False, holepunch=False)) as cs,
    ):
        relay_addr = f"127.0.0.1:{rs.listen_port}"
        # nobody has data: nothing to finish, no "both sides are seeds", the connections stay
        r = await rs.add(payload.metainfo, tmp_path / "r")
        a = await as_.add(payload.metainfo, tmp_path / "a", peers=[relay_addr])
        await cs.add(payload.metainfo, tmp_path / "c", peers=[relay_addr])
        await wait_until(
            lambda: linked(r, as_.peer_id, cs.peer_id) and linked(a, rs.peer_id),
            timeout=20,
            what="R connected to A and C",
        )
        recorder = Recorder(a)
        relay = link(a, rs.peer_id)
        assert relay is not None
        asked = {
            "NoSuchPeer": PeerAddress("0.0.0.0", 6881),
            "NoSelf": PeerAddress("127.0.0.1", rs.listen_port),
            "NotConnected": PeerAddress("127.0.0.1", 9),
            "NoSupport": PeerAddress("127.0.0.1", cs.listen_port),
        }
        for target in asked.values():
            assert a.holepunch.rendezvous(target, via=relay.key)
        await wait_until(lambda: len(recorder.failures()) == 4, timeout=10, what="four error answers")
        got = {e.error: e.target for e in recorder.failures()}
        assert got == asked
        assert all(e.relay == PeerAddress("127.0.0.1", rs.listen_port) for e in recorder.failures())
        assert r.holepunch.relayed == 0 and a.holepunch.errors == 4
        # C did not offer ut_holepunch: A cannot ask it anything, and nothing was relayed to it
        assert not a.holepunch.rendezvous(PeerAddress("127.0.0.1", cs.listen_port), via=relay.key + 10**6)
        recorder.task.cancel()


async def test_private_torrents_offer_no_hole_punching(tmp_path: Path) -> None:
    """BEP 27: a relay would hand out peer addresses the tracker did not, as PEX would."""
    root = tmp_path / "seed"
    root.mkdir()
    (root / "data.bin").write_bytes(bytes(range(256)) * 1024)
    metainfo = create_torrent(root / "data.bin", piece_length=PIECE, private=True, creation_date=None)
    async with Session(config(10)) as ss, Session(config(11)) as ls:
        # neither has the data: nothing completes, the connection stays
        seed = await ss.add(metainfo, tmp_path / "other")
        leech = await ls.add(metainfo, tmp_path / "leech", peers=[f"127.0.0.1:{ss.listen_port}"])
        await wait_until(
            lambda: (
                (wp := link(leech, ss.peer_id)) is not None and wp.driver.engine.peer_extensions is not None
            ),
            timeout=20,
            what="the extension handshake",
        )
        wp = link(leech, ss.peer_id)
        assert wp is not None
        assert (
            "ut_holepunch" not in wp.driver.engine.peer_ext_ids
            and "ut_pex" not in wp.driver.engine.peer_ext_ids
        )
        assert not leech.holepunch.rendezvous(PeerAddress("127.0.0.1", 9))
        assert seed.holepunch.relayed == 0


async def test_ipv6_rendezvous(tmp_path: Path) -> None:
    """The same over ::1: IPv6 endpoints (addr_type 1) in rendezvous and connect."""
    payload = make_file_payload(tmp_path, 512 * 1024, piece_length=PIECE, seed=58)

    def v6(seed: int, **kw: Any) -> SessionConfig:
        return replace(config(seed, pex=False, **kw), listen_host="::1")

    async with (
        Session(v6(12, download_limit=16 * 1024)) as rs,
        Session(v6(13)) as as_,
        Session(v6(14, upload_limit=256 * 1024)) as bs,
    ):
        EmulatedNat(as_)
        EmulatedNat(bs)
        relay_addr = f"[::1]:{rs.listen_port}"
        r = await rs.add(payload.metainfo, tmp_path / "r")
        await bs.add(payload.metainfo, payload.root, seed=True, peers=[relay_addr])
        a = await as_.add(payload.metainfo, tmp_path / "a", peers=[relay_addr])
        await wait_until(
            lambda: linked(r, as_.peer_id, bs.peer_id) and linked(a, rs.peer_id),
            timeout=20,
            what="R connected to A and B",
        )
        assert a.holepunch.rendezvous(PeerAddress("::1", bs.listen_port))
        await wait_until(lambda: linked(a, bs.peer_id), timeout=20, what="A connected to B")
        wp = link(a, bs.peer_id)
        assert (
            wp is not None and wp.transport == "utp" and wp.address is not None and wp.address.host == "::1"
        )
        assert r.holepunch.relayed == 1
        await complete(a)
