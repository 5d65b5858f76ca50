"""Creating torrents from files on disk, level L3 (blocking file I/O and hashing threads, no asyncio).

:func:`create_torrent` walks a file or a directory, lays the files out in one byte stream (with BEP 47
pad files between them), hashes every piece on all cores and returns the validated
:class:`~torrentgoat.metainfo.Metainfo`; ``metainfo.to_bytes()`` is the .torrent file.  Three formats:

* ``v1`` (the library default) -- BEP 3: SHA-1 piece hashes, pads *before* each misaligned file; the
  same info-hash as before BEP 52 support;
* ``v2`` -- BEP 52 only: a ``file tree`` with each file's ``pieces root`` (SHA-256 merkle tree of its
  16 KiB blocks) and the ``piece layers`` of files larger than one piece;
* ``hybrid`` -- both halves describing the same files (BEP 52 "Upgrade Path", what libtorrent 2.x and
  qBittorrent create by default): the v1 ``files`` list gets a pad *after* every misaligned non-empty
  file, the last one included (libtorrent's tail padding), when the torrent holds more than one file.

For ``v2`` and ``hybrid`` the info dictionary has exactly libtorrent 2.x's keys and order (``attr`` of a
single file, ``file tree``, ``files``, ``length``, ``meta version``, ``name``, ``piece length``,
``pieces``, ``private``), so the same files and piece length give libtorrent's info-hashes wherever the
two file orders agree (see *Order*).  Every piece holds the bytes of exactly one file in these formats,
so one read pass computes both SHA-1 of the piece and the SHA-256 leaves of its file bytes.

Layout rules, chosen so the same tree always yields the same info-hash:

* **Order** -- files of a directory are sorted by their path components compared as UTF-8 bytes
  (``a/b`` before ``a.b``: directories stay contiguous, the order of a BEP 52 file tree).
  libtorrent's ``canonical_files`` compares whole path strings instead, so the two only differ
  when a name sorts below ``/`` (``a.b`` vs a directory ``a``).
* **Nothing is skipped silently** -- hidden files are included; a symlink is refused with an error
  unless ``follow_symlinks`` is set (then its target is hashed under the link's name, and directory
  cycles are refused); sockets, FIFOs and devices are refused; names that are not UTF-8 or not safe
  path components (see :func:`torrentgoat.metainfo.check_path_component`) are refused.
* **Pad files** (BEP 47, on by default in multi-file torrents): right before every non-empty file that
  would not start on a piece boundary, a pad file of zeros fills up the piece; its path is
  ``.pad/<size>`` and its ``attr`` is ``p``, as libtorrent writes them.  Every non-empty file then
  starts on a piece boundary, so it can be fetched, verified and shared on its own; nothing pads the
  end of the last file.  This is exactly libtorrent's ``canonical_files_no_tail_padding`` layout
  (zero-length files included), so wherever the two sort orders agree the info-hashes are equal.
* **Attributes** -- ``attr`` ``x`` marks an executable file (BEP 47), as libtorrent does.
* **Single file** -- the info dictionary has exactly libtorrent's keys (``length``, ``name``,
  ``piece length``, ``pieces``, plus ``private`` when set and ``attr`` when executable), so the same
  file and piece length give libtorrent's info-hash.

**Automatic piece length** (``piece_length=None``): the smallest power of two between 16 KiB and
16 MiB that splits the data into at most 2048 pieces -- i.e. ``total / 2048`` rounded up to a power
of two, clamped to [16 KiB, 16 MiB].  Data over 32 GiB therefore gets 16 MiB pieces and more than
2048 of them (a 140 GB model: ~8,300 pieces, a 167 KB ``pieces`` string).

**Hashing** -- the main thread reads the stream with large ``readinto`` calls (chunks of at least
4 MiB, whole pieces) into a small pool of reusable buffers; a ``ThreadPoolExecutor`` hashes chunks
(hashlib releases the GIL), at most a bounded window of chunks in flight, so memory stays bounded
whatever the file size (about ``window * max(4 MiB, piece_length)``, at most ~256 MiB).
A file that shrinks or grows while being hashed is an error.
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from torrentgoat import __version__, bencode
from torrentgoat.bencode import BValue
from torrentgoat.errors import ConfigError, StorageError, UnsafePathError
from torrentgoat.infohashes import FORMATS, TorrentFormat
from torrentgoat.merkle import BLOCK_SIZE, block_hashes, fold, tree_height
from torrentgoat.metainfo import (
    MAX_FILES,
    MAX_PIECE_LENGTH,
    MIN_PIECE_LENGTH,
    Metainfo,
    check_path_component,
    parse_info,
)
from torrentgoat.metainfo_v2 import TreeFile, build_file_tree

__all__ = [
    "AUTO_MAX_PIECE_LENGTH",
    "AUTO_TARGET_PIECES",
    "DEFAULT_CREATED_BY",
    "FORMATS",
    "ProgressCallback",
    "SourceFile",
    "auto_piece_length",
    "create_torrent",
    "scan_files",
]

DEFAULT_CREATED_BY = f"torrentgoat/{__version__}"

AUTO_TARGET_PIECES = 2048
"""The automatic piece length gives at most this many pieces (unless clamped at 16 MiB)."""

AUTO_MAX_PIECE_LENGTH = 16 * 1024 * 1024
"""Largest piece length chosen automatically."""

_CHUNK_BYTES = 4 * 1024 * 1024
_MAX_INFLIGHT_BYTES = 256 * 1024 * 1024

ProgressCallback = Callable[[int, int], None]
"""``progress(done_bytes, total_bytes)``, called from the creating thread after each hashed chunk;
the byte counts include pad bytes."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceFile:
    """One file found on disk, with its place in the torrent."""

    source: Path
    """Where the bytes are read from."""
    components: tuple[str, ...]
    """Path inside the torrent, below its name (empty for a single-file torrent)."""
    length: int
    executable: bool = False


def _refuse_case_duplicates(sources: Sequence[SourceFile]) -> None:
    """Names equal but for ASCII case are one file on macOS and Windows; every client then stores the
    second under another name (metainfo's renaming rule), so this folder could not seed its own
    torrent: refuse, naming both."""
    fold = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
    seen: dict[str, str] = {}
    for source in sources:
        parts = source.components
        for depth in range(1, len(parts) + 1):
            shown = "/".join(parts[:depth])
            other = seen.setdefault(shown.translate(fold), shown)
            if other != shown:
                raise UnsafePathError(
                    f"{other!r} and {shown!r} differ only in case: one file on case-insensitive file "
                    "systems (macOS, Windows); rename one of them"
                )


def auto_piece_length(total_length: int) -> int:
    """``total_length / 2048`` rounded up to a power of two, clamped to [16 KiB, 16 MiB]."""
    piece = MIN_PIECE_LENGTH
    while piece < AUTO_MAX_PIECE_LENGTH and -(-total_length // piece) > AUTO_TARGET_PIECES:
        piece *= 2
    return piece


def _utf8_name(name: str, where: Path) -> str:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise StorageError(f"{os.fsdecode(where)!r}: file name is not valid UTF-8") from None
    return name


class SymlinkRefusedError(StorageError):
    """A symbolic link in the folder being shared while links are not followed (``follow_symlinks``)."""


def _symlink_refused(path: Path) -> SymlinkRefusedError:
    return SymlinkRefusedError(f"{os.fsdecode(path)!r} is a symbolic link; links are not followed")


def scan_files(path: str | os.PathLike[str], *, follow_symlinks: bool = False) -> list[SourceFile]:
    """Every file under ``path`` in torrent order (see the module docstring); a file gives itself."""
    root = Path(path)
    try:
        info = root.lstat()
    except OSError as exc:
        raise StorageError(f"cannot read {os.fsdecode(root)!r}: {exc.strerror or exc}") from None
    if stat.S_ISLNK(info.st_mode):
        if not follow_symlinks:
            raise _symlink_refused(root)
        try:
            info = root.stat()
        except OSError as exc:
            raise StorageError(f"cannot follow {os.fsdecode(root)!r}: {exc.strerror or exc}") from None
    if stat.S_ISREG(info.st_mode):
        return [SourceFile(source=root, components=(), length=info.st_size, executable=_exec(info))]
    if not stat.S_ISDIR(info.st_mode):
        raise StorageError(f"{os.fsdecode(root)!r} is neither a regular file nor a directory")
    found: list[SourceFile] = []
    _walk(root, (), found, follow_symlinks, {(info.st_dev, info.st_ino)})
    found.sort(key=lambda f: tuple(c.encode("utf-8") for c in f.components))
    return found


def _exec(info: os.stat_result) -> bool:
    return bool(info.st_mode & 0o111)


def _walk(
    directory: Path,
    prefix: tuple[str, ...],
    found: list[SourceFile],
    follow_symlinks: bool,
    ancestors: set[tuple[int, int]],
) -> None:
    try:
        entries = list(os.scandir(directory))
    except OSError as exc:
        raise StorageError(f"cannot list {os.fsdecode(directory)!r}: {exc.strerror or exc}") from None
    for entry in entries:
        where = Path(entry.path)
        name = _utf8_name(entry.name, where)
        check_path_component(name, f"file {os.fsdecode(where)!r}")
        try:
            if entry.is_symlink():
                if not follow_symlinks:
                    raise _symlink_refused(where)
                info = entry.stat(follow_symlinks=True)
            else:
                info = entry.stat(follow_symlinks=False)
        except OSError as exc:
            raise StorageError(f"cannot stat {os.fsdecode(where)!r}: {exc.strerror or exc}") from None
        components = (*prefix, name)
        if stat.S_ISDIR(info.st_mode):
            key = (info.st_dev, info.st_ino)
            if key in ancestors:
                raise StorageError(f"{os.fsdecode(where)!r} leads back to a parent directory (cycle)")
            _walk(where, components, found, follow_symlinks, ancestors | {key})
        elif stat.S_ISREG(info.st_mode):
            found.append(
                SourceFile(source=where, components=components, length=info.st_size, executable=_exec(info))
            )
            if len(found) > MAX_FILES:
                raise ConfigError(f"more than {MAX_FILES} files under {os.fsdecode(directory)!r}")
        else:
            raise StorageError(f"{os.fsdecode(where)!r} is not a regular file or directory; refusing")


# ------------------------------------------------------------------------------------------- hashing


class _Stream:
    """The torrent's concatenated bytes: files read in order, pad segments as zeros."""

    def __init__(self, segments: list[tuple[Path | None, int]]) -> None:
        self._segments = segments
        self._index = 0
        self._done_in_segment = 0
        self._open: _OpenFile | None = None

    def readinto(self, view: memoryview) -> None:
        filled = 0
        while filled < len(view):
            source, length = self._segments[self._index]
            want = min(len(view) - filled, length - self._done_in_segment)
            if source is None:
                view[filled : filled + want] = bytes(want)
            else:
                if self._open is None:
                    self._open = _OpenFile(source)
                self._open.readinto(view[filled : filled + want])
            filled += want
            self._done_in_segment += want
            if self._done_in_segment == length:
                if self._open is not None:
                    self._open.finish(length)
                    self._open = None
                self._index += 1
                self._done_in_segment = 0

    def close(self) -> None:
        if self._open is not None:
            self._open.close()
            self._open = None


class _OpenFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.file = open(path, "rb", buffering=0)  # noqa: SIM115 -- closed in finish()/close()
        except OSError as exc:
            raise StorageError(f"cannot open {os.fsdecode(path)!r}: {exc.strerror or exc}") from None

    def readinto(self, view: memoryview) -> None:
        pos = 0
        while pos < len(view):
            try:
                got = self.file.readinto(view[pos:])
            except OSError as exc:
                self.close()
                raise StorageError(f"cannot read {os.fsdecode(self.path)!r}: {exc.strerror or exc}") from None
            if not got:
                self.close()
                raise StorageError(f"{os.fsdecode(self.path)!r} shrank while it was being hashed")
            pos += got

    def finish(self, length: int) -> None:
        size = os.fstat(self.file.fileno()).st_size
        self.close()
        if size != length:
            raise StorageError(
                f"{os.fsdecode(self.path)!r} changed size while it was being hashed ({length} -> {size})"
            )

    def close(self) -> None:
        self.file.close()


_PieceSpec = tuple[int, int | None]
"""For v2 hashing, per piece: (bytes of file data at its start, merkle width for :func:`fold`: blocks per
piece for a file of several pieces, ``None`` for a one-piece file whose own width is used)."""


def _hash_chunk(
    buffer: bytearray, size: int, piece_length: int, v1: bool, specs: Sequence[_PieceSpec] | None
) -> tuple[bytes, list[bytes]]:
    """SHA-1 of each piece (``v1``) and, with ``specs``, each piece's merkle node: the piece layer entry,
    or the pieces root of a one-piece file (BEP 52)."""
    view = memoryview(buffer)
    starts = range(0, size, piece_length)
    sha1 = b""
    if v1:
        sha1 = b"".join(
            hashlib.sha1(view[start : min(start + piece_length, size)]).digest() for start in starts
        )
    nodes: list[bytes] = []
    if specs is not None:
        for start, (data_length, width) in zip(starts, specs, strict=True):
            leaves = block_hashes(view[start : start + data_length])
            count = len(leaves) // 32
            nodes.append(fold(leaves, 0, width if width is not None else 1 << tree_height(count)))
    return sha1, nodes


def _hash_stream(
    segments: list[tuple[Path | None, int]],
    total: int,
    piece_length: int,
    threads: int,
    progress: ProgressCallback | None,
    *,
    v1: bool = True,
    specs: Sequence[_PieceSpec] | None = None,
) -> tuple[bytes, list[bytes]]:
    chunk_size = max(1, _CHUNK_BYTES // piece_length) * piece_length
    per_chunk = chunk_size // piece_length
    workers = threads if threads > 0 else (os.cpu_count() or 1)
    window = max(2, min(2 * workers, _MAX_INFLIGHT_BYTES // chunk_size))
    stream = _Stream(segments)
    digests: list[bytes] = []
    nodes: list[bytes] = []
    free: list[bytearray] = []
    pending: deque[tuple[Future[tuple[bytes, list[bytes]]], bytearray, int]] = deque()
    offset = done = 0
    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="torrentgoat-hash") as pool:
            while offset < total or pending:
                while offset < total and len(pending) < window:
                    size = min(chunk_size, total - offset)
                    buffer = free.pop() if free else bytearray(min(chunk_size, total))
                    stream.readinto(memoryview(buffer)[:size])
                    first = offset // piece_length
                    chunk_specs = specs[first : first + per_chunk] if specs is not None else None
                    job = pool.submit(_hash_chunk, buffer, size, piece_length, v1, chunk_specs)
                    pending.append((job, buffer, size))
                    offset += size
                future, buffer, size = pending.popleft()
                sha1, chunk_nodes = future.result()
                digests.append(sha1)
                nodes.extend(chunk_nodes)
                free.append(buffer)
                done += size
                if progress is not None:
                    progress(done, total)
    finally:
        stream.close()
    return b"".join(digests), nodes


# ------------------------------------------------------------------------------------------ creation


def _tiers(trackers: Sequence[Sequence[str] | str]) -> tuple[tuple[str, ...], ...]:
    tiers: list[tuple[str, ...]] = []
    seen: set[str] = set()
    for tier in trackers:
        urls = [tier] if isinstance(tier, str) else list(tier)
        kept = []
        for url in urls:
            url = url.strip()
            if url and url not in seen:
                seen.add(url)
                kept.append(url)
        if kept:
            tiers.append(tuple(kept))
    return tuple(tiers)


def create_torrent(
    path: str | os.PathLike[str],
    *,
    piece_length: int | None = None,
    trackers: Sequence[Sequence[str] | str] = (),
    web_seeds: Sequence[str] = (),
    private: bool = False,
    name: str | None = None,
    comment: str = "",
    created_by: str = DEFAULT_CREATED_BY,
    creation_date: int | Literal["now"] | None = "now",
    pad: bool = True,
    threads: int = 0,
    follow_symlinks: bool = False,
    progress: ProgressCallback | None = None,
    format: TorrentFormat = "v1",
) -> Metainfo:
    """Hash the file or directory at ``path`` into a torrent; blocking, uses threads.

    ``piece_length``: a power of two in [16 KiB, 128 MiB], or ``None`` for the automatic rule of the
    module docstring.  ``trackers``: tiers of announce URLs (BEP 12; a bare string is a tier of one).
    ``web_seeds``: BEP 19 URLs.  ``private``: BEP 27 flag.  ``name``: the torrent's name (default: the
    file or directory name).  ``creation_date``: seconds since the epoch, ``"now"``, or ``None`` to
    omit it.  ``pad``: BEP 47 pad files between files of a multi-file v1 torrent (v2 and hybrid need
    them).  ``threads``: hashing threads, 0 for one per core.  ``progress(done_bytes, total_bytes)`` is
    called as chunks finish.  ``format``: ``v1``, ``v2`` or ``hybrid`` (see the module docstring).

    A folder holding a single file gives, as libtorrent 2.x does, a multi-file torrent in ``v1`` and
    ``hybrid`` (the file at ``<folder>/<file>``), but in ``v2`` a file tree with one file at its top,
    which BEP 52 readers (libtorrent, and :mod:`torrentgoat.metainfo`) take for a single-file torrent named
    by the file: its data root is the folder itself.

    Raises :class:`~torrentgoat.errors.ConfigError` for bad arguments or nothing to hash,
    :class:`~torrentgoat.errors.StorageError` for unreadable, special or changing files and refused
    symlinks, :class:`~torrentgoat.errors.UnsafePathError` for names that are not safe paths.
    """
    if format not in FORMATS:
        raise ConfigError(f"torrent format must be one of {', '.join(FORMATS)}, got {format!r}")
    if piece_length is not None and (
        piece_length <= 0
        or piece_length & (piece_length - 1)
        or not MIN_PIECE_LENGTH <= piece_length <= MAX_PIECE_LENGTH
    ):
        raise ConfigError(
            f"piece length {piece_length} is not a power of two between {MIN_PIECE_LENGTH} and "
            f"{MAX_PIECE_LENGTH}"
        )
    if threads < 0:
        raise ConfigError(f"threads must be 0 (one per core) or more, got {threads}")
    if format != "v1" and not pad:
        raise ConfigError(
            f"a {format} torrent aligns every file to a piece (BEP 52): pad files cannot be off"
        )
    root = Path(path)
    sources = scan_files(root, follow_symlinks=follow_symlinks)
    if name is None:
        name = _utf8_name(Path(os.path.abspath(root)).name, root)
    check_path_component(name, f"torrent name {name!r}")
    _refuse_case_duplicates(sources)
    total_data = sum(f.length for f in sources)
    if total_data == 0:
        raise ConfigError(f"nothing to share: {os.fsdecode(root)!r} holds no bytes")
    single = len(sources) == 1 and not sources[0].components
    if piece_length is None:
        piece_length = auto_piece_length(total_data)

    v1 = format != "v2"
    v2 = format != "v1"
    segments, entries, specs = _lay_out(sources, piece_length, single=single, pad=pad, v2=v2)
    total = sum(length for _, length in segments)
    pieces, nodes = _hash_stream(segments, total, piece_length, threads, progress, v1=v1, specs=specs)
    info: dict[bytes, BValue] = {b"name": name.encode("utf-8"), b"piece length": piece_length}
    if v1:
        info[b"pieces"] = pieces
        if single:
            info[b"length"] = sources[0].length
            if sources[0].executable:
                info[b"attr"] = b"x"
        else:
            info[b"files"] = entries
    layers: dict[bytes, bytes] = {}
    if v2:
        info[b"meta version"] = 2
        info[b"file tree"] = _file_tree(sources, nodes, piece_length, name if single else None, layers)
    if private:
        info[b"private"] = 1
    parsed = parse_info(bencode.encode(info))
    if parsed.v2 is not None and layers:
        parsed = replace(parsed, v2=parsed.v2.with_piece_layers(layers))
    date: int | None = int(time.time()) if creation_date == "now" else creation_date
    return Metainfo(
        info=parsed,
        announce_tiers=_tiers(trackers),
        web_seeds=tuple(dict.fromkeys(u.strip() for u in web_seeds if u.strip())),
        comment=comment,
        created_by=created_by,
        creation_date=date,
    )


def _pad_entry(size: int) -> dict[bytes, BValue]:
    return {b"attr": b"p", b"length": size, b"path": [b".pad", str(size).encode()]}


def _lay_out(
    sources: list[SourceFile], piece_length: int, *, single: bool, pad: bool, v2: bool
) -> tuple[list[tuple[Path | None, int]], list[BValue], list[_PieceSpec] | None]:
    """The byte stream (segments, ``None`` for pad zeros), the v1 ``files`` entries and, for v2 hashing,
    one :data:`_PieceSpec` per piece.

    v1: a pad *before* each misaligned non-empty file.  v2/hybrid: a pad *after* each misaligned
    non-empty file, the last one included, when there is more than one file (libtorrent 2.x).
    """
    segments: list[tuple[Path | None, int]] = []
    entries: list[BValue] = []
    specs: list[_PieceSpec] | None = [] if v2 else None
    offset = 0
    blocks_per_piece = piece_length // BLOCK_SIZE
    for source in sources:
        gap = -offset % piece_length
        if not v2 and pad and not single and source.length > 0 and gap:
            segments.append((None, gap))
            entries.append(_pad_entry(gap))
            offset += gap
        segments.append((source.source, source.length))
        entry: dict[bytes, BValue] = {
            b"length": source.length,
            b"path": [c.encode("utf-8") for c in source.components],
        }
        if source.executable:
            entry[b"attr"] = b"x"
        entries.append(entry)
        offset += source.length
        if specs is not None and source.length > 0:
            count = -(-source.length // piece_length)
            width = blocks_per_piece if count > 1 else None
            specs.extend((min(piece_length, source.length - i * piece_length), width) for i in range(count))
            gap = -offset % piece_length
            if gap and len(sources) > 1:
                segments.append((None, gap))
                entries.append(_pad_entry(gap))
                offset += gap
    return segments, entries, specs


def _file_tree(
    sources: list[SourceFile],
    nodes: list[bytes],
    piece_length: int,
    single_name: str | None,
    layers: dict[bytes, bytes],
) -> dict[bytes, BValue]:
    """The BEP 52 ``file tree`` from the per-piece merkle nodes; fills ``layers`` (root -> piece layer)."""
    height = (piece_length // BLOCK_SIZE).bit_length() - 1
    tree_files: list[TreeFile] = []
    at = 0
    for source in sources:
        components = (single_name,) if single_name is not None else source.components
        root: bytes | None = None
        if source.length > 0:
            count = -(-source.length // piece_length)
            file_nodes = nodes[at : at + count]
            at += count
            if count == 1:
                root = file_nodes[0]
            else:
                layer = b"".join(file_nodes)
                root = fold(layer, height, 1 << tree_height(count))
                layers[root] = layer
        tree_files.append(
            TreeFile(
                components=tuple(c.encode("utf-8") for c in components),
                length=source.length,
                attr="x" if source.executable else "",
                pieces_root=root,
            )
        )
    return build_file_tree(tree_files)
