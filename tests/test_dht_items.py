"""BEP 44 items (signature buffer, test vectors, limits), the item store, BEP 46 helpers, tokens,
the peer store and the rate limiter."""

from __future__ import annotations

import hashlib
import random

import pytest

from torrentgoat.dht.item_store import ItemStore
from torrentgoat.dht.items import (
    ImmutableItem,
    MutableItem,
    SigningKey,
    btpk_magnet,
    immutable_target,
    info_hash_value,
    mutable_target,
    parse_info_hash_value,
    sign_mutable,
    signature_buffer,
)
from torrentgoat.dht.peer_store import PeerStore
from torrentgoat.dht.ratelimit import RateLimiter
from torrentgoat.dht.tokens import TokenManager
from torrentgoat.errors import DHTError, KRPCError, SignatureError
from torrentgoat.primitives import InfoHash

# BEP 44 "test vectors"
VECTOR_KEY = bytes.fromhex("77ff84905a91936367c01360803104f92432fcd904a43511876df5cdf3e7e548")
VECTOR_SIG = bytes.fromhex(
    "305ac8aeb6c9c151fa120f120ea2cfb923564e11552d06a5d856091e5e853cff"
    "1260d3f39e4999684aa92eb73ffd136e6f4f3ecbfda0ce53a1608ecd7ae21f01"
)
VECTOR_SIG_SALT = bytes.fromhex(
    "6834284b6b24c3204eb2fea824d82f88883a3d95e8b4a21b8c0ded553d17d17d"
    "df9a8a7104b1258f30bed3787e6cb896fca78c58f8e03b5f18f14951a87d9a08"
)
SEED = hashlib.sha256(b"test seed").digest()


def test_signature_buffer_is_exactly_the_beps() -> None:
    assert signature_buffer(b"", 1, b"12:Hello World!") == b"3:seqi1e1:v12:Hello World!"
    assert signature_buffer(b"foobar", 1, b"12:Hello World!") == b"4:salt6:foobar3:seqi1e1:v12:Hello World!"


def test_bep44_vector_1_mutable() -> None:
    item = MutableItem(public_key=VECTOR_KEY, seq=1, value=b"Hello World!", signature=VECTOR_SIG)
    item.verify()
    assert item.target.hex() == "4a533d47ec9c7d95b1ad75f576cffc641853b750"


def test_bep44_vector_2_mutable_with_salt() -> None:
    item = MutableItem(
        public_key=VECTOR_KEY, seq=1, value=b"Hello World!", signature=VECTOR_SIG_SALT, salt=b"foobar"
    )
    item.verify()
    assert item.target.hex() == "411eba73b6f087ca51a3795d9c8c938d365e32c1"
    assert mutable_target(VECTOR_KEY, b"foobar") == item.target


def test_bep44_vector_3_immutable() -> None:
    assert immutable_target(b"Hello World!").hex() == "e5f96f6f38320f0f33959cb4d3d656452117aadb"
    assert ImmutableItem(value=b"Hello World!").target == immutable_target(b"Hello World!")


def test_vector_signature_does_not_verify_when_anything_changes() -> None:
    for item in (
        MutableItem(public_key=VECTOR_KEY, seq=2, value=b"Hello World!", signature=VECTOR_SIG),
        MutableItem(public_key=VECTOR_KEY, seq=1, value=b"Hello World?", signature=VECTOR_SIG),
        MutableItem(public_key=VECTOR_KEY, seq=1, value=b"Hello World!", signature=VECTOR_SIG, salt=b"x"),
        MutableItem(public_key=VECTOR_KEY, seq=1, value=b"Hello World!", signature=VECTOR_SIG_SALT),
    ):
        with pytest.raises(SignatureError, match="does not verify"):
            item.verify()


def test_sign_and_verify_with_our_seed() -> None:
    key = SigningKey(SEED)
    item = sign_mutable(key, {b"ih": b"x" * 20}, 7, b"salt")
    item.verify()
    assert item.public_key == key.public_key
    assert SigningKey(SEED).public_key == key.public_key  # a seed is the whole key


def test_expanded_key_is_libtorrents_form() -> None:
    expanded = SigningKey(SEED).expanded()
    assert len(expanded) == 64
    assert expanded[0] & 7 == 0 and expanded[31] & 0xC0 == 0x40  # clamped scalar (RFC 8032)


def test_limits_are_enforced_before_signing() -> None:
    key = SigningKey(SEED)
    sign_mutable(key, b"x" * 995, 1)  # "995:" + 995 bytes = 999 bytes
    with pytest.raises(DHTError, match="1000"):
        sign_mutable(key, b"x" * 997, 1)
    with pytest.raises(DHTError, match="salt"):
        sign_mutable(key, b"v", 1, b"s" * 65)
    with pytest.raises(DHTError, match="negative"):
        sign_mutable(key, b"v", -1)
    with pytest.raises(SignatureError):
        SigningKey(b"short")


def test_bep46_value_and_magnet() -> None:
    ih = InfoHash(bytes(range(20)))
    assert parse_info_hash_value(info_hash_value(ih)) == ih
    with pytest.raises(DHTError, match="ih"):
        parse_info_hash_value({b"ih": b"short"})
    with pytest.raises(DHTError, match="dictionary"):
        parse_info_hash_value(b"not a dict")
    assert btpk_magnet(b"\x01" * 32) == "magnet:?xs=urn:btpk:" + "01" * 32
    assert btpk_magnet(b"\x01" * 32, b"ab").endswith("&s=6162")


def test_item_store_rules() -> None:
    key = SigningKey(SEED)
    store = ItemStore(ttl=100.0, max_items=3)
    v1 = sign_mutable(key, b"one", 1)
    v2 = sign_mutable(key, b"two", 2)
    store.put_mutable(v2, None, 0.0)
    with pytest.raises(KRPCError) as lower:
        store.put_mutable(v1, None, 1.0)
    assert lower.value.code == 302
    with pytest.raises(KRPCError) as cas:
        store.put_mutable(sign_mutable(key, b"three", 3), 1, 1.0)
    assert cas.value.code == 301
    store.put_mutable(sign_mutable(key, b"three", 3), 2, 1.0)
    forged = MutableItem(public_key=key.public_key, seq=9, value=b"evil", signature=v2.signature)
    with pytest.raises(KRPCError) as bad:
        store.put_mutable(forged, None, 1.0)
    assert bad.value.code == 206
    with pytest.raises(KRPCError) as big:
        store.put_immutable(b"x", b"x" * 1001, b"t" * 20, 1.0)
    assert big.value.code == 205
    # expiry and the cap
    assert store.get(v2.target, 50.0) is not None
    assert store.get(v2.target, 200.0) is None
    for i in range(5):
        store.put_immutable(i, b"i%de" % i, bytes([i]) * 20, 2.0)
    assert len(store) == 3
    store.expire(500.0)
    assert len(store) == 0


def test_tokens_rotate_every_five_minutes_previous_still_accepted() -> None:
    tokens = TokenManager(random.Random(1), 0.0)
    token = tokens.token_for("10.0.0.1")
    assert tokens.check(token, "10.0.0.1")
    assert not tokens.check(token, "10.0.0.2")
    tokens.rotate_if_due(301.0)
    assert tokens.check(token, "10.0.0.1")  # previous secret
    assert tokens.token_for("10.0.0.1") != token
    tokens.rotate_if_due(601.0)
    assert not tokens.check(token, "10.0.0.1")  # 10 minutes: gone


def test_peer_store_expiry_and_caps() -> None:
    store = PeerStore(ttl=60.0, max_info_hashes=2, max_peers=3)
    rng = random.Random(1)
    for port in range(1, 6):
        store.announce(b"a" * 20, ("10.0.0.1", port), 0.0)
    assert sorted(p for _, p in store.get(b"a" * 20, 1.0, rng)) == [3, 4, 5]
    store.announce(b"b" * 20, ("10.0.0.1", 1), 0.0)
    store.announce(b"c" * 20, ("10.0.0.1", 1), 0.0)
    assert store.info_hash_count == 2 and store.get(b"a" * 20, 1.0, rng) == []
    assert store.get(b"b" * 20, 61.0, rng) == []
    store.expire(61.0)
    assert len(store) == 0
    for port in range(1, 101):
        store.announce(b"d" * 20, ("10.0.0.1", port), 100.0)
    assert len(store.get(b"d" * 20, 101.0, rng, limit=2)) == 2


def test_rate_limiter_token_bucket_per_source() -> None:
    limiter = RateLimiter(rate=10.0, burst=5.0, max_sources=2)
    allowed = sum(limiter.allow(("10.0.0.1", 1), 0.0) for _ in range(100))
    assert allowed == 5
    assert limiter.allow(("10.0.0.1", 2), 0.0)  # another port is another source
    assert limiter.allow(("10.0.0.1", 1), 1.0)  # refilled
    limiter.allow(("10.0.0.3", 1), 1.0)
    assert len(limiter) == 2  # capped
    per_ip = RateLimiter(rate=1.0, burst=1.0, per_ip=True)
    assert per_ip.allow(("10.0.0.1", 1), 0.0)
    assert not per_ip.allow(("10.0.0.1", 2), 0.0)
