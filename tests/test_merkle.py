"""BEP 52 merkle trees: padding, roots, piece layers, proofs; known shapes from libtorrent's test_merkle."""

from __future__ import annotations

import hashlib
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from torrentgoat.errors import VerificationError
from torrentgoat.merkle import (
    BLOCK_SIZE,
    ZERO_HASH,
    MerkleTree,
    block_hashes,
    fold,
    merkle_root,
    pad_hash,
    piece_height,
    piece_layer,
    piece_root,
    root_from_piece_layer,
    root_of_data,
    split_hashes,
    tree_height,
    uncle_count,
    verify_block,
    verify_piece_proof,
    verify_proof,
    verify_range,
)


def H(a: bytes, b: bytes) -> bytes:
    return hashlib.sha256(a + b).digest()


def leaf(tag: int) -> bytes:
    return hashlib.sha256(bytes([tag])).digest()


a, b, c, d, e, f, g, h = (leaf(i) for i in range(8))
o = ZERO_HASH


def test_pad_hash_is_the_root_of_zero_leaves() -> None:
    # libtorrent's merkle_pad(blocks, pieces): zeros at the leaves, H(0,0) one layer up, ...
    assert pad_hash(0) == o
    assert pad_hash(1) == H(o, o)
    assert pad_hash(2) == H(H(o, o), H(o, o))
    assert pad_hash(5) == fold(o * 32, 0, 32)


def test_roots_of_known_shapes() -> None:
    ab, cd, ef, gh = H(a, b), H(c, d), H(e, f), H(g, h)
    ad, eh = H(ab, cd), H(ef, gh)
    assert merkle_root(a + b + c + d + e + f + g + h) == H(ad, eh)
    # not a power of two: padded with zero leaves (libtorrent test_merkle "merkle_root")
    assert merkle_root(a + b + c + d + e + f) == H(ad, H(ef, H(o, o)))
    assert merkle_root(a + b) == ab
    assert merkle_root(a) == a
    # an explicit, wider tree ("unaligned leaf layer")
    assert merkle_root(a + b + c, width=8) == H(H(ab, H(c, o)), H(H(o, o), H(o, o)))


def test_leaves_are_sha256_of_16k_blocks_and_the_last_is_not_zero_filled() -> None:
    data = bytes(range(256)) * 100  # 25600 bytes: one full block, one of 9216 bytes
    leaves = split_hashes(block_hashes(data))
    assert leaves == [hashlib.sha256(data[:BLOCK_SIZE]).digest(), hashlib.sha256(data[BLOCK_SIZE:]).digest()]
    assert root_of_data(data) == H(leaves[0], leaves[1])
    # one block: the root is the leaf itself
    assert root_of_data(b"x") == hashlib.sha256(b"x").digest()
    with pytest.raises(ValueError):
        root_of_data(b"")


def test_libtorrent_known_roots() -> None:
    """libtorrent's test torrents "test64K" and "test1MB" are files of zeros with these pieces roots
    (test_torrent_info.cpp)."""
    assert (
        root_of_data(bytes(65536)).hex() == "60aae9c7b428f87e0713e88229e18f0adf12cd7b22a0dd8a92bb2485eb7af242"
    )
    assert (
        root_of_data(bytes(1 << 20)).hex()
        == "515ea9181744b817744ded9d2e8e9dc6a8450c0b0c52e24b5077f302ffbd9008"
    )


def test_piece_height_and_tree_height() -> None:
    assert piece_height(16384) == 0
    assert piece_height(4 * 1024 * 1024) == 8
    for bad in (8192, 3 * 16384, 0):
        with pytest.raises(ValueError):
            piece_height(bad)
    assert [tree_height(n) for n in (1, 2, 3, 4, 5, 8, 9)] == [0, 1, 2, 2, 3, 3, 4]


@settings(max_examples=60, deadline=None)
@given(
    blocks=st.integers(min_value=1, max_value=300),
    tail=st.integers(min_value=1, max_value=BLOCK_SIZE),
    pexp=st.integers(min_value=0, max_value=5),
)
def test_piece_layer_hashes_to_the_root(blocks: int, tail: int, pexp: int) -> None:
    """A file's piece layer, padded with pad hashes, folds to its pieces root (BEP 52 piece layers)."""
    rng = random.Random(blocks * 7 + tail)
    length = (blocks - 1) * BLOCK_SIZE + tail
    data = rng.randbytes(length)
    piece_length = BLOCK_SIZE << pexp
    leaves = block_hashes(data)
    root = root_of_data(data)
    assert root == merkle_root(leaves)
    if length <= piece_length:
        assert piece_root(data, None) == root
        return
    layer = piece_layer(leaves, piece_length)
    assert len(layer) == 32 * -(-length // piece_length)
    assert root_from_piece_layer(layer, blocks, piece_length) == root
    # each piece-layer entry is the root of that piece's bytes in a piece-wide subtree
    for i, entry in enumerate(split_hashes(layer)):
        chunk = data[i * piece_length : (i + 1) * piece_length]
        assert piece_root(chunk, piece_length // BLOCK_SIZE) == entry
    tampered = bytearray(layer)
    tampered[0] ^= 1
    assert root_from_piece_layer(bytes(tampered), blocks, piece_length) != root
    with pytest.raises(ValueError):
        root_from_piece_layer(layer[:-32], blocks, piece_length)


@settings(max_examples=80, deadline=None)
@given(
    blocks=st.integers(min_value=2, max_value=200),
    data=st.data(),
)
def test_hashes_replies_prove_against_the_root(blocks: int, data: st.DataObject) -> None:
    """Any valid (base, index, count, proof layers) reply verifies; any flipped bit does not."""
    leaves = b"".join(hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(blocks))
    tree = MerkleTree.from_leaves(leaves, BLOCK_SIZE)
    height = tree.height
    base = data.draw(st.integers(min_value=0, max_value=height - 1), label="base")
    level_size = 1 << (height - base)
    k = data.draw(st.integers(min_value=1, max_value=height - base), label="log2 count")
    count = 1 << k
    index = data.draw(st.integers(min_value=0, max_value=level_size // count - 1), label="chunk") * count
    proof_layers = height - base - 1  # everything up to the root
    payload = tree.get_hashes(base, index, count, proof_layers)
    assert payload is not None
    n_uncles = uncle_count(count, proof_layers)
    assert len(payload) == 32 * (count + n_uncles)
    assert base + k + n_uncles == height
    hashes, uncles = payload[: 32 * count], payload[32 * count :]
    assert verify_range(tree.root, total_height=height, base=base, index=index, hashes=hashes, uncles=uncles)
    flip = data.draw(st.integers(min_value=0, max_value=len(payload) * 8 - 1), label="bit")
    bad = bytearray(payload)
    bad[flip // 8] ^= 1 << (flip % 8)
    bad_hashes, bad_uncles = bytes(bad[: 32 * count]), bytes(bad[32 * count :])
    assert not verify_range(
        tree.root, total_height=height, base=base, index=index, hashes=bad_hashes, uncles=bad_uncles
    )


def test_a_single_node_proof_and_wrong_positions() -> None:
    leaves = a + b + c + d + e
    tree = MerkleTree.from_leaves(leaves, BLOCK_SIZE)
    assert tree.height == 3
    # leaf c (index 2): uncles d, ab, H(e-pad)
    uncles = [d, H(a, b), H(H(e, o), H(o, o))]
    assert verify_proof(tree.root, c, height=0, index=2, uncles=uncles, total_height=3)
    assert not verify_proof(tree.root, c, height=0, index=3, uncles=uncles, total_height=3)
    assert not verify_proof(tree.root, c, height=0, index=2, uncles=uncles[:2], total_height=3)
    assert not verify_proof(tree.root, c, height=0, index=9, uncles=uncles, total_height=3)
    # a count of 1 (libtorrent asks for it at a file's last piece): proof_layers + 1 uncles, from the node's
    # own sibling up
    payload = tree.get_hashes(0, 2, 1, 2)
    assert payload == c + b"".join(uncles)


def test_tree_from_piece_layer_serves_like_the_full_tree_once_leaves_are_added() -> None:
    rng = random.Random(5)
    piece_length = 4 * BLOCK_SIZE
    data = rng.randbytes(11 * BLOCK_SIZE + 100)  # 12 blocks, 3 pieces
    leaves = block_hashes(data)
    full = MerkleTree.from_leaves(leaves, piece_length)
    layer = piece_layer(leaves, piece_length)
    partial = MerkleTree.from_piece_layer(full.root, 12, piece_length, layer)
    # piece-layer requests: answerable at once
    assert partial.get_hashes(2, 0, 4, 1) == full.get_hashes(2, 0, 4, 1)
    # leaf requests: only after the piece's leaves are known
    assert partial.get_hashes(0, 4, 4, 3) is None
    piece1 = leaves[4 * 32 : 8 * 32]
    assert not partial.add_piece_leaves(1, leaves[: 4 * 32])  # piece 0's leaves are not piece 1's
    assert partial.add_piece_leaves(1, piece1)
    assert partial.get_hashes(0, 4, 4, 3) == full.get_hashes(0, 4, 4, 3)
    assert partial.get_hashes(0, 6, 2, 3) == full.get_hashes(0, 6, 2, 3)
    # the last piece is short (4 blocks of which 4th is partial); leaves beyond the file are pad
    assert partial.add_piece_leaves(2, leaves[8 * 32 :])
    assert partial.get_hashes(0, 8, 8, 3) == full.get_hashes(0, 8, 8, 3)
    with pytest.raises(VerificationError):
        MerkleTree.from_piece_layer(b"\x01" * 32, 12, piece_length, layer)


def test_single_piece_file_tree() -> None:
    data = b"q" * (3 * BLOCK_SIZE)
    root = root_of_data(data)
    tree = MerkleTree.from_piece_layer(root, 3, 4 * BLOCK_SIZE, None)
    assert tree.node(2, 0) == root
    assert tree.add_piece_leaves(0, block_hashes(data))
    assert tree.get_hashes(0, 0, 4, 1) == MerkleTree.from_leaves(
        block_hashes(data), 4 * BLOCK_SIZE
    ).get_hashes(0, 0, 4, 1)


def test_block_and_piece_proofs_against_the_root() -> None:
    """A single 16 KiB block (or a piece) checked on its own against the file's root with its uncles."""
    rng = random.Random(11)
    data = rng.randbytes(13 * BLOCK_SIZE + 77)  # 14 blocks, tree height 4
    tree = MerkleTree.from_leaves(block_hashes(data), 4 * BLOCK_SIZE)
    for index in range(14):
        payload = tree.get_hashes(0, index, 1, tree.height - 1)
        assert payload is not None
        uncles = split_hashes(payload[32:])
        block = data[index * BLOCK_SIZE : (index + 1) * BLOCK_SIZE]
        assert verify_block(tree.root, block, index=index, blocks=14, uncles=uncles)
        assert not verify_block(tree.root, block[:-1] + b"?", index=index, blocks=14, uncles=uncles)
        assert not verify_block(tree.root, block, index=(index + 1) % 14, blocks=14, uncles=uncles)
    for piece in range(4):
        payload = tree.get_hashes(2, piece, 1, tree.height - 3)
        assert payload is not None
        chunk = data[piece * 4 * BLOCK_SIZE : (piece + 1) * 4 * BLOCK_SIZE]
        uncles = split_hashes(payload[32:])
        assert verify_piece_proof(
            tree.root, chunk, piece=piece, piece_length=4 * BLOCK_SIZE, blocks=14, uncles=uncles
        )
        assert not verify_piece_proof(
            tree.root, chunk[1:], piece=piece, piece_length=4 * BLOCK_SIZE, blocks=14, uncles=uncles
        )
    small = b"s" * 100
    assert verify_piece_proof(
        root_of_data(small), small, piece=0, piece_length=BLOCK_SIZE * 4, blocks=1, uncles=[]
    )
