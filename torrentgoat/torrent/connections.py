"""A torrent's wire connections (level L5): dialling, admitting, evicting, one per remote peer.

Each dial picks a transport and an encryption: TCP or uTP (BEP 29) -- an address on the public internet
is tried over uTP first (it passes NATs and yields to the user's other traffic, LEDBAT), a private,
loopback or link-local one over TCP first (a cluster's LAN: kernel TCP costs far less CPU than uTP in
Python), each falling back to the other, and an address remembers what worked; then MSE first with a
plain fallback, or as the session's policy says (:mod:`torrentgoat.aio.mse`).

Addresses come from every peer source into a bounded :class:`~torrentgoat.torrent.peers.CandidatePool`;
:meth:`Connections.run` dials them while the torrent is below ``max_peers`` and ``max_half_open``
connection attempts, backing off from addresses that fail.  Incoming connections whose handshake named
our info-hash are admitted by :meth:`Connections.adopt`.  When the torrent is full, a useless
connection is evicted for a newcomer, and of two connections to one remote peer id one is closed --
both decisions are the pure rules of :mod:`torrentgoat.torrent.policy`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import Callable, Hashable, Sequence
from dataclasses import replace
from typing import Any

from torrentgoat.aio.mse import Connector, open_encrypted_connection, tcp_connector
from torrentgoat.aio.peer import PeerDriver, PeerHandler
from torrentgoat.aio.utp import utp_connector
from torrentgoat.mse import EncryptionPolicy
from torrentgoat.primitives import InfoHash, PeerAddress
from torrentgoat.torrent.events import PeerBanned, PeerConnected, PeerDisconnected
from torrentgoat.torrent.handle import TorrentHandle
from torrentgoat.torrent.opening import Opening
from torrentgoat.torrent.peers import Candidate, CandidatePool
from torrentgoat.torrent.policy import eviction_victim, keeps_new_connection
from torrentgoat.torrent.swarm import Swarm
from torrentgoat.torrent.wirepeer import WirePeer

__all__ = ["Connections"]

log = logging.getLogger("torrentgoat.torrent")

RETRY_AFTER_CLOSE = 10.0
"""Seconds before an address whose connection closed normally may be dialled again."""


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_local(host: str) -> bool:
    """Loopback, private or link-local: a LAN (TCP first), not the public internet (uTP first)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return ip.is_loopback or ip.is_private or ip.is_link_local


UTP_DIAL_TIMEOUT = 3.0
"""Seconds a uTP dial may take before the other transport is tried (a SYN and two retries)."""


class Connections:
    """Dials, admits and closes one torrent's wire connections."""

    def __init__(
        self,
        swarm: Swarm,
        host: TorrentHandle,
        opening: Opening,
        *,
        handler: PeerHandler,
        admitted: Callable[[WirePeer], None],
    ) -> None:
        self.swarm = swarm
        self.host = host
        self.opening = opening
        self.handler = handler
        """Receives the events of every connection (the torrent's :class:`PeerExchange`)."""
        self._admitted = admitted
        self.pool = CandidatePool()
        self.connecting = 0
        """Outgoing connection attempts in progress."""
        self.dial_failed: Callable[[PeerAddress], None] | None = None
        """Told of each address a dial could not reach (BEP 55: a relay may punch a hole to it)."""
        self._wake = asyncio.Event()

    # ------------------------------------------------------------------ addresses

    def add(self, addresses: Sequence[PeerAddress], source: str, swarm_id: InfoHash | None = None) -> int:
        """Addresses to dial (deduplicated, banned ones ignored); returns how many were new.  ``swarm_id``:
        the id they were found under, when not the torrent's info-hash (a hybrid's v2 one): they are
        dialled with it (BEP 52; a v2-only peer knows no other).

        Our own listen port on a loopback address is never dialled (trackers hand our own address
        back; dialling it only ends in "connected to ourselves")."""
        port = self.host.ctx.listen_port
        if swarm_id is not None and (
            swarm_id == self.host.info_hash or not self.host.info_hashes.matches(swarm_id)
        ):
            swarm_id = None
        added = sum(
            1
            for address in addresses
            if not (address.port == port and _is_loopback(address.host))
            and self.pool.add(address, source, swarm_id)
        )
        if added:
            self._wake.set()
        return added

    def ban(self, key: Hashable, address: PeerAddress | None, reason: str) -> None:
        """Ban a wire peer (by key, and by address so it is never dialled or admitted again)."""
        peer = self.swarm.peer(key)
        if peer is not None and peer.key in self.swarm.others:
            return  # not an address: a web seed drops itself (BEP 19)
        wp = self.swarm.peers.get(peer.key) if peer is not None else None
        if address is None and wp is not None:
            address = wp.address
        if address is not None and address not in self.pool.banned:
            self.pool.ban(address)
            self.host.emit(PeerBanned(address=address, reason=reason))
        if wp is not None:
            wp.close(f"banned: {reason}")

    def ourselves(self, driver: PeerDriver) -> None:
        """The handshake carried our own peer id: never dial that address again."""
        if driver.address is not None:
            self.pool.ourselves.add(driver.address)
            self.pool.candidates.pop(driver.address, None)
        driver.close("connected to ourselves")

    # ------------------------------------------------------------------ dialling

    def idle(self) -> bool:
        """A finished torrent that does not seed dials nobody."""
        return self.host.is_complete and not self.host.config.seed

    async def run(self) -> None:
        """Dial candidate addresses while below the peer and half-open limits (until cancelled)."""
        config = self.host.config
        while not self.host.stopping:
            now = self.host.now()
            free = config.max_peers - len(self.swarm.peers) - self.connecting
            if (
                free <= 0
                and self.connecting == 0
                and not self.idle()
                and self.pool.ready(now)
                and self.evict()
            ):
                free = 1
            if free > 0 and not self.idle():
                connected = {wp.address for wp in self.swarm.peers.values()}
                for candidate in self.pool.ready(now):
                    if free <= 0 or self.connecting >= config.max_half_open:
                        break
                    if candidate.address in connected:
                        continue
                    candidate.connected = True
                    self.connecting += 1
                    free -= 1
                    self.host.spawn(self._dial(candidate.address))
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=2.0)

    def dial_now(self, address: PeerAddress, source: str) -> bool:
        """Dial ``address`` over uTP only, at once: beyond the peer limit, the half-open limit (up to
        twice it) and any back-off (BEP 55: a hole punch is two simultaneous uTP dials).  False when
        uTP is off, the address is banned, ours, connected or being dialled, or twice the half-open
        limit is reached."""
        if self.host.stopping or self.host.ctx.utp is None:
            return False
        if self.connecting >= 2 * self.host.config.max_half_open:
            return False
        if address in self.pool.banned or address in self.pool.ourselves:
            return False
        if any(wp.address == address for wp in self.swarm.peers.values()):
            return False
        self.pool.add(address, source)
        candidate = self.pool.candidates.get(address)
        if candidate is not None:
            if candidate.connected:
                return False
            candidate.connected = True
        self.connecting += 1
        self.host.spawn(self._dial(address, utp_only=True))
        return True

    def _connector(
        self, address: PeerAddress, candidate: Candidate | None, *, utp_only: bool = False
    ) -> Connector:
        """How to reach ``address``: TCP and/or uTP in the order described in the module docstring."""
        tcp = tcp_connector(address.host, address.port)
        endpoint = self.host.ctx.utp
        if endpoint is None:
            return tcp
        utp = utp_connector(endpoint, address.host, address.port, timeout=UTP_DIAL_TIMEOUT)
        known = candidate.transport if candidate is not None else ""  # what worked last time
        default = self.host.ctx.utp_first
        if default is None:
            default = not _is_local(address.host)
        utp_first = known == "utp" if known else default
        order = [("utp", utp), ("tcp", tcp)] if utp_first else [("tcp", tcp), ("utp", utp)]
        if utp_only:
            order = [("utp", utp)]

        async def connect(factory: Callable[[], asyncio.BaseProtocol]) -> tuple[asyncio.BaseTransport, Any]:
            failures = []
            for name, dial in order:
                try:
                    connected = await dial(factory)
                except (OSError, TimeoutError) as exc:
                    failures.append(f"{name}: {exc or type(exc).__name__}")
                    continue
                if candidate is not None:
                    candidate.transport = name
                return connected
            raise ConnectionError("; ".join(failures))

        return connect

    async def _dial(self, address: PeerAddress, *, utp_only: bool = False) -> None:
        encryption = self.host.ctx.encryption
        candidate = self.pool.candidates.get(address)
        if candidate is not None and candidate.plain and encryption.policy is EncryptionPolicy.PREFER:
            encryption = replace(encryption, policy=EncryptionPolicy.DISABLE)  # it dropped MSE before
        try:
            engine = self.opening.outgoing(address, info_hash=candidate.swarm_id if candidate else None)
            driver = await open_encrypted_connection(
                address,
                engine,
                self.handler,
                config=encryption,
                download_limit=self.host.ctx.download_limit,
                on_created=self.register,
                connect=self._connector(address, candidate, utp_only=utp_only),
            )
            transport = driver.transport
            if candidate is not None and transport is not None and transport.get_extra_info("mse") is None:
                candidate.plain = True  # next time, plain at once (libtorrent remembers this too)
        except ConnectionError as exc:
            log.debug("%s: %s", self.host.name, exc)
            reason = str(exc.__cause__ or exc)
            self.pool.failed(address, self.host.now(), reason=reason)
            if self.dial_failed is not None:
                self.dial_failed(address)
        finally:
            self.connecting -= 1
            self._wake.set()

    # ------------------------------------------------------------------ admitting

    def register(self, driver: PeerDriver) -> None:
        """Track a connection from its creation on, so that none of its events is missed."""
        self.swarm.peers[driver.id] = WirePeer(driver, self.host.now())
        if driver.address is not None and not driver.outgoing:
            self.host.emit(PeerConnected(address=driver.address, client="", outgoing=False))

    def adopt(self, driver: PeerDriver) -> bool:
        """Take over an incoming connection whose handshake asked for our info-hash."""
        if self.host.stopping:
            driver.close("torrent stopped")
            return False
        if len(self.swarm.peers) >= self.host.config.max_peers and not self.evict():
            driver.close("too many peers")
            return False
        address = driver.address
        if address is not None and address in self.pool.banned:
            driver.close("banned")
            return False
        handshake = driver.engine.peer_handshake
        if handshake is not None and handshake.peer_id == self.host.ctx.peer_id:
            driver.close("connected to ourselves")
            return False
        driver.handler = self.handler
        self.opening.accept(driver.engine)
        self.register(driver)
        wp = self.swarm.peers[driver.id]
        self._admitted(wp)
        driver.flush()
        return self.survives_duplicate(wp)

    def evict(self, grace: float = 2.0) -> bool:
        """Make room for a newcomer by closing a connection that gives us nothing (see
        :func:`~torrentgoat.torrent.policy.eviction_victim`)."""
        now = self.host.now()
        live = [wp for wp in self.swarm.peers.values() if not wp.driver.closed]
        victim = self.swarm.peer(eviction_victim((wp.eviction_view() for wp in live), now, grace=grace))
        if victim is None:
            return False
        victim.close("evicted to make room for a more useful peer")
        return True

    def survives_duplicate(self, wp: WirePeer) -> bool:
        """Keep one connection per remote peer id; close the other (returns whether ``wp`` stays)."""
        handshake = wp.driver.engine.peer_handshake
        if handshake is None:
            return True
        theirs = handshake.peer_id.raw
        ours = self.host.ctx.peer_id.raw
        for other in list(self.swarm.peers.values()):
            h = other.driver.engine.peer_handshake
            if other is wp or other.driver.closed or h is None or h.peer_id.raw != theirs:
                continue
            if keeps_new_connection(
                ours=ours, theirs=theirs, new_outgoing=wp.driver.outgoing, old_outgoing=other.driver.outgoing
            ):
                other.close("duplicate connection to the same peer id")
                return True
            wp.close("duplicate connection to the same peer id")
            return False
        return True

    # ------------------------------------------------------------------ closing

    def closed(self, driver: PeerDriver, reason: str) -> None:
        """A connection is gone: back off from its address if it failed; let another in."""
        address = driver.address
        if address is not None and driver.outgoing:
            candidate = self.pool.candidates.get(address)
            if candidate is not None:
                candidate.connected = False
                now = self.host.now()
                if not driver.engine.handshake_complete:
                    # the transport connected but no BitTorrent handshake got through (libtorrent with
                    # TCP off still accepts TCP, then closes): next time, the other transport first,
                    # and no conclusion about MSE
                    if candidate.transport and self.host.ctx.utp is not None:
                        candidate.transport = "utp" if candidate.transport == "tcp" else "tcp"
                    candidate.plain = False
                if not driver.engine.handshake_complete or "protocol" in reason:
                    self.pool.failed(address, now)
                else:
                    candidate.next_try = now + RETRY_AFTER_CLOSE
        if address is not None:
            self.host.emit(PeerDisconnected(address=address, reason=reason))
        self._wake.set()

    def close_all(self, reason: str) -> None:
        for wp in list(self.swarm.peers.values()):
            wp.close(reason)
