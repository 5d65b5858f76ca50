"""The asyncio DHT driver (level L4): one UDP socket and one timer pumping a :class:`DHTEngine`.

Public API (everything else in torrentgoat talks to the DHT through this)::

    async with DHTNode(host="0.0.0.0", port=6881, node_cache="~/.cache/torrentgoat/dht.dat") as dht:
        await dht.bootstrap([PeerAddress("router.bittorrent.com", 6881)])   # None: DEFAULT_DHT_ROUTERS
        peers: list[PeerAddress] = await dht.get_peers(info_hash)
        async for peer in dht.iter_peers(info_hash): ...                    # as they are found
        stored: int = await dht.announce(info_hash, port=6881, implied_port=False)
        peers, stored = await dht.announce_and_get_peers(info_hash, 6881)   # one lookup for both
        dht.add_node(PeerAddress(ip, port))                                  # a peer's BEP 5 ``port`` message
        target = await dht.put_immutable(b"value")                           # BEP 44
        value = await dht.get_immutable(target)                              # BValue | None
        item = await dht.put_mutable(SigningKey(seed), value, salt=b"", seq=None, cas=None)
        item = await dht.get_mutable(public_key, salt=b"")                   # MutableItem | None
        await dht.put_signed(item, cas=None)                                 # an item signed elsewhere
        node_id = await dht.ping(PeerAddress(ip, port))                      # bytes | None
        await dht.publish_torrent(key, info_hash, salt=b"")                  # BEP 46
        ih = await dht.resolve_torrent(public_key, salt=b"")                 # InfoHash | None

* ``DHTNode(...)``: ``host``/``port`` to bind (an IPv6 literal gives a BEP 32 IPv6 node), ``config``
  (:class:`~torrentgoat.dht.engine.DHTConfig`), ``node_id`` (20 bytes, default random or the cached
  one), ``datagram_transport`` (a callable that takes the node's ``DatagramProtocol`` and returns
  a transport on a socket shared with another protocol, e.g. ``UTPEndpoint.dht_transport``; the
  node then binds nothing itself), ``node_cache`` (path: loaded by ``start()``, saved every ``cache_save_interval`` seconds
  (600) and by ``close()``; with a populated cache
  ``bootstrap()`` does not contact the routers unless no cached node answers), ``rng``.
* ``start()`` / ``close()`` or ``async with``; ``address`` is the bound :class:`PeerAddress`,
  ``node_id`` our id (BEP 42: replaced by one derived from our public address once other nodes
  report it, unless ``DHTConfig(secure_node_id=False)``), ``external_ip``, ``engine`` the underlying
  engine (stats, routing table), ``routing_table_size``.
* Addresses may be given as :class:`PeerAddress`, ``(host, port)`` or ``"host:port"``; info-hashes
  and targets as :class:`InfoHash` or 20 raw bytes.
* ``bootstrap(routers=None)`` returns the routing-table size and raises DHTError if it stays empty.
* Failed puts raise :class:`~torrentgoat.errors.DHTError` naming the nodes' refusals; a bad
  signature, oversized value or lower seq is refused (SignatureError / DHTError / ConfigError) before
  sending.
* ``wait(op)`` awaits the completion event of an operation started on ``engine`` directly (for
  statistics: rounds, queries); ``now()`` is the engine clock.
* ``save_node_cache(path=None)`` / ``load_node_cache(path=None)`` for explicit control.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from torrentgoat import bencode
from torrentgoat.atomicwrite import write_atomic
from torrentgoat.bencode import BValue
from torrentgoat.config import DEFAULT_DHT_ROUTERS
from torrentgoat.dht.engine import DHTConfig, DHTEngine
from torrentgoat.dht.events import (
    AnnounceCompleted,
    BootstrapCompleted,
    Event,
    GetItemCompleted,
    GetPeersCompleted,
    PeersFound,
    PingCompleted,
    PutItemCompleted,
)
from torrentgoat.dht.items import (
    ImmutableItem,
    MutableItem,
    SigningKey,
    info_hash_value,
    parse_info_hash_value,
    sign_mutable,
)
from torrentgoat.dht.krpc import Addr, decode_nodes, encode_nodes
from torrentgoat.errors import BencodeError, ConfigError, DHTError
from torrentgoat.primitives import InfoHash, PeerAddress

__all__ = ["DHTNode"]

RouterLike = PeerAddress | tuple[str, int] | str


PUT_ATTEMPTS = 2
"""Tries of a put whose lookup collected no write token (every query timed out)."""
NO_TOKEN = "no DHT node returned a write token"
"""The engine's error for that case (:mod:`torrentgoat.dht.operations`)."""


def _as_addr(value: RouterLike) -> tuple[str, int]:
    if isinstance(value, PeerAddress):
        return value.host, value.port
    if isinstance(value, str):
        parsed = PeerAddress.parse(value)
        return parsed.host, parsed.port
    return value[0], int(value[1])


def _raw(value: InfoHash | bytes) -> bytes:
    raw = value.raw if isinstance(value, InfoHash) else value
    if len(raw) != 20:
        raise DHTError(f"a DHT target must be 20 bytes, got {len(raw)}")
    return raw


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, node: DHTNode) -> None:
        self.node = node

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.node._on_datagram(data, (addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP port unreachable and the like: the query simply times out


class DHTNode:
    """One DHT node on one UDP socket.  See the module docstring for the API."""

    def __init__(
        self,
        *,
        host: str = "0.0.0.0",
        port: int = 0,
        config: DHTConfig | None = None,
        node_id: bytes | None = None,
        node_cache: str | os.PathLike[str] | None = None,
        rng: random.Random | None = None,
        cache_save_interval: float = 600.0,
        datagram_transport: Callable[[asyncio.DatagramProtocol], asyncio.DatagramTransport] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.config = config or DHTConfig()
        self._node_id = node_id
        self.node_cache = Path(node_cache).expanduser() if node_cache is not None else None
        self.rng = rng or random.Random(os.urandom(16))
        self.ipv6 = ":" in host
        self._engine: DHTEngine | None = None
        self._transport: asyncio.DatagramTransport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_when: float | None = None
        self._futures: dict[int, asyncio.Future[Event]] = {}
        self._queues: dict[int, asyncio.Queue[PeersFound | None]] = {}
        self.cache_save_interval = cache_save_interval
        self._autosave: asyncio.TimerHandle | None = None
        self._datagram_transport = datagram_transport

    # -- lifecycle ----------------------------------------------------------------------------------

    @property
    def engine(self) -> DHTEngine:
        if self._engine is None:
            raise DHTError("DHT node is not started")
        return self._engine

    @property
    def node_id(self) -> bytes:
        return self.engine.node_id

    @property
    def address(self) -> PeerAddress:
        if self._transport is None:
            raise DHTError("DHT node is not started")
        sock = self._transport.get_extra_info("sockname")
        return PeerAddress(sock[0], sock[1])

    @property
    def external_ip(self) -> str | None:
        """Our address as other nodes report it (BEP 42 ``ip`` votes), once enough agree."""
        return self.engine.external_ip

    @property
    def routing_table_size(self) -> int:
        return len(self.engine.table)

    async def start(self) -> None:
        """Bind the socket, load the node cache (if any) and start the engine."""
        if self._transport is not None:
            return
        self._loop = loop = asyncio.get_running_loop()
        cached_id, cached_nodes = self._read_cache(self.node_cache) if self.node_cache else (None, b"")
        node_id = self._node_id or cached_id
        self._engine = DHTEngine(
            rng=self.rng, now=loop.time(), config=self.config, node_id=node_id, ipv6=self.ipv6
        )
        if cached_nodes:
            self._engine.import_nodes(decode_nodes(cached_nodes, ipv6=self.ipv6), loop.time())
        if self._datagram_transport is not None:
            # a socket shared with uTP (one port for both, told apart by the first byte)
            self._transport = self._datagram_transport(_Protocol(self))
        else:
            self._transport = await self._bind(loop)
        if self.node_cache is not None and self.cache_save_interval > 0:
            self._autosave = loop.call_later(self.cache_save_interval, self._save_periodically)
        self._pump()

    async def _bind(self, loop: asyncio.AbstractEventLoop) -> asyncio.DatagramTransport:
        family = socket.AF_INET6 if self.ipv6 else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            if self.ipv6:
                # BEP 32: an IPv6 node keeps an IPv6-only table; no IPv4-mapped addresses on this socket.
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((self.host, self.port))
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise DHTError(f"cannot bind the DHT socket to {self.host}:{self.port}: {exc.strerror}") from None
        transport, _ = await loop.create_datagram_endpoint(lambda: _Protocol(self), sock=sock)
        return transport

    def _save_periodically(self) -> None:
        """Save the node cache every ``cache_save_interval`` seconds, so a crash loses little."""
        if self._transport is None or self._loop is None:
            return
        with contextlib.suppress(OSError, DHTError):
            self.save_node_cache()
        self._autosave = self._loop.call_later(self.cache_save_interval, self._save_periodically)

    async def close(self) -> None:
        """Save the node cache (if configured), fail waiting calls, close the socket."""
        if self._transport is None:
            return
        if self.node_cache is not None:
            with contextlib.suppress(OSError):
                self.save_node_cache()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._autosave is not None:
            self._autosave.cancel()
            self._autosave = None
        self._transport.close()
        self._transport = None
        for fut in self._futures.values():
            if not fut.done():
                fut.set_exception(DHTError("DHT node closed"))
        self._futures.clear()
        for queue in self._queues.values():
            queue.put_nowait(None)

    async def __aenter__(self) -> DHTNode:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- node cache ---------------------------------------------------------------------------------

    @staticmethod
    def _read_cache(path: Path) -> tuple[bytes | None, bytes]:
        try:
            data = bencode.decode(path.read_bytes())
        except (OSError, BencodeError):
            return None, b""
        if not isinstance(data, dict):
            return None, b""
        node_id = data.get(b"id")
        nodes = data.get(b"nodes")
        return (
            node_id if isinstance(node_id, bytes) and len(node_id) == 20 else None,
            nodes if isinstance(nodes, bytes) else b"",
        )

    def save_node_cache(self, path: str | os.PathLike[str] | None = None) -> None:
        """Write our id and the routing table's nodes (bencoded, compact node infos) atomically."""
        target = Path(path).expanduser() if path is not None else self.node_cache
        if target is None:
            raise DHTError("no node cache path configured")
        engine = self.engine
        nodes = engine.export_nodes(self._now())
        data = bencode.encode({b"id": engine.node_id, b"nodes": encode_nodes(nodes)})
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(target, data)

    def load_node_cache(self, path: str | os.PathLike[str] | None = None) -> int:
        """Add the nodes of a cache file to the routing table; returns how many were read."""
        source = Path(path).expanduser() if path is not None else self.node_cache
        if source is None:
            raise DHTError("no node cache path configured")
        _, raw = self._read_cache(source)
        nodes = decode_nodes(raw, ipv6=self.ipv6)
        self.engine.import_nodes(nodes, self._now())
        self._pump()
        return len(nodes)

    # -- pumping ------------------------------------------------------------------------------------

    def _now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    def _on_datagram(self, data: bytes, addr: Addr) -> None:
        if self._engine is None:
            return
        self._engine.receive_datagram(data, addr, self._now())
        self._pump()

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_when = None
        if self._engine is None or self._transport is None:
            return
        self._engine.handle_timer(self._now())
        self._pump()

    def _pump(self) -> None:
        engine, transport, loop = self._engine, self._transport, self._loop
        if engine is None or transport is None or loop is None:
            return
        for data, addr in engine.datagrams_to_send(loop.time()):
            with contextlib.suppress(OSError):
                transport.sendto(data, addr)
        while (event := engine.next_event()) is not None:
            self._dispatch(event)
        when = engine.get_timer()
        if self._timer_when != when:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = loop.call_at(when, self._on_timer)
            self._timer_when = when

    def _dispatch(self, event: Event) -> None:
        if isinstance(event, PeersFound):
            queue = self._queues.get(event.op)
            if queue is not None:
                queue.put_nowait(event)
            return
        queue = self._queues.get(event.op)
        if queue is not None:
            queue.put_nowait(None)
        fut = self._futures.pop(event.op, None)
        if fut is not None and not fut.done():
            fut.set_result(event)

    def now(self) -> float:
        """The engine's clock (the event loop's time)."""
        return self._now()

    async def wait(self, op: int) -> Event:
        """Await the completion event of an operation started directly on :attr:`engine`
        (``await node.wait(node.engine.get_peers(ih, node.now()))`` gives lookup statistics)."""
        return await self._wait(op)

    async def _wait(self, op: int) -> Event:
        assert self._loop is not None
        fut: asyncio.Future[Event] = self._loop.create_future()
        self._futures[op] = fut
        self._pump()
        try:
            return await fut
        except asyncio.CancelledError:
            self._futures.pop(op, None)
            if self._engine is not None:
                self._engine.cancel(op)
            raise

    # -- BEP 5 --------------------------------------------------------------------------------------

    async def _resolve(self, routers: Sequence[RouterLike]) -> list[Addr]:
        assert self._loop is not None
        family = socket.AF_INET6 if self.ipv6 else socket.AF_INET
        result: list[Addr] = []
        for router in routers:
            host, port = _as_addr(router)
            try:
                infos = await self._loop.getaddrinfo(host, port, family=family, type=socket.SOCK_DGRAM)
            except OSError:
                continue
            for info in infos[:2]:
                addr = (str(info[4][0]), int(info[4][1]))
                if addr not in result:
                    result.append(addr)
        return result

    async def bootstrap(self, routers: Sequence[RouterLike] | None = None) -> int:
        """Join the DHT: cached nodes first, else (or if none answers) ``routers``
        (default :data:`~torrentgoat.config.DEFAULT_DHT_ROUTERS`).  Returns the routing-table size."""
        engine = self.engine
        chosen: Sequence[RouterLike] = DEFAULT_DHT_ROUTERS if routers is None else routers
        if len(engine.table):
            event = await self._wait(engine.bootstrap([], self._now()))
            assert isinstance(event, BootstrapCompleted)
            if event.stats.responses:
                return len(engine.table)
        addrs = await self._resolve(chosen)
        if not addrs and not len(engine.table):
            raise DHTError("DHT bootstrap failed: no bootstrap router could be resolved")
        event = await self._wait(engine.bootstrap(addrs, self._now()))
        if not len(engine.table):
            raise DHTError("DHT bootstrap failed: no DHT node answered")
        return len(engine.table)

    def add_node(self, addr: RouterLike) -> None:
        """Ping a node learned elsewhere (a peer's BEP 5 ``port`` message); kept if it answers."""
        self.engine.add_node(_as_addr(addr), self._now())
        self._pump()

    async def ping(self, addr: RouterLike) -> bytes | None:
        """Ping one node; its id, or None if it did not answer."""
        event = await self._wait(self.engine.ping(_as_addr(addr), self._now()))
        assert isinstance(event, PingCompleted)
        return event.node_id

    async def get_peers(self, info_hash: InfoHash | bytes) -> list[PeerAddress]:
        """All peers the DHT returns for ``info_hash`` once the lookup converged."""
        event = await self._wait(self.engine.get_peers(_raw(info_hash), self._now()))
        assert isinstance(event, GetPeersCompleted)
        return [PeerAddress(h, p) for h, p in event.peers]

    async def iter_peers(self, info_hash: InfoHash | bytes) -> AsyncIterator[PeerAddress]:
        """Peers for ``info_hash`` as nodes return them (each once); ends when the lookup converges."""
        engine = self.engine
        op = engine.get_peers(_raw(info_hash), self._now())
        queue: asyncio.Queue[PeersFound | None] = asyncio.Queue()
        self._queues[op] = queue
        self._pump()
        try:
            while (found := await queue.get()) is not None:
                for host, port in found.peers:
                    yield PeerAddress(host, port)
        finally:
            self._queues.pop(op, None)
            engine.cancel(op)

    async def announce(self, info_hash: InfoHash | bytes, port: int, implied_port: bool = False) -> int:
        """Announce that we serve ``info_hash`` on ``port``; returns how many nodes stored it."""
        event = await self._wait(
            self.engine.announce(_raw(info_hash), port, self._now(), implied_port=implied_port)
        )
        assert isinstance(event, AnnounceCompleted)
        return event.stored

    async def announce_and_get_peers(
        self, info_hash: InfoHash | bytes, port: int, implied_port: bool = False
    ) -> tuple[list[PeerAddress], int]:
        """One lookup that both collects peers and announces us: ``(peers, nodes that stored us)``."""
        event = await self._wait(
            self.engine.announce(_raw(info_hash), port, self._now(), implied_port=implied_port)
        )
        assert isinstance(event, AnnounceCompleted)
        return [PeerAddress(h, p) for h, p in event.peers], event.stored

    # -- BEP 44 -------------------------------------------------------------------------------------

    async def get_immutable(self, target: bytes) -> BValue | None:
        event = await self._wait(self.engine.get_immutable(_raw(target), self._now()))
        assert isinstance(event, GetItemCompleted)
        return event.item.value if isinstance(event.item, ImmutableItem) else None

    async def put_immutable(self, value: BValue) -> bytes:
        """Store ``value``; returns its target (SHA-1 of the bencoding).  DHTError if no node stored it
        (after a second try when the first lookup collected no write token)."""
        errors: list[str] = []
        for _attempt in range(PUT_ATTEMPTS):
            event = await self._wait(self.engine.put_immutable(value, self._now()))
            assert isinstance(event, PutItemCompleted)
            if event.stored:
                return event.target
            errors = list(event.errors)
            if not any(NO_TOKEN in error for error in errors):
                break
        raise DHTError("immutable put failed: " + "; ".join(errors))

    async def get_mutable(self, public_key: bytes, salt: bytes = b"") -> MutableItem | None:
        """The mutable item with the highest verified seq, or None."""
        event = await self._wait(self.engine.get_mutable(public_key, salt, self._now()))
        assert isinstance(event, GetItemCompleted)
        return event.item if isinstance(event.item, MutableItem) else None

    async def put_signed(self, item: MutableItem, cas: int | None = None) -> MutableItem:
        """Store an already signed item (SignatureError if it does not verify).  A put whose lookup
        collected no write token at all (every query timed out: a lossy network, a busy node) is
        tried once more before :class:`DHTError`."""
        errors: list[str] = []
        for _attempt in range(PUT_ATTEMPTS):
            event = await self._wait(self.engine.put_mutable(item, self._now(), cas=cas))
            assert isinstance(event, PutItemCompleted)
            if event.stored:
                return item
            errors = list(event.errors)
            if not any(NO_TOKEN in error for error in errors):
                break
        raise DHTError("mutable put failed: " + "; ".join(errors))

    async def put_mutable(
        self,
        key: SigningKey,
        value: BValue,
        *,
        salt: bytes = b"",
        seq: int | None = None,
        cas: int | None = None,
    ) -> MutableItem:
        """Sign and store ``value``; ``seq`` defaults to one more than the current item's (else 1).

        A ``seq`` not above the stored one is refused with ConfigError (the caller's value is wrong)
        before anything is sent.
        """
        current = await self.get_mutable(key.public_key, salt)
        if seq is None:
            seq = current.seq + 1 if current is not None else 1
        elif current is not None and seq < current.seq:
            raise ConfigError(f"sequence number {seq} is lower than the stored item's {current.seq}")
        elif current is not None and seq == current.seq and current.value != value:
            raise ConfigError(f"sequence number {seq} already holds a different value; use {seq + 1} or more")
        item = sign_mutable(key, value, seq, salt)
        return await self.put_signed(item, cas)

    # -- BEP 46 -------------------------------------------------------------------------------------

    async def publish_torrent(
        self, key: SigningKey, info_hash: InfoHash, *, salt: bytes = b"", seq: int | None = None
    ) -> MutableItem:
        """Point ``(key, salt)`` at ``info_hash`` (BEP 46)."""
        return await self.put_mutable(key, info_hash_value(info_hash), salt=salt, seq=seq)

    async def resolve_torrent(self, public_key: bytes, salt: bytes = b"") -> InfoHash | None:
        """The info-hash ``(public_key, salt)`` currently points at (BEP 46), or None."""
        item = await self.get_mutable(public_key, salt)
        return parse_info_hash_value(item.value) if item is not None else None
