"""Noticing that verified data changed on disk (level L5 helper; its file calls run on the disk pool).

A seed serves verified pieces by reading them back from its files, and those files can change under
it: deleted, truncated, overwritten by another program (a training job writing a new checkpoint over
the old one).  A read that fails raises :class:`~torrentgoat.errors.StorageError` by itself; a read
that succeeds on changed bytes does not.  :class:`FileWatch` closes that gap cheaply, without hashing
every piece it serves: it keeps the signature of every *complete* file (all its pieces verified) --
device, inode, size, modification time -- taken once the file is complete, and compares it

* after every read for serving (:meth:`FileWatch.read_into`, one ``stat`` per chunk read from disk,
  not per block: chunks are cached), so bytes read from a changed file are never sent,
* when a chunk is lent for ``sendfile`` (:meth:`FileWatch.check`; the uploader then compares each
  watched file's size and modification time by ``fstat`` before every burst of blocks, so a file written in
  place is noticed before its next burst -- only a write racing the very burst being sent, a window
  of microseconds, could reach a peer, whose hash check then refuses the piece), and
* on a timer (:meth:`FileWatch.changed`), so a changed file stops being advertised even when
  nobody asks for it.

Only complete files are watched: we write into incomplete ones ourselves, and a piece of a complete
file is never written again (it is verified).  A file whose piece is lost stops being watched until
it is complete again.  Storage that is not a :class:`~torrentgoat.storage.FileStorage` (memory
storage in tests) is never watched.  The signatures are replaced only on the event loop; the disk
threads only read them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from torrentgoat.bitfield import Bitfield
from torrentgoat.errors import DataChangedError
from torrentgoat.storage import FileStorage, Layout, Storage

__all__ = ["FileWatch", "Signature"]

Signature = tuple[int, int, int, int]
"""``(st_dev, st_ino, st_size, st_mtime_ns)`` of a file, or all -1 when it does not exist."""

_GONE: Signature = (-1, -1, -1, -1)


def _signature(path: str) -> Signature:
    try:
        st = os.stat(path)
    except OSError:
        return _GONE
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class FileWatch:
    """Signatures of a torrent's complete files, and the count of verified pieces of every file."""

    def __init__(self, storage: Storage, layout: Layout) -> None:
        self.storage = storage
        self.layout = layout
        self.enabled = isinstance(storage, FileStorage)
        self._signatures: dict[int, Signature] = {}
        files = layout.files
        self._real = [not entry.pad and not storage.is_file_skipped(f) for f, entry in enumerate(files)]
        self._needed = [len(layout.file_pieces(f)) for f in range(len(files))]
        self._verified = [0] * len(files)

    # ------------------------------------------------------------------ which files are complete

    def files_of(self, piece: int) -> list[int]:
        """The real (not pad, not skipped) files piece ``piece`` has bytes in."""
        return [f for f in self.layout.piece_files(piece) if self._real[f]]

    def pieces_of(self, files: Iterable[int]) -> set[int]:
        return {piece for f in files for piece in self.layout.file_pieces(f)}

    def count(self, have: Bitfield) -> list[int]:
        """Start counting from ``have`` (after the check); returns the complete files."""
        self._verified = [
            sum(1 for piece in self.layout.file_pieces(f) if piece in have) if real else 0
            for f, real in enumerate(self._real)
        ]
        return [f for f, n in enumerate(self._verified) if n and n == self._needed[f]]

    def piece_added(self, piece: int) -> list[int]:
        """Piece ``piece`` is verified; returns the files that became complete with it."""
        done = []
        for f in self.files_of(piece):
            self._verified[f] += 1
            if self._verified[f] == self._needed[f]:
                done.append(f)
        return done

    def piece_removed(self, piece: int) -> None:
        """Piece ``piece`` left the have-set: its files are incomplete and no longer watched."""
        for f in self.files_of(piece):
            self._verified[f] -= 1
            self._signatures.pop(f, None)

    def complete(self, f: int) -> bool:
        return self._verified[f] == self._needed[f]

    # ------------------------------------------------------------------ signatures

    @property
    def watched(self) -> frozenset[int]:
        return frozenset(self._signatures)

    def signatures(self, files: Iterable[int]) -> dict[int, Signature]:
        """The current signatures of ``files`` (disk pool)."""
        if not isinstance(self.storage, FileStorage):
            return {}
        storage = self.storage
        return {f: _signature(storage.path_of(f)) for f in files}

    def watch(self, signatures: dict[int, Signature]) -> None:
        """Keep these signatures for files still complete (on the event loop, after
        :meth:`signatures` ran on the disk pool)."""
        for f, signature in signatures.items():
            if self.complete(f) and signature != _GONE:
                self._signatures[f] = signature

    def changed(self) -> list[int]:
        """Watched files whose signature changed (disk pool; a snapshot of the table is read)."""
        watched = dict(self._signatures)
        current = self.signatures(watched)
        return [f for f, signature in watched.items() if current.get(f) != signature]

    def read_into(self, piece: int, begin: int, buf: bytearray | memoryview) -> None:
        """Read for serving, then make sure no watched file under the bytes changed (disk pool).
        Raises :class:`~torrentgoat.errors.DataChangedError` (or the read's own ``StorageError``)."""
        self.storage.read_into(piece, begin, buf)
        self.check(piece, begin, len(buf))

    def check(self, piece: int, begin: int, length: int) -> None:
        """Raise :class:`~torrentgoat.errors.DataChangedError` when a watched file under ``length``
        bytes of ``piece`` at ``begin`` changed since it was verified (disk pool: one ``stat`` each)."""
        if not self._signatures or not isinstance(self.storage, FileStorage):
            return
        storage = self.storage
        for span in self.layout.spans(piece, begin, length):
            expected = self._signatures.get(span.file_index)
            if expected is not None and _signature(storage.path_of(span.file_index)) != expected:
                raise DataChangedError(
                    f"{storage.path_of(span.file_index)} changed on disk since it was verified"
                )
