"""Events the DHT engine reports through ``next_event()``: one frozen dataclass per notification.

Every operation started on :class:`~torrentgoat.dht.engine.DHTEngine` returns an ``op`` id and ends
with exactly one ``...Completed`` event carrying that id.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from torrentgoat.dht.items import ImmutableItem, MutableItem
from torrentgoat.dht.krpc import Addr

__all__ = [
    "AnnounceCompleted",
    "BootstrapCompleted",
    "Event",
    "GetItemCompleted",
    "GetPeersCompleted",
    "LookupStats",
    "PeersFound",
    "PingCompleted",
    "PutItemCompleted",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class LookupStats:
    """Cost of one iterative lookup: queries sent, answers received, hop rounds reached."""

    queries: int
    responses: int
    rounds: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PeersFound:
    """Peers newly returned by a node during a ``get_peers`` lookup (more may follow)."""

    op: int
    info_hash: bytes
    peers: tuple[Addr, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class BootstrapCompleted:
    op: int
    nodes: int
    """Routing-table size once the lookup for our own id converged."""
    stats: LookupStats


@dataclass(frozen=True, slots=True, kw_only=True)
class GetPeersCompleted:
    op: int
    info_hash: bytes
    peers: tuple[Addr, ...]
    stats: LookupStats


@dataclass(frozen=True, slots=True, kw_only=True)
class AnnounceCompleted:
    op: int
    info_hash: bytes
    peers: tuple[Addr, ...]
    stored: int
    """How many of the closest nodes acknowledged our ``announce_peer``."""
    stats: LookupStats


@dataclass(frozen=True, slots=True, kw_only=True)
class GetItemCompleted:
    op: int
    target: bytes
    item: ImmutableItem | MutableItem | None
    """The item (for mutable items the highest valid ``seq`` seen), or None if no node had it."""
    stats: LookupStats


@dataclass(frozen=True, slots=True, kw_only=True)
class PutItemCompleted:
    op: int
    target: bytes
    stored: int
    errors: tuple[str, ...]
    """Refusals from nodes (or our own refusal, e.g. a newer seq already stored)."""
    stats: LookupStats


@dataclass(frozen=True, slots=True, kw_only=True)
class PingCompleted:
    op: int
    addr: Addr
    node_id: bytes | None
    """None when the node did not answer in time."""


Event: TypeAlias = (
    PeersFound
    | BootstrapCompleted
    | GetPeersCompleted
    | AnnounceCompleted
    | GetItemCompleted
    | PutItemCompleted
    | PingCompleted
)
