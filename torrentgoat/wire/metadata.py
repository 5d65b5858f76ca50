"""BEP 9 metadata exchange (``ut_metadata``), pure helpers (level L2).

:class:`MetadataFetcher` downloads the ``info`` dictionary of a magnet link from peers that
announced ``metadata_size`` in their BEP 10 handshake: 16 KiB pieces, requests tracked per peer
(peers are opaque hashable keys chosen by the driver), assembly, and the BEP 9 check that the
SHA-1 of the assembled bytes equals the info-hash (BEP 52: the SHA-256 for a v2 magnet, both for a
hybrid one named by both).  On a mismatch everything restarts and the peers
that contributed are banned.  Memory is bounded by ``max_size`` whatever peers announce.

:class:`MetadataServer` answers other peers' requests from the raw ``info`` bytes, or rejects them
when we do not have the metadata yet (BEP 9: "reject").
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Hashable

from torrentgoat.errors import LocalProtocolError, RemoteProtocolError
from torrentgoat.infohashes import InfoHashV2
from torrentgoat.primitives import InfoHash
from torrentgoat.wire.codec import MAX_METADATA_SIZE, METADATA_PIECE_SIZE
from torrentgoat.wire.messages import MetadataData, MetadataReject

__all__ = ["MetadataFetcher", "MetadataServer", "metadata_piece_count"]


def _sha1(raw: bytes) -> bytes:
    return hashlib.sha1(raw).digest()


def metadata_piece_count(size: int) -> int:
    """Number of 16 KiB pieces of a ``size``-byte info dictionary (BEP 9)."""
    return (size + METADATA_PIECE_SIZE - 1) // METADATA_PIECE_SIZE


class MetadataFetcher:
    """Fetch one torrent's info dictionary from several peers (BEP 9).

    Driver protocol: ``add_peer(key, size)`` after a peer's extension handshake announced
    ``metadata_size`` and ``ut_metadata``; then ``next_request(key, now)`` gives piece numbers to
    request until it returns ``None``; feed ``on_data`` / ``on_reject`` with what arrives;
    ``remove_peer(key)`` on disconnect.  ``on_data`` returns the verified raw bytes once complete.
    ``expire(now)`` releases requests older than ``request_timeout`` for other peers.
    """

    def __init__(
        self,
        info_hash: InfoHash,
        *,
        info_hash_v2: InfoHashV2 | None = None,
        max_size: int = MAX_METADATA_SIZE,
        max_requests_per_peer: int = 4,
        request_timeout: float = 10.0,
        reject_backoff: float = 30.0,
    ) -> None:
        self.info_hash = info_hash
        self.info_hash_v2 = info_hash_v2
        """BEP 52: the SHA-256 the metadata must also hash to (a v2 or hybrid magnet's ``btmh``)."""
        self.max_size = max_size
        self.max_requests_per_peer = max_requests_per_peer
        self.request_timeout = request_timeout
        self.reject_backoff = reject_backoff
        self.failures = 0
        """How many times the assembled metadata failed the SHA-1 check."""
        self.banned: set[Hashable] = set()
        """Peers that contributed to metadata failing verification, or sent malformed pieces."""
        self.result: bytes | None = None
        self._peer_sizes: dict[Hashable, int] = {}
        self._rejected: dict[Hashable, float] = {}
        self._size: int | None = None
        self._pieces: dict[int, bytes] = {}
        self._sources: dict[int, Hashable] = {}
        self._requested: dict[int, tuple[Hashable, float]] = {}

    @property
    def size(self) -> int | None:
        """The metadata size being assembled (the one most peers announced), if any."""
        return self._size

    @property
    def complete(self) -> bool:
        return self.result is not None

    @property
    def progress(self) -> tuple[int, int]:
        """(pieces received, pieces needed); (0, 0) while no size is known."""
        return len(self._pieces), metadata_piece_count(self._size) if self._size else 0

    def add_peer(self, key: Hashable, metadata_size: int) -> bool:
        """Register a peer that can serve ``metadata_size`` bytes; False if the size is refused
        (<= 0 or above ``max_size``) or the peer is banned."""
        if key in self.banned or not 0 < metadata_size <= self.max_size:
            return False
        self._peer_sizes[key] = metadata_size
        if self._size is None:
            self._choose_size()
        return True

    def remove_peer(self, key: Hashable) -> None:
        self._peer_sizes.pop(key, None)
        self._rejected.pop(key, None)
        for piece in [p for p, (owner, _) in self._requested.items() if owner == key]:
            del self._requested[piece]

    def _choose_size(self) -> None:
        sizes = Counter(self._peer_sizes.values())
        self._size = sizes.most_common(1)[0][0] if sizes else None

    def wants(self, key: Hashable, now: float | None = None) -> bool:
        """Whether this peer is usable for the current fetch (at time ``now``: a peer that
        rejected a request is asked again ``reject_backoff`` seconds after that request)."""
        if self.result is not None or self._size is None or key in self.banned:
            return False
        rejected_at = self._rejected.get(key)
        if rejected_at is not None and (now is None or now - rejected_at < self.reject_backoff):
            return False
        return self._peer_sizes.get(key) == self._size

    def next_request(self, key: Hashable, now: float) -> int | None:
        """A piece to request from ``key`` now, or None (nothing to ask it)."""
        if not self.wants(key, now):
            return None
        assert self._size is not None
        live = sum(
            1 for owner, at in self._requested.values() if owner == key and now - at < self.request_timeout
        )
        if live >= self.max_requests_per_peer:
            return None  # requests that timed out no longer count against the peer
        for piece in range(metadata_piece_count(self._size)):
            if piece in self._pieces:
                continue
            holder = self._requested.get(piece)
            if holder is not None and now - holder[1] < self.request_timeout:
                continue
            self._requested[piece] = (key, now)
            return piece
        return None

    def expire(self, now: float) -> None:
        for piece in [p for p, (_, at) in self._requested.items() if now - at >= self.request_timeout]:
            del self._requested[piece]

    def on_reject(self, key: Hashable, piece: int) -> None:
        """The peer refused (BEP 9 reject): do not ask it for ``reject_backoff`` seconds (it may
        lack the metadata, or rate-limit requests)."""
        holder = self._requested.get(piece)
        at = holder[1] if holder is not None and holder[0] == key else None
        mine = [(p, t) for p, (owner, t) in self._requested.items() if owner == key]
        if at is None:
            at = max((t for _, t in mine), default=0.0)
        self._rejected[key] = at
        for p, _ in mine:
            del self._requested[p]

    def _matches(self, raw: bytes) -> bool:
        """BEP 9: the metadata hashes to the info-hash -- the SHA-1, or for a v2-only magnet (whose
        ``info_hash`` is the truncated SHA-256) the full SHA-256 (BEP 52); a hybrid magnet's to both."""
        v2 = self.info_hash_v2
        if v2 is not None and hashlib.sha256(raw).digest() != v2.raw:
            return False
        if v2 is not None and self.info_hash == v2.truncated:
            return True
        return _sha1(raw) == self.info_hash.raw

    def on_data(self, key: Hashable, piece: int, total_size: int, data: bytes) -> bytes | None:
        """Store a piece; return the verified info bytes when the last piece arrives.

        Raises :class:`RemoteProtocolError` (and bans ``key``) when ``total_size`` differs from the
        announced size or the piece has the wrong length.  Unrequested pieces are ignored.
        """
        if self.result is not None or self._size is None:
            return self.result
        holder = self._requested.get(piece)
        if holder is None or holder[0] != key:
            return None
        size = self._size
        count = metadata_piece_count(size)
        expected = METADATA_PIECE_SIZE if piece < count - 1 else size - piece * METADATA_PIECE_SIZE
        if total_size != size or len(data) != expected:
            self.banned.add(key)
            self.remove_peer(key)
            raise RemoteProtocolError(
                f"ut_metadata piece {piece}: total_size {total_size}, {len(data)} bytes "
                f"(expected total_size {size}, {expected} bytes)"
            )
        del self._requested[piece]
        self._pieces[piece] = bytes(data)
        self._sources[piece] = key
        if len(self._pieces) < count:
            return None
        raw = b"".join(self._pieces[i] for i in range(count))
        if self._matches(raw):
            self.result = raw
            self._pieces.clear()
            return raw
        # BEP 9: the metadata must hash to the info-hash; start over without the contributors.
        self.failures += 1
        for source in set(self._sources.values()):
            self.banned.add(source)
            self._peer_sizes.pop(source, None)
        self._pieces.clear()
        self._sources.clear()
        self._requested.clear()
        self._choose_size()
        return None


class MetadataServer:
    """Answer BEP 9 requests from the raw ``info`` bytes (or reject everything without them)."""

    def __init__(self, raw_info: bytes | None = None) -> None:
        self._raw = raw_info

    def set_metadata(self, raw_info: bytes) -> None:
        if not raw_info:
            raise LocalProtocolError("metadata must not be empty")
        self._raw = raw_info

    @property
    def metadata_size(self) -> int | None:
        return len(self._raw) if self._raw is not None else None

    def respond(self, piece: int) -> MetadataData | MetadataReject:
        raw = self._raw
        if raw is None or not 0 <= piece < metadata_piece_count(len(raw)):
            return MetadataReject(piece=piece)
        start = piece * METADATA_PIECE_SIZE
        return MetadataData(piece=piece, total_size=len(raw), data=raw[start : start + METADATA_PIECE_SIZE])
