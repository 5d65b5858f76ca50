"""The BEP 52 hash exchange of a running torrent (level L5): the glue over the pure hash engines.

A v2 or hybrid torrent's wire peers may send ``hash request`` / ``hashes`` / ``hash reject``
(:mod:`torrentgoat.wire.hashes`); :class:`HashExchange` is where they land.  Three jobs:

* **serving** (BEP 52: "Clients must be able to service requests for hash blocks covering pieces which
  they have announced") -- a request is answered from our trees (:class:`~torrentgoat.wire.hashes.HashServer`:
  the piece layers from the .torrent or fetched, and what is above them).  A request below the piece
  layer needs the leaves of verified pieces: their data is read back and hashed once (then kept), at most
  :data:`MAX_LEAF_LOAD` bytes per request and one load per peer at a time; anything we cannot answer gets
  ``hash reject``;
* **piece layers from peers** -- a torrent whose ``info`` came without its layers (a magnet, BEP 9 moves
  only ``info``) asks peers with :class:`~torrentgoat.wire.piece_layers.PieceLayerFetcher`, runs of 512
  hashes proved up to the file's ``pieces root``.  Each verified layer goes into ``swarm.info``; until
  then the pieces of that file of a v2-only torrent are not requested (``swarm.unverifiable``) -- a
  hybrid's are checked by SHA-1 alone meanwhile (:mod:`torrentgoat.aio.hasher`);
* **hashes on demand** -- :meth:`HashExchange.fetch_hashes`: any run of any layer of a file's tree, asked
  of one peer after another until an answer proves against the ``pieces root`` (our own tree first);
* **piece layers from our own data** -- a file held whole whose layer is still missing (a hybrid magnet
  downloaded from v1-only peers, checked by SHA-1; a v2 file trusted from resume data) gets its layer
  computed from the data on disk, proved against its ``pieces root``, after the check and at completion
  (:meth:`HashExchange.derive_from_data`), so that the torrent can serve v2 peers.

A peer whose ``hashes`` do not prove, hold the wrong count, or answer nothing we asked is banned like a
peer that sent bad data (:class:`~torrentgoat.errors.InvalidHashesError`).  An answer that comes after we
gave up waiting is ignored, not held against the peer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import replace

from torrentgoat.errors import (
    HashesUnavailableError,
    InvalidHashesError,
    StorageError,
    UnsupportedV2Error,
)
from torrentgoat.merkle import (
    HASH_SIZE,
    layer_nodes,
    piece_height,
    piece_root,
    root_from_piece_layer,
    split_hashes,
    tree_height,
    verify_range,
)
from torrentgoat.metainfo_v2 import V2File
from torrentgoat.primitives import PeerAddress
from torrentgoat.torrent.handle import TorrentHandle
from torrentgoat.torrent.swarm import Swarm
from torrentgoat.torrent.wirepeer import WirePeer
from torrentgoat.wire.hashes import Hashes, HashReject, HashRequest, HashServer
from torrentgoat.wire.piece_layers import CHUNK, PieceLayerEvent, PieceLayerFetcher, PieceLayerVerified

__all__ = ["MAX_LEAF_LOAD", "PEER_TIMEOUT", "HashExchange", "aligned_runs"]

log = logging.getLogger("torrentgoat.torrent")

MAX_LEAF_LOAD = 32 * 1024 * 1024
"""Most piece data read back (and hashed) to answer one request below the piece layer."""

PEER_TIMEOUT = 10.0
"""Seconds :meth:`HashExchange.fetch_hashes` waits for one peer's answer before asking another."""

_EXPIRED_CAP = 1024

Ban = Callable[[Hashable, PeerAddress | None, str], None]


def aligned_runs(index: int, length: int, width: int) -> list[tuple[int, int]]:
    """BEP 52 requests covering nodes ``[index, index + length)`` of a layer ``width`` nodes wide (a power
    of two, padding included): ``(start, count)`` runs, ``count`` a power of two of 2..512 (at most
    ``width``), ``start`` a multiple of ``count`` ("Index MUST be a multiple of length")."""
    end = index + length
    runs: list[tuple[int, int]] = []
    pos = index
    while pos < end:
        size = min(2, width)
        start = pos - pos % size
        while size < CHUNK and size < width and start + size < end:
            size *= 2
            start = pos - pos % size
        runs.append((start, size))
        pos = start + size
    return runs


def _reject(request: HashRequest) -> HashReject:
    return HashReject(
        pieces_root=request.pieces_root,
        base_layer=request.base_layer,
        index=request.index,
        length=request.length,
        proof_layers=request.proof_layers,
    )


class HashExchange:
    """Serves, fetches and checks one torrent's merkle hashes (see the module docstring)."""

    def __init__(
        self,
        swarm: Swarm,
        host: TorrentHandle,
        *,
        ban: Ban,
        layers_changed: Callable[[], None],
    ) -> None:
        self.swarm = swarm
        self.host = host
        self._ban = ban
        self._layers_changed = layers_changed
        self.server: HashServer | None = None
        """Answers peers' requests (None for a v1 torrent, or before the metadata)."""
        self.fetcher: PieceLayerFetcher | None = None
        """Fetches missing piece layers (None when none was missing)."""
        self._pending: dict[tuple[Hashable, HashRequest], asyncio.Future[Hashes | None]] = {}
        self._expired: deque[tuple[Hashable, HashRequest]] = deque(maxlen=_EXPIRED_CAP)
        self._loading: set[Hashable] = set()
        self._peers_changed = asyncio.Event()
        self._deriving = False

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """The metadata is known and the check ran: serve what we can, fetch what is missing."""
        info = self.swarm.info
        if info is None or info.v2 is None:
            return
        self.server = HashServer(info)
        fetcher = PieceLayerFetcher(info)
        self.fetcher = None if fetcher.done else fetcher
        self._update_unverifiable()
        for wp in self.swarm.live_peers():
            self.pump(wp)
        self.derive_from_data()

    def _update_unverifiable(self) -> None:
        info = self.swarm.info
        if info is None or info.v2 is None or info.has_v1:
            self.swarm.unverifiable = frozenset()  # v1, or a hybrid: SHA-1 checks every piece meanwhile
            return
        self.swarm.unverifiable = frozenset(
            piece
            for file in info.v2.missing_piece_layers()
            for piece in range(file.first_piece, file.end_piece)
        )

    @property
    def layers_missing(self) -> int:
        """Piece-layer runs still to fetch from peers (0 when none is missing)."""
        return self.fetcher.runs_left if self.fetcher is not None else 0

    def speaks_v2(self, wp: WirePeer) -> bool:
        """Whether the connection is in the torrent's v2 swarm (handshakes with the truncated SHA-256,
        or a hybrid's v1 handshake upgraded to it, BEP 52), so that hash requests may go to it:
        libtorrent drops a peer that sends them on a connection it knows as v1."""
        engine = wp.driver.engine
        hashes = self.host.info_hashes
        if hashes.v2 is None or not engine.hash_messages or not engine.handshake_complete:
            return False
        return hashes.v1 is None or engine.info_hash == hashes.v2.truncated

    # ------------------------------------------------------------------ wire events

    def peer_joined(self, wp: WirePeer) -> None:
        """A peer's pieces became known (or changed): ask it for layers; wake waiting fetches."""
        self._peers_changed.set()
        self.pump(wp)

    def peer_closed(self, wp: WirePeer) -> None:
        if self.fetcher is not None:
            self.fetcher.peer_gone(wp.key)
        self._loading.discard(wp.key)
        for key in [k for k in self._pending if k[0] == wp.key]:
            future = self._pending.pop(key)
            if not future.done():
                future.set_result(None)

    def on_request(self, wp: WirePeer, request: HashRequest) -> None:
        """A peer's ``hash request``: ``hashes`` from our trees, leaves loaded first, or ``hash reject``."""
        engine = wp.driver.engine
        server = self.server
        if server is None:
            engine.send(_reject(request))
            return
        reply = server.respond(request)
        if isinstance(reply, HashReject):
            pieces = self._leaf_pieces(request)
            if pieces and wp.key not in self._loading:
                self._loading.add(wp.key)
                self.host.spawn(self._serve_leaves(wp, request, server, pieces))
                return
        engine.send(reply)

    def on_hashes(self, wp: WirePeer, message: Hashes) -> None:
        key = (wp.key, message.request)
        future = self._pending.pop(key, None)
        if future is not None:
            if not future.done():
                future.set_result(message)
            return
        if key in self._expired:
            return  # an answer after we stopped waiting: not the peer's fault
        try:
            if self.fetcher is None:
                raise InvalidHashesError("hashes answer no hash request we sent this peer")
            events = self.fetcher.receive_hashes(wp.key, message, self.host.now())
        except InvalidHashesError as exc:
            self._ban(wp.key, wp.address, str(exc))
            return
        self._apply(events)
        self.pump(wp)

    def on_reject(self, wp: WirePeer, message: HashReject) -> None:
        key = (wp.key, message.request)
        future = self._pending.pop(key, None)
        if future is not None:
            if not future.done():
                future.set_result(None)
            return
        if key in self._expired:
            return
        try:
            if self.fetcher is None:
                raise InvalidHashesError("hash reject of a request we never sent")
            self.fetcher.receive_reject(wp.key, message)
        except InvalidHashesError as exc:
            self._ban(wp.key, wp.address, str(exc))
            return
        self.pump_all()

    # ------------------------------------------------------------------ piece layers

    def pump(self, wp: WirePeer) -> None:
        """Send ``wp`` the piece-layer requests the fetcher assigns it."""
        fetcher = self.fetcher
        if fetcher is None or fetcher.done or wp.driver.closed:
            return
        engine = wp.driver.engine
        have = wp.pieces()
        if not self.speaks_v2(wp) or have is None:
            return
        now = self.host.now()
        sent = False
        while (request := fetcher.next_request(wp.key, now, peer_has=have.__contains__)) is not None:
            engine.send(request)
            sent = True
        if sent:
            wp.driver.flush()

    def pump_all(self) -> None:
        """Once a second, and after a reject: runs that timed out or were refused go to other peers."""
        if self.fetcher is not None and not self.fetcher.done:
            for wp in self.swarm.live_peers():
                self.pump(wp)

    def _apply(self, events: list[PieceLayerEvent]) -> None:
        layers = {e.pieces_root: e.layer for e in events if isinstance(e, PieceLayerVerified)}
        if layers:
            self._learn(layers, "verified from peers")

    def _learn(self, layers: dict[bytes, bytes], how: str) -> None:
        info = self.swarm.info
        assert info is not None and info.v2 is not None
        info = replace(info, v2=info.v2.with_piece_layers(layers))
        self.swarm.info = info
        self.server = HashServer(info)
        if self.fetcher is not None:
            for root, layer in layers.items():
                self.fetcher.layer_known(root, layer)
        self._update_unverifiable()
        log.info("%s: %d piece layer(s) %s", self.host.name, len(layers), how)
        self._layers_changed()

    # ------------------------------------------------------------------ piece layers from our own data

    def derive_from_data(self) -> None:
        """Compute the missing piece layer of every file whose pieces we all hold (module docstring)."""
        info, have = self.swarm.info, self.swarm.have
        if self._deriving or info is None or info.v2 is None or have is None or self.swarm.storage is None:
            return
        files = [
            f
            for f in info.v2.missing_piece_layers()
            if all(p in have for p in range(f.first_piece, f.end_piece))
        ]
        if files:
            self._deriving = True
            self.host.spawn(self._derive(files))

    async def _derive(self, files: list[V2File]) -> None:
        layers: dict[bytes, bytes] = {}
        try:
            for file in files:
                layer = await self._layer_from_disk(file)
                if layer is not None:
                    layers[file.root] = layer
        except StorageError as exc:
            log.debug("%s: cannot read pieces back for their piece layer: %s", self.host.name, exc)
        finally:
            self._deriving = False
        info = self.swarm.info
        if info is not None and info.v2 is not None:
            layers = {r: layer for r, layer in layers.items() if r not in info.v2.piece_layers}
        if layers:
            self._learn(layers, "computed from our own data")

    async def _layer_from_disk(self, file: V2File) -> bytes | None:
        info, storage = self.swarm.info, self.swarm.storage
        assert info is not None and info.v2 is not None and storage is not None
        width = info.v2.blocks_per_piece
        nodes: list[bytes] = []
        for piece in range(file.first_piece, file.end_piece):
            data = await self.host.ctx.disk.read_piece(storage, piece)
            if data is None:
                return None
            length = min(info.piece_length, file.length - (piece - file.first_piece) * info.piece_length)
            nodes.append(await asyncio.to_thread(piece_root, memoryview(data)[:length], width))
        layer = b"".join(nodes)
        if root_from_piece_layer(layer, file.blocks, info.piece_length) != file.root:
            log.warning(
                "%s: file %d on disk does not hash to its pieces root: no piece layer from it",
                self.host.name,
                file.index,
            )
            return None
        return layer

    # ------------------------------------------------------------------ serving below the piece layer

    def _file(self, root: bytes) -> V2File | None:
        info = self.swarm.info
        return info.v2.file_for_root(root) if info is not None and info.v2 is not None else None

    def _leaf_pieces(self, request: HashRequest) -> list[int]:
        """The pieces whose leaves would let us answer ``request`` (below the piece layer, all of them
        verified here, not too much data); empty when loading them would not help."""
        info, have = self.swarm.info, self.swarm.have
        file = self._file(request.pieces_root)
        if info is None or info.v2 is None or have is None or self.swarm.storage is None or file is None:
            return []
        v2 = info.v2
        height = tree_height(file.blocks)
        level = min(piece_height(info.piece_length), height)
        if request.base_layer >= level or (v2.needs_layer(file) and file.root not in v2.piece_layers):
            return []
        first_leaf = request.index << request.base_layer
        last_leaf = min(((request.index + request.length) << request.base_layer), file.blocks) - 1
        if last_leaf < first_leaf:
            return []
        pieces = [file.first_piece + p for p in range(first_leaf >> level, (last_leaf >> level) + 1)]
        if len(pieces) * info.piece_length > MAX_LEAF_LOAD or not all(p in have for p in pieces):
            return []
        return pieces

    async def _serve_leaves(
        self, wp: WirePeer, request: HashRequest, server: HashServer, pieces: list[int]
    ) -> None:
        storage = self.swarm.storage
        try:
            assert storage is not None
            for piece in pieces:
                data = await self.host.ctx.disk.read_piece(storage, piece)
                if data is None:
                    break
                await asyncio.to_thread(server.add_piece, piece, data)
        except StorageError as exc:
            log.debug("%s: cannot read pieces back for a hash request: %s", self.host.name, exc)
        finally:
            self._loading.discard(wp.key)
        if not wp.driver.closed:
            with contextlib.suppress(Exception):
                wp.driver.engine.send(server.respond(request))
                wp.driver.flush()

    # ------------------------------------------------------------------ hashes on demand

    async def fetch_hashes(
        self, file_index: int, base_layer: int, index: int, length: int, *, timeout: float = 30.0
    ) -> list[bytes]:
        """Nodes ``[index, index + length)`` of layer ``base_layer`` (0: the 16 KiB block hashes) of file
        ``file_index``'s merkle tree, each proved against the file's ``pieces root``; see
        :meth:`torrentgoat.torrent.core.Torrent.fetch_hashes`."""
        info = self.swarm.info
        if info is None or info.v2 is None:
            raise UnsupportedV2Error("v1 torrent: it has no merkle trees to ask peers about")
        file = next((f for f in info.v2.files if f.index == file_index), None)
        if file is None:
            raise ValueError(f"file {file_index} is not a non-empty file of this v2 torrent")
        height = tree_height(file.blocks)
        if not 0 <= base_layer <= height:
            raise ValueError(f"layer {base_layer} is outside the file's tree (its root is layer {height})")
        if base_layer == height:
            if (index, length) != (0, 1):
                raise ValueError("the root layer holds one node")
            return [file.root]
        nodes = layer_nodes(file.blocks, base_layer)
        if length < 1 or index < 0 or index + length > nodes:
            raise ValueError(f"nodes {index}..{index + length - 1} are outside the layer's {nodes}")
        deadline = self.host.now() + timeout
        out: list[bytes] = []
        for start, count in aligned_runs(index, length, 1 << (height - base_layer)):
            request = HashRequest(
                pieces_root=file.root,
                base_layer=base_layer,
                index=start,
                length=count,
                proof_layers=height - base_layer - 1,
            )
            hashes = await self._fetch_run(file, request, deadline)
            lo, hi = max(index, start), min(index + length, start + count)
            out.extend(hashes[lo - start : hi - start])
        return out

    def _candidates(self, request: HashRequest, file: V2File, tried: set[Hashable]) -> list[WirePeer]:
        """Peers to ask, those holding every piece the run covers first (BEP 52: ask where the other
        side must have the data); below the piece layer only those."""
        info = self.swarm.info
        assert info is not None
        level = piece_height(info.piece_length)
        per_node = 1 << request.base_layer
        first_leaf = request.index * per_node
        last_leaf = min((request.index + request.length) * per_node, file.blocks) - 1
        span = range(file.first_piece + (first_leaf >> level), file.first_piece + (last_leaf >> level) + 1)
        holders: list[WirePeer] = []
        others: list[WirePeer] = []
        for wp in self.swarm.live_peers():
            if wp.key in tried or not self.speaks_v2(wp):
                continue
            have = wp.pieces()
            if have is not None and all(p in have for p in span):
                holders.append(wp)
            elif request.base_layer >= level:
                others.append(wp)
        return holders + others

    async def _fetch_run(self, file: V2File, request: HashRequest, deadline: float) -> list[bytes]:
        server = self.server
        if server is not None:
            local = server.respond(request)
            if isinstance(local, Hashes):
                return split_hashes(local.base_hashes)  # our own tree: verified when it was built
        height = tree_height(file.blocks)
        tried: set[Hashable] = set()
        loop = asyncio.get_running_loop()
        while True:
            left = deadline - self.host.now()
            if left <= 0:
                raise HashesUnavailableError(
                    f"no peer proved hashes {request.index}..{request.index + request.length - 1} of layer"
                    f" {request.base_layer} of file {file.index} in time ({len(tried)} asked)"
                )
            candidates = self._candidates(request, file, tried)
            if not candidates:
                self._peers_changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._peers_changed.wait(), timeout=min(left, 1.0))
                continue
            wp = candidates[0]
            tried.add(wp.key)
            key = (wp.key, request)
            future: asyncio.Future[Hashes | None] = loop.create_future()
            self._pending[key] = future
            try:
                wp.driver.engine.send(request)
                wp.driver.flush()
                reply = await asyncio.wait_for(future, timeout=min(left, PEER_TIMEOUT))
            except TimeoutError:
                self._expired.append(key)
                continue
            except Exception as exc:  # the connection failed under us
                log.debug("%s: hash request to %s failed: %s", self.host.name, wp.address, exc)
                continue
            finally:
                self._pending.pop(key, None)
            if reply is None:
                continue
            expected = (request.length + request.uncles) * HASH_SIZE
            if len(reply.hashes) != expected or not verify_range(
                file.root,
                total_height=height,
                base=request.base_layer,
                index=request.index,
                hashes=reply.base_hashes,
                uncles=reply.uncle_hashes,
            ):
                self._ban(wp.key, wp.address, "sent hashes that do not prove against the file's pieces root")
                continue
            return split_hashes(reply.base_hashes)
