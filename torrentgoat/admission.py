"""Admission of incoming connections (level L0, pure): accept, refuse, or accept by evicting.

One decision per accepted socket, taken before a byte of it is read, from counts the caller keeps:
the connections open now (every stage), those still in their handshake (MSE and BitTorrent), and
how many of each the remote IP holds.  libtorrent has the same knobs (``connections_limit``, one
connection per IP unless ``allow_multiple_connections_per_ip``, ``handshake_timeout``); the rules:

* over the session-wide cap of open connections: refuse;
* one IP over its cap of open connections, or of connections in their handshake: refuse -- so one
  host can neither fill the table nor churn a real peer's handshake out of it;
* the handshake table full: accept, and close the *oldest* connection still in its handshake (a real
  peer finishes its handshake in a round trip or two; a silent or slow-loris connection is always the
  oldest one, so a flood can delay an honest handshake but never lock it out, as the uTP manager does
  with SYNs).

Loopback addresses are exempt from the per-IP caps unless :attr:`AdmissionLimits.limit_loopback`:
every peer of a local test or cluster benchmark shares 127.0.0.1.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass

from torrentgoat.errors import ConfigError

__all__ = ["AdmissionLimits", "Verdict", "admit_incoming"]


@dataclass(frozen=True, slots=True, kw_only=True)
class AdmissionLimits:
    """The caps :func:`admit_incoming` applies (filled from ``SessionConfig``)."""

    max_connections: int = 500
    """Incoming connections open at once, in every stage (libtorrent ``connections_limit``: 200
    for all connections; ours counts incoming ones, each torrent caps its peers with ``max_peers``)."""
    max_per_ip: int = 8
    """Incoming connections open at once from one IP address."""
    max_handshakes: int = 128
    """Incoming connections still in their handshake (half-open); when full, the oldest is closed."""
    max_handshakes_per_ip: int = 4
    """Of those, how many one IP address may hold."""
    limit_loopback: bool = False
    """Apply the per-IP caps to loopback addresses too (off: local swarms share 127.0.0.1)."""

    def __post_init__(self) -> None:
        for name in ("max_connections", "max_per_ip", "max_handshakes", "max_handshakes_per_ip"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")


class Verdict(enum.Enum):
    """What to do with a newly accepted connection."""

    ACCEPT = "accept"
    ACCEPT_EVICTING_OLDEST = "accept, closing the oldest connection still in its handshake"
    REFUSE_FULL = "refused: the session's connection limit is reached"
    REFUSE_IP = "refused: too many connections from this address"
    REFUSE_IP_HANDSHAKES = "refused: too many handshakes in progress from this address"


def _exempt(ip: str, limits: AdmissionLimits) -> bool:
    if limits.limit_loopback:
        return False
    try:
        return ipaddress.ip_address(ip.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def admit_incoming(
    ip: str,
    *,
    open_total: int,
    handshakes_total: int,
    open_from_ip: int,
    handshakes_from_ip: int,
    limits: AdmissionLimits,
) -> Verdict:
    """The verdict for a new connection from ``ip``, given the counts *before* it (see the module
    docstring for the rules and their order)."""
    if open_total >= limits.max_connections:
        return Verdict.REFUSE_FULL
    if not _exempt(ip, limits):
        if open_from_ip >= limits.max_per_ip:
            return Verdict.REFUSE_IP
        if handshakes_from_ip >= limits.max_handshakes_per_ip:
            return Verdict.REFUSE_IP_HANDSHAKES
    if handshakes_total >= limits.max_handshakes:
        return Verdict.ACCEPT_EVICTING_OLDEST
    return Verdict.ACCEPT
