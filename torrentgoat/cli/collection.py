"""``python -m torrentgoat collection build|publish|get|update|ls|seed|verify``: signed model collections.

A collection is a set of models (one torrent each) described by a signed YAML manifest, shipped as a
tiny torrent of its own and pointed at by the publisher's key through a BEP 46 DHT item, so
``magnet:?xs=urn:btpk:<key>&s=<salt hex>`` always names the latest signed version::

    torrentgoat keygen -o publisher.key
    torrentgoat collection build goats ./tiny-llama ./tiny-bert -o out/ --key publisher.key \\
        --hf tiny-llama=org/tiny-llama@<commit>
    torrentgoat collection publish out/ --key publisher.key          # prints the magnet, seeds
    torrentgoat collection get 'magnet:?xs=urn:btpk:...' -o models/ [--model tiny-llama] [--hf-cache]
    torrentgoat collection update models/                           # only new bytes cross the network
    torrentgoat collection ls models/   (or a btpk magnet)

``get`` / ``update`` exit 0 when every chosen model is complete and verified (every file's SHA-256
against the manifest; pickle weights refused unless ``--allow-pickle``; safetensors headers
validated), 1 when a model was refused or failed, 2 when the manifest itself is refused (bad
signature, another key, an older or replayed ``seq``) -- then nothing on disk is touched.
``publish``, ``get``, ``update``, ``ls`` and ``seed`` take the network options of ``get``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torrentgoat.cli._common import add_session_options, follow, on_signals, session_config
from torrentgoat.cli._run import run
from torrentgoat.collection.hub import DEFAULT_HUB, default_hf_cache
from torrentgoat.errors import ConfigError
from torrentgoat.units import format_size, parse_size

if TYPE_CHECKING:  # the rest is imported by the subcommand that runs, not to parse options
    from torrentgoat.collection import ModelSpec
    from torrentgoat.collection.client import SyncReport
    from torrentgoat.manifest import Manifest
    from torrentgoat.torrent import Torrent

__all__ = [
    "ORDER",
    "add_build_parser",
    "add_get_options",
    "add_ls_parser",
    "add_publish_parser",
    "add_update_parser",
    "register",
    "run_collection_get",
]

ORDER = 30

_SNAPSHOT_RE = re.compile(r"models--(?P<org>[^/]+?)--(?P<name>[^/]+)/snapshots/(?P<commit>[0-9a-f]{40})$")


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "collection",
        help="build, publish, get and update signed model collections (BEP 46)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="collection_command", metavar="SUBCOMMAND", required=True)
    add_build_parser(commands)
    add_publish_parser(commands)
    get = commands.add_parser("get", help="get the latest version of a collection (btpk magnet)")
    get.add_argument("magnet", help="magnet:?xs=urn:btpk:<key>&s=<salt hex>")
    get.add_argument("-o", "--output", type=Path, default=Path("."), help="collection directory")
    add_get_options(get)
    add_session_options(get)
    get.set_defaults(func=_get_main)
    add_update_parser(commands)
    add_ls_parser(commands)
    seed = commands.add_parser(
        "seed", help="seed a collection directory (manifest and models) and keep its DHT item alive"
    )
    seed.add_argument("directory", type=Path)
    seed.add_argument(
        "--refresh", type=float, default=1800.0, help="seconds between re-puts of the signed DHT item"
    )
    add_session_options(seed)
    seed.set_defaults(func=_seed_main)
    verify = commands.add_parser("verify", help="check installed models against the held manifest")
    verify.add_argument("directory", type=Path)
    verify.add_argument("--allow-pickle", action="store_true", help="accept pickle-based weights")
    verify.set_defaults(func=_verify_main)


# -- build ---------------------------------------------------------------------------------------------


def add_build_parser(commands: Any) -> None:
    p: argparse.ArgumentParser = commands.add_parser(
        "build",
        help="make model torrents and the next (unsigned) manifest from model folders",
        description=(
            "Each MODEL is [NAME=]DIR (NAME defaults to the folder's name; a Hugging Face cache snapshot "
            "folder .../models--ORG--NAME/snapshots/COMMIT gets its repo and commit automatically). "
            "Files are hard-linked into OUT (copied across file systems): replace model files, never "
            "edit them in place, while they are published."
        ),
    )
    p.add_argument("name", help="collection name (also the BEP 46 salt)")
    p.add_argument("models", nargs="*", metavar="MODEL", help="[NAME=]DIR of a model folder")
    p.add_argument("-o", "--output", type=Path, required=True, help="publisher directory")
    p.add_argument("--key", type=Path, required=True, help="publisher key file (keygen)")
    p.add_argument(
        "--hf",
        action="append",
        default=[],
        metavar="NAME=ORG/REPO@COMMIT",
        help="Hugging Face source of a model: web seeds from the hub, torrent named after the commit",
    )
    p.add_argument(
        "--spec", type=Path, help="YAML list of {name, path, hf_repo, commit, license, format, yanked}"
    )
    p.add_argument("--license", action="append", default=[], metavar="NAME=LICENSE")
    p.add_argument(
        "--yank", action="append", default=[], metavar="NAME=REASON", help="publish a model as yanked"
    )
    p.add_argument("--hub", default=DEFAULT_HUB, help=f"hub URL for web seeds (default {DEFAULT_HUB})")
    p.add_argument("--piece-size", default="auto", help="piece length (default: automatic)")
    p.add_argument("--no-check", action="store_true", help="do not refuse invalid safetensors/GGUF headers")
    p.set_defaults(func=_build_main)


def _pairs(values: list[str], what: str) -> dict[str, str]:
    out = {}
    for value in values:
        name, sep, rest = value.partition("=")
        if not sep or not name or not rest:
            raise ConfigError(f"{what}: expected NAME=VALUE, got {value!r}")
        out[name] = rest
    return out


def _specs(args: argparse.Namespace) -> list[ModelSpec]:
    from torrentgoat.collection import ModelSpec
    from torrentgoat.collection.build import read_spec_file

    specs = read_spec_file(args.spec) if args.spec else []
    hf = _pairs(args.hf, "--hf")
    licenses = _pairs(args.license, "--license")
    yanks = _pairs(args.yank, "--yank")
    for text in args.models:
        name, sep, folder = text.partition("=")
        path = Path(folder if sep else text)
        if not sep:
            name = path.resolve().name
        hf_repo = commit = None
        match = _SNAPSHOT_RE.search(path.resolve().as_posix())
        if match:
            hf_repo, commit = f"{match['org']}/{match['name']}", match["commit"]
            if not sep:
                name = match["name"]
        if name in hf:
            repo, at, given = hf[name].partition("@")
            if not at:
                raise ConfigError(f"--hf {name}=...: expected ORG/REPO@COMMIT, got {hf[name]!r}")
            hf_repo, commit = repo, given.lower()
        specs.append(ModelSpec(name=name, path=path, hf_repo=hf_repo, commit=commit))
    unknown = (set(hf) | set(licenses) | set(yanks)) - {s.name for s in specs}
    if unknown:
        raise ConfigError(f"options name unknown models: {', '.join(sorted(unknown))}")
    out = []
    for spec in specs:
        out.append(
            ModelSpec(
                name=spec.name,
                path=spec.path,
                hf_repo=spec.hf_repo,
                commit=spec.commit,
                license=licenses.get(spec.name, spec.license),
                format=spec.format,
                yanked=yanks.get(spec.name, spec.yanked),
            )
        )
    return out


def _build_main(args: argparse.Namespace) -> int:
    from torrentgoat.collection import build_collection
    from torrentgoat.keys import SigningKey

    key = SigningKey.load(args.key)
    specs = _specs(args)
    piece = None if args.piece_size == "auto" else parse_size(args.piece_size)
    manifest = build_collection(
        args.name,
        specs,
        args.output,
        key.public_key,
        hub=args.hub,
        piece_length=piece,
        check=not args.no_check,
        progress=_say,
    )
    _say(
        f"built {manifest.collection} seq {manifest.seq} ({len(manifest.models)} models) in {args.output}; "
        f"next: torrentgoat collection publish {args.output} --key {args.key}"
    )
    return 0


# -- publish -------------------------------------------------------------------------------------------


def _short_form(help_text: str, name: str, short: bool) -> str:
    """Help of a top-level short form of ``collection NAME``."""
    return f"short for 'collection {name}': {help_text}" if short else help_text


def add_publish_parser(commands: Any, name: str = "publish", *, short: bool = False) -> None:
    p: argparse.ArgumentParser = commands.add_parser(
        name,
        help=_short_form("sign the built version, put it in the DHT (BEP 46) and seed it", name, short),
        description=(
            "Signs OUT's draft (or re-publishes the held version), makes the manifest torrent, puts the "
            "BEP 46 item (seq bumped), prints the btpk magnet on stdout, then seeds the manifest and every "
            "model until Ctrl-C, putting the item again every --refresh seconds (DHT items expire). "
            "A new version built into OUT while this runs (collection build) is signed and published "
            "within seconds."
        ),
    )
    p.add_argument("directory", type=Path, help="publisher directory (collection build -o)")
    p.add_argument("--key", type=Path, required=True, help="publisher key file")
    p.add_argument("--seq", type=int, default=None, help="sequence number (default: one above the last)")
    p.add_argument("--refresh", type=float, default=1800.0, help="seconds between DHT re-puts (default 1800)")
    p.add_argument("--once", action="store_true", help="publish, then exit without seeding")
    add_session_options(p)
    p.set_defaults(func=_publish_main)


def _publish_main(args: argparse.Namespace) -> int:
    return run(_cancellable(_publish(args), interrupted=0))


async def _publish(args: argparse.Namespace) -> int:
    import asyncio

    from torrentgoat.collection import Publisher
    from torrentgoat.keys import SigningKey
    from torrentgoat.session import Session
    from torrentgoat.torrent import TorrentConfig

    key = SigningKey.load(args.key)
    async with Session(session_config(args, TorrentConfig(max_peers=args.max_peers, seed=True))) as session:
        publisher = Publisher(session, args.directory, key, say=_say)
        publication = await publisher.publish(seq=args.seq)
        print(publication.magnet, flush=True)
        if args.once:
            return 0
        _say(f"seeding {len(publication.torrents)} torrents on port {session.listen_port}; Ctrl-C to stop")
        watchers = [
            asyncio.create_task(follow(t, quiet=True)) for t in publication.torrents
        ]  # log bans and failures
        try:
            await publisher.serve(refresh=args.refresh)
        finally:
            for w in watchers:
                w.cancel()
    return 0


# -- get / update ----------------------------------------------------------------------------------------


def add_get_options(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group("collections (btpk magnets)")
    group.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="NAME",
        help="fetch this model (repeatable; default all)",
    )
    group.add_argument(
        "--allow-pickle", action="store_true", help="accept pickle-based weights (.bin, .pt ...)"
    )
    group.add_argument("--include-yanked", action="store_true", help="fetch yanked models too")
    group.add_argument(
        "--hf-cache",
        nargs="?",
        type=Path,
        const=default_hf_cache(),
        default=None,
        metavar="DIR",
        help="also place models in the Hugging Face cache layout (default DIR: ~/.cache/huggingface/hub)",
    )
    if not any(a.dest == "peer" for a in p._actions):
        p.add_argument("--peer", action="append", default=[], metavar="HOST:PORT", help="peer to dial")
    if not any(a.dest == "seed" for a in p._actions):
        p.add_argument("--seed", action="store_true", help="keep seeding after completion")
    if not any(a.dest == "timeout" for a in p._actions):
        p.add_argument("--timeout", type=float, default=0.0, help="seconds allowed per torrent (0: no limit)")


def add_update_parser(commands: Any, name: str = "update", *, short: bool = False) -> None:
    p: argparse.ArgumentParser = commands.add_parser(
        name, help=_short_form("update a collection directory to the latest signed version", name, short)
    )
    p.add_argument("directory", type=Path, help="collection directory (from get)")
    add_get_options(p)
    add_session_options(p)
    p.set_defaults(func=_update_main)


def _get_main(args: argparse.Namespace) -> int:
    return run_collection_get(args, args.magnet, args.output)


def _update_main(args: argparse.Namespace) -> int:
    return run_collection_get(args, None, args.directory)


def run_collection_get(args: argparse.Namespace, magnet: str | None, root: Path) -> int:
    """``get`` (magnet given) or ``update`` (None) of the collection under ``root``; the exit code."""
    return run(_cancellable(_sync(args, magnet, root)))


async def _cancellable(coro: Coroutine[Any, Any, int], *, interrupted: int = 130) -> int:
    """Ctrl-C / SIGTERM cancel the command cleanly (the session closes its torrents).

    Returns ``interrupted`` then: 130 for downloads, 0 for seeding commands (stopping them is normal).
    """
    import asyncio

    task = asyncio.ensure_future(coro)
    with on_signals(task.cancel):
        try:
            return await task
        except asyncio.CancelledError:
            _say("stopped" if interrupted == 0 else "interrupted")
            return interrupted


async def _sync(args: argparse.Namespace, magnet: str | None, root: Path) -> int:
    import asyncio

    from torrentgoat.collection import CollectionClient
    from torrentgoat.safety import Policy
    from torrentgoat.session import Session
    from torrentgoat.torrent import TorrentConfig

    seed = bool(getattr(args, "seed", False))
    tconfig = TorrentConfig(max_peers=args.max_peers, seed=seed)
    watchers: list[asyncio.Task[None]] = []
    position = 0

    def watch(torrent: Torrent, label: str) -> None:
        nonlocal position
        watchers.append(
            asyncio.create_task(follow(torrent, quiet=args.quiet, label=label, position=position))
        )
        position += 1

    async with Session(session_config(args, tconfig)) as session:
        client = CollectionClient(
            session,
            root,
            say=_say,
            peers=args.peer,
            timeout=args.timeout or None,
            watch=watch,
        )
        report = await client.sync(
            magnet,
            models=args.model or None,
            policy=Policy(allow_pickle=args.allow_pickle),
            include_yanked=args.include_yanked,
            hf_cache=args.hf_cache,
            seed=seed,
        )
        _print_report(report, root)
        if seed and report.ok:
            _say(f"seeding on port {session.listen_port} (and keeping the DHT item alive); Ctrl-C to stop")
            with contextlib.suppress(asyncio.CancelledError):
                await client.serve()
    for w in watchers:
        w.cancel()
    await asyncio.gather(*watchers, return_exceptions=True)
    return 0 if report.ok else 1


def _print_report(report: SyncReport, root: Path) -> None:
    failed = [r for r in report.results if not r.ok]
    fetched = sum(1 for r in report.results if r.status in ("installed", "updated"))
    _say(
        f"{report.manifest.collection} seq {report.manifest.seq}: {fetched} model(s) fetched, "
        f"{format_size(report.downloaded)} downloaded, {len(failed)} refused or failed"
    )
    for r in report.results:
        if r.hf_snapshot is not None:
            _say(f"  {r.name}: Hugging Face cache snapshot {r.hf_snapshot}")
    for r in failed:
        _say(f"error: model {r.name}: {r.status}: {r.message}")
    if not report.results:
        _say(f"nothing to fetch; models are under {root}")


# -- ls / seed / verify ----------------------------------------------------------------------------------


def add_ls_parser(commands: Any, name: str = "ls", *, short: bool = False) -> None:
    p: argparse.ArgumentParser = commands.add_parser(
        name, help=_short_form("list the models of a collection directory or of a btpk magnet", name, short)
    )
    p.add_argument("source", help="collection directory, or a btpk magnet (resolved through the DHT)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--peer", action="append", default=[], metavar="HOST:PORT", help="peer to dial")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds allowed to fetch the manifest")
    add_session_options(p)
    p.set_defaults(func=_ls_main)


def _ls_main(args: argparse.Namespace) -> int:
    from torrentgoat.collection import Store
    from torrentgoat.collection.build import load_draft
    from torrentgoat.manifest import parse_signature, verify_manifest

    if args.source.startswith("magnet:"):
        manifest = run(_resolve_for_ls(args))
        installed: dict[str, str] = {}
        magnet = args.source
    else:
        store = Store(args.source)
        state = store.load_state()
        held = store.held_manifest()
        draft = load_draft(store)
        if (state is None or held is None) and draft is None:
            raise ConfigError(f"{args.source} holds no collection (neither published nor built)")
        if state is not None and held is not None:
            manifest = verify_manifest(held[0], parse_signature(held[1]), state.public_key)
            installed = {name: m.info_hash.hex for name, m in state.models.items()}
            _print_manifest(manifest, installed, state.magnet, as_json=args.json)
        if draft is not None:  # a publisher's next version, built but not yet signed and published
            if not args.json:
                gap = "\n" if state is not None and held is not None else ""
                print(f"{gap}draft (built, not yet published: collection publish {args.source})")
            _print_manifest(draft, {}, "", as_json=args.json, draft=True)
        return 0
    _print_manifest(manifest, installed, magnet, as_json=args.json)
    return 0


async def _resolve_for_ls(args: argparse.Namespace) -> Manifest:
    import tempfile

    from torrentgoat.collection import CollectionClient
    from torrentgoat.session import Session

    with tempfile.TemporaryDirectory() as tmp:
        async with Session(session_config(args)) as session:
            client = CollectionClient(session, tmp, peers=args.peer, timeout=args.timeout or None)
            resolved = await client.resolve(args.source)
    return resolved.manifest


def _print_manifest(
    manifest: Manifest, installed: dict[str, str], magnet: str, *, as_json: bool, draft: bool = False
) -> None:
    if as_json:
        doc = {
            "draft": draft,
            "collection": manifest.collection,
            "publisher": manifest.publisher.hex(),
            "seq": manifest.seq,
            "created": manifest.created,
            "magnet": magnet,
            "models": [
                {
                    "name": m.name,
                    "format": m.format,
                    "license": m.license,
                    "info_hash": m.info_hash.hex,
                    "size": sum(f.size for f in m.files),
                    "files": len(m.files),
                    "source": None if m.source is None else f"{m.source.hf_repo}@{m.source.commit}",
                    "yanked": m.yanked,
                    "installed": installed.get(m.name) == m.info_hash.hex if m.name in installed else False,
                }
                for m in manifest.models
            ],
        }
        print(json.dumps(doc, indent=1))
        return
    print(f"collection {manifest.collection}  seq {manifest.seq}  publisher {manifest.publisher.hex()}")
    if magnet:
        print(f"magnet {magnet}")
    print(f"{'NAME':<28} {'FORMAT':<12} {'SIZE':>10} {'FILES':>5}  {'STATE':<10} SOURCE")
    for m in manifest.models:
        if m.yanked is not None:
            status = "yanked"
        elif m.name in installed:
            status = "installed" if installed[m.name] == m.info_hash.hex else "outdated"
        else:
            status = "-"
        source = f"{m.source.hf_repo}@{m.source.commit[:10]}" if m.source else ""
        size = format_size(sum(f.size for f in m.files))
        print(f"{m.name:<28} {m.format:<12} {size:>10} {len(m.files):>5}  {status:<10} {source}")
        if m.yanked is not None:
            print(f"{'':<28} yanked: {m.yanked}")


def _seed_main(args: argparse.Namespace) -> int:
    return run(_cancellable(_seed(args), interrupted=0))


async def _seed(args: argparse.Namespace) -> int:
    from torrentgoat.collection import CollectionClient
    from torrentgoat.session import Session
    from torrentgoat.torrent import TorrentConfig

    async with Session(session_config(args, TorrentConfig(max_peers=args.max_peers, seed=True))) as session:
        client = CollectionClient(session, args.directory, say=_say)
        _say(f"seeding on port {session.listen_port} (and keeping the DHT item alive); Ctrl-C to stop")
        await client.serve(refresh=args.refresh)
    return 0


def _verify_main(args: argparse.Namespace) -> int:
    from torrentgoat.collection import Store
    from torrentgoat.manifest import parse_signature, verify_manifest
    from torrentgoat.modelcheck import scan_model_dir, verify_files_sha256
    from torrentgoat.safety import Policy

    store = Store(args.directory)
    state = store.load_state()
    held = store.held_manifest()
    if state is None or held is None:
        raise ConfigError(f"{args.directory} holds no collection")
    verify_manifest(held[0], parse_signature(held[1]), state.public_key)
    policy = Policy(allow_pickle=args.allow_pickle)
    bad = 0
    for model in state.models.values():
        folder = store.installed_dir(model)
        problems = [m.message for m in verify_files_sha256(folder, model.files)]
        link = store.link_problem(model)
        if link is not None:
            problems.append(link)
        if not problems:
            problems = [v.message for v in scan_model_dir(folder, [f.path for f in model.files], policy)[1]]
        if problems:
            bad += 1
            for text in problems:
                _say(f"{model.name}: {text}")
        else:
            _say(f"{model.name}: OK ({len(model.files)} files)")
    return 1 if bad else 0
