"""The command line imports only what a command uses (issue 15): ``--help`` and every command's parser
load no session, no aiohttp, no collection or gateway code, not even asyncio; ``info``, ``create`` and
``verify`` load no session and no HTTP client.  Structural, not timed: the modules a fresh interpreter
imported are read from ``python -X importtime`` (timings live in ``benchmarks/startup.py``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from torrentgoat.cli import command_names

ROOT = Path(__file__).resolve().parent.parent

NEVER_TO_PARSE = (
    "aiohttp",
    "asyncio",
    "yaml",
    "cryptography",
    "tqdm",
    "uvloop",
    "torrentgoat.session",
    "torrentgoat.torrent",
    "torrentgoat.aio",
    "torrentgoat.wire",
    "torrentgoat.dht",
    "torrentgoat.collection.client",
    "torrentgoat.collection.build",
    "torrentgoat.gateway.server",
    "torrentgoat.gateway.swarm",
    "torrentgoat.metainfo",
)
"""Modules (and their submodules) that building the argument parser must not import."""

NO_SESSION = (
    "aiohttp",
    "torrentgoat.session",
    "torrentgoat.torrent",
    "torrentgoat.collection",
    "torrentgoat.gateway",
)
"""What a command working on local files only (info, create, verify) must not import."""


def imported_modules(*args: str, cwd: Path | None = None) -> set[str]:
    """Every module ``python -m torrentgoat ARGS`` imported (the command must exit 0)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "torrentgoat", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd or ROOT,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    names = set()
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            name = line.rsplit("|", 1)[1].strip()
            if name != "package":  # the header line
                names.add(name)
    assert "torrentgoat.cli" in names  # the output was read
    return names


def offenders(names: set[str], banned: tuple[str, ...]) -> list[str]:
    return sorted(n for n in names if any(n == b or n.startswith(b + ".") for b in banned))


def test_top_level_help_imports_no_command_machinery() -> None:
    assert offenders(imported_modules("--help"), NEVER_TO_PARSE) == []


@pytest.mark.parametrize("command", command_names())
def test_each_command_help_imports_no_command_machinery(command: str) -> None:
    assert offenders(imported_modules(command, "--help"), NEVER_TO_PARSE) == []


def test_local_file_commands_import_no_session(tmp_path: Path) -> None:
    data = tmp_path / "data.bin"
    data.write_bytes(os.urandom(100_000))
    torrent = tmp_path / "data.torrent"
    assert offenders(imported_modules("create", str(data), "-o", str(torrent)), NO_SESSION) == []
    assert offenders(imported_modules("info", str(torrent)), NO_SESSION) == []
    assert offenders(imported_modules("verify", "-q", str(torrent), str(tmp_path)), NO_SESSION) == []


def test_the_session_imports_aiohttp_only_when_http_is_used() -> None:
    """aiohttp (~11 MiB, ~0.2 s) is imported at the first HTTP tracker announce, web seed or .torrent
    URL: a session on UDP trackers, the DHT and peers alone never loads it."""
    done = subprocess.run(
        [sys.executable, "-c", "import sys, torrentgoat.session; print(sorted(sys.modules))"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        timeout=120,
        check=True,
    )
    assert "torrentgoat.torrent.core" in done.stdout
    assert "'aiohttp'" not in done.stdout
