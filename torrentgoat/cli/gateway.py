"""``python -m torrentgoat gateway``: a Hugging Face endpoint for ``huggingface_hub`` (``HF_ENDPOINT``).

Serves the repos it is given -- plain folders (``--repo org/name=DIR``) and Hugging Face caches
(``--hf-cache DIR``, e.g. one filled by ``get --hf-cache``) -- and passes every other repo through to
the upstream hub (``--upstream``, ``none`` to answer "repository not found" instead)::

    python -m torrentgoat gateway --repo org/tiny=./tiny-model --hf-cache ~/.cache/huggingface/hub
    HF_ENDPOINT=http://127.0.0.1:8080 python -c "from huggingface_hub import snapshot_download; \\
        snapshot_download('org/tiny')"

Pickle-based weights are refused (``--allow-pickle`` to serve them).  Listens on 127.0.0.1 unless
``--listen`` says otherwise: the gateway has no authentication.  Stops on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import signal
import sys
from pathlib import Path
from typing import Any

from torrentgoat.cli._run import run
from torrentgoat.errors import ConfigError
from torrentgoat.gateway import (
    DEFAULT_UPSTREAM,
    FolderSource,
    Gateway,
    GatewayConfig,
    HFCacheSource,
    RepoType,
)
from torrentgoat.safety import Policy

__all__ = ["ORDER", "parse_repo_spec", "register"]

ORDER = 40

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


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "gateway",
        help="serve models to huggingface_hub (HF_ENDPOINT=http://127.0.0.1:8080)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--repo",
        action="append",
        default=[],
        metavar="ORG/NAME=DIR[@COMMIT]",
        help="serve folder DIR as this repo (repeatable; the commit defaults to one derived from the content)",
    )
    parser.add_argument(
        "--hf-cache",
        action="append",
        default=[],
        type=Path,
        metavar="DIR",
        help="serve the repos of a Hugging Face cache directory (repeatable)",
    )
    parser.add_argument(
        "--upstream",
        default=DEFAULT_UPSTREAM,
        metavar="URL|none",
        help=f"hub for repos not served locally (default {DEFAULT_UPSTREAM}; none: answer not found)",
    )
    parser.add_argument("--listen", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="TCP port (default 8080; 0: any free port)")
    parser.add_argument(
        "--allow-pickle", action="store_true", help="serve pickle-based weights (.bin, .pt, ...) too"
    )
    parser.add_argument("--max-streams", type=int, default=64, help="file transfers at once (default 64)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    return run(_serve(args))


async def _serve(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    upstream = None if args.upstream.strip().lower() == "none" else args.upstream
    config = GatewayConfig(
        host=args.listen,
        port=args.port,
        upstream=upstream,
        policy=Policy(allow_pickle=args.allow_pickle),
        max_streams=args.max_streams,
    )
    folders = FolderSource()
    for spec in args.repo:
        repo_type, repo_id, folder, commit = parse_repo_spec(spec)
        snapshot = await folders.add(repo_id, folder, repo_type=repo_type, commit=commit)
        if not args.quiet:
            print(
                f"{repo_id}: {len(snapshot.files)} files from {folder} at commit {snapshot.commit}",
                file=sys.stderr,
            )
    sources: list[Any] = [folders, *(HFCacheSource(path) for path in args.hf_cache)]
    try:
        gateway = Gateway(sources, config)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
        except (NotImplementedError, RuntimeError):
            pass
    try:
        try:
            await gateway.start()
        except OSError as exc:
            raise ConfigError(f"cannot listen on {args.listen}:{args.port}: {exc.strerror or exc}") from exc
        print(f"torrentgoat gateway: serving on {gateway.url}", flush=True)
        print(f"HF_ENDPOINT={gateway.url}", flush=True)
        if not args.quiet:
            print(f"upstream: {upstream or 'none'}", file=sys.stderr)
        await stop.wait()
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        await gateway.close()
    if not args.quiet:
        print("torrentgoat gateway: stopped", file=sys.stderr)
    return 0
