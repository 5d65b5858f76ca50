"""Options and progress display shared by the commands that run a session (get, seed, demo)."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from torrentgoat.cli._exit import DONE, FAILED, INTERRUPTED, code_for
from torrentgoat.errors import NoPeerSourcesError

if TYPE_CHECKING:  # the session and the torrent are imported when a command runs, not to parse options
    from torrentgoat.choker import OptimisticMode
    from torrentgoat.session import SessionConfig
    from torrentgoat.torrent import Torrent, TorrentConfig

__all__ = [
    "add_session_options",
    "follow",
    "on_signals",
    "report_stop",
    "session_config",
    "stop_on_signals",
]


def add_session_options(parser: argparse.ArgumentParser, *, socket_prefix: str = "") -> None:
    """The network options of a command that runs a session.  ``socket_prefix`` (e.g. ``"peer-"``)
    renames the peer socket's ``--port`` / ``--listen`` / ``--listen6`` for a command whose own
    ``--port`` means something else (the gateway's HTTP port)."""
    net = parser.add_argument_group("network")
    net.add_argument(
        f"--{socket_prefix}port",
        type=int,
        default=None,
        help="TCP port for peers and UDP port for the DHT (default: 6881, or the next free one; "
        "an explicit port must be free; 0: any)",
    )
    net.add_argument(
        f"--{socket_prefix}listen",
        default="0.0.0.0",
        help="IPv4 address to listen on for peers (default 0.0.0.0)",
    )
    net.add_argument(
        f"--{socket_prefix}listen6", default="::", help="IPv6 address to listen on ('' for none)"
    )
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
    net.add_argument(
        "--encryption",
        choices=("prefer", "require", "disable"),
        default="prefer",
        help="message stream encryption (MSE): prefer = accept both, dial encrypted first and fall back "
        "to plain (default); require = RC4-encrypted connections only; disable = plain only",
    )
    net.add_argument(
        "--utp",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also speak uTP (BEP 29) on the listen port: accept it, and dial it first to public "
        "addresses, TCP first on the LAN (default: on)",
    )
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
    net.add_argument(
        "--no-lsd",
        action="store_true",
        help="no local service discovery (BEP 14: finding peers on the local network by multicast)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


DEFAULT_PORT = 6881
DEFAULT_PORT_FALLBACK = 10


def with_optimistic_unchoke(config: TorrentConfig, mode: OptimisticMode) -> TorrentConfig:
    """``config`` with the choker's optimistic-unchoke mode set (``--optimistic-unchoke``)."""
    return dataclasses.replace(config, choker=dataclasses.replace(config.choker, optimistic_mode=mode))


def session_config(
    args: argparse.Namespace, torrent: TorrentConfig | None = None, *, socket_prefix: str = ""
) -> SessionConfig:
    from torrentgoat.config import DEFAULT_DHT_ROUTERS
    from torrentgoat.mse import EncryptionPolicy, MSEConfig
    from torrentgoat.primitives import PeerAddress
    from torrentgoat.session import SessionConfig
    from torrentgoat.torrent import TorrentConfig
    from torrentgoat.units import parse_size

    routers = tuple(
        (address.host, address.port) for address in (PeerAddress.parse(text) for text in args.dht_bootstrap)
    )
    dest = socket_prefix.replace("-", "_")
    port = getattr(args, f"{dest}port")
    return SessionConfig(
        listen_host=getattr(args, f"{dest}listen"),
        listen_ipv6=getattr(args, f"{dest}listen6") or None,
        listen_port=DEFAULT_PORT if port is None else port,
        port_fallback=DEFAULT_PORT_FALLBACK if port is None else 0,
        upload_limit=parse_size(args.upload_limit, what="rate"),
        download_limit=parse_size(args.download_limit, what="rate"),
        enable_dht=not args.no_dht,
        enable_utp=args.utp,
        dht_bootstrap=routers or DEFAULT_DHT_ROUTERS,
        dht_state=args.dht_state,
        enable_trackers=not args.no_trackers,
        enable_pex=not args.no_pex,
        enable_lsd=not args.no_lsd,
        encryption=MSEConfig(policy=EncryptionPolicy.parse(args.encryption), prefer_rc4=False),
        torrent=with_optimistic_unchoke(
            torrent or TorrentConfig(max_peers=args.max_peers), args.optimistic_unchoke
        ),
    )


async def follow(torrent: Torrent, *, quiet: bool, label: str | None = None, position: int = 0) -> None:
    """:func:`torrentgoat.cli._progress.follow`, imported when a torrent runs."""
    from torrentgoat.cli._progress import follow as follow_progress

    await follow_progress(torrent, quiet=quiet, label=label, position=position)


@contextlib.contextmanager
def on_signals(handler: Callable[[], object]) -> Iterator[None]:
    """Call ``handler`` on SIGINT / SIGTERM while the block runs (where the loop supports it)."""
    import asyncio

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


def report_stop(torrent: Torrent) -> int:
    """Say in one line why ``torrent`` stopped, and return the command's exit code."""
    if torrent.is_complete:
        return DONE
    reason = torrent.stop_reason or "stopped"
    error = torrent.error
    if reason == "interrupted":
        print(
            f"torrentgoat: {torrent.name}: interrupted; verified pieces stay on disk and the same command "
            "resumes",
            file=sys.stderr,
        )
        return INTERRUPTED
    if error is not None:
        print(f"torrentgoat: error: {torrent.name}: {error}", file=sys.stderr)
        if isinstance(error, NoPeerSourcesError):
            print(
                "torrentgoat: hint: give a peer with --peer HOST:PORT, or drop --no-dht / --no-trackers / --no-lsd",
                file=sys.stderr,
            )
        return code_for(error, during_work=True)
    print(f"torrentgoat: {torrent.name}: stopped before completion ({reason})", file=sys.stderr)
    return FAILED
