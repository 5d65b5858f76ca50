"""Kill torrentgoat commands at random moments and check that nothing is lost (issue 16).

Each scenario runs the real command -- ``python -m torrentgoat get``, ``collection update``,
``collection publish`` -- as a subprocess on loopback (peers, seeds and a small DHT live in this
process), sends it ``SIGKILL`` after a random delay (one to three times in a row on the same
directory), checks what a kill may leave behind, then runs the command again to the end:

* ``get``: the rerun exits 0 and every file is byte-identical to the seed's;
* ``collection update``: after *every* kill ``collection verify`` accepts the directory and it holds
  the old version or the new one (never a mix); the rerun installs the new version, which verifies
  and equals the publisher's files;
* ``collection publish``: after every kill the publisher's directory holds no version yet or the
  old or the new one, and ``collection verify`` accepts it; the rerun publishes the new version,
  which a client resolves from the DHT.

The delays are drawn from ``[0, 1.1 x`` the time one uninterrupted run takes``]``, measured first.
The figures (kills that landed, checks passed, bytes fetched against the payload) are in the
:class:`KillReport`.  ``tools/killtest.py`` runs it from the command line (20 runs per scenario);
``tests/test_kills.py`` runs a few.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from torrentgoat.collection import CollectionClient, ModelSpec, Publisher, Store, build_collection
from torrentgoat.dht.items import parse_info_hash_value
from torrentgoat.keys import SigningKey
from torrentgoat.session import Session, SessionConfig
from torrentgoat.testing.localdht import local_dht as _local_dht
from torrentgoat.testing.shards import read_safetensors_header, write_model_folder, write_safetensors_shard
from torrentgoat.testing.swarm import MiB, assert_same_files, loopback_config, make_model_payload
from torrentgoat.torrent import TorrentConfig

__all__ = ["KillReport", "kill_get", "kill_publish", "kill_update"]

Say = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


@dataclass(slots=True)
class KillReport:
    """What one scenario did and found."""

    scenario: str
    runs: int = 0
    kills: int = 0
    """SIGKILLs that hit a running command."""
    exited_first: int = 0
    """Random delays longer than the command took (no kill)."""
    checks: int = 0
    """Consistency checks passed right after a kill (``collection verify`` and the version held)."""
    held: dict[int, int] = field(default_factory=dict)
    """Seq held right after a kill -> how many times (0: no version yet)."""
    fetched: int = 0
    """Bytes the seeds uploaded over every run (kills included)."""
    payload: int = 0
    """Bytes the runs had to fetch at least (the sum over runs of what was missing at the start)."""
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def line(self) -> str:
        held = " ".join(f"v{seq}:{n}" for seq, n in sorted(self.held.items()))
        text = (
            f"{self.scenario:<18} runs {self.runs:>3}  kills {self.kills:>3} (+{self.exited_first} exited first)  "
            f"checks {self.checks:>3}{f' (held {held})' if held else ''}"
        )
        if self.payload:
            text += (
                f"  fetched {self.fetched / MiB:.1f} MiB for {self.payload / MiB:.1f} MiB missing "
                f"({self.fetched / self.payload:.2f}x)"
            )
        return text + f"  {self.seconds:.0f} s  {'OK' if self.ok else f'{len(self.failures)} FAILED'}"


# --------------------------------------------------------------------------- running commands


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "torrentgoat", *args]


async def _run(args: Sequence[str], *, timeout: float = 120.0) -> tuple[int, str]:
    """Run a command to its end: (exit code, stdout + stderr)."""
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return -1, f"timed out after {timeout:.0f} s"
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace") + err.decode(errors="replace")


async def _run_and_kill(args: Sequence[str], delay: float) -> bool:
    """Start a command and SIGKILL it after ``delay`` seconds; False when it had exited before."""
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    try:
        await asyncio.wait_for(proc.wait(), delay)
        return False
    except TimeoutError:
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        return True


def _loopback(*, dht_port: int | None = None) -> list[str]:
    net = ["--listen", "127.0.0.1", "--listen6", "", "--port", "0", "--no-trackers", "-q"]
    if dht_port is None:
        return [*net, "--no-dht"]
    return [*net, "--dht-bootstrap", f"127.0.0.1:{dht_port}"]


async def _timed(args: Sequence[str], what: str, report: KillReport) -> float:
    """Run once uninterrupted (the calibration); its duration."""
    started = time.monotonic()
    code, output = await _run(args)
    if code != 0:
        report.failures.append(f"{what}: uninterrupted run exited {code}: {output[-400:]}")
    return time.monotonic() - started


async def _kill_some(args: Sequence[str], rng: random.Random, span: float, report: KillReport) -> int:
    """One to three kills in a row; returns how many landed (each is followed by the caller's check)."""
    landed = 0
    for _ in range(rng.randint(1, 3)):
        if await _run_and_kill(args, rng.uniform(0.0, 1.1 * span)):
            report.kills += 1
            landed += 1
        else:
            report.exited_first += 1
    return landed


# --------------------------------------------------------------------------- get


async def kill_get(
    work: Path, *, runs: int, rng: random.Random, size: int = 16 * MiB, rate: int = 8 * MiB, say: Say = _quiet
) -> KillReport:
    """``get`` of a multi-file model torrent from a rate-limited seed, killed 1-3 times per run."""
    report = KillReport("get")
    started = time.monotonic()
    payload = make_model_payload(work, shards=4, shard_size=size // 4, piece_length=256 * 1024, seed=161)
    async with Session(loopback_config(seed=1, upload_limit=rate)) as seeder:
        source = await seeder.add(payload.metainfo, payload.root, seed=True)
        await asyncio.wait_for(source.wait_complete(), 60)

        def args(dest: Path) -> list[str]:
            return _command(
                "get", str(payload.torrent_path), "-o", str(dest), "--peer", f"127.0.0.1:{seeder.listen_port}",
                *_loopback(),
            )  # fmt: skip

        span = await _timed(args(work / "get-calibration"), "get", report)
        say(f"get: one uninterrupted run takes {span:.1f} s")
        for run in range(runs):
            dest = work / f"get-{run}"
            before = source.uploaded
            await _kill_some(args(dest), rng, span, report)
            code, output = await _run(args(dest))
            report.runs += 1
            report.fetched += source.uploaded - before
            report.payload += sum(f.length for f in payload.metainfo.info.files if not f.pad)
            if code != 0:
                report.failures.append(f"get run {run}: rerun exited {code}: {output[-400:]}")
                continue
            try:
                assert_same_files(payload.metainfo, payload.root, dest)
            except AssertionError as exc:
                report.failures.append(f"get run {run}: {exc}")
            shutil.rmtree(dest, ignore_errors=True)
            say(report.line())
    report.seconds = time.monotonic() - started
    return report


# --------------------------------------------------------------------------- collections


def _dht_session(port: int, *, seed: int, upload_limit: int = 0) -> SessionConfig:
    return SessionConfig(
        listen_host="127.0.0.1",
        listen_ipv6=None,
        listen_port=0,
        enable_dht=True,
        dht_bootstrap=(("127.0.0.1", port),),
        enable_trackers=False,
        upload_limit=upload_limit,
        seed=seed,
        torrent=TorrentConfig(max_peers=20),
    )


def _rewrite_shard(path: Path, seed: int) -> None:
    """Same size and tensor names, new weights (a fine-tuned shard), written aside and renamed."""
    header = read_safetensors_header(path)
    first = min(int(name.split(".")[2]) for name in header if name.startswith("model.layers."))
    tmp = path.with_name(path.name + ".new")
    write_safetensors_shard(tmp, path.stat().st_size, seed=seed, first_layer=first)
    tmp.replace(path)


def _copy_root(source: Path, target: Path) -> None:
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target, symlinks=True)


async def _held_version(
    root: Path, allowed: set[int], what: str, report: KillReport, *, after_kill: bool = True
) -> int | None:
    """After a kill: ``collection verify`` must accept ``root`` and it must hold one of the ``allowed``
    seqs (0: no version yet, then there is nothing to verify).  Returns the seq held."""
    try:
        state = await asyncio.to_thread(Store(root).load_state)
    except Exception as exc:
        report.failures.append(f"{what}: the state cannot be read after a kill: {exc}")
        return None
    seq = 0 if state is None else state.seq
    if after_kill:
        report.held[seq] = report.held.get(seq, 0) + 1
    if seq not in allowed:
        report.failures.append(f"{what}: holds seq {seq} after a kill, expected one of {sorted(allowed)}")
        return seq
    if state is not None:
        store = Store(root)
        for model in state.models.values():  # what users load: ROOT/<model> must be the held version
            if os.path.realpath(store.link_path(model.name)) != os.path.realpath(store.installed_dir(model)):
                report.failures.append(f"{what}: {model.name} does not lead to the version held (seq {seq})")
                return seq
        code, output = await _run(_command("collection", "verify", str(root)))
        if code != 0:
            report.failures.append(
                f"{what}: collection verify rejects the directory after a kill: {output[-600:]}"
            )
            return seq
    if after_kill:
        report.checks += 1
    return seq


def _same_models(root: Path, truth: Path, report: KillReport, what: str) -> None:
    state = Store(root).load_state()
    if state is None:
        report.failures.append(f"{what}: no state after the final run")
        return
    for model in state.models.values():
        for f in model.files:
            mine, theirs = root / model.name / f.path, truth / model.name / f.path
            if mine.read_bytes() != theirs.read_bytes():
                report.failures.append(f"{what}: {model.name}/{f.path} differs from the publisher's")


async def kill_update(
    work: Path, *, runs: int, rng: random.Random, shard: int = 2 * MiB, rate: int = 6 * MiB, say: Say = _quiet
) -> KillReport:
    """``collection update`` from v1 (two models) to v2 (one shard changed, one model added), killed
    1-3 times per run, with ``collection verify`` after every kill."""
    report = KillReport("collection update")
    started = time.monotonic()
    key = SigningKey(bytes(rng.randrange(256) for _ in range(32)))
    src, pub_root, base = work / "src", work / "publisher", work / "base"
    alpha = write_model_folder(src / "alpha", shards=2, shard_size=shard, seed=1)
    beta = write_model_folder(src / "beta", shards=2, shard_size=shard, seed=2)
    specs = [ModelSpec(name="alpha", path=alpha), ModelSpec(name="beta", path=beta)]
    hub = "http://127.0.0.1:9"
    build_collection("goats", specs, pub_root, key.public_key, piece_length=64 * 1024, hub=hub)
    async with _local_dht() as nodes:
        port = nodes[0].address.port
        async with Session(_dht_session(port, seed=1, upload_limit=rate)) as pub_session:
            publisher = Publisher(pub_session, pub_root, key)
            first = await publisher.publish()
            async with Session(_dht_session(port, seed=2)) as consumer:
                result = await CollectionClient(consumer, base, timeout=60).sync(first.magnet)
                if not result.ok:
                    report.failures.append(f"update: the v1 base could not be fetched: {result}")
                    return report
            _rewrite_shard(alpha / "model-00002-of-00002.safetensors", seed=99)
            gamma = write_model_folder(src / "gamma", shards=1, shard_size=shard, seed=3)
            specs.append(ModelSpec(name="gamma", path=gamma))
            build_collection("goats", specs, pub_root, key.public_key, piece_length=64 * 1024, hub=hub)
            await publisher.publish()
            new_bytes = shard + sum(p.stat().st_size for p in gamma.iterdir())

            def args(root: Path) -> list[str]:
                return _command("collection", "update", str(root), *_loopback(dht_port=port))

            def uploaded() -> int:
                return sum(t.uploaded for t in list(pub_session.torrents.values()))

            _copy_root(base, work / "update-calibration")
            span = await _timed(args(work / "update-calibration"), "update", report)
            say(f"collection update: one uninterrupted run takes {span:.1f} s")
            for run in range(runs):
                root = work / f"update-{run}"
                _copy_root(base, root)
                before = uploaded()
                what = f"update run {run}"
                for _ in range(rng.randint(1, 3)):
                    if await _run_and_kill(args(root), rng.uniform(0.0, 1.1 * span)):
                        report.kills += 1
                        await _held_version(root, {1, 2}, what, report)
                    else:
                        report.exited_first += 1
                code, output = await _run(args(root))
                report.runs += 1
                report.fetched += uploaded() - before
                report.payload += new_bytes
                if code != 0:
                    report.failures.append(f"{what}: rerun exited {code}: {output[-400:]}")
                    continue
                if await _held_version(root, {2}, f"{what} (final)", report, after_kill=False) == 2:
                    _same_models(root, pub_root, report, what)
                shutil.rmtree(root, ignore_errors=True)
                say(report.line())
    report.seconds = time.monotonic() - started
    return report


async def kill_publish(
    work: Path, *, runs: int, rng: random.Random, shard: int = 1 * MiB, say: Say = _quiet
) -> KillReport:
    """``collection publish --once`` of a first version and of a second one over a published first
    (alternately), killed 1-3 times per run, the directory checked after every kill; each run has a
    DHT of its own, whose item must point at the final version."""
    report = KillReport("collection publish")
    started = time.monotonic()
    key = SigningKey(bytes(rng.randrange(256) for _ in range(32)))
    key_file = key.save(work / "publisher.key", overwrite=True)
    src = work / "src"
    alpha = write_model_folder(src / "alpha", shards=2, shard_size=shard, seed=4)
    beta = write_model_folder(src / "beta", shards=1, shard_size=shard, seed=5)
    hub = "http://127.0.0.1:9"
    first_only, over_first = work / "template-v1", work / "template-v2"
    specs = [ModelSpec(name="alpha", path=alpha)]
    build_collection("zoo", specs, first_only, key.public_key, piece_length=64 * 1024, hub=hub)
    build_collection("zoo", specs, over_first, key.public_key, piece_length=64 * 1024, hub=hub)
    async with _local_dht() as nodes, Session(_dht_session(nodes[0].address.port, seed=3)) as session:
        await Publisher(session, over_first, key).publish()
        for torrent in list(session.torrents.values()):
            torrent.stop("template ready")
            await torrent.wait_stopped()
    _rewrite_shard(alpha / "model-00001-of-00002.safetensors", seed=77)
    specs.append(ModelSpec(name="beta", path=beta))
    build_collection("zoo", specs, over_first, key.public_key, piece_length=64 * 1024, hub=hub)

    def args(root: Path, port: int) -> list[str]:
        return _command(
            "collection", "publish", str(root), "--key", str(key_file), "--once", *_loopback(dht_port=port)
        )

    async with _local_dht() as nodes:
        _copy_root(over_first, work / "publish-calibration")
        span = await _timed(args(work / "publish-calibration", nodes[0].address.port), "publish", report)
    say(f"collection publish: one uninterrupted run takes {span:.1f} s")
    for run in range(runs):
        template, old = (first_only, 0) if run % 2 == 0 else (over_first, 1)
        root = work / f"publish-{run}"
        what = f"publish run {run} (seq {old} -> {old + 1})"
        _copy_root(template, root)
        async with _local_dht() as nodes:
            port = nodes[0].address.port
            for _ in range(rng.randint(1, 3)):
                if await _run_and_kill(args(root, port), rng.uniform(0.0, 1.1 * span)):
                    report.kills += 1
                    await _held_version(root, {old, old + 1}, what, report)
                else:
                    report.exited_first += 1
            code, output = await _run(args(root, port))
            report.runs += 1
            if code != 0:
                report.failures.append(f"{what}: rerun exited {code}: {output[-400:]}")
                continue
            await _held_version(root, {old + 1}, f"{what} (final)", report, after_kill=False)
            if Store(root).draft_path.exists():
                report.failures.append(f"{what}: the draft is still there after the final run")
            state = Store(root).load_state()
            item = await nodes[2].get_mutable(key.public_key, b"zoo")
            if item is None or state is None:
                report.failures.append(f"{what}: nothing published in the DHT")
            elif item.seq != old + 1 or parse_info_hash_value(item.value) != state.manifest_info_hash:
                report.failures.append(f"{what}: the DHT names seq {item.seq}, not the held version")
        shutil.rmtree(root, ignore_errors=True)
        say(report.line())
    report.seconds = time.monotonic() - started
    return report
