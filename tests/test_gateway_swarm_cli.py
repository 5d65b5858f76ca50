"""``python -m torrentgoat gateway --torrent ORG/NAME=TORRENT``: the command, the swarm and ``huggingface_hub``
in three processes, as users run them (``HF_ENDPOINT`` only), with the installed ``huggingface_hub`` and
the 0.2x versions beside it (see tests/test_gateway_hf_versions.py)."""

from __future__ import annotations

import asyncio
import filecmp
import os
import signal
import sys
from pathlib import Path

import pytest

from tests.gateway_helpers import ROOT, hf_env, hf_legacy_versions, require_hf_legacy, run_hf_client
from torrentgoat.cli import main
from torrentgoat.cli.gateway import progress_line
from torrentgoat.creation import create_torrent
from torrentgoat.errors import ConfigError
from torrentgoat.gateway.catalog import parse_torrent_spec
from torrentgoat.gateway.fetch import FetchStatus
from torrentgoat.session import Session
from torrentgoat.testing.swarm import MiB, loopback_config, make_model_payload


def test_torrent_specs() -> None:
    assert parse_torrent_spec("org/m=magnet:?xt=urn:btih:" + "a" * 40 + "&dn=x") == (
        "model",
        "org/m",
        "magnet:?xt=urn:btih:" + "a" * 40 + "&dn=x",
    )
    assert parse_torrent_spec("datasets/org/d=./d.torrent") == ("dataset", "org/d", "./d.torrent")
    for bad in ("no-equals", "bad--id=x.torrent", "=x.torrent"):
        with pytest.raises(ConfigError):
            parse_torrent_spec(bad)


async def _exercise(pythonpath: str | None, tmp_path: Path) -> None:
    payload = make_model_payload(tmp_path, shards=2, shard_size=6 * MiB, piece_length=256 * 1024, seed=4)
    folder = payload.root / payload.name
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04\x95" + bytes(64))  # refused, never fetched
    metainfo = create_torrent(folder, piece_length=256 * 1024, pad=True, creation_date=None)
    torrent_path = tmp_path / "tiny.torrent"
    torrent_path.write_bytes(metainfo.to_bytes())
    commit = metainfo.info_hash.hex
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    )
    async with Session(loopback_config(upload_limit=8 * MiB, seed=1)) as seeder:
        seed = await seeder.add(metainfo, payload.root, seed=True)
        await asyncio.wait_for(seed.wait_complete(), 30)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "torrentgoat", "gateway",
            "--torrent", f"org/tiny={torrent_path}",
            "--peer", f"127.0.0.1:{seeder.listen_port}",
            "-o", str(tmp_path / "cache"),
            "--port", "0", "--peer-port", "0", "--peer-listen", "127.0.0.1", "--peer-listen6", "",
            "--no-dht", "--no-trackers", "--no-lsd", "--upstream", "none",
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
            assert line.startswith("torrentgoat gateway: serving on http://127.0.0.1:"), line
            url = line.split(" on ", 1)[1].strip()
            results = await run_hf_client(
                hf_env(url, tmp_path / "home", pythonpath),
                tmp_path / "hf-cache",
                {"op": "version"},
                {"op": "snapshot", "repo": "org/tiny"},
                {"op": "files", "repo": "org/tiny", "revision": commit},
                {"op": "info", "repo": "org/tiny", "files_metadata": True},
                {"op": "download", "repo": "org/tiny", "file": "pytorch_model.bin"},
                {"op": "download", "repo": "org/tiny", "file": "config.json", "revision": "f" * 40},
                {"op": "download", "repo": "org/other", "file": "config.json"},
            )
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 60) == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    version = results[0]["result"]
    assert [r["ok"] for r in results[1:4]] == [True] * 3, (version, results)
    snapshot = Path(results[1]["result"])
    assert snapshot.name == commit
    expected = sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.name != "pytorch_model.bin" and p.is_file()
    )
    assert sorted(p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*") if p.is_file()) == expected
    for name in expected:
        assert filecmp.cmp(folder / name, snapshot / name, shallow=False), (version, name)
    assert results[2]["result"] == expected
    assert results[3]["result"]["sha"] == commit
    entry_not_found = "EntryNotFoundError" if version.startswith("0.") else "RemoteEntryNotFoundError"
    assert [(r["ok"], r.get("error")) for r in results[4:]] == [
        (False, entry_not_found),
        (False, "RevisionNotFoundError"),
        (False, "RepositoryNotFoundError"),
    ], (version, results)
    assert not list((tmp_path / "cache").rglob("pytorch_model.bin"))


async def test_the_command_serves_a_mapped_torrent(tmp_path: Path) -> None:
    await _exercise(None, tmp_path)


@pytest.mark.parametrize("legacy", hf_legacy_versions() or [None], ids=lambda p: p.name if p else "none")
async def test_the_command_serves_huggingface_hub_0_2x(legacy: Path | None, tmp_path: Path) -> None:
    if legacy is None:
        require_hf_legacy()
        return
    await _exercise(str(legacy), tmp_path)


def test_progress_lines() -> None:
    mib = 1 << 20
    fetching = FetchStatus(
        label="org/m@01234567",
        state="downloading",
        verified_bytes=int(256 * mib * 0.37),
        wanted_bytes=256 * mib,
        download_rate=12.3 * mib,
        upload_rate=0.0,
        peers=4,
        readers=2,
    )
    assert progress_line(fetching) == "org/m@01234567: 37% of 256.0 MiB, 12.3 MiB/s, 4 peers, 2 clients"
    waiting = FetchStatus(
        label="datasets/org/d@89abcdef",
        state="metadata",
        verified_bytes=0,
        wanted_bytes=mib,
        download_rate=0.0,
        upload_rate=0.0,
        peers=1,
        readers=0,
    )
    assert progress_line(waiting) == "datasets/org/d@89abcdef: 0% of 1.0 MiB (metadata), idle, 1 peer"


def test_bad_swarm_options_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    common = [
        "--port",
        "0",
        "--peer-port",
        "0",
        "--peer-listen",
        "127.0.0.1",
        "--no-dht",
        "-q",
        "-o",
        str(tmp_path),
    ]
    assert main(["gateway", "--torrent", "no-equals-sign", *common]) == 2
    assert "ORG/NAME=MAGNET_OR_TORRENT" in capsys.readouterr().err
    assert main(["gateway", "--follow", "magnet:?xt=urn:btih:" + "a" * 40, *common]) == 2
    assert "--follow takes a collection's magnet" in capsys.readouterr().err
    assert main(["gateway", "--torrent", f"org/m={tmp_path / 'missing.torrent'}", *common]) == 2
    assert "missing.torrent" in capsys.readouterr().err
