"""Monkeypatched variants of hot paths outside the benchmark owner's files, to *measure* a
recommended change before its owner makes it (``TG_EXPERIMENT=name[,name]`` in ``_tg_peer``).

* ``batch-fill``: refill a peer's request pipeline once per socket read (after the driver's pump)
  instead of once per received block (``Torrent._on_block`` -> ``_fill_requests``).
* ``read-into``: the uploader's read cache reads into recycled buffers
  (``ReadCache(reader_into=...)``) instead of ``storage.read`` (fresh buffer + a ``bytes`` copy).
* ``mse-rc4`` / ``mse-plaintext``: every session of the process with ``SessionConfig.encryption`` set
  to RC4 required, or to an MSE handshake that selects a plaintext payload (to measure the cost of
  RC4 itself).  (Before the session integration this wrapped the listener and the dials; the
  session now does both itself, and wrapping it again hung the transfer.)
"""

from __future__ import annotations

from typing import Any

from torrentgoat.aio.peer import PeerDriver
from torrentgoat.torrent.core import Torrent

__all__ = ["apply"]


def _batch_fill() -> None:
    dirty: set[int] = set()

    def on_block(self: Any, ps: Any, index: int, begin: int, data: Any) -> None:
        now = self._loop.time()
        ps.down.add(len(data), now)
        ps.last_block_at = now
        ps.snubbed = False
        ps.reject_streak = 0
        self._store_block(ps.key, index, begin, data)
        dirty.add(ps.driver.id)

    original_pump = PeerDriver.pump

    def pump(self: PeerDriver) -> None:
        original_pump(self)
        handler: Any = self.handler
        if isinstance(handler, Torrent) and not self.closed:
            ps: Any = handler.peers.get(self.id)
            if ps is not None and self.id in dirty:
                dirty.discard(self.id)
                handler._fill_requests(ps)
                self.flush()

    Torrent._on_block = on_block  # type: ignore[method-assign]
    PeerDriver.pump = pump  # type: ignore[method-assign]


def _read_into() -> None:
    from torrentgoat.torrent import upload
    from torrentgoat.torrent.pieces import ReadCache

    original_init = upload.Uploader.__init__

    def init(self: Any, torrent: Any, info: Any, storage: Any) -> None:
        original_init(self, torrent, info, storage)

        async def read_into(piece: int, begin: int, buf: bytearray) -> None:
            await torrent.ctx.disk.read_into(storage, piece, begin, buf)

        config = torrent.config
        self.cache = ReadCache(
            self._read,
            chunk=min(config.read_chunk, info.piece_length),
            budget=config.read_cache,
            reader_into=read_into,
        )

    upload.Uploader.__init__ = init  # type: ignore[method-assign]


def _mse(config: Any) -> None:
    """Every session of the process uses ``config`` for MSE (its listener and its dials)."""
    from dataclasses import replace

    from torrentgoat.session import Session, SessionConfig

    original_init = Session.__init__

    def init(self: Any, session_config: Any = None) -> None:
        original_init(self, replace(session_config or SessionConfig(), encryption=config))

    Session.__init__ = init  # type: ignore[method-assign]


def _mse_rc4() -> None:
    from torrentgoat.mse import EncryptionPolicy, MSEConfig

    _mse(MSEConfig(policy=EncryptionPolicy.REQUIRE))


def _mse_rc4_thread() -> None:
    from torrentgoat.mse import EncryptionPolicy, MSEConfig

    _mse(MSEConfig(policy=EncryptionPolicy.REQUIRE, cipher_thread=True))


def _mse_plaintext() -> None:
    from torrentgoat.mse import CryptoMethod, MSEConfig

    _mse(MSEConfig(allowed=CryptoMethod.PLAINTEXT))


EXPERIMENTS = {
    "batch-fill": _batch_fill,
    "read-into": _read_into,
    "mse-rc4": _mse_rc4,
    "mse-rc4-thread": _mse_rc4_thread,
    "mse-plaintext": _mse_plaintext,
}


def apply(names: str) -> None:
    import os

    for name in filter(None, (n.strip() for n in names.split(","))):
        if name.startswith("piece-memory-"):  # e.g. piece-memory-48MiB: read by _tg_peer
            os.environ["TG_PIECE_MEMORY"] = name.removeprefix("piece-memory-")
            continue
        EXPERIMENTS[name]()
