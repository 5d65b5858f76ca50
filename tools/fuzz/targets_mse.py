"""Fuzz target ``mse``: the Message Stream Encryption handshake (:mod:`torrentgoat.mse`), both roles.

Random bytes never get past the sync pattern (it is a SHA-1 of the Diffie-Hellman secret), so the
input mostly steers a *structured* adversary: a real counterpart that computes the secret and the
RC4 keys and then lets the input choose every field it sends -- pad lengths and contents, the
stream key (ours or another torrent's), VC, ``crypto_provide`` / ``crypto_select``, the length
fields (true or lying), ``IA`` and the payload after the handshake -- and the read sizes.  One flag
feeds the input raw instead (garbage, truncation, endless padding).

Checked beyond the contract: an established stream names our torrent, uses a method both sides
allow (the one the adversary selected, for an initiator), and hands on exactly the payload the
adversary sent -- ``IA`` first, then the stream, decrypted -- and what the engine sent in step 3
carries our ``crypto_provide`` and our initial payload.  A handshake that is not established by
the deadline fails with ``EncryptionError`` once the timer fires.
"""

from __future__ import annotations

import random
import struct

from tools.fuzz.harness import Reader, chunks, expect, target
from torrentgoat.errors import EncryptionError
from torrentgoat.mse.config import CryptoMethod, EncryptionPolicy, MSEConfig
from torrentgoat.mse.crypto import (
    RC4,
    RC4_DISCARD,
    DHKeyPair,
    StreamKeys,
    payload_keys,
    req1_hash,
    req2_hash,
    req3_hash,
)
from torrentgoat.mse.handshake import VC, MSEHandshake, StreamEstablished
from torrentgoat.primitives import InfoHash

__all__: list[str] = []

INFO_HASH = InfoHash(b"\x33" * 20)
OTHER_HASH = InfoHash(b"\x44" * 20)
_CONFIGS = (
    MSEConfig(),
    MSEConfig(policy=EncryptionPolicy.REQUIRE),
    MSEConfig(allowed=CryptoMethod.PLAINTEXT),
    MSEConfig(prefer_rc4=False),
    MSEConfig(max_initial_payload=68, max_padding=0),
)
_PROVIDES = (0x01, 0x02, 0x03, 0x00, 0x04, 0xFFFFFFFF)


class _Feed:
    """Delivers adversary bytes to the engine in reads of a fixed size until it is established."""

    def __init__(self, engine: MSEHandshake, chunk: int) -> None:
        self.engine = engine
        self.chunk = chunk
        self.event: StreamEstablished | None = None
        self.after = bytearray()
        """Bytes that arrived after establishment, still encrypted (the driver's job from there)."""

    def send(self, data: bytes) -> None:
        for piece in chunks(data, self.chunk):
            if self.event is not None:
                self.after += piece
                continue
            self.engine.receive_data(piece)
            event = self.engine.next_event()  # EncryptionError ends the run (accepted)
            if event is not None:
                self.event = event
        expect(self.engine.buffered <= 1024 + 0xFFFF, "mse: engine buffers more than one step")

    def payload(self) -> bytes:
        assert self.event is not None and self.engine.cipher is not None
        return self.event.payload + self.engine.cipher.decrypt(bytes(self.after))


def _finish(engine: MSEHandshake, feed: _Feed, expected_payload: bytes | None) -> None:
    if feed.event is None:
        engine.handle_timer(engine.get_timer() or 0.0)
        try:
            engine.next_event()
        except EncryptionError:
            return
        expect(False, "mse: a handshake that never completed survived its deadline")
    event = feed.event
    expect(event.info_hash == INFO_HASH, "mse: established for a torrent that was not asked for")
    expect(event.method & engine.config.methods == event.method, "mse: a method we do not allow was used")
    if expected_payload is not None:
        expect(feed.payload() == expected_payload, "mse: the payload after the handshake changed")


def _responder_under_test(reader: Reader, config: MSEConfig, feed_chunk: int, rng: random.Random) -> None:
    engine = MSEHandshake.responder(
        info_hash_for_req2=StreamKeys([INFO_HASH]), now=0.0, rng=rng, config=config
    )
    feed = _Feed(engine, feed_chunk)
    ours = DHKeyPair(random.Random(reader.uint(2)))
    feed.send(ours.public_key + reader.take(reader.uint(2) % 700))  # Ya, PadA (spec: at most 512)
    step2 = engine.data_to_send()
    if len(step2) < 96:
        _finish(engine, feed, None)
        return
    secret = ours.shared_secret(step2[:96])
    skey = INFO_HASH if not reader.flag() else OTHER_HASH
    key_a, key_b = payload_keys(secret, skey.raw)
    encrypt, decrypt = RC4(key_a, discard=RC4_DISCARD), RC4(key_b, discard=RC4_DISCARD)
    vc = VC if not reader.flag() else reader.take(8).ljust(8, b"\1")
    provide = reader.choice(_PROVIDES)
    pad_c = reader.take(reader.uint(2) % 600)
    pad_c_len = len(pad_c) if not reader.flag() else reader.uint(2)
    ia = reader.take(reader.uint(2) % 200)
    ia_len = len(ia) if not reader.flag() else reader.uint(2)
    obfuscated = bytes(a ^ b for a, b in zip(req2_hash(skey.raw), req3_hash(secret), strict=True))
    plain = struct.pack(">8sIH", vc, provide, pad_c_len) + pad_c + struct.pack(">H", ia_len) + ia
    honest = vc == VC and pad_c_len == len(pad_c) and ia_len == len(ia)
    feed.send(req1_hash(secret) + obfuscated + encrypt.update(plain))
    payload = reader.rest()
    if feed.event is not None:
        step4 = decrypt.update(engine.data_to_send())
        expect(step4[:8] == VC, "mse: our step 4 does not start with ENCRYPT(VC)")
        (select,) = struct.unpack_from(">I", step4, 8)
        expect(
            select == int(feed.event.method) and bool(select & provide),
            "mse: we selected a method not offered",
        )
        feed.send(encrypt.update(payload) if select == CryptoMethod.RC4 else payload)
    _finish(engine, feed, ia + payload if honest and skey == INFO_HASH else None)


def _initiator_under_test(reader: Reader, config: MSEConfig, feed_chunk: int, rng: random.Random) -> None:
    initial = reader.take(reader.byte())
    engine = MSEHandshake.initiator(
        info_hash=INFO_HASH, now=0.0, rng=rng, config=config, initial_payload=initial
    )
    feed = _Feed(engine, feed_chunk)
    step1 = engine.data_to_send()
    ours = DHKeyPair(random.Random(reader.uint(2)))
    feed.send(ours.public_key + reader.take(reader.uint(2) % 700))  # Yb, PadB
    step3 = engine.data_to_send()
    if not step3:
        _finish(engine, feed, None)
        return
    secret = ours.shared_secret(step1[:96])
    key_a, key_b = payload_keys(secret, INFO_HASH.raw)
    decrypt, encrypt = RC4(key_a, discard=RC4_DISCARD), RC4(key_b, discard=RC4_DISCARD)
    start = step3.find(req1_hash(secret))
    expect(start >= 0, "mse: our step 3 lacks HASH('req1', S)")
    plain = decrypt.update(step3[start + 40 :])
    vc, provide, pad_c_len = struct.unpack_from(">8sIH", plain)
    (ia_len,) = struct.unpack_from(">H", plain, 14 + pad_c_len)
    expect(vc == VC and provide == int(config.methods), "mse: our step 3 has a wrong VC or crypto_provide")
    expect(
        plain[16 + pad_c_len : 16 + pad_c_len + ia_len] == initial, "mse: our IA is not the initial payload"
    )
    vc_b = VC if not reader.flag() else reader.take(8).ljust(8, b"\1")
    select = reader.choice(_PROVIDES)
    pad_d = reader.take(reader.uint(2) % 600)
    pad_d_len = len(pad_d) if not reader.flag() else reader.uint(2)
    honest = vc_b == VC and pad_d_len == len(pad_d)
    feed.send(encrypt.update(struct.pack(">8sIH", vc_b, select, pad_d_len) + pad_d))
    payload = reader.rest()
    feed.send(encrypt.update(payload) if select == CryptoMethod.RC4 else payload)
    if feed.event is not None:
        expect(
            int(feed.event.method) == select, "mse: established with a method the responder did not select"
        )
    _finish(engine, feed, payload if honest else None)


@target(
    "mse",
    "torrentgoat.mse.MSEHandshake, responder and initiator, against a structured (or raw) adversary",
    max_len=4096,
)
def fuzz_mse(data: bytes) -> None:
    reader = Reader(data)
    flags = reader.byte()
    config = reader.choice(_CONFIGS)
    chunk = reader.byte()
    rng = random.Random(reader.uint(2))
    if flags & 2:  # raw: the input is the peer's whole stream
        if flags & 1:
            engine = MSEHandshake.responder(
                info_hash_for_req2=StreamKeys([INFO_HASH]), now=0.0, rng=rng, config=config
            )
        else:
            engine = MSEHandshake.initiator(info_hash=INFO_HASH, now=0.0, rng=rng, config=config)
        feed = _Feed(engine, chunk)
        feed.send(reader.rest())
        _finish(engine, feed, None)
    elif flags & 1:
        _responder_under_test(reader, config, chunk, rng)
    else:
        _initiator_under_test(reader, config, chunk, rng)
