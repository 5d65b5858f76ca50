"""Sending a body to a client with bounded memory, and letting go when the client does (L5).

aiohttp's ``StreamResponse.write`` waits for the transport to drain once its buffer passes 64 KiB,
so at most one source chunk plus that buffer is held per client.  A client that stops reading for
``stall_timeout`` seconds is cut off; one that disconnects makes the next write fail, or -- with the
server's ``handler_cancellation`` -- cancels the handler at once.  Either way the caller's
``aclosing(...)`` closes the source iterator, which releases what the source held for that range.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from torrentgoat.errors import TorrentGoatError

__all__ = ["abort", "send_chunks"]

log = logging.getLogger(__name__)


def abort(request: web.BaseRequest) -> None:
    """Drop the client's connection at once (a body cut short must not look complete)."""
    transport = request.transport
    if transport is not None:
        transport.abort()


async def send_chunks(
    request: web.BaseRequest,
    response: web.StreamResponse,
    chunks: AsyncIterator[bytes],
    *,
    expected: int,
    stall_timeout: float,
    label: str,
) -> int:
    """Write ``chunks`` to the prepared ``response``, then end it; the number of body bytes sent.

    Exactly ``expected`` bytes must come; anything else (the source failing or over-/under-running,
    the client stalling or vanishing) aborts the connection, so the client sees a truncated transfer
    (which ``huggingface_hub`` resumes with a ``Range`` request) rather than a wrong file.
    """
    sent = 0
    try:
        async for chunk in chunks:
            if sent + len(chunk) > expected:
                raise TorrentGoatError(f"{label}: the source sent more than the {expected} bytes asked")
            try:
                async with asyncio.timeout(stall_timeout):
                    await response.write(chunk)
            except TimeoutError:
                log.info(
                    "%s: client stalled for %g s after %d bytes, dropping it", label, stall_timeout, sent
                )
                abort(request)
                return sent
            sent += len(chunk)
        if sent != expected:
            raise TorrentGoatError(f"{label}: the source ended after {sent} of {expected} bytes")
        async with asyncio.timeout(stall_timeout):
            await response.write_eof()
    except ConnectionError:
        log.debug("%s: client went away after %d bytes", label, sent)
        abort(request)
    except TimeoutError:
        log.info("%s: client stalled at the end of the body, dropping it", label)
        abort(request)
    except TorrentGoatError as exc:
        log.warning("%s: cut after %d bytes: %s", label, sent, exc)
        abort(request)
    return sent
