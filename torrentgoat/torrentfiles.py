"""A torrent's file list entries and path safety, level L1 (pure): shared by v1 and v2 metainfo.

:class:`FileEntry` places one file (or BEP 47 pad file, or symlink) in the torrent's byte stream;
:func:`check_path_component` is the one rule every path from a torrent, a manifest or a file system
walk must pass before it is joined to a download directory.  :mod:`torrentgoat.metainfo` re-exports both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from torrentgoat.bencode import BValue
from torrentgoat.errors import MetainfoError, UnsafePathError

__all__ = [
    "MAX_NAME_COLLISIONS",
    "PAD_DIR",
    "FileEntry",
    "check_path_component",
    "describe",
    "path_components",
    "rename_case_duplicates",
    "symlink_target",
]

PAD_DIR = ".pad"
"""Directory component of pad files (BEP 47 recommends ``[".pad", "N"]``; libtorrent's v2 pads too)."""

_DRIVE = re.compile(r"^[A-Za-z]:")


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
    symlink: tuple[str, ...] | None = None
    """Target of a BEP 47 symlink (``attr`` ``l``) as a path relative to the download directory, like
    :attr:`path`; ``None`` for a regular file, and for a symlink whose target is missing or not a safe
    path (such a link is skipped, never created)."""
    renamed_from: tuple[str, ...] = ()
    """The path the torrent gives, when ``path`` differs from it (a name equal to an earlier one but for
    ASCII case, renamed as libtorrent does: :func:`rename_case_duplicates`); empty otherwise."""

    @property
    def pad(self) -> bool:
        """A BEP 47 padding file: its bytes are zeros, never written to disk, never requested."""
        return "p" in self.attr

    @property
    def is_symlink(self) -> bool:
        """A BEP 47 symlink: no payload; created as a link (see :attr:`symlink`), never as a file."""
        return "l" in self.attr and not self.pad

    @property
    def end(self) -> int:
        return self.offset + self.length

    @property
    def path_str(self) -> str:
        return "/".join(self.path)


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


def path_components(value: BValue | None) -> tuple[str, ...] | None:
    """A non-empty list of non-empty UTF-8 byte strings as text, else ``None``."""
    if not isinstance(value, list) or not value:
        return None
    try:
        components = tuple(c.decode("utf-8") for c in value if isinstance(c, bytes) and c)
    except UnicodeDecodeError:
        return None
    return components if len(components) == len(value) else None


def symlink_target(raw: BValue | None, prefix: tuple[str, ...]) -> tuple[str, ...] | None:
    """A BEP 47 ``symlink path`` (relative to the torrent root) as a download-relative path, or ``None``
    when absent or not made of safe names (such a link is skipped, never created)."""
    components = path_components(raw)
    if components is None:
        return None
    for component in components:
        try:
            check_path_component(component, "symlink path")
        except UnsafePathError:
            return None
    return (*prefix, *components)


def describe(entry: FileEntry) -> str:
    """One line naming ``entry`` in error messages."""
    kind = "pad" if entry.pad else "file"
    return f"{kind} {entry.path_str!r} ({entry.length} bytes at offset {entry.offset})"


MAX_NAME_COLLISIONS = 500
"""Most taken candidate names tried while renaming case-insensitive duplicates (libtorrent's limit)."""

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _fold(text: str) -> str:
    """``text`` with ASCII letters lower-cased (only those: libtorrent's ``to_lower``)."""
    return text.lower() if text.isascii() else text.translate(_ASCII_LOWER)


def rename_case_duplicates(files: list[FileEntry]) -> list[FileEntry]:
    """Rename the files whose paths equal an earlier one but for ASCII case, as libtorrent does.

    ``U`` and ``u`` (``Model.bin``, ``model.bin``) are one file on a case-insensitive file system
    (macOS, Windows), so they are renamed, not refused, on every OS (one download directory then works
    for both clients): in torrent order, a file whose path equals an earlier file's or directory's path
    ignoring ASCII case gets ``.1`` (then ``.2``, ...) before its extension (``u`` -> ``u.1``,
    ``Model.bin`` -> ``Model.1.bin``); directories are registered first so that no file takes a folder's
    name; two equal-sized pad files may share a name; more than :data:`MAX_NAME_COLLISIONS` taken
    candidates is an error (a torrent built to make this slow).  :attr:`FileEntry.path` is then where the
    file lives and :attr:`FileEntry.renamed_from` the torrent's own path (for BEP 19 web seed URLs).
    Non-ASCII case pairs (``É``/``é``) and Unicode normalization forms are not folded, as in libtorrent."""
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
