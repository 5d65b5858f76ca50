"""Small value types shared by every layer (level L0): info-hashes, peer and node ids, block refs."""

from __future__ import annotations

import base64
import binascii
import functools
import ipaddress
import random
from dataclasses import dataclass
from typing import ClassVar

from torrentgoat.errors import ConfigError, MagnetError

__all__ = [
    "BLOCK_SIZE",
    "CLIENT_PREFIX",
    "BlockRef",
    "InfoHash",
    "NodeId",
    "PeerAddress",
    "PeerId",
    "dialable_host",
]

BLOCK_SIZE = 16 * 1024
"""Size of one request (BEP 3: "all current implementations use 2^14 (16 kiB)")."""

CLIENT_PREFIX = b"-TG0001-"
"""Azureus-style client id prefix for our peer ids (BEP 20): client ``TG``, version 0.0.0.1."""


@dataclass(frozen=True, slots=True, order=True)
class _Id20:
    """A 20-byte identifier; the subclasses say which kind."""

    raw: bytes
    kind: ClassVar[str] = "id"

    def __post_init__(self) -> None:
        if not isinstance(self.raw, bytes) or len(self.raw) != 20:
            raise ConfigError(f"{self.kind} must be 20 bytes, got {self.raw!r}")

    @property
    def hex(self) -> str:
        return self.raw.hex()

    def __str__(self) -> str:
        return self.raw.hex()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.raw.hex()})"

    def __bytes__(self) -> bytes:
        return self.raw


@dataclass(frozen=True, slots=True, order=True, repr=False)
class InfoHash(_Id20):
    """SHA-1 of the bencoded ``info`` dictionary (BEP 3): the torrent's identity."""

    kind: ClassVar[str] = "info-hash"

    @classmethod
    def from_hex(cls, text: str) -> InfoHash:
        """40 hex digits (case-insensitive)."""
        if len(text) != 40:
            raise MagnetError(f"hex info-hash must be 40 characters, got {len(text)}: {text!r}")
        try:
            return cls(bytes.fromhex(text))
        except ValueError:
            raise MagnetError(f"info-hash is not hex: {text!r}") from None

    @classmethod
    def from_base32(cls, text: str) -> InfoHash:
        """32 base32 characters (BEP 9 allows this older magnet form)."""
        if len(text) != 32:
            raise MagnetError(f"base32 info-hash must be 32 characters, got {len(text)}: {text!r}")
        try:
            return cls(base64.b32decode(text.upper()))
        except (binascii.Error, ValueError):
            raise MagnetError(f"info-hash is not base32: {text!r}") from None

    @classmethod
    def parse(cls, text: str) -> InfoHash:
        """Hex (40 characters) or base32 (32 characters)."""
        return cls.from_base32(text) if len(text) == 32 else cls.from_hex(text)


@dataclass(frozen=True, slots=True, order=True, repr=False)
class PeerId(_Id20):
    """A peer's 20-byte id (BEP 3), ours in Azureus style (BEP 20)."""

    kind: ClassVar[str] = "peer id"

    @classmethod
    def generate(cls, rng: random.Random) -> PeerId:
        """``-TG0001-`` followed by 12 random printable characters (BEP 20)."""
        alphabet = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
        tail = bytes(rng.choice(alphabet) for _ in range(20 - len(CLIENT_PREFIX)))
        return cls(CLIENT_PREFIX + tail)


@dataclass(frozen=True, slots=True, order=True, repr=False)
class NodeId(_Id20):
    """A DHT node id (BEP 5): 160 bits in the same space as info-hashes."""

    kind: ClassVar[str] = "node id"

    @classmethod
    def generate(cls, rng: random.Random) -> NodeId:
        return cls(rng.randbytes(20))

    @property
    def value(self) -> int:
        return int.from_bytes(self.raw, "big")

    def distance(self, other: bytes | _Id20) -> int:
        """XOR metric of Kademlia (BEP 5, "distance metric")."""
        raw = other.raw if isinstance(other, _Id20) else other
        return int.from_bytes(self.raw, "big") ^ int.from_bytes(raw, "big")


@dataclass(frozen=True, slots=True, order=True)
class BlockRef:
    """One request-sized span of a piece: ``piece`` index, byte offset ``begin``, ``length``."""

    piece: int
    begin: int
    length: int

    @property
    def block_index(self) -> int:
        return self.begin // BLOCK_SIZE


@functools.lru_cache(maxsize=4096)
def dialable_host(host: str) -> bool:
    """Whether an address learned from the network (tracker, DHT, PEX) may be contacted.

    Never an unspecified address (``0.0.0.0`` / ``::`` reach this host), a multicast group or the
    IPv4 broadcast address: a hostile reply must not aim our connections or queries there.  Host
    names are refused too (peers are given as IP literals).  Loopback and private ranges are allowed.
    """
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    if ip.is_unspecified or ip.is_multicast:
        return False
    return not (ip.version == 4 and ip == ipaddress.IPv4Address("255.255.255.255"))


@dataclass(frozen=True, slots=True, order=True)
class PeerAddress:
    """A peer's transport address; ``host`` is an IPv4 or IPv6 literal (no brackets)."""

    host: str
    port: int

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ConfigError(f"port out of range: {self.port}")

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, text: str) -> PeerAddress:
        """``HOST:PORT`` or ``[IPV6]:PORT``."""
        if text.startswith("["):
            host, sep, port = text[1:].partition("]:")
        else:
            host, sep, port = text.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ConfigError(f"not a HOST:PORT address: {text!r}")
        return cls(host, int(port))
