"""Write tokens (BEP 5 "get_peers" / "announce_peer"; reused by BEP 44 ``put``).

A token is a hash of the querying node's IP address and a secret that changes every five minutes;
tokens from the previous secret are still accepted, so a token is valid for 5 to 10 minutes
(BEP 5: "tokens up to ten minutes old are accepted").
"""

from __future__ import annotations

import hashlib
import hmac
import random

__all__ = ["TokenManager"]

TOKEN_SIZE = 8


class TokenManager:
    """Issues and checks tokens bound to an IP address; ``rng`` supplies the secrets."""

    def __init__(self, rng: random.Random, now: float, *, rotate_interval: float = 300.0) -> None:
        self._rng = rng
        self.rotate_interval = rotate_interval
        self._secret = rng.randbytes(16)
        self._previous = self._secret
        self.next_rotation = now + rotate_interval

    def rotate_if_due(self, now: float) -> None:
        while now >= self.next_rotation:
            self._previous = self._secret
            self._secret = self._rng.randbytes(16)
            self.next_rotation += self.rotate_interval

    @staticmethod
    def _make(secret: bytes, ip: str) -> bytes:
        return hashlib.sha1(secret + ip.encode()).digest()[:TOKEN_SIZE]

    def token_for(self, ip: str) -> bytes:
        return self._make(self._secret, ip)

    def check(self, token: bytes, ip: str) -> bool:
        """True if ``token`` was issued to ``ip`` under the current or the previous secret."""
        return hmac.compare_digest(token, self._make(self._secret, ip)) or hmac.compare_digest(
            token, self._make(self._previous, ip)
        )
