"""A torrent's file list entries and path safety, level L1 (pure): shared by v1 and v2 metainfo.

:class:`FileEntry` places one file (or BEP 47 pad file, or symlink) in the torrent's byte stream;
:func:`check_path_component` is the one rule every path from a torrent, a manifest or a file system
walk must pass before it is joined to a download directory.  :mod:`torrentgoat.metainfo` re-exports both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from torrentgoat.bencode import BValue
from torrentgoat.errors import UnsafePathError

__all__ = ["PAD_DIR", "FileEntry", "check_path_component", "describe", "path_components", "symlink_target"]

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
