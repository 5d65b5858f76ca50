"""Magnet URIs, level L1: BEP 9 (``xt``, ``dn``, ``tr``, ``ws``, ``x.pe``), BEP 53 (``so``), BEP 46 (``xs``),
BEP 52 (``xt=urn:btmh:``).

A magnet names a torrent by its info-hash (``xt=urn:btih:`` with 40 hex or 32 base32 characters,
BEP 9), by its v2 info-hash (``xt=urn:btmh:1220`` + 64 hex digits: a SHA-256 multihash, BEP 52), by
both (a hybrid torrent), or, for a mutable torrent, by the ed25519 public key it is published under
(``xs=urn:btpk:<64 hex>`` and an optional ``s=<salt hex>``, BEP 46); at least one is needed.

* ``dn`` display name, ``tr`` trackers (every one, in order), ``ws`` web seeds (BEP 19),
  ``x.pe`` peer addresses ``host:port`` / ``[v6]:port`` with IP literals (BEP 9);
* ``so`` file selection ``0,2,4-6`` (BEP 53), kept as a sorted tuple of file indices;
* parameters may carry a numeric suffix (``tr.1``, ``xt.2``) as some generators emit; other
  parameters are ignored.

Read liberally where it is safe (what real magnets hold, issue 12): an ``xt`` of another kind
(``urn:ed2k:``, ``urn:tree:tiger:``, ``urn:sha1:``, a ``btmh`` of another hash function) next to a known
one is ignored; a malformed ``x.pe`` entry is dropped, not the magnet; repeated ``so`` are merged
(``so=2-4&so=1`` is files 1-4).  A malformed ``btih``/``btmh``, or two different ones, still refuse it:
those name what gets verified.

Values are percent-decoded with ``+`` read as a space (the query form encoding); :meth:`Magnet.to_uri`
percent-encodes every reserved character, so ``parse_magnet(m.to_uri()) == m``.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import quote, unquote_plus

from torrentgoat.errors import MagnetError
from torrentgoat.infohashes import InfoHashes, InfoHashV2
from torrentgoat.metainfo import MAX_FILES, Metainfo
from torrentgoat.primitives import InfoHash, PeerAddress

__all__ = [
    "MAX_MAGNET_LENGTH",
    "Magnet",
    "format_selection",
    "parse_magnet",
    "parse_selection",
]

MAX_MAGNET_LENGTH = 64 * 1024
"""Longest magnet URI accepted (real ones with dozens of trackers stay under 8 KiB)."""

MAX_SALT_LENGTH = 64
"""BEP 44: a salt is at most 64 bytes."""

_INDEXED = re.compile(r"^([a-z.]+?)\.\d+$")


@dataclass(frozen=True, slots=True, kw_only=True)
class Magnet:
    """What a magnet URI holds; build one with :func:`parse_magnet` or directly, emit with :meth:`to_uri`."""

    info_hash: InfoHash | None = None
    """BEP 9 ``xt=urn:btih:`` (SHA-1); ``None`` for a v2-only magnet or a BEP 46 key-only one."""
    display_name: str = ""
    """``dn``: a name to show until the metadata arrives (never trusted as a path)."""
    trackers: tuple[str, ...] = ()
    """``tr`` URLs in the order given."""
    web_seeds: tuple[str, ...] = ()
    """``ws`` URLs (BEP 19 web seeds)."""
    peers: tuple[PeerAddress, ...] = ()
    """``x.pe`` peers to contact directly."""
    select_only: tuple[int, ...] = ()
    """BEP 53 ``so``: sorted, distinct file indices to download; empty means every file."""
    public_key: bytes | None = None
    """BEP 46 ``xs=urn:btpk:``: the 32-byte ed25519 key the torrent's info-hash is published under."""
    salt: bytes = b""
    """BEP 46 ``s``: the salt of the BEP 44 mutable item."""
    info_hash_v2: InfoHashV2 | None = None
    """BEP 52 ``xt=urn:btmh:`` (SHA-256 of a v2 or hybrid torrent's ``info``)."""

    def __post_init__(self) -> None:
        if self.info_hash is None and self.info_hash_v2 is None and self.public_key is None:
            raise MagnetError(
                "a magnet needs an info-hash (xt=urn:btih: or xt=urn:btmh:) or a public key (xs=urn:btpk:)"
            )
        if self.public_key is not None and len(self.public_key) != 32:
            raise MagnetError(f"BEP 46 public key must be 32 bytes, got {len(self.public_key)}")
        if len(self.salt) > MAX_SALT_LENGTH:
            raise MagnetError(f"BEP 46 salt is {len(self.salt)} bytes, more than {MAX_SALT_LENGTH}")
        if list(self.select_only) != sorted(set(self.select_only)) or any(
            not 0 <= i < MAX_FILES for i in self.select_only
        ):
            raise MagnetError(f"select_only must be sorted distinct indices below {MAX_FILES}")

    @property
    def info_hashes(self) -> InfoHashes | None:
        """The v1 and v2 info-hashes named (``None`` for a key-only BEP 46 magnet)."""
        if self.info_hash is None and self.info_hash_v2 is None:
            return None
        return InfoHashes(v1=self.info_hash, v2=self.info_hash_v2)

    @property
    def v2_only(self) -> bool:
        """Names a torrent by its v2 info-hash alone (``xt=urn:btmh:`` without ``btih``)."""
        return self.info_hash is None and self.info_hash_v2 is not None

    def to_uri(self) -> str:
        """The magnet URI; parameters in the order xt (btih, btmh), dn, tr, ws, x.pe, so, xs, s."""
        params: list[str] = []
        if self.info_hash is not None:
            params.append(f"xt=urn:btih:{self.info_hash.hex}")
        if self.info_hash_v2 is not None:
            params.append(f"xt=urn:btmh:{self.info_hash_v2.multihash}")
        if self.display_name:
            params.append(f"dn={_quote(self.display_name)}")
        params.extend(f"tr={_quote(url)}" for url in self.trackers)
        params.extend(f"ws={_quote(url)}" for url in self.web_seeds)
        params.extend(f"x.pe={quote(str(peer), safe=':[]')}" for peer in self.peers)
        if self.select_only:
            params.append(f"so={format_selection(self.select_only)}")
        if self.public_key is not None:
            params.append(f"xs=urn:btpk:{self.public_key.hex()}")
            if self.salt:
                params.append(f"s={self.salt.hex()}")
        return "magnet:?" + "&".join(params)

    @classmethod
    def from_metainfo(cls, metainfo: Metainfo) -> Magnet:
        """The magnet of a torrent: its info-hash(es), name, trackers and web seeds."""
        hashes = metainfo.info_hashes
        return cls(
            info_hash=hashes.v1,
            info_hash_v2=hashes.v2,
            display_name=metainfo.info.name,
            trackers=metainfo.trackers,
            web_seeds=metainfo.web_seeds,
        )


def _quote(text: str) -> str:
    return quote(text, safe="")


def parse_selection(text: str) -> tuple[int, ...]:
    """BEP 53 ``so``: comma-separated indices and inclusive ranges (``0,2,4-6``) to sorted indices."""
    selected: set[int] = set()
    for part in text.split(","):
        first, dash, last = part.strip().partition("-")
        if not first.isdigit() or (dash and not last.isdigit()) or not first.isascii() or not last.isascii():
            raise MagnetError(f"so: {part!r} is not an index or a range like 4-6")
        low = int(first)
        high = int(last) if dash else low
        if low > high:
            raise MagnetError(f"so: range {part!r} runs backwards")
        if high >= MAX_FILES:
            raise MagnetError(f"so: index {high} is beyond the {MAX_FILES}-file cap")
        selected.update(range(low, high + 1))
    return tuple(sorted(selected))


def format_selection(indices: tuple[int, ...]) -> str:
    """Sorted indices back to the compact BEP 53 form, runs of three or more as ranges."""
    parts: list[str] = []
    i = 0
    while i < len(indices):
        j = i
        while j + 1 < len(indices) and indices[j + 1] == indices[j] + 1:
            j += 1
        if j - i >= 2:
            parts.append(f"{indices[i]}-{indices[j]}")
        else:
            parts.extend(str(indices[k]) for k in range(i, j + 1))
        i = j + 1
    return ",".join(parts)


def _peer(text: str) -> PeerAddress:
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
    else:
        host, sep, port = text.rpartition(":")
    if not sep or not port.isascii() or not port.isdigit() or len(port) > 5:
        raise MagnetError(f"x.pe: {text!r} is not HOST:PORT or [IPV6]:PORT")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise MagnetError(f"x.pe: {host!r} is not an IP address") from None
    if (address.version == 6) != text.startswith("["):
        raise MagnetError(f"x.pe: {text!r}: IPv6 addresses need brackets, IPv4 none")
    number = int(port)
    if not 0 < number < 65536:
        raise MagnetError(f"x.pe: port {number} out of range")
    return PeerAddress(str(address), number)


def parse_magnet(uri: str) -> Magnet:
    """Parse a magnet URI (see the module docstring for what is read); bad input raises MagnetError."""
    if not isinstance(uri, str):
        raise MagnetError(f"a magnet URI must be text, got {type(uri).__name__}")
    uri = uri.strip()
    if len(uri) > MAX_MAGNET_LENGTH:
        raise MagnetError(f"magnet URI of {len(uri)} characters exceeds the {MAX_MAGNET_LENGTH} cap")
    if not uri.isascii():
        try:
            uri.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates: undecodable bytes from argv (surrogateescape)
            raise MagnetError("magnet URI is not valid UTF-8 text") from None
    if uri[:8].lower() != "magnet:?":
        raise MagnetError(f"not a magnet URI (must start with 'magnet:?'): {uri[:40]!r}")
    query = uri[8:].split("#", 1)[0]
    info_hash: InfoHash | None = None
    info_hash_v2: InfoHashV2 | None = None
    unknown_xt: list[str] = []
    name = ""
    trackers: list[str] = []
    web_seeds: list[str] = []
    peers: list[PeerAddress] = []
    select: set[int] = set()
    public_key: bytes | None = None
    salt = b""
    for item in query.split("&"):
        if not item:
            continue
        raw_key, eq, raw_value = item.partition("=")
        if not eq:
            raise MagnetError(f"magnet parameter {raw_key[:40]!r} has no '='")
        try:
            key = unquote_plus(raw_key, errors="strict").lower()
            value = unquote_plus(raw_value, errors="strict")
        except UnicodeDecodeError:
            raise MagnetError(f"magnet parameter {raw_key[:40]!r} is not UTF-8 when decoded") from None
        indexed = _INDEXED.match(key)
        if indexed and indexed.group(1) in ("xt", "tr", "ws", "dn", "xs"):
            key = indexed.group(1)
        if key == "xt":
            lowered = value.lower()
            if lowered.startswith("urn:btih:"):
                parsed = _info_hash(value[9:])
                if info_hash is not None and parsed != info_hash:
                    raise MagnetError("magnet names two different info-hashes (xt=urn:btih:)")
                info_hash = parsed
            elif lowered.startswith("urn:btmh:") and lowered[9:13] == "1220":
                parsed_v2 = InfoHashV2.from_multihash(value[9:].lower())
                if info_hash_v2 is not None and parsed_v2 != info_hash_v2:
                    raise MagnetError("magnet names two different v2 info-hashes (xt=urn:btmh:)")
                info_hash_v2 = parsed_v2
            else:
                unknown_xt.append(value[:60])  # urn:ed2k:, urn:tree:tiger:, another multihash...
        elif key == "dn":
            name = value
        elif key == "tr":
            if value and value not in trackers:
                trackers.append(value)
        elif key == "ws":
            if value and value not in web_seeds:
                web_seeds.append(value)
        elif key == "x.pe":
            try:
                peer = _peer(value)
            except MagnetError:
                continue  # one bad peer address does not spoil the magnet
            if peer not in peers:
                peers.append(peer)
        elif key == "so":
            select.update(parse_selection(value))
        elif key == "xs":
            if value.lower().startswith("urn:btpk:"):
                public_key = _hex(value[9:], "xs=urn:btpk: public key", 32)
        elif key == "s":
            salt = _hex(value, "s (salt)", None)
    if info_hash is None and info_hash_v2 is None and public_key is None:
        if unknown_xt:
            raise MagnetError(
                f"xt: unsupported URN {unknown_xt[0]!r} (expected urn:btih: or urn:btmh:1220...) and no other"
            )
        raise MagnetError("magnet has neither xt=urn:btih: / xt=urn:btmh: nor xs=urn:btpk:")
    return Magnet(
        info_hash=info_hash,
        info_hash_v2=info_hash_v2,
        display_name=name,
        trackers=tuple(trackers),
        web_seeds=tuple(web_seeds),
        peers=tuple(peers),
        select_only=tuple(sorted(select)),
        public_key=public_key,
        salt=salt if public_key is not None else b"",  # a salt names an item only under a key (BEP 46)
    )


def _info_hash(text: str) -> InfoHash:
    """40 hex digits or 32 base32 characters (BEP 9)."""
    if len(text) == 40 and not all(c in "0123456789abcdefABCDEF" for c in text):
        raise MagnetError(f"info-hash is not hex: {text!r}")
    return InfoHash.parse(text)


def _hex(text: str, what: str, size: int | None) -> bytes:
    try:
        data = bytes.fromhex(text)
    except ValueError:
        raise MagnetError(f"{what} is not hex: {text[:80]!r}") from None
    if not text.isascii() or any(c.isspace() for c in text):
        raise MagnetError(f"{what} is not hex: {text[:80]!r}")
    if size is not None and len(data) != size:
        raise MagnetError(f"{what} must be {size} bytes ({2 * size} hex digits), got {len(data)}")
    return data
