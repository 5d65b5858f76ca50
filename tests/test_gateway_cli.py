"""``python -m torrentgoat gateway``: serves a folder and an HF cache to huggingface_hub, stops on SIGTERM."""

from __future__ import annotations

import asyncio
import filecmp
import os
import signal
import sys
from pathlib import Path

import pytest

from tests.gateway_helpers import ROOT, hf_env, make_model, run_hf_client
from torrentgoat.cli import main
from torrentgoat.cli.gateway import parse_repo_spec
from torrentgoat.errors import ConfigError


def test_repo_specs() -> None:
    assert parse_repo_spec("org/m=./dir") == ("model", "org/m", Path("./dir"), None)
    assert parse_repo_spec("datasets/org/d=/data@" + "a" * 40) == (
        "dataset",
        "org/d",
        Path("/data"),
        "a" * 40,
    )
    with pytest.raises(ConfigError):
        parse_repo_spec("no-equals-sign")


def test_bad_options_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gateway", "--repo", "bad--id=" + str(tmp_path), "--port", "0", "-q"]) == 2
    assert "invalid repo id" in capsys.readouterr().err
    assert main(["gateway", "--repo", f"org/m={tmp_path / 'missing'}", "--port", "0", "-q"]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert main(["gateway", "--upstream", "ftp://x", "--port", "0", "-q"]) == 2
    assert "upstream" in capsys.readouterr().err


async def test_the_command_serves_huggingface_hub_until_sigterm(tmp_path: Path) -> None:
    model = make_model(tmp_path / "model")
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "torrentgoat",
        "gateway",
        "--repo",
        f"org/tiny={model}",
        "--port",
        "0",
        "--upstream",
        "none",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        assert line.startswith("torrentgoat gateway: serving on http://127.0.0.1:"), line
        url = line.split(" on ", 1)[1].strip()
        results = await run_hf_client(
            hf_env(url, tmp_path / "home"),
            tmp_path / "cache",
            {"op": "snapshot", "repo": "org/tiny"},
            {"op": "download", "repo": "org/other", "file": "config.json"},
        )
        assert results[0]["ok"], results
        snapshot = Path(results[0]["result"])
        assert filecmp.cmp(model / "config.json", snapshot / "config.json", shallow=False)
        assert not (snapshot / "pytorch_model.bin").exists()
        assert results[1]["error"] == "RepositoryNotFoundError"
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 60) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
