"""Run a tracker on loopback for manual tests and benchmarks.

    python tools/tracker.py [serve] [--host 127.0.0.1] [--port 6969] [--udp-port P] [--interval S]
    python tools/tracker.py opentracker --info-hash HEX [--info-hash HEX ...] [--host H] [--port P]

``serve`` (the default) runs torrentgoat's own :class:`~torrentgoat.testing.tracker.LoopbackTracker`
(HTTP + UDP on the same port number unless ``--udp-port`` says otherwise; any info-hash accepted).
``opentracker`` runs Debian's opentracker with a whitelist of the given info-hashes.  Measured
invocation (see :func:`torrentgoat.testing.tracker.opentracker_command`)::

    opentracker -i 127.0.0.1 -p PORT -P PORT -d DIR -w whitelist.txt [-u nobody]

Started as root it chroots into DIR and drops to ``-u`` (default ``nobody``); as a normal user it
only chdirs into DIR.  Either way ``-w`` is relative to DIR, and DIR (mode 0755) and the whitelist
(0644) must be readable by that user.  Over UDP it refuses a hash outside the whitelist with a bare
8-byte announce header, over HTTP with ``failure reason``.

Both print one JSON line ``{"event": "listening", "http": URL, "udp": URL}`` once ready and run
until interrupted (Ctrl-C / SIGTERM).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import signal
import sys

from torrentgoat.primitives import InfoHash
from torrentgoat.testing.tracker import LoopbackTracker, OpenTracker


async def _wait_for_signal() -> None:
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, done.set)
    await done.wait()


def _ready(http_url: str, udp_url: str) -> None:
    print(json.dumps({"event": "listening", "http": http_url, "udp": udp_url}), flush=True)


async def serve(args: argparse.Namespace) -> int:
    tracker = LoopbackTracker(
        host=args.host,
        http_port=args.port,
        udp_port=args.port if args.udp_port is None else args.udp_port,
        interval=args.interval,
        min_interval=args.min_interval,
        failure_reason=args.failure_reason,
    )
    async with tracker:
        _ready(tracker.http_url, tracker.udp_url)
        await _wait_for_signal()
        print(json.dumps({"event": "stopped", "announces": len(tracker.announces)}), flush=True)
    return 0


async def opentracker(args: argparse.Namespace) -> int:
    binary = args.binary or shutil.which("opentracker")
    if binary is None:
        print("opentracker is not installed (apt-get install opentracker)", file=sys.stderr)
        return 2
    hashes = [InfoHash.from_hex(h) for h in args.info_hash]
    tracker = OpenTracker(
        binary,
        hashes,
        host=args.host,
        http_port=args.port or None,
        udp_port=(args.udp_port or args.port) or None,
    )
    async with tracker:
        _ready(tracker.http_url, tracker.udp_url)
        await _wait_for_signal()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    common.add_argument("--port", type=int, default=0, help="HTTP port (0: any free port)")
    common.add_argument("--udp-port", type=int, default=None, help="UDP port (default: same as --port)")

    p_serve = sub.add_parser("serve", parents=[common], help="torrentgoat's loopback HTTP + UDP tracker")
    p_serve.add_argument("--interval", type=int, default=1800, help="announce interval sent to clients")
    p_serve.add_argument("--min-interval", type=int, default=None, help="'min interval' sent to clients")
    p_serve.add_argument("--failure-reason", default=None, help="refuse every announce with this text")
    p_serve.set_defaults(func=serve)

    p_ot = sub.add_parser("opentracker", parents=[common], help="Debian opentracker with a whitelist")
    p_ot.add_argument("--info-hash", action="append", required=True, help="whitelisted info-hash (hex)")
    p_ot.add_argument("--binary", default=None, help="opentracker binary (default: from PATH)")
    p_ot.set_defaults(func=opentracker)

    words = list(sys.argv[1:] if argv is None else argv)
    if not words or words[0] not in ("serve", "opentracker", "-h", "--help"):
        words.insert(0, "serve")  # options without a command: serve
    args = parser.parse_args(words)
    result: int = asyncio.run(args.func(args))
    return result


if __name__ == "__main__":
    sys.exit(main())
