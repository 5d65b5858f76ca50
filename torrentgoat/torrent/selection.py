"""Which files of a torrent to download (level L5, pure).

A selection is file indices (BEP 53 ``so=``, the library's ``file_indices``) and/or glob patterns of
paths inside the torrent (``--files``).  Pad files (BEP 47) never count as selected or skipped data.
"""

from __future__ import annotations

import fnmatch

from torrentgoat.errors import ConfigError
from torrentgoat.metainfo import InfoDict

__all__ = ["skipped_files"]


def skipped_files(info: InfoDict, selected: tuple[int, ...] | None, globs: tuple[str, ...]) -> frozenset[int]:
    """Indices of the files not selected by index or by glob (``fnmatch`` on the path relative to the
    torrent's folder, or on the whole path).  No selection at all skips nothing; a selection that
    matches no real (non-pad) file raises :class:`~torrentgoat.errors.ConfigError`."""
    if selected is None and not globs:
        return frozenset()
    chosen: set[int] = set(selected or ())
    for index, entry in enumerate(info.files):
        relative = "/".join(entry.path[1:]) if not info.single_file else entry.path_str
        if any(fnmatch.fnmatchcase(relative, g) or fnmatch.fnmatchcase(entry.path_str, g) for g in globs):
            chosen.add(index)
    if not any(i in chosen for i, f in enumerate(info.files) if not f.pad):
        raise ConfigError(f"no file of {info.name!r} matches the selection")
    return frozenset(i for i in range(len(info.files)) if i not in chosen)
