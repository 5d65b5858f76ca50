"""Building a collection from model folders (level L5, blocking: run it in a thread from async code).

Each model folder becomes one hybrid torrent (BEP 52 "Upgrade Path": v1 and v2 halves over the same
files, every file starting on a piece boundary) and one :class:`~torrentgoat.manifest.ModelEntry`
listing every file's path, size, SHA-256 and BEP 52 ``pieces root`` (the merkle root a block-level
update checks reused 16 KiB blocks against; ``format="v1"`` builds the torrents of older versions,
without roots).  For a Hugging Face snapshot (``hf_repo`` and ``commit`` given) the torrent's name is the
commit hash and its ``url-list`` (BEP 19) is ``<hub>/<org>/<name>/resolve/``, so a web seed request
for ``<url-list><torrent name>/<path>`` is exactly the hub's ``resolve/<commit>/<path>`` URL.  The
torrent name, file list and piece length decide the info-hash, so a model that did not change keeps
its info-hash (and its swarm) across collection versions.

The files are hard-linked (copied when that is impossible) into the output root's store (see
:mod:`torrentgoat.collection.store`), which the publisher then seeds; the unsigned next version is
written as ``draft.yaml`` for :class:`~torrentgoat.collection.publisher.Publisher` to sign.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import yaml

from torrentgoat.collection.hub import DEFAULT_HUB
from torrentgoat.collection.store import CollectionState, InstalledModel, Store, link_or_copy
from torrentgoat.creation import create_torrent
from torrentgoat.errors import ConfigError, ManifestError
from torrentgoat.infohashes import TorrentFormat
from torrentgoat.magnet import Magnet
from torrentgoat.manifest import (
    Manifest,
    ManifestFile,
    ModelEntry,
    ModelSource,
    dump_manifest,
    parse_manifest,
)
from torrentgoat.metainfo import Metainfo
from torrentgoat.modelcheck import check_model_file, sha256_file
from torrentgoat.safety import Policy, classify_filename

__all__ = [
    "DEFAULT_HUB",
    "BuiltModel",
    "ModelSpec",
    "build_collection",
    "build_model",
    "hub_web_seed",
    "read_spec_file",
]

_COMMIT_RE = re.compile(r"[0-9a-f]{40}")
_REPO_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?")


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelSpec:
    """One model folder to put in a collection."""

    name: str
    """The model's name in the collection (and its directory name on consumers)."""
    path: Path
    """The folder (e.g. a Hugging Face snapshot directory)."""
    hf_repo: str | None = None
    """``org/name`` on the hub; with ``commit``, the torrent gets the hub as its web seed."""
    commit: str | None = None
    """The snapshot's 40-hex commit: the torrent's name."""
    license: str | None = None
    format: str | None = None
    """Weights format; detected from the file names when None."""
    yanked: str | None = None
    """Publish the model as yanked with this reason."""

    def __post_init__(self) -> None:
        if (self.hf_repo is None) != (self.commit is None):
            raise ConfigError(
                f"model {self.name!r}: give both the Hugging Face repo and the commit, or neither"
            )
        if self.commit is not None and not _COMMIT_RE.fullmatch(self.commit):
            raise ConfigError(f"model {self.name!r}: commit {self.commit!r} is not 40 lowercase hex digits")
        if self.hf_repo is not None and not _REPO_RE.fullmatch(self.hf_repo):
            raise ConfigError(f"model {self.name!r}: {self.hf_repo!r} is not a repo id like org/name")

    @property
    def torrent_name(self) -> str:
        """The commit hash for a hub snapshot, else the model name."""
        return self.commit if self.commit is not None else self.name


@dataclass(frozen=True, slots=True, kw_only=True)
class BuiltModel:
    """A model torrent and its manifest entry."""

    entry: ModelEntry
    metainfo: Metainfo
    source: Path


def hub_web_seed(hub: str, repo: str) -> str:
    """``<hub>/<org>/<name>/resolve/`` (BEP 19 ``url-list`` entry ending in ``/``)."""
    return f"{hub.rstrip('/')}/{repo}/resolve/"


def _detect_format(paths: Sequence[str]) -> str:
    kinds = {classify_filename(p) for p in paths}
    for kind in ("safetensors", "gguf", "pickle"):
        if kind in kinds:
            return kind
    if any(p.lower().endswith(".onnx") for p in paths):
        return "onnx"
    return "other"


def build_model(
    spec: ModelSpec,
    *,
    hub: str = DEFAULT_HUB,
    piece_length: int | None = None,
    check: bool = True,
    threads: int = 0,
    format: TorrentFormat = "hybrid",
) -> BuiltModel:
    """Hash ``spec.path`` into a model torrent and its manifest entry (files in torrent order).

    ``check``: refuse safetensors / GGUF files with invalid headers (ConfigError); pickle files are
    allowed here (the consumers' policy decides) but mark the model's format as ``pickle`` when
    nothing safer is present.
    """
    if not spec.path.is_dir():
        raise ConfigError(f"model {spec.name!r}: {spec.path} is not a directory")
    web_seeds = [hub_web_seed(hub, spec.hf_repo)] if spec.hf_repo is not None else []
    metainfo = create_torrent(
        spec.path,
        name=spec.torrent_name,
        piece_length=piece_length,
        web_seeds=web_seeds,
        creation_date=None,
        follow_symlinks=True,
        threads=threads,
        format=format,
    )
    info = metainfo.info
    paths = ["/".join(f.path[1:]) if not info.single_file else f.path[0] for f in info.files if not f.pad]
    if info.single_file:
        raise ConfigError(f"model {spec.name!r}: a model folder must hold files")
    if check:
        policy = Policy(allow_pickle=True)
        for relative in paths:
            try:
                check_model_file(spec.path / relative, policy, display=f"{spec.name}/{relative}")
            except Exception as exc:
                raise ConfigError(
                    f"model {spec.name!r}: {exc} (pass --no-check to publish it anyway)"
                ) from None
    with ThreadPoolExecutor(max_workers=max(1, threads or (os.cpu_count() or 1))) as pool:
        digests = list(pool.map(lambda p: sha256_file(spec.path / p), paths))
    sizes = [f.length for f in info.files if not f.pad]
    roots = {f.index: f.root.hex() for f in info.v2.files} if info.v2 is not None else {}
    indices = [i for i, f in enumerate(info.files) if not f.pad]
    files = tuple(
        ManifestFile(path=p, size=s, sha256=d, pieces_root=roots.get(i))
        for p, s, d, i in zip(paths, sizes, digests, indices, strict=True)
    )
    source = ModelSource(hf_repo=spec.hf_repo, commit=spec.commit) if spec.hf_repo and spec.commit else None
    entry = ModelEntry(
        name=spec.name,
        format=spec.format or _detect_format(paths),
        info_hash=metainfo.info_hash,
        files=files,
        license=spec.license,
        source=source,
        magnet=Magnet.from_metainfo(metainfo).to_uri(),
        web_seeds=tuple(web_seeds),
        yanked=spec.yanked,
    )
    return BuiltModel(entry=entry, metainfo=metainfo, source=spec.path)


def _import_model(store: Store, built: BuiltModel) -> None:
    """Link (or copy) the model's files into the store and save its .torrent."""
    entry = built.entry
    target = store.model_dir(entry.name, entry.info_hash, built.metainfo.info.name)
    for f in entry.files:
        dest = target / f.path
        if dest.is_file() and dest.stat().st_size == f.size and os.path.samefile(dest, built.source / f.path):
            continue
        link_or_copy((built.source / f.path).resolve(), dest)
    store.write_file(store.torrent_path(entry.info_hash), built.metainfo.to_bytes())


def build_collection(
    name: str,
    specs: Sequence[ModelSpec],
    root: str | os.PathLike[str],
    public_key: bytes,
    *,
    hub: str = DEFAULT_HUB,
    piece_length: int | None = None,
    check: bool = True,
    progress: Callable[[str], None] | None = None,
    format: TorrentFormat = "hybrid",
) -> Manifest:
    """Build every model, import it into ``root``'s store and write the unsigned next version.

    The draft's ``seq`` is one more than the version published from ``root`` before (1 at first);
    :meth:`Publisher.publish` may raise it further if the DHT holds a higher one.
    """
    if not specs:
        raise ConfigError("a collection needs at least one model")
    store = Store(root)
    state = store.load_state()
    if state is not None:
        if state.public_key != public_key:
            raise ConfigError(
                f"{store.root} holds collection {state.collection!r} of key {state.public_key.hex()}, "
                f"not of key {public_key.hex()}"
            )
        if state.collection != name:
            raise ConfigError(f"{store.root} holds collection {state.collection!r}, not {name!r}")
    names: set[str] = set()
    for spec in specs:
        if spec.name.casefold() in names:
            raise ConfigError(f"model name {spec.name!r} is given twice")
        names.add(spec.name.casefold())
    models: list[ModelEntry] = []
    for spec in specs:
        if progress is not None:
            progress(f"hashing {spec.name} ({spec.path})")
        built = build_model(spec, hub=hub, piece_length=piece_length, check=check, format=format)
        _import_model(store, built)
        models.append(built.entry)
        if progress is not None:
            size = sum(f.size for f in built.entry.files)
            progress(
                f"  {spec.name}: {len(built.entry.files)} files, {size} bytes, info-hash {built.entry.info_hash.hex}"
            )
    seq = state.seq + 1 if state is not None else 1
    try:
        manifest = Manifest(collection=name, publisher=public_key, seq=seq, models=tuple(models))
        data = dump_manifest(manifest)
    except ManifestError as exc:
        raise ConfigError(f"cannot build the manifest: {exc}") from None
    store.write_file(store.draft_path, data)
    return manifest


def load_draft(store: Store) -> Manifest | None:
    """The unsigned next version built into ``store``, or None."""
    try:
        data = store.draft_path.read_bytes()
    except FileNotFoundError:
        return None
    return parse_manifest(data)


def installed_from_manifest(manifest: Manifest, store: Store) -> dict[str, InstalledModel]:
    """The publisher's models as installed entries (their .torrent files name the torrent names)."""
    from torrentgoat.metainfo import load_metainfo

    out = {}
    for entry in manifest.models:
        metainfo = load_metainfo(store.torrent_path(entry.info_hash))
        out[entry.name] = InstalledModel(
            name=entry.name, info_hash=entry.info_hash, torrent_name=metainfo.info.name, files=entry.files
        )
    return out


def state_for(manifest: Manifest, previous: CollectionState | None) -> CollectionState:
    """A publisher's state skeleton for ``manifest``."""
    base = CollectionState(
        public_key=manifest.publisher,
        salt=manifest.collection.encode(),
        collection=manifest.collection,
        seq=manifest.seq,
    )
    return base if previous is None else replace(previous, seq=manifest.seq)


def read_spec_file(path: str | os.PathLike[str]) -> list[ModelSpec]:
    """Models from a small YAML spec: a list of ``{name, path, hf_repo?, commit?, license?, format?, yanked?}``.

    Relative paths are relative to the spec file's directory.
    """
    spec_path = Path(path)
    try:
        text = spec_path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {spec_path}: {exc.strerror}") from None
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{spec_path}: not valid YAML: {exc}") from None
    if isinstance(value, dict) and "models" in value:
        value = value["models"]
    if not isinstance(value, list):
        raise ConfigError(f"{spec_path}: expected a list of models")
    allowed = {"name", "path", "hf_repo", "commit", "license", "format", "yanked"}
    specs = []
    for i, item in enumerate(value):
        if not isinstance(item, dict) or not {"name", "path"} <= item.keys() or not item.keys() <= allowed:
            raise ConfigError(f"{spec_path}: models[{i}] needs name and path (and only {sorted(allowed)})")
        folder = Path(str(item["path"]))
        if not folder.is_absolute():
            folder = spec_path.parent / folder
        specs.append(
            ModelSpec(
                name=str(item["name"]),
                path=folder,
                hf_repo=None if item.get("hf_repo") is None else str(item["hf_repo"]),
                commit=None if item.get("commit") is None else str(item["commit"]).lower(),
                license=None if item.get("license") is None else str(item["license"]),
                format=None if item.get("format") is None else str(item["format"]),
                yanked=None if item.get("yanked") is None else str(item["yanked"]),
            )
        )
    return specs
