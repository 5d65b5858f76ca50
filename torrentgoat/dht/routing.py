"""Kademlia routing table (BEP 5 "Routing Table").

Buckets of at most ``k`` (8) nodes cover disjoint ranges of the 160-bit id space; only the bucket
whose range holds our own id is split when it is full.  Nodes are *good* (answered us within 15
minutes, or answered once and queried us within 15 minutes), *questionable* (quiet for 15 minutes)
or *bad* (failed to answer repeatedly).  A full bucket takes a new node only by replacing a bad one;
when it holds questionable nodes the caller is asked to ping the oldest of them, and the newcomer
waits in the bucket's replacement cache until that ping fails.  Buckets unchanged for 15 minutes
are reported for refresh (a ``find_node`` for a random id in their range).

One public IP address holds at most ``max_per_ip`` nodes (libtorrent's ``restrict_routing_ips``):
a host that makes up ids, whatever its ports, cannot fill the buckets.  Local addresses (BEP 42's
exempt ranges) are not limited, so that nodes of a local test can share 127.0.0.1.
"""

from __future__ import annotations

import bisect
import enum
import random
from collections.abc import Iterator
from dataclasses import dataclass, field

from torrentgoat.dht.krpc import Addr, NodeInfo
from torrentgoat.dht.security import is_exempt

__all__ = ["Bucket", "NodeState", "RoutingNode", "RoutingTable"]

ID_SPACE = 1 << 160


class NodeState(enum.Enum):
    """BEP 5 node states."""

    GOOD = "good"
    QUESTIONABLE = "questionable"
    BAD = "bad"


@dataclass(slots=True)
class RoutingNode:
    """One contact; times are the engine's ``now`` values."""

    id: bytes
    addr: Addr
    last_response: float | None = None
    last_query: float | None = None
    failures: int = 0

    @property
    def value(self) -> int:
        return int.from_bytes(self.id, "big")

    def state(self, now: float, *, good_interval: float = 900.0, max_failures: int = 2) -> NodeState:
        """BEP 5: good within 15 minutes of a response (or of a query after a first response).

        A good node turns bad after ``max_failures`` timeouts in a row; a questionable one after its
        first (BEP 5: a pinged questionable node that does not answer is replaced).
        """
        if self.failures >= max_failures:
            return NodeState.BAD
        if self.last_response is not None and (
            now - self.last_response < good_interval
            or (self.last_query is not None and now - self.last_query < good_interval)
        ):
            return NodeState.GOOD
        return NodeState.BAD if self.failures else NodeState.QUESTIONABLE

    def info(self) -> NodeInfo:
        return NodeInfo(self.id, self.addr[0], self.addr[1])


@dataclass(slots=True)
class Bucket:
    """Ids in ``[lo, hi)``; ``nodes`` ordered least recently seen first."""

    lo: int
    hi: int
    nodes: list[RoutingNode] = field(default_factory=list)
    replacements: list[RoutingNode] = field(default_factory=list)
    last_changed: float = 0.0

    def covers(self, value: int) -> bool:
        return self.lo <= value < self.hi


class RoutingTable:
    """Buckets around ``own_id``; every remote-controlled collection here is capped."""

    def __init__(
        self,
        own_id: bytes,
        *,
        k: int = 8,
        now: float = 0.0,
        good_interval: float = 900.0,
        max_failures: int = 2,
        max_per_ip: int | None = None,
    ) -> None:
        self.own_id = own_id
        self.max_per_ip = max_per_ip
        """Nodes one public IP may hold (None: no limit)."""
        self._per_ip: dict[str, int] = {}
        self.own_value = int.from_bytes(own_id, "big")
        self.k = k
        self.good_interval = good_interval
        self.max_failures = max_failures
        self.buckets: list[Bucket] = [Bucket(0, ID_SPACE, last_changed=now)]
        self._los: list[int] = [0]
        self._by_id: dict[bytes, RoutingNode] = {}
        self._by_addr: dict[Addr, bytes] = {}

    # -- queries ------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[RoutingNode]:
        return iter(list(self._by_id.values()))

    def __contains__(self, node_id: bytes) -> bool:
        return node_id in self._by_id

    def get(self, node_id: bytes) -> RoutingNode | None:
        return self._by_id.get(node_id)

    def state(self, node: RoutingNode, now: float) -> NodeState:
        return node.state(now, good_interval=self.good_interval, max_failures=self.max_failures)

    def bucket_for(self, value: int) -> Bucket:
        return self.buckets[bisect.bisect_right(self._los, value) - 1]

    def closest(self, target: bytes, n: int, now: float | None = None) -> list[RoutingNode]:
        """The ``n`` non-bad nodes closest to ``target`` by XOR (BEP 5 "distance metric").

        Without ``now`` only nodes past ``max_failures`` count as bad."""
        t = int.from_bytes(target, "big")
        if now is None:
            alive = [x for x in self._by_id.values() if x.failures < self.max_failures]
        else:
            alive = [
                x for x in self._by_id.values() if not x.failures or self.state(x, now) is not NodeState.BAD
            ]
        alive.sort(key=lambda x: x.value ^ t)
        return alive[:n]

    def stale_buckets(self, now: float, interval: float = 900.0) -> list[Bucket]:
        """Buckets that have not changed for ``interval`` seconds (BEP 5: refresh every 15 minutes)."""
        return [b for b in self.buckets if now - b.last_changed >= interval]

    @staticmethod
    def random_id_in(bucket: Bucket, rng: random.Random) -> bytes:
        return (bucket.lo + rng.randrange(bucket.hi - bucket.lo)).to_bytes(20, "big")

    # -- updates ------------------------------------------------------------------------------------

    def heard_from(self, node_id: bytes, addr: Addr, now: float, *, responded: bool) -> RoutingNode | None:
        """Record that ``node_id`` at ``addr`` answered us (``responded``) or queried us.

        Returns a questionable node the caller should ping (its bucket is full); the newcomer then
        waits in the replacement cache.
        """
        if node_id == self.own_id:
            return None
        node = self._by_id.get(node_id)
        if node is not None:
            if node.addr != addr:
                # A known id from another address: keep the one we have unless it stopped answering.
                if self.state(node, now) is not NodeState.BAD or not self.ip_has_room(addr[0]):
                    return None
                self._forget_addr(node.addr)
                self._count_ip(node.addr[0], -1)
                self._count_ip(addr[0], +1)
                node.addr = addr
                self._by_addr[addr] = node_id
            if responded:
                node.last_response = now
                node.failures = 0
            else:
                node.last_query = now
            bucket = self.bucket_for(node.value)
            bucket.nodes.remove(node)
            bucket.nodes.append(node)
            bucket.last_changed = now
            return None
        old = self._by_addr.get(addr)
        if old is not None:
            # The address now answers with another id (a restarted node): the old id is gone.
            self.remove(old)
        elif not self.ip_has_room(addr[0]):
            return None
        newcomer = RoutingNode(
            node_id, addr, last_response=now if responded else None, last_query=None if responded else now
        )
        return self._insert(newcomer, now)

    def _insert(self, node: RoutingNode, now: float) -> RoutingNode | None:
        while True:
            bucket = self.bucket_for(node.value)
            if len(bucket.nodes) < self.k:
                self._add(bucket, node, now)
                return None
            for i, existing in enumerate(bucket.nodes):
                if self.state(existing, now) is NodeState.BAD:
                    self._drop(existing)
                    del bucket.nodes[i]
                    self._add(bucket, node, now)
                    return None
            if bucket.covers(self.own_value) and bucket.hi - bucket.lo > 1:
                self._split(bucket)
                continue
            self._add_replacement(bucket, node)
            for existing in bucket.nodes:
                if self.state(existing, now) is NodeState.QUESTIONABLE:
                    return existing
            return None

    def ip_has_room(self, ip: str) -> bool:
        """Whether a new node at ``ip`` may join (see ``max_per_ip``)."""
        cap = self.max_per_ip
        return cap is None or self._per_ip.get(ip, 0) < cap or is_exempt(ip)

    def _count_ip(self, ip: str, delta: int) -> None:
        count = self._per_ip.get(ip, 0) + delta
        if count > 0:
            self._per_ip[ip] = count
        else:
            self._per_ip.pop(ip, None)

    def _add(self, bucket: Bucket, node: RoutingNode, now: float) -> None:
        self._count_ip(node.addr[0], +1)
        bucket.nodes.append(node)
        bucket.last_changed = now
        bucket.replacements = [r for r in bucket.replacements if r.id != node.id]
        self._by_id[node.id] = node
        self._by_addr[node.addr] = node.id

    def _add_replacement(self, bucket: Bucket, node: RoutingNode) -> None:
        bucket.replacements = [r for r in bucket.replacements if r.id != node.id and r.addr != node.addr]
        bucket.replacements.append(node)
        del bucket.replacements[: -self.k]

    def _split(self, bucket: Bucket) -> None:
        mid = (bucket.lo + bucket.hi) // 2
        low = Bucket(bucket.lo, mid, last_changed=bucket.last_changed)
        high = Bucket(mid, bucket.hi, last_changed=bucket.last_changed)
        for n in bucket.nodes:
            (low if n.value < mid else high).nodes.append(n)
        for n in bucket.replacements:
            (low if n.value < mid else high).replacements.append(n)
        index = self.buckets.index(bucket)
        self.buckets[index : index + 1] = [low, high]
        self._los.insert(index + 1, mid)

    def _forget_addr(self, addr: Addr) -> None:
        self._by_addr.pop(addr, None)

    def _drop(self, node: RoutingNode) -> None:
        self._count_ip(node.addr[0], -1)
        self._by_id.pop(node.id, None)
        if self._by_addr.get(node.addr) == node.id:
            del self._by_addr[node.addr]

    def remove(self, node_id: bytes) -> None:
        node = self._by_id.get(node_id)
        if node is None:
            return
        bucket = self.bucket_for(node.value)
        bucket.nodes.remove(node)
        self._drop(node)
        while bucket.replacements:
            replacement = bucket.replacements.pop()
            if replacement.id not in self._by_id and self.ip_has_room(replacement.addr[0]):
                self._add(bucket, replacement, bucket.last_changed)
                break

    def failed(self, node_id: bytes, now: float) -> None:
        """A query to ``node_id`` timed out: count it; a bad node gives way to a replacement."""
        node = self._by_id.get(node_id)
        if node is None:
            return
        node.failures += 1
        if self.state(node, now) is NodeState.BAD and self.bucket_for(node.value).replacements:
            self.remove(node_id)

    def failed_addr(self, addr: Addr, now: float) -> None:
        node_id = self._by_addr.get(addr)
        if node_id is not None:
            self.failed(node_id, now)

    def check_invariants(self) -> None:
        """Raise AssertionError if the table is inconsistent (used by property tests)."""
        assert self.buckets[0].lo == 0 and self.buckets[-1].hi == ID_SPACE
        for a, b in zip(self.buckets, self.buckets[1:], strict=False):
            assert a.hi == b.lo
        assert self._los == [b.lo for b in self.buckets]
        count = 0
        for b in self.buckets:
            assert len(b.nodes) <= self.k
            assert len(b.replacements) <= self.k
            for n in b.nodes:
                assert b.covers(n.value)
                assert self._by_id[n.id] is n
                assert n.id != self.own_id
            count += len(b.nodes)
        assert count == len(self._by_id)
        per_ip: dict[str, int] = {}
        for n in self._by_id.values():
            per_ip[n.addr[0]] = per_ip.get(n.addr[0], 0) + 1
        assert per_ip == self._per_ip
        if self.max_per_ip is not None:
            assert all(c <= self.max_per_ip or is_exempt(ip) for ip, c in per_ip.items())
        # Only the bucket around our id is ever split, so at most one bucket per depth exists
        # beside it: every bucket but the own one is a sibling of the own-id path.
        own = self.bucket_for(self.own_value)
        for b in self.buckets:
            if b is not own:
                size = b.hi - b.lo
                assert b.lo % size == 0
                assert not b.covers(self.own_value)
