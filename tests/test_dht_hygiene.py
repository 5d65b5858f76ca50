"""DHT routing-table hygiene and floods (issue 16), on the sans-IO engine with public addresses.

* a node that only queried us enters the routing table only after it answered our ping;
* BEP 42 "Enforcement": a new node whose id does not match its public address never enters it;
* one public IP holds at most ``max_nodes_per_ip`` nodes, whatever ids and ports it makes up;
* 10,000 queries from random node ids (spoofed addresses, or one address on many ports) leave the
  table, the rate limiter and the pending tables bounded, and cost at most ``max_query_rate``
  answers a second;
* no amplification: an address that never answered us gets answers at most ``max_amplification``
  times the size of its query; once it answered, the full answer.
"""

from __future__ import annotations

import random

from torrentgoat.dht import krpc
from torrentgoat.dht.config import DHTConfig
from torrentgoat.dht.engine import DHTEngine
from torrentgoat.dht.items import ImmutableItem, immutable_target
from torrentgoat.dht.security import secure_node_id

PUBLIC = ("93.184.216.7", 6881)  # (the documentation ranges count as private for ipaddress)


def lone(config: DHTConfig | None = None) -> DHTEngine:
    return DHTEngine(rng=random.Random(1), now=0.0, config=config)


def sent(
    engine: DHTEngine,
) -> tuple[list[tuple[bytes, tuple[str, int]]], list[tuple[bytes, tuple[str, int]]]]:
    """(answers, our queries) the engine sends."""
    out = engine.datagrams_to_send(0.0)
    queries = [(d, a) for d, a in out if d.endswith(b"1:y1:qe")]
    return [(d, a) for d, a in out if not d.endswith(b"1:y1:qe")], queries


def answer_pings(
    engine: DHTEngine, queries: list[tuple[bytes, tuple[str, int]]], ids: dict[tuple[str, int], bytes]
) -> None:
    for data, addr in queries:
        ping = krpc.decode(data)
        assert isinstance(ping, krpc.Ping)
        engine.receive_datagram(krpc.encode(krpc.Response(t=ping.t, id=ids[addr])), addr, 0.1)


def test_a_querying_node_enters_the_table_only_after_answering_our_ping() -> None:
    engine = lone()
    node = secure_node_id(PUBLIC[0], random.Random(5))
    engine.receive_datagram(krpc.encode(krpc.Ping(t=b"p1", id=node)), PUBLIC, 0.0)
    answers, queries = sent(engine)
    assert len(answers) == 1 and len(queries) == 1 and queries[0][1] == PUBLIC
    assert node not in engine.table  # only a query so far: maybe a forged source
    answer_pings(engine, queries, {PUBLIC: node})
    assert node in engine.table


def test_bep42_new_nodes_with_a_wrong_id_for_their_public_address_stay_out() -> None:
    engine = lone()
    good_addr, bad_addr, local = ("45.33.1.9", 6881), ("45.33.1.10", 6881), ("10.1.2.3", 6881)
    good = secure_node_id(good_addr[0], random.Random(1))
    bad = random.Random(2).randbytes(20)
    while secure_node_id(bad_addr[0], random.Random(0), r=bad[19])[:2] == bad[:2]:
        bad = random.Random(bad).randbytes(20)  # pragma: no cover - 1 in 65,536
    for node, addr in ((good, good_addr), (bad, bad_addr), (bad, local)):
        engine.ping(addr, 0.0)
        _, queries = sent(engine)
        answer_pings(engine, queries, {addr: node})
    assert good in engine.table
    assert engine.table.get(bad) is not None and engine.table.get(bad).addr == local  # type: ignore[union-attr]
    assert all(n.addr != bad_addr for n in engine.table)  # its id does not match 45.33.1.10


def test_one_public_ip_holds_at_most_max_nodes_per_ip() -> None:
    engine = lone(DHTConfig(max_nodes_per_ip=2))
    ip = "81.2.69.44"
    for port in range(7000, 7010):
        node = secure_node_id(ip, random.Random(port))
        engine.ping((ip, port), 0.0)
        _, queries = sent(engine)
        answer_pings(engine, queries, {(ip, port): node})
    assert sum(1 for n in engine.table if n.addr[0] == ip) == 2
    engine.table.check_invariants()


def test_ten_thousand_queries_from_random_ids_and_spoofed_addresses_add_nothing() -> None:
    config = DHTConfig(max_rate_sources=2000)
    engine = lone(config)
    rng = random.Random(9)
    answered = 0
    for i in range(10_000):
        addr = (
            f"{rng.choice((1, 8, 23, 45, 81, 93, 151, 185, 213))}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
            1 + i,
        )
        node = rng.randbytes(20)
        query = (
            krpc.GetPeers(t=b"gp", id=node, info_hash=rng.randbytes(20))
            if i % 2
            else krpc.Ping(t=b"pp", id=node)
        )
        data = krpc.encode(query)
        engine.receive_datagram(data, addr, i / 10_000)  # one second
        answers, _ = sent(engine)
        for reply, _ in answers:
            assert len(reply) <= config.max_amplification * len(data)
        answered += len(answers)
        if i % 1000 == 999:  # the verification pings time out: nobody lives at forged addresses
            now = i / 10_000 + config.query_timeout + 1
            engine.handle_timer(now)
    # distinct sources, each within its own limit: the global budget answers 500/s (+ a burst of 500)
    assert answered <= 2 * config.max_query_rate and engine.stats.rate_limited >= 9_000
    assert len(engine.table) == 0  # no forged source answered a ping: none entered the table
    assert len(engine.limiter) <= 2000
    assert engine.pending_count <= config.max_verify_pings
    engine.table.check_invariants()


def test_one_address_flooding_from_many_ports_shares_one_rate_limit() -> None:
    engine = lone(DHTConfig(public_rate_limit=100.0, public_rate_burst=200.0))
    rng = random.Random(4)
    answered = 0
    for i in range(10_000):  # 10,000 queries in one second from one public IP, random ids and ports
        data = krpc.encode(krpc.Ping(t=b"aa", id=rng.randbytes(20)))
        engine.receive_datagram(data, (PUBLIC[0], 1024 + i), i / 10_000)
        answered += len(sent(engine)[0])
    assert answered <= 200 + 100  # burst + one second of rate
    assert engine.stats.rate_limited >= 9_700
    assert sum(1 for n in engine.table if n.addr[0] == PUBLIC[0]) <= 2


def test_answers_to_unverified_senders_are_trimmed_then_full_once_verified() -> None:
    engine = lone()
    ih = b"\x33" * 20
    for i in range(200):
        engine.peer_store.announce(ih, (f"10.0.{i // 250}.{i % 250}", 1000 + i), 0.0)
    for i in range(100):
        engine.table.heard_from(random.Random(i).randbytes(20), (f"10.3.0.{i}", 1), 0.0, responded=True)
    value = b"x" * 900
    engine.responder.item_store.put_immutable(value, b"900:" + value, immutable_target(value), 0.0)
    node = secure_node_id(PUBLIC[0], random.Random(8))

    def ask(query: krpc.Query) -> tuple[int, krpc.Response]:
        data = krpc.encode(query)
        engine.receive_datagram(data, PUBLIC, 0.0)
        answers, queries = sent(engine)
        ((reply, _),) = answers
        decoded = krpc.decode(reply)
        assert isinstance(decoded, krpc.Response)
        if queries:
            answer_pings(engine, queries, {PUBLIC: node})
            sent(engine)
        return len(reply) * 100 // len(data), decoded

    # the first contact: at most 3x; the answer stays valid (token, seq kept), peers and value cut
    ratio, first = ask(krpc.GetPeers(t=b"g1", id=node, info_hash=ih))
    assert ratio <= 300 and first.token is not None and len(first.values) < 50
    # it answered our verification ping: now it gets everything
    ratio, full = ask(krpc.GetPeers(t=b"g2", id=node, info_hash=ih))
    assert len(full.values) == 50 and ratio > 300
    _, item = ask(krpc.Get(t=b"i1", id=node, target=immutable_target(value)))
    assert item.v == value and ImmutableItem(value=item.v).target == immutable_target(value)


def test_an_unverified_get_of_a_large_item_gets_no_value_but_a_valid_answer() -> None:
    engine = lone()
    value = b"y" * 900
    engine.responder.item_store.put_immutable(value, b"900:" + value, immutable_target(value), 0.0)
    data = krpc.encode(krpc.Get(t=b"i1", id=b"\x05" * 20, target=immutable_target(value)))
    engine.receive_datagram(data, ("81.2.69.200", 5000), 0.0)
    ((reply, _),) = sent(engine)[0]
    decoded = krpc.decode(reply)
    assert isinstance(decoded, krpc.Response) and decoded.v is None and decoded.token is not None
    assert len(reply) <= 3 * len(data)
