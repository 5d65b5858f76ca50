"""What a torrent's new wire connections open with (level L5).

Every wire engine of a torrent is set up here: the info-hash, the piece geometry and the metadata size
once known, the wire options (no PEX on a private torrent, BEP 27), and the have-set the connection
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
from torrentgoat.primitives import PeerAddress
from torrentgoat.torrent.handle import TorrentHandle
from torrentgoat.torrent.swarm import Swarm
from torrentgoat.torrent.wirepeer import WirePeer
from torrentgoat.wire.connection import PeerConnection, WireConfig
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

    def _wire_config(self) -> WireConfig:
        wire = self.host.ctx.wire
        info = self.swarm.info
        if info is not None and info.private and wire.ut_pex:
            wire = replace(wire, ut_pex=False)
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

    def outgoing(self, address: PeerAddress | None) -> PeerConnection:
        """The engine of a connection we dial (it queues our handshake at once)."""
        host = self.host
        source = self._have_source() if self.ready else None
        engine = PeerConnection(
            peer_id=host.ctx.peer_id,
            now=host.now(),
            info_hash=host.info_hash,
            have=source,
            geometry=self._geometry(),
            metadata_size=self._metadata_size(),
            listen_port=host.ctx.listen_port or None,
            peer_ip=_packed_ip(address),
            config=self._wire_config(),
        )
        self._attach(engine, source)
        return engine

    def accept(self, engine: PeerConnection) -> None:
        """Complete an incoming engine whose handshake asked for our info-hash (sends ours)."""
        source = self._have_source() if self.ready else None
        engine.accept(
            info_hash=self.host.info_hash,
            have=source,
            geometry=self._geometry(),
            metadata_size=self._metadata_size(),
        )
        self._attach(engine, source)

    def metadata_known(self, wp: WirePeer) -> None:
        """The check ran after a magnet's metadata arrived (or at start): give a connection that met us
        before that the geometry, and tell it what we have (our opening said "have none").  Raises
        :class:`~torrentgoat.errors.RemoteProtocolError` when what it sent so far does not fit."""
        engine = wp.driver.engine
        swarm = self.swarm
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
