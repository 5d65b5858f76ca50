"""Message Stream Encryption / Protocol Encryption (MSE/PE), sans-IO (level L2).

Modules: :mod:`.config` (:class:`EncryptionPolicy` ``prefer | require | disable``, :class:`CryptoMethod`,
:class:`MSEConfig`), :mod:`.crypto` (768-bit Diffie-Hellman, the SHA-1 derivations, RC4 from the
``cryptography`` package, :class:`StreamKeys`), :mod:`.handshake` (:class:`MSEHandshake`, the state
machine of both roles, and :func:`sniff` for incoming connections).  Nothing here touches a socket
or a clock; ``now`` and ``rng`` are passed in.  The asyncio glue is :mod:`torrentgoat.aio.mse`.

Driving an :class:`MSEHandshake`::

    hs = MSEHandshake.initiator(info_hash=ih, now=loop.time(), rng=random.SystemRandom(),
                                config=MSEConfig(policy=EncryptionPolicy.PREFER),
                                initial_payload=bittorrent_handshake_bytes)      # IA, <= 68 bytes
    # or, on an accepted connection whose first bytes sniff() calls ENCRYPTED:
    hs = MSEHandshake.responder(info_hash_for_req2=stream_keys, now=..., rng=...)

    transport.write(hs.data_to_send())
    on bytes:  hs.receive_data(chunk); transport.write(hs.data_to_send())
               event = hs.next_event()              # EncryptionError: drop the connection
               if event: payload stream starts: feed event.payload to the BitTorrent engine,
                         then hs.cipher.decrypt(...) every read, hs.cipher.encrypt(...) every write
    timer at hs.get_timer() -> hs.handle_timer(now), then next_event() again

``StreamKeys`` maps ``HASH('req2', info_hash)`` back to the info-hash for every torrent a listener
serves, so one listener answers MSE handshakes for all the torrents of a session.
"""

from __future__ import annotations

from torrentgoat.mse.config import MAX_PADDING, CryptoMethod, EncryptionPolicy, MSEConfig
from torrentgoat.mse.crypto import RC4, DHKeyPair, StreamKeys, payload_keys, req2_hash
from torrentgoat.mse.handshake import (
    INITIATOR_SYNC_LIMIT,
    MAX_IA_LIBTORRENT,
    PLAINTEXT_PREFIX,
    RESPONDER_SYNC_LIMIT,
    TRANSITIONS,
    FirstBytes,
    MSEHandshake,
    PayloadCipher,
    Role,
    State,
    StreamEstablished,
    sniff,
)

__all__ = [
    "INITIATOR_SYNC_LIMIT",
    "MAX_IA_LIBTORRENT",
    "MAX_PADDING",
    "PLAINTEXT_PREFIX",
    "RC4",
    "RESPONDER_SYNC_LIMIT",
    "TRANSITIONS",
    "CryptoMethod",
    "DHKeyPair",
    "EncryptionPolicy",
    "FirstBytes",
    "MSEConfig",
    "MSEHandshake",
    "PayloadCipher",
    "Role",
    "State",
    "StreamEstablished",
    "StreamKeys",
    "payload_keys",
    "req2_hash",
    "sniff",
]
