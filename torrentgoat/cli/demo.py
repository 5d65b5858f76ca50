"""``python -m torrentgoat demo``: a model collection published, fetched and updated, on loopback.

Everything runs in this process on 127.0.0.1 -- a small DHT of three nodes, a stand-in for the
Hugging Face hub, a publisher and two consumers -- and the story is told step by step:

1. the publisher makes an ed25519 key and two small models (real safetensors shards);
2. builds collection v1 (one torrent per model, a manifest listing every file's SHA-256), signs it,
   ships it as a tiny torrent and points its key at it in the DHT (BEP 46): one btpk magnet;
3. consumer A gets one model by that magnet: signature checked against the key in the magnet,
   every file's SHA-256 and safetensors header verified, Hugging Face cache layout written;
4. the publisher fine-tunes one shard, adds a model and publishes v2;
5. A updates: the unchanged files are reused locally, only the changed shard crosses the network;
6. consumer B gets v2 from A and the publisher together (and refuses a pickle-based model);
7. attacks: a replayed v1, a tampered manifest and another key's manifest are refused, A untouched.

``--swarm`` runs the earlier demo instead: one generated shard, one seeder and ``--leechers``
downloaders.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torrentgoat.cli._common import follow
from torrentgoat.cli._run import run
from torrentgoat.errors import TorrentGoatError
from torrentgoat.units import format_rate, format_size, parse_size

if TYPE_CHECKING:  # the rest is imported when the demo runs, not to parse options
    from torrentgoat.aio.dht import DHTNode
    from torrentgoat.keys import SigningKey
    from torrentgoat.session import SessionConfig

__all__ = ["ORDER", "register"]

ORDER = 5

_PIECE = 64 * 1024


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "demo",
        help="publish, get and update a model collection on loopback (no network needed)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--shard-size", default="4MiB", help="size of each model shard (default 4MiB)")
    parser.add_argument("--dir", type=Path, default=None, help="work directory (default: a temporary one)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    swarm = parser.add_argument_group("the single-shard swarm demo")
    swarm.add_argument("--swarm", action="store_true", help="run the swarm demo instead")
    swarm.add_argument("--size", default="256MiB", help="size of the generated shard (default 256MiB)")
    swarm.add_argument("--leechers", type=int, default=3, help="downloading peers (default 3)")
    swarm.add_argument("--piece-size", default="1MiB", help="piece length (default 1MiB)")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    demo = _swarm_demo if args.swarm else _collection_demo
    if args.dir is not None:
        if not args.swarm and args.dir.exists() and any(args.dir.iterdir()):
            print(f"torrentgoat: demo: {args.dir} is not empty", file=sys.stderr)
            return 2
        args.dir.mkdir(parents=True, exist_ok=True)
        return run(demo(args, args.dir))
    with tempfile.TemporaryDirectory(prefix="torrentgoat-demo-") as work:
        return run(demo(args, Path(work)))


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- the collection demo ----------------------------------------------------------------------------------


class _Steps:
    def __init__(self, total: int) -> None:
        self.total = total
        self.n = 0
        self.started = time.monotonic()

    def __call__(self, title: str) -> None:
        self.n += 1
        _say(f"\n[{self.n}/{self.total}] {title}  (+{time.monotonic() - self.started:.1f} s)")


def _detail(text: str) -> None:
    _say(f"      {text}")


def _config(boot: DHTNode, *, upload_limit: int = 0) -> SessionConfig:
    from torrentgoat.session import SessionConfig

    return SessionConfig(
        listen_host="127.0.0.1",
        listen_ipv6=None,
        listen_port=0,
        enable_dht=True,
        dht_bootstrap=(("127.0.0.1", boot.address.port),),
        enable_trackers=False,
        upload_limit=upload_limit,
    )


async def _attack(root: Path, key: SigningKey, files: dict[str, bytes], *, seq: int, name: str) -> str:
    """Serve ``files`` as a manifest torrent pointed at by ``key`` in a DHT of its own; let a client of
    ``root`` update from there.  The refusal message (or "ACCEPTED")."""
    import asyncio

    from torrentgoat.collection import CollectionClient, Store
    from torrentgoat.creation import create_torrent
    from torrentgoat.dht.items import SigningKey as DHTSigningKey
    from torrentgoat.session import Session
    from torrentgoat.testing.localdht import local_dht

    with tempfile.TemporaryDirectory(prefix="torrentgoat-attack-") as tmp:
        folder = Path(tmp) / name
        for relative, content in files.items():
            (folder / relative).parent.mkdir(parents=True, exist_ok=True)
            (folder / relative).write_bytes(content)
        metainfo = await asyncio.to_thread(create_torrent, folder, name=name, creation_date=None)
        async with local_dht() as nodes:
            salt = Store(root).load_state().salt  # type: ignore[union-attr]
            await nodes[1].publish_torrent(DHTSigningKey(key.seed), metainfo.info_hash, salt=salt, seq=seq)
            async with Session(_config(nodes[0])) as evil, Session(_config(nodes[0])) as victim:
                await evil.add(metainfo, tmp, seed=True)
                client = CollectionClient(victim, root, timeout=20, peers=[f"127.0.0.1:{evil.listen_port}"])
                try:
                    await client.sync()
                except TorrentGoatError as exc:
                    return str(exc)
    return "ACCEPTED"


def _tree_state(root: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            st = (Path(directory) / name).lstat()
            out[os.path.join(directory, name)] = (st.st_size, st.st_mtime_ns)
    return out


async def _collection_demo(args: argparse.Namespace, work: Path) -> int:
    import asyncio
    import pickle

    from torrentgoat.collection import CollectionClient, ModelSpec, Publisher, Store, build_collection
    from torrentgoat.collection._common import read_manifest_tree
    from torrentgoat.collection.store import META_DIR
    from torrentgoat.keys import SigningKey
    from torrentgoat.manifest import SignedManifest
    from torrentgoat.session import Session
    from torrentgoat.storage.resume import RESUME_DIR
    from torrentgoat.testing.hub import FakeHub
    from torrentgoat.testing.localdht import local_dht
    from torrentgoat.testing.shards import write_model_folder
    from torrentgoat.testing.updates import fine_tune_tensor

    shard = parse_size(args.shard_size)
    step = _Steps(8)
    ok = True
    step("a publisher key and two models (Hugging Face-like snapshot folders)")
    key = SigningKey.generate()
    key.save(work / "publisher.key")
    _detail(f"key {work / 'publisher.key'} (0600), public key {key.public_key.hex()}")
    src = work / "models-src"
    llama = await asyncio.to_thread(
        write_model_folder, src / "tiny-llama", shards=3, shard_size=shard, seed=1, tensor_bytes=shard // 8
    )
    bert = await asyncio.to_thread(
        write_model_folder, src / "tiny-bert", shards=1, shard_size=shard // 2, seed=2
    )
    commit1 = "1a" * 20
    for folder in (llama, bert):
        names = sorted(p.name for p in folder.iterdir())
        _detail(f"{folder.name}: {', '.join(names)}")

    async with FakeHub() as hub, local_dht() as dht:
        hub.add_repo("goat-org/tiny-llama", commit1, llama)
        _detail(f"a stand-in Hugging Face hub at {hub.url} serves goat-org/tiny-llama@{commit1[:10]}")
        _detail(
            f"a DHT of {len(dht)} nodes on 127.0.0.1 (ports {', '.join(str(n.address.port) for n in dht)})"
        )
        pub_root, a_root, b_root = work / "publisher", work / "consumer-a", work / "consumer-b"
        specs = [
            ModelSpec(
                name="tiny-llama",
                path=llama,
                hf_repo="goat-org/tiny-llama",
                commit=commit1,
                license="apache-2.0",
            ),
            ModelSpec(name="tiny-bert", path=bert, license="mit"),
        ]

        step("build and publish collection v1")
        v1 = await asyncio.to_thread(
            build_collection, "goat-zoo", specs, pub_root, key.public_key, hub=hub.url, piece_length=_PIECE
        )
        for model in v1.models:
            _detail(
                f"{model.name}: torrent {model.info_hash.hex}, {len(model.files)} files, "
                f"{format_size(sum(f.size for f in model.files))}"
                + (f", web seed {model.web_seeds[0]}" if model.web_seeds else "")
            )
        async with (
            Session(_config(dht[0], upload_limit=4 * shard)) as pub_session,
            Session(_config(dht[0])) as a_session,
        ):
            publisher = Publisher(pub_session, pub_root, key, say=_detail)
            first = await publisher.publish()
            v1_copy = work / "v1-manifest-copy"
            # the seeding manifest torrent may be saving its resume data right now: copy only the manifest
            shutil.copytree(
                pub_root / META_DIR / "manifest" / first.manifest_info_hash.hex,
                v1_copy,
                ignore=shutil.ignore_patterns(RESUME_DIR),
            )
            manifest_text = Store(pub_root).manifest_path.read_text().splitlines()
            _detail("collection.yaml (signed, detached signature beside it):")
            for line in manifest_text[:12]:
                _detail(f"  | {line}")
            _detail(f"  | ... ({len(manifest_text)} lines)")
            _detail(f"the one link to share:  {first.magnet}")

            step("consumer A: get tiny-llama by the btpk magnet, into the Hugging Face cache too")
            hf_cache = work / "hf-cache"
            a = CollectionClient(a_session, a_root, say=_detail, timeout=60)
            report = await a.sync(first.magnet, models=["tiny-llama"], hf_cache=hf_cache, seed=True)
            ok &= report.ok
            _detail(f"the hub served {format_size(hub.bytes_served())} as a BEP 19 web seed, peers the rest")
            llama_result = report.results[0]
            _detail(
                f"{a_root / 'tiny-llama'} -> {os.readlink(a_root / 'tiny-llama')} -> "
                f"{os.path.relpath(os.path.realpath(a_root / 'tiny-llama'), a_root)}"
            )
            _detail(f"HF cache snapshot: {llama_result.hf_snapshot}")
            try:
                import huggingface_hub
            except ImportError:
                _detail("(install huggingface_hub to see it load the model offline)")
            else:
                path = huggingface_hub.snapshot_download(
                    "goat-org/tiny-llama", revision=commit1, cache_dir=hf_cache, local_files_only=True
                )
                _detail(f"huggingface_hub.snapshot_download(..., local_files_only=True) -> {path}")

            step("the publisher fine-tunes one tensor of one shard, adds a model, publishes v2")
            tuned = llama / "model-00002-of-00003.safetensors"
            changed = await asyncio.to_thread(fine_tune_tensor, tuned, seed=77, metadata={"tuned": "layer 4"})
            _detail(
                f"{tuned.name}: one tensor of {format_size(changed)} has new weights, the header grew by a few bytes"
            )
            commit2 = "2b" * 20
            hub.add_repo("goat-org/tiny-llama", commit2, llama)
            mistral = await asyncio.to_thread(
                write_model_folder, src / "tiny-mistral", shards=1, shard_size=shard // 2, seed=3
            )
            legacy = src / "legacy-pt"
            legacy.mkdir()
            (legacy / "config.json").write_text('{"model_type": "legacy"}\n')
            (legacy / "pytorch_model.bin").write_bytes(
                pickle.dumps({"weights": list(range(2000))}, protocol=4)
            )
            specs[0] = replace(specs[0], commit=commit2)
            specs += [ModelSpec(name="tiny-mistral", path=mistral), ModelSpec(name="legacy-pt", path=legacy)]
            v2 = await asyncio.to_thread(
                build_collection,
                "goat-zoo",
                specs,
                pub_root,
                key.public_key,
                hub=hub.url,
                piece_length=_PIECE,
            )
            same = [m.name for m in v2.models if (old := v1.model(m.name)) and old.info_hash == m.info_hash]
            _detail(f"unchanged models keep their info-hash (and swarm): {', '.join(same)}")
            second = await publisher.publish()

            step("consumer A: update -- only the changed blocks cross the network")
            report = await a.sync(seed=True)
            ok &= report.ok
            updated = report.results[0]
            llama_v2 = v2.model("tiny-llama")
            assert llama_v2 is not None
            llama_size = sum(f.size for f in llama_v2.files)
            moved = updated.downloaded + updated.hash_bytes
            _detail(
                f"tiny-llama is {format_size(llama_size)}: {format_size(updated.reused)} reused from the held "
                f"version (unchanged files by SHA-256, blocks of the changed shard by the new merkle tree)"
            )
            _detail(
                f"moved {moved} bytes ({updated.downloaded} of blocks + {updated.hash_bytes} of BEP 52 hashes) "
                f"for {changed} changed tensor bytes: {moved / changed:.3f}x; the whole shard is "
                f"{format_size(tuned.stat().st_size)}"
            )
            ok &= moved <= 1.05 * changed + 64 * 1024

            step("consumer B: get all of v2 from A and the publisher together")
            async with Session(_config(dht[0])) as b_session:
                b = CollectionClient(b_session, b_root, say=_detail, timeout=60)
                a_llama = a_session.torrents.get(llama_v2.info_hash.raw)
                before = a_llama.uploaded if a_llama is not None else 0
                report = await b.sync(second.magnet)
                refused = [r for r in report.results if r.status == "refused"]
                ok &= [r.name for r in refused] == ["legacy-pt"]
                ok &= all(r.ok for r in report.results if r.name != "legacy-pt")
                if a_llama is not None:
                    _detail(
                        f"consumer A uploaded {format_size(a_llama.uploaded - before)} of tiny-llama to B"
                    )
                _detail("legacy-pt holds pytorch_model.bin (pickle): refused before a byte was fetched;")
                _detail("  pass --allow-pickle to accept pickle-based weights")

        step("attacks on consumer A (each refused, nothing on disk touched)")
        before_tree = _tree_state(a_root)
        v1_files = read_manifest_tree(v1_copy / first.signed.torrent_name)
        v2_folder = (
            pub_root / META_DIR / "manifest" / second.manifest_info_hash.hex / second.signed.torrent_name
        )
        v2_files = read_manifest_tree(v2_folder)
        tampered = dict(v2_files)
        tampered["collection.yaml"] = v2_files["collection.yaml"].replace(
            b"license: mit", b"license: proprietary"
        )
        stranger = SigningKey.generate()
        forged = SignedManifest.create(
            replace(second.signed.manifest, publisher=stranger.public_key, seq=3), stranger
        )
        attacks = [
            ("a replayed v1 (genuine signature, seq 1)", v1_files, 1, first.signed.torrent_name),
            ("a tampered v2 (one field changed, signature kept)", tampered, 3, "goat-zoo-v3"),
            ("a manifest signed by another key", {**v2_files, **forged.folder_files()}, 3, "goat-zoo-v3"),
        ]
        for title, files, seq, name in attacks:
            message = await _attack(a_root, key, files, seq=seq, name=name)
            ok &= message != "ACCEPTED"
            _detail(f"{title}: {message}")
        untouched = _tree_state(a_root) == before_tree
        ok &= untouched
        _detail("consumer A's directory is unchanged" if untouched else "consumer A's directory CHANGED")

    step("done")
    _detail(f"everything above ran on 127.0.0.1 in {time.monotonic() - step.started:.1f} s")
    _say("demo: OK" if ok else "demo: FAILED")
    return 0 if ok else 1


# -- the swarm demo ---------------------------------------------------------------------------------------


async def _swarm_demo(args: argparse.Namespace, work: Path) -> int:
    import asyncio

    from torrentgoat.aio.hasher import PieceHasher
    from torrentgoat.config import IOConfig
    from torrentgoat.creation import create_torrent
    from torrentgoat.session import Session, SessionConfig
    from torrentgoat.storage import FileStorage
    from torrentgoat.testing.shards import write_safetensors_shard
    from torrentgoat.torrent import TorrentConfig

    size = parse_size(args.size)
    seed_dir = work / "seeder"
    seed_dir.mkdir(exist_ok=True)
    shard_path = seed_dir / "model-00001-of-00001.safetensors"
    _say(f"[1/4] writing a {format_size(size)} safetensors shard: {shard_path}")
    if not shard_path.exists() or shard_path.stat().st_size != size:
        await asyncio.to_thread(write_safetensors_shard, shard_path, size)
    _say("[2/4] hashing it into a torrent")
    metainfo = await asyncio.to_thread(create_torrent, shard_path, piece_length=parse_size(args.piece_size))
    info = metainfo.info
    _say(
        f"      info-hash {metainfo.info_hash.hex}, {info.num_pieces} pieces of {format_size(info.piece_length)}"
    )
    config = SessionConfig(
        listen_host="127.0.0.1",
        listen_ipv6=None,
        listen_port=0,
        enable_dht=False,
        enable_trackers=False,
        torrent=TorrentConfig(seed=True),
    )
    sessions = [Session(config) for _ in range(args.leechers + 1)]
    try:
        for session in sessions:
            await session.start()
        seeder_session, leecher_sessions = sessions[0], sessions[1:]
        _say(f"[3/4] seeder on 127.0.0.1:{seeder_session.listen_port}, {len(leecher_sessions)} leechers")
        seeder = await seeder_session.add(metainfo, seed_dir)
        addresses = [f"127.0.0.1:{s.listen_port}" for s in sessions]
        started = time.monotonic()
        leechers = []
        for i, session in enumerate(leecher_sessions, start=1):
            dest = work / f"leecher-{i}"
            others = [a for a in addresses if a != f"127.0.0.1:{session.listen_port}"]
            leechers.append(await session.add(metainfo, dest, peers=others))
        watchers = [
            asyncio.create_task(follow(t, quiet=args.quiet, label=f"leecher {i}", position=i - 1))
            for i, t in enumerate(leechers, start=1)
        ]
        await asyncio.gather(*(t.wait_complete() for t in leechers))
        elapsed = time.monotonic() - started
        stats = [(f"leecher {i}", t.downloaded, t.uploaded) for i, t in enumerate(leechers, start=1)]
        stats.insert(0, ("seeder", seeder.downloaded, seeder.uploaded))
        for torrent in [seeder, *leechers]:
            torrent.stop("demo finished")
        await asyncio.gather(*(t.wait_stopped() for t in [seeder, *leechers]))
        for watcher in watchers:
            watcher.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
    finally:
        for session in sessions:
            await session.close()
    _say(
        f"[4/4] all {len(leechers)} leechers complete in {elapsed:.1f} s "
        f"({format_rate(size * len(leechers) / elapsed)} delivered); checking every copy"
    )
    hasher = PieceHasher(IOConfig())
    ok = True
    try:
        for i in range(1, len(leechers) + 1):
            storage = FileStorage(work / f"leecher-{i}", info, read_only=True)
            try:
                result = await hasher.check(info, storage)
            finally:
                storage.close()
            good = result.good.count
            ok &= good == info.num_pieces
            _say(f"      leecher {i}: {good}/{info.num_pieces} pieces verified")
    finally:
        await hasher.aclose()
    for name, down, up in stats:
        _say(f"      {name:>10}: downloaded {format_size(down):>10}, uploaded {format_size(up):>10}")
    _say("demo: OK" if ok else "demo: FAILED")
    return 0 if ok else 1
