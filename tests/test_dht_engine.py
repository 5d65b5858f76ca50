"""The sans-IO DHT engine on the in-memory network: lookups, announces, items, node cache,
timeouts, IPv6, and hostile input."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from torrentgoat import bencode
from torrentgoat.dht import krpc
from torrentgoat.dht.engine import DHTConfig, DHTEngine
from torrentgoat.dht.events import (
    AnnounceCompleted,
    BootstrapCompleted,
    GetItemCompleted,
    GetPeersCompleted,
    PeersFound,
    PingCompleted,
    PutItemCompleted,
)
from torrentgoat.dht.items import ImmutableItem, MutableItem, SigningKey, sign_mutable
from torrentgoat.errors import DHTError, SignatureError
from torrentgoat.testing.dht import DHTNetwork

SRC = ("10.9.9.9", 4000)


@pytest.fixture(scope="module")
def swarm() -> tuple[DHTNetwork, list[tuple[str, int]]]:
    net = DHTNetwork(seed=7)
    addrs = net.spawn(80)
    rng = random.Random(3)
    for i, addr in enumerate(addrs[1:], start=1):
        op = net.engine(addr).bootstrap(rng.sample(addrs[:i], min(3, i)), net.now)
        event = net.run_until_event(addr, op)
        assert isinstance(event, BootstrapCompleted) and event.nodes > 0
    return net, addrs


def test_announce_then_get_peers_finds_the_peer(swarm: tuple[DHTNetwork, list[tuple[str, int]]]) -> None:
    net, addrs = swarm
    rng = random.Random(11)
    config = DHTConfig()
    for trial in range(20):
        announcer, seeker = rng.sample(addrs, 2)
        info_hash = rng.randbytes(20)
        done = net.run_until_event(
            announcer, net.engine(announcer).announce(info_hash, 7000 + trial, net.now)
        )
        assert isinstance(done, AnnounceCompleted) and done.stored >= 1
        op = net.engine(seeker).get_peers(info_hash, net.now)
        event = net.run_until_event(seeker, op)
        assert isinstance(event, GetPeersCompleted)
        assert (announcer[0], 7000 + trial) in event.peers
        assert 1 <= event.stats.rounds <= config.max_rounds
        assert event.stats.queries <= config.max_lookup_queries
        found = [e for e in net.events[seeker] if isinstance(e, PeersFound) and e.op == op]
        assert found, "peers are reported as they arrive"
        net.events[seeker].clear()


def test_implied_port_uses_the_udp_source_port(swarm: tuple[DHTNetwork, list[tuple[str, int]]]) -> None:
    net, addrs = swarm
    info_hash = b"\x42" * 20
    net.run_until_event(addrs[5], net.engine(addrs[5]).announce(info_hash, 1, net.now, implied_port=True))
    event = net.run_until_event(addrs[9], net.engine(addrs[9]).get_peers(info_hash, net.now))
    assert isinstance(event, GetPeersCompleted)
    assert event.peers == (addrs[5],)  # port 6881, the DHT socket's, not 1


def test_mutable_and_immutable_items(swarm: tuple[DHTNetwork, list[tuple[str, int]]]) -> None:
    net, addrs = swarm
    key = SigningKey(b"\x07" * 32)
    a, b = addrs[3], addrs[40]
    first = sign_mutable(key, {b"ih": b"\x01" * 20}, 1, b"salt")
    put = net.run_until_event(a, net.engine(a).put_mutable(first, net.now))
    assert isinstance(put, PutItemCompleted) and put.stored >= 1 and not put.errors
    second = sign_mutable(key, {b"ih": b"\x02" * 20}, 2, b"salt")
    net.run_until_event(a, net.engine(a).put_mutable(second, net.now, cas=1))
    got = net.run_until_event(b, net.engine(b).get_mutable(key.public_key, b"salt", net.now))
    assert isinstance(got, GetItemCompleted) and isinstance(got.item, MutableItem)
    assert got.item.seq == 2 and got.item.value == {b"ih": b"\x02" * 20}
    # an older seq is refused by us before it is sent, with a clear message
    stale = net.run_until_event(b, net.engine(b).put_mutable(first, net.now))
    assert isinstance(stale, PutItemCompleted) and stale.stored == 0
    assert "newer item" in stale.errors[0]
    # wrong salt: not found
    missing = net.run_until_event(b, net.engine(b).get_mutable(key.public_key, b"other", net.now))
    assert isinstance(missing, GetItemCompleted) and missing.item is None
    # a forged item never leaves
    forged = MutableItem(public_key=key.public_key, seq=5, value=b"evil", signature=second.signature)
    with pytest.raises(SignatureError):
        net.engine(b).put_mutable(forged, net.now)
    # immutable
    put = net.run_until_event(a, net.engine(a).put_immutable([b"model", 1], net.now))
    assert isinstance(put, PutItemCompleted) and put.stored >= 1
    got = net.run_until_event(b, net.engine(b).get_immutable(put.target, net.now))
    assert isinstance(got, GetItemCompleted) and got.item == ImmutableItem(value=[b"model", 1])
    with pytest.raises(DHTError, match="1000"):
        net.engine(a).put_immutable(b"x" * 1000, net.now)


def test_node_cache_restart_needs_no_router(swarm: tuple[DHTNetwork, list[tuple[str, int]]]) -> None:
    net, addrs = swarm
    old = net.engine(addrs[12])
    saved = old.export_nodes(net.now)
    assert saved
    fresh = DHTEngine(rng=random.Random(99), now=net.now, node_id=old.node_id)
    fresh.import_nodes(saved, net.now)
    net.remove(addrs[12])
    net.add(fresh, addrs[12])
    router = ("10.255.255.1", 6881)  # nobody there
    net.record = True
    event = net.run_until_event(addrs[12], fresh.bootstrap([router], net.now))
    assert router not in [dest for _, dest in net.sent]
    assert isinstance(event, BootstrapCompleted) and event.stats.responses > 0 and event.nodes > 0


def test_bootstrap_falls_back_to_routers_when_cached_nodes_are_gone() -> None:
    net = DHTNetwork(seed=2)
    addrs = net.spawn(10)
    net.bootstrap_all(addrs[:1])
    engine = DHTEngine(rng=random.Random(5), now=net.now)
    engine.import_nodes([krpc.NodeInfo(b"\x01" * 20, "10.200.0.1", 1)], net.now)  # a dead node
    net.add(engine, ("10.100.0.1", 6881))
    event = net.run_until_event(("10.100.0.1", 6881), engine.bootstrap([addrs[0]], net.now))
    assert isinstance(event, BootstrapCompleted) and event.nodes >= 5


def test_lookups_survive_departed_nodes_and_bad_nodes_are_replaced() -> None:
    net = DHTNetwork(seed=4)
    addrs = net.spawn(60, config=DHTConfig(query_timeout=1.0))
    net.bootstrap_all(addrs[:1])
    for addr in addrs[30:45]:
        net.remove(addr)
    rng = random.Random(8)
    gone = set(addrs[30:45])
    for _ in range(10):
        seeker = rng.choice(addrs[:30])
        event = net.run_until_event(seeker, net.engine(seeker).get_peers(rng.randbytes(20), net.now))
        assert isinstance(event, GetPeersCompleted) and event.stats.responses > 0
    total_timeouts = sum(net.engine(a).stats.timeouts for a in addrs[:30] + addrs[45:])
    assert total_timeouts > 0
    # after a refresh period, departed nodes are no longer counted as live anywhere
    net.run_for(1900.0)
    for addr in addrs[:30]:
        table = net.engine(addr).table
        live = {n.addr for n in table.closest(b"\x00" * 20, 10_000, net.now)}
        assert not live & gone
        table.check_invariants()


def test_bounded_rounds() -> None:
    net = DHTNetwork(seed=5)
    addrs = net.spawn(60, config=DHTConfig(max_rounds=2))
    net.bootstrap_all(addrs[:1])
    event = net.run_until_event(addrs[30], net.engine(addrs[30]).get_peers(b"\x99" * 20, net.now))
    assert isinstance(event, GetPeersCompleted) and event.stats.rounds <= 2


def test_ipv6_network_uses_nodes6() -> None:
    net = DHTNetwork(seed=6)
    addrs = [(f"fd00::{i + 1:x}", 6881) for i in range(20)]
    for i, addr in enumerate(addrs):
        net.add(DHTEngine(rng=random.Random(i), now=net.now, ipv6=True), addr)
    net.bootstrap_all(addrs[:1])
    info_hash = b"\x66" * 20
    net.run_until_event(addrs[3], net.engine(addrs[3]).announce(info_hash, 9000, net.now))
    event = net.run_until_event(addrs[17], net.engine(addrs[17]).get_peers(info_hash, net.now))
    assert isinstance(event, GetPeersCompleted) and ("fd00::4", 9000) in event.peers
    engine = net.engine(addrs[0])
    engine.receive_datagram(
        krpc.encode(krpc.FindNode(t=b"q1", id=b"\x05" * 20, target=b"\x06" * 20)), ("fd00::99", 1), net.now
    )
    sent = [krpc.decode(data) for data, dest in engine.datagrams_to_send(net.now) if dest == ("fd00::99", 1)]
    decoded = next(m for m in sent if isinstance(m, krpc.Response))
    assert isinstance(decoded, krpc.Response) and decoded.nodes6 and not decoded.nodes


def test_ping_completes_with_the_node_id_or_none() -> None:
    net = DHTNetwork(seed=9)
    a, b = net.spawn(2)
    event = net.run_until_event(a, net.engine(a).ping(b, net.now))
    assert isinstance(event, PingCompleted) and event.node_id == net.engine(b).node_id
    assert net.engine(b).node_id in net.engine(a).table
    event = net.run_until_event(a, net.engine(a).ping(("10.77.0.1", 1), net.now))
    assert isinstance(event, PingCompleted) and event.node_id is None


# -- hostile input (a lone engine, datagrams by hand) ---------------------------------------------------


def lone(config: DHTConfig | None = None) -> DHTEngine:
    return DHTEngine(rng=random.Random(1), now=0.0, config=config)


def replies(engine: DHTEngine) -> list[krpc.Message]:
    """What the engine answered (a querier new to it also gets a verification ping: left out)."""
    sent = [krpc.decode(data) for data, _ in engine.datagrams_to_send(0.0)]
    return [m for m in sent if isinstance(m, krpc.Response | krpc.Error)]


def test_unknown_method_is_answered_with_error_204() -> None:
    engine = lone()
    packet = bencode.encode({b"t": b"zz", b"y": b"q", b"q": b"vote", b"a": {b"id": b"\x01" * 20}})
    engine.receive_datagram(packet, SRC, 0.0)
    (reply,) = replies(engine)
    assert isinstance(reply, krpc.Error) and reply.code == 204 and reply.t == b"zz"


def test_wrong_types_get_error_203_and_garbage_is_dropped() -> None:
    engine = lone()
    engine.receive_datagram(b"d1:ad2:idi5ee1:q4:ping1:t2:ab1:y1:qe", SRC, 0.0)
    (reply,) = replies(engine)
    assert isinstance(reply, krpc.Error) and reply.code == 203 and reply.t == b"ab"
    for junk in (b"", b"\xff" * 100, b"d1:t2:aa1:y1:re", b"i1e", b"x" * 5000):
        engine.receive_datagram(junk, SRC, 0.0)
    assert replies(engine) == []
    assert engine.stats.malformed >= 5


def test_responses_and_errors_are_never_answered_and_must_match_address() -> None:
    engine = lone()
    engine.receive_datagram(krpc.encode(krpc.Error(t=b"aa", code=201, message=b"x")), SRC, 0.0)
    engine.receive_datagram(krpc.encode(krpc.Response(t=b"aa", id=b"\x01" * 20)), SRC, 0.0)
    assert replies(engine) == []
    op = engine.ping(("10.0.0.1", 1), 0.0)
    ((data, _),) = engine.datagrams_to_send(0.0)
    query = krpc.decode(data)
    # the right transaction id from the wrong address is ignored
    engine.receive_datagram(krpc.encode(krpc.Response(t=query.t, id=b"\x02" * 20)), SRC, 0.0)
    assert engine.next_event() is None and engine.stats.unmatched == 3
    engine.receive_datagram(krpc.encode(krpc.Response(t=query.t, id=b"\x02" * 20)), ("10.0.0.1", 1), 0.0)
    assert engine.next_event() == PingCompleted(op=op, addr=("10.0.0.1", 1), node_id=b"\x02" * 20)


def test_flood_from_one_source_is_rate_limited() -> None:
    engine = lone(DHTConfig(rate_limit=10.0, rate_burst=20.0))
    ping = krpc.encode(krpc.Ping(t=b"aa", id=b"\x01" * 20))
    for _ in range(1000):
        engine.receive_datagram(ping, SRC, 0.0)
    replies = [d for d, _ in engine.datagrams_to_send(0.0) if b"1:y1:re" in d]  # and one verification ping
    assert len(replies) == 20
    engine.receive_datagram(ping, ("10.9.9.9", 4001), 0.0)  # a local (ip, port): its own bucket
    assert len([d for d, _ in engine.datagrams_to_send(0.0) if b"1:y1:re" in d]) == 1
    assert engine.stats.rate_limited == 980


def test_tokens_are_checked_on_announce_and_put() -> None:
    engine = lone()
    ih = b"\x11" * 20
    engine.receive_datagram(
        krpc.encode(krpc.AnnouncePeer(t=b"a1", id=b"\x01" * 20, info_hash=ih, port=80, token=b"forged")),
        SRC,
        0.0,
    )
    (reply,) = replies(engine)
    assert isinstance(reply, krpc.Error) and reply.code == 203
    engine.receive_datagram(krpc.encode(krpc.GetPeers(t=b"g1", id=b"\x01" * 20, info_hash=ih)), SRC, 0.0)
    (reply,) = replies(engine)
    assert isinstance(reply, krpc.Response) and reply.token
    token = reply.token
    # a token issued to another IP is refused
    engine.receive_datagram(
        krpc.encode(krpc.AnnouncePeer(t=b"a2", id=b"\x03" * 20, info_hash=ih, port=80, token=token)),
        ("10.1.1.1", 1),
        0.0,
    )
    assert isinstance(replies(engine)[0], krpc.Error)
    engine.receive_datagram(
        krpc.encode(krpc.AnnouncePeer(t=b"a3", id=b"\x01" * 20, info_hash=ih, port=80, token=token)), SRC, 0.0
    )
    assert isinstance(replies(engine)[0], krpc.Response)
    assert engine.peer_store.get(ih, 1.0, random.Random(0)) == [("10.9.9.9", 80)]
    put = krpc.Put(t=b"p1", id=b"\x01" * 20, token=b"bad", v=b"hello")
    engine.receive_datagram(krpc.encode(put), SRC, 0.0)
    assert isinstance(replies(engine)[0], krpc.Error)


def test_put_refusals_carry_bep44_codes() -> None:
    engine = lone()
    engine.receive_datagram(krpc.encode(krpc.Get(t=b"g1", id=b"\x01" * 20, target=b"\x00" * 20)), SRC, 0.0)
    (reply,) = replies(engine)
    assert isinstance(reply, krpc.Response) and reply.token is not None
    token = reply.token
    key = SigningKey(b"\x05" * 32)
    good = sign_mutable(key, b"v2", 2)

    def put(item: MutableItem, cas: int | None = None) -> krpc.Message:
        engine.receive_datagram(
            krpc.encode(
                krpc.Put(
                    t=b"p1",
                    id=b"\x01" * 20,
                    token=token,
                    v=item.value,
                    k=item.public_key,
                    sig=item.signature,
                    seq=item.seq,
                    salt=item.salt,
                    cas=cas,
                )
            ),
            SRC,
            1.0,
        )
        (answer,) = replies(engine)
        return answer

    assert isinstance(put(good), krpc.Response)
    lower = put(sign_mutable(key, b"v1", 1))
    assert isinstance(lower, krpc.Error) and lower.code == 302
    forged = put(MutableItem(public_key=key.public_key, seq=3, value=b"v3", signature=good.signature))
    assert isinstance(forged, krpc.Error) and forged.code == 206
    cas = put(sign_mutable(key, b"v3", 3), cas=1)
    assert isinstance(cas, krpc.Error) and cas.code == 301
    engine.receive_datagram(krpc.encode(krpc.Get(t=b"g2", id=b"\x01" * 20, target=good.target)), SRC, 2.0)
    (reply,) = replies(engine)
    assert isinstance(reply, krpc.Response) and reply.seq == 2 and reply.sig == good.signature


def test_replies_stay_small_no_amplification() -> None:
    engine = lone()
    ih = b"\x22" * 20
    for i in range(500):
        engine.peer_store.announce(ih, (f"10.0.{i // 250}.{i % 250}", 1000 + i), 0.0)
    for i in range(100):
        engine.table.heard_from(random.Random(i).randbytes(20), (f"10.3.0.{i}", 1), 0.0, responded=True)
    query = krpc.encode(krpc.GetPeers(t=b"g1", id=b"\x01" * 20, info_hash=ih))
    engine.receive_datagram(query, SRC, 0.0)
    (data,) = [d for d, _ in engine.datagrams_to_send(0.0) if not d.endswith(b"1:y1:qe")]
    decoded = krpc.decode(data)
    assert isinstance(decoded, krpc.Response) and len(decoded.values) == 50
    assert len(data) < 1000  # well under the path MTU
    error = krpc.encode(krpc.Error(t=b"xx", code=201, message=b"y" * 200))
    engine.receive_datagram(error, SRC, 0.0)
    assert engine.datagrams_to_send(0.0) == []


def test_memory_stays_bounded_under_a_flood_of_new_nodes() -> None:
    config = DHTConfig(max_rate_sources=1000, max_info_hashes=100, max_peers_per_info_hash=10)
    engine = lone(config)
    rng = random.Random(3)
    for i in range(20_000):
        addr = (f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", 1 + i % 60000)
        node = rng.randbytes(20)
        engine.receive_datagram(krpc.encode(krpc.Ping(t=b"aa", id=node)), addr, float(i) / 1000)
        if i % 4 == 0:
            engine.receive_datagram(
                krpc.encode(krpc.GetPeers(t=b"bb", id=node, info_hash=rng.randbytes(20))),
                addr,
                float(i) / 1000,
            )
        engine.datagrams_to_send(0.0)
    assert len(engine.table) <= 160 * config.k
    assert len(engine.limiter) <= 1000
    assert engine.pending_count <= config.max_pending
    assert engine.operation_count <= config.max_operations
    engine.table.check_invariants()


def test_pending_transactions_and_operations_are_capped() -> None:
    engine = lone(DHTConfig(max_pending=10, max_operations=5))
    for i in range(50):
        engine.table.heard_from(random.Random(i).randbytes(20), (f"10.3.0.{i}", 1), 0.0, responded=True)
    for i in range(5):
        engine.get_peers(bytes([i]) * 20, 0.0)
    assert engine.pending_count <= 10 + 3
    with pytest.raises(DHTError, match="too many"):
        engine.get_peers(b"\x09" * 20, 0.0)
    # everything times out and completes; nothing leaks
    now = 0.0
    for _ in range(100):
        now = max(now, engine.get_timer())
        engine.handle_timer(now)
        engine.datagrams_to_send(now)
        if engine.operation_count == 0 and engine.pending_count == 0:
            break
    assert engine.operation_count == 0 and engine.pending_count == 0
    events = []
    while (event := engine.next_event()) is not None:
        events.append(event)
    assert len([e for e in events if isinstance(e, GetPeersCompleted)]) == 5


def test_read_only_node_answers_nothing_and_flags_queries() -> None:
    engine = lone(DHTConfig(read_only=True))
    engine.receive_datagram(krpc.encode(krpc.Ping(t=b"aa", id=b"\x01" * 20)), SRC, 0.0)
    assert engine.datagrams_to_send(0.0) == []
    engine.ping(SRC, 0.0)
    ((data, _),) = engine.datagrams_to_send(0.0)
    query = krpc.decode(data)
    assert isinstance(query, krpc.Ping) and query.ro


_valid_queries = [
    krpc.encode(krpc.Ping(t=b"aa", id=b"\x01" * 20)),
    krpc.encode(krpc.FindNode(t=b"ab", id=b"\x01" * 20, target=b"\x02" * 20)),
    krpc.encode(krpc.GetPeers(t=b"ac", id=b"\x01" * 20, info_hash=b"\x03" * 20)),
    krpc.encode(krpc.AnnouncePeer(t=b"ad", id=b"\x01" * 20, info_hash=b"\x03" * 20, port=5, token=b"x")),
    krpc.encode(krpc.Get(t=b"ae", id=b"\x01" * 20, target=b"\x03" * 20, seq=4)),
    krpc.encode(krpc.Put(t=b"af", id=b"\x01" * 20, token=b"x", v=b"v", k=b"k" * 32, sig=b"s" * 64, seq=1)),
]


@given(
    st.one_of(
        st.binary(max_size=200),
        st.tuples(st.sampled_from(_valid_queries), st.integers(0, 300), st.integers(0, 255)).map(
            lambda x: x[0][: x[1] % len(x[0])] + bytes([x[2]]) + x[0][x[1] % len(x[0]) + 1 :]
        ),
    )
)
@settings(max_examples=400, deadline=None)
def test_engine_never_raises_and_answers_at_most_one_small_datagram(data: bytes) -> None:
    engine = lone()
    engine.receive_datagram(data, SRC, 0.0)
    replies_to_source = [
        d for d, dest in engine.datagrams_to_send(0.0) if dest == SRC and not d.endswith(b"1:y1:qe")
    ]  # a querier new to the engine also gets a verification ping
    assert len(replies_to_source) <= 1
    for reply in replies_to_source:
        assert len(reply) <= 400
        message = krpc.decode(reply)
        assert isinstance(message, krpc.Response | krpc.Error)


def test_hostile_replies_cannot_aim_our_queries_at_odd_addresses() -> None:
    engine = lone()
    op = engine.get_peers(b"\x44" * 20, 0.0)
    engine.add_node(SRC, 0.0)
    engine.bootstrap([SRC], 0.0)
    sent = engine.datagrams_to_send(0.0)
    query = next(m for m in (krpc.decode(d) for d, _ in sent) if isinstance(m, krpc.FindNode))
    evil = krpc.Response(
        t=query.t,
        id=b"\x45" * 20,
        nodes=(
            krpc.NodeInfo(b"\x46" * 20, "0.0.0.0", 80),
            krpc.NodeInfo(b"\x47" * 20, "224.0.0.1", 80),
            krpc.NodeInfo(b"\x48" * 20, "255.255.255.255", 80),
            krpc.NodeInfo(b"\x49" * 20, "10.0.0.50", 80),
        ),
    )
    engine.receive_datagram(krpc.encode(evil), SRC, 0.1)
    destinations = {dest[0] for _, dest in engine.datagrams_to_send(0.1)}
    assert destinations == {"10.0.0.50"}
    assert op
