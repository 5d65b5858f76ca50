"""Blocking storage calls on a bounded thread pool, level L4.

:class:`DiskExecutor` is the only way the asyncio layers touch a :class:`~torrentgoat.storage.Storage`:
every call runs on a :class:`~concurrent.futures.ThreadPoolExecutor` of ``IOConfig.disk_threads``
threads, so a slow disk never blocks the event loop and at most that many calls are in flight.
``os.pread``/``os.pwrite`` release the GIL, so the threads overlap with the loop and with hashing.

A cancelled ``await`` does not stop a call already running in a thread; callers must not recycle a
buffer they passed in until the call has finished (the hasher keeps one buffer per worker for this).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from torrentgoat.config import IOConfig
from torrentgoat.errors import ConfigError
from torrentgoat.storage import BytesLike, Storage

__all__ = ["DiskExecutor"]

P = ParamSpec("P")
T = TypeVar("T")


class DiskExecutor:
    """A bounded pool running storage reads and writes off the event loop."""

    def __init__(self, config: IOConfig | None = None, *, threads: int | None = None) -> None:
        count = threads if threads is not None else (config or IOConfig()).disk_threads
        if count < 1:
            raise ConfigError(f"disk_threads must be >= 1, got {count}")
        self.threads = count
        self._executor = ThreadPoolExecutor(max_workers=count, thread_name_prefix="torrentgoat-disk")

    @property
    def executor(self) -> ThreadPoolExecutor:
        return self._executor

    async def run(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(*args, **kwargs)`` on the pool and await its result."""
        loop = asyncio.get_running_loop()
        if kwargs:
            return await loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))
        return await loop.run_in_executor(self._executor, fn, *args)

    async def read(self, storage: Storage, piece: int, begin: int, length: int) -> bytes:
        return await self.run(storage.read, piece, begin, length)

    async def read_into(self, storage: Storage, piece: int, begin: int, buf: BytesLike) -> None:
        await self.run(storage.read_into, piece, begin, buf)

    async def read_piece(self, storage: Storage, index: int) -> bytes | None:
        return await self.run(storage.read_piece, index)

    async def read_piece_into(self, storage: Storage, index: int, buf: BytesLike) -> bool:
        return await self.run(storage.read_piece_into, index, buf)

    async def write(self, storage: Storage, piece: int, begin: int, data: BytesLike) -> None:
        await self.run(storage.write, piece, begin, data)

    async def write_piece(self, storage: Storage, index: int, data: BytesLike) -> None:
        await self.run(storage.write_piece, index, data)

    async def flush(self, storage: Storage) -> None:
        await self.run(storage.flush)

    async def close_storage(self, storage: Storage) -> None:
        await self.run(storage.close)

    def close(self) -> None:
        """Wait for running calls, then stop the threads."""
        self._executor.shutdown(wait=True)

    async def aclose(self) -> None:
        """:meth:`close` without blocking the loop."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.close)

    def __enter__(self) -> DiskExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> DiskExecutor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
