"""Tracker codecs: HTTP (BEP 3/23/7/48), UDP (BEP 15/41), URLs; round trips and hostile replies."""

from __future__ import annotations

import contextlib
import ipaddress
import urllib.parse

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from torrentgoat import bencode
from torrentgoat.errors import TrackerError
from torrentgoat.primitives import InfoHash, PeerAddress, PeerId
from torrentgoat.tracker import http, udp
from torrentgoat.tracker.messages import (
    MAX_BODY_SIZE,
    MAX_PEERS,
    AnnounceEvent,
    AnnounceRequest,
    AnnounceResponse,
    ScrapeStats,
    TrackerFailure,
    decode_compact_peers,
    decode_compact_peers6,
    encode_compact_peers,
    encode_compact_peers6,
    usable_peer_host,
)
from torrentgoat.tracker.urls import parse_tracker_url, scrape_url

IH = InfoHash(bytes.fromhex("123456789abcdef123456789abcdef123456789a"))
PID = PeerId(b"-TG0001-abcdefghijkl")

# ----------------------------------------------------------------------------- strategies

ids20 = st.binary(min_size=20, max_size=20)
u63 = st.integers(0, (1 << 63) - 1)
ipv4 = st.ip_addresses(v=4).filter(usable_peer_host).map(str)
ipv6 = st.ip_addresses(v=6).filter(usable_peer_host).map(str)
ports = st.integers(1, 65535)
v4_peers = st.lists(st.builds(PeerAddress, ipv4, ports), max_size=30, unique=True)
v6_peers = st.lists(st.builds(PeerAddress, ipv6, ports), max_size=30, unique=True)

requests = st.builds(
    AnnounceRequest,
    info_hash=ids20.map(InfoHash),
    peer_id=ids20.map(PeerId),
    port=ports,
    uploaded=u63,
    downloaded=u63,
    left=u63,
    event=st.sampled_from(AnnounceEvent),
    numwant=st.none() | st.integers(0, 1000),
    compact=st.booleans(),
    key=st.none() | st.integers(0, (1 << 32) - 1),
    tracker_id=st.none() | st.binary(max_size=40),
    ip=st.none() | ipv4 | ipv6,
)


def responses(with_ids: bool) -> st.SearchStrategy[AnnounceResponse]:
    opt = st.none() | st.integers(0, (1 << 31) - 1)

    @st.composite
    def build(draw: st.DrawFn) -> AnnounceResponse:
        peers = tuple(draw(v4_peers) + draw(v6_peers))
        ids = tuple((p, draw(ids20)) for p in peers if draw(st.booleans())) if with_ids else ()
        return AnnounceResponse(
            interval=draw(opt),
            min_interval=draw(opt),
            tracker_id=draw(st.none() | st.binary(max_size=30)),
            complete=draw(opt),
            incomplete=draw(opt),
            warning=draw(st.none() | st.text(max_size=50)),
            peers=peers,
            peer_ids=ids,
        )

    return build()


# ----------------------------------------------------------------------------- URL building


def test_percent_encoding_matches_the_known_good_example() -> None:
    # The canonical example of the BitTorrent specification wiki for this info-hash.
    assert http.percent_encode(IH.raw) == "%124Vx%9A%BC%DE%F1%23Eg%89%AB%CD%EF%124Vx%9A"


def test_announce_url_fields_and_query_append() -> None:
    req = AnnounceRequest(
        info_hash=IH, peer_id=PID, port=6881, left=100, event=AnnounceEvent.STARTED, numwant=20, key=0xABC
    )
    url = http.build_announce_url("http://t.example/announce", req)
    assert url.startswith("http://t.example/announce?info_hash=%124Vx%9A%BC%DE%F1%23Eg%89%AB%CD%EF%124Vx%9A&")
    assert "&peer_id=-TG0001-abcdefghijkl&port=6881&uploaded=0&downloaded=0&left=100&compact=1" in url
    assert url.endswith("&event=started&numwant=20&key=00000ABC")
    with_query = http.build_announce_url("http://t.example/announce.php?passkey=s3cr%2Bt#frag", req)
    assert with_query.startswith("http://t.example/announce.php?passkey=s3cr%2Bt&info_hash=")
    assert "#" not in with_query
    none_event = http.build_announce_url(
        "http://t/announce", AnnounceRequest(info_hash=IH, peer_id=PID, port=1)
    )
    assert "event=" not in none_event and "numwant" not in none_event


@given(requests)
def test_announce_query_round_trip(req: AnnounceRequest) -> None:
    url = http.build_announce_url("http://t/announce?x=1", req)
    query = urllib.parse.urlsplit(url).query
    parsed = http.parse_announce_query(query.removeprefix("x=1&"))
    expected_ip = None if req.ip is None else str(ipaddress.ip_address(req.ip))
    assert parsed == AnnounceRequest(
        info_hash=req.info_hash,
        peer_id=req.peer_id,
        port=req.port,
        uploaded=req.uploaded,
        downloaded=req.downloaded,
        left=req.left,
        event=req.event,
        numwant=req.numwant,
        compact=req.compact,
        key=req.key,
        tracker_id=req.tracker_id,
        ip=expected_ip,
    )


@pytest.mark.parametrize(
    "query",
    [
        "",
        "info_hash=abc&peer_id=-TG0001-abcdefghijkl&port=1",
        "info_hash=%12%34&peer_id=x&port=1",
        "info_hash=12345678901234567890&peer_id=-TG0001-abcdefghijkl&port=0",
        "info_hash=12345678901234567890&peer_id=-TG0001-abcdefghijkl&port=-5",
        "info_hash=12345678901234567890&peer_id=-TG0001-abcdefghijkl&port=1&event=bogus",
        "info_hash=12345678901234567890&info_hash=12345678901234567890&peer_id=-TG0001-abcdefghijkl&port=1",
        "info_hash=12345678901234567890&peer_id=-TG0001-abcdefghijkl&port=1&ip=evil.example",
        "info_hash=12345678901234567890&peer_id=-TG0001-abcdefghijkl&port=1&key=" + "x" * 21,
    ],
)
def test_bad_announce_queries(query: str) -> None:
    with pytest.raises(TrackerError):
        http.parse_announce_query(query)


def test_scrape_url_convention() -> None:
    assert scrape_url("http://t/announce") == "http://t/scrape"
    assert scrape_url("http://t/x/announce?k=1") == "http://t/x/scrape?k=1"
    assert scrape_url("https://t:8443/announce.php") == "https://t:8443/scrape.php"
    assert scrape_url("http://t/a") is None
    assert scrape_url("http://t/announce/x") is None
    assert scrape_url("http://t/x%064announce") is None
    assert scrape_url("udp://t:80/announce") == "udp://t:80/announce"
    url = http.build_scrape_url("http://t/scrape?k=1", [IH, IH])
    assert url == "http://t/scrape?k=1&info_hash=" + http.percent_encode(IH.raw) * 1 + "&info_hash=" + (
        http.percent_encode(IH.raw)
    )
    assert http.parse_scrape_query(urllib.parse.urlsplit(url).query) == [IH, IH]


def test_tracker_urls() -> None:
    u = parse_tracker_url("udp://[::1]:6969/announce?passkey=1")
    assert (u.scheme, u.host, u.port, u.request_path, u.is_udp) == (
        "udp",
        "::1",
        6969,
        "/announce?passkey=1",
        True,
    )
    assert parse_tracker_url("HTTPS://t.example/ann").port == 443
    assert parse_tracker_url("http://t.example").request_path == "/"
    for bad in [
        "",
        "ftp://x/announce",
        "udp://t/announce",
        "http:///announce",
        "http://t:99999/",
        "http://t:0/",
        "http://t/ann ounce",
        "wss://t/announce",
        "http://t/\x00",
    ]:
        with pytest.raises(TrackerError):
            parse_tracker_url(bad)


# ----------------------------------------------------------------------------- HTTP replies


@given(responses(with_ids=False))
def test_compact_reply_round_trip(resp: AnnounceResponse) -> None:
    assert http.parse_announce_reply(http.encode_announce_reply(resp, compact=True)) == resp


@given(responses(with_ids=True))
def test_dictionary_reply_round_trip(resp: AnnounceResponse) -> None:
    assert http.parse_announce_reply(http.encode_announce_reply(resp, compact=False)) == resp


def test_failure_reason_carries_the_trackers_message() -> None:
    with pytest.raises(TrackerFailure) as info:
        http.parse_announce_reply(http.encode_failure_reply("torrent not registered", retry_in=5))
    assert info.value.reason == "torrent not registered"
    assert info.value.retry_in == 5
    assert "torrent not registered" in str(info.value)
    with pytest.raises(TrackerFailure) as info:
        http.parse_announce_reply(http.encode_failure_reply("go away", retry_in=-1))
    assert info.value.retry_in == -1
    assert isinstance(info.value, TrackerError)


def test_reply_peers_forms_and_oddities() -> None:
    body = bencode.encode(
        {
            "interval": 1800,
            "min interval": 60,
            "warning message": "be nice",
            "peers": [
                {"ip": "10.0.0.1", "port": 1, "peer id": b"A" * 20},
                {"ip": "host.example", "port": 2},  # DNS names are not resolved: dropped
                {"ip": "10.0.0.3", "port": 0},  # unusable: dropped
                {"ip": "2001:db8::1", "port": 4},
                {"ip": "0.0.0.0", "port": 5},  # unspecified, multicast, broadcast: dropped
                {"ip": "ff02::1", "port": 5},
                {"ip": "255.255.255.255", "port": 5},
                {"ip": "10.0.0.1", "port": 1},  # duplicate
            ],
            "peers6": encode_compact_peers6([PeerAddress("::1", 7), PeerAddress("::", 8)]),
        }
    )
    resp = http.parse_announce_reply(body)
    assert resp.peers == (PeerAddress("10.0.0.1", 1), PeerAddress("2001:db8::1", 4), PeerAddress("::1", 7))
    assert resp.peer_ids == ((PeerAddress("10.0.0.1", 1), b"A" * 20),)
    assert (resp.interval, resp.min_interval, resp.warning) == (1800, 60, "be nice")


def test_peers_are_bounded() -> None:
    many = [PeerAddress(str(ipaddress.IPv4Address(0x0A000000 + i)), 1000) for i in range(MAX_PEERS + 500)]
    body = bencode.encode({"interval": 10, "peers": encode_compact_peers(many)})
    assert len(http.parse_announce_reply(body).peers) == MAX_PEERS
    assert len(decode_compact_peers(encode_compact_peers(many))) == MAX_PEERS


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"<html>502 Bad Gateway</html>",
        b"le",
        b"d8:intervali-1ee",
        b"d8:interval3:abce",
        b"d5:peers5:abcdee",
        b"d5:peersi3ee",
        b"d5:peersl3:abcee",
        b"d5:peersld2:ip8:10.0.0.1ee",
        b"d5:peersld2:ip8:10.0.0.14:porti1e7:peer id3:abcee",
        b"d6:peers67:abcdefge",
        b"d14:failure reasoni3ee",
        b"d10:tracker idi3ee",
        b"d8:intervali99999999999999ee",
        b"d8:intervali1ee trailing",
    ],
)
def test_hostile_reply_examples(body: bytes) -> None:
    with pytest.raises(TrackerError):
        http.parse_announce_reply(body)


def test_oversized_body_is_refused() -> None:
    with pytest.raises(TrackerError, match="larger"):
        http.parse_announce_reply(
            b"d5:peers" + str(MAX_BODY_SIZE).encode() + b":" + b"\0" * MAX_BODY_SIZE + b"e"
        )


VALID_REPLY = http.encode_announce_reply(
    AnnounceResponse(
        interval=1800,
        complete=1,
        incomplete=2,
        tracker_id=b"tid",
        peers=(PeerAddress("127.0.0.1", 6881), PeerAddress("::1", 6882)),
    ),
    compact=True,
)


@given(st.binary(max_size=300))
def test_random_bytes_only_raise_tracker_error(data: bytes) -> None:
    with contextlib.suppress(TrackerError):
        http.parse_announce_reply(data)
    with contextlib.suppress(TrackerError):
        http.parse_scrape_reply(data)


@given(st.data())
@settings(max_examples=300)
def test_mutated_valid_replies_only_raise_tracker_error(data: st.DataObject) -> None:
    body = bytearray(VALID_REPLY)
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(body) - 1))
        action = data.draw(st.sampled_from(["flip", "delete", "insert"]))
        if action == "flip":
            body[pos] = data.draw(st.integers(0, 255))
        elif action == "delete":
            del body[pos]
        else:
            body.insert(pos, data.draw(st.integers(0, 255)))
        if not body:
            break
    try:
        resp = http.parse_announce_reply(bytes(body))
    except TrackerError:
        return
    assert len(resp.peers) <= MAX_PEERS


def test_scrape_reply_round_trip_and_errors() -> None:
    files = [(IH, ScrapeStats(complete=3, downloaded=10, incomplete=2))]
    resp = http.parse_scrape_reply(http.encode_scrape_reply(files))
    assert resp.get(IH) == ScrapeStats(complete=3, downloaded=10, incomplete=2)
    assert resp.get(InfoHash(b"\0" * 20)) is None
    for bad in [
        b"d5:filesd3:abcd8:completei1eeee",
        b"d5:filesli1eee",
        b"d5:filesd20:" + b"a" * 20 + b"i1eee",
    ]:
        with pytest.raises(TrackerError):
            http.parse_scrape_reply(bad)


# ----------------------------------------------------------------------------- compact peers


@given(v4_peers)
def test_compact_v4_round_trip(peers: list[PeerAddress]) -> None:
    assert decode_compact_peers(encode_compact_peers(peers)) == peers


@given(v6_peers)
def test_compact_v6_round_trip(peers: list[PeerAddress]) -> None:
    assert decode_compact_peers6(encode_compact_peers6(peers)) == peers


# ----------------------------------------------------------------------------- UDP packets


@given(requests, st.integers(0, (1 << 64) - 1), st.integers(0, (1 << 32) - 1), st.binary(max_size=600))
def test_udp_announce_round_trip(req: AnnounceRequest, cid: int, tid: int, url_data: bytes) -> None:
    packet = udp.UDPAnnounce(connection_id=cid, transaction_id=tid, request=req, url_data=url_data)
    decoded = udp.decode_request(udp.encode_packet(packet))
    assert isinstance(decoded, udp.UDPAnnounce)
    assert (decoded.connection_id, decoded.transaction_id, decoded.url_data) == (cid, tid, url_data)
    r = decoded.request
    assert (r.info_hash, r.peer_id, r.port, r.uploaded, r.downloaded, r.left, r.event, r.numwant) == (
        req.info_hash,
        req.peer_id,
        req.port,
        req.uploaded,
        req.downloaded,
        req.left,
        req.event,
        req.numwant,
    )
    assert r.key == (req.key or 0)
    if req.ip is not None and ":" not in req.ip and req.ip != "0.0.0.0":
        assert r.ip == req.ip


def test_udp_announce_layout_is_98_bytes_plus_bep41_options() -> None:
    req = AnnounceRequest(info_hash=IH, peer_id=PID, port=6881, event=AnnounceEvent.STARTED)
    raw = udp.encode_packet(udp.UDPAnnounce(connection_id=1, transaction_id=2, request=req))
    assert len(raw) == 98
    assert raw[80:84] == b"\0\0\0\x02"  # event started = 2
    assert raw[92:96] == b"\xff\xff\xff\xff"  # numwant -1: tracker's default
    with_path = udp.encode_packet(
        udp.UDPAnnounce(connection_id=1, transaction_id=2, request=req, url_data=b"/announce?x=1")
    )
    assert with_path[98:] == b"\x02\x0d/announce?x=1\x00"


@given(
    st.integers(0, (1 << 32) - 1),
    st.integers(0, (1 << 31) - 1),
    st.integers(0, (1 << 32) - 1),
    st.integers(0, (1 << 32) - 1),
    st.booleans(),
    st.data(),
)
def test_udp_replies_round_trip(
    tid: int, interval: int, le: int, se: int, v6: bool, data: st.DataObject
) -> None:
    peers = tuple(data.draw(v6_peers if v6 else v4_peers))
    for packet in [
        udp.UDPConnectReply(transaction_id=tid, connection_id=interval * 3),
        udp.UDPAnnounceReply(transaction_id=tid, interval=interval, leechers=le, seeders=se, peers=peers),
        udp.UDPScrapeReply(
            transaction_id=tid, stats=(ScrapeStats(complete=se, downloaded=le, incomplete=1),)
        ),
        udp.UDPError(transaction_id=tid, message="nope"),
    ]:
        assert udp.decode_response(udp.encode_packet(packet, ipv6=v6), ipv6=v6) == packet


def test_udp_requests_round_trip() -> None:
    for packet in [
        udp.UDPConnect(transaction_id=7),
        udp.UDPScrape(connection_id=5, transaction_id=6, info_hashes=(IH, InfoHash(b"\1" * 20))),
    ]:
        assert udp.decode_request(udp.encode_packet(packet)) == packet
    assert udp.encode_packet(udp.UDPConnect(transaction_id=7))[:8] == bytes.fromhex("0000041727101980")


@given(st.binary(max_size=200), st.booleans())
def test_udp_random_bytes_only_raise_tracker_error(data: bytes, v6: bool) -> None:
    for decode in (lambda d: udp.decode_response(d, ipv6=v6), udp.decode_request):
        with contextlib.suppress(TrackerError):
            decode(data)


def test_udp_bad_packets() -> None:
    for bad in [b"", b"\0" * 7, b"\0\0\0\x09" + b"\0" * 12, b"\0\0\0\0" + b"\0" * 8]:
        with pytest.raises(TrackerError):
            udp.decode_response(bad)
    for bad in [
        b"\0" * 16,
        b"\0" * 8 + b"\0\0\0\x01" + b"\0" * 4,
        b"\0" * 8 + b"\0\0\0\x02\0\0\0\0" + b"a" * 19,
    ]:
        with pytest.raises(TrackerError):
            udp.decode_request(bad)
