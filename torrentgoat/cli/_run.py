"""Run a coroutine on uvloop when it is installed, else on the plain asyncio loop."""

from __future__ import annotations

import os
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["run"]


def run(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` with uvloop's loop factory unless ``TORRENTGOAT_NO_UVLOOP`` is set."""
    import asyncio

    if not os.environ.get("TORRENTGOAT_NO_UVLOOP"):
        try:
            import uvloop
        except ImportError:
            pass
        else:
            # asyncio.run() has no loop_factory before 3.12; asyncio.Runner has it since 3.11.
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                return runner.run(coro)
    return asyncio.run(coro)
