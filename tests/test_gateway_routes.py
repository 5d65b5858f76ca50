"""The gateway's pure parts: request targets, path safety, byte ranges, Hub JSON and git ids."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from torrentgoat.errors import EntryNotFoundError, InvalidRequestError
from torrentgoat.gateway import hubjson
from torrentgoat.gateway.answers import error_answer, file_headers, header_safe, refusal_answer
from torrentgoat.gateway.routes import (
    InfoRoute,
    RangeNotSatisfiable,
    ResolveRoute,
    TreeRoute,
    parse_range,
    parse_target,
    query_flag,
)
from torrentgoat.gateway.source import (
    RepoFile,
    RepoSnapshot,
    check_repo_id,
    check_repo_path,
    git_blob_oid,
    hub_stores_in_lfs,
    lfs_pointer,
)

COMMIT = "a" * 40
SHA = "b" * 64


# ------------------------------------------------------------------------------------------- targets


@pytest.mark.parametrize(
    ("target", "route"),
    [
        ("/org/name/resolve/main/config.json", ResolveRoute(repo_type="model", repo_id="org/name", revision="main", path="config.json")),
        ("/gpt2/resolve/main/a/b.txt", ResolveRoute(repo_type="model", repo_id="gpt2", revision="main", path="a/b.txt")),
        ("/datasets/org/d/resolve/v1/x.parquet", ResolveRoute(repo_type="dataset", repo_id="org/d", revision="v1", path="x.parquet")),
        ("/spaces/org/s/resolve/main/app.py", ResolveRoute(repo_type="space", repo_id="org/s", revision="main", path="app.py")),
        ("/models/org/m/resolve/main/f", ResolveRoute(repo_type="model", repo_id="org/m", revision="main", path="f")),
        # huggingface_hub quotes the revision with safe="": refs/pr/1 arrives as one segment
        ("/org/m/resolve/refs%2Fpr%2F1/f%20g.json", ResolveRoute(repo_type="model", repo_id="org/m", revision="refs/pr/1", path="f g.json")),
        ("/api/models/org/m", InfoRoute(repo_type="model", repo_id="org/m", revision=None)),
        ("/api/models/gpt2", InfoRoute(repo_type="model", repo_id="gpt2", revision=None)),
        ("/api/models/org/m/revision/main", InfoRoute(repo_type="model", repo_id="org/m", revision="main")),
        ("/api/models/gpt2/revision/v1.0", InfoRoute(repo_type="model", repo_id="gpt2", revision="v1.0")),
        ("/api/datasets/org/d/revision/main", InfoRoute(repo_type="dataset", repo_id="org/d", revision="main")),
        ("/api/models/org/m/tree/main", TreeRoute(repo_type="model", repo_id="org/m", revision="main", path="")),
        ("/api/models/org/m/tree/main/sub%2Fdir", TreeRoute(repo_type="model", repo_id="org/m", revision="main", path="sub/dir")),
        ("/api/models/gpt2/tree/" + COMMIT + "/a/b", TreeRoute(repo_type="model", repo_id="gpt2", revision=COMMIT, path="a/b")),
    ],
)  # fmt: skip
def test_targets_huggingface_hub_sends_are_routed(target: str, route: object) -> None:
    assert parse_target(target) == route


@pytest.mark.parametrize(
    "target",
    [
        "/",
        "/favicon.ico",
        "/org/name",
        "/api/whoami-v2",
        "/api/models",
        "/api/models/org/m/discussions",
        "/org/m/blob/main/f",
    ],
)
def test_other_targets_are_not_ours(target: str) -> None:
    assert parse_target(target) is None


@pytest.mark.parametrize(
    "target",
    [
        "/org/m/resolve/main/../../../etc/passwd",
        "/org/m/resolve/main/a/..",
        "/org/m/resolve/main/%2e%2e/x",
        "/org/m/resolve/main/%2E%2E%2Fx",
        "/org/m/resolve/main/a%2F..%2F..%2Fx",
        "/org/m/resolve/main/a\\..\\x",
        "/org/m/resolve/main/a%5C..%5Cx",
        "/org/m/resolve/main/a%00b",
        "/org/m/resolve/main//etc/passwd",
        "/org/m/resolve/main/%2Fetc%2Fpasswd",
        "/org/m/resolve/main/./x",
        "/org/m/resolve/main/C:/x",
        "/org/m/resolve/main/a%0d%0aSet-Cookie:x",
        "/org/m/resolve/%2e%2e/x",
        "/org/m/resolve/main/",
        "/org/m/resolve/main",
        "/../m/resolve/main/x",
        "/org/..%2Fm/resolve/main/x",
        "/or--g/m/resolve/main/x",
        "/-org/m/resolve/main/x",
        "/org/m./resolve/main/x",
        "/org/m/resolve/main/%ff%fe",
        "/api/models/org/m/tree/main/..",
        "/api/models/org/m/tree/main/a%2F..%2F..",
        "/api/models/org/m/revision/..%2F..%2Fetc",
        "/api/models/o%2Fg/m",
        "relative/path",
    ],
)
def test_unsafe_targets_are_refused(target: str) -> None:
    with pytest.raises(InvalidRequestError):
        parse_target(target)


@given(st.text(max_size=60))
def test_any_parsed_path_stays_inside_the_repo(text: str) -> None:
    try:
        route = parse_target("/org/m/resolve/main/" + text)
    except InvalidRequestError:
        return
    assert isinstance(route, ResolveRoute)
    parts = route.path.split("/")
    assert all(part not in ("", ".", "..") and "\\" not in part and "\x00" not in part for part in parts)
    assert Path("/cache", route.path).resolve().is_relative_to("/cache")


def test_repo_ids_follow_the_hub_rules() -> None:
    for good in ("gpt2", "org/name", "Org_1/name-2.v3", "a/" + "b" * 96):
        assert check_repo_id(good) == good
    for bad in ("", "a/b/c", "a--b/c", "a/b..c", "a/.b", "a/b-", "a/" + "b" * 97, "a b/c", "a/b.git", "ä/b"):
        with pytest.raises(InvalidRequestError):
            check_repo_id(bad)
    assert check_repo_path("a/b c/d.json") == "a/b c/d.json"


def test_query_flags_accept_both_httpx_and_requests_spellings() -> None:
    assert query_flag("true") and query_flag("True") and query_flag("1")
    assert not query_flag("false") and not query_flag("False") and not query_flag(None)


# -------------------------------------------------------------------------------------------- ranges


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        (None, 10, None),
        ("bytes=0-", 10, (0, 10)),
        ("bytes=3-", 10, (3, 10)),
        ("bytes=3-5", 10, (3, 6)),
        ("bytes=3-100", 10, (3, 10)),
        ("bytes=-4", 10, (6, 10)),
        ("bytes=-40", 10, (0, 10)),
        ("Bytes = 2-2", 10, (2, 3)),
        ("bytes=0-1,4-5", 10, None),  # several ranges: ignored, whole file
        ("bytes=5-3", 10, None),  # invalid: ignored
        ("items=0-3", 10, None),
        ("bytes=a-", 10, None),
        ("bytes=\u00b2-", 10, None),
    ],
)
def test_ranges(header: str | None, size: int, expected: tuple[int, int] | None) -> None:
    assert parse_range(header, size) == expected


@pytest.mark.parametrize(
    ("header", "size"), [("bytes=10-", 10), ("bytes=99-", 10), ("bytes=-0", 10), ("bytes=0-", 0)]
)
def test_unsatisfiable_ranges(header: str, size: int) -> None:
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, size)


@given(st.text(max_size=30), st.integers(min_value=0, max_value=1000))
def test_a_range_never_leaves_the_file(header: str, size: int) -> None:
    try:
        result = parse_range(header, size)
    except RangeNotSatisfiable:
        return
    if result is not None:
        start, stop = result
        assert 0 <= start < stop <= size


# ------------------------------------------------------------------------------------- git and JSON


def _git(*args: str, stdin: bytes = b"", cwd: Path | None = None) -> str:
    return (
        subprocess.run(["git", *args], input=stdin, capture_output=True, check=True, cwd=cwd)
        .stdout.decode()
        .strip()
    )


def test_blob_ids_match_git(tmp_path: Path) -> None:
    content = b"hello world\n"
    assert git_blob_oid(content) == _git("hash-object", "--stdin", stdin=content)
    pointer = lfs_pointer(SHA, 12345)
    entry = RepoFile(path="w.safetensors", size=12345, lfs=True, sha256=SHA)
    assert entry.blob_id == _git("hash-object", "--stdin", stdin=pointer)
    assert entry.pointer_size == len(pointer)
    assert entry.etag == SHA


def test_tree_ids_match_git(tmp_path: Path) -> None:
    """Folder ids in listings are the ids git itself computes for the same tree."""
    contents = {"a.txt": b"a\n", "a/b.txt": b"b\n", "a-b/c.txt": b"c\n", "a/d/e.txt": b"e\n", "z": b""}
    files = [RepoFile(path=p, size=len(c), lfs=False, git_oid=git_blob_oid(c)) for p, c in contents.items()]
    repo = tmp_path / "repo"
    _git("init", "-q", str(repo))
    for path, content in contents.items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_bytes(content)
    _git("add", "-A", cwd=repo)
    oids = hubjson.git_tree_oids(files)
    assert oids[""] == _git("write-tree", cwd=repo)
    assert oids["a"] == _git("rev-parse", f"{oids['']}:a", cwd=repo)
    assert oids["a/d"] == _git("rev-parse", f"{oids['']}:a/d", cwd=repo)


def _snapshot() -> RepoSnapshot:
    files = [
        RepoFile(path="config.json", size=2, lfs=False, git_oid=git_blob_oid(b"{}"), sha256="c" * 64),
        RepoFile(path="model.safetensors", size=100, lfs=True, sha256=SHA),
        RepoFile(path="sub/x/y.txt", size=1, lfs=False, git_oid=git_blob_oid(b"y")),
    ]
    return RepoSnapshot(repo_type="model", repo_id="org/m", commit=COMMIT, files={f.path: f for f in files})


def test_repo_info_has_what_every_huggingface_hub_version_requires() -> None:
    snap = _snapshot()
    document = hubjson.repo_info(snap, list(snap.files.values()), blobs=True)
    for key in ("id", "sha", "private", "downloads", "likes", "tags", "siblings", "modelId"):
        assert key in document
    assert document["sha"] == COMMIT
    lfs = next(s for s in document["siblings"] if s["rfilename"] == "model.safetensors")
    assert lfs["lfs"] == {"sha256": SHA, "size": 100, "pointerSize": len(lfs_pointer(SHA, 100))}
    small = hubjson.repo_info(snap, list(snap.files.values()), blobs=False)["siblings"]
    assert small == [
        {"rfilename": "config.json"},
        {"rfilename": "model.safetensors"},
        {"rfilename": "sub/x/y.txt"},
    ]
    assert "xetHash" not in str(document)


def test_tree_listing_root_recursive_subfolder_and_pages() -> None:
    files = list(_snapshot().files.values())
    root = hubjson.tree_entries(files, "", recursive=False)
    assert [(e["type"], e["path"]) for e in root] == [
        ("file", "config.json"),
        ("file", "model.safetensors"),
        ("directory", "sub"),
    ]
    assert root[1]["lfs"]["oid"] == SHA
    everything = hubjson.tree_entries(files, "", recursive=True)
    assert [e["path"] for e in everything] == [
        "config.json",
        "model.safetensors",
        "sub",
        "sub/x",
        "sub/x/y.txt",
    ]
    assert [e["path"] for e in hubjson.tree_entries(files, "sub", recursive=False)] == ["sub/x"]
    with pytest.raises(EntryNotFoundError):
        hubjson.tree_entries(files, "config.json", recursive=False)
    first, cursor = hubjson.page(everything, None, 2)
    second, cursor2 = hubjson.page(everything, str(cursor), 2)
    third, cursor3 = hubjson.page(everything, str(cursor2), 2)
    assert first + second + third == everything and cursor3 is None
    for bad in ("-1", "x", "99", "1" * 20):
        with pytest.raises(InvalidRequestError):
            hubjson.page(everything, bad, 2)


def test_file_headers_and_error_answers() -> None:
    snap = _snapshot()
    lfs = file_headers(snap, snap.files["model.safetensors"])
    assert lfs["X-Repo-Commit"] == COMMIT and lfs["ETag"] == f'"{SHA}"' and lfs["X-Linked-Etag"] == f'"{SHA}"'
    assert lfs["X-Linked-Size"] == "100" and lfs["Accept-Ranges"] == "bytes"
    small = file_headers(snap, snap.files["config.json"])
    assert small["ETag"] == f'"{git_blob_oid(b"{}")}"' and "X-Linked-Etag" not in small
    assert not any(name.lower().startswith("x-xet") for name in {**lfs, **small})
    missing = error_answer(EntryNotFoundError("nope"), commit=COMMIT)
    assert missing.status == 404 and missing.headers["X-Error-Code"] == "EntryNotFound"
    assert missing.headers["X-Repo-Commit"] == COMMIT
    refused = refusal_answer("x.bin: refusing pickle-based weights")
    assert refused.status == 403 and refused.headers["X-Error-Code"] == "EntryNotFound"
    assert "X-Repo-Commit" not in refused.headers
    assert header_safe("a\r\nb\u00e9") == "a  b\\xe9"


def test_lfs_rule() -> None:
    assert hub_stores_in_lfs("model.safetensors", 10) and hub_stores_in_lfs("x/pytorch_model.BIN", 10)
    assert not hub_stores_in_lfs("config.json", 100) and hub_stores_in_lfs("big.json", 10 * 1024 * 1024)
    with pytest.raises(ValueError):
        RepoFile(path="w.safetensors", size=1, lfs=True, git_oid="a" * 40)
    with pytest.raises(InvalidRequestError):
        RepoFile(path="../x", size=1, lfs=False, git_oid="a" * 40)
