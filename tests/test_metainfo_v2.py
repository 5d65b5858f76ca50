"""v2 and hybrid metainfo (BEP 52) and the odd torrents real clients write (BEP 47, issue 12).

The ``tests/data/libtorrent`` torrents come from libtorrent's test suite; the expected hashes and roots
are the ones libtorrent's ``test_torrent_info.cpp`` asserts.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from torrentgoat import bencode
from torrentgoat.errors import BencodeError, HybridMismatchError, MetainfoError, UnsupportedV2Error
from torrentgoat.infohashes import InfoHashes, InfoHashV2
from torrentgoat.magnet import Magnet
from torrentgoat.merkle import block_hashes, piece_layer, piece_root, root_of_data
from torrentgoat.metainfo import load_metainfo, parse_info, parse_metainfo
from torrentgoat.metainfo_v2 import TreeFile, build_file_tree
from torrentgoat.primitives import InfoHash

ROOT = Path(__file__).resolve().parent.parent
LT = ROOT / "tests" / "data" / "libtorrent"
PIECE = 16384


def lt(name: str) -> Path:
    return LT / f"{name}.torrent"


def _tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "make_hostile_torrents", ROOT / "tools/make_hostile_torrents.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------------------ libtorrent's torrents


@pytest.mark.parametrize(
    ("name", "fmt", "v2_hash", "root"),
    [
        # libtorrent test_torrent_info.cpp: "v2.torrent", "v2_multipiece_file.torrent", "v2_only.torrent"
        (
            "v2",
            "hybrid",
            "597b180c1a170a585dfc5e85d834d69013ceda174b8f357d5bb1a0ca509faf0a",
            "60aae9c7b428f87e0713e88229e18f0adf12cd7b22a0dd8a92bb2485eb7af242",
        ),
        (
            "v2_multipiece_file",
            "hybrid",
            "108ac2c3718ce722e6896edc56c4afa98f1d711ecaace7aad74fca418ebd03de",
            "515ea9181744b817744ded9d2e8e9dc6a8450c0b0c52e24b5077f302ffbd9008",
        ),
        (
            "v2_only",
            "v2",
            "95e04d0c4bad94ab206efa884666fd89777dbe4f7bd9945af1829037a85c6192",
            "515ea9181744b817744ded9d2e8e9dc6a8450c0b0c52e24b5077f302ffbd9008",
        ),
    ],
)
def test_libtorrent_known_hashes(name: str, fmt: str, v2_hash: str, root: str) -> None:
    m = load_metainfo(lt(name))
    info = m.info
    assert info.format == fmt
    assert info.v2 is not None and info.v2.info_hash.hex == v2_hash
    assert info.v2.files[0].root.hex() == root
    raw_hash = hashlib.sha256(info.raw).hexdigest()
    assert raw_hash == v2_hash
    if fmt == "v2":
        # the swarm id of a v2-only torrent is the truncated SHA-256 (BEP 52); no SHA-1 half
        assert info.info_hash == InfoHash(bytes.fromhex(v2_hash)[:20]) and not info.has_v1
        assert info.info_hashes == InfoHashes(v2=InfoHashV2(bytes.fromhex(v2_hash)))
        with pytest.raises(UnsupportedV2Error, match=r"^v2 torrent: "):
            info.piece_hash(0)
    else:
        assert info.info_hash == InfoHash(hashlib.sha1(info.raw).digest()) and info.has_v1
        assert info.info_hashes.v1 == info.info_hash and info.info_hashes.format == "hybrid"
    assert info.v2.has_piece_layers


def test_libtorrent_single_file_sizes() -> None:
    m = load_metainfo(lt("v2_only"))
    assert [(f.path, f.length, f.pad) for f in m.info.files] == [(("test1MB",), 1048576, False)]
    assert m.info.num_pieces == 16 and m.info.piece_length == 65536


def test_libtorrent_hybrid_with_and_without_tail_pad() -> None:
    """libtorrent 2.0.0-2.0.7 wrote hybrids without the final pad; both are read, with the same files."""
    tail = load_metainfo(lt("v2_hybrid")).info
    no_tail = load_metainfo(lt("v2_hybrid-missing-tailpad")).info
    assert tail.format == no_tail.format == "hybrid"
    assert tail.files[-1].pad and not no_tail.files[-1].pad
    assert [f for f in tail.files if not f.pad] == [f for f in no_tail.files if not f.pad]
    assert tail.num_pieces == no_tail.num_pieces == 1715
    for info in (tail, no_tail):
        assert info.v2 is not None
        for file in info.v2.files:
            entry = info.files[file.index]
            assert not entry.pad and entry.offset == file.first_piece * info.piece_length


def test_libtorrent_symlinks_and_empty_files() -> None:
    info = load_metainfo(lt("v2_symlinks")).info
    links = {f.path_str: f.symlink for f in info.files if f.is_symlink}
    assert links == {
        "SDL2.framework/Headers": ("SDL2.framework", "Versions", "Current", "Headers"),
        "SDL2.framework/Resources": ("SDL2.framework", "Versions", "Current", "Resources"),
        "SDL2.framework/SDL2": ("SDL2.framework", "Versions", "Current", "SDL2"),
    }
    assert all(f.length == 0 for f in info.files if f.is_symlink)
    empty = load_metainfo(lt("v2_empty_file")).info
    assert any(f.length == 0 and not f.pad and not f.is_symlink for f in empty.files)
    for name in ("symlink1", "symlink_zero_size"):
        v1 = load_metainfo(lt(name)).info
        (link,) = [f for f in v1.files if f.is_symlink]
        assert link.length == 0 and link.symlink == ("temp", "a", "b", "bar")


def test_libtorrent_pads_without_path() -> None:
    info = load_metainfo(lt("pad_file_no_path")).info
    assert [(f.path_str, f.pad) for f in info.files] == [
        ("temp/foo/bar.txt", False),
        ("temp/.pad/2124", True),
    ]


def test_libtorrent_missing_piece_layers_are_accepted_and_reported() -> None:
    for name in ("v2_no_piece_layers", "v2_incomplete_piece_layer"):
        info = load_metainfo(lt(name)).info
        assert info.v2 is not None and not info.v2.has_piece_layers and info.v2.missing_piece_layers()
        missing = info.v2.missing_piece_layers()[0]
        with pytest.raises(UnsupportedV2Error, match=r"^v2 torrent: the piece layer"):
            info.v2.piece_check(missing.first_piece)


@pytest.mark.parametrize(
    ("name", "error", "message"),
    [
        ("v2_invalid_piece_layer_root", MetainfoError, "does not hash"),
        ("v2_invalid_piece_layer_size", MetainfoError, "holds 32 hashes"),
        ("v2_non_multiple_piece_layer", MetainfoError, "whole number"),
        ("v2_unknown_piece_layer_entry", MetainfoError, "no file larger"),
        ("v2_piece_layer_invalid_file_hash", MetainfoError, "32-byte"),
        ("v2_invalid_piece_layer", MetainfoError, "byte string"),
        ("v2_unordered_files", MetainfoError, "sorted order"),
        ("v2_zero_root", MetainfoError, "all zeros"),
        ("v2_zero_root_small", MetainfoError, "all zeros"),
        ("v2_invalid_pad_file", MetainfoError, "pad files"),
        ("v2_no_power2_piece", MetainfoError, "power of two"),
        ("v2_piece_size", MetainfoError, "power of two"),
        ("v2_deep_recursion", MetainfoError, "nesting"),
        ("v2_large_offset", MetainfoError, "more than"),
        ("v2_large_file", MetainfoError, "more than"),
        ("v2_mismatching_metadata", MetainfoError, "path separator"),
        ("v2_invalid_file", MetainfoError, "dictionary"),
        ("v2_overlong_integer", MetainfoError, "non-canonical"),
    ],
)
def test_libtorrent_broken_torrents_are_refused(name: str, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        load_metainfo(lt(name))


def test_hybrid_mismatch_names_the_file() -> None:
    tool = _tool()
    cases = tool.hostile_torrents()
    with pytest.raises(
        HybridMismatchError, match=r"file 0: v1 has file 'hostile/b'.*v2 has file 'hostile/a'"
    ):
        parse_metainfo(cases["hybrid_names_differ"])
    with pytest.raises(HybridMismatchError, match="lists 2 files"):
        parse_metainfo(cases["hybrid_v1_unaligned"])


# ------------------------------------------------------------------------- v2 layout and piece checks


def v2_torrent(files: list[tuple[bytes, bytes]], piece_length: int = PIECE, **top: object) -> bytes:
    """A v2-only .torrent holding ``(path, data)`` files (path components joined by '/')."""
    tree_files = []
    layers: dict[bytes, bytes] = {}
    for path, data in sorted(files, key=lambda item: tuple(item[0].split(b"/"))):
        root = root_of_data(data) if data else None
        if data and len(data) > piece_length:
            assert root is not None
            layers[root] = piece_layer(block_hashes(data), piece_length)
        tree_files.append(TreeFile(components=tuple(path.split(b"/")), length=len(data), pieces_root=root))
    info = {
        b"name": b"t",
        b"piece length": piece_length,
        b"meta version": 2,
        b"file tree": build_file_tree(tree_files),
    }
    return bencode.encode({b"info": info, b"piece layers": layers, **top})


def test_v2_piece_space_and_piece_checks() -> None:
    a, b, c = b"a" * 40_000, b"b" * 100, b"c" * (3 * PIECE)
    m = parse_metainfo(v2_torrent([(b"a", a), (b"dir/b", b), (b"dir/empty", b""), (b"z", c)]))
    info = m.info
    v2 = info.v2
    assert v2 is not None and v2.has_piece_layers
    shape = [(f.path_str, f.offset, f.length, f.pad) for f in info.files]
    assert shape == [
        ("t/a", 0, 40_000, False),
        ("t/.pad/9152", 40_000, 9152, True),
        ("t/dir/b", 49152, 100, False),
        ("t/.pad/16284", 49252, 16284, True),
        ("t/dir/empty", 65536, 0, False),
        ("t/z", 65536, 3 * PIECE, False),
    ]
    assert info.num_pieces == 7 and info.total_length == 7 * PIECE
    assert [(f.index, f.first_piece, f.num_pieces) for f in v2.files] == [(0, 0, 3), (2, 3, 1), (5, 4, 3)]
    assert [v2.file_at_piece(p).index for p in range(7)] == [0, 0, 0, 2, 5, 5, 5]
    with pytest.raises(IndexError):
        v2.file_at_piece(7)
    # what a piece must hash to: a piece-layer entry, or the root of a one-piece file
    check = v2.piece_check(2)
    assert check.data_length == 40_000 - 2 * PIECE and check.width == 1
    assert piece_root(a[2 * PIECE :], check.width) == check.expected
    small = v2.piece_check(3)
    assert small.width is None and small.expected == root_of_data(b) and small.data_length == 100
    assert info.info_hashes.format == "v2" and info.info_hash == info.info_hashes.primary
    # the .torrent round-trips with its piece layers
    again = parse_metainfo(m.to_bytes())
    assert again.info == info
    # BEP 9 metadata alone has no piece layers; adding them validates each
    bare = parse_info(info.raw)
    assert bare.v2 is not None and not bare.v2.has_piece_layers
    full = bare.v2.with_piece_layers(v2.piece_layers)
    assert full.has_piece_layers
    bad = {k: b"\0" * len(v) for k, v in v2.piece_layers.items()}
    with pytest.raises(MetainfoError, match="does not hash"):
        bare.v2.with_piece_layers(bad)
    magnet = Magnet.from_metainfo(m)
    assert magnet.info_hash is None and magnet.info_hash_v2 == v2.info_hash


def test_v2_single_file_keeps_its_own_name_as_path() -> None:
    m = parse_metainfo(v2_torrent([(b"model.bin", b"x" * 100)]))
    assert m.info.single_file and m.info.files[0].path == ("model.bin",)
    assert m.info.files[1].pad and m.info.total_length == PIECE


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=0, max_value=5 * PIECE), min_size=1, max_size=6),
    pexp=st.integers(min_value=0, max_value=2),
)
def test_v2_layout_properties(sizes: list[int], pexp: int) -> None:
    """Every non-empty file starts a piece, each piece holds one file's data, pads only fill gaps."""
    if not any(sizes):
        sizes = [*sizes, 1]
    piece_length = PIECE << pexp
    files = [(f"f{i:02d}".encode(), bytes([i]) * size) for i, size in enumerate(sizes)]
    info = parse_metainfo(v2_torrent(files, piece_length)).info
    v2 = info.v2
    assert v2 is not None and info.total_length % piece_length == 0
    assert info.num_pieces == sum(-(-s // piece_length) for s in sizes)
    offset = 0
    for entry in info.files:
        assert entry.offset == offset
        offset = entry.end
        if entry.pad:
            assert 0 < entry.length < piece_length and entry.end % piece_length == 0
        elif entry.length:
            assert entry.offset % piece_length == 0
    for piece in range(info.num_pieces):
        file = v2.file_at_piece(piece)
        check = v2.piece_check(piece)
        start = (piece - file.first_piece) * piece_length
        data = files[int(info.files[file.index].path[-1][1:])][1][start : start + check.data_length]
        assert piece_root(data, check.width) == check.expected


# ------------------------------------------------------------------------- what real clients write


def test_liberal_cases_in_detail() -> None:
    cases = _tool().liberal_torrents()
    m = parse_metainfo(cases["piece_length_not_power_of_two"])
    assert m.info.piece_length == 3 * PIECE
    assert parse_metainfo(cases["announce_list_tier_not_list"]).announce_tiers == (("http://y/",),)
    assert parse_metainfo(cases["announce_list_url_not_text"]).announce_tiers == (("http://y/",),)
    assert parse_metainfo(cases["announce_int"]).announce_tiers == ()
    assert parse_metainfo(cases["url_list_int"]).web_seeds == ()
    assert parse_metainfo(cases["url_list_mixed"]).web_seeds == ("http://w/",)
    plain = parse_metainfo(cases["trailing_newline"])
    assert plain.info_hash == parse_metainfo(cases["trailing_newline"].rstrip(b"\n")).info_hash
    assert parse_metainfo(cases["trailing_crlf"]).info_hash == plain.info_hash
    pads = parse_metainfo(cases["pad_without_path"]).info.files
    assert pads[1].pad and pads[1].path == ("hostile", ".pad", str(PIECE - 100))
    bitcomet = parse_metainfo(cases["bitcomet_pad"]).info.files
    assert [f.pad for f in bitcomet] == [False, True, False]
    for name in ("symlink_without_length", "symlink_with_length"):
        files = parse_metainfo(cases[name]).info.files
        assert files[1].is_symlink and files[1].length == 0 and files[1].symlink == ("hostile", "a")
    escaping = parse_metainfo(cases["symlink_escaping_target"]).info.files[1]
    assert escaping.is_symlink and escaping.symlink is None  # kept as a link never created
    v2link = parse_metainfo(cases["v2_symlink"]).info.files
    assert [f.symlink for f in v2link if f.is_symlink] == [("hostile", "a.bin")]


def test_trailing_garbage_is_still_refused() -> None:
    cases = _tool().hostile_torrents()
    with pytest.raises((MetainfoError, BencodeError), match="trailing"):
        parse_metainfo(cases["trailing_garbage_after_newline"])


def test_symlink_paths_with_traversal_never_become_targets() -> None:
    base = {b"length": 5, b"path": [b"a"]}
    for target in ([b".."], [b"a", b"..", b"..", b"x"], [b"/etc/passwd"], [b"C:"], [], [b""], b"notalist"):
        info = {
            b"name": b"t",
            b"piece length": PIECE,
            b"pieces": b"\0" * 20,
            b"files": [base, {b"attr": b"l", b"path": [b"link"], b"symlink path": target}],
        }
        link = parse_info(bencode.encode(info)).files[1]
        assert link.is_symlink and link.symlink is None, target


def test_symlink_and_pad_share_no_path_with_files() -> None:
    info = {
        b"name": b"t",
        b"piece length": PIECE,
        b"pieces": b"\0" * 20,
        b"files": [
            {b"length": 5, b"path": [b"a"]},
            {b"attr": b"l", b"path": [b"a"], b"symlink path": [b"b"]},
        ],
    }
    with pytest.raises(MetainfoError, match="twice"):
        parse_info(bencode.encode(info))


def test_meta_version_is_checked_first() -> None:
    """BEP 52: a newer meta version is reported as such, not as whatever else is odd about it."""
    with pytest.raises(MetainfoError, match="meta version' 3"):
        parse_info(bencode.encode({b"meta version": 3, b"piece length": 5}))


def test_info_dict_is_backward_compatible_for_v1() -> None:
    info = parse_info(
        bencode.encode({b"name": b"x", b"piece length": PIECE, b"length": 5, b"pieces": b"\1" * 20})
    )
    assert info.v2 is None and info.format == "v1" and info.has_v1 and info.num_pieces == 1
    assert info.info_hashes == InfoHashes(v1=info.info_hash)
    assert replace(info, v2=None) == info
