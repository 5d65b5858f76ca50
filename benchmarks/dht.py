"""DHT benchmark: N torrentgoat nodes on loopback, lookups across them.

    python benchmarks/dht.py                       # 200 nodes, real UDP sockets on 127.0.0.1
    python benchmarks/dht.py --nodes 500 --lookups 200
    python benchmarks/dht.py --net memory --nodes 2000   # the in-memory network (fake clock)
    python benchmarks/dht.py --json

Nodes join in waves (each bootstraps from a few nodes already in); ``--churn F`` then closes a
fraction F of them without notice (their entries stay in others' tables); then, ``--lookups`` times, a
random live node announces a random info-hash and another random node looks it up with ``get_peers``.
Reported: time to bootstrap, routing-table sizes, lookup success rate (the announced peer was
found), rounds (hops) and messages (queries sent) per lookup, lookup latency, and one BEP 44
mutable put/get round trip.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from torrentgoat.aio.dht import DHTNode
from torrentgoat.dht import DHTConfig, SigningKey
from torrentgoat.dht.events import GetPeersCompleted
from torrentgoat.testing.dht import DHTNetwork


def summarize(values: list[float]) -> dict[str, float]:
    if not values:
        return {"mean": 0.0, "median": 0.0, "p95": 0.0, "max": 0.0}
    ordered = sorted(values)
    return {
        "mean": round(statistics.fmean(ordered), 3),
        "median": round(statistics.median(ordered), 3),
        "p95": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 3),
        "max": round(ordered[-1], 3),
    }


async def run_udp(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    config = DHTConfig(query_timeout=args.timeout)
    nodes = [
        DHTNode(host="127.0.0.1", config=config, rng=random.Random(rng.getrandbits(64)))
        for _ in range(args.nodes)
    ]
    for node in nodes:
        await node.start()
    try:
        started = time.perf_counter()
        joined = [nodes[0]]
        wave = max(1, args.wave)
        for i in range(1, len(nodes), wave):
            batch = nodes[i : i + wave]

            async def join(node: DHTNode, pool: list[DHTNode]) -> None:
                seeds = rng.sample(pool, min(3, len(pool)))
                await node.bootstrap([s.address for s in seeds])

            await asyncio.gather(*(join(n, list(joined)) for n in batch))
            joined.extend(batch)
        bootstrap_seconds = time.perf_counter() - started
        sizes = [n.routing_table_size for n in nodes]
        departed = rng.sample(nodes[1:], int(args.churn * len(nodes)))
        for node in departed:
            await node.close()
        alive = [n for n in nodes if n not in departed]

        found = 0
        rounds: list[float] = []
        messages: list[float] = []
        latency: list[float] = []
        for trial in range(args.lookups):
            announcer, seeker = rng.sample(alive, 2)
            info_hash = rng.randbytes(20)
            port = 10000 + trial
            await announcer.announce(info_hash, port)
            t0 = time.perf_counter()
            event = await seeker.wait(seeker.engine.get_peers(info_hash, seeker.now()))
            latency.append(time.perf_counter() - t0)
            assert isinstance(event, GetPeersCompleted)
            if ("127.0.0.1", port) in event.peers:
                found += 1
            rounds.append(event.stats.rounds)
            messages.append(event.stats.queries)

        key = SigningKey(rng.randbytes(32))
        publisher, reader = rng.sample(alive, 2)
        item = await publisher.put_mutable(key, {b"ih": rng.randbytes(20)}, salt=b"bench")
        got = await reader.get_mutable(key.public_key, b"bench")
        return {
            "network": "udp 127.0.0.1",
            "nodes": args.nodes,
            "departed_before_lookups": len(departed),
            "bootstrap_seconds": round(bootstrap_seconds, 3),
            "routing_table_size": summarize([float(s) for s in sizes]),
            "lookups": args.lookups,
            "success_rate": found / args.lookups if args.lookups else 0.0,
            "rounds_per_lookup": summarize(rounds),
            "messages_per_lookup": summarize(messages),
            "lookup_seconds": summarize(latency),
            "mutable_roundtrip_ok": got is not None and got.signature == item.signature,
            "rate_limited_datagrams": sum(n.engine.stats.rate_limited for n in nodes),
            "timeouts": sum(n.engine.stats.timeouts for n in alive),
        }
    finally:
        for node in nodes:
            await node.close()


def run_memory(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    net = DHTNetwork(seed=args.seed, latency=0.01)
    addrs = net.spawn(args.nodes, config=DHTConfig(query_timeout=args.timeout))
    started = time.perf_counter()
    fake_start = net.now
    for i, addr in enumerate(addrs[1:], start=1):
        seeds = rng.sample(addrs[:i], min(3, i))
        op = net.engine(addr).bootstrap(seeds, net.now)
        net.run_until_event(addr, op)
    bootstrap_seconds = time.perf_counter() - started
    found = 0
    rounds: list[float] = []
    messages: list[float] = []
    for trial in range(args.lookups):
        announcer, seeker = rng.sample(addrs, 2)
        info_hash = rng.randbytes(20)
        port = 10000 + trial
        net.run_until_event(announcer, net.engine(announcer).announce(info_hash, port, net.now))
        event = net.run_until_event(seeker, net.engine(seeker).get_peers(info_hash, net.now))
        assert isinstance(event, GetPeersCompleted)
        found += (announcer[0], port) in event.peers
        rounds.append(event.stats.rounds)
        messages.append(event.stats.queries)
    return {
        "network": "in-memory (fake clock, 10 ms latency)",
        "nodes": args.nodes,
        "bootstrap_seconds": round(bootstrap_seconds, 3),
        "bootstrap_fake_seconds": round(net.now - fake_start, 3),
        "routing_table_size": summarize([float(len(net.engine(a).table)) for a in addrs]),
        "lookups": args.lookups,
        "success_rate": found / args.lookups if args.lookups else 0.0,
        "rounds_per_lookup": summarize(rounds),
        "messages_per_lookup": summarize(messages),
        "datagrams_delivered": net.delivered,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=200)
    parser.add_argument("--lookups", type=int, default=100)
    parser.add_argument("--wave", type=int, default=20, help="nodes joining at once (udp)")
    parser.add_argument("--timeout", type=float, default=1.0, help="query timeout in seconds")
    parser.add_argument("--net", choices=("udp", "memory"), default="udp")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--churn", type=float, default=0.0, help="fraction of nodes that leave before the lookups (udp)"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.net == "udp":
        try:
            import uvloop

            result = uvloop.run(run_udp(args))
        except ImportError:
            result = asyncio.run(run_udp(args))
    else:
        result = run_memory(args)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key:24} {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
