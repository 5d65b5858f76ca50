"""The BitTorrent v2 parts of metainfo (BEP 52), level L1: the file tree, piece layers, per-piece hashes.

:mod:`torrentgoat.metainfo` parses a whole ``info`` dictionary and calls in here for what is new in
``meta version`` 2; this module knows nothing of v1 and never touches the file system.

* :func:`walk_file_tree` -- the ``file tree`` (nested dictionaries, a zero-length key ``''`` marking a
  file) to a flat list of :class:`TreeFile` in tree order, which is the order of the piece space (BEP 52:
  "each non-empty file is aligned to a piece boundary and occurs in the same order as in the file tree").
  Keys must be sorted as raw bytes (BEP 3 bencoding; libtorrent refuses an unsorted v2 tree too): an
  unsorted tree would have two readings of its order, so it is refused.
* :func:`build_file_tree` -- the reverse, for torrent creation.
* :class:`InfoV2` -- what a v2 or hybrid ``info`` adds: the SHA-256 info-hash, every non-empty file's
  ``pieces root`` and place in the global piece index space, and the validated ``piece layers``
  (outside ``info`` in a .torrent; fetched from peers for a magnet).  :meth:`InfoV2.piece_check` says
  what a piece must hash to.
* :func:`file_entries` -- the tree's files laid out in the piece space: each non-empty file starts a
  piece, so an implied pad file (``attr`` ``p``, path ``<name>/.pad/<size>``) follows every file that
  does not end on a piece boundary, the last one included (libtorrent's layout, so piece sizes agree on
  the wire); :func:`match_hybrid` checks a hybrid's v1 list against it.
* :func:`parse_piece_layers` -- the ``piece layers`` dictionary, checked: each value's size, and that it
  hashes to its file's root (BEP 52: "A torrent is not valid if ... the contained hashes do not match the
  merkle roots or are not from the correct layer").  A file without its layer is accepted (as libtorrent
  does; a magnet has none) and reported by :meth:`InfoV2.missing_piece_layers`.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace

from torrentgoat.bencode import BValue
from torrentgoat.errors import HybridMismatchError, MetainfoError, UnsupportedV2Error
from torrentgoat.infohashes import InfoHashV2
from torrentgoat.merkle import (
    BLOCK_SIZE,
    HASH_SIZE,
    ZERO_HASH,
    MerkleTree,
    num_blocks,
    root_from_piece_layer,
)
from torrentgoat.torrentfiles import PAD_DIR, FileEntry, check_path_component, describe, symlink_target

__all__ = [
    "MAX_TREE_DEPTH",
    "InfoV2",
    "PieceCheck",
    "TreeFile",
    "V2File",
    "build_file_tree",
    "file_entries",
    "match_hybrid",
    "parse_piece_layers",
    "walk_file_tree",
]

MAX_TREE_DEPTH = 48
"""Deepest directory nesting accepted in a ``file tree`` (the bencoding depth cap bounds it anyway)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TreeFile:
    """One file of a ``file tree``, as found: raw path keys from the tree's root and its properties."""

    components: tuple[bytes, ...]
    length: int
    """0 for a symlink (BEP 47: "The length of a symlink is always zero")."""
    attr: str = ""
    pieces_root: bytes | None = None
    """32 bytes for a non-empty regular file, else ``None``."""
    symlink: tuple[bytes, ...] | None = None
    """BEP 47 ``symlink path`` (raw components, relative to the torrent root) for ``attr`` ``l``."""


def _where(components: Sequence[bytes]) -> str:
    return "/".join(c.decode("utf-8", "replace") for c in components) or "(root)"


def _leaf(node: dict[bytes, BValue], components: tuple[bytes, ...]) -> TreeFile:
    where = f"file tree {_where(components)!r}"
    props = node[b""]
    if not isinstance(props, dict):
        raise MetainfoError(f"{where}: file properties ('') must be a dictionary")
    attr_value = props.get(b"attr", b"")
    if not isinstance(attr_value, bytes):
        raise MetainfoError(f"{where}: 'attr' must be a byte string")
    attr = attr_value.decode("ascii", "replace")
    if "p" in attr:
        # v2 pads are implied by piece alignment; an explicit one would shift the piece space
        raise MetainfoError(f"{where}: a v2 file tree must not hold pad files (attr 'p')")
    if "l" in attr:
        target = props.get(b"symlink path")
        symlink: tuple[bytes, ...] | None = None
        if isinstance(target, list) and all(isinstance(c, bytes) for c in target):
            symlink = tuple(c for c in target if isinstance(c, bytes))
        return TreeFile(components=components, length=0, attr=attr, symlink=symlink)
    length = props.get(b"length")
    if not isinstance(length, int) or length < 0:
        raise MetainfoError(f"{where}: 'length' missing, not an integer or negative")
    root: bytes | None = None
    if length > 0:
        value = props.get(b"pieces root")
        if not isinstance(value, bytes) or len(value) != HASH_SIZE:
            raise MetainfoError(f"{where}: a non-empty file needs a 32-byte 'pieces root'")
        if value == ZERO_HASH:
            raise MetainfoError(f"{where}: 'pieces root' is all zeros")
        root = value
    return TreeFile(components=components, length=length, attr=attr, pieces_root=root)


def walk_file_tree(tree: BValue, *, max_files: int) -> list[TreeFile]:
    """Flatten a ``file tree`` in its order (see the module docstring); structural errors raise
    :class:`~torrentgoat.errors.MetainfoError`.  Empty directories contribute nothing."""
    if not isinstance(tree, dict):
        raise MetainfoError("info 'file tree' must be a dictionary")
    if b"" in tree:
        raise MetainfoError("info 'file tree': the root itself must not be a file")
    files: list[TreeFile] = []
    # iterative depth-first walk: (node, its path, iterator over its keys)
    stack: list[tuple[tuple[bytes, ...], Iterator[tuple[bytes, BValue]]]] = [((), iter(tree.items()))]
    _check_sorted(tree, ())
    while stack:
        path, items = stack[-1]
        item = next(items, None)
        if item is None:
            stack.pop()
            continue
        key, child = item
        components = (*path, key)
        if not key:
            raise MetainfoError(f"file tree {_where(path)!r}: an empty name next to other entries")
        if not isinstance(child, dict):
            raise MetainfoError(f"file tree {_where(components)!r} must be a dictionary")
        if b"" in child:
            if len(child) != 1:
                raise MetainfoError(f"file tree {_where(components)!r}: a file must have no siblings of ''")
            files.append(_leaf(child, components))
            if len(files) > max_files:
                raise MetainfoError(f"info 'file tree' holds more than {max_files} files")
            continue
        if len(components) >= MAX_TREE_DEPTH:
            raise MetainfoError(f"file tree {_where(components)!r} is nested deeper than {MAX_TREE_DEPTH}")
        _check_sorted(child, components)
        stack.append((components, iter(child.items())))
    return files


def _check_sorted(node: dict[bytes, BValue], path: tuple[bytes, ...]) -> None:
    keys = list(node)
    if keys != sorted(keys):
        raise MetainfoError(
            f"file tree {_where(path)!r}: keys are not in sorted order (the bencoding BEP 52 hashes must be"
            " canonical; the file order would be ambiguous)"
        )


def build_file_tree(files: Iterable[TreeFile]) -> dict[bytes, BValue]:
    """A ``file tree`` value holding ``files`` (components from the tree's root), for torrent creation."""
    tree: dict[bytes, BValue] = {}
    for entry in files:
        node = tree
        for component in entry.components[:-1]:
            child = node.setdefault(component, {})
            assert isinstance(child, dict)
            node = child
        props: dict[bytes, BValue] = {}
        if entry.attr:
            props[b"attr"] = entry.attr.encode("ascii")
        props[b"length"] = entry.length
        if entry.pieces_root is not None:
            props[b"pieces root"] = entry.pieces_root
        if entry.symlink is not None:
            props[b"symlink path"] = list(entry.symlink)
        node[entry.components[-1]] = {b"": props}
    return tree


def file_entries(
    tree_files: Sequence[TreeFile], name: str, piece_length: int, *, single: bool, max_pieces: int
) -> tuple[list[FileEntry], list[V2File]]:
    """Lay the tree's files out in the piece index space (see the module docstring).

    Paths are checked with :func:`~torrentgoat.torrentfiles.check_path_component`; a single-file torrent's
    path is the file's own name, a multi-file one's is ``(name, *tree path)`` (as libtorrent roots them).
    """
    entries: list[FileEntry] = []
    v2_files: list[V2File] = []
    offset = 0
    for leaf in tree_files:
        try:
            components = tuple(c.decode("utf-8") for c in leaf.components)
        except UnicodeDecodeError:
            shown_raw = b"/".join(leaf.components)[:120]
            raise MetainfoError(f"file tree path {shown_raw!r} is not valid UTF-8") from None
        shown = "/".join(components)
        for component in components:
            check_path_component(component, f"file path {shown!r}")
        prefix = () if single else (name,)
        symlink = symlink_target(list(leaf.symlink), prefix) if leaf.symlink else None
        entries.append(
            FileEntry(
                path=(*prefix, *components),
                length=leaf.length,
                offset=offset,
                attr=leaf.attr,
                symlink=symlink,
            )
        )
        if leaf.length == 0:
            continue
        assert leaf.pieces_root is not None
        v2_files.append(
            V2File(
                index=len(entries) - 1,
                root=leaf.pieces_root,
                length=leaf.length,
                first_piece=offset // piece_length,
                num_pieces=-(-leaf.length // piece_length),
            )
        )
        offset += leaf.length
        gap = -offset % piece_length
        if gap:  # BEP 52: the next file starts a piece
            entries.append(FileEntry(path=(name, PAD_DIR, str(gap)), length=gap, offset=offset, attr="p"))
            offset += gap
        if offset // piece_length > max_pieces:
            raise MetainfoError(f"torrent has more than {max_pieces} pieces")
    return entries, v2_files


def _without_tail_pad(entries: list[FileEntry]) -> list[FileEntry]:
    """Drop the pad after the last non-empty file (hybrids from libtorrent 2.0.0-2.0.7 have none)."""
    for i in range(len(entries) - 1, -1, -1):
        if entries[i].length == 0:
            continue
        if not entries[i].pad:
            return entries
        end = entries[i].offset
        return entries[:i] + [replace(e, offset=end) for e in entries[i + 1 :]]
    return entries


def match_hybrid(v1: list[FileEntry], v2: list[FileEntry]) -> list[FileEntry]:
    """BEP 52 "Upgrade Path": both halves must give the same files, sizes and offsets ("file names, order,
    piece alignment"), pads and empty files aside; returns the file list to use (the v2 one, without its
    final pad when the v1 half has none)."""
    if len(v2) == len(v1) + 1:
        v2 = _without_tail_pad(v2)
    if len(v1) != len(v2):
        raise HybridMismatchError(
            f"hybrid torrent: the v1 half lists {len(v1)} files (pads included) but the v2 file tree, with"
            f" its piece alignment, gives {len(v2)}"
        )
    for index, (one, two) in enumerate(zip(v1, v2, strict=True)):
        relevant = not one.pad and one.length > 0
        if relevant != (not two.pad and two.length > 0) or (
            relevant and (one.path != two.path or one.length != two.length or one.offset != two.offset)
        ):
            raise HybridMismatchError(
                f"hybrid torrent: the v1 and v2 halves disagree at file {index}: v1 has {describe(one)},"
                f" v2 has {describe(two)}"
            )
    if v1[-1].end != v2[-1].end:
        raise HybridMismatchError(
            f"hybrid torrent: the v1 half holds {v1[-1].end} bytes, the v2 half {v2[-1].end} (pads included)"
        )
    return v2


@dataclass(frozen=True, slots=True, kw_only=True)
class V2File:
    """A non-empty regular file of a v2 torrent, placed in the piece index space."""

    index: int
    """Index into :attr:`torrentgoat.metainfo.InfoDict.files` (pad files counted)."""
    root: bytes
    """BEP 52 ``pieces root``."""
    length: int
    first_piece: int
    """Global index of the file's first piece (every file starts a piece)."""
    num_pieces: int

    @property
    def blocks(self) -> int:
        return num_blocks(self.length)

    @property
    def end_piece(self) -> int:
        return self.first_piece + self.num_pieces


@dataclass(frozen=True, slots=True, kw_only=True)
class PieceCheck:
    """What the file bytes of one piece must hash to (BEP 52).

    The first ``data_length`` bytes of the piece are file data (the rest, up to the piece's size, is pad);
    their 16 KiB leaves, padded with zero hashes to ``width`` leaves (``None``: the next power of two of
    their own count, for a file of one piece), must fold to ``expected``.
    """

    expected: bytes
    data_length: int
    width: int | None
    file: V2File


@dataclass(frozen=True, slots=True, kw_only=True)
class InfoV2:
    """The v2 part of an ``info`` dictionary (and the piece layers that go with it)."""

    info_hash: InfoHashV2
    piece_length: int
    num_pieces: int
    """Pieces of the whole torrent (v2 alignment and pads included)."""
    files: tuple[V2File, ...]
    piece_layers: Mapping[bytes, bytes] = field(default_factory=dict, repr=False, hash=False)
    """``pieces root`` -> that file's piece layer, for files larger than one piece; validated."""
    _firsts: tuple[int, ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_firsts", tuple(f.first_piece for f in self.files))

    @property
    def blocks_per_piece(self) -> int:
        return self.piece_length // BLOCK_SIZE

    def file_at_piece(self, piece: int) -> V2File:
        """The file whose data piece ``piece`` holds (every piece holds data of exactly one file)."""
        k = bisect.bisect_right(self._firsts, piece) - 1
        if k < 0 or not 0 <= piece < self.num_pieces or piece >= self.files[k].end_piece:
            raise IndexError(f"piece {piece} holds no file data (out of range 0..{self.num_pieces - 1})")
        return self.files[k]

    def needs_layer(self, file: V2File) -> bool:
        """Whether ``file`` spans more than one piece, so that its pieces need its piece layer."""
        return file.length > self.piece_length

    def missing_piece_layers(self) -> tuple[V2File, ...]:
        """Files larger than one piece whose piece layer is not known (yet)."""
        return tuple(f for f in self.files if self.needs_layer(f) and f.root not in self.piece_layers)

    @property
    def has_piece_layers(self) -> bool:
        """Every piece can be verified: no piece layer is missing."""
        return not self.missing_piece_layers()

    def piece_check(self, piece: int) -> PieceCheck:
        """What piece ``piece`` must hash to; raises :class:`~torrentgoat.errors.UnsupportedV2Error` when
        its file's piece layer is missing (it has to come from peers first: BEP 52 hash requests)."""
        file = self.file_at_piece(piece)
        local = piece - file.first_piece
        data_length = min(self.piece_length, file.length - local * self.piece_length)
        if not self.needs_layer(file):
            return PieceCheck(expected=file.root, data_length=data_length, width=None, file=file)
        layer = self.piece_layers.get(file.root)
        if layer is None:
            raise UnsupportedV2Error(
                f"v2 torrent: the piece layer of file {file.index} is not known, so piece {piece} cannot be"
                " verified (it comes in the .torrent's 'piece layers', or from peers by BEP 52 hash"
                " requests)"
            )
        return PieceCheck(
            expected=layer[local * HASH_SIZE : (local + 1) * HASH_SIZE],
            data_length=data_length,
            width=self.blocks_per_piece,
            file=file,
        )

    def with_piece_layers(self, layers: Mapping[bytes, BValue]) -> InfoV2:
        """A copy knowing ``layers`` too (merged with those known); each is validated first."""
        checked = _check_layers(layers, self.files, self.piece_length, strict_keys=False)
        return replace(self, piece_layers={**self.piece_layers, **checked})

    def tree(self, file: V2File) -> MerkleTree:
        """The merkle tree of ``file`` above its piece layer (raises if that layer is missing)."""
        layer = self.piece_layers.get(file.root) if self.needs_layer(file) else None
        if self.needs_layer(file) and layer is None:
            raise UnsupportedV2Error(f"v2 torrent: the piece layer of file {file.index} is not known")
        return MerkleTree.from_piece_layer(file.root, file.blocks, self.piece_length, layer)

    def file_for_root(self, root: bytes) -> V2File | None:
        for f in self.files:
            if f.root == root:
                return f
        return None


def _check_layers(
    layers: Mapping[bytes, BValue], files: Sequence[V2File], piece_length: int, *, strict_keys: bool
) -> dict[bytes, bytes]:
    by_root = {f.root: f for f in files if f.length > piece_length}
    small = {f.root for f in files if f.length <= piece_length}
    result: dict[bytes, bytes] = {}
    for root, layer in layers.items():
        shown = root.hex() if isinstance(root, bytes) else repr(root)
        if not isinstance(root, bytes) or len(root) != HASH_SIZE:
            raise MetainfoError(f"'piece layers': key {shown[:80]} is not a 32-byte pieces root")
        if not isinstance(layer, bytes):
            raise MetainfoError(f"'piece layers' {shown}: value must be a byte string")
        file = by_root.get(root)
        if file is None:
            if not strict_keys or root in small:
                continue  # a one-piece file needs no layer; harmless
            raise MetainfoError(f"'piece layers' {shown}: no file larger than one piece has this root")
        try:
            computed = root_from_piece_layer(layer, file.blocks, piece_length)
        except ValueError as exc:
            raise MetainfoError(f"'piece layers' {shown} (file {file.index}): {exc}") from None
        if computed != root:
            raise MetainfoError(
                f"'piece layers' {shown} (file {file.index}): the layer does not hash to the pieces root"
            )
        result[root] = layer
    return result


def parse_piece_layers(value: BValue, info: InfoV2) -> dict[bytes, bytes]:
    """The top-level ``piece layers`` of a .torrent, validated against ``info`` (see the module doc)."""
    if not isinstance(value, dict):
        raise MetainfoError("'piece layers' must be a dictionary")
    return _check_layers(value, info.files, info.piece_length, strict_keys=True)
