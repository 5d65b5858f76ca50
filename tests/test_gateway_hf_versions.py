"""``huggingface_hub`` in its own process, pointed at the gateway by ``HF_ENDPOINT`` alone (what users do),
with the installed version and with 0.2x versions installed beside it (``.ci/run`` puts 0.20.3 and 0.26.5
in ``.ci/hf-legacy/``; elsewhere set ``TORRENTGOAT_HF_LEGACY`` to folders made with
``pip install --target DIR huggingface_hub==0.26.5``)."""

from __future__ import annotations

import filecmp
from pathlib import Path
from typing import Any

import pytest

from tests.gateway_helpers import (
    InterruptingSource,
    hf_env,
    hf_legacy_versions,
    make_model,
    require_hf_legacy,
    run_hf_client,
)
from torrentgoat.gateway import FolderSource, Gateway, GatewayConfig
from torrentgoat.testing.hub import FakeHub

COMMIT = "5" * 40


def _by_op(results: list[dict[str, Any]]) -> list[tuple[bool, str]]:
    return [(r["ok"], r.get("error") or "") for r in results]


async def _exercise(pythonpath: str | None, tmp_path: Path) -> None:
    model = make_model(tmp_path / "model")
    remote = make_model(tmp_path / "remote", shard_size=1024 * 1024, pickle=False)
    source = FolderSource()
    await source.add("org/tiny", model, commit=COMMIT)
    async with FakeHub(cdn_host="localhost") as hub:
        hub.add_repo("org/remote", "6" * 40, remote)
        async with Gateway([source], GatewayConfig(port=0, upstream=hub.url)) as gateway:
            env = hf_env(gateway.url, tmp_path / "home", pythonpath)
            results = await run_hf_client(
                env,
                tmp_path / "cache",
                {"op": "version"},
                {"op": "snapshot", "repo": "org/tiny"},
                {"op": "download", "repo": "org/tiny", "file": "sub/deeper/notes.txt", "revision": COMMIT},
                {"op": "files", "repo": "org/tiny"},
                {"op": "info", "repo": "org/tiny", "files_metadata": True},
                {"op": "snapshot", "repo": "org/remote"},
                {"op": "download", "repo": "org/unknown", "file": "config.json"},
                {"op": "download", "repo": "org/tiny", "file": "config.json", "revision": "v9"},
                {"op": "download", "repo": "org/tiny", "file": "missing.json"},
                {"op": "download", "repo": "org/tiny", "file": "pytorch_model.bin"},
                {"op": "snapshot", "repo": "org/unknown"},
                {"op": "metadata", "url": f"{gateway.url}/org/tiny/resolve/main/%2e%2e/%2e%2e/x"},
            )
    version = results[0]["result"]
    outcome = _by_op(results[1:])
    assert outcome[:5] == [(True, "")] * 5, (version, results)
    entry_not_found = "EntryNotFoundError" if version.startswith("0.") else "RemoteEntryNotFoundError"
    assert outcome[5:] == [
        (False, "RepositoryNotFoundError"),
        (False, "RevisionNotFoundError"),
        (False, entry_not_found),
        (False, entry_not_found),
        (False, "RepositoryNotFoundError"),
        (False, "BadRequestError"),
    ], (version, results)
    assert "--allow-pickle" in results[9]["message"]
    snapshot = Path(results[1]["result"])
    expected = sorted(
        p.relative_to(model).as_posix()
        for p in model.rglob("*")
        if p.is_file() and p.name != "pytorch_model.bin"
    )
    assert sorted(p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*") if p.is_file()) == expected
    for name in expected:
        assert filecmp.cmp(model / name, snapshot / name, shallow=False), (version, name)
    assert results[4]["result"]["sha"] == COMMIT
    remote_snapshot = Path(results[5]["result"])
    assert filecmp.cmp(remote / "config.json", remote_snapshot / "config.json", shallow=False)
    assert filecmp.cmp(
        remote / "model-00002-of-00002.safetensors",
        remote_snapshot / "model-00002-of-00002.safetensors",
        shallow=False,
    )


async def test_hf_endpoint_in_the_environment_is_enough(tmp_path: Path) -> None:
    await _exercise(None, tmp_path)


@pytest.mark.parametrize("legacy", hf_legacy_versions() or [None], ids=lambda p: p.name if p else "none")
async def test_huggingface_hub_0_2x(legacy: Path | None, tmp_path: Path) -> None:
    if legacy is None:
        require_hf_legacy()
        return
    await _exercise(str(legacy), tmp_path)


@pytest.mark.parametrize("legacy", hf_legacy_versions() or [None], ids=lambda p: p.name if p else "none")
async def test_huggingface_hub_0_2x_resumes_on_the_next_call(legacy: Path | None, tmp_path: Path) -> None:
    """0.2x keeps ``<blob>.incomplete`` when a transfer breaks; the next call asks for the rest with ``Range``
    (by default from 0.23 on, with ``resume_download=True`` before)."""
    if legacy is None:
        require_hf_legacy()
        return
    model = make_model(tmp_path / "big", shard_size=24 * 1024 * 1024, pickle=False)
    name = "model-00001-of-00002.safetensors"
    size = (model / name).stat().st_size
    cut = 15 * 1024 * 1024
    inner = FolderSource()
    await inner.add("org/big", model)
    source = InterruptingSource(inner, cut_after=cut)
    async with Gateway([source], GatewayConfig(port=0, upstream=None)) as gateway:
        env = hf_env(gateway.url, tmp_path / "home", str(legacy))
        op = {"op": "download", "repo": "org/big", "file": name, "resume": True}
        first, second = await run_hf_client(env, tmp_path / "cache", op, op)
    assert not first["ok"], first  # the cut surfaces as an error in 0.2x (no retry on a broken body)
    assert second["ok"], second
    assert Path(second["result"]).read_bytes() == (model / name).read_bytes()
    reads = [r for r in source.reads if r[0] == name]
    assert reads[0] == (name, 0, size)
    _, start, stop = reads[1]
    assert 0 < start <= cut and stop == size
