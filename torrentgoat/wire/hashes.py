"""BEP 52 hash messages (level L2, pure): ``hash request`` (21), ``hashes`` (22), ``hash reject`` (23).

Codecs and rules, dispatched by :mod:`torrentgoat.wire.connection` (events on v2/hybrid torrents) and
driven by :mod:`torrentgoat.torrent.hashexchange`:

* one frozen dataclass per message -- :class:`HashRequest`, :class:`Hashes`, :class:`HashReject` -- and
  :func:`encode_hash_message` / :func:`decode_hash_message` for their bytes.  The payload is the file's
  ``pieces root`` (32 bytes), then ``base layer``, ``index``, ``length`` and ``proof layers`` as u32
  big-endian; ``hashes`` adds the hashes (BEP 52: "Hashes starts with the base layer and ends with the
  uncle hash closest to the root");
* :func:`check_request` -- whether a request is valid for a file (BEP 52: ``index`` a multiple of
  ``length``, ``length`` a power of two, the range inside the layer, proof layers below the root);
* :func:`serve_hash_request` -- the ``hashes`` reply (or ``hash reject``) from a file's
  :class:`~torrentgoat.merkle.MerkleTree`, and :class:`HashServer` doing it for a whole torrent;
* :data:`V2_RESERVED_BIT` -- BEP 52 "Upgrade Path": a peer sending the SHA-1 info-hash of a hybrid
  torrent sets the 4th most significant bit of the last reserved byte to say it also speaks v2.

A ``length`` of 1 breaks BEP 52's "MUST be equal-to-or-greater-than two", but libtorrent 2.1 sends it for
the last piece-layer hash of a file of 512 n + 1 pieces; we answer it (its uncles then start with the
node's own sibling: ``proof_layers + 1`` of them) and never send it.

The requesting side (which hashes a magnet download needs, checking the replies' proofs) is
:mod:`torrentgoat.wire.piece_layers`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TypeAlias

from torrentgoat.errors import RemoteProtocolError
from torrentgoat.merkle import HASH_SIZE, MerkleTree, block_hashes, tree_height, uncle_count
from torrentgoat.metainfo import InfoDict
from torrentgoat.metainfo_v2 import V2File

__all__ = [
    "MAX_HASHES_PAYLOAD",
    "MAX_HASH_COUNT",
    "MSG_HASHES",
    "MSG_HASH_REJECT",
    "MSG_HASH_REQUEST",
    "V2_RESERVED_BIT",
    "HashMessage",
    "HashReject",
    "HashRequest",
    "HashServer",
    "Hashes",
    "check_request",
    "decode_hash_message",
    "encode_hash_message",
    "serve_hash_request",
    "set_v2_bit",
    "supports_v2",
]

MSG_HASH_REQUEST = 21
MSG_HASHES = 22
MSG_HASH_REJECT = 23

V2_RESERVED_BIT = (7, 0x10)
"""(byte index, mask) of the BEP 52 "also supports v2" bit in the handshake's reserved bytes."""

MAX_HASH_COUNT = 8192
"""Largest ``length`` served or accepted (BEP 52: "SHOULD NOT be greater than 512"; libtorrent serves up
to 8192, i.e. piece layers of 128 MiB pieces' worth of blocks)."""

MAX_HASHES_PAYLOAD = 48 + HASH_SIZE * (MAX_HASH_COUNT + 64)
"""Largest ``hashes`` payload accepted: the fields, ``MAX_HASH_COUNT`` hashes and a proof for a tree far
deeper than any file can need."""

_FIELDS = struct.Struct(">32sIIII")


def supports_v2(reserved: bytes) -> bool:
    """Whether a handshake's reserved bytes carry BEP 52's v2 bit."""
    index, mask = V2_RESERVED_BIT
    return len(reserved) == 8 and bool(reserved[index] & mask)


def set_v2_bit(reserved: bytes) -> bytes:
    """``reserved`` with BEP 52's v2 bit set (to send with a hybrid torrent's SHA-1 info-hash)."""
    index, mask = V2_RESERVED_BIT
    out = bytearray(reserved)
    out[index] |= mask
    return bytes(out)


@dataclass(frozen=True, slots=True, kw_only=True)
class HashRequest:
    """BEP 52 ``hash request``: ``length`` hashes of layer ``base_layer`` (0 = leaves) from ``index``,
    plus the uncles of ``proof_layers`` ancestor layers, in the tree of the file whose root is
    ``pieces_root``."""

    pieces_root: bytes
    base_layer: int
    index: int
    length: int
    proof_layers: int

    @property
    def uncles(self) -> int:
        """How many uncle hashes a ``hashes`` reply to this request carries."""
        return uncle_count(self.length, self.proof_layers)


@dataclass(frozen=True, slots=True, kw_only=True)
class HashReject:
    """BEP 52 ``hash reject``: the same fields as the request it declines."""

    pieces_root: bytes
    base_layer: int
    index: int
    length: int
    proof_layers: int

    @property
    def request(self) -> HashRequest:
        return HashRequest(
            pieces_root=self.pieces_root,
            base_layer=self.base_layer,
            index=self.index,
            length=self.length,
            proof_layers=self.proof_layers,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Hashes:
    """BEP 52 ``hashes``: the request's fields, then ``length`` base hashes and the uncle hashes."""

    pieces_root: bytes
    base_layer: int
    index: int
    length: int
    proof_layers: int
    hashes: bytes
    """Concatenated 32-byte hashes: the base-layer run, then the uncles, nearest the run first."""

    @property
    def request(self) -> HashRequest:
        return HashRequest(
            pieces_root=self.pieces_root,
            base_layer=self.base_layer,
            index=self.index,
            length=self.length,
            proof_layers=self.proof_layers,
        )

    @property
    def base_hashes(self) -> bytes:
        return self.hashes[: self.length * HASH_SIZE]

    @property
    def uncle_hashes(self) -> bytes:
        return self.hashes[self.length * HASH_SIZE :]


HashMessage: TypeAlias = HashRequest | Hashes | HashReject


def _fields(message: HashMessage) -> bytes:
    if len(message.pieces_root) != HASH_SIZE:
        raise ValueError("pieces root must be 32 bytes")
    for value in (message.base_layer, message.index, message.length, message.proof_layers):
        if not 0 <= value < 2**32:
            raise ValueError(f"hash message field out of range: {value}")
    return _FIELDS.pack(
        message.pieces_root, message.base_layer, message.index, message.length, message.proof_layers
    )


def encode_hash_message(message: HashMessage) -> bytes:
    """The framed message: ``<length u32><id u8><payload>`` (BEP 3 framing)."""
    body = _fields(message)
    if isinstance(message, Hashes):
        if len(message.hashes) % HASH_SIZE:
            raise ValueError("hashes must be whole 32-byte hashes")
        msg_id, body = MSG_HASHES, body + message.hashes
    else:
        msg_id = MSG_HASH_REQUEST if isinstance(message, HashRequest) else MSG_HASH_REJECT
    return struct.pack(">IB", len(body) + 1, msg_id) + body


def decode_hash_message(msg_id: int, payload: bytes | bytearray | memoryview) -> HashMessage:
    """A received payload (after the id byte); malformed input raises :class:`RemoteProtocolError`."""
    if msg_id not in (MSG_HASH_REQUEST, MSG_HASHES, MSG_HASH_REJECT):
        raise RemoteProtocolError(f"message id {msg_id} is not a BEP 52 hash message")
    size = len(payload)
    if msg_id != MSG_HASHES and size != _FIELDS.size:
        raise RemoteProtocolError(f"BEP 52 message {msg_id} must carry {_FIELDS.size} bytes, got {size}")
    if msg_id == MSG_HASHES and (size < _FIELDS.size or (size - _FIELDS.size) % HASH_SIZE):
        raise RemoteProtocolError(f"'hashes' payload of {size} bytes is not 48 + a multiple of 32")
    if size > MAX_HASHES_PAYLOAD:
        raise RemoteProtocolError(f"'hashes' payload of {size} bytes exceeds the {MAX_HASHES_PAYLOAD} cap")
    raw = bytes(payload)
    root, base, index, length, proof = _FIELDS.unpack_from(raw)
    if msg_id == MSG_HASH_REQUEST:
        return HashRequest(pieces_root=root, base_layer=base, index=index, length=length, proof_layers=proof)
    if msg_id == MSG_HASH_REJECT:
        return HashReject(pieces_root=root, base_layer=base, index=index, length=length, proof_layers=proof)
    return Hashes(
        pieces_root=root,
        base_layer=base,
        index=index,
        length=length,
        proof_layers=proof,
        hashes=raw[_FIELDS.size :],
    )


def check_request(request: HashRequest, *, blocks: int) -> str | None:
    """Why ``request`` is invalid for a file of ``blocks`` leaves, or ``None`` when it is valid.

    BEP 52: ``index`` a multiple of ``length``; ``length`` a power of two (we also take 1, see the module
    docstring), at most :data:`MAX_HASH_COUNT`; the run inside its layer; every proof layer below the
    root (libtorrent's ``validate_hash_request``).
    """
    height = tree_height(blocks)
    length = request.length
    if length < 1 or length & (length - 1) or length > MAX_HASH_COUNT:
        return f"length {length} is not a power of two in 1..{MAX_HASH_COUNT}"
    if request.base_layer >= height:
        return f"base layer {request.base_layer} is not below the root (tree height {height})"
    level = 1 << (height - request.base_layer)
    if request.index % length or request.index + length > level:
        last = request.index + length - 1
        return f"hashes {request.index}..{last} are not an aligned run of the layer's {level}"
    if request.proof_layers >= height - request.base_layer:
        return f"{request.proof_layers} proof layers reach past the root"
    return None


def serve_hash_request(request: HashRequest, tree: MerkleTree) -> Hashes | HashReject:
    """Answer ``request`` from ``tree`` (the file's tree): ``hashes``, or ``hash reject`` when the request is
    invalid or asks for nodes this tree does not know (leaves of pieces not verified here yet)."""
    reject = HashReject(
        pieces_root=request.pieces_root,
        base_layer=request.base_layer,
        index=request.index,
        length=request.length,
        proof_layers=request.proof_layers,
    )
    if request.pieces_root != tree.root or check_request(request, blocks=tree.blocks) is not None:
        return reject
    payload = tree.get_hashes(request.base_layer, request.index, request.length, request.proof_layers)
    if payload is None:
        return reject
    return Hashes(
        pieces_root=request.pieces_root,
        base_layer=request.base_layer,
        index=request.index,
        length=request.length,
        proof_layers=request.proof_layers,
        hashes=payload,
    )


class HashServer:
    """Answers a torrent's hash requests from its piece layers (BEP 52 "Clients must be able to service
    requests for hash blocks covering pieces which they have announced").

    Requests at or above the piece layer are served from the layers (every file's, whether we hold its
    pieces or not: BEP 52 allows it when the layers came from the metadata file).  Leaf-level requests
    are served for pieces whose data was handed to :meth:`add_piece` after it verified.
    """

    def __init__(self, info: InfoDict) -> None:
        if info.v2 is None:
            raise ValueError("a v1 torrent has no merkle trees to serve")
        self._info = info
        self._files: dict[bytes, V2File] = {f.root: f for f in info.v2.files}
        self._trees: dict[bytes, MerkleTree] = {}

    def _tree(self, root: bytes) -> MerkleTree | None:
        tree = self._trees.get(root)
        if tree is None:
            file = self._files.get(root)
            v2 = self._info.v2
            assert v2 is not None
            if file is None or (v2.needs_layer(file) and root not in v2.piece_layers):
                return None
            tree = self._trees[root] = v2.tree(file)
        return tree

    def add_piece(self, piece: int, data: bytes | bytearray | memoryview) -> bool:
        """Learn the leaf hashes of verified piece ``piece`` (its file bytes); ``False`` if they do not
        match the tree (then nothing is learnt)."""
        v2 = self._info.v2
        assert v2 is not None
        check = v2.piece_check(piece)
        tree = self._tree(check.file.root)
        if tree is None:
            return False
        leaves = block_hashes(memoryview(data)[: check.data_length])
        return tree.add_piece_leaves(piece - check.file.first_piece, leaves)

    def respond(self, request: HashRequest) -> Hashes | HashReject:
        tree = self._tree(request.pieces_root)
        if tree is None:
            return HashReject(
                pieces_root=request.pieces_root,
                base_layer=request.base_layer,
                index=request.index,
                length=request.length,
                proof_layers=request.proof_layers,
            )
        return serve_hash_request(request, tree)
