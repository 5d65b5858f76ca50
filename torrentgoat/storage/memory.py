"""Torrent data held in memory, level L3: for tests and simulations.

Same semantics as :class:`~torrentgoat.storage.file.FileStorage` (pad files never created, skipped files
never created by writes, missing files read as absent), with each "file" a ``bytearray`` created at its
full length on first write.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from torrentgoat.metainfo import InfoDict
from torrentgoat.storage.base import BytesLike, SpanStorage
from torrentgoat.storage.layout import Layout

__all__ = ["MemoryStorage"]


class MemoryStorage(SpanStorage):
    """Each file is a ``bytearray`` in :attr:`files`, keyed by file index; absent until written."""

    def __init__(
        self, info: InfoDict | Layout, *, read_only: bool = False, skipped: Iterable[int] = ()
    ) -> None:
        layout = info if isinstance(info, Layout) else Layout.from_info(info)
        self.files: dict[int, bytearray] = {}
        self.part: bytearray | None = None
        """Bytes of skipped files inside pieces shared with wanted ones (the part file)."""
        self.symlinks: dict[int, tuple[str, ...]] = {}
        """BEP 47 symlinks "created": file index -> target path (relative to the download directory)."""
        self._lock = threading.Lock()
        super().__init__(layout, read_only=read_only, skipped=skipped)

    @classmethod
    def from_payload(
        cls,
        info: InfoDict | Layout,
        payload: BytesLike,
        *,
        read_only: bool = False,
        skipped: Iterable[int] = (),
    ) -> MemoryStorage:
        """A storage whose non-pad, non-skipped files hold their slice of ``payload`` (all files joined)."""
        storage = cls(info, read_only=read_only, skipped=skipped)
        view = memoryview(payload).cast("B")
        for index, entry in enumerate(storage.layout.files):
            if not entry.pad and not storage.is_file_skipped(index):
                storage.files[index] = bytearray(view[entry.offset : entry.end])
        return storage

    def _read_file_into(self, file_index: int, offset: int, view: memoryview) -> int:
        with self._lock:
            data = self.files.get(file_index)
            if data is None:
                return -1
            chunk = data[offset : offset + len(view)]
        view[: len(chunk)] = chunk
        return len(chunk)

    def _write_file(self, file_index: int, offset: int, view: memoryview) -> None:
        with self._lock:
            data = self.files.get(file_index)
            if data is None:
                data = self.files[file_index] = bytearray(self._layout.files[file_index].length)
            data[offset : offset + len(view)] = view

    def _read_part_into(self, offset: int, view: memoryview) -> int:
        with self._lock:
            if self.part is None:
                return -1
            chunk = self.part[offset : offset + len(view)]
            view[: len(chunk)] = chunk
            return len(chunk)

    def _write_part(self, offset: int, view: memoryview) -> None:
        with self._lock:
            if self.part is None:
                self.part = bytearray(self._layout.total_length)
            self.part[offset : offset + len(view)] = view

    def _create_empty(self, file_index: int) -> None:
        with self._lock:
            self.files.setdefault(file_index, bytearray())

    def _create_symlink(self, file_index: int) -> str | None:
        target = self._layout.files[file_index].symlink
        if target is None:
            return "its 'symlink path' is missing or not a safe relative path"
        with self._lock:
            self.symlinks[file_index] = target
        return None
