"""``torrentgoat create`` and ``torrentgoat info``: options, stable JSON, errors with exit code 2."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from torrentgoat.cli import main
from torrentgoat.magnet import parse_magnet
from torrentgoat.metainfo import load_metainfo

TORRENT_KEYS = {
    "type",
    "name",
    "info_hash",
    "format",
    "info_hash_v1",
    "info_hash_v2",
    "piece_layers",
    "piece_length",
    "num_pieces",
    "total_size",
    "private",
    "trackers",
    "web_seeds",
    "comment",
    "created_by",
    "creation_date",
    "magnet",
    "files",
}
MAGNET_KEYS = {
    "type",
    "name",
    "info_hash",
    "info_hash_v2",
    "format",
    "trackers",
    "web_seeds",
    "peers",
    "select_only",
    "public_key",
    "salt",
    "magnet",
}


@pytest.fixture
def data(tmp_path: Path) -> Path:
    root = tmp_path / "model"
    (root / "sub").mkdir(parents=True)
    (root / "config.json").write_bytes(b"{}" * 100)
    (root / "sub" / "weights.bin").write_bytes(bytes(range(256)) * 300)
    return root


def test_create_then_info(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.torrent"
    code = main(
        [
            "create",
            str(data),
            "-o",
            str(out),
            "--piece-size",
            "16KiB",
            "--tracker",
            "http://127.0.0.1:1/a, http://127.0.0.1:2/a",
            "--tracker",
            "udp://127.0.0.1:3",
            "--web-seed",
            "http://127.0.0.1:4/",
            "--private",
            "--name",
            "renamed",
            "--comment",
            "hello",
            "--threads",
            "2",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0
    m = load_metainfo(out)
    assert f"info-hash: {m.info_hash.hex}" in captured.out
    magnet_line = next(line for line in captured.out.splitlines() if line.startswith("magnet: "))
    assert parse_magnet(magnet_line.removeprefix("magnet: ")).info_hash == m.info_hash
    assert "\r" not in captured.err  # no progress bar when stderr is not a terminal
    assert m.announce_tiers == (("http://127.0.0.1:1/a", "http://127.0.0.1:2/a"), ("udp://127.0.0.1:3",))
    assert m.web_seeds == ("http://127.0.0.1:4/",) and m.info.private and m.comment == "hello"
    assert m.info.name == "renamed" and m.info.piece_length == 16384
    assert any(f.pad for f in m.info.files)
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "out.torrent"]  # no temp file left

    assert main(["info", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) == TORRENT_KEYS
    assert report["type"] == "torrent" and report["name"] == "renamed"
    assert report["info_hash"] == m.info_hash.hex
    assert report["piece_length"] == 16384 and report["num_pieces"] == m.info.num_pieces
    assert report["total_size"] == m.info.total_length and report["private"] is True
    assert report["trackers"] == [["http://127.0.0.1:1/a", "http://127.0.0.1:2/a"], ["udp://127.0.0.1:3"]]
    assert report["web_seeds"] == ["http://127.0.0.1:4/"] and report["comment"] == "hello"
    assert isinstance(report["creation_date"], int) and report["created_by"].startswith("torrentgoat/")
    file_keys = {"path", "size", "offset", "pad", "symlink", "pieces_root"}
    assert [set(f) for f in report["files"]] == [file_keys] * len(m.info.files)
    # the default format is hybrid: libtorrent 2.x's layout, a pad after every misaligned file
    assert [(f["path"], f["size"], f["offset"], f["pad"]) for f in report["files"]] == [
        ("renamed/config.json", 200, 0, False),
        ("renamed/.pad/16184", 16184, 200, True),
        ("renamed/sub/weights.bin", 76800, 16384, False),
        ("renamed/.pad/5120", 5120, 93184, True),
    ]
    assert report["format"] == "hybrid" and report["piece_layers"] == "complete"
    assert report["info_hash_v1"] == m.info_hash.hex == m.info_hashes.v1.hex  # type: ignore[union-attr]
    assert report["info_hash_v2"] == m.info_hashes.v2.hex  # type: ignore[union-attr]
    assert f"info-hash v2: {report['info_hash_v2']}" in captured.out
    assert [f["pieces_root"] is not None for f in report["files"]] == [True, False, True, False]
    assert all(f["symlink"] is None for f in report["files"])

    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert m.info_hash.hex in text and "renamed/.pad/16184 [pad]" in text and "[tier 1] udp://" in text
    assert "format:       hybrid" in text and report["info_hash_v2"] in text


@pytest.mark.parametrize("fmt", ["v1", "v2", "hybrid"])
def test_create_formats(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str) -> None:
    """``--format v1`` keeps exactly the info-hash of the library's v1 torrents; v2 has no SHA-1 half."""
    from torrentgoat.creation import create_torrent

    out = tmp_path / "f.torrent"
    assert main(["create", str(data), "-o", str(out), "--format", fmt, "--no-date", "-q"]) == 0
    captured = capsys.readouterr().out
    m = load_metainfo(out)
    assert m.info.format == fmt
    same = create_torrent(data, creation_date=None, format=fmt)  # type: ignore[arg-type]
    assert m.info_hashes == same.info_hashes
    if fmt == "v1":
        assert m.info.v2 is None and "info-hash v2" not in captured
    else:
        assert m.info_hashes.v2 is not None and f"info-hash v2: {m.info_hashes.v2.hex}" in captured
    if fmt == "v2":
        assert m.info.pieces == b"" and m.info_hash == m.info_hashes.v2.truncated  # type: ignore[union-attr]
        magnet = parse_magnet(captured.split("magnet: ", 1)[1].strip())
        assert magnet.info_hash is None and magnet.info_hash_v2 == m.info_hashes.v2
    assert main(["info", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["format"] == fmt


def test_create_options(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "a.torrent"
    assert main(["create", str(data), "-o", str(out), "--no-pad", "--no-date", "-q", "--format", "v1"]) == 0
    assert capsys.readouterr().err == ""
    m = load_metainfo(out)
    assert not any(f.pad for f in m.info.files) and m.creation_date is None and m.info.piece_length == 16384
    first = out.read_bytes()
    assert (
        main(
            [
                "create",
                str(data),
                "-o",
                str(out),
                "--no-pad",
                "--no-date",
                "--force",
                "--piece-size",
                "auto",
                "--format",
                "v1",
            ]
        )
        == 0
    )
    assert out.read_bytes() == first  # reproducible without a date


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["create", "{data}", "-o", "{out}", "--piece-size", "3000"], "power of two"),
        (["create", "{data}", "-o", "{out}", "--piece-size", "lots"], "not a size"),
        (["create", "{tmp}/missing", "-o", "{out}"], "cannot read"),
        (["create", "{data}", "-o", "{tmp}/no/such/dir/x.torrent"], "cannot write"),
        (["create", "{data}", "-o", "{data}/sub/self.torrent"], "inside the directory"),
        (["info", "{tmp}/missing.torrent"], "cannot read"),
        (["info", "{data}/config.json"], "not a torrent"),
        (["info", "magnet:?xt=urn:btih:nothex"], "info-hash"),
        (["info", "magnet:?xt=urn:btmh:1220" + "00" * 31], "btmh"),
        (["create", "{data}", "-o", "{out}", "--no-pad"], "pad files cannot be off"),
    ],
)
def test_bad_input_exits_2(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    args = [a.format(data=data, out=tmp_path / "o.torrent", tmp=tmp_path) for a in argv]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("torrentgoat: error: ") and message in err


def test_info_magnet(capsys: pytest.CaptureFixture[str]) -> None:
    key = "ab" * 32
    uri = (
        "magnet:?xt=urn:btih:" + "0123456789abcdef" * 2 + "01234567"
        "&dn=Model&tr=http%3A%2F%2F127.0.0.1%3A1%2Fa&ws=http://127.0.0.1:2/&x.pe=[::1]:6881&so=1,3-5"
        f"&xs=urn:btpk:{key}&s=0102"
    )
    assert main(["info", uri, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) == MAGNET_KEYS
    assert report == {
        "type": "magnet",
        "name": "Model",
        "info_hash": "0123456789abcdef0123456789abcdef01234567",
        "info_hash_v2": None,
        "format": "v1",
        "trackers": ["http://127.0.0.1:1/a"],
        "web_seeds": ["http://127.0.0.1:2/"],
        "peers": ["[::1]:6881"],
        "select_only": [1, 3, 4, 5],
        "public_key": key,
        "salt": "0102",
        "magnet": parse_magnet(uri).to_uri(),
    }
    assert main(["info", uri]) == 0
    text = capsys.readouterr().out
    assert "Model" in text and "[::1]:6881" in text and "1, 3, 4, 5" in text and key in text


def test_module_entry_point(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.torrent"
    done = subprocess.run(
        [sys.executable, "-m", "torrentgoat", "create", str(data), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    info = subprocess.run(
        [sys.executable, "-m", "torrentgoat", "info", str(out), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert json.loads(info.stdout)["info_hash"] == load_metainfo(out).info_hash.hex


def test_info_json_of_libtorrent_v2_symlinks(capsys: pytest.CaptureFixture[str]) -> None:
    path = Path(__file__).parent / "data" / "libtorrent" / "v2_symlinks.torrent"
    assert main(["info", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["format"] == "v2" and report["info_hash_v1"] is None
    assert report["info_hash"] == report["info_hash_v2"][:40] and report["piece_layers"] == "complete"
    links = {f["path"]: f["symlink"] for f in report["files"] if f["symlink"] is not None}
    assert links["SDL2.framework/Headers"] == "SDL2.framework/Versions/Current/Headers"
    assert all(f["pieces_root"] is None for f in report["files"] if f["pad"] or f["symlink"] is not None)
    assert sum(f["pieces_root"] is not None for f in report["files"]) == 3
