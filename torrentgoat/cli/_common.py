"""Options and progress display shared by the commands that run a session (get, seed, demo)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from torrentgoat.choker import OptimisticMode
from torrentgoat.config import DEFAULT_DHT_ROUTERS
from torrentgoat.primitives import PeerAddress
from torrentgoat.session import SessionConfig
from torrentgoat.torrent import (
    CheckProgressed,
    Completed,
    MetadataReceived,
    PeerBanned,
    PieceFailed,
    ProgressReported,
    Torrent,
    TorrentConfig,
    TrackerFailed,
)
from torrentgoat.units import format_rate, parse_size

__all__ = ["add_session_options", "follow", "on_signals", "session_config", "stop_on_signals"]


def add_session_options(parser: argparse.ArgumentParser) -> None:
    net = parser.add_argument_group("network")
    net.add_argument(
        "--port", type=int, default=6881, help="TCP port for peers and UDP port for the DHT (0: any)"
    )
    net.add_argument("--listen", default="0.0.0.0", help="IPv4 address to listen on (default 0.0.0.0)")
    net.add_argument("--listen6", default="::", help="IPv6 address to listen on ('' for none)")
    net.add_argument("--max-peers", type=int, default=50, help="connections per torrent")
    net.add_argument(
        "--optimistic-unchoke",
        choices=("random", "least-progress"),
        default="random",
        help="least-progress: the optimistic unchoke helps the peer furthest behind "
        "(for a cluster receiving a push; not for public swarms)",
    )
    net.add_argument("--upload-limit", default="0", help="bytes per second, e.g. 20MB (0: unlimited)")
    net.add_argument("--download-limit", default="0", help="bytes per second (0: unlimited)")
    net.add_argument("--no-dht", action="store_true", help="do not use the DHT (BEP 5)")
    net.add_argument(
        "--dht-bootstrap",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="DHT router/node to bootstrap from (repeatable; default: the well-known routers)",
    )
    net.add_argument("--dht-state", type=Path, default=None, help="file keeping the DHT node cache")
    net.add_argument("--no-trackers", action="store_true", help="do not announce to trackers")
    net.add_argument("--no-pex", action="store_true", help="no peer exchange (BEP 11)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def with_optimistic_unchoke(config: TorrentConfig, mode: OptimisticMode) -> TorrentConfig:
    """``config`` with the choker's optimistic-unchoke mode set (``--optimistic-unchoke``)."""
    return dataclasses.replace(config, choker=dataclasses.replace(config.choker, optimistic_mode=mode))


def session_config(args: argparse.Namespace, torrent: TorrentConfig | None = None) -> SessionConfig:
    routers = tuple(
        (address.host, address.port) for address in (PeerAddress.parse(text) for text in args.dht_bootstrap)
    )
    return SessionConfig(
        listen_host=args.listen,
        listen_ipv6=args.listen6 or None,
        listen_port=args.port,
        upload_limit=parse_size(args.upload_limit, what="rate"),
        download_limit=parse_size(args.download_limit, what="rate"),
        enable_dht=not args.no_dht,
        dht_bootstrap=routers or DEFAULT_DHT_ROUTERS,
        dht_state=args.dht_state,
        enable_trackers=not args.no_trackers,
        enable_pex=not args.no_pex,
        torrent=with_optimistic_unchoke(torrent or TorrentConfig(max_peers=args.max_peers), args.optimistic_unchoke),
    )


@contextlib.contextmanager
def on_signals(handler: Callable[[], object]) -> Iterator[None]:
    """Call ``handler`` on SIGINT / SIGTERM while the block runs (where the loop supports it)."""
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, handler)
            installed.append(sig)
        except (NotImplementedError, RuntimeError):
            pass
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


@contextlib.contextmanager
def stop_on_signals(torrents: list[Torrent]) -> Iterator[None]:
    """Ctrl-C / SIGTERM stop the torrents cleanly (pieces kept, trackers told ``stopped``)."""

    def stop() -> None:
        for torrent in torrents:
            torrent.stop("interrupted")

    with on_signals(stop):
        yield


async def follow(torrent: Torrent, *, quiet: bool, label: str | None = None, position: int = 0) -> None:
    """Show a tqdm progress bar (stderr) for ``torrent`` until it stops; log notable events."""
    bar: Any = None
    if not quiet:
        from tqdm import tqdm

        bar = tqdm(
            total=0,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=label or torrent.name[:28],
            position=position,
            leave=True,
            file=sys.stderr,
            dynamic_ncols=True,
        )
    try:
        async for event in torrent.events():
            match event:
                case CheckProgressed(done_bytes=done, total_bytes=total) if bar is not None:
                    bar.set_description_str(f"checking {label or torrent.name[:20]}")
                    bar.total = total
                    bar.n = done
                    bar.refresh()
                case MetadataReceived(name=name, total_size=size):
                    if bar is not None:
                        bar.set_description_str(label or name[:28])
                        bar.total = size
                        bar.refresh()
                case ProgressReported() if bar is not None:
                    bar.set_description_str(label or torrent.name[:28])
                    bar.total = event.wanted_bytes
                    bar.n = event.verified_bytes
                    eta = event.eta
                    bar.set_postfix_str(
                        f"{event.state} peers={event.peers} down={format_rate(event.download_rate)} "
                        f"up={format_rate(event.upload_rate)}" + (f" eta={eta:.0f}s" if eta else ""),
                        refresh=True,
                    )
                case Completed(seconds=seconds):
                    if bar is not None:
                        bar.n = bar.total
                        bar.refresh()
                    print(f"{torrent.name}: complete and verified in {seconds:.1f} s", file=sys.stderr)
                case PieceFailed(index=index) if not quiet:
                    print(
                        f"{torrent.name}: piece {index} failed its hash check, fetching it again",
                        file=sys.stderr,
                    )
                case PeerBanned(address=address, reason=reason):
                    print(f"{torrent.name}: banned {address}: {reason}", file=sys.stderr)
                case TrackerFailed(url=url, reason=reason) if not quiet:
                    print(f"{torrent.name}: tracker {url}: {reason}", file=sys.stderr)
                case _:
                    pass
    finally:
        if bar is not None:
            bar.close()
