"""Placing a downloaded model in the Hugging Face cache layout (level L5, blocking file I/O).

``huggingface_hub`` keeps a repository's files as content-addressed blobs and one directory of
symlinks per commit::

    <cache>/models--<org>--<name>/
        blobs/<sha256>                               (LFS files are named by their SHA-256)
        snapshots/<commit>/<path> -> ../../blobs/<sha256>   (one more ``../`` per subdirectory)
        refs/main                                    (the commit the ``main`` ref points at)

With that in place ``snapshot_download(repo_id, revision=commit, local_files_only=True)`` and
``hf_hub_download(repo_id, filename, local_files_only=True)`` (and ``transformers``'
``from_pretrained(..., local_files_only=True)``) find the model without any network.  Blobs are
hard links of the verified download (copies across file systems), so no extra space is used.
Non-LFS files are named by their git blob hash on the hub; we name every blob by its SHA-256 (the
one we verified), which ``huggingface_hub`` accepts since it only follows the snapshot symlinks.
"""

from __future__ import annotations

import os
from pathlib import Path

from torrentgoat.atomicwrite import replace_atomic, temp_path_for, write_atomic
from torrentgoat.collection.hub import default_hf_cache
from torrentgoat.collection.store import link_or_copy
from torrentgoat.errors import ConfigError
from torrentgoat.manifest import ModelEntry

__all__ = ["default_hf_cache", "place_in_hf_cache", "repo_folder_name"]


def repo_folder_name(repo_id: str) -> str:
    """``org/name`` -> ``models--org--name``."""
    return "models--" + repo_id.replace("/", "--")


def place_in_hf_cache(model_dir: Path, entry: ModelEntry, cache_dir: Path, *, ref: str = "main") -> Path:
    """Link the verified files of ``entry`` (under ``model_dir``) into ``cache_dir``; the snapshot dir.

    ConfigError when the model has no Hugging Face source (repo id and commit) in the manifest.
    """
    if entry.source is None:
        raise ConfigError(
            f"model {entry.name!r} names no Hugging Face repo and commit; it cannot go in the HF cache"
        )
    repo = cache_dir / repo_folder_name(entry.source.hf_repo)
    commit = entry.source.commit
    blobs = repo / "blobs"
    snapshot = repo / "snapshots" / commit
    blobs.mkdir(parents=True, exist_ok=True)
    for f in entry.files:
        blob = blobs / f.sha256
        if not (blob.is_file() and blob.stat().st_size == f.size):
            link_or_copy(model_dir / f.path, blob)
        link = snapshot / f.path
        link.parent.mkdir(parents=True, exist_ok=True)
        depth = f.path.count("/")
        target = os.path.join(*([".."] * (depth + 2)), "blobs", f.sha256)
        tmp = temp_path_for(link)
        os.symlink(target, tmp)
        replace_atomic(tmp, link)
    refs = repo / "refs"
    refs.mkdir(parents=True, exist_ok=True)
    write_atomic(refs / ref, commit.encode())
    return snapshot
