"""The sans-IO DHT node (BEP 5, BEP 32 on IPv6 sockets, BEP 42 ids, BEP 43 read-only, BEP 44 items).

:class:`DHTEngine` never touches a socket, a clock or the global RNG::

    engine = DHTEngine(rng=random.Random(1), now=0.0)
    op = engine.bootstrap([("127.0.0.1", 6881)], now)
    for data, addr in engine.datagrams_to_send(now): ...      # send them
    engine.receive_datagram(data, addr, now)                   # feed what arrives
    engine.handle_timer(now) when now >= engine.get_timer()
    while (event := engine.next_event()) is not None: ...      # BootstrapCompleted(op=op, ...)

Operations (``bootstrap``, ``get_peers``, ``announce``, ``get_immutable``, ``put_immutable``,
``get_mutable``, ``put_mutable``, ``ping``) return an id; each ends with one completion event
(:mod:`torrentgoat.dht.events`).  The engine's transition table is
:data:`~torrentgoat.dht.operations.KINDS`: for each operation kind, the query its lookup sends, what
the store phase sends, and the completion event.

The engine routes datagrams and time between its parts, one job each: the routing table
(:mod:`.routing`), our pending queries (:mod:`.transactions`), the operations and the queries and
events they build (:mod:`.operations`), iterative lookups (:mod:`.lookup`), answers to others'
queries (:class:`~torrentgoat.dht.responder.Responder`), rate limiting (:mod:`.ratelimit`) and BEP 42
(:mod:`.security`).  Configuration and counters live in :mod:`torrentgoat.dht.config`.

Hostile input: datagrams are rate-limited per source (per IP for public addresses) before decoding;
malformed queries get a KRPC error only when a transaction id could be read; responses and errors are
never answered; responses are matched to pending transactions by id *and* source address; every table
(routing, peers, items, pending transactions, operations, rate-limit sources) is capped.  Routing-table
hygiene: a node that only queried us is pinged before it may enter the table, a new node whose id
breaks BEP 42 for its public address never does, and one public IP holds at most
``max_nodes_per_ip`` nodes.  Answers to an address that never answered us are trimmed to
``max_amplification`` times the query's size (:mod:`.amplification`).
"""

from __future__ import annotations

import dataclasses
import functools
import random
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence

from torrentgoat import bencode
from torrentgoat.bencode import BValue
from torrentgoat.dht import krpc
from torrentgoat.dht.amplification import fit_answer
from torrentgoat.dht.config import DHTConfig, DHTStats
from torrentgoat.dht.events import Event, PeersFound, PingCompleted
from torrentgoat.dht.items import MAX_VALUE_SIZE, MutableItem, immutable_target, mutable_target
from torrentgoat.dht.krpc import Addr, MalformedKRPC, NodeInfo
from torrentgoat.dht.lookup import Lookup
from torrentgoat.dht.operations import KINDS, Operation
from torrentgoat.dht.peer_store import PeerStore
from torrentgoat.dht.ratelimit import Budget, RateLimiter
from torrentgoat.dht.responder import Responder
from torrentgoat.dht.routing import NodeState, RoutingNode, RoutingTable
from torrentgoat.dht.security import ExternalIPVoter, is_exempt, node_id_matches, secure_node_id
from torrentgoat.dht.transactions import PendingQuery, TransactionTable
from torrentgoat.errors import DHTError, LocalProtocolError
from torrentgoat.primitives import dialable_host

__all__ = ["DHTConfig", "DHTEngine", "DHTStats"]


class DHTEngine:
    """One DHT node: routing table, lookups, stores.  See the module docstring for the loop."""

    def __init__(
        self,
        *,
        rng: random.Random,
        now: float,
        config: DHTConfig | None = None,
        node_id: bytes | None = None,
        ipv6: bool = False,
    ) -> None:
        self.config = cfg = config or DHTConfig()
        self.rng = rng
        self.ipv6 = ipv6
        self.node_id = node_id if node_id is not None else rng.randbytes(20)
        if len(self.node_id) != 20:
            raise DHTError(f"node id must be 20 bytes, got {len(self.node_id)}")
        self.table = RoutingTable(
            self.node_id,
            k=cfg.k,
            now=now,
            good_interval=cfg.good_interval,
            max_failures=cfg.max_failures,
            max_per_ip=cfg.max_nodes_per_ip,
        )
        self.responder = Responder(config=cfg, rng=rng, now=now, ipv6=ipv6)
        self.limiter = RateLimiter(
            rate=cfg.rate_limit,
            burst=cfg.rate_burst,
            public_rate=cfg.public_rate_limit,
            public_burst=cfg.public_rate_burst,
            per_ip=cfg.rate_limit_per_ip,
            max_sources=cfg.max_rate_sources,
        )
        self.query_budget = Budget(cfg.max_query_rate)
        """Answers to public sources per second, all together."""
        self.stats = DHTStats()
        self.ip_voter = ExternalIPVoter()
        self._out: list[tuple[bytes, Addr]] = []
        self._events: deque[Event] = deque()
        self._pending = TransactionTable(first_tid=rng.randrange(1 << 16))
        self._ops: dict[int, Operation] = {}
        self._starved: set[int] = set()
        self._pinging: set[Addr] = set()
        self._verifying: set[Addr] = set()
        self._verified: OrderedDict[str, None] = OrderedDict()
        """IPs that answered a query of ours (least recently seen first)."""
        self._next_op = 1
        self._next_maintenance = now + cfg.maintenance_interval

    # -- the sans-IO surface ------------------------------------------------------------------------

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Addr]]:
        out, self._out = self._out, []
        return out

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float:
        when = self._pending.next_timer()
        return self._next_maintenance if when is None else min(self._next_maintenance, when)

    def handle_timer(self, now: float) -> None:
        while (p := self._pending.pop_slow(now)) is not None:
            op = self._ops.get(p.op)
            if op is not None and op.lookup is not None and not p.store:
                op.lookup.slow(p.addr)
                self._advance(op, now)
        while (p := self._pending.pop_expired(now)) is not None:
            self.stats.timeouts += 1
            self.table.failed_addr(p.addr, now)
            op = self._ops.get(p.op)
            if op is not None:
                self._op_failed(op, p, "timeout", now)
        if now >= self._next_maintenance:
            self._maintenance(now)
        self._feed_starved(now)

    def receive_datagram(self, data: bytes, addr: Addr, now: float) -> None:
        """Handle one datagram from ``addr``; never raises for bad input."""
        self.stats.datagrams_received += 1
        if not self.limiter.allow(addr, now):
            self.stats.rate_limited += 1
            return
        if b"1:y1:q" in data and self.limiter.is_public(addr[0]) and not self.query_budget.take(now):
            self.stats.rate_limited += 1  # a query (cheap test before decoding) over the global budget
            return
        try:
            message = krpc.decode(data)
        except MalformedKRPC as exc:
            self.stats.malformed += 1
            if exc.t is not None and not self.config.read_only:
                error = krpc.Error(t=exc.t, code=exc.code, message=str(exc)[:100].encode())
                self._reply(error, addr, len(data))
            return
        if "%" in addr[0]:
            return  # a scoped (link-local) IPv6 source cannot be shared as compact node info (BEP 32)
        try:
            match message:
                case krpc.Response():
                    self._on_response(message, addr, now)
                case krpc.Error():
                    self._on_error(message, addr, now)
                case _:
                    self.stats.queries_received += 1
                    if not self.config.read_only:
                        self._on_query(message, addr, now, len(data))
        except MalformedKRPC:
            self.stats.malformed += 1  # e.g. an address that cannot be encoded: drop the packet
        self._feed_starved(now)

    # -- operations ---------------------------------------------------------------------------------

    def _new_op(self, kind: str, target: bytes, *, notify: bool = True) -> Operation:
        if kind not in KINDS:
            raise LocalProtocolError(f"unknown DHT operation {kind!r}")
        if len(self._ops) >= self.config.max_operations:
            raise DHTError(f"too many DHT operations running ({len(self._ops)})")
        op = Operation(self._next_op, kind, target, notify=notify)
        self._next_op += 1
        self._ops[op.id] = op
        return op

    def _new_lookup(self, target: bytes) -> Lookup:
        cfg = self.config
        return Lookup(
            target,
            own_id=self.node_id,
            k=cfg.k,
            alpha=cfg.alpha,
            max_rounds=cfg.max_rounds,
            max_queries=cfg.max_lookup_queries,
        )

    def _start_lookup(
        self, op: Operation, now: float, seeds: Iterable[tuple[bytes | None, Addr]] = ()
    ) -> int:
        op.lookup = lookup = self._new_lookup(op.target)
        for node in self.table.closest(op.target, self.config.k * 2, now):
            lookup.add(node.id, node.addr, 0)
        for node_id, addr in seeds:
            lookup.add(node_id, addr, 0)
        self._advance(op, now)
        return op.id

    def bootstrap(self, routers: Sequence[Addr], now: float) -> int:
        """Find nodes close to our own id (BEP 5), from the routing table (node cache) if it has
        nodes, falling back to ``routers`` when none of those answer."""
        op = self._new_op("bootstrap", self.node_id)
        op.routers = [r for r in routers if (":" in r[0]) == self.ipv6]
        if len(self.table) == 0:
            seeds = [(None, r) for r in op.routers]
            op.routers = []
            return self._start_lookup(op, now, seeds)
        return self._start_lookup(op, now)

    def get_peers(self, info_hash: bytes, now: float) -> int:
        """Look up peers for ``info_hash`` (BEP 5 ``get_peers``); PeersFound events as they come."""
        return self._start_lookup(self._new_op("get_peers", info_hash), now)

    def announce(self, info_hash: bytes, port: int, now: float, *, implied_port: bool = False) -> int:
        """``get_peers`` then ``announce_peer`` to the k closest nodes that gave a token (BEP 5).

        Peers met on the way are reported (PeersFound) and listed in AnnounceCompleted."""
        if not implied_port and not 0 < port < 65536:
            raise DHTError(f"announce port out of range: {port}")
        op = self._new_op("announce", info_hash)
        op.port, op.implied_port = port, implied_port
        return self._start_lookup(op, now)

    def get_immutable(self, target: bytes, now: float) -> int:
        """BEP 44 ``get`` of the immutable item whose value hashes to ``target``."""
        return self._start_lookup(self._new_op("get_immutable", target), now)

    def put_immutable(self, value: BValue, now: float) -> int:
        """BEP 44 ``put`` of an immutable item to the k closest nodes of SHA-1(bencode(value))."""
        encoded = bencode.encode(value)
        if len(encoded) > MAX_VALUE_SIZE:
            raise DHTError(f"item value bencodes to {len(encoded)} bytes; BEP 44 allows {MAX_VALUE_SIZE}")
        op = self._new_op("put_immutable", immutable_target(value))
        op.value = value
        return self._start_lookup(op, now)

    def get_mutable(self, public_key: bytes, salt: bytes, now: float) -> int:
        """BEP 44 ``get`` of a mutable item; the highest verified ``seq`` wins."""
        op = self._new_op("get_mutable", mutable_target(public_key, salt))
        op.public_key, op.salt = public_key, salt
        return self._start_lookup(op, now)

    def put_mutable(self, item: MutableItem, now: float, *, cas: int | None = None) -> int:
        """BEP 44 ``put`` of a signed item (see :func:`~torrentgoat.dht.items.sign_mutable`)."""
        item.verify()
        op = self._new_op("put_mutable", item.target)
        op.put_item, op.cas, op.public_key, op.salt = item, cas, item.public_key, item.salt
        return self._start_lookup(op, now)

    def ping(self, addr: Addr, now: float, *, notify: bool = True) -> int:
        """Ping ``addr``; an answer puts the node in the routing table (PingCompleted if ``notify``)."""
        op = self._new_op("ping", b"", notify=notify)
        op.ping_addr = addr
        self._send_query(
            lambda t: krpc.Ping(t=t, id=self.node_id, ro=self.config.read_only), addr, op.id, now
        )
        return op.id

    def add_node(self, addr: Addr, now: float) -> None:
        """A node learned elsewhere (BEP 5 ``port`` message): ping it, keep it if it answers."""
        if (":" in addr[0]) != self.ipv6 or len(self._ops) >= self.config.max_operations:
            return
        self.ping(addr, now, notify=False)

    def cancel(self, op_id: int) -> None:
        """Forget an operation; its answers are then ignored and no event is emitted."""
        self._ops.pop(op_id, None)
        self._starved.discard(op_id)

    # -- BEP 42 ----------------------------------------------------------------------------------------

    @property
    def external_ip(self) -> str | None:
        """Our address as enough other nodes report it (BEP 42 ``ip`` field), or None."""
        return self.ip_voter.external_ip

    def _vote_external_ip(self, voter: Addr, ip: str, now: float) -> None:
        if (":" in ip) != self.ipv6:
            return
        self.ip_voter.vote(voter[0], ip)
        external = self.ip_voter.external_ip
        if (
            self.config.secure_node_id
            and external is not None
            and not is_exempt(external)
            and not node_id_matches(external, self.node_id)
        ):
            self.change_node_id(secure_node_id(external, self.rng), now)

    def change_node_id(self, node_id: bytes, now: float) -> None:
        """Take a new node id: the routing table is rebuilt around it and refilled by a lookup."""
        old = self.table
        self.node_id = node_id
        self.table = RoutingTable(
            node_id,
            k=old.k,
            now=now,
            good_interval=old.good_interval,
            max_failures=old.max_failures,
            max_per_ip=old.max_per_ip,
        )
        for node in old:
            if node.id == node_id:
                continue
            self.table.heard_from(node.id, node.addr, now, responded=False)
            copy = self.table.get(node.id)
            if copy is not None:
                copy.last_response, copy.last_query, copy.failures = (
                    node.last_response,
                    node.last_query,
                    node.failures,
                )
        if len(self._ops) < self.config.max_operations:
            self._start_lookup(self._new_op("refresh", node_id, notify=False), now)

    # -- node cache ---------------------------------------------------------------------------------

    def export_nodes(self, now: float) -> list[NodeInfo]:
        """Routing-table nodes worth saving (good first, bad ones left out)."""
        nodes = [n for n in self.table if self.table.state(n, now) is not NodeState.BAD]
        nodes.sort(key=lambda n: self.table.state(n, now) is not NodeState.GOOD)
        return [n.info() for n in nodes]

    def import_nodes(self, nodes: Iterable[NodeInfo], now: float) -> None:
        """Seed the routing table with saved nodes (questionable until they answer)."""
        for n in nodes:
            if (":" in n.host) == self.ipv6:
                self.table.heard_from(n.id, n.addr, now, responded=False)

    # -- sending ------------------------------------------------------------------------------------

    def _reply(self, message: krpc.Message, addr: Addr, query_size: int) -> None:
        if isinstance(message, krpc.Error):
            self.stats.errors_sent += 1
        else:
            self.stats.responses_sent += 1
            if isinstance(message, krpc.Response):
                message = dataclasses.replace(message, ip=addr)  # BEP 42: tell the node its address
        factor = self.config.max_amplification
        if factor > 0 and not self.verified(addr[0]):
            message = fit_answer(message, int(factor * query_size))
        self._out.append((krpc.encode(message), addr))

    def verified(self, ip: str) -> bool:
        """Whether answers to ``ip`` may be larger than its queries (see ``max_amplification``): it
        answered a query of ours, or it is a local address (BEP 42's exempt ranges)."""
        return ip in self._verified or is_exempt(ip)

    def _mark_verified(self, ip: str) -> None:
        verified = self._verified
        verified.pop(ip, None)
        verified[ip] = None
        while len(verified) > self.config.max_verified_addresses:
            verified.popitem(last=False)

    def _admissible(self, node_id: bytes, ip: str) -> bool:
        """Whether a node new to us may enter the routing table (BEP 42 id, room for its IP)."""
        if self.config.enforce_node_id and not node_id_matches(ip, node_id):
            return False
        return self.table.ip_has_room(ip)

    def _verify(self, addr: Addr, now: float) -> None:
        """Ping a node that only queried us; its answer (if it really is at ``addr``) admits it."""
        if (
            addr in self._verifying
            or len(self._verifying) >= self.config.max_verify_pings
            or len(self._pending) >= self.config.max_pending
            or len(self._ops) >= self.config.max_operations
        ):
            return
        self._verifying.add(addr)
        self.ping(addr, now, notify=False)

    def _send_query(
        self,
        build: Callable[[bytes], krpc.Message],
        addr: Addr,
        op_id: int,
        now: float,
        *,
        store: bool = False,
    ) -> None:
        tid = self._pending.new_tid()
        message = build(tid)
        pending = PendingQuery(addr, op_id, now + self.config.query_timeout, store)
        if not store and self.config.slow_timeout < self.config.query_timeout:
            op = self._ops.get(op_id)
            if op is not None and op.lookup is not None:
                pending.slow_at = now + self.config.slow_timeout
        self._pending.add(tid, pending)
        self.stats.queries_sent += 1
        self._out.append((krpc.encode(message), addr))

    def _lookup_query(self, op: Operation, addr: Addr, now: float) -> None:
        build = functools.partial(op.lookup_query, node_id=self.node_id, ro=self.config.read_only)
        self._send_query(build, addr, op.id, now)

    def _ping_node(self, node: RoutingNode | None, now: float) -> None:
        """Ping a questionable node of a full bucket (BEP 5): it stays only if it answers."""
        if (
            node is not None
            and node.addr not in self._pinging
            and len(self._pending) < self.config.max_pending
            and len(self._ops) < self.config.max_operations
        ):
            self._pinging.add(node.addr)
            self.ping(node.addr, now, notify=False)

    # -- answering queries (BEP 5 / BEP 44 "queries") ------------------------------------------------

    def _on_query(self, q: krpc.Query, addr: Addr, now: float, size: int) -> None:
        if not q.ro:
            if q.id in self.table or not self.config.verify_new_nodes:
                if q.id in self.table or self._admissible(q.id, addr[0]):
                    self._ping_node(self.table.heard_from(q.id, addr, now, responded=False), now)
            elif self._admissible(q.id, addr[0]):
                self._verify(addr, now)
        answer = self.responder.answer(q, addr, now, node_id=self.node_id, table=self.table)
        self._reply(answer, addr, size)

    # -- answers to our queries ---------------------------------------------------------------------

    def _take_pending(self, t: bytes, addr: Addr) -> PendingQuery | None:
        p = self._pending.take(t, addr)
        if p is None:
            self.stats.unmatched += 1
        return p

    def _on_response(self, r: krpc.Response, addr: Addr, now: float) -> None:
        p = self._take_pending(r.t, addr)
        if p is None:
            return
        self.stats.responses_received += 1
        self._mark_verified(addr[0])
        if r.ip is not None:
            self._vote_external_ip(addr, r.ip[0], now)
        if r.id in self.table or self._admissible(r.id, addr[0]):
            self._ping_node(self.table.heard_from(r.id, addr, now, responded=True), now)
        op = self._ops.get(p.op)
        if op is None:
            return
        if p.store:
            op.store_pending -= 1
            op.stored += 1
            self._maybe_finish_store(op)
            return
        if op.kind == "ping":
            self._finish(op, PingCompleted(op=op.id, addr=addr, node_id=r.id))
            return
        lookup = op.lookup
        assert lookup is not None
        nodes = [n for n in (r.nodes6 if self.ipv6 else r.nodes) if dialable_host(n.host)]
        lookup.responded(addr, r.id, token=r.token, nodes=nodes)
        if r.values and op.kind in ("get_peers", "announce"):
            new = op.add_peers(r.values, self.config.max_peers_per_lookup)
            if new and op.notify:
                self._events.append(PeersFound(op=op.id, info_hash=op.target, peers=new))
        elif r.v is not None and op.kind == "get_immutable":
            if op.accept_immutable(r.v):
                self._lookup_done(op, now)  # BEP 44: an immutable item is final once found
                return
        elif r.v is not None and op.kind in ("get_mutable", "put_mutable"):
            op.accept_mutable(r)
        self._advance(op, now)

    def _on_error(self, e: krpc.Error, addr: Addr, now: float) -> None:
        p = self._take_pending(e.t, addr)
        if p is None:
            return
        self.stats.errors_received += 1
        op = self._ops.get(p.op)
        if op is not None:
            text = e.message.decode("utf-8", "replace")
            self._op_failed(op, p, f"{addr[0]}:{addr[1]} refused: {e.code} {text}", now)

    def _op_failed(self, op: Operation, p: PendingQuery, reason: str, now: float) -> None:
        if p.store:
            op.store_pending -= 1
            op.errors.append(reason)
            self._maybe_finish_store(op)
        elif op.kind == "ping":
            self._finish(op, PingCompleted(op=op.id, addr=p.addr, node_id=None))
        elif op.lookup is not None:
            op.lookup.failed(p.addr)
            self._advance(op, now)

    # -- lookup progress ----------------------------------------------------------------------------

    def _advance(self, op: Operation, now: float) -> None:
        lookup = op.lookup
        if lookup is None or op.store_phase or op.id not in self._ops:
            return
        if len(self._pending) >= self.config.max_pending:
            self._starved.add(op.id)
            return
        for c in lookup.next_queries():
            self._lookup_query(op, c.addr, now)
        if lookup.done:
            self._lookup_done(op, now)

    def _feed_starved(self, now: float) -> None:
        while self._starved and len(self._pending) < self.config.max_pending:
            op = self._ops.get(self._starved.pop())
            if op is not None:
                self._advance(op, now)

    def _lookup_done(self, op: Operation, now: float) -> None:
        lookup = op.lookup
        assert lookup is not None
        if op.kind == "bootstrap" and lookup.responses == 0 and op.routers:
            seeds: list[tuple[bytes | None, Addr]] = [(None, r) for r in op.routers]
            op.routers = []
            for s in seeds:
                lookup.add(*s, 0)
            self._advance(op, now)
            return
        if KINDS[op.kind].store is None:
            self._finish(op, op.lookup_completed(len(self.table)))
        else:
            self._store_phase(op, now)

    def _store_phase(self, op: Operation, now: float) -> None:
        lookup = op.lookup
        assert lookup is not None
        op.store_phase = True
        refused = op.newer_item_stored()
        if refused is not None:
            op.errors.append(refused)
            self._maybe_finish_store(op)
            return
        me, ro = self.node_id, self.config.read_only
        for c in lookup.closest_responded(with_token=True):
            build = functools.partial(op.store_query, token=c.token or b"", node_id=me, ro=ro)
            self._send_query(build, c.addr, op.id, now, store=True)
            op.store_pending += 1
        self._maybe_finish_store(op)

    def _maybe_finish_store(self, op: Operation) -> None:
        if op.store_pending <= 0:
            self._finish(op, op.store_completed())

    def _finish(self, op: Operation, event: Event | None) -> None:
        if self._ops.pop(op.id, None) is None:
            return
        if op.ping_addr is not None:
            self._pinging.discard(op.ping_addr)
            self._verifying.discard(op.ping_addr)
        self._starved.discard(op.id)
        if event is not None and op.notify:
            self._events.append(event)

    # -- maintenance (BEP 5 "Routing Table": refresh every 15 minutes) -----------------------------

    def _maintenance(self, now: float) -> None:
        cfg = self.config
        self._next_maintenance = now + cfg.maintenance_interval
        self.responder.expire(now)
        if len(self.table) == 0:
            return
        # BEP 5: questionable nodes are pinged; one per bucket per pass keeps the table honest.
        for bucket in self.table.buckets:
            questionable = [n for n in bucket.nodes if self.table.state(n, now) is NodeState.QUESTIONABLE]
            if questionable:
                self._ping_node(
                    min(questionable, key=lambda n: max(n.last_response or 0.0, n.last_query or 0.0)), now
                )
        for bucket in self.table.stale_buckets(now, cfg.bucket_refresh_interval)[:4]:
            bucket.last_changed = now
            if len(self._ops) >= cfg.max_operations:
                break
            op = self._new_op("refresh", self.table.random_id_in(bucket, self.rng), notify=False)
            self._start_lookup(op, now)

    @property
    def peer_store(self) -> PeerStore:
        return self.responder.peer_store

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    @property
    def operation_count(self) -> int:
        return len(self._ops)
