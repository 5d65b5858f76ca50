"""Peer sources of a torrent (level L5): tracker tiers, the DHT and Local Service Discovery, over their
asyncio drivers.  Each announces every swarm id of the torrent: one for v1 or v2, both the SHA-1 and the
truncated SHA-256 for a hybrid (BEP 52: a hybrid joins both swarms) -- a ``btih`` magnet's v2 id too,
as soon as its metadata shows it a hybrid.  The peers each id finds are dialled with that id
(:meth:`~torrentgoat.torrent.handle.TorrentHandle.add_peers` ``swarm_id``)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from torrentgoat.aio.tracker import TrackerAnnouncer
from torrentgoat.errors import TorrentGoatError
from torrentgoat.primitives import InfoHash, PeerAddress
from torrentgoat.torrent.events import TrackerFailed
from torrentgoat.torrent.handle import PeerSource, TorrentHandle

if TYPE_CHECKING:
    from torrentgoat.aio.dht import DHTNode
    from torrentgoat.aio.lsd import LSDService

__all__ = ["DHTSource", "LSDSource", "TrackerSource"]

log = logging.getLogger("torrentgoat.sources")


class TrackerSource(PeerSource):
    """Announces to the torrent's trackers (BEP 3, BEP 12 tiers, BEP 15 UDP) for as long as it runs."""

    name = "tracker"

    def __init__(self, tiers: Sequence[Sequence[str]], session: Any) -> None:
        self.tiers = [list(t) for t in tiers]
        self.session = session
        self.announcer: TrackerAnnouncer | None = None
        """The announcer of the torrent's first swarm id (v1 when there is one)."""
        self.announcers: list[TrackerAnnouncer] = []
        """One per swarm id: a hybrid torrent is announced under its v1 and its truncated v2 info-hash
        (BEP 52), like two torrents at the same address."""
        self._completed = False

    async def run(self, torrent: TorrentHandle) -> None:
        def stats() -> tuple[int, int, int]:
            counters = torrent.counters
            left = counters.left if torrent.info is not None else 1
            return counters.uploaded, counters.downloaded, left

        http = await self.session.http()

        def start(swarm_id: InfoHash) -> TrackerAnnouncer:
            def on_peers(url: str, peers: tuple[PeerAddress, ...]) -> None:
                torrent.add_peers(list(peers), "tracker", swarm_id=swarm_id)

            announcer = TrackerAnnouncer(
                self.tiers,
                info_hash=swarm_id,
                peer_id=torrent.ctx.peer_id,
                port=torrent.ctx.listen_port,
                stats=stats,
                on_peers=on_peers,
                complete=self._completed,
                rng=torrent.ctx.rng,
                session=http,
            )
            self.announcers.append(announcer)
            known.add(swarm_id)
            return announcer

        known: set[InfoHash] = set()

        for swarm_id in torrent.info_hashes.swarm_ids():
            start(swarm_id)
        self.announcer = self.announcers[0]
        for url, reason in self.announcer.rejected.items():
            torrent.emit(TrackerFailed(url=url, reason=reason))
        for announcer in self.announcers:
            announcer.start()
        last_error = None
        while True:
            await asyncio.sleep(1.0)
            for swarm_id in torrent.info_hashes.swarm_ids():  # a btih magnet that turned out hybrid
                if swarm_id not in known:
                    start(swarm_id).start()
            error = self.announcer.last_error
            if error and error != last_error:
                torrent.emit(TrackerFailed(url="", reason=error))
            last_error = error

    def completed(self) -> None:
        self._completed = True
        for announcer in self.announcers:
            announcer.completed()

    def status(self) -> str:
        urls = [url for tier in self.tiers for url in tier]
        announcer = self.announcer
        if announcer is None:
            return f"trackers ({len(urls)}): not started yet"
        parts = [f"{url}: {reason}" for url, reason in announcer.rejected.items()]
        if announcer.last_error:
            parts.append(announcer.last_error)
        elif announcer.announce_count:
            parts.append(f"{announcer.announce_count} announces answered")
        else:
            parts.append("no answer yet")
        return f"trackers ({len(urls)}): " + "; ".join(parts)

    async def stopped(self) -> None:
        await asyncio.gather(*(announcer.stop() for announcer in self.announcers))


class DHTSource(PeerSource):
    """Finds peers with ``get_peers`` and announces our port (BEP 5), again every ``interval`` s.

    The first lookup waits for the DHT's bootstrap (``ready``): a lookup over an empty routing table
    finds nothing.  While a round finds no peer or no node stores our announce, the next one comes
    after ``retry`` seconds, not after the full re-announce interval (nodes keep announces ~30 min).
    """

    name = "dht"

    def __init__(
        self,
        dht: DHTNode,
        *,
        ready: asyncio.Future[Any] | None = None,
        interval: float = 15 * 60.0,
        retry: float = 3.0,
        max_retry: float = 60.0,
    ) -> None:
        self.dht = dht
        self.ready = ready
        self.interval = interval
        self.retry = retry
        self.max_retry = max_retry
        self.rounds = 0
        self.last_found = 0
        self.last_stored = 0
        self.last_error = ""

    async def run(self, torrent: TorrentHandle) -> None:
        if self.ready is not None:
            await asyncio.wait([self.ready])  # never cancels the shared bootstrap task
        failures = 0
        while True:
            found = stored = 0
            ids = torrent.info_hashes.swarm_ids()
            try:
                for swarm_id in ids:  # both of a hybrid's (BEP 52)
                    peers, count = await self.dht.announce_and_get_peers(
                        swarm_id, port=torrent.ctx.listen_port
                    )
                    found += torrent.add_peers(list(peers), "dht", swarm_id=swarm_id)
                    stored += count
                self.last_error = ""
            except TorrentGoatError as exc:
                log.debug("%s: DHT: %s", torrent.name, exc)
                self.last_error = str(exc)
            self.rounds += 1
            self.last_found, self.last_stored = found, stored
            starving = torrent.num_peers < 3 and not torrent.is_complete
            if stored and not (starving and not found):
                failures = 0
                wait = self.interval
            else:
                failures += 1
                wait = min(self.max_retry, self.retry * 2 ** min(failures - 1, 5))
            for _ in range(max(1, int(wait))):  # a new swarm id (a magnet turned hybrid) is looked up at once
                await asyncio.sleep(min(1.0, wait))
                if torrent.info_hashes.swarm_ids() != ids:
                    break

    def status(self) -> str:
        nodes = self.dht.routing_table_size
        if not self.rounds:
            return f"DHT: {nodes} nodes, first lookup pending"
        if self.last_error:
            return f"DHT: {nodes} nodes, last lookup failed: {self.last_error}"
        return (
            f"DHT: {nodes} nodes, last lookup found {self.last_found} new peers"
            f" and {self.last_stored} nodes took our announce"
        )


class LSDSource(PeerSource):
    """Announces the torrent on the local network and dials the neighbours that announce it (BEP 14).

    The session's :class:`~torrentgoat.aio.lsd.LSDService` does the multicast; this source registers
    the torrent's info-hash with it for as long as the torrent runs, and adds every neighbour it
    reports as a candidate to dial (like a tracker's peer: the BEP 3 handshake decides).  Private
    torrents are never announced (BEP 27): the session does not give them this source, and a magnet
    whose metadata turns out private stops announcing at once.
    """

    name = "lsd"

    def __init__(self, service: LSDService) -> None:
        self.service = service
        self.found = 0

    async def run(self, torrent: TorrentHandle) -> None:
        def register(info_hash: InfoHash) -> None:
            def on_peer(address: PeerAddress) -> None:
                self.found += torrent.add_peers([address], "lsd", swarm_id=info_hash)

            self.service.add(info_hash, on_peer)
            ids.append(info_hash)

        ids: list[InfoHash] = []
        for info_hash in torrent.info_hashes.swarm_ids():  # both of a hybrid's (BEP 52)
            register(info_hash)
        try:
            info = torrent.info or await torrent.wait_metadata()
            if info.private:
                return
            for info_hash in info.info_hashes.swarm_ids():  # a btih magnet that turned out hybrid
                if info_hash not in ids:
                    register(info_hash)
            await asyncio.Event().wait()  # until the torrent stops (cancelled)
        finally:
            for info_hash in ids:
                self.service.remove(info_hash)

    def status(self) -> str:
        return self.service.status()
