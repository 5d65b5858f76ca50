"""The cryptographic parts of MSE (level L2): 768-bit Diffie-Hellman, the SHA-1 derivations, RC4.

From the Message Stream Encryption spec (Azureus / BitTorrent "Protocol Encryption"):

* ``P`` is the 768-bit safe prime below, ``G = 2``; each side picks a random private key ``X`` (the
  spec asks for at least 128 bits, "anything beyond 180 bits" adds nothing; we draw 160 bits with the
  top bit set) and sends ``Y = G**X mod P`` as 96 big-endian bytes; the shared secret ``S`` is
  ``Y_peer**X mod P``, also as 96 bytes;
* ``HASH`` is SHA-1; ``HASH('req1', S)`` is the responder's sync pattern, ``HASH('req2', SKEY) xor
  HASH('req3', S)`` carries the obfuscated stream key (SKEY = the torrent's info-hash);
* the initiator encrypts with ``RC4(HASH('keyA', S, SKEY))`` and the responder with
  ``RC4(HASH('keyB', S, SKEY))``; both discard the first 1024 bytes of each keystream.

Public keys outside ``[2, P - 2]`` are refused (they force ``S`` into a tiny subgroup; libtorrent
refuses them as well).  RC4 itself comes from the ``cryptography`` package (OpenSSL), never from
Python code: ``cryptography.hazmat.decrepit`` since 43.0, ``primitives.ciphers.algorithms`` before.
"""

from __future__ import annotations

import hashlib
import importlib
import random
from collections.abc import Callable
from typing import Any

from torrentgoat.errors import EncryptionError
from torrentgoat.primitives import InfoHash

__all__ = [
    "DH_GENERATOR",
    "DH_KEY_LENGTH",
    "DH_PRIME",
    "RC4",
    "RC4_DISCARD",
    "DHKeyPair",
    "StreamKeys",
    "payload_keys",
    "req1_hash",
    "req2_hash",
    "req3_hash",
]

DH_PRIME = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DD"
    "EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A63A36210000000000090563",
    16,
)
"""The spec's 768-bit prime ``P``."""
DH_GENERATOR = 2
DH_KEY_LENGTH = 96
"""Bytes of a public key or of the shared secret (768 bits, big-endian, zero-padded on the left)."""
PRIVATE_KEY_BITS = 160
RC4_DISCARD = 1024
"""Keystream bytes dropped before the first byte is used (spec: "discard the first 1024 bytes")."""


def _sha1(*parts: bytes) -> bytes:
    h = hashlib.sha1()
    for part in parts:
        h.update(part)
    return h.digest()


def req1_hash(secret: bytes) -> bytes:
    """``HASH('req1', S)``: the pattern the responder searches for after PadA."""
    return _sha1(b"req1", secret)


def req2_hash(skey: bytes) -> bytes:
    """``HASH('req2', SKEY)``: what a session indexes its torrents by to find the stream key."""
    return _sha1(b"req2", skey)


def req3_hash(secret: bytes) -> bytes:
    """``HASH('req3', S)``: the mask xored onto ``HASH('req2', SKEY)``."""
    return _sha1(b"req3", secret)


def payload_keys(secret: bytes, skey: bytes) -> tuple[bytes, bytes]:
    """``(keyA, keyB)``: the RC4 keys of the initiator's and of the responder's direction."""
    return _sha1(b"keyA", secret, skey), _sha1(b"keyB", secret, skey)


class DHKeyPair:
    """One side's Diffie-Hellman key: a 160-bit private key from ``rng`` and its 96-byte public key.

    Production code must pass a cryptographically strong ``rng`` (``random.SystemRandom()``); tests
    pass a seeded ``random.Random`` for reproducible handshakes.
    """

    __slots__ = ("_private", "public_key")

    def __init__(self, rng: random.Random) -> None:
        self._private = rng.getrandbits(PRIVATE_KEY_BITS) | (1 << (PRIVATE_KEY_BITS - 1))
        self.public_key = pow(DH_GENERATOR, self._private, DH_PRIME).to_bytes(DH_KEY_LENGTH, "big")

    def shared_secret(self, peer_public_key: bytes) -> bytes:
        """``S`` from the peer's 96-byte public key; refuses keys outside ``[2, P - 2]``."""
        if len(peer_public_key) != DH_KEY_LENGTH:
            raise EncryptionError(f"MSE public key must be {DH_KEY_LENGTH} bytes, got {len(peer_public_key)}")
        y = int.from_bytes(peer_public_key, "big")
        if not 2 <= y <= DH_PRIME - 2:
            raise EncryptionError("degenerate MSE public key (outside [2, P-2])")
        return pow(y, self._private, DH_PRIME).to_bytes(DH_KEY_LENGTH, "big")


def _load_arc4() -> Any:
    """The ARC4 algorithm class of the installed ``cryptography`` (moved to ``decrepit`` in 43.0)."""
    try:
        module = importlib.import_module("cryptography.hazmat.decrepit.ciphers.algorithms")
    except ImportError:  # cryptography < 43
        module = importlib.import_module("cryptography.hazmat.primitives.ciphers.algorithms")
    return module.ARC4


_ARC4 = _load_arc4()
_Cipher: Any = importlib.import_module("cryptography.hazmat.primitives.ciphers").Cipher


class RC4:
    """One direction's RC4 keystream (OpenSSL through ``cryptography``), optionally with a discard.

    ``update(data) -> bytes`` and ``update_into(data, out) -> int`` are the context's own bound
    methods (no Python frame of ours on the hot path); ``out`` must hold at least ``len(data)`` bytes.
    Encryption and decryption are the same operation.
    """

    __slots__ = ("update", "update_into")

    update: Callable[[Any], bytes]
    update_into: Callable[[Any, Any], int]

    def __init__(self, key: bytes, *, discard: int = 0) -> None:
        context = _Cipher(_ARC4(key), mode=None).encryptor()
        self.update = context.update
        self.update_into = context.update_into
        if discard:
            context.update(bytes(discard))


class StreamKeys:
    """``HASH('req2', info_hash) -> info_hash`` for every torrent a listener serves.

    An incoming MSE handshake names its torrent only through ``HASH('req2', SKEY)`` (masked with
    ``HASH('req3', S)``), so one listener serving many torrents needs this reverse index; the
    instance is the ``info_hash_for_req2`` callable the responder engine takes.
    """

    __slots__ = ("_by_req2",)

    def __init__(self, info_hashes: tuple[InfoHash, ...] | list[InfoHash] = ()) -> None:
        self._by_req2: dict[bytes, InfoHash] = {}
        for info_hash in info_hashes:
            self.add(info_hash)

    def add(self, info_hash: InfoHash) -> None:
        self._by_req2[req2_hash(info_hash.raw)] = info_hash

    def remove(self, info_hash: InfoHash) -> None:
        self._by_req2.pop(req2_hash(info_hash.raw), None)

    def __len__(self) -> int:
        return len(self._by_req2)

    def __call__(self, req2: bytes) -> InfoHash | None:
        return self._by_req2.get(req2)
