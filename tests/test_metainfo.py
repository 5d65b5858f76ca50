"""Metainfo parsing and validation: BEP 3 / 12 / 19 / 27 / 47, path safety, hostile torrents, fuzzing."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import string
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from conftest import require_libtorrent
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from torrentgoat import bencode, metainfo
from torrentgoat.errors import BencodeError, HybridMismatchError, MetainfoError, UnsafePathError
from torrentgoat.metainfo import (
    FileEntry,
    Metainfo,
    encode_metainfo,
    load_metainfo,
    parse_info,
    parse_metainfo,
)

ROOT = Path(__file__).resolve().parent.parent
PIECE = 16384


def _load_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "make_hostile_torrents", ROOT / "tools/make_hostile_torrents.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _keys(extra: dict[Any, Any]) -> dict[bytes, Any]:
    return {k.replace("_", " ").encode() if isinstance(k, str) else k: v for k, v in extra.items()}


def single_info(length: int = 40_000, **extra: Any) -> dict[bytes, Any]:
    pieces = -(-length // PIECE)
    return {
        b"name": b"model.bin",
        b"piece length": PIECE,
        b"length": length,
        b"pieces": bytes(range(20)) * pieces,
        **_keys(extra),
    }


def multi_info(files: list[tuple[list[bytes], int] | dict[bytes, Any]], **extra: Any) -> dict[bytes, Any]:
    entries: list[dict[bytes, Any]] = [
        f if isinstance(f, dict) else {b"length": f[1], b"path": f[0]} for f in files
    ]
    total = sum(e[b"length"] for e in entries)
    return {
        b"name": b"model",
        b"piece length": PIECE,
        b"files": entries,
        b"pieces": b"\x01" * 20 * max(1, -(-total // PIECE)),
        **_keys(extra),
    }


def torrent(info: dict[bytes, Any], **top: Any) -> bytes:
    return bencode.encode({b"info": info, **{k.replace("_", " ").encode(): v for k, v in top.items()}})


# ------------------------------------------------------------------------------------------ basics


def test_single_file() -> None:
    m = parse_metainfo(torrent(single_info(), announce=b"http://127.0.0.1:6969/announce", comment=b"hi"))
    info = m.info
    assert info.single_file and info.name == "model.bin"
    assert info.files == (FileEntry(path=("model.bin",), length=40_000, offset=0),)
    assert info.total_length == 40_000 and info.num_pieces == 3
    assert [info.piece_size(i) for i in range(3)] == [PIECE, PIECE, 40_000 - 2 * PIECE]
    assert info.piece_hash(1) == bytes(range(20))
    with pytest.raises(IndexError):
        info.piece_size(3)
    assert m.announce_tiers == (("http://127.0.0.1:6969/announce",),)
    assert m.comment == "hi" and not info.private
    assert info.raw == bencode.encode(single_info())
    assert m.info_hash.raw == hashlib.sha1(info.raw).digest()


def test_info_hash_is_over_the_original_bytes_of_unsorted_info() -> None:
    sorted_info = bencode.encode(single_info())
    # Same dictionary with its keys in reverse order: other clients hash these exact bytes.
    value = bencode.decode(sorted_info)
    assert isinstance(value, dict)
    unsorted_info = (
        b"d" + b"".join(bencode.encode(k) + bencode.encode(value[k]) for k in reversed(value)) + b"e"
    )
    assert unsorted_info != sorted_info
    data = b"d8:announce9:http://x/4:info" + unsorted_info + b"e"
    m = parse_metainfo(data)
    assert m.info.raw == unsorted_info
    assert m.info_hash.raw == hashlib.sha1(unsorted_info).digest() != hashlib.sha1(sorted_info).digest()
    assert parse_info(unsorted_info).info_hash == m.info_hash
    # Re-encoding keeps the info bytes untouched, so the identity survives.
    again = parse_metainfo(m.to_bytes())
    assert again == m and again.info.raw == unsorted_info


def test_multi_file_offsets_pads_and_attr() -> None:
    files: list[tuple[list[bytes], int] | dict[bytes, Any]] = [
        {b"length": 100, b"path": [b"a", b"x.bin"], b"attr": b"x"},
        {b"length": PIECE - 100, b"path": [b".pad", b"16284"], b"attr": b"p"},
        ([b"b"], 5000),
        {b"length": PIECE - 5000, b"path": [b".pad", b"11384"], b"attr": b"p"},
        ([b"c"], 1),
    ]
    m = parse_metainfo(torrent(multi_info(files)))
    info = m.info
    assert not info.single_file
    assert [f.path for f in info.files] == [
        ("model", "a", "x.bin"),
        ("model", ".pad", "16284"),
        ("model", "b"),
        ("model", ".pad", "11384"),
        ("model", "c"),
    ]
    assert [f.offset for f in info.files] == [0, 100, PIECE, PIECE + 5000, 2 * PIECE]
    assert [f.pad for f in info.files] == [False, True, False, True, False]
    assert info.files[0].attr == "x" and info.files[2].path_str == "model/b"
    assert info.total_length == 2 * PIECE + 1 and info.num_pieces == 3


def test_pad_files_may_repeat_their_path() -> None:
    """libtorrent names pads ``.pad/<size>``: two equal-sized pads share a path."""
    pad = {b"length": PIECE - 100, b"path": [b".pad", b"16284"], b"attr": b"p"}
    files: list[tuple[list[bytes], int] | dict[bytes, Any]] = [
        ([b"a"], 100),
        pad,
        ([b"b"], 100),
        pad,
        ([b"c"], 100),
    ]
    info = parse_metainfo(torrent(multi_info(files))).info
    assert sum(f.pad for f in info.files) == 2


def test_zero_length_files_are_allowed() -> None:
    info = parse_metainfo(torrent(multi_info([([b"empty"], 0), ([b"data"], 10)]))).info
    assert [(f.length, f.offset) for f in info.files] == [(0, 0), (10, 0)]


def test_trackers_bep12_and_web_seeds_bep19() -> None:
    m = parse_metainfo(
        torrent(
            single_info(),
            announce=b"http://ignored/announce",
            **{
                "announce-list": [[b"http://a/1", b"http://a/2"], [], [b"udp://b:1", b"http://a/1"]],
                "url-list": b"http://seed/",
            },
        )
    )
    # BEP 12: announce-list wins over announce; empty tiers and repeated URLs dropped.
    assert m.announce_tiers == (("http://a/1", "http://a/2"), ("udp://b:1",))
    assert m.trackers == ("http://a/1", "http://a/2", "udp://b:1")
    assert m.web_seeds == ("http://seed/",)
    m2 = parse_metainfo(torrent(single_info(), **{"url-list": [b"http://s1/", b"", b"http://s2/"]}))
    assert m2.web_seeds == ("http://s1/", "http://s2/") and m2.announce_tiers == ()
    m3 = parse_metainfo(torrent(single_info(), announce=b"http://only/", **{"announce-list": [[]]}))
    assert m3.announce_tiers == (("http://only/",),)


def test_private_flag_bep27() -> None:
    assert parse_metainfo(torrent(single_info(private=1))).info.private
    assert not parse_metainfo(torrent(single_info(private=0))).info.private


def test_utf8_variants_are_preferred() -> None:
    info = single_info(name=b"caf\xe9")
    info[b"name.utf-8"] = "café".encode()
    assert parse_metainfo(torrent(info)).info.name == "café"
    multi = multi_info(
        [{b"length": 10, b"path": [b"\xe9t\xe9"], b"path.utf-8": ["été".encode()]}],
        **{"name.utf-8": b"\xff"},  # invalid variant: fall back to 'name'
    )
    parsed = parse_metainfo(torrent(multi)).info
    assert parsed.name == "model" and parsed.files[0].path == ("model", "été")


def test_free_text_never_fails() -> None:
    m = parse_metainfo(torrent(single_info(), comment=b"\xff\xfe", created_by=b"x", creation_date=b"junk"))
    assert m.comment == "\ufffd\ufffd" and m.created_by == "x" and m.creation_date is None


def test_to_bytes_round_trip() -> None:
    m = parse_metainfo(
        torrent(
            single_info(private=1),
            **{"announce-list": [[b"http://a/"], [b"http://b/"]], "url-list": [b"http://w/"]},
            comment=b"c",
            created_by=b"me",
            creation_date=1234,
        )
    )
    data = encode_metainfo(m)
    assert parse_metainfo(data) == m
    assert bencode.decode(data) == bencode.decode(m.to_bytes())
    lone = Metainfo(info=m.info, announce_tiers=(("http://a/",),))
    assert bencode.decode(lone.to_bytes()) == {b"announce": b"http://a/", b"info": single_info(private=1)}


def test_load_metainfo(tmp_path: Path) -> None:
    path = tmp_path / "t.torrent"
    path.write_bytes(torrent(single_info()))
    assert load_metainfo(path).info.name == "model.bin"
    assert load_metainfo(str(path)).info.name == "model.bin"
    with pytest.raises(MetainfoError, match="cannot read"):
        load_metainfo(tmp_path / "missing.torrent")
    (tmp_path / "bad.torrent").write_bytes(b"not bencode")
    with pytest.raises(MetainfoError, match="not a torrent file"):
        load_metainfo(tmp_path / "bad.torrent")


def test_size_caps(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    data = torrent(single_info())
    monkeypatch.setattr(metainfo, "MAX_TORRENT_SIZE", len(data) - 1)
    with pytest.raises(MetainfoError, match="cap"):
        parse_metainfo(data)
    with pytest.raises(MetainfoError, match="cap"):
        parse_info(bencode.encode(single_info()) + b"x" * len(data))
    (tmp_path / "big.torrent").write_bytes(data)
    with pytest.raises(MetainfoError, match="cap"):
        load_metainfo(tmp_path / "big.torrent")
    monkeypatch.undo()
    monkeypatch.setattr(metainfo, "MAX_FILES", 3)
    four = multi_info([([str(i).encode()], 10) for i in range(4)])
    with pytest.raises(MetainfoError, match="more than the cap"):
        parse_info(bencode.encode(four))


# ------------------------------------------------------------------------------------- path safety


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ([b".."], "not allowed"),
        ([b"a", b"..", b"b"], "not allowed"),
        ([b"."], "not allowed"),
        ([b""], "empty path component"),
        ([b"a", b""], "empty path component"),
        ([b"/etc/passwd"], "separator"),
        ([b"a/b"], "separator"),
        ([b"a\\b"], "separator"),
        ([b"a\x00b"], "NUL"),
        ([b"C:"], "Windows drive"),
        ([b"c:evil"], "Windows drive"),
        ([], "empty 'path'"),
    ],
)
def test_unsafe_file_paths(path: list[bytes], message: str) -> None:
    with pytest.raises(UnsafePathError, match=message):
        parse_info(bencode.encode(multi_info([(path, 10)])))


@pytest.mark.parametrize("name", [b"..", b".", b"", b"a/b", b"/", b"a\\b", b"\x00", b"Z:"])
def test_unsafe_names(name: bytes) -> None:
    with pytest.raises(UnsafePathError):
        parse_info(bencode.encode(single_info(name=name)))
    with pytest.raises(UnsafePathError):
        parse_info(bencode.encode(multi_info([([b"a"], 10)], name=name)))


@pytest.mark.parametrize(
    "paths",
    [
        [[b"a"], [b"a"]],
        [[b"d", b"f"], [b"d", b"f"]],
        [[b"a"], [b"a", b"b"]],
        [[b"a", b"b"], [b"a"]],
        [[b"a", b"b", b"c"], [b"a", b"b"]],
    ],
)
def test_colliding_paths(paths: list[list[bytes]]) -> None:
    with pytest.raises(UnsafePathError, match=r"twice|is a file"):
        parse_info(bencode.encode(multi_info([(p, 10) for p in paths])))


def test_pad_paths_are_not_refused_as_collisions() -> None:
    files: list[tuple[list[bytes], int] | dict[bytes, Any]] = [
        ([b"a"], 10),
        {b"length": 5, b"path": [b"a"], b"attr": b"p"},  # a pad is never written: not refused
    ]
    assert len(parse_info(bencode.encode(multi_info(files))).files) == 2


@pytest.mark.parametrize(
    ("paths", "expected"),
    [
        ([[b"U"], [b"u"]], ["U", "u.1"]),
        ([[b"Model.bin"], [b"model.BIN"], [b"MODEL.bin"]], ["Model.bin", "model.1.BIN", "MODEL.2.bin"]),
        ([[b"A"], [b"a", b"b"]], ["A.1", "a/b"]),  # a file never takes a folder's name
        ([[b"a", b"b"], [b"A"]], ["a/b", "A.1"]),
        ([[b"d", b"x"], [b"D", b"X"], [b"D", b"y"]], ["d/x", "D/X.1", "D/y"]),  # folders merge
        ([[b"a.1"], [b"a"], [b"A"]], ["a.1", "a", "A.2"]),  # a taken candidate is skipped
        ([[b"a"], [b"A"], [b"a.1"]], ["a", "A.1", "a.1.1"]),  # libtorrent leaves A.1 and a.1 here
        ([[b".hidden"], [b".HIDDEN"]], [".hidden", ".1.HIDDEN"]),
        ([[b"a.b", b"c"], [b"A.B", b"C"]], ["a.b/c", "A.B/C.1"]),
        ([[b"\xc3\x89"], [b"\xc3\xa9"]], ["\u00c9", "\u00e9"]),  # only ASCII case is folded
    ],
)
def test_names_equal_ignoring_case_are_renamed(paths: list[list[bytes]], expected: list[str]) -> None:
    """Policy (module docstring of metainfo, PROTOCOL.md Storage): libtorrent's renaming."""
    info = parse_info(bencode.encode(multi_info([(p, 10) for p in paths])))
    assert [f.path_str for f in info.files] == [f"model/{e}" for e in expected]
    for entry, original in zip(info.files, paths, strict=True):
        torrent_path = ("model", *(c.decode() for c in original))
        assert entry.renamed_from == (torrent_path if entry.path != torrent_path else ())


def test_pads_rename_like_files_but_equal_pads_share_a_name() -> None:
    pad: dict[bytes, Any] = {b"attr": b"p"}
    files: list[tuple[list[bytes], int] | dict[bytes, Any]] = [
        {b"length": 10, b"path": [b"x"], **pad},
        {b"length": 10, b"path": [b"X"], **pad},  # same size: shares the name
        {b"length": 11, b"path": [b"X"], **pad},  # renamed (never written anyway)
        ([b"x"], 3),  # a real file: after the pads, renamed past the taken X.1
    ]
    info = parse_info(bencode.encode(multi_info(files)))
    assert [f.path_str for f in info.files] == ["model/x", "model/X", "model/X.1", "model/x.2"]


def test_too_many_case_collisions_are_refused() -> None:
    variants = [
        "".join(c.upper() if i >> b & 1 else c for b, c in enumerate("abcdef")).encode() for i in range(64)
    ]
    with pytest.raises(MetainfoError, match="collide when case is ignored"):
        parse_info(bencode.encode(multi_info([([v], 1) for v in variants])))


def test_non_utf8_path_without_variant() -> None:
    with pytest.raises(MetainfoError, match="UTF-8"):
        parse_info(bencode.encode(multi_info([([b"\xff"], 10)])))


# ---------------------------------------------------------------------------------- hostile files


def test_every_hostile_torrent_is_refused(tmp_path: Path) -> None:
    tool = _load_tool()
    assert tool.main(["make_hostile_torrents", str(tmp_path)]) == 0
    cases: dict[str, bytes] = tool.hostile_torrents()
    assert len(cases) >= 60
    assert set(tool.UNSAFE_PATH_CASES) <= set(cases)
    for name in cases:
        path = tmp_path / f"{name}.torrent"
        expected: type[MetainfoError] = MetainfoError
        if name in tool.UNSAFE_PATH_CASES:
            expected = UnsafePathError
        elif name in tool.HYBRID_CASES:
            expected = HybridMismatchError
        with pytest.raises(expected) as caught:
            load_metainfo(path)
        assert str(caught.value), name
        with pytest.raises((MetainfoError, BencodeError)):
            parse_metainfo(cases[name])


def test_what_real_clients_write_is_read(tmp_path: Path) -> None:
    """Issue 12's list: odd but safe torrents are accepted (each case's details in test_metainfo_v2)."""
    tool = _load_tool()
    for name, data in tool.liberal_torrents().items():
        path = tmp_path / f"{name}.torrent"
        path.write_bytes(data)
        assert load_metainfo(path).info.total_length > 0, name


# ---------------------------------------------------------------------------------------- fuzzing

VALID = [
    torrent(single_info(), announce=b"http://127.0.0.1/a", **{"url-list": [b"http://w/"]}),
    torrent(
        multi_info(
            [
                ([b"a", b"b"], 100),
                {b"length": PIECE - 100, b"path": [b".pad", b"1"], b"attr": b"p"},
                ([b"c"], 3),
            ]
        ),
        **{"announce-list": [[b"http://a/"]]},
    ),
]


def _mutate(data: bytes, ops: list[tuple[int, int, int]]) -> bytes:
    buf = bytearray(data)
    for kind, pos, byte in ops:
        pos %= len(buf) + 1
        if kind == 0 and buf:
            buf[pos % len(buf)] = byte
        elif kind == 1:
            buf.insert(pos, byte)
        elif kind == 2:
            del buf[pos : pos + 1 + byte % 8]
        else:
            del buf[pos:]
    return bytes(buf)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    st.sampled_from(VALID),
    st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=6
    ),
)
def test_mutated_torrents_raise_only_typed_errors(data: bytes, ops: list[tuple[int, int, int]]) -> None:
    mutated = _mutate(data, ops)
    try:
        m = parse_metainfo(mutated)
    except (MetainfoError, BencodeError):
        return
    # Whatever survived is self-consistent.
    assert m.info.num_pieces == -(-m.info.total_length // m.info.piece_length)
    assert parse_metainfo(m.to_bytes()).info_hash == m.info_hash


@settings(deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_typed_errors(data: bytes) -> None:
    for parse in (parse_metainfo, parse_info):
        with contextlib.suppress(MetainfoError, BencodeError):
            parse(data)


json_like: st.SearchStrategy[Any] = st.recursive(
    st.integers(-5, 70_000) | st.sampled_from([b"", b"..", b"a", b"\xff", b"C:", b"x/y", b"\x00"]),
    lambda c: (
        st.lists(c, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [b"name", b"length", b"files", b"path", b"piece length", b"pieces", b"private", b"attr"]
            ),
            c,
            max_size=5,
        )
    ),
    max_leaves=20,
)


@settings(max_examples=300)
@given(json_like)
def test_random_structures_raise_only_typed_errors(value: Any) -> None:
    with contextlib.suppress(MetainfoError, BencodeError):
        parse_info(bencode.encode(value))


# ------------------------------------------------------------------------- agreement with libtorrent

names = st.text(st.characters(codec="utf-8", blacklist_characters="/\\\x00:"), min_size=1, max_size=8).filter(
    lambda s: s not in (".", "..") and s.strip() == s and s.isprintable()
)
# names that differ only in case, often: the renaming policy (metainfo docstring) is exercised
case_names = st.sampled_from(["u", "U", "u.1", "Model.bin", "model.BIN"])
layouts = st.lists(
    st.tuples(
        st.lists(st.one_of(names, case_names, case_names), min_size=1, max_size=3),
        st.integers(0, 70_000),
        st.booleans(),
    ),
    min_size=1,
    max_size=8,
    unique_by=lambda t: t[0][0],  # distinct top-level names: no exact file/dir collisions (refused)
)


def _case_collision(files: list[tuple[str, int, bool]]) -> bool:
    """Two files (path, size, pad), or a file and a folder, that are one on a case-insensitive file
    system; two pads of one size may share a name (neither is ever written)."""
    fold = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)  # ASCII only, as the policy
    seen: dict[str, tuple[int, bool]] = {}
    folders = {path[:i].translate(fold) for path, _, _ in files for i in range(len(path)) if path[i] == "/"}
    for path, size, pad in files:
        key = path.translate(fold)
        if key in folders or (key in seen and not (pad and seen[key] == (size, True))):
            return True
        seen.setdefault(key, (size, pad))
    return False


@pytest.mark.interop
@settings(max_examples=60, deadline=None)
@given(layouts, st.sampled_from([16384, 32768]), st.booleans())
@example([(["U"], 1, False), (["u"], 1, False)], 16384, False)  # found by this test once
@example([(["u"], 1, False), (["U"], 1, False), (["u.1"], 1, False)], 16384, False)  # libtorrent: U.1, u.1
def test_random_valid_torrents_agree_with_libtorrent(
    layout: list[tuple[list[str], int, bool]], piece: int, private: bool
) -> None:
    """Whatever we accept, libtorrent reads with the same info-hash, offsets and pad flags, and
    maps to the same paths on disk: names equal but for ASCII case are renamed ``u`` -> ``u.1``."""
    lt = require_libtorrent()
    files = [
        {b"length": size, b"path": [c.encode() for c in path], **({b"attr": b"p"} if pad else {})}
        for path, size, pad in layout
    ]
    total = sum(size for _, size, _ in layout)
    if total == 0:
        return
    info = {
        b"name": b"random",
        b"piece length": piece,
        b"files": files,
        b"pieces": b"\x07" * 20 * -(-total // piece),
        **({b"private": 1} if private else {}),
    }
    data = torrent(info, announce=b"http://127.0.0.1:1/a")
    ours = parse_metainfo(data)
    theirs = lt.torrent_info(data)
    assert ours.info_hash.hex == str(theirs.info_hashes().v1)
    assert ours.info.num_pieces == theirs.num_pieces() and ours.info.private == theirs.priv()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        fs = theirs.files()
    assert [(f.length, f.offset, f.pad) for f in ours.info.files] == [
        (fs.file_size(i), fs.file_offset(i), bool(fs.file_flags(i) & fs.flag_pad_file))
        for i in range(fs.num_files())
    ]
    mine = [(f.path_str, f.length, f.pad) for f in ours.info.files]
    theirs_files = [
        (fs.file_path(i), fs.file_size(i), bool(fs.file_flags(i) & fs.flag_pad_file))
        for i in range(fs.num_files())
    ]
    assert not _case_collision(mine)
    if not _case_collision(theirs_files):
        assert mine == theirs_files
    # else: libtorrent checks a file against the earlier files' *original* names, so a name it made
    # up can collide ("u", "U", "u.1" gives it "U.1" and "u.1"); we rename once more ("u.1.1").
    assert [f.renamed_from or f.path for f in ours.info.files] == [("random", *p) for p, _, _ in layout]
