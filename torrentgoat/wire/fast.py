"""BEP 6 allowed-fast set: the canonical pieces a peer may request from us while choked (level L2)."""

from __future__ import annotations

import hashlib
import ipaddress

from torrentgoat.primitives import InfoHash

__all__ = ["allowed_fast_set"]


def allowed_fast_set(ip: str, info_hash: InfoHash, num_pieces: int, k: int = 10) -> list[int]:
    """BEP 6 "Allowed Fast" canonical algorithm for an IPv4 peer.

    The top 24 bits of the address (so peers in one /24 share the set) followed by the info-hash
    are hashed with SHA-1 repeatedly; each 20-byte digest yields five big-endian 32-bit words taken
    modulo the piece count, skipping duplicates, until ``k`` pieces are chosen.  BEP 6 defines the
    algorithm for IPv4 only; IPv6 peers get an empty set here.  At most ``num_pieces`` pieces.
    """
    address = ipaddress.ip_address(ip)
    if address.version != 4 or num_pieces <= 0:
        return []
    k = min(k, num_pieces)
    masked = (int(address) & 0xFFFFFF00).to_bytes(4, "big")
    x = masked + info_hash.raw
    chosen: list[int] = []
    while len(chosen) < k:
        x = hashlib.sha1(x).digest()
        for i in range(5):
            if len(chosen) >= k:
                break
            index = int.from_bytes(x[i * 4 : i * 4 + 4], "big") % num_pieces
            if index not in chosen:
                chosen.append(index)
    return chosen
