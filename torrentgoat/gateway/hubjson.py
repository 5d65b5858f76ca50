"""The Hub's JSON documents for repo info and tree listings (pure, no I/O).

Field names are the ones ``huggingface_hub`` reads (``hf_api.ModelInfo``, ``RepoSibling``, ``RepoFile``,
``RepoFolder``).  Versions 0.20-0.2x *require* ``id``, ``private``, ``downloads``, ``likes`` and ``tags``
in a model or dataset info (``kwargs.pop("private")``), so they are always present.  Siblings carry
``lfs: {sha256, size, pointerSize}``; tree entries carry ``lfs: {oid, size, pointerSize}`` (the two
endpoints spell the SHA-256 differently).  Never ``xetHash``: a client that sees one may try to fetch
the file from Xet storage instead of from us.

Folder ids in a listing are real git tree ids computed from the blob ids below them (mode ``40000``
for trees, ``100644`` for files, entries in git's order), so they change exactly when content does.
"""

from __future__ import annotations

import hashlib
import posixpath
import time
from collections.abc import Iterable, Sequence
from typing import Any

from torrentgoat.errors import EntryNotFoundError, InvalidRequestError
from torrentgoat.gateway.source import RepoFile, RepoSnapshot

__all__ = [
    "folders_of",
    "git_tree_oids",
    "iso_time",
    "page",
    "repo_info",
    "synthetic_commit",
    "tree_entries",
]


def iso_time(timestamp: float) -> str:
    """``2024-05-01T12:00:00.000Z``: the format every huggingface_hub version's ``parse_datetime`` reads."""
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(max(timestamp, 0.0)))


def _parent(path: str) -> str:
    return posixpath.dirname(path)


def folders_of(files: Iterable[RepoFile]) -> set[str]:
    """Every folder holding a file, at any depth (the root ``""`` included)."""
    folders = {""}
    for entry in files:
        parent = _parent(entry.path)
        while parent not in folders:
            folders.add(parent)
            parent = _parent(parent)
    return folders


def git_tree_oids(files: Iterable[RepoFile]) -> dict[str, str]:
    """Folder path (``""`` for the root) -> git tree id over the blob ids of ``files``."""
    entries: dict[str, list[tuple[bytes, bytes, bytes]]] = {}
    file_list = list(files)
    folders = folders_of(file_list)
    for folder in folders:
        entries.setdefault(folder, [])
    for entry in file_list:
        name = posixpath.basename(entry.path).encode()
        entries[_parent(entry.path)].append((name, b"100644", bytes.fromhex(entry.blob_id)))
    oids: dict[str, str] = {}
    for folder in sorted(folders, key=lambda f: f.count("/") + (1 if f else 0), reverse=True):
        items = entries[folder]
        # git orders tree entries by name, a subtree's name compared as if it ended in "/"
        items.sort(key=lambda item: item[0] + (b"/" if item[1] == b"40000" else b""))
        body = b"".join(mode + b" " + name + b"\x00" + digest for name, mode, digest in items)
        oid = hashlib.sha1(b"tree %d\x00" % len(body) + body).hexdigest()
        oids[folder] = oid
        if folder:
            entries[_parent(folder)].append(
                (posixpath.basename(folder).encode(), b"40000", bytes.fromhex(oid))
            )
    return oids


def synthetic_commit(files: Iterable[RepoFile]) -> str:
    """A stable 40-hex commit id for content that came without one (a plain local folder)."""
    root = git_tree_oids(files)[""]
    return hashlib.sha1(b"torrentgoat folder snapshot\x00" + bytes.fromhex(root)).hexdigest()


def repo_info(snapshot: RepoSnapshot, files: Sequence[RepoFile], *, blobs: bool) -> dict[str, Any]:
    """``GET /api/{type}s/{repo}[/revision/{rev}]`` (``blobs``: sizes, blob ids and LFS info per sibling)."""
    siblings: list[dict[str, Any]] = []
    for entry in sorted(files, key=lambda f: f.path):
        sibling: dict[str, Any] = {"rfilename": entry.path}
        if blobs:
            sibling["blobId"] = entry.blob_id
            sibling["size"] = entry.size
            if entry.lfs:
                sibling["lfs"] = {
                    "sha256": entry.sha256,
                    "size": entry.size,
                    "pointerSize": entry.pointer_size,
                }
        siblings.append(sibling)
    namespace, _, _ = snapshot.repo_id.rpartition("/")
    stamp = iso_time(snapshot.last_modified)
    document: dict[str, Any] = {
        "_id": snapshot.commit[:24],
        "id": snapshot.repo_id,
        "author": namespace or None,
        "sha": snapshot.commit,
        "lastModified": stamp,
        "createdAt": stamp,
        "private": False,
        "disabled": False,
        "gated": False,
        "downloads": 0,
        "likes": 0,
        "tags": [],
        "siblings": siblings,
        "usedStorage": sum(entry.size for entry in files),
    }
    if snapshot.repo_type == "model":
        document["modelId"] = snapshot.repo_id
    return document


def tree_entries(files: Sequence[RepoFile], path: str, *, recursive: bool) -> list[dict[str, Any]]:
    """``GET /api/{type}s/{repo}/tree/{rev}[/{path}]``: the files and folders in folder ``path``.

    EntryNotFoundError when ``path`` is not a folder of the snapshot.
    """
    folders = folders_of(files)
    if path not in folders:
        raise EntryNotFoundError(f"{path!r} is not a folder of this revision")
    oids = git_tree_oids(files)
    prefix = f"{path}/" if path else ""

    def wanted(item: str) -> bool:
        if not item.startswith(prefix) or item == path:
            return False
        return recursive or _parent(item) == path

    listing: list[tuple[str, dict[str, Any]]] = []
    for folder in folders:
        if folder and wanted(folder):
            listing.append((folder, {"type": "directory", "oid": oids[folder], "size": 0, "path": folder}))
    for entry in files:
        if wanted(entry.path):
            item: dict[str, Any] = {
                "type": "file",
                "oid": entry.blob_id,
                "size": entry.size,
                "path": entry.path,
            }
            if entry.lfs:
                item["lfs"] = {"oid": entry.sha256, "size": entry.size, "pointerSize": entry.pointer_size}
            listing.append((entry.path, item))
    listing.sort(key=lambda pair: pair[0])
    return [item for _, item in listing]


def page(
    items: list[dict[str, Any]], cursor: str | None, size: int
) -> tuple[list[dict[str, Any]], int | None]:
    """One page of a listing from an opaque ``cursor`` (our own: the decimal offset); the next offset or None.

    InvalidRequestError for a cursor we did not hand out.
    """
    start = 0
    if cursor is not None:
        if not cursor.isascii() or not cursor.isdigit() or len(cursor) > 12 or int(cursor) > len(items):
            raise InvalidRequestError(f"invalid cursor {cursor[:40]!r}")
        start = int(cursor)
    stop = start + max(size, 1)
    return items[start:stop], (stop if stop < len(items) else None)
