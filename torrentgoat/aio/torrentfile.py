""".torrent files fetched over HTTP(S) (level L4): ``get`` and ``info`` accept URLs alike."""

from __future__ import annotations

from typing import Any

from torrentgoat.errors import MetainfoError

__all__ = ["MAX_TORRENT_DOWNLOAD", "fetch_torrent_bytes"]

MAX_TORRENT_DOWNLOAD = 32 * 1024 * 1024
"""Largest .torrent accepted from a URL."""


async def fetch_torrent_bytes(url: str, http: Any = None, *, timeout: float = 30.0) -> bytes:
    """The bytes of the .torrent at ``url`` (at most :data:`MAX_TORRENT_DOWNLOAD`), with ``http`` (an
    ``aiohttp.ClientSession``) or a short-lived session of its own; :class:`MetainfoError` on any
    failure, naming the URL."""
    import aiohttp

    own = http is None
    session = aiohttp.ClientSession() if own else http
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=timeout)) as response:
            if response.status != 200:
                raise MetainfoError(f"fetching {url}: HTTP {response.status}")
            body: bytes = await response.content.read(MAX_TORRENT_DOWNLOAD + 1)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise MetainfoError(f"fetching {url}: {exc or type(exc).__name__}") from None
    finally:
        if own:
            await session.close()
    if len(body) > MAX_TORRENT_DOWNLOAD:
        raise MetainfoError(f"{url}: torrent file larger than {MAX_TORRENT_DOWNLOAD} bytes")
    return body
