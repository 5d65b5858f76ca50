"""Mainline DHT, level L2 (pure, sans-IO): BEP 5 KRPC and Kademlia, BEP 32 IPv6, BEP 42, BEP 43, BEP 44, BEP 46.

Modules: :mod:`.krpc` (codec), :mod:`.routing` (k-buckets), :mod:`.lookup` (iterative lookups),
:mod:`.tokens`, :mod:`.peer_store`, :mod:`.items` (BEP 44 signatures, BEP 46 values),
:mod:`.item_store`, :mod:`.responder` (answers queries), :mod:`.config`, :mod:`.ratelimit`, :mod:`.security` (BEP 42 node ids), :mod:`.events`,
:mod:`.transactions` (our pending queries), :mod:`.operations` (the transition table, queries and completions),
:mod:`.engine` (:class:`DHTEngine`).
The asyncio driver is :mod:`torrentgoat.aio.dht`.
"""

from torrentgoat.dht.engine import DHTConfig, DHTEngine, DHTStats
from torrentgoat.dht.items import (
    ImmutableItem,
    MutableItem,
    SigningKey,
    btpk_magnet,
    info_hash_value,
    parse_info_hash_value,
    sign_mutable,
)
from torrentgoat.dht.krpc import Addr, NodeInfo

__all__ = [
    "Addr",
    "DHTConfig",
    "DHTEngine",
    "DHTStats",
    "ImmutableItem",
    "MutableItem",
    "NodeInfo",
    "SigningKey",
    "btpk_magnet",
    "info_hash_value",
    "parse_info_hash_value",
    "sign_mutable",
]
