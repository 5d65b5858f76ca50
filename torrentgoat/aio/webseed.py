"""BEP 19 web seeds over HTTP (level L4): the client for one ``url-list`` entry, with aiohttp.

A web seed is an ordinary HTTP server holding the torrent's files; a client reads byte ranges of
them with ``Range`` requests and puts the bytes into pieces like a permanently unchoked seed would
(BEP 19, "Rationale").  This module maps torrent byte ranges onto file URLs and performs the
requests; which blocks to ask for is the torrent's business
(:class:`torrentgoat.torrent.webseed.WebSeedSource`).

Rules kept here:

* **URL mapping** (BEP 19, "Metadata Extension"): an entry ending in ``/`` gets the torrent's name
  appended, and for a multi-file torrent the file's path below it, ``/``-joined; each appended
  component is percent-encoded on its own.  A single-file torrent's entry not ending in ``/`` is the
  file itself; a multi-file entry without the slash is treated as the directory it names.
* **Ranges**: a torrent byte range is split per file (:func:`map_range`); BEP 47 pad files are
  never requested, their bytes are zeros filled in locally.  A reply must be ``206`` with a
  ``Content-Range`` naming exactly the bytes asked for (and the file's size, when given), carrying
  exactly that many bytes.  A ``200`` (a server that ignores ``Range``) is accepted only when the
  range ends within :attr:`WebSeedConfig.full_body_limit` bytes, and the body is read only that far.
* **Redirects** are followed by hand (at most :attr:`WebSeedConfig.max_redirects`, http/https
  only), and the final URL is cached per file: the Hugging Face hub redirects LFS files to expiring
  CDN URLs.  A ``401``/``403``/``404``/``410`` from a cached target means it expired: the file is
  resolved again from its original URL, once.
* **Back-off**: ``503``/``429`` with ``Retry-After`` (seconds or an HTTP date) pause the URL that
  long (capped by :attr:`WebSeedConfig.max_retry_after`); connection errors, time-outs, other
  ``5xx`` and truncated bodies pause it exponentially.  After
  :attr:`WebSeedConfig.max_consecutive_failures` such failures in a row the URL is dropped.
* Anything else wrong (``4xx`` from the original URL, a wrong ``Content-Range``, a compressed or
  over-long body, a size mismatch) drops the URL for this torrent: :class:`WebSeedRejected`.

Every failure is a :class:`~torrentgoat.errors.WebSeedError` naming the URL and what was wrong:
:class:`WebSeedRetryLater` (transient, with ``retry_at``) or :class:`WebSeedRejected` (final).
"""

from __future__ import annotations

import asyncio
import bisect
import email.utils
import re
import time
import urllib.parse
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

from torrentgoat.errors import ConfigError, WebSeedError
from torrentgoat.metainfo import InfoDict

if TYPE_CHECKING:  # aiohttp (and yarl) are imported when a web seed is used: ~11 MiB and ~0.2 s otherwise
    import aiohttp
    import yarl

__all__ = [
    "FileSpan",
    "WebSeedClient",
    "WebSeedConfig",
    "WebSeedRejected",
    "WebSeedRetryLater",
    "WebSeedStats",
    "file_url",
    "map_range",
    "parse_content_range",
    "parse_retry_after",
]

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_EXPIRED = frozenset({401, 403, 404, 410})
_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d{1,20})-(\d{1,20})/(\d{1,20}|\*)\s*$", re.IGNORECASE)
_READ_CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class WebSeedConfig:
    """Limits and timings of the requests to one web seed URL."""

    connect_timeout: float = 15.0
    """Seconds to open a connection."""
    read_timeout: float = 30.0
    """Seconds without receiving anything before a request is abandoned."""
    min_rate: int = 8 * 1024
    """Bytes per second a response must average; bounds a request's total time with the timeouts."""
    max_redirects: int = 5
    """Redirects followed from a file's URL (the hub needs one)."""
    max_request_bytes: int = 64 * 1024 * 1024
    """Largest byte range asked for in one request (bounds the memory of a response)."""
    full_body_limit: int = 16 * 1024 * 1024
    """A ``200`` with the whole file instead of a ``206`` is used only when the range wanted ends
    within this many bytes of the file's start (only that prefix is read); else the URL is dropped."""
    backoff_initial: float = 1.0
    """First pause after a connection error or a ``5xx`` without ``Retry-After`` (doubles each time)."""
    backoff_max: float = 120.0
    """Longest exponential pause."""
    max_retry_after: float = 600.0
    """Longest pause a server's ``Retry-After`` may impose."""
    max_consecutive_failures: int = 8
    """Transient failures in a row after which the URL is dropped (0: never)."""
    user_agent: str = "torrentgoat/0.1 (BEP 19)"

    def __post_init__(self) -> None:
        if self.connect_timeout <= 0 or self.read_timeout <= 0 or self.min_rate <= 0:
            raise ConfigError("web seed timeouts and min_rate must be positive")
        if self.max_redirects < 0 or self.max_request_bytes < 1 or self.full_body_limit < 0:
            raise ConfigError("web seed limits must not be negative")
        if self.backoff_initial <= 0 or self.backoff_max < self.backoff_initial or self.max_retry_after < 0:
            raise ConfigError("web seed back-off must be positive and backoff_max >= backoff_initial")
        if self.max_consecutive_failures < 0:
            raise ConfigError("max_consecutive_failures must be >= 0")


class WebSeedRetryLater(WebSeedError):
    """A transient failure: the URL pauses until ``retry_at`` (event-loop time)."""

    def __init__(self, message: str, *, retry_at: float) -> None:
        super().__init__(message)
        self.retry_at = retry_at


class WebSeedRejected(WebSeedError):
    """The URL broke a rule or does not serve this torrent: it is dropped for this torrent."""


@dataclass(slots=True, kw_only=True)
class WebSeedStats:
    """Counters of one web seed URL (for progress displays and tests)."""

    requests: int = 0
    """HTTP requests sent (redirect hops included)."""
    bytes_received: int = 0
    """Body bytes of successful range replies."""
    redirects: int = 0
    reresolved: int = 0
    """Cached redirect targets found expired and resolved again."""
    failures: int = 0
    """Transient failures (each followed by a pause)."""
    last_error: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class FileSpan:
    """The part of a torrent byte range that lies in one file."""

    file_index: int
    file_offset: int
    """First byte in the file."""
    length: int
    offset: int
    """Position of the span in the requested range."""
    pad: bool
    """A BEP 47 pad file: zeros, never requested."""


def map_range(info: InfoDict, start: int, length: int) -> list[FileSpan]:
    """Split the torrent bytes ``[start, start + length)`` per file (BEP 3 files are concatenated)."""
    if start < 0 or length < 0 or start + length > info.total_length:
        raise ConfigError(f"range {start}+{length} outside a torrent of {info.total_length} bytes")
    files = info.files
    ends = [f.end for f in files]
    index = bisect.bisect_right(ends, start)
    out: list[FileSpan] = []
    pos = start
    stop = start + length
    while pos < stop:
        entry = files[index]
        if entry.length:
            take = min(entry.end, stop) - pos
            out.append(
                FileSpan(
                    file_index=index,
                    file_offset=pos - entry.offset,
                    length=take,
                    offset=pos - start,
                    pad=entry.pad,
                )
            )
            pos += take
        index += 1
    return out


def file_url(base: str, info: InfoDict, index: int) -> str:
    """The URL of file ``index`` at the web seed ``base`` (BEP 19 url-list mapping).

    Appended components (the name, the path) are percent-encoded one by one; ``base`` is used as it
    is (it is a URL already).
    """
    quote = _quote
    if info.single_file:
        return base + quote(info.name) if base.endswith("/") else base
    if not base.endswith("/"):
        base += "/"
    entry = info.files[index]
    return base + "/".join(quote(part) for part in entry.renamed_from or entry.path)  # the torrent's names


def _quote(component: str) -> str:
    return urllib.parse.quote(component, safe="")


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Seconds to wait from an HTTP ``Retry-After`` (delta-seconds or an HTTP date; RFC 9110 10.2.3).

    ``now`` is the wall-clock time (seconds since the epoch) a date is measured from.  ``None`` when
    absent or unreadable; never negative.
    """
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(min(int(text), 10**9))
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


def parse_content_range(value: str | None) -> tuple[int, int, int | None] | None:
    """``bytes first-last/total`` (RFC 9110 14.4) as ``(first, last, total or None)``; None if invalid."""
    if value is None:
        return None
    match = _CONTENT_RANGE.match(value)
    if match is None:
        return None
    first, last = int(match.group(1)), int(match.group(2))
    total = None if match.group(3) == "*" else int(match.group(3))
    if first > last or (total is not None and last >= total):
        return None
    return first, last, total


class _Status(Exception):
    """An HTTP status other than a success or a redirect (internal)."""

    def __init__(self, status: int, url: yarl.URL, retry_after: str | None) -> None:
        super().__init__(status)
        self.status = status
        self.url = url
        self.retry_after = retry_after


class WebSeedClient:
    """Reads byte ranges of one torrent from one web seed URL (BEP 19).

    ``fetch(start, length)`` returns the torrent's bytes ``[start, start + length)`` or raises a
    :class:`~torrentgoat.errors.WebSeedError`.  Several fetches may run at once (they share the
    redirect cache and the back-off state).  ``session`` is an :class:`aiohttp.ClientSession` the
    caller owns.
    """

    def __init__(
        self,
        url: str,
        info: InfoDict,
        session: aiohttp.ClientSession,
        *,
        config: WebSeedConfig | None = None,
    ) -> None:
        try:
            parsed = urllib.parse.urlsplit(url)
        except ValueError:  # an unbalanced '[' or ']' in a torrent's url-list or a magnet's ws=
            raise WebSeedRejected(f"web seed {url!r}: not a valid URL") from None
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise WebSeedRejected(f"web seed {url!r}: only http:// and https:// URLs are supported")
        self.url = url
        self.info = info
        self.session = session
        self.config = config or WebSeedConfig()
        self.stats = WebSeedStats()
        self.retry_at = 0.0
        """Event-loop time before which this URL should not be asked again."""
        self.dropped: str = ""
        """Why the URL was dropped for this torrent ("" while it is in use)."""
        self._failures = 0
        self._urls: dict[int, yarl.URL] = {}
        self._final: dict[int, yarl.URL] = {}

    # ------------------------------------------------------------------ state

    def drop(self, reason: str) -> None:
        """Stop using this URL for this torrent (BEP 19: after bad data, or when it cannot serve us)."""
        if not self.dropped:
            self.dropped = reason

    def original_url(self, index: int) -> yarl.URL:
        url = self._urls.get(index)
        if url is None:
            import yarl

            url = self._urls[index] = yarl.URL(file_url(self.url, self.info, index), encoded=True)
        return url

    def cached_url(self, index: int) -> yarl.URL | None:
        """Where the last redirect of file ``index`` led (None: not redirected or not resolved yet)."""
        return self._final.get(index)

    # ------------------------------------------------------------------ fetching

    async def fetch(self, start: int, length: int) -> bytearray:
        """The torrent's bytes ``[start, start + length)``: pad files zero, other files over HTTP."""
        if self.dropped:
            raise WebSeedRejected(f"web seed {self.url}: dropped ({self.dropped})")
        if length > self.config.max_request_bytes:
            raise ConfigError(f"web seed range of {length} bytes exceeds {self.config.max_request_bytes}")
        spans = map_range(self.info, start, length)
        out = bytearray(length)
        view = memoryview(out)
        try:
            for span in spans:
                if span.pad:
                    continue  # BEP 47: pad bytes are zeros and never requested
                await self._fetch_file(
                    span.file_index, span.file_offset, view[span.offset : span.offset + span.length]
                )
        except WebSeedRejected as exc:
            self.drop(str(exc))
            raise
        self._failures = 0
        return out

    async def _fetch_file(self, index: int, offset: int, out: memoryview) -> None:
        import aiohttp

        original = self.original_url(index)
        cached = self._final.get(index)
        try:
            try:
                final = await self._request(cached or original, index, offset, out)
            except _Status as exc:
                if cached is None or exc.status not in _EXPIRED:
                    raise
                # the redirect target expired (signed CDN URLs do): resolve the file again, once
                self._final.pop(index, None)
                self.stats.reresolved += 1
                final = await self._request(original, index, offset, out)
        except _Status as exc:
            self._final.pop(index, None)
            self._status_failure(exc, original)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            self._final.pop(index, None)
            self._backoff(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
        if final != original:
            self._final[index] = final
        else:
            self._final.pop(index, None)

    async def _request(self, url: yarl.URL, index: int, offset: int, out: memoryview) -> yarl.URL:
        """GET one range of file ``index`` at ``url``, following redirects; returns the final URL."""
        import aiohttp
        import yarl

        config = self.config
        length = len(out)
        headers = {
            "Range": f"bytes={offset}-{offset + length - 1}",
            "Accept-Encoding": "identity",
            "User-Agent": config.user_agent,
        }
        timeout = aiohttp.ClientTimeout(
            total=config.connect_timeout + config.read_timeout + length / config.min_rate,
            sock_connect=config.connect_timeout,
            sock_read=config.read_timeout,
        )
        for _hop in range(config.max_redirects + 1):
            self.stats.requests += 1
            async with self.session.get(
                url, headers=headers, allow_redirects=False, auto_decompress=False, timeout=timeout
            ) as response:
                status = response.status
                if status in _REDIRECTS:
                    location = response.headers.get("Location")
                    if not location:
                        raise WebSeedRejected(f"web seed {url}: HTTP {status} redirect without a Location")
                    try:
                        target = url.join(yarl.URL(location))
                    except ValueError as exc:
                        raise WebSeedRejected(f"web seed {url}: bad redirect Location {location!r}") from exc
                    if target.scheme not in ("http", "https") or not target.host:
                        raise WebSeedRejected(f"web seed {url}: redirect to a non-HTTP URL {location!r}")
                    self.stats.redirects += 1
                    url = target
                    continue
                if status in (200, 206):
                    await self._read_body(response, url, index, offset, out)
                    return url
                raise _Status(status, url, response.headers.get("Retry-After"))
        raise WebSeedRejected(
            f"web seed {self.original_url(index)}: more than {config.max_redirects} redirects"
        )

    async def _read_body(
        self, response: Any, url: yarl.URL, index: int, offset: int, out: memoryview
    ) -> None:
        entry = self.info.files[index]
        length = len(out)
        encoding = response.headers.get("Content-Encoding", "").strip().lower()
        if encoding not in ("", "identity"):
            raise WebSeedRejected(f"web seed {url}: compressed body ({encoding}) for a range request")
        if response.status == 206:
            parsed = parse_content_range(response.headers.get("Content-Range"))
            if parsed is None:
                raise WebSeedRejected(
                    f"web seed {url}: 206 without a valid Content-Range "
                    f"({response.headers.get('Content-Range')!r})"
                )
            first, last, total = parsed
            if (first, last) != (offset, offset + length - 1):
                raise WebSeedRejected(
                    f"web seed {url}: sent bytes {first}-{last}, asked for {offset}-{offset + length - 1}"
                )
            if total is not None and total != entry.length:
                raise WebSeedRejected(
                    f"web seed {url}: the file is {total} bytes there, the torrent says {entry.length}"
                )
            skip, expected, need = 0, length, length
        else:
            # the whole file instead of a range: read only as far as the range ends, if that is near
            if offset + length > self.config.full_body_limit:
                raise WebSeedRejected(
                    f"web seed {url}: ignores Range requests (HTTP 200 for a {entry.length}-byte file; "
                    f"bytes {offset}-{offset + length - 1} wanted)"
                )
            skip, expected, need = offset, entry.length, offset + length
        declared = response.content_length
        if declared is not None and declared != expected:
            raise WebSeedRejected(f"web seed {url}: Content-Length {declared}, expected {expected} bytes")
        received = 0
        stream = response.content
        while received < need:
            chunk = await stream.read(min(_READ_CHUNK, need - received))
            if not chunk:
                break
            lo = max(received, skip)
            hi = min(received + len(chunk), skip + length)
            if lo < hi:
                out[lo - skip : hi - skip] = chunk[lo - received : hi - received]
            received += len(chunk)
        if received < need:
            import aiohttp

            raise aiohttp.ClientPayloadError(f"body truncated at {received} of {expected} bytes")
        if need < expected:
            response.close()  # the rest of a whole-file reply is not needed: do not reuse the connection
        elif await stream.read(1):
            raise WebSeedRejected(f"web seed {url}: body longer than the {expected} bytes asked for")
        self.stats.bytes_received += length

    # ------------------------------------------------------------------ failures

    def _status_failure(self, exc: _Status, original: yarl.URL) -> NoReturn:
        status = exc.status
        where = exc.url
        if status in (429, 503):
            wait = parse_retry_after(exc.retry_after, now=time.time())
            self._backoff(f"HTTP {status} from {where}", retry_after=wait)
        if status >= 500 or status == 408:
            self._backoff(f"HTTP {status} from {where}")
        if status in _EXPIRED and where != original:
            # a target we had just been redirected to refused us: odd CDN state, not the seed's fault
            self._backoff(f"HTTP {status} from redirect target {where}")
        reason = f"HTTP {status} for {original}" + (f" (redirected to {where})" if where != original else "")
        self.drop(reason)
        raise WebSeedRejected(f"web seed {self.url}: {reason}")

    def _backoff(self, reason: str, *, retry_after: float | None = None) -> NoReturn:
        """Pause the URL (``Retry-After`` or exponential) and raise :class:`WebSeedRetryLater`.

        A server that says when to come back (``Retry-After``) is busy, not broken: those pauses do
        not count towards :attr:`WebSeedConfig.max_consecutive_failures`.
        """
        config = self.config
        self.stats.failures += 1
        self.stats.last_error = reason
        if retry_after is None:
            self._failures += 1
        if config.max_consecutive_failures and self._failures >= config.max_consecutive_failures:
            self.drop(f"{self._failures} failures in a row, last: {reason}")
            raise WebSeedRejected(f"web seed {self.url}: dropped after {self._failures} failures ({reason})")
        if retry_after is not None:
            delay = min(retry_after, config.max_retry_after)
        else:
            delay = min(config.backoff_max, config.backoff_initial * 2 ** min(self._failures - 1, 30))
        now = asyncio.get_running_loop().time()
        self.retry_at = max(self.retry_at, now + delay)
        raise WebSeedRetryLater(
            f"web seed {self.url}: {reason}; retrying in {delay:.1f} s", retry_at=self.retry_at
        )
