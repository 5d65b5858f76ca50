"""Crash-safe file replacement (level L0): every state file torrentgoat writes goes through here.

A state file -- a collection's ``state.json``, a torrent's resume data, a publisher key, the DHT node
cache, a ``.torrent`` written by ``create`` -- must be, after a crash or a ``SIGKILL`` at any moment,
either its old content or its new content, never a mix or a truncated file.  The recipe (the one
SQLite, git and libtorrent's ``save_resume`` follow):

1. write the new bytes to a temporary file *in the same directory* (a rename only is atomic inside
   one file system), created with ``O_EXCL`` and the final mode;
2. ``fsync`` it, so its data is on disk before its name is;
3. ``rename`` it over the target (POSIX: atomic replacement; readers see the old or the new file),
   or hard-link it into place when an existing file must not be overwritten;
4. ``fsync`` the directory, so the rename itself survives a power loss.

A kill between 1 and 3 leaves only a temporary file named ``.<name>.<pid>.<random>.tmp`` next to the
target; :func:`remove_stale_temps` sweeps those of one target.  Errors are plain :class:`OSError`
(callers turn them into their own typed errors).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

__all__ = ["fsync_directory", "remove_stale_temps", "replace_atomic", "temp_path_for", "write_atomic"]

_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_BINARY = getattr(os, "O_BINARY", 0)


def temp_path_for(path: str | os.PathLike[str]) -> Path:
    """A fresh temporary name next to ``path``: ``.<name>.<pid>.<8 hex>.tmp``."""
    target = Path(path)
    return target.with_name(f".{target.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")


def fsync_directory(directory: str | os.PathLike[str]) -> None:
    """Make the entries of ``directory`` (a rename, a new file) durable; best effort where a
    directory cannot be opened or synced (some file systems, Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY | _O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomic(
    path: str | os.PathLike[str],
    data: bytes | bytearray | memoryview,
    *,
    mode: int = 0o644,
    overwrite: bool = True,
) -> None:
    """Replace ``path`` by a file holding ``data``, atomically and durably (see the module docstring).

    ``mode`` is set on the new file whatever the umask.  ``overwrite=False`` refuses an existing
    ``path`` with :class:`FileExistsError` (the new file is hard-linked into place, which fails if
    the name is taken, so two writers cannot both win).  The parent directory must exist.
    """
    target = Path(path)
    tmp = temp_path_for(target)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW | _O_CLOEXEC | _O_BINARY, mode)
    try:
        try:
            if hasattr(os, "fchmod"):
                os.fchmod(fd, mode)
            view = memoryview(data).cast("B")
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        if overwrite:
            os.replace(tmp, target)
        else:
            os.link(tmp, target)
            os.unlink(tmp)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_directory(target.parent)


def replace_atomic(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """Rename ``source`` (a prepared file, symlink or hard link in the same directory) over
    ``target``, then make the rename durable (:func:`fsync_directory`)."""
    os.replace(source, target)
    fsync_directory(Path(target).parent)


def remove_stale_temps(path: str | os.PathLike[str]) -> int:
    """Delete temporary files a killed :func:`write_atomic` of ``path`` left behind (whatever process
    made them); returns how many.  Call it only where no other process writes ``path`` at the same
    moment (the owner of the file does, before writing it)."""
    target = Path(path)
    prefix = f".{target.name}."
    removed = 0
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return 0
    for entry in entries:
        if entry.name.startswith(prefix) and entry.name.endswith(".tmp"):
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
                removed += 1
    return removed
