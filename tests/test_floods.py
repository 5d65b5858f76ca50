"""Floods and resource limits (issue 16), fast versions: behaviour, never timings.

* the admission rules (pure): session cap, per-IP caps, a full handshake table evicts its oldest;
* silent and slow-loris connections are closed at the handshake deadline, and every descriptor is
  released; an endless bitfield is refused at its length;
* the per-IP and handshake caps hold on a real listener;
* a leecher completes from a seed under a connection flood (silent, slow-loris, endless bitfield,
  reopened as soon as they are closed), and under KRPC and uTP datagram floods, and the seed's DHT
  and uTP tables stay bounded.

``benchmarks/floods.py`` measures the leecher's rate under each flood against an undisturbed run.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace
from pathlib import Path

import pytest

from torrentgoat.admission import AdmissionLimits, Verdict, admit_incoming
from torrentgoat.dht import DHTConfig
from torrentgoat.session import Session, SessionConfig
from torrentgoat.testing.floods import ConnectionFlood, DatagramFlood
from torrentgoat.testing.swarm import (
    MiB,
    assert_same_files,
    describe,
    loopback_config,
    make_file_payload,
    wait_until,
)
from torrentgoat.testing.timing import scaled
from torrentgoat.torrent import Torrent


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def _complete(torrent: Torrent, timeout: float) -> None:
    try:
        await asyncio.wait_for(torrent.wait_complete(), scaled(timeout))
    except TimeoutError:
        raise AssertionError(f"not complete after {timeout} s: {describe(torrent)}") from None


# --------------------------------------------------------------------------- the rules


@pytest.mark.parametrize(
    ("ip", "counts", "verdict"),
    [
        ("8.8.8.8", (0, 0, 0, 0), Verdict.ACCEPT),
        ("8.8.8.8", (500, 0, 0, 0), Verdict.REFUSE_FULL),
        ("8.8.8.8", (10, 0, 8, 0), Verdict.REFUSE_IP),
        ("8.8.8.8", (10, 5, 5, 4), Verdict.REFUSE_IP_HANDSHAKES),
        ("8.8.8.8", (200, 128, 0, 0), Verdict.ACCEPT_EVICTING_OLDEST),
        ("127.0.0.1", (200, 128, 100, 100), Verdict.ACCEPT_EVICTING_OLDEST),  # loopback: no per-IP cap
        ("127.0.0.1", (500, 0, 0, 0), Verdict.REFUSE_FULL),  # ... but the session's cap
    ],
)
def test_admission_rules(ip: str, counts: tuple[int, int, int, int], verdict: Verdict) -> None:
    total, handshakes, from_ip, handshakes_from_ip = counts
    assert (
        admit_incoming(
            ip,
            open_total=total,
            handshakes_total=handshakes,
            open_from_ip=from_ip,
            handshakes_from_ip=handshakes_from_ip,
            limits=AdmissionLimits(),
        )
        is verdict
    )
    strict = AdmissionLimits(limit_loopback=True)
    assert (
        admit_incoming(
            "::1", open_total=0, handshakes_total=0, open_from_ip=8, handshakes_from_ip=0, limits=strict
        )
        is Verdict.REFUSE_IP
    )


# --------------------------------------------------------------------------- deadlines and caps


def _flood_config(**fields: object) -> SessionConfig:
    return replace(loopback_config(seed=1), enable_utp=False, **fields)  # type: ignore[arg-type]


async def test_silent_and_slowloris_connections_are_closed_at_the_deadline_and_fds_released() -> None:
    before = _fds()
    async with Session(_flood_config(handshake_timeout=1.0)) as session:
        port = session.listen_port
        silent = ConnectionFlood("127.0.0.1", port, count=150, script="silent", reopen=False)
        loris = ConnectionFlood("127.0.0.1", port, count=20, script="slowloris", drip=0.1, reopen=False)
        await silent.start()
        await loris.start()
        assert silent.stats.opened == 150 and loris.stats.opened == 20
        await wait_until(
            lambda: silent.stats.alive == 0 and loris.stats.alive == 0, timeout=10, what="deadlines"
        )
        # 68 handshake bytes at 10/s would take 6.8 s: the one deadline from accept closed them at ~1 s
        assert loris.stats.closed == 20 and silent.stats.closed == 150
        counts = session.gate.counts  # 170 > 128 handshakes: the oldest 42 made way, the rest timed out
        assert counts["timed_out"] + counts["accept_evicting_oldest"] == 170
        assert session.gate.open_count == 0 and session.gate.handshake_count == 0
        assert not session._incoming.pending and not session._listener.pending
        await silent.aclose()
        await loris.aclose()
    await wait_until(lambda: _fds() <= before, timeout=5, what=f"descriptors back to {before} (now {_fds()})")


async def test_per_ip_and_handshake_caps_are_enforced() -> None:
    config = _flood_config(limit_loopback=True, max_connections_per_ip=5, max_handshakes_per_ip=5)
    async with Session(config) as session:
        flood = ConnectionFlood("127.0.0.1", session.listen_port, count=20, reopen=False)
        await flood.start()
        await wait_until(
            lambda: flood.stats.alive <= 5, timeout=5, what="connections over the per-IP cap closed"
        )
        assert session.gate.counts["refuse_ip"] + session.gate.counts["refuse_ip_handshakes"] == 15
        await flood.aclose()
    async with Session(_flood_config(max_handshakes=10)) as session:
        flood = ConnectionFlood("127.0.0.1", session.listen_port, count=40, reopen=False)
        await flood.start()
        await wait_until(lambda: flood.stats.alive <= 10, timeout=5, what="the oldest handshakes evicted")
        assert session.gate.counts["accept_evicting_oldest"] == 30 and session.gate.handshake_count <= 10
        await flood.aclose()
    async with Session(_flood_config(max_connections=25)) as session:
        flood = ConnectionFlood("127.0.0.1", session.listen_port, count=40, reopen=False)
        await flood.start()
        await wait_until(
            lambda: flood.stats.alive <= 25, timeout=5, what="connections over the session cap closed"
        )
        assert session.gate.counts["refuse_full"] == 15
        await flood.aclose()


async def test_an_endless_bitfield_is_refused_at_its_length(tmp_path: Path) -> None:
    payload = make_file_payload(tmp_path, 1 * MiB, seed=61)
    async with Session(_flood_config()) as session:
        seeding = await session.add(payload.metainfo, payload.root, seed=True)
        await _complete(seeding, 10)
        flood = ConnectionFlood(
            "127.0.0.1", session.listen_port, count=10, script="bitfield",
            info_hash=payload.metainfo.info_hash.raw, drip=0.05, reopen=False,
        )  # fmt: skip
        await flood.start()
        await wait_until(lambda: flood.stats.alive == 0, timeout=5, what="endless bitfields refused")
        assert flood.stats.closed == 10
        await flood.aclose()


# --------------------------------------------------------------------------- a leecher under floods


async def test_a_leecher_completes_while_connection_floods_keep_pressing(tmp_path: Path) -> None:
    payload = make_file_payload(tmp_path, 8 * MiB, seed=62)
    info_hash = payload.metainfo.info_hash.raw
    async with Session(_flood_config(handshake_timeout=2.0)) as seed_session:
        seeding = await seed_session.add(payload.metainfo, payload.root, seed=True)
        await _complete(seeding, 10)
        port = seed_session.listen_port
        floods = [
            ConnectionFlood("127.0.0.1", port, count=200, script="silent"),
            ConnectionFlood("127.0.0.1", port, count=20, script="slowloris", drip=0.5),
            ConnectionFlood("127.0.0.1", port, count=10, script="bitfield", info_hash=info_hash, drip=0.2),
        ]
        try:
            for flood in floods:
                await flood.start()
            async with Session(loopback_config(seed=2)) as leecher:
                torrent = await leecher.add(payload.metainfo, tmp_path / "down", peers=[f"127.0.0.1:{port}"])
                await _complete(torrent, 60)
            assert floods[0].stats.closed > 0  # the deadline kept closing them; they kept coming back
            assert seed_session.gate.handshake_count <= seed_session.config.max_handshakes
        finally:
            for flood in floods:
                await flood.aclose()
    assert_same_files(payload.metainfo, payload.root, tmp_path / "down")


async def test_a_leecher_completes_under_krpc_and_utp_floods_and_tables_stay_bounded(tmp_path: Path) -> None:
    payload = make_file_payload(tmp_path, 8 * MiB, seed=63)
    dht = DHTConfig(max_rate_sources=500)
    config = replace(loopback_config(seed=1), enable_dht=True, dht=dht)
    async with Session(config) as seed_session:
        seeding = await seed_session.add(payload.metainfo, payload.root, seed=True)
        await _complete(seeding, 10)
        port = seed_session.listen_port
        floods = [
            DatagramFlood("127.0.0.1", port, kind="krpc", rate=3000, sockets=8),
            DatagramFlood("127.0.0.1", port, kind="utp", rate=2000, sockets=4),
        ]
        try:
            for flood in floods:
                await flood.start()
            await wait_until(
                lambda: all(f.stats.opened > 1000 for f in floods), timeout=10, what="floods under way"
            )
            async with Session(loopback_config(seed=2)) as leecher:
                torrent = await leecher.add(payload.metainfo, tmp_path / "down", peers=[f"127.0.0.1:{port}"])
                await _complete(torrent, 60)
            engine = seed_session.dht.engine
            assert len(engine.table) == 0  # random ids at a flooder's ports never answer our pings
            assert len(engine.limiter) <= 500 and engine.pending_count <= dht.max_pending
            assert engine.stats.rate_limited > 0
            utp = seed_session.utp
            assert utp is not None and len(utp.manager._by_key) <= utp.manager.config.max_connections
        finally:
            for flood in floods:
                await flood.aclose()
    assert_same_files(payload.metainfo, payload.root, tmp_path / "down")


# --------------------------------------------------------------------------- bounded peer lists


def test_pex_cannot_fill_the_candidate_pool_and_failed_addresses_make_room() -> None:
    from torrentgoat.primitives import PeerAddress
    from torrentgoat.torrent.peers import CandidatePool

    pool = CandidatePool(limit=200)
    pex = [PeerAddress(f"8.{i // 250}.{i % 250}.1", 6881) for i in range(5000)]
    assert sum(pool.add(a, "pex") for a in pex) == 100  # half the pool at most
    tracker = [PeerAddress(f"9.{i // 250}.{i % 250}.1", 6881) for i in range(150)]
    assert sum(pool.add(a, "tracker") for a in tracker) == 100  # the rest is the trackers'
    assert len(pool.candidates) == 200
    for address in pex[:10]:
        pool.failed(address, 0.0)
    assert sum(pool.add(a, "tracker") for a in tracker[100:]) == 10  # failing addresses gave way
    assert len(pool.candidates) == 200
