"""The MSE handshake engine without sockets: pairs of engines feeding each other, hand-made hostile
peers, the RC4 keystream against RFC 6229, the limits (628-byte sync, deadline, padding, IA)."""

from __future__ import annotations

import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from torrentgoat.errors import ConfigError, EncryptionError, LocalProtocolError
from torrentgoat.mse import (
    INITIATOR_SYNC_LIMIT,
    RC4,
    RESPONDER_SYNC_LIMIT,
    CryptoMethod,
    DHKeyPair,
    EncryptionPolicy,
    FirstBytes,
    MSEConfig,
    MSEHandshake,
    State,
    StreamEstablished,
    StreamKeys,
    payload_keys,
    sniff,
)
from torrentgoat.mse.crypto import DH_PRIME, req1_hash, req2_hash, req3_hash
from torrentgoat.primitives import InfoHash

IH = InfoHash(bytes(range(20)))
OTHER = InfoHash(bytes(range(1, 21)))
HANDSHAKE = b"\x13BitTorrent protocol" + bytes(8) + IH.raw + b"-TG0001-abcdefghijkl"


def make_pair(
    *,
    seed: int = 1,
    a_config: MSEConfig | None = None,
    b_config: MSEConfig | None = None,
    ia: bytes = b"",
    b_payload: bytes = b"",
    keys: StreamKeys | None = None,
) -> tuple[MSEHandshake, MSEHandshake]:
    rng = random.Random(seed)
    a = MSEHandshake.initiator(info_hash=IH, now=0.0, rng=rng, config=a_config, initial_payload=ia)
    b = MSEHandshake.responder(
        info_hash_for_req2=keys if keys is not None else StreamKeys([IH]),
        now=0.0,
        rng=rng,
        config=b_config,
        initial_payload=b_payload,
    )
    return a, b


def pump(
    a: MSEHandshake, b: MSEHandshake, *, chunk: int = 1 << 20, rng: random.Random | None = None
) -> tuple[StreamEstablished | None, StreamEstablished | None]:
    """Move bytes both ways until both sides are quiet; return each side's event (or None)."""
    got: dict[int, StreamEstablished | None] = {id(a): None, id(b): None}
    for _ in range(100):
        moved = False
        for src, dst in ((a, b), (b, a)):
            data = src.data_to_send()
            pos = 0
            while pos < len(data):
                step = rng.randint(1, 97) if rng is not None else chunk
                dst.receive_data(data[pos : pos + step])
                pos += step
                moved = True
        for side in (a, b):
            try:
                event = side.next_event()
            except EncryptionError:
                continue  # the test asks next_event() again to see it
            if event is not None:
                got[id(side)] = event
        if not moved:
            break
    return got[id(a)], got[id(b)]


# ----------------------------------------------------------------------------- RC4 and DH


def test_rc4_matches_rfc6229_at_offset_0_and_after_the_1024_byte_discard() -> None:
    """RFC 6229, 40-bit key 0x0102030405: keystream at offsets 0 and 1024 (what MSE uses first)."""
    assert RC4(bytes.fromhex("0102030405")).update(bytes(16)).hex() == "b2396305f03dc027ccc3524a0a1118a8"
    dropped = RC4(bytes.fromhex("0102030405"), discard=1024)
    assert dropped.update(bytes(16)).hex() == "30abbcc7c20b01609f23ee2d5f6bb7df"


def test_rc4_update_into_and_offset_1008() -> None:
    """Same RFC 6229 key: offset 1008 is the last block a 1024-byte discard drops."""
    out = bytearray(1024)
    assert RC4(bytes.fromhex("0102030405")).update_into(bytes(1024), out) == 1024
    assert out[1008:1024].hex() == "45129048e6a0ed0b56b490338f078da5"


def test_dh_agrees_and_refuses_degenerate_keys() -> None:
    rng = random.Random(5)
    a, b = DHKeyPair(rng), DHKeyPair(rng)
    assert len(a.public_key) == 96 and a.public_key != b.public_key
    assert a.shared_secret(b.public_key) == b.shared_secret(a.public_key)
    for bad in (0, 1, DH_PRIME - 1, DH_PRIME, (1 << 768) - 1):
        with pytest.raises(EncryptionError, match="degenerate"):
            a.shared_secret(bad.to_bytes(96, "big"))
    with pytest.raises(EncryptionError, match="96 bytes"):
        a.shared_secret(b"\x05" * 95)


def test_private_keys_have_160_bits() -> None:
    for seed in range(20):
        pair = DHKeyPair(random.Random(seed))
        assert pair._private.bit_length() == 160


# ----------------------------------------------------------------------------- good handshakes


@pytest.mark.parametrize(
    ("a_allowed", "b_allowed", "prefer_rc4", "expected"),
    [
        (
            CryptoMethod.PLAINTEXT | CryptoMethod.RC4,
            CryptoMethod.PLAINTEXT | CryptoMethod.RC4,
            True,
            CryptoMethod.RC4,
        ),
        (
            CryptoMethod.PLAINTEXT | CryptoMethod.RC4,
            CryptoMethod.PLAINTEXT | CryptoMethod.RC4,
            False,
            CryptoMethod.PLAINTEXT,
        ),
        (CryptoMethod.PLAINTEXT, CryptoMethod.PLAINTEXT | CryptoMethod.RC4, True, CryptoMethod.PLAINTEXT),
        (CryptoMethod.RC4, CryptoMethod.PLAINTEXT | CryptoMethod.RC4, False, CryptoMethod.RC4),
        (CryptoMethod.PLAINTEXT | CryptoMethod.RC4, CryptoMethod.RC4, False, CryptoMethod.RC4),
    ],
)
def test_crypto_select(
    a_allowed: CryptoMethod, b_allowed: CryptoMethod, prefer_rc4: bool, expected: CryptoMethod
) -> None:
    a, b = make_pair(
        a_config=MSEConfig(allowed=a_allowed),
        b_config=MSEConfig(allowed=b_allowed, prefer_rc4=prefer_rc4),
        ia=HANDSHAKE,
        b_payload=b"hello from B",
    )
    ea, eb = pump(a, b)
    assert ea is not None and eb is not None
    assert ea.method is eb.method is expected
    assert ea.info_hash == eb.info_hash == IH
    assert eb.payload == HANDSHAKE  # IA, decrypted
    assert ea.payload == b"hello from B"  # B's payload after step 4 (ENCRYPT2)
    assert a.state is b.state is State.ESTABLISHED and a.get_timer() is None and b.get_timer() is None
    assert a.cipher is not None and b.cipher is not None and a.cipher.method is expected


def test_require_policy_offers_and_accepts_rc4_only() -> None:
    config = MSEConfig(policy=EncryptionPolicy.REQUIRE)
    assert config.methods is CryptoMethod.RC4
    assert not config.accepts_plaintext_connections and config.accepts_encrypted_connections
    a, b = make_pair(a_config=MSEConfig(allowed=CryptoMethod.PLAINTEXT), b_config=config)
    pump(a, b)
    with pytest.raises(EncryptionError, match="no common MSE crypto method"):
        b.next_event()


@pytest.mark.parametrize("method", [CryptoMethod.RC4, CryptoMethod.PLAINTEXT])
def test_payload_both_directions_after_the_handshake(method: CryptoMethod) -> None:
    a, b = make_pair(a_config=MSEConfig(allowed=method), ia=HANDSHAKE)
    pump(a, b)
    assert a.cipher is not None and b.cipher is not None
    rng = random.Random(3)
    for _ in range(20):
        data = rng.randbytes(rng.randint(1, 70000))
        wire = a.cipher.encrypt(data)
        assert (wire != data) is (method is CryptoMethod.RC4)
        assert b.cipher.decrypt(wire) == data
        back = b.cipher.encrypt(data[::-1])
        assert a.cipher.decrypt(back) == data[::-1]


def test_payload_that_follows_the_handshake_in_the_same_read_is_handed_on() -> None:
    a, b = make_pair(ia=HANDSHAKE)
    b.receive_data(a.data_to_send())
    a.receive_data(b.data_to_send())
    step3 = a.data_to_send()
    ea = a.next_event()
    assert ea is None  # A waits for step 4
    b.receive_data(step3)
    eb = b.next_event()
    assert eb is not None and eb.payload == HANDSHAKE
    # B's step 4 plus B's first payload bytes, arriving with more payload in one read
    assert b.cipher is not None
    a.receive_data(b.data_to_send() + b.cipher.encrypt(b"BT handshake + bitfield"))
    ea = a.next_event()
    assert ea is not None and ea.payload == b"BT handshake + bitfield"
    assert a.next_event() is None  # one event only
    with pytest.raises(LocalProtocolError):
        a.receive_data(b"more")


@pytest.mark.parametrize("max_padding", [0, 1, 100, 512])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_padding_sizes_and_byte_by_byte(max_padding: int, seed: int) -> None:
    config = MSEConfig(max_padding=max_padding)
    a, b = make_pair(seed=seed, a_config=config, b_config=config, ia=HANDSHAKE)
    first = a.data_to_send()
    assert 96 <= len(first) <= 96 + max_padding
    b.receive_data(first)
    ea, eb = pump(a, b, chunk=1)
    assert ea is not None and eb is not None and eb.payload == HANDSHAKE


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32), chunking=st.integers(0, 2**32))
def test_any_chunking_establishes_the_same_stream(seed: int, chunking: int) -> None:
    a, b = make_pair(seed=seed, ia=HANDSHAKE[: seed % 69])
    ea, eb = pump(a, b, rng=random.Random(chunking))
    assert ea is not None and eb is not None
    assert eb.payload == HANDSHAKE[: seed % 69]
    assert a.cipher is not None and b.cipher is not None
    assert b.cipher.decrypt(a.cipher.encrypt(b"x" * 100)) == b"x" * 100


def test_same_rng_same_bytes() -> None:
    a1, _ = make_pair(seed=9)
    a2, _ = make_pair(seed=9)
    assert a1.data_to_send() == a2.data_to_send()


def test_one_listener_finds_the_second_of_two_torrents() -> None:
    keys = StreamKeys([OTHER, IH])
    assert len(keys) == 2 and keys(req2_hash(IH.raw)) == IH
    a, b = make_pair(keys=keys)
    _, eb = pump(a, b)
    assert eb is not None and eb.info_hash == IH
    keys.remove(IH)
    assert keys(req2_hash(IH.raw)) is None


# ----------------------------------------------------------------------------- hostile peers


def crafted_step3(
    secret: bytes,
    skey: bytes,
    *,
    vc: bytes = bytes(8),
    provide: int = 3,
    pad_c: bytes = b"",
    pad_c_length: int | None = None,
    ia: bytes = b"",
    ia_length: int | None = None,
) -> bytes:
    """Step 3 built by hand from the primitives, with any field wrong on purpose."""
    key_a, _ = payload_keys(secret, skey)
    obfuscated = bytes(x ^ y for x, y in zip(req2_hash(skey), req3_hash(secret), strict=True))
    plain = struct.pack(">8sIH", vc, provide, len(pad_c) if pad_c_length is None else pad_c_length)
    plain += pad_c + struct.pack(">H", len(ia) if ia_length is None else ia_length) + ia
    return req1_hash(secret) + obfuscated + RC4(key_a, discard=1024).update(plain)


def responder_with_hand_made_initiator(config: MSEConfig | None = None) -> tuple[MSEHandshake, bytes]:
    """A responder that got our Ya; returns it and S (from our side)."""
    rng = random.Random(11)
    ours = DHKeyPair(rng)
    b = MSEHandshake.responder(info_hash_for_req2=StreamKeys([IH]), now=0.0, rng=rng, config=config)
    b.receive_data(ours.public_key)
    yb = b.data_to_send()[:96]
    return b, ours.shared_secret(yb)


def test_hand_made_step3_is_accepted() -> None:
    b, secret = responder_with_hand_made_initiator()
    b.receive_data(b"\x00" * 300 + crafted_step3(secret, IH.raw, pad_c=b"p" * 512, ia=HANDSHAKE))
    event = b.next_event()
    assert event is not None and event.payload == HANDSHAKE and event.method is CryptoMethod.RC4


def test_wrong_vc() -> None:
    b, secret = responder_with_hand_made_initiator()
    b.receive_data(crafted_step3(secret, IH.raw, vc=b"\x00" * 7 + b"\x01"))
    with pytest.raises(EncryptionError, match="verification constant"):
        b.next_event()


def test_wrong_keys_show_as_wrong_vc() -> None:
    """A stream key that maps to another torrent of ours (or a wrong S) decrypts VC to garbage."""
    b, secret = responder_with_hand_made_initiator()
    b._lookup = lambda _req2: OTHER
    b.receive_data(crafted_step3(secret, IH.raw))
    with pytest.raises(EncryptionError, match="verification constant"):
        b.next_event()


def test_unknown_stream_key() -> None:
    b, secret = responder_with_hand_made_initiator()
    b.receive_data(crafted_step3(secret, OTHER.raw))
    with pytest.raises(EncryptionError, match="names no torrent"):
        b.next_event()
    assert b.state is State.FAILED and b.buffered == 0 and b.get_timer() is None
    with pytest.raises(EncryptionError):
        b.next_event()  # stays failed


def test_pad_c_too_long_and_ia_too_long() -> None:
    b, secret = responder_with_hand_made_initiator()
    b.receive_data(crafted_step3(secret, IH.raw, pad_c_length=513))
    with pytest.raises(EncryptionError, match=r"len\(PadC\) 513"):
        b.next_event()
    b, secret = responder_with_hand_made_initiator(MSEConfig(max_initial_payload=68))
    b.receive_data(crafted_step3(secret, IH.raw, ia_length=69))
    with pytest.raises(EncryptionError, match=r"len\(IA\) 69"):
        b.next_event()


def test_provide_nothing_we_allow() -> None:
    b, secret = responder_with_hand_made_initiator()
    b.receive_data(crafted_step3(secret, IH.raw, provide=0x04))
    with pytest.raises(EncryptionError, match="no common"):
        b.next_event()


def test_garbage_to_a_responder_fails_at_628_bytes() -> None:
    rng = random.Random(2)
    b = MSEHandshake.responder(info_hash_for_req2=StreamKeys([IH]), now=0.0, rng=rng)
    garbage = rng.randbytes(RESPONDER_SYNC_LIMIT)
    b.receive_data(garbage[:-1])
    assert b.next_event() is None and b.buffered < 20  # only a possible start of the pattern is kept
    b.receive_data(garbage[-1:])
    with pytest.raises(EncryptionError, match="no MSE sync pattern HASH\\('req1', S\\) within 628 bytes"):
        b.next_event()


def test_a_megabyte_of_garbage_in_one_read_fails_and_keeps_nothing() -> None:
    rng = random.Random(3)
    b = MSEHandshake.responder(info_hash_for_req2=StreamKeys([IH]), now=0.0, rng=rng)
    b.receive_data(rng.randbytes(1 << 20))
    with pytest.raises(EncryptionError):
        b.next_event()
    assert b.buffered == 0 and b.data_to_send() == b""


def test_endless_padding_from_an_initiator() -> None:
    """A valid Ya followed by padding that never ends: dropped once 628 bytes passed without sync."""
    b, _ = responder_with_hand_made_initiator()
    sent = 96
    failed = False
    while sent < 10_000 and not failed:
        b.receive_data(b"\x00" * 50)
        sent += 50
        try:
            b.next_event()
        except EncryptionError:
            failed = True
    assert failed and sent <= RESPONDER_SYNC_LIMIT + 50


def test_endless_padding_from_a_responder() -> None:
    """Our initiator gets a valid Yb, then padding without ENCRYPT(VC): dropped at 616 bytes."""
    rng = random.Random(4)
    a = MSEHandshake.initiator(info_hash=IH, now=0.0, rng=rng)
    peer = DHKeyPair(rng)
    a.receive_data(peer.public_key)
    assert a.data_to_send()  # step 1 and step 3 went out
    a.receive_data(rng.randbytes(INITIATOR_SYNC_LIMIT - 96 - 1))
    assert a.next_event() is None
    a.receive_data(b"\x00")
    with pytest.raises(EncryptionError, match="ENCRYPT\\(VC\\) within 616 bytes"):
        a.next_event()


def test_initiator_refuses_a_select_it_did_not_offer() -> None:
    """A responder that selects both bits (or one we did not offer) is dropped."""

    class Hostile(MSEHandshake):
        def _select(self, provide: int) -> None:
            assert self._encryptor is not None
            self._out += self._encryptor.update(bytes(8) + struct.pack(">IH", 0x03, 0))

    rng = random.Random(6)
    a = MSEHandshake.initiator(info_hash=IH, now=0.0, rng=rng)
    b = Hostile.responder(info_hash_for_req2=StreamKeys([IH]), now=0.0, rng=rng)
    pump(a, b)
    with pytest.raises(EncryptionError, match="selected crypto method 0x3"):
        a.next_event()


def test_pad_d_too_long() -> None:
    class Hostile(MSEHandshake):
        def _select(self, provide: int) -> None:
            assert self._encryptor is not None
            self._out += self._encryptor.update(bytes(8) + struct.pack(">IH", 0x02, 600))

    rng = random.Random(7)
    a = MSEHandshake.initiator(info_hash=IH, now=0.0, rng=rng)
    b = Hostile.responder(info_hash_for_req2=StreamKeys([IH]), now=0.0, rng=rng)
    pump(a, b)
    with pytest.raises(EncryptionError, match=r"len\(PadD\) 600"):
        a.next_event()


# ----------------------------------------------------------------------------- deadlines


def test_half_open_handshake_hits_the_deadline() -> None:
    b = MSEHandshake.responder(
        info_hash_for_req2=StreamKeys([IH]),
        now=100.0,
        rng=random.Random(1),
        config=MSEConfig(handshake_timeout=5),
    )
    assert b.get_timer() == 105.0
    b.handle_timer(104.9)
    assert b.next_event() is None
    b.handle_timer(105.0)
    with pytest.raises(
        EncryptionError, match="not complete within 5 s \\(still waiting for the peer's public key\\)"
    ):
        b.next_event()
    assert b.get_timer() is None


def test_truncated_step3_hits_the_deadline() -> None:
    a, b = make_pair(b_config=MSEConfig(handshake_timeout=10))
    b.receive_data(a.data_to_send())
    a.receive_data(b.data_to_send())
    step3 = a.data_to_send()
    b.receive_data(step3[: len(step3) - 3])
    assert b.next_event() is None and b.state is not State.ESTABLISHED
    b.handle_timer(10.0)
    with pytest.raises(EncryptionError, match="not complete within 10 s"):
        b.next_event()


def test_deadline_does_not_fire_after_establishment() -> None:
    a, b = make_pair()
    pump(a, b)
    a.handle_timer(1e9)
    b.handle_timer(1e9)
    assert a.next_event() is None and b.next_event() is None


# ----------------------------------------------------------------------------- sniffing, config


def test_sniff() -> None:
    assert sniff(b"") is None
    assert sniff(b"\x13BitTorrent") is None
    assert sniff(HANDSHAKE) is FirstBytes.PLAINTEXT
    assert sniff(b"\x13BitTorrent protocol") is FirstBytes.PLAINTEXT
    assert sniff(b"\x13BitTorrent prot0") is FirstBytes.ENCRYPTED
    assert sniff(b"\x14") is FirstBytes.ENCRYPTED
    a, _ = make_pair()
    assert sniff(a.data_to_send()) is FirstBytes.ENCRYPTED


def test_config_validation() -> None:
    assert EncryptionPolicy.parse(" Require ") is EncryptionPolicy.REQUIRE
    with pytest.raises(ConfigError, match="prefer, require or disable"):
        EncryptionPolicy.parse("forced")
    with pytest.raises(ConfigError, match="max_padding"):
        MSEConfig(max_padding=513)
    with pytest.raises(ConfigError, match="no payload crypto method"):
        MSEConfig(policy=EncryptionPolicy.REQUIRE, allowed=CryptoMethod.PLAINTEXT)
    with pytest.raises(LocalProtocolError, match="disable"):
        MSEHandshake.initiator(
            info_hash=IH, now=0, rng=random.Random(), config=MSEConfig(policy=EncryptionPolicy.DISABLE)
        )
    with pytest.raises(LocalProtocolError, match="16 bits"):
        MSEHandshake.initiator(info_hash=IH, now=0, rng=random.Random(), initial_payload=bytes(70000))
