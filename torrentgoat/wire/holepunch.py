"""BEP 55 holepunch extension (``ut_holepunch``): the codec and the pure rules (level L2).

A peer behind a NAT or a firewall accepts no incoming connection; two such peers can still meet
through a third one connected to both, the *relay*:

1. the initiator sends ``rendezvous(target)`` to the relay;
2. the relay sends ``connect(target)`` to the initiator and ``connect(initiator)`` to the target --
   or ``error(target, code)`` to the initiator when it cannot (codes 1..4, :class:`HolepunchErrorCode`);
3. on ``connect`` both sides dial each other over uTP (BEP 29) at once, from their listen socket: each
   one's outgoing SYN opens its own NAT for the other's, so at least one of the two SYNs gets through
   (both may: the duplicate-connection rule keeps one).

Payload (BEP 55): ``msg_type`` (1 byte), ``addr_type`` (1 byte, 0 IPv4 / 1 IPv6), the compact
endpoint (4 or 16 address bytes, then a 2-byte port) and ``err_code`` (4 bytes, big-endian, 0 except
in errors).  libtorrent omits ``err_code`` in ``rendezvous`` and ``connect``: both lengths are read.

The rules here are sans-IO, like the rest of the package:

* :func:`relay` -- the relay's answer to a ``rendezvous``, over a view of its connections
  (:class:`HolepunchPeer`), in the order of the checks: an invalid endpoint is ``NoSuchPeer``, the
  relay's own endpoint or the initiator's is ``NoSelf``, an endpoint none of its connections has is
  ``NotConnected``, a peer that did not offer ``ut_holepunch`` is ``NoSupport``;
* :class:`HolepunchState` -- the initiator's and target's memory: which connected peer told us (BEP 11
  PEX, flag 0x08) about a peer that can be hole-punched, so that a failed dial to it becomes one
  ``rendezvous`` through that peer (libtorrent does the same); and how many ``connect`` orders each
  relay may give us a minute (a peer must not turn us into a dialling cannon).
"""

from __future__ import annotations

import ipaddress
import struct
from collections import OrderedDict, deque
from collections.abc import Collection, Hashable, Iterable
from dataclasses import dataclass

from torrentgoat.errors import RemoteProtocolError
from torrentgoat.primitives import PeerAddress, dialable_host
from torrentgoat.wire.messages import Buffer, Holepunch, HolepunchErrorCode, HolepunchType

__all__ = [
    "PEX_HOLEPUNCH",
    "PEX_UTP",
    "HolepunchPeer",
    "HolepunchState",
    "decode_holepunch",
    "encode_holepunch",
    "error_name",
    "relay",
]

PEX_UTP = 0x04
"""BEP 11 ``added.f``: the peer speaks uTP."""
PEX_HOLEPUNCH = 0x08
"""BEP 11 ``added.f``: the peer supports ``ut_holepunch`` (BEP 55)."""

_HEAD = struct.Struct(">BB")
_PORT = struct.Struct(">H")
_CODE = struct.Struct(">I")


def encode_holepunch(message: Holepunch) -> bytes:
    """The ``ut_holepunch`` payload of ``message`` (``err_code`` always written, as BEP 55 says)."""
    ip = ipaddress.ip_address(message.address.host)
    addr_type = 1 if ip.version == 6 else 0
    error = message.error if message.msg_type is HolepunchType.ERROR else 0
    return (
        _HEAD.pack(int(message.msg_type), addr_type)
        + ip.packed
        + _PORT.pack(message.address.port)
        + _CODE.pack(error)
    )


def decode_holepunch(payload: Buffer) -> Holepunch:
    """Decode a ``ut_holepunch`` payload; :class:`RemoteProtocolError` for an unknown ``msg_type`` or
    ``addr_type``, a wrong length, port 0 (no :class:`PeerAddress` holds it, so no error can echo it),
    or an ``error`` without its code."""
    data = bytes(payload)
    if len(data) < 2:
        raise RemoteProtocolError(f"ut_holepunch message of {len(data)} bytes")
    msg_type, addr_type = _HEAD.unpack_from(data)
    try:
        kind = HolepunchType(msg_type)
    except ValueError:
        raise RemoteProtocolError(f"ut_holepunch message type {msg_type} is unknown") from None
    if addr_type not in (0, 1):
        raise RemoteProtocolError(f"ut_holepunch address type {addr_type} is unknown")
    size = 16 if addr_type else 4
    end = 2 + size + 2
    if len(data) not in (end, end + 4) or (kind is HolepunchType.ERROR and len(data) != end + 4):
        raise RemoteProtocolError(f"ut_holepunch {kind.name.lower()} message of {len(data)} bytes")
    raw = data[2 : 2 + size]
    host = str(ipaddress.IPv6Address(raw) if addr_type else ipaddress.IPv4Address(raw))
    port = _PORT.unpack_from(data, 2 + size)[0]
    if port == 0:
        raise RemoteProtocolError("ut_holepunch endpoint with port 0")
    error = _CODE.unpack_from(data, end)[0] if kind is HolepunchType.ERROR else 0
    code: int = HolepunchErrorCode(error) if error in HolepunchErrorCode._value2member_map_ else error
    return Holepunch(msg_type=kind, address=PeerAddress(host, port), error=code)


def error_name(code: int) -> str:
    """``NoSuchPeer``, ``NotConnected``, ``NoSupport``, ``NoSelf`` (BEP 55's names), or the number."""
    names = {1: "NoSuchPeer", 2: "NotConnected", 3: "NoSupport", 4: "NoSelf"}
    return names.get(code, f"error {code}")


# --------------------------------------------------------------------------------------- the relay


@dataclass(frozen=True, slots=True, kw_only=True)
class HolepunchPeer:
    """What :func:`relay` sees of one connection of the relay."""

    key: Hashable
    endpoints: frozenset[PeerAddress]
    """Every address the peer is known by: the connection's remote end, its listen address."""
    reach: PeerAddress | None
    """The endpoint to give the other side in ``connect``: where a uTP SYN reaches the peer (the
    remote end of a uTP connection -- its NAT's mapping of its listen socket -- else its listen
    address); None when unknown."""
    supports: bool
    """It offered ``ut_holepunch`` in its extension handshake (BEP 10)."""


def _valid(address: PeerAddress) -> bool:
    try:
        ipaddress.ip_address(address.host)
    except ValueError:
        return False
    return dialable_host(address.host)


def relay(
    requester: HolepunchPeer,
    target: PeerAddress,
    peers: Iterable[HolepunchPeer],
    *,
    ours: Collection[PeerAddress] = (),
) -> list[tuple[Hashable, Holepunch]]:
    """The relay's answer to ``rendezvous(target)`` from ``requester`` (BEP 55): the messages to send,
    as ``(peer key, message)`` -- two ``connect`` on success, else one ``error`` to the requester
    whose address is the requested one (BEP 55: "MUST be the same as in the rendezvous message").

    ``ours`` are the relay's own endpoints (``NoSelf``).  A requester that did not offer
    ``ut_holepunch`` gets nothing (BEP 55: such messages are ignored silently)."""
    if not requester.supports:
        return []

    def error(code: HolepunchErrorCode) -> list[tuple[Hashable, Holepunch]]:
        return [(requester.key, Holepunch(msg_type=HolepunchType.ERROR, address=target, error=code))]

    if not _valid(target):
        return error(HolepunchErrorCode.NO_SUCH_PEER)
    if target in ours or target in requester.endpoints:
        return error(HolepunchErrorCode.NO_SELF)
    found = next((p for p in peers if target in p.endpoints and p.key != requester.key), None)
    if found is None:
        return error(HolepunchErrorCode.NOT_CONNECTED)
    if not found.supports:
        return error(HolepunchErrorCode.NO_SUPPORT)
    if found.reach is None or requester.reach is None:
        return error(HolepunchErrorCode.NOT_CONNECTED)
    if ipaddress.ip_address(found.reach.host).version != ipaddress.ip_address(requester.reach.host).version:
        return error(HolepunchErrorCode.NO_SUCH_PEER)  # an IPv4 peer cannot dial an IPv6 one
    return [
        (requester.key, Holepunch(msg_type=HolepunchType.CONNECT, address=found.reach)),
        (found.key, Holepunch(msg_type=HolepunchType.CONNECT, address=requester.reach)),
    ]


# ----------------------------------------------------------------------------- initiator and target


@dataclass(slots=True)
class _Introduction:
    via: Hashable
    tried_at: float | None = None


class HolepunchState:
    """The initiator's and the target's memory (pure: the caller passes ``now``).

    * :meth:`introduced` records, from a PEX message, which connected peer told us about a peer
      flagged 0x08 (it supports ``ut_holepunch``, so it may sit behind a NAT and be reachable through
      a rendezvous); at most ``max_introductions`` addresses, the oldest forgotten first.
    * :meth:`relay_for` is asked when a dial to an address failed: the peer to send ``rendezvous`` to,
      at most once per ``retry_after`` seconds per address.
    * :meth:`connect_allowed` lets each relay give at most ``max_connects`` ``connect`` orders per
      ``window`` seconds, and :meth:`relay_allowed` each initiator ask us for as many rendezvous (a
      peer must not make us flood the others with ``connect`` orders).
    """

    __slots__ = (
        "_connects",
        "_introductions",
        "_relays",
        "max_connects",
        "max_introductions",
        "retry_after",
        "window",
    )

    def __init__(
        self,
        *,
        max_introductions: int = 1000,
        retry_after: float = 60.0,
        max_connects: int = 10,
        window: float = 60.0,
    ) -> None:
        self.max_introductions = max_introductions
        self.retry_after = retry_after
        self.max_connects = max_connects
        self.window = window
        self._introductions: OrderedDict[PeerAddress, _Introduction] = OrderedDict()
        self._connects: dict[Hashable, deque[float]] = {}
        self._relays: dict[Hashable, deque[float]] = {}

    def introduced(self, address: PeerAddress, flags: int, via: Hashable) -> None:
        """``via`` (a connected peer that offered ``ut_holepunch``) listed ``address`` with ``flags``."""
        if not flags & PEX_HOLEPUNCH:
            return
        entry = self._introductions.get(address)
        if entry is not None:
            entry.via = via
            self._introductions.move_to_end(address)
            return
        self._introductions[address] = _Introduction(via)
        while len(self._introductions) > self.max_introductions:
            self._introductions.popitem(last=False)

    def relay_for(self, address: PeerAddress, now: float) -> Hashable | None:
        """A dial to ``address`` failed: the key of the peer to ask for a rendezvous, or None (no
        introduction, or one was tried less than ``retry_after`` seconds ago)."""
        entry = self._introductions.get(address)
        if entry is None or (entry.tried_at is not None and now - entry.tried_at < self.retry_after):
            return None
        entry.tried_at = now
        return entry.via

    def introducer(self, address: PeerAddress) -> Hashable | None:
        """The connected peer that listed ``address`` with flag 0x08, if any."""
        entry = self._introductions.get(address)
        return entry.via if entry is not None else None

    def peer_left(self, key: Hashable) -> None:
        """Connection ``key`` closed: it introduces nobody any more."""
        for address in [a for a, e in self._introductions.items() if e.via == key]:
            del self._introductions[address]
        self._connects.pop(key, None)
        self._relays.pop(key, None)

    def connect_allowed(self, relay_key: Hashable, now: float) -> bool:
        """Whether a ``connect`` order from ``relay_key`` is obeyed now (counted when it is)."""
        return self._allow(self._connects, relay_key, now)

    def relay_allowed(self, initiator_key: Hashable, now: float) -> bool:
        """Whether a ``rendezvous`` from ``initiator_key`` is acted upon now (counted when it is)."""
        return self._allow(self._relays, initiator_key, now)

    def _allow(self, book: dict[Hashable, deque[float]], key: Hashable, now: float) -> bool:
        times = book.setdefault(key, deque())
        while times and now - times[0] >= self.window:
            times.popleft()
        if len(times) >= self.max_connects:
            return False
        times.append(now)
        return True

    def __len__(self) -> int:
        return len(self._introductions)
