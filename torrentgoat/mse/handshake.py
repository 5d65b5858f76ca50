"""``MSEHandshake``: the sans-IO Message Stream Encryption handshake, both roles (level L2).

The five steps of the spec (A = initiator, B = responder, SKEY = the torrent's info-hash)::

    1 A->B: Ya, PadA
    2 B->A: Yb, PadB
    3 A->B: HASH('req1', S), HASH('req2', SKEY) xor HASH('req3', S),
            ENCRYPT(VC, crypto_provide, len(PadC), PadC, len(IA)), ENCRYPT(IA)
    4 B->A: ENCRYPT(VC, crypto_select, len(PadD), PadD), ENCRYPT2(payload stream)
    5 A->B: ENCRYPT2(payload stream)

``ENCRYPT`` is always RC4 (``keyA`` from A, ``keyB`` from B); ``ENCRYPT2`` is the method B selected
(RC4 continuing the same keystreams, or plaintext).  VC is eight zero bytes, the pads are 0..512
random bytes, ``crypto_provide``/``crypto_select`` are 32-bit fields, the lengths 16-bit, all
big-endian.

Everything that affects the engine's state lives in this file (h11 style): :data:`TRANSITIONS` lists
the states each role goes through; any rule broken by the peer moves the engine to ``FAILED`` and
:meth:`MSEHandshake.next_event` raises :class:`~torrentgoat.errors.EncryptionError`.  Limits:

* the sync patterns must appear where the spec allows them: ``HASH('req1', S)`` ending within
  96 + 512 + 20 = 628 bytes of the connection's start (B), ``ENCRYPT(VC)`` within 96 + 512 + 8 = 616
  bytes (A) -- garbage or endless padding fails there, with at most that much buffered;
* ``len(PadC)``/``len(PadD)`` at most 512, ``len(IA)`` at most ``config.max_initial_payload``;
  every other step needs a fixed number of bytes, so the engine never holds more than one step's
  worth of handshake bytes (the payload that follows the handshake is handed on, not kept);
* the handshake must complete by ``now + config.handshake_timeout`` (:meth:`get_timer`).
"""

from __future__ import annotations

import enum
import random
import struct
from collections.abc import Callable
from dataclasses import dataclass

from torrentgoat.errors import EncryptionError, LocalProtocolError
from torrentgoat.mse.config import CryptoMethod, MSEConfig
from torrentgoat.mse.crypto import (
    DH_KEY_LENGTH,
    RC4,
    RC4_DISCARD,
    DHKeyPair,
    payload_keys,
    req1_hash,
    req2_hash,
    req3_hash,
)
from torrentgoat.primitives import InfoHash

__all__ = [
    "INITIATOR_SYNC_LIMIT",
    "MAX_IA_LIBTORRENT",
    "PLAINTEXT_PREFIX",
    "RESPONDER_SYNC_LIMIT",
    "TRANSITIONS",
    "VC",
    "FirstBytes",
    "MSEHandshake",
    "PayloadCipher",
    "Role",
    "State",
    "StreamEstablished",
    "sniff",
]

VC = bytes(8)
"""The verification constant: eight zero bytes, sent RC4-encrypted."""
PLAINTEXT_PREFIX = b"\x13BitTorrent protocol"
"""How a plain BitTorrent handshake starts (BEP 3); anything else on an incoming connection is MSE."""
_PAD_LIMIT = 512
RESPONDER_SYNC_LIMIT = DH_KEY_LENGTH + _PAD_LIMIT + 20
"""628: ``HASH('req1', S)`` must end within this many bytes of the initiator's first byte."""
INITIATOR_SYNC_LIMIT = DH_KEY_LENGTH + _PAD_LIMIT + 8
"""616: ``ENCRYPT(VC)`` must end within this many bytes of the responder's first byte."""
MAX_IA_LIBTORRENT = 68
"""libtorrent (2.x) drops an initiator whose ``len(IA)`` exceeds a BitTorrent handshake (68 bytes)."""

_U16 = struct.Struct(">H")
_SELECT = struct.Struct(">IH")  # crypto_select, len(PadD)
_PROVIDE = struct.Struct(">8sIH")  # VC, crypto_provide, len(PadC)


class Role(enum.Enum):
    INITIATOR = "initiator"
    """A: dials out, knows the torrent (SKEY), may send its first payload bytes as IA."""
    RESPONDER = "responder"
    """B: accepts, learns the torrent from the obfuscated stream key."""


class State(enum.Enum):
    PUBLIC_KEY = "waiting for the peer's public key"
    SYNC_VC = "searching PadB for ENCRYPT(VC)"
    CRYPTO_SELECT = "reading crypto_select and len(PadD)"
    PAD_D = "reading PadD"
    SYNC_REQ1 = "searching PadA for HASH('req1', S)"
    STREAM_KEY = "reading the obfuscated stream key"
    CRYPTO_PROVIDE = "reading VC, crypto_provide and len(PadC)"
    PAD_C = "reading PadC and len(IA)"
    INITIAL_PAYLOAD = "reading IA"
    ESTABLISHED = "established"
    FAILED = "failed"


TRANSITIONS: dict[tuple[Role, State], State] = {
    (Role.INITIATOR, State.PUBLIC_KEY): State.SYNC_VC,  # Yb in; step 3 out
    (Role.INITIATOR, State.SYNC_VC): State.CRYPTO_SELECT,
    (Role.INITIATOR, State.CRYPTO_SELECT): State.PAD_D,
    (Role.INITIATOR, State.PAD_D): State.ESTABLISHED,
    (Role.RESPONDER, State.PUBLIC_KEY): State.SYNC_REQ1,  # Ya in; step 2 out
    (Role.RESPONDER, State.SYNC_REQ1): State.STREAM_KEY,
    (Role.RESPONDER, State.STREAM_KEY): State.CRYPTO_PROVIDE,
    (Role.RESPONDER, State.CRYPTO_PROVIDE): State.PAD_C,  # step 4 out
    (Role.RESPONDER, State.PAD_C): State.INITIAL_PAYLOAD,
    (Role.RESPONDER, State.INITIAL_PAYLOAD): State.ESTABLISHED,
}
"""(role, state) -> the next state once that step's bytes are in.  Any state may go to ``FAILED``."""


class PayloadCipher:
    """The negotiated payload method of an established stream (``ENCRYPT2`` both ways).

    ``encryptor``/``decryptor`` are ``None`` for plaintext; with RC4 they continue the handshake's
    keystreams (our key for sending, the peer's for receiving).
    """

    __slots__ = ("decryptor", "encryptor", "method")

    def __init__(self, method: CryptoMethod, encryptor: RC4, decryptor: RC4) -> None:
        self.method = method
        rc4 = method is CryptoMethod.RC4
        self.encryptor: RC4 | None = encryptor if rc4 else None
        self.decryptor: RC4 | None = decryptor if rc4 else None

    def encrypt(self, data: bytes | bytearray | memoryview) -> bytes:
        return self.encryptor.update(data) if self.encryptor is not None else bytes(data)

    def decrypt(self, data: bytes | bytearray | memoryview) -> bytes:
        return self.decryptor.update(data) if self.decryptor is not None else bytes(data)


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamEstablished:
    """The handshake is complete; from here on the stream carries the payload (BitTorrent)."""

    method: CryptoMethod
    """``crypto_select``: RC4 or plaintext for everything that follows."""
    info_hash: InfoHash
    """SKEY: the torrent the initiator asked for (the responder found it through its lookup)."""
    payload: bytes
    """The peer's first payload bytes, already decrypted: its IA (from an initiator) followed by
    whatever arrived after the handshake.  Feed them to the BitTorrent engine first."""


class FirstBytes(enum.Enum):
    PLAINTEXT = "plain BitTorrent handshake"
    ENCRYPTED = "MSE handshake"


def sniff(prefix: bytes | bytearray) -> FirstBytes | None:
    """Tell an incoming connection's kind from its first bytes (``None``: need more bytes).

    A plain connection starts with ``\\x13BitTorrent protocol`` (20 bytes); an MSE one with a random
    96-byte public key, which differs from that prefix at some byte (odds of a full match: 2**-160).
    """
    n = min(len(prefix), len(PLAINTEXT_PREFIX))
    if bytes(prefix[:n]) != PLAINTEXT_PREFIX[:n]:
        return FirstBytes.ENCRYPTED
    return FirstBytes.PLAINTEXT if n == len(PLAINTEXT_PREFIX) else None


def _pad(rng: random.Random, max_padding: int) -> bytes:
    return rng.randbytes(rng.randint(0, max_padding))


class MSEHandshake:
    """One side of an MSE handshake: bytes in, bytes out, one :class:`StreamEstablished` event.

    Build with :meth:`initiator` or :meth:`responder`.  The driver loop (aioquic vocabulary)::

        hs.receive_data(chunk)                  # never raises
        transport.write(hs.data_to_send())
        event = hs.next_event()                 # raises EncryptionError: drop the connection
        timer at hs.get_timer() -> hs.handle_timer(now), then next_event() again

    Once :class:`StreamEstablished` came out, :attr:`cipher` encrypts what we send and decrypts what
    we receive; the engine takes no more bytes.
    """

    def __init__(
        self,
        role: Role,
        *,
        now: float,
        rng: random.Random,
        config: MSEConfig | None = None,
        info_hash: InfoHash | None = None,
        info_hash_for_req2: Callable[[bytes], InfoHash | None] | None = None,
        initial_payload: bytes = b"",
    ) -> None:
        self.role = role
        self.config = config or MSEConfig()
        if not self.config.accepts_encrypted_connections:
            raise LocalProtocolError("encryption policy 'disable' allows no MSE handshake")
        if len(initial_payload) > 0xFFFF:
            raise LocalProtocolError(
                f"initial payload of {len(initial_payload)} bytes exceeds len(IA)'s 16 bits"
            )
        self.state = State.PUBLIC_KEY
        self.info_hash = info_hash
        self.cipher: PayloadCipher | None = None
        self._rng = rng
        self._lookup = info_hash_for_req2
        self._initial_payload = bytes(initial_payload)
        self._key = DHKeyPair(rng)
        self._secret = b""
        self._pattern = b""
        self._encryptor: RC4 | None = None
        self._decryptor: RC4 | None = None
        self._method = CryptoMethod.RC4
        self._pad_length = 0
        self._ia_length = 0
        self._scanned = 0
        """Bytes of the peer's stream dropped while searching for a sync pattern."""
        self._buf = bytearray()
        self._out = bytearray()
        self._event: StreamEstablished | None = None
        self._error: EncryptionError | None = None
        self._deadline = now + self.config.handshake_timeout
        if role is Role.INITIATOR:
            self._out += self._key.public_key + _pad(rng, self.config.max_padding)

    @classmethod
    def initiator(
        cls,
        *,
        info_hash: InfoHash,
        now: float,
        rng: random.Random,
        config: MSEConfig | None = None,
        initial_payload: bytes = b"",
    ) -> MSEHandshake:
        """A, dialing out for ``info_hash``; step 1 is queued at once.  ``initial_payload`` goes in
        IA (at most :data:`MAX_IA_LIBTORRENT` bytes if the peer may be libtorrent)."""
        return cls(
            Role.INITIATOR,
            now=now,
            rng=rng,
            config=config,
            info_hash=info_hash,
            initial_payload=initial_payload,
        )

    @classmethod
    def responder(
        cls,
        *,
        info_hash_for_req2: Callable[[bytes], InfoHash | None],
        now: float,
        rng: random.Random,
        config: MSEConfig | None = None,
        initial_payload: bytes = b"",
    ) -> MSEHandshake:
        """B, on an accepted connection.  ``info_hash_for_req2(HASH('req2', SKEY))`` names the torrent
        (or ``None``: unknown, the handshake fails); see :class:`~torrentgoat.mse.crypto.StreamKeys`.
        ``initial_payload`` is sent (ENCRYPT2) right after step 4."""
        return cls(
            Role.RESPONDER,
            now=now,
            rng=rng,
            config=config,
            info_hash_for_req2=info_hash_for_req2,
            initial_payload=initial_payload,
        )

    # --- the driver's interface ----------------------------------------------------------------

    @property
    def established(self) -> bool:
        return self.state is State.ESTABLISHED

    @property
    def buffered(self) -> int:
        """Handshake bytes received and not consumed yet (bounded by the current step's need)."""
        return len(self._buf)

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Take bytes from the peer and run every step they complete.  Errors surface in next_event."""
        if self.state is State.FAILED or not data:
            return
        if self.state is State.ESTABLISHED:
            raise LocalProtocolError("the MSE handshake is over: decrypt with .cipher")
        self._buf += data
        try:
            while not self.established and self._step():
                pass
        except EncryptionError as exc:
            self._fail(exc)

    def next_event(self) -> StreamEstablished | None:
        """The :class:`StreamEstablished` event once (then ``None``); raises the handshake's error."""
        if self._error is not None:
            raise self._error
        event, self._event = self._event, None
        return event

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def get_timer(self) -> float | None:
        """The handshake's deadline while it runs, else ``None``."""
        if self.state in (State.ESTABLISHED, State.FAILED):
            return None
        return self._deadline

    def handle_timer(self, now: float) -> None:
        if self.get_timer() is not None and now >= self._deadline:
            self._fail(
                EncryptionError(
                    f"MSE handshake not complete within {self.config.handshake_timeout:g} s "
                    f"(still {self.state.value})"
                )
            )

    # --- steps -----------------------------------------------------------------------------------

    def _advance(self) -> None:
        self.state = TRANSITIONS[(self.role, self.state)]

    def _fail(self, exc: EncryptionError) -> None:
        self.state = State.FAILED
        self._error = exc
        self._buf = bytearray()
        self._out.clear()

    def _take(self, n: int) -> bytes:
        chunk = bytes(self._buf[:n])
        del self._buf[:n]
        return chunk

    def _step(self) -> bool:
        """Run the current step if its bytes are in; ``False`` when it needs more."""
        state = self.state
        buf = self._buf
        if state is State.PUBLIC_KEY:
            if len(buf) < DH_KEY_LENGTH:
                return False
            self._secret = self._key.shared_secret(self._take(DH_KEY_LENGTH))
            if self.role is Role.INITIATOR:
                self._send_step3()
            else:
                self._out += self._key.public_key + _pad(self._rng, self.config.max_padding)
                self._pattern = req1_hash(self._secret)
        elif state is State.SYNC_VC or state is State.SYNC_REQ1:
            return self._sync()
        elif state is State.CRYPTO_SELECT:
            if len(buf) < _SELECT.size:
                return False
            assert self._decryptor is not None
            select, self._pad_length = _SELECT.unpack(self._decryptor.update(self._take(_SELECT.size)))
            if select not in (CryptoMethod.PLAINTEXT, CryptoMethod.RC4) or not select & self.config.methods:
                raise EncryptionError(
                    f"peer selected crypto method {select:#x}; we offered {int(self.config.methods):#x}"
                )
            if self._pad_length > _PAD_LIMIT:
                raise EncryptionError(f"len(PadD) {self._pad_length} exceeds {_PAD_LIMIT}")
            self._method = CryptoMethod(select)
        elif state is State.PAD_D:
            if len(buf) < self._pad_length:
                return False
            assert self._decryptor is not None
            self._decryptor.update(self._take(self._pad_length))
            self._establish(b"")
            return True
        elif state is State.STREAM_KEY:
            if len(buf) < 20:
                return False
            self._find_torrent(self._take(20))
        elif state is State.CRYPTO_PROVIDE:
            if len(buf) < _PROVIDE.size:
                return False
            assert self._decryptor is not None
            vc, provide, self._pad_length = _PROVIDE.unpack(self._decryptor.update(self._take(_PROVIDE.size)))
            if vc != VC:
                raise EncryptionError("wrong MSE verification constant")
            if self._pad_length > _PAD_LIMIT:
                raise EncryptionError(f"len(PadC) {self._pad_length} exceeds {_PAD_LIMIT}")
            self._select(provide)
        elif state is State.PAD_C:
            if len(buf) < self._pad_length + 2:
                return False
            assert self._decryptor is not None
            (self._ia_length,) = _U16.unpack(self._decryptor.update(self._take(self._pad_length + 2))[-2:])
            if self._ia_length > self.config.max_initial_payload:
                raise EncryptionError(f"len(IA) {self._ia_length} exceeds {self.config.max_initial_payload}")
        elif state is State.INITIAL_PAYLOAD:
            if len(buf) < self._ia_length:
                return False
            assert self._decryptor is not None
            ia = self._decryptor.update(self._take(self._ia_length))  # IA is always RC4 (ENCRYPT)
            self._establish(ia)
            return True
        else:  # pragma: no cover - ESTABLISHED/FAILED never step
            raise LocalProtocolError(f"MSE handshake cannot step in state {state}")
        self._advance()
        return True

    def _sync(self) -> bool:
        """Drop padding until the sync pattern; fail once it cannot start within the spec's bounds."""
        pattern = self._pattern
        limit = (
            INITIATOR_SYNC_LIMIT if self.role is Role.INITIATOR else RESPONDER_SYNC_LIMIT
        ) - DH_KEY_LENGTH
        found = self._buf.find(pattern, 0, max(0, limit - self._scanned))
        if found < 0:
            # keep only a tail that could still be the start of the pattern
            drop = max(0, len(self._buf) - (len(pattern) - 1))
            if self._scanned + drop + len(pattern) > limit:
                what = "ENCRYPT(VC)" if self.role is Role.INITIATOR else "HASH('req1', S)"
                raise EncryptionError(f"no MSE sync pattern {what} within {limit + DH_KEY_LENGTH} bytes")
            del self._buf[:drop]
            self._scanned += drop
            return False
        del self._buf[: found + len(pattern)]
        self._advance()
        return True

    def _send_step3(self) -> None:
        assert self.info_hash is not None
        secret, skey = self._secret, self.info_hash.raw
        key_a, key_b = payload_keys(secret, skey)
        self._encryptor = RC4(key_a, discard=RC4_DISCARD)
        self._decryptor = RC4(key_b, discard=RC4_DISCARD)
        self._pattern = self._decryptor.update(VC)  # what B's ENCRYPT(VC) looks like on the wire
        obfuscated = bytes(a ^ b for a, b in zip(req2_hash(skey), req3_hash(secret), strict=True))
        pad_c = _pad(self._rng, self.config.max_padding)
        ia = self._initial_payload
        plain = b"".join(
            (_PROVIDE.pack(VC, int(self.config.methods), len(pad_c)), pad_c, _U16.pack(len(ia)), ia)
        )
        self._out += req1_hash(secret) + obfuscated + self._encryptor.update(plain)

    def _find_torrent(self, masked: bytes) -> None:
        req2 = bytes(a ^ b for a, b in zip(masked, req3_hash(self._secret), strict=True))
        assert self._lookup is not None
        info_hash = self._lookup(req2)
        if info_hash is None:
            raise EncryptionError("MSE stream key names no torrent of ours")
        self.info_hash = info_hash
        key_a, key_b = payload_keys(self._secret, info_hash.raw)
        self._decryptor = RC4(key_a, discard=RC4_DISCARD)
        self._encryptor = RC4(key_b, discard=RC4_DISCARD)

    def _select(self, provide: int) -> None:
        """B's choice (step 4): RC4 or plaintext among what both sides allow."""
        common = CryptoMethod(provide & int(self.config.methods))
        if not common:
            raise EncryptionError(
                f"no common MSE crypto method (peer offers {provide:#x}, we allow {int(self.config.methods):#x})"
            )
        if CryptoMethod.RC4 in common and (self.config.prefer_rc4 or CryptoMethod.PLAINTEXT not in common):
            self._method = CryptoMethod.RC4
        else:
            self._method = CryptoMethod.PLAINTEXT
        assert self._encryptor is not None
        pad_d = _pad(self._rng, self.config.max_padding)
        self._out += self._encryptor.update(VC + _SELECT.pack(int(self._method), len(pad_d)) + pad_d)

    def _establish(self, initial: bytes) -> None:
        """Switch to ENCRYPT2 and hand out the peer's first payload bytes."""
        assert self._encryptor is not None and self._decryptor is not None and self.info_hash is not None
        self.cipher = PayloadCipher(self._method, self._encryptor, self._decryptor)
        rest = self.cipher.decrypt(self._buf) if self._buf else b""
        self._buf = bytearray()
        if self.role is Role.RESPONDER and self._initial_payload:
            self._out += self.cipher.encrypt(self._initial_payload)
        self._advance()
        self._event = StreamEstablished(method=self._method, info_hash=self.info_hash, payload=initial + rest)
        self._secret = b""
