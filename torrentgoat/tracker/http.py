"""HTTP tracker protocol codecs (BEP 3 "Trackers", BEP 23, BEP 7, BEP 48), level L2, sans-IO.

Both directions are here: the client builds announce/scrape URLs and parses replies; the server
side (used by :mod:`torrentgoat.testing.tracker`) parses query strings and encodes replies.  Binary
values (``info_hash``, ``peer_id``) are percent-encoded byte by byte: every byte outside the RFC 3986
unreserved set becomes ``%XX`` (BEP 3: "escaped as ... the 20-byte ... string").

Replies are hostile input: size bounded by :data:`~torrentgoat.tracker.messages.MAX_BODY_SIZE`,
strict bencoding, every field type-checked, peers bounded by
:data:`~torrentgoat.tracker.messages.MAX_PEERS`; anything wrong is a
:class:`~torrentgoat.errors.TrackerError`.
"""

from __future__ import annotations

import ipaddress
import urllib.parse
from collections.abc import Iterable, Sequence
from typing import Any

from torrentgoat import bencode
from torrentgoat.errors import BencodeError, ConfigError, TrackerError
from torrentgoat.primitives import InfoHash, PeerAddress, PeerId
from torrentgoat.tracker.messages import (
    MAX_BODY_SIZE,
    MAX_MESSAGE_LENGTH,
    MAX_PEERS,
    AnnounceEvent,
    AnnounceRequest,
    AnnounceResponse,
    ScrapeResponse,
    ScrapeStats,
    TrackerFailure,
    decode_compact_peers,
    decode_compact_peers6,
    encode_compact_peers,
    encode_compact_peers6,
    normalize_host,
    usable_peer_host,
)

__all__ = [
    "MAX_SCRAPE_HASHES",
    "build_announce_url",
    "build_scrape_url",
    "encode_announce_reply",
    "encode_failure_reply",
    "encode_scrape_reply",
    "parse_announce_query",
    "parse_announce_reply",
    "parse_scrape_query",
    "parse_scrape_reply",
    "percent_encode",
]

MAX_SCRAPE_HASHES = 256
"""Most info-hashes put in (or accepted from) one scrape."""

_MAX_INT = 1 << 31


def percent_encode(data: bytes) -> str:
    """Percent-encode raw bytes: unreserved characters stay, everything else is ``%XX`` (RFC 3986)."""
    return urllib.parse.quote_from_bytes(data, safe="")


def _append_query(url: str, query: str) -> str:
    base, _, _fragment = url.partition("#")
    sep = ("" if base.endswith(("?", "&")) else "&") if "?" in base else "?"
    return base + sep + query


def build_announce_url(announce_url: str, request: AnnounceRequest) -> str:
    """The GET URL of an announce (BEP 3); ``&``-appended when ``announce_url`` has a query."""
    fields = [
        ("info_hash", percent_encode(request.info_hash.raw)),
        ("peer_id", percent_encode(request.peer_id.raw)),
        ("port", str(request.port)),
        ("uploaded", str(request.uploaded)),
        ("downloaded", str(request.downloaded)),
        ("left", str(request.left)),
        ("compact", "1" if request.compact else "0"),
    ]
    if request.event is not AnnounceEvent.NONE:
        fields.append(("event", request.event.http_name))
    if request.numwant is not None:
        fields.append(("numwant", str(request.numwant)))
    if request.key is not None:
        fields.append(("key", f"{request.key:08X}"))
    if request.tracker_id is not None:
        fields.append(("trackerid", percent_encode(request.tracker_id)))
    if request.ip is not None:
        fields.append(("ip", percent_encode(request.ip.encode())))
    return _append_query(announce_url, "&".join(f"{k}={v}" for k, v in fields))


def build_scrape_url(scrape_url: str, info_hashes: Sequence[InfoHash]) -> str:
    """A scrape GET URL with one ``info_hash`` per torrent (BEP 48)."""
    if len(info_hashes) > MAX_SCRAPE_HASHES:
        raise TrackerError(f"cannot scrape more than {MAX_SCRAPE_HASHES} torrents at once")
    query = "&".join(f"info_hash={percent_encode(h.raw)}" for h in info_hashes)
    return _append_query(scrape_url, query) if query else scrape_url


# --------------------------------------------------------------------------- server side: queries


def _query_pairs(query: str) -> dict[str, list[bytes]]:
    """Split a raw (still percent-encoded) query string; values stay bytes (BEP 3 binary fields)."""
    if len(query) > 16384:
        raise TrackerError("announce query string too long")
    result: dict[str, list[bytes]] = {}
    for part in query.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        key = urllib.parse.unquote(name)
        result.setdefault(key, []).append(urllib.parse.unquote_to_bytes(value))
    return result


def _one(pairs: dict[str, list[bytes]], name: str) -> bytes | None:
    values = pairs.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise TrackerError(f"announce query repeats {name!r}")
    return values[0]


def _uint(pairs: dict[str, list[bytes]], name: str, *, default: int | None = None) -> int:
    raw = _one(pairs, name)
    if raw is None:
        if default is None:
            raise TrackerError(f"announce query lacks {name!r}")
        return default
    if not raw.isdigit() or len(raw) > 20:
        raise TrackerError(f"announce query {name!r} is not a non-negative integer: {raw[:32]!r}")
    return int(raw)


def _id20(pairs: dict[str, list[bytes]], name: str) -> bytes:
    raw = _one(pairs, name)
    if raw is None or len(raw) != 20:
        raise TrackerError(f"announce query {name!r} must be 20 bytes")
    return raw


def parse_announce_query(query: str) -> AnnounceRequest:
    """Server side: the :class:`AnnounceRequest` in a raw announce query string (BEP 3)."""
    pairs = _query_pairs(query)
    event_raw = _one(pairs, "event")
    event = AnnounceEvent.from_http_name(event_raw.decode("latin-1") if event_raw else "")
    numwant_raw = _one(pairs, "numwant")
    key_raw = _one(pairs, "key")
    # BEP 3 / BEP 7 leave ``key`` opaque: we send 8 hex digits, aria2 sends 8 raw bytes.  Hex keys
    # are read as numbers; any other key of at most 20 bytes is folded into one; longer ones refused.
    key: int | None = None
    if key_raw is not None:
        if len(key_raw) > 20:
            raise TrackerError(f"announce query 'key' is longer than 20 bytes: {key_raw[:32]!r}")
        try:
            key = int(key_raw, 16) & 0xFFFFFFFF
        except ValueError:
            key = int.from_bytes(key_raw[-4:].rjust(4, b"\0"), "big")
    ip_raw = _one(pairs, "ip")
    compact_raw = _one(pairs, "compact")
    try:
        return AnnounceRequest(
            info_hash=InfoHash(_id20(pairs, "info_hash")),
            peer_id=PeerId(_id20(pairs, "peer_id")),
            port=_uint(pairs, "port"),
            uploaded=_uint(pairs, "uploaded", default=0),
            downloaded=_uint(pairs, "downloaded", default=0),
            left=_uint(pairs, "left", default=0),
            event=event,
            numwant=None if numwant_raw is None else _uint(pairs, "numwant"),
            compact=compact_raw != b"0",
            key=key,
            tracker_id=_one(pairs, "trackerid"),
            ip=None if ip_raw is None else normalize_host(ip_raw.decode("latin-1")),
        )
    except ConfigError as exc:
        raise TrackerError(f"bad announce query: {exc}") from None


def parse_scrape_query(query: str) -> list[InfoHash]:
    """Server side: the info-hashes of a scrape query (BEP 48); empty means "all"."""
    pairs = _query_pairs(query)
    hashes = pairs.get("info_hash", [])
    if len(hashes) > MAX_SCRAPE_HASHES:
        raise TrackerError(f"scrape names more than {MAX_SCRAPE_HASHES} torrents")
    for raw in hashes:
        if len(raw) != 20:
            raise TrackerError("scrape info_hash must be 20 bytes")
    return [InfoHash(raw) for raw in hashes]


# --------------------------------------------------------------------------- client side: replies


def _decode_body(body: bytes, what: str) -> dict[bytes, Any]:
    if len(body) > MAX_BODY_SIZE:
        raise TrackerError(f"{what} reply is larger than {MAX_BODY_SIZE} bytes")
    try:
        value = bencode.decode(body)
    except BencodeError as exc:
        raise TrackerError(f"{what} reply is not bencoded: {exc}") from None
    if not isinstance(value, dict):
        raise TrackerError(f"{what} reply is not a bencoded dictionary")
    return value


def _text(value: Any, name: str) -> str:
    if not isinstance(value, bytes):
        raise TrackerError(f"tracker reply {name!r} is not a string")
    return value[: MAX_MESSAGE_LENGTH * 4].decode("utf-8", "replace")[:MAX_MESSAGE_LENGTH]


def _opt_int(reply: dict[bytes, Any], name: bytes) -> int | None:
    value = reply.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or not 0 <= value < _MAX_INT:
        raise TrackerError(f"tracker reply {name.decode()!r} is not a non-negative 31-bit integer")
    return value


def _raise_failure(reply: dict[bytes, Any]) -> None:
    if b"failure reason" not in reply:
        return
    reason = _text(reply[b"failure reason"], "failure reason")
    retry_raw = reply.get(b"retry in")
    retry_in: int | None = None
    if isinstance(retry_raw, int) and retry_raw >= 0:
        retry_in = min(retry_raw, _MAX_INT)
    elif retry_raw == b"never":
        retry_in = -1
    raise TrackerFailure(reason, retry_in=retry_in)


def _dict_peers(items: list[Any]) -> tuple[list[PeerAddress], list[tuple[PeerAddress, bytes]]]:
    peers: list[PeerAddress] = []
    ids: list[tuple[PeerAddress, bytes]] = []
    for item in items[:MAX_PEERS]:
        if not isinstance(item, dict):
            raise TrackerError("tracker reply 'peers' list holds a non-dictionary")
        ip, port, peer_id = item.get(b"ip"), item.get(b"port"), item.get(b"peer id")
        if not isinstance(ip, bytes) or not isinstance(port, int):
            raise TrackerError("tracker reply peer lacks a string 'ip' or an integer 'port'")
        if peer_id is not None and (not isinstance(peer_id, bytes) or len(peer_id) != 20):
            raise TrackerError("tracker reply peer has a 'peer id' that is not 20 bytes")
        if not 0 < port < 65536:
            continue  # unusable entry, skipped
        try:
            parsed = ipaddress.ip_address(ip.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            continue  # DNS names are not resolved (a tracker must not make us look up names)
        if not usable_peer_host(parsed):
            continue
        host = str(parsed)
        address = PeerAddress(host, port)
        peers.append(address)
        if peer_id is not None:
            ids.append((address, peer_id))
    return peers, ids


def parse_announce_reply(body: bytes) -> AnnounceResponse:
    """Parse an HTTP announce reply (BEP 3) with compact (BEP 23) or dictionary peers and ``peers6``.

    ``failure reason`` raises :class:`~torrentgoat.tracker.messages.TrackerFailure`.
    """
    reply = _decode_body(body, "announce")
    _raise_failure(reply)
    peers: list[PeerAddress] = []
    ids: list[tuple[PeerAddress, bytes]] = []
    raw_peers = reply.get(b"peers", b"")
    if isinstance(raw_peers, bytes):
        peers += decode_compact_peers(raw_peers)
    elif isinstance(raw_peers, list):
        peers, ids = _dict_peers(raw_peers)
    else:
        raise TrackerError("tracker reply 'peers' is neither a string nor a list")
    raw6 = reply.get(b"peers6", b"")
    if not isinstance(raw6, bytes):
        raise TrackerError("tracker reply 'peers6' is not a string")
    peers += decode_compact_peers6(raw6)
    unique = tuple(dict.fromkeys(peers))[:MAX_PEERS]
    tracker_id = reply.get(b"tracker id")
    if tracker_id is not None and (not isinstance(tracker_id, bytes) or len(tracker_id) > 255):
        raise TrackerError("tracker reply 'tracker id' is not a short string")
    warning = reply.get(b"warning message")
    return AnnounceResponse(
        interval=_opt_int(reply, b"interval"),
        min_interval=_opt_int(reply, b"min interval"),
        tracker_id=tracker_id,
        complete=_opt_int(reply, b"complete"),
        incomplete=_opt_int(reply, b"incomplete"),
        warning=None if warning is None else _text(warning, "warning message"),
        peers=unique,
        peer_ids=tuple(ids),
    )


def parse_scrape_reply(body: bytes) -> ScrapeResponse:
    """Parse a scrape reply (BEP 48): ``files`` maps 20-byte info-hashes to count dictionaries."""
    reply = _decode_body(body, "scrape")
    _raise_failure(reply)
    files = reply.get(b"files", {})
    if not isinstance(files, dict):
        raise TrackerError("scrape reply 'files' is not a dictionary")
    if len(files) > MAX_SCRAPE_HASHES:
        raise TrackerError(f"scrape reply lists more than {MAX_SCRAPE_HASHES} torrents")
    result: list[tuple[InfoHash, ScrapeStats]] = []
    for key, stats in files.items():
        if len(key) != 20 or not isinstance(stats, dict):
            raise TrackerError("scrape reply 'files' entry is not a 20-byte hash -> dictionary")
        result.append(
            (
                InfoHash(key),
                ScrapeStats(
                    complete=_opt_int(stats, b"complete") or 0,
                    downloaded=_opt_int(stats, b"downloaded") or 0,
                    incomplete=_opt_int(stats, b"incomplete") or 0,
                ),
            )
        )
    return ScrapeResponse(files=tuple(result))


# --------------------------------------------------------------------------- server side: replies


def encode_announce_reply(response: AnnounceResponse, *, compact: bool) -> bytes:
    """Bencode an announce reply; compact puts IPv4 in ``peers`` and IPv6 in ``peers6`` (BEP 7)."""
    reply: dict[str, Any] = {}
    for name, value in (
        ("interval", response.interval),
        ("min interval", response.min_interval),
        ("complete", response.complete),
        ("incomplete", response.incomplete),
        ("tracker id", response.tracker_id),
        ("warning message", response.warning),
    ):
        if value is not None:
            reply[name] = value
    if compact:
        v4 = [p for p in response.peers if ":" not in p.host]
        v6 = [p for p in response.peers if ":" in p.host]
        reply["peers"] = encode_compact_peers(v4)
        if v6:
            reply["peers6"] = encode_compact_peers6(v6)
    else:
        ids = dict(response.peer_ids)
        entries: list[dict[str, Any]] = []
        for peer in response.peers:
            entry: dict[str, Any] = {"ip": peer.host, "port": peer.port}
            if peer in ids:
                entry["peer id"] = ids[peer]
            entries.append(entry)
        reply["peers"] = entries
    return bencode.encode(reply)


def encode_failure_reply(reason: str, *, retry_in: int | None = None) -> bytes:
    """Bencode a ``failure reason`` reply (BEP 3), with BEP 31 ``retry in`` minutes if given."""
    reply: dict[str, Any] = {"failure reason": reason}
    if retry_in is not None:
        reply["retry in"] = retry_in if retry_in >= 0 else "never"
    return bencode.encode(reply)


def encode_scrape_reply(files: Iterable[tuple[InfoHash, ScrapeStats]]) -> bytes:
    """Bencode a scrape reply (BEP 48)."""
    return bencode.encode(
        {
            "files": {
                h.raw: {"complete": s.complete, "downloaded": s.downloaded, "incomplete": s.incomplete}
                for h, s in files
            }
        }
    )
