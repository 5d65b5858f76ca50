"""Loopback trackers for tests and benchmarks: our own HTTP + UDP tracker, and a real opentracker.

:class:`LoopbackTracker` is a small, complete tracker built on the pure codecs of
:mod:`torrentgoat.tracker`: an aiohttp web server (BEP 3 announce, BEP 48 scrape; compact BEP 23,
``peers6`` BEP 7 and dictionary peer lists) and a BEP 15 UDP server, sharing one in-memory swarm.
Every announce is recorded for assertions, and failure replies, intervals and dropped UDP packets
can be configured to exercise clients.

:class:`OpenTracker` launches the Debian ``opentracker`` binary for interop tests (see
:func:`opentracker_command` for the invocation and why it is shaped that way).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import ssl
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, cast

from aiohttp import web

from torrentgoat.errors import TrackerError
from torrentgoat.primitives import InfoHash, PeerAddress, PeerId
from torrentgoat.tracker import http as http_codec
from torrentgoat.tracker import udp as udp_codec
from torrentgoat.tracker.messages import (
    AnnounceEvent,
    AnnounceRequest,
    AnnounceResponse,
    ScrapeStats,
)

__all__ = [
    "LoopbackTracker",
    "OpenTracker",
    "RecordedAnnounce",
    "SwarmPeer",
    "free_port",
    "opentracker_command",
]

_CONNECTION_ID_LIFETIME = 120.0  # BEP 15: trackers accept an id for two minutes


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordedAnnounce:
    """One announce the loopback tracker received (for assertions)."""

    transport: str
    """``"http"`` or ``"udp"``."""
    request: AnnounceRequest
    source: PeerAddress
    """Address the request came from."""
    path: str
    """HTTP path and query, or the BEP 41 URL data of a UDP announce."""
    response: AnnounceResponse | None
    """What was answered (``None`` when a failure reason was sent)."""


@dataclass(slots=True, kw_only=True)
class SwarmPeer:
    """A peer of the in-memory swarm."""

    address: PeerAddress
    peer_id: PeerId
    left: int
    last_seen: float = field(default_factory=time.monotonic)


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def free_port(host: str = "127.0.0.1", kind: int = socket.SOCK_STREAM) -> int:
    """A port that was free a moment ago on ``host`` (for servers that cannot bind port 0)."""
    with socket.socket(_family(host), kind) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class _UDPServer(asyncio.DatagramProtocol):
    def __init__(self, tracker: LoopbackTracker) -> None:
        self.tracker = tracker
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # 3.11's selector one is not a subclass

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        reply = self.tracker._handle_udp(data, addr)
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)


class LoopbackTracker:
    """An HTTP + UDP tracker on loopback with an in-memory swarm.

    ``async with LoopbackTracker() as tracker:`` starts both servers on ``host`` (ports 0 by default,
    see :attr:`http_url` / :attr:`udp_url`).  Attributes may be changed while running:
    ``failure_reason`` (answer every announce with it), ``warning``, ``interval``, ``min_interval``,
    ``tracker_id``, ``udp_drop`` (number of next UDP datagrams to ignore, to test retransmission),
    ``whitelist`` (``None`` or the info-hashes served, like opentracker).  With ``ssl_context``
    the web server speaks HTTPS and :attr:`http_url` is an ``https://`` URL.

    Peers are keyed by peer id; an announce's address is the ``ip`` parameter when
    ``trust_ip_param`` (handy for tests), else the source address.  A reply lists the other peers
    of the swarm (never the announcing peer), at most ``numwant`` (default ``default_numwant``).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        http_port: int = 0,
        udp_port: int = 0,
        interval: int = 1800,
        min_interval: int | None = None,
        failure_reason: str | None = None,
        warning: str | None = None,
        tracker_id: bytes | None = None,
        default_numwant: int = 50,
        trust_ip_param: bool = True,
        whitelist: Iterable[InfoHash] | None = None,
        rng: random.Random | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.host = host
        self._ssl = ssl_context
        self._http_port = http_port
        self._udp_port = udp_port
        self.interval = interval
        self.min_interval = min_interval
        self.failure_reason = failure_reason
        self.warning = warning
        self.tracker_id = tracker_id
        self.default_numwant = default_numwant
        self.trust_ip_param = trust_ip_param
        self.whitelist: set[InfoHash] | None = None if whitelist is None else set(whitelist)
        self.udp_drop = 0
        self.announces: list[RecordedAnnounce] = []
        self.udp_datagrams = 0
        self._rng = rng or random.Random()
        self._swarms: dict[InfoHash, dict[PeerId, SwarmPeer]] = {}
        self._downloaded: dict[InfoHash, int] = {}
        self._connection_ids: dict[int, tuple[tuple[str, int], float]] = {}
        self._runner: web.AppRunner | None = None
        self._udp_transport: asyncio.DatagramTransport | None = None
        self._changed: asyncio.Event | None = None
        self.http_port = 0
        self.udp_port = 0

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> LoopbackTracker:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def start(self) -> None:
        self._changed = asyncio.Event()
        app = web.Application()
        app.router.add_get("/announce", self._http_announce)
        app.router.add_get("/announce.php", self._http_announce)
        app.router.add_get("/scrape", self._http_scrape)
        app.router.add_get("/scrape.php", self._http_scrape)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self._http_port, ssl_context=self._ssl)
        await site.start()
        self.http_port = self._runner.addresses[0][1]
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _UDPServer(self), local_addr=(self.host, self._udp_port), family=_family(self.host)
        )
        self._udp_transport = transport
        self.udp_port = transport.get_extra_info("sockname")[1]

    async def close(self) -> None:
        if self._udp_transport is not None:
            self._udp_transport.close()
            self._udp_transport = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ------------------------------------------------------------------ URLs and inspection

    @property
    def _netloc(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    @property
    def http_url(self) -> str:
        scheme = "https" if self._ssl is not None else "http"
        return f"{scheme}://{self._netloc}:{self.http_port}/announce"

    @property
    def udp_url(self) -> str:
        return f"udp://{self._netloc}:{self.udp_port}/announce"

    @property
    def scrape_url(self) -> str:
        return self.http_url.removesuffix("/announce") + "/scrape"

    def swarm(self, info_hash: InfoHash) -> list[SwarmPeer]:
        return list(self._swarms.get(info_hash, {}).values())

    def add_peer(self, info_hash: InfoHash, address: PeerAddress, *, peer_id: PeerId, left: int = 0) -> None:
        """Put a peer into the swarm directly (as if it had announced)."""
        self._swarms.setdefault(info_hash, {})[peer_id] = SwarmPeer(
            address=address, peer_id=peer_id, left=left
        )

    def events(self, info_hash: InfoHash | None = None) -> list[AnnounceEvent]:
        return [a.request.event for a in self.announces if info_hash in (None, a.request.info_hash)]

    async def wait_for(
        self, predicate: Callable[[RecordedAnnounce], bool], *, timeout: float = 10.0
    ) -> RecordedAnnounce:
        """The first recorded announce matching ``predicate``, waiting up to ``timeout`` seconds."""
        assert self._changed is not None, "tracker not started"
        async with asyncio.timeout(timeout):
            while True:
                self._changed.clear()
                for item in self.announces:
                    if predicate(item):
                        return item
                await self._changed.wait()

    # ------------------------------------------------------------------ the tracker logic

    def _stats(self, info_hash: InfoHash) -> ScrapeStats:
        peers = self._swarms.get(info_hash, {}).values()
        complete = sum(1 for p in peers if p.left == 0)
        return ScrapeStats(
            complete=complete, downloaded=self._downloaded.get(info_hash, 0), incomplete=len(peers) - complete
        )

    def _announce(
        self, request: AnnounceRequest, source: PeerAddress, *, family: int | None
    ) -> AnnounceResponse:
        if self.whitelist is not None and request.info_hash not in self.whitelist:
            raise TrackerError("Requested download is not authorized for use with this tracker.")
        if self.failure_reason is not None:
            raise TrackerError(self.failure_reason)
        swarm = self._swarms.setdefault(request.info_hash, {})
        host = request.ip if (self.trust_ip_param and request.ip) else source.host
        address = PeerAddress(host, request.port)
        if request.event is AnnounceEvent.STOPPED:
            swarm.pop(request.peer_id, None)
        else:
            if request.event is AnnounceEvent.COMPLETED:
                self._downloaded[request.info_hash] = self._downloaded.get(request.info_hash, 0) + 1
            swarm[request.peer_id] = SwarmPeer(address=address, peer_id=request.peer_id, left=request.left)
        numwant = self.default_numwant if request.numwant is None else min(request.numwant, 1000)
        others = [
            p
            for p in swarm.values()
            if p.peer_id != request.peer_id and (family is None or _family(p.address.host) == family)
        ][:numwant]
        stats = self._stats(request.info_hash)
        return AnnounceResponse(
            interval=self.interval,
            min_interval=self.min_interval,
            tracker_id=self.tracker_id,
            complete=stats.complete,
            incomplete=stats.incomplete,
            warning=self.warning,
            peers=tuple(p.address for p in others),
            peer_ids=tuple((p.address, p.peer_id.raw) for p in others),
        )

    def _record(self, item: RecordedAnnounce) -> None:
        self.announces.append(item)
        if self._changed is not None:
            self._changed.set()

    # ------------------------------------------------------------------ HTTP

    async def _http_announce(self, request: web.Request) -> web.Response:
        query = request.rel_url.raw_query_string
        peername = request.transport.get_extra_info("peername") if request.transport else None
        source = PeerAddress(peername[0], peername[1]) if peername else PeerAddress("127.0.0.1", 1)
        try:
            parsed = http_codec.parse_announce_query(query)
        except TrackerError as exc:
            return web.Response(body=http_codec.encode_failure_reply(str(exc)), content_type="text/plain")
        try:
            response = self._announce(parsed, source, family=None)
        except TrackerError as exc:
            self._record(
                RecordedAnnounce(
                    transport="http", request=parsed, source=source, path=request.path_qs, response=None
                )
            )
            return web.Response(body=http_codec.encode_failure_reply(str(exc)), content_type="text/plain")
        self._record(
            RecordedAnnounce(
                transport="http", request=parsed, source=source, path=request.path_qs, response=response
            )
        )
        body = http_codec.encode_announce_reply(response, compact=parsed.compact)
        return web.Response(body=body, content_type="text/plain")

    async def _http_scrape(self, request: web.Request) -> web.Response:
        try:
            hashes = http_codec.parse_scrape_query(request.rel_url.raw_query_string)
        except TrackerError as exc:
            return web.Response(body=http_codec.encode_failure_reply(str(exc)), content_type="text/plain")
        wanted = hashes or list(self._swarms)
        files = [(h, self._stats(h)) for h in wanted if h in self._swarms]
        return web.Response(body=http_codec.encode_scrape_reply(files), content_type="text/plain")

    # ------------------------------------------------------------------ UDP (BEP 15)

    def _handle_udp(self, data: bytes, addr: tuple[Any, ...]) -> bytes | None:
        self.udp_datagrams += 1
        if self.udp_drop > 0:
            self.udp_drop -= 1
            return None
        source = PeerAddress(addr[0], addr[1])
        key = (str(addr[0]), int(addr[1]))
        try:
            packet = udp_codec.decode_request(data)
        except TrackerError as exc:
            tid = udp_codec.peek_transaction_id(data[8:]) if len(data) >= 16 else None
            if tid is None:
                return None
            return udp_codec.encode_packet(udp_codec.UDPError(transaction_id=tid, message=str(exc)))
        now = time.monotonic()
        if isinstance(packet, udp_codec.UDPConnect):
            cid = self._rng.getrandbits(64)
            self._connection_ids = {c: v for c, v in self._connection_ids.items() if v[1] > now}
            self._connection_ids[cid] = (key, now + _CONNECTION_ID_LIFETIME)
            return udp_codec.encode_packet(
                udp_codec.UDPConnectReply(transaction_id=packet.transaction_id, connection_id=cid)
            )
        known = self._connection_ids.get(packet.connection_id)
        if known is None or known[0] != key or known[1] <= now:
            return udp_codec.encode_packet(
                udp_codec.UDPError(transaction_id=packet.transaction_id, message="invalid connection id")
            )
        ipv6 = ":" in source.host
        if isinstance(packet, udp_codec.UDPScrape):
            stats = tuple(self._stats(h) for h in packet.info_hashes)
            return udp_codec.encode_packet(
                udp_codec.UDPScrapeReply(transaction_id=packet.transaction_id, stats=stats)
            )
        path = packet.url_data.decode("latin-1")
        try:
            response = self._announce(packet.request, source, family=_family(source.host))
        except TrackerError as exc:
            self._record(
                RecordedAnnounce(
                    transport="udp", request=packet.request, source=source, path=path, response=None
                )
            )
            return udp_codec.encode_packet(
                udp_codec.UDPError(transaction_id=packet.transaction_id, message=str(exc))
            )
        self._record(
            RecordedAnnounce(
                transport="udp", request=packet.request, source=source, path=path, response=response
            )
        )
        reply = udp_codec.UDPAnnounceReply(
            transaction_id=packet.transaction_id,
            interval=response.interval or 0,
            leechers=response.incomplete or 0,
            seeders=response.complete or 0,
            peers=response.peers,
        )
        return udp_codec.encode_packet(reply, ipv6=ipv6)


# --------------------------------------------------------------------------- opentracker


def opentracker_command(
    binary: str,
    *,
    workdir: Path,
    host: str,
    http_port: int,
    udp_port: int,
    whitelist_name: str = "whitelist.txt",
) -> list[str]:
    """The opentracker command line (Debian build, whitelist mode).

    Facts measured with Debian 12's opentracker: it only serves info-hashes listed in the
    whitelist (``-w``, 40 hex digits a line).  Started as root it chroots into ``-d`` and drops to
    ``-u`` (default ``nobody``) -- it panics only if it is still root afterwards, so running as
    root works; as a normal user it just chdirs into ``-d``.  Either way the whitelist path is
    read *relative to* ``-d``, and the directory and file must be readable by the ``-u`` user.
    """
    command = [binary, "-i", host, "-p", str(http_port), "-P", str(udp_port), "-d", str(workdir)]
    command += ["-w", whitelist_name]
    if os.geteuid() == 0:
        command += ["-u", "nobody"]
    return command


class OpenTracker:
    """A real opentracker on loopback for interop tests: ``async with OpenTracker(binary, [ih])``."""

    def __init__(
        self,
        binary: str,
        info_hashes: Sequence[InfoHash],
        *,
        host: str = "127.0.0.1",
        http_port: int | None = None,
        udp_port: int | None = None,
    ) -> None:
        self.binary = binary
        self.info_hashes = list(info_hashes)
        self.host = host
        self.http_port = http_port or free_port(host, socket.SOCK_STREAM)
        self.udp_port = udp_port or free_port(host, socket.SOCK_DGRAM)
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._process: asyncio.subprocess.Process | None = None

    @property
    def http_url(self) -> str:
        netloc = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{netloc}:{self.http_port}/announce"

    @property
    def udp_url(self) -> str:
        netloc = f"[{self.host}]" if ":" in self.host else self.host
        return f"udp://{netloc}:{self.udp_port}/announce"

    async def __aenter__(self) -> OpenTracker:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def start(self, *, timeout: float = 10.0) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="tg-opentracker-")
        workdir = Path(self._tmp.name)
        workdir.chmod(0o755)  # the dropped-privilege user must read the whitelist
        whitelist = workdir / "whitelist.txt"
        whitelist.write_text("".join(f"{h.hex}\n" for h in self.info_hashes))
        whitelist.chmod(0o644)
        command = opentracker_command(
            self.binary, workdir=workdir, host=self.host, http_port=self.http_port, udp_port=self.udp_port
        )
        self._process = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )
        deadline = time.monotonic() + timeout
        while True:
            if self._process.returncode is not None:
                err = await self._process.stderr.read() if self._process.stderr else b""
                raise TrackerError(f"opentracker exited with {self._process.returncode}: {err[-500:]!r}")
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection(self.host, self.http_port)
                writer.close()
                await writer.wait_closed()
                break
            if time.monotonic() > deadline:
                raise TrackerError(f"opentracker did not listen on {self.host}:{self.http_port}")
            await asyncio.sleep(0.05)
        # it loads the whitelist in a thread after binding: until then it refuses every info-hash
        while self.info_hashes and not await self._serves(self.info_hashes[0]):
            if time.monotonic() > deadline:
                raise TrackerError(f"opentracker did not load its whitelist within {timeout} s")
            await asyncio.sleep(0.05)

    async def _serves(self, info_hash: InfoHash) -> bool:
        """Whether an announce for ``info_hash`` is accepted: a made-up seed on port 1 announces
        ``started`` and, if accepted, ``stopped`` at once, so the swarm is empty again."""
        peer_id = "-TGPROBE-" + "".join(random.choice("0123456789") for _ in range(11))
        query = (
            f"info_hash={urllib.parse.quote_from_bytes(info_hash.raw)}&peer_id={peer_id}&port=1"
            "&uploaded=0&downloaded=0&left=0&compact=1&numwant=0&event="
        )
        accepted = b"failure reason" not in await self._http_get(f"/announce?{query}started")
        if accepted:
            await self._http_get(f"/announce?{query}stopped")
        return accepted

    async def _http_get(self, target: str) -> bytes:
        reader, writer = await asyncio.open_connection(self.host, self.http_port)
        try:
            writer.write(f"GET {target} HTTP/1.0\r\nHost: {self.host}\r\n\r\n".encode())
            await writer.drain()
            return await asyncio.wait_for(reader.read(), 5.0)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def close(self) -> None:
        if self._process is not None and self._process.returncode is None:
            self._process.terminate()
            try:
                await asyncio.wait_for(self._process.wait(), 5.0)
            except TimeoutError:
                self._process.kill()
                await self._process.wait()
        self._process = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
