"""Magnet URIs: BEP 9 (xt/dn/tr/ws/x.pe), BEP 53 (so), BEP 46 (xs/s); round-trips and hostile input."""

from __future__ import annotations

import base64
import contextlib
import ipaddress
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from torrentgoat.errors import MagnetError
from torrentgoat.infohashes import InfoHashes, InfoHashV2
from torrentgoat.magnet import Magnet, format_selection, parse_magnet, parse_selection
from torrentgoat.metainfo import Metainfo, parse_info
from torrentgoat.primitives import InfoHash, PeerAddress

HASH = bytes(range(20))
HEX = HASH.hex()


def test_hex_and_base32_info_hash() -> None:
    assert parse_magnet(f"magnet:?xt=urn:btih:{HEX}").info_hash == InfoHash(HASH)
    assert parse_magnet(f"magnet:?xt=urn:btih:{HEX.upper()}").info_hash == InfoHash(HASH)
    b32 = base64.b32encode(HASH).decode()
    assert parse_magnet(f"magnet:?xt=urn:btih:{b32}").info_hash == InfoHash(HASH)
    assert parse_magnet(f"magnet:?xt=urn:btih:{b32.lower()}").info_hash == InfoHash(HASH)
    assert parse_magnet(f"MAGNET:?XT=URN:BTIH:{HEX}").info_hash == InfoHash(HASH)


def test_all_bep9_fields() -> None:
    tracker = "udp://tracker.example:6969/announce?key=a&b"
    uri = (
        f"magnet:?xt=urn:btih:{HEX}&dn=My+Model%20v2&tr={quote(tracker, safe='')}"
        "&tr=http://127.0.0.1:8000/announce&tr.1=http://second/&ws=http%3A%2F%2Fseed%2Fpath"
        "&x.pe=127.0.0.1:6881&x.pe=[::1]:51413&x.pe=[2001:DB8::1]:1&so=0,2,4-6&unknown=ignored"
    )
    m = parse_magnet(uri)
    assert m.display_name == "My Model v2"
    assert m.trackers == (tracker, "http://127.0.0.1:8000/announce", "http://second/")
    assert m.web_seeds == ("http://seed/path",)
    assert m.peers == (
        PeerAddress("127.0.0.1", 6881),
        PeerAddress("::1", 51413),
        PeerAddress("2001:db8::1", 1),
    )
    assert m.select_only == (0, 2, 4, 5, 6)
    assert m.public_key is None and m.salt == b""
    assert parse_magnet(m.to_uri()) == m


def test_to_uri_encodes_reserved_characters() -> None:
    m = Magnet(info_hash=InfoHash(HASH), display_name="a&b=c+d #e", trackers=("http://x/a?b=1&c=2",))
    uri = m.to_uri()
    assert uri.startswith(f"magnet:?xt=urn:btih:{HEX}&dn=")
    assert "a%26b%3Dc%2Bd%20%23e" in uri and "http%3A%2F%2Fx%2Fa%3Fb%3D1%26c%3D2" in uri
    assert parse_magnet(uri) == m


def test_bep46_public_key_and_salt() -> None:
    key = bytes(range(32))
    m = parse_magnet(f"magnet:?xs=urn:btpk:{key.hex()}&s={b'models'.hex()}")
    assert m.info_hash is None and m.public_key == key and m.salt == b"models"
    assert parse_magnet(m.to_uri()) == m
    both = parse_magnet(f"magnet:?xt=urn:btih:{HEX}&xs=urn:btpk:{key.hex()}")
    assert both.info_hash == InfoHash(HASH) and both.public_key == key
    # fuzz (tools/fuzz magnet): a salt without a key was kept but not written back by to_uri()
    lone = parse_magnet(f"magnet:?xt=urn:btih:{HEX}&s=00")
    assert lone.salt == b"" and parse_magnet(lone.to_uri()) == lone


def test_v2_and_hybrid_magnets_bep52() -> None:
    v2 = "1220" + "ab" * 32
    only = parse_magnet(f"magnet:?xt=urn:btmh:{v2}&dn=x")
    assert only.info_hash is None and only.info_hash_v2 == InfoHashV2(b"\xab" * 32) and only.v2_only
    assert only.info_hashes == InfoHashes(v2=InfoHashV2(b"\xab" * 32))
    assert only.info_hashes.primary == InfoHash(b"\xab" * 20)  # the v2 swarm id: truncated SHA-256
    assert parse_magnet(only.to_uri()) == only
    assert f"xt=urn:btmh:{v2}" in only.to_uri()
    hybrid = parse_magnet(f"magnet:?xt=urn:btih:{HEX}&xt=urn:btmh:{v2.upper()}")
    assert hybrid.info_hash == InfoHash(HASH) and hybrid.info_hash_v2 == InfoHashV2(b"\xab" * 32)
    assert not hybrid.v2_only and hybrid.info_hashes is not None and hybrid.info_hashes.format == "hybrid"
    assert hybrid.info_hashes.swarm_ids() == (InfoHash(HASH), InfoHash(b"\xab" * 20))
    assert parse_magnet(hybrid.to_uri()) == hybrid
    # the same btmh twice is fine, two different ones are not
    assert parse_magnet(f"magnet:?xt.1=urn:btmh:{v2}&xt.2=urn:btmh:{v2}").info_hash_v2 is not None
    with pytest.raises(MagnetError, match="two different v2"):
        parse_magnet(f"magnet:?xt=urn:btmh:{v2}&xt=urn:btmh:1220{'cd' * 32}")
    for bad in ("1220" + "ab" * 31, "1220" + "zz" * 32):
        with pytest.raises(MagnetError, match=r"btmh|hex"):
            parse_magnet(f"magnet:?xt=urn:btih:{HEX}&xt=urn:btmh:{bad}")


def test_unknown_xt_next_to_a_known_one_is_ignored() -> None:
    """Issue 12: ed2k / tiger tree / another multihash next to btih or btmh (common in the wild)."""
    m = parse_magnet(
        f"magnet:?xt=urn:ed2k:31d6cfe0d16ae931b73c59d7e0c089c0&xt=urn:btih:{HEX}"
        "&xt=urn:tree:tiger:LWPNACQDBZRYXW3VHJVCJ64QBZNGHOHHHZWCLNQ&xt=urn:btmh:1114" + "ab" * 20
    )
    assert m.info_hash == InfoHash(HASH) and m.info_hash_v2 is None
    with pytest.raises(MagnetError, match="unsupported URN"):
        parse_magnet("magnet:?xt=urn:ed2k:31d6cfe0d16ae931b73c59d7e0c089c0&dn=x")


def test_bad_peer_entries_are_dropped_not_the_magnet() -> None:
    m = parse_magnet(
        f"magnet:?xt=urn:btih:{HEX}&x.pe=host.example:1&x.pe=1.2.3.4&x.pe=1.2.3.4:0&x.pe=1.2.3.4:99999"
        "&x.pe=::1:5&x.pe=10.0.0.1:6881&x.pe=%5B::1%5D:7"
    )
    assert [str(p) for p in m.peers] == ["10.0.0.1:6881", "[::1]:7"]


def test_repeated_so_are_merged() -> None:
    m = parse_magnet(f"magnet:?xt=urn:btih:{HEX}&so=2-4&so=1&so=3,9")
    assert m.select_only == (1, 2, 3, 4, 9)


def test_selection_bep53() -> None:
    assert parse_selection("0,2,4-6") == (0, 2, 4, 5, 6)
    assert parse_selection("5,1,1,3-3") == (1, 3, 5)
    assert format_selection((0, 2, 4, 5, 6)) == "0,2,4-6"
    assert format_selection((1, 2)) == "1,2"
    for bad in ["", "a", "1-", "-1", "3-1", "1,,2", "1.5", "99999999", "0-99999999", "\u0661"]:
        with pytest.raises(MagnetError):
            parse_selection(bad)


def test_from_metainfo() -> None:
    raw = b"d6:lengthi5e4:name3:abc12:piece lengthi16384e6:pieces20:" + b"\0" * 20 + b"e"
    meta = Metainfo(
        info=parse_info(raw), announce_tiers=(("http://a/",), ("http://b/",)), web_seeds=("http://w/",)
    )
    m = Magnet.from_metainfo(meta)
    assert m.info_hash == meta.info_hash and m.display_name == "abc"
    assert m.trackers == ("http://a/", "http://b/") and m.web_seeds == ("http://w/",)


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("http://example.com/", "not a magnet"),
        ("magnet:?dn=nohash", "neither"),
        ("magnet:?xt=urn:btih:1234", "40 characters"),
        ("magnet:?xt=urn:btih:" + "zz" * 20, "not hex"),
        ("magnet:?xt=urn:btih:" + "a b" * 13 + "a", "not hex"),
        ("magnet:?xt=urn:btih:" + "1" * 32, "base32"),
        ("magnet:?xt=urn:sha1:" + HEX, "unsupported"),
        (f"magnet:?xt=urn:btih:{HEX}&xt=urn:btih:{'00' * 20}", "two different"),
        (f"magnet:?xt=urn:btih:{HEX}&so=2-1", "backwards"),
        ("magnet:?xs=urn:btpk:abcd", "32 bytes"),
        ("magnet:?xs=urn:btpk:" + "zz" * 32, "not hex"),
        (f"magnet:?xt=urn:btih:{HEX}&s=xyz", "not hex"),
        (f"magnet:?xs=urn:btpk:{'00' * 32}&s={'00' * 65}", "salt"),
        (f"magnet:?xt=urn:btih:{HEX}&dn=%FF", "UTF-8"),
        (
            f"magnet:?xt=urn:btih:{HEX}&dn=\udcfe",
            "UTF-8",
        ),  # fuzz: argv bytes; to_uri() raised UnicodeEncodeError
        (f"magnet:?xt=urn:btih:{HEX}&tr", "no '='"),
        ("magnet:?xt=urn:btih:" + HEX + "&tr=" + "a" * 70_000, "exceeds"),
    ],
)
def test_bad_magnets(uri: str, message: str) -> None:
    with pytest.raises(MagnetError, match=message):
        parse_magnet(uri)


def test_constructor_validates() -> None:
    with pytest.raises(MagnetError):
        Magnet()
    with pytest.raises(MagnetError):
        Magnet(info_hash=InfoHash(HASH), select_only=(2, 1))
    with pytest.raises(MagnetError):
        Magnet(public_key=b"short")


# --------------------------------------------------------------------------------------- properties

texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)
urls = st.builds(lambda s: "http://h/" + s, texts)
ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(lambda a: str(ipaddress.IPv6Address(a)))
peers = st.builds(PeerAddress, ipv4 | ipv6, st.integers(1, 65535))
magnets = st.builds(
    Magnet,
    info_hash=st.none() | st.binary(min_size=20, max_size=20).map(InfoHash),
    display_name=texts,
    trackers=st.lists(urls, unique=True, max_size=4).map(tuple),
    web_seeds=st.lists(urls, unique=True, max_size=3).map(tuple),
    peers=st.lists(peers, unique=True, max_size=3).map(tuple),
    select_only=st.sets(st.integers(0, 200), max_size=12).map(lambda s: tuple(sorted(s))),
    public_key=st.just(bytes(32)) | st.binary(min_size=32, max_size=32),
    salt=st.binary(max_size=64),
).filter(lambda m: m is not None)
v1_magnets = st.builds(
    Magnet,
    info_hash=st.binary(min_size=20, max_size=20).map(InfoHash),
    display_name=texts,
    trackers=st.lists(urls, unique=True, max_size=4).map(tuple),
    select_only=st.sets(st.integers(0, 50), max_size=8).map(lambda s: tuple(sorted(s))),
)


@given(magnets | v1_magnets)
def test_round_trip(m: Magnet) -> None:
    assert parse_magnet(m.to_uri()) == m


@settings(max_examples=300)
@given(st.text(max_size=200))
def test_random_text_raises_only_magnet_error(text: str) -> None:
    with contextlib.suppress(MagnetError):
        parse_magnet("magnet:?" + text)
    with contextlib.suppress(MagnetError):
        parse_magnet(text)


@settings(max_examples=300)
@given(v1_magnets, st.integers(0, 1000), st.text(max_size=5))
def test_mutated_magnets_raise_only_magnet_error(m: Magnet, pos: int, insert: str) -> None:
    uri = m.to_uri()
    pos %= len(uri)
    for mutated in (uri[:pos] + insert + uri[pos:], uri[:pos], uri[:pos] + uri[pos + 1 :]):
        with contextlib.suppress(MagnetError):
            parse_magnet(mutated)
