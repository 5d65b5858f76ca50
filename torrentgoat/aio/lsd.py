"""The asyncio driver of Local Service Discovery (level L4): multicast sockets pumping an :class:`LSDEngine`.

One :class:`LSDService` per session announces its torrents on the BEP 14 groups
239.192.152.143:6771 and [ff15::efc0:988f]:6771 and hands the neighbours it hears about to the
torrent that asked (``add(info_hash, on_peer)``)::

    service = LSDService(port=6881, rng=rng, address4="10.0.0.2")   # or ifindex=..., ipv6=False
    await service.start()                     # opens what it can; service.errors says what it could not
    service.add(info_hash, lambda address: torrent.add_peers([address], "lsd"))
    ...
    service.close()

Each group gets its own UDP socket bound to port 6771 with ``SO_REUSEADDR`` and ``SO_REUSEPORT``,
so several processes on one host (several torrentgoat nodes, or torrentgoat beside libtorrent)
share the port and every one of them receives each announce.  The socket joins the group on the
chosen interface, sends with a TTL / hop limit above 1 (BEP 14's implementation note; 32 like
libtorrent) and keeps ``IP_MULTICAST_LOOP`` on, so that nodes on one host find each other (our own
announces come back too and are recognised by the engine's cookie).  On Linux the socket is bound
to the group address itself, so it receives that group's datagrams only.

The interface: ``address4`` (an IPv4 address of ours; ``0.0.0.0`` lets the routing table choose) or
``ifindex`` (an interface index, for IPv4 on Linux and for IPv6).  :func:`lsd_interface` derives
them from a session's listen addresses.  Multicast needs a route: a host without a default route
(a fresh network namespace) needs ``ip route add 224.0.0.0/4 dev IFACE``; a send that fails for
that reason is reported in :meth:`LSDService.status`, and announces keep being tried.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import logging
import random
import socket
import struct
import sys
from collections.abc import Callable
from typing import Any

from torrentgoat.lsd import LSD_GROUP4, LSD_GROUP6, Group, LSDConfig, LSDEngine
from torrentgoat.primitives import InfoHash, PeerAddress

__all__ = ["LSDService", "lsd_interface"]

log = logging.getLogger("torrentgoat.lsd")

OnPeer = Callable[[PeerAddress], None]

_LINUX = sys.platform.startswith("linux")
_IP_MULTICAST_ALL = 49
"""Linux: receive only the groups this socket joined (``IP_MULTICAST_ALL`` = 0)."""
_SIOCGIFADDR = 0x8915


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, service: LSDService, group: Group) -> None:
        self.service = service
        self.group = group

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.service._on_datagram(data, addr)

    def error_received(self, exc: Exception) -> None:
        self.service._on_error(self.group, exc)


class LSDService:
    """BEP 14 for a session: the sockets, the timer and the torrents' callbacks around an engine."""

    def __init__(
        self,
        *,
        port: int,
        rng: random.Random,
        config: LSDConfig | None = None,
        address4: str = "0.0.0.0",
        ifindex4: int = 0,
        ifindex6: int = 0,
        ipv4: bool = True,
        ipv6: bool = True,
        ttl: int = 32,
    ) -> None:
        self.port = port
        self.rng = rng
        self.config = config or LSDConfig()
        self.address4 = address4
        self.ifindex4 = ifindex4
        self.ifindex6 = ifindex6
        self.ipv4 = ipv4
        self.ipv6 = ipv6
        self.ttl = ttl
        self.engine: LSDEngine | None = None
        self.errors: dict[Group, str] = {}
        """Why a group could not be used (socket options, or the last failed send)."""
        self._transports: dict[Group, asyncio.DatagramTransport] = {}
        self._handlers: dict[InfoHash, OnPeer] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False

    # ------------------------------------------------------------------ lifecycle

    @property
    def groups(self) -> tuple[Group, ...]:
        """The groups whose socket is open."""
        return tuple(self._transports)

    async def start(self) -> None:
        """Open a socket for each group that can be joined (failures go to :attr:`errors`)."""
        if self._loop is not None:
            return
        self._loop = loop = asyncio.get_running_loop()
        wanted = [g for g, on in ((LSD_GROUP4, self.ipv4), (LSD_GROUP6, self.ipv6)) if on]
        for group in wanted:
            try:
                sock = self._open(group)
            except OSError as exc:
                self.errors[group] = f"cannot join {group.host_header}: {exc.strerror or exc}"
                log.info("LSD: %s", self.errors[group])
                continue
            transport, _ = await loop.create_datagram_endpoint(
                functools.partial(_Protocol, self, group), sock=sock
            )
            self._transports[group] = transport
        self.engine = LSDEngine(
            port=self.port, rng=self.rng, now=loop.time(), config=self.config, groups=self.groups
        )
        for info_hash in self._handlers:
            self.engine.add_torrent(info_hash, loop.time())
        self._pump()

    def _open(self, group: Group) -> socket.socket:
        family = socket.AF_INET6 if group.family == 6 else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if hasattr(socket, "SO_REUSEPORT"):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind((group.address if _LINUX else "::", group.port))
                member = socket.inet_pton(socket.AF_INET6, group.address) + struct.pack("@I", self.ifindex6)
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, member)
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, self.ttl)
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 1)
                if self.ifindex6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, self.ifindex6)
            else:
                sock.bind((group.address if _LINUX else "", group.port))
                if _LINUX:
                    with contextlib.suppress(OSError):
                        sock.setsockopt(socket.IPPROTO_IP, _IP_MULTICAST_ALL, 0)
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, self._mreq(group.address))
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, self.ttl)
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
                if self.ifindex4 and _LINUX:
                    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, self._mreq("0.0.0.0"))
                elif self.address4 != "0.0.0.0":
                    sock.setsockopt(
                        socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(self.address4)
                    )
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return sock

    def _mreq(self, group: str) -> bytes:
        """``ip_mreqn`` (Linux, by interface index) or ``ip_mreq`` (by interface address)."""
        if self.ifindex4 and _LINUX:
            return socket.inet_aton(group) + socket.inet_aton("0.0.0.0") + struct.pack("@i", self.ifindex4)
        return socket.inet_aton(group) + socket.inet_aton(self.address4)

    def close(self) -> None:
        """Stop announcing and listening."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for transport in self._transports.values():
            transport.close()
        self._transports.clear()

    # ------------------------------------------------------------------ torrents

    def add(self, info_hash: InfoHash, on_peer: OnPeer) -> None:
        """Announce ``info_hash`` (now, then on the engine's schedule) and call ``on_peer`` with every
        neighbour that announces it."""
        self._handlers[info_hash] = on_peer
        if self.engine is not None and self._loop is not None:
            self.engine.add_torrent(info_hash, self._loop.time())
            self._pump()

    def remove(self, info_hash: InfoHash) -> None:
        self._handlers.pop(info_hash, None)
        if self.engine is not None:
            self.engine.remove_torrent(info_hash)
            self._pump()

    def set_port(self, port: int) -> None:
        """Our listen port changed: announce the new one."""
        self.port = port
        if self.engine is not None and self._loop is not None:
            self.engine.set_port(port, self._loop.time())
            self._pump()

    def status(self) -> str:
        """One line: where LSD announces and what it found (or why it cannot)."""
        if self.engine is None:
            return "LSD: not started yet"
        if not self._transports:
            return "LSD: unavailable: " + "; ".join(self.errors.values())
        stats = self.engine.stats
        groups = ", ".join(g.host_header for g in self._transports)
        line = f"LSD on {groups}: {stats.sent} announces sent, {stats.found} peers found"
        problems = [self.errors[g] for g in self._transports if g in self.errors]
        if problems:
            line += "; " + "; ".join(problems)
        return line

    # ------------------------------------------------------------------ pumping the engine

    def _on_datagram(self, data: bytes, addr: Any) -> None:
        engine, loop = self.engine, self._loop
        if engine is None or loop is None or self._closed:
            return
        engine.receive_datagram(data, (str(addr[0]), int(addr[1])), loop.time())
        while (event := engine.next_event()) is not None:
            handler = self._handlers.get(event.info_hash)
            if handler is not None:
                handler(event.address)

    def _on_error(self, group: Group, exc: Exception) -> None:
        text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        message = f"cannot send to {group.host_header}: {text}"
        if self.errors.get(group) != message:
            log.info("LSD: %s", message)
        self.errors[group] = message

    def _pump(self) -> None:
        """Send what is due and set the timer for the next announce."""
        engine, loop = self.engine, self._loop
        if engine is None or loop is None or self._closed:
            return
        now = loop.time()
        for data, group in engine.datagrams_to_send(now):
            transport = self._transports.get(group)
            if transport is None:
                continue
            try:
                transport.sendto(data, (group.address, group.port))
            except OSError as exc:
                self._on_error(group, exc)
            else:
                if self.errors.get(group, "").startswith("cannot send"):
                    del self.errors[group]
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        when = engine.get_timer()
        if when is not None:
            self._timer = loop.call_at(max(when, now + 0.01), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self.engine is not None and self._loop is not None:
            self.engine.handle_timer(self._loop.time())
        self._pump()


def lsd_interface(listen_host: str, listen_ipv6: str | None, interface: str | None = None) -> dict[str, Any]:
    """Keyword arguments of :class:`LSDService` for a session listening on ``listen_host`` (IPv4) and
    ``listen_ipv6`` (None: no IPv6 listener, so no IPv6 announces): LSD announces where peers can
    reach us.

    ``interface`` (a name such as ``eth1``) wins; else a specific listen address picks its interface
    (a loopback IPv4 address keeps LSD on ``lo``, IPv6 included); else the routing table chooses.
    Raises :class:`OSError` for an unknown interface name."""
    ifindex = 0
    if interface:
        try:
            ifindex = socket.if_nametoindex(interface)
        except OSError:
            raise OSError(f"no network interface named {interface!r}") from None
    address4 = "0.0.0.0"
    try:
        ip4: ipaddress.IPv4Address | None = ipaddress.IPv4Address(listen_host)
    except ValueError:
        ip4 = None
    if ip4 is not None and not ip4.is_unspecified:
        address4 = str(ip4)
    ifindex6 = ifindex
    if not ifindex6:
        if listen_ipv6 and listen_ipv6.partition("%")[0] not in ("::", "0:0:0:0:0:0:0:0"):
            ifindex6 = _ifindex_of_ipv6(listen_ipv6)
        elif ip4 is not None and ip4.is_loopback:
            with contextlib.suppress(OSError):
                ifindex6 = socket.if_nametoindex("lo")
    return {"address4": address4, "ifindex4": ifindex, "ifindex6": ifindex6, "ipv6": listen_ipv6 is not None}


def _ifindex_of_ipv6(address: str) -> int:
    """The index of the interface holding IPv6 ``address`` (Linux ``/proc/net/if_inet6``; 0 elsewhere)."""
    try:
        wanted = ipaddress.IPv6Address(address.partition("%")[0]).exploded.replace(":", "")
    except ValueError:
        return 0
    try:
        with open("/proc/net/if_inet6", encoding="ascii") as table:
            for line in table:
                fields = line.split()
                if len(fields) >= 2 and fields[0] == wanted:
                    return int(fields[1], 16)
    except OSError:
        pass
    return 0
