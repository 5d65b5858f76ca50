"""A 200-node torrentgoat DHT: on real loopback UDP sockets, and on the in-memory network."""

from __future__ import annotations

import asyncio
import random

from torrentgoat.aio.dht import DHTNode
from torrentgoat.dht import DHTConfig
from torrentgoat.dht.events import GetPeersCompleted
from torrentgoat.testing.dht import DHTNetwork


async def test_200_nodes_on_loopback_udp_lookups_succeed() -> None:
    rng = random.Random(200)
    config = DHTConfig(query_timeout=1.0)
    nodes = [DHTNode(host="127.0.0.1", config=config, rng=random.Random(i)) for i in range(200)]
    for node in nodes:
        await node.start()
    try:
        joined = [nodes[0]]
        for i in range(1, 200, 20):
            batch = nodes[i : i + 20]
            pool = list(joined)
            await asyncio.gather(
                *(n.bootstrap([s.address for s in rng.sample(pool, min(3, len(pool)))]) for n in batch)
            )
            joined.extend(batch)
        assert all(n.routing_table_size >= 8 for n in nodes)
        found = 0
        for trial in range(25):
            announcer, seeker = rng.sample(nodes, 2)
            info_hash = rng.randbytes(20)
            await announcer.announce(info_hash, 20000 + trial)
            event = await seeker.wait(seeker.engine.get_peers(info_hash, seeker.now()))
            assert isinstance(event, GetPeersCompleted)
            assert event.stats.rounds <= config.max_rounds
            found += ("127.0.0.1", 20000 + trial) in event.peers
        assert found == 25
    finally:
        for node in nodes:
            await node.close()


def test_200_nodes_in_memory_and_buckets_are_refreshed() -> None:
    net = DHTNetwork(seed=200)
    addrs = net.spawn(200)
    rng = random.Random(1)
    for i, addr in enumerate(addrs[1:], start=1):
        net.run_until_event(addr, net.engine(addr).bootstrap(rng.sample(addrs[:i], min(3, i)), net.now))
    sent_before = {a: net.engine(a).stats.queries_sent for a in addrs}
    net.run_for(17 * 60.0)  # idle past the 15-minute refresh interval (BEP 5) and one maintenance pass
    assert all(net.engine(a).stats.queries_sent > sent_before[a] for a in addrs)
    found = 0
    for trial in range(30):
        announcer, seeker = rng.sample(addrs, 2)
        info_hash = rng.randbytes(20)
        net.run_until_event(announcer, net.engine(announcer).announce(info_hash, 1000 + trial, net.now))
        event = net.run_until_event(seeker, net.engine(seeker).get_peers(info_hash, net.now))
        assert isinstance(event, GetPeersCompleted)
        found += (announcer[0], 1000 + trial) in event.peers
    assert found == 30
    for a in addrs:
        net.engine(a).table.check_invariants()


def test_lookups_tolerate_packet_loss() -> None:
    net = DHTNetwork(seed=21, loss=0.15)
    addrs = net.spawn(100, config=DHTConfig(query_timeout=1.0))
    rng = random.Random(2)
    for i, addr in enumerate(addrs[1:], start=1):
        net.run_until_event(addr, net.engine(addr).bootstrap(rng.sample(addrs[:i], min(3, i)), net.now))
    found = 0
    for trial in range(20):
        announcer, seeker = rng.sample(addrs, 2)
        info_hash = rng.randbytes(20)
        net.run_until_event(announcer, net.engine(announcer).announce(info_hash, 1000 + trial, net.now))
        event = net.run_until_event(seeker, net.engine(seeker).get_peers(info_hash, net.now))
        assert isinstance(event, GetPeersCompleted)
        found += (announcer[0], 1000 + trial) in event.peers
    assert found >= 18
