"""Answering queries (BEP 5 "Queries", BEP 44 "get"/"put"): one reply per query, from the stores.

:class:`Responder` owns the write tokens, the peer store and the item store; the engine hands it each
decoded query with the current node id and routing table and sends back what it returns.  Replies
carry at most ``k`` nodes and ``max_values_per_response`` peers, so they stay small (no
amplification); a query that breaks a rule gets a KRPC error (203 bad token, BEP 44 codes 205-302).
"""

from __future__ import annotations

import random

from torrentgoat import bencode
from torrentgoat.dht import krpc
from torrentgoat.dht.config import DHTConfig
from torrentgoat.dht.item_store import ItemStore
from torrentgoat.dht.items import ImmutableItem, MutableItem, immutable_target
from torrentgoat.dht.krpc import Addr, NodeInfo
from torrentgoat.dht.peer_store import PeerStore
from torrentgoat.dht.routing import RoutingTable
from torrentgoat.dht.tokens import TokenManager
from torrentgoat.errors import KRPCError

__all__ = ["Responder"]


class Responder:
    """Builds the reply to one query; keeps the state replies depend on (tokens, peers, items)."""

    def __init__(self, *, config: DHTConfig, rng: random.Random, now: float, ipv6: bool) -> None:
        self.config = config
        self.rng = rng
        self.ipv6 = ipv6
        self.tokens = TokenManager(rng, now, rotate_interval=config.token_rotation)
        self.peer_store = PeerStore(
            ttl=config.peer_ttl,
            max_info_hashes=config.max_info_hashes,
            max_peers=config.max_peers_per_info_hash,
        )
        self.item_store = ItemStore(ttl=config.item_ttl, max_items=config.max_items)

    def expire(self, now: float) -> None:
        self.tokens.rotate_if_due(now)
        self.peer_store.expire(now)
        self.item_store.expire(now)

    def _nodes(
        self, table: RoutingTable, target: bytes, now: float
    ) -> tuple[tuple[NodeInfo, ...], tuple[NodeInfo, ...]]:
        """``(nodes, nodes6)``: only the family of our socket is known to us (BEP 32)."""
        nodes = tuple(n.info() for n in table.closest(target, self.config.k, now))
        return ((), nodes) if self.ipv6 else (nodes, ())

    def answer(
        self, q: krpc.Query, addr: Addr, now: float, *, node_id: bytes, table: RoutingTable
    ) -> krpc.Message:
        self.tokens.rotate_if_due(now)
        me = node_id
        match q:
            case krpc.Ping(t=t):
                return krpc.Response(t=t, id=me)
            case krpc.FindNode(t=t, target=target):
                n4, n6 = self._nodes(table, target, now)
                return krpc.Response(t=t, id=me, nodes=n4, nodes6=n6)
            case krpc.GetPeers(t=t, info_hash=info_hash):
                values = self.peer_store.get(info_hash, now, self.rng, self.config.max_values_per_response)
                values = [v for v in values if (":" in v[0]) == self.ipv6]
                n4, n6 = self._nodes(table, info_hash, now)
                return krpc.Response(
                    t=t,
                    id=me,
                    token=self.tokens.token_for(addr[0]),
                    values=tuple(values),
                    nodes=n4,
                    nodes6=n6,
                )
            case krpc.AnnouncePeer(t=t):
                if not self.tokens.check(q.token, addr[0]):
                    return krpc.Error(t=t, code=203, message=b"invalid token")
                port = addr[1] if q.implied_port else q.port
                self.peer_store.announce(q.info_hash, (addr[0], port), now)
                return krpc.Response(t=t, id=me)
            case krpc.Get(t=t, target=target):
                token = self.tokens.token_for(addr[0])
                item = self.item_store.get(target, now)
                n4, n6 = self._nodes(table, target, now)
                if isinstance(item, ImmutableItem):
                    return krpc.Response(t=t, id=me, token=token, v=item.value, nodes=n4, nodes6=n6)
                if isinstance(item, MutableItem) and (q.seq is None or item.seq > q.seq):
                    return krpc.Response(
                        t=t,
                        id=me,
                        token=token,
                        v=item.value,
                        k=item.public_key,
                        sig=item.signature,
                        seq=item.seq,
                        nodes=n4,
                        nodes6=n6,
                    )
                if isinstance(item, MutableItem):
                    return krpc.Response(t=t, id=me, token=token, seq=item.seq, nodes=n4, nodes6=n6)
                return krpc.Response(t=t, id=me, token=token, nodes=n4, nodes6=n6)
            case krpc.Put():
                return self._put(q, addr, now, me)
        raise AssertionError(f"unhandled query {q!r}")  # pragma: no cover - Query is a closed union

    def _put(self, q: krpc.Put, addr: Addr, now: float, me: bytes) -> krpc.Message:
        """BEP 44 ``put``: the token must have been issued to this IP; then the store's rules apply."""
        if not self.tokens.check(q.token, addr[0]):
            return krpc.Error(t=q.t, code=203, message=b"invalid token")
        try:
            if q.k is None:
                encoded = bencode.encode(q.v)
                self.item_store.put_immutable(q.v, encoded, immutable_target(q.v), now)
            else:
                item = MutableItem(
                    public_key=q.k, seq=q.seq or 0, value=q.v, signature=q.sig or b"", salt=q.salt
                )
                self.item_store.put_mutable(item, q.cas, now)
        except KRPCError as exc:
            return krpc.Error(t=q.t, code=exc.code, message=str(exc)[:100].encode())
        return krpc.Response(t=q.t, id=me)
