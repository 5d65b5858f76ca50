"""Tunables of a peer wire connection and the ids we announce (level L2).

BEP 3 (request sizes, keep-alives), BEP 6 (Fast extension), BEP 10 (extension protocol: ``m``,
``reqq``, ``v``), BEP 9 (``ut_metadata``), BEP 11 (``ut_pex``), BEP 54 (``lt_donthave``), BEP 55
(``ut_holepunch``), BEP 5 (DHT port).
"""

from __future__ import annotations

from dataclasses import dataclass

from torrentgoat.wire import codec

__all__ = [
    "CLIENT_VERSION",
    "LT_DONTHAVE_ID",
    "OUR_EXTENSION_IDS",
    "UT_HOLEPUNCH_ID",
    "UT_METADATA_ID",
    "UT_PEX_ID",
    "WireConfig",
    "misannounced_extension",
]

CLIENT_VERSION = "torrentgoat/0.1.0"
UT_METADATA_ID = 1
"""The id we ask peers to use for ``ut_metadata`` messages to us (our ``m`` dictionary, BEP 10)."""
UT_PEX_ID = 2
"""The id we ask peers to use for ``ut_pex`` messages to us."""
LT_DONTHAVE_ID = 7
"""The id we ask peers to use for ``lt_donthave`` messages to us (BEP 54; libtorrent uses 7 too)."""
UT_HOLEPUNCH_ID = 4
"""The id we ask peers to use for ``ut_holepunch`` messages to us (BEP 55; libtorrent uses 4 too)."""

OUR_EXTENSION_IDS: dict[str, int] = {
    "ut_metadata": UT_METADATA_ID,
    "ut_pex": UT_PEX_ID,
    "lt_donthave": LT_DONTHAVE_ID,
    "ut_holepunch": UT_HOLEPUNCH_ID,
}
"""What we decode each incoming extension id as: the only ``m`` entries we may announce."""
_OUR_NAMES: dict[int, str] = {ext_id: name for name, ext_id in OUR_EXTENSION_IDS.items()}


def misannounced_extension(m: dict[str, int]) -> str | None:
    """Why an ``m`` dictionary we are about to send would make peers send us messages we would
    misread (BEP 10: ``m`` names the ids *we* receive each extension under), or ``None``: a known
    extension under another id than ours, or any name under one of our ids."""
    for name, ext_id in m.items():
        if not ext_id:
            continue  # id 0 disables
        ours = OUR_EXTENSION_IDS.get(name)
        if ours is not None and ours != ext_id:
            return f"extension handshake announces {name} as id {ext_id}; we receive it as id {ours}"
        if ours is None and ext_id in _OUR_NAMES:
            return f"extension handshake announces {name} as id {ext_id}, our id for {_OUR_NAMES[ext_id]}"
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class WireConfig:
    """Tunables of a peer connection; defaults suit a fast LAN/WAN client."""

    enable_extensions: bool = True
    """Advertise BEP 10 (reserved[5] & 0x10)."""
    enable_fast: bool = True
    """Advertise BEP 6 (reserved[7] & 0x04)."""
    enable_dht: bool = False
    """Advertise a DHT node (BEP 5, reserved[7] & 0x01); the driver then sends ``Port``."""
    ut_metadata: bool = True
    """Offer BEP 9 in our extension handshake."""
    ut_pex: bool = True
    """Offer BEP 11; turn off for private torrents (BEP 27)."""
    lt_donthave: bool = True
    """Offer BEP 54: take the peer's ``lt_donthave`` into its have-set (and we may send ours)."""
    bep52: bool | None = False
    """The torrent is v2 or hybrid (BEP 52): ``hash request`` / ``hashes`` / ``hash reject`` become
    events and may be sent, and our handshake sets the v2 reserved bit (``reserved[7] & 0x10``).
    ``False`` (a v1 torrent): a peer sending them breaks the protocol.  ``None`` (a v1 magnet whose
    metadata is not known yet, maybe a hybrid): they are ignored."""
    ut_holepunch: bool = True
    """Offer BEP 55 (relay, initiator and target of hole punching; it needs uTP to be of use)."""
    client_version: str = CLIENT_VERSION
    """``v`` of our extension handshake."""
    max_peer_requests: int = 500
    """Our ``reqq``: how many of the peer's requests we queue; more is a protocol error (or a reject
    with BEP 6)."""
    default_peer_reqq: int = 250
    """Outstanding requests we allow ourselves when the peer advertises no ``reqq``."""
    max_outgoing_requests: int = 2000
    """Hard cap on our outstanding requests to one peer, whatever its ``reqq``."""
    max_extended_length: int = 1 << 20
    """Largest BEP 10 message payload accepted."""
    max_bitfield_length: int = 1 << 20
    """Largest bitfield accepted while the piece count is unknown (8 Mi pieces)."""
    max_unknown_length: int = 1 << 17
    """Largest payload of a message with an unknown id (such messages are skipped)."""
    max_metadata_size: int = codec.MAX_METADATA_SIZE
    """Largest ``ut_metadata`` total_size accepted (BEP 9)."""
    max_allowed_fast: int = 256
    """Allowed-fast pieces remembered from the peer (BEP 6 suggests k = 10)."""
    max_buffered_haves: int = 1 << 16
    """``have`` messages buffered while the piece count is unknown."""
    max_late_requests: int = 4096
    """Cancelled/choke-dropped requests remembered so late blocks can still be used."""
    keepalive_interval: float = 60.0
    """Tick of the timer: a keep-alive goes out when nothing was sent for a whole tick (BEP 3:
    peers time out after ~2 minutes)."""
    idle_timeout: float = 180.0
    """Close when nothing arrived for this long (rounded up to whole ticks)."""
    handshake_timeout: float = 30.0
    """Close when the peer's handshake did not arrive (or the driver did not accept) in time."""

    def request_limit(self, reqq: int | None) -> int:
        """Requests we keep outstanding at a peer whose BEP 10 handshake said ``reqq`` (None: it did
        not say), capped by :attr:`max_outgoing_requests`."""
        return min(reqq or self.default_peer_reqq, self.max_outgoing_requests)
