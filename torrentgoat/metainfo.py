"""Metainfo v1 (.torrent files), level L1: pure data and validation.

BEP 3 (single- and multi-file), BEP 12 (``announce-list``), BEP 19 (``url-list``), BEP 27 (``private``),
BEP 47 (pad files and ``attr``).

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

* ``piece length`` is a power of two between :data:`MIN_PIECE_LENGTH` and :data:`MAX_PIECE_LENGTH`;
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
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from torrentgoat import bencode
from torrentgoat.bencode import BValue
from torrentgoat.errors import BencodeError, MetainfoError, UnsafePathError
from torrentgoat.primitives import InfoHash

__all__ = [
    "MAX_FILES",
    "MAX_NAME_COLLISIONS",
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

MAX_PIECE_LENGTH = 128 * 1024 * 1024
"""Largest piece length accepted: bounds the memory of one piece buffer whatever the torrent says."""

MAX_NAME_COLLISIONS = 500
"""Most taken candidate names tried while renaming case-insensitive duplicates (libtorrent's limit)."""

_DRIVE = re.compile(r"^[A-Za-z]:")
_BAD_COMPONENT = re.compile(r"[/\\\x00]|^[A-Za-z]:|^$")


@dataclass(frozen=True, slots=True, kw_only=True)
class FileEntry:
    """One file of a torrent, placed in the torrent's concatenated byte stream.

    ``path`` is the file's path relative to the download directory, *including* the torrent's name:
    ``("name",)`` for a single-file torrent, ``("name", "dir", "file")`` for a multi-file one.
    Every component has been checked to be safe (see ``UnsafePathError``).
    """

    path: tuple[str, ...]
    length: int
    offset: int
    """Byte offset of the file's first byte in the torrent's concatenated data."""
    attr: str = ""
    """BEP 47 attribute letters: ``p`` pad, ``x`` executable, ``h`` hidden, ``l`` symlink."""
    renamed_from: tuple[str, ...] = ()
    """The path the torrent gives, when ``path`` differs from it (a case-insensitive duplicate
    renamed, see the module docstring); empty otherwise."""

    @property
    def pad(self) -> bool:
        """A BEP 47 padding file: its bytes are zeros, never written to disk, never requested."""
        return "p" in self.attr

    @property
    def end(self) -> int:
        return self.offset + self.length

    @property
    def path_str(self) -> str:
        return "/".join(self.path)


@dataclass(frozen=True, slots=True, kw_only=True)
class InfoDict:
    """The validated ``info`` dictionary and the identity derived from its exact bytes."""

    name: str
    piece_length: int
    pieces: bytes
    """Concatenated 20-byte SHA-1 piece hashes."""
    files: tuple[FileEntry, ...]
    single_file: bool
    private: bool = False
    raw: bytes = field(repr=False)
    """The exact bencoded bytes of ``info`` as they appeared in the input (BEP 3 info_hash)."""
    info_hash: InfoHash

    @property
    def total_length(self) -> int:
        return self.files[-1].end if self.files else 0

    @property
    def num_pieces(self) -> int:
        return len(self.pieces) // 20

    def piece_size(self, index: int) -> int:
        """Length of piece ``index``; only the last piece may be shorter."""
        if not 0 <= index < self.num_pieces:
            raise IndexError(f"piece index {index} out of range 0..{self.num_pieces - 1}")
        if index == self.num_pieces - 1:
            return self.total_length - index * self.piece_length
        return self.piece_length

    def piece_hash(self, index: int) -> bytes:
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
    def trackers(self) -> tuple[str, ...]:
        """Every tracker URL, tier by tier, in order."""
        return tuple(url for tier in self.announce_tiers for url in tier)

    def to_bytes(self) -> bytes:
        """Bencode the whole torrent; ``info`` is written as its exact original bytes (BEP 3).

        Only the keys this class holds are written: ``announce`` (first tracker) and ``announce-list``
        (BEP 12), ``comment``, ``created by``, ``creation date``, ``info``, ``url-list`` (BEP 19).
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


def check_path_component(component: str, where: str) -> None:
    """Refuse a path component that could escape the download directory or is not a plain name.

    ``where`` names the offending path in the error message.  Used for torrents, manifests and
    torrent creation alike.
    """
    if not component:
        raise UnsafePathError(f"{where}: empty path component")
    if component in (".", ".."):
        raise UnsafePathError(f"{where}: path component {component!r} is not allowed")
    if "/" in component or "\\" in component:
        raise UnsafePathError(f"{where}: path component {component!r} contains a path separator")
    if "\x00" in component:
        raise UnsafePathError(f"{where}: path component {component!r} contains NUL")
    if _DRIVE.match(component):
        raise UnsafePathError(f"{where}: path component {component!r} looks like a Windows drive")


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


def _parse_info_value(info: BValue, raw: bytes) -> InfoDict:
    if not isinstance(info, dict):
        raise MetainfoError(f"'info' must be a dictionary, got {type(info).__name__}")

    if b"piece length" not in info:
        raise MetainfoError("info: missing 'piece length'")
    piece_length = _int(info[b"piece length"], "info 'piece length'")
    if not _is_power_of_two(piece_length) or not MIN_PIECE_LENGTH <= piece_length <= MAX_PIECE_LENGTH:
        raise MetainfoError(
            f"info 'piece length' {piece_length} is not a power of two between "
            f"{MIN_PIECE_LENGTH} and {MAX_PIECE_LENGTH}"
        )
    pieces = info.get(b"pieces")
    if not isinstance(pieces, bytes):
        raise MetainfoError("info: 'pieces' missing or not a byte string")
    if len(pieces) % 20:
        raise MetainfoError(f"info 'pieces' is {len(pieces)} bytes, not a multiple of 20")

    name = _text(_preferred_text(info, b"name", "info"), "info 'name'")
    check_path_component(name, f"torrent name {name!r}")

    private_value = info.get(b"private", 0)
    private = _int(private_value, "info 'private'") != 0

    has_length = b"length" in info
    has_files = b"files" in info
    if has_length == has_files:
        raise MetainfoError("info must have exactly one of 'length' (single file) and 'files' (multi-file)")

    files: list[FileEntry] = []
    if has_length:
        length = _int(info[b"length"], "info 'length'")
        if length < 0:
            raise MetainfoError(f"info 'length' is negative: {length}")
        files.append(FileEntry(path=(name,), length=length, offset=0, attr=_attr(info, "info")))
    else:
        files = _parse_files(info[b"files"], name)

    total = files[-1].end
    if total == 0:
        raise MetainfoError("torrent holds no data (total length 0)")
    expected = -(-total // piece_length)
    if len(pieces) // 20 != expected:
        raise MetainfoError(
            f"info 'pieces' holds {len(pieces) // 20} hashes but {total} bytes in pieces of "
            f"{piece_length} need {expected}"
        )
    return InfoDict(
        name=name,
        piece_length=piece_length,
        pieces=pieces,
        files=tuple(files),
        single_file=has_length,
        private=private,
        raw=raw,
        info_hash=InfoHash(hashlib.sha1(raw).digest()),
    )


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
        length = entry.get(b"length")
        if not isinstance(length, int) or length < 0:
            what = f"info 'files'[{index}]"
            if length is None:
                raise MetainfoError(f"{what}: missing 'length'")
            raise MetainfoError(f"{what} 'length' is negative: {_int(length, f'{what} length')}")
        path_value = entry.get(b"path.utf-8") if b"path.utf-8" in entry else None
        components = _components(path_value) if path_value is not None else None
        if components is None:
            path_value = entry.get(b"path")
            components = _components(path_value)
            if components is None:
                _explain_bad_path(entry, f"info 'files'[{index}]")
        assert components is not None
        for component in components:
            if component in (".", "..") or bad(component):
                shown = "/".join(components)
                for c in components:
                    check_path_component(c, f"file path {shown!r}")
        attr_value = entry.get(b"attr", b"")
        attr = attr_value.decode("ascii", "replace") if isinstance(attr_value, bytes) else None
        if attr is None:
            raise MetainfoError(f"info 'files'[{index}]: 'attr' must be a byte string")
        path = (name, *components)
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
        files.append(FileEntry(path=path, length=length, offset=offset, attr=attr))
        offset += length
    return _rename_case_duplicates(files)


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _fold(text: str) -> str:
    """``text`` with ASCII letters lower-cased (only those: libtorrent's ``to_lower``)."""
    return text.lower() if text.isascii() else text.translate(_ASCII_LOWER)


def _rename_case_duplicates(files: list[FileEntry]) -> list[FileEntry]:
    """libtorrent's rule for paths equal ignoring ASCII case (module docstring): the later file is
    renamed ``stem.N.ext``; directories are registered first so that no file takes a folder's name."""
    taken: dict[str, FileEntry | None] = {}  # folded path -> its file, None for a directory
    for parent in {entry.path[:-1] for entry in files if len(entry.path) > 2}:
        for depth in range(2, len(parent) + 1):  # the torrent's name is the root, not a folder
            taken.setdefault(_fold("/".join(parent[:depth])), None)
    folded = [_fold("/".join(entry.path)) for entry in files]
    if len(set(folded)) == len(folded) and taken.keys().isdisjoint(folded):
        return files  # nothing collides: the usual case, decided without a Python-level loop
    out: list[FileEntry] = []
    collisions = 0
    for entry, key in zip(files, folded, strict=True):
        if key not in taken:
            taken[key] = entry
            out.append(entry)
            continue
        other = taken[key]
        if other is not None and entry.pad and other.pad and entry.length == other.length:
            out.append(entry)
            continue
        last = entry.path[-1]
        dot = last.rfind(".")
        stem, ext = (last, "") if dot < 0 else (last[:dot], last[dot:])
        number = 0
        while True:
            number += 1
            path = (*entry.path[:-1], f"{stem}.{number}{ext}")
            key = _fold("/".join(path))
            if key not in taken:
                break
            collisions += 1
            if collisions > MAX_NAME_COLLISIONS:
                raise MetainfoError(
                    f"more than {MAX_NAME_COLLISIONS} file names collide when case is ignored "
                    f"(last: {'/'.join(entry.path[1:])!r})"
                )
        renamed = replace(entry, path=path, renamed_from=entry.path)
        taken[key] = renamed
        out.append(renamed)
    return out


def _components(value: BValue | None) -> tuple[str, ...] | None:
    """A non-empty list of non-empty UTF-8 byte strings as text, else ``None``."""
    if not isinstance(value, list) or not value:
        return None
    try:
        components = tuple(c.decode("utf-8") for c in value if isinstance(c, bytes) and c)
    except UnicodeDecodeError:
        return None
    return components if len(components) == len(value) else None


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


def _announce_tiers(top: dict[bytes, BValue]) -> tuple[tuple[str, ...], ...]:
    """BEP 12: ``announce-list`` (tiers of URLs) when it names any URL, else the lone ``announce``."""
    tiers: list[tuple[str, ...]] = []
    seen: set[str] = set()
    announce_list = top.get(b"announce-list")
    if announce_list is not None:
        if not isinstance(announce_list, list):
            raise MetainfoError("'announce-list' must be a list of tiers")
        for t, tier in enumerate(announce_list):
            if not isinstance(tier, list):
                raise MetainfoError(f"'announce-list' tier {t} must be a list of URLs")
            urls: list[str] = []
            for url_value in tier:
                url = _text(url_value, f"'announce-list' tier {t} URL").strip()
                if url and url not in seen:
                    seen.add(url)
                    urls.append(url)
            if urls:
                tiers.append(tuple(urls))
    if not tiers and b"announce" in top:
        url = _text(top[b"announce"], "'announce'").strip()
        if url:
            tiers.append((url,))
    return tuple(tiers)


def _web_seeds(top: dict[bytes, BValue]) -> tuple[str, ...]:
    """BEP 19 ``url-list``: one URL string or a list of them."""
    value = top.get(b"url-list")
    if value is None:
        return ()
    items = value if isinstance(value, list) else [value]
    urls: list[str] = []
    for item in items:
        url = _text(item, "'url-list' entry").strip()
        if url and url not in urls:
            urls.append(url)
    return tuple(urls)


def parse_metainfo(data: bytes) -> Metainfo:
    """Parse and validate a whole .torrent file (BEP 3 and the extensions listed in the module doc)."""
    data = bytes(data)
    if len(data) > MAX_TORRENT_SIZE:
        raise MetainfoError(f"torrent file of {len(data)} bytes exceeds the {MAX_TORRENT_SIZE}-byte cap")
    top, spans = bencode.decode_with_spans(data)
    if not isinstance(top, dict):
        raise MetainfoError(f"a torrent file must be a dictionary, got {type(top).__name__}")
    if b"info" not in top:
        raise MetainfoError("torrent file has no 'info' dictionary")
    start, stop = spans[b"info"]
    info = _parse_info_value(top[b"info"], data[start:stop])
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
