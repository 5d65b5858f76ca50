"""A DHT of a few nodes on 127.0.0.1 that know each other (BEP 5), for tests, the demo and benchmarks."""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncIterator

from torrentgoat.aio.dht import DHTNode
from torrentgoat.dht import DHTConfig
from torrentgoat.testing.timing import scaled

__all__ = ["local_dht"]


@contextlib.asynccontextmanager
async def local_dht(count: int = 3) -> AsyncIterator[list[DHTNode]]:
    """``count`` DHT nodes on 127.0.0.1, each bootstrapped from the ones before it; closed on exit."""
    nodes = [
        DHTNode(host="127.0.0.1", config=DHTConfig(query_timeout=scaled(0.5)), rng=random.Random(i))
        for i in range(count)
    ]
    try:
        for node in nodes:
            await node.start()
        for i, node in enumerate(nodes[1:], start=1):
            await node.bootstrap([n.address for n in nodes[:i]])
        yield nodes
    finally:
        for node in nodes:
            await node.close()
