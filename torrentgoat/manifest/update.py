"""Manifest updates (level L1): whether a new version may replace the held one, and what it changes.

Pure: :func:`check_update` compares two parsed manifests and returns an :class:`UpdatePlan`; nothing
touches disk.  Replays, rollbacks, a changed collection name or publisher key and a torrent whose
file list changes under the same info-hash are refused; files whose SHA-256 is already held locally
are pointed out so only new bytes cross the network.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from torrentgoat.errors import ManifestError, SignatureError
from torrentgoat.manifest.schema import Manifest, ManifestFile, ModelEntry

__all__ = ["FileChange", "ModelChange", "UpdatePlan", "check_update"]


@dataclass(frozen=True, slots=True, kw_only=True)
class FileChange:
    """One file of a new or changed model, and where its bytes may already be found locally."""

    file: ManifestFile
    reuse_from: tuple[str, str] | None = None
    """``(model name, path)`` of a file with the same SHA-256 in the current manifest (the model's own
    old version first, then any other model), or None when the bytes must be downloaded.  The caller
    must still verify the local file's SHA-256 before reusing it."""

    @property
    def reusable(self) -> bool:
        return self.reuse_from is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelChange:
    """A model to fetch: new in this version (``old`` is None) or with a new info-hash."""

    new: ModelEntry
    old: ModelEntry | None
    files: tuple[FileChange, ...]

    @property
    def name(self) -> str:
        return self.new.name

    @property
    def bytes_to_fetch(self) -> int:
        return sum(c.file.size for c in self.files if c.reuse_from is None)

    @property
    def bytes_reusable(self) -> int:
        return sum(c.file.size for c in self.files if c.reuse_from is not None)


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdatePlan:
    """What moving from the current manifest to a new one means (built by :func:`check_update`).

    Every model of the new manifest is in exactly one of ``unchanged``, ``changed``, ``added`` and
    ``yanked``; ``removed`` lists current models the new version no longer has.
    """

    current_seq: int | None
    new_seq: int
    unchanged: tuple[ModelEntry, ...] = ()
    """Same info-hash as before: leave alone."""
    changed: tuple[ModelChange, ...] = ()
    """New info-hash: fetch what is not reusable."""
    added: tuple[ModelChange, ...] = ()
    """Not in the current manifest."""
    removed: tuple[ModelEntry, ...] = ()
    yanked: tuple[ModelEntry, ...] = ()
    """Yanked in the new manifest: not fetched unless asked for by name."""
    warnings: tuple[str, ...] = ()

    def model_names(self) -> Iterator[str]:
        """Names of the new manifest's models covered by the plan, yanked ones included."""
        for entry in self.unchanged:
            yield entry.name
        for change in (*self.changed, *self.added):
            yield change.name
        for entry in self.yanked:
            yield entry.name


def _file_changes(
    new: ModelEntry, old: ModelEntry | None, current: Manifest | None
) -> tuple[FileChange, ...]:
    """Where each file of ``new`` may be found locally: same path and hash in the old version first,
    then the same hash anywhere in the old version, then anywhere in the current manifest."""
    index: dict[str, tuple[str, str]] = {}
    if current is not None:
        for model in current.models:
            for f in model.files:
                index.setdefault(f.sha256, (model.name, f.path))
    if old is not None:
        for f in old.files:
            index[f.sha256] = (old.name, f.path)
        same_path = {(f.path, f.sha256) for f in new.files}
        for f in old.files:
            if (f.path, f.sha256) in same_path:
                index[f.sha256] = (old.name, f.path)
    return tuple(FileChange(file=f, reuse_from=index.get(f.sha256)) for f in new.files)


def check_update(current: Manifest | None, new: Manifest) -> UpdatePlan:
    """Decide whether ``new`` may replace ``current`` and what it changes (pure; nothing touches disk).

    Refused: a different collection name (ManifestError), a different publisher key (SignatureError),
    a ``seq`` not above the current one (ManifestError: a replay or a rollback), and a model that keeps
    its info-hash while its file list changes (ManifestError: the same torrent cannot have new files).
    ``current`` is None for a first download: every model is then added (or yanked).
    """
    if current is not None:
        if new.collection != current.collection:
            raise ManifestError(
                f"collection: the update is for {new.collection!r}, not {current.collection!r}; refusing it"
            )
        if new.publisher != current.publisher:
            raise SignatureError(
                f"publisher key changed from {current.publisher.hex()} to {new.publisher.hex()}; refusing the update"
            )
        if new.seq <= current.seq:
            raise ManifestError(
                f"seq: the offered manifest has seq {new.seq} but seq {current.seq} is already held; "
                "refusing a replayed or older version"
            )
    old_models = {m.name: m for m in current.models} if current is not None else {}
    unchanged: list[ModelEntry] = []
    changed: list[ModelChange] = []
    added: list[ModelChange] = []
    yanked: list[ModelEntry] = []
    warnings: list[str] = []
    for model in new.models:
        old = old_models.get(model.name)
        if model.yanked is not None:
            yanked.append(model)
            was = "" if old is None or old.yanked is not None else " (it was available in the held version)"
            warnings.append(f"model {model.name!r} is yanked: {model.yanked}{was}")
            continue
        if old is not None and old.info_hash == model.info_hash:
            if old.files != model.files:
                raise ManifestError(
                    f"model {model.name!r} keeps info-hash {model.info_hash.hex} but lists different files"
                )
            unchanged.append(model)
            if old.yanked is not None:
                warnings.append(f"model {model.name!r} is no longer yanked")
            continue
        change = ModelChange(new=model, old=old, files=_file_changes(model, old, current))
        (added if old is None else changed).append(change)
    new_names = {m.name for m in new.models}
    removed = tuple(m for m in (current.models if current is not None else ()) if m.name not in new_names)
    for model in removed:
        warnings.append(f"model {model.name!r} was removed from the collection")
    return UpdatePlan(
        current_seq=None if current is None else current.seq,
        new_seq=new.seq,
        unchanged=tuple(unchanged),
        changed=tuple(changed),
        added=tuple(added),
        removed=removed,
        yanked=tuple(yanked),
        warnings=tuple(warnings),
    )
