"""A seed whose verified data changes or vanishes on disk (BEP 54 ``lt_donthave``), end to end.

Instead of stopping, the seed takes the pieces of the affected file back, tells its peers
(``lt_donthave``), checks them again, announces the ones still good and fetches the others again
(or, seeding only, drops them).  It never sends a byte it has not verified: a leecher sees no hash
failure, and completes from another seed.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace
from pathlib import Path

from torrentgoat.primitives import PeerAddress
from torrentgoat.session import Session
from torrentgoat.testing.hostile import RawPeer
from torrentgoat.testing.swarm import (
    MiB,
    Payload,
    assert_same_files,
    describe,
    loopback_config,
    make_file_payload,
    make_model_payload,
    wait_until,
)
from torrentgoat.torrent import DataLost, DataRechecked, Torrent, TorrentEvent, TorrentState
from torrentgoat.wire import codec
from torrentgoat.wire.messages import (
    BitfieldMsg,
    Extended,
    ExtendedHandshake,
    Have,
    HaveAll,
    Interested,
)

PIECE = 256 * 1024


async def _complete(torrent: Torrent, timeout: float = 30.0) -> None:
    try:
        await asyncio.wait_for(torrent.wait_complete(), timeout)
    except TimeoutError:
        raise AssertionError(f"not complete after {timeout} s: {describe(torrent)}") from None


class _Recorder:
    def __init__(self, torrent: Torrent) -> None:
        self.events: list[TorrentEvent] = []
        self.states: list[str] = []
        self.task = asyncio.create_task(self._run(torrent))

    async def _run(self, torrent: Torrent) -> None:
        async for event in torrent.events():
            self.events.append(event)
            if not self.states or self.states[-1] != torrent.state:
                self.states.append(str(torrent.state))


async def _seed_copy(session: Session, payload: Payload, where: Path, **config: object) -> Torrent:
    """Seed a private copy of the payload (the test may damage it) and wait until its complete files
    are watched."""
    where.mkdir()
    name = payload.name
    src, dst = payload.root / name, where / name
    if src.is_dir():
        import shutil

        shutil.copytree(src, dst)
    else:
        dst.write_bytes(src.read_bytes())
    torrent = await session.add(
        payload.metainfo, where, config=replace(session.config.torrent, seed=True, **config)
    )  # type: ignore[arg-type]
    await _complete(torrent)
    await wait_until(
        lambda: torrent.recovery.watch is not None and bool(torrent.recovery.watch.watched),
        timeout=10,
        what="the seed to watch its files",
    )
    return torrent


def _alter(path: Path, offset: int, length: int = 1000) -> None:
    """Overwrite bytes in place (same size, new content), as another program would."""
    with path.open("r+b") as handle:
        handle.seek(offset)
        old = handle.read(length)
        handle.seek(offset)
        handle.write(bytes(b ^ 0x5A for b in old))


async def test_altered_piece_is_taken_back_never_served_and_fetched_again(tmp_path: Path) -> None:
    payload = make_file_payload(tmp_path, 4 * MiB, piece_length=PIECE, seed=90)
    info = payload.metainfo.info
    async with (
        Session(loopback_config(seed=1)) as broken_session,
        Session(loopback_config(seed=2)) as honest_session,
        Session(loopback_config(seed=3)) as leecher_session,
    ):
        broken = await _seed_copy(broken_session, payload, tmp_path / "broken")
        recorder = _Recorder(broken)
        _alter(tmp_path / "broken" / info.name, 5 * PIECE + 100)  # piece 5 no longer matches
        leech = await leecher_session.add(
            payload.metainfo, tmp_path / "down", peers=[f"127.0.0.1:{broken_session.listen_port}"]
        )
        await wait_until(
            lambda: any(isinstance(e, DataRechecked) for e in recorder.events),
            timeout=20,
            what="the broken seed to notice and check again",
        )
        assert broken.have is not None and 5 not in broken.have and broken.have.count == info.num_pieces - 1
        # the leecher got everything but piece 5 from it; the broken seed no longer advertises it
        await wait_until(
            lambda: leech.have is not None and leech.have.count == info.num_pieces - 1,
            timeout=20,
            what="all but piece 5",
        )
        views = [wp.pieces() for wp in leech.peers.values()]
        assert views and all(v is not None and 5 not in v for v in views)
        assert leech.picker is not None and leech.picker.availability(5) == 0  # it heard lt_donthave
        honest = await honest_session.add(payload.metainfo, payload.root, seed=True)
        await _complete(honest)
        leech.add_peers([PeerAddress("127.0.0.1", honest_session.listen_port)], "manual")
        broken.add_peers([PeerAddress("127.0.0.1", honest_session.listen_port)], "manual")
        await _complete(leech)
        assert leech.hash_failures == 0, "the broken seed sent bytes it had not verified"
        # the broken seed fetched piece 5 again and is whole and seeding again
        await wait_until(
            lambda: broken.state == TorrentState.SEEDING and broken.is_complete,
            timeout=30,
            what="the broken seed to heal",
        )
        assert broken.error is None
        lost = [e for e in recorder.events if isinstance(e, DataLost)]
        rechecked = [e for e in recorder.events if isinstance(e, DataRechecked)]
        assert lost and lost[0].pieces == info.num_pieces  # a one-file torrent: every piece is suspect
        assert rechecked and rechecked[0].verified == info.num_pieces - 1
        assert "downloading" in recorder.states
        await wait_until(  # the recorder hears states through the event queue, a moment after they change
            lambda: recorder.states[-1] == "seeding", timeout=10, what="the recorder to hear 'seeding'"
        )
    assert_same_files(payload.metainfo, payload.root, tmp_path / "down")
    assert_same_files(payload.metainfo, payload.root, tmp_path / "broken")


async def test_truncated_file_seeding_only_drops_the_lost_pieces(tmp_path: Path) -> None:
    payload = make_file_payload(tmp_path, 3 * MiB, piece_length=PIECE, seed=91)
    info = payload.metainfo.info
    async with (
        Session(loopback_config(seed=1)) as broken_session,
        Session(loopback_config(seed=2)) as honest_session,
        Session(loopback_config(seed=3)) as leecher_session,
    ):
        broken = await _seed_copy(broken_session, payload, tmp_path / "broken", refetch_lost=False)
        recorder = _Recorder(broken)
        os.truncate(tmp_path / "broken" / info.name, 6 * PIECE + 5)  # pieces 6.. are gone
        leech = await leecher_session.add(
            payload.metainfo, tmp_path / "down", peers=[f"127.0.0.1:{broken_session.listen_port}"]
        )
        await wait_until(
            lambda: leech.have is not None and leech.have.count == 6, timeout=20, what="the 6 pieces left"
        )
        assert broken.have is not None and list(broken.have) == list(range(6))
        assert broken.is_complete and broken.state == TorrentState.SEEDING  # seeding only: it wants no more
        assert broken.counters.wanted == 6 * PIECE and broken.error is None
        honest = await honest_session.add(payload.metainfo, payload.root, seed=True)
        await _complete(honest)
        leech.add_peers([PeerAddress("127.0.0.1", honest_session.listen_port)], "manual")
        await _complete(leech)
        assert leech.hash_failures == 0
        assert broken.downloaded == 0  # it fetched nothing back
        assert [e.verified for e in recorder.events if isinstance(e, DataRechecked)] == [6]
    assert_same_files(payload.metainfo, payload.root, tmp_path / "down")


async def test_a_changed_file_is_noticed_without_any_request_and_peers_hear_lt_donthave(
    tmp_path: Path,
) -> None:
    """The file watch's timer alone notices; only the changed file's pieces are taken back, and a peer
    that offered ``lt_donthave`` hears it for each of them, then ``have`` for the ones still good."""
    payload = make_model_payload(tmp_path, shards=2, shard_size=1 * MiB + 12345, piece_length=PIECE, seed=92)
    info = payload.metainfo.info
    shard = next(i for i, f in enumerate(info.files) if f.path[-1].endswith("00002-of-00002.safetensors"))
    entry = info.files[shard]
    first, last = entry.offset // PIECE, (entry.offset + entry.length - 1) // PIECE
    async with Session(loopback_config(seed=1)) as session:
        seed = await _seed_copy(session, payload, tmp_path / "copy", file_check_interval=0.2)
        async with await RawPeer.connect("127.0.0.1", session.listen_port) as peer:
            await peer.handshake(info.info_hash, reserved=codec.make_reserved(extensions=True, fast=True))
            await peer.send(
                Extended(
                    ext_id=0, payload=codec.encode_extended_handshake(ExtendedHandshake(m={"lt_donthave": 9}))
                ),
                Interested(),
            )
            assert isinstance(await peer.read_until((HaveAll, BitfieldMsg)), HaveAll | BitfieldMsg)
            _alter(tmp_path / "copy" / payload.name / Path(*entry.path[1:]), entry.length // 2)
            changed = (entry.offset + entry.length // 2) // PIECE
            taken_back: set[int] = set()
            announced: set[int] = set()
            suspects = set(range(first, last + 1))
            while announced | {changed} != suspects or not suspects <= taken_back:
                message = await peer.read_message(timeout=20)
                assert message is not None, "the seed hung up"
                if isinstance(message, Extended) and message.ext_id == 9:
                    taken_back.add(codec.decode_dont_have(message.payload).index)
                elif isinstance(message, Have):
                    announced.add(message.index)
            assert taken_back == suspects  # only the changed file's pieces
            assert changed not in announced and changed in taken_back
        assert seed.error is None
