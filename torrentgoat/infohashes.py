"""A torrent's identities, level L0: the SHA-1 (v1) and SHA-256 (v2) info-hashes, as one typed pair.

BEP 3 names a torrent by SHA-1 over its bencoded ``info`` dictionary (:class:`~torrentgoat.primitives.InfoHash`,
20 bytes).  BEP 52 ("infohash") uses SHA-256 over the same bytes for ``meta version`` 2 and, "for some uses
as torrent identifier", truncates it to 20 bytes: in the peer handshake, tracker requests and the DHT.

:class:`InfoHashes` carries both, like libtorrent's ``info_hash_t``:

* a **v1** torrent has ``v1`` only, a **v2** torrent ``v2`` only, a **hybrid** torrent (BEP 52 "Upgrade
  Path": one ``info`` dictionary with both halves) has both -- two swarms, one content;
* :meth:`InfoHashes.swarm_ids` lists the 20-byte ids the torrent is known by on the wire, in the DHT and
  at trackers (one for v1 or v2, two for a hybrid);
* :attr:`InfoHashes.primary` is the one 20-byte id code that handles a single swarm keeps using: the
  SHA-1 whenever there is one (so a v1 or hybrid torrent keeps exactly the identity it always had), the
  truncated SHA-256 for a v2-only torrent.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

from torrentgoat.errors import ConfigError, MagnetError
from torrentgoat.primitives import InfoHash

__all__ = ["FORMATS", "MULTIHASH_SHA256", "InfoHashV2", "InfoHashes", "TorrentFormat"]

TorrentFormat = Literal["v1", "v2", "hybrid"]

FORMATS: tuple[TorrentFormat, ...] = ("hybrid", "v1", "v2")
"""What :func:`torrentgoat.creation.create_torrent` can make (``format=``), the default first."""
"""Which BitTorrent metainfo format(s) a torrent follows."""

MULTIHASH_SHA256 = b"\x12\x20"
"""Multihash prefix of a 32-byte SHA-256 digest: function code 0x12, length 0x20 (BEP 52 magnets,
``xt=urn:btmh:1220<64 hex>``)."""


@dataclass(frozen=True, slots=True, order=True)
class InfoHashV2:
    """SHA-256 of the bencoded ``info`` dictionary of a ``meta version`` 2 torrent (BEP 52)."""

    raw: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.raw, bytes) or len(self.raw) != 32:
            raise ConfigError(f"v2 info-hash must be 32 bytes, got {self.raw!r}")

    @classmethod
    def of(cls, info_bytes: bytes) -> InfoHashV2:
        """SHA-256 over the exact bytes of an ``info`` dictionary (BEP 52 "infohash")."""
        return cls(hashlib.sha256(info_bytes).digest())

    @classmethod
    def from_hex(cls, text: str) -> InfoHashV2:
        """64 hex digits (case-insensitive)."""
        if len(text) != 64:
            raise MagnetError(f"hex v2 info-hash must be 64 characters, got {len(text)}: {text[:80]!r}")
        try:
            return cls(bytes.fromhex(text))
        except ValueError:
            raise MagnetError(f"v2 info-hash is not hex: {text[:80]!r}") from None

    @classmethod
    def from_multihash(cls, text: str) -> InfoHashV2:
        """A hex multihash as in ``xt=urn:btmh:``: ``1220`` then 64 hex digits (SHA-256, 32 bytes)."""
        if len(text) != 68 or text[:4] != "1220":
            raise MagnetError(f"btmh: expected 1220 followed by 64 hex digits (SHA-256), got {text[:80]!r}")
        return cls.from_hex(text[4:])

    @property
    def hex(self) -> str:
        return self.raw.hex()

    @property
    def multihash(self) -> str:
        """The hex multihash form used in ``xt=urn:btmh:``."""
        return (MULTIHASH_SHA256 + self.raw).hex()

    @property
    def truncated(self) -> InfoHash:
        """The first 20 bytes: the id of the v2 swarm in handshakes, trackers and the DHT (BEP 52)."""
        return InfoHash(self.raw[:20])

    def __str__(self) -> str:
        return self.raw.hex()

    def __repr__(self) -> str:
        return f"InfoHashV2({self.raw.hex()})"

    def __bytes__(self) -> bytes:
        return self.raw


@dataclass(frozen=True, slots=True, kw_only=True)
class InfoHashes:
    """The v1 (SHA-1) and v2 (SHA-256) info-hashes of one torrent; at least one is present."""

    v1: InfoHash | None = None
    v2: InfoHashV2 | None = None

    def __post_init__(self) -> None:
        if self.v1 is None and self.v2 is None:
            raise ConfigError("InfoHashes needs a v1 or a v2 info-hash")

    @classmethod
    def of(cls, info_bytes: bytes, *, v1: bool = True, v2: bool = False) -> InfoHashes:
        """Hash the exact ``info`` bytes for the formats the torrent declares."""
        return cls(
            v1=InfoHash(hashlib.sha1(info_bytes).digest()) if v1 else None,
            v2=InfoHashV2.of(info_bytes) if v2 else None,
        )

    @property
    def format(self) -> TorrentFormat:
        if self.v1 is not None and self.v2 is not None:
            return "hybrid"
        return "v1" if self.v1 is not None else "v2"

    @property
    def has_v1(self) -> bool:
        return self.v1 is not None

    @property
    def has_v2(self) -> bool:
        return self.v2 is not None

    @property
    def primary(self) -> InfoHash:
        """The SHA-1 when there is one, else the truncated SHA-256 (see the module docstring)."""
        if self.v1 is not None:
            return self.v1
        assert self.v2 is not None
        return self.v2.truncated

    def swarm_ids(self) -> tuple[InfoHash, ...]:
        """Every 20-byte id this torrent is known by on the wire, v1 first (two for a hybrid)."""
        ids: list[InfoHash] = []
        if self.v1 is not None:
            ids.append(self.v1)
        if self.v2 is not None:
            ids.append(self.v2.truncated)
        return tuple(ids)

    def matches(self, swarm_id: bytes | InfoHash) -> bool:
        """Whether a 20-byte id from a handshake, tracker or DHT names this torrent (either swarm)."""
        raw = swarm_id.raw if isinstance(swarm_id, InfoHash) else swarm_id
        return any(i.raw == raw for i in self.swarm_ids())

    def __str__(self) -> str:
        parts = []
        if self.v1 is not None:
            parts.append(f"v1 {self.v1.hex}")
        if self.v2 is not None:
            parts.append(f"v2 {self.v2.hex}")
        return ", ".join(parts)
