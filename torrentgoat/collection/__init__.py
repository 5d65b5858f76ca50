"""Model collections (level L5): signed, updatable sets of model torrents published under one key.

* :mod:`~torrentgoat.collection.build` -- model folders -> model torrents + the unsigned next version;
* :mod:`~torrentgoat.collection.publisher` -- sign it, ship it as a torrent, point the key at it (BEP 46);
* :mod:`~torrentgoat.collection.client` -- get / update a collection: what to fetch against the held
  version, commit, seed, keep the publisher's item alive;
* :mod:`~torrentgoat.collection.resolve` -- a BEP 46 key -> the latest signed version, verified;
* :mod:`~torrentgoat.collection.install` -- one model fetched with SHA-256 and unsafe-format checks,
  reusing unchanged files, then installed;
* :mod:`~torrentgoat.collection.runner` -- the client's downloads: extra peers, time limit, watcher;
* :mod:`~torrentgoat.collection.store` -- the on-disk layout shared by both sides;
* :mod:`~torrentgoat.collection.hfcache` -- the Hugging Face cache layout.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torrentgoat.collection.build import BuiltModel, ModelSpec, build_collection, build_model
    from torrentgoat.collection.client import (
        CollectionClient,
        ModelResult,
        NotACollection,
        Resolved,
        SyncReport,
        is_btpk,
    )
    from torrentgoat.collection.hfcache import place_in_hf_cache
    from torrentgoat.collection.hub import DEFAULT_HUB, default_hf_cache
    from torrentgoat.collection.publisher import Publication, Publisher
    from torrentgoat.collection.store import CollectionState, InstalledModel, Store

__all__ = [
    "DEFAULT_HUB",
    "BuiltModel",
    "CollectionClient",
    "CollectionState",
    "InstalledModel",
    "ModelResult",
    "ModelSpec",
    "NotACollection",
    "Publication",
    "Publisher",
    "Resolved",
    "Store",
    "SyncReport",
    "build_collection",
    "build_model",
    "default_hf_cache",
    "is_btpk",
    "place_in_hf_cache",
]

_HOME = {
    "DEFAULT_HUB": "hub",
    "default_hf_cache": "hub",
    "BuiltModel": "build",
    "ModelSpec": "build",
    "build_collection": "build",
    "build_model": "build",
    "CollectionClient": "client",
    "ModelResult": "client",
    "NotACollection": "client",
    "Resolved": "client",
    "SyncReport": "client",
    "is_btpk": "client",
    "place_in_hf_cache": "hfcache",
    "Publication": "publisher",
    "Publisher": "publisher",
    "CollectionState": "store",
    "InstalledModel": "store",
    "Store": "store",
}
"""The module of each public name: imported on first use (PEP 562), so a submodule such as
:mod:`.hub` can be imported without the session and everything else."""


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
