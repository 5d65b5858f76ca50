"""A local stand-in for the Hugging Face hub's file routes, for web seed (BEP 19) tests on loopback.

The real hub answers ``GET https://huggingface.co/<org>/<repo>/resolve/<revision>/<path>`` for a
regular git file with the file itself, and for an LFS file (weights) with a ``302`` to a signed,
expiring CDN URL.  :class:`FakeHub` does the same on ``127.0.0.1`` (aiohttp.web, any free port)::

    async with FakeHub(token_ttl=60) as hub:
        hub.add_repo("org/tiny", commit, folder)          # e.g. a write_model_folder() output
        metainfo = create_torrent(folder, name=commit, web_seeds=[hub.resolve_url("org/tiny")])
        ...
        assert hub.bytes_served() == ...

Routes:

* ``GET /{org}/{repo}/resolve/{revision}/{path}`` -- ``revision`` is the commit hash (or a ref
  registered with :meth:`FakeHub.add_repo`); LFS files (see ``lfs_suffixes`` / ``lfs_min_size``)
  get a ``302`` to ``/cdn/{token}/{sha256}?expires=T``, other files are served here;
* ``GET /cdn/{token}/{sha256}`` -- valid for ``token_ttl`` seconds after the redirect, then
  ``403`` (as an expired signed URL is).

* ``GET /api/models/{org}/{repo}[/revision/{revision}]`` and ``.../tree/{revision}[/{path}]`` --
  repo info (``sha``, ``siblings``) and listings (``recursive``, ``page_size`` entries per page with a
  ``Link: <...>; rel="next"`` cursor), for clients such as the torrentgoat gateway's pass-through.

Unknown repos, revisions and files get the Hub's ``X-Error-Code`` (``RepoNotFound``,
``RevisionNotFound``, ``EntryNotFound``).  ``xet=True`` adds what the real Hub adds for Xet-backed
files (``X-Xet-Hash``, ``Link: <...>; rel="xet-auth"``, ``xetHash`` in listings), which a proxy must
not pass on.  Both file routes serve ``Range: bytes=a-b`` (also ``a-`` and ``-n``) with ``206`` and
``Content-Range``, and a request without ``Range`` with ``200``.  Every request is logged (:attr:`FakeHub.requests`) with the
repo path, the range asked for, the status and the body bytes sent, so tests can assert exactly what
was asked.  Failure injection: :meth:`FakeHub.fail_next` (``503`` + ``Retry-After``),
:meth:`FakeHub.corrupt` (bytes of one file served wrong), ``ignore_range`` (always ``200``),
``response_delay`` (slow CDN), ``cdn_host`` (another host name for the CDN URLs, e.g.
``localhost``, so that they are another origin than the hub's).  Nothing here leaves loopback.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from aiohttp import web
from aiohttp.typedefs import Handler

__all__ = ["FakeHub", "HubFile", "HubRequest", "parse_range_header"]

DEFAULT_LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".onnx", ".msgpack", ".h5")


@dataclass(frozen=True, slots=True, kw_only=True)
class HubRequest:
    """One request the hub answered."""

    route: str
    """``"resolve"`` or ``"cdn"``."""
    repo: str
    path: str
    """The file's path in the repo ("" when the request named no known file)."""
    range: tuple[int, int] | None
    """Inclusive byte range of the body sent (the whole file for a ``200``); None when no body was sent."""
    status: int
    body_bytes: int
    at: float
    """``time.monotonic()`` when the request arrived."""


@dataclass(frozen=True, slots=True, kw_only=True)
class HubFile:
    """A file registered in a repo."""

    repo: str
    commit: str
    path: str
    source: Path
    size: int
    sha256: str
    lfs: bool


@dataclass(slots=True)
class _Token:
    file: HubFile
    expires: float


@dataclass(slots=True)
class _Failures:
    remaining: int = 0
    status: int = 503
    retry_after: str | None = "1"
    routes: tuple[str, ...] = ("resolve", "cdn")


def parse_range_header(value: str, size: int) -> tuple[int, int] | None:
    """A single ``bytes=`` range (RFC 9110 14.1.2) as inclusive ``(first, last)`` clipped to ``size``.

    Raises :class:`ValueError` for a malformed or unsatisfiable range (the caller answers ``416``).
    """
    text = value.strip()
    if not text.startswith("bytes="):
        raise ValueError(f"not a bytes range: {value!r}")
    spec = text[len("bytes=") :].strip()
    if "," in spec:
        raise ValueError("multiple ranges are not supported")
    first_text, sep, last_text = spec.partition("-")
    if not sep:
        raise ValueError(f"bad range {value!r}")
    if not first_text:
        if not last_text.isdigit() or int(last_text) == 0:
            raise ValueError(f"bad suffix range {value!r}")
        n = min(int(last_text), size)
        return (size - n, size - 1) if size else None
    if not first_text.isdigit() or (last_text and not last_text.isdigit()):
        raise ValueError(f"bad range {value!r}")
    first = int(first_text)
    last = int(last_text) if last_text else size - 1
    if first > last or first >= size:
        raise ValueError(f"unsatisfiable range {value!r} for {size} bytes")
    return first, min(last, size - 1)


class FakeHub:
    """An aiohttp server mimicking the hub's resolve -> CDN redirect (see the module docstring).

    ``token_ttl``: seconds a CDN URL stays valid.  ``lfs_suffixes`` / ``lfs_min_size``: which files
    are LFS (redirected) -- by suffix, or by size when ``lfs_min_size`` is set.  ``response_delay``:
    seconds to wait before each file body (a slow server).  ``ignore_range``: answer ``200`` with the
    whole file whatever the ``Range`` says (a server without range support).
    """

    def __init__(
        self,
        *,
        token_ttl: float = 3600.0,
        lfs_suffixes: tuple[str, ...] = DEFAULT_LFS_SUFFIXES,
        lfs_min_size: int | None = None,
        response_delay: float = 0.0,
        ignore_range: bool = False,
        host: str = "127.0.0.1",
        page_size: int = 1000,
        xet: bool = False,
        cdn_host: str | None = None,
    ) -> None:
        self.token_ttl = token_ttl
        self.lfs_suffixes = lfs_suffixes
        self.lfs_min_size = lfs_min_size
        self.response_delay = response_delay
        self.ignore_range = ignore_range
        self.host = host
        self.page_size = page_size
        self.xet = xet
        self.cdn_host = cdn_host
        self.port = 0
        self.requests: list[HubRequest] = []
        self.files: dict[tuple[str, str, str], HubFile] = {}
        """(repo, commit, path) -> file."""
        self.refs: dict[tuple[str, str], str] = {}
        """(repo, ref name) -> commit."""
        self.authorizations: list[tuple[str, str | None]] = []
        """(request path, its ``Authorization`` header) of every request, in arrival order."""
        self.expired_hits = 0
        """Requests refused because their CDN token had expired."""
        self._by_sha: dict[str, HubFile] = {}
        self._tokens: dict[str, _Token] = {}
        self._token_counter = 0
        self._failures = _Failures()
        self._corrupt: set[tuple[str, str]] = set()
        self._runner: web.AppRunner | None = None

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> FakeHub:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def start(self) -> None:
        @web.middleware
        async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
            self.authorizations.append((request.path, request.headers.get("Authorization")))
            return await handler(request)

        app = web.Application(middlewares=[record])
        app.router.add_get("/cdn/{token}/{blob}", self._cdn)
        app.router.add_get("/{org}/{name}/resolve/{revision}/{path:.+}", self._resolve)
        app.router.add_get("/api/models/{org}/{name}", self._api_info)
        app.router.add_get("/api/models/{org}/{name}/revision/{revision}", self._api_info)
        app.router.add_get("/api/models/{org}/{name}/tree/{revision}", self._api_tree)
        app.router.add_get("/api/models/{org}/{name}/tree/{revision}/{path:.+}", self._api_tree)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ------------------------------------------------------------------ setup

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def resolve_url(self, repo: str) -> str:
        """The ``url-list`` entry of a snapshot torrent of ``repo`` (its name is the commit hash)."""
        return f"{self.url}/{repo}/resolve/"

    def add_repo(
        self, repo: str, commit: str, folder: str | Path, *, refs: tuple[str, ...] = ("main",)
    ) -> list[HubFile]:
        """Serve every regular file under ``folder`` as ``repo`` at ``commit`` (and at each ref name)."""
        root = Path(folder)
        added = []
        for source in sorted(p for p in root.rglob("*") if p.is_file()):
            relative = source.relative_to(root).as_posix()
            size = source.stat().st_size
            lfs = relative.endswith(self.lfs_suffixes) or (
                self.lfs_min_size is not None and size >= self.lfs_min_size
            )
            digest = hashlib.sha256(source.read_bytes()).hexdigest()
            entry = HubFile(
                repo=repo, commit=commit, path=relative, source=source, size=size, sha256=digest, lfs=lfs
            )
            self.files[(repo, commit, relative)] = entry
            self._by_sha[digest] = entry
            added.append(entry)
        for ref in refs:
            self.refs[(repo, ref)] = commit
        return added

    def fail_next(
        self,
        count: int,
        *,
        status: int = 503,
        retry_after: str | None = "1",
        routes: tuple[str, ...] = ("resolve", "cdn"),
    ) -> None:
        """Answer the next ``count`` requests (on ``routes``) with ``status`` and ``Retry-After``."""
        self._failures = _Failures(remaining=count, status=status, retry_after=retry_after, routes=routes)

    def corrupt(self, repo: str, path: str, enabled: bool = True) -> None:
        """Serve the bytes of one file wrong (the first byte of every body is flipped)."""
        if enabled:
            self._corrupt.add((repo, path))
        else:
            self._corrupt.discard((repo, path))

    def expire_tokens(self) -> None:
        """Make every CDN URL handed out so far expired now."""
        for token in self._tokens.values():
            token.expires = 0.0

    # ------------------------------------------------------------------ assertions

    def bytes_served(self, path: str | None = None) -> int:
        """Body bytes sent (of one repo path, or all)."""
        return sum(r.body_bytes for r in self.requests if path is None or r.path == path)

    def served_ranges(self, path: str | None = None) -> list[tuple[str, int, int]]:
        """``(path, first, last)`` of every successful ranged reply, in arrival order."""
        return [
            (r.path, r.range[0], r.range[1])
            for r in self.requests
            if r.range is not None and r.status in (200, 206) and (path is None or r.path == path)
        ]

    def count(self, *, route: str | None = None, status: int | None = None, path: str | None = None) -> int:
        """Requests matching every given criterion."""
        return sum(
            1
            for r in self.requests
            if (route is None or r.route == route)
            and (status is None or r.status == status)
            and (path is None or r.path == path)
        )

    # ------------------------------------------------------------------ handlers

    def _log(
        self, route: str, repo: str, path: str, status: int, body: int = 0, rng: tuple[int, int] | None = None
    ) -> None:
        self.requests.append(
            HubRequest(
                route=route,
                repo=repo,
                path=path,
                range=rng,
                status=status,
                body_bytes=body,
                at=time.monotonic(),
            )
        )

    def _injected(self, route: str, repo: str, path: str) -> web.Response | None:
        failures = self._failures
        if failures.remaining <= 0 or route not in failures.routes:
            return None
        failures.remaining -= 1
        headers = {"Retry-After": failures.retry_after} if failures.retry_after is not None else {}
        self._log(route, repo, path, failures.status)
        return web.Response(status=failures.status, headers=headers, text="Slow down\n")

    async def _resolve(self, request: web.Request) -> web.StreamResponse:
        repo = f"{request.match_info['org']}/{request.match_info['name']}"
        revision = request.match_info["revision"]
        path = request.match_info["path"]
        injected = self._injected("resolve", repo, path)
        if injected is not None:
            return injected
        commit = self.refs.get((repo, revision), revision)
        entry = self.files.get((repo, commit, path))
        if entry is None:
            self._log("resolve", repo, path, 404)
            return self._not_found(repo, commit, path)
        headers = {"X-Repo-Commit": commit, "ETag": f'"{entry.sha256}"'}
        if self.xet and entry.lfs:
            headers["X-Xet-Hash"] = entry.sha256
            headers["Link"] = f'<{self.url}/api/models/{repo}/xet-read-token/{commit}>; rel="xet-auth"'
        if entry.lfs:
            self._token_counter += 1
            token = f"t{self._token_counter:06d}"
            self._tokens[token] = _Token(file=entry, expires=time.monotonic() + self.token_ttl)
            expires = int(time.time() + self.token_ttl)
            cdn = f"http://{self.cdn_host}:{self.port}" if self.cdn_host else self.url
            headers["Location"] = f"{cdn}/cdn/{token}/{entry.sha256}?expires={expires}"
            headers["X-Linked-Size"] = str(entry.size)
            headers["X-Linked-Etag"] = f'"{entry.sha256}"'
            self._log("resolve", repo, path, 302)
            return web.Response(status=302, headers=headers)
        return await self._serve(request, "resolve", entry, headers)

    async def _cdn(self, request: web.Request) -> web.StreamResponse:
        token = self._tokens.get(request.match_info["token"])
        entry = token.file if token is not None else None
        repo, path = (entry.repo, entry.path) if entry is not None else ("", "")
        injected = self._injected("cdn", repo, path)
        if injected is not None:
            return injected
        if token is None or entry is None or entry.sha256 != request.match_info["blob"]:
            self._log("cdn", repo, path, 403)
            return web.Response(status=403, text="AccessDenied\n")
        if time.monotonic() >= token.expires:
            self.expired_hits += 1
            self._log("cdn", repo, path, 403)
            return web.Response(status=403, text="Request has expired\n")
        return await self._serve(request, "cdn", entry, {"ETag": f'"{entry.sha256}"'})

    async def _serve(
        self, request: web.Request, route: str, entry: HubFile, headers: dict[str, str]
    ) -> web.StreamResponse:
        size = entry.size
        header = request.headers.get("Range")
        rng: tuple[int, int] | None = None
        if header is not None and not self.ignore_range:
            try:
                rng = parse_range_header(header, size)
            except ValueError:
                self._log(route, entry.repo, entry.path, 416)
                return web.Response(status=416, headers={"Content-Range": f"bytes */{size}"})
        if self.response_delay:
            await asyncio.sleep(self.response_delay)
        first, last = rng if rng is not None else (0, size - 1)
        with entry.source.open("rb") as handle:
            handle.seek(first)
            data = bytearray(handle.read(last - first + 1))
        if (entry.repo, entry.path) in self._corrupt and data:
            data[0] ^= 0xFF
        headers = dict(headers, **{"Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"})
        if rng is not None:
            headers["Content-Range"] = f"bytes {first}-{last}/{size}"
        status = 206 if rng is not None else 200
        self._log(route, entry.repo, entry.path, status, len(data), (first, last) if size else None)
        return web.Response(status=status, body=bytes(data), headers=headers)

    # ------------------------------------------------------------------ errors and API

    def _not_found(self, repo: str, commit: str, path: str) -> web.Response:
        """The Hub's answer for an unknown repo, revision or file (its ``X-Error-Code``)."""
        if not any(key[0] == repo for key in self.files):
            code, headers = "RepoNotFound", dict[str, str]()
        elif not any(key[0] == repo and key[1] == commit for key in self.files):
            code, headers = "RevisionNotFound", {}
        else:
            code, headers = "EntryNotFound", {"X-Repo-Commit": commit}
        message = f"{code}: {repo}@{commit[:12]} {path}".strip()
        return web.Response(
            status=404,
            text=json.dumps({"error": message}),
            content_type="application/json",
            headers={"X-Error-Code": code, "X-Error-Message": message, **headers},
        )

    def _snapshot(self, request: web.Request) -> tuple[str, str, list[HubFile]] | web.Response:
        repo = f"{request.match_info['org']}/{request.match_info['name']}"
        commit = self.refs.get((repo, request.match_info.get("revision", "main")), "")
        commit = commit or request.match_info.get("revision", "")
        files = [f for (r, c, _), f in sorted(self.files.items()) if r == repo and c == commit]
        if not files:
            self._log("api", repo, "", 404)
            return self._not_found(repo, commit, "")
        return repo, commit, files

    async def _api_info(self, request: web.Request) -> web.Response:
        found = self._snapshot(request)
        if isinstance(found, web.Response):
            return found
        repo, commit, files = found
        blobs = request.query.get("blobs", "").lower() == "true"
        siblings = []
        for f in files:
            sibling: dict[str, object] = {"rfilename": f.path}
            if blobs:
                sibling.update(size=f.size, blobId=f.sha256[:40])
                if f.lfs:
                    sibling["lfs"] = {"sha256": f.sha256, "size": f.size, "pointerSize": 134}
            siblings.append(sibling)
        document = {
            "id": repo,
            "modelId": repo,
            "sha": commit,
            "private": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": siblings,
        }
        self._log("api", repo, "", 200)
        return web.json_response(document)

    async def _api_tree(self, request: web.Request) -> web.Response:
        found = self._snapshot(request)
        if isinstance(found, web.Response):
            return found
        repo, commit, files = found
        folder = request.match_info.get("path", "")
        recursive = request.query.get("recursive", "").lower() == "true"
        prefix = f"{folder}/" if folder else ""
        entries: list[dict[str, object]] = []
        folders: set[str] = set()
        for f in files:
            if not f.path.startswith(prefix):
                continue
            rest = f.path[len(prefix) :]
            parts = rest.split("/")
            for depth in range(1, len(parts)):
                if depth == 1 or recursive:
                    folders.add(prefix + "/".join(parts[:depth]))
            if len(parts) == 1 or recursive:
                entry: dict[str, object] = {
                    "type": "file",
                    "oid": f.sha256[:40],
                    "size": f.size,
                    "path": f.path,
                }
                if f.lfs:
                    entry["lfs"] = {"oid": f.sha256, "size": f.size, "pointerSize": 134}
                if self.xet and f.lfs:
                    entry["xetHash"] = f.sha256
                entries.append(entry)
        entries += [{"type": "directory", "oid": "0" * 40, "size": 0, "path": d} for d in sorted(folders)]
        if folder and not entries:
            return self._not_found(repo, commit, folder)
        start = int(request.query.get("cursor", "0"))
        page = entries[start : start + self.page_size]
        headers = {}
        if start + self.page_size < len(entries):
            next_url = request.url.update_query(cursor=str(start + self.page_size))
            headers["Link"] = f'<{next_url}>; rel="next"'
        self._log("api", repo, folder, 200)
        return web.json_response(page, headers=headers)
