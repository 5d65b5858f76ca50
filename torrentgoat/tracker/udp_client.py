"""Sans-IO UDP tracker client (BEP 15), level L2: one state machine per tracker.

The client never touches a socket or a clock.  The driver calls :meth:`UDPTrackerClient.announce`
or :meth:`~UDPTrackerClient.scrape`, sends what :meth:`~UDPTrackerClient.datagrams_to_send` returns,
feeds replies to :meth:`~UDPTrackerClient.receive_datagram`, calls
:meth:`~UDPTrackerClient.handle_timer` when :meth:`~UDPTrackerClient.get_timer` is due, and reads
:class:`Announced` / :class:`Scraped` / :class:`Failed` from :meth:`~UDPTrackerClient.next_event`.

Rules from BEP 15:

* a connection id is obtained with a connect request and reused "until one minute after it has
  received it"; an expired id is re-requested (also in the middle of retransmissions);
* "If a response is not received after 15 * 2 ^ n seconds, the client should retransmit the
  request, where n starts at 0 and is increased up to 8" -- after the last wait the operation fails;
* a reply whose transaction id does not match the outstanding request is ignored (it may be a
  late duplicate or spoofed); a matching but malformed reply fails the operation.
"""

from __future__ import annotations

import enum
import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from torrentgoat.errors import LocalProtocolError, TrackerError
from torrentgoat.primitives import InfoHash
from torrentgoat.tracker.messages import AnnounceRequest, AnnounceResponse, ScrapeResponse
from torrentgoat.tracker.udp import (
    MAX_UDP_SCRAPE_HASHES,
    UDPAnnounce,
    UDPAnnounceReply,
    UDPConnect,
    UDPConnectReply,
    UDPError,
    UDPScrape,
    UDPScrapeReply,
    decode_response,
    encode_packet,
    peek_transaction_id,
)

__all__ = [
    "Announced",
    "Failed",
    "Scraped",
    "UDPClientState",
    "UDPTrackerClient",
    "UDPTrackerConfig",
    "UDPTrackerEvent",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class UDPTrackerConfig:
    """Timing of the UDP tracker client (BEP 15 "Time outs")."""

    timeout_base: float = 15.0
    """Seconds of the first wait; wait n is ``timeout_base * 2**n`` (BEP 15: 15)."""
    max_retransmits: int = 8
    """Highest n of BEP 15 ("increased up to 8"); the operation fails after that wait."""
    connection_id_lifetime: float = 60.0
    """How long an obtained connection id is reused (BEP 15: one minute)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Announced:
    """The announce succeeded."""

    response: AnnounceResponse


@dataclass(frozen=True, slots=True, kw_only=True)
class Scraped:
    """The scrape succeeded."""

    response: ScrapeResponse


@dataclass(frozen=True, slots=True, kw_only=True)
class Failed:
    """The operation failed: tracker error message, malformed reply, or no reply in time."""

    reason: str
    timed_out: bool = False
    tracker_message: str | None = None
    """The tracker's own error text (BEP 15 error packet), when that is why it failed."""


UDPTrackerEvent = Announced | Scraped | Failed


class UDPClientState(enum.Enum):
    IDLE = "idle"
    CONNECTING = "connecting"
    REQUESTING = "requesting"


class UDPTrackerClient:
    """BEP 15 client for one tracker; one announce or scrape at a time."""

    # The transition table: what each state accepts.  Anything else is ignored (stale datagrams)
    # or, for calls from our side, a LocalProtocolError.
    _TRANSITIONS: dict[tuple[UDPClientState, str], str] = {
        (UDPClientState.IDLE, "start"): "_start",
        (UDPClientState.CONNECTING, "connect_reply"): "_on_connect_reply",
        (UDPClientState.CONNECTING, "error"): "_on_error",
        (UDPClientState.CONNECTING, "timeout"): "_on_timeout",
        (UDPClientState.REQUESTING, "announce_reply"): "_on_announce_reply",
        (UDPClientState.REQUESTING, "scrape_reply"): "_on_scrape_reply",
        (UDPClientState.REQUESTING, "error"): "_on_error",
        (UDPClientState.REQUESTING, "timeout"): "_on_timeout",
    }

    def __init__(
        self,
        *,
        rng: random.Random,
        ipv6: bool = False,
        url_data: bytes = b"",
        config: UDPTrackerConfig | None = None,
    ) -> None:
        self._rng = rng
        self.ipv6 = ipv6
        """Whether the tracker is reached over IPv6 (18-byte peers, BEP 15); the driver may set it
        once the host name is resolved."""
        self._url_data = url_data[:1024]
        self._config = config or UDPTrackerConfig()
        self.state = UDPClientState.IDLE
        self._connection_id: int | None = None
        self._connection_expires = 0.0
        self._transaction_id: int | None = None
        self._packet = b""
        self._attempt = 0
        self._deadline: float | None = None
        self._announce: AnnounceRequest | None = None
        self._scrape: tuple[InfoHash, ...] = ()
        self._outgoing: list[bytes] = []
        self._events: deque[UDPTrackerEvent] = deque()
        self.ignored_datagrams = 0
        """Datagrams dropped because they matched no outstanding request."""

    # ------------------------------------------------------------------ public API

    @property
    def busy(self) -> bool:
        return self.state is not UDPClientState.IDLE

    @property
    def pending_transaction_id(self) -> int | None:
        """Transaction id a reply must carry now (drivers route shared-socket datagrams by it)."""
        return self._transaction_id if self.busy else None

    def has_connection_id(self, now: float) -> bool:
        return self._connection_id is not None and now < self._connection_expires

    def announce(self, request: AnnounceRequest, now: float) -> None:
        """Start an announce (BEP 15 "Announce")."""
        self._announce, self._scrape = request, ()
        self._dispatch("start", now)

    def scrape(self, info_hashes: Sequence[InfoHash], now: float) -> None:
        """Start a scrape of 1 to 74 torrents (BEP 15 "Scrape")."""
        if not 0 < len(info_hashes) <= MAX_UDP_SCRAPE_HASHES:
            raise LocalProtocolError(f"a UDP scrape carries 1 to {MAX_UDP_SCRAPE_HASHES} info-hashes")
        self._announce, self._scrape = None, tuple(info_hashes)
        self._dispatch("start", now)

    def cancel(self) -> None:
        """Abandon the current operation without an event (the connection id is kept)."""
        self.state = UDPClientState.IDLE
        self._transaction_id = None
        self._deadline = None
        self._outgoing.clear()

    def datagrams_to_send(self, now: float) -> list[bytes]:
        """Datagrams to send to the tracker now (first transmissions and retransmissions)."""
        out, self._outgoing = self._outgoing, []
        return out

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must be called next, or ``None``."""
        return self._deadline

    def handle_timer(self, now: float) -> None:
        """Retransmit, re-connect, or fail the operation, if the timer is due."""
        if self._deadline is not None and now >= self._deadline:
            self._dispatch("timeout", now)

    def receive_datagram(self, data: bytes, now: float) -> bool:
        """Feed a datagram from the tracker; returns ``False`` when it was ignored."""
        tid = peek_transaction_id(data)
        if not self.busy or tid is None or tid != self._transaction_id:
            self.ignored_datagrams += 1
            return False
        try:
            packet = decode_response(data, ipv6=self.ipv6)
        except TrackerError as exc:
            self._fail(f"malformed UDP tracker reply: {exc}")
            return True
        kind = {
            UDPConnectReply: "connect_reply",
            UDPAnnounceReply: "announce_reply",
            UDPScrapeReply: "scrape_reply",
            UDPError: "error",
        }[type(packet)]
        handler = self._TRANSITIONS.get((self.state, kind))
        if handler is None or (kind == "announce_reply" and self._announce is None):
            self._fail(f"UDP tracker sent an unexpected {kind.replace('_', ' ')} while {self.state.value}")
            return True
        getattr(self, handler)(packet, now)
        return True

    def next_event(self) -> UDPTrackerEvent | None:
        return self._events.popleft() if self._events else None

    # ------------------------------------------------------------------ transitions

    def _dispatch(self, kind: str, now: float) -> None:
        handler = self._TRANSITIONS.get((self.state, kind))
        if handler is None:
            raise LocalProtocolError(f"UDP tracker client cannot {kind} while {self.state.value}")
        getattr(self, handler)(now)

    def _start(self, now: float) -> None:
        self._attempt = 0
        if self.has_connection_id(now):
            self._send_request(now)
        else:
            self._send_connect(now)

    def _new_transaction(self) -> int:
        tid = self._rng.getrandbits(32)
        while tid == self._transaction_id:
            tid = self._rng.getrandbits(32)
        self._transaction_id = tid
        return tid

    def _transmit(self, packet: bytes, now: float) -> None:
        self._packet = packet
        self._outgoing.append(packet)
        self._deadline = now + self._config.timeout_base * (2**self._attempt)

    def _send_connect(self, now: float) -> None:
        self.state = UDPClientState.CONNECTING
        self._connection_id = None
        self._transmit(encode_packet(UDPConnect(transaction_id=self._new_transaction())), now)

    def _send_request(self, now: float) -> None:
        assert self._connection_id is not None
        self.state = UDPClientState.REQUESTING
        tid = self._new_transaction()
        if self._announce is not None:
            packet = encode_packet(
                UDPAnnounce(
                    connection_id=self._connection_id,
                    transaction_id=tid,
                    request=self._announce,
                    url_data=self._url_data,
                )
            )
        else:
            packet = encode_packet(
                UDPScrape(connection_id=self._connection_id, transaction_id=tid, info_hashes=self._scrape)
            )
        self._transmit(packet, now)

    def _on_timeout(self, now: float) -> None:
        if self._attempt >= self._config.max_retransmits:
            self._fail(f"no reply from UDP tracker after {self._attempt + 1} attempts", timed_out=True)
            return
        self._attempt += 1
        if self.state is UDPClientState.REQUESTING and not self.has_connection_id(now):
            self._send_connect(now)  # BEP 15: the connection id expired during retransmission
        else:
            self._transmit(self._packet, now)

    def _on_connect_reply(self, packet: UDPConnectReply, now: float) -> None:
        self._connection_id = packet.connection_id
        self._connection_expires = now + self._config.connection_id_lifetime
        self._attempt = 0
        self._send_request(now)

    def _on_announce_reply(self, packet: UDPAnnounceReply, now: float) -> None:
        response = AnnounceResponse(
            interval=packet.interval,
            complete=packet.seeders,
            incomplete=packet.leechers,
            peers=packet.peers,
        )
        self._finish(Announced(response=response))

    def _on_scrape_reply(self, packet: UDPScrapeReply, now: float) -> None:
        if self._announce is not None:
            self._fail("UDP tracker sent a scrape reply to an announce")
            return
        if len(packet.stats) < len(self._scrape):
            self._fail(f"UDP scrape reply has {len(packet.stats)} entries for {len(self._scrape)} torrents")
            return
        files = tuple(zip(self._scrape, packet.stats, strict=False))
        self._finish(Scraped(response=ScrapeResponse(files=files)))

    def _on_error(self, packet: UDPError, now: float) -> None:
        self._connection_id = None  # the id may be why it failed; get a fresh one next time
        self._finish(Failed(reason=f"tracker failure: {packet.message}", tracker_message=packet.message))

    def _finish(self, event: UDPTrackerEvent) -> None:
        self.cancel()
        self._events.append(event)

    def _fail(self, reason: str, *, timed_out: bool = False) -> None:
        self._finish(Failed(reason=reason, timed_out=timed_out))
