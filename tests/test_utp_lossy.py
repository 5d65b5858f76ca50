"""uTP through the real asyncio driver over a lossy link (1 % and 5 % of the datagrams dropped in each
direction, :class:`tests.holepunch_helpers.LossyLink`): a stream both ways, and a whole torrent
payload between unchanged peer wire drivers, arrive complete and in order.  (The engine-level lossy
tests are in ``test_utp_engine.py``; this one adds the socket, the timers and the event loop.)"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
from collections.abc import AsyncIterator

import pytest

from tests.holepunch_helpers import LossyLink
from tests.test_utp_aio import Recorder, wait_until
from torrentgoat.aio.utp import UTPEndpoint, open_utp_peer_connection
from torrentgoat.primitives import InfoHash, PeerAddress, PeerId
from torrentgoat.testing.peers import PayloadLeecher, PayloadSeeder
from torrentgoat.testing.timing import scaled
from torrentgoat.utp.config import UTPConfig

LOSSES = [0.01, 0.05]


@pytest.fixture(params=LOSSES, ids=["1%", "5%"])
async def lossy_pair(
    request: pytest.FixtureRequest,
) -> AsyncIterator[tuple[UTPEndpoint, UTPEndpoint, list[LossyLink]]]:
    loss: float = request.param
    # Ethernet-sized datagrams (loopback would carry 64 KiB ones): a loss rate means as many losses as
    # on a real path
    config = UTPConfig(max_datagram=1472)
    a = UTPEndpoint(host="127.0.0.1", config=config)
    b = UTPEndpoint(host="127.0.0.1", config=config)
    await a.start()
    await b.start()
    links = [LossyLink(a, loss, seed=1), LossyLink(b, loss, seed=2)]
    try:
        yield a, b, links
    finally:
        await a.close()
        await b.close()


def assert_lossy(links: list[LossyLink]) -> None:
    """The link really lost datagrams (data ones at least: acks are few, one per burst)."""
    assert sum(link.dropped for link in links) >= 5, [(link.dropped, link.passed) for link in links]


async def test_a_stream_both_ways_survives_loss(
    lossy_pair: tuple[UTPEndpoint, UTPEndpoint, list[LossyLink]],
) -> None:
    a, b, links = lossy_pair
    up, down = os.urandom(1_500_000), os.urandom(1_000_000)
    served: list[Recorder] = []
    b.serve(lambda: served.append(Recorder(down)) or served[-1])
    transport, client = await a.open_connection(b.address, lambda: Recorder(up), timeout=scaled(20))
    await wait_until(
        lambda: served and len(served[0].received) == len(up) and len(client.received) == len(down),
        timeout=scaled(120),
    )
    assert bytes(served[0].received) == up and bytes(client.received) == down
    transport.close()
    async with asyncio.timeout(scaled(60)):
        await served[0].eof.wait()
    assert_lossy(links)


async def test_a_whole_payload_between_peer_drivers_survives_loss(
    lossy_pair: tuple[UTPEndpoint, UTPEndpoint, list[LossyLink]],
) -> None:
    a, b, links = lossy_pair
    loop = asyncio.get_running_loop()
    piece_length = 64 * 1024
    payload = random.Random(7).randbytes(40 * piece_length + 999)
    hashes = [
        hashlib.sha1(payload[i : i + piece_length]).digest() for i in range(0, len(payload), piece_length)
    ]
    info_hash = InfoHash(hashlib.sha1(b"utp-lossy").digest())
    rng = random.Random(3)
    seeder = PayloadSeeder(info_hash, payload, piece_length)
    b.serve(lambda: seeder.driver(PeerId.generate(rng), loop))
    leecher = PayloadLeecher(info_hash, len(payload), piece_length, verify=hashes)
    driver = await open_utp_peer_connection(
        PeerAddress(*b.address),
        leecher.engine(PeerId.generate(rng), loop),
        leecher,
        endpoint=a,
        timeout=scaled(20),
    )
    assert leecher.done is not None
    async with asyncio.timeout(scaled(120)):
        got = await leecher.done
    assert got == payload  # every piece verified against its SHA-1 on the way
    driver.close("done")
    assert_lossy(links)
