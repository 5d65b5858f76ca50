"""BEP 11 peer exchange (``ut_pex``): compact codec and a per-connection delta tracker (level L2).

A PEX message is a bencoded dictionary of compact peer lists: ``added`` (6 bytes per IPv4 peer:
address then big-endian port), ``added.f`` (one flags byte per added peer), ``dropped``, and the
IPv6 counterparts ``added6``/``added6.f``/``dropped6`` (18 bytes per peer).

Flags (``added.f``, one byte per peer): 0x01 prefers encryption, 0x02 seed, 0x04 speaks uTP (BEP 29),
0x08 supports ``ut_holepunch`` (BEP 55), 0x10 reachable (the sender dialled it); :func:`pex_flags`
builds them.

BEP 11 limits: a message carries at most 50 added and 50 dropped peers, and is sent at most once a
minute.  :class:`PexState` enforces both for what we send; on receive we cap each list at
:data:`MAX_PEX_PEERS` entries (extra entries are ignored, bounded memory).
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Mapping

from torrentgoat import bencode
from torrentgoat.errors import BencodeError, RemoteProtocolError
from torrentgoat.primitives import PeerAddress
from torrentgoat.wire.messages import Buffer, Pex, PexPeer

__all__ = [
    "MAX_PEX_PEERS",
    "PEX_INTERVAL",
    "PEX_MAX_ADDED",
    "PEX_MAX_DROPPED",
    "PexState",
    "decode_compact_peers",
    "decode_pex",
    "encode_compact_peers",
    "encode_pex",
    "pex_flags",
]

PEX_INTERVAL = 60.0
"""BEP 11: "PEX messages ... should not be sent more frequently than once a minute"."""
PEX_MAX_ADDED = 50
"""BEP 11: at most 50 added peers per message."""
PEX_MAX_DROPPED = 50
"""BEP 11: at most 50 dropped peers per message."""
MAX_PEX_PEERS = 200
"""Entries read from each received list; the rest are ignored (bounded memory)."""

_PORT = struct.Struct(">H")


def _is_v6(address: PeerAddress) -> bool:
    return ":" in address.host


def encode_compact_peers(addresses: list[PeerAddress], *, v6: bool) -> bytes:
    """Compact form (BEP 23 / BEP 11): packed address + big-endian port per peer."""
    parts = []
    for address in addresses:
        ip = ipaddress.IPv6Address(address.host) if v6 else ipaddress.IPv4Address(address.host)
        parts.append(ip.packed + _PORT.pack(address.port))
    return b"".join(parts)


def decode_compact_peers(data: bytes, *, v6: bool, limit: int = MAX_PEX_PEERS) -> list[PeerAddress]:
    """Decode a compact peer list; a length that is not a multiple of 6 (18) is an error.

    Entries with port 0 are skipped; at most ``limit`` entries are returned.
    """
    size = 18 if v6 else 6
    if len(data) % size:
        raise RemoteProtocolError(f"compact peer list of {len(data)} bytes is not a multiple of {size}")
    result: list[PeerAddress] = []
    for offset in range(0, min(len(data), limit * size), size):
        port = _PORT.unpack_from(data, offset + size - 2)[0]
        if port == 0:
            continue
        raw = data[offset : offset + size - 2]
        host = str(ipaddress.IPv6Address(raw) if v6 else ipaddress.IPv4Address(raw))
        result.append(PeerAddress(host, port))
    return result


def pex_flags(*, encrypted: bool, seed: bool, utp: bool, holepunch: bool, reachable: bool) -> int:
    """The BEP 11 ``added.f`` byte of a connected peer: 0x01 its connection is encrypted (MSE), 0x02
    it is a seed, 0x04 it speaks uTP (its connection runs over uTP), 0x08 it offered ``ut_holepunch``
    (BEP 55: others may ask us to relay a hole punch to it), 0x10 it accepts connections (we
    dialled it)."""
    return (
        (0x01 if encrypted else 0)
        | (0x02 if seed else 0)
        | (0x04 if utp else 0)
        | (0x08 if holepunch else 0)
        | (0x10 if reachable else 0)
    )


def encode_pex(message: Pex) -> bytes:
    """Bencoded ``ut_pex`` payload; flags are written for every added peer."""
    added4 = [p for p in message.added if not _is_v6(p.address)]
    added6 = [p for p in message.added if _is_v6(p.address)]
    dropped4 = [a for a in message.dropped if not _is_v6(a)]
    dropped6 = [a for a in message.dropped if _is_v6(a)]
    value: dict[bytes, bencode.BValue] = {
        b"added": encode_compact_peers([p.address for p in added4], v6=False),
        b"added.f": bytes(p.flags & 0xFF for p in added4),
        b"dropped": encode_compact_peers(dropped4, v6=False),
    }
    if added6 or dropped6:
        value[b"added6"] = encode_compact_peers([p.address for p in added6], v6=True)
        value[b"added6.f"] = bytes(p.flags & 0xFF for p in added6)
        value[b"dropped6"] = encode_compact_peers(dropped6, v6=True)
    return bencode.encode(value)


def _field(value: dict[bytes, bencode.BValue], key: bytes) -> bytes:
    item = value.get(key, b"")
    if not isinstance(item, bytes):
        raise RemoteProtocolError(f"ut_pex field {key.decode()!r} is not a byte string")
    return item


def _decode_added(raw: bytes, flags: bytes, *, v6: bool) -> list[PexPeer]:
    """``added``/``added6`` with their flags; flags of the wrong length are ignored (all 0)."""
    size = 18 if v6 else 6
    if len(raw) % size:
        raise RemoteProtocolError(f"compact peer list of {len(raw)} bytes is not a multiple of {size}")
    use_flags = len(flags) == len(raw) // size
    result: list[PexPeer] = []
    for i in range(min(len(raw) // size, MAX_PEX_PEERS)):
        entry = raw[i * size : (i + 1) * size]
        for address in decode_compact_peers(entry, v6=v6):  # empty for port 0
            result.append(PexPeer(address=address, flags=flags[i] if use_flags else 0))
    return result


def decode_pex(payload: Buffer) -> Pex:
    """Decode a ``ut_pex`` payload (BEP 11); at most :data:`MAX_PEX_PEERS` entries per list."""
    try:
        value = bencode.decode(payload)
    except BencodeError as exc:
        raise RemoteProtocolError(f"ut_pex message is not valid bencoding: {exc}") from None
    if not isinstance(value, dict):
        raise RemoteProtocolError("ut_pex message is not a bencoded dictionary")
    added: list[PexPeer] = []
    dropped: list[PeerAddress] = []
    for suffix, v6 in ((b"", False), (b"6", True)):
        key = b"added" + suffix
        added += _decode_added(_field(value, key), _field(value, key + b".f"), v6=v6)
        dropped += decode_compact_peers(_field(value, b"dropped" + suffix), v6=v6)
    return Pex(added=tuple(added), dropped=tuple(dropped))


class PexState:
    """What we last told one peer, and the next BEP 11 delta to send it.

    Pure: the caller passes the current set of connected peers (excluding the recipient) and the
    time.  :meth:`next_message` returns ``None`` until :data:`PEX_INTERVAL` has passed since the
    previous message (the first message may go out at once), or when nothing changed.  Changes
    beyond 50 added / 50 dropped carry over to the next message.
    """

    __slots__ = ("_interval", "_last_sent", "_max_added", "_max_dropped", "_told")

    def __init__(
        self,
        *,
        interval: float = PEX_INTERVAL,
        max_added: int = PEX_MAX_ADDED,
        max_dropped: int = PEX_MAX_DROPPED,
    ) -> None:
        self._interval = interval
        self._max_added = max_added
        self._max_dropped = max_dropped
        self._told: dict[PeerAddress, int] = {}
        self._last_sent: float | None = None

    @property
    def told(self) -> Mapping[PeerAddress, int]:
        """Peers (with flags) the recipient currently believes we are connected to."""
        return self._told

    def due(self, now: float) -> bool:
        return self._last_sent is None or now - self._last_sent >= self._interval

    def next_message(self, current: Mapping[PeerAddress, int], now: float) -> Pex | None:
        """The delta between ``current`` (address -> BEP 11 flags) and what we told, or ``None``."""
        if not self.due(now):
            return None
        added = [PexPeer(address=a, flags=f) for a, f in current.items() if a not in self._told]
        added = added[: self._max_added]
        dropped = [a for a in self._told if a not in current][: self._max_dropped]
        if not added and not dropped:
            return None
        for peer in added:
            self._told[peer.address] = peer.flags
        for address in dropped:
            del self._told[address]
        self._last_sent = now
        return Pex(added=tuple(added), dropped=tuple(dropped))
