"""Shared pieces of the gateway tests: a small model, source wrappers that misbehave on purpose, and
``huggingface_hub`` run in-process (endpoint given per call, temporary cache) or in a subprocess
(``HF_ENDPOINT`` in its environment, as a user runs it; also for older versions, see
``require_hf_legacy``)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from torrentgoat.errors import TorrentGoatError
from torrentgoat.gateway import RepoFile, RepoSnapshot, RepoSource, RepoType
from torrentgoat.testing.shards import write_model_folder

ROOT = Path(__file__).resolve().parent.parent
HF_CLIENT = ROOT / "tools" / "hf_client.py"
IN_CI = bool(os.environ.get("CI"))
LEGACY_DIR = ROOT / ".ci" / "hf-legacy"


def make_model(directory: Path, *, shard_size: int = 3 * 1024 * 1024, pickle: bool = True) -> Path:
    """configs, tokenizer, two safetensors shards, a nested file and (``pickle``) a pickle ``.bin``."""
    folder = write_model_folder(directory, shards=2, shard_size=shard_size)
    (folder / "sub" / "deeper").mkdir(parents=True)
    (folder / "sub" / "deeper" / "notes.txt").write_text("nested\n")
    (folder / ".gitattributes").write_text("*.safetensors filter=lfs diff=lfs merge=lfs -text\n")
    if pickle:
        (folder / "pytorch_model.bin").write_bytes(b"\x80\x04\x95\x10\x00\x00\x00" + b"\x00" * 64)
    return folder


def hf_offline_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let in-process huggingface_hub make requests whatever the environment said at its import."""
    import huggingface_hub.constants as constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


def hf_env(endpoint: str, home: Path, pythonpath: str | None = None) -> dict[str, str]:
    """Environment for a subprocess client: only HF_ENDPOINT points it at the gateway."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(
        HF_ENDPOINT=endpoint,
        HF_HOME=str(home),
        HF_HUB_OFFLINE="0",
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
    )
    paths = [p for p in (pythonpath, str(ROOT), env.get("PYTHONPATH")) if p]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


async def run_hf_client(
    env: dict[str, str], cache_dir: Path, *ops: dict[str, Any], timeout: float = 180.0
) -> list[dict[str, Any]]:
    """Run ``tools/hf_client.py`` with ``ops``; one result dict per op."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(HF_CLIENT),
        str(cache_dir),
        *(json.dumps(op) for op in ops),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode == 0, err.decode()[-3000:]
    results = [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]
    assert len(results) == len(ops), out.decode() + err.decode()[-3000:]
    return results


def hf_legacy_versions() -> list[Path]:
    """Folders holding an older huggingface_hub (``pip install --target``): ``$TORRENTGOAT_HF_LEGACY``
    (``os.pathsep``-separated) or ``.ci/hf-legacy/*`` (``.ci/run`` installs 0.20.3 and 0.26.5 there)."""
    configured = os.environ.get("TORRENTGOAT_HF_LEGACY")
    candidates = (
        [Path(p) for p in configured.split(os.pathsep) if p] if configured else sorted(LEGACY_DIR.glob("*"))
    )
    return [p for p in candidates if (p / "huggingface_hub" / "__init__.py").is_file()]


def require_hf_legacy() -> list[Path]:
    found = hf_legacy_versions()
    if not found:
        message = "no huggingface_hub 0.2x installed beside the current one (.ci/run installs them)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)  # only on a developer machine without them, never in CI
    return found


class InterruptingSource:
    """Wraps a source; the first ``times`` reads stop after ``cut_after`` bytes (a dropped connection)."""

    def __init__(self, inner: Any, *, cut_after: int, times: int = 1) -> None:
        self.inner = inner
        self.cut_after = cut_after
        self.remaining = times
        self.reads: list[tuple[str, int, int]] = []

    async def resolve(self, repo_type: RepoType, repo_id: str, revision: str) -> RepoSnapshot:
        snapshot: RepoSnapshot = await self.inner.resolve(repo_type, repo_id, revision)
        return snapshot

    def read(self, snapshot: RepoSnapshot, file: RepoFile, start: int, stop: int) -> AsyncIterator[bytes]:
        self.reads.append((file.path, start, stop))
        cut = self.remaining > 0 and stop - start > self.cut_after
        if cut:
            self.remaining -= 1
        return self._read(snapshot, file, start, stop, cut)

    async def _read(
        self, snapshot: RepoSnapshot, file: RepoFile, start: int, stop: int, cut: bool
    ) -> AsyncIterator[bytes]:
        sent = 0
        inner = self.inner.read(snapshot, file, start, stop)
        try:
            async for chunk in inner:
                if cut and sent + len(chunk) >= self.cut_after:
                    yield chunk[: self.cut_after - sent]
                    raise TorrentGoatError("connection cut on purpose")
                sent += len(chunk)
                yield chunk
        finally:
            await inner.aclose()


class EndlessSource:
    """One big file of zeros, produced lazily; records when a read starts and when it is closed."""

    def __init__(self, size: int = 1 << 34, *, chunk: int = 256 * 1024, delay: float = 0.0) -> None:
        self.size = size
        self.chunk = chunk
        self.delay = delay
        self.opened = 0
        self.closed = asyncio.Event()
        self.produced = 0
        self.entry = RepoFile(path="big.safetensors", size=size, lfs=True, sha256="0" * 64)
        self.snapshot = RepoSnapshot(
            repo_type="model", repo_id="org/endless", commit="e" * 40, files={self.entry.path: self.entry}
        )

    async def resolve(self, repo_type: RepoType, repo_id: str, revision: str) -> RepoSnapshot:
        if repo_id != "org/endless":
            from torrentgoat.errors import RepoNotFoundError

            raise RepoNotFoundError(repo_id)
        return self.snapshot

    async def read(
        self, snapshot: RepoSnapshot, file: RepoFile, start: int, stop: int
    ) -> AsyncIterator[bytes]:
        self.opened += 1
        block = bytes(self.chunk)
        try:
            position = start
            while position < stop:
                if self.delay:
                    await asyncio.sleep(self.delay)
                n = min(self.chunk, stop - position)
                self.produced += n
                position += n
                yield block[:n]
        finally:
            self.closed.set()


def _is_source(source: object) -> RepoSource:
    assert isinstance(source, RepoSource)
    return source
