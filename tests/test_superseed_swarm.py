"""Super-seeding (BEP 16) end to end: a torrentgoat seed with ``super_seed=True`` on 127.0.0.1.

Shown here:

* a scripted peer sees ``have none`` and then ``have`` for exactly two pieces; a request for any other
  piece is rejected (BEP 6), a request for a revealed one is served; announcing a revealed piece brings
  a new one;
* one torrentgoat leecher alone gets everything from a super-seed (the seed keeps revealing);
* a seed and four torrentgoat leechers: everyone completes with identical bytes, and super-seeding
  ends once the leechers hold every piece between them;
* ``python -m torrentgoat seed --super-seed --optimistic-unchoke least-progress`` serves two leechers
  and exits 0 on SIGTERM;
* the cluster-push recipe (super-seeding origin, leechers with ``least-progress`` optimistic unchokes)
  completes, and the choke scheduler is the one configured;
* libtorrent leeches from a super-seeding torrentgoat seed, and torrentgoat leeches from a
  super-seeding libtorrent seed (interop; aria2: ``test_interop_aria2.py``).
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest

from tests.conftest import require_libtorrent
from tests.interop_helpers import ProcessGroup, free_port, make_shard_torrent, processes, wait_listening
from torrentgoat.choker import ChokerConfig
from torrentgoat.errors import ConfigError
from torrentgoat.session import Session
from torrentgoat.testing.hostile import RawPeer
from torrentgoat.testing.swarm import (
    MiB,
    assert_same_files,
    describe,
    local_swarm,
    loopback_config,
    make_file_payload,
)
from torrentgoat.testing.timing import scaled
from torrentgoat.torrent import Torrent, TorrentConfig
from torrentgoat.wire import codec
from torrentgoat.wire.messages import (
    Have,
    HaveNone,
    Interested,
    Piece,
    RejectRequest,
    Request,
    Unchoke,
)

__all__ = ["processes"]  # the fixture, imported for pytest

EXT_FAST = codec.make_reserved(extensions=True, fast=True)
SUPER = TorrentConfig(seed=True, super_seed=True)


async def _complete(torrent: Torrent, timeout: float = 30.0) -> None:
    timeout = scaled(timeout)
    try:
        await asyncio.wait_for(torrent.wait_complete(), timeout)
    except TimeoutError:
        raise AssertionError(f"not complete after {timeout} s: {describe(torrent)}") from None


async def test_scripted_peer_sees_only_revealed_pieces(tmp_path: Path) -> None:
    payload = make_file_payload(tmp_path, 4 * MiB, piece_length=256 * 1024, seed=1)
    info = payload.metainfo.info
    async with Session(loopback_config(torrent=SUPER)) as session:
        torrent = await session.add(payload.metainfo, payload.root, config=SUPER)
        await _complete(torrent)
        assert torrent.superseeding is not None and torrent.superseeding.active
        async with await RawPeer.connect("127.0.0.1", session.listen_port) as peer:
            await peer.handshake(info.info_hash, reserved=EXT_FAST)
            assert isinstance(await peer.read_message(), HaveNone)  # BEP 16: no data, it says
            await peer.send(HaveNone(), Interested())
            revealed: set[int] = set()
            while len(revealed) < 2:
                msg = await peer.read_until((Have, Unchoke))
                if isinstance(msg, Have):
                    revealed.add(msg.index)
            hidden = next(i for i in range(info.num_pieces) if i not in revealed)
            first = min(revealed)
            await peer.read_until(Unchoke)
            await peer.send(
                Request(index=hidden, begin=0, length=16384), Request(index=first, begin=0, length=16384)
            )
            rejected = await peer.read_until(RejectRequest)
            assert isinstance(rejected, RejectRequest) and rejected.index == hidden
            block = await peer.read_until(Piece)
            assert isinstance(block, Piece) and block.index == first
            await peer.send(Have(index=first))  # "I have it now": the seed reveals another piece
            more = await peer.read_until(Have)
            assert isinstance(more, Have) and more.index not in revealed


async def test_lone_leecher_gets_everything(tmp_path: Path) -> None:
    payload = make_file_payload(tmp_path, 6 * MiB + 77, piece_length=256 * 1024, seed=2)
    async with Session(loopback_config(torrent=SUPER)) as seeder:
        seed = await seeder.add(payload.metainfo, payload.root, config=SUPER)
        await _complete(seed)
        async with Session(loopback_config(seed=5)) as leecher:
            dest = tmp_path / "down"
            torrent = await leecher.add(payload.metainfo, dest, peers=[f"127.0.0.1:{seeder.listen_port}"])
            await _complete(torrent)
    assert_same_files(payload.metainfo, payload.root, dest)


async def test_swarm_completes_and_super_seeding_ends(tmp_path: Path) -> None:
    payload = make_file_payload(tmp_path, 12 * MiB + 5, piece_length=256 * 1024, seed=3)
    seeder_config = loopback_config(seed=0, torrent=SUPER)
    async with local_swarm(payload, tmp_path, leechers=4, seeder_config=seeder_config) as swarm:
        assert swarm.seed_torrent.superseeding is not None
        await swarm.wait_complete(timeout=60)
        assert not swarm.seed_torrent.superseeding.active  # the leechers held every piece: normal seeding
    for directory in swarm.leecher_dirs:
        assert_same_files(payload.metainfo, payload.root, directory)


async def test_cluster_push_recipe(tmp_path: Path) -> None:
    payload = make_file_payload(tmp_path, 8 * MiB + 1, piece_length=256 * 1024, seed=6)
    nodes = TorrentConfig(seed=True, choker=ChokerConfig(optimistic_mode="least-progress"))
    async with local_swarm(
        payload,
        tmp_path,
        leechers=3,
        seeder_config=loopback_config(seed=0, torrent=SUPER),
        leecher_config=loopback_config(torrent=nodes),
    ) as swarm:
        await swarm.wait_complete(timeout=60)
        for torrent in swarm.torrents:
            assert torrent.exchange.choking.choker.config.optimistic_mode == "least-progress"
    for directory in swarm.leecher_dirs:
        assert_same_files(payload.metainfo, payload.root, directory)


def test_optimistic_unchoke_is_validated() -> None:
    with pytest.raises(ConfigError):
        ChokerConfig(optimistic_mode="loudest")  # type: ignore[arg-type]


@pytest.mark.interop
async def test_libtorrent_leeches_from_super_seed(tmp_path: Path, processes: ProcessGroup) -> None:
    require_libtorrent()
    shared = make_shard_torrent(tmp_path, 8 * MiB + 3, piece_length=256 * 1024, seed=4)
    dests = [tmp_path / f"lt-{i}" for i in range(2)]
    async with Session(loopback_config(torrent=SUPER)) as session:
        torrent = await session.add(shared.metainfo, shared.root, config=SUPER)
        await _complete(torrent)
        leeches = []
        for dest in dests:
            dest.mkdir()
            leeches.append(
                await processes.libtorrent(
                    "leech",
                    directory=dest,
                    torrent=shared.torrent_path,
                    peers=[f"127.0.0.1:{session.listen_port}"],
                    extra=["--exit-after-finish", "30"],
                )
            )
        await asyncio.gather(*(leech.wait_event("finished", timeout=40) for leech in leeches))
    for dest in dests:
        assert_same_files(shared.metainfo, shared.root, dest)


@pytest.mark.interop
@pytest.mark.parametrize("pieces", [1, 3])
async def test_lone_libtorrent_leech_gets_the_last_piece(
    tmp_path: Path, processes: ProcessGroup, pieces: int
) -> None:
    """libtorrent drops a seed whose ``have`` completes its view while it is not interested (it checks
    for a redundant seed before updating its interest).  Three pieces: the first two are revealed at
    once, and the third, revealed alone once libtorrent had both, got us dropped one piece short; one
    piece: the lone ``have`` did.  The last piece now goes out with another (superseed.py), and one
    piece is seeded normally."""
    require_libtorrent()
    shared = make_shard_torrent(tmp_path, pieces * 16384 - 100, piece_length=16384, seed=9)
    async with Session(loopback_config(torrent=SUPER)) as session:
        torrent = await session.add(shared.metainfo, shared.root, config=SUPER)
        await _complete(torrent)
        dest = tmp_path / "lt"
        dest.mkdir()
        leech = await processes.libtorrent(
            "leech", directory=dest, torrent=shared.torrent_path, peers=[f"127.0.0.1:{session.listen_port}"]
        )
        await leech.wait_event("finished", timeout=40)
    assert_same_files(shared.metainfo, shared.root, dest)


@pytest.mark.interop
async def test_torrentgoat_leeches_from_libtorrent_super_seed(
    tmp_path: Path, processes: ProcessGroup
) -> None:
    """The other direction: libtorrent super-seeds (``torrent_flags.super_seeding``), two torrentgoat
    leechers that know each other get everything."""
    require_libtorrent()
    shared = make_shard_torrent(tmp_path, 6 * MiB + 5, piece_length=256 * 1024, seed=7)
    seeder = await processes.libtorrent(
        "seed", directory=shared.root, torrent=shared.torrent_path, extra=["--super-seed"]
    )
    dests = [tmp_path / f"down-{i}" for i in range(2)]
    async with Session(loopback_config(seed=11)) as a, Session(loopback_config(seed=12)) as b:
        ta = await a.add(shared.torrent_path, dests[0], peers=[f"127.0.0.1:{seeder.port}"], seed=True)
        tb = await b.add(
            shared.torrent_path,
            dests[1],
            peers=[f"127.0.0.1:{seeder.port}", f"127.0.0.1:{a.listen_port}"],
            seed=True,
        )
        await asyncio.gather(_complete(ta, 40), _complete(tb, 40))
    for dest in dests:
        assert_same_files(shared.metainfo, shared.root, dest)


async def test_cli_seed_super_seed_with_least_progress(tmp_path: Path, processes: ProcessGroup) -> None:
    """``python -m torrentgoat seed --super-seed --optimistic-unchoke least-progress`` serves two
    torrentgoat leechers, then stops cleanly on SIGTERM."""
    payload = make_file_payload(tmp_path, 5 * MiB + 3, piece_length=256 * 1024, seed=8)
    port = free_port()
    argv = [sys.executable, "-m", "torrentgoat", "seed", str(payload.torrent_path), str(payload.root)]
    argv += ["--port", str(port), "--listen", "127.0.0.1", "--listen6", "", "--no-dht", "--no-trackers"]
    argv += ["--super-seed", "--optimistic-unchoke", "least-progress", "--quiet"]
    seeder = await processes.spawn("torrentgoat-super-seed", argv)
    await wait_listening(port, timeout=15)
    dests = [tmp_path / f"down-{i}" for i in range(2)]
    async with Session(loopback_config(seed=21)) as a, Session(loopback_config(seed=22)) as b:
        ta = await a.add(payload.metainfo, dests[0], peers=[f"127.0.0.1:{port}"], seed=True)
        tb = await b.add(
            payload.metainfo, dests[1], peers=[f"127.0.0.1:{port}", f"127.0.0.1:{a.listen_port}"]
        )
        await asyncio.gather(_complete(ta), _complete(tb))
    for dest in dests:
        assert_same_files(payload.metainfo, payload.root, dest)
    assert seeder.process is not None and seeder.returncode is None
    seeder.process.send_signal(signal.SIGTERM)
    code = await seeder.wait_exit(timeout=10)
    assert code == 0, f"seed exited {code} on SIGTERM\n{seeder.tail()}"
