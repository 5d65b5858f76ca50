"""BEP 55 hole punching for one torrent (level L5): relay, initiator and target.

The rules are pure (:mod:`torrentgoat.wire.holepunch`); this part applies them to the torrent's
connections:

* **relay** -- a ``rendezvous(target)`` from a connected peer is answered by
  :func:`~torrentgoat.wire.holepunch.relay` over our live connections: ``connect`` to both sides, or an
  ``error`` (NoSuchPeer, NotConnected, NoSupport, NoSelf) to the initiator; at most ten a minute per
  initiator (more are ignored);
* **initiator** -- a peer that a connected peer listed in PEX with flag 0x08 (it supports
  ``ut_holepunch``) and that we then failed to dial is asked for through that peer, once a minute at
  most (:meth:`Holepunching.dial_failed`, libtorrent's rule); :meth:`Holepunching.rendezvous` asks
  for one explicitly;
* **target and initiator alike** -- a ``connect(endpoint)`` from a relay dials the endpoint over uTP at
  once, from the session's uTP socket (the listen port: the other side's SYN comes back through the
  mapping our SYN opened), beyond the peer limits and any back-off.  BEP 55: a ``connect`` for a peer
  we are already connected to is ignored; so is one for a banned address, and each relay may give at
  most ten a minute.  When both dials succeed, the duplicate-connection rule keeps one.

An ``error`` from a relay is reported as a :class:`~torrentgoat.torrent.events.HolepunchFailed` event.
Counters (``relayed``, ``rendezvous_sent``, ``connects``, ``errors``) say what happened, for tests and
status lines.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Hashable

from torrentgoat.errors import LocalProtocolError
from torrentgoat.primitives import PeerAddress
from torrentgoat.torrent.events import HolepunchFailed
from torrentgoat.torrent.handle import TorrentHandle
from torrentgoat.torrent.swarm import Swarm
from torrentgoat.torrent.wirepeer import WirePeer
from torrentgoat.wire.holepunch import HolepunchPeer, HolepunchState, error_name, relay
from torrentgoat.wire.messages import Holepunch, HolepunchType, PexPeer

__all__ = ["Holepunching"]

log = logging.getLogger("torrentgoat.torrent")


class Holepunching:
    """The torrent's BEP 55 part: see the module docstring."""

    def __init__(self, swarm: Swarm, host: TorrentHandle, *, dial: Callable[[PeerAddress], bool]) -> None:
        self.swarm = swarm
        self.host = host
        self._dial = dial
        """Dials an address over uTP at once (``Connections.dial_now``); False when it did not."""
        self.state = HolepunchState()
        self.relayed = 0
        """Rendezvous requests we relayed (``connect`` sent to both sides)."""
        self.rendezvous_sent = 0
        self.connects = 0
        """``connect`` orders we obeyed (dials started)."""
        self.errors = 0
        """``error`` answers we received as initiator."""

    # ------------------------------------------------------------------ views

    @staticmethod
    def view(wp: WirePeer) -> HolepunchPeer:
        """What the relay rule sees of a connection: its addresses, and where a uTP SYN reaches it
        (the remote end of a uTP connection -- its NAT's mapping of its listen socket -- else its
        listen address)."""
        listen = wp.listen_address()
        endpoints = frozenset(a for a in (wp.address, listen) if a is not None)
        reach = wp.address if wp.transport == "utp" else listen
        return HolepunchPeer(
            key=wp.key, endpoints=endpoints, reach=reach, supports=wp.driver.engine.peer_supports_holepunch
        )

    def _ours(self, wp: WirePeer) -> set[PeerAddress]:
        """Our own endpoints as the peer of ``wp`` sees them (the connection's local address with our
        listen port)."""
        port = self.host.ctx.listen_port
        transport = wp.driver.transport
        name = transport.get_extra_info("sockname") if transport is not None else None
        ours = {PeerAddress(str(name[0]), port)} if name else set()
        if wp.address is not None and wp.address.host in ("127.0.0.1", "::1"):
            ours.add(PeerAddress(wp.address.host, port))
        return ours

    def _send(self, wp: WirePeer, message: Holepunch) -> bool:
        if wp.driver.closed or not wp.driver.engine.peer_supports_holepunch:
            return False
        with contextlib.suppress(LocalProtocolError):
            wp.driver.engine.send(message)
            wp.driver.flush()
            return True
        return False

    # ------------------------------------------------------------------ events of the exchange

    def on_message(self, wp: WirePeer, message: Holepunch) -> None:
        """A ``ut_holepunch`` message from ``wp`` (BEP 55)."""
        match message.msg_type:
            case HolepunchType.RENDEZVOUS:
                self._relay(wp, message.address)
            case HolepunchType.CONNECT:
                self._connect(wp, message.address)
            case HolepunchType.ERROR:
                self.errors += 1
                reason = error_name(message.error)
                log.debug(
                    "%s: hole punch to %s via %s failed: %s",
                    self.host.name,
                    message.address,
                    wp.address,
                    reason,
                )
                self.host.emit(HolepunchFailed(target=message.address, relay=wp.address, error=reason))

    def _relay(self, wp: WirePeer, target: PeerAddress) -> None:
        if not self.state.relay_allowed(wp.key, self.host.now()):
            return  # more than ten a minute from one peer: ignored
        peers = [self.view(other) for other in self.swarm.live_peers() if other is not wp]
        answers = relay(self.view(wp), target, peers, ours=self._ours(wp))
        sent = 0
        for key, message in answers:
            other = self.swarm.peers.get(key)  # type: ignore[call-overload]
            if other is not None and self._send(other, message) and message.msg_type is HolepunchType.CONNECT:
                sent += 1
        if sent == 2:
            self.relayed += 1

    def _connect(self, wp: WirePeer, address: PeerAddress) -> None:
        """A relay says: dial ``address`` now (uTP, simultaneously with it dialling us)."""
        if self.host.ctx.utp is None or self.host.stopping:
            return
        for other in self.swarm.peers.values():
            if address in self.view(other).endpoints:
                return  # BEP 55: already connected, ignore silently
        if not self.state.connect_allowed(wp.key, self.host.now()):
            return
        if self._dial(address):
            self.connects += 1

    def pex_received(self, wp: WirePeer, added: tuple[PexPeer, ...]) -> None:
        """BEP 11 from ``wp``: remember it as the introducer of the peers flagged 0x08."""
        if wp.driver.engine.peer_supports_holepunch:
            for peer in added:
                self.state.introduced(peer.address, peer.flags, wp.key)

    def peer_closed(self, wp: WirePeer) -> None:
        self.state.peer_left(wp.key)

    # ------------------------------------------------------------------ initiating

    def dial_failed(self, address: PeerAddress) -> None:
        """Our dial to ``address`` failed: a peer that introduced it may punch a hole to it."""
        via = self.state.relay_for(address, self.host.now())
        if via is None:
            return
        wp = self.swarm.peers.get(via)  # type: ignore[call-overload]
        if wp is not None and self._request(wp, address):
            log.debug("%s: asked %s for a rendezvous with %s", self.host.name, wp.address, address)

    def rendezvous(self, target: PeerAddress, via: Hashable | None = None) -> bool:
        """Ask a connected peer to relay a hole punch to ``target``: ``via`` (a peer key), or else the
        peer that introduced ``target``, or else any other that offered ``ut_holepunch``.  Returns
        whether a ``rendezvous`` went out; the relay's ``error``, if any, comes back as a
        :class:`~torrentgoat.torrent.events.HolepunchFailed` event."""
        relays = [wp for wp in self.swarm.live_peers() if wp.driver.engine.peer_supports_holepunch]
        if via is not None:
            relays = [wp for wp in relays if wp.key == via]
        else:
            relays = [wp for wp in relays if target not in self.view(wp).endpoints]
            introducer = self.state.introducer(target)
            relays.sort(key=lambda wp: wp.key != introducer)  # the peer that told us about it first
        return bool(relays) and self._request(relays[0], target)

    def _request(self, wp: WirePeer, target: PeerAddress) -> bool:
        if self._send(wp, Holepunch(msg_type=HolepunchType.RENDEZVOUS, address=target)):
            self.rendezvous_sent += 1
            return True
        return False
