"""The asyncio glue of connection admission (level L4): count incoming connections, apply the verdict.

:class:`ConnectionGate` wraps the listener's protocol factory (TCP ``create_server`` and the uTP
endpoint alike).  Each accepted transport is judged by the pure
:func:`~torrentgoat.admission.admit_incoming` before any of its bytes is read: refused connections
are aborted at once, and an accepted one is handed to the real protocol
(``transport.set_protocol``).  From then on the gate only remembers the transport:

* until the session calls :meth:`ConnectionGate.established` (the BitTorrent handshake named a
  torrent), the connection counts as a handshake, and ``handshake_timeout`` seconds after it was
  accepted it is aborted -- one deadline for sniffing, MSE and the BitTorrent handshake together,
  however slowly the bytes drip (libtorrent: ``handshake_timeout``, 10 s);
* connections are counted per IP until their transport closes.  Nothing tells the gate when that
  happens (the protocol changed hands), so closed transports (``is_closing()``) are pruned lazily:
  an IP's list when that IP connects again, the whole table when a cap is reached.

The tables hold at most ``max_connections`` live transports plus those closed since the last prune
(bounded by the same caps), and each handshake one timer.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, cast

from torrentgoat.admission import AdmissionLimits, Verdict, admit_incoming

__all__ = ["ConnectionGate"]

log = logging.getLogger(__name__)


class _Handshake:
    __slots__ = ("ip", "timer")

    def __init__(self, ip: str, timer: asyncio.TimerHandle) -> None:
        self.ip = ip
        self.timer = timer


def _raw(transport: Any) -> Any:
    """The socket-level transport under ``transport`` (an MSE stream exposes it as ``raw``)."""
    return getattr(transport, "raw", None) or transport


class ConnectionGate:
    """Admission, per-IP counting and the handshake deadline of incoming connections."""

    def __init__(self, limits: AdmissionLimits, *, handshake_timeout: float) -> None:
        self.limits = limits
        self.handshake_timeout = handshake_timeout
        self._open: dict[str, set[asyncio.BaseTransport]] = {}
        self._open_total = 0
        self._handshakes: OrderedDict[asyncio.BaseTransport, _Handshake] = OrderedDict()
        self._handshakes_by_ip: dict[str, int] = {}
        self.counts: dict[str, int] = {verdict.name.lower(): 0 for verdict in Verdict}
        self.counts["timed_out"] = 0
        """Verdicts so far, and handshakes aborted at their deadline (for logs, tests, benchmarks)."""

    # ------------------------------------------------------------------ counts

    @property
    def open_count(self) -> int:
        """Incoming connections open (closed ones are pruned first)."""
        self._prune_all()
        return self._open_total

    @property
    def handshake_count(self) -> int:
        self._prune_handshakes()
        return len(self._handshakes)

    # ------------------------------------------------------------------ the protocol factory

    def wrap(self, factory: Callable[[], asyncio.BaseProtocol]) -> Callable[[], asyncio.BaseProtocol]:
        """A protocol factory that admits each connection, then hands it to ``factory()``."""

        def make() -> asyncio.BaseProtocol:
            return _Gated(self, factory)

        return make

    def admit(self, transport: asyncio.BaseTransport) -> bool:
        """Judge a just-accepted connection; False: it was aborted."""
        peer = transport.get_extra_info("peername")
        ip = str(peer[0]) if peer else ""
        verdict = self._verdict(ip)
        self.counts[verdict.name.lower()] += 1
        if verdict not in (Verdict.ACCEPT, Verdict.ACCEPT_EVICTING_OLDEST):
            log.debug("incoming connection from %s %s", ip, verdict.value)
            cast(asyncio.Transport, transport).abort()
            return False
        if verdict is Verdict.ACCEPT_EVICTING_OLDEST and self._handshakes:
            oldest, record = self._handshakes.popitem(last=False)  # closed already, or the longest silent
            self._forget_handshake(record)
            if not oldest.is_closing():
                cast(asyncio.Transport, oldest).abort()
        self._open.setdefault(ip, set()).add(transport)
        self._open_total += 1
        loop = asyncio.get_running_loop()
        timer = loop.call_later(self.handshake_timeout, self._deadline, transport)
        self._handshakes[transport] = _Handshake(ip, timer)
        self._handshakes_by_ip[ip] = self._handshakes_by_ip.get(ip, 0) + 1
        return True

    def established(self, transport: asyncio.BaseTransport | None) -> None:
        """The connection's BitTorrent handshake arrived: no deadline, no longer half-open."""
        if transport is None:
            return
        record = self._handshakes.pop(_raw(transport), None)
        if record is not None:
            self._forget_handshake(record)

    def close(self) -> None:
        """Cancel every deadline (the session is closing; it closes the connections itself)."""
        for record in self._handshakes.values():
            record.timer.cancel()
        self._handshakes.clear()
        self._handshakes_by_ip.clear()

    # ------------------------------------------------------------------ internals

    def _verdict(self, ip: str) -> Verdict:
        self._prune_ip(ip)
        if self._open_total >= self.limits.max_connections:
            self._prune_all()
        return admit_incoming(
            ip,
            open_total=self._open_total,
            handshakes_total=len(self._handshakes),
            open_from_ip=len(self._open.get(ip, ())),
            handshakes_from_ip=self._handshakes_by_ip.get(ip, 0),
            limits=self.limits,
        )

    def _deadline(self, transport: asyncio.BaseTransport) -> None:
        record = self._handshakes.pop(transport, None)
        if record is None:
            return
        self._forget_handshake(record)
        if not transport.is_closing():
            self.counts["timed_out"] += 1
            log.debug(
                "incoming connection from %s: no handshake within %g s", record.ip, self.handshake_timeout
            )
            cast(asyncio.Transport, transport).abort()

    def _forget_handshake(self, record: _Handshake) -> None:
        record.timer.cancel()
        left = self._handshakes_by_ip.get(record.ip, 0) - 1
        if left > 0:
            self._handshakes_by_ip[record.ip] = left
        else:
            self._handshakes_by_ip.pop(record.ip, None)

    def _prune_handshakes(self) -> None:
        for transport in [t for t in self._handshakes if t.is_closing()]:
            self._forget_handshake(self._handshakes.pop(transport))

    def _prune_ip(self, ip: str) -> None:
        live = self._open.get(ip)
        if live is None:
            return
        closed = [t for t in live if t.is_closing()]
        for transport in closed:
            live.discard(transport)
            record = self._handshakes.pop(transport, None)
            if record is not None:
                self._forget_handshake(record)
        self._open_total -= len(closed)
        if not live:
            del self._open[ip]

    def _prune_all(self) -> None:
        for ip in list(self._open):
            self._prune_ip(ip)


class _Gated(asyncio.Protocol):
    """Stands in for the real protocol until the gate's verdict, then steps aside."""

    def __init__(self, gate: ConnectionGate, factory: Callable[[], asyncio.BaseProtocol]) -> None:
        self._gate = gate
        self._factory = factory
        self._inner: asyncio.BaseProtocol | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self._gate.admit(transport):
            return
        inner = self._inner = self._factory()
        transport.set_protocol(inner)
        inner.connection_made(transport)

    # Reached only if the transport did not switch protocols (or the connection was refused).
    def data_received(self, data: bytes) -> None:
        if self._inner is not None:
            cast(asyncio.Protocol, self._inner).data_received(data)

    def eof_received(self) -> bool | None:
        if self._inner is not None:
            return cast(asyncio.Protocol, self._inner).eof_received()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._inner is not None:
            self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()
