"""Where a collection lives on disk (level L5): the same layout for the publisher and every consumer.

::

    ROOT/
      <model>  -> .torrentgoat/current/<model>                (a relative symlink, fixed per model)
      .torrentgoat/
        current -> versions/<seq>.<token>   the held version: ONE symlink, swapped atomically
        versions/<seq>.<token>/
          state.json                    key, salt, seq, held manifest torrent, installed models
          collection.yaml               the held (latest accepted) signed manifest ...
          collection.yaml.sig           ... and its detached signature
          manifest.torrent              the manifest torrent
          <model> -> ../../models/<model>/<info-hash>/<torrent name>
        draft.yaml                    publisher only: the next version, built but not yet signed
        manifest/<info-hash>/<collection>-v<seq>/   the manifest torrent's files (seeded)
        models/<model>/<info-hash>/<torrent name>/  a model torrent's files (seeded)
        torrents/<info-hash>.torrent  every model torrent

A model torrent of a Hugging Face snapshot is named after the commit (BEP 19 web seeds need that),
so its files cannot sit directly in ``ROOT/<model>``; they sit in a directory of their own per
version (keyed by info-hash).

**One commit point** (issue 16, kills at any moment): everything that says which version is held --
the state, the signed manifest and its signature, the manifest torrent and where each model's
verified files are -- lives in one ``versions/`` directory, and :meth:`Store.commit` switches the
``current`` symlink to a new one with a single atomic ``rename``.  ``ROOT/<model>`` always goes
through ``current``, so a ``SIGKILL`` at any moment leaves the old version or the new one, for every
model at once, never a mix (the Hugging Face cache switches ``snapshots/`` the same way).  New
versions are written next to the old ones and verified before the switch; old ones are removed
only after it.  A root written by an older torrentgoat (``state.json`` directly in ``.torrentgoat``)
is still read, and moves to this layout at its next commit.

Everything here is blocking file I/O (run it in a thread from async code).  Every file is written
with :func:`torrentgoat.atomicwrite.write_atomic`.  The state file is ours, but it is still read
with a size bound and validated.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torrentgoat.atomicwrite import fsync_directory, replace_atomic, temp_path_for, write_atomic
from torrentgoat.errors import ConfigError, StorageError
from torrentgoat.manifest import MANIFEST_FILENAME, SIGNATURE_FILENAME, ManifestFile
from torrentgoat.modelcheck import sha256_file
from torrentgoat.primitives import InfoHash

__all__ = [
    "CURRENT",
    "META_DIR",
    "STATE_FORMAT",
    "CollectionState",
    "InstalledModel",
    "Store",
    "link_or_copy",
]

META_DIR = ".torrentgoat"
"""Directory under the collection root holding state and torrent data."""
CURRENT = "current"
"""The symlink (in :data:`META_DIR`) naming the held version's directory under ``versions/``."""
STATE_FORMAT = "torrentgoat-collection-state/1"
_MAX_STATE = 64 * 1024 * 1024
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")


@dataclass(frozen=True, slots=True, kw_only=True)
class InstalledModel:
    """A model version that is complete and verified on disk."""

    name: str
    info_hash: InfoHash
    torrent_name: str
    files: tuple[ManifestFile, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class CollectionState:
    """What ``state.json`` holds."""

    public_key: bytes
    """The publisher key the collection follows (from the btpk magnet)."""
    salt: bytes
    """The BEP 46 salt (the collection name)."""
    collection: str
    seq: int
    """Seq of the held manifest (``collection.yaml``)."""
    manifest_info_hash: InfoHash | None = None
    """The held manifest torrent."""
    manifest_torrent_name: str | None = None
    selection: tuple[str, ...] | None = None
    """Models to keep up to date; None: every model of the collection (``get`` without ``--model``)."""
    models: dict[str, InstalledModel] = field(default_factory=dict)
    item: tuple[int, bytes, bytes] | None = None
    """The publisher's signed BEP 46 item for the held version: ``(seq, bencoded value, signature)``.
    Anyone may store a signed item again (BEP 44), so seeders keep it alive while the publisher is away."""

    @property
    def magnet(self) -> str:
        """``magnet:?xs=urn:btpk:<key>&s=<salt hex>`` (BEP 46): the latest version of this collection."""
        link = f"magnet:?xs=urn:btpk:{self.public_key.hex()}"
        return link + f"&s={self.salt.hex()}" if self.salt else link

    def to_json(self) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT,
            "public_key": self.public_key.hex(),
            "salt": self.salt.hex(),
            "collection": self.collection,
            "seq": self.seq,
            "manifest_info_hash": self.manifest_info_hash.hex if self.manifest_info_hash else None,
            "manifest_torrent_name": self.manifest_torrent_name,
            "selection": list(self.selection) if self.selection is not None else None,
            "item": None
            if self.item is None
            else {"seq": self.item[0], "value": self.item[1].hex(), "signature": self.item[2].hex()},
            "models": {
                name: {
                    "info_hash": m.info_hash.hex,
                    "torrent_name": m.torrent_name,
                    "files": [
                        {"path": f.path, "size": f.size, "sha256": f.sha256}
                        | ({"pieces_root": f.pieces_root} if f.pieces_root is not None else {})
                        for f in m.files
                    ],
                }
                for name, m in sorted(self.models.items())
            },
        }

    @classmethod
    def from_json(cls, value: Any, where: str) -> CollectionState:
        try:
            if value.get("format") != STATE_FORMAT:
                raise ConfigError(f"{where}: unknown state format {value.get('format')!r}")
            models = {}
            for name, m in dict(value["models"]).items():
                if not _NAME_RE.fullmatch(name):
                    raise ConfigError(f"{where}: bad model name {name!r}")
                _check_component(str(m["torrent_name"]), where)
                models[name] = InstalledModel(
                    name=name,
                    info_hash=InfoHash.from_hex(m["info_hash"]),
                    torrent_name=str(m["torrent_name"]),
                    files=tuple(
                        ManifestFile(
                            path=str(f["path"]),
                            size=int(f["size"]),
                            sha256=str(f["sha256"]),
                            pieces_root=None if f.get("pieces_root") is None else str(f["pieces_root"]),
                        )
                        for f in m["files"]
                    ),
                )
            ih = value.get("manifest_info_hash")
            selection = value.get("selection")
            tname = value.get("manifest_torrent_name")
            if tname is not None:
                _check_component(str(tname), where)
            return cls(
                public_key=bytes.fromhex(value["public_key"]),
                salt=bytes.fromhex(value["salt"]),
                collection=str(value["collection"]),
                seq=int(value["seq"]),
                manifest_info_hash=InfoHash.from_hex(ih) if ih else None,
                manifest_torrent_name=str(tname) if tname is not None else None,
                selection=tuple(str(s) for s in selection) if selection is not None else None,
                models=models,
                item=None
                if value.get("item") is None
                else (
                    int(value["item"]["seq"]),
                    bytes.fromhex(value["item"]["value"]),
                    bytes.fromhex(value["item"]["signature"]),
                ),
            )
        except ConfigError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(f"{where}: damaged state file ({exc!r}); remove it to start over") from None


def _check_component(part: str, where: str) -> None:
    if not part or part in (".", "..") or "/" in part or "\\" in part or "\x00" in part:
        raise ConfigError(f"{where}: unsafe name {part!r}")


def link_or_copy(source: Path, target: Path) -> str:
    """Hard-link ``source`` to ``target`` (replacing it), or copy when linking is impossible.

    Returns ``"link"`` or ``"copy"``.  The target appears atomically (temporary name, then rename).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    if os.path.lexists(tmp):
        os.unlink(tmp)
    try:
        os.link(source, tmp)
        how = "link"
    except OSError:
        shutil.copyfile(source, tmp)
        how = "copy"
    replace_atomic(tmp, target)
    return how


class Store:
    """Paths and blocking operations of one collection root (see the module docstring)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).absolute()
        self.meta = self.root / META_DIR

    # -- paths --------------------------------------------------------------------------------------

    @property
    def held_dir(self) -> Path:
        """Where the held version's files are read from: ``.torrentgoat/current`` (or ``.torrentgoat``
        itself in a root written before the single commit point)."""
        current = self.meta / CURRENT
        if not os.path.lexists(current) and (self.meta / "state.json").is_file():
            return self.meta
        return current

    @property
    def state_path(self) -> Path:
        return self.held_dir / "state.json"

    @property
    def manifest_path(self) -> Path:
        return self.held_dir / MANIFEST_FILENAME

    @property
    def signature_path(self) -> Path:
        return self.held_dir / SIGNATURE_FILENAME

    @property
    def draft_path(self) -> Path:
        return self.meta / "draft.yaml"

    @property
    def manifest_torrent_path(self) -> Path:
        return self.held_dir / "manifest.torrent"

    def manifest_dest(self, info_hash: InfoHash) -> Path:
        """Download directory of a manifest torrent (its files are under ``<this>/<torrent name>/``)."""
        return self.meta / "manifest" / info_hash.hex

    def model_dest(self, name: str, info_hash: InfoHash) -> Path:
        """Download directory of one version of a model (files under ``<this>/<torrent name>/``)."""
        return self.meta / "models" / name / info_hash.hex

    def model_dir(self, name: str, info_hash: InfoHash, torrent_name: str) -> Path:
        return self.model_dest(name, info_hash) / torrent_name

    def torrent_path(self, info_hash: InfoHash) -> Path:
        return self.meta / "torrents" / f"{info_hash.hex}.torrent"

    def link_path(self, name: str) -> Path:
        """``ROOT/<model>``: the symlink users load the model from."""
        return self.root / name

    def installed_dir(self, model: InstalledModel) -> Path:
        return self.model_dir(model.name, model.info_hash, model.torrent_name)

    # -- state --------------------------------------------------------------------------------------

    def load_state(self) -> CollectionState | None:
        """The state, or None when this root holds no collection yet."""
        try:
            with open(self.state_path, "rb") as handle:
                data = handle.read(_MAX_STATE + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ConfigError(f"cannot read {self.state_path}: {exc.strerror}") from None
        if len(data) > _MAX_STATE:
            raise ConfigError(f"{self.state_path} is larger than {_MAX_STATE} bytes")
        try:
            value = json.loads(data)
        except ValueError as exc:
            raise ConfigError(f"{self.state_path} is not valid JSON: {exc}") from None
        return CollectionState.from_json(value, str(self.state_path))

    def write_file(self, path: Path, data: bytes) -> None:
        """Write ``data`` to ``path`` atomically (temporary file, fsync, rename, directory fsync)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, data)

    def commit(
        self, state: CollectionState, *, manifest: bytes, signature: bytes, manifest_torrent: bytes
    ) -> None:
        """Make ``state`` (with its signed manifest, signature and manifest torrent) the held version,
        in one atomic step (see the module docstring).  Every model it lists must be installed and
        verified already.  Older version directories are removed afterwards."""
        versions = self.meta / "versions"
        versions.mkdir(parents=True, exist_ok=True)
        token = f"{state.seq}.{os.urandom(4).hex()}"
        view = versions / token
        view.mkdir()
        write_atomic(view / "state.json", (json.dumps(state.to_json(), indent=1) + "\n").encode())
        write_atomic(view / MANIFEST_FILENAME, manifest)
        write_atomic(view / SIGNATURE_FILENAME, signature)
        write_atomic(view / "manifest.torrent", manifest_torrent)
        for model in state.models.values():
            os.symlink(
                os.path.relpath(self.installed_dir(model), view), view / model.name, target_is_directory=True
            )
            if not os.path.lexists(self.link_path(model.name)):
                self.ensure_link(model.name)  # a new model: its link dangles until the switch
        fsync_directory(view)
        fsync_directory(versions)
        switch = temp_path_for(self.meta / CURRENT)
        os.symlink(f"versions/{token}", switch, target_is_directory=True)
        replace_atomic(switch, self.meta / CURRENT)  # the commit point
        for model in state.models.values():
            self.ensure_link(model.name)  # links of a root of the older layout
        for entry in os.scandir(versions):
            if entry.name != token:
                shutil.rmtree(entry.path, ignore_errors=True)
        for name in ("state.json", MANIFEST_FILENAME, SIGNATURE_FILENAME, "manifest.torrent"):
            legacy = self.meta / name
            if legacy.is_file() and not legacy.is_symlink():
                legacy.unlink()

    def held_manifest(self) -> tuple[bytes, bytes] | None:
        """``(manifest bytes, signature file bytes)`` of the held version, or None."""
        try:
            return self.manifest_path.read_bytes(), self.signature_path.read_bytes()
        except FileNotFoundError:
            return None

    # -- models -------------------------------------------------------------------------------------

    def _link_target(self, name: str) -> str:
        return f"{META_DIR}/{CURRENT}/{name}"

    def check_link_free(self, name: str) -> None:
        """StorageError when ``ROOT/<name>`` exists and is not one of our model links."""
        link = self.link_path(name)
        if os.path.lexists(link):
            target = os.readlink(link) if link.is_symlink() else ""
            if target != self._link_target(name) and not target.startswith(f"{META_DIR}/models/{name}/"):
                raise StorageError(
                    f"{link} exists and is not a torrentgoat model link; move it away to install model {name!r}"
                )

    def ensure_link(self, name: str) -> None:
        """Point ``ROOT/<model>`` at ``.torrentgoat/current/<model>`` (atomically; nothing to do when
        it does already)."""
        self.check_link_free(name)
        link = self.link_path(name)
        target = self._link_target(name)
        if link.is_symlink() and os.readlink(link) == target:
            return
        tmp = temp_path_for(link)
        os.symlink(target, tmp, target_is_directory=True)
        replace_atomic(tmp, link)

    def link_problem(self, model: InstalledModel) -> str | None:
        """Why ``ROOT/<model>`` does not lead to the installed version's files (None: it does)."""
        link = self.link_path(model.name)
        if not link.is_symlink():
            return f"{link} is missing"
        if os.path.realpath(link) != os.path.realpath(self.installed_dir(model)):
            return f"{link} does not lead to the installed version ({model.info_hash.hex})"
        return None

    def remove_version(self, name: str, info_hash: InfoHash) -> None:
        """Delete one stored version of a model (never the directory a link points at)."""
        dest = self.model_dest(name, info_hash)
        link = self.link_path(name)
        if link.is_symlink() and Path(os.path.realpath(link)).is_relative_to(os.path.realpath(dest)):
            return
        shutil.rmtree(dest, ignore_errors=True)

    def verified_file(self, model: InstalledModel, path: str, sha256: str) -> Path | None:
        """The installed file ``path`` of ``model`` if its SHA-256 still is ``sha256`` (re-hashed now)."""
        full = self.installed_dir(model) / path
        try:
            if not full.is_file():
                return None
            return full if sha256_file(full) == sha256 else None
        except OSError:
            return None
