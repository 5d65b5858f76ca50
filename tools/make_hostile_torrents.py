"""Write a directory of hostile .torrent files that torrentgoat must refuse with a typed error.

Usage: ``python tools/make_hostile_torrents.py OUTDIR`` writes ``OUTDIR/<case>.torrent`` for every case
of :func:`hostile_torrents` (path traversal, absolute paths, NUL, duplicates, bad piece lengths,
mismatched pieces, deep nesting, v2 file trees and piece layers, hybrids whose halves disagree, ...).
``tests/test_metainfo.py`` checks that each one is refused by ``load_metainfo`` with a ``MetainfoError``
(an ``UnsafePathError`` for the path cases, a ``HybridMismatchError`` for the hybrid ones).

:func:`liberal_torrents` lists the odd-but-safe files real clients write that must be *accepted*
(issue 12): a non-power-of-two v1 piece length, malformed tracker / web seed entries, pad files without a
path, BitComet pad names, symlinks, a trailing newline.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any

from torrentgoat import bencode

__all__ = ["HYBRID_CASES", "UNSAFE_PATH_CASES", "hostile_torrents", "liberal_torrents", "main"]

PIECE = 16384


def _info(layout: list[tuple[list[bytes], int]] | None = None, /, **overrides: Any) -> dict[bytes, Any]:
    """A valid multi-file info dict (single-file when ``layout`` is None), then ``overrides``
    (keyword ``piece_length`` is the key ``piece length``; a ``None`` value removes the key)."""
    info: dict[bytes, Any] = {b"name": b"hostile", b"piece length": PIECE}
    if layout is None:
        info[b"length"] = 1000
        total = 1000
    else:
        info[b"files"] = [{b"length": size, b"path": path} for path, size in layout]
        total = sum(size for _, size in layout)
    info[b"pieces"] = hashlib.sha1(b"x").digest() * max(1, -(-total // PIECE))
    for key, value in overrides.items():
        raw_key = key.replace("_", " ").encode()
        if value is None:
            info.pop(raw_key, None)
        else:
            info[raw_key] = value
    return info


def _torrent(info: Any, **top: Any) -> bytes:
    return bencode.encode({b"announce": b"http://127.0.0.1:1/announce", b"info": info, **top})


def _multi(*paths: list[bytes], size: int = 100) -> bytes:
    return _torrent(_info([(p, size) for p in paths]))


UNSAFE_PATH_CASES = frozenset(
    {
        "path_dotdot",
        "path_dotdot_deep",
        "path_dot",
        "path_absolute",
        "path_empty_component",
        "path_empty_list",
        "path_backslash",
        "path_slash_inside",
        "path_nul",
        "path_drive_letter",
        "path_drive_letter_backslash",
        "path_duplicate",
        "path_file_is_also_dir",
        "path_dir_then_file",
        "path_utf8_variant_traversal",
        "name_dotdot",
        "name_dot",
        "name_empty",
        "name_slash",
        "name_absolute",
        "name_backslash",
        "name_nul",
        "name_drive",
        "name_utf8_variant_traversal",
    }
)


HYBRID_CASES = frozenset({"hybrid_names_differ", "hybrid_v1_unaligned", "hybrid_v1_extra_file"})
"""Cases refused with :class:`~torrentgoat.errors.HybridMismatchError`."""


def _root(data: bytes) -> bytes:
    """The BEP 52 pieces root of ``data`` (at most a few blocks here; written out, no torrentgoat import)."""
    leaves = [hashlib.sha256(data[i : i + 16384]).digest() for i in range(0, len(data), 16384)]
    width = 1
    while width < len(leaves):
        width *= 2
    leaves += [bytes(32)] * (width - len(leaves))
    while len(leaves) > 1:
        leaves = [hashlib.sha256(leaves[i] + leaves[i + 1]).digest() for i in range(0, len(leaves), 2)]
    return leaves[0]


_ROOT = _root(b"x" * 1000)


def _v2_info(tree: Any = None, /, **overrides: Any) -> dict[bytes, Any]:
    """A valid v2-only info dict of one 1000-byte file (or ``tree``), then ``overrides`` (as for _info)."""
    info: dict[bytes, Any] = {
        b"name": b"hostile",
        b"piece length": PIECE,
        b"meta version": 2,
        b"file tree": tree
        if tree is not None
        else {b"a.bin": {b"": {b"length": 1000, b"pieces root": _ROOT}}},
    }
    for key, value in overrides.items():
        raw_key = key.replace("_", " ").encode()
        if value is None:
            info.pop(raw_key, None)
        else:
            info[raw_key] = value
    return info


def _v2_file(length: int = 1000, root: bytes = _ROOT, **props: Any) -> dict[bytes, Any]:
    return {
        b"": {
            b"length": length,
            b"pieces root": root,
            **{k.replace("_", " ").encode(): v for k, v in props.items()},
        }
    }


def _hybrid(v1_files: list[dict[bytes, Any]], tree: dict[bytes, Any], total: int) -> bytes:
    info = _v2_info(tree, files=v1_files, pieces=hashlib.sha1(b"x").digest() * -(-total // PIECE))
    return _torrent(info)


def v2_hostile_torrents() -> dict[str, bytes]:
    """Refused v2 and hybrid torrents (BEP 52)."""
    two = {b"a": _v2_file(), b"b": _v2_file()}
    return {
        "v2_meta_version_3": _torrent(_v2_info(meta_version=3)),
        "v2_meta_version_string": _torrent(_v2_info(meta_version=b"2")),
        "v2_no_file_tree": _torrent(_v2_info(file_tree=None)),
        "v2_file_tree_without_meta_version": _torrent(_v2_info(meta_version=None)),
        "v2_file_tree_not_dict": _torrent(_v2_info(file_tree=[b"a"])),
        "v2_root_is_a_file": _torrent(_v2_info({b"": {b"length": 5}})),
        "v2_file_with_siblings": _torrent(_v2_info({b"a": {b"": {b"length": 0}, b"b": _v2_file()}})),
        # bencode.encode sorts keys, so swap the two names in the encoded bytes
        "v2_unsorted_tree": _torrent(_v2_info({b"a": _v2_file(), b"b": _v2_file()}))
        .replace(b"1:ad0:", b"1:Xd0:")
        .replace(b"1:bd0:", b"1:ad0:")
        .replace(b"1:Xd0:", b"1:bd0:"),
        "v2_pad_in_tree": _torrent(_v2_info({b"a": _v2_file(attr=b"p")})),
        "v2_missing_root": _torrent(_v2_info({b"a": {b"": {b"length": 1000}}})),
        "v2_zero_root": _torrent(_v2_info({b"a": _v2_file(root=bytes(32))})),
        "v2_short_root": _torrent(_v2_info({b"a": _v2_file(root=b"\x01" * 31)})),
        "v2_negative_length": _torrent(_v2_info({b"a": _v2_file(length=-1)})),
        "v2_string_length": _torrent(_v2_info({b"a": {b"": {b"length": b"5", b"pieces root": _ROOT}}})),
        "v2_piece_length_not_power_of_two": _torrent(_v2_info(piece_length=3 * PIECE)),
        "v2_too_many_pieces": _torrent(_v2_info({b"a": _v2_file(length=1 << 60)})),
        "v2_all_files_empty": _torrent(_v2_info({b"a": {b"": {b"length": 0}}})),
        "v2_non_utf8_name": _torrent(_v2_info({b"\xff": _v2_file()})),
        "v2_piece_layers_not_dict": _torrent(_v2_info(two), **{"piece layers": [b"x"]}),
        "v2_piece_layer_unknown_root": _torrent(_v2_info(), **{"piece layers": {b"\x07" * 32: b"\x00" * 32}}),
        "v2_piece_layer_wrong_size": _torrent(
            _v2_info({b"a": _v2_file(length=3 * PIECE, root=b"\x05" * 32)}),
            **{"piece layers": {b"\x05" * 32: b"\x00" * 64}},
        ),
        "v2_piece_layer_wrong_hashes": _torrent(
            _v2_info({b"a": _v2_file(length=3 * PIECE, root=b"\x05" * 32)}),
            **{"piece layers": {b"\x05" * 32: b"\x00" * 96}},
        ),
        # --- hybrids whose halves disagree (HybridMismatchError)
        "hybrid_names_differ": _hybrid([{b"length": 1000, b"path": [b"b"]}], {b"a": _v2_file()}, 1000),
        "hybrid_v1_unaligned": _hybrid(
            [{b"length": 1000, b"path": [b"a"]}, {b"length": 1000, b"path": [b"b"]}], two, 2000
        ),
        "hybrid_v1_extra_file": _hybrid(
            [
                {b"length": 1000, b"path": [b"a"]},
                {b"length": PIECE - 1000, b"path": [b".pad", b"x"], b"attr": b"p"},
                {b"length": 1000, b"path": [b"b"]},
                {b"length": 5, b"path": [b"c"]},
            ],
            two,
            PIECE + 1005,
        ),
        "hybrid_v1_without_pieces": _torrent(_v2_info(files=[{b"length": 1000, b"path": [b"a.bin"]}])),
    }


def liberal_torrents() -> dict[str, bytes]:
    """Odd but safe torrents real clients write, which must be accepted (issue 12)."""
    return {
        "piece_length_not_power_of_two": _torrent(_info(piece_length=3 * PIECE)),
        "announce_list_not_list": _torrent(_info(), **{"announce-list": b"http://x/"}),
        "announce_list_tier_not_list": _torrent(_info(), **{"announce-list": [b"http://x/", [b"http://y/"]]}),
        "announce_list_url_not_text": _torrent(
            _info(), **{"announce-list": [[5, b"\xff\xfe", b"http://y/"]]}
        ),
        "announce_int": bencode.encode({b"announce": 7, b"info": _info()}),
        "url_list_int": _torrent(_info(), **{"url-list": 5}),
        "url_list_mixed": _torrent(_info(), **{"url-list": [b"http://w/", 3, [b"x"], b"\xc3\x28"]}),
        "trailing_newline": _torrent(_info()) + b"\n",
        "trailing_crlf": _torrent(_info()) + b"\r\n",
        "pad_without_path": _torrent(
            _info(
                [([b"a"], 100)],
                files=[{b"length": 100, b"path": [b"a"]}, {b"length": PIECE - 100, b"attr": b"p"}],
            )
        ),
        "bitcomet_pad": _torrent(
            _info(
                [
                    ([b"a"], 100),
                    ([b"_____padding_file_0_\xe5\xa6\x82\xe6\x9e\x9c"], PIECE - 100),
                    ([b"b"], 100),
                ]
            )
        ),
        "symlink_without_length": _torrent(
            _info(
                [([b"a"], 100)],
                files=[
                    {b"length": 100, b"path": [b"a"]},
                    {b"attr": b"l", b"path": [b"link"], b"symlink path": [b"a"]},
                ],
            )
        ),
        "symlink_with_length": _torrent(
            _info(
                [([b"a"], 100)],
                files=[
                    {b"length": 100, b"path": [b"a"]},
                    {b"attr": b"l", b"length": 100, b"path": [b"link"], b"symlink path": [b"a"]},
                ],
            )
        ),
        "symlink_escaping_target": _torrent(
            _info(
                [([b"a"], 100)],
                files=[
                    {b"length": 100, b"path": [b"a"]},
                    {
                        b"attr": b"l",
                        b"length": 0,
                        b"path": [b"link"],
                        b"symlink path": [b"..", b"..", b"etc"],
                    },
                ],
            )
        ),
        "v2_symlink": _torrent(
            _v2_info({b"a.bin": _v2_file(), b"link": {b"": {b"attr": b"l", b"symlink path": [b"a.bin"]}}})
        ),
        "v2_empty_file": _torrent(_v2_info({b"a.bin": _v2_file(), b"empty": {b"": {b"length": 0}}})),
        "v2_no_piece_layers": _torrent(_v2_info({b"a": _v2_file(length=3 * PIECE, root=b"\x05" * 32)})),
    }


def hostile_torrents() -> dict[str, bytes]:
    """Case name -> bytes of a .torrent file that must be refused."""
    cases: dict[str, bytes] = {
        # --- paths (UnsafePathError)
        "path_dotdot": _multi([b"..", b"evil"]),
        "path_dotdot_deep": _multi([b"a", b"..", b"..", b"..", b"etc", b"passwd"]),
        "path_dot": _multi([b".", b"x"]),
        "path_absolute": _multi([b"/etc/passwd"]),
        "path_empty_component": _multi([b"", b"etc", b"passwd"]),
        "path_empty_list": _multi([]),
        "path_backslash": _multi([b"..\\..\\windows\\system32"]),
        "path_slash_inside": _multi([b"a/../../b"]),
        "path_nul": _multi([b"innocent.txt\x00.exe"]),
        "path_drive_letter": _multi([b"C:", b"x"]),
        "path_drive_letter_backslash": _multi([b"C:\\evil"]),
        "path_duplicate": _multi([b"same"], [b"same"]),
        "path_file_is_also_dir": _multi([b"a"], [b"a", b"b"]),
        "path_dir_then_file": _multi([b"a", b"b"], [b"a"]),
        "path_utf8_variant_traversal": _torrent(
            {
                **_info([([b"ok"], 100)]),
                b"files": [{b"length": 100, b"path": [b"ok"], b"path.utf-8": [b"..", b"evil"]}],
            }
        ),
        "name_dotdot": _torrent(_info(name=b"..")),
        "name_dot": _torrent(_info(name=b".")),
        "name_empty": _torrent(_info(name=b"")),
        "name_slash": _torrent(_info(name=b"a/b")),
        "name_absolute": _torrent(_info(name=b"/etc")),
        "name_backslash": _torrent(_info(name=b"..\\x")),
        "name_nul": _torrent(_info(name=b"a\x00")),
        "name_drive": _torrent(_info(name=b"D:")),
        "name_utf8_variant_traversal": _torrent(_info(**{"name.utf-8": b"../x"})),
        # --- text that is not UTF-8
        "name_not_utf8": _torrent(_info(name=b"\xff\xfe")),
        "path_not_utf8": _multi([b"\xc3\x28"]),
        # --- piece length
        "piece_length_zero": _torrent(_info(piece_length=0)),
        "piece_length_negative": _torrent(_info(piece_length=-16384)),
        "piece_length_too_small": _torrent(_info(piece_length=1024, pieces=b"\0" * 20)),
        "piece_length_huge": _torrent(_info(piece_length=1 << 40)),
        "piece_length_string": _torrent(_info(piece_length=b"16384")),
        "piece_length_missing": _torrent(_info(piece_length=None)),
        # --- pieces
        "pieces_not_multiple_of_20": _torrent(_info(pieces=b"\0" * 19)),
        "pieces_too_few": _torrent(_info(length=3 * PIECE, pieces=b"\0" * 40)),
        "pieces_too_many": _torrent(_info(pieces=b"\0" * 60)),
        "pieces_missing": _torrent(_info(pieces=None)),
        "pieces_integer": _torrent(_info(pieces=20)),
        # --- lengths and layout
        "length_negative": _torrent(_info(length=-1)),
        "length_string": _torrent(_info(length=b"1000")),
        "file_length_negative": _torrent(_info([([b"a"], -5), ([b"b"], 100)])),
        "file_length_missing": _torrent({**_info([([b"a"], 1)]), b"files": [{b"path": [b"a"]}]}),
        "length_and_files": _torrent(_info([([b"a"], 1000)], length=1000)),
        "neither_length_nor_files": _torrent(_info(length=None)),
        "files_empty": _torrent(_info([])),
        "files_not_list": _torrent(_info([([b"a"], 1)], files=b"a")),
        "file_entry_not_dict": _torrent(_info([([b"a"], 1)], files=[b"a"])),
        "path_not_list": _torrent({**_info([([b"a"], 1)]), b"files": [{b"length": 1, b"path": b"a"}]}),
        "path_component_int": _multi([b"a", 5]),  # type: ignore[list-item]
        "total_zero": _torrent(_info([([b"a"], 0), ([b"b"], 0)], pieces=b"")),
        "name_missing": _torrent(_info(name=None)),
        "name_int": _torrent(_info(name=7)),
        "private_string": _torrent(_info(private=b"yes")),
        # --- structure
        "info_not_dict": _torrent([b"info"]),
        "info_missing": bencode.encode({b"announce": b"http://x/"}),
        "top_level_list": bencode.encode([_info()]),
        "top_level_int": b"i42e",
        # --- bencoding
        "deep_nesting": b"d4:infod4:junk" + b"l" * 5000 + b"e" * 5000 + b"ee",
        "huge_string_length": b"d4:info99999999999999999:",
        "huge_integer": b"d4:infod6:lengthi" + b"9" * 500 + b"eee",
        "truncated": _torrent(_info())[:-7],
        "trailing_garbage": _torrent(_info()) + b"junk",
        "leading_zero_integer": _torrent(_info()).replace(b"i16384e", b"i016384e"),
        "duplicate_key": b"d4:infod4:name1:a4:name1:bee",
        "unsorted_duplicate_info": b"d4:infodee4:infodee",
        "empty_file": b"",
        "not_bencode": b"<html>404 Not Found</html>",
        "trailing_garbage_after_newline": _torrent(_info()) + b"\njunk",
    }
    cases.update(v2_hostile_torrents())
    return cases


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(f"usage: {argv[0]} OUTDIR", file=sys.stderr)
        return 2
    out = Path(argv[1])
    out.mkdir(parents=True, exist_ok=True)
    cases = hostile_torrents()
    for name, data in cases.items():
        (out / f"{name}.torrent").write_bytes(data)
    print(f"wrote {len(cases)} hostile torrents to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
