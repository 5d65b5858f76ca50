"""DHT operations (BEP 5, BEP 44): the transition table, one operation's state, its queries and its end.

An operation is what :class:`~torrentgoat.dht.engine.DHTEngine` returns an id for: a ping, or an
iterative lookup (:mod:`torrentgoat.dht.lookup`) optionally followed by a *store phase* that writes
to the closest nodes that gave a token.  :data:`KINDS` is the engine's transition table: for each
kind, the query its lookup sends, the query its store phase sends and the event that completes it.
:class:`Operation` holds what the answers taught so far and builds each query and the completion
event; the engine decides when (it owns sockets-free time, the routing table and the pending queries).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torrentgoat.bencode import BValue
from torrentgoat.dht import krpc
from torrentgoat.dht.events import (
    AnnounceCompleted,
    BootstrapCompleted,
    Event,
    GetItemCompleted,
    GetPeersCompleted,
    LookupStats,
    PutItemCompleted,
)
from torrentgoat.dht.items import ImmutableItem, MutableItem, immutable_target
from torrentgoat.dht.krpc import Addr
from torrentgoat.dht.lookup import Lookup
from torrentgoat.errors import DHTError, SignatureError

__all__ = ["KINDS", "Kind", "Operation"]


@dataclass(frozen=True, slots=True)
class Kind:
    """One row of the transition table."""

    query: str
    """The query the lookup sends (BEP 5 / BEP 44 method name)."""
    store: str | None
    """The query of the store phase, or None when the operation ends with its lookup."""
    completion: str
    """The event that ends the operation (``-`` for internal ones, which report nothing)."""


KINDS: dict[str, Kind] = {
    "ping": Kind("ping", None, "PingCompleted"),
    "bootstrap": Kind("find_node", None, "BootstrapCompleted"),
    "refresh": Kind("find_node", None, "-"),
    "get_peers": Kind("get_peers", None, "GetPeersCompleted"),
    "announce": Kind("get_peers", "announce_peer", "AnnounceCompleted"),
    "get_immutable": Kind("get", None, "GetItemCompleted"),
    "get_mutable": Kind("get", None, "GetItemCompleted"),
    "put_immutable": Kind("get", "put", "PutItemCompleted"),
    "put_mutable": Kind("get", "put", "PutItemCompleted"),
}
"""Operation kind -> (query its lookup sends, store phase, completion)."""


@dataclass(slots=True)
class Operation:
    """The state of one running operation of kind ``kind`` towards ``target``."""

    id: int
    kind: str
    target: bytes
    lookup: Lookup | None = None
    notify: bool = True
    """Whether the completion (and PeersFound) events are reported; internal operations are silent."""
    store_phase: bool = False
    store_pending: int = 0
    stored: int = 0
    errors: list[str] = field(default_factory=list)
    peers: dict[Addr, None] = field(default_factory=dict)
    item: ImmutableItem | MutableItem | None = None
    """The item found so far (for mutable items the highest valid ``seq``)."""
    port: int = 0
    implied_port: bool = False
    value: BValue | None = None
    """The value of a ``put_immutable``."""
    put_item: MutableItem | None = None
    """The signed item of a ``put_mutable``."""
    cas: int | None = None
    public_key: bytes = b""
    salt: bytes = b""
    routers: list[Addr] = field(default_factory=list)
    """Bootstrap routers still to try if the routing table's nodes do not answer."""
    ping_addr: Addr | None = None

    # -- queries ------------------------------------------------------------------------------------

    def lookup_query(self, t: bytes, *, node_id: bytes, ro: bool) -> krpc.Message:
        """The lookup query of this kind (``find_node``, ``get_peers`` or ``get``) with transaction ``t``."""
        method = KINDS[self.kind].query
        if method == "find_node":
            return krpc.FindNode(t=t, id=node_id, target=self.target, ro=ro)
        if method == "get_peers":
            return krpc.GetPeers(t=t, id=node_id, info_hash=self.target, ro=ro)
        return krpc.Get(t=t, id=node_id, target=self.target, ro=ro)

    def store_query(self, t: bytes, *, token: bytes, node_id: bytes, ro: bool) -> krpc.Message:
        """The store-phase query (``announce_peer`` or ``put``) with a node's write ``token``."""
        if self.kind == "announce":
            return krpc.AnnouncePeer(
                t=t,
                id=node_id,
                info_hash=self.target,
                port=self.port or 1,
                token=token,
                implied_port=self.implied_port,
                ro=ro,
            )
        item = self.put_item
        if item is not None:
            return krpc.Put(
                t=t,
                id=node_id,
                token=token,
                v=item.value,
                k=item.public_key,
                sig=item.signature,
                seq=item.seq,
                salt=item.salt,
                cas=self.cas,
                ro=ro,
            )
        return krpc.Put(t=t, id=node_id, token=token, v=self.value if self.value is not None else b"", ro=ro)

    # -- what answers teach -------------------------------------------------------------------------

    def add_peers(self, values: tuple[Addr, ...], limit: int) -> tuple[Addr, ...]:
        """Record peers from a ``get_peers`` answer, keeping at most ``limit``; the new ones."""
        room = limit - len(self.peers)
        new = [v for v in values if v not in self.peers][: max(room, 0)]
        self.peers.update(dict.fromkeys(new))
        return tuple(new)

    def accept_immutable(self, value: BValue) -> bool:
        """Keep ``value`` if it hashes to the target (BEP 44); whether it did."""
        if immutable_target(value) != self.target:
            return False
        self.item = ImmutableItem(value=value)
        return True

    def accept_mutable(self, r: krpc.Response) -> None:
        """Keep the answer's mutable item if it is ours, verifies, and has the highest ``seq`` so far."""
        if r.k != self.public_key or r.sig is None or r.seq is None or r.v is None:
            return
        item = MutableItem(public_key=r.k, seq=r.seq, value=r.v, signature=r.sig, salt=self.salt)
        try:
            item.verify()
        except (SignatureError, DHTError):
            return
        if not isinstance(self.item, MutableItem) or item.seq > self.item.seq:
            self.item = item

    def newer_item_stored(self) -> str | None:
        """Why a ``put_mutable`` must not store: a higher ``seq`` was found during its lookup."""
        item = self.put_item
        if (
            self.kind == "put_mutable"
            and item is not None
            and isinstance(self.item, MutableItem)
            and self.item.seq > item.seq
        ):
            return f"a newer item is already stored (seq {self.item.seq} > {item.seq})"
        return None

    # -- completion ---------------------------------------------------------------------------------

    def stats(self) -> LookupStats:
        lk = self.lookup
        if lk is None:
            return LookupStats(queries=0, responses=0, rounds=0)
        return LookupStats(queries=lk.queries, responses=lk.responses, rounds=lk.rounds)

    def lookup_completed(self, nodes: int) -> Event | None:
        """The event ending an operation without store phase once its lookup is done (``nodes``:
        the routing table's size); None for a ``refresh``."""
        kind = self.kind
        if kind == "bootstrap":
            return BootstrapCompleted(op=self.id, nodes=nodes, stats=self.stats())
        if kind == "get_peers":
            return GetPeersCompleted(
                op=self.id, info_hash=self.target, peers=tuple(self.peers), stats=self.stats()
            )
        if kind in ("get_immutable", "get_mutable"):
            return GetItemCompleted(op=self.id, target=self.target, item=self.item, stats=self.stats())
        return None

    def store_completed(self) -> Event:
        """The event ending an operation once its store phase has no query left in flight."""
        if self.kind == "announce":
            return AnnounceCompleted(
                op=self.id,
                info_hash=self.target,
                peers=tuple(self.peers),
                stored=self.stored,
                stats=self.stats(),
            )
        if self.stored == 0 and not self.errors:
            self.errors.append("no DHT node returned a write token")
        return PutItemCompleted(
            op=self.id,
            target=self.target,
            stored=self.stored,
            errors=tuple(self.errors),
            stats=self.stats(),
        )
