"""Everyday use of the command line (issue 11): one clear line and the documented exit code for every
mistake a user makes, no silent hang, a busy port, a full disk, one honest progress line."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from torrentgoat.cli import main
from torrentgoat.cli._progress import ProgressLine
from torrentgoat.errors import ListenError
from torrentgoat.session import Session, SessionConfig
from torrentgoat.testing.swarm import Payload, loopback_config, make_file_payload
from torrentgoat.torrent import (
    CheckCompleted,
    CheckProgressed,
    Completed,
    PeersMissing,
    ProgressReported,
    TorrentConfig,
)

MiB = 1024 * 1024
ROOT = Path(__file__).resolve().parent.parent


SESSION_COMMANDS = ("get", "seed", "collection", "publish", "update")
"""Commands that run a session: the tests keep them on loopback (no LSD multicast on a real NIC)."""


def run_cli(*args: str, timeout: float = 120.0, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    if args and args[0] in SESSION_COMMANDS and "--listen" not in args and "--help" not in args:
        args = (*args, "--listen", "127.0.0.1", "--listen6", "")
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run(
        [sys.executable, "-m", "torrentgoat", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=env,
    )


def no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr, result.stderr


class Seeder:
    """A torrentgoat session seeding ``payload`` on 127.0.0.1, in a thread with its own loop."""

    def __init__(self, payload: Payload) -> None:
        self.payload = payload
        self.port = 0
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        config = loopback_config(seed=1, torrent=TorrentConfig(seed=True))
        async with Session(config) as session:
            torrent = await session.add(self.payload.metainfo, self.payload.root)
            while torrent.state != "seeding":
                await asyncio.sleep(0.02)
            self.port = session.listen_port
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> Seeder:
        self._thread.start()
        assert self._ready.wait(60), "the seeder did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)


@pytest.fixture
def payload(tmp_path: Path) -> Payload:
    return make_file_payload(tmp_path / "seed", 3 * MiB + 99, piece_length=256 * 1024, seed=7)


# ---------------------------------------------------------------- ports


async def test_a_taken_port_falls_back_to_the_next_one() -> None:
    base = loopback_config(seed=1)
    async with Session(base) as first:
        taken = first.listen_port
        fallback = SessionConfig(
            listen_host="127.0.0.1", listen_ipv6=None, enable_dht=False, listen_port=taken, port_fallback=5
        )
        async with Session(fallback) as second:
            assert second.listen_port != taken and second.listen_port != 0


async def test_a_picked_port_taken_for_udp_is_picked_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """Port 0: the system's free TCP port may be taken for UDP (uTP, DHT) by another process; seen
    on a busy machine as "cannot bind the uTP socket ... Address already in use"."""
    real_listen = Session._listen
    tried: list[int] = []

    async def listen(self: Session, port: int) -> None:
        tried.append(port)
        if len(tried) == 1:
            raise ListenError(f"cannot bind the uTP socket to 127.0.0.1:{port}: Address already in use")
        await real_listen(self, port)

    monkeypatch.setattr(Session, "_listen", listen)
    async with Session(loopback_config(seed=1)) as session:
        assert session.listen_port != 0 and tried == [0, 0]


async def test_an_explicit_taken_port_is_a_clear_error() -> None:
    async with Session(loopback_config(seed=1)) as first:
        strict = SessionConfig(
            listen_host="127.0.0.1",
            listen_ipv6=None,
            enable_dht=False,
            listen_port=first.listen_port,
            port_fallback=0,
        )
        with pytest.raises(ListenError, match="in use"):
            async with Session(strict):
                pass


def test_cli_explicit_taken_port_exits_one_in_one_line(payload: Payload, tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = run_cli(
            "get", str(payload.torrent_path), "-o", str(tmp_path / "down"), "--no-dht",
            "--listen", "127.0.0.1", "--listen6", "", "--port", str(port), "--peer", "127.0.0.1:1",
        )  # fmt: skip
    assert result.returncode == 1, result.stderr
    no_traceback(result)
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


# ---------------------------------------------------------------- bad input, no hang


def test_selection_matching_nothing_exits_two(payload: Payload, tmp_path: Path) -> None:
    result = run_cli(
        "get", str(payload.torrent_path), "-o", str(tmp_path / "down"), "--no-dht", "--port", "0",
        "--files", "*.nomatch", "--peer", "127.0.0.1:1",
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    no_traceback(result)
    assert "matches the selection" in result.stderr


def test_get_without_any_peer_source_fails_at_once(payload: Payload, tmp_path: Path) -> None:
    result = run_cli(
        "get", str(payload.torrent_path), "-o", str(tmp_path / "down"), "--no-dht", "--no-lsd", "--port", "0",
        timeout=60,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    no_traceback(result)
    assert "no peer sources" in result.stderr and "--peer" in result.stderr


def test_get_of_data_already_there_needs_no_peer_source(payload: Payload) -> None:
    result = run_cli(
        "get", str(payload.torrent_path), "-o", str(payload.root), "--no-dht", "--port", "0", "-q"
    )
    assert result.returncode == 0, result.stderr


def test_seed_of_the_wrong_folder_fails_fast_with_the_hint(payload: Payload, tmp_path: Path) -> None:
    name = payload.metainfo.info.name
    result = run_cli("seed", str(payload.torrent_path), str(tmp_path), "--no-dht", "--port", "0", timeout=60)
    assert result.returncode == 2, result.stderr
    no_traceback(result)
    assert f"DIR is the directory that contains {name!r}" in result.stderr
    missing = run_cli("seed", str(payload.torrent_path), str(tmp_path / "nope"), "--no-dht", "--port", "0")
    assert missing.returncode == 2 and "is not a directory" in missing.stderr
    no_traceback(missing)


def test_a_path_component_that_is_a_file_fails_before_any_traffic(payload: Payload, tmp_path: Path) -> None:
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the download directory should be")
    result = run_cli(
        "get", str(payload.torrent_path), "-o", str(blocked / "sub"), "--no-dht", "--port", "0",
        "--peer", "127.0.0.1:1",
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    no_traceback(result)
    assert "is not a directory" in result.stderr


# ---------------------------------------------------------------- full and read-only file systems


@contextlib.contextmanager
def tmpfs(where: Path, size: str, *, read_only: bool = False) -> Iterator[Path]:
    """A small tmpfs mounted by the test (CI runs as root); skipped only where mounting is impossible."""
    where.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True)
    if done.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"cannot mount a tmpfs in CI: {done.stderr!r}")
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr!r}")  # a non-root developer machine
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_not_enough_free_space_is_refused_before_downloading(payload: Payload, tmp_path: Path) -> None:
    with Seeder(payload) as seeder, tmpfs(tmp_path / "small", "1m") as small:
        result = run_cli(
            "get", str(payload.torrent_path), "-o", str(small), "--no-dht", "--port", "0",
            "--peer", f"127.0.0.1:{seeder.port}",
        )  # fmt: skip
    assert result.returncode == 1, result.stderr
    no_traceback(result)
    assert "not enough free space" in result.stderr and "still to download" in result.stderr
    assert result.stderr.count("torrentgoat: error:") == 1


async def test_disk_full_midway_stops_with_one_error_and_resumes_after_space_is_freed(
    payload: Payload, tmp_path: Path
) -> None:
    info = payload.metainfo.info
    with Seeder(payload) as seeder, tmpfs(tmp_path / "small", "4m") as small:
        (small / "ballast").write_bytes(b"\0" * (2 * MiB))  # 2 MiB free for 3 MiB of data
        config = loopback_config(seed=2, torrent=TorrentConfig(check_free_space=False))
        async with Session(config) as session:
            torrent = await session.add(payload.metainfo, small, peers=[f"127.0.0.1:{seeder.port}"])
            with pytest.raises(Exception, match="no space left"):
                await asyncio.wait_for(torrent.wait_complete(), 60)
            await asyncio.wait_for(torrent.wait_stopped(), 30)
            kept = torrent.have.count if torrent.have is not None else 0
            assert 0 < kept < info.num_pieces
            (small / "ballast").unlink()
            again = await session.add(payload.metainfo, small, peers=[f"127.0.0.1:{seeder.port}"])
            await asyncio.wait_for(again.wait_complete(), 60)
            assert again.downloaded < info.total_length  # only what was missing crossed the network
        assert (small / info.name).read_bytes() == (payload.root / info.name).read_bytes()


def test_read_only_download_directory_is_a_clear_error(payload: Payload, tmp_path: Path) -> None:
    with tmpfs(tmp_path / "ro", "1m", read_only=True) as ro:
        result = run_cli(
            "get",
            str(payload.torrent_path),
            "-o",
            str(ro),
            "--no-dht",
            "--port",
            "0",
            "--peer",
            "127.0.0.1:1",
        )
    assert result.returncode == 1, result.stderr
    no_traceback(result)
    assert "is not writable" in result.stderr


# ---------------------------------------------------------------- help and exit codes


def test_help_lists_the_exit_codes_and_no_rest_markup(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    top = capsys.readouterr().out
    assert "exit codes: 0 done, 1 failed, 2 bad input, 130 interrupted" in top
    assert "short for 'collection publish'" in top
    for command in ("get", "seed", "verify", "create", "info", "collection", "dht"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = capsys.readouterr().out
        assert "``" not in text and ":class:" not in text, command
    with pytest.raises(SystemExit):
        main(["verify", "--help"])
    assert "download" not in capsys.readouterr().out.split("positional")[0].replace("download directory", "")


def test_dht_commands_use_the_same_option_names(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["dht", "get", "--help"])
    text = capsys.readouterr().out
    assert "--port" in text and "--dht-state" in text and "--listen" in text
    assert "--dht-port" not in text and "--node-cache" not in text


# ---------------------------------------------------------------- the progress line


def progress(state: str, verified: int, wanted: int, down: float = 0.0, up: float = 0.0) -> ProgressReported:
    return ProgressReported(
        verified_bytes=verified,
        wanted_bytes=wanted,
        download_rate=down,
        upload_rate=up,
        peers=1,
        uploaded=0,
        downloaded=verified,
        state=state,
    )


def test_progress_is_phases_that_never_go_backwards(capsys: pytest.CaptureFixture[str]) -> None:
    line = ProgressLine("model", quiet=False, interactive=False)
    line.handle(CheckProgressed(done_bytes=4 * MiB, total_bytes=4 * MiB))
    line.handle(CheckCompleted(verified_bytes=1 * MiB, wanted_bytes=4 * MiB, seconds=0.5))
    line.handle(progress("downloading", 1 * MiB, 4 * MiB, down=3 * MiB))
    line.handle(progress("downloading", 4 * MiB, 4 * MiB, down=3 * MiB))
    line.handle(Completed(seconds=2.0))
    line.handle(progress("seeding", 4 * MiB, 4 * MiB))
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert "model checking 100%  4.0 MiB / 4.0 MiB" in lines
    assert "model: checked 4.0 MiB in 0.5 s, 25% already verified" in lines
    assert any(line.startswith("model downloading  25%  1.0 MiB / 4.0 MiB  3.0 MiB/s") for line in lines)
    assert "model: complete and verified in 2.0 s" in lines
    assert any(line.startswith("model seeding 100%  idle") for line in lines)
    assert "MB/s" not in err and "kB/s" not in err  # binary units, written as such


def test_no_peers_for_a_while_says_what_was_tried(capsys: pytest.CaptureFixture[str]) -> None:
    line = ProgressLine("model", quiet=False, interactive=False)
    line.handle(PeersMissing(seconds=15.0, sources=("trackers (1): http://t/announce: timed out",)))
    err = capsys.readouterr().err
    assert "model: no peer after 15 s; tried:\n  trackers (1): http://t/announce: timed out" in err


# ---------------------------------------------------------------- collections


@pytest.fixture
def built_collection(tmp_path: Path) -> tuple[Path, Path]:
    """(publisher directory with a built, unpublished version; key file)."""
    from torrentgoat.testing.shards import write_model_folder

    key = tmp_path / "pub.key"
    assert main(["keygen", "-o", str(key)]) == 0
    write_model_folder(tmp_path / "m1", shards=1, shard_size=100_000, seed=3)
    out = tmp_path / "out"
    assert main(["collection", "build", "zoo", str(tmp_path / "m1"), "-o", str(out), "--key", str(key)]) == 0
    return out, key


def test_collection_ls_shows_a_draft(
    built_collection: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    out, _ = built_collection
    capsys.readouterr()
    assert main(["collection", "ls", str(out)]) == 0
    text = capsys.readouterr().out
    assert text.startswith("draft (built, not yet published") and "zoo" in text and "m1" in text


def test_offline_publish_says_it_once_and_soon(built_collection: tuple[Path, Path]) -> None:
    out, key = built_collection
    result = run_cli(
        "collection", "publish", str(out), "--key", str(key), "--port", "0", "--listen", "127.0.0.1",
        "--dht-bootstrap", "127.0.0.1:9", timeout=60,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    no_traceback(result)
    assert result.stderr.count("DHT bootstrap failed") == 1, result.stderr


# ---------------------------------------------------------------- create and info


def test_create_refuses_to_overwrite_without_force(
    payload: Payload, capsys: pytest.CaptureFixture[str]
) -> None:
    out = payload.torrent_path.parent / "again.torrent"
    out.write_bytes(b"keep me")
    assert main(["create", str(payload.root / payload.metainfo.info.name), "-o", str(out), "-q"]) == 2
    assert "pass --force" in capsys.readouterr().err and out.read_bytes() == b"keep me"
    assert (
        main(["create", str(payload.root / payload.metainfo.info.name), "-o", str(out), "-q", "--force"]) == 0
    )
    assert out.read_bytes() != b"keep me"


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--tracker", "notaurl", "--tracker"),
        ("--tracker", "http://", "no host"),
        ("--web-seed", "ftp://x/y", "http(s)"),
    ],
)
def test_create_validates_urls(
    payload: Payload,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    option: str,
    value: str,
    message: str,
) -> None:
    source = payload.root / payload.metainfo.info.name
    assert main(["create", str(source), "-o", str(tmp_path / "x.torrent"), option, value, "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("torrentgoat: error:") and message in err


def test_create_names_the_cli_option_for_symlinks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "weights.safetensors").write_bytes(b"\0" * 1000)
    (folder / "link").symlink_to(folder / "weights.safetensors")
    assert main(["create", str(folder), "-o", str(tmp_path / "m.torrent"), "-q"]) == 2
    err = capsys.readouterr().err
    assert "--follow-symlinks" in err and "follow_symlinks=True" not in err


async def test_info_reads_a_torrent_url(payload: Payload) -> None:
    from aiohttp import web

    async def serve(request: web.Request) -> web.Response:
        return web.Response(body=payload.torrent_path.read_bytes())

    app = web.Application()
    app.router.add_get("/x.torrent", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        result = await asyncio.to_thread(run_cli, "info", f"http://127.0.0.1:{port}/x.torrent", "--json")
        missing = await asyncio.to_thread(run_cli, "info", f"http://127.0.0.1:{port}/nope.torrent")
    finally:
        await runner.cleanup()
    assert result.returncode == 0, result.stderr
    assert payload.metainfo.info_hash.hex in result.stdout
    assert missing.returncode == 2 and "HTTP 404" in missing.stderr
    no_traceback(missing)
