"""``torrentgoat keygen [-o KEYFILE] [--force]``: create an ed25519 key for BEP 44/46 publishing.

The key file holds the raw 32-byte ed25519 seed (RFC 8032), created with mode 0600; the public key
is printed as 64 hex digits.  :func:`read_key_file` also accepts a file of 64 hex digits.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torrentgoat.keys import SigningKey

__all__ = ["ORDER", "read_key_file", "register", "write_key_file"]

ORDER = 80


def write_key_file(path: Path, key: SigningKey, *, force: bool = False) -> None:
    """Write ``key``'s seed to ``path`` with mode 0600, atomically (refusing to overwrite unless ``force``)."""
    key.save(path, overwrite=force)


def read_key_file(path: Path) -> SigningKey:
    """A key file: 32 raw seed bytes or 64 hex digits, readable by its owner only."""
    from torrentgoat.keys import SigningKey

    return SigningKey.load(path)


def _keygen(args: argparse.Namespace) -> int:
    from torrentgoat.keys import SigningKey

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
