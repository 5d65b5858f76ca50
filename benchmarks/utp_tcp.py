"""uTP beside TCP on one shared bottleneck: does torrentgoat's LEDBAT yield to TCP (BEP 29)?

Run (as root, needs iproute2's ``ip``/``tc``): ``python -m benchmarks.utp_tcp [--rate 40mbit]
[--queue 300ms] [--seconds 12] [--steady 5] [--tcp cubic]``.

On loopback uTP and TCP share no queue (only the CPU), so this builds three network namespaces:
senders in A, receivers in B, and between them a bridge in R whose port towards B goes through a
token bucket filter (``tc tbf``) with a rate limit and a deep queue (``--queue``: 300 ms at
40 Mbit/s is 1.5 MB, which TCP's loss-based congestion control fills).  Then:

1. TCP alone, 2. uTP alone (6 s each), 3. uTP first, TCP joining after 2 s for ``--seconds``.

TCP uses ``--tcp`` congestion control (CUBIC by default, what most peers run; set per socket, since
this host defaults to BBR, which keeps queues short and so gives LEDBAT no delay to react to).

It prints each flow's MB/s alone and over the last ``--steady`` seconds of phase 3, TCP's share of
its rate alone, how long it took TCP to reach 80 % of it, and both flows second by second.  LEDBAT keeps its own queuing delay at 100 ms and
backs off when TCP's queue pushes the delay above that, so TCP should keep nearly all of the link.
The namespaces are removed at the end (also on errors).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["Shares", "measure", "namespaces"]

ADDR_A, ADDR_B = "10.231.0.1", "10.231.0.2"
TCP_PORT, UTP_PORT = 50001, 50002


# --- the flows (run inside a namespace) -----------------------------------------------------------


class _Counter(asyncio.Protocol):
    def __init__(self, series: list[tuple[float, int]]) -> None:
        self.total = 0
        self.series = series

    def data_received(self, data: bytes) -> None:
        self.total += len(data)


class _Blaster(asyncio.Protocol):
    def __init__(self) -> None:
        self.paused = False
        self.transport: asyncio.Transport | None = None
        self.chunk = b"\0" * 65536

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.fill()

    def fill(self) -> None:
        while not self.paused and self.transport is not None and not self.transport.is_closing():
            self.transport.write(self.chunk)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self.fill()


async def _role(role: str, seconds: float) -> None:
    """One flow end.  Receivers sample their byte count every 0.1 s until stdin closes, then print
    the series; senders connect, print ``connected``, blast for ``seconds`` and exit."""
    from torrentgoat.aio.utp import UTPEndpoint

    loop = asyncio.get_running_loop()
    series: list[tuple[float, int]] = []
    counters: list[_Counter] = []

    def factory() -> _Counter:
        counter = _Counter(series)
        counters.append(counter)
        return counter

    if role in ("tcp-recv", "utp-recv"):
        stop = asyncio.Event()
        threading.Thread(
            target=lambda: (sys.stdin.read(), loop.call_soon_threadsafe(stop.set)), daemon=True
        ).start()
        if role == "tcp-recv":
            server = await loop.create_server(factory, ADDR_B, TCP_PORT, reuse_address=True)
            print(json.dumps({"ready": True}), flush=True)
            await _sample(counters, series, stop)
            server.close()
        else:
            async with UTPEndpoint(host=ADDR_B, port=UTP_PORT) as endpoint:
                endpoint.serve(factory)
                print(json.dumps({"ready": True}), flush=True)
                await _sample(counters, series, stop)
        print(json.dumps({"series": series}), flush=True)
    elif role == "tcp-send":
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        algorithm = os.environ.get("TG_TCP_CONGESTION", "cubic").encode()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, algorithm)  # the host may run BBR
        sock.setblocking(False)
        await loop.sock_connect(sock, (ADDR_B, TCP_PORT))
        transport, _ = await loop.create_connection(_Blaster, sock=sock)
        print(json.dumps({"connected": time.time()}), flush=True)
        await asyncio.sleep(seconds)
        transport.abort()
    elif role == "utp-send":
        async with UTPEndpoint(host=ADDR_A) as endpoint:
            transport, _ = await endpoint.open_connection((ADDR_B, UTP_PORT), _Blaster)
            print(json.dumps({"connected": time.time()}), flush=True)
            await asyncio.sleep(seconds)
            conn = endpoint.manager.get(transport.key)
            if conn is not None:
                print(
                    json.dumps(
                        {"cwnd": conn.cc.window, "delay_ms": conn.cc.delay / 1000, "packet": conn.packet_size}
                    ),
                    flush=True,
                )
            transport.abort()


async def _sample(counters: list[_Counter], series: list[tuple[float, int]], stop: asyncio.Event) -> None:
    while not stop.is_set():
        series.append((time.time(), sum(c.total for c in counters)))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.1)
    series.append((time.time(), sum(c.total for c in counters)))


# --- orchestration (root) -------------------------------------------------------------------------


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@contextlib.contextmanager
def namespaces(rate: str = "40mbit", queue: str = "300ms") -> Iterator[tuple[str, str]]:
    """Sender namespace A and receiver namespace B joined through a bridge in a third namespace R
    whose port towards B is shaped by tbf (the bottleneck queue is in the "router", not in the
    sender's own qdisc, where TCP Small Queues would throttle TCP but not UDP).  Removed on exit."""
    tag = f"tgu{os.getpid() % 100000}"
    ns_a, ns_r, ns_b = f"{tag}a", f"{tag}r", f"{tag}b"
    try:
        for ns in (ns_a, ns_r, ns_b):
            _ip("netns", "add", ns)
            _ip("-n", ns, "link", "set", "lo", "up")
        _ip(
            "link",
            "add",
            f"{tag}a0",
            "netns",
            ns_a,
            "type",
            "veth",
            "peer",
            "name",
            f"{tag}r0",
            "netns",
            ns_r,
        )
        _ip(
            "link",
            "add",
            f"{tag}b0",
            "netns",
            ns_b,
            "type",
            "veth",
            "peer",
            "name",
            f"{tag}r1",
            "netns",
            ns_r,
        )
        _ip("-n", ns_r, "link", "add", f"{tag}br", "type", "bridge")
        for port in (f"{tag}r0", f"{tag}r1"):
            _ip("-n", ns_r, "link", "set", port, "master", f"{tag}br")
            _ip("-n", ns_r, "link", "set", port, "up")
        _ip("-n", ns_r, "link", "set", f"{tag}br", "up")
        for ns, dev, addr in ((ns_a, f"{tag}a0", ADDR_A), (ns_b, f"{tag}b0", ADDR_B)):
            _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            _ip("-n", ns, "link", "set", dev, "up")
        subprocess.run(
            ["tc", "-n", ns_r, "qdisc", "add", "dev", f"{tag}r1", "root", "tbf",
             "rate", rate, "burst", "32kb", "latency", queue],
            check=True, capture_output=True,
        )  # fmt: skip
        yield ns_a, ns_b
    finally:
        for ns in (ns_a, ns_r, ns_b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def _spawn(ns: str, role: str, seconds: float) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, "-m", "benchmarks.utp_tcp", "--role", role,
         "--seconds", str(seconds)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=os.environ.copy(),
    )  # fmt: skip


def _line(proc: subprocess.Popen[str], key: str) -> dict[str, Any]:
    """The next JSON line of ``proc`` holding ``key`` (the process is slow to start on a busy host)."""
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("{"):
            data: dict[str, Any] = json.loads(line)
            if key in data:
                return data
    raise RuntimeError(f"flow ended before {key!r}: " + (proc.stderr.read() if proc.stderr else ""))


def _rate(series: list[list[float]], start: float, end: float) -> float:
    """Bytes per second between two wall-clock times, from cumulative samples."""
    inside = [(t, b) for t, b in series if start <= t <= end]
    if len(inside) < 2:
        return 0.0
    return (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0])


def _flows(ns_a: str, ns_b: str, kinds: list[str], seconds: float, stagger: float) -> dict[str, Any]:
    """Start a receiver and then a sender per kind (the second ``stagger`` s after the first has
    connected); each sender blasts ``seconds`` from its connection (the first one ``stagger``
    longer, so both end together).  Returns connection times, receiver series, sender stats."""
    receivers = {kind: _spawn(ns_b, f"{kind}-recv", 0) for kind in kinds}
    for proc in receivers.values():
        _line(proc, "ready")
    senders: dict[str, subprocess.Popen[str]] = {}
    connected: dict[str, float] = {}
    for i, kind in enumerate(kinds):
        if i:
            time.sleep(stagger)
        longer = stagger if i == 0 and len(kinds) > 1 else 0.0
        senders[kind] = _spawn(ns_a, f"{kind}-send", seconds + longer)
        connected[kind] = _line(senders[kind], "connected")["connected"]
    result: dict[str, Any] = {"connected": connected}
    for kind in kinds:
        out, err = senders[kind].communicate(timeout=seconds + stagger + 60)
        if senders[kind].returncode:
            raise RuntimeError(f"{kind} sender failed: {err[-2000:]}")
        stats = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        result[kind] = {"sender": next((s for s in stats if "cwnd" in s), {})}
    for kind in kinds:
        out, err = receivers[kind].communicate(input="", timeout=60)
        series = [json.loads(line) for line in out.splitlines() if line.startswith('{"series"')]
        if not series:
            raise RuntimeError(f"{kind} receiver failed: {err[-2000:]}")
        result[kind]["series"] = series[-1]["series"]
    return result


@dataclass(slots=True)
class Shares:
    """MB/s of each flow alone and side by side on the same bottleneck."""

    tcp_alone: float
    utp_alone: float | None
    tcp_steady: float
    """TCP beside uTP over the last ``steady`` seconds of the shared run."""
    utp_steady: float
    tcp_per_second: list[float]
    """TCP's MB/s in each second after it connected (beside uTP)."""
    utp_per_second: list[float]
    utp_sender: dict[str, Any]

    @property
    def tcp_kept(self) -> float:
        """TCP's steady rate beside uTP as a fraction of its rate alone."""
        return self.tcp_steady / self.tcp_alone if self.tcp_alone else 0.0

    @property
    def yield_seconds(self) -> float | None:
        """Seconds after TCP joined until it first ran at 80 % of its rate alone (None: never)."""
        for second, rate in enumerate(self.tcp_per_second):
            if rate >= 0.8 * self.tcp_alone:
                return float(second + 1)
        return None


def measure(
    rate: str = "40mbit",
    queue: str = "300ms",
    seconds: float = 12.0,
    tcp: str = "cubic",
    *,
    steady: float = 5.0,
    utp_alone: bool = True,
) -> Shares:
    """Run the phases (see the module docstring) and return the rates.  Each flow alone runs
    ``min(seconds, 6)`` s (its first second is not counted); in the shared run TCP runs ``seconds``
    after uTP has had 2 s alone, and ``steady`` is the tail over which the shares are taken."""
    os.environ["TG_TCP_CONGESTION"] = tcp
    alone_seconds = min(seconds, 6.0)
    with namespaces(rate, queue) as (ns_a, ns_b):
        alone: dict[str, float] = {}
        for kind in ("tcp", "utp") if utp_alone else ("tcp",):
            run = _flows(ns_a, ns_b, [kind], alone_seconds, 0.0)
            t0 = run["connected"][kind]
            alone[kind] = _rate(run[kind]["series"], t0 + 1.0, t0 + alone_seconds) / 1e6
        both = _flows(ns_a, ns_b, ["utp", "tcp"], seconds, 2.0)
    t0 = both["connected"]["tcp"]
    window = (t0 + seconds - steady, t0 + seconds)
    per_second = {
        kind: [_rate(both[kind]["series"], t0 + k, t0 + k + 1) / 1e6 for k in range(int(seconds))]
        for kind in ("tcp", "utp")
    }
    return Shares(
        tcp_alone=alone["tcp"],
        utp_alone=alone.get("utp"),
        tcp_steady=_rate(both["tcp"]["series"], *window) / 1e6,
        utp_steady=_rate(both["utp"]["series"], *window) / 1e6,
        tcp_per_second=per_second["tcp"],
        utp_per_second=per_second["utp"],
        utp_sender=both["utp"]["sender"],
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", default="40mbit")
    parser.add_argument("--queue", default="300ms", help="tbf queue, as the delay it holds")
    parser.add_argument("--seconds", type=float, default=12.0, help="TCP's time beside uTP")
    parser.add_argument("--steady", type=float, default=5.0, help="tail of it over which shares are taken")
    parser.add_argument(
        "--tcp", default="cubic", help="TCP congestion control in the namespaces (cubic, reno, bbr)"
    )
    parser.add_argument("--role", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role:
        try:
            import uvloop

            uvloop.install()
        except ImportError:
            pass
        asyncio.run(_role(args.role, args.seconds))
        return 0
    shares = measure(args.rate, args.queue, args.seconds, args.tcp, steady=args.steady)
    print(f"bottleneck {args.rate} with a {args.queue} queue (tc tbf), TCP {args.tcp}")
    print(f"  TCP alone                    {shares.tcp_alone:7.2f} MB/s")
    print(f"  uTP alone                    {shares.utp_alone or 0:7.2f} MB/s")
    print(
        f"  TCP beside uTP, last {args.steady:.0f} s     {shares.tcp_steady:7.2f} MB/s"
        f"  ({shares.tcp_kept:.0%} of TCP alone; 80 % reached after {shares.yield_seconds} s)"
    )
    print(f"  uTP beside TCP, last {args.steady:.0f} s     {shares.utp_steady:7.2f} MB/s")
    print("  per second after TCP joined (MB/s):")
    print("    TCP " + " ".join(f"{r:5.2f}" for r in shares.tcp_per_second))
    print("    uTP " + " ".join(f"{r:5.2f}" for r in shares.utp_per_second))
    print(f"  uTP sender at the end: {shares.utp_sender}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
