"""DHT security extension (BEP 42): node ids derived from the node's external IP address.

The first 21 bits of a node id are the top bits of ``crc32c((ip & mask) | r << 29)`` (IPv4 mask
``030f3fff``, IPv6 mask ``0103070f1f3f7fff`` over the first 8 bytes), the last byte is ``r`` (a random
byte; its low 3 bits enter the hash).  Local addresses (10/8, 172.16/12, 192.168/16, 169.254/16,
127/8 and their IPv6 counterparts) are exempt.  Nodes learn their external address from the ``ip``
field other nodes put in their replies; :class:`ExternalIPVoter` counts those votes, one per voter.
"""

from __future__ import annotations

import functools
import ipaddress
import random
from collections import OrderedDict

__all__ = ["ExternalIPVoter", "crc32c", "is_exempt", "node_id_matches", "secure_node_id"]

_V4_MASK = bytes.fromhex("030f3fff")
_V6_MASK = bytes.fromhex("0103070f1f3f7fff")


def _make_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _make_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), the checksum BEP 42 specifies."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


@functools.lru_cache(maxsize=4096)
def is_exempt(ip: str) -> bool:
    """BEP 42: local-network and loopback addresses are not subject to the id restriction."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return True
    return address.is_private or address.is_loopback or address.is_link_local or address.is_unspecified


def _prefix(ip: str, r: int) -> int:
    packed = ipaddress.ip_address(ip).packed
    if len(packed) == 4:
        masked = bytearray(b & m for b, m in zip(packed, _V4_MASK, strict=True))
    else:
        masked = bytearray(b & m for b, m in zip(packed[:8], _V6_MASK, strict=True))
    masked[0] |= (r & 7) << 5
    return crc32c(bytes(masked))


def secure_node_id(ip: str, rng: random.Random, r: int | None = None) -> bytes:
    """A BEP 42 node id for external address ``ip`` (``r`` random unless given)."""
    if r is None:
        r = rng.randrange(256)
    crc = _prefix(ip, r)
    head = bytes([(crc >> 24) & 0xFF, (crc >> 16) & 0xFF, ((crc >> 8) & 0xF8) | rng.randrange(8)])
    return head + rng.randbytes(16) + bytes([r & 0xFF])


def node_id_matches(ip: str, node_id: bytes) -> bool:
    """Whether ``node_id`` is valid for ``ip`` under BEP 42 (exempt addresses always match)."""
    if is_exempt(ip):
        return True
    crc = _prefix(ip, node_id[19])
    return (
        node_id[0] == (crc >> 24) & 0xFF
        and node_id[1] == (crc >> 16) & 0xFF
        and node_id[2] & 0xF8 == (crc >> 8) & 0xF8
    )


class ExternalIPVoter:
    """Counts ``ip`` votes from distinct nodes (bounded); the leader needs ``min_votes`` voters."""

    def __init__(self, *, min_votes: int = 3, max_voters: int = 256) -> None:
        self.min_votes = min_votes
        self.max_voters = max_voters
        self._votes: OrderedDict[object, str] = OrderedDict()

    def vote(self, voter: object, ip: str) -> None:
        self._votes.pop(voter, None)
        self._votes[voter] = ip
        while len(self._votes) > self.max_voters:
            self._votes.popitem(last=False)

    @property
    def external_ip(self) -> str | None:
        counts: dict[str, int] = {}
        for ip in self._votes.values():
            counts[ip] = counts.get(ip, 0) + 1
        if not counts:
            return None
        ip, count = max(counts.items(), key=lambda item: item[1])
        return ip if count >= self.min_votes else None
