"""BitTorrent v2 merkle trees (BEP 52), level L1: pure SHA-256 arithmetic, no I/O.

BEP 52, ``pieces root``: every non-empty file has "a merkle tree with a branching factor of 2,
constructed from 16KiB blocks of the file.  The last block may be shorter than 16KiB.  The remaining leaf
hashes beyond the end of the file required to construct upper layers of the merkle tree are set to
zero."  So:

* a **leaf** is SHA-256 of one 16 KiB block (the last one of a file possibly shorter, never zero-filled);
* the leaf layer is padded with **zero hashes** (32 zero bytes) up to a power of two; the padding node at
  height ``h`` is therefore :func:`pad_hash` ``(h)`` = SHA-256(pad(h-1) + pad(h-1)), pad(0) = 32 zeros;
* the **piece layer** is the layer whose nodes each cover ``piece length`` bytes (height
  ``log2(piece_length / 16 KiB)``); a .torrent's ``piece layers`` hold it for every file larger than one
  piece, without the entries that only cover padding;
* a file of at most one piece has no piece layer: its root is the tree over its own leaves, padded to
  the next power of two -- *not* to a whole piece.

Layers are handled as ``bytes`` of concatenated 32-byte hashes (the form of ``piece layers`` and of the
``hashes`` message), holding only the nodes that cover data; padding nodes are implied.

Heights count up from the leaves (0) as BEP 52's ``base layer`` does; index ``i`` at height ``h`` covers
leaves ``[i * 2**h, (i + 1) * 2**h)``.

Proofs (BEP 52 ``hash request`` / ``hashes``): a run of ``2**k`` nodes at height ``base`` starting at an
index that is a multiple of ``2**k`` determines its subtree root at height ``base + k``; from there one
**uncle** (sibling) hash per layer leads to the root.  ``proof layers`` counts ancestor layers from the
base; the first ``k - 1`` need no uncle, so a reply holds ``max(0, proof_layers - k + 1)`` uncles
(:func:`uncle_count`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import lru_cache

from torrentgoat.errors import VerificationError

__all__ = [
    "BLOCK_SIZE",
    "HASH_SIZE",
    "ZERO_HASH",
    "MerkleTree",
    "block_hashes",
    "fold",
    "hashes_of",
    "layer_nodes",
    "merkle_root",
    "num_blocks",
    "pad_hash",
    "piece_height",
    "piece_layer",
    "piece_root",
    "root_from_piece_layer",
    "root_of_data",
    "split_hashes",
    "tree_height",
    "uncle_count",
    "verify_block",
    "verify_piece_proof",
    "verify_proof",
    "verify_range",
]

BLOCK_SIZE = 16 * 1024
"""Leaf size: BEP 52 builds the tree "from 16KiB blocks of the file"."""

HASH_SIZE = 32
"""SHA-256 digest size."""

ZERO_HASH = bytes(HASH_SIZE)
"""The leaf hash used for padding beyond a file's end (BEP 52: "set to zero")."""

_sha256 = hashlib.sha256


@lru_cache(maxsize=64)
def pad_hash(height: int) -> bytes:
    """Root of a subtree of ``2**height`` zero leaves: the padding node at ``height``."""
    if height < 0:
        raise ValueError(f"height must be >= 0, got {height}")
    node = ZERO_HASH
    for _ in range(height):
        node = _sha256(node + node).digest()
    return node


def num_blocks(length: int) -> int:
    """Leaves of a file of ``length`` bytes (0 for an empty file)."""
    return -(-length // BLOCK_SIZE)


def tree_height(blocks: int) -> int:
    """Height of the tree over ``blocks`` leaves padded to a power of two (0 for one leaf)."""
    if blocks < 1:
        raise ValueError(f"a merkle tree needs at least one leaf, got {blocks}")
    return (blocks - 1).bit_length()


def piece_height(piece_length: int) -> int:
    """Height of the piece layer: ``log2(piece_length / 16 KiB)``; BEP 52 piece lengths are powers of two
    of at least 16 KiB."""
    if piece_length < BLOCK_SIZE or piece_length & (piece_length - 1):
        raise ValueError(f"v2 piece length must be a power of two >= {BLOCK_SIZE}, got {piece_length}")
    return (piece_length // BLOCK_SIZE).bit_length() - 1


def split_hashes(data: bytes | memoryview) -> list[bytes]:
    """Concatenated 32-byte hashes to a list."""
    if len(data) % HASH_SIZE:
        raise ValueError(f"{len(data)} bytes is not a whole number of 32-byte hashes")
    return [bytes(data[i : i + HASH_SIZE]) for i in range(0, len(data), HASH_SIZE)]


def hashes_of(items: Sequence[bytes]) -> bytes:
    """A list of 32-byte hashes to their concatenation."""
    return b"".join(items)


def block_hashes(data: bytes | bytearray | memoryview) -> bytes:
    """Leaf hashes (concatenated) of ``data`` cut into 16 KiB blocks; empty data has none."""
    view = memoryview(data).cast("B") if not isinstance(data, bytes) else data
    return b"".join(_sha256(view[i : i + BLOCK_SIZE]).digest() for i in range(0, len(view), BLOCK_SIZE))


def _up(layer: bytes, height: int) -> bytes:
    """The layer above ``layer`` (nodes at ``height``), padding an odd count with ``pad_hash(height)``."""
    if len(layer) % 64:
        layer += pad_hash(height)
    view = memoryview(layer)
    return b"".join(_sha256(view[i : i + 64]).digest() for i in range(0, len(layer), 64))


def fold(layer: bytes, height: int, width: int) -> bytes:
    """Root of ``layer`` (nodes at ``height``) padded to ``width`` nodes (a power of two >= its count)."""
    count = len(layer) // HASH_SIZE
    if width < 1 or width & (width - 1) or width < count or len(layer) % HASH_SIZE:
        raise ValueError(f"cannot fold {count} hashes into a tree {width} wide")
    if count == 0:
        return pad_hash(height + width.bit_length() - 1)
    while width > 1:
        layer = _up(layer, height)
        height += 1
        width //= 2
    return layer


def merkle_root(layer: bytes, *, height: int = 0, width: int | None = None) -> bytes:
    """Root over ``layer`` (hashes at ``height``), padded to ``width`` nodes (default: next power of two)."""
    count = len(layer) // HASH_SIZE
    if width is None:
        width = 1 << tree_height(max(count, 1))
    return fold(layer, height, width)


def root_of_data(data: bytes | bytearray | memoryview) -> bytes:
    """The ``pieces root`` of a file holding exactly ``data`` (non-empty)."""
    if not len(data):
        raise ValueError("an empty file has no pieces root")
    return merkle_root(block_hashes(data))


def layer_nodes(blocks: int, height: int) -> int:
    """How many nodes at ``height`` cover data of a file of ``blocks`` leaves."""
    return -(-blocks // (1 << height))


def piece_layer(leaves: bytes, piece_length: int) -> bytes:
    """The piece layer (BEP 52 ``piece layers`` value) of a file with these leaf hashes."""
    target = piece_height(piece_length)
    layer, height = leaves, 0
    while height < target:
        layer = _up(layer, height)
        height += 1
    return layer


def root_from_piece_layer(layer: bytes, blocks: int, piece_length: int) -> bytes:
    """The root implied by a file's piece layer (``blocks`` leaves); raises ``ValueError`` on a bad size."""
    height = piece_height(piece_length)
    expected = layer_nodes(blocks, height)
    if len(layer) % HASH_SIZE:
        raise ValueError(f"piece layer of {len(layer)} bytes is not a whole number of 32-byte hashes")
    if len(layer) != expected * HASH_SIZE:
        raise ValueError(f"piece layer holds {len(layer) // HASH_SIZE} hashes, the file needs {expected}")
    total = tree_height(blocks)
    if total <= height:
        raise ValueError("a file of at most one piece has no piece layer")
    return fold(layer, height, 1 << (total - height))


def piece_root(data: bytes | bytearray | memoryview, blocks_per_piece: int | None) -> bytes:
    """Root of the subtree over one piece's file bytes.

    ``blocks_per_piece`` is the subtree's width for a file larger than a piece (the piece layer entry);
    ``None`` for a file of at most one piece, whose root is its ``pieces root`` (width: the next power of
    two of its own blocks).
    """
    leaves = block_hashes(data)
    count = len(leaves) // HASH_SIZE
    width = blocks_per_piece if blocks_per_piece is not None else 1 << tree_height(max(count, 1))
    return fold(leaves, 0, width)


def uncle_count(count: int, proof_layers: int) -> int:
    """Uncle hashes in a ``hashes`` reply for ``count`` base hashes and ``proof_layers`` (BEP 52: "the first
    log2(length)-1 proof layers are omitted")."""
    return max(0, proof_layers - (count.bit_length() - 1) + 1)


def _pair(node: bytes, sibling: bytes, index: int) -> bytes:
    return _sha256(sibling + node if index & 1 else node + sibling).digest()


def verify_proof(
    root: bytes, node: bytes, *, height: int, index: int, uncles: Sequence[bytes], total_height: int
) -> bool:
    """Whether ``node`` at (``height``, ``index``) leads to ``root`` through ``uncles`` (nearest first)."""
    if height + len(uncles) != total_height or not 0 <= index < 1 << (total_height - height):
        return False
    for uncle in uncles:
        node = _pair(node, uncle, index)
        index >>= 1
    return node == root


def verify_block(
    root: bytes, block: bytes | bytearray | memoryview, *, index: int, blocks: int, uncles: Sequence[bytes]
) -> bool:
    """Whether 16 KiB block ``index`` of a file of ``blocks`` leaves is ``block``, given the uncle hashes
    from its sibling leaf up to the root (what a ``hashes`` reply at base layer 0 carries)."""
    if len(block) > BLOCK_SIZE or not len(block) or not 0 <= index < blocks:
        return False
    return verify_proof(
        root, _sha256(block).digest(), height=0, index=index, uncles=uncles, total_height=tree_height(blocks)
    )


def verify_piece_proof(
    root: bytes,
    data: bytes | bytearray | memoryview,
    *,
    piece: int,
    piece_length: int,
    blocks: int,
    uncles: Sequence[bytes],
) -> bool:
    """Whether ``data`` (the file bytes of piece ``piece`` of a file of ``blocks`` leaves) leads to the
    file's ``root`` through ``uncles`` from the piece-layer node's sibling up."""
    level = piece_height(piece_length)
    height = tree_height(blocks)
    if height <= level:
        return piece == 0 and uncles == [] and piece_root(data, None) == root
    node = piece_root(data, piece_length // BLOCK_SIZE)
    return verify_proof(root, node, height=level, index=piece, uncles=uncles, total_height=height)


def verify_range(
    root: bytes,
    *,
    total_height: int,
    base: int,
    index: int,
    hashes: bytes,
    uncles: bytes,
) -> bool:
    """Whether ``hashes`` (a power-of-two run at height ``base`` from ``index``) and ``uncles`` prove
    against ``root`` of a tree ``total_height`` high (BEP 52 ``hashes`` message)."""
    count = len(hashes) // HASH_SIZE
    if count < 1 or count & (count - 1) or len(hashes) % HASH_SIZE or len(uncles) % HASH_SIZE:
        return False
    if index % count or base < 0:
        return False
    k = count.bit_length() - 1
    if base + k > total_height:
        return False
    subtree = fold(hashes, base, count)
    return verify_proof(
        root,
        subtree,
        height=base + k,
        index=index >> k,
        uncles=split_hashes(uncles),
        total_height=total_height,
    )


class MerkleTree:
    """One file's merkle tree, complete from some height up; optionally leaves of some pieces.

    Built from all leaf hashes (:meth:`from_leaves`, the creator's or a seed's view) or from the root and
    the piece layer (:meth:`from_piece_layer`, what a .torrent or a magnet download gives); in the
    second case the leaves of a piece can be added once that piece's data has been verified
    (:meth:`add_piece_leaves`), so that block-level requests about it can be answered.
    """

    __slots__ = (
        "_layers",
        "_piece_leaves",
        "base",
        "blocks",
        "height",
        "piece_length",
        "piece_level",
        "root",
    )

    def __init__(self, *, root: bytes, blocks: int, piece_length: int, layers: dict[int, bytes]) -> None:
        self.root = root
        self.blocks = blocks
        self.piece_length = piece_length
        self.height = tree_height(blocks)
        self.piece_level = min(piece_height(piece_length), self.height)
        self._layers = layers
        self.base = min(layers) if layers else self.height
        self._piece_leaves: dict[int, bytes] = {}

    @classmethod
    def from_leaves(cls, leaves: bytes, piece_length: int) -> MerkleTree:
        """Every layer from the leaves up (``leaves``: concatenated leaf hashes of the whole file)."""
        blocks = len(leaves) // HASH_SIZE
        height = tree_height(blocks)
        layers = {0: leaves}
        layer = leaves
        for h in range(height):
            layer = _up(layer, h)
            layers[h + 1] = layer
        return cls(root=layer, blocks=blocks, piece_length=piece_length, layers=layers)

    @classmethod
    def from_piece_layer(cls, root: bytes, blocks: int, piece_length: int, layer: bytes | None) -> MerkleTree:
        """The tree above the piece layer; ``layer`` ``None`` for a file of at most one piece.

        Raises :class:`~torrentgoat.errors.VerificationError` when the layer does not hash to ``root``.
        """
        height = tree_height(blocks)
        level = piece_height(piece_length)
        if height <= level:
            return cls(root=root, blocks=blocks, piece_length=piece_length, layers={height: root})
        if layer is None:
            raise VerificationError("a file larger than one piece needs its piece layer")
        try:
            computed = root_from_piece_layer(layer, blocks, piece_length)
        except ValueError as exc:
            raise VerificationError(f"piece layer: {exc}") from None
        if computed != root:
            raise VerificationError("piece layer does not hash to the file's pieces root")
        layers = {level: layer}
        h = level
        while h < height:
            layer = _up(layer, h)
            h += 1
            layers[h] = layer
        return cls(root=root, blocks=blocks, piece_length=piece_length, layers=layers)

    @property
    def num_pieces(self) -> int:
        return layer_nodes(self.blocks, piece_height(self.piece_length))

    def layer(self, height: int) -> bytes | None:
        """The data-covering nodes at ``height`` when the whole layer is known."""
        return self._layers.get(height)

    def add_piece_leaves(self, piece: int, leaves: bytes) -> bool:
        """Record the leaves of ``piece`` (index inside the file) after checking them against the tree.

        Returns whether they were accepted: they must hash to the piece's node (or the root for a file of
        one piece) and cover exactly the piece's blocks.
        """
        level = self.piece_level
        per_piece = 1 << level
        first = piece * per_piece
        expected = min(per_piece, self.blocks - first)
        if not 0 <= piece < self.num_pieces or len(leaves) != expected * HASH_SIZE:
            return False
        if fold(leaves, 0, per_piece) != self.node(level, piece):
            return False
        if self.base > 0:
            self._piece_leaves[piece] = leaves
        return True

    def node(self, height: int, index: int) -> bytes | None:
        """The node at (``height``, ``index``): known, padding, or ``None`` when not known."""
        if height > self.height or index < 0 or index >= 1 << (self.height - height):
            return None
        if index >= layer_nodes(self.blocks, height):
            return pad_hash(height)
        layer = self._layers.get(height)
        if layer is not None:
            return layer[index * HASH_SIZE : (index + 1) * HASH_SIZE]
        if height >= self.base:
            return None  # pragma: no cover - every layer from base up is kept
        level = self.piece_level
        piece = index >> (level - height)
        leaves = self._piece_leaves.get(piece)
        if leaves is None:
            return None
        # below the piece layer: rebuild that piece's small subtree from its leaves
        sub = leaves
        for h in range(height):
            sub = _up(sub, h)
        offset = index - (piece << (level - height))
        if offset * HASH_SIZE >= len(sub):
            return pad_hash(height)
        return sub[offset * HASH_SIZE : (offset + 1) * HASH_SIZE]

    def get_hashes(self, base: int, index: int, count: int, proof_layers: int) -> bytes | None:
        """The payload of a ``hashes`` reply: ``count`` nodes at ``base`` from ``index``, then the uncles
        (BEP 52); ``None`` when some node is not known here (answer with ``hash reject``).

        The request must be valid (see :func:`torrentgoat.wire.hashes.check_request`)."""
        parts: list[bytes] = []
        for i in range(index, index + count):
            node = self.node(base, i)
            if node is None:
                return None
            parts.append(node)
        k = max(count.bit_length() - 1, 0)
        wanted = uncle_count(count, proof_layers)
        height, at = base + k, index >> k
        for _ in range(wanted):
            sibling = self.node(height, at ^ 1)
            if sibling is None:
                return None
            parts.append(sibling)
            height += 1
            at >>= 1
        return b"".join(parts)
