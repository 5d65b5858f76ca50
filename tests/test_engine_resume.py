"""Resume, verification and storage safety of the engine (Session / Torrent), on 127.0.0.1.

Shown here:

* a leecher stopped mid-way (``torrent.stop``) and restarted in a new session on the same directory
  checks what is there and downloads only the rest; complete data is complete after the check
  alone; widening a file selection later fetches only the new files; ``stop`` is clean in every
  state; ``seed_time`` and ``seed_ratio`` end seeding;
* a piece corrupted on disk is found by the check and fetched again; the torrent is reported
  complete only after that piece verified; a longer file on disk is cut to the torrent's length;
* seeds serve only verified data: a corrupted piece on a seed's disk is neither announced nor
  sent; a seed whose file is truncated after its check stops claiming the lost pieces; a partial
  seed (one file of an unpadded torrent) can serve that whole file;
* storage safety: an unwritable destination stops the torrent (not the session) with a
  StorageError; symlinks planted in the download directory are never followed;
* ``python -m torrentgoat get``: Ctrl-C (SIGINT) during a slow download exits 130 with the verified
  pieces kept, and a rerun resumes and exits 0.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import signal
import sys
from pathlib import Path

import pytest

from torrentgoat.bitfield import Bitfield
from torrentgoat.metainfo import InfoDict
from torrentgoat.primitives import PeerAddress
from torrentgoat.session import Session
from torrentgoat.testing.hostile import RawPeer
from torrentgoat.testing.swarm import (
    MiB,
    Payload,
    assert_same_files,
    describe,
    files_on_disk,
    loopback_config,
    make_file_payload,
    make_model_payload,
    wait_until,
)
from torrentgoat.testing.timing import scaled
from torrentgoat.torrent import CheckProgressed, Completed, PieceFailed, Torrent, TorrentEvent
from torrentgoat.wire import codec
from torrentgoat.wire.messages import (
    BitfieldMsg,
    HaveNone,
    Interested,
    Piece,
    RejectRequest,
    Request,
    Unchoke,
)


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


class _Recorder:
    def __init__(self, torrent: Torrent) -> None:
        self.events: list[TorrentEvent] = []
        self.task = asyncio.create_task(self._run(torrent))

    async def _run(self, torrent: Torrent) -> None:
        async for event in torrent.events():
            self.events.append(event)

    def kinds(self) -> list[type]:
        return [type(e) for e in self.events]


def _verified_on_disk(info: InfoDict, root: Path) -> Bitfield:
    """Pieces whose bytes on disk hash right (single-file torrents)."""
    have = Bitfield(info.num_pieces)
    path = root / info.name
    if not path.exists():
        return have
    with path.open("rb") as handle:
        for index in range(info.num_pieces):
            handle.seek(index * info.piece_length)
            if hashlib.sha1(handle.read(info.piece_size(index))).digest() == info.piece_hash(index):
                have.add(index)
    return have


def _corrupt_piece(info: InfoDict, root: Path, index: int) -> None:
    path = root / info.name
    with path.open("r+b") as handle:
        handle.seek(index * info.piece_length + 1000)
        byte = handle.read(1)
        handle.seek(index * info.piece_length + 1000)
        handle.write(bytes([byte[0] ^ 0xFF]))


# --------------------------------------------------------------------------- stop and resume


async def test_stopped_leecher_resumes_in_a_new_session_and_fetches_only_the_rest(tmp_path: Path) -> None:
    payload = make_file_payload(tmp_path, 8 * MiB + 999, piece_length=256 * 1024, seed=71)
    info = payload.metainfo.info
    dest = tmp_path / "down"
    async with Session(loopback_config(seed=1, upload_limit=3 * MiB)) as seeder:
        seed_torrent = await _seed(seeder, payload)
        peers = [f"127.0.0.1:{seeder.listen_port}"]
        async with Session(loopback_config(seed=2)) as first:
            torrent = await first.add(payload.metainfo, dest, peers=peers)
            await wait_until(
                lambda: torrent.verified_bytes >= info.total_length // 3, timeout=20, what="a third"
            )
            torrent.stop("paused by the test")
            await asyncio.wait_for(torrent.wait_stopped(), scaled(10))
            assert not torrent.is_complete
            assert torrent.stop_reason == "paused by the test"
            verified_at_stop = torrent.verified_bytes
            pieces_at_stop = torrent.have.copy() if torrent.have is not None else None
        assert verified_at_stop < info.total_length
        assert pieces_at_stop is not None
        on_disk = _verified_on_disk(info, dest)
        assert all(i in on_disk for i in pieces_at_stop), "a piece reported verified is not on disk"
        uploaded_before = seed_torrent.uploaded

        async with Session(loopback_config(seed=3)) as second:
            torrent = await second.add(payload.metainfo, dest, peers=peers)
            recorder = _Recorder(torrent)
            await _complete(torrent, 30)
            assert torrent.hash_failures == 0
            downloaded, wasted = torrent.downloaded, torrent.wasted
            plan = torrent.resume.plan
            await asyncio.sleep(0)
        # the resume data written at stop vouches for what was verified: nothing is read again
        assert plan is not None and plan.used and plan.to_check.count == 0
        assert plan.trusted == pieces_at_stop
        assert CheckProgressed not in recorder.kinds()
        assert downloaded < info.total_length
        assert downloaded - wasted <= info.total_length - verified_at_stop
        assert seed_torrent.uploaded - uploaded_before <= info.total_length - verified_at_stop + wasted
    assert_same_files(payload.metainfo, payload.root, dest)


async def test_seeder_leaving_mid_download_and_another_taking_over(tmp_path: Path) -> None:
    """The only seeder's session closes mid-way: the leecher keeps what it verified (and the blocks
    of pieces in flight) and finishes from a seeder it learns about later."""
    payload = make_file_payload(tmp_path, 4 * MiB, piece_length=256 * 1024, seed=85)
    info = payload.metainfo.info
    dest = tmp_path / "down"
    async with Session(loopback_config(seed=2)) as leecher:
        first = Session(loopback_config(seed=1, upload_limit=2 * MiB))
        await first.start()
        try:
            await _seed(first, payload)
            torrent = await leecher.add(payload.metainfo, dest, peers=[f"127.0.0.1:{first.listen_port}"])
            await wait_until(lambda: torrent.verified_bytes >= 1 * MiB, timeout=10, what="1 MiB verified")
        finally:
            await first.close()
        await wait_until(lambda: not torrent.peers, timeout=5, what="the seeder gone")
        verified = torrent.verified_bytes
        assert not torrent.is_complete and torrent.state == "downloading"
        async with Session(loopback_config(seed=3)) as second:
            second_torrent = await _seed(second, payload)
            torrent.add_peers([PeerAddress("127.0.0.1", second.listen_port)], "manual")
            await _complete(torrent)
            assert second_torrent.uploaded <= info.total_length - verified
    assert_same_files(payload.metainfo, payload.root, dest)


async def test_complete_data_on_disk_is_complete_after_the_check_alone(tmp_path: Path) -> None:
    payload = make_model_payload(tmp_path, shards=2, shard_size=1 * MiB + 17, seed=72)
    copy = tmp_path / "copy"
    shutil.copytree(payload.root, copy)
    async with Session(loopback_config(seed=1)) as session:
        torrent = await session.add(payload.metainfo, copy)  # no peers at all
        await _complete(torrent, 10)
        assert torrent.downloaded == 0
        assert torrent.verified_bytes == torrent.wanted_bytes
        await asyncio.wait_for(torrent.wait_stopped(), scaled(5))
    assert torrent.stop_reason == "complete"


async def test_more_files_selected_later_fetches_only_the_new_ones(tmp_path: Path) -> None:
    """First only the JSON files, then (new session, same directory) everything: the JSON pieces
    are verified from disk, only the shards are downloaded."""
    payload = make_model_payload(tmp_path, shards=2, shard_size=1 * MiB + 4321, seed=76)
    info = payload.metainfo.info
    dest = tmp_path / "down"
    async with Session(loopback_config(seed=1)) as seeder:
        await _seed(seeder, payload)
        peers = [f"127.0.0.1:{seeder.listen_port}"]
        async with Session(loopback_config(seed=2)) as first:
            torrent = await first.add(payload.metainfo, dest, files=["*.json"], peers=peers)
            await _complete(torrent)
            json_bytes = torrent.wanted_bytes
        assert not any(p.endswith(".safetensors") for p in files_on_disk(dest))
        async with Session(loopback_config(seed=3)) as second:
            torrent = await second.add(payload.metainfo, dest, peers=peers)
            await _complete(torrent)
            assert torrent.downloaded - torrent.wasted <= info.total_length - json_bytes
    assert_same_files(payload.metainfo, payload.root, dest)


async def test_stop_before_metadata_and_during_download(tmp_path: Path) -> None:
    """``stop`` is clean in any state: ``wait_complete`` raises, ``wait_stopped`` returns, nothing is
    written before the metadata exists."""
    from torrentgoat.errors import TorrentGoatError
    from torrentgoat.magnet import Magnet

    payload = make_file_payload(tmp_path, 4 * MiB, piece_length=256 * 1024, seed=77)
    dest = tmp_path / "down"
    async with Session(loopback_config(seed=2)) as leecher:
        magnet = Magnet.from_metainfo(payload.metainfo).to_uri()  # no peers: metadata never comes
        torrent = await leecher.add(magnet, dest)
        await wait_until(lambda: torrent.state == "metadata", timeout=10, what="the metadata phase")
        torrent.stop("given up")
        try:
            await asyncio.wait_for(torrent.wait_complete(), scaled(5))
        except TorrentGoatError as exc:
            assert "given up" in str(exc)
        else:
            raise AssertionError("wait_complete returned for a stopped torrent")
        await asyncio.wait_for(torrent.wait_stopped(), scaled(5))
        assert torrent.state == "stopped" and torrent.stop_reason == "given up"
        assert not dest.exists() or not any(dest.iterdir())
        assert payload.metainfo.info_hash.raw not in leecher.torrents  # the session forgot it
    async with Session(loopback_config(seed=1, upload_limit=2 * MiB)) as seeder:
        await _seed(seeder, payload)
        async with Session(loopback_config(seed=2)) as leecher:
            torrent = await leecher.add(payload.metainfo, dest, peers=[f"127.0.0.1:{seeder.listen_port}"])
            await wait_until(lambda: torrent.verified_bytes > 0, timeout=10, what="a first piece")
            torrent.stop("paused")
            await asyncio.wait_for(torrent.wait_stopped(), scaled(5))
            with pytest.raises(TorrentGoatError):
                await torrent.wait_complete()
            again = await leecher.add(payload.metainfo, dest, peers=[f"127.0.0.1:{seeder.listen_port}"])
            await _complete(again)  # re-added in the same session, resumes
    assert_same_files(payload.metainfo, payload.root, dest)


async def test_seed_time_stops_seeding(tmp_path: Path) -> None:
    from torrentgoat.torrent import TorrentConfig

    payload = make_file_payload(tmp_path, 1 * MiB, piece_length=256 * 1024, seed=78)
    async with Session(loopback_config(seed=1)) as session:
        torrent = await session.add(
            payload.metainfo, payload.root, config=TorrentConfig(seed=True, seed_time=1.0)
        )
        await _complete(torrent)
        assert torrent.state == "seeding"
        await asyncio.wait_for(torrent.wait_stopped(), scaled(6))
    assert torrent.stop_reason == "seed time reached"


async def test_seed_ratio_stops_seeding_after_one_copy(tmp_path: Path) -> None:
    from torrentgoat.torrent import TorrentConfig

    payload = make_file_payload(tmp_path, 2 * MiB, piece_length=256 * 1024, seed=82)
    async with Session(loopback_config(seed=1)) as seeder, Session(loopback_config(seed=2)) as leecher:
        seeding = await seeder.add(
            payload.metainfo, payload.root, config=TorrentConfig(seed=True, seed_ratio=1.0)
        )
        await _complete(seeding)
        torrent = await leecher.add(
            payload.metainfo, tmp_path / "down", peers=[f"127.0.0.1:{seeder.listen_port}"]
        )
        await _complete(torrent)
        await asyncio.wait_for(seeding.wait_stopped(), scaled(6))
        assert seeding.stop_reason == "seed ratio reached"
        assert seeding.uploaded >= payload.metainfo.info.total_length
    assert_same_files(payload.metainfo, payload.root, tmp_path / "down")


# --------------------------------------------------------------------------- corruption on disk


async def test_corrupted_piece_on_disk_is_detected_and_fetched_again(tmp_path: Path) -> None:
    payload = make_file_payload(tmp_path, 4 * MiB + 1234, piece_length=256 * 1024, seed=73)
    info = payload.metainfo.info
    dest = tmp_path / "down"
    (dest).mkdir()
    shutil.copyfile(payload.root / info.name, dest / info.name)
    bad = 5
    _corrupt_piece(info, dest, bad)
    assert bad not in _verified_on_disk(info, dest)
    async with Session(loopback_config(seed=1)) as seeder, Session(loopback_config(seed=2)) as leecher:
        seed_torrent = await _seed(seeder, payload)
        torrent = await leecher.add(payload.metainfo, dest)  # no peer yet: only the check runs
        recorder = _Recorder(torrent)
        await wait_until(lambda: torrent.state == "downloading", timeout=10, what="the check")
        assert torrent.have is not None
        assert bad not in torrent.have
        assert torrent.have.count == info.num_pieces - 1
        assert not torrent.is_complete  # not before piece 5 verified
        await asyncio.sleep(0.3)
        assert not torrent.is_complete and Completed not in recorder.kinds()
        torrent.add_peers(
            [PeerAddress("127.0.0.1", seeder.listen_port)],
            "manual",
        )
        await _complete(torrent, 20)
        assert torrent.downloaded - torrent.wasted == info.piece_size(bad)
        assert seed_torrent.uploaded <= info.piece_size(bad) + torrent.wasted
        assert PieceFailed not in recorder.kinds()  # the check found it; nothing failed in transfer
    assert_same_files(payload.metainfo, payload.root, dest)


async def test_seed_with_a_corrupted_piece_never_serves_it(tmp_path: Path) -> None:
    """Seeds serve only verified data: a bad piece on the seed's disk is neither announced nor sent."""
    payload = make_file_payload(tmp_path, 2 * MiB, piece_length=256 * 1024, seed=74)
    info = payload.metainfo.info
    seed_dir = tmp_path / "bad-seed"
    seed_dir.mkdir()
    shutil.copyfile(payload.root / info.name, seed_dir / info.name)
    bad = 2
    _corrupt_piece(info, seed_dir, bad)
    dest = tmp_path / "down"
    async with (
        Session(loopback_config(seed=1)) as bad_seeder,
        Session(loopback_config(seed=3)) as good_seeder,
        Session(loopback_config(seed=2)) as leecher,
    ):
        seeding = await bad_seeder.add(payload.metainfo, seed_dir, seed=True)
        await wait_until(lambda: seeding.state == "downloading", timeout=10, what="the seed's check")
        assert not seeding.is_complete, "a seed with a bad piece reported complete"
        assert seeding.have is not None and bad not in seeding.have
        async with await RawPeer.connect("127.0.0.1", bad_seeder.listen_port) as peer:
            await peer.handshake(info.info_hash, reserved=codec.make_reserved(extensions=False, fast=True))
            opening = await peer.read_message()
            assert isinstance(opening, BitfieldMsg)
            announced = Bitfield.from_bytes(opening.data, info.num_pieces)
            assert bad not in announced and announced.count == info.num_pieces - 1
            await peer.send(HaveNone(), Interested())
            await peer.read_until(Unchoke)
            await peer.send(Request(index=bad, begin=0, length=16384))
            assert await peer.read_until((RejectRequest, Piece)) == RejectRequest(
                index=bad, begin=0, length=16384
            )
        torrent = await leecher.add(payload.metainfo, dest, peers=[f"127.0.0.1:{bad_seeder.listen_port}"])
        await wait_until(
            lambda: torrent.have is not None and torrent.have.count == info.num_pieces - 1,
            timeout=20,
            what="every piece but the bad one",
        )
        await asyncio.sleep(0.5)
        assert not torrent.is_complete and torrent.hash_failures == 0
        assert torrent.have is not None and bad not in torrent.have
        await _seed(good_seeder, payload)
        torrent.add_peers(
            [PeerAddress("127.0.0.1", good_seeder.listen_port)],
            "manual",
        )
        await _complete(torrent, 20)
    assert_same_files(payload.metainfo, payload.root, dest)


async def test_unwritable_destination_stops_the_torrent_not_the_session(tmp_path: Path) -> None:
    """A file where the torrent's folder should be: a clear StorageError, the session lives on."""
    from torrentgoat.errors import StorageError, TorrentGoatError

    payload = make_model_payload(tmp_path, shards=1, shard_size=1 * MiB, seed=79)
    info = payload.metainfo.info
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    (blocked / info.name).write_text("a file where a folder belongs\n")
    async with Session(loopback_config(seed=1)) as seeder, Session(loopback_config(seed=2)) as leecher:
        await _seed(seeder, payload)
        peers = [f"127.0.0.1:{seeder.listen_port}"]
        torrent = await leecher.add(payload.metainfo, blocked, peers=peers)
        with pytest.raises(TorrentGoatError, match=r"(?i)not a directory"):
            await asyncio.wait_for(torrent.wait_complete(), scaled(10))
        await asyncio.wait_for(torrent.wait_stopped(), scaled(5))
        assert isinstance(torrent.error, StorageError)
        assert torrent.stop_reason.startswith("storage error")
        assert (blocked / info.name).read_text() == "a file where a folder belongs\n"
        again = await leecher.add(payload.metainfo, tmp_path / "fine", peers=peers)
        await _complete(again)
    assert_same_files(payload.metainfo, payload.root, tmp_path / "fine")


async def test_longer_file_on_disk_is_cut_to_the_torrents_length(tmp_path: Path) -> None:
    payload = make_file_payload(tmp_path, 1 * MiB + 5, piece_length=256 * 1024, seed=83)
    info = payload.metainfo.info
    dest = tmp_path / "down"
    dest.mkdir()
    shutil.copyfile(payload.root / info.name, dest / info.name)
    with (dest / info.name).open("ab") as handle:
        handle.write(b"G" * 1000)  # e.g. left over from a bigger earlier version of the file
    async with Session(loopback_config(seed=2)) as session:
        torrent = await session.add(payload.metainfo, dest)
        await _complete(torrent)
        assert torrent.downloaded == 0
        await asyncio.wait_for(torrent.wait_stopped(), scaled(5))
    assert_same_files(payload.metainfo, payload.root, dest)


async def test_seed_that_loses_data_after_its_check_stops_claiming_it(tmp_path: Path) -> None:
    """It takes the pieces back (BEP 54) instead of stopping; whatever it claims again, it verified."""
    payload = make_file_payload(tmp_path, 4 * MiB, piece_length=256 * 1024, seed=80)
    info = payload.metainfo.info
    seed_dir = tmp_path / "seed-copy"
    seed_dir.mkdir()
    shutil.copyfile(payload.root / info.name, seed_dir / info.name)
    async with (
        Session(loopback_config(seed=1)) as lossy,
        Session(loopback_config(seed=3)) as honest,
        Session(loopback_config(seed=2)) as leecher,
    ):
        seeding = await lossy.add(payload.metainfo, seed_dir, seed=True)
        await _complete(seeding)
        os.truncate(seed_dir / info.name, 0)  # the data is gone: every read now fails
        torrent = await leecher.add(
            payload.metainfo, tmp_path / "down", peers=[f"127.0.0.1:{lossy.listen_port}"]
        )
        await asyncio.sleep(1.5)
        assert torrent.downloaded == 0  # nothing could be read
        await _seed(honest, payload)
        torrent.add_peers([PeerAddress("127.0.0.1", honest.listen_port)], "manual")
        await _complete(torrent)  # the honest seed makes up for it
        claimed = [i for i in range(info.num_pieces) if seeding.have is not None and i in seeding.have]
        assert seeding.error is None, seeding.error
        original = (payload.root / info.name).read_bytes()
        on_disk = (seed_dir / info.name).read_bytes()
        size = info.piece_length
        wrong = [
            i for i in claimed if on_disk[i * size : (i + 1) * size] != original[i * size : (i + 1) * size]
        ]
        assert not wrong, f"the seed claims {len(wrong)} pieces it does not hold"
    assert_same_files(payload.metainfo, payload.root, tmp_path / "down")


async def test_partial_seed_serves_its_selected_file_to_a_newcomer(tmp_path: Path) -> None:
    from torrentgoat.creation import create_torrent
    from torrentgoat.testing.shards import write_model_folder

    root = tmp_path / "seed"
    write_model_folder(root / "nopad", shards=2, shard_size=1 * MiB + 333, seed=81)
    metainfo = create_torrent(root / "nopad", piece_length=256 * 1024, pad=False, creation_date=None)
    info = metainfo.info
    shard = next(i for i, f in enumerate(info.files) if f.path[-1] == "model-00001-of-00002.safetensors")
    async with Session(loopback_config(seed=1)) as seeder, Session(loopback_config(seed=2)) as partial:
        original = await seeder.add(metainfo, root, seed=True)
        await _complete(original)
        first = await partial.add(
            metainfo,
            tmp_path / "a",
            file_indices=[shard],
            seed=True,
            peers=[f"127.0.0.1:{seeder.listen_port}"],
        )
        await _complete(first)
        original.stop("the original seed leaves")
        await original.wait_stopped()
        async with Session(loopback_config(seed=3)) as newcomer:
            second = await newcomer.add(
                metainfo, tmp_path / "b", file_indices=[shard], peers=[f"127.0.0.1:{partial.listen_port}"]
            )
            await _complete(second, 5)
    assert_same_files(metainfo, root, tmp_path / "b", only=[shard])


@pytest.mark.parametrize("planted", ["folder", "file"])
async def test_symlink_planted_in_the_download_directory_is_never_followed(
    tmp_path: Path, planted: str
) -> None:
    """The torrent's folder (or one of its files) is a symlink leading outside the download
    directory: the torrent stops with a StorageError naming it, and nothing outside is touched."""
    from torrentgoat.errors import StorageError, TorrentGoatError

    payload = make_model_payload(tmp_path, shards=1, shard_size=256 * 1024, seed=84)
    info = payload.metainfo.info
    dest, outside = tmp_path / "down", tmp_path / "outside"
    dest.mkdir()
    outside.mkdir()
    (outside / "victim.json").write_text("precious\n")
    if planted == "folder":
        (dest / info.name).symlink_to(outside, target_is_directory=True)
    else:
        (dest / info.name).mkdir()
        (dest / info.name / "config.json").symlink_to(outside / "victim.json")
    async with Session(loopback_config(seed=1)) as seeder, Session(loopback_config(seed=2)) as leecher:
        await _seed(seeder, payload)
        torrent = await leecher.add(payload.metainfo, dest, peers=[f"127.0.0.1:{seeder.listen_port}"])
        with pytest.raises(TorrentGoatError, match="outside the download directory"):
            await asyncio.wait_for(torrent.wait_complete(), scaled(10))
        await asyncio.wait_for(torrent.wait_stopped(), scaled(5))
        assert isinstance(torrent.error, StorageError)
    assert files_on_disk(outside) == {"victim.json"}
    assert (outside / "victim.json").read_text() == "precious\n"


# --------------------------------------------------------------------------- CLI: Ctrl-C and rerun


async def _cli_get(payload: Payload, dest: Path, port: int) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "torrentgoat", "get", str(payload.torrent_path), "-o", str(dest),
        "--peer", f"127.0.0.1:{port}", "--no-dht", "--no-trackers",
        "--listen", "127.0.0.1", "--listen6", "", "--port", "0", "--quiet",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def _finish(proc: asyncio.subprocess.Process, timeout: float) -> tuple[int, str]:
    try:
        out, err = await asyncio.wait_for(proc.communicate(), scaled(timeout))
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"torrentgoat get did not exit within {timeout} s") from None
    assert proc.returncode is not None
    return proc.returncode, out.decode() + err.decode()


@pytest.mark.slow
async def test_cli_get_sigint_keeps_pieces_and_rerun_resumes(tmp_path: Path) -> None:
    payload = make_file_payload(tmp_path, 8 * MiB, piece_length=256 * 1024, seed=75)
    info = payload.metainfo.info
    dest = tmp_path / "cli-down"
    async with Session(loopback_config(seed=1, upload_limit=1 * MiB)) as slow:
        slow_torrent = await _seed(slow, payload)
        proc = await _cli_get(payload, dest, slow.listen_port)
        await wait_until(
            lambda: _verified_on_disk(info, dest).count >= 3 or proc.returncode is not None,
            timeout=20,
            what="three pieces on disk",
            step=0.2,
        )
        assert proc.returncode is None, "finished before the interrupt"
        proc.send_signal(signal.SIGINT)
        code, output = await _finish(proc, 15)
        assert code == 130, f"exit {code}\n{output}"
        assert "Traceback" not in output, output
        kept = _verified_on_disk(info, dest)
        assert 3 <= kept.count < info.num_pieces
        served_before = slow_torrent.uploaded
    async with Session(loopback_config(seed=2)) as fast:
        fast_torrent = await _seed(fast, payload)
        code, output = await _finish(await _cli_get(payload, dest, fast.listen_port), 40)
        assert code == 0, f"exit {code}\n{output}"
        fetched = fast_torrent.uploaded
    assert served_before > 0
    assert fetched <= info.total_length - kept.count * info.piece_length + 2 * info.piece_length
    assert_same_files(payload.metainfo, payload.root, dest)
    assert files_on_disk(dest) == {info.name}
