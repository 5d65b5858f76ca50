"""The torrent's side of every wire connection (level L5): routes engine events, keeps requests flowing.

:class:`PeerExchange` is the :class:`~torrentgoat.aio.peer.PeerHandler` of a torrent's drivers.  Each
event of a wire engine (:mod:`torrentgoat.wire.events`) lands in :meth:`PeerExchange.peer_event`, which
tells the part it concerns: blocks go to the :class:`~torrentgoat.torrent.blocks.BlockFlow`, requests
to the uploader, haves and bitfields to the picker and the super-seeder, interest to the choke
scheduler, metadata (BEP 9) to the fetcher, ``ut_holepunch`` (BEP 55) and the introductions PEX makes
to the hole-punching part.  How many requests to keep in flight, which blocks to ask
for, when to be interested, how to back off from a rejecting peer and when a peer is snubbed are the
pure rules of :mod:`torrentgoat.torrent.policy`; this module applies them to the engines.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

from torrentgoat.aio.peer import PeerDriver
from torrentgoat.errors import LocalProtocolError
from torrentgoat.primitives import BlockRef, PeerAddress
from torrentgoat.torrent.blocks import BlockFlow
from torrentgoat.torrent.choking import ChokeScheduler
from torrentgoat.torrent.connections import Connections
from torrentgoat.torrent.events import PeerConnected
from torrentgoat.torrent.handle import TorrentHandle
from torrentgoat.torrent.hashexchange import HashExchange
from torrentgoat.torrent.holepunch import Holepunching
from torrentgoat.torrent.policy import (
    block_arrived,
    check_snub,
    expire_refusals,
    pick_request_spans,
    refill_due,
    request_budget,
    request_rejected,
    requestable_pieces,
    wants_pieces,
)
from torrentgoat.torrent.swarm import Swarm
from torrentgoat.torrent.upload import Uploader
from torrentgoat.torrent.wirepeer import WirePeer
from torrentgoat.wire.events import (
    AllowedFastReceived,
    BitfieldReceived,
    BlockReceived,
    BlockRequested,
    BlocksReceived,
    BlocksRequested,
    ConnectionTimedOut,
    DontHaveReceived,
    Event,
    ExtensionHandshakeReceived,
    HandshakeReceived,
    HashesReceived,
    HashRejected,
    HashRequested,
    HaveReceived,
    HolepunchReceived,
    MetadataPieceReceived,
    MetadataRejected,
    MetadataRequested,
    PeerChoked,
    PeerInterested,
    PeerNotInterested,
    PeerUnchoked,
    PexReceived,
    PortReceived,
    RequestRejected,
)
from torrentgoat.wire.messages import Have, Interested, MetadataRequest, NotInterested
from torrentgoat.wire.metadata import MetadataFetcher, MetadataServer
from torrentgoat.wire.pex import pex_flags

__all__ = ["PeerExchange"]

log = logging.getLogger("torrentgoat.torrent")


class PeerExchange:
    """Handles the events of a torrent's wire connections and keeps their request pipelines full."""

    def __init__(
        self,
        swarm: Swarm,
        host: TorrentHandle,
        *,
        blocks: BlockFlow,
        hashes: HashExchange,
        choking: ChokeScheduler,
        metadata_received: Callable[[bytes], None],
    ) -> None:
        self.swarm = swarm
        self.host = host
        self.blocks = blocks
        self.hashes = hashes
        """BEP 52 hash requests, piece layers from peers (v2 and hybrid torrents)."""
        self.choking = choking
        self.connections: Connections | None = None
        """Set by the torrent right after construction (the two refer to each other)."""
        self.holepunch: Holepunching | None = None
        """BEP 55 (set by the torrent right after construction)."""
        self.uploader: Uploader | None = None
        """Serves block requests once the data is known (after the check)."""
        info = swarm.info
        self.fetcher = (
            MetadataFetcher(host.info_hash, info_hash_v2=host.info_hashes.v2) if info is None else None
        )
        """BEP 9: fetches a magnet's info dictionary from peers (None once known)."""
        self.metadata = MetadataServer(info.raw if info is not None else None)
        self._metadata_received = metadata_received

    # ------------------------------------------------------------------ PeerHandler

    def peer_event(self, peer: PeerDriver, event: Event) -> None:
        wp = self.swarm.peers.get(peer.id)
        if wp is None:
            return
        swarm = self.swarm
        engine = peer.engine
        match event:
            case BlocksReceived(blocks=blocks):
                size = self.blocks.deliver_blocks(wp.key, blocks)
                now = self.host.now()
                wp.down.add(size, now)
                block_arrived(wp.requests, now)
                wp.blocks_since_fill += len(blocks)
                wp.got_blocks = True  # the pipeline is refilled after the socket read (peer_pumped)
            case BlockReceived(index=index, begin=begin, data=data):
                now = self.host.now()
                wp.down.add(len(data), now)
                block_arrived(wp.requests, now)
                wp.blocks_since_fill += 1
                wp.got_blocks = True  # the pipeline is refilled after the socket read (peer_pumped)
                self.blocks.deliver(wp.key, index, begin, data)
            case BlocksRequested(requests=requests):
                if self.uploader is not None:
                    self.uploader.on_requests(wp, requests)
            case BlockRequested(index=index, begin=begin, length=length):
                if self.uploader is not None:
                    self.uploader.on_request(wp, BlockRef(index, begin, length))
            case HaveReceived(index=index):
                if swarm.superseeding is not None:
                    swarm.superseeding.peer_have(wp, index)
                if swarm.picker is not None:
                    if wp.joined:
                        swarm.picker.peer_have(wp.key, index)
                    else:
                        self.join(wp)
                    self.update_interest(wp)
                    self.fill_requests(wp)
                if self.hashes.layers_missing:
                    self.hashes.peer_joined(wp)
                self._drop_if_both_seeds(wp)
            case BitfieldReceived():
                if swarm.superseeding is not None:
                    swarm.superseeding.peer_ready(wp)
                if self.uploader is not None:
                    self.uploader.offer_allowed_fast(wp)
                if swarm.picker is not None:
                    if wp.joined:
                        swarm.picker.peer_left(wp.key)
                        wp.joined = False
                    self.join(wp)
                    self.update_interest(wp)
                self.hashes.peer_joined(wp)
                self._drop_if_both_seeds(wp)
            case DontHaveReceived(index=index, dropped=dropped):
                if swarm.picker is not None:  # BEP 54: availability down, its requests given up
                    if wp.joined:
                        swarm.picker.peer_lost(wp.key, index)
                    for block in dropped:
                        swarm.picker.request_cancelled(wp.key, block)
                    self.update_interest(wp)
                    self.fill_requests(wp)
            case PeerUnchoked() | AllowedFastReceived():
                self.fill_requests(wp)
            case PeerChoked(dropped=dropped):
                if swarm.picker is not None:
                    for block in dropped:
                        swarm.picker.request_cancelled(wp.key, block)
            case RequestRejected(index=index, begin=begin, length=length):
                if swarm.picker is not None:
                    swarm.picker.request_rejected(wp.key, BlockRef(index, begin, length))
                request_rejected(wp.requests, index, peer_choking=engine.peer_choking, now=self.host.now())
            case PeerInterested():
                if swarm.have is not None:
                    self.choking.peer_interested(wp, swarm.peers.values(), self.host.now())
            case PeerNotInterested():
                if wp.unchoked_since is not None:
                    self.rechoke()  # give the freed slot away at once
            case HandshakeReceived(handshake=handshake):
                assert self.connections is not None
                if handshake.peer_id == self.host.ctx.peer_id:
                    self.connections.ourselves(peer)
                    return
                if not self.connections.survives_duplicate(wp):
                    return
                if swarm.superseeding is not None:
                    swarm.superseeding.peer_ready(wp)
                if peer.address is not None:
                    self.host.emit(PeerConnected(address=peer.address, client="", outgoing=True))
            case ExtensionHandshakeReceived(handshake=ext):
                wp.client = ext.v or ""
                fetcher = self.fetcher
                if fetcher is not None and ext.metadata_size and "ut_metadata" in engine.peer_ext_ids:
                    if fetcher.add_peer(wp.key, ext.metadata_size):
                        self.request_metadata(wp)
            case MetadataRequested(piece=piece):
                engine.send(self.metadata.respond(piece))
            case MetadataPieceReceived(piece=piece, total_size=total, data=data):
                if self.fetcher is not None:
                    raw = self.fetcher.on_data(wp.key, piece, total, data)
                    if raw is not None:
                        self._metadata_received(raw)
                    else:
                        self.request_metadata(wp)
            case MetadataRejected(piece=piece):
                if self.fetcher is not None:
                    self.fetcher.on_reject(wp.key, piece)
            case PexReceived(added=added):
                info = swarm.info
                if not (info is not None and info.private) and self.host.config.pex:
                    if self.holepunch is not None:
                        self.holepunch.pex_received(wp, added)
                    self.host.add_peers([p.address for p in added], "pex")
            case HashRequested(request=request):
                self.hashes.on_request(wp, request)
            case HashesReceived(hashes=hashes):
                self.hashes.on_hashes(wp, hashes)
            case HashRejected(reject=reject):
                self.hashes.on_reject(wp, reject)
            case HolepunchReceived(message=message):
                if self.holepunch is not None:
                    self.holepunch.on_message(wp, message)
            case PortReceived(port=port):
                add_node = self.host.ctx.add_dht_node
                if add_node is not None and peer.address is not None and 0 < port < 65536:
                    add_node(PeerAddress(peer.address.host, port))
            case ConnectionTimedOut(reason=reason):
                peer.close(reason)
            case _:
                pass

    def peer_pumped(self, peer: PeerDriver) -> None:
        """After all events of one socket read: refill the peer's request pipeline once, and a deep
        one only every :data:`~torrentgoat.torrent.policy.REFILL_BATCH` blocks (asking the picker for
        many blocks at a time costs far less than one call per received block or per read)."""
        wp = self.swarm.peers.get(peer.id)
        if wp is not None and wp.got_blocks:
            wp.got_blocks = False
            if refill_due(wp.blocks_since_fill, peer.engine.outstanding_count):
                self.fill_requests(wp)

    def peer_writable(self, peer: PeerDriver) -> None:
        wp = self.swarm.peers.get(peer.id)
        if wp is not None:
            wp.writable.set()

    def peer_closed(self, peer: PeerDriver, reason: str) -> None:
        swarm = self.swarm
        wp = swarm.peers.pop(peer.id, None)
        if wp is None:
            return
        log.debug("%s: peer %s closed: %s", self.host.name, peer.address, reason)
        if swarm.picker is not None:
            if wp.joined:
                swarm.picker.peer_left(wp.key)
            else:
                swarm.picker.release_peer(wp.key)
        if self.fetcher is not None:
            self.fetcher.remove_peer(wp.key)
        self.hashes.peer_closed(wp)
        if self.holepunch is not None:
            self.holepunch.peer_closed(wp)
        if swarm.superseeding is not None:
            swarm.superseeding.peer_closed(wp)
        wp.upload_queue.clear()
        wp.writable.set()
        if wp.unchoked_since is not None and not self.host.stopping:
            self.rechoke()  # its upload slot goes to someone else now
        assert self.connections is not None
        self.connections.closed(peer, reason)

    # ------------------------------------------------------------------ requests and interest

    def join(self, wp: WirePeer) -> None:
        """Count the peer's have-set in the picker's availability (once it is known)."""
        assert self.swarm.picker is not None
        have = wp.pieces()
        if have is None:
            return
        self.swarm.picker.peer_joined(wp.key, have)
        wp.joined = True

    def update_interest(self, wp: WirePeer) -> None:
        """BEP 3: tell the peer whether we want any of its pieces."""
        if self.swarm.picker is None or wp.driver.closed or not wp.driver.engine.handshake_complete:
            return
        interested = wants_pieces(self.swarm.picker, wp.pieces())
        engine = wp.driver.engine
        if interested and not engine.am_interested:
            engine.send(Interested())
        elif not interested and engine.am_interested:
            engine.send(NotInterested())

    def fill_requests(self, wp: WirePeer) -> None:
        """Top up the peer's request pipeline to its queue target (the download hot path)."""
        picker = self.swarm.picker
        if picker is None:
            return
        engine = wp.driver.engine
        if not engine.am_interested or wp.driver.closed:
            return
        choked = engine.peer_choking
        if choked and not engine.peer_allowed_fast:
            return
        have = wp.pieces()
        if have is None:
            return
        now = self.host.now()
        state = wp.requests
        wp.blocks_since_fill = 0
        want = request_budget(
            state,
            self.host.config,
            rate=wp.down.rate(now),
            outstanding=engine.outstanding_count,
            limit=engine.request_limit,
            now=now,
        )
        if want <= 0:
            return
        refused = state.refused
        if self.swarm.unverifiable:  # BEP 52: no piece layer yet, so no way to check them
            refused = {**refused, **dict.fromkeys(self.swarm.unverifiable, 0.0)}
        pieces = requestable_pieces(
            have, choked=choked, allowed_fast=engine.peer_allowed_fast, refused=refused
        )
        for index, begin, length in engine.send_requests(
            pick_request_spans(picker, wp.key, pieces, want, now=now)
        ):
            picker.request_cancelled(wp.key, BlockRef(index, begin, length))
        if state.last_request_at is None:
            state.last_request_at = now

    def refill_all(self) -> None:
        """Give every peer new requests (after a failed piece freed its blocks)."""
        for wp in self.swarm.live_peers():
            self.fill_requests(wp)
            wp.driver.flush()

    def announce(self, index: int) -> None:
        """Piece ``index`` verified: ``have`` to every peer (BEP 3), then interest and requests."""
        for wp in self.swarm.live_peers():
            engine = wp.driver.engine
            if not engine.handshake_complete or engine.geometry is None:
                continue
            engine.send(Have(index=index))
            self.update_interest(wp)
            self.fill_requests(wp)
            wp.driver.flush()

    def completed(self) -> None:
        """Every wanted piece is verified: no longer interested; two seeds part."""
        for wp in self.swarm.live_peers():
            self.update_interest(wp)
            self._drop_if_both_seeds(wp)
            wp.driver.flush()

    def _drop_if_both_seeds(self, wp: WirePeer) -> None:
        """Two seeds have nothing to say to each other -- but piece layers, while we lack some (BEP 52:
        a seed from a magnet needs them to answer v2 peers' hash requests)."""
        if not self.host.is_complete or wp.driver.closed or self.hashes.layers_missing:
            return
        have = wp.pieces()
        if have is not None and have.complete:
            wp.close("both sides are seeds")

    def rechoke(self) -> None:
        """A choker round now (not waiting for the next tick)."""
        if self.swarm.have is not None:
            self.choking.run(self.swarm.peers.values(), seeding=self.host.is_complete, now=self.host.now())

    def request_metadata(self, wp: WirePeer) -> None:
        """BEP 9: ask the peer for the metadata pieces the fetcher assigns it."""
        fetcher = self.fetcher
        if fetcher is None:
            return
        now = self.host.now()
        while (piece := fetcher.next_request(wp.key, now)) is not None:
            wp.driver.engine.send(MetadataRequest(piece=piece))

    # ------------------------------------------------------------------ once a second

    def tick(self, now: float) -> tuple[float, float]:
        """Snub detection, reject expiry, refills, metadata retries, PEX; returns the download and
        upload rates summed over the peers."""
        picker = self.swarm.picker
        config = self.host.config
        info = self.swarm.info
        pex = config.pex and not (info is not None and info.private)
        down_rate = up_rate = 0.0
        for wp in self.swarm.live_peers():
            engine = wp.driver.engine
            down_rate += wp.down.rate(now)
            up_rate += wp.up.rate(now)
            if picker is not None and check_snub(
                wp.requests, config, outstanding=engine.outstanding_count, now=now
            ):
                picker.peer_snubbed(wp.key)
                log.debug("%s: peer %s snubbed", self.host.name, wp.address)
            expire_refusals(wp.requests, now)
            if picker is not None:
                self.fill_requests(wp)
            if self.fetcher is not None:
                self.fetcher.expire(now)
                self.request_metadata(wp)
            self.hashes.pump(wp)
            if pex and engine.handshake_complete and "ut_pex" in engine.peer_ext_ids and wp.pex.due(now):
                self._send_pex(wp, now)
            wp.driver.flush()
        return down_rate, up_rate

    def _send_pex(self, wp: WirePeer, now: float) -> None:
        """BEP 11: the connected peers others can reach, with their flags (:func:`pex_flags`)."""
        current = {
            address: self._pex_flags(other)
            for other in self.swarm.peers.values()
            if other is not wp and (address := other.listen_address()) is not None
        }
        message = wp.pex.next_message(current, now)
        if message is not None:
            with contextlib.suppress(LocalProtocolError):
                wp.driver.engine.send(message)

    @staticmethod
    def _pex_flags(wp: WirePeer) -> int:
        have = wp.pieces()
        return pex_flags(
            encrypted=wp.encryption != "none",
            seed=have is not None and have.complete,
            utp=wp.transport == "utp",
            holepunch=wp.driver.engine.peer_supports_holepunch,
            reachable=wp.driver.outgoing,
        )
