"""The session (level L5): one listen socket, one peer id, shared thread pools, many torrents.

    async with Session(SessionConfig(listen_port=0)) as session:
        torrent = await session.add("magnet:?xt=urn:btih:...", "downloads/")
        async for event in torrent.events(): ...
        await torrent.wait_complete()

Incoming connections are accepted on IPv4 and IPv6; their handshake (BEP 3) names the info-hash,
and the session hands the connection to that torrent (or drops it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from torrentgoat.admission import AdmissionLimits
from torrentgoat.aio.admission import ConnectionGate
from torrentgoat.aio.disk import DiskExecutor
from torrentgoat.aio.hasher import PieceHasher
from torrentgoat.aio.lsd import LSDService, lsd_interface
from torrentgoat.aio.mse import EncryptedListener
from torrentgoat.aio.peer import PeerDriver
from torrentgoat.aio.ratelimit import TokenBucket
from torrentgoat.aio.torrentfile import fetch_torrent_bytes
from torrentgoat.aio.utp import UTPEndpoint
from torrentgoat.config import DEFAULT_DHT_ROUTERS, IOConfig
from torrentgoat.dht import DHTConfig
from torrentgoat.errors import (
    ConfigError,
    DHTError,
    ListenError,
    MagnetError,
    TorrentGoatError,
    UTPError,
)
from torrentgoat.magnet import Magnet, parse_magnet
from torrentgoat.metainfo import Metainfo, load_metainfo, parse_metainfo
from torrentgoat.mse import MSEConfig, StreamKeys
from torrentgoat.primitives import InfoHash, PeerAddress, PeerId
from torrentgoat.torrent import Torrent, TorrentConfig, TorrentContext
from torrentgoat.torrent.handle import PeerSource
from torrentgoat.torrent.sources import DHTSource, LSDSource, TrackerSource
from torrentgoat.torrent.webseed import WebSeedSource
from torrentgoat.wire.connection import PeerConnection, WireConfig
from torrentgoat.wire.events import Event, HandshakeReceived

__all__ = ["Session", "SessionConfig"]

log = logging.getLogger("torrentgoat.session")


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionConfig:
    """Process-wide settings of a :class:`Session`."""

    listen_host: str = "0.0.0.0"
    """IPv4 address to accept peers on ("127.0.0.1" keeps everything on loopback)."""
    listen_ipv6: str | None = "::"
    """IPv6 address to accept peers on as well (None: no IPv6 listener)."""
    listen_port: int = 6881
    """TCP port for peers (0: pick a free one).  The DHT uses the same number over UDP."""
    port_fallback: int = 10
    """When ``listen_port`` is taken, try the next this many ports, then one the system picks
    (libtorrent's ``max_retry_port_bind`` and ``listen_system_port_fallback``); 0: a taken port is an
    error, for a port the user asked for explicitly."""
    upload_limit: int = 0
    """Session-wide upload limit in bytes per second (0: unlimited)."""
    download_limit: int = 0
    """Session-wide download limit in bytes per second (0: unlimited)."""
    enable_utp: bool = True
    """Speak uTP (BEP 29) as well as TCP: accept uTP connections on the listen port (one UDP socket
    with the DHT) and dial over uTP when TCP fails, or first for public addresses (see
    :class:`~torrentgoat.torrent.connections.Connections`)."""
    utp_first: bool | None = None
    """Which transport a dial tries first: None (uTP to public addresses, TCP on the LAN), True (uTP
    always), False (TCP always); the other one is the fallback."""
    enable_dht: bool = True
    """Run a mainline DHT node (BEP 5) to find peers for trackerless magnets."""
    dht_bootstrap: tuple[tuple[str, int], ...] = DEFAULT_DHT_ROUTERS
    """Routers (and nodes) to bootstrap the DHT from."""
    dht_state: Path | None = None
    """File where the DHT node cache is kept between runs (None: not persisted)."""
    dht: DHTConfig = field(default_factory=DHTConfig)
    """The DHT node's tunables and caps: per-source rate limit, routing-table hygiene (BEP 42, nodes
    per IP), bounded peer and item stores, no amplification."""
    enable_trackers: bool = True
    """Announce to the torrent's trackers (BEP 3 / BEP 15, tiers of BEP 12)."""
    enable_pex: bool = True
    """Peer exchange (BEP 11) on public torrents."""
    enable_lsd: bool = True
    """Local Service Discovery (BEP 14): announce public torrents on the local network's multicast
    groups and dial the neighbours that announce them -- peers with no tracker or DHT, e.g. the nodes
    of one cluster.  It runs where the listen addresses are: a loopback ``listen_host`` keeps it on
    ``lo``, no ``listen_ipv6`` means no IPv6 announces."""
    lsd_interface: str | None = None
    """Network interface (name) for LSD instead of the one the listen addresses pick."""
    enable_web_seeds: bool = True
    """Fetch pieces over HTTP from the torrent's ``url-list`` / the magnet's ``ws=`` (BEP 19)."""
    torrent: TorrentConfig = field(default_factory=TorrentConfig)
    """Defaults for each torrent; ``Session.add`` options override some of them."""
    io: IOConfig = field(default_factory=IOConfig)
    """Hashing and disk thread pools."""
    wire: WireConfig = field(default_factory=WireConfig)
    """Peer wire protocol tunables."""
    encryption: MSEConfig = field(default_factory=lambda: MSEConfig(prefer_rc4=False))
    """Message Stream Encryption: ``policy`` ``prefer`` (the default, as libtorrent and qBittorrent:
    accept plain and encrypted connections, dial encrypted first and fall back to plain), ``require``
    (RC4-encrypted connections only, both ways) or ``disable``.  When both sides allow either, the
    payload after the obfuscated handshake stays plain (``prefer_rc4=False``, libtorrent's default):
    RC4 costs about 1.2 CPU s/GB per side."""
    seed: int | None = None
    """Seed of the session's random generator (peer id, picker tie-breaks); None: from the OS."""
    max_connections: int = 500
    """Incoming connections open at once, in every stage; more are refused at accept (each torrent
    also caps its peers, incoming and outgoing, at ``TorrentConfig.max_peers``).  See
    :mod:`torrentgoat.admission`."""
    max_connections_per_ip: int = 8
    """Incoming connections open at once from one IP address (loopback exempt unless
    ``limit_loopback``)."""
    max_handshakes: int = 128
    """Incoming connections still in their handshake (MSE, BitTorrent); when full, the oldest of them
    is closed for the newcomer, so silent connections cannot lock real peers out."""
    max_handshakes_per_ip: int = 4
    """Of those, how many one IP address may hold."""
    handshake_timeout: float = 10.0
    """Seconds from accept within which an incoming connection must complete its handshakes (MSE and
    BitTorrent together, however slowly the bytes come), or be closed (libtorrent: 10 s)."""
    limit_loopback: bool = False
    """Apply the per-IP caps to loopback addresses too (off: local swarms share 127.0.0.1)."""

    @property
    def admission(self) -> AdmissionLimits:
        """The caps of :mod:`torrentgoat.admission` from the fields above."""
        return AdmissionLimits(
            max_connections=self.max_connections,
            max_per_ip=self.max_connections_per_ip,
            max_handshakes=self.max_handshakes,
            max_handshakes_per_ip=self.max_handshakes_per_ip,
            limit_loopback=self.limit_loopback,
        )

    def __post_init__(self) -> None:
        if not 0 <= self.listen_port < 65536:
            raise ConfigError(f"listen_port out of range: {self.listen_port}")
        if self.port_fallback < 0:
            raise ConfigError(f"port_fallback must be >= 0, got {self.port_fallback}")
        if not self.handshake_timeout > 0:
            raise ConfigError(f"handshake_timeout must be > 0 seconds, got {self.handshake_timeout}")
        self.admission  # noqa: B018 - validates the caps (ConfigError)


class _Incoming:
    """PeerHandler of incoming connections until their handshake names a torrent."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.pending: set[PeerDriver] = set()

    def peer_event(self, peer: PeerDriver, event: Event) -> None:
        if isinstance(event, HandshakeReceived):
            self.pending.discard(peer)
            self.session.gate.established(peer.transport)
            torrent = self.session.torrent_for(event.handshake.info_hash.raw)
            if torrent is None:
                peer.close("unknown info-hash")
                return
            torrent.adopt(peer)
            return
        peer.close(f"unexpected {type(event).__name__} before the handshake")

    def peer_closed(self, peer: PeerDriver, reason: str) -> None:
        self.pending.discard(peer)

    def peer_writable(self, peer: PeerDriver) -> None:
        pass


class Session:
    """Owns listeners, the peer id, thread pools, the DHT node and the torrents."""

    def __init__(self, config: SessionConfig | None = None) -> None:
        self.config = config or SessionConfig()
        self.rng = random.Random(self.config.seed)
        self.peer_id = PeerId.generate(self.rng)
        self.torrents: dict[bytes, Torrent] = {}
        self._swarm_ids: dict[bytes, Torrent] = {}
        """Every 20-byte id a torrent answers to (both of a hybrid's, BEP 52) -> the torrent."""
        self.listen_port = self.config.listen_port
        self.dht: Any = None
        self.lsd: LSDService | None = None
        """Local Service Discovery (BEP 14), when enabled and started."""
        self.utp: UTPEndpoint | None = None
        """The UDP endpoint carrying uTP connections (BEP 29) and the DHT on the listen port."""
        self._servers: list[asyncio.AbstractServer] = []
        self._incoming = _Incoming(self)
        self._tasks: dict[bytes, asyncio.Task[None]] = {}
        self._disk: DiskExecutor | None = None
        self._hasher: PieceHasher | None = None
        self._http: Any = None
        self._upload = TokenBucket(self.config.upload_limit)
        self._download = TokenBucket(self.config.download_limit)
        self._started = False
        self._bootstrap: asyncio.Task[None] | None = None
        self.dht_error: TorrentGoatError | None = None
        """Why the DHT bootstrap failed (None: it did not, or has not finished)."""
        self.stream_keys = StreamKeys()
        """The MSE stream keys (info-hashes) incoming encrypted handshakes may name."""
        self._listener = EncryptedListener(
            self._accept, info_hash_for_req2=self.stream_keys, config=self.config.encryption
        )
        """Sniffs each incoming connection: plain BitTorrent, or an MSE handshake for any torrent."""
        self.gate = ConnectionGate(self.config.admission, handshake_timeout=self.config.handshake_timeout)
        """Admits incoming connections (caps per session and per IP) and enforces the handshake
        deadline (:mod:`torrentgoat.aio.admission`)."""
        self._accepting = self.gate.wrap(self._listener)

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Session:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Open the thread pools, listen for peers (TCP, and the DHT on UDP) and start the DHT.

        When ``listen_port`` is taken the next ``port_fallback`` ports are tried, then one the
        system picks (libtorrent does the same); with ``port_fallback=0`` a taken port is an error
        (:class:`~torrentgoat.errors.ListenError`)."""
        if self._started:
            return
        self._started = True
        self._disk = DiskExecutor(self.config.io)
        self._hasher = PieceHasher(self.config.io, disk=self._disk)
        first = self.config.listen_port
        candidates = [first]
        if first and self.config.port_fallback:
            candidates += [p for p in range(first + 1, first + 1 + self.config.port_fallback) if p < 65536]
            candidates.append(0)
        errors = []
        # a port the system picks is free for TCP, not necessarily for UDP (uTP, DHT): pick again
        for port in candidates + [0, 0] * (candidates[-1] == 0):
            try:
                await self._listen(port)
            except ListenError as exc:
                errors.append(str(exc))
                await self._close_listeners()
                continue
            if port != first:
                log.info("port %d is taken; listening on %d", first, self.listen_port)
            break
        else:
            await self._close_pools()
            self._started = False
            tried = (
                f" (also tried {first + 1}-{candidates[-2]} and a free port)" if len(candidates) > 1 else ""
            )
            raise ListenError(f"{errors[0]}{tried}")
        if self.dht is not None:
            self._bootstrap = asyncio.create_task(self._bootstrap_dht(), name="dht bootstrap")
        if self.config.enable_lsd:
            await self._start_lsd()

    async def _start_lsd(self) -> None:
        """BEP 14 on the interface(s) we listen on; a failure leaves LSD off (said in its status)."""
        config = self.config
        try:
            where = lsd_interface(config.listen_host, config.listen_ipv6, config.lsd_interface)
        except OSError as exc:
            log.warning("local service discovery is off: %s", exc)
            return
        # its own generator: the cookie must not be predictable, nor shift the session's sequence
        lsd = LSDService(port=self.listen_port, rng=random.Random(os.urandom(16)), **where)
        await lsd.start()
        if not lsd.groups:  # no group could be joined: not a peer source at all
            log.warning("local service discovery is off: %s", "; ".join(lsd.errors.values()))
            lsd.close()
            return
        self.lsd = lsd

    async def _listen(self, port: int) -> None:
        """Accept peers on ``port`` (TCP, IPv4 and best-effort IPv6) and bind the DHT's UDP socket to
        the same number; raises :class:`ListenError` when the address is taken or not ours."""
        loop = asyncio.get_running_loop()
        host = self.config.listen_host
        try:
            server = await loop.create_server(self._accepting, host, port, reuse_address=True)
        except OSError as exc:
            raise ListenError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        self._servers.append(server)
        self.listen_port = server.sockets[0].getsockname()[1]
        if self.config.listen_ipv6:
            try:
                server6 = await loop.create_server(
                    self._accepting, self.config.listen_ipv6, self.listen_port, reuse_address=True
                )
            except OSError as exc:
                log.info("no IPv6 listener on [%s]:%d: %s", self.config.listen_ipv6, self.listen_port, exc)
            else:
                self._servers.append(server6)
        shared: Any = None
        if self.config.enable_utp:  # one UDP socket for uTP and the DHT, told apart by the first byte
            endpoint = UTPEndpoint(host=host, port=self.listen_port)
            try:
                await endpoint.start()
            except UTPError as exc:
                raise ListenError(str(exc)) from None
            endpoint.serve(self._accepting)
            self.utp = endpoint
            shared = endpoint.dht_transport
        if self.config.enable_dht:
            from torrentgoat.aio.dht import DHTNode

            dht = DHTNode(
                host=host,
                port=self.listen_port,
                config=self.config.dht,
                node_cache=self.config.dht_state,
                rng=random.Random(self.rng.random()),
                datagram_transport=shared,
            )
            try:
                await dht.start()
            except DHTError as exc:
                raise ListenError(str(exc)) from None
            self.dht = dht

    async def _close_listeners(self) -> None:
        for server in self._servers:
            server.close()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
        if self.dht is not None:
            await self.dht.close()
            self.dht = None
        if self.utp is not None:
            await self.utp.close()
            self.utp = None

    async def _close_pools(self) -> None:
        if self._hasher is not None:
            await self._hasher.aclose()
            self._hasher = None
        if self._disk is not None:
            await self._disk.aclose()
            self._disk = None

    async def _bootstrap_dht(self) -> None:
        try:
            await self.dht.bootstrap([PeerAddress(h, p) for h, p in self.config.dht_bootstrap])
        except TorrentGoatError as exc:
            self.dht_error = exc  # reported by what needs the DHT (a btpk lookup, a DHT source's status)
            log.info("%s", exc)

    async def wait_dht(self, timeout: float = 30.0) -> None:
        """Return once the DHT node knows another node; raise :class:`DHTError` at once when the DHT
        is off or its bootstrap failed, or after ``timeout`` seconds without a node."""
        if self.dht is None:
            raise DHTError("the DHT is turned off")
        if self._bootstrap is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._bootstrap), timeout)
        if self.dht.routing_table_size:
            return
        if self.dht_error is not None:
            raise DHTError(str(self.dht_error))
        raise DHTError(f"the DHT found no node to talk to within {timeout:.0f} s")

    def _accept(self) -> PeerDriver:
        engine = PeerConnection(
            peer_id=self.peer_id,
            now=asyncio.get_running_loop().time(),
            listen_port=self.listen_port,
            config=self._wire_config(),
        )
        driver = PeerDriver(engine, self._incoming, outgoing=False, download_limit=self._download)
        self._incoming.pending.add(driver)
        return driver

    def _wire_config(self) -> WireConfig:
        return replace(self.config.wire, enable_dht=self.dht is not None)

    async def close(self) -> None:
        """Stop every torrent (trackers are told ``stopped``), close sockets and thread pools."""
        for torrent in list(self.torrents.values()):
            torrent.stop("session closed")
        if self._tasks:
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        for server in self._servers:
            server.close()
        self._listener.close()
        self.gate.close()
        for driver in list(self._incoming.pending):
            driver.close("session closed")
        if self._bootstrap is not None:
            self._bootstrap.cancel()
            await asyncio.gather(self._bootstrap, return_exceptions=True)
        if self.lsd is not None:
            self.lsd.close()
            self.lsd = None
        await self._close_listeners()
        if self._http is not None:
            await self._http.close()
            self._http = None
        await self._close_pools()

    # ------------------------------------------------------------------ torrents

    async def load(self, source: str | Path | Metainfo | Magnet) -> Metainfo | Magnet:
        """Read a magnet URI, a .torrent path or an http(s) URL of a .torrent."""
        if isinstance(source, Metainfo | Magnet):
            return source
        text = str(source)
        if text.startswith("magnet:"):
            return parse_magnet(text)
        if text.startswith(("http://", "https://")):
            return parse_metainfo(await self._fetch_torrent(text))
        return load_metainfo(Path(text))

    async def _fetch_torrent(self, url: str) -> bytes:
        return await fetch_torrent_bytes(url, await self.http())

    async def http(self) -> Any:
        """The shared aiohttp client session (trackers, web seeds, .torrent URLs)."""
        if self._http is None:
            import aiohttp

            self._http = aiohttp.ClientSession()
        return self._http

    async def add(
        self,
        source: str | Path | Metainfo | Magnet,
        dest: str | Path,
        *,
        files: Sequence[str] = (),
        file_indices: Sequence[int] | None = None,
        sequential: bool = False,
        seed: bool | None = None,
        peers: Sequence[str] = (),
        config: TorrentConfig | None = None,
    ) -> Torrent:
        """Start downloading (or seeding) ``source`` into ``dest`` and return the running torrent.

        ``files`` are glob patterns of paths inside the torrent, ``file_indices`` explicit file
        indices (a magnet's BEP 53 ``so=`` is used when neither is given); ``peers`` are extra
        ``HOST:PORT`` addresses to dial.
        """
        if not self._started:
            await self.start()
        loaded = await self.load(source)
        metainfo = loaded if isinstance(loaded, Metainfo) else None
        magnet = loaded if isinstance(loaded, Magnet) else None
        if magnet is not None and magnet.info_hashes is None:
            magnet = replace(magnet, info_hash=await self.resolve_btpk(magnet))
        hashes = metainfo.info_hashes if metainfo is not None else magnet.info_hashes  # type: ignore[union-attr]
        assert hashes is not None
        info_hash = metainfo.info_hash if metainfo is not None else hashes.primary
        if any(swarm_id.raw in self._swarm_ids for swarm_id in hashes.swarm_ids()):
            raise TorrentGoatError(f"torrent {info_hash.hex} is already in the session")
        base = config or self.config.torrent
        extra = tuple(peers) + tuple(str(p) for p in (magnet.peers if magnet is not None else ()))
        indices = file_indices
        if indices is None and magnet is not None and magnet.select_only:
            indices = magnet.select_only
        tconfig = replace(
            base,
            picker=replace(base.picker, strategy="sequential") if sequential else base.picker,
            seed=base.seed if seed is None else seed,
            extra_peers=base.extra_peers + extra,
            file_globs=base.file_globs + tuple(files),
            selected_files=tuple(indices) if indices is not None else base.selected_files,
            pex=base.pex and self.config.enable_pex,
        )
        assert self._hasher is not None and self._disk is not None
        ctx = TorrentContext(
            peer_id=self.peer_id,
            listen_port=self.listen_port,
            hasher=self._hasher,
            disk=self._disk,
            rng=random.Random(self.rng.random()),
            wire=self._wire_config(),
            upload_limit=self._upload,
            download_limit=self._download,
            add_dht_node=self._add_dht_node if self.dht is not None else None,
            encryption=self.config.encryption,
            utp=self.utp,
            utp_first=self.config.utp_first,
            max_open_files=self.config.io.max_open_files,
        )
        sources: list[PeerSource] = []
        trackers = metainfo.announce_tiers if metainfo is not None else ()
        if magnet is not None and magnet.trackers:
            trackers = tuple((url,) for url in magnet.trackers)
        if self.config.enable_trackers and trackers:
            sources.append(TrackerSource(trackers, self))
        web_seeds = metainfo.web_seeds if metainfo is not None else ()
        if magnet is not None:
            web_seeds = tuple(dict.fromkeys((*web_seeds, *magnet.web_seeds)))
        if web_seeds and self.config.enable_web_seeds:
            sources.append(WebSeedSource(web_seeds, self.http))
        private = metainfo is not None and metainfo.info.private
        if self.dht is not None and not private:
            sources.append(DHTSource(self.dht, ready=self._bootstrap))
        if self.lsd is not None and not private:
            sources.append(LSDSource(self.lsd))
        torrent = Torrent(
            ctx,
            info_hash=info_hash,
            dest=Path(dest),
            config=tconfig,
            metainfo=metainfo,
            magnet=magnet,
            sources=sources,
        )
        self.torrents[info_hash.raw] = torrent
        for swarm_id in hashes.swarm_ids():  # a hybrid answers to both (BEP 52 "Upgrade Path")
            self._swarm_id_found(torrent, swarm_id)
        ctx.swarm_id_found = lambda swarm_id: self._swarm_id_found(torrent, swarm_id)
        task = asyncio.create_task(self._run(torrent), name=f"torrent {info_hash.hex}")
        self._tasks[info_hash.raw] = task
        return torrent

    def _swarm_id_found(self, torrent: Torrent, swarm_id: InfoHash) -> None:
        """Find ``torrent`` by ``swarm_id`` too: incoming handshakes and MSE stream keys (a magnet's v2 id
        once its metadata shows a hybrid; an id another torrent of the session holds stays that one's)."""
        holder = self._swarm_ids.setdefault(swarm_id.raw, torrent)
        if holder is torrent:
            self.stream_keys.add(swarm_id)
        else:
            log.warning("%s: swarm id %s already belongs to %s", torrent.name, swarm_id.hex, holder.name)

    def torrent_for(self, swarm_id: bytes) -> Torrent | None:
        """The torrent a handshake's 20-byte info-hash names: its v1 id, or the truncated SHA-256 of a v2 or
        hybrid torrent (BEP 52)."""
        return self._swarm_ids.get(swarm_id)

    async def resolve_btpk(self, magnet: Magnet) -> InfoHash:
        """BEP 46: the info-hash a publisher's key (and salt) currently points at, via the DHT.

        The mutable item's signature is checked by the DHT layer (BEP 44); the highest ``seq`` wins.
        """
        if magnet.public_key is None:
            raise MagnetError("magnet has neither an info-hash (xt=urn:btih:) nor a key (xs=urn:btpk:)")
        if self.dht is None:
            raise DHTError("a btpk magnet (BEP 46) needs the DHT; it is turned off")
        if self._bootstrap is not None:
            await asyncio.wait([self._bootstrap])  # never cancels the shared bootstrap task
        info_hash: InfoHash | None = await self.dht.resolve_torrent(magnet.public_key, magnet.salt)
        if info_hash is None:
            raise DHTError(
                f"no torrent is published under key {magnet.public_key.hex()}"
                + (f" with salt {magnet.salt!r}" if magnet.salt else "")
            )
        return info_hash

    async def _run(self, torrent: Torrent) -> None:
        try:
            await torrent.run()
        finally:
            self.torrents.pop(torrent.info_hash.raw, None)
            self._tasks.pop(torrent.info_hash.raw, None)
            for swarm_id in torrent.info_hashes.swarm_ids():
                if self._swarm_ids.get(swarm_id.raw) is torrent:
                    del self._swarm_ids[swarm_id.raw]
                    self.stream_keys.remove(swarm_id)

    def _add_dht_node(self, address: PeerAddress) -> None:
        if self.dht is not None:
            self.dht.add_node(address)
