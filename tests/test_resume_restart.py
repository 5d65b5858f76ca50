"""Fast resume end to end (issue 15): sessions on 127.0.0.1 restarted on the same download directory.

Shown here, counting every read of a data file (``FileStorage._read_file_into``):

* a complete torrent restarts and is complete without one read of its payload;
* a file whose mtime or size changed is re-checked alone (a shortened one re-fetched, only its pieces);
* a truncated, corrupt or foreign resume file, and none at all, mean a full check;
* a kill during the resume-data write (a half-written temporary file, a rename that never happened)
  resumes from the previous resume data plus a check of the files that changed since;
* ``resume_data=False`` reads everything and writes nothing;
* ``python -m torrentgoat get`` killed with SIGKILL mid-download resumes byte-identical, fetching only
  what was missing.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from torrentgoat.bitfield import Bitfield
from torrentgoat.creation import create_torrent
from torrentgoat.infohashes import TorrentFormat
from torrentgoat.metainfo import InfoDict
from torrentgoat.session import Session
from torrentgoat.storage import FileStorage, Layout
from torrentgoat.storage.resume import (
    RESUME_DIR,
    ResumeData,
    ResumeIdentity,
    load_resume,
    plan_check,
    stamp_files,
)
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
from torrentgoat.torrent import Torrent, TorrentConfig

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter[int]]:
    """Bytes read per file index from every FileStorage in this process."""
    counts: Counter[int] = Counter()
    original = FileStorage._read_file_into

    def counting(self: FileStorage, file_index: int, offset: int, view: memoryview) -> int:
        got = original(self, file_index, offset, view)
        counts[file_index] += max(got, 0)
        return got

    monkeypatch.setattr(FileStorage, "_read_file_into", counting)
    yield counts


async def _complete(torrent: Torrent, timeout: float = 30.0) -> None:
    try:
        await asyncio.wait_for(torrent.wait_complete(), timeout)
    except TimeoutError:
        raise AssertionError(f"not complete after {timeout} s: {describe(torrent)}") from None


async def _start(
    payload: Payload, root: Path, *, seed: int, peers: tuple[str, ...] = (), **config: object
) -> Torrent:
    """One session that runs ``payload`` in ``root`` until complete, then stops it (resume data saved)."""
    tconfig = TorrentConfig(**config)  # type: ignore[arg-type]
    async with Session(loopback_config(seed=seed, torrent=tconfig)) as session:
        torrent = await session.add(payload.metainfo, root, peers=peers, seed=False)
        await _complete(torrent)
        await asyncio.wait_for(torrent.wait_stopped(), 10)
    return torrent


def _data_files(info: InfoDict) -> list[int]:
    return [i for i, f in enumerate(info.files) if not f.pad]


def _shards(info: InfoDict) -> list[int]:
    return [i for i, f in enumerate(info.files) if f.path[-1].endswith(".safetensors")]


def _path(payload: Payload, root: Path, index: int) -> Path:
    return root.joinpath(*payload.metainfo.info.files[index].path)


def _resume_file(payload: Payload, root: Path) -> Path:
    return root / RESUME_DIR / f"{payload.metainfo.info_hash.hex}.resume"


# --------------------------------------------------------------------------- restarts of complete data


async def test_complete_torrent_restarts_without_reading_the_payload(
    tmp_path: Path, reads: Counter[int]
) -> None:
    payload = make_model_payload(tmp_path, shards=3, shard_size=1 * MiB + 4321, seed=5)
    info = payload.metainfo.info
    first = await _start(payload, payload.root, seed=1)
    assert first.resume.plan is not None and not first.resume.plan.used  # no resume data yet
    assert sum(reads.values()) >= info.total_length - sum(f.length for f in info.files if f.pad)
    assert _resume_file(payload, payload.root).is_file()

    reads.clear()
    second = await _start(payload, payload.root, seed=2)
    assert sum(reads.values()) == 0, f"read {dict(reads)} on a restart with valid resume data"
    plan = second.resume.plan
    assert plan is not None and plan.used and plan.trusted.complete and plan.to_check.count == 0
    assert second.verified_bytes == second.wanted_bytes == info.total_length  # counted in whole pieces


@pytest.mark.parametrize("fmt", ["v2", "hybrid"])
async def test_v2_and_hybrid_torrents_restart_from_resume_data(
    tmp_path: Path, reads: Counter[int], fmt: TorrentFormat
) -> None:
    """BEP 52: the resume data names the torrent by its v2 info-hash (and its v1 one for a hybrid);
    a v1 torrent of the same files cannot use it."""
    payload = make_model_payload(tmp_path, shards=2, shard_size=1 * MiB, seed=14)
    metainfo = create_torrent(payload.root / payload.name, creation_date=None, format=fmt)
    v2 = Payload(root=payload.root, metainfo=metainfo, torrent_path=tmp_path / "v2.torrent")
    await _start(v2, payload.root, seed=1)
    data = load_resume(payload.root / RESUME_DIR / f"{metainfo.info_hash.hex}.resume")
    hashes = metainfo.info_hashes
    assert hashes.v2 is not None and data.identity.v2 == hashes.v2.raw
    assert data.identity.v1 == (hashes.v1.raw if hashes.v1 is not None else None)
    reads.clear()
    again = await _start(v2, payload.root, seed=2)
    assert sum(reads.values()) == 0 and again.is_complete
    plan = plan_check(
        data,
        identity=ResumeIdentity(v1=payload.metainfo.info_hash.raw),
        layout=Layout.from_info(payload.metainfo.info),
        stamps=data.files[: len(payload.metainfo.info.files)],
        part_file=data.part_file,
        skipped=frozenset(),
        wanted=Bitfield(payload.metainfo.info.num_pieces, full=True),
    )
    assert not plan.used  # the v1 torrent is another torrent


async def test_touched_file_is_rechecked_alone(tmp_path: Path, reads: Counter[int]) -> None:
    payload = make_model_payload(tmp_path, shards=3, shard_size=1 * MiB + 4321, seed=6)
    info = payload.metainfo.info
    await _start(payload, payload.root, seed=1)
    touched = _shards(info)[1]
    path = _path(payload, payload.root, touched)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # same bytes, newer mtime
    reads.clear()
    again = await _start(payload, payload.root, seed=2)
    assert set(reads) == {touched}, f"reads: {dict(reads)}"
    assert reads[touched] == info.files[touched].length
    assert again.resume.plan is not None and again.resume.plan.changed_files == (touched,)
    assert again.is_complete


async def test_shortened_file_is_rechecked_and_only_its_pieces_fetched(
    tmp_path: Path, reads: Counter[int]
) -> None:
    payload = make_model_payload(tmp_path, shards=3, shard_size=1 * MiB + 4321, seed=7)
    info = payload.metainfo.info
    dest = tmp_path / "copy"
    shutil.copytree(payload.root, dest)
    await _start(payload, dest, seed=1)
    shard = _shards(info)[2]
    path = _path(payload, dest, shard)
    with path.open("r+b") as handle:
        handle.truncate(info.files[shard].length // 2)
    reads.clear()
    async with Session(loopback_config(seed=3)) as seeder:
        source = await seeder.add(payload.metainfo, payload.root, seed=True)
        await _complete(source)
        reads.clear()
        torrent = await _start(payload, dest, seed=4, peers=(f"127.0.0.1:{seeder.listen_port}",))
    assert set(reads) <= {shard}, f"reads on the leecher side: {dict(reads)}"
    lost = info.files[shard].length - info.files[shard].length // 2
    assert 0 < torrent.downloaded - torrent.wasted <= lost + 2 * info.piece_length
    assert_same_files(payload.metainfo, payload.root, dest)


async def test_a_file_changed_under_a_running_seed_is_rechecked_after_its_stop(
    tmp_path: Path, reads: Counter[int]
) -> None:
    """Only our own writes move a stamp forward: a shard rewritten by someone else while the torrent
    seeds keeps its old stamp in the resume data written at stop, so the next start checks it (and
    finds the damage) instead of trusting it."""
    payload = make_model_payload(tmp_path, shards=2, shard_size=1 * MiB, seed=13)
    info = payload.metainfo.info
    dest = tmp_path / "copy"
    shutil.copytree(payload.root, dest)
    await _start(payload, dest, seed=1)
    shard = _shards(info)[0]
    async with Session(loopback_config(seed=2)) as session:
        torrent = await session.add(payload.metainfo, dest, seed=True)
        await _complete(torrent)
        path = _path(payload, dest, shard)
        with path.open("r+b") as handle:  # same size, other bytes, a new mtime
            handle.seek(info.files[shard].length // 2)
            handle.write(b"\xff" * 1000)
        torrent.stop("test")
        await asyncio.wait_for(torrent.wait_stopped(), 10)
    reads.clear()
    async with Session(loopback_config(seed=3)) as session:
        again = await session.add(payload.metainfo, dest)
        await wait_until(
            lambda: again.resume.plan is not None and again.have is not None, timeout=20, what="check"
        )
        plan = again.resume.plan
        assert plan is not None and plan.changed_files == (shard,)
        assert set(reads) == {shard}
        assert again.have is not None and not again.have.complete  # the damaged piece is missing
        again.stop("test")


# --------------------------------------------------------------------------- unusable resume data


def _foreign_resume(tmp_path: Path, target: Path) -> None:
    other = ResumeData.decode(target.read_bytes())
    foreign = ResumeData(
        identity=ResumeIdentity(v1=b"\x42" * 20),
        piece_length=other.piece_length,
        num_pieces=other.num_pieces,
        have=other.have,
        files=other.files,
        part_file=other.part_file,
        skipped=other.skipped,
    )
    target.write_bytes(foreign.encode())


@pytest.mark.parametrize("damage", ["missing", "truncated", "corrupt", "foreign", "garbage"])
async def test_unusable_resume_data_means_a_full_check(
    tmp_path: Path, reads: Counter[int], damage: str
) -> None:
    payload = make_model_payload(tmp_path, shards=2, shard_size=1 * MiB, seed=8)
    info = payload.metainfo.info
    await _start(payload, payload.root, seed=1)
    resume = _resume_file(payload, payload.root)
    data = resume.read_bytes()
    match damage:
        case "missing":
            resume.unlink()
        case "truncated":
            resume.write_bytes(data[: len(data) - 40])
        case "corrupt":
            flipped = bytearray(data)
            flipped[len(data) // 2] ^= 0x01
            resume.write_bytes(bytes(flipped))
        case "foreign":
            _foreign_resume(tmp_path, resume)
        case "garbage":
            resume.write_bytes(os.urandom(len(data)))
    reads.clear()
    again = await _start(payload, payload.root, seed=2)
    plan = again.resume.plan
    assert plan is not None and not plan.used, plan
    assert set(reads) == set(_data_files(info))
    assert again.is_complete
    assert load_resume(resume).have.complete  # rewritten after the full check


async def test_resume_data_off_reads_everything_and_writes_nothing(
    tmp_path: Path, reads: Counter[int]
) -> None:
    payload = make_file_payload(tmp_path, 2 * MiB, seed=9)
    for seed in (1, 2):
        reads.clear()
        torrent = await _start(payload, payload.root, seed=seed, resume_data=False)
        assert reads[0] == payload.metainfo.info.total_length
        assert torrent.is_complete
    assert not (payload.root / RESUME_DIR).exists()


async def test_resume_dir_can_be_configured(tmp_path: Path, reads: Counter[int]) -> None:
    payload = make_file_payload(tmp_path, 1 * MiB, seed=10)
    elsewhere = tmp_path / "state"
    await _start(payload, payload.root, seed=1, resume_dir=str(elsewhere))
    assert (elsewhere / f"{payload.metainfo.info_hash.hex}.resume").is_file()
    assert not (payload.root / RESUME_DIR).exists()
    reads.clear()
    await _start(payload, payload.root, seed=2, resume_dir=str(elsewhere))
    assert sum(reads.values()) == 0


# --------------------------------------------------------------------------- kills during the write


async def test_kill_during_the_resume_write_resumes_from_the_previous_data(
    tmp_path: Path, reads: Counter[int]
) -> None:
    """Resume data R1 is written; more pieces arrive and R2's write is killed: its temporary file is
    half-written and the rename never happened.  The next start uses R1 and re-checks exactly the
    files written since R1 -- finding every piece they hold, so nothing is fetched twice."""
    payload = make_model_payload(tmp_path, shards=3, shard_size=1 * MiB + 4321, seed=11)
    info = payload.metainfo.info
    dest = tmp_path / "down"
    shards = _shards(info)
    async with Session(loopback_config(seed=1)) as seeder:
        source = await seeder.add(payload.metainfo, payload.root, seed=True)
        await _complete(source)
        peers = (f"127.0.0.1:{seeder.listen_port}",)
        # R1: only the first shard (and the small files) selected and complete
        first_files = [i for i in _data_files(info) if i not in shards[1:]]
        async with Session(loopback_config(seed=2)) as leecher:
            torrent = await leecher.add(payload.metainfo, dest, peers=peers, file_indices=first_files)
            await _complete(torrent)
            await asyncio.wait_for(torrent.wait_stopped(), 10)
        resume = _resume_file(payload, dest)
        r1 = resume.read_bytes()
        # the next run gets everything; its resume write is "killed": R1 stays, a torn temp lies next to it
        await _start(payload, dest, seed=3, peers=peers)
        resume.write_bytes(r1)
        (resume.parent / f".{resume.name}.99999.deadbeef.tmp").write_bytes(resume.read_bytes()[:30])
        uploaded = source.uploaded
        reads.clear()
        final = await _start(payload, dest, seed=4, peers=peers)
        assert source.uploaded == uploaded, "fetched again what was on disk"
    plan = final.resume.plan
    assert plan is not None and plan.used
    assert set(plan.changed_files) == set(shards[1:])  # selected now, absent when R1 was written
    assert set(reads) == set(shards[1:])
    assert_same_files(payload.metainfo, payload.root, dest)
    assert not list(resume.parent.glob("*.tmp")), "the torn temporary file was not swept"


# --------------------------------------------------------------------------- SIGKILL of the CLI

_FAST_RESUME = (
    "import runpy, sys; from torrentgoat.torrent.config import TorrentConfig; "
    "TorrentConfig.__init__.__kwdefaults__['resume_interval'] = 0.3; "
    "sys.argv[0] = 'torrentgoat'; runpy.run_module('torrentgoat', run_name='__main__', alter_sys=True)"
)
"""``python -m torrentgoat`` with resume data written every 0.3 s instead of 30 s (so a test can kill
it between two writes without waiting half a minute)."""


async def _cli_get(
    payload: Payload, dest: Path, port: int, *, fast_resume: bool
) -> asyncio.subprocess.Process:
    start = [sys.executable, "-c", _FAST_RESUME] if fast_resume else [sys.executable, "-m", "torrentgoat"]
    return await asyncio.create_subprocess_exec(
        *start, "get", str(payload.torrent_path), "-o", str(dest),
        "--peer", f"127.0.0.1:{port}", "--no-dht", "--no-trackers",
        "--listen", "127.0.0.1", "--listen6", "", "--port", "0", "--quiet",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip


def _plan_now(payload: Payload, dest: Path) -> tuple[int, int]:
    """(pieces the next start will trust, pieces it will hash), computed from the files as they are."""
    info = payload.metainfo.info
    storage = FileStorage(dest, Layout.from_info(info))
    try:
        stamps, part = stamp_files(storage)
        resume = load_resume(_resume_file(payload, dest))
        plan = plan_check(
            resume,
            identity=ResumeIdentity.of(info),
            layout=storage.layout,
            stamps=stamps,
            part_file=part,
            skipped=frozenset(),
            wanted=storage.wanted_pieces(),
        )
        return plan.trusted.count, plan.to_check.count
    finally:
        storage.close()


@pytest.mark.slow
async def test_cli_get_killed_with_sigkill_resumes_byte_identical(tmp_path: Path) -> None:
    payload = make_model_payload(tmp_path, shards=4, shard_size=2 * MiB, seed=12)
    info = payload.metainfo.info
    dest = tmp_path / "down"
    resume = _resume_file(payload, dest)
    async with Session(loopback_config(seed=1, upload_limit=2 * MiB)) as slow:
        source = await slow.add(payload.metainfo, payload.root, seed=True)
        await _complete(source)
        proc = await _cli_get(payload, dest, slow.listen_port, fast_resume=True)

        def progressed() -> bool:
            if proc.returncode is not None:
                return True
            try:
                return load_resume(resume).have.count * info.piece_length >= info.total_length // 3
            except Exception:
                return False

        await wait_until(progressed, timeout=60, what="a third of the torrent in the resume data", step=0.1)
        assert proc.returncode is None, "finished before the kill"
        proc.send_signal(signal.SIGKILL)
        await asyncio.wait_for(proc.communicate(), 15)
        assert proc.returncode == -signal.SIGKILL
        kept = load_resume(resume).have
        trusted, _ = _plan_now(payload, dest)
        assert trusted > 0  # files untouched since the last resume data are not read again
        served_before = source.uploaded
    async with Session(loopback_config(seed=2)) as fast:
        source = await fast.add(payload.metainfo, payload.root, seed=True)
        await _complete(source)
        proc = await _cli_get(payload, dest, fast.listen_port, fast_resume=False)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, (out + err).decode()
        fetched = source.uploaded
    assert served_before > 0
    missing = info.num_pieces - kept.count
    assert fetched <= missing * info.piece_length, f"fetched {fetched} bytes, {missing} pieces were missing"
    assert_same_files(payload.metainfo, payload.root, dest)


# --------------------------------------------------------------------------- SIGKILL of collection update


@pytest.mark.slow
async def test_collection_update_killed_with_sigkill_resumes_from_its_resume_data(tmp_path: Path) -> None:
    """``collection update`` killed while a new model downloads: the directory still holds the old
    version (``collection verify`` accepts it), the model's resume data names what was verified, and
    the rerun trusts it, fetches only what was missing and installs the new version."""
    from tests.test_collection_e2e import local_dht, session_config
    from torrentgoat.collection import CollectionClient, ModelSpec, Publisher, Store, build_collection
    from torrentgoat.keys import SigningKey
    from torrentgoat.metainfo import load_metainfo
    from torrentgoat.testing.shards import write_model_folder

    key = SigningKey(b"\x05" * 32)
    src, pub_root, root = tmp_path / "src", tmp_path / "pub", tmp_path / "models"
    specs = [
        ModelSpec(name="alpha", path=write_model_folder(src / "alpha", shards=1, shard_size=MiB, seed=1))
    ]
    build_collection("zoo", specs, pub_root, key.public_key, piece_length=64 * 1024, hub="http://127.0.0.1:9")
    async with local_dht() as nodes:
        boot = nodes[0]
        port = boot.address.port
        async with Session(session_config(boot, upload_limit=2 * MiB, seed=1)) as pub_session:
            publisher = Publisher(pub_session, pub_root, key)
            first = await publisher.publish()
            async with Session(session_config(boot, seed=2)) as consumer:
                assert (await CollectionClient(consumer, root, timeout=60).sync(first.magnet)).ok
            beta = write_model_folder(src / "beta", shards=2, shard_size=4 * MiB, seed=2)
            specs.append(ModelSpec(name="beta", path=beta))
            v2 = build_collection(
                "zoo", specs, pub_root, key.public_key, piece_length=64 * 1024, hub="http://127.0.0.1:9"
            )
            await publisher.publish()
            entry = v2.model("beta")
            assert entry is not None
            store = Store(root)
            dest = store.model_dest("beta", entry.info_hash)
            resume = dest / RESUME_DIR / f"{entry.info_hash.hex}.resume"
            update = [
                "collection", "update", str(root), "--listen", "127.0.0.1", "--listen6", "", "--port", "0",
                "--dht-bootstrap", f"127.0.0.1:{port}", "--no-trackers", "-q",
            ]  # fmt: skip
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", _FAST_RESUME, *update, cwd=ROOT,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
            size = sum(f.size for f in entry.files)

            def progressed() -> bool:
                try:
                    return (
                        proc.returncode is not None or load_resume(resume).have.count * 64 * 1024 >= size // 3
                    )
                except Exception:
                    return False

            await wait_until(progressed, timeout=90, what="a third of beta in its resume data", step=0.1)
            assert proc.returncode is None, "finished before the kill"
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
            state = store.load_state()
            assert state is not None and state.seq == 1 and "beta" not in state.models  # still v1
            verify = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "torrentgoat", "collection", "verify", str(root), cwd=ROOT,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            _, err = await verify.communicate()
            assert verify.returncode == 0, err.decode()
            kept = load_resume(resume).have
            torrent_file = Store(pub_root).torrent_path(entry.info_hash)
            metainfo = load_metainfo(torrent_file)
            payload = Payload(root=dest, metainfo=metainfo, torrent_path=torrent_file)
            trusted, _ = _plan_now(payload, dest)
            assert trusted > 0  # files untouched since the last resume data are not read again
            sent_before = sum(t.uploaded for t in pub_session.torrents.values())
            rerun = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "torrentgoat", *update, cwd=ROOT,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            out, err = await asyncio.wait_for(rerun.communicate(), 90)
            assert rerun.returncode == 0, (out + err).decode()
            sent = sum(t.uploaded for t in pub_session.torrents.values()) - sent_before
    info = metainfo.info
    missing = sum(info.piece_size(i) for i in range(info.num_pieces) if i not in kept)
    assert 0 < sent <= missing + 64 * 1024, f"sent {sent} bytes, {missing} were missing"
    state = Store(root).load_state()
    assert state is not None and state.seq == 2 and "beta" in state.models
    for f in entry.files:
        assert (root / "beta" / f.path).read_bytes() == (beta / f.path).read_bytes()
