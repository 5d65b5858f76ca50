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
* ``stage-times``: thread CPU time of the leecher's hot paths inside the real process (socket
  reads, parse, picker, copy, refill), per GB, appended at exit to ``$TG_STAGE_TIMES``
  (``/tmp/tg-stage-times.txt``) with the number of reads and the main thread's whole CPU time.
* ``hash-threads-1``: the hash pool with one thread instead of one per core.
* ``piece-memory-<size>`` / ``max-queue-<n>``: the leecher's cap on bytes of started pieces
  (``PickerConfig.max_partial_bytes``) or on requests in flight at one peer
  (``TorrentConfig.max_queue``), e.g. ``piece-memory-16MiB``, ``max-queue-500``.
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


def _stage_times() -> None:
    """Thread CPU time of the leecher's hot paths, in place (``leech_path.py`` times them alone)."""
    import atexit
    import os
    import time

    from torrentgoat.picker.blocks import BlockBook
    from torrentgoat.torrent.blocks import BlockFlow
    from torrentgoat.torrent.exchange import PeerExchange
    from torrentgoat.torrent.pieces import PieceBuffers
    from torrentgoat.wire.framing import FrameReceiver

    spent: dict[str, float] = {}
    reads = [0, 0]  # socket reads, bytes
    clock = time.thread_time

    def timed(cls: Any, name: str, label: str) -> None:
        original = getattr(cls, name)
        spent[label] = 0.0

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if label == "read":  # PeerDriver.buffer_updated(self, nbytes)
                reads[0] += 1
                reads[1] += args[1]
            t = clock()
            try:
                return original(*args, **kwargs)
            finally:
                spent[label] += clock() - t

        setattr(cls, name, wrapper)

    timed(PeerDriver, "buffer_updated", "read")
    timed(FrameReceiver, "next_event", "parse")
    timed(BlockFlow, "deliver_blocks", "deliver")
    timed(BlockBook, "blocks_received", "picker")
    timed(PieceBuffers, "write_blocks", "copy")
    timed(PeerExchange, "fill_requests", "fill")

    def report() -> None:
        gb = reads[1] / 1e9 or 1.0
        stages = " ".join(f"{k} {v / gb:.3f}" for k, v in spent.items())
        line = f"reads {reads[0]} bytes {reads[1]} | s/GB: {stages} main-thread {time.thread_time() / gb:.3f}"
        with open(os.environ.get("TG_STAGE_TIMES", "/tmp/tg-stage-times.txt"), "a") as f:
            f.write(line + "\n")

    atexit.register(report)


def _hash_threads_1() -> None:
    """One hashing thread instead of one per core (fewer threads contending for 2 cores)."""
    from torrentgoat.aio import hasher

    original_init = hasher.PieceHasher.__init__

    def init(self: Any, config: Any = None, *, threads: int | None = None, disk: Any = None) -> None:
        original_init(self, config, threads=1 if threads is None else threads, disk=disk)

    hasher.PieceHasher.__init__ = init  # type: ignore[method-assign]


EXPERIMENTS = {
    "hash-threads-1": _hash_threads_1,
    "stage-times": _stage_times,
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
        if name.startswith("max-queue-"):  # e.g. max-queue-500: read by _tg_peer
            os.environ["TG_MAX_QUEUE"] = name.removeprefix("max-queue-")
            continue
        EXPERIMENTS[name]()
