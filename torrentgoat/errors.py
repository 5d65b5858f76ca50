"""Every error torrentgoat raises on purpose (level L0).

Bad input of any kind -- torrent files, magnets, wire messages, KRPC packets, tracker replies,
manifests, HTTP responses -- surfaces as a subclass of :class:`TorrentGoatError` with a message that
names what was wrong.  Drivers catch these at their boundary: a :class:`RemoteProtocolError` drops
the one peer (or packet) at fault, never the session.

The protocol split follows h11: :class:`RemoteProtocolError` is the other side's fault,
:class:`LocalProtocolError` is ours (a bug, or the caller asked the engine for something the state
machine forbids).
"""

from __future__ import annotations

__all__ = [
    "BencodeError",
    "ConfigError",
    "DHTError",
    "DataChangedError",
    "DiskFullError",
    "EncryptionError",
    "EntryNotFoundError",
    "GatewayError",
    "HashesUnavailableError",
    "HybridMismatchError",
    "InvalidHashesError",
    "InvalidRequestError",
    "KRPCError",
    "ListenError",
    "LocalProtocolError",
    "MagnetError",
    "ManifestError",
    "MetainfoError",
    "NoPeerSourcesError",
    "ProtocolError",
    "RemoteProtocolError",
    "RepoNotFoundError",
    "RevisionNotFoundError",
    "SignatureError",
    "StorageError",
    "TorrentGoatError",
    "TrackerError",
    "UTPError",
    "UTPPacketError",
    "UnsafeModelError",
    "UnsafePathError",
    "UnsupportedV2Error",
    "UpstreamError",
    "VerificationError",
    "WebSeedError",
]


class TorrentGoatError(Exception):
    """Base of every error torrentgoat raises deliberately."""


class ConfigError(TorrentGoatError, ValueError):
    """A configuration value or command-line option is out of range or inconsistent."""


class BencodeError(TorrentGoatError, ValueError):
    """Bytes that are not strict bencoding (BEP 3), or a value that cannot be bencoded."""


class MetainfoError(TorrentGoatError, ValueError):
    """A .torrent file (or its ``info`` dictionary) breaks BEP 3 / BEP 12 / BEP 19 / BEP 27 / BEP 47."""


class UnsafePathError(MetainfoError):
    """A file path in a torrent or manifest could escape the download directory or collide."""


class MagnetError(TorrentGoatError, ValueError):
    """A magnet URI that BEP 9 / BEP 46 / BEP 53 cannot read."""


class NoPeerSourcesError(ConfigError):
    """A download has no way to find peers: no tracker, no DHT, no web seed, no peer address."""


class ManifestError(TorrentGoatError, ValueError):
    """A collection manifest that does not follow its schema."""


class SignatureError(TorrentGoatError):
    """An ed25519 signature (BEP 44 item or manifest) that does not verify."""


class ProtocolError(TorrentGoatError):
    """A protocol rule was broken; see the two subclasses for whose fault it was."""


class RemoteProtocolError(ProtocolError):
    """The remote side broke the protocol (malformed, oversized or forbidden message): drop it."""


class LocalProtocolError(ProtocolError):
    """We asked an engine to do something its state machine does not allow (a bug on our side)."""


class KRPCError(RemoteProtocolError):
    """A KRPC packet (BEP 5) that cannot be decoded or does not follow the message schema.

    ``code`` is the KRPC error code to answer with when the packet was a query (201 generic,
    202 server, 203 protocol, 204 method unknown).
    """

    def __init__(self, message: str, *, code: int = 203) -> None:
        super().__init__(message)
        self.code = code


class DHTError(TorrentGoatError):
    """A DHT operation failed as a whole (no nodes answered, item not found, put refused)."""


class TrackerError(TorrentGoatError):
    """A tracker reply that is malformed, or a ``failure reason`` the tracker sent (BEP 3 / BEP 15)."""


class WebSeedError(TorrentGoatError):
    """A web seed (BEP 19) answered with something other than the bytes asked for."""


class ListenError(TorrentGoatError):
    """We cannot accept peers on the address and port asked for (taken, or not an address of ours)."""


class StorageError(TorrentGoatError):
    """Reading or writing torrent data on disk failed, or a layout would leave the download directory."""


class DiskFullError(StorageError):
    """The download directory's file system has no room for the data (ENOSPC, or not enough free
    space to start); the message names the path and the space needed."""


class VerificationError(TorrentGoatError):
    """Data did not match its hash (SHA-1 piece hash, or a manifest's SHA-256)."""


class UnsafeModelError(TorrentGoatError):
    """A model file uses a format refused by policy (pickle-based weights) or has a corrupt header."""


class EncryptionError(RemoteProtocolError):
    """A Message Stream Encryption (MSE/PE) handshake that failed: bad public key, no sync pattern
    within the spec's bounds, wrong verification constant, unknown stream key, no common crypto
    method, oversized padding or initial payload, too much data, or no handshake before the deadline.
    The connection is dropped (under the ``prefer`` policy an outgoing one is retried in plain text).
    """


class GatewayError(TorrentGoatError):
    """A request to the Hugging Face gateway that cannot be answered as asked (the HTTP answer says why)."""


class RepoNotFoundError(GatewayError):
    """No source holds the repository (the Hub's ``X-Error-Code: RepoNotFound``)."""


class RevisionNotFoundError(GatewayError):
    """The repository is held, but not at that branch, tag or commit (``X-Error-Code: RevisionNotFound``)."""


class EntryNotFoundError(GatewayError):
    """The revision holds no such file or folder (``X-Error-Code: EntryNotFound``)."""


class InvalidRequestError(GatewayError):
    """A request path or parameter that is malformed or unsafe (``..``, backslashes, bad repo id): HTTP 400."""


class UpstreamError(GatewayError):
    """The upstream hub could not be reached or answered something unusable: HTTP 502."""


class UTPPacketError(RemoteProtocolError):
    """A datagram that is not a well-formed uTP packet (BEP 29): the packet is dropped."""


class UTPError(TorrentGoatError, ConnectionError):
    """A uTP connection failed: refused, reset by the peer, timed out, or the endpoint is closed."""


class HybridMismatchError(MetainfoError):
    """A hybrid torrent (BEP 52 "Upgrade Path") whose v1 and v2 halves do not describe the same files:
    a v1 and a v2 peer would verify different data, so it is refused (the message names the mismatch)."""


class UnsupportedV2Error(TorrentGoatError):
    """A BitTorrent v2 torrent (BEP 52) reached code that cannot handle it yet; the message starts with
    ``v2 torrent:`` and says what is missing."""


class InvalidHashesError(RemoteProtocolError):
    """A BEP 52 ``hashes`` message whose hashes or proof do not lead to the file's ``pieces root``, or
    that answers no request we made: the peer is at fault (drop it, like one sending bad data)."""


class HashesUnavailableError(TorrentGoatError):
    """No peer answered a BEP 52 hash request with hashes that prove against the file's ``pieces root``
    in time (each refused, sent bad proofs, or none was connected)."""


class DataChangedError(StorageError):
    """A file holding verified pieces changed on disk (removed, truncated, rewritten) since they were
    verified: its pieces are taken back and checked again (BEP 54 ``lt_donthave`` tells peers)."""


class SourceUnavailableError(GatewayError):
    """A source holds the repository but cannot answer yet (a torrent's metadata still on its way):
    HTTP 503 with ``Retry-After``, which clients retry."""


class ResumeDataError(StorageError):
    """Resume data that cannot be trusted: missing, truncated, corrupt (checksum), of another format
    version or of another torrent.  Never fatal: the torrent checks every piece instead."""
