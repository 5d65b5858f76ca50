"""Arbitrary data in the DHT (BEP 44) and torrent updates through it (BEP 46).

* Immutable items: the target is SHA-1 of the bencoded value.
* Mutable items: an ed25519 public key ``k``, optional ``salt`` (at most 64 bytes), a sequence
  number ``seq`` and a signature over exactly ``4:salt<len>:<salt>3:seqi<seq>e1:v<bencoded v>``
  (the salt part only when the salt is non-empty); the target is SHA-1 of ``k + salt``.
* Values bencode to at most 1000 bytes.
* BEP 46: the value ``{"ih": <20-byte info-hash>}`` published under a key (and salt) is the
  current version of a torrent; ``magnet:?xs=urn:btpk:<key hex>&s=<salt hex>`` names it.

Our own keys are kept as 32-byte ed25519 *seeds* (RFC 8032).  :meth:`SigningKey.expanded` gives the
64-byte "expanded" form libtorrent (and the BEP 44 test vectors) use for their secret keys.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from torrentgoat import bencode
from torrentgoat.bencode import BValue
from torrentgoat.errors import BencodeError, DHTError, SignatureError
from torrentgoat.keys import SigningKey, verify_signature
from torrentgoat.primitives import InfoHash

__all__ = [
    "MAX_SALT_SIZE",
    "MAX_VALUE_SIZE",
    "ImmutableItem",
    "MutableItem",
    "SigningKey",
    "btpk_magnet",
    "encode_value",
    "immutable_target",
    "info_hash_value",
    "mutable_target",
    "parse_info_hash_value",
    "sign_mutable",
    "signature_buffer",
]

MAX_VALUE_SIZE = 1000
"""BEP 44: "the bencoded value v ... MUST be less than or equal to 1000 bytes"."""

MAX_SALT_SIZE = 64
"""BEP 44: the salt is at most 64 bytes."""


def encode_value(value: BValue) -> bytes:
    """Bencode ``value``; refuse it (DHTError) when it exceeds 1000 bytes (BEP 44)."""
    try:
        encoded = bencode.encode(value)
    except BencodeError as exc:
        raise DHTError(f"item value cannot be bencoded: {exc}") from None
    if len(encoded) > MAX_VALUE_SIZE:
        raise DHTError(f"item value bencodes to {len(encoded)} bytes; BEP 44 allows at most {MAX_VALUE_SIZE}")
    return encoded


def immutable_target(value: BValue) -> bytes:
    """BEP 44: target of an immutable item = SHA-1 of its bencoded value."""
    return hashlib.sha1(bencode.encode(value)).digest()


def mutable_target(public_key: bytes, salt: bytes = b"") -> bytes:
    """BEP 44: target of a mutable item = SHA-1 of the public key concatenated with the salt."""
    return hashlib.sha1(public_key + salt).digest()


def signature_buffer(salt: bytes, seq: int, encoded_value: bytes) -> bytes:
    """The exact bytes a BEP 44 mutable item's signature covers."""
    prefix = b"4:salt%d:%s" % (len(salt), salt) if salt else b""
    return prefix + b"3:seqi%de1:v" % seq + encoded_value


@dataclass(frozen=True, slots=True, kw_only=True)
class ImmutableItem:
    """A value stored under the SHA-1 of its own bencoding (BEP 44)."""

    value: BValue

    @property
    def target(self) -> bytes:
        return immutable_target(self.value)


@dataclass(frozen=True, slots=True, kw_only=True)
class MutableItem:
    """A signed, versioned value (BEP 44).  Build one with :func:`sign_mutable`; check with :meth:`verify`."""

    public_key: bytes
    seq: int
    value: BValue
    signature: bytes
    salt: bytes = b""

    @property
    def target(self) -> bytes:
        return mutable_target(self.public_key, self.salt)

    @property
    def encoded_value(self) -> bytes:
        return bencode.encode(self.value)

    def verify(self) -> None:
        """Raise SignatureError unless the signature verifies; DHTError for a malformed item."""
        if len(self.public_key) != 32:
            raise SignatureError(f"ed25519 public key must be 32 bytes, got {len(self.public_key)}")
        if len(self.signature) != 64:
            raise SignatureError(f"ed25519 signature must be 64 bytes, got {len(self.signature)}")
        if len(self.salt) > MAX_SALT_SIZE:
            raise DHTError(f"salt of {len(self.salt)} bytes; BEP 44 allows at most {MAX_SALT_SIZE}")
        encoded = encode_value(self.value)
        try:
            verify_signature(self.public_key, signature_buffer(self.salt, self.seq, encoded), self.signature)
        except SignatureError:
            raise SignatureError(
                f"signature of mutable item (key {self.public_key.hex()}, seq {self.seq}) does not verify"
            ) from None


def sign_mutable(key: SigningKey, value: BValue, seq: int, salt: bytes = b"") -> MutableItem:
    """Sign ``value`` as version ``seq`` under ``key`` (and ``salt``); size limits are checked first."""
    if len(salt) > MAX_SALT_SIZE:
        raise DHTError(f"salt of {len(salt)} bytes; BEP 44 allows at most {MAX_SALT_SIZE}")
    if seq < 0:
        raise DHTError(f"sequence number must not be negative, got {seq}")
    encoded = encode_value(value)
    signature = key.sign(signature_buffer(salt, seq, encoded))
    return MutableItem(public_key=key.public_key, seq=seq, value=value, signature=signature, salt=salt)


# -- BEP 46 -------------------------------------------------------------------------------------------


def info_hash_value(info_hash: InfoHash) -> dict[bytes, BValue]:
    """BEP 46 item value pointing at a torrent: ``{"ih": <20-byte info-hash>}``."""
    return {b"ih": info_hash.raw}


def parse_info_hash_value(value: BValue) -> InfoHash:
    """Read the info-hash out of a BEP 46 item value; DHTError when it is not one."""
    if not isinstance(value, dict):
        raise DHTError(f"BEP 46 item value must be a dictionary, got {type(value).__name__}")
    raw = value.get(b"ih")
    if not isinstance(raw, bytes) or len(raw) != 20:
        raise DHTError("BEP 46 item value has no 20-byte 'ih' info-hash")
    return InfoHash(raw)


def btpk_magnet(public_key: bytes, salt: bytes = b"") -> str:
    """BEP 46 magnet link: ``magnet:?xs=urn:btpk:<public key hex>[&s=<salt hex>]``."""
    link = f"magnet:?xs=urn:btpk:{public_key.hex()}"
    return link + f"&s={salt.hex()}" if salt else link
