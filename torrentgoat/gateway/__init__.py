"""The swarm as a Hugging Face endpoint (level L5): ``HF_ENDPOINT=http://127.0.0.1:8080``.

:class:`Gateway` is an aiohttp server that speaks the part of the Hub's HTTP API ``huggingface_hub``
uses to download (file resolve with ranges, repo info, tree listings, the Hub's error codes) over
:class:`RepoSource` s -- the swarm (:class:`SwarmSource`: followed collections and mapped torrents,
fetched on demand and streamed as verified pieces arrive) and complete local copies
(:class:`FolderSource`, :class:`HFCacheSource`) -- and passes the rest through to an upstream hub
(:class:`UpstreamHub`).  Modules:

* :mod:`.source` -- the :class:`RepoSource` protocol and the snapshot/file records (pure);
* :mod:`.routes` -- request targets and byte ranges (pure); :mod:`.hubjson` -- repo info and tree
  documents, git tree ids (pure); :mod:`.answers` -- headers and error answers (pure);
* :mod:`.local` -- the local sources; :mod:`.upstream` -- the pass-through; :mod:`.streaming` --
  bounded, cancellation-safe body sending; :mod:`.server` -- :class:`Gateway` itself;
* the swarm source: :mod:`.catalog` -- which repos at which commits (pure); :mod:`.follow` -- one
  followed collection, verified like ``collection get``; :mod:`.fetch` -- one model's torrent and its
  checked files; :mod:`.swarm` -- :class:`SwarmSource`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torrentgoat.gateway.defaults import DEFAULT_UPSTREAM
    from torrentgoat.gateway.local import FolderSource, HFCacheSource
    from torrentgoat.gateway.server import Gateway, GatewayConfig, GatewayStats
    from torrentgoat.gateway.source import RepoFile, RepoSnapshot, RepoSource, RepoType
    from torrentgoat.gateway.swarm import SwarmConfig, SwarmSource
    from torrentgoat.gateway.upstream import UpstreamHub

__all__ = [
    "DEFAULT_UPSTREAM",
    "FolderSource",
    "Gateway",
    "GatewayConfig",
    "GatewayStats",
    "HFCacheSource",
    "RepoFile",
    "RepoSnapshot",
    "RepoSource",
    "RepoType",
    "SwarmConfig",
    "SwarmSource",
    "UpstreamHub",
]

_HOME = {
    "DEFAULT_UPSTREAM": "defaults",
    "FolderSource": "local",
    "HFCacheSource": "local",
    "Gateway": "server",
    "GatewayConfig": "server",
    "GatewayStats": "server",
    "RepoFile": "source",
    "RepoSnapshot": "source",
    "RepoSource": "source",
    "RepoType": "source",
    "SwarmConfig": "swarm",
    "SwarmSource": "swarm",
    "UpstreamHub": "upstream",
}
"""The module of each public name: imported on first use (PEP 562), so :mod:`.defaults` can be read
without aiohttp and the session."""


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
