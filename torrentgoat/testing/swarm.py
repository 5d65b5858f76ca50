"""Local swarms for tests and benchmarks: N torrentgoat :class:`~torrentgoat.session.Session` s on loopback.

Everything runs in the caller's event loop on 127.0.0.1 only (no IPv6 listener, no DHT, no
trackers), so a whole swarm is deterministic enough for tests and cheap enough for benchmarks::

    payload = make_model_payload(tmp_path, shards=2, shard_size=4 * MiB)
    async with local_swarm(payload, tmp_path / "swarm", leechers=3) as swarm:
        await swarm.wait_complete(timeout=30)
        for directory in swarm.leecher_dirs:
            assert_same_files(payload.metainfo, payload.root, directory)

Helpers:

* :func:`loopback_config` -- a :class:`SessionConfig` that never leaves 127.0.0.1;
* :func:`make_file_payload` / :func:`make_model_payload` -- a safetensors shard or a Hugging
  Face-like folder (BEP 47 pad files) on disk with its :class:`Metainfo` and ``.torrent`` file;
* :func:`assert_same_files` -- every non-pad file identical under two roots; :func:`files_on_disk`;
* :func:`local_swarm` -- one seeding session and ``leechers`` downloading sessions (optionally all
  dialling each other), closed on exit;
* :func:`wait_until` -- poll a condition with a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torrentgoat.creation import create_torrent
from torrentgoat.metainfo import Metainfo
from torrentgoat.session import Session, SessionConfig
from torrentgoat.storage.file import PARTS_DIR
from torrentgoat.storage.resume import RESUME_DIR
from torrentgoat.testing.shards import write_model_folder, write_safetensors_shard
from torrentgoat.testing.timing import scaled
from torrentgoat.torrent import Torrent, TorrentConfig

__all__ = [
    "MiB",
    "Payload",
    "Swarm",
    "assert_same_files",
    "describe",
    "file_digest",
    "files_on_disk",
    "local_swarm",
    "loopback_config",
    "make_file_payload",
    "make_model_payload",
    "wait_until",
]

MiB = 1024 * 1024


def loopback_config(
    *,
    upload_limit: int = 0,
    download_limit: int = 0,
    seed: int | None = None,
    torrent: TorrentConfig | None = None,
) -> SessionConfig:
    """A session on 127.0.0.1 only: any free port, no IPv6 listener, no DHT, no trackers, no LSD."""
    return SessionConfig(
        listen_host="127.0.0.1",
        listen_ipv6=None,
        listen_port=0,
        enable_dht=False,
        dht_bootstrap=(),
        enable_trackers=False,
        enable_lsd=False,
        upload_limit=upload_limit,
        download_limit=download_limit,
        seed=seed,
        torrent=torrent or TorrentConfig(),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Payload:
    """Data on disk and its torrent: ``root`` holds the torrent's name (a file or a folder)."""

    root: Path
    metainfo: Metainfo
    torrent_path: Path

    @property
    def name(self) -> str:
        return self.metainfo.info.name

    @property
    def size(self) -> int:
        """Bytes of real (non-pad) file data."""
        return sum(f.length for f in self.metainfo.info.files if not f.pad)


def make_file_payload(
    base: Path,
    size: int,
    *,
    name: str = "model.safetensors",
    piece_length: int = 256 * 1024,
    seed: int = 0,
) -> Payload:
    """One safetensors shard of ``size`` bytes in ``base/seed/`` and its single-file torrent in ``base``."""
    root = base / "seed"
    write_safetensors_shard(root / name, size, seed=seed)
    metainfo = create_torrent(root / name, piece_length=piece_length, creation_date=None)
    torrent_path = base / f"{name}.torrent"
    torrent_path.write_bytes(metainfo.to_bytes())
    return Payload(root=root, metainfo=metainfo, torrent_path=torrent_path)


def make_model_payload(
    base: Path,
    *,
    name: str = "tiny-model",
    shards: int = 2,
    shard_size: int = 3 * MiB + 12345,
    piece_length: int = 256 * 1024,
    seed: int = 0,
) -> Payload:
    """A Hugging Face-like folder (configs, tokenizer, shards, index) as a multi-file torrent with pads."""
    root = base / "seed"
    write_model_folder(root / name, shards=shards, shard_size=shard_size, seed=seed)
    metainfo = create_torrent(root / name, piece_length=piece_length, pad=True, creation_date=None)
    torrent_path = base / f"{name}.torrent"
    torrent_path.write_bytes(metainfo.to_bytes())
    return Payload(root=root, metainfo=metainfo, torrent_path=torrent_path)


def file_digest(path: Path) -> str:
    """SHA-256 of a file (streamed)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _relative(metainfo: Metainfo, index: int) -> Path:
    info = metainfo.info
    entry = info.files[index]
    return Path(info.name) if info.single_file else Path(*entry.path)


def assert_same_files(
    metainfo: Metainfo, source_root: Path, copy_root: Path, *, only: Sequence[int] | None = None
) -> int:
    """Every non-pad file (or the files ``only`` lists) is byte-identical under both roots; returns the count."""
    checked = 0
    for index, entry in enumerate(metainfo.info.files):
        if entry.pad or (only is not None and index not in only):
            continue
        relative = _relative(metainfo, index)
        original, copy = source_root / relative, copy_root / relative
        assert copy.is_file(), f"{copy} is missing"
        size = copy.stat().st_size
        assert size == entry.length, f"{copy}: {size} bytes, want {entry.length}"
        assert file_digest(copy) == file_digest(original), f"{copy} differs from {original}"
        checked += 1
    assert checked > 0, "no file compared"
    return checked


def files_on_disk(root: Path, *, parts: bool = False) -> set[str]:
    """Relative paths (``/``-separated) of every regular file under ``root``.

    The storage's part files (:data:`~torrentgoat.storage.file.PARTS_DIR`, where the bytes of
    unselected files that share a piece with selected ones are kept) and resume data
    (:data:`~torrentgoat.storage.resume.RESUME_DIR`) are left out unless ``parts``.
    """
    if not root.exists():
        return set()
    found = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    if not parts:
        found = {f for f in found if f.split("/", 1)[0] not in (PARTS_DIR, RESUME_DIR)}
    return found


async def wait_until(predicate: Callable[[], bool], *, timeout: float, what: str, step: float = 0.05) -> None:
    """Poll ``predicate`` until it is true; raise :class:`AssertionError` naming ``what`` after ``timeout``
    (stretched on a loaded machine, :func:`~torrentgoat.testing.timing.scaled`)."""
    timeout = scaled(timeout)
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.1f} s waiting for {what}")
        await asyncio.sleep(step)


def describe(torrent: Torrent) -> str:
    """One line of a torrent's state for failure messages."""
    have = torrent.have.count if torrent.have is not None else None
    total = torrent.info.num_pieces if torrent.info is not None else None
    return (
        f"{torrent.name}: state={torrent.state} have={have}/{total} peers={torrent.num_peers} "
        f"down={torrent.downloaded} up={torrent.uploaded} failures={torrent.hash_failures} "
        f"stop={torrent.stop_reason!r}"
    )


@dataclass(slots=True, kw_only=True)
class Swarm:
    """A running local swarm: a seeder and leechers, each its own :class:`Session`."""

    payload: Payload
    seeder: Session
    seed_torrent: Torrent
    leechers: list[Session] = field(default_factory=list)
    torrents: list[Torrent] = field(default_factory=list)
    """The leechers' torrents, in the order of :attr:`leechers`."""
    leecher_dirs: list[Path] = field(default_factory=list)

    @property
    def seeder_address(self) -> str:
        return f"127.0.0.1:{self.seeder.listen_port}"

    async def wait_complete(self, *, timeout: float) -> None:
        """Wait until every leecher's torrent is complete; fail with every torrent's state otherwise.
        ``timeout`` suits an idle machine (:func:`~torrentgoat.testing.timing.scaled`)."""
        timeout = scaled(timeout)
        try:
            await asyncio.wait_for(asyncio.gather(*(t.wait_complete() for t in self.torrents)), timeout)
        except TimeoutError:
            states = "\n".join(describe(t) for t in [self.seed_torrent, *self.torrents])
            raise AssertionError(f"swarm not complete after {timeout:.0f} s:\n{states}") from None


@contextlib.asynccontextmanager
async def local_swarm(
    payload: Payload,
    base: Path,
    *,
    leechers: int = 3,
    mesh: str = "full",
    seeder_config: SessionConfig | None = None,
    leecher_config: SessionConfig | None = None,
    leecher_seed: bool = True,
    add_options: dict[str, Any] | None = None,
) -> AsyncIterator[Swarm]:
    """Start a seeding session on ``payload`` and ``leechers`` sessions downloading into ``base/leecher-K``.

    ``mesh``: ``"full"``: every leecher also dials every other leecher; ``"half"``: leecher *k*
    dials leechers ``0..k-1`` (one connection per pair, no simultaneous opens); ``"none"``: leechers
    dial only the seeder (they may still meet through PEX).  ``leecher_seed``:
    leechers keep running after completion, so they can serve the others to the end.
    ``add_options`` are extra keyword arguments of :meth:`Session.add` for the leechers.  Every
    session is closed on exit.
    """
    async with contextlib.AsyncExitStack() as stack:
        seeder = await stack.enter_async_context(Session(seeder_config or loopback_config(seed=0)))
        seed_torrent = await seeder.add(payload.metainfo, payload.root, seed=True)
        await asyncio.wait_for(seed_torrent.wait_complete(), timeout=scaled(30))  # checked: all there
        sessions = [
            await stack.enter_async_context(Session(leecher_config or loopback_config(seed=k + 1)))
            for k in range(leechers)
        ]
        swarm = Swarm(payload=payload, seeder=seeder, seed_torrent=seed_torrent, leechers=sessions)
        for k, session in enumerate(sessions):
            peers = [swarm.seeder_address]
            if mesh == "full":
                peers += [f"127.0.0.1:{other.listen_port}" for other in sessions if other is not session]
            elif mesh == "half":
                peers += [f"127.0.0.1:{other.listen_port}" for other in sessions[:k]]
            elif mesh != "none":
                raise ValueError(f"mesh must be 'full', 'half' or 'none', got {mesh!r}")
            directory = base / f"leecher-{k}"
            torrent = await session.add(
                payload.metainfo, directory, peers=peers, seed=leecher_seed, **(add_options or {})
            )
            swarm.torrents.append(torrent)
            swarm.leecher_dirs.append(directory)
        yield swarm
