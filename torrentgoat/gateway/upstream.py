"""Pass-through to an upstream hub for repos no local source holds (L5, aiohttp client).

The client talks to the gateway only: redirects are followed here (the Hub answers a weight file
with a ``302`` to a signed CDN URL), bodies are streamed through with the same bounded buffers as
local files, and the answer carries the Hub's metadata headers from the *first* response of the chain
(``X-Repo-Commit``, ``ETag``, ``X-Linked-Etag``, ``X-Linked-Size``) with the length and range headers
of the last.  Only a fixed list of headers is passed on: Xet headers (``X-Xet-*``, ``Link: <...>;
rel="xet-auth"``) never reach the client, nor do ``xetHash`` fields of listings, so ``huggingface_hub``
never tries to fetch from Xet storage behind the gateway's back.  The client's ``Authorization``
goes to the upstream hub's origin only, never to the CDN it redirects to.

The unsafe-format policy applies to passed-through files too: refused names are answered by the
server before anything is asked upstream, refused files are dropped from listings, and a body that
starts like a pickle is refused before its first byte is sent.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

import aiohttp
from aiohttp import web
from yarl import URL

from torrentgoat import __version__
from torrentgoat.errors import UpstreamError
from torrentgoat.gateway.answers import Answer, content_disposition, header_safe, refusal_answer
from torrentgoat.gateway.routes import InfoRoute, ResolveRoute, TreeRoute
from torrentgoat.gateway.streaming import send_chunks
from torrentgoat.safety import SNIFF_SIZE

__all__ = ["UpstreamHub", "strip_listing"]

log = logging.getLogger(__name__)

CHUNK_SIZE = 1024 * 1024
MAX_API_BODY = 64 * 1024 * 1024
"""Largest JSON document taken from upstream (a tree page of 1000 entries is a few hundred KiB)."""
MAX_ERROR_BODY = 64 * 1024
MAX_REDIRECTS = 10
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_HUB_HEADERS = ("X-Repo-Commit", "X-Linked-Etag", "X-Linked-Size", "ETag")
_ERROR_HEADERS = ("X-Error-Code", "X-Error-Message", "X-Repo-Commit", "Retry-After")
_XET_KEYS = frozenset({"xetHash", "xet_hash"})


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), parts.port or default


def strip_listing(document: Any, refused: Callable[[str], bool]) -> Any:
    """A Hub JSON document without Xet fields and without files the policy refuses (``refused(path)``)."""
    if isinstance(document, list):
        kept = []
        for item in document:
            if isinstance(item, dict) and item.get("type") == "file" and refused(str(item.get("path", ""))):
                continue
            kept.append(strip_listing(item, refused))
        return kept
    if isinstance(document, dict):
        cleaned = {
            key: strip_listing(value, refused) for key, value in document.items() if key not in _XET_KEYS
        }
        siblings = cleaned.get("siblings")
        if isinstance(siblings, list):
            cleaned["siblings"] = [
                s for s in siblings if not (isinstance(s, dict) and refused(str(s.get("rfilename", ""))))
            ]
        return cleaned
    return document


class UpstreamHub:
    """The upstream hub (``https://huggingface.co`` or a fake one in tests)."""

    def __init__(self, base_url: str, *, connect_timeout: float = 10.0, read_timeout: float = 60.0) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"upstream must be an http(s) URL, not {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=connect_timeout, sock_connect=connect_timeout, sock_read=read_timeout
        )
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout,
                auto_decompress=False,
                headers={"User-Agent": f"torrentgoat-gateway/{__version__}"},
            )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ------------------------------------------------------------------ URLs

    def resolve_url(self, route: ResolveRoute) -> str:
        prefix = {"model": "", "dataset": "datasets/", "space": "spaces/"}[route.repo_type]
        return (
            f"{self.base_url}/{prefix}{route.repo_id}/resolve/"
            f"{quote(route.revision, safe='')}/{quote(route.path)}"
        )

    def api_url(self, route: InfoRoute | TreeRoute) -> str:
        base = f"{self.base_url}/api/{route.repo_type}s/{route.repo_id}"
        if isinstance(route, InfoRoute):
            return base if route.revision is None else f"{base}/revision/{quote(route.revision, safe='')}"
        tail = f"/{quote(route.path, safe='')}" if route.path else ""
        return f"{base}/tree/{quote(route.revision, safe='')}{tail}"

    # ------------------------------------------------------------------ requests

    def _headers(self, request: web.BaseRequest, url: str, *, with_range: bool) -> dict[str, str]:
        headers = {"Accept-Encoding": "identity"}
        authorization = request.headers.get("Authorization")
        if authorization and _origin(url) == _origin(self.base_url):
            headers["Authorization"] = authorization
        if with_range and "Range" in request.headers:
            headers["Range"] = request.headers["Range"]
        return headers

    async def _open(
        self, request: web.BaseRequest, method: str, url: str, *, with_range: bool, stop_early: bool = False
    ) -> tuple[aiohttp.ClientResponse, dict[str, str]]:
        """Follow redirects from ``url``; the last response and the Hub headers of the first one."""
        if self._session is None:
            raise UpstreamError("the upstream session is not started")
        hub: dict[str, str] = {}
        try:
            for hop in range(MAX_REDIRECTS + 1):
                response = await self._session.request(
                    method,
                    URL(url, encoded=True),
                    headers=self._headers(request, url, with_range=with_range),
                    allow_redirects=False,
                )
                if hop == 0 or _origin(url) == _origin(self.base_url):
                    for name in _HUB_HEADERS:
                        if name in response.headers and name not in hub:
                            hub[name] = response.headers[name]
                location = response.headers.get("Location")
                if response.status not in _REDIRECTS or not location:
                    return response, hub
                if stop_early and "X-Linked-Size" in hub and "X-Repo-Commit" in hub:
                    return response, hub  # a HEAD has all it needs from the Hub's own redirect
                response.release()
                url = urljoin(url, location)
                if urlsplit(url).scheme not in ("http", "https"):
                    raise UpstreamError(f"upstream redirected to a non-HTTP URL: {url[:100]!r}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise UpstreamError(f"upstream {self.base_url} failed: {exc or type(exc).__name__}") from exc
        raise UpstreamError(f"upstream redirected more than {MAX_REDIRECTS} times")

    @staticmethod
    async def _error(response: aiohttp.ClientResponse) -> Answer:
        """An upstream error answer, passed on with its Hub error headers and a bounded body."""
        try:
            body = await response.content.read(MAX_ERROR_BODY)
        except (aiohttp.ClientError, TimeoutError):
            body = b""
        headers = {
            name: header_safe(response.headers[name]) for name in _ERROR_HEADERS if name in response.headers
        }
        headers["Content-Type"] = header_safe(response.headers.get("Content-Type", "text/plain"), 200)
        return Answer(status=response.status, headers=headers, body=body)

    async def resolve(
        self,
        request: web.BaseRequest,
        route: ResolveRoute,
        *,
        stall_timeout: float,
        refuse_prefix: Callable[[bytes], str | None],
    ) -> web.StreamResponse | Answer:
        """A file from upstream: a prepared-and-finished response, or an :class:`Answer` to send."""
        head = request.method == "HEAD"
        url = self.resolve_url(route)
        response, hub = await self._open(
            request, "HEAD" if head else "GET", url, with_range=not head, stop_early=head
        )
        try:
            if response.status >= 400:
                return await self._error(response)
            if response.status in _REDIRECTS:  # HEAD answered from the Hub's redirect
                size = hub.get("X-Linked-Size", "")
                if not size.isdigit():
                    raise UpstreamError("upstream redirect without a usable X-Linked-Size")
                answer = web.StreamResponse(status=200, headers=self._file_headers(hub, None, route))
                answer.content_length = int(size)
                await answer.prepare(request)
                await answer.write_eof()
                return answer
            if response.status not in (200, 206):
                raise UpstreamError(f"upstream answered {response.status} for {route.path}")
            length = response.headers.get("Content-Length", "")
            if not length.isdigit():
                raise UpstreamError(f"upstream answered {route.path} without a Content-Length")
            answer = web.StreamResponse(
                status=response.status, headers=self._file_headers(hub, response, route)
            )
            answer.content_length = int(length)
            if head:
                await answer.prepare(request)
                await answer.write_eof()
                return answer
            chunks = self._body(response)
            first = b""
            if "Content-Range" not in response.headers and int(length) > 0:
                first = await anext(chunks, b"")
                reason = refuse_prefix(first[:SNIFF_SIZE])
                if reason is not None:
                    await chunks.aclose()
                    return refusal_answer(reason)
            await answer.prepare(request)
            await send_chunks(
                request,
                answer,
                _prepend(first, chunks),
                expected=int(length),
                stall_timeout=stall_timeout,
                label=f"{route.repo_id}/{route.path} (upstream)",
            )
            return answer
        finally:
            response.release()

    @staticmethod
    def _file_headers(
        hub: dict[str, str], final: aiohttp.ClientResponse | None, route: ResolveRoute
    ) -> dict[str, str]:
        headers: dict[str, str] = {}
        source = final.headers if final is not None else {}
        commit = hub.get("X-Repo-Commit") or source.get("X-Repo-Commit")
        if commit:
            headers["X-Repo-Commit"] = header_safe(commit, 100)
        etag = hub.get("X-Linked-Etag") or hub.get("ETag") or source.get("ETag")
        if etag:
            headers["ETag"] = header_safe(etag, 200)
        for name in ("X-Linked-Etag", "X-Linked-Size"):
            if name in hub:
                headers[name] = header_safe(hub[name], 200)
        if "Content-Range" in source:
            headers["Content-Range"] = header_safe(source["Content-Range"], 200)
        headers["Accept-Ranges"] = "bytes"
        headers["Content-Type"] = header_safe(source.get("Content-Type", "application/octet-stream"), 200)
        headers["Content-Disposition"] = content_disposition(route.path)
        return headers

    async def _body(self, response: aiohttp.ClientResponse) -> AsyncGenerator[bytes, None]:
        try:
            async for chunk in response.content.iter_chunked(CHUNK_SIZE):
                yield chunk
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise UpstreamError(f"upstream body failed: {exc or type(exc).__name__}") from exc

    async def api(
        self, request: web.BaseRequest, route: InfoRoute | TreeRoute, *, refused: Callable[[str], bool]
    ) -> Answer:
        """A repo info or tree page from upstream, cleaned (:func:`strip_listing`), pagination links rewritten."""
        url = self.api_url(route)
        if request.query_string:
            url += "?" + request.query_string
        response, _ = await self._open(request, "GET", url, with_range=False)
        try:
            if response.status >= 400:
                return await self._error(response)
            if response.status != 200:
                raise UpstreamError(f"upstream answered {response.status} for {route.repo_id}")
            try:
                body = await response.content.read(MAX_API_BODY + 1)
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise UpstreamError(f"upstream body failed: {exc or type(exc).__name__}") from exc
            if len(body) > MAX_API_BODY:
                raise UpstreamError("upstream listing is larger than the gateway accepts")
            try:
                document = json.loads(body)
            except ValueError as exc:
                raise UpstreamError("upstream answered an API call with something that is not JSON") from exc
            headers = {"Content-Type": "application/json"}
            next_link = response.links.get("next")
            next_url = next_link.get("url") if next_link is not None else None
            if next_url is not None:
                headers["Link"] = f'<{self._local_url(request, str(next_url))}>; rel="next"'
            return Answer(
                status=200, headers=headers, body=json.dumps(strip_listing(document, refused)).encode()
            )
        finally:
            response.release()

    def _local_url(self, request: web.BaseRequest, upstream_url: str) -> str:
        """An upstream pagination URL moved onto the gateway's own origin (the client sees one origin)."""
        parts = urlsplit(urljoin(self.base_url + "/", upstream_url))
        path = parts.path
        base_path = urlsplit(self.base_url).path
        if base_path and path.startswith(base_path + "/"):
            path = path[len(base_path) :]
        return f"{request.url.origin()}{path}" + (f"?{parts.query}" if parts.query else "")


async def _prepend(first: bytes, rest: AsyncGenerator[bytes, None]) -> AsyncIterator[bytes]:
    try:
        if first:
            yield first
        async for chunk in rest:
            yield chunk
    finally:
        await rest.aclose()
