"""UDP tracker packet codecs (BEP 15, with BEP 41 URL data), level L2, sans-IO.

One frozen dataclass per packet.  :func:`encode_packet` turns any of them into bytes; the client
decodes tracker packets with :func:`decode_response`, the server (loopback tracker in
:mod:`torrentgoat.testing.tracker`) decodes client packets with :func:`decode_request`.  Every
malformed packet raises :class:`~torrentgoat.errors.TrackerError`.

Over IPv6 the announce reply carries 18-byte peers instead of 6-byte ones (BEP 15, "IPv6"), so
the decoders take ``ipv6``.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from torrentgoat.errors import TrackerError
from torrentgoat.primitives import InfoHash, PeerAddress, PeerId
from torrentgoat.tracker.messages import (
    MAX_MESSAGE_LENGTH,
    MAX_PEERS,
    AnnounceEvent,
    AnnounceRequest,
    ScrapeStats,
    decode_compact_peers,
    decode_compact_peers6,
    encode_compact_peers,
    encode_compact_peers6,
)

__all__ = [
    "ACTION_ANNOUNCE",
    "ACTION_CONNECT",
    "ACTION_ERROR",
    "ACTION_SCRAPE",
    "MAX_UDP_SCRAPE_HASHES",
    "PROTOCOL_ID",
    "UDPAnnounce",
    "UDPAnnounceReply",
    "UDPConnect",
    "UDPConnectReply",
    "UDPError",
    "UDPPacket",
    "UDPScrape",
    "UDPScrapeReply",
    "decode_request",
    "decode_response",
    "encode_packet",
    "peek_transaction_id",
]

PROTOCOL_ID = 0x41727101980
"""Magic constant of the connect request (BEP 15)."""

ACTION_CONNECT = 0
ACTION_ANNOUNCE = 1
ACTION_SCRAPE = 2
ACTION_ERROR = 3

MAX_UDP_SCRAPE_HASHES = 74
"""BEP 15: "Up to about 74 torrents can be scraped at once" (one packet)."""

_OPTION_END = 0
_OPTION_NOP = 1
_OPTION_URL_DATA = 2
_MAX_URL_DATA = 1024

_HEADER = struct.Struct(">II")  # action, transaction id
_CONNECT = struct.Struct(">QII")  # protocol id, action, transaction id
_CONNECT_REPLY = struct.Struct(">IIQ")  # action, transaction id, connection id
_ANNOUNCE = struct.Struct(">QII20s20sQQQIIIiH")  # 98 bytes
_ANNOUNCE_REPLY = struct.Struct(">IIIII")  # action, tid, interval, leechers, seeders
_SCRAPE = struct.Struct(">QII")  # connection id, action, transaction id
_STATS = struct.Struct(">III")  # seeders, completed, leechers


@dataclass(frozen=True, slots=True, kw_only=True)
class UDPConnect:
    """Connect request (BEP 15 "Connect")."""

    transaction_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class UDPConnectReply:
    """Connect response: the connection id to put in the next requests."""

    transaction_id: int
    connection_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class UDPAnnounce:
    """Announce request (BEP 15 "Announce"); ``url_data`` is the BEP 41 path and query."""

    connection_id: int
    transaction_id: int
    request: AnnounceRequest
    url_data: bytes = b""


@dataclass(frozen=True, slots=True, kw_only=True)
class UDPAnnounceReply:
    """Announce response; ``seeders``/``leechers`` are BEP 3's ``complete``/``incomplete``."""

    transaction_id: int
    interval: int
    leechers: int
    seeders: int
    peers: tuple[PeerAddress, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class UDPScrape:
    """Scrape request for up to :data:`MAX_UDP_SCRAPE_HASHES` torrents."""

    connection_id: int
    transaction_id: int
    info_hashes: tuple[InfoHash, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class UDPScrapeReply:
    """Scrape response: one :class:`ScrapeStats` per requested info-hash, in request order."""

    transaction_id: int
    stats: tuple[ScrapeStats, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class UDPError:
    """Error response (BEP 15 "Errors"): the tracker's message."""

    transaction_id: int
    message: str


UDPPacket = (
    UDPConnect | UDPConnectReply | UDPAnnounce | UDPAnnounceReply | UDPScrape | UDPScrapeReply | UDPError
)


def _url_data_options(url_data: bytes) -> bytes:
    """BEP 41: URLData options of at most 255 bytes each, then EndOfOptions."""
    if not url_data:
        return b""
    out = bytearray()
    for start in range(0, len(url_data), 255):
        chunk = url_data[start : start + 255]
        out += bytes((_OPTION_URL_DATA, len(chunk))) + chunk
    out.append(_OPTION_END)
    return bytes(out)


def _ipv4_field(ip: str | None) -> int:
    if ip is None:
        return 0
    address = ipaddress.ip_address(ip)
    return int(address) if address.version == 4 else 0


def encode_packet(packet: UDPPacket, *, ipv6: bool = False) -> bytes:
    """Bytes of ``packet`` (BEP 15 layouts; ``ipv6`` selects 18-byte peers in announce replies)."""
    match packet:
        case UDPConnect(transaction_id=tid):
            return _CONNECT.pack(PROTOCOL_ID, ACTION_CONNECT, tid)
        case UDPConnectReply(transaction_id=tid, connection_id=cid):
            return _CONNECT_REPLY.pack(ACTION_CONNECT, tid, cid)
        case UDPAnnounce(connection_id=cid, transaction_id=tid, request=r, url_data=url_data):
            head = _ANNOUNCE.pack(
                cid,
                ACTION_ANNOUNCE,
                tid,
                r.info_hash.raw,
                r.peer_id.raw,
                r.downloaded,
                r.left,
                r.uploaded,
                r.event.value,
                _ipv4_field(r.ip),
                r.key or 0,
                -1 if r.numwant is None else min(r.numwant, (1 << 31) - 1),
                r.port,
            )
            return head + _url_data_options(url_data)
        case UDPAnnounceReply(transaction_id=tid, interval=i, leechers=le, seeders=se, peers=peers):
            body = encode_compact_peers6(peers) if ipv6 else encode_compact_peers(peers)
            return _ANNOUNCE_REPLY.pack(ACTION_ANNOUNCE, tid, i, le, se) + body
        case UDPScrape(connection_id=cid, transaction_id=tid, info_hashes=hashes):
            return _SCRAPE.pack(cid, ACTION_SCRAPE, tid) + b"".join(h.raw for h in hashes)
        case UDPScrapeReply(transaction_id=tid, stats=stats):
            body = b"".join(_STATS.pack(s.complete, s.downloaded, s.incomplete) for s in stats)
            return _HEADER.pack(ACTION_SCRAPE, tid) + body
        case UDPError(transaction_id=tid, message=message):
            return _HEADER.pack(ACTION_ERROR, tid) + message.encode("utf-8", "replace")
    raise TrackerError(f"not a UDP tracker packet: {packet!r}")  # pragma: no cover


def peek_transaction_id(data: bytes) -> int | None:
    """Transaction id of a tracker reply (offset 4), or ``None`` when the datagram is too short."""
    if len(data) < 8:
        return None
    return int.from_bytes(data[4:8], "big")


def decode_response(
    data: bytes, *, ipv6: bool = False
) -> UDPConnectReply | UDPAnnounceReply | UDPScrapeReply | UDPError:
    """Decode a datagram from a tracker (client side).  Peers beyond :data:`MAX_PEERS` are dropped."""
    if len(data) < 8:
        raise TrackerError(f"UDP tracker reply of {len(data)} bytes is shorter than 8")
    action, tid = _HEADER.unpack_from(data)
    if action == ACTION_CONNECT:
        if len(data) < _CONNECT_REPLY.size:
            raise TrackerError(f"UDP connect reply of {len(data)} bytes is shorter than 16")
        return UDPConnectReply(transaction_id=tid, connection_id=_CONNECT_REPLY.unpack_from(data)[2])
    if action == ACTION_ANNOUNCE:
        if len(data) < _ANNOUNCE_REPLY.size:
            raise TrackerError(
                f"UDP announce reply of {len(data)} bytes is shorter than 20"
                " (opentracker answers a bare 8-byte header for an info-hash it does not serve)"
            )
        _, _, interval, leechers, seeders = _ANNOUNCE_REPLY.unpack_from(data)
        body = data[_ANNOUNCE_REPLY.size :]
        size = 18 if ipv6 else 6
        body = body[: len(body) - len(body) % size]  # some trackers pad; a partial entry is dropped
        peers = (
            decode_compact_peers6(body, limit=MAX_PEERS)
            if ipv6
            else decode_compact_peers(body, limit=MAX_PEERS)
        )
        return UDPAnnounceReply(
            transaction_id=tid,
            interval=min(interval, (1 << 31) - 1),
            leechers=leechers,
            seeders=seeders,
            peers=tuple(dict.fromkeys(peers)),
        )
    if action == ACTION_SCRAPE:
        body = data[_HEADER.size :]
        count = min(len(body) // _STATS.size, MAX_UDP_SCRAPE_HASHES)
        stats = tuple(
            ScrapeStats(complete=se, downloaded=co, incomplete=le)
            for se, co, le in (_STATS.unpack_from(body, i * _STATS.size) for i in range(count))
        )
        return UDPScrapeReply(transaction_id=tid, stats=stats)
    if action == ACTION_ERROR:
        text = data[8 : 8 + MAX_MESSAGE_LENGTH * 4].decode("utf-8", "replace")[:MAX_MESSAGE_LENGTH]
        return UDPError(transaction_id=tid, message=text.rstrip("\x00"))
    raise TrackerError(f"UDP tracker reply has unknown action {action}")


def _parse_options(data: bytes) -> bytes:
    """BEP 41 options after an announce request; returns the concatenated URLData."""
    url = bytearray()
    pos = 0
    while pos < len(data):
        option = data[pos]
        if option == _OPTION_END:
            break
        if option == _OPTION_NOP:
            pos += 1
            continue
        if pos + 1 >= len(data):
            raise TrackerError("UDP announce option truncated")
        length = data[pos + 1]
        value = data[pos + 2 : pos + 2 + length]
        if len(value) != length:
            raise TrackerError("UDP announce option runs past the packet")
        if option == _OPTION_URL_DATA:
            url += value
            if len(url) > _MAX_URL_DATA:
                raise TrackerError("UDP announce URLData longer than 1024 bytes")
        pos += 2 + length
    return bytes(url)


def decode_request(data: bytes) -> UDPConnect | UDPAnnounce | UDPScrape:
    """Decode a datagram from a client (server side)."""
    if len(data) < 16:
        raise TrackerError(f"UDP tracker request of {len(data)} bytes is shorter than 16")
    head, action, tid = _CONNECT.unpack_from(data)
    if action == ACTION_CONNECT:
        if head != PROTOCOL_ID:
            raise TrackerError("UDP connect request without the protocol id")
        return UDPConnect(transaction_id=tid)
    if action == ACTION_ANNOUNCE:
        if len(data) < _ANNOUNCE.size:
            raise TrackerError(f"UDP announce request of {len(data)} bytes is shorter than 98")
        fields = _ANNOUNCE.unpack_from(data)
        (cid, _, _, info_hash, peer_id, downloaded, left, uploaded, event, ip, key, numwant, port) = fields
        if event > 3:
            raise TrackerError(f"UDP announce has unknown event {event}")
        if port == 0:
            raise TrackerError("UDP announce has port 0")
        request = AnnounceRequest(
            info_hash=InfoHash(info_hash),
            peer_id=PeerId(peer_id),
            port=port,
            uploaded=min(uploaded, (1 << 63) - 1),
            downloaded=min(downloaded, (1 << 63) - 1),
            left=min(left, (1 << 63) - 1),
            event=AnnounceEvent(event),
            numwant=None if numwant < 0 else numwant,
            compact=True,
            key=key,
            ip=str(ipaddress.IPv4Address(ip)) if ip else None,
        )
        url_data = _parse_options(data[_ANNOUNCE.size :])
        return UDPAnnounce(connection_id=cid, transaction_id=tid, request=request, url_data=url_data)
    if action == ACTION_SCRAPE:
        body = data[_SCRAPE.size :]
        if len(body) % 20 or not body or len(body) // 20 > MAX_UDP_SCRAPE_HASHES:
            raise TrackerError("UDP scrape request must carry 1 to 74 info-hashes of 20 bytes")
        hashes = tuple(InfoHash(body[i : i + 20]) for i in range(0, len(body), 20))
        return UDPScrape(connection_id=head, transaction_id=tid, info_hashes=hashes)
    raise TrackerError(f"UDP tracker request has unknown action {action}")
