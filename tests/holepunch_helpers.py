"""Network conditions for uTP tests on loopback: an emulated NAT in front of a session, a lossy link.

Both wrap the sans-IO uTP manager of a real :class:`~torrentgoat.aio.utp.UTPEndpoint` (its
``receive_datagram`` and ``datagrams_to_send``), so the asyncio driver, the socket and the session
run unchanged; only what reaches the engine is filtered.
"""

from __future__ import annotations

import random
from typing import Any

from torrentgoat.aio.utp import UTPEndpoint
from torrentgoat.session import Session

Addr = tuple[str, int]


class EmulatedNat:
    """Puts ``session`` behind a port-restricted NAT and a firewall, as seen from loopback:

    * incoming TCP is refused (its listeners are closed; connections it dials still work);
    * a uTP datagram is let in only from an endpoint the session sent a datagram to before (the
      mapping an outgoing packet opens in a real NAT); the others are dropped and counted.

    BEP 55 hole punching is what gets two such sessions connected.
    """

    def __init__(self, session: Session) -> None:
        endpoint = session.utp
        assert endpoint is not None, "the session has no uTP endpoint"
        self.sent_to: set[Addr] = set()
        self.dropped = 0
        manager = endpoint.manager
        receive = manager.receive_datagram
        send = manager.datagrams_to_send

        def filtered_receive(data: bytes, addr: Addr, now: float) -> None:
            if (addr[0], addr[1]) not in self.sent_to:
                self.dropped += 1
                return
            receive(data, addr, now)

        def recorded_send(now: float) -> list[tuple[bytes, Addr]]:
            datagrams = send(now)
            for _, addr in datagrams:
                self.sent_to.add((addr[0], addr[1]))
            return datagrams

        manager.receive_datagram = filtered_receive  # type: ignore[method-assign]
        manager.datagrams_to_send = recorded_send  # type: ignore[method-assign]
        servers: list[Any] = session._servers  # the TCP listeners: a firewall drops what they would get
        for server in servers:
            server.close()


class LossyLink:
    """Drops each uTP datagram arriving at ``endpoint`` with probability ``loss`` (seeded), before
    the engine sees it; on both endpoints of a connection, that is loss in both directions."""

    def __init__(self, endpoint: UTPEndpoint, loss: float, *, seed: int) -> None:
        rng = random.Random(seed)
        self.dropped = 0
        self.passed = 0
        manager = endpoint.manager
        receive = manager.receive_datagram

        def lossy_receive(data: bytes, addr: Addr, now: float) -> None:
            if rng.random() < loss:
                self.dropped += 1
                return
            self.passed += 1
            receive(data, addr, now)

        manager.receive_datagram = lossy_receive  # type: ignore[method-assign]
