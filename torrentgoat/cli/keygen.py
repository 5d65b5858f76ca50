"""``torrentgoat keygen [-o KEYFILE] [--force]``: create an ed25519 key for BEP 44/46 publishing.

The key file holds the raw 32-byte ed25519 seed (RFC 8032), created with mode 0600; the public key
is printed as 64 hex digits.  :func:`read_key_file` also accepts a file of 64 hex digits.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from torrentgoat.dht.items import SigningKey
from torrentgoat.errors import ConfigError

__all__ = ["ORDER", "read_key_file", "register", "write_key_file"]

ORDER = 80


def write_key_file(path: Path, key: SigningKey, *, force: bool = False) -> None:
    """Write ``key``'s seed to ``path`` with mode 0600 (refusing to overwrite unless ``force``)."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise ConfigError(f"key file {path} exists; use --force to overwrite it") from None
    except OSError as exc:
        raise ConfigError(f"cannot create key file {path}: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(key.seed)


def read_key_file(path: Path) -> SigningKey:
    """A key file: 32 raw seed bytes, or the seed as 64 hex digits."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read key file {path}: {exc.strerror}") from None
    if len(data) != 32:
        text = data.strip()
        try:
            data = bytes.fromhex(text.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            raise ConfigError(f"key file {path} is neither a 32-byte seed nor 64 hex digits") from None
        if len(data) != 32:
            raise ConfigError(f"key file {path} holds {len(data)} bytes; an ed25519 seed is 32")
    return SigningKey(data)


def _keygen(args: argparse.Namespace) -> int:
    key = SigningKey.generate()
    write_key_file(Path(args.output), key, force=args.force)
    print(key.public_key.hex())
    return 0


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "keygen",
        help="create an ed25519 key for publishing in the DHT (BEP 44/46)",
        description="Write a new ed25519 seed (32 bytes, mode 0600) and print the public key in hex.",
    )
    parser.add_argument("-o", "--output", default="torrentgoat.key", help="key file (default: %(default)s)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing key file")
    parser.set_defaults(func=_keygen)
