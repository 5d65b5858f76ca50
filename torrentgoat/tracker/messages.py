"""Tracker data shapes shared by the HTTP (BEP 3) and UDP (BEP 15) codecs, level L2.

Everything a tracker sends is hostile until checked: the helpers here turn compact peer strings
(BEP 23, BEP 7) into :class:`~torrentgoat.primitives.PeerAddress` values with bounds on how many
are accepted, and every malformed value raises :class:`~torrentgoat.errors.TrackerError`.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass, field

from torrentgoat.errors import TrackerError
from torrentgoat.primitives import InfoHash, PeerAddress, PeerId, dialable_host

__all__ = [
    "MAX_BODY_SIZE",
    "MAX_MESSAGE_LENGTH",
    "MAX_PEERS",
    "AnnounceEvent",
    "AnnounceRequest",
    "AnnounceResponse",
    "ScrapeResponse",
    "ScrapeStats",
    "TrackerFailure",
    "decode_compact_peers",
    "decode_compact_peers6",
    "encode_compact_peers",
    "encode_compact_peers6",
    "normalize_host",
    "usable_peer_host",
]

MAX_PEERS = 1000
"""Most peers accepted from one reply; the rest are dropped (bounded memory for remote input)."""

MAX_BODY_SIZE = 2 * 1024 * 1024
"""Largest HTTP tracker reply body accepted (2 MiB); a bigger one is a :class:`TrackerError`."""

MAX_MESSAGE_LENGTH = 1024
"""``failure reason`` / ``warning message`` / UDP error text is cut to this many characters."""

_U32 = 1 << 32
_U64 = 1 << 64


class AnnounceEvent(enum.Enum):
    """The ``event`` key of an announce (BEP 3 "Trackers"); the values are BEP 15's numbers."""

    NONE = 0
    COMPLETED = 1
    STARTED = 2
    STOPPED = 3

    @property
    def http_name(self) -> str:
        """The HTTP query value (empty for :attr:`NONE`, which is sent by omitting the key)."""
        return "" if self is AnnounceEvent.NONE else self.name.lower()

    @classmethod
    def from_http_name(cls, name: str) -> AnnounceEvent:
        """Parse the HTTP ``event`` value (``started``/``completed``/``stopped``/``empty``/absent)."""
        for event in cls:
            if name == event.http_name:
                return event
        if name == "empty":  # some clients spell "no event" this way
            return cls.NONE
        raise TrackerError(f"unknown announce event {name[:32]!r}")


def _check_uint(name: str, value: int, limit: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < limit:
        raise TrackerError(f"{name} out of range: {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class AnnounceRequest:
    """One announce (BEP 3 "Trackers", BEP 15 "Announce"), independent of the transport.

    ``numwant`` ``None`` lets the tracker choose (HTTP: key omitted; UDP: -1).  ``key`` is the
    32-bit value that identifies us across IP changes; ``ip`` is the optional address override.
    """

    info_hash: InfoHash
    peer_id: PeerId
    port: int
    uploaded: int = 0
    downloaded: int = 0
    left: int = 0
    event: AnnounceEvent = AnnounceEvent.NONE
    numwant: int | None = None
    compact: bool = True
    key: int | None = None
    tracker_id: bytes | None = None
    ip: str | None = None

    def __post_init__(self) -> None:
        _check_uint("port", self.port, 1 << 16)
        if self.port == 0:
            raise TrackerError("announce port must not be 0")
        for name in ("uploaded", "downloaded", "left"):
            _check_uint(name, getattr(self, name), _U64 >> 1)
        if self.numwant is not None:
            _check_uint("numwant", self.numwant, 1 << 31)
        if self.key is not None:
            _check_uint("key", self.key, _U32)
        if self.tracker_id is not None and len(self.tracker_id) > 255:
            raise TrackerError("tracker id longer than 255 bytes")
        if self.ip is not None:
            normalize_host(self.ip)


@dataclass(frozen=True, slots=True, kw_only=True)
class AnnounceResponse:
    """A successful announce reply (BEP 3; BEP 15 fills only interval, counts and peers).

    ``peers`` holds IPv4 and IPv6 addresses (BEP 7 ``peers6`` merged in), without duplicates,
    at most :data:`MAX_PEERS`.  ``peer_ids`` maps addresses to ids for dictionary-form replies.
    """

    interval: int | None = None
    min_interval: int | None = None
    tracker_id: bytes | None = None
    complete: int | None = None
    incomplete: int | None = None
    warning: str | None = None
    peers: tuple[PeerAddress, ...] = ()
    peer_ids: tuple[tuple[PeerAddress, bytes], ...] = field(default=())


@dataclass(frozen=True, slots=True, kw_only=True)
class ScrapeStats:
    """Swarm counts for one torrent (BEP 48: ``complete``, ``downloaded``, ``incomplete``)."""

    complete: int = 0
    downloaded: int = 0
    incomplete: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ScrapeResponse:
    """A scrape reply: counts per info-hash (BEP 48; BEP 15 "Scrape")."""

    files: tuple[tuple[InfoHash, ScrapeStats], ...] = ()

    def get(self, info_hash: InfoHash) -> ScrapeStats | None:
        for key, stats in self.files:
            if key == info_hash:
                return stats
        return None


class TrackerFailure(TrackerError):
    """The tracker refused the request: HTTP ``failure reason`` (BEP 3) or a UDP error (BEP 15).

    ``reason`` is the tracker's own text; ``retry_in`` the BEP 31 ``retry in`` minutes (``None``
    when absent, ``-1`` for "never").
    """

    def __init__(self, reason: str, *, retry_in: int | None = None) -> None:
        super().__init__(f"tracker failure: {reason}")
        self.reason = reason
        self.retry_in = retry_in


def normalize_host(text: str) -> str:
    """Canonical text of an IPv4/IPv6 literal; anything else (e.g. a DNS name) is a TrackerError."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise TrackerError(f"not an IP address: {text[:64]!r}") from None


def usable_peer_host(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether a peer address from a tracker may be dialled (see :func:`dialable_host`): entries
    aimed at unspecified, multicast or broadcast addresses are dropped, not treated as errors."""
    return dialable_host(str(address))


def _decode_compact(data: bytes, size: int, what: str, limit: int) -> list[PeerAddress]:
    if len(data) % size:
        raise TrackerError(f"{what} length {len(data)} is not a multiple of {size}")
    peers: list[PeerAddress] = []
    for offset in range(0, min(len(data), size * limit), size):
        port = int.from_bytes(data[offset + size - 2 : offset + size], "big")
        if port == 0:
            continue  # unusable entry; skipped rather than failing the whole reply
        address = ipaddress.ip_address(data[offset : offset + size - 2])
        if usable_peer_host(address):
            peers.append(PeerAddress(str(address), port))
    return peers


def decode_compact_peers(data: bytes, *, limit: int = MAX_PEERS) -> list[PeerAddress]:
    """BEP 23 compact IPv4 peers: 6 bytes each (address, port, network order); port 0 skipped."""
    return _decode_compact(data, 6, "compact peers", limit)


def decode_compact_peers6(data: bytes, *, limit: int = MAX_PEERS) -> list[PeerAddress]:
    """BEP 7 compact IPv6 peers (``peers6``): 18 bytes each; port 0 skipped."""
    return _decode_compact(data, 18, "compact peers6", limit)


def _encode_compact(peers: list[PeerAddress] | tuple[PeerAddress, ...], version: int) -> bytes:
    out = bytearray()
    for peer in peers:
        address = ipaddress.ip_address(peer.host)
        if address.version != version:
            raise TrackerError(f"{peer} is not an IPv{version} address")
        out += address.packed + peer.port.to_bytes(2, "big")
    return bytes(out)


def encode_compact_peers(peers: list[PeerAddress] | tuple[PeerAddress, ...]) -> bytes:
    """Inverse of :func:`decode_compact_peers` (every address must be IPv4)."""
    return _encode_compact(peers, 4)


def encode_compact_peers6(peers: list[PeerAddress] | tuple[PeerAddress, ...]) -> bytes:
    """Inverse of :func:`decode_compact_peers6` (every address must be IPv6)."""
    return _encode_compact(peers, 6)
