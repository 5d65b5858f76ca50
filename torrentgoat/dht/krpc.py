"""KRPC codec (BEP 5 "KRPC Protocol"), with BEP 32 ``nodes6``, BEP 43 ``ro`` and BEP 44 ``get``/``put``.

One frozen dataclass per message: the queries :class:`Ping`, :class:`FindNode`, :class:`GetPeers`,
:class:`AnnouncePeer`, :class:`Get`, :class:`Put`; every reply is a :class:`Response` (BEP 5: a
response does not name its method, so it carries the union of the optional fields) or an
:class:`Error`.  :func:`decode` turns bytes into one of them or raises :class:`MalformedKRPC` (a
:class:`~torrentgoat.errors.KRPCError`) whose ``code`` is the KRPC error to answer with and whose ``t``
is the transaction id when one could be read (no id: the packet is dropped, never answered).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import TypeAlias

from torrentgoat import bencode
from torrentgoat.bencode import BValue
from torrentgoat.errors import BencodeError, KRPCError

__all__ = [
    "CLIENT_VERSION",
    "MAX_PACKET_SIZE",
    "Addr",
    "AnnouncePeer",
    "Error",
    "FindNode",
    "Get",
    "GetPeers",
    "MalformedKRPC",
    "Message",
    "NodeInfo",
    "Ping",
    "Put",
    "Query",
    "Response",
    "decode",
    "decode_nodes",
    "decode_peer",
    "encode",
    "encode_nodes",
    "encode_peer",
]

Addr: TypeAlias = tuple[str, int]
"""A UDP address as ``(host literal, port)``; IPv6 hosts have no brackets."""

CLIENT_VERSION = b"TG\x00\x01"
"""Our client version in the top-level ``v`` key (BEP 5: two letters plus two version bytes)."""

MAX_PACKET_SIZE = 2048
"""Largest datagram decoded: a BEP 44 ``put`` with a 1000-byte value fits in ~1200 bytes."""

_MAX_TID = 16
"""Longest transaction id echoed back (BEP 5 says 2 characters are enough)."""

_MAX_TOKEN = 64
_MAX_VALUES = 256
_MAX_DEPTH = 16


class MalformedKRPC(KRPCError):
    """A packet that breaks BEP 5's message schema; ``t`` is set when it can be answered."""

    def __init__(self, message: str, *, code: int = 203, t: bytes | None = None) -> None:
        super().__init__(message, code=code)
        self.t = t


@dataclass(frozen=True, slots=True, order=True)
class NodeInfo:
    """Compact node info (BEP 5: 20-byte id + compact address; BEP 32 for IPv6)."""

    id: bytes
    host: str
    port: int

    @property
    def addr(self) -> Addr:
        return (self.host, self.port)


@dataclass(frozen=True, slots=True, kw_only=True)
class Ping:
    """``ping`` (BEP 5)."""

    t: bytes
    id: bytes
    ro: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class FindNode:
    """``find_node`` (BEP 5); ``want`` lists ``n4``/``n6`` (BEP 32)."""

    t: bytes
    id: bytes
    target: bytes
    want: tuple[bytes, ...] = ()
    ro: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class GetPeers:
    """``get_peers`` (BEP 5)."""

    t: bytes
    id: bytes
    info_hash: bytes
    want: tuple[bytes, ...] = ()
    ro: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class AnnouncePeer:
    """``announce_peer`` (BEP 5); with ``implied_port`` the UDP source port is the peer port."""

    t: bytes
    id: bytes
    info_hash: bytes
    port: int
    token: bytes
    implied_port: bool = False
    ro: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Get:
    """``get`` (BEP 44): ``seq`` asks to omit the value if the stored seq is not newer."""

    t: bytes
    id: bytes
    target: bytes
    seq: int | None = None
    want: tuple[bytes, ...] = ()
    ro: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Put:
    """``put`` (BEP 44): immutable when ``k`` is None, else mutable (``sig``, ``seq``, ``salt``, ``cas``)."""

    t: bytes
    id: bytes
    token: bytes
    v: BValue
    k: bytes | None = None
    sig: bytes | None = None
    seq: int | None = None
    salt: bytes = b""
    cas: int | None = None
    ro: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Response:
    """Any ``y = r`` reply (BEP 5/32/44); absent fields are empty / None."""

    t: bytes
    id: bytes
    nodes: tuple[NodeInfo, ...] = ()
    nodes6: tuple[NodeInfo, ...] = ()
    values: tuple[Addr, ...] = ()
    token: bytes | None = None
    v: BValue | None = None
    k: bytes | None = None
    sig: bytes | None = None
    seq: int | None = None
    ip: Addr | None = None
    """BEP 42: the requester's address as the responder saw it (top-level ``ip``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Error:
    """``y = e`` (BEP 5): 201 generic, 202 server, 203 protocol, 204 method unknown; BEP 44 adds 205-302."""

    t: bytes
    code: int
    message: bytes


Query: TypeAlias = Ping | FindNode | GetPeers | AnnouncePeer | Get | Put
Message: TypeAlias = Query | Response | Error

# -- compact encodings (BEP 5 "Contact Encoding", BEP 32) ---------------------------------------------


def encode_peer(addr: Addr) -> bytes:
    """Compact peer info: 4-byte IPv4 (or 16-byte IPv6, BEP 32) + 2-byte big-endian port."""
    host, port = addr
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.inet_pton(family, host) + port.to_bytes(2, "big")
    except (OSError, OverflowError) as exc:
        raise MalformedKRPC(f"cannot encode address {addr!r}: {exc}") from None


def decode_peer(data: bytes) -> Addr:
    """Inverse of :func:`encode_peer` for 6- or 18-byte strings."""
    if len(data) == 6:
        return socket.inet_ntop(socket.AF_INET, data[:4]), int.from_bytes(data[4:], "big")
    if len(data) == 18:
        return socket.inet_ntop(socket.AF_INET6, data[:16]), int.from_bytes(data[16:], "big")
    raise MalformedKRPC(f"compact peer info must be 6 or 18 bytes, got {len(data)}")


def encode_nodes(nodes: tuple[NodeInfo, ...] | list[NodeInfo]) -> bytes:
    """Concatenated compact node infos (26 bytes each for IPv4, 38 for IPv6)."""
    return b"".join(n.id + encode_peer(n.addr) for n in nodes)


def decode_nodes(data: bytes, *, ipv6: bool) -> tuple[NodeInfo, ...]:
    """Split ``nodes`` (or ``nodes6``); a trailing partial entry is ignored, port 0 entries dropped."""
    size = 38 if ipv6 else 26
    result = []
    for start in range(0, len(data) - size + 1, size):
        host, port = decode_peer(data[start + 20 : start + size])
        if port:
            result.append(NodeInfo(data[start : start + 20], host, port))
    return tuple(result)


# -- encoding -----------------------------------------------------------------------------------------


def _bencode_into(value: object, out: list[bytes], depth: int = 0) -> None:
    """Canonical bencoding (BEP 3, keys sorted as raw bytes) of KRPC values, without validation
    overhead: the same bytes as :func:`torrentgoat.bencode.encode` for the values the engine builds."""
    if isinstance(value, bytes):
        out.append(b"%d:" % len(value))
        out.append(value)
    elif isinstance(value, bool):
        raise MalformedKRPC("cannot bencode a bool")
    elif isinstance(value, int):
        out.append(b"i%de" % value)
    elif isinstance(value, str):
        _bencode_into(value.encode(), out, depth)
    elif depth >= _MAX_DEPTH * 4:
        raise MalformedKRPC("value nested too deeply to bencode")
    elif isinstance(value, list | tuple):
        out.append(b"l")
        for item in value:
            _bencode_into(item, out, depth + 1)
        out.append(b"e")
    elif isinstance(value, dict):
        items = sorted((k.encode() if isinstance(k, str) else k, v) for k, v in value.items())
        out.append(b"d")
        for key, item in items:
            if not isinstance(key, bytes):
                raise MalformedKRPC(f"cannot bencode dictionary key {key!r}")
            out.append(b"%d:" % len(key))
            out.append(key)
            _bencode_into(item, out, depth + 1)
        out.append(b"e")
    else:
        raise MalformedKRPC(f"cannot bencode a value of type {type(value).__name__}")


def _bencode(value: object) -> bytes:
    out: list[bytes] = []
    _bencode_into(value, out)
    return b"".join(out)


def _query(t: bytes, method: bytes, args: dict[bytes, BValue], ro: bool) -> bytes:
    packet: dict[bytes, BValue] = {b"t": t, b"y": b"q", b"q": method, b"a": args, b"v": CLIENT_VERSION}
    if ro:
        packet[b"ro"] = 1
    return _bencode(packet)


def encode(message: Message) -> bytes:
    """Bencode one message (keys sorted, as BEP 3 requires)."""
    match message:
        case Ping(t=t, id=id_, ro=ro):
            return _query(t, b"ping", {b"id": id_}, ro)
        case FindNode(t=t, id=id_, target=target, want=want, ro=ro):
            args: dict[bytes, BValue] = {b"id": id_, b"target": target}
            if want:
                args[b"want"] = list(want)
            return _query(t, b"find_node", args, ro)
        case GetPeers(t=t, id=id_, info_hash=info_hash, want=want, ro=ro):
            args = {b"id": id_, b"info_hash": info_hash}
            if want:
                args[b"want"] = list(want)
            return _query(t, b"get_peers", args, ro)
        case AnnouncePeer():
            args = {
                b"id": message.id,
                b"info_hash": message.info_hash,
                b"port": message.port,
                b"token": message.token,
            }
            if message.implied_port:
                args[b"implied_port"] = 1
            return _query(message.t, b"announce_peer", args, message.ro)
        case Get():
            args = {b"id": message.id, b"target": message.target}
            if message.seq is not None:
                args[b"seq"] = message.seq
            if message.want:
                args[b"want"] = list(message.want)
            return _query(message.t, b"get", args, message.ro)
        case Put():
            args = {b"id": message.id, b"token": message.token, b"v": message.v}
            if message.k is not None:
                args[b"k"] = message.k
                args[b"sig"] = message.sig or b""
                args[b"seq"] = message.seq or 0
                if message.salt:
                    args[b"salt"] = message.salt
                if message.cas is not None:
                    args[b"cas"] = message.cas
            return _query(message.t, b"put", args, message.ro)
        case Response():
            body: dict[bytes, BValue] = {b"id": message.id}
            if message.nodes:
                body[b"nodes"] = encode_nodes(message.nodes)
            if message.nodes6:
                body[b"nodes6"] = encode_nodes(message.nodes6)
            if message.values:
                body[b"values"] = [encode_peer(a) for a in message.values]
            if message.token is not None:
                body[b"token"] = message.token
            if message.v is not None:
                body[b"v"] = message.v
            if message.k is not None:
                body[b"k"] = message.k
            if message.sig is not None:
                body[b"sig"] = message.sig
            if message.seq is not None:
                body[b"seq"] = message.seq
            packet: dict[bytes, BValue] = {b"t": message.t, b"y": b"r", b"r": body, b"v": CLIENT_VERSION}
            if message.ip is not None:
                packet[b"ip"] = encode_peer(message.ip)
            return _bencode(packet)
        case Error(t=t, code=code, message=text):
            return _bencode({b"t": t, b"y": b"e", b"e": [code, text]})
    raise TypeError(f"not a KRPC message: {message!r}")  # pragma: no cover


# -- decoding -----------------------------------------------------------------------------------------


class _Args:
    """Typed accessors over a query's ``a`` (or a reply's ``r``) dictionary; failures name the key."""

    __slots__ = ("d", "t")

    def __init__(self, d: dict[bytes, BValue], t: bytes | None) -> None:
        self.d = d
        self.t = t

    def fail(self, message: str) -> MalformedKRPC:
        return MalformedKRPC(message, code=203, t=self.t)

    def raw(self, key: bytes) -> bytes:
        value = self.d.get(key)
        if not isinstance(value, bytes):
            raise self.fail(f"missing or non-string {key.decode()!r}")
        return value

    def id20(self, key: bytes) -> bytes:
        value = self.raw(key)
        if len(value) != 20:
            raise self.fail(f"{key.decode()!r} must be 20 bytes, got {len(value)}")
        return value

    def opt_raw(self, key: bytes, max_len: int) -> bytes | None:
        if key not in self.d:
            return None
        value = self.raw(key)
        if len(value) > max_len:
            raise self.fail(f"{key.decode()!r} longer than {max_len} bytes")
        return value

    def opt_int(self, key: bytes) -> int | None:
        if key not in self.d:
            return None
        value = self.d[key]
        if not isinstance(value, int):
            raise self.fail(f"{key.decode()!r} must be an integer")
        return value

    def want(self) -> tuple[bytes, ...]:
        value = self.d.get(b"want")
        if value is None:
            return ()
        if not isinstance(value, list):
            raise self.fail("'want' must be a list")
        return tuple(w for w in value[:4] if isinstance(w, bytes))


def _decode_query(t: bytes, top: dict[bytes, BValue]) -> Query:
    method = top.get(b"q")
    if not isinstance(method, bytes):
        raise MalformedKRPC("query without a method name 'q'", t=t)
    a = top.get(b"a")
    if not isinstance(a, dict):
        raise MalformedKRPC("query without an argument dictionary 'a'", t=t)
    args = _Args(a, t)
    ro = top.get(b"ro") == 1
    if method == b"ping":
        return Ping(t=t, id=args.id20(b"id"), ro=ro)
    if method == b"find_node":
        return FindNode(t=t, id=args.id20(b"id"), target=args.id20(b"target"), want=args.want(), ro=ro)
    if method == b"get_peers":
        return GetPeers(t=t, id=args.id20(b"id"), info_hash=args.id20(b"info_hash"), want=args.want(), ro=ro)
    if method == b"announce_peer":
        port = args.opt_int(b"port")
        implied = args.opt_int(b"implied_port") == 1
        if port is None and not implied:
            raise args.fail("announce_peer without 'port'")
        if not implied and not 0 < (port or 0) < 65536:
            raise args.fail(f"announce_peer port out of range: {port}")
        token = args.opt_raw(b"token", _MAX_TOKEN)
        if token is None:
            raise args.fail("announce_peer without 'token'")
        return AnnouncePeer(
            t=t,
            id=args.id20(b"id"),
            info_hash=args.id20(b"info_hash"),
            port=port if port is not None and 0 < port < 65536 else 0,
            token=token,
            implied_port=implied,
            ro=ro,
        )
    if method == b"get":
        return Get(t=t, id=args.id20(b"id"), target=args.id20(b"target"), seq=args.opt_int(b"seq"), ro=ro)
    if method == b"put":
        token = args.opt_raw(b"token", _MAX_TOKEN)
        if token is None:
            raise args.fail("put without 'token'")
        if b"v" not in a:
            raise args.fail("put without a value 'v'")
        k = args.opt_raw(b"k", 32)
        if k is None:
            return Put(t=t, id=args.id20(b"id"), token=token, v=a[b"v"], ro=ro)
        if len(k) != 32:
            raise args.fail(f"'k' must be a 32-byte ed25519 key, got {len(k)}")
        sig = args.opt_raw(b"sig", 64)
        if sig is None or len(sig) != 64:
            raise args.fail("mutable put needs a 64-byte 'sig'")
        seq = args.opt_int(b"seq")
        if seq is None:
            raise args.fail("mutable put needs 'seq'")
        salt = args.opt_raw(b"salt", 1 << 16) or b""
        return Put(
            t=t,
            id=args.id20(b"id"),
            token=token,
            v=a[b"v"],
            k=k,
            sig=sig,
            seq=seq,
            salt=salt,
            cas=args.opt_int(b"cas"),
            ro=ro,
        )
    raise MalformedKRPC(f"method unknown: {method[:32]!r}", code=204, t=t)


def _decode_response(t: bytes, top: dict[bytes, BValue]) -> Response:
    r = top.get(b"r")
    if not isinstance(r, dict):
        raise MalformedKRPC("response without a dictionary 'r'")
    args = _Args(r, None)
    nodes_raw = args.opt_raw(b"nodes", 1 << 16) or b""
    nodes6_raw = args.opt_raw(b"nodes6", 1 << 16) or b""
    values: list[Addr] = []
    raw_values = r.get(b"values")
    if raw_values is not None:
        if not isinstance(raw_values, list):
            raise args.fail("'values' must be a list")
        for item in raw_values[:_MAX_VALUES]:
            if isinstance(item, bytes) and len(item) in (6, 18):
                host, port = decode_peer(item)
                if port:
                    values.append((host, port))
    k = args.opt_raw(b"k", 32)
    sig = args.opt_raw(b"sig", 64)
    raw_ip = top.get(b"ip")
    ip = decode_peer(raw_ip) if isinstance(raw_ip, bytes) and len(raw_ip) in (6, 18) else None
    return Response(
        t=t,
        id=args.id20(b"id"),
        nodes=decode_nodes(nodes_raw, ipv6=False),
        nodes6=decode_nodes(nodes6_raw, ipv6=True),
        values=tuple(values),
        token=args.opt_raw(b"token", _MAX_TOKEN),
        v=r.get(b"v"),
        k=k,
        sig=sig,
        seq=args.opt_int(b"seq"),
        ip=ip,
    )


def _decode_error(t: bytes, top: dict[bytes, BValue]) -> Error:
    e = top.get(b"e")
    if not isinstance(e, list) or not e or not isinstance(e[0], int):
        raise MalformedKRPC("error without a [code, message] list 'e'")
    text = e[1] if len(e) > 1 and isinstance(e[1], bytes) else b""
    return Error(t=t, code=e[0], message=text[:256])


def decode(data: bytes) -> Message:
    """Decode one KRPC datagram; anything wrong raises :class:`MalformedKRPC`, nothing else."""
    if len(data) > MAX_PACKET_SIZE:
        raise MalformedKRPC(f"packet of {len(data)} bytes exceeds {MAX_PACKET_SIZE}")
    try:
        top = bencode.decode(data, max_depth=_MAX_DEPTH)
    except BencodeError as exc:
        raise MalformedKRPC(f"not bencoded: {exc}") from None
    if not isinstance(top, dict):
        raise MalformedKRPC("KRPC message must be a dictionary")
    t = top.get(b"t")
    if not isinstance(t, bytes) or not 0 < len(t) <= _MAX_TID:
        raise MalformedKRPC("missing or bad transaction id 't'")
    kind = top.get(b"y")
    if kind == b"q":
        return _decode_query(t, top)
    if kind == b"r":
        return _decode_response(t, top)
    if kind == b"e":
        return _decode_error(t, top)
    raise MalformedKRPC(f"unknown message type 'y' = {kind!r}")
