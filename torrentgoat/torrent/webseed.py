"""Web seeds as a block source of a torrent (level L5): BEP 19 over :mod:`torrentgoat.aio.webseed`.

A :class:`WebSeedSource` serves a torrent from its ``url-list`` (or a magnet's ``ws=``).  Each URL is a
:class:`WebSeedPeer`, one more implementation of :class:`~torrentgoat.torrent.peer.Peer` beside the
wire connections: it joins the torrent's picker as a seed (BEP 19: "the server acts as a permanently
unchoked seed") through :meth:`TorrentHandle.attach_peer`, and a few workers per URL loop:

1. pick up to ``request_bytes`` worth of blocks (:meth:`TorrentHandle.pick_blocks`: started pieces
   first, then whole new pieces in the torrent's strategy order; in endgame nothing already in flight
   elsewhere, since an HTTP range cannot be cancelled);
2. merge the blocks into runs of consecutive torrent bytes and fetch each run with range requests
   (pad files are filled with zeros locally, never requested);
3. deliver the blocks (:meth:`TorrentHandle.deliver_block`): they are hashed, written and announced
   like a wire peer's; blocks not delivered (HTTP error, back-off) go back to the picker
   (:meth:`TorrentHandle.release_blocks`) for peers or other URLs.

A URL is dropped for this torrent when a piece it contributed to fails its hash check (BEP 19), or
when it breaks a rule (:class:`~torrentgoat.aio.webseed.WebSeedRejected`).  The source returns when
the torrent is complete or every URL is dropped.  Memory: at most ``max_in_flight_bytes`` of
response bodies are held at once, whatever the number of URLs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

from torrentgoat.aio.peer import next_peer_key
from torrentgoat.aio.webseed import (
    WebSeedClient,
    WebSeedConfig,
    WebSeedRejected,
    WebSeedRetryLater,
    WebSeedStats,
)
from torrentgoat.bitfield import Bitfield
from torrentgoat.errors import ConfigError, WebSeedError
from torrentgoat.metainfo import InfoDict
from torrentgoat.primitives import BLOCK_SIZE, BlockRef, PeerAddress
from torrentgoat.torrent.handle import PeerSource, TorrentHandle

__all__ = ["HTTPSessionSource", "WebSeedPeer", "WebSeedSource", "block_runs"]

log = logging.getLogger("torrentgoat.webseed")

if TYPE_CHECKING:  # aiohttp is imported by the web seed client when a torrent has web seeds
    import aiohttp

HTTPSessionSource: TypeAlias = "aiohttp.ClientSession | Callable[[], Awaitable[aiohttp.ClientSession]]"
"""An aiohttp session, or an async function returning one (e.g. ``Session.http``)."""

_IDLE_MIN = 0.05
_IDLE_MAX = 0.5


@dataclass(frozen=True, slots=True, kw_only=True)
class _Run:
    """Consecutive torrent bytes covering some picked blocks."""

    start: int
    length: int
    blocks: tuple[BlockRef, ...]


def block_runs(info: InfoDict, blocks: Sequence[BlockRef], *, max_bytes: int) -> list[_Run]:
    """Group blocks into runs of consecutive torrent bytes of at most ``max_bytes`` (at least one block).

    Blocks of one piece picked together are consecutive, and so are the end of a piece and the
    start of the next: each run is one range request per file it touches.
    """
    geometry = info.geometry
    ordered = sorted(blocks, key=lambda b: (b.piece, b.begin))
    runs: list[_Run] = []
    current: list[BlockRef] = []
    start = end = 0
    for block in ordered:
        offset = geometry.piece_offset(block.piece) + block.begin
        if current and offset == end and end + block.length - start <= max_bytes:
            current.append(block)
            end += block.length
            continue
        if current:
            runs.append(_Run(start=start, length=end - start, blocks=tuple(current)))
        current = [block]
        start, end = offset, offset + block.length
    if current:
        runs.append(_Run(start=start, length=end - start, blocks=tuple(current)))
    return runs


class WebSeedPeer:
    """One web seed URL as a :class:`~torrentgoat.torrent.peer.Peer` of a torrent: it has every piece,
    its requests cannot be cancelled, and a piece it contributed to that fails its hash check drops
    the URL (BEP 19: its data will not get better)."""

    cancellable = False
    address: PeerAddress | None = None

    def __init__(self, client: WebSeedClient, on_dropped: Callable[[WebSeedPeer, str], None]) -> None:
        self.key = next_peer_key()
        self.client = client
        self._full = Bitfield(client.info.num_pieces, full=True)
        self._on_dropped = on_dropped

    @property
    def url(self) -> str:
        return self.client.url

    def pieces(self) -> Bitfield:
        return self._full

    def cancel(self, block: BlockRef) -> None:
        pass  # an HTTP range, once asked, is fetched whole

    def piece_failed(self, index: int, *, sole: bool) -> bool:
        self.close(f"piece {index} it contributed to failed its hash check")
        return False

    def close(self, reason: str) -> None:
        if not self.client.dropped:
            log.warning("web seed %s dropped: %s (BEP 19)", self.url, reason)
            self.client.drop(reason)
        self._on_dropped(self, reason)

    def __repr__(self) -> str:
        return f"<WebSeedPeer #{self.key} {self.url}>"


class WebSeedSource(PeerSource):
    """Downloads a torrent's blocks from BEP 19 web seeds, alongside (or instead of) peers.

    ``urls``: the torrent's ``url-list`` / magnet ``ws=`` entries (duplicates and non-HTTP URLs are
    ignored, the latter with a warning).  ``http_session``: an :class:`aiohttp.ClientSession` the
    caller owns, or an async function returning one.  ``connections_per_url``: concurrent requests
    to one URL (2..4 is polite).  ``request_bytes``: blocks picked per request round.
    ``max_in_flight_bytes``: response bytes held at once over all URLs.
    """

    name = "webseed"

    def __init__(
        self,
        urls: Sequence[str],
        http_session: HTTPSessionSource,
        *,
        config: WebSeedConfig | None = None,
        connections_per_url: int = 3,
        request_bytes: int = 4 * 1024 * 1024,
        max_in_flight_bytes: int = 16 * 1024 * 1024,
    ) -> None:
        if not 1 <= connections_per_url <= 16:
            raise ConfigError(f"connections_per_url must be in 1..16, got {connections_per_url}")
        if request_bytes < BLOCK_SIZE or max_in_flight_bytes < BLOCK_SIZE:
            raise ConfigError("request_bytes and max_in_flight_bytes must be at least one block (16 KiB)")
        self.urls = list(dict.fromkeys(u for u in urls if u))
        self.http_session = http_session
        self.config = config or WebSeedConfig()
        self.connections_per_url = connections_per_url
        self.request_bytes = min(request_bytes, self.config.max_request_bytes)
        self.max_in_flight_bytes = max_in_flight_bytes
        self.clients: dict[str, WebSeedClient] = {}
        """The URLs in use (and dropped ones, with ``dropped`` set), once metadata is known."""
        self._workers: dict[str, list[asyncio.Task[None]]] = {}
        self._torrent: TorrentHandle | None = None
        self._completed = False

    # ------------------------------------------------------------------ PeerSource

    def completed(self) -> None:
        self._completed = True

    async def stopped(self) -> None:
        tasks = [t for ts in self._workers.values() for t in ts if not t.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def stats(self) -> dict[str, WebSeedStats]:
        """Counters per URL."""
        return {url: client.stats for url, client in self.clients.items()}

    def dropped(self) -> dict[str, str]:
        """URLs dropped for this torrent and why."""
        return {url: c.dropped for url, c in self.clients.items() if c.dropped}

    def status(self) -> str:
        dropped = self.dropped()
        text = f"web seeds ({len(self.urls)}): {len(self.clients) - len(dropped)} in use"
        if dropped:
            text += "; dropped " + "; ".join(f"{url}: {why}" for url, why in dropped.items())
        return text

    async def run(self, torrent: TorrentHandle) -> None:
        """Serve ``torrent`` from the web seeds until it is complete or every URL is dropped."""
        if not self.urls:
            return
        info = await torrent.wait_metadata()
        session = self.http_session
        if callable(session):  # a ClientSession is not callable: a function returning one
            session = await session()
        self._torrent = torrent
        for url in self.urls:
            try:
                self.clients[url] = WebSeedClient(url, info, session, config=self.config)
            except WebSeedError as exc:
                log.warning("%s: %s", torrent.name, exc)
        if not self.clients:
            return
        workers = len(self.clients) * self.connections_per_url
        chunk = max(BLOCK_SIZE, min(self.request_bytes, self.max_in_flight_bytes // workers))
        count = max(1, chunk // BLOCK_SIZE)
        peers = [WebSeedPeer(client, self._dropped) for client in self.clients.values()]
        for peer in peers:
            torrent.attach_peer(peer)
            self._workers[peer.url] = [
                asyncio.ensure_future(self._worker(torrent, peer, count, chunk))
                for _ in range(self.connections_per_url)
            ]
        try:
            pending: set[asyncio.Task[None]] = {t for ts in self._workers.values() for t in ts}
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    error = None if task.cancelled() else task.exception()
                    if error is not None:
                        raise error  # a bug: let the torrent see it
        finally:
            await self.stopped()
            for peer in peers:
                torrent.detach_peer(peer)

    # ------------------------------------------------------------------ workers

    def _dropped(self, peer: WebSeedPeer, reason: str) -> None:
        """A URL is dropped for this torrent: its workers stop and its blocks go back to the picker."""
        for task in self._workers.get(peer.url, ()):
            if task is not asyncio.current_task():
                task.cancel()
        if self._torrent is not None:
            self._torrent.detach_peer(peer)

    @staticmethod
    def _stopping(torrent: TorrentHandle) -> bool:
        return torrent.is_complete or torrent.stopping

    async def _worker(self, torrent: TorrentHandle, peer: WebSeedPeer, count: int, chunk: int) -> None:
        client = peer.client
        loop = asyncio.get_running_loop()
        idle = _IDLE_MIN
        while not client.dropped and not self._stopping(torrent):
            wait = client.retry_at - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            blocks = torrent.pick_blocks(peer, count)
            if not blocks:
                # not ready yet (checking), or every missing block is in flight elsewhere
                await asyncio.sleep(idle)
                idle = min(idle * 2, _IDLE_MAX)
                continue
            idle = _IDLE_MIN
            await self._fetch(torrent, peer, blocks, chunk)

    async def _fetch(
        self, torrent: TorrentHandle, peer: WebSeedPeer, blocks: list[BlockRef], chunk: int
    ) -> None:
        client = peer.client
        info = client.info
        runs = block_runs(info, blocks, max_bytes=chunk)
        undelivered = list(blocks)
        try:
            for run in runs:
                if client.dropped or self._stopping(torrent):
                    return
                await torrent.ctx.download_limit.acquire(run.length)
                try:
                    data = await client.fetch(run.start, run.length)
                except WebSeedRetryLater as exc:
                    log.info("%s: %s", torrent.name, exc)
                    return
                except WebSeedRejected as exc:
                    log.warning("%s: %s", torrent.name, exc)
                    return
                if client.dropped or self._stopping(torrent):
                    return
                view = memoryview(data)
                pos = 0
                for block in run.blocks:
                    torrent.deliver_block(peer, block, view[pos : pos + block.length])
                    pos += block.length
                delivered = set(run.blocks)
                undelivered = [b for b in undelivered if b not in delivered]
        finally:
            if not torrent.stopping:
                if client.dropped:
                    torrent.detach_peer(peer)  # gives back every block of this URL
                elif undelivered:
                    torrent.release_blocks(peer, undelivered)
