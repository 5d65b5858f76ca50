"""Fuzz targets for the byte-level codecs: bencode, metainfo, magnet, KRPC, tracker replies, manifest.

Each decodes the input; when that succeeds and the module has an encoder, the value is encoded and
decoded again and must come back equal (an error on the way back is a :class:`ContractViolation`,
not an accepted ``TorrentGoatError``: we must be able to read what we write).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TypeVar

from tools.fuzz.harness import ContractViolation, Reader, expect, target
from torrentgoat import bencode
from torrentgoat.dht import krpc
from torrentgoat.errors import TorrentGoatError
from torrentgoat.magnet import Magnet, parse_magnet
from torrentgoat.manifest import dump_manifest, parse_manifest
from torrentgoat.metainfo import InfoDict, parse_info, parse_metainfo
from torrentgoat.tracker import http, udp

__all__ = ["ours"]

T = TypeVar("T")


def ours(what: str, fn: Callable[[], T]) -> T:
    """Run a step that must not fail (encoding a decoded value, decoding our own encoding)."""
    try:
        return fn()
    except TorrentGoatError as exc:
        raise ContractViolation(f"{what} failed: {type(exc).__name__}: {exc}") from exc


@target("bencode", "torrentgoat.bencode.decode / decode_with_spans / decode_prefix; encode round trip")
def fuzz_bencode(data: bytes) -> None:
    value = bencode.decode(data)
    encoded = ours("bencode.encode of a decoded value", lambda: bencode.encode(value))
    again = ours("bencode.decode of our encoding", lambda: bencode.decode(encoded))
    expect(again == value, "bencode: decode(encode(value)) != value")
    expect(bencode.encode(again) == encoded, "bencode: encoding is not a fixpoint")
    spanned, spans = ours("decode_with_spans of decodable bytes", lambda: bencode.decode_with_spans(data))
    expect(spanned == value, "bencode: decode_with_spans disagrees with decode")
    if isinstance(value, dict):
        expect(set(spans) == set(value), "bencode: spans do not name every top-level key")
        for key, (start, stop) in spans.items():
            expect(bencode.decode(data[start:stop]) == value[key], f"bencode: span of {key!r} is wrong")
    prefix, end = ours("decode_prefix", lambda: bencode.decode_prefix(data + b"i1e"))
    expect(prefix == value and end == len(data), "bencode: decode_prefix disagrees with decode")


@target(
    "metainfo",
    "torrentgoat.metainfo.parse_metainfo (v1, and v2/hybrid once parsed); to_bytes round trip",
    max_len=16384,
)
def fuzz_metainfo(data: bytes) -> None:
    metainfo = parse_metainfo(data)
    raw = ours("Metainfo.to_bytes", metainfo.to_bytes)
    again = ours("parse_metainfo of to_bytes()", lambda: parse_metainfo(raw))
    expect(again == metainfo, "metainfo: parse(to_bytes(m)) != m")
    info = ours("parse_info of the info span", lambda: parse_info(metainfo.info.raw))
    # parse_info sees the info dictionary alone (BEP 9 metadata): v2 piece layers live outside it
    expect(_v1_view(info) == _v1_view(metainfo.info), "metainfo: parse_info(info.raw) != info")
    magnet = Magnet.from_metainfo(metainfo)
    expect(
        ours("magnet of a torrent", lambda: parse_magnet(magnet.to_uri())) == magnet,
        "metainfo: magnet round trip",
    )


def _v1_view(info: InfoDict) -> tuple[object, ...]:
    return (
        info.name,
        info.piece_length,
        info.pieces,
        info.files,
        info.single_file,
        info.private,
        info.raw,
        info.info_hash,
    )


@target(
    "magnet",
    "torrentgoat.magnet.parse_magnet (input as text, undecodable bytes as surrogates like argv); to_uri round trip",
    max_len=2048,
)
def fuzz_magnet(data: bytes) -> None:
    magnet = parse_magnet(data.decode("utf-8", "surrogateescape"))
    uri = ours("Magnet.to_uri", magnet.to_uri)
    expect(
        ours("parse_magnet of to_uri()", lambda: parse_magnet(uri)) == magnet, "magnet: parse(to_uri(m)) != m"
    )


@target(
    "krpc",
    "torrentgoat.dht.krpc.decode (BEP 5/32/43/44 datagrams); encode round trip",
    max_len=krpc.MAX_PACKET_SIZE + 16,
)
def fuzz_krpc(data: bytes) -> None:
    message = krpc.decode(data)
    encoded = ours("krpc.encode of a decoded message", lambda: krpc.encode(message))
    if len(encoded) > krpc.MAX_PACKET_SIZE:
        return  # our re-encoding adds the client version 'v'; a near-limit packet may not fit again
    expect(
        ours("krpc.decode of our encoding", lambda: krpc.decode(encoded)) == message,
        "krpc: decode(encode(m)) != m",
    )


@target(
    "tracker_http",
    "torrentgoat.tracker.http: announce/scrape replies (client) and queries (server); round trips",
)
def fuzz_tracker_http(data: bytes) -> None:
    reader = Reader(data)
    mode = reader.byte() % 4
    body = reader.rest()
    if mode == 0:
        reply = http.parse_announce_reply(body)
        for compact in (False, True):
            encoded = ours(
                "encode_announce_reply", lambda c=compact: http.encode_announce_reply(reply, compact=c)
            )
            again = ours("parse_announce_reply of our reply", lambda e=encoded: http.parse_announce_reply(e))
            expected = replace(reply, peer_ids=()) if compact else reply
            expect(again == expected, f"tracker_http: announce reply round trip (compact={compact})")
    elif mode == 1:
        scrape = http.parse_scrape_reply(body)
        encoded = ours("encode_scrape_reply", lambda: http.encode_scrape_reply(scrape.files))
        expect(
            ours("parse_scrape_reply", lambda: http.parse_scrape_reply(encoded)) == scrape,
            "tracker_http: scrape round trip",
        )
    elif mode == 2:
        request = http.parse_announce_query(body.decode("latin-1"))
        url = ours(
            "build_announce_url", lambda: http.build_announce_url("http://t.invalid/announce", request)
        )
        query = url.partition("?")[2]
        again = ours("parse_announce_query of our query", lambda: http.parse_announce_query(query))
        expect(again == request, "tracker_http: announce query round trip")
    else:
        hashes = http.parse_scrape_query(body.decode("latin-1"))
        url = ours("build_scrape_url", lambda: http.build_scrape_url("http://t.invalid/scrape", hashes))
        again = ours(
            "parse_scrape_query of our query", lambda: http.parse_scrape_query(url.partition("?")[2])
        )
        expect(again == hashes, "tracker_http: scrape query round trip")


@target(
    "tracker_udp",
    "torrentgoat.tracker.udp: replies (client side, IPv4/IPv6) and requests (server side); round trips",
    max_len=2048,
)
def fuzz_tracker_udp(data: bytes) -> None:
    reader = Reader(data)
    mode = reader.byte()
    body = reader.rest()
    if mode & 1:
        ipv6 = bool(mode & 2)
        reply = udp.decode_response(body, ipv6=ipv6)
        encoded = ours("encode_packet of a reply", lambda: udp.encode_packet(reply, ipv6=ipv6))
        expect(
            ours("decode_response", lambda: udp.decode_response(encoded, ipv6=ipv6)) == reply,
            "tracker_udp: reply round trip",
        )
    else:
        request = udp.decode_request(body)
        encoded = ours("encode_packet of a request", lambda: udp.encode_packet(request))
        expect(
            ours("decode_request", lambda: udp.decode_request(encoded)) == request,
            "tracker_udp: request round trip",
        )


@target(
    "manifest",
    "torrentgoat.manifest.parse_manifest (collection YAML); dump_manifest round trip",
    max_len=8192,
)
def fuzz_manifest(data: bytes) -> None:
    manifest = parse_manifest(data)
    dumped = ours("dump_manifest of a parsed manifest", lambda: dump_manifest(manifest))
    expect(
        ours("parse_manifest of our dump", lambda: parse_manifest(dumped)) == manifest, "manifest: round trip"
    )
