"""The gateway: an aiohttp server speaking the Hub's download API over :class:`RepoSource` s (L5).

::

    source = FolderSource()
    await source.add("org/tiny", "./tiny-model")
    async with Gateway([source], GatewayConfig(port=8080, upstream=None)) as gateway:
        ...   # HF_ENDPOINT=http://127.0.0.1:8080 python -c "from huggingface_hub import snapshot_download; ..."

It runs inside the caller's event loop, next to a ``Session`` or anything else.  A request names a
repo; the sources are asked in order, and the first that holds the repo at that revision answers
(:meth:`RepoSource.resolve`).  When none does, the upstream hub (``GatewayConfig.upstream``) gets the
request as it came; with no upstream the answer is the Hub's ``RepoNotFound`` / ``RevisionNotFound``.

What ``huggingface_hub`` expects, and how it is met (read from its ``file_download.py``, ``hf_api.py``,
``utils/_http.py``, versions 0.20 to 2.x):

* ``HEAD /{repo}/resolve/{rev}/{path}`` is answered ``200`` directly, never with a redirect: 0.2x
  follows only *relative* redirects on HEAD (``_request_wrapper``) and 2.x only same-origin ones
  (``_httpx2_follow_hub_redirects_with_backoff``), and either way the metadata (``X-Repo-Commit``,
  ``ETag`` / ``X-Linked-Etag``, ``X-Linked-Size``, ``Content-Length``) must be on the answer it stops
  at.  The download then GETs the same URL.
* ``GET`` honours one ``Range`` (``206`` + ``Content-Range``; ``416`` past the end; ``If-Range``
  with another ETag sends the whole file).  ``huggingface_hub`` resumes a transfer cut short with
  ``Range: bytes=<n>-`` where ``n`` is what it wrote, in 10 MiB blocks (``DOWNLOAD_CHUNK_SIZE``): in
  2.x within the same call, in 0.2x from ``<blob>.incomplete`` on the next call (0.20-0.22 only with
  ``resume_download=True``).  Its read timeout is 10 s (``HF_HUB_DOWNLOAD_TIMEOUT``, and
  ``HF_HUB_ETAG_TIMEOUT`` for the HEAD): a source that makes a client wait longer for a byte gets a
  retry with ``Range``.
* Files refused by the unsafe-format policy (:mod:`torrentgoat.safety`, pickle-based weights unless
  ``allow_pickle``) are left out of listings and answered ``403`` + ``X-Error-Code: EntryNotFound``
  with the reason (see :mod:`torrentgoat.gateway.answers`).
* Listings page like the Hub: at most ``page_size`` entries and a ``Link: <...>; rel="next"`` to the
  rest (an absolute URL on this server: the client follows it as given).

Resources: every body is streamed with at most one chunk in memory (:mod:`.streaming`); at most
``max_streams`` bodies are sent at once (``429`` + ``Retry-After`` beyond, which the client retries);
a vanished client cancels its handler (aiohttp ``handler_cancellation``), which closes the source's
iterator.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from aiohttp import web

from torrentgoat.errors import (
    ConfigError,
    EntryNotFoundError,
    GatewayError,
    InvalidRequestError,
    RepoNotFoundError,
    RevisionNotFoundError,
    StorageError,
    TorrentGoatError,
    UnsafeModelError,
    VerificationError,
)
from torrentgoat.gateway import hubjson
from torrentgoat.gateway.answers import Answer, error_answer, file_headers, header_safe, refusal_answer
from torrentgoat.gateway.defaults import DEFAULT_UPSTREAM
from torrentgoat.gateway.routes import (
    InfoRoute,
    RangeNotSatisfiable,
    ResolveRoute,
    TreeRoute,
    parse_range,
    parse_target,
    query_flag,
)
from torrentgoat.gateway.source import RepoFile, RepoSnapshot, RepoSource, RepoType
from torrentgoat.gateway.streaming import send_chunks
from torrentgoat.gateway.upstream import UpstreamHub
from torrentgoat.safety import Policy, judge

__all__ = ["DEFAULT_UPSTREAM", "Gateway", "GatewayConfig", "GatewayStats"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayConfig:
    """How the gateway listens and behaves."""

    host: str = "127.0.0.1"
    """Address to listen on; loopback unless told otherwise (the gateway has no authentication)."""
    port: int = 8080
    """TCP port (0: any free port; read :attr:`Gateway.port` once started)."""
    upstream: str | None = DEFAULT_UPSTREAM
    """Hub that answers for repos no source holds; None answers ``RepoNotFound`` instead."""
    policy: Policy = field(default_factory=Policy)
    """Unsafe-format policy: pickle-based weights are refused unless ``allow_pickle``."""
    page_size: int = 1000
    """Entries per tree listing page (the Hub's own page size)."""
    max_streams: int = 64
    """Bodies sent at once; more GETs are answered 429 with ``Retry-After: 1``."""
    stall_timeout: float = 60.0
    """Seconds a client may stop reading before it is cut off."""
    upstream_connect_timeout: float = 10.0
    upstream_read_timeout: float = 60.0

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port {self.port} is out of range")
        if self.page_size < 1 or self.max_streams < 1 or self.stall_timeout <= 0:
            raise ConfigError("page_size and max_streams must be >= 1, stall_timeout > 0")


@dataclass(slots=True)
class GatewayStats:
    """Counters, for tests and progress lines."""

    requests: int = 0
    streams_open: int = 0
    bytes_sent: int = 0
    refused: int = 0
    upstream_requests: int = 0


class _AskUpstream(Exception):
    """No source holds the revision: the upstream hub answers (``local``: a source's RevisionNotFound)."""

    def __init__(self, local: RevisionNotFoundError | None) -> None:
        super().__init__("ask upstream")
        self.local = local


class Gateway:
    """The Hugging Face endpoint (see the module docstring)."""

    def __init__(self, sources: Sequence[RepoSource] = (), config: GatewayConfig | None = None) -> None:
        self.config = config or GatewayConfig()
        self.sources: list[RepoSource] = list(sources)
        self.stats = GatewayStats()
        self.upstream = (
            UpstreamHub(
                self.config.upstream,
                connect_timeout=self.config.upstream_connect_timeout,
                read_timeout=self.config.upstream_read_timeout,
            )
            if self.config.upstream
            else None
        )
        self._runner: web.AppRunner | None = None
        self._port = 0
        self._transfers: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Gateway:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Listen (OSError when the address is taken)."""
        app = web.Application(client_max_size=1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.config.host, self.config.port, reuse_address=True)
            await site.start()
            if self.upstream is not None:
                await self.upstream.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = int(runner.addresses[0][1])

    async def close(self) -> None:
        """Stop listening, cut the open transfers, close the upstream session."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            for task in list(self._transfers):  # open bodies end now, not after aiohttp's shutdown timeout
                task.cancel()
            await runner.cleanup()
        if self.upstream is not None:
            await self.upstream.close()

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        """``http://host:port``: what to put in ``HF_ENDPOINT``."""
        host = self.config.host
        if host in ("0.0.0.0", ""):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        return f"http://[{host}]:{self._port}" if ":" in host else f"http://{host}:{self._port}"

    def add_source(self, source: RepoSource, *, first: bool = False) -> None:
        """Ask ``source`` too (after the others, or before them with ``first``)."""
        self.sources.insert(0 if first else len(self.sources), source)

    @contextlib.contextmanager
    def _transfer(self) -> Iterator[None]:
        """Count a body being sent, and let :meth:`close` cancel it."""
        task = asyncio.current_task()
        self.stats.streams_open += 1
        if task is not None:
            self._transfers.add(task)
        try:
            yield
        finally:
            self.stats.streams_open -= 1
            if task is not None:
                self._transfers.discard(task)

    # ------------------------------------------------------------------ policy

    def refusal(self, entry: RepoFile) -> str | None:
        """Why the unsafe-format policy refuses ``entry`` (None when it may be served)."""
        members = list(entry.pickle_members) or None
        violation = judge(entry.path, entry.prefix, self.config.policy, pickle_members=members)
        return None if violation is None else violation.message

    def _refused_name(self, path: str) -> bool:
        return judge(path, b"", self.config.policy) is not None

    def _refused_prefix(self, path: str) -> Callable[[bytes], str | None]:
        def check(prefix: bytes) -> str | None:
            violation = judge(path, prefix, self.config.policy)
            return None if violation is None else violation.message

        return check

    def _visible(self, snapshot: RepoSnapshot) -> list[RepoFile]:
        return [entry for entry in snapshot.files.values() if self.refusal(entry) is None]

    # ------------------------------------------------------------------ dispatch

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.stats.requests += 1
        raw = request.raw_path if request.raw_path.startswith("/") else request.rel_url.raw_path
        try:
            route = parse_target(raw.split("?", 1)[0].split("#", 1)[0])
        except InvalidRequestError as exc:
            return _send(error_answer(exc))
        if route is None:
            return _send(_not_served(request.path))
        if request.method not in ("GET", "HEAD"):
            return web.Response(status=405, headers={"Allow": "GET, HEAD"}, text="GET or HEAD only\n")
        try:
            match route:
                case ResolveRoute():
                    return await self._resolve_file(request, route)
                case InfoRoute():
                    return await self._info(request, route)
                case TreeRoute():
                    return await self._tree(request, route)
        except GatewayError as exc:
            return _send(error_answer(exc))
        except TorrentGoatError as exc:
            log.warning("%s %s: %s", request.method, request.path[:200], exc)
            return _send(error_answer(GatewayError(str(exc))))

    async def _snapshot(
        self, repo_type: RepoType, repo_id: str, revision: str
    ) -> tuple[RepoSource, RepoSnapshot]:
        """The first source holding the revision.

        _AskUpstream when none does and there is an upstream hub; otherwise RepoNotFoundError or
        RevisionNotFoundError (the most specific one any source gave).
        """
        local: RevisionNotFoundError | None = None
        for source in self.sources:
            try:
                return source, await source.resolve(repo_type, repo_id, revision)
            except RevisionNotFoundError as exc:
                local = exc
            except RepoNotFoundError:
                pass
        if self.upstream is not None:
            raise _AskUpstream(local)
        raise local or RepoNotFoundError(
            f"{repo_type} {repo_id!r} is not held by this gateway (and no upstream hub is configured)"
        )

    @staticmethod
    def _from_upstream(answer: Answer | web.StreamResponse, ask: _AskUpstream) -> web.StreamResponse:
        """Upstream's answer; but a revision a local source lacks stays a RevisionNotFound, not a RepoNotFound."""
        if isinstance(answer, web.StreamResponse):
            return answer
        if ask.local is not None and answer.headers.get("X-Error-Code") == "RepoNotFound":
            return _send(error_answer(ask.local))
        return _send(answer)

    # ------------------------------------------------------------------ files

    async def _resolve_file(self, request: web.Request, route: ResolveRoute) -> web.StreamResponse:
        try:
            source, snapshot = await self._snapshot(route.repo_type, route.repo_id, route.revision)
        except _AskUpstream as ask:
            return self._from_upstream(await self._upstream_file(request, route), ask)
        entry = snapshot.files.get(route.path)
        if entry is None:
            missing = EntryNotFoundError(f"{route.repo_id}@{snapshot.commit[:12]} has no file {route.path!r}")
            return _send(error_answer(missing, commit=snapshot.commit))
        reason = self.refusal(entry)
        if reason is not None:
            self.stats.refused += 1
            return _send(refusal_answer(reason))
        headers = file_headers(snapshot, entry)
        byte_range = None
        if _if_range_matches(request.headers.get("If-Range"), entry.etag):
            try:
                byte_range = parse_range(request.headers.get("Range"), entry.size)
            except RangeNotSatisfiable as exc:
                return _send(
                    Answer(
                        status=416,
                        headers={"Content-Range": f"bytes */{entry.size}", "X-Error-Message": str(exc)},
                    )
                )
        start, stop = byte_range if byte_range is not None else (0, entry.size)
        response = web.StreamResponse(status=206 if byte_range is not None else 200, headers=headers)
        if byte_range is not None:
            response.headers["Content-Range"] = f"bytes {start}-{stop - 1}/{entry.size}"
        response.content_length = stop - start
        if request.method == "HEAD" or stop == start:
            await response.prepare(request)
            await response.write_eof()
            return response
        if self.stats.streams_open >= self.config.max_streams:
            return _send(_busy())
        label = f"{route.repo_id}/{route.path}"
        with self._transfer():
            async with _closing(source.read(snapshot, entry, start, stop)) as chunks:
                try:  # the first chunk before the headers: a source may still refuse the file
                    first = await anext(chunks, b"")
                except TorrentGoatError as exc:
                    self.stats.refused += isinstance(exc, UnsafeModelError)
                    return _send(_unreadable(exc, label))
                await response.prepare(request)
                sent = await send_chunks(
                    request,
                    response,
                    _prepend(first, chunks),
                    expected=stop - start,
                    stall_timeout=self.config.stall_timeout,
                    label=label,
                )
        self.stats.bytes_sent += sent
        if sent == stop - start:
            part = "" if byte_range is None else f" (bytes {start}-{stop - 1})"
            log.info("sent %s%s: %d bytes from %s", label, part, sent, snapshot.source_name or "a source")
        return response

    async def _upstream_file(self, request: web.Request, route: ResolveRoute) -> Answer | web.StreamResponse:
        assert self.upstream is not None
        violation = judge(route.path, b"", self.config.policy)
        if violation is not None:
            self.stats.refused += 1
            return refusal_answer(violation.message)
        if request.method != "HEAD" and self.stats.streams_open >= self.config.max_streams:
            return _busy()
        self.stats.upstream_requests += 1
        with self._transfer():
            answer = await self.upstream.resolve(
                request,
                route,
                stall_timeout=self.config.stall_timeout,
                refuse_prefix=self._refused_prefix(route.path),
            )
        return answer

    # ------------------------------------------------------------------ API

    async def _info(self, request: web.Request, route: InfoRoute) -> web.StreamResponse:
        try:
            _, snapshot = await self._snapshot(route.repo_type, route.repo_id, route.revision or "main")
        except _AskUpstream as ask:
            assert self.upstream is not None
            self.stats.upstream_requests += 1
            return self._from_upstream(
                await self.upstream.api(request, route, refused=self._refused_name), ask
            )
        document = hubjson.repo_info(
            snapshot, self._visible(snapshot), blobs=query_flag(request.query.get("blobs"))
        )
        return _json(document)

    async def _tree(self, request: web.Request, route: TreeRoute) -> web.StreamResponse:
        try:
            _, snapshot = await self._snapshot(route.repo_type, route.repo_id, route.revision)
        except _AskUpstream as ask:
            assert self.upstream is not None
            self.stats.upstream_requests += 1
            return self._from_upstream(
                await self.upstream.api(request, route, refused=self._refused_name), ask
            )
        try:
            entries = hubjson.tree_entries(
                self._visible(snapshot), route.path, recursive=query_flag(request.query.get("recursive"))
            )
        except EntryNotFoundError as exc:
            return _send(error_answer(exc, commit=snapshot.commit))
        items, next_offset = hubjson.page(entries, request.query.get("cursor"), self.config.page_size)
        headers = {}
        if next_offset is not None:
            headers["Link"] = f'<{request.url.update_query(cursor=str(next_offset))}>; rel="next"'
        return _json(items, headers)


@contextlib.asynccontextmanager
async def _closing(chunks: AsyncIterator[bytes]) -> AsyncGenerator[AsyncIterator[bytes], None]:
    """Close a source's iterator however the transfer ends (``aclose``, when it has one)."""
    try:
        yield chunks
    finally:
        close = getattr(chunks, "aclose", None)
        if close is not None:
            await close()


async def _prepend(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """``first``, then the rest of the chunks (closing ``rest`` is the caller's job)."""
    if first:
        yield first
    async for chunk in rest:
        yield chunk


def _unreadable(error: TorrentGoatError, label: str) -> Answer:
    """A source that failed before the first byte: the policy's refusal, the Hub's error, or 503."""
    if isinstance(error, UnsafeModelError):
        log.warning("%s: refused: %s", label, error)
        return refusal_answer(str(error))
    if isinstance(error, GatewayError):
        return error_answer(error)
    log.warning("%s: cannot be read: %s", label, error)
    message = header_safe(f"torrentgoat gateway: {label}: {error}")
    headers = {"X-Error-Message": message, "Content-Type": "application/json"}
    lasting = isinstance(error, VerificationError | StorageError)  # retrying will not help
    if not lasting:
        headers["Retry-After"] = "5"
    return Answer(
        status=500 if lasting else 503, headers=headers, body=json.dumps({"error": message}).encode()
    )


def _if_range_matches(if_range: str | None, etag: str) -> bool:
    """Whether ``Range`` applies: no ``If-Range``, or one naming this ETag (strong comparison, RFC 9110 13.1.5)."""
    if if_range is None:
        return True
    return if_range.strip() == f'"{etag}"'


def _send(answer: Answer) -> web.Response:
    return web.Response(status=answer.status, headers=answer.headers, body=answer.body)


def _json(document: Any, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=json.dumps(document, separators=(",", ":")).encode(),
        content_type="application/json",
        headers=headers,
    )


def _not_served(path: str) -> Answer:
    message = header_safe(f"{path[:200]} is not a route of the torrentgoat gateway")
    return Answer(
        status=404,
        headers={"X-Error-Message": message, "Content-Type": "application/json"},
        body=json.dumps({"error": message}).encode(),
    )


def _busy() -> Answer:
    return Answer(
        status=429,
        headers={"Retry-After": "1", "X-Error-Message": "too many transfers at once"},
        body=b"busy\n",
    )
