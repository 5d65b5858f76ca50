"""uTP, the Micro Transport Protocol (BEP 29), sans-IO (level L2).

Modules: :mod:`.packet` (header, extensions, selective-ack bitmask), :mod:`.state` (states and
the transition table), :mod:`.connection` (:class:`UTPConnection`: sequence numbers, acks,
retransmission, timers), :mod:`.receiver` (in-order delivery, reordering, FIN, receive window),
:mod:`.outgoing` (send queue, packets in flight, path MTU probing), :mod:`.congestion` (LEDBAT,
RTT/RTO, base delay), :mod:`.manager` (:class:`UTPSocketManager`: demultiplexing by connection id,
incoming connections, caps, stray packets), :mod:`.events`, :mod:`.config`.  Nothing here touches a socket or a clock; the asyncio
driver is :mod:`torrentgoat.aio.utp`.
"""

from torrentgoat.utp.config import UTPConfig
from torrentgoat.utp.connection import State, UTPConnection
from torrentgoat.utp.events import (
    CloseReason,
    ConnectionAccepted,
    ConnectionClosed,
    ConnectionEstablished,
    DataReceived,
    Event,
    FinReceived,
)
from torrentgoat.utp.manager import ManagerStats, UTPSocketManager
from torrentgoat.utp.packet import Packet, decode, encode, looks_like_utp

__all__ = [
    "CloseReason",
    "ConnectionAccepted",
    "ConnectionClosed",
    "ConnectionEstablished",
    "DataReceived",
    "Event",
    "FinReceived",
    "ManagerStats",
    "Packet",
    "State",
    "UTPConfig",
    "UTPConnection",
    "UTPSocketManager",
    "decode",
    "encode",
    "looks_like_utp",
]
