"""Tracker driver, level L4: HTTP(S) announces with aiohttp, UDP with one shared datagram socket,
and :class:`TrackerAnnouncer`, which runs the BEP 12 tiers over time.

The protocol logic is in :mod:`torrentgoat.tracker` (pure); this module only moves bytes and
keeps time:

* :func:`announce` / :func:`scrape` -- one request to one tracker URL (``http``, ``https``,
  ``udp``), returning :class:`~torrentgoat.tracker.messages.AnnounceResponse` or raising
  :class:`~torrentgoat.errors.TrackerError` (every network or protocol failure is translated);
* :class:`UDPTrackerSocket` -- one UDP socket per address family, shared by any number of
  :class:`~torrentgoat.tracker.udp_client.UDPTrackerClient` engines; replies are routed to the engine
  by transaction id (BEP 15) and checked against the tracker's address;
* :class:`TrackerAnnouncer` -- drives an :class:`~torrentgoat.tracker.tiers.AnnounceScheduler`:
  ``started`` first, ``completed`` once (:meth:`TrackerAnnouncer.completed`), ``stopped`` on
  :meth:`TrackerAnnouncer.stop` (best effort, short timeout); peers go to a queue or a callback.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from torrentgoat.errors import TrackerError
from torrentgoat.primitives import InfoHash, PeerAddress, PeerId
from torrentgoat.tracker import http as http_codec
from torrentgoat.tracker.messages import (
    MAX_BODY_SIZE,
    AnnounceEvent,
    AnnounceRequest,
    AnnounceResponse,
    ScrapeResponse,
    TrackerFailure,
)
from torrentgoat.tracker.tiers import (
    AnnounceAttempt,
    AnnounceConfig,
    AnnounceScheduler,
    SchedulerState,
    TierList,
    retry_in_of,
)
from torrentgoat.tracker.udp_client import (
    Announced,
    Failed,
    Scraped,
    UDPTrackerClient,
    UDPTrackerConfig,
    UDPTrackerEvent,
)
from torrentgoat.tracker.urls import TrackerURL, parse_tracker_url, scrape_url

if TYPE_CHECKING:  # aiohttp is imported at the first HTTP announce (UDP trackers and the DHT need none)
    import aiohttp

__all__ = [
    "DEFAULT_ANNOUNCER_UDP_CONFIG",
    "USER_AGENT",
    "TrackerAnnouncer",
    "TransferStats",
    "UDPTrackerSocket",
    "announce",
    "scrape",
]

USER_AGENT = "torrentgoat/0.1"

DEFAULT_ANNOUNCER_UDP_CONFIG = UDPTrackerConfig(timeout_base=15.0, max_retransmits=2)
"""The announcer gives a silent UDP tracker 15 + 30 + 60 s before falling through to the next one
(BEP 15 allows retransmitting up to n = 8, i.e. about two hours, which would stall BEP 12 tiers)."""

TransferStats = tuple[int, int, int]
"""``(uploaded, downloaded, left)`` in bytes, as reported to trackers."""


async def _wait(event: asyncio.Event, delay: float | None) -> None:
    """Wait until ``event`` is set or ``delay`` passes.

    Not ``asyncio.wait_for``: on Python 3.11 it swallows a cancellation that arrives while the
    event is being set, which left a cancelled announcer sleeping for a whole interval.
    """
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(delay):
            await event.wait()


# --------------------------------------------------------------------------- HTTP


async def _read_bounded(response: aiohttp.ClientResponse) -> bytes:
    if response.content_length is not None and response.content_length > MAX_BODY_SIZE:
        raise TrackerError(f"tracker reply of {response.content_length} bytes is larger than {MAX_BODY_SIZE}")
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await response.content.read(65536)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > MAX_BODY_SIZE:
            raise TrackerError(f"tracker reply is larger than {MAX_BODY_SIZE} bytes")
        chunks.append(chunk)


async def _http_get(url: str, session: aiohttp.ClientSession | None, timeout: float) -> tuple[int, bytes]:
    import aiohttp
    import yarl

    own = session is None
    client = session if session is not None else aiohttp.ClientSession()
    try:
        async with client.get(
            yarl.URL(url, encoded=True),  # keep our exact percent-encoding of binary values
            timeout=aiohttp.ClientTimeout(total=timeout),
            headers={"User-Agent": USER_AGENT},
            max_redirects=5,
        ) as response:
            return response.status, await _read_bounded(response)
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        raise TrackerError(f"HTTP tracker request to {url.partition('?')[0]} failed: {exc!r}") from exc
    except TimeoutError:
        raise TrackerError(f"HTTP tracker {url.partition('?')[0]} did not answer in {timeout} s") from None
    finally:
        if own:
            await client.close()


def _check_status(status: int, body: bytes, parse: Callable[[bytes], Any]) -> None:
    if status == 200:
        return
    try:
        parse(body)  # a failure reason sent with an error status is still the tracker's word
    except TrackerFailure:
        raise
    except TrackerError:
        pass
    raise TrackerError(f"HTTP tracker answered status {status}")


# --------------------------------------------------------------------------- UDP


class _UDPProtocol(asyncio.DatagramProtocol):
    def __init__(self, owner: UDPTrackerSocket) -> None:
        self.owner = owner

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.owner._received(data, addr)

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP errors: the retransmission timer decides


class _Route:
    __slots__ = ("addr", "client", "wakeup")

    def __init__(self, client: UDPTrackerClient, addr: tuple[str, int]) -> None:
        self.client = client
        self.addr = addr
        self.wakeup = asyncio.Event()


class UDPTrackerSocket:
    """One UDP socket per address family, shared by all UDP tracker engines of its owner.

    Replies are routed by BEP 15 transaction id to the engine waiting for it; a reply from another
    address than the tracker's is ignored.  Use as ``async with UDPTrackerSocket() as sock``.
    """

    def __init__(self, *, bind_v4: str = "0.0.0.0", bind_v6: str = "::") -> None:
        self._bind: dict[int, str] = {socket.AF_INET: bind_v4, socket.AF_INET6: bind_v6}
        self._transports: dict[int, asyncio.DatagramTransport] = {}
        self._routes: dict[int, _Route] = {}
        self._lock = asyncio.Lock()
        self._closed = False

    async def __aenter__(self) -> UDPTrackerSocket:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._closed = True
        for transport in self._transports.values():
            transport.close()
        self._transports.clear()

    async def _transport(self, family: int) -> asyncio.DatagramTransport:
        async with self._lock:
            if self._closed:
                raise TrackerError("UDP tracker socket is closed")
            transport = self._transports.get(family)
            if transport is None or transport.is_closing():
                loop = asyncio.get_running_loop()
                try:
                    transport, _ = await loop.create_datagram_endpoint(
                        lambda: _UDPProtocol(self), local_addr=(self._bind[family], 0), family=family
                    )
                except OSError as exc:
                    raise TrackerError(f"cannot open a UDP socket: {exc}") from exc
                self._transports[family] = transport
            return transport

    def _received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        if len(data) < 8:
            return
        route = self._routes.get(int.from_bytes(data[4:8], "big"))
        if route is None or (str(addr[0]), int(addr[1])) != route.addr:
            return
        route.client.receive_datagram(data, asyncio.get_running_loop().time())
        route.wakeup.set()

    async def run(
        self,
        client: UDPTrackerClient,
        tracker: TrackerURL,
        begin: Callable[[float], None],
    ) -> UDPTrackerEvent:
        """Start an operation with ``begin(now)`` and pump ``client`` until it emits its event."""
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(tracker.host, tracker.port, type=socket.SOCK_DGRAM)
        except (OSError, UnicodeError) as exc:
            raise TrackerError(f"cannot resolve UDP tracker {tracker.host!r}: {exc}") from exc
        if not infos:
            raise TrackerError(f"UDP tracker {tracker.host!r} has no address")
        family, _, _, _, sockaddr = infos[0]
        transport = await self._transport(family)
        client.ipv6 = family == socket.AF_INET6  # a DNS name may resolve to either family
        route = _Route(client, (str(sockaddr[0]), int(sockaddr[1])))
        tid: int | None = None
        begin(loop.time())
        try:
            while True:
                now = loop.time()
                for datagram in client.datagrams_to_send(now):
                    if tid is not None and self._routes.get(tid) is route:
                        del self._routes[tid]
                    tid = client.pending_transaction_id
                    if tid is not None:
                        self._routes[tid] = route
                    transport.sendto(datagram, sockaddr)
                event = client.next_event()
                if event is not None:
                    return event
                timer = client.get_timer()
                route.wakeup.clear()
                if timer is not None and timer > now:
                    await _wait(route.wakeup, timer - now)
                client.handle_timer(loop.time())
        finally:
            if client.busy:
                client.cancel()
            if tid is not None and self._routes.get(tid) is route:
                del self._routes[tid]


def _udp_client(tracker: TrackerURL, rng: random.Random, config: UDPTrackerConfig | None) -> UDPTrackerClient:
    return UDPTrackerClient(
        rng=rng,
        ipv6=":" in tracker.host,
        url_data=tracker.request_path.encode() if tracker.request_path != "/" else b"",
        config=config,
    )


def _announce_result(event: UDPTrackerEvent) -> AnnounceResponse:
    match event:
        case Announced(response=response):
            return response
        case Failed(tracker_message=str(message)):
            raise TrackerFailure(message)
        case Failed(reason=reason):
            raise TrackerError(reason)
    raise TrackerError(f"unexpected UDP tracker result {event!r}")


# --------------------------------------------------------------------------- one-shot API


async def announce(
    url: str,
    request: AnnounceRequest,
    *,
    session: aiohttp.ClientSession | None = None,
    udp: UDPTrackerSocket | None = None,
    udp_client: UDPTrackerClient | None = None,
    timeout: float = 30.0,
    rng: random.Random | None = None,
    udp_config: UDPTrackerConfig | None = None,
) -> AnnounceResponse:
    """Announce once to ``url`` (http, https or udp); every failure is a :class:`TrackerError`.

    ``session`` (HTTP) and ``udp`` (UDP socket) are borrowed when given, else made for this call.
    ``udp_client`` reuses an engine (and its BEP 15 connection id) across calls.  ``timeout``
    bounds the whole call; UDP retransmissions follow ``udp_config`` within it.
    """
    tracker = parse_tracker_url(url)
    if not tracker.is_udp:
        status, body = await _http_get(http_codec.build_announce_url(url, request), session, timeout)
        _check_status(status, body, http_codec.parse_announce_reply)
        return http_codec.parse_announce_reply(body)
    client = udp_client or _udp_client(tracker, rng or random.Random(), udp_config)
    event = await _udp_round_trip(udp, client, tracker, lambda now: client.announce(request, now), timeout)
    return _announce_result(event)


async def _udp_round_trip(
    udp: UDPTrackerSocket | None,
    client: UDPTrackerClient,
    tracker: TrackerURL,
    start: Callable[[float], None],
    timeout: float,
) -> UDPTrackerEvent:
    """Run one UDP tracker exchange (BEP 15) on ``udp`` (or a socket of its own), within ``timeout``."""
    own = udp is None
    sock = udp if udp is not None else UDPTrackerSocket()
    try:
        async with asyncio.timeout(timeout):
            return await sock.run(client, tracker, start)
    except TimeoutError:
        raise TrackerError(
            f"UDP tracker {tracker.host}:{tracker.port} did not answer in {timeout} s"
        ) from None
    finally:
        if own:
            sock.close()


async def scrape(
    url: str,
    info_hashes: Sequence[InfoHash],
    *,
    session: aiohttp.ClientSession | None = None,
    udp: UDPTrackerSocket | None = None,
    timeout: float = 30.0,
    rng: random.Random | None = None,
    udp_config: UDPTrackerConfig | None = None,
) -> ScrapeResponse:
    """Scrape ``info_hashes`` from the tracker whose *announce* URL is ``url`` (BEP 48 / BEP 15)."""
    tracker = parse_tracker_url(url)
    if not tracker.is_udp:
        target = scrape_url(url)
        if target is None:
            raise TrackerError(f"tracker {url[:80]!r} does not support scrape (path is not 'announce')")
        status, body = await _http_get(http_codec.build_scrape_url(target, info_hashes), session, timeout)
        _check_status(status, body, http_codec.parse_scrape_reply)
        return http_codec.parse_scrape_reply(body)
    client = _udp_client(tracker, rng or random.Random(), udp_config)
    event = await _udp_round_trip(udp, client, tracker, lambda now: client.scrape(info_hashes, now), timeout)
    match event:
        case Scraped(response=response):
            return response
        case Failed(reason=reason):
            raise TrackerError(reason)
    raise TrackerError(f"unexpected UDP tracker result {event!r}")


# --------------------------------------------------------------------------- announcer


class TrackerAnnouncer:
    """Announces one torrent to its tracker tiers over time (BEP 12, BEP 3 events).

    ``stats()`` returns ``(uploaded, downloaded, left)`` at announce time.  Peers of every successful
    announce go to ``on_peers(url, peers)`` when given, else into :attr:`peers` (an
    :class:`asyncio.Queue` of :class:`PeerAddress`, bounded; extra peers are dropped).

    Use ``async with TrackerAnnouncer(...)`` (or :meth:`start` / :meth:`stop`); :meth:`stop` sends
    ``stopped`` to the trackers that saw us start, best effort within ``config.stop_timeout``.
    """

    def __init__(
        self,
        tiers: Sequence[Sequence[str]],
        *,
        info_hash: InfoHash,
        peer_id: PeerId,
        port: int,
        stats: Callable[[], TransferStats],
        on_peers: Callable[[str, tuple[PeerAddress, ...]], None] | None = None,
        complete: bool = False,
        config: AnnounceConfig | None = None,
        udp_config: UDPTrackerConfig | None = None,
        rng: random.Random | None = None,
        session: aiohttp.ClientSession | None = None,
        udp: UDPTrackerSocket | None = None,
        key: int | None = None,
        queue_size: int = 4096,
    ) -> None:
        self._rng = rng or random.Random()
        usable: list[list[str]] = []
        self.rejected: dict[str, str] = {}
        """Tracker URLs left out because they cannot be used, with the reason."""
        for tier in tiers:
            kept: list[str] = []
            for url in tier:
                try:
                    parse_tracker_url(url)
                except TrackerError as exc:
                    self.rejected[url] = str(exc)
                    continue
                kept.append(url)
            usable.append(kept)
        self.config = config or AnnounceConfig()
        self._udp_config = udp_config or DEFAULT_ANNOUNCER_UDP_CONFIG
        self._tiers = TierList(usable, self._rng)
        self._info_hash = info_hash
        self._peer_id = peer_id
        self._port = port
        self._stats = stats
        self._on_peers = on_peers
        self._complete_at_start = complete
        self._key = self._rng.getrandbits(32) if key is None else key
        self._session = session
        self._own_session = False
        self._udp = udp
        self._own_udp = False
        self._udp_clients: dict[str, UDPTrackerClient] = {}
        self.peers: asyncio.Queue[PeerAddress] = asyncio.Queue(maxsize=queue_size)
        self.scheduler: AnnounceScheduler | None = None
        self.last_response: AnnounceResponse | None = None
        self.last_warning: str | None = None
        self.announce_count = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> TrackerAnnouncer:
        self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    @property
    def trackers(self) -> tuple[tuple[str, ...], ...]:
        """Current tier order (shuffled once, responding trackers first)."""
        return self._tiers.tiers

    @property
    def last_error(self) -> str | None:
        return None if self.scheduler is None else self.scheduler.last_error

    def start(self) -> None:
        """Start announcing in a background task of the running loop."""
        if self._task is not None:
            return
        loop = asyncio.get_running_loop()
        self.scheduler = AnnounceScheduler(
            self._tiers, now=loop.time(), complete=self._complete_at_start, config=self.config
        )
        self._task = loop.create_task(self._run(), name=f"tracker-announcer-{self._info_hash.hex[:8]}")

    def completed(self) -> None:
        """The download finished: send ``completed`` now (once) to trackers that saw us start."""
        if self.scheduler is not None and self.scheduler.state is not SchedulerState.STOPPED:
            self.scheduler.completed(asyncio.get_running_loop().time())
            self._wake.set()
        else:
            self._complete_at_start = True

    def reannounce(self) -> None:
        """Announce again as soon as the tracker's ``min interval`` allows."""
        if self.scheduler is not None and self.scheduler.state is not SchedulerState.STOPPED:
            self.scheduler.reannounce(asyncio.get_running_loop().time())
            self._wake.set()

    async def stop(self) -> None:
        """Stop announcing; send ``stopped`` best effort; release sockets we opened.

        A ``completed`` announce still due (the download just finished) is given up to
        ``config.stop_timeout`` to go out first, so the tracker counts the completion (BEP 3)."""
        scheduler = self.scheduler
        if self._task is not None and scheduler is not None and scheduler.completed_pending:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.config.stop_timeout
            while scheduler.completed_pending and loop.time() < deadline and not self._task.done():
                await asyncio.sleep(0.05)
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                if (current := asyncio.current_task()) is not None and current.cancelling():
                    raise
        try:
            if self.scheduler is not None:
                attempts = self.scheduler.stop(asyncio.get_running_loop().time())
                if attempts:
                    try:
                        async with asyncio.timeout(self.config.stop_timeout):
                            await asyncio.gather(
                                *(self._announce_one(a, timeout=self.config.stop_timeout) for a in attempts),
                                return_exceptions=True,
                            )
                    except TimeoutError:
                        pass
        finally:
            await self._release()

    async def _release(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None
            self._own_session = False
        if self._own_udp and self._udp is not None:
            self._udp.close()
            self._udp = None
            self._own_udp = False

    # ------------------------------------------------------------------ the loop

    def _request(self, attempt: AnnounceAttempt) -> AnnounceRequest:
        uploaded, downloaded, left = self._stats()
        return AnnounceRequest(
            info_hash=self._info_hash,
            peer_id=self._peer_id,
            port=self._port,
            uploaded=max(0, uploaded),
            downloaded=max(0, downloaded),
            left=max(0, left),
            event=attempt.event,
            numwant=0 if attempt.event is AnnounceEvent.STOPPED else self.config.numwant,
            compact=True,
            key=self._key,
            tracker_id=attempt.tracker_id,
        )

    async def _announce_one(self, attempt: AnnounceAttempt, *, timeout: float) -> AnnounceResponse:
        tracker = parse_tracker_url(attempt.url)
        request = self._request(attempt)
        if not tracker.is_udp:
            if self._session is None:
                import aiohttp

                self._session = aiohttp.ClientSession()
                self._own_session = True
            return await announce(attempt.url, request, session=self._session, timeout=timeout)
        if self._udp is None:
            self._udp = UDPTrackerSocket()
            self._own_udp = True
        client = self._udp_clients.get(attempt.url)
        if client is None or client.busy:
            client = self._udp_clients[attempt.url] = _udp_client(tracker, self._rng, self._udp_config)
        udp_timeout = timeout if attempt.event is AnnounceEvent.STOPPED else 1e9
        return await announce(attempt.url, request, udp=self._udp, udp_client=client, timeout=udp_timeout)

    def _deliver(self, url: str, response: AnnounceResponse) -> None:
        if response.warning:
            self.last_warning = response.warning
        if self._on_peers is not None:
            self._on_peers(url, response.peers)
            return
        for peer in response.peers:
            if self.peers.full():
                break
            self.peers.put_nowait(peer)

    async def _run(self) -> None:
        scheduler = self.scheduler
        assert scheduler is not None
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            attempt = scheduler.next_attempt(loop.time())
            if attempt is None:
                timer = scheduler.get_timer()
                delay = None if timer is None else max(0.0, timer - loop.time())
                await _wait(self._wake, delay)
                continue
            try:
                response = await self._announce_one(attempt, timeout=self.config.request_timeout)
            except TrackerError as exc:
                scheduler.announce_failed(attempt.url, str(exc), loop.time(), retry_in=retry_in_of(exc))
                continue
            self.announce_count += 1
            self.last_response = response
            scheduler.announce_succeeded(attempt.url, response, loop.time())
            self._deliver(attempt.url, response)
