"""torrentgoat: pure-asyncio BitTorrent for distributing AI models."""

from __future__ import annotations

from torrentgoat.errors import TorrentGoatError
from torrentgoat.primitives import InfoHash, PeerId

__all__ = ["InfoHash", "PeerId", "TorrentGoatError", "__version__"]

__version__ = "0.1.0"
