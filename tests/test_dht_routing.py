"""Routing table (BEP 5 "Routing Table"): k-buckets, node states, splitting, replacement, refresh."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from torrentgoat.dht.routing import ID_SPACE, NodeState, RoutingTable

OWN = bytes(20)


def node_id(value: int) -> bytes:
    return value.to_bytes(20, "big")


def test_a_node_that_answered_is_good_then_questionable_after_15_minutes() -> None:
    table = RoutingTable(OWN)
    table.heard_from(node_id(1 << 159), ("10.0.0.1", 1), 0.0, responded=True)
    node = table.get(node_id(1 << 159))
    assert node is not None
    assert table.state(node, 10.0) is NodeState.GOOD
    assert table.state(node, 901.0) is NodeState.QUESTIONABLE
    table.heard_from(node.id, node.addr, 901.0, responded=False)  # it queried us: good again
    assert table.state(node, 902.0) is NodeState.GOOD


def test_a_node_that_only_queried_us_is_questionable_and_bad_after_one_failure() -> None:
    table = RoutingTable(OWN)
    table.heard_from(node_id(5), ("10.0.0.1", 1), 0.0, responded=False)
    node = table.get(node_id(5))
    assert node is not None and table.state(node, 1.0) is NodeState.QUESTIONABLE
    table.failed(node.id, 2.0)
    assert table.state(node, 2.0) is NodeState.BAD


def test_good_node_turns_bad_after_two_failures() -> None:
    table = RoutingTable(OWN)
    table.heard_from(node_id(5), ("10.0.0.1", 1), 0.0, responded=True)
    node = table.get(node_id(5))
    assert node is not None
    table.failed(node.id, 1.0)
    assert table.state(node, 1.0) is NodeState.GOOD
    table.failed(node.id, 1.0)
    assert table.state(node, 1.0) is NodeState.BAD


def test_far_bucket_holds_k_nodes_then_offers_a_questionable_one_to_ping() -> None:
    table = RoutingTable(OWN, k=8)
    far = [node_id((1 << 159) + i) for i in range(10)]
    for i, nid in enumerate(far[:8]):
        assert table.heard_from(nid, ("10.0.1.1", 100 + i), 0.0, responded=True) is None
    # all good: the newcomer waits as a replacement, nothing to ping
    assert table.heard_from(far[8], ("10.0.1.1", 200), 1.0, responded=True) is None
    assert far[8] not in table
    # 15 minutes later the oldest are questionable: ping one
    to_ping = table.heard_from(far[9], ("10.0.1.1", 201), 1000.0, responded=True)
    assert to_ping is not None and to_ping.id == far[0]
    # it fails to answer: replaced by the most recent replacement
    table.failed(to_ping.id, 1003.0)
    assert far[0] not in table
    assert far[9] in table
    table.check_invariants()


def test_bad_node_is_replaced_at_once() -> None:
    table = RoutingTable(OWN, k=2)
    a, b, c = node_id(1 << 159), node_id((1 << 159) + 1), node_id((1 << 159) + 2)
    table.heard_from(a, ("10.0.0.1", 1), 0.0, responded=True)
    table.heard_from(b, ("10.0.0.2", 1), 0.0, responded=True)
    table.failed(a, 1.0)
    table.failed(a, 1.0)  # bad, but no replacement yet: stays, excluded from lookups
    assert a in table and a not in [n.id for n in table.closest(a, 8)]
    table.heard_from(c, ("10.0.0.3", 1), 2.0, responded=True)
    assert a not in table and c in table


def test_own_bucket_splits_far_buckets_do_not() -> None:
    table = RoutingTable(OWN, k=8)
    for i in range(1, 200):
        table.heard_from(node_id(i), ("10.0.0.1", i), 0.0, responded=True)
    table.check_invariants()
    assert len(table.buckets) > 1
    # everything far (top bit set) shares one bucket of at most k nodes
    for i in range(20):
        table.heard_from(node_id((1 << 159) + i), ("10.0.2.1", 1000 + i), 0.0, responded=True)
    table.check_invariants()
    far_bucket = table.bucket_for(1 << 159)
    assert far_bucket.lo == 1 << 159 and far_bucket.hi == ID_SPACE
    assert len(far_bucket.nodes) == 8


def test_closest_orders_by_xor_distance() -> None:
    table = RoutingTable(OWN)
    for value in (1, 2, 3, 8, 1 << 100, 1 << 159):
        table.heard_from(node_id(value), ("10.0.0.1", value % 60000 + 1), 0.0, responded=True)
    closest = table.closest(node_id(3), 3)
    assert [n.id for n in closest] == [node_id(3), node_id(2), node_id(1)]


def test_stale_buckets_are_reported_and_random_ids_fall_inside() -> None:
    table = RoutingTable(OWN, now=0.0)
    for i in range(1, 40):
        table.heard_from(node_id(i << 120), ("10.0.0.1", i), 0.0, responded=True)
    assert table.stale_buckets(100.0) == []
    stale = table.stale_buckets(901.0)
    assert stale
    rng = random.Random(1)
    for bucket in stale:
        assert bucket.covers(int.from_bytes(table.random_id_in(bucket, rng), "big"))


def test_same_address_with_new_id_replaces_the_old_entry() -> None:
    table = RoutingTable(OWN)
    table.heard_from(node_id(7), ("10.0.0.1", 1), 0.0, responded=True)
    table.heard_from(node_id(9), ("10.0.0.1", 1), 1.0, responded=True)
    assert node_id(7) not in table and node_id(9) in table
    table.check_invariants()


def test_known_good_id_from_another_address_is_ignored() -> None:
    table = RoutingTable(OWN)
    table.heard_from(node_id(7), ("10.0.0.1", 1), 0.0, responded=True)
    table.heard_from(node_id(7), ("10.6.6.6", 1), 1.0, responded=True)
    node = table.get(node_id(7))
    assert node is not None and node.addr == ("10.0.0.1", 1)


def test_our_own_id_is_never_stored() -> None:
    table = RoutingTable(OWN)
    table.heard_from(OWN, ("10.0.0.1", 1), 0.0, responded=True)
    assert len(table) == 0


operations = st.lists(
    st.tuples(
        st.sampled_from(["response", "query", "fail"]),
        st.one_of(st.binary(min_size=20, max_size=20), st.integers(0, 2**16).map(node_id)),
        st.integers(1, 50),
    ),
    max_size=300,
)


@given(st.binary(min_size=20, max_size=20), operations, st.integers(1, 8))
@settings(max_examples=150, deadline=None)
def test_routing_table_invariants(own: bytes, ops: list[tuple[str, bytes, int]], k: int) -> None:
    table = RoutingTable(own, k=k)
    now = 0.0
    for kind, nid, port in ops:
        now += 7.0
        if kind == "fail":
            table.failed(nid, now)
        else:
            table.heard_from(nid, ("10.0.0.1", port), now, responded=kind == "response")
        table.check_invariants()
    for bucket in table.buckets:
        assert len(bucket.nodes) <= k
        for node in bucket.nodes:
            assert table.bucket_for(node.value) is bucket
