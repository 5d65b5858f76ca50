"""Torrent data on disk (or in memory), level L3: blocking calls, run from a bounded executor.

* :mod:`~torrentgoat.storage.layout` -- which file bytes back a piece range (BEP 3, BEP 47 pads).
* :mod:`~torrentgoat.storage.base` -- the :class:`Storage` protocol and shared span logic.
* :class:`FileStorage` -- files under a root directory (``pread``/``pwrite``, sparse, fd LRU, path checks).
* :class:`MemoryStorage` -- the same semantics in memory, for tests.
"""

from torrentgoat.storage.base import BytesLike, SpanStorage, Storage
from torrentgoat.storage.file import FileStorage
from torrentgoat.storage.layout import FileSpan, Layout
from torrentgoat.storage.memory import MemoryStorage

__all__ = ["BytesLike", "FileSpan", "FileStorage", "Layout", "MemoryStorage", "SpanStorage", "Storage"]
