"""Local Service Discovery, BEP 14 (level L2, sans-IO): find the peers of a swarm on the local network.

* :mod:`.announce` -- ``BT-SEARCH`` announces built and parsed (:func:`encode_announce`,
  :func:`parse_announce`), the two multicast groups;
* :mod:`.engine` -- :class:`LSDEngine`: the announce schedule, our cookie, rate limits on what is sent
  and accepted, :class:`PeerFound` events.

The asyncio driver (sockets, multicast membership, the timer) is :mod:`torrentgoat.aio.lsd`.
"""

from torrentgoat.lsd.announce import (
    LSD_GROUP4,
    LSD_GROUP6,
    LSD_PORT,
    MAX_ANNOUNCE_SIZE,
    Announce,
    Group,
    encode_announce,
    encode_announces,
    parse_announce,
)
from torrentgoat.lsd.engine import LSDConfig, LSDEngine, LSDStats, PeerFound, TokenBucket

__all__ = [
    "LSD_GROUP4",
    "LSD_GROUP6",
    "LSD_PORT",
    "MAX_ANNOUNCE_SIZE",
    "Announce",
    "Group",
    "LSDConfig",
    "LSDEngine",
    "LSDStats",
    "PeerFound",
    "TokenBucket",
    "encode_announce",
    "encode_announces",
    "parse_announce",
]
