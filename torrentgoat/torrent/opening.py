"""What a torrent's new wire connections open with (level L5).

Every wire engine of a torrent is set up here: the info-hash (an incoming peer of a hybrid torrent gets
the one it asked for, v1 or v2), the piece geometry and the metadata size once known, the wire options
(no PEX and no hole punching on a private torrent, BEP 27: both hand out peer addresses the tracker did
not; BEP 52 hash messages and the v2 handshake bit on a v2 or hybrid torrent), and the have-set the connection
advertises and serves -- ours, or while super-seeding (BEP 16) only the pieces revealed on that
connection.  Outgoing engines are built with :meth:`Opening.outgoing`, incoming ones (their handshake
named our info-hash) are completed with :meth:`Opening.accept`, and connections that met us before a
magnet's metadata arrived get it through :meth:`Opening.metadata_known`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import replace

from torrentgoat.bitfield import Bitfield
from torrentgoat.geometry import PieceGeometry
from torrentgoat.primitives import InfoHash, PeerAddress
from torrentgoat.torrent.handle import TorrentHandle
from torrentgoat.torrent.swarm import Swarm
from torrentgoat.torrent.wirepeer import WirePeer
from torrentgoat.wire.connection import PeerConnection, WireConfig
from torrentgoat.wire.hashes import supports_v2
from torrentgoat.wire.messages import Have

__all__ = ["Opening"]


def _packed_ip(address: PeerAddress | None) -> bytes | None:
    if address is None:
        return None
    try:
        return ipaddress.ip_address(address.host).packed
    except ValueError:
        return None


class Opening:
    """Builds and completes the wire engines of one torrent."""

    def __init__(self, swarm: Swarm, host: TorrentHandle) -> None:
        self.swarm = swarm
        self.host = host

    @property
    def ready(self) -> bool:
        """The metadata is known and the check ran: connections can exchange pieces."""
        return self.swarm.info is not None and self.swarm.have is not None

    def _bep52(self) -> bool | None:
        """Whether the torrent is v2 or hybrid (BEP 52 hash messages); ``None`` while a v1 magnet's
        metadata is unknown (it may turn out a hybrid)."""
        info = self.swarm.info
        if info is not None:
            return info.v2 is not None
        return True if self.host.info_hashes.has_v2 else None

    def _upgrade(self) -> InfoHash | None:
        """A hybrid's truncated v2 info-hash, when connections start on its v1 one (BEP 52 "Upgrade
        Path": a peer asked with v1 and the v2 bit may answer with it, and we answer such peers with it)."""
        hashes = self.host.info_hashes
        if hashes.v1 is None or hashes.v2 is None or self.host.info_hash != hashes.v1:
            return None
        return hashes.v2.truncated

    def _wire_config(self) -> WireConfig:
        wire = self.host.ctx.wire
        info = self.swarm.info
        if info is not None and info.private and (wire.ut_pex or wire.ut_holepunch):
            wire = replace(wire, ut_pex=False, ut_holepunch=False)
        bep52 = self._bep52()
        if wire.bep52 != bep52:
            wire = replace(wire, bep52=bep52)
        return wire

    def _have_fn(self) -> Bitfield | None:
        return self.swarm.have

    def _have_source(self) -> Callable[[], Bitfield | None]:
        """Our have-set, or while super-seeding (BEP 16) only the pieces revealed on one connection
        (then :meth:`SuperSeeding.attach` the engine)."""
        ss = self.swarm.superseeding
        return ss.view() if ss is not None and ss.active else self._have_fn

    def _geometry(self) -> PieceGeometry | None:
        info = self.swarm.info
        return info.geometry if info is not None and self.swarm.have is not None else None

    def _metadata_size(self) -> int | None:
        info = self.swarm.info
        return len(info.raw) if info is not None else None

    def _attach(self, engine: PeerConnection, source: Callable[[], Bitfield | None] | None) -> None:
        engine.batch_blocks = True  # blocks of one socket read as one event (PeerExchange handles both)
        engine.batch_requests = True  # and the peer's requests of one read
        if source is not None and self.swarm.superseeding is not None:
            self.swarm.superseeding.attach(engine, source)

    def outgoing(self, address: PeerAddress | None, *, info_hash: InfoHash | None = None) -> PeerConnection:
        """The engine of a connection we dial (it queues our handshake at once), with the torrent's
        info-hash or ``info_hash``, another of its swarm ids (a hybrid's v2 one: the peer was found in
        the v2 swarm, BEP 52; no upgrade is offered then, the connection starts in the v2 swarm)."""
        host = self.host
        source = self._have_source() if self.ready else None
        dial = info_hash if info_hash is not None and host.info_hashes.matches(info_hash) else host.info_hash
        engine = PeerConnection(
            peer_id=host.ctx.peer_id,
            now=host.now(),
            info_hash=dial,
            have=source,
            geometry=self._geometry(),
            metadata_size=self._metadata_size(),
            listen_port=host.ctx.listen_port or None,
            peer_ip=_packed_ip(address),
            config=self._wire_config(),
            upgrade_info_hash=self._upgrade() if dial == host.info_hash else None,
        )
        self._attach(engine, source)
        return engine

    def accept(self, engine: PeerConnection) -> None:
        """Complete an incoming engine whose handshake asked for one of our info-hashes (sends ours,
        with the same info-hash: a hybrid answers in the swarm the peer chose, BEP 52)."""
        source = self._have_source() if self.ready else None
        handshake = engine.peer_handshake
        asked = handshake.info_hash if handshake is not None else self.host.info_hash
        if not self.host.info_hashes.matches(asked):
            asked = self.host.info_hash
        upgrade = self._upgrade()
        if upgrade is not None and not (handshake is not None and supports_v2(handshake.reserved)):
            upgrade = None
        engine.accept(
            info_hash=asked,
            have=source,
            geometry=self._geometry(),
            metadata_size=self._metadata_size(),
            config=self._wire_config(),
            reply_info_hash=upgrade,
        )
        self._attach(engine, source)

    def metadata_known(self, wp: WirePeer) -> None:
        """The check ran after a magnet's metadata arrived (or at start): give a connection that met us
        before that the geometry, and tell it what we have (our opening said "have none").  Raises
        :class:`~torrentgoat.errors.RemoteProtocolError` when what it sent so far does not fit."""
        engine = wp.driver.engine
        swarm = self.swarm
        engine.hash_messages = self._bep52()
        if engine.geometry is None:
            geometry = self._geometry()
            assert geometry is not None
            source = self._have_source()
            engine.set_metadata(geometry, source, metadata_size=self._metadata_size())
            self._attach(engine, source)
            if swarm.superseeding is not None:
                swarm.superseeding.peer_ready(wp)
        if engine.handshake_complete and swarm.superseeding is None and swarm.have is not None:
            for index in swarm.have:
                engine.send(Have(index=index))
