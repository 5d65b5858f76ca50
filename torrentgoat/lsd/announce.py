"""BEP 14 announces as data (level L2): ``BT-SEARCH`` datagrams built and parsed, nothing else.

An announce is an HTTP-like request sent to a multicast group (BEP 14 "Protocol")::

    BT-SEARCH * HTTP/1.1\\r\\n
    Host: 239.192.152.143:6771\\r\\n
    Port: 6881\\r\\n
    Infohash: 0123456789abcdef0123456789abcdef01234567\\r\\n
    cookie: 5a3f0c21\\r\\n
    \\r\\n
    \\r\\n

``Host`` names the group it is sent to, ``Port`` is the sender's BitTorrent listen port, one or
more consecutive ``Infohash`` headers (40 hex digits each) name the swarms it is in, and the
optional ``cookie`` lets a client recognise its own announces coming back through multicast
loopback.  BEP 14 asks senders to keep a datagram within 1400 bytes; :func:`encode_announces`
splits a long list of info-hashes into several datagrams.

Parsing is strict where a mistake could mislead us and lenient where real clients differ:
header names are case-insensitive, ``\\n`` line ends are accepted, the ``Host`` header is not
checked (libtorrent does not check it either), an ``Infohash`` that is not 40 hex digits is skipped
(not the whole announce), and anything else that is wrong -- oversized, not ASCII, not
``BT-SEARCH``, a missing, repeated or out-of-range ``Port``, too many info-hashes -- raises
:class:`~torrentgoat.errors.RemoteProtocolError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torrentgoat.errors import RemoteProtocolError
from torrentgoat.primitives import InfoHash

__all__ = [
    "LSD_GROUP4",
    "LSD_GROUP6",
    "LSD_PORT",
    "MAX_ANNOUNCE_SIZE",
    "Announce",
    "Group",
    "encode_announce",
    "encode_announces",
    "infohashes_per_datagram",
    "parse_announce",
]

LSD_PORT = 6771
"""The UDP port of both multicast groups (BEP 14)."""

MAX_ANNOUNCE_SIZE = 1400
"""BEP 14: a datagram with several info-hashes should not exceed 1400 bytes (MTU)."""

_REQUEST_LINE = "BT-SEARCH * HTTP/1.1"


@dataclass(frozen=True, slots=True, kw_only=True)
class Group:
    """A BEP 14 multicast group: its address and the ``Host`` header naming it."""

    address: str
    port: int = LSD_PORT
    family: int = 4
    """4 or 6."""

    @property
    def host_header(self) -> str:
        """RFC 2616 section 14.23 / RFC 2732 form: ``239.192.152.143:6771``, ``[ff15::efc0:988f]:6771``."""
        if self.family == 6:
            return f"[{self.address}]:{self.port}"
        return f"{self.address}:{self.port}"


LSD_GROUP4 = Group(address="239.192.152.143", family=4)
"""BEP 14 group A (organisation-local scope)."""
LSD_GROUP6 = Group(address="ff15::efc0:988f", family=6)
"""BEP 14 group B (site-local scope)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Announce:
    """One ``BT-SEARCH`` announce: the sender listens on ``port`` and is in these swarms."""

    port: int
    info_hashes: tuple[InfoHash, ...]
    cookie: str | None = None
    """Opaque token of the sender (hex by convention), or None when absent."""
    host: str | None = None
    """The ``Host`` header as sent (informational; not checked)."""


def encode_announce(
    group: Group, port: int, info_hashes: Sequence[InfoHash], cookie: str | None = None
) -> bytes:
    """One announce datagram for ``info_hashes`` (at least one) to ``group`` (BEP 14 "Protocol")."""
    if not info_hashes:
        raise ValueError("an announce names at least one info-hash")
    if not 0 < port < 65536:
        raise ValueError(f"port out of range: {port}")
    lines = [_REQUEST_LINE, f"Host: {group.host_header}", f"Port: {port}"]
    lines += [f"Infohash: {ih.hex}" for ih in info_hashes]
    if cookie is not None:
        lines.append(f"cookie: {cookie}")
    return ("\r\n".join(lines) + "\r\n\r\n\r\n").encode("ascii")


def encode_announces(
    group: Group,
    port: int,
    info_hashes: Sequence[InfoHash],
    cookie: str | None = None,
    *,
    max_size: int = MAX_ANNOUNCE_SIZE,
) -> list[bytes]:
    """Announces for every info-hash of ``info_hashes``, as few datagrams as fit in ``max_size``
    bytes each (BEP 14: several consecutive ``Infohash`` headers in one announce)."""
    per_datagram = infohashes_per_datagram(group, port, cookie, max_size)
    hashes = list(info_hashes)
    return [
        encode_announce(group, port, hashes[i : i + per_datagram], cookie)
        for i in range(0, len(hashes), per_datagram)
    ]


def infohashes_per_datagram(group: Group, port: int, cookie: str | None, max_size: int) -> int:
    """How many ``Infohash`` headers fit in an announce of at most ``max_size`` bytes (at least one)."""
    empty = len(encode_announce(group, port, [InfoHash(bytes(20))], cookie)) - _INFOHASH_LINE
    return max(1, (max_size - empty) // _INFOHASH_LINE)


_INFOHASH_LINE = len("Infohash: ") + 40 + 2
"""Bytes one more ``Infohash`` header adds to an announce."""

_HEX = frozenset("0123456789abcdefABCDEF")


def parse_announce(data: bytes, *, max_size: int = 4096, max_info_hashes: int = 64) -> Announce:
    """Read one announce datagram; raises :class:`RemoteProtocolError` when it is not one.

    ``max_size`` and ``max_info_hashes`` bound the work a hostile datagram can cause; an
    ``Infohash`` header that is not 40 hex digits, or is all zeros, is skipped."""
    if len(data) > max_size:
        raise RemoteProtocolError(f"LSD announce of {len(data)} bytes (limit {max_size})")
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise RemoteProtocolError("LSD announce is not ASCII") from None
    lines = text.replace("\r\n", "\n").split("\n")
    request = lines[0].split()
    if len(request) != 3 or request[0].upper() != "BT-SEARCH" or not request[2].upper().startswith("HTTP/1."):
        raise RemoteProtocolError(f"not a BT-SEARCH request: {lines[0][:60]!r}")
    port: int | None = None
    cookie: str | None = None
    host: str | None = None
    hashes: list[InfoHash] = []
    seen_hashes = 0
    for line in lines[1:]:
        if not line:
            break  # end of the headers; whatever follows is ignored
        name, sep, value = line.partition(":")
        if not sep:
            raise RemoteProtocolError(f"LSD header without a colon: {line[:60]!r}")
        name = name.strip().lower()
        value = value.strip()
        if name == "port":
            if port is not None:
                raise RemoteProtocolError("LSD announce with two Port headers")
            if not value.isdigit() or len(value) > 5 or not 0 < int(value) < 65536:
                raise RemoteProtocolError(f"LSD announce with a bad port: {value[:20]!r}")
            port = int(value)
        elif name == "infohash":
            seen_hashes += 1
            if seen_hashes > max_info_hashes:
                raise RemoteProtocolError(f"LSD announce with more than {max_info_hashes} info-hashes")
            if len(value) != 40 or not _HEX.issuperset(value):
                continue
            raw = bytes.fromhex(value)
            if raw == bytes(20):
                continue
            info_hash = InfoHash(raw)
            if info_hash not in hashes:
                hashes.append(info_hash)
        elif name == "cookie":
            cookie = value[:64]
        elif name == "host":
            host = value[:64]
    if port is None:
        raise RemoteProtocolError("LSD announce without a Port header")
    return Announce(port=port, info_hashes=tuple(hashes), cookie=cookie, host=host)
