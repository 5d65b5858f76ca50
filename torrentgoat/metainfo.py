"""Metainfo (.torrent files), level L1: pure data and validation.

BEP 3 (single- and multi-file), BEP 12 (``announce-list``), BEP 19 (``url-list``), BEP 27 (``private``),
BEP 47 (pad files, symlinks and ``attr``), BEP 52 (v2 and hybrid torrents; the v2-specific parts live
in :mod:`torrentgoat.metainfo_v2`).

Entry points:

* :func:`parse_metainfo` -- a whole .torrent file's bytes to a :class:`Metainfo`;
* :func:`load_metainfo` -- the same from a path, reading at most :data:`MAX_TORRENT_SIZE` bytes;
* :func:`parse_info` -- the bencoded ``info`` dictionary alone (a .torrent's ``info`` value, or the
  metadata fetched with BEP 9 ``ut_metadata``) to an :class:`InfoDict`;
* :meth:`Metainfo.to_bytes` / :func:`encode_metainfo` -- back to a .torrent, the ``info`` bytes kept
  exactly as they were so the info-hash never changes.

The info-hash is SHA-1 over the *exact bytes* of the ``info`` value as they appear in the input (BEP 3),
never over a re-encoding: a torrent whose keys are not sorted keeps the identity every client computes.

Validation (each failure a :class:`~torrentgoat.errors.MetainfoError`, paths an
:class:`~torrentgoat.errors.UnsafePathError`, both naming what was wrong):

* ``piece length`` is between :data:`MIN_PIECE_LENGTH` and :data:`MAX_PIECE_LENGTH`; a v1 one need not be
  a power of two (BEP 3 does not ask it), a v2 or hybrid one must (BEP 52);
* ``pieces`` is a multiple of 20 bytes and holds exactly ``ceil(total_length / piece_length)`` hashes;
* exactly one of ``length`` (single file) and ``files`` (multi-file) is present; lengths are
  non-negative integers; the torrent holds at least one byte and at most :data:`MAX_FILES` files;
* ``name`` and every path component are non-empty UTF-8 text (``name.utf-8`` / ``path.utf-8`` are
  preferred when present and valid, as most clients do), not ``.`` or ``..``, without ``/``, ``\\``
  or NUL, not a Windows drive (``C:``); the name alone is never absolute since it is one component;
* no two real files share a path, and no file's path is a directory of another file
  (``a`` and ``a/b``).  BEP 47 pad files (``attr`` contains ``p``) are exempt from the collision
  rules: they are never written to disk, and libtorrent reuses ``.pad/<size>`` for equal-sized pads.

Paths that differ only in ASCII case (``U`` and ``u``, ``Model.bin`` and ``model.bin``) are one file
on a case-insensitive file system (macOS, Windows), so they are *renamed*, not refused, exactly as
libtorrent does on every OS (the same download directory then works for both clients): in torrent
order, a file whose path equals an earlier file's or directory's path ignoring ASCII case gets
``.1`` (then ``.2``, ...) inserted before its extension (``u`` -> ``u.1``, ``Model.bin`` ->
``Model.1.bin``); pad files take part, two equal-sized pads may share a name; more than
:data:`MAX_NAME_COLLISIONS` taken candidate names is an error (a torrent built to make this slow).
:attr:`FileEntry.path` is the renamed path (where the file lives on disk) and
:attr:`FileEntry.renamed_from` the torrent's own (for BEP 19 web seed URLs).  Non-ASCII case pairs
(``É``/``é``) and Unicode normalization forms are not folded, as in libtorrent.

Every other key is ignored, as BEP 3 asks of unknown keys.

**v2 and hybrid** (BEP 52; ``meta version`` is checked first, a newer one is refused as such): the
``file tree`` gives the files; each non-empty file starts a piece, so :attr:`InfoDict.files` gets an
implied pad file (``attr`` ``p``, path ``<name>/.pad/<size>``) after every file that does not end on a
piece boundary -- the last one included, as libtorrent lays them out -- and one global piece index
space exists as for v1.  ``info_hash`` stays the SHA-1 of a v1 or hybrid torrent and is the SHA-256
truncated to 20 bytes for a v2-only one (its swarm id); :attr:`InfoDict.info_hashes` carries both.  A
hybrid's ``files``/``length`` must describe the same files, sizes and offsets as its file tree (pads and
empty files aside; a v1 list without the final pad is accepted), else :class:`HybridMismatchError`.
The .torrent's ``piece layers`` are validated against the roots and kept in :attr:`InfoDict.v2`.

**Read what real clients write** (each safe: none changes which bytes are verified or where they go):
a pad file without ``path`` (named ``.pad/<size>``) and BitComet's ``_____padding_file_`` names are pads;
a BEP 47 symlink (``attr`` ``l``) holds no payload whatever its ``length`` says, its target
(``symlink path``, relative to the torrent root) kept only when every component is a safe name; a
malformed ``announce``/``announce-list``/``url-list`` entry (outside ``info``) is dropped, not fatal; a
trailing newline after the top-level dictionary is accepted.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from torrentgoat import bencode
from torrentgoat.bencode import BValue
from torrentgoat.errors import BencodeError, MetainfoError, UnsafePathError, UnsupportedV2Error
from torrentgoat.geometry import PieceGeometry
from torrentgoat.infohashes import InfoHashes, InfoHashV2, TorrentFormat
from torrentgoat.metainfo_v2 import InfoV2, file_entries, match_hybrid, parse_piece_layers, walk_file_tree
from torrentgoat.primitives import InfoHash
from torrentgoat.torrentfiles import (
    MAX_NAME_COLLISIONS,
    PAD_DIR,
    FileEntry,
    check_path_component,
    path_components,
    rename_case_duplicates,
    symlink_target,
)

__all__ = [
    "MAX_FILES",
    "MAX_NAME_COLLISIONS",
    "MAX_PIECES",
    "MAX_PIECE_LENGTH",
    "MAX_TORRENT_SIZE",
    "MIN_PIECE_LENGTH",
    "FileEntry",
    "InfoDict",
    "Metainfo",
    "check_path_component",
    "encode_metainfo",
    "load_metainfo",
    "parse_info",
    "parse_metainfo",
]

MAX_TORRENT_SIZE = 64 * 1024 * 1024
"""Largest .torrent file (or ``info`` dictionary) accepted: 64 MiB, ~3.3 million piece hashes."""

MAX_FILES = 1_000_000
"""Most file entries (pad files included) accepted in one torrent."""

MIN_PIECE_LENGTH = 16 * 1024
"""Smallest piece length accepted: one block (BEP 3 requests are 16 KiB)."""

MAX_PIECES = MAX_TORRENT_SIZE // 20
"""Most pieces accepted: what the largest accepted v1 ``pieces`` string can hold; it bounds a v2 torrent's
piece index space too (bitfields, piece layers), whatever its file lengths say."""

_BITCOMET_PAD = "_____padding_file_"

MAX_PIECE_LENGTH = 128 * 1024 * 1024
"""Largest piece length accepted: bounds the memory of one piece buffer whatever the torrent says."""

_BAD_COMPONENT = re.compile(r"[/\\\x00]|^[A-Za-z]:|^$")


@dataclass(frozen=True, slots=True, kw_only=True)
class InfoDict:
    """The validated ``info`` dictionary and the identity derived from its exact bytes."""

    name: str
    piece_length: int
    pieces: bytes
    """Concatenated 20-byte SHA-1 piece hashes (empty for a v2-only torrent)."""
    files: tuple[FileEntry, ...]
    single_file: bool
    private: bool = False
    raw: bytes = field(repr=False)
    """The exact bencoded bytes of ``info`` as they appeared in the input (BEP 3 info_hash)."""
    info_hash: InfoHash
    """The 20-byte swarm id: SHA-1 of ``raw`` for v1 and hybrid torrents (unchanged from BEP 3), the
    truncated SHA-256 for a v2-only torrent (BEP 52); see :attr:`info_hashes` for both."""
    v2: InfoV2 | None = None
    """The BEP 52 part (file roots, piece layers) of a v2 or hybrid torrent; ``None`` for v1."""
    _geometry: PieceGeometry = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_geometry", PieceGeometry(self.piece_length, self.total_length))

    @property
    def total_length(self) -> int:
        return self.files[-1].end if self.files else 0

    @property
    def num_pieces(self) -> int:
        if self.v2 is not None:
            return self.v2.num_pieces
        return len(self.pieces) // 20

    @property
    def geometry(self) -> PieceGeometry:
        """Piece and block arithmetic of this torrent (BEP 3: ``piece length`` over the files' bytes)."""
        return self._geometry

    @property
    def has_v1(self) -> bool:
        """SHA-1 piece hashes present: a v1 or hybrid torrent."""
        return self.v2 is None or bool(self.pieces)

    @property
    def format(self) -> TorrentFormat:
        """``v1``, ``v2`` or ``hybrid``."""
        if self.v2 is None:
            return "v1"
        return "hybrid" if self.pieces else "v2"

    @property
    def info_hashes(self) -> InfoHashes:
        """The SHA-1 (v1, hybrid) and SHA-256 (v2, hybrid) info-hashes."""
        return InfoHashes(
            v1=self.info_hash if self.has_v1 else None,
            v2=self.v2.info_hash if self.v2 is not None else None,
        )

    def piece_size(self, index: int) -> int:
        """Length of piece ``index``; only the last piece may be shorter."""
        return self._geometry.piece_size(index)

    def piece_hash(self, index: int) -> bytes:
        """The SHA-1 of piece ``index`` (BEP 3); a v2-only torrent has none."""
        if not self.pieces and self.v2 is not None:
            raise UnsupportedV2Error(
                "v2 torrent: it has no SHA-1 piece hashes; its pieces are verified against merkle roots"
            )
        return self.pieces[index * 20 : index * 20 + 20]


@dataclass(frozen=True, slots=True, kw_only=True)
class Metainfo:
    """A whole .torrent file."""

    info: InfoDict
    announce_tiers: tuple[tuple[str, ...], ...] = ()
    """Tracker URLs by tier (BEP 12); a lone ``announce`` becomes one tier of one URL."""
    web_seeds: tuple[str, ...] = ()
    """BEP 19 ``url-list`` entries."""
    comment: str = ""
    created_by: str = ""
    creation_date: int | None = None

    @property
    def info_hash(self) -> InfoHash:
        return self.info.info_hash

    @property
    def info_hashes(self) -> InfoHashes:
        return self.info.info_hashes

    @property
    def trackers(self) -> tuple[str, ...]:
        """Every tracker URL, tier by tier, in order."""
        return tuple(url for tier in self.announce_tiers for url in tier)

    def to_bytes(self) -> bytes:
        """Bencode the whole torrent; ``info`` is written as its exact original bytes (BEP 3).

        Only the keys this class holds are written: ``announce`` (first tracker) and ``announce-list``
        (BEP 12), ``comment``, ``created by``, ``creation date``, ``info``, ``piece layers`` (BEP 52, the
        known ones), ``url-list`` (BEP 19).
        """
        top: dict[bytes, BValue] = {}
        trackers = self.trackers
        if trackers:
            top[b"announce"] = trackers[0].encode()
            if len(trackers) > 1:
                tiers: list[BValue] = [[url.encode() for url in tier] for tier in self.announce_tiers if tier]
                top[b"announce-list"] = tiers
        if self.comment:
            top[b"comment"] = self.comment.encode()
        if self.created_by:
            top[b"created by"] = self.created_by.encode()
        if self.creation_date is not None:
            top[b"creation date"] = self.creation_date
        if self.web_seeds:
            top[b"url-list"] = [url.encode() for url in self.web_seeds]
        if self.info.v2 is not None and self.info.v2.piece_layers:
            top[b"piece layers"] = dict(self.info.v2.piece_layers)
        parts = [b"d"]
        for key in sorted([*top, b"info"]):
            parts.append(bencode.encode(key))
            parts.append(self.info.raw if key == b"info" else bencode.encode(top[key]))
        parts.append(b"e")
        return b"".join(parts)


def encode_metainfo(metainfo: Metainfo) -> bytes:
    """The bytes of a .torrent file for ``metainfo`` (same as :meth:`Metainfo.to_bytes`)."""
    return metainfo.to_bytes()


# --------------------------------------------------------------------------------------------- parsing


def _text(value: BValue, what: str) -> str:
    if not isinstance(value, bytes):
        raise MetainfoError(f"{what} must be a byte string, got {type(value).__name__}")
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise MetainfoError(f"{what} is not valid UTF-8: {value[:64]!r}") from None


def _int(value: BValue, what: str) -> int:
    if not isinstance(value, int):
        raise MetainfoError(f"{what} must be an integer, got {type(value).__name__}")
    return value


def _loose_text(value: BValue | None) -> str:
    """Free text (comment, created by): never fatal, undecodable bytes replaced."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else ""


def _preferred_text(entry: dict[bytes, BValue], key: bytes, what: str) -> BValue:
    """The ``<key>.utf-8`` variant when present and valid UTF-8 text(s), else ``<key>``."""
    alt = entry.get(key + b".utf-8")
    if alt is not None:
        items = alt if isinstance(alt, list) else [alt]
        if items and all(isinstance(i, bytes) and _is_utf8(i) for i in items):
            return alt
    if key not in entry:
        raise MetainfoError(f"{what}: missing {key.decode()!r}")
    return entry[key]


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _attr(entry: dict[bytes, BValue], what: str) -> str:
    value = entry.get(b"attr", b"")
    if not isinstance(value, bytes):
        raise MetainfoError(f"{what}: 'attr' must be a byte string")
    return value.decode("ascii", "replace")


def _is_power_of_two(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def parse_info(raw: bytes) -> InfoDict:
    """Validate a bencoded ``info`` dictionary and derive its info-hash (SHA-1 of ``raw``, BEP 3).

    ``raw`` must be exactly the dictionary's bytes: the span inside a .torrent file, or the metadata
    assembled from BEP 9 ``ut_metadata`` pieces (the caller checks its SHA-1 against the magnet's).
    """
    raw = bytes(raw)
    if len(raw) > MAX_TORRENT_SIZE:
        raise MetainfoError(f"info dictionary of {len(raw)} bytes exceeds the {MAX_TORRENT_SIZE}-byte cap")
    value = bencode.decode(raw)
    return _parse_info_value(value, raw)


def _meta_version(info: dict[bytes, BValue]) -> int:
    """BEP 52: "Implementations must check this field first" -- 2 for v2/hybrid, 1 (absent) for v1."""
    value = info.get(b"meta version")
    if value is None:
        return 1
    if not isinstance(value, int):
        raise MetainfoError("info 'meta version' must be an integer")
    if value > 2:
        raise MetainfoError(
            f"info 'meta version' {value}: a newer BitTorrent format than this client reads (it knows 1 and 2)"
        )
    return 2 if value == 2 else 1


def _piece_length(info: dict[bytes, BValue], *, v2: bool) -> int:
    if b"piece length" not in info:
        raise MetainfoError("info: missing 'piece length'")
    piece_length = _int(info[b"piece length"], "info 'piece length'")
    if v2 and (
        not _is_power_of_two(piece_length) or not MIN_PIECE_LENGTH <= piece_length <= MAX_PIECE_LENGTH
    ):
        raise MetainfoError(
            f"info 'piece length' {piece_length} is not a power of two between "
            f"{MIN_PIECE_LENGTH} and {MAX_PIECE_LENGTH} (BEP 52)"
        )
    if not MIN_PIECE_LENGTH <= piece_length <= MAX_PIECE_LENGTH:
        raise MetainfoError(
            f"info 'piece length' {piece_length} is not between {MIN_PIECE_LENGTH} and {MAX_PIECE_LENGTH}"
        )
    return piece_length


def _parse_info_value(info: BValue, raw: bytes) -> InfoDict:
    if not isinstance(info, dict):
        raise MetainfoError(f"'info' must be a dictionary, got {type(info).__name__}")
    version = _meta_version(info)
    piece_length = _piece_length(info, v2=version == 2)
    name = _text(_preferred_text(info, b"name", "info"), "info 'name'")
    check_path_component(name, f"torrent name {name!r}")
    private_value = info.get(b"private", 0)
    private = _int(private_value, "info 'private'") != 0
    if version == 2:
        return _parse_v2_info(info, raw, name, piece_length, private)
    if b"file tree" in info:
        raise MetainfoError("info has a 'file tree' but no 'meta version' 2 (BEP 52)")
    files, single = _parse_v1_files(info, name)
    pieces = _parse_pieces(info, files, piece_length)
    return InfoDict(
        name=name,
        piece_length=piece_length,
        pieces=pieces,
        files=tuple(rename_case_duplicates(files)),
        single_file=single,
        private=private,
        raw=raw,
        info_hash=InfoHash(hashlib.sha1(raw).digest()),
    )


def _parse_v1_files(info: dict[bytes, BValue], name: str) -> tuple[list[FileEntry], bool]:
    """The v1 file list (``files``) or single file (``length``), and whether it is the latter (BEP 3)."""
    has_length = b"length" in info
    if has_length == (b"files" in info):
        raise MetainfoError("info must have exactly one of 'length' (single file) and 'files' (multi-file)")
    if not has_length:
        return _parse_files(info[b"files"], name), False
    length = _int(info[b"length"], "info 'length'")
    if length < 0:
        raise MetainfoError(f"info 'length' is negative: {length}")
    return [FileEntry(path=(name,), length=length, offset=0, attr=_attr(info, "info"))], True


def _parse_pieces(info: dict[bytes, BValue], files: list[FileEntry], piece_length: int) -> bytes:
    """The SHA-1 ``pieces``, checked against the data they cover (BEP 3)."""
    pieces = info.get(b"pieces")
    if not isinstance(pieces, bytes):
        raise MetainfoError("info: 'pieces' missing or not a byte string")
    if len(pieces) % 20:
        raise MetainfoError(f"info 'pieces' is {len(pieces)} bytes, not a multiple of 20")
    total = files[-1].end
    if total == 0:
        raise MetainfoError("torrent holds no data (total length 0)")
    expected = -(-total // piece_length)
    if len(pieces) // 20 != expected:
        raise MetainfoError(
            f"info 'pieces' holds {len(pieces) // 20} hashes but {total} bytes in pieces of "
            f"{piece_length} need {expected}"
        )
    return pieces


def _parse_v2_info(
    info: dict[bytes, BValue], raw: bytes, name: str, piece_length: int, private: bool
) -> InfoDict:
    """A ``meta version`` 2 info dictionary: v2-only, or hybrid when it also holds a v1 half (BEP 52)."""
    if b"file tree" not in info:
        raise MetainfoError("info has 'meta version' 2 but no 'file tree' (BEP 52)")
    tree_files = walk_file_tree(info[b"file tree"], max_files=MAX_FILES)
    has_files = b"files" in info
    hybrid = b"pieces" in info or has_files or b"length" in info
    single = len(tree_files) == 1 and len(tree_files[0].components) == 1 and not has_files
    if single and not hybrid:
        # One file at the top of the tree: a single-file torrent named by its file, whatever ``name``
        # says (libtorrent 2.x reads it so: ``torrent_info.name()`` and the path are the file's name; its
        # create_torrent writes such a torrent, ``name`` the folder's, for a folder holding one file)
        name = _tree_name(tree_files[0].components[0], name)
    entries, v2_files = file_entries(tree_files, name, piece_length, single=single, max_pieces=MAX_PIECES)
    if not entries or entries[-1].end == 0:
        raise MetainfoError("torrent holds no data (total length 0)")
    v2_hash = InfoHashV2.of(raw)
    pieces = b""
    info_hash = v2_hash.truncated
    if hybrid:
        if b"pieces" not in info:
            raise MetainfoError("hybrid torrent: it has a v1 file list ('files' or 'length') but no 'pieces'")
        v1_files, single = _parse_v1_files(info, name)
        entries = match_hybrid(v1_files, entries)
        pieces = _parse_pieces(info, v1_files, piece_length)
        info_hash = InfoHash(hashlib.sha1(raw).digest())
    v2 = InfoV2(
        info_hash=v2_hash,
        piece_length=piece_length,
        num_pieces=-(-entries[-1].end // piece_length),
        files=tuple(v2_files),
    )
    return InfoDict(
        name=name,
        piece_length=piece_length,
        pieces=pieces,
        files=tuple(rename_case_duplicates(entries)),
        single_file=single,
        private=private,
        raw=raw,
        info_hash=info_hash,
        v2=v2,
    )


def _tree_name(key: bytes, name: str) -> str:
    """The name of a v2 single-file torrent: its file tree's key (checked by ``file_entries``)."""
    try:
        return key.decode("utf-8")
    except UnicodeDecodeError:
        return name  # file_entries refuses it with the path shown


def _parse_files(value: BValue, name: str) -> list[FileEntry]:
    if not isinstance(value, list):
        raise MetainfoError("info 'files' must be a list")
    if not value:
        raise MetainfoError("info 'files' is empty")
    if len(value) > MAX_FILES:
        raise MetainfoError(f"info 'files' has {len(value)} entries, more than the cap of {MAX_FILES}")
    files: list[FileEntry] = []
    offset = 0
    seen_files: set[tuple[str, ...]] = set()
    seen_dirs: set[tuple[str, ...]] = set()
    bad = _BAD_COMPONENT.search
    for index, entry in enumerate(value):
        # Fast path first; error messages are only formatted once something is wrong.
        if not isinstance(entry, dict):
            raise MetainfoError(f"info 'files'[{index}] must be a dictionary")
        attr_value = entry.get(b"attr", b"")
        attr = attr_value.decode("ascii", "replace") if isinstance(attr_value, bytes) else None
        if attr is None:
            raise MetainfoError(f"info 'files'[{index}]: 'attr' must be a byte string")
        length = entry.get(b"length")
        if "l" in attr and "p" not in attr:
            length = 0  # BEP 47: "The length of a symlink is always zero"; it may be absent
        if not isinstance(length, int) or length < 0:
            what = f"info 'files'[{index}]"
            if length is None:
                raise MetainfoError(f"{what}: missing 'length'")
            raise MetainfoError(f"{what} 'length' is negative: {_int(length, f'{what} length')}")
        path_value = entry.get(b"path.utf-8") if b"path.utf-8" in entry else None
        components = path_components(path_value) if path_value is not None else None
        if components is None:
            path_value = entry.get(b"path")
            components = path_components(path_value)
            if components is None:
                if "p" in attr and (path_value is None or path_value == []):
                    components = (PAD_DIR, str(length))  # BEP 47: pads need no 'path'
                else:
                    _explain_bad_path(entry, f"info 'files'[{index}]")
        assert components is not None
        for component in components:
            if component in (".", "..") or bad(component):
                shown = "/".join(components)
                for c in components:
                    check_path_component(c, f"file path {shown!r}")
            if component.startswith(_BITCOMET_PAD) and "p" not in attr:
                attr += "p"  # BitComet's pad files predate BEP 47's attr
        path = (name, *components)
        symlink: tuple[str, ...] | None = None
        if "p" not in attr:
            if path in seen_files or path in seen_dirs:
                shown = "/".join(components)
                raise UnsafePathError(f"file path {shown!r} appears twice (or is also a directory)")
            for i in range(2, len(path)):
                parent = path[:i]
                if parent in seen_files:
                    shown, under = "/".join(components), "/".join(parent[1:])
                    raise UnsafePathError(f"file path {shown!r} lies under {under!r}, which is a file")
                seen_dirs.add(parent)
            seen_files.add(path)
            if "l" in attr:
                symlink = symlink_target(entry.get(b"symlink path"), (name,))
        files.append(FileEntry(path=path, length=length, offset=offset, attr=attr, symlink=symlink))
        offset += length
    return files


def _explain_bad_path(entry: dict[bytes, BValue], what: str) -> None:
    """Raise the precise error for a 'path' that :func:`_components` refused."""
    value = entry.get(b"path")
    if value is None:
        raise MetainfoError(f"{what}: missing 'path'")
    if not isinstance(value, list):
        raise MetainfoError(f"{what} 'path' must be a list")
    if not value:
        raise UnsafePathError(f"{what}: empty 'path'")
    for item in value:
        text = _text(item, f"{what} 'path' component")
        if not text:
            raise UnsafePathError(f"{what}: empty path component")
    raise AssertionError("unreachable: _components accepts this path")


def _url(value: BValue | None) -> str | None:
    """A tracker or web seed URL: non-empty UTF-8 text, else ``None`` (the entry is dropped)."""
    if not isinstance(value, bytes):
        return None
    try:
        url = value.decode("utf-8").strip()
    except UnicodeDecodeError:
        return None
    return url or None


def _announce_tiers(top: dict[bytes, BValue]) -> tuple[tuple[str, ...], ...]:
    """BEP 12: ``announce-list`` (tiers of URLs) when it names any URL, else the lone ``announce``.

    Malformed entries (a tier that is not a list, a URL that is not UTF-8 text) are dropped, as
    libtorrent does: trackers sit outside ``info`` and no verified byte depends on them."""
    tiers: list[tuple[str, ...]] = []
    seen: set[str] = set()
    announce_list = top.get(b"announce-list")
    if isinstance(announce_list, list):
        for tier in announce_list:
            if not isinstance(tier, list):
                continue
            urls: list[str] = []
            for url_value in tier:
                url = _url(url_value)
                if url is not None and url not in seen:
                    seen.add(url)
                    urls.append(url)
            if urls:
                tiers.append(tuple(urls))
    if not tiers:
        url = _url(top.get(b"announce"))
        if url is not None:
            tiers.append((url,))
    return tuple(tiers)


def _web_seeds(top: dict[bytes, BValue]) -> tuple[str, ...]:
    """BEP 19 ``url-list``: one URL string or a list of them; malformed entries dropped."""
    value = top.get(b"url-list")
    if value is None:
        return ()
    items = value if isinstance(value, list) else [value]
    urls: list[str] = []
    for item in items:
        url = _url(item)
        if url is not None and url not in urls:
            urls.append(url)
    return tuple(urls)


_TRAILING_WHITESPACE = b"\r\n\t "


def parse_metainfo(data: bytes) -> Metainfo:
    """Parse and validate a whole .torrent file (BEP 3 and the extensions listed in the module doc).

    Whitespace after the top-level dictionary (a trailing newline some tools add) is ignored; any other
    trailing byte is refused.  For a v2 or hybrid torrent the ``piece layers`` are validated (BEP 52)
    and kept in ``info.v2``.
    """
    data = bytes(data)
    if len(data) > MAX_TORRENT_SIZE:
        raise MetainfoError(f"torrent file of {len(data)} bytes exceeds the {MAX_TORRENT_SIZE}-byte cap")
    if data[-1:] in (b"\n", b"\r", b" ", b"\t"):
        data = data.rstrip(_TRAILING_WHITESPACE)
    top, spans = bencode.decode_with_spans(data)
    if not isinstance(top, dict):
        raise MetainfoError(f"a torrent file must be a dictionary, got {type(top).__name__}")
    if b"info" not in top:
        raise MetainfoError("torrent file has no 'info' dictionary")
    start, stop = spans[b"info"]
    info = _parse_info_value(top[b"info"], data[start:stop])
    if info.v2 is not None and b"piece layers" in top:
        info = replace(
            info, v2=replace(info.v2, piece_layers=parse_piece_layers(top[b"piece layers"], info.v2))
        )
    creation_date = top.get(b"creation date")
    return Metainfo(
        info=info,
        announce_tiers=_announce_tiers(top),
        web_seeds=_web_seeds(top),
        comment=_loose_text(top.get(b"comment.utf-8", top.get(b"comment"))),
        created_by=_loose_text(top.get(b"created by")),
        creation_date=creation_date if isinstance(creation_date, int) else None,
    )


def load_metainfo(path: str | os.PathLike[str]) -> Metainfo:
    """Read and parse a .torrent file; files over :data:`MAX_TORRENT_SIZE` are refused unread."""
    try:
        with Path(path).open("rb") as handle:
            data = handle.read(MAX_TORRENT_SIZE + 1)
    except OSError as exc:
        raise MetainfoError(f"cannot read torrent file {os.fspath(path)!r}: {exc.strerror or exc}") from None
    if len(data) > MAX_TORRENT_SIZE:
        raise MetainfoError(f"torrent file {os.fspath(path)!r} exceeds the {MAX_TORRENT_SIZE}-byte cap")
    try:
        return parse_metainfo(data)
    except BencodeError as exc:
        raise MetainfoError(f"{os.fspath(path)!r} is not a torrent file: {exc}") from None
