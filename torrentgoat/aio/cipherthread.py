"""Stream-cipher work off the event loop: daemon threads that run RC4 jobs and post the results back.

RC4 (``cryptography``'s OpenSSL) costs ~1.1-1.6 CPU s/GB on each side of an encrypted connection,
as much as the rest of a leecher's event-loop thread.  ``cryptography`` releases the GIL while
OpenSSL runs, so a second thread can encrypt or decrypt while the loop parses messages, picks
blocks and hashes -- on a machine with a spare core the cipher leaves the loop's critical path.

A job is one direction of one connection: ``update`` (the RC4 context's bound method) applied to a
list of buffers in order, the outputs handed to ``done`` on the job's event loop.  RC4 is a
keystream, so a direction's buffers must be processed in order: callers keep at most one job per
direction in flight (:class:`OrderedCipher`), which lets any worker take any job.

Tuning note: a job costs the worker two GIL hand-offs and the loop one wake-up (``call_soon_threadsafe``),
so callers batch what arrived while the previous job ran into the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import threading
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["CipherPool", "OrderedCipher", "default_pool"]

UpdateInto = Callable[[Any, Any], int]
_Job = tuple[
    asyncio.AbstractEventLoop, Callable[[list[Any]], list[bytes]], list[Any], Callable[[list[bytes]], None]
]

OUTPUT_CHUNK = 64 * 1024
"""Size of the output buffers a job hands back: small enough for the allocator to recycle (fresh
pages for every larger buffer cost more than the copy), large enough to keep calls few."""


class CipherPool:
    """``workers`` daemon threads taking jobs from one queue (started on first use)."""

    def __init__(self, workers: int = 1) -> None:
        self._workers = max(1, workers)
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def submit(
        self,
        loop: asyncio.AbstractEventLoop,
        work: Callable[[list[Any]], list[bytes]],
        buffers: list[Any],
        done: Callable[[list[bytes]], None],
    ) -> None:
        """Run ``work(buffers)`` on a worker; ``done(result)`` then runs on ``loop``."""
        if len(self._threads) < self._workers:
            self._start()
        self._jobs.put((loop, work, buffers, done))

    def _start(self) -> None:
        with self._lock:
            while len(self._threads) < self._workers:
                thread = threading.Thread(
                    target=self._run, name=f"torrentgoat-cipher-{len(self._threads)}", daemon=True
                )
                thread.start()
                self._threads.append(thread)

    def _run(self) -> None:
        get = self._jobs.get
        while True:
            loop, work, buffers, done = get()
            outputs = work(buffers)
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits
                loop.call_soon_threadsafe(done, outputs)


_default: CipherPool | None = None


def default_pool() -> CipherPool:
    """The process's shared pool: one worker per spare core, at most two."""
    global _default
    if _default is None:
        _default = CipherPool(workers=min(2, max(1, (os.cpu_count() or 1) - 1)))
    return _default


class OrderedCipher:
    """One direction of one connection through a :class:`CipherPool`, in order, one job at a time.

    :meth:`feed` queues buffers; while a job runs, what arrives waits and goes out as the next job,
    so under load jobs grow and hand-offs get rarer.  A job is one cipher call: the worker copies
    the job's buffers into a scratch buffer, runs ``update_into`` on it in place (the GIL released
    once, not once per buffer: every re-acquisition can wait a whole switch interval while the loop
    runs Python) and copies the result out in :data:`OUTPUT_CHUNK` pieces.  ``deliver(output)``
    gets every output on the loop, in order.  :attr:`pending` counts the bytes fed but not yet
    delivered (write-buffer accounting); :meth:`close` drops whatever has not been delivered.
    """

    __slots__ = (
        "_busy",
        "_closed",
        "_deliver",
        "_loop",
        "_on_idle",
        "_pool",
        "_queued",
        "_scratch",
        "_update_into",
        "pending",
    )

    def __init__(
        self,
        update_into: UpdateInto,
        deliver: Callable[[bytes], None],
        *,
        pool: CipherPool,
        loop: asyncio.AbstractEventLoop,
        on_idle: Callable[[], None] | None = None,
    ) -> None:
        self._update_into = update_into
        self._deliver = deliver
        self._pool = pool
        self._loop = loop
        self._on_idle = on_idle
        self._queued: list[Any] = []
        self._scratch = bytearray()
        self._busy = False
        self._closed = False
        self.pending = 0

    @property
    def idle(self) -> bool:
        """Nothing queued and no job running: every fed buffer has been delivered."""
        return not self._busy and not self._queued

    def feed(self, buffers: Iterable[Any]) -> None:
        if self._closed:
            return
        queued = self._queued
        for buf in buffers:
            self.pending += len(buf)
            queued.append(buf)
        if not self._busy and queued:
            self._submit()

    def close(self) -> None:
        self._closed = True
        self._queued = []
        self.pending = 0

    def _submit(self) -> None:
        batch, self._queued = self._queued, []
        self._busy = True
        self._pool.submit(self._loop, self._work, batch, self._done)

    def _work(self, buffers: list[Any]) -> list[bytes]:
        """On the worker: the whole batch through the cipher in one call."""
        total = sum(map(len, buffers))
        scratch = self._scratch
        if len(scratch) < total:
            scratch = self._scratch = bytearray(total)
        view = memoryview(scratch)[:total]
        pos = 0
        for buf in buffers:
            end = pos + len(buf)
            view[pos:end] = buf
            pos = end
        self._update_into(view, view)
        return [bytes(view[start : start + OUTPUT_CHUNK]) for start in range(0, total, OUTPUT_CHUNK)]

    def _done(self, outputs: list[bytes]) -> None:
        self._busy = False
        if self._closed:
            return
        deliver = self._deliver
        for out in outputs:
            self.pending -= len(out)
            deliver(out)
            if self._closed:
                return
        if self._queued:
            self._submit()
        elif self._on_idle is not None:
            self._on_idle()
