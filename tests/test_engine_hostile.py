"""Hostile peers against the torrentgoat engine (Session / Torrent) on 127.0.0.1.

The attackers are scripted with :mod:`torrentgoat.testing.hostile` (raw bytes through the wire
codec, no protocol engine to keep them honest).  All peers share 127.0.0.1, so bans are per
(host, port): hostile seeds listen on their own ports and are dialled through ``peers=[...]``.

(a) lying seeds: corrupt or garbage blocks next to an honest seeder (download completes, the liar
    is banned and never dialled again); a liar about one piece only (its good pieces are kept);
    sybils that each poison one block of pieces the honest seed completes (smart ban: only they
    are banned); silent seeds, seeds rejecting every request (no request storm) or one piece (the
    others still come promptly), silent seeds squatting every ``max_peers`` slot; lying BEP 9
    metadata (corrupt, refused, oversized, undersized, unsafe paths: never used, nothing written);
(b) oversized / malformed messages (length prefix 2^31, bitfield with spare bits, 1 MiB request,
    ``have`` out of range, garbage after the handshake ...): dropped, while a download on the same
    session completes; a 100 MiB frame is refused from its header; a peer that never reads gets a
    bounded buffer; PEX cannot aim us at unspecified/multicast/broadcast addresses; idle squatters
    are evicted for a newcomer; ``Session.close`` is prompt whatever is connected;
(c) requests for pieces we do not have, requests while choked, requests outside a piece: rejected
    (BEP 6) or dropped, never a crash; a well-behaved request afterwards is served;
(d) a handshake for another info-hash, a wrong protocol string, a truncated or missing handshake:
    closed.

After every attack a normal torrentgoat leecher still downloads from the attacked session.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import shutil
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from torrentgoat.bitfield import Bitfield
from torrentgoat.config import IOConfig
from torrentgoat.magnet import Magnet
from torrentgoat.mse import MSEConfig
from torrentgoat.picker import PickerConfig
from torrentgoat.primitives import PeerAddress
from torrentgoat.session import Session
from torrentgoat.testing.hostile import (
    HostileSeeder,
    RawPeer,
    forged_info,
    frame,
    hostile_peer_id,
    malformed_frames,
    storage_reader,
)
from torrentgoat.testing.swarm import (
    MiB,
    Payload,
    assert_same_files,
    describe,
    loopback_config,
    make_file_payload,
    make_model_payload,
)
from torrentgoat.testing.timing import scaled
from torrentgoat.torrent import (
    MetadataReceived,
    PeerBanned,
    PieceFailed,
    Torrent,
    TorrentConfig,
    TorrentEvent,
)
from torrentgoat.wire import codec
from torrentgoat.wire.connection import WireConfig
from torrentgoat.wire.fast import allowed_fast_set
from torrentgoat.wire.messages import (
    BitfieldMsg,
    Extended,
    ExtendedHandshake,
    Handshake,
    Have,
    HaveAll,
    HaveNone,
    Interested,
    Pex,
    PexPeer,
    Piece,
    RejectRequest,
    Request,
    Unchoke,
)
from torrentgoat.wire.pex import encode_pex

EXT_FAST = codec.make_reserved(extensions=True, fast=True)
PLAIN = codec.make_reserved(extensions=False, fast=False)


async def _complete(torrent: Torrent, timeout: float = 20.0) -> None:
    timeout = scaled(timeout)
    try:
        await asyncio.wait_for(torrent.wait_complete(), timeout)
    except TimeoutError:
        raise AssertionError(f"not complete after {timeout} s: {describe(torrent)}") from None


async def _seed(session: Session, payload: Payload) -> Torrent:
    torrent = await session.add(payload.metainfo, payload.root, seed=True)
    await _complete(torrent)
    return torrent


async def _normal_download(session: Session, payload: Payload, dest: Path) -> None:
    """A fresh, well-behaved torrentgoat leecher downloads ``payload`` from ``session``."""
    async with Session(loopback_config(seed=99)) as leecher:
        torrent = await leecher.add(payload.metainfo, dest, peers=[f"127.0.0.1:{session.listen_port}"])
        await _complete(torrent)
        assert torrent.hash_failures == 0
    assert_same_files(payload.metainfo, payload.root, dest)


class _Recorder:
    def __init__(self, torrent: Torrent) -> None:
        self.events: list[TorrentEvent] = []
        self.task = asyncio.create_task(self._run(torrent))

    async def _run(self, torrent: Torrent) -> None:
        async for event in torrent.events():
            self.events.append(event)

    def of(self, kind: type) -> list[TorrentEvent]:
        return [e for e in self.events if isinstance(e, kind)]


# --------------------------------------------------------------------------- (a) corrupt seeds


@pytest.mark.parametrize("behaviour", ["corrupt", "garbage"])
async def test_corrupt_seed_is_banned_and_download_completes(tmp_path: Path, behaviour: str) -> None:
    payload = make_file_payload(tmp_path, 3 * MiB + 5000, piece_length=256 * 1024, seed=31)
    info = payload.metainfo.info
    dest = tmp_path / "down"
    async with (
        HostileSeeder(info, storage_reader(info, payload.root), behaviour=behaviour) as liar,
        Session(loopback_config(seed=1, upload_limit=2 * MiB)) as honest,  # slow: the liar gets work
        Session(loopback_config(seed=2)) as leecher,
    ):
        await _seed(honest, payload)
        torrent = await leecher.add(
            payload.metainfo, dest, peers=[liar.address, f"127.0.0.1:{honest.listen_port}"]
        )
        recorder = _Recorder(torrent)
        await _complete(torrent, 30)
        liar_address = PeerAddress("127.0.0.1", liar.port)
        assert liar.stats.corrupt_blocks_sent > 0, "the liar was never asked for anything"
        assert torrent.hash_failures >= 1
        assert liar_address in torrent.pool.banned
        banned = recorder.of(PeerBanned)
        assert [e.address for e in banned] == [liar_address]  # type: ignore[attr-defined]
        assert recorder.of(PieceFailed)
        await _wait(lambda: liar.stats.closed_by_peer >= 1, 10, lambda: describe(torrent))
        assert liar.stats.peer_ids.count(leecher.peer_id) == 1  # dropped, never dialled again
        assert torrent.verified_bytes == torrent.wanted_bytes == info.total_length
    assert_same_files(payload.metainfo, payload.root, dest)


async def test_seed_corrupting_one_piece_is_banned_and_only_that_piece_is_fetched_again(
    tmp_path: Path,
) -> None:
    """The liar is the only peer at first and lies about piece 3 only: its other pieces are kept, the
    sole contributor of a failed piece is banned at once (core.py ``_piece_failed``), and an honest
    seeder added afterwards has just piece 3 left to serve."""
    payload = make_model_payload(tmp_path, shards=1, shard_size=3 * MiB + 1, seed=32)
    info = payload.metainfo.info
    dest = tmp_path / "down"
    async with (
        HostileSeeder(info, storage_reader(info, payload.root), behaviour="corrupt", only_pieces={3}) as liar,
        Session(loopback_config(seed=1)) as honest,
        Session(loopback_config(seed=2)) as leecher,
    ):
        honest_torrent = await _seed(honest, payload)
        torrent = await leecher.add(payload.metainfo, dest, peers=[liar.address])
        recorder = _Recorder(torrent)
        liar_address = PeerAddress("127.0.0.1", liar.port)
        await _wait(lambda: bool(recorder.of(PeerBanned)), 20, lambda: describe(torrent))
        assert [e.address for e in recorder.of(PeerBanned)] == [liar_address]  # type: ignore[attr-defined]
        assert [e.index for e in recorder.of(PieceFailed)] == [3]  # type: ignore[attr-defined]
        assert torrent.have is not None
        assert 3 not in torrent.have
        assert not torrent.is_complete
        verified_at_ban = torrent.verified_bytes
        assert verified_at_ban > 0  # the liar's honest pieces were kept
        torrent.add_peers([liar_address], "manual")  # banned addresses are refused
        torrent.add_peers([PeerAddress("127.0.0.1", honest.listen_port)], "manual")
        await _complete(torrent, 20)
        assert liar.stats.peer_ids.count(leecher.peer_id) == 1
        assert torrent.hash_failures == 1
        # the honest seeder served only what was not verified yet when the liar was banned
        assert 0 < honest_torrent.uploaded <= info.total_length - verified_at_ban
    assert_same_files(payload.metainfo, payload.root, dest)


async def _wait(predicate: Callable[[], bool], timeout: float, state: Callable[[], str]) -> None:
    timeout = scaled(timeout)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s: {state()}")
        await asyncio.sleep(0.05)


@pytest.mark.slow
async def test_sybils_poisoning_single_blocks_cannot_get_the_honest_seed_banned(tmp_path: Path) -> None:
    """Three peers each send one corrupt block of a piece and nothing else, so every failed piece
    has the honest seed as a co-contributor.  Regression: each contributor used to get a strike and
    the honest seed was banned after three failures; with smart ban only the senders of the bad
    blocks are."""
    payload = make_file_payload(tmp_path, 3 * MiB, piece_length=256 * 1024, seed=38)
    info = payload.metainfo.info
    read = storage_reader(info, payload.root)
    async with contextlib.AsyncExitStack() as stack:
        sybils = [
            await stack.enter_async_context(
                HostileSeeder(info, read, behaviour="corrupt", only_offsets={0}, others="silent")
            )
            for _ in range(3)
        ]
        honest = await stack.enter_async_context(Session(loopback_config(seed=1, upload_limit=1 * MiB)))
        leecher = await stack.enter_async_context(Session(loopback_config(seed=2)))
        await _seed(honest, payload)
        honest_address = PeerAddress("127.0.0.1", honest.listen_port)
        torrent = await leecher.add(
            payload.metainfo,
            tmp_path / "down",
            peers=[s.address for s in sybils] + [str(honest_address)],
            config=TorrentConfig(snub_timeout=1.0),
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + scaled(20)
        while not torrent.is_complete:
            assert honest_address not in torrent.pool.banned, (
                f"the honest seed was banned after {torrent.hash_failures} failures: {describe(torrent)}"
            )
            assert loop.time() < deadline, describe(torrent)
            await asyncio.sleep(0.05)
        assert sum(s.stats.corrupt_blocks_sent for s in sybils) > 0
        # smart ban: whoever sent a block that differed from the verified piece is banned
        for sybil in sybils:
            if sybil.stats.corrupt_blocks_sent:
                await _wait(
                    lambda s=sybil: PeerAddress("127.0.0.1", s.port) in torrent.pool.banned,  # type: ignore[misc]
                    5,
                    lambda: describe(torrent),
                )
        assert honest_address not in torrent.pool.banned
    assert_same_files(payload.metainfo, payload.root, tmp_path / "down")


async def test_silent_seed_does_not_stall_the_download(tmp_path: Path) -> None:
    """A seed that unchokes and takes requests but never answers: the honest seeder finishes the job
    (end game / snubbing), well before the 30 s snub timeout would matter."""
    payload = make_file_payload(tmp_path, 3 * MiB, piece_length=256 * 1024, seed=33)
    info = payload.metainfo.info
    async with (
        HostileSeeder(info, storage_reader(info, payload.root), behaviour="silent") as silent,
        Session(loopback_config(seed=1, upload_limit=2 * MiB)) as honest,
        Session(loopback_config(seed=2)) as leecher,
    ):
        await _seed(honest, payload)
        torrent = await leecher.add(
            payload.metainfo, tmp_path / "down", peers=[silent.address, f"127.0.0.1:{honest.listen_port}"]
        )
        await _complete(torrent, 20)
        assert silent.stats.requests > 0, "the silent seed was never asked"
    assert_same_files(payload.metainfo, payload.root, tmp_path / "down")


async def test_peer_rejecting_every_request_does_not_cause_a_request_storm(tmp_path: Path) -> None:
    payload = make_file_payload(tmp_path, 4 * MiB, piece_length=256 * 1024, seed=34)
    info = payload.metainfo.info
    blocks = info.total_length // 16384
    async with (
        HostileSeeder(info, storage_reader(info, payload.root), behaviour="reject") as rejecter,
        Session(loopback_config(seed=1)) as honest,
        Session(loopback_config(seed=2)) as leecher,
    ):
        await _seed(honest, payload)
        torrent = await leecher.add(payload.metainfo, tmp_path / "down", peers=[rejecter.address])
        await _wait(lambda: rejecter.stats.requests > 0, 10, lambda: describe(torrent))
        await asyncio.sleep(1.0)
        requests = rejecter.stats.requests
        torrent.add_peers([PeerAddress("127.0.0.1", honest.listen_port)], "manual")
        await _complete(torrent, 20)  # the download itself is fine
    # Every block may be asked for a few times, not thousands of times a second.
    assert requests <= 4 * blocks, f"{requests} requests in 1 s to a peer rejecting all ({blocks} blocks)"


async def test_seed_rejecting_one_piece_still_gives_us_the_others_promptly(tmp_path: Path) -> None:
    payload = make_file_payload(tmp_path, 2 * MiB, piece_length=256 * 1024, seed=37)
    info = payload.metainfo.info
    read = storage_reader(info, payload.root)
    async with (
        HostileSeeder(info, read, behaviour="reject", only_pieces={0}) as picky,
        Session(loopback_config(seed=2)) as leecher,
    ):
        torrent = await leecher.add(payload.metainfo, tmp_path / "down", peers=[picky.address])
        servable = info.num_pieces - 1
        await _wait(
            lambda: torrent.have is not None and torrent.have.count == servable, 3, lambda: describe(torrent)
        )
        assert torrent.have is not None and 0 not in torrent.have


@pytest.mark.parametrize("lie", ["corrupt", "reject", "oversized", "undersized"])
async def test_magnet_metadata_from_a_lying_peer_is_refused(tmp_path: Path, lie: str) -> None:
    """BEP 9: metadata that does not hash to the info-hash (or is refused, or announced as 64 MiB) is
    never used; an honest seeder added later supplies the real info dictionary."""
    payload = make_file_payload(tmp_path, 2 * MiB, piece_length=256 * 1024, seed=35)
    info = payload.metainfo.info
    dest = tmp_path / "down"
    async with (
        HostileSeeder(info, storage_reader(info, payload.root), behaviour="honest", metadata=lie) as liar,
        Session(loopback_config(seed=1)) as honest,
        Session(loopback_config(seed=2)) as leecher,
    ):
        await _seed(honest, payload)
        magnet = dataclasses.replace(
            Magnet.from_metainfo(payload.metainfo), peers=(PeerAddress("127.0.0.1", liar.port),)
        )
        torrent = await leecher.add(magnet.to_uri(), dest)
        recorder = _Recorder(torrent)
        await _wait(lambda: liar.stats.handshakes > 0, 10, lambda: describe(torrent))
        await asyncio.sleep(0.5)
        assert torrent.info is None and torrent.state == "metadata"
        assert not dest.exists() or not any(dest.iterdir()), "files created before the metadata"
        torrent.add_peers([PeerAddress("127.0.0.1", honest.listen_port)], "manual")
        got = await asyncio.wait_for(torrent.wait_metadata(), scaled(10))
        assert got.raw == info.raw
        await _complete(torrent)
        assert len(recorder.of(MetadataReceived)) == 1
    assert_same_files(payload.metainfo, payload.root, dest)


@pytest.mark.slow
async def test_seed_teasing_one_block_per_piece_cannot_exhaust_piece_memory(tmp_path: Path) -> None:
    """A seed answers only the first block of every piece: partial pieces pile up only to
    ``TorrentConfig.picker.max_partial_bytes`` (bounded memory whatever the remote does)."""
    piece_length = 1 * MiB
    payload = make_file_payload(tmp_path, 24 * MiB, piece_length=piece_length, seed=50)
    info = payload.metainfo.info
    teaser = HostileSeeder(
        info,
        storage_reader(info, payload.root),
        behaviour="silent",
        only_offsets=range(16384, piece_length, 16384),  # silent except for block 0
    )
    async with teaser, Session(loopback_config(seed=2)) as leecher:
        config = TorrentConfig(picker=PickerConfig(max_partial_bytes=2 * MiB))
        torrent = await leecher.add(
            payload.metainfo, tmp_path / "down", peers=[teaser.address], config=config
        )
        await _wait(lambda: teaser.stats.blocks_sent > 0, 10, lambda: describe(torrent))
        await asyncio.sleep(1.0)
        assert torrent.buffers.bytes_held <= 2 * MiB, f"{torrent.buffers.bytes_held} bytes of partial pieces"
        assert teaser.stats.requests <= 2 * piece_length // 16384 + 16


async def test_end_game_does_not_wait_for_a_slow_seeds_backlog(tmp_path: Path) -> None:
    """A seed that takes 0.5 s per block holds a queue of requests; at the end those blocks are
    asked of the fast seeder as well (BEP 3 end game), so completion does not wait for them."""
    payload = make_file_payload(tmp_path, 4 * MiB, piece_length=256 * 1024, seed=51)
    info = payload.metainfo.info
    async with (
        HostileSeeder(info, storage_reader(info, payload.root), behaviour="honest", block_delay=0.5) as slow,
        Session(loopback_config(seed=1, upload_limit=4 * MiB)) as fast,  # ~1 s: the slow seed gets work
        Session(loopback_config(seed=2)) as leecher,
    ):
        await _seed(fast, payload)
        torrent = await leecher.add(
            payload.metainfo, tmp_path / "down", peers=[slow.address, f"127.0.0.1:{fast.listen_port}"]
        )
        await _complete(torrent, 20)
        assert slow.stats.requests > 0, "the slow seed was never asked"
        assert slow.stats.blocks_sent < slow.stats.requests, "completion waited for the slow seed's backlog"
    assert_same_files(payload.metainfo, payload.root, tmp_path / "down")


async def test_silent_seeds_holding_every_slot_make_way_for_a_good_peer(tmp_path: Path) -> None:
    payload = make_file_payload(tmp_path, 2 * MiB, piece_length=256 * 1024, seed=36)
    info = payload.metainfo.info
    read = storage_reader(info, payload.root)
    async with (
        HostileSeeder(info, read, behaviour="silent") as first,
        HostileSeeder(info, read, behaviour="silent") as second,
        Session(loopback_config(seed=1)) as honest,
        Session(loopback_config(seed=2)) as leecher,
    ):
        await _seed(honest, payload)
        config = TorrentConfig(max_peers=2, snub_timeout=1.0)
        torrent = await leecher.add(
            payload.metainfo, tmp_path / "down", peers=[first.address, second.address], config=config
        )
        await _wait(
            lambda: first.stats.requests > 0 and second.stats.requests > 0, 10, lambda: describe(torrent)
        )
        torrent.add_peers([PeerAddress("127.0.0.1", honest.listen_port)], "manual")
        await _complete(torrent, 5)
    assert_same_files(payload.metainfo, payload.root, tmp_path / "down")


@pytest.mark.parametrize("paths", [[["..", "..", "escaped.txt"]], [["ok.bin"], ["/abs", "x"]]])
async def test_magnet_whose_metadata_has_unsafe_paths_writes_nothing(
    tmp_path: Path, paths: list[list[str]]
) -> None:
    """The info-hash names a malicious info dictionary (``..`` / absolute paths): it arrives over BEP 9
    and hashes right, but nothing is ever written, and the session keeps working."""
    info, read = forged_info("evil", bytes(range(256)) * 100, paths=paths)
    dest = tmp_path / "sandbox" / "down"
    good = make_file_payload(tmp_path / "good", 1 * MiB, piece_length=256 * 1024, seed=39)
    async with (
        HostileSeeder(info, read, behaviour="honest", metadata="honest") as evil,
        Session(loopback_config(seed=1)) as seeder,
        Session(loopback_config(seed=2)) as leecher,
    ):
        magnet = Magnet(info_hash=info.info_hash, peers=(PeerAddress("127.0.0.1", evil.port),))
        torrent = await leecher.add(magnet.to_uri(), dest)
        await _wait(lambda: evil.stats.metadata_requests > 0, 10, lambda: describe(torrent))
        await asyncio.sleep(1.0)
        assert torrent.info is None or torrent.state in ("stopping", "stopped")
        assert evil.stats.requests == 0  # no block was ever asked for
        await _seed(seeder, good)
        other = await leecher.add(
            good.metainfo, tmp_path / "good-down", peers=[f"127.0.0.1:{seeder.listen_port}"]
        )
        await _complete(other)
    assert not (tmp_path / "sandbox").exists() or not any((tmp_path / "sandbox").rglob("*"))
    assert not (tmp_path / "escaped.txt").exists() and not Path("/abs").exists()


async def test_magnet_whose_metadata_is_invalid_stops_with_the_reason(tmp_path: Path) -> None:
    from torrentgoat.errors import MetainfoError, TorrentGoatError

    info, read = forged_info("evil", bytes(range(256)) * 100, paths=[["..", "..", "escaped.txt"]])
    async with (
        HostileSeeder(info, read, behaviour="honest", metadata="honest") as evil,
        Session(loopback_config(seed=2)) as leecher,
    ):
        magnet = Magnet(info_hash=info.info_hash, peers=(PeerAddress("127.0.0.1", evil.port),))
        torrent = await leecher.add(magnet.to_uri(), tmp_path / "down")
        with pytest.raises(TorrentGoatError, match=r"\.\."):
            await asyncio.wait_for(torrent.wait_complete(), scaled(3))
        assert isinstance(torrent.error, MetainfoError)


# --------------------------------------------------------------------------- (b) malformed messages


async def test_malformed_messages_are_dropped_and_session_keeps_working(tmp_path: Path) -> None:
    payload = make_file_payload(tmp_path, 2 * MiB + 123, piece_length=256 * 1024, seed=41)
    other = make_file_payload(tmp_path / "other", 3 * MiB + 7, piece_length=256 * 1024, seed=42)
    num_pieces = payload.metainfo.info.num_pieces
    frames = malformed_frames(num_pieces)
    frames["unknown id of length 2^31"] = frame(99, bytes(32), length=1 << 31)
    frames["control: keep-alive (valid)"] = bytes(4)
    frames["piece of a request we never made"] = codec.encode_message(
        Piece(index=0, begin=0, data=bytes(16384))
    )
    async with (
        Session(loopback_config(seed=1)) as target,
        Session(loopback_config(seed=3, upload_limit=1 * MiB)) as other_seeder,
    ):
        seeded = await _seed(target, payload)
        await _seed(other_seeder, other)
        # a download runs on the attacked session all along
        running = await target.add(
            other.metainfo, tmp_path / "other-down", peers=[f"127.0.0.1:{other_seeder.listen_port}"]
        )
        results: dict[str, bool] = {}
        for name, data in frames.items():
            async with await RawPeer.connect("127.0.0.1", target.listen_port) as peer:
                handshake = await peer.handshake(payload.metainfo.info_hash, reserved=EXT_FAST)
                assert handshake.info_hash == payload.metainfo.info_hash
                opening = await peer.read_message()
                assert isinstance(opening, HaveAll | BitfieldMsg), opening
                if not name.startswith(("bitfield", "garbage", "length")):
                    await peer.send(HaveNone())
                await peer.send_raw(data)
                bad = not name.startswith(("control", "piece of a request"))
                results[name] = await peer.wait_closed(timeout=5 if bad else 0.5)
        assert results.pop("control: keep-alive (valid)") is False, "a valid message got us dropped"
        unrequested_closed = results.pop("piece of a request we never made")
        assert all(results.values()), f"connections not dropped: {[n for n, ok in results.items() if not ok]}"
        del unrequested_closed  # an unrequested block may be ignored (BEP 6 late blocks) or dropped
        await _complete(running, 30)  # the other download on the same session was not disturbed
        assert seeded.state == "seeding" and not seeded.peers
        await _normal_download(target, payload, tmp_path / "after")
    assert_same_files(other.metainfo, other.root, tmp_path / "other-down")


async def test_slow_drip_of_an_oversized_frame_is_refused_before_it_is_buffered(tmp_path: Path) -> None:
    """A frame announced as 100 MiB is refused from its header (bounded memory), not after 100 MiB."""
    payload = make_file_payload(tmp_path, 1 * MiB, piece_length=256 * 1024, seed=43)
    async with Session(loopback_config(seed=1)) as target:
        await _seed(target, payload)
        async with await RawPeer.connect("127.0.0.1", target.listen_port) as peer:
            await peer.handshake(payload.metainfo.info_hash, reserved=EXT_FAST)
            await peer.read_message()
            await peer.send(HaveNone())
            await peer.send_raw((100 * MiB).to_bytes(4, "big") + bytes([codec.MSG_EXTENDED]))
            assert await peer.wait_closed(timeout=5)
        await _normal_download(target, payload, tmp_path / "after")


async def test_peer_that_never_reads_gets_a_bounded_buffer(tmp_path: Path) -> None:
    """A peer asks for 32 MiB in 128 KiB blocks and stops reading: the seed holds at most its write
    buffer's high mark (4 MiB, aio/peer.py) plus one block for it, and keeps serving others."""
    payload = make_file_payload(tmp_path, 32 * MiB, piece_length=256 * 1024, seed=44)
    small = make_file_payload(tmp_path / "small", 2 * MiB, piece_length=256 * 1024, seed=45)
    info = payload.metainfo.info
    big_block = 128 * 1024
    async with Session(loopback_config(seed=1)) as target:
        seeded = await _seed(target, payload)
        await _seed(target, small)
        async with await RawPeer.connect("127.0.0.1", target.listen_port) as peer:
            sock = peer.writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            await peer.handshake(info.info_hash, reserved=EXT_FAST)
            await peer.read_message()
            await peer.send(HaveNone(), Interested())
            await peer.read_until(Unchoke)
            peer.writer.transport.pause_reading()  # type: ignore[attr-defined]
            requests = [
                Request(index=i, begin=b, length=big_block)
                for i in range(info.num_pieces)
                for b in range(0, info.piece_length, big_block)
            ]
            await peer.send(*requests)
            await asyncio.sleep(1.0)
            (state,) = seeded.peers.values()
            assert state.driver.transport is not None
            buffered = state.driver.transport.get_write_buffer_size()
            assert buffered <= 4 * MiB + big_block + 1024, (
                f"{buffered} bytes buffered for a peer that never reads"
            )
            assert seeded.uploaded < info.total_length
            await _normal_download(target, small, tmp_path / "small-down")  # others are still served


@pytest.mark.slow
async def test_idle_connections_holding_every_slot_do_not_lock_out_a_leecher(tmp_path: Path) -> None:
    """Squatters (handshake, have none, never interested) on every ``max_peers`` slot: a newcomer
    evicts one of them (regression: newcomers used to be refused with 'too many peers' forever)."""
    payload = make_file_payload(tmp_path, 1 * MiB, piece_length=256 * 1024, seed=46)
    info = payload.metainfo.info
    config = loopback_config(seed=1, torrent=TorrentConfig(max_peers=5))
    async with Session(config) as target:
        await _seed(target, payload)
        squatters = []
        try:
            for _ in range(5):
                squatter = await RawPeer.connect("127.0.0.1", target.listen_port)
                squatters.append(squatter)
                await squatter.handshake(info.info_hash, reserved=EXT_FAST)
                await squatter.read_message()
                await squatter.send(HaveNone())
            await asyncio.sleep(2.2)  # past the grace period that protects brand-new connections
            async with Session(loopback_config(seed=2)) as leecher:
                torrent = await leecher.add(
                    payload.metainfo, tmp_path / "down", peers=[f"127.0.0.1:{target.listen_port}"]
                )
                await _complete(torrent, 8)
        finally:
            for squatter in squatters:
                await squatter.close()


async def test_pex_cannot_point_us_at_unspecified_multicast_or_broadcast_addresses(tmp_path: Path) -> None:
    payload = make_file_payload(tmp_path, 1 * MiB, piece_length=256 * 1024, seed=47)
    info = payload.metainfo.info
    dialled: list[object] = []

    async def count(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        dialled.append(writer.get_extra_info("peername"))
        writer.close()

    trap = await asyncio.start_server(count, "127.0.0.1", 0)
    port = trap.sockets[0].getsockname()[1]
    bogus = [PeerAddress(host, port) for host in ("0.0.0.0", "224.0.0.1", "255.255.255.255")]
    try:
        async with Session(loopback_config(seed=2)) as leecher:
            torrent = await leecher.add(payload.metainfo, tmp_path / "down")
            await _wait(lambda: torrent.state == "downloading", 10, lambda: describe(torrent))
            async with await RawPeer.connect("127.0.0.1", leecher.listen_port) as peer:
                await peer.handshake(info.info_hash, reserved=EXT_FAST)
                ours = ExtendedHandshake(m={"ut_pex": 7})
                await peer.send(Extended(ext_id=0, payload=codec.encode_extended_handshake(ours)), HaveNone())
                theirs = await peer.read_until(Extended)
                assert isinstance(theirs, Extended) and theirs.ext_id == 0
                pex_id = codec.decode_extended_handshake(theirs.payload).m["ut_pex"]
                added = tuple(PexPeer(address=a) for a in bogus)
                await peer.send(Extended(ext_id=pex_id, payload=encode_pex(Pex(added=added))))
                await asyncio.sleep(1.5)  # the connector wakes on new candidates at once
                candidates = set(torrent.pool.candidates)
    finally:
        trap.close()
    assert not dialled, f"dialled {dialled} from PEX addresses {bogus}"
    assert not candidates & set(bogus), f"accepted {candidates & set(bogus)}"


async def test_session_closes_promptly_with_hostile_connections_open(tmp_path: Path) -> None:
    """Lingering raw connections (silent, mid-handshake, requesting without reading) and a seed that
    stalls mid-block cannot hold up ``Session.close``; every one of them is hung up on."""
    payload = make_file_payload(tmp_path, 8 * MiB, piece_length=256 * 1024, seed=48)
    other = make_file_payload(tmp_path / "other", 1 * MiB, piece_length=256 * 1024, seed=49)
    info, other_info = payload.metainfo.info, other.metainfo.info
    session = Session(loopback_config(seed=1))
    await session.start()
    peers: list[RawPeer] = []
    staller = HostileSeeder(other_info, storage_reader(other_info, other.root), behaviour="silent")
    async with staller:
        try:
            await _seed(session, payload)
            leeching = await session.add(other.metainfo, tmp_path / "other-down", peers=[staller.address])
            await _wait(lambda: staller.stats.requests > 0, 10, lambda: describe(leeching))
            silent = await RawPeer.connect("127.0.0.1", session.listen_port)
            half = await RawPeer.connect("127.0.0.1", session.listen_port)
            await half.send_raw(
                codec.encode_handshake(Handshake(info_hash=info.info_hash, peer_id=hostile_peer_id()))[:40]
            )
            greedy = await RawPeer.connect("127.0.0.1", session.listen_port)
            peers = [silent, half, greedy]
            await greedy.handshake(info.info_hash, reserved=EXT_FAST)
            await greedy.read_message()
            await greedy.send(HaveNone(), Interested())
            await greedy.read_until(Unchoke)
            greedy.writer.transport.pause_reading()  # type: ignore[attr-defined]
            await greedy.send(*[Request(index=i, begin=0, length=16384) for i in range(info.num_pieces)])
            await asyncio.sleep(0.3)
        finally:
            started = asyncio.get_running_loop().time()
            await asyncio.wait_for(session.close(), scaled(10))
            elapsed = asyncio.get_running_loop().time() - started
        assert elapsed < scaled(5), f"Session.close took {elapsed:.1f} s"
        greedy.writer.transport.resume_reading()  # type: ignore[attr-defined]
        for peer in peers:
            assert await peer.wait_closed(timeout=5)
            await peer.close()
        await _wait(lambda: staller.stats.closed_by_peer >= 1, 5, lambda: str(staller.stats))


# --------------------------------------------------------------------------- (c) bad requests


async def _partial_seed(tmp_path: Path, payload: Payload, session: Session) -> tuple[Torrent, Bitfield]:
    """A torrent that has only the first half of its pieces (the rest of the file is zeroed)."""
    info = payload.metainfo.info
    partial = tmp_path / "partial"
    partial.mkdir()
    copy = partial / info.name
    shutil.copyfile(payload.root / info.name, copy)
    half = info.num_pieces // 2
    with copy.open("r+b") as handle:
        handle.seek(half * info.piece_length)
        handle.write(bytes(info.total_length - half * info.piece_length))
    torrent = await session.add(payload.metainfo, partial, seed=True)  # no peers: stays partial
    await asyncio.wait_for(torrent.wait_metadata(), scaled(5))
    await _wait(lambda: torrent.state == "downloading", 10, lambda: describe(torrent))
    assert torrent.have is not None and torrent.have.count == half, describe(torrent)
    return torrent, torrent.have.copy()


async def test_requests_for_missing_pieces_and_while_choked_are_rejected(tmp_path: Path) -> None:
    payload = make_file_payload(tmp_path, 2 * MiB, piece_length=64 * 1024, seed=51)
    info = payload.metainfo.info
    read = storage_reader(info, payload.root)
    # BEP 6 allowed-fast pieces may be served while choked: test with a piece outside that set
    fast = set(allowed_fast_set("127.0.0.1", info.info_hash, info.num_pieces, 10))
    async with Session(loopback_config(seed=1)) as target:
        torrent, have = await _partial_seed(tmp_path, payload, target)
        missing = next(i for i in range(info.num_pieces) if i not in have)
        owned = next(i for i in have if i not in fast)
        async with await RawPeer.connect("127.0.0.1", target.listen_port) as peer:
            await peer.handshake(info.info_hash, reserved=EXT_FAST)
            opening = await peer.read_message()
            assert isinstance(opening, BitfieldMsg)
            assert Bitfield.from_bytes(opening.data, info.num_pieces).to_bytes() == have.to_bytes()
            await peer.send(HaveNone())
            # before interested / unchoke: BEP 6 says reject
            await peer.send(Request(index=owned, begin=0, length=16384))
            reply = await peer.read_until((RejectRequest, Piece), timeout=5)
            assert reply == RejectRequest(index=owned, begin=0, length=16384)
            # a piece the session does not have: rejected too (never served)
            await peer.send(Interested())
            assert await peer.read_until(Unchoke, timeout=5) is not None
            await peer.send(Request(index=missing, begin=0, length=16384))
            reply = await peer.read_until((RejectRequest, Piece), timeout=5)
            assert reply == RejectRequest(index=missing, begin=0, length=16384)
            # a proper request now gets the verified data
            await peer.send(Request(index=owned, begin=16384, length=16384))
            reply = await peer.read_until((RejectRequest, Piece), timeout=5)
            assert isinstance(reply, Piece) and reply.index == owned and reply.begin == 16384
            assert bytes(reply.data) == read(owned, 16384, 16384)
            read.close()
        assert torrent.state == "downloading"
    async with Session(loopback_config(seed=1)) as target:  # a fresh seeder for the normal download
        await _seed(target, payload)
        await _normal_download(target, payload, tmp_path / "after")


async def test_peer_meeting_a_seed_during_its_check_hears_every_verified_piece(tmp_path: Path) -> None:
    """While the seed still checks its data, a newcomer is told ``have none`` (nothing is verified
    yet), then one ``have`` per piece as the check passes it, and is served afterwards."""
    payload = make_file_payload(tmp_path, 96 * MiB, piece_length=256 * 1024, seed=52)
    info = payload.metainfo.info
    config = dataclasses.replace(loopback_config(seed=1), io=IOConfig(hash_threads=1))
    async with Session(config) as target:
        seeding = await target.add(payload.metainfo, payload.root, seed=True)
        async with await RawPeer.connect("127.0.0.1", target.listen_port) as peer:
            await peer.handshake(info.info_hash, reserved=EXT_FAST)
            opening = await peer.read_message()
            announced = Bitfield(info.num_pieces)
            if isinstance(opening, HaveNone):  # met during the check (the usual case)
                while announced.count < info.num_pieces:
                    message = await peer.read_until(Have, timeout=30)
                    assert isinstance(message, Have), describe(seeding)
                    announced.add(message.index)
            else:  # the check won the race
                assert isinstance(opening, HaveAll), opening
            await _complete(seeding)
            await peer.send(HaveNone(), Interested())
            await peer.read_until(Unchoke)
            await peer.send(Request(index=5, begin=16384, length=16384))
            reply = await peer.read_until((Piece, RejectRequest))
            read = storage_reader(info, payload.root)
            assert isinstance(reply, Piece) and bytes(reply.data) == read(5, 16384, 16384)
            read.close()


async def test_requests_without_fast_extension_for_missing_piece_drop_the_peer(tmp_path: Path) -> None:
    """Without BEP 6 there is no reject: a request while choked is ignored; one for a missing piece drops us."""
    payload = make_file_payload(tmp_path, 2 * MiB, piece_length=256 * 1024, seed=52)
    info = payload.metainfo.info
    async with Session(loopback_config(seed=1)) as target:
        torrent, have = await _partial_seed(tmp_path, payload, target)
        missing = next(i for i in range(info.num_pieces) if i not in have)
        owned = next(iter(have))
        async with await RawPeer.connect("127.0.0.1", target.listen_port) as peer:
            await peer.handshake(info.info_hash, reserved=PLAIN)
            assert isinstance(await peer.read_message(), BitfieldMsg)
            await peer.send(Request(index=owned, begin=0, length=16384))  # choked: ignored
            with pytest.raises(TimeoutError):
                await peer.read_until(Piece, timeout=0.5)
            assert not peer.eof
            await peer.send(Request(index=missing, begin=0, length=16384))
            assert await peer.wait_closed(timeout=5)
        async with await RawPeer.connect("127.0.0.1", target.listen_port) as peer:
            await peer.handshake(info.info_hash, reserved=PLAIN)
            await peer.read_message()
            await peer.send(Interested())
            await peer.read_until(Unchoke, timeout=5)
            await peer.send(Request(index=owned, begin=info.piece_length - 100, length=16384))  # past the end
            assert await peer.wait_closed(timeout=5)
        async with await RawPeer.connect("127.0.0.1", target.listen_port) as peer:
            await peer.handshake(info.info_hash, reserved=PLAIN)
            await peer.read_message()
            await peer.send(Interested())
            await peer.read_until(Unchoke, timeout=5)
            await peer.send(Request(index=info.num_pieces + 3, begin=0, length=16384))  # out of range
            assert await peer.wait_closed(timeout=5)
        assert torrent.state == "downloading" and not torrent.peers


# --------------------------------------------------------------------------- (d) handshakes


async def test_bad_handshakes_are_closed(tmp_path: Path) -> None:
    payload = make_file_payload(tmp_path, 1 * MiB + 1, piece_length=256 * 1024, seed=61)
    config = dataclasses.replace(
        loopback_config(seed=1),
        wire=WireConfig(handshake_timeout=1.0),
        encryption=MSEConfig(handshake_timeout=1.0),  # garbage may be the start of an MSE handshake
    )
    async with Session(config) as target:
        await _seed(target, payload)
        port = target.listen_port
        # another info-hash
        async with await RawPeer.connect("127.0.0.1", port) as peer:
            await peer.send_handshake(b"\x01" * 20)
            assert await peer.read_handshake(timeout=5) is None
            assert await peer.wait_closed(timeout=5)
        # not the BitTorrent protocol string (e.g. an encrypted handshake)
        async with await RawPeer.connect("127.0.0.1", port) as peer:
            await peer.send_raw(b"\x13BitTorrent protocoX" + bytes(48))
            assert await peer.wait_closed(timeout=5)
        async with await RawPeer.connect("127.0.0.1", port) as peer:
            await peer.send_raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert await peer.wait_closed(timeout=5)
        # truncated: half a handshake, then silence (closed by the handshake timeout) ...
        async with await RawPeer.connect("127.0.0.1", port) as peer:
            whole = codec.encode_handshake(
                Handshake(info_hash=payload.metainfo.info_hash, peer_id=hostile_peer_id(), reserved=EXT_FAST)
            )
            await peer.send_raw(whole[:30])
            assert await peer.wait_closed(timeout=8)
        # ... or then end-of-stream
        async with await RawPeer.connect("127.0.0.1", port) as peer:
            await peer.send_raw(whole[:50])
            peer.writer.write_eof()
            assert await peer.wait_closed(timeout=5)
        # silence from the start
        async with await RawPeer.connect("127.0.0.1", port) as peer:
            assert await peer.wait_closed(timeout=8)
        await _normal_download(target, payload, tmp_path / "after")
