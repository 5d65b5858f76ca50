"""``python -m torrentgoat gateway``: a Hugging Face endpoint for ``huggingface_hub`` (``HF_ENDPOINT``).

Serves models from the swarm -- the collections it follows (``--follow``, BEP 46 magnets; ``main`` is
the commit in the latest signed manifest, which is re-resolved every ``--refresh`` seconds) and
torrents mapped to repo ids (``--torrent ORG/NAME=MAGNET_OR_TORRENT``) -- fetched on demand into
``-o DIR`` and streamed to the client as verified pieces arrive; also plain folders (``--repo
ORG/NAME=DIR``) and Hugging Face caches (``--hf-cache DIR``).  Every other repo is passed through to
the upstream hub (``--upstream``, ``none`` to answer "repository not found" instead):

    python -m torrentgoat gateway --follow 'magnet:?xs=urn:btpk:<key>&s=<salt>' -o ~/.cache/torrentgoat
    HF_ENDPOINT=http://127.0.0.1:8080 python -c "from huggingface_hub import snapshot_download; \\
        snapshot_download('org/name')"

Ports: ``--listen`` / ``--port`` are the HTTP endpoint's (what ``HF_ENDPOINT`` points at; loopback by
default, as the gateway has no authentication).  The swarm's socket -- the options ``get`` calls
``--listen`` / ``--port`` -- is ``--peer-listen`` / ``--peer-port`` here (all interfaces by default, so
the other gateways of a cluster can fetch from this one; the DHT uses the same port over UDP).

A cluster: run a gateway on every node with the same ``--follow``; they find each other through
Local Service Discovery on the LAN, the DHT (``--dht-bootstrap`` another node on an isolated LAN) or
``--peer``, so a model enters the cluster once.  Pickle-based
weights are refused (``--allow-pickle`` to serve them).  One progress line per model being fetched
(``--quiet`` for none).  Stops on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torrentgoat.cli._common import add_session_options, on_signals, session_config, with_optimistic_unchoke
from torrentgoat.cli._run import run
from torrentgoat.errors import ConfigError, TorrentGoatError
from torrentgoat.gateway.defaults import DEFAULT_REFRESH, DEFAULT_UPSTREAM
from torrentgoat.units import format_rate, format_size

if TYPE_CHECKING:  # aiohttp, the session and the gateway are imported when it serves, not to parse options
    import asyncio

    from torrentgoat.gateway import RepoType
    from torrentgoat.gateway.fetch import FetchStatus
    from torrentgoat.gateway.swarm import SwarmSource
    from torrentgoat.safety import Policy

__all__ = ["ORDER", "parse_repo_spec", "progress_line", "register"]

ORDER = 40

STARTUP_WAIT = 60.0
"""Seconds the command waits for its collections' first resolution before it starts serving (repos
asked for before they are known would be passed upstream)."""
PROGRESS_EVERY = 5.0
"""Seconds between progress lines while models are being fetched."""

_SPEC = re.compile(
    r"(?:(?P<type>datasets|spaces|models)/)?(?P<repo>[^=@]+?)=(?P<dir>.+?)(?:@(?P<commit>[0-9a-f]{40}))?"
)
_TYPES: dict[str, RepoType] = {"datasets": "dataset", "spaces": "space", "models": "model"}


def parse_repo_spec(text: str) -> tuple[RepoType, str, Path, str | None]:
    """``[datasets/|spaces/]org/name=DIR[@COMMIT]`` -> (repo type, repo id, folder, commit or None)."""
    match = _SPEC.fullmatch(text)
    if match is None:
        raise ConfigError(
            f"--repo {text!r}: expected ORG/NAME=DIR[@COMMIT] (optionally datasets/ORG/NAME=...)"
        )
    repo_type = _TYPES[match["type"]] if match["type"] else "model"
    return repo_type, match["repo"], Path(match["dir"]), match["commit"]


def progress_line(status: FetchStatus) -> str:
    """``org/name@01234567: 37% of 256.0 MiB, 12.3 MiB/s, 4 peers, 2 clients``."""
    wanted = max(status.wanted_bytes, 1)
    percent = 100 * status.verified_bytes / wanted
    rate = format_rate(status.download_rate) if status.download_rate >= 1024 else "idle"
    clients = f", {status.readers} client{'s' if status.readers != 1 else ''}" if status.readers else ""
    phase = "" if status.state == "downloading" else f" ({status.state})"
    return (
        f"{status.label}: {percent:.0f}% of {format_size(status.wanted_bytes)}{phase}, {rate}, "
        f"{status.peers} peer{'s' if status.peers != 1 else ''}{clients}"
    )


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "gateway",
        help="serve models from the swarm to huggingface_hub (HF_ENDPOINT=http://127.0.0.1:8080)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    models = parser.add_argument_group("what is served")
    models.add_argument(
        "--follow",
        action="append",
        default=[],
        metavar="MAGNET",
        help="a collection's BEP 46 magnet, magnet:?xs=urn:btpk:<key>&s=<salt hex> (repeatable)",
    )
    models.add_argument(
        "--torrent",
        action="append",
        default=[],
        metavar="ORG/NAME=MAGNET_OR_TORRENT",
        help="serve a torrent (magnet, .torrent path or URL) as this repo, at the commit spelled by its "
        "info-hash and as main (repeatable)",
    )
    models.add_argument(
        "-o",
        "--output",
        type=Path,
        default=Path("~/.cache/torrentgoat"),
        metavar="DIR",
        help="where models fetched from the swarm are kept (default ~/.cache/torrentgoat)",
    )
    models.add_argument(
        "--repo",
        action="append",
        default=[],
        metavar="ORG/NAME=DIR[@COMMIT]",
        help="serve folder DIR as this repo (repeatable; the commit defaults to one derived from the content)",
    )
    models.add_argument(
        "--hf-cache",
        action="append",
        default=[],
        type=Path,
        metavar="DIR",
        help="serve the repos of a Hugging Face cache directory (repeatable)",
    )
    models.add_argument(
        "--upstream",
        default=DEFAULT_UPSTREAM,
        metavar="URL|none",
        help=f"hub for repos not served here (default {DEFAULT_UPSTREAM}; none: answer not found)",
    )
    models.add_argument(
        "--refresh",
        type=float,
        default=DEFAULT_REFRESH,
        metavar="SECONDS",
        help=f"re-resolve followed collections this often (default {DEFAULT_REFRESH:.0f})",
    )
    models.add_argument(
        "--allow-pickle", action="store_true", help="serve pickle-based weights (.bin, .pt, ...) too"
    )
    http = parser.add_argument_group("HTTP endpoint")
    http.add_argument(
        "--listen", default="127.0.0.1", help="address the HTTP endpoint listens on (default 127.0.0.1)"
    )
    http.add_argument(
        "--port", type=int, default=8080, help="the HTTP endpoint's TCP port (default 8080; 0: any free port)"
    )
    http.add_argument("--max-streams", type=int, default=64, help="file transfers at once (default 64)")
    swarm = parser.add_argument_group("swarm")
    swarm.add_argument(
        "--peer",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="a peer (e.g. another gateway of the cluster) dialled for every model (repeatable)",
    )
    swarm.add_argument(
        "--no-seed", action="store_true", help="do not seed models once fetched, nor those on disk at start"
    )
    swarm.add_argument(
        "--no-web-seeds", action="store_true", help="never fetch from the models' web seeds (the hub's URLs)"
    )
    add_session_options(parser, socket_prefix="peer-")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    return run(_serve(args))


async def _serve(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from torrentgoat.gateway import FolderSource, Gateway, GatewayConfig, HFCacheSource
    from torrentgoat.gateway.catalog import parse_torrent_spec
    from torrentgoat.safety import Policy

    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    upstream = None if args.upstream.strip().lower() == "none" else args.upstream
    policy = Policy(allow_pickle=args.allow_pickle)
    config = GatewayConfig(
        host=args.listen,
        port=args.port,
        upstream=upstream,
        policy=policy,
        max_streams=args.max_streams,
    )
    for spec in args.torrent:
        parse_torrent_spec(spec)  # bad input fails before anything listens
    folders = FolderSource()
    for spec in args.repo:
        repo_type, repo_id, folder, commit = parse_repo_spec(spec)
        snapshot = await folders.add(repo_id, folder, repo_type=repo_type, commit=commit)
        if not args.quiet:
            print(
                f"{repo_id}: {len(snapshot.files)} files from {folder} at commit {snapshot.commit}",
                file=sys.stderr,
            )
    local: list[Any] = [folders, *(HFCacheSource(path) for path in args.hf_cache)]
    async with contextlib.AsyncExitStack() as stack:
        swarm = None
        if args.follow or args.torrent:
            swarm = await _swarm(args, policy, stack)
        try:
            gateway = Gateway([*([swarm] if swarm is not None else []), *local], config)
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        stop = asyncio.Event()
        with on_signals(stop.set):
            try:
                await gateway.start()
            except OSError as exc:
                raise ConfigError(
                    f"cannot listen on {args.listen}:{args.port}: {exc.strerror or exc}"
                ) from exc
            stack.push_async_callback(gateway.close)
            print(f"torrentgoat gateway: serving on {gateway.url}", flush=True)
            print(f"HF_ENDPOINT={gateway.url}", flush=True)
            if not args.quiet:
                print(f"upstream: {upstream or 'none'}", file=sys.stderr)
                if swarm is not None:
                    stack.enter_context(_cancelling(asyncio.ensure_future(_progress(swarm))))
            await stop.wait()
    if not args.quiet:
        print("torrentgoat gateway: stopped", file=sys.stderr)
    return 0


async def _swarm(args: argparse.Namespace, policy: Policy, stack: contextlib.AsyncExitStack) -> SwarmSource:
    """The session and the swarm source (closed by ``stack``)."""
    from torrentgoat.gateway.swarm import SwarmConfig, SwarmSource
    from torrentgoat.session import Session
    from torrentgoat.torrent import TorrentConfig

    tconfig = with_optimistic_unchoke(TorrentConfig(max_peers=args.max_peers), args.optimistic_unchoke)
    sconfig = session_config(args, tconfig, socket_prefix="peer-")
    if args.no_web_seeds:
        sconfig = dataclasses.replace(sconfig, enable_web_seeds=False)
    session = await stack.enter_async_context(Session(sconfig))
    cache = args.output.expanduser()
    try:
        swarm = SwarmSource(
            session,
            SwarmConfig(
                cache_dir=cache,
                policy=policy,
                peers=tuple(args.peer),
                refresh=args.refresh,
                seed=not args.no_seed,
            ),
        )
    except TorrentGoatError as exc:
        raise ConfigError(str(exc)) from exc
    for magnet in args.follow:
        swarm.follow(magnet)
    for spec in args.torrent:
        await swarm.add_torrent_spec(spec)
    await stack.enter_async_context(swarm)
    unresolved = await swarm.wait_ready(STARTUP_WAIT)
    if unresolved and not args.quiet:
        print(f"still resolving: {', '.join(unresolved)} (served once resolved)", file=sys.stderr)
    if not args.quiet:
        print(
            f"swarm: peers on port {session.listen_port}, models kept in {cache}; following "
            f"{len(args.follow)} collection(s), {len(args.torrent)} mapped torrent(s)",
            file=sys.stderr,
        )
    return swarm


async def _progress(swarm: SwarmSource) -> None:
    """One line per model being fetched, every :data:`PROGRESS_EVERY` seconds."""
    import asyncio

    while True:
        await asyncio.sleep(PROGRESS_EVERY)
        stamp = time.strftime("%H:%M:%S")
        for status in swarm.status():
            if status.state in ("metadata", "checking", "downloading"):
                print(f"{stamp} {progress_line(status)}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _cancelling(task: asyncio.Task[None]) -> Any:
    try:
        yield task
    finally:
        task.cancel()
