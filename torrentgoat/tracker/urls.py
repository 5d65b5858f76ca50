"""Tracker URLs, level L2: which transport, where, and the scrape convention.

``http``/``https`` trackers follow BEP 3, ``udp`` trackers BEP 15 (with the BEP 41 path and query
carried as a request option).  The scrape URL is derived from the announce URL by the convention
of BEP 48: the last path component must start with ``announce``, which becomes ``scrape``.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass

from torrentgoat.errors import TrackerError

__all__ = ["SUPPORTED_SCHEMES", "TrackerURL", "parse_tracker_url", "scrape_url"]

SUPPORTED_SCHEMES = frozenset({"http", "https", "udp"})
"""Transports torrentgoat can announce over."""

_MAX_URL_LENGTH = 4096


@dataclass(frozen=True, slots=True, kw_only=True)
class TrackerURL:
    """A parsed tracker URL.  ``host`` is a DNS name or an IP literal without brackets.

    ``request_path`` is the path plus ``?query`` (what BEP 41 sends to UDP trackers; for HTTP it
    is informational).
    """

    url: str
    scheme: str
    host: str
    port: int
    request_path: str

    @property
    def is_udp(self) -> bool:
        return self.scheme == "udp"


def parse_tracker_url(url: str) -> TrackerURL:
    """Split ``url``; unsupported schemes, missing hosts and bad ports are TrackerErrors.

    UDP URLs must name a port (BEP 15 has no default); HTTP defaults to 80 and HTTPS to 443.
    """
    if not isinstance(url, str) or not url or len(url) > _MAX_URL_LENGTH:
        raise TrackerError(f"tracker URL missing or longer than {_MAX_URL_LENGTH} characters")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        raise TrackerError(f"tracker URL contains whitespace or control characters: {url[:80]!r}")
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise TrackerError(f"malformed tracker URL {url[:80]!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in SUPPORTED_SCHEMES:
        raise TrackerError(f"unsupported tracker scheme {scheme!r} in {url[:80]!r}")
    host = parts.hostname
    if not host:
        raise TrackerError(f"tracker URL has no host: {url[:80]!r}")
    if port is None:
        if scheme == "udp":
            raise TrackerError(f"UDP tracker URL has no port: {url[:80]!r}")
        port = 443 if scheme == "https" else 80
    if port == 0:
        raise TrackerError(f"tracker URL has port 0: {url[:80]!r}")
    request_path = parts.path or "/"
    if parts.query:
        request_path += "?" + parts.query
    return TrackerURL(url=url, scheme=scheme, host=host, port=port, request_path=request_path)


def scrape_url(announce_url: str) -> str | None:
    """The scrape URL by convention (BEP 48), or ``None`` when the tracker cannot be scraped.

    ``http://t/x/announce?k=1`` -> ``http://t/x/scrape?k=1``; ``http://t/announce.php`` ->
    ``http://t/scrape.php``.  UDP trackers scrape over the same endpoint (BEP 15), so their URL is
    returned unchanged.
    """
    parsed = parse_tracker_url(announce_url)
    if parsed.is_udp:
        return announce_url
    parts = urllib.parse.urlsplit(announce_url)
    head, _, last = parts.path.rpartition("/")
    if not last.startswith("announce"):
        return None
    path = f"{head}/scrape{last[len('announce') :]}"
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))
