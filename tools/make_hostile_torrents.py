"""Write a directory of hostile .torrent files that torrentgoat must refuse with a typed error.

Usage: ``python tools/make_hostile_torrents.py OUTDIR`` writes ``OUTDIR/<case>.torrent`` for every case
of :func:`hostile_torrents` (path traversal, absolute paths, NUL, duplicates, bad piece lengths,
mismatched pieces, deep nesting, ...).  ``tests/test_metainfo.py`` checks that each one is refused by
``load_metainfo`` with a ``MetainfoError`` (an ``UnsafePathError`` for the path cases).
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any

from torrentgoat import bencode

__all__ = ["UNSAFE_PATH_CASES", "hostile_torrents", "main"]

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
        "piece_length_not_power_of_two": _torrent(_info(piece_length=3 * 16384)),
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
        "announce_list_not_list": _torrent(_info(), **{"announce-list": b"http://x/"}),
        "announce_list_tier_not_list": _torrent(_info(), **{"announce-list": [b"http://x/"]}),
        "url_list_int": _torrent(_info(), **{"url-list": 5}),
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
    }
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
