"""Monkeypatched variants of hot paths outside the benchmark owner's files, to *measure* a
recommended change before its owner makes it (``TG_EXPERIMENT=name[,name]`` in ``_tg_peer``).

* ``batch-fill``: refill a peer's request pipeline once per socket read (after the driver's pump)
  instead of once per received block (``Torrent._on_block`` -> ``_fill_requests``).
* ``read-into``: the uploader's read cache reads into recycled buffers
  (``ReadCache(reader_into=...)``) instead of ``storage.read`` (fresh buffer + a ``bytes`` copy).
* ``mse-rc4`` / ``mse-plaintext``: Message Stream Encryption before the session integration lands --
  the session's listener wrapped in :class:`~torrentgoat.aio.mse.EncryptedListener` and the torrent's
  dials through :func:`~torrentgoat.aio.mse.open_encrypted_connection`, with RC4 required, or with an
  MSE handshake that selects a plaintext payload (to measure the cost of RC4 itself).
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
    from torrentgoat.aio import mse
    from torrentgoat.mse import req2_hash
    from torrentgoat.session import Session
    from torrentgoat.torrent import connections

    original_accept = Session._accept

    def accept(self: Any) -> Any:
        listener = self.__dict__.get("_mse_listener")
        if listener is None:

            def lookup(req2: bytes) -> Any:
                for torrent in self.torrents.values():
                    if req2_hash(torrent.info_hash.raw) == req2:
                        return torrent.info_hash
                return None

            listener = mse.EncryptedListener(
                lambda: original_accept(self), info_hash_for_req2=lookup, config=config
            )
            self.__dict__["_mse_listener"] = listener
        return listener()

    async def dial(address: Any, engine: Any, handler: Any, **kwargs: Any) -> Any:
        return await mse.open_encrypted_connection(address, engine, handler, config=config, **kwargs)

    Session._accept = accept  # type: ignore[method-assign]
    connections.open_peer_connection = dial  # type: ignore[assignment]


def _mse_rc4() -> None:
    from torrentgoat.mse import EncryptionPolicy, MSEConfig

    _mse(MSEConfig(policy=EncryptionPolicy.REQUIRE))


def _mse_plaintext() -> None:
    from torrentgoat.mse import CryptoMethod, MSEConfig

    _mse(MSEConfig(allowed=CryptoMethod.PLAINTEXT))


EXPERIMENTS = {
    "batch-fill": _batch_fill,
    "read-into": _read_into,
    "mse-rc4": _mse_rc4,
    "mse-plaintext": _mse_plaintext,
}


def apply(names: str) -> None:
    import os

    for name in filter(None, (n.strip() for n in names.split(","))):
        if name.startswith("piece-memory-"):  # e.g. piece-memory-48MiB: read by _tg_peer
            os.environ["TG_PIECE_MEMORY"] = name.removeprefix("piece-memory-")
            continue
        EXPERIMENTS[name]()
