"""BEP 42 node ids from external addresses, external-address voting, and the engine's rekeying."""

from __future__ import annotations

import random

import pytest

from torrentgoat.dht import krpc
from torrentgoat.dht.engine import DHTEngine
from torrentgoat.dht.security import ExternalIPVoter, crc32c, is_exempt, node_id_matches, secure_node_id

# BEP 42 "test vectors": (ip, rand, published node id); only the first 21 bits and the last byte
# are determined by the address.
VECTORS = [
    ("124.31.75.21", 1, "5fbfbff10c5d6a4ec8a88e4c6ab4c28b95eee401"),
    ("21.75.31.124", 86, "5a3ce9c14e7a08645677bbd1cfe7d8f956d53256"),
    ("65.23.51.170", 22, "a5d43220bc8f112a3d426c84764f8c2a1150e616"),
    ("84.124.73.14", 65, "1b0321dd1bb1fe518101ceef99462b947a01ff41"),
    ("43.213.53.83", 90, "e56f6cbf5b7c4be0237986d5243b87aa6d51305a"),
]


def test_crc32c_check_value() -> None:
    assert crc32c(b"123456789") == 0xE3069283


@pytest.mark.parametrize(("ip", "r", "published"), VECTORS)
def test_bep42_vectors(ip: str, r: int, published: str) -> None:
    expected = bytes.fromhex(published)
    generated = secure_node_id(ip, random.Random(r), r)
    assert generated[:2] == expected[:2]
    assert generated[2] & 0xF8 == expected[2] & 0xF8
    assert generated[19] == expected[19] == r
    assert node_id_matches(ip, expected)
    assert node_id_matches(ip, generated)


def test_mismatch_and_exemptions() -> None:
    wrong = bytes.fromhex(VECTORS[0][2])
    assert not node_id_matches("21.75.31.124", wrong)
    for local in ("10.1.2.3", "192.168.1.1", "172.16.0.9", "127.0.0.1", "169.254.1.1", "::1", "fd00::1"):
        assert is_exempt(local) and node_id_matches(local, wrong)
    ipv6 = secure_node_id("2600:4040:5251:7000::b939:ea69", random.Random(1))
    assert node_id_matches("2600:4040:5251:7000::b939:ea69", ipv6)


def test_voter_needs_distinct_voters_and_stays_bounded() -> None:
    voter = ExternalIPVoter(min_votes=3, max_voters=4)
    for _ in range(10):
        voter.vote("10.0.0.1", "1.2.3.4")
    assert voter.external_ip is None  # one voter, however loud
    voter.vote("10.0.0.2", "1.2.3.4")
    voter.vote("10.0.0.3", "1.2.3.4")
    assert voter.external_ip == "1.2.3.4"
    for i in range(10):
        voter.vote(f"10.0.1.{i}", "5.6.7.8")
    assert voter.external_ip == "5.6.7.8"
    assert len(voter._votes) == 4


def test_response_ip_field_round_trips() -> None:
    response = krpc.Response(t=b"aa", id=b"\x01" * 20, ip=("93.184.216.34", 6881))
    data = krpc.encode(response)
    assert b"2:ip6:" in data
    assert krpc.decode(data) == response


def _answer_pings(engine: DHTEngine, reported_ip: str, now: float) -> None:
    for data, dest in engine.datagrams_to_send(now):
        query = krpc.decode(data)
        assert isinstance(query, krpc.Ping)
        node_id = secure_node_id(dest[0], random.Random(dest[0]))  # BEP 42-valid for its address
        reply = krpc.Response(t=query.t, id=node_id, ip=(reported_ip, 6881))
        engine.receive_datagram(krpc.encode(reply), dest, now)


def test_engine_takes_a_bep42_id_once_its_public_address_is_known() -> None:
    engine = DHTEngine(rng=random.Random(1), now=0.0)
    original = engine.node_id
    for i in range(1, 6):
        engine.ping((f"198.51.{i}.1", 6881), 0.0)
    _answer_pings(engine, "93.184.216.34", 0.1)
    assert engine.external_ip == "93.184.216.34"
    assert engine.node_id != original
    assert node_id_matches("93.184.216.34", engine.node_id)
    assert len(engine.table) == 5
    engine.table.check_invariants()


def test_engine_keeps_its_id_behind_a_local_address() -> None:
    engine = DHTEngine(rng=random.Random(1), now=0.0)
    original = engine.node_id
    for i in range(1, 6):
        engine.ping((f"10.0.{i}.1", 6881), 0.0)
    _answer_pings(engine, "192.168.1.20", 0.1)
    assert engine.external_ip == "192.168.1.20"
    assert engine.node_id == original
