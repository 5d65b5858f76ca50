"""Torrent data in ordinary files under one root directory, level L3 (blocking ``pread``/``pwrite``).

Safety (defence in depth; metainfo already rejects unsafe paths): every path component is re-checked,
and each time a file is opened its real path (symlinks resolved) must lie inside the real root, and
the final component is opened with ``O_NOFOLLOW``.  A symlink planted inside the root that points
outside is therefore refused with :class:`StorageError`; symlinks that stay inside the root are fine.

A torrent's own BEP 47 symlinks are created (as relative links) only when both the link's directory and
its target resolve inside the root, and never over an existing file; otherwise they are skipped with a
warning (see :class:`~torrentgoat.storage.base.SpanStorage`).

Files are created lazily on their first write and made sparse with ``ftruncate`` to their full length.
A read-only storage (seeding, verification) never creates anything; a missing file reads as absent.
At most ``max_open_files`` descriptors stay cached (least recently used closed first); a descriptor in
use by another thread is closed when that thread releases it, so the cap can be exceeded by at most
the number of concurrent calls.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import threading
from collections import OrderedDict
from collections.abc import Container, Iterable
from dataclasses import dataclass, field

from torrentgoat.errors import DiskFullError, StorageError
from torrentgoat.metainfo import InfoDict
from torrentgoat.storage.base import SpanStorage
from torrentgoat.storage.layout import Layout

__all__ = ["FileLease", "FileStorage"]

_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_BINARY = getattr(os, "O_BINARY", 0)
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_NO_SPACE = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
_NO_SENDFILE = {errno.EINVAL, errno.ENOSYS, errno.ENOTSOCK, getattr(errno, "EOPNOTSUPP", errno.EINVAL)}


@dataclass(slots=True)
class _Handle:
    fd: int
    writable: bool
    refs: int = 0
    evicted: bool = False
    writing: threading.Lock = field(default_factory=threading.Lock)
    """Held by the thread writing to the file (see :meth:`FileStorage._write_file`)."""


class FileLease:
    """Open descriptors under a range of a verified piece, lent for ``sendfile`` on another thread.

    ``spans`` are ``(fd, file offset, length)`` in range order.  The descriptors stay open (the
    storage's descriptor cache cannot close them) until :meth:`release`, which is idempotent."""

    __slots__ = ("_handles", "_storage", "files", "spans", "stamps")

    def __init__(
        self, storage: FileStorage, spans: list[tuple[int, int, int]], handles: list[_Handle]
    ) -> None:
        self._storage: FileStorage | None = storage
        self._handles = handles
        self.spans = spans
        self.files: list[int] = []
        """The file index of each span."""
        self.stamps: list[tuple[int, int, int, int] | None] = []
        """``(st_dev, st_ino, st_size, st_mtime_ns)`` of each span's descriptor when lent; ``None``
        for a file :meth:`unchanged` does not check (see :meth:`check_only`)."""

    def check_only(self, files: Container[int]) -> None:
        """:meth:`unchanged` compares only these files (a file still being downloaded changes with
        every piece written into it, verified bytes or not)."""
        self.stamps = [s if f in files else None for f, s in zip(self.files, self.stamps, strict=True)]

    def _stamp(self, file_index: int, fd: int) -> None:
        st = os.fstat(fd)
        self.files.append(file_index)
        self.stamps.append((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))

    def unchanged(self) -> bool:
        """Whether every file under the lease still has the size and modification time it had when
        lent (one ``fstat`` per file: no disk access, safe on the event loop)."""
        try:
            for (fd, _, _), stamp in zip(self.spans, self.stamps, strict=True):
                if stamp is None:
                    continue
                st = os.fstat(fd)
                if (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) != stamp:
                    return False
        except (OSError, ValueError):
            return False
        return True

    def release(self) -> None:
        storage, self._storage = self._storage, None
        if storage is not None:
            for handle in self._handles:
                storage._release(handle)
            self._handles = []


def _check_component(part: str, path: tuple[str, ...]) -> None:
    if (
        not part
        or part in (".", "..")
        or "/" in part
        or "\\" in part
        or "\x00" in part
        or (os.name == "nt" and ":" in part)
    ):
        raise StorageError(f"unsafe path component {part!r} in {'/'.join(path)!r}")


_NOWAIT: int = getattr(os, "RWF_NOWAIT", 0)
"""``preadv`` flag: fail with EAGAIN instead of waiting for the disk (0 where unsupported)."""

PARTS_DIR = ".torrentgoat-parts"
"""Folder (inside the download directory) of part files; see :class:`SpanStorage`."""


class FileStorage(SpanStorage):
    """Files under ``root``; each :class:`FileEntry` path (starting with the torrent name) is joined to it."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        info: InfoDict | Layout,
        *,
        read_only: bool = False,
        skipped: Iterable[int] = (),
        max_open_files: int = 128,
    ) -> None:
        layout = info if isinstance(info, Layout) else Layout.from_info(info)
        if max_open_files < 1:
            raise StorageError(f"max_open_files must be >= 1, got {max_open_files}")
        self.root = os.path.abspath(os.fspath(root))
        self._real_root = os.path.realpath(self.root)
        self._paths: list[str] = []
        for entry in layout.files:
            if not entry.path:
                raise StorageError("file with an empty path")
            for part in entry.path:
                _check_component(part, entry.path)
            self._paths.append(os.path.join(self._real_root, *entry.path))
        # the part file (see SpanStorage): a virtual file index past the torrent's files
        self._part_index = len(layout.files)
        name = layout.files[0].path[0] if layout.files else "torrent"
        self._paths.append(os.path.join(self._real_root, PARTS_DIR, f"{name}.parts"))
        self._max_open = max_open_files
        self._handles: OrderedDict[int, _Handle] = OrderedDict()
        self._lock = threading.Lock()
        self._open_count = 0
        self._devnull = -1
        super().__init__(layout, read_only=read_only, skipped=skipped)

    # -- paths ----------------------------------------------------------------------------------

    def path_of(self, file_index: int) -> str:
        """Absolute path of file ``file_index`` (not resolved)."""
        return self._paths[file_index]

    def _resolved(self, file_index: int) -> str:
        path = self._paths[file_index]
        real = os.path.realpath(path)
        root = self._real_root
        if real != path and not (real.startswith(root.rstrip(os.sep) + os.sep) and real != root):
            raise StorageError(f"{path} resolves to {real}, outside the download directory {root}")
        return real

    # -- descriptor cache -----------------------------------------------------------------------

    @property
    def open_files(self) -> int:
        """Descriptors currently open (cached plus evicted-but-in-use)."""
        return self._open_count

    def _open(self, file_index: int, *, write: bool) -> _Handle | None:
        """Open file ``file_index``; ``None`` if it does not exist and ``write`` is false.

        ``O_NONBLOCK`` keeps a FIFO planted at a file's path from blocking ``open``; anything but a
        regular file is then refused.
        """
        path = self._resolved(file_index)
        if file_index == self._part_index:
            length = self._layout.total_length
        else:
            length = self._layout.files[file_index].length
        flags = _O_CLOEXEC | _O_NOFOLLOW | _O_BINARY | _O_NONBLOCK
        try:
            if write:
                parent = os.path.dirname(path)
                os.makedirs(parent, exist_ok=True)
                path = self._resolved(file_index)  # a directory swapped for a symlink meanwhile
                handle = _Handle(fd=os.open(path, flags | os.O_RDWR | os.O_CREAT, 0o644), writable=True)
            elif self._read_only:
                handle = _Handle(fd=os.open(path, flags | os.O_RDONLY), writable=False)
            else:
                try:
                    handle = _Handle(fd=os.open(path, flags | os.O_RDWR), writable=True)
                except PermissionError:
                    handle = _Handle(fd=os.open(path, flags | os.O_RDONLY), writable=False)
        except FileNotFoundError:
            if write:
                raise StorageError(f"cannot create {path}: a parent directory vanished") from None
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise StorageError(f"refusing to follow a symlink at {path}") from exc
            raise StorageError(f"cannot open {path}: {exc.strerror or exc}") from exc
        try:
            status = os.fstat(handle.fd)
            if not stat.S_ISREG(status.st_mode):
                raise StorageError(f"{path} is not a regular file")
            if write and status.st_size < length:
                os.ftruncate(handle.fd, length)  # sparse: no blocks allocated yet
        except BaseException as exc:
            os.close(handle.fd)
            if isinstance(exc, OSError):
                raise StorageError(f"cannot size {path}: {exc.strerror or exc}") from exc
            raise
        return handle

    def _acquire(self, file_index: int, *, write: bool) -> _Handle | None:
        with self._lock:
            if self._closed:
                raise StorageError("storage is closed")
            handle = self._handles.get(file_index)
            if handle is not None and (handle.writable or not write):
                self._handles.move_to_end(file_index)
                handle.refs += 1
                return handle
            if handle is not None:  # open read-only, now needed for writing
                self._evict(file_index)
            handle = self._open(file_index, write=write)
            if handle is None:
                return None
            self._open_count += 1
            self._handles[file_index] = handle
            handle.refs += 1
            while len(self._handles) > self._max_open:
                oldest = next(iter(self._handles))
                self._evict(oldest)
            return handle

    def _evict(self, file_index: int) -> None:
        handle = self._handles.pop(file_index)
        handle.evicted = True
        if handle.refs == 0:
            self._close_handle(handle)

    def _close_handle(self, handle: _Handle) -> None:
        with contextlib.suppress(OSError):
            os.close(handle.fd)
        self._open_count -= 1

    def _release(self, handle: _Handle) -> None:
        with self._lock:
            handle.refs -= 1
            if handle.evicted and handle.refs == 0:
                self._close_handle(handle)

    # -- primitives -----------------------------------------------------------------------------

    def _read_file_into(self, file_index: int, offset: int, view: memoryview) -> int:
        handle = self._acquire(file_index, write=False)
        if handle is None:
            return -1
        try:
            done = 0
            total = len(view)
            while done < total:
                got = os.preadv(handle.fd, [view[done:]], offset + done)
                if got == 0:
                    break
                done += got
            return done
        except OSError as exc:
            raise StorageError(f"cannot read {self._paths[file_index]}: {exc.strerror or exc}") from exc
        finally:
            self._release(handle)

    def read_cached_into(self, piece: int, begin: int, buf: bytearray | memoryview) -> bool:
        """Fill ``buf`` with bytes of ``piece`` from ``begin`` only if they are all in the page cache,
        without blocking (``preadv`` with ``RWF_NOWAIT``, Linux 4.14+): safe to call on the event loop.

        ``False`` -- nothing to rely on in ``buf`` -- when a byte would need the disk, a file is not
        open yet (opening may block), a span is a pad or skipped file, or the platform cannot tell;
        the caller then reads with :meth:`read_into` on the disk pool.  Raises nothing."""
        if not _NOWAIT or self._closed:
            return False
        view = buf if isinstance(buf, memoryview) else memoryview(buf)
        for span in self._layout.spans(piece, begin, len(view)):
            if span.pad or span.file_index in self._skipped:
                return False
            with self._lock:
                handle = self._handles.get(span.file_index)
                if handle is None or handle.evicted:
                    return False
                handle.refs += 1
            try:
                part = view[span.buffer_offset : span.buffer_offset + span.length]
                done, offset = 0, span.file_offset
                while done < span.length:
                    got = os.preadv(handle.fd, [part[done:]], offset + done, _NOWAIT)
                    if got <= 0:
                        return False
                    done += got
            except OSError:  # EAGAIN: not cached; EOPNOTSUPP and the like: let the disk pool read
                return False
            finally:
                self._release(handle)
        return True

    def lend(self, piece: int, begin: int, length: int) -> FileLease | None:
        """Descriptors of the files under ``length`` bytes of ``piece`` at ``begin``, with those bytes
        brought into the page cache (blocking: call it on the disk pool), for a caller that sends them
        with ``sendfile`` without blocking on the disk.  ``None`` when a span is a pad or a skipped
        file (their bytes are not in one file: read them instead).  Raises :class:`StorageError` when
        a file is missing or shorter than the range.  Release the lease when done."""
        spans: list[tuple[int, int, int]] = []
        handles: list[_Handle] = []
        lease = FileLease(self, spans, handles)
        try:
            for span in self._layout.spans(piece, begin, length):
                if span.pad or span.file_index in self._skipped:
                    lease.release()
                    return None
                handle = self._acquire(span.file_index, write=False)
                if handle is None:
                    raise StorageError(
                        f"reading piece {piece}: {self._paths[span.file_index]} does not exist"
                    )
                handles.append(handle)
                self._warm(span.file_index, handle.fd, span.file_offset, span.length)
                spans.append((handle.fd, span.file_offset, span.length))
                lease._stamp(span.file_index, handle.fd)
        except BaseException:
            lease.release()
            raise
        return lease

    def _warm(self, file_index: int, fd: int, offset: int, length: int) -> None:
        """Read ``length`` bytes at ``offset`` into the page cache without copying them out:
        ``sendfile`` to ``/dev/null`` (Linux splices the pages and drops them)."""
        end = offset + length
        try:
            while offset < end:
                sent = os.sendfile(self._null(), fd, offset, end - offset)
                if sent <= 0:
                    raise StorageError(f"{self._paths[file_index]} ends before byte {end}")
                offset += sent
        except OSError as exc:
            if exc.errno in _NO_SENDFILE:  # not Linux: let the kernel read ahead, as a hint
                with contextlib.suppress(OSError, AttributeError):
                    os.posix_fadvise(fd, offset, end - offset, os.POSIX_FADV_WILLNEED)
                return
            raise StorageError(f"cannot read {self._paths[file_index]}: {exc.strerror or exc}") from exc

    def _null(self) -> int:
        fd = self._devnull
        if fd < 0:
            with self._lock:
                if self._closed:
                    raise StorageError("storage is closed")
                if self._devnull < 0:
                    self._devnull = os.open(os.devnull, os.O_WRONLY | _O_CLOEXEC)
                fd = self._devnull
        return fd

    def _write_file(self, file_index: int, offset: int, view: memoryview) -> None:
        """Write ``view`` at ``offset``, one thread at a time per file: the kernel takes the file's
        lock for every buffered write anyway (ext4, xfs, tmpfs), and a second writer spins on it
        while the first copies -- ~4 % of each hash thread's CPU when two write pieces of one file
        to tmpfs (``perf``: ``rwsem_spin_on_owner``).  Waiting here sleeps instead (issue 15)."""
        handle = self._acquire(file_index, write=True)
        assert handle is not None
        try:
            done = 0
            total = len(view)
            with handle.writing:
                while done < total:
                    written = os.pwrite(handle.fd, view[done:], offset + done)
                    if written <= 0:
                        raise StorageError(f"cannot write {self._paths[file_index]}: no progress")
                    done += written
        except OSError as exc:
            path = self._paths[file_index]
            if exc.errno in _NO_SPACE:
                raise DiskFullError(f"no space left on the device of {path}") from None
            raise StorageError(f"cannot write {path}: {exc.strerror or exc}") from exc
        finally:
            self._release(handle)

    def _read_part_into(self, offset: int, view: memoryview) -> int:
        return self._read_file_into(self._part_index, offset, view)

    def _write_part(self, offset: int, view: memoryview) -> None:
        self._write_file(self._part_index, offset, view)

    @property
    def part_path(self) -> str:
        """Where bytes of skipped files that share pieces with wanted ones are kept."""
        return self._paths[self._part_index]

    def _create_empty(self, file_index: int) -> None:
        handle = self._acquire(file_index, write=True)
        assert handle is not None
        self._release(handle)

    def _inside(self, real: str) -> bool:
        root = self._real_root.rstrip(os.sep) + os.sep
        return real.startswith(root)

    def _create_symlink(self, file_index: int) -> str | None:
        entry = self._layout.files[file_index]
        if entry.symlink is None:
            return "its 'symlink path' is missing or not a safe relative path"
        for part in entry.symlink:
            _check_component(part, entry.symlink)
        link = self._paths[file_index]
        target = os.path.join(self._real_root, *entry.symlink)
        if os.path.realpath(target) == os.path.realpath(link):
            return "it points at itself"
        if not self._inside(os.path.realpath(target)):
            return f"its target {'/'.join(entry.symlink)} resolves outside the download directory"
        parent = os.path.dirname(link)
        try:
            os.makedirs(parent, exist_ok=True)
            if not self._inside(os.path.realpath(parent) + os.sep):
                return "its directory resolves outside the download directory"
            relative = os.path.relpath(target, os.path.realpath(parent))
            if os.path.lexists(link):
                if os.path.islink(link) and os.readlink(link) == relative:
                    return None  # made by an earlier run
                return "something else already exists at its path"
            os.symlink(relative, link)
        except OSError as exc:
            return f"cannot create it: {exc.strerror or exc}"
        return None

    # -- lifecycle ------------------------------------------------------------------------------

    def preflight(self) -> None:
        """Refuse, before any network traffic, a download that cannot be written: a download
        directory that is not a writable directory, a path component that is a file where the torrent
        needs a directory (or the reverse), a name longer than the file system allows.  Read-only
        storage checks nothing."""
        if self._read_only:
            return
        existing = self.root
        while not os.path.lexists(existing) and os.path.dirname(existing) != existing:
            existing = os.path.dirname(existing)
        if not os.path.isdir(existing):
            raise StorageError(f"{existing} is not a directory (the download directory is {self.root})")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise StorageError(f"the download directory {existing} is not writable")
        try:
            name_max = os.pathconf(existing, "PC_NAME_MAX")
        except (OSError, ValueError):
            name_max = 255
        checked: set[str] = set()
        for index, entry in enumerate(self._layout.files):
            if entry.pad or index in self._skipped:
                continue
            for part in entry.path:
                if len(os.fsencode(part)) > name_max:
                    raise StorageError(
                        f"file name too long for this file system ({len(os.fsencode(part))} bytes, the "
                        f"limit is {name_max}): {part[:60]!r}"
                    )
            where = self.root
            for part in entry.path[:-1]:
                where = os.path.join(where, part)
                if where in checked:
                    continue
                checked.add(where)
                if os.path.lexists(where) and not os.path.isdir(where):
                    raise StorageError(
                        f"{where} is not a directory: a file is where the torrent needs a folder"
                    )
            path = self._paths[index]
            if os.path.isdir(path):
                raise StorageError(f"{path} is a directory where the torrent needs a file")

    def trim_oversized(self) -> list[str]:
        """Cut wanted files that are longer on disk than the torrent says (left over from another
        version): every piece may check out, yet the file would differ from the torrent's content.
        Returns the paths trimmed.  Read-only storage trims nothing."""
        trimmed: list[str] = []
        if self._read_only:
            return trimmed
        for index, entry in enumerate(self._layout.files):
            if entry.pad or entry.is_symlink or index in self._skipped or not self.file_exists(index):
                continue
            path = self._resolved(index)
            try:
                if os.lstat(path).st_size > entry.length:
                    os.truncate(path, entry.length)
                    trimmed.append(path)
            except OSError as exc:
                raise StorageError(f"cannot trim {path}: {exc.strerror or exc}") from exc
        return trimmed

    def file_exists(self, file_index: int) -> bool:
        """Whether file ``file_index`` exists on disk (pad files never do)."""
        if self._layout.files[file_index].pad:
            return False
        return os.path.lexists(self._paths[file_index])

    def flush(self) -> None:
        """Create wanted zero-length files and ``fsync`` every descriptor open for writing."""
        super().flush()
        with self._lock:
            handles = [h for h in self._handles.values() if h.writable]
            for h in handles:
                h.refs += 1
        try:
            for h in handles:
                try:
                    os.fsync(h.fd)
                except OSError as exc:
                    raise StorageError(f"fsync failed: {exc.strerror or exc}") from exc
        finally:
            for h in handles:
                self._release(h)

    def reopen_files(self, file_indices: Iterable[int]) -> None:
        """Drop the open descriptors of these files: the next read opens the path again, so a file
        deleted or replaced on disk is read as it is now, not through a descriptor of the old one."""
        with self._lock:
            for index in file_indices:
                if index in self._handles:
                    self._evict(index)

    def close(self) -> None:
        if self._closed:
            return
        self._create_empty_files()
        with self._lock:
            self._closed = True
            for index in list(self._handles):
                self._evict(index)
            if self._devnull >= 0:
                with contextlib.suppress(OSError):
                    os.close(self._devnull)
                self._devnull = -1
