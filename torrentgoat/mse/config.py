"""Encryption policy and the tunables of the MSE handshake (level L2, pure data).

The policy names follow the issue and the usual client settings (libtorrent's ``enc_policy``):

* ``prefer`` -- accept plain and encrypted incoming connections; dial encrypted first and, when the
  peer drops the MSE handshake, dial again in plain text (libtorrent's and qBittorrent's default);
* ``require`` -- encrypted connections only, both ways, and only with RC4 payload encryption (an MSE
  stream that selects "plaintext" hides the handshake but not the payload);
* ``disable`` -- plain BitTorrent only; incoming MSE handshakes are refused.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from torrentgoat.errors import ConfigError

__all__ = [
    "MAX_PADDING",
    "CryptoMethod",
    "EncryptionPolicy",
    "MSEConfig",
]

MAX_PADDING = 512
"""MSE spec: PadA, PadB, PadC and PadD are each 0 to 512 bytes long."""


class EncryptionPolicy(enum.Enum):
    """Which connections a session makes and accepts (see the module docstring)."""

    PREFER = "prefer"
    REQUIRE = "require"
    DISABLE = "disable"

    @classmethod
    def parse(cls, text: str) -> EncryptionPolicy:
        """``prefer``, ``require`` or ``disable`` (the ``--encryption`` option)."""
        try:
            return cls(text.strip().lower())
        except ValueError:
            raise ConfigError(f"encryption policy must be prefer, require or disable, got {text!r}") from None


class CryptoMethod(enum.IntFlag):
    """The ``crypto_provide`` / ``crypto_select`` bits of the MSE handshake (32-bit big-endian field)."""

    PLAINTEXT = 0x01
    """The payload after the handshake travels unencrypted (only the handshake is obfuscated)."""
    RC4 = 0x02
    """The payload is RC4-encrypted (keys ``HASH('keyA'|'keyB', S, SKEY)``, first 1024 bytes dropped)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class MSEConfig:
    """Tunables of one MSE handshake; the defaults suit a public swarm."""

    policy: EncryptionPolicy = EncryptionPolicy.PREFER
    """Which connections to make and accept; ``require`` narrows :attr:`allowed` to RC4."""
    allowed: CryptoMethod = CryptoMethod.PLAINTEXT | CryptoMethod.RC4
    """Payload methods we offer (``crypto_provide``) and accept (``crypto_select``)."""
    prefer_rc4: bool = True
    """As the responder, select RC4 when the initiator offers both (else plaintext, which costs no CPU
    but leaves the payload readable on the wire)."""
    max_padding: int = MAX_PADDING
    """Largest random padding we send (PadA/PadB/PadC/PadD are uniform in ``0..max_padding``)."""
    max_initial_payload: int = 0xFFFF
    """Largest ``len(IA)`` accepted from an initiator (the field is 16 bits; libtorrent sends 68)."""
    handshake_timeout: float = 20.0
    """Seconds from the connection's start until the MSE handshake must be complete."""
    cipher_thread: bool = False
    """Run RC4 on worker threads instead of the event loop's thread (``cryptography`` releases the
    GIL inside OpenSSL): worth it where the loop's thread is the bottleneck and a core is spare."""

    def __post_init__(self) -> None:
        if not 0 <= self.max_padding <= MAX_PADDING:
            raise ConfigError(f"max_padding must be within 0..{MAX_PADDING}, got {self.max_padding}")
        if not 0 <= self.max_initial_payload <= 0xFFFF:
            raise ConfigError(f"max_initial_payload must be within 0..65535, got {self.max_initial_payload}")
        if self.handshake_timeout <= 0:
            raise ConfigError(f"handshake_timeout must be positive, got {self.handshake_timeout}")
        if not self.methods:
            raise ConfigError(
                f"no payload crypto method left to offer (allowed={self.allowed!r}, policy={self.policy.value})"
            )

    @property
    def methods(self) -> CryptoMethod:
        """The methods actually offered and accepted: :attr:`allowed`, narrowed to RC4 by ``require``."""
        allowed = self.allowed & (CryptoMethod.PLAINTEXT | CryptoMethod.RC4)
        if self.policy is EncryptionPolicy.REQUIRE:
            allowed &= CryptoMethod.RC4
        return CryptoMethod(allowed)

    @property
    def accepts_plaintext_connections(self) -> bool:
        """A plain BitTorrent handshake (no MSE at all) is acceptable: every policy but ``require``."""
        return self.policy is not EncryptionPolicy.REQUIRE

    @property
    def accepts_encrypted_connections(self) -> bool:
        """An MSE handshake is acceptable: every policy but ``disable``."""
        return self.policy is not EncryptionPolicy.DISABLE
