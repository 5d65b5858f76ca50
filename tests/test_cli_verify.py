"""``torrentgoat verify``: exit codes, file selection, summary."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from torrentgoat.cli import main
from torrentgoat.creation import create_torrent
from torrentgoat.testing.shards import write_model_folder


@pytest.fixture
def model(tmp_path: Path) -> tuple[Path, Path]:
    """(torrent file, download directory) for a small HF-like folder shared as one torrent."""
    downloads = tmp_path / "downloads"
    folder = write_model_folder(downloads / "tiny-model", shards=2, shard_size=200_000, seed=5)
    metainfo = create_torrent(folder, piece_length=16 * 1024, creation_date=None)
    torrent = tmp_path / "tiny.torrent"
    torrent.write_bytes(metainfo.to_bytes())
    return torrent, downloads


def test_complete_data_exits_zero(model: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    torrent, downloads = model
    assert main(["verify", str(torrent), str(downloads)]) == 0
    out = capsys.readouterr().out
    assert "0 bad, 0 missing" in out
    assert "all 6 selected files complete" in out


def test_corrupt_byte_exits_one_and_names_the_file(
    model: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    torrent, downloads = model
    shard = downloads / "tiny-model" / "model-00002-of-00002.safetensors"
    with shard.open("r+b") as handle:
        handle.seek(100_000)
        byte = handle.read(1)
        handle.seek(100_000)
        handle.write(bytes([byte[0] ^ 0xFF]))
    assert main(["verify", str(torrent), str(downloads), "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "1 bad, 0 missing" in out
    assert main(["verify", str(torrent), str(downloads)]) == 1
    out = capsys.readouterr().out
    assert "tiny-model/model-00002-of-00002.safetensors: 1 bad, 0 missing" in out
    assert "model-00001" not in out
    # selecting only untouched files succeeds, with or without the torrent name in the glob
    assert main(["verify", str(torrent), str(downloads), "-q", "--files", "*.json", "model-00001*"]) == 0
    assert main(["verify", str(torrent), str(downloads), "-q", "--files", "tiny-model/config.json"]) == 0


def test_missing_file_exits_one(model: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    torrent, downloads = model
    (downloads / "tiny-model" / "tokenizer.json").unlink()
    assert main(["verify", str(torrent), str(downloads)]) == 1
    out = capsys.readouterr().out
    assert "tiny-model/tokenizer.json: 0 bad," in out
    assert not (downloads / "tiny-model" / "tokenizer.json").exists()  # verify never creates files


def test_empty_directory_is_all_missing(
    model: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    torrent, _ = model
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["verify", str(torrent), str(empty), "-q"]) == 1
    assert list(empty.iterdir()) == []
    assert "DIR is the directory that contains 'tiny-model'" in capsys.readouterr().err


def test_bad_input_exits_two(model: tuple[Path, Path], tmp_path: Path) -> None:
    torrent, downloads = model
    garbage = tmp_path / "garbage.torrent"
    garbage.write_bytes(b"d4:spam")
    assert main(["verify", str(tmp_path / "nope.torrent"), str(downloads)]) == 2
    assert main(["verify", str(garbage), str(downloads)]) == 2
    assert main(["verify", str(torrent), str(tmp_path / "no-such-dir")]) == 2
    assert main(["verify", str(torrent), str(downloads), "--files", "*.bin"]) == 2
    assert main(["verify", str(torrent), str(downloads), "--window", "0"]) == 2


def test_subprocess_with_progress_bar(model: tuple[Path, Path]) -> None:
    torrent, downloads = model
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    proc = subprocess.run(
        [sys.executable, "-m", "torrentgoat", "verify", str(torrent), str(downloads)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "verify" in proc.stderr  # tqdm bar on stderr
    assert "pieces good" in proc.stdout


def test_symlink_escaping_the_directory_exits_two(
    model: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    torrent, downloads = model
    config = downloads / "tiny-model" / "config.json"
    secret = tmp_path / "secret.json"
    secret.write_bytes(config.read_bytes())
    config.unlink()
    config.symlink_to(secret)
    assert main(["verify", str(torrent), str(downloads), "-q"]) == 2
    assert "outside the download directory" in capsys.readouterr().err


@pytest.mark.parametrize("fmt", ["v2", "hybrid"])
def test_verify_v2_and_hybrid(tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str) -> None:
    downloads = tmp_path / "downloads"
    folder = write_model_folder(downloads / "tiny-model", shards=2, shard_size=200_000, seed=5)
    metainfo = create_torrent(folder, piece_length=16 * 1024, creation_date=None, format=fmt)  # type: ignore[arg-type]
    torrent = tmp_path / f"{fmt}.torrent"
    torrent.write_bytes(metainfo.to_bytes())
    assert main(["verify", str(torrent), str(downloads)]) == 0
    out = capsys.readouterr().out
    assert f"({fmt}; " in out and metainfo.info_hashes.v2 is not None and metainfo.info_hashes.v2.hex in out
    assert "0 bad, 0 missing" in out
    shard = downloads / "tiny-model" / "model-00001-of-00002.safetensors"
    data = bytearray(shard.read_bytes())
    data[50_000] ^= 1
    shard.write_bytes(bytes(data))
    assert main(["verify", str(torrent), str(downloads)]) == 1
    assert "model-00001-of-00002.safetensors: 1 bad, 0 missing" in capsys.readouterr().out


def test_verify_v2_without_piece_layers_checks_whole_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from torrentgoat import bencode

    downloads = tmp_path / "downloads"
    folder = write_model_folder(downloads / "tiny-model", shards=2, shard_size=200_000, seed=5)
    metainfo = create_torrent(folder, piece_length=16 * 1024, creation_date=None, format="v2")
    torrent = tmp_path / "bare.torrent"
    torrent.write_bytes(bencode.encode({b"info": bencode.decode(metainfo.info.raw)}))
    assert main(["verify", str(torrent), str(downloads)]) == 0
    out = capsys.readouterr().out
    assert "0 bad, 0 missing" in out and "verified whole against their pieces root" in out
