"""ed25519 keys for publishing (level L0): one key signs BEP 44/46 DHT items and collection manifests.

A key is kept as its 32-byte *seed* (RFC 8032 section 5.1.5): the seed is the whole secret, the public
key and the signing scalar are derived from it.  This is the same representation as
:class:`torrentgoat.dht.items.SigningKey`, so one key file serves both.  libtorrent-style 64-byte
"expanded" secret keys cannot be turned back into a seed and are not accepted as input;
:meth:`SigningKey.expanded` produces that form for interop.

Key files hold the raw 32 seed bytes (64 hex digits are accepted when reading, for hand-made files).
:meth:`SigningKey.save` writes them atomically with mode 0600 and refuses to overwrite an existing
file unless asked; :meth:`SigningKey.load` refuses a key file that its group or other users may
access, like OpenSSH does.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from torrentgoat.atomicwrite import write_atomic
from torrentgoat.errors import ConfigError, SignatureError

__all__ = [
    "PUBLIC_KEY_SIZE",
    "SEED_SIZE",
    "SIGNATURE_SIZE",
    "SigningKey",
    "verify_signature",
]

SEED_SIZE = 32
"""An ed25519 secret key is a 32-byte seed (RFC 8032 section 5.1.5)."""
PUBLIC_KEY_SIZE = 32
"""An ed25519 public key is 32 bytes (RFC 8032 section 5.1.5)."""
SIGNATURE_SIZE = 64
"""An ed25519 signature is 64 bytes (RFC 8032 section 5.1.6)."""

_MAX_KEY_FILE = 4096


class SigningKey:
    """An ed25519 signing key kept as its 32-byte seed."""

    __slots__ = ("_key", "_public", "seed")

    def __init__(self, seed: bytes) -> None:
        if not isinstance(seed, bytes) or len(seed) != SEED_SIZE:
            size = len(seed) if isinstance(seed, bytes | bytearray) else type(seed).__name__
            raise SignatureError(f"an ed25519 seed must be {SEED_SIZE} bytes, got {size}")
        self.seed = seed
        self._key = Ed25519PrivateKey.from_private_bytes(seed)
        self._public = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @classmethod
    def generate(cls, rng: Callable[[int], bytes] | None = None) -> SigningKey:
        """A fresh key from ``rng(32)`` (``os.urandom`` by default; pass ``random.Random(s).randbytes``
        only in tests)."""
        return cls(bytes((rng or os.urandom)(SEED_SIZE)))

    @property
    def public_key(self) -> bytes:
        """The 32-byte ed25519 public key."""
        return self._public

    def sign(self, message: bytes) -> bytes:
        """The 64-byte ed25519 signature of ``message``."""
        return self._key.sign(message)

    def expanded(self) -> bytes:
        """libtorrent's 64-byte secret key: SHA-512(seed), scalar half clamped (RFC 8032 section 5.1.5)."""
        h = bytearray(hashlib.sha512(self.seed).digest())
        h[0] &= 248
        h[31] &= 127
        h[31] |= 64
        return bytes(h)

    def __repr__(self) -> str:
        return f"SigningKey(public_key={self._public.hex()})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SigningKey) and other.seed == self.seed

    def __hash__(self) -> int:
        return hash(self._public)

    # -- key files ------------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write the seed to ``path`` atomically with mode 0600 (ConfigError if it exists and not ``overwrite``).

        :func:`torrentgoat.atomicwrite.write_atomic`: the seed goes to a temporary file in the same
        directory (created 0600, fsynced), which is then linked into place (refusing an existing file)
        or renamed over it when ``overwrite``, and the directory is fsynced.
        """
        target = Path(path)
        if not overwrite and os.path.lexists(target):
            raise ConfigError(f"key file {target} exists; refusing to overwrite it (use --force)")
        try:
            write_atomic(target, self.seed, mode=0o600, overwrite=overwrite)
        except FileExistsError:
            raise ConfigError(f"key file {target} exists; refusing to overwrite it (use --force)") from None
        except OSError as exc:
            raise ConfigError(f"cannot write key file {target}: {exc.strerror}") from None
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SigningKey:
        """Read a key file: 32 raw seed bytes, or the seed as 64 hex digits.

        ConfigError when the file is missing, is not a regular file, may be read or written by its
        group or other users (fix with ``chmod 600``), or does not hold a seed.
        """
        source = Path(path)
        try:
            fd = os.open(source, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError as exc:
            raise ConfigError(f"cannot open key file {source}: {exc.strerror}") from None
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            raise ConfigError(f"key file {source} is not a regular file")
        with os.fdopen(fd, "rb") as handle:
            mode = stat.S_IMODE(info.st_mode)
            if os.name == "posix" and mode & 0o077:
                raise ConfigError(
                    f"key file {source} has permissions {mode:04o}: its group or other users may access it; "
                    f"run 'chmod 600 {source}'"
                )
            data = handle.read(_MAX_KEY_FILE + 1)
        return cls(_seed_from_file(data, source))


def _seed_from_file(data: bytes, source: Path) -> bytes:
    if len(data) == SEED_SIZE:
        return data
    try:
        seed = bytes.fromhex(data.strip().decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise ConfigError(f"key file {source} is neither a {SEED_SIZE}-byte seed nor 64 hex digits") from None
    if len(seed) != SEED_SIZE:
        raise ConfigError(f"key file {source} holds {len(seed)} bytes; an ed25519 seed is {SEED_SIZE}")
    return seed


def verify_signature(public_key: bytes, message: bytes, signature: bytes) -> None:
    """Raise SignatureError unless ``signature`` is ``public_key``'s ed25519 signature of ``message``."""
    if len(public_key) != PUBLIC_KEY_SIZE:
        raise SignatureError(f"an ed25519 public key must be {PUBLIC_KEY_SIZE} bytes, got {len(public_key)}")
    if len(signature) != SIGNATURE_SIZE:
        raise SignatureError(f"an ed25519 signature must be {SIGNATURE_SIZE} bytes, got {len(signature)}")
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        raise SignatureError(f"signature does not verify under public key {public_key.hex()}") from None
