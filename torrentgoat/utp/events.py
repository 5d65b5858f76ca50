"""What a :class:`~torrentgoat.utp.manager.UTPSocketManager` reports to its driver (level L2).

One frozen dataclass per event, past tense.  ``key`` identifies the connection in the manager
(an int, unique for the manager's lifetime); ``addr`` is the peer's ``(host, port)``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TypeAlias

__all__ = [
    "CloseReason",
    "ConnectionAccepted",
    "ConnectionClosed",
    "ConnectionEstablished",
    "DataReceived",
    "Event",
    "FinReceived",
]

Addr: TypeAlias = tuple[str, int]


class CloseReason(enum.Enum):
    """Why a connection ended."""

    CLOSED = "closed"
    """Graceful: our FIN was acknowledged (or the peer's FIN came and we closed too)."""
    RESET = "reset by peer"
    """The peer sent ST_RESET."""
    REFUSED = "refused"
    """Our SYN was answered with ST_RESET."""
    TIMED_OUT = "timed out"
    """Too many retransmissions without an ack (or a SYN never answered)."""
    ABORTED = "aborted"
    """We aborted it (ST_RESET sent) -- or the manager evicted it (connection cap, shutdown)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionAccepted:
    """A peer's SYN created an incoming connection (state SYN_RECV; data may be sent already)."""

    key: int
    addr: Addr


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionEstablished:
    """Our SYN was acknowledged: the outgoing connection ``key`` is open."""

    key: int
    addr: Addr


@dataclass(frozen=True, slots=True, kw_only=True)
class DataReceived:
    """In-order stream bytes (what several packets carried, coalesced)."""

    key: int
    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class FinReceived:
    """The peer's stream ended (ST_FIN, everything before it delivered); we may still send."""

    key: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionClosed:
    """The connection is gone (exactly once per connection, always the last event of ``key``)."""

    key: int
    reason: CloseReason


Event: TypeAlias = ConnectionAccepted | ConnectionEstablished | DataReceived | FinReceived | ConnectionClosed
