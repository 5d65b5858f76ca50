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

from torrentgoat.collection.build import DEFAULT_HUB, BuiltModel, ModelSpec, build_collection, build_model
from torrentgoat.collection.client import (
    CollectionClient,
    ModelResult,
    NotACollection,
    Resolved,
    SyncReport,
    is_btpk,
)
from torrentgoat.collection.hfcache import default_hf_cache, place_in_hf_cache
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
