"""Shared pieces of the interop tests: reference clients in subprocesses, payloads, comparisons.

Every reference client (libtorrent through ``tools/lt_peer.py``, ``aria2c``, ``transmission-cli``)
runs in its own process on 127.0.0.1 with an explicit free port and its own temp directories.
Processes are started through the :func:`processes` fixture, whose teardown terminates (then kills)
every one of them, whatever the test did.  Output is kept so that a failing assertion can show
what the reference client said (:meth:`RefProcess.tail`).  Every wait here is for an event (a JSON
line, a listening port, a tracker count) and takes a deadline that suits an idle machine; it is
stretched by the machine's load (:func:`torrentgoat.testing.timing.scaled`), never slept through.

Quirks this module works around are measured facts from ``INTEROP-NOTES.md``: aria2 has no
"connect to this peer" option (it needs a tracker), transmission never dials 127.x peers, a
libtorrent seeder must not get its own address back from a tracker (``num_want = 0`` in lt_peer).
Measured here as well: aria2 1.36 has no UDP trackers while its DHT is off and treats BEP 47 pad
files as real files; transmission-cli block-buffers its status line into a pipe (``stdbuf``),
runs its ``--finish`` script after verifying complete data too, and starts an RPC server on port
9091 unless told not to; libtorrent's default ``add_torrent_params`` flags hold ``paused`` and
``auto_managed`` (a torrent taken out of auto management stays paused, checking forever).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest_asyncio

from torrentgoat.aio.tracker import scrape
from torrentgoat.creation import create_torrent
from torrentgoat.errors import TrackerError
from torrentgoat.metainfo import Metainfo
from torrentgoat.primitives import InfoHash
from torrentgoat.session import SessionConfig
from torrentgoat.testing.shards import write_model_folder, write_safetensors_shard
from torrentgoat.testing.swarm import wait_until
from torrentgoat.testing.timing import scaled
from torrentgoat.torrent import TorrentConfig

__all__ = [
    "LT_PEER",
    "MiB",
    "ProcessGroup",
    "RefProcess",
    "Shared",
    "assert_same_files",
    "complete",
    "free_port",
    "loopback_config",
    "make_model_torrent",
    "make_shard_torrent",
    "processes",
    "wait_listening",
    "wait_scrape",
    "wait_until",
]

ROOT = Path(__file__).resolve().parent.parent
LT_PEER = ROOT / "tools" / "lt_peer.py"
MiB = 1024 * 1024


def free_port(kind: int = socket.SOCK_STREAM, host: str = "127.0.0.1") -> int:
    """A port free a moment ago on ``host`` (TCP by default)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, kind) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def loopback_config(**torrent: Any) -> SessionConfig:
    """A session on 127.0.0.1 only: any port, no IPv6 listener, no DHT (never the public routers), no LSD."""
    return SessionConfig(
        listen_host="127.0.0.1",
        listen_ipv6=None,
        listen_port=0,
        enable_dht=False,
        dht_bootstrap=(),
        enable_lsd=False,
        torrent=TorrentConfig(**torrent),
    )


# --------------------------------------------------------------------------- payloads


class Shared:
    """A payload on disk plus its torrent: ``root`` holds the torrent's name (file or folder)."""

    def __init__(self, root: Path, metainfo: Metainfo, torrent_path: Path) -> None:
        self.root = root
        self.metainfo = metainfo
        self.torrent_path = torrent_path

    @property
    def name(self) -> str:
        return self.metainfo.info.name

    @property
    def size(self) -> int:
        return sum(f.length for f in self.metainfo.info.files if not f.pad)


def make_shard_torrent(
    base: Path,
    size: int,
    *,
    name: str = "model.safetensors",
    piece_length: int = 256 * 1024,
    trackers: Sequence[str] = (),
    seed: int = 0,
) -> Shared:
    """One safetensors shard of ``size`` bytes under ``base/seed/`` and its .torrent in ``base``."""
    root = base / "seed"
    write_safetensors_shard(root / name, size, seed=seed)
    metainfo = create_torrent(root / name, piece_length=piece_length, trackers=[[t] for t in trackers])
    torrent_path = base / f"{name}.torrent"
    torrent_path.write_bytes(metainfo.to_bytes())
    return Shared(root, metainfo, torrent_path)


def make_model_torrent(
    base: Path,
    *,
    name: str = "tiny-llama",
    shards: int = 3,
    shard_size: int = 5 * MiB + 12345,
    piece_length: int = 256 * 1024,
    trackers: Sequence[str] = (),
    seed: int = 0,
    pad: bool = True,
) -> Shared:
    """A Hugging Face-like model folder (configs, tokenizer, shards, index) as a multi-file torrent
    with BEP 47 pad files (unless ``pad=False``)."""
    root = base / "seed"
    write_model_folder(root / name, shards=shards, shard_size=shard_size, seed=seed)
    metainfo = create_torrent(
        root / name, piece_length=piece_length, trackers=[[t] for t in trackers], pad=pad
    )
    torrent_path = base / f"{name}.torrent"
    torrent_path.write_bytes(metainfo.to_bytes())
    return Shared(root, metainfo, torrent_path)


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def assert_same_files(metainfo: Metainfo, source_root: Path, copy_root: Path) -> None:
    """Every non-pad file of the torrent is byte-identical under both roots (pad files are not data)."""
    info = metainfo.info
    checked = 0
    for entry in info.files:
        if entry.pad:
            continue
        relative = Path(info.name) if info.single_file else Path(*entry.path)
        original = source_root / relative
        copy = copy_root / relative
        assert copy.is_file(), f"{copy} is missing"
        assert copy.stat().st_size == entry.length, (
            f"{copy}: {copy.stat().st_size} bytes, want {entry.length}"
        )
        assert _digest(copy) == _digest(original), f"{copy} differs from {original}"
        checked += 1
    assert checked > 0


async def complete(torrent: Any, *, timeout: float, peers: Sequence[RefProcess] = ()) -> None:
    """``torrent.wait_complete()`` within ``timeout`` (:func:`scaled`); on failure say where the torrent stood."""
    timeout = scaled(timeout)
    try:
        await asyncio.wait_for(torrent.wait_complete(), timeout=timeout)
    except TimeoutError:
        have = torrent.have.count if torrent.have is not None else None
        total = torrent.info.num_pieces if torrent.info is not None else None
        connected = [
            {
                "address": str(ps.driver.address),
                "joined": ps.joined,
                "handshake": ps.driver.engine.handshake_complete,
                "am_interested": ps.driver.engine.am_interested,
                "peer_choking": ps.driver.engine.peer_choking,
                "in_flight": ps.driver.engine.outstanding_count,
            }
            for ps in torrent.peers.values()
        ]
        details = "\n".join(p.tail() for p in peers)
        raise AssertionError(
            f"{torrent.name} not complete after {timeout:.0f} s: state={torrent.state} have={have}/{total} "
            f"downloaded={torrent.downloaded} peers={connected} banned={list(torrent.pool.banned)}\n{details}"
        ) from None


async def wait_listening(port: int, *, timeout: float, host: str = "127.0.0.1") -> None:
    """Until something accepts TCP connections on ``host:port``."""
    timeout = scaled(timeout)
    deadline = time.monotonic() + timeout
    while True:
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"nothing listens on {host}:{port} after {timeout:.0f} s") from None
            await asyncio.sleep(0.1)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return


async def wait_scrape(
    url: str,
    info_hash: InfoHash,
    *,
    complete: int | None = None,
    incomplete: int | None = None,
    downloaded: int | None = None,
    timeout: float = 10.0,
) -> None:
    """Poll a tracker's scrape (BEP 48 / BEP 15) until its counts match the given ones."""
    timeout = scaled(timeout)
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        with contextlib.suppress(TrackerError):
            reply = await scrape(url, [info_hash], timeout=5)
            last = reply.get(info_hash)
            if last is not None and all(
                want is None or got == want
                for want, got in (
                    (complete, last.complete),
                    (incomplete, last.incomplete),
                    (downloaded, last.downloaded),
                )
            ):
                return
        await asyncio.sleep(0.2)
    raise AssertionError(
        f"tracker scrape of {url}: {last}, wanted complete={complete} incomplete={incomplete} "
        f"downloaded={downloaded}"
    )


# --------------------------------------------------------------------------- processes


class RefProcess:
    """A reference client in a subprocess; stdout/stderr lines are collected, JSON lines parsed."""

    def __init__(self, name: str, argv: Sequence[str], *, cwd: Path | None = None) -> None:
        self.name = name
        self.argv = [str(a) for a in argv]
        self.cwd = cwd
        self.process: asyncio.subprocess.Process | None = None
        self.lines: list[str] = []
        self.events: list[dict[str, Any]] = []
        self.port: int | None = None
        self._changed = asyncio.Event()
        self._readers: list[asyncio.Task[None]] = []

    async def start(self) -> RefProcess:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.process = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=self.cwd,
            env=env,
            start_new_session=True,  # its own process group: teardown can end its children too
        )
        assert self.process.stdout is not None and self.process.stderr is not None
        self._readers = [
            asyncio.create_task(self._read(self.process.stdout)),
            asyncio.create_task(self._read(self.process.stderr)),
        ]
        return self

    async def _read(self, stream: asyncio.StreamReader) -> None:
        # chunks, not readline(): transmission redraws its status line with bare "\r"
        pending = ""
        while True:
            raw = await stream.read(65536)
            if not raw:
                break
            text = (pending + raw.decode("utf-8", "replace")).replace("\r", "\n")
            *complete, pending = text.split("\n")
            for line in complete:
                self._take_line(line)
            self._changed.set()
        self._take_line(pending)
        self._changed.set()

    def _take_line(self, line: str) -> None:
        line = line.strip()
        if not line:
            return
        self.lines.append(line)
        if len(self.lines) > 2000:
            del self.lines[:1000]
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if isinstance(event, dict):
                    self.events.append(event)

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.returncode

    def tail(self, n: int = 25) -> str:
        """The last ``n`` lines of output; periodic ``progress`` lines count as one (the last), so
        that connects, disconnects and errors before a long stall stay in view."""
        shown: list[str] = []
        progress = ""
        for line in self.lines:
            if line.startswith('{"event": "progress"'):
                progress = line
            else:
                shown.append(line)
        shown = shown[-n:] + ([progress] if progress else [])
        return f"--- last output of {self.name} ({' '.join(self.argv[:3])} ...) ---\n" + "\n".join(shown)

    async def wait_event(
        self,
        event: str,
        *,
        timeout: float,
        predicate: Callable[[dict[str, Any]], bool] | None = None,
    ) -> dict[str, Any]:
        """The first JSON line with ``"event": event`` (and matching ``predicate``)."""
        timeout = scaled(timeout)
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for item in self.events[seen:]:
                if item.get("event") == event and (predicate is None or predicate(item)):
                    return item
            seen = len(self.events)
            if self.returncode is not None and all(t.done() for t in self._readers):
                raise AssertionError(
                    f"{self.name} exited ({self.returncode}) before {event!r}\n{self.tail()}"
                )
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{self.name}: no {event!r} within {timeout:.0f} s\n{self.tail()}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=min(left, 0.5))

    async def wait_line(self, needle: str, *, timeout: float) -> str:
        """The first output line containing ``needle``."""
        timeout = scaled(timeout)
        deadline = time.monotonic() + timeout
        while True:
            for line in self.lines:
                if needle in line:
                    return line
            if self.returncode is not None and all(t.done() for t in self._readers):
                raise AssertionError(
                    f"{self.name} exited ({self.returncode}) before {needle!r}\n{self.tail()}"
                )
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    f"{self.name}: no line with {needle!r} in {timeout:.0f} s\n{self.tail()}"
                )
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=min(left, 0.5))

    async def wait_exit(self, *, timeout: float) -> int:
        assert self.process is not None
        timeout = scaled(timeout)
        try:
            code = await asyncio.wait_for(self.process.wait(), timeout)
        except TimeoutError:
            raise AssertionError(f"{self.name} still running after {timeout:.0f} s\n{self.tail()}") from None
        await asyncio.gather(*self._readers, return_exceptions=True)
        return code

    async def stop(self) -> None:
        """Close stdin, SIGTERM the process group, SIGKILL it after 5 s."""
        process = self.process
        if process is None:
            return
        if process.returncode is None:
            if process.stdin is not None:
                with contextlib.suppress(Exception):
                    process.stdin.close()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 5.0)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                await process.wait()
        else:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # leftovers of its group
        for task in self._readers:
            task.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)


class ProcessGroup:
    """Launchers of reference clients; everything started here is stopped by :meth:`close`."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.started: list[RefProcess] = []
        self._count = 0

    def _dir(self, label: str) -> Path:
        self._count += 1
        path = self.base / f"{label}-{self._count}"
        path.mkdir(parents=True, exist_ok=True)
        return path

    async def spawn(self, name: str, argv: Sequence[str], *, cwd: Path | None = None) -> RefProcess:
        process = RefProcess(name, argv, cwd=cwd)
        self.started.append(process)
        return await process.start()

    async def close(self) -> None:
        await asyncio.gather(*(p.stop() for p in self.started), return_exceptions=True)

    # ------------------------------------------------------------------ libtorrent

    async def libtorrent(
        self,
        mode: str,
        *,
        directory: Path,
        torrent: Path | None = None,
        magnet: str | None = None,
        peers: Sequence[str] = (),
        port: int | None = None,
        extra: Sequence[str] = (),
        wait_seeding: bool = True,
        timeout: float = 15.0,
        host: str = "127.0.0.1",
    ) -> RefProcess:
        """``tools/lt_peer.py`` seed/leech on 127.0.0.1; returns once it listens (and, for a seed
        with ``wait_seeding``, once it has checked its files and seeds)."""
        port = port or free_port(host=host)
        argv: list[str] = [sys.executable, str(LT_PEER), mode, "--dir", str(directory), "--port", str(port)]
        argv += ["--host", host]
        if torrent is not None:
            argv += ["--torrent", str(torrent)]
        if magnet is not None:
            argv += ["--magnet", magnet]
        for peer in peers:
            argv += ["--peer", peer]
        argv += ["--report", "0.25", "--timeout", "120", *extra]
        process = await self.spawn(f"libtorrent-{mode}", argv)
        listening = await process.wait_event("listening", timeout=timeout)
        process.port = int(listening["port"])
        assert process.port == port, f"libtorrent listens on {process.port}, asked for {port}"
        if mode == "seed" and wait_seeding:
            await process.wait_event("seeding", timeout=timeout)
        return process

    # ------------------------------------------------------------------ aria2

    async def aria2(
        self,
        mode: str,
        *,
        torrent: Path | str,
        directory: Path,
        port: int | None = None,
        binary: str = "aria2c",
        extra: Sequence[str] = (),
    ) -> RefProcess:
        """aria2c seeding existing data (``mode="seed"``) or downloading then exiting (``"leech"``).

        Flags follow INTEROP-NOTES: no DHT/LPD/PEX/IPv6, no preallocation.  aria2 finds peers only
        through the torrent's tracker.  ``torrent`` is a .torrent path or a magnet URI (with ``tr=``).
        """
        port = port or free_port()
        argv = [
            binary,
            f"--dir={directory}",
            f"--listen-port={port}",
            "--enable-dht=false",
            "--enable-dht6=false",
            "--bt-enable-lpd=false",
            "--enable-peer-exchange=false",
            "--disable-ipv6=true",
            "--file-allocation=none",
            "--no-conf=true",
            "--console-log-level=notice",
            "--summary-interval=1",
            "--show-console-readout=false",
            "--bt-tracker-interval=1",
            "--bt-stop-timeout=60",
            "--follow-torrent=false",
            "--allow-overwrite=true",
            "--auto-save-interval=0",
            f"--dht-file-path={directory / '.dht.dat'}",
        ]
        if mode == "seed":
            argv += ["--seed-ratio=0.0", "--check-integrity=true", "--bt-seed-unverified=false"]
        else:
            argv += ["--seed-time=0"]
        argv += [*extra, str(torrent)]
        process = await self.spawn(f"aria2-{mode}", argv)
        process.port = port
        return process

    # ------------------------------------------------------------------ transmission

    async def transmission(
        self,
        *,
        torrent: Path | str,
        directory: Path,
        port: int | None = None,
        binary: str = "transmission-cli",
        verify: bool = False,
    ) -> tuple[RefProcess, Path]:
        """transmission-cli on 127.0.0.1 with its own config dir; returns the process and a marker
        file that its ``--finish`` script creates when the torrent completes.

        It seeds when ``directory`` already holds the data (it verifies it first), else downloads;
        ``torrent`` is a .torrent path or a magnet URI.
        It never dials 127.x peers itself, so the other side has to dial ``port``.
        """
        port = port or free_port()
        config = self._dir("transmission-config")
        settings = {
            "bind-address-ipv4": "127.0.0.1",
            "bind-address-ipv6": "::1",
            "peer-port": port,
            "peer-port-random-on-start": False,
            "dht-enabled": False,
            "lpd-enabled": False,
            "pex-enabled": False,
            "utp-enabled": False,
            "port-forwarding-enabled": False,
            "blocklist-enabled": False,
            "rename-partial-files": False,
            "start-added-torrents": True,
            "encryption": 1,
            "message-level": 3,
            "speed-limit-up-enabled": False,
            "speed-limit-down-enabled": False,
            "ratio-limit-enabled": False,
            "idle-seeding-limit-enabled": False,
            # no RPC server: two runs at once would both want its default port 9091
            "rpc-enabled": False,
            "rpc-port": free_port(),
        }
        (config / "settings.json").write_text(json.dumps(settings, indent=1))
        marker = config / "finished"
        script = config / "finished.sh"
        script.write_text(f"#!/bin/sh\ntouch '{marker}'\n")
        script.chmod(0o755)
        # its status line goes to a pipe, block-buffered: ask for line buffering when we can
        stdbuf = shutil.which("stdbuf")
        argv = [
            *([stdbuf, "-oL", "-eL"] if stdbuf else []),
            binary,
            "-g",
            str(config),
            "-w",
            str(directory),
            "-p",
            str(port),
            "-D",
            "-U",
            "-M",
            "-B",
            "-ep",
            "-f",
            str(script),
            *(["-v"] if verify else []),
            str(torrent),
        ]
        process = await self.spawn("transmission", argv)
        process.port = port
        return process, marker


@pytest_asyncio.fixture
async def processes(tmp_path: Path) -> AsyncIterator[ProcessGroup]:
    """Launch reference clients; all of them are terminated (then killed) at teardown."""
    group = ProcessGroup(tmp_path / "ref")
    try:
        yield group
    finally:
        await group.close()
