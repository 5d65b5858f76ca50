"""The torrent's data on disk before any piece moves (level L5): storage for the selected files,
checked by :meth:`~torrentgoat.storage.FileStorage.preflight` before any network traffic, and the free
space the download still needs."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from torrentgoat.errors import DiskFullError
from torrentgoat.metainfo import InfoDict
from torrentgoat.storage import FileStorage, Layout, Storage
from torrentgoat.torrent.config import TorrentConfig
from torrentgoat.torrent.handle import TorrentContext
from torrentgoat.torrent.selection import skipped_files
from torrentgoat.units import format_size

__all__ = ["check_free_space", "open_storage"]


def open_storage(info: InfoDict, dest: Path, config: TorrentConfig, ctx: TorrentContext) -> Storage:
    """Storage for the selected files under ``dest`` (or from ``ctx.storage_factory``); a
    :class:`FileStorage` is preflighted: not a directory, not writable, a name too long for the file
    system -- each a clear :class:`~torrentgoat.errors.StorageError` now rather than midway."""
    layout = Layout.from_info(info)
    skipped = skipped_files(info, config.selected_files, config.file_globs)
    if ctx.storage_factory is not None:
        return ctx.storage_factory(dest, layout, skipped)
    storage = FileStorage(dest, layout, skipped=skipped, max_open_files=ctx.max_open_files)
    storage.preflight()
    return storage


def check_free_space(storage: Storage | None, left: int) -> None:
    """Refuse to download ``left`` bytes that the download directory's file system cannot hold
    (:class:`~torrentgoat.errors.DiskFullError`); pieces are written sparse, so the bytes still missing
    are what the download will take."""
    if not isinstance(storage, FileStorage) or not left:
        return
    where = storage.root
    while not os.path.isdir(where) and os.path.dirname(where) != where:
        where = os.path.dirname(where)
    try:
        free = shutil.disk_usage(where).free
    except OSError:
        return
    if free < left:
        raise DiskFullError(
            f"not enough free space in {storage.root}: {format_size(left)} still to download, "
            f"{format_size(free)} free"
        )
