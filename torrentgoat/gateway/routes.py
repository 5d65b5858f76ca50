"""The Hub's URL space, parsed from the raw request target (pure, no I/O).

Routes ``huggingface_hub`` uses to download (``file_download.py``, ``hf_api.py``):

* ``HEAD|GET /[{datasets|spaces|models}/]{repo_id}/resolve/{revision}/{path}`` -- a file
  (``hf_hub_url``: the revision is percent-encoded with ``safe=""``, so ``refs/pr/1`` arrives as one
  segment ``refs%2Fpr%2F1``; the path with ``safe="/"``);
* ``GET /api/{models|datasets|spaces}/{repo_id}`` and ``.../revision/{revision}`` -- repo info
  (``repo_info``, ``model_info``; ``?blobs=true`` is ``files_metadata=True``);
* ``GET /api/{models|datasets|spaces}/{repo_id}/tree/{revision}[/{path}]`` -- a listing
  (``list_repo_tree``, ``list_repo_files``, ``snapshot_download``; ``?recursive=``, ``?cursor=``).

``repo_id`` is ``name`` or ``namespace/name``.  The target is split on ``/`` *before* each segment
is percent-decoded, so an encoded ``%2e%2e`` or ``%2F`` is judged after decoding, like the literal
form; every path and revision then goes through :func:`~torrentgoat.gateway.source.check_repo_path`
and every repo id through :func:`~torrentgoat.gateway.source.check_repo_id`.  Malformed targets raise
:class:`~torrentgoat.errors.InvalidRequestError` (HTTP 400).

Byte ranges follow RFC 9110 section 14: one ``bytes=`` range is honoured; several ranges or a
syntactically invalid header are ignored (the whole file is sent, as RFC 9110 14.2 allows); a
range that starts past the end is unsatisfiable (416).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

from torrentgoat.errors import InvalidRequestError
from torrentgoat.gateway.source import RepoType, check_repo_id, check_repo_path

__all__ = [
    "API_TYPES",
    "RESOLVE_PREFIXES",
    "ByteRange",
    "InfoRoute",
    "RangeNotSatisfiable",
    "ResolveRoute",
    "Route",
    "TreeRoute",
    "parse_range",
    "parse_target",
    "query_flag",
]

RESOLVE_PREFIXES: dict[str, RepoType] = {"models": "model", "datasets": "dataset", "spaces": "space"}
"""URL prefixes of non-default repo types in ``/{prefix}/{repo}/resolve/...`` (``constants.REPO_TYPES_URL_PREFIXES``)."""
API_TYPES: dict[str, RepoType] = {"models": "model", "datasets": "dataset", "spaces": "space"}
"""``/api/{plural}/...``."""
_API_KEYWORDS = frozenset({"revision", "tree", "resolve", "paths-info", "refs", "commits", "discussions"})
_MAX_TARGET = 8192
_DIGITS = re.compile(r"[0-9]{1,19}")


@dataclass(frozen=True, slots=True, kw_only=True)
class ResolveRoute:
    """``/{repo}/resolve/{revision}/{path}``: one file."""

    repo_type: RepoType
    repo_id: str
    revision: str
    path: str


@dataclass(frozen=True, slots=True, kw_only=True)
class InfoRoute:
    """``/api/{type}s/{repo}[/revision/{revision}]``: repo info; ``revision`` None means the default branch."""

    repo_type: RepoType
    repo_id: str
    revision: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class TreeRoute:
    """``/api/{type}s/{repo}/tree/{revision}[/{path}]``: a folder listing (``path`` "" is the root)."""

    repo_type: RepoType
    repo_id: str
    revision: str
    path: str


Route = ResolveRoute | InfoRoute | TreeRoute


def _decode(segment: str) -> str:
    try:
        return unquote(segment, errors="strict")
    except UnicodeDecodeError:
        raise InvalidRequestError("request path is not valid UTF-8 once percent-decoded") from None


def _revision(text: str) -> str:
    if len(text) > 255:
        raise InvalidRequestError("revision too long")
    try:
        return check_repo_path(text)
    except InvalidRequestError:
        raise InvalidRequestError(f"invalid revision {text[:80]!r}") from None


def _split(raw_path: str) -> list[str]:
    if len(raw_path) > _MAX_TARGET:
        raise InvalidRequestError("request target too long")
    if not raw_path.startswith("/"):
        raise InvalidRequestError("request target must be an absolute path")
    return [_decode(segment) for segment in raw_path[1:].split("/")]


def parse_target(raw_path: str) -> Route | None:
    """The route of a raw request path (no query string), None when it is not one the gateway serves.

    InvalidRequestError when it is one of ours but malformed or unsafe.
    """
    segments = _split(raw_path)
    if segments and segments[0] == "api":
        return _parse_api(segments[1:])
    return _parse_resolve(segments)


def _parse_resolve(segments: list[str]) -> ResolveRoute | None:
    repo_type: RepoType = "model"
    if len(segments) >= 4 and segments[0] in RESOLVE_PREFIXES and "resolve" in segments[2:4]:
        repo_type = RESOLVE_PREFIXES[segments[0]]
        segments = segments[1:]
    if len(segments) >= 4 and segments[2] == "resolve":
        repo_parts, rest = segments[:2], segments[3:]
    elif len(segments) >= 3 and segments[1] == "resolve":
        repo_parts, rest = segments[:1], segments[2:]
    else:
        return None
    repo_id = check_repo_id("/".join(repo_parts))
    if len(rest) < 2:
        raise InvalidRequestError(
            "a resolve URL names a revision and a file: /{repo}/resolve/{revision}/{path}"
        )
    revision = _revision(rest[0])
    path = check_repo_path("/".join(rest[1:]))
    return ResolveRoute(repo_type=repo_type, repo_id=repo_id, revision=revision, path=path)


def _parse_api(segments: list[str]) -> InfoRoute | TreeRoute | None:
    if not segments or segments[0] not in API_TYPES:
        return None
    repo_type = API_TYPES[segments[0]]
    rest = segments[1:]
    if len(rest) >= 3 and rest[2] in _API_KEYWORDS:
        repo_parts, sub = rest[:2], rest[2:]
    elif len(rest) >= 2 and rest[1] in _API_KEYWORDS:
        repo_parts, sub = rest[:1], rest[1:]
    elif 1 <= len(rest) <= 2:
        repo_parts, sub = rest, []
    else:
        return None
    repo_id = check_repo_id("/".join(repo_parts))
    if not sub:
        return InfoRoute(repo_type=repo_type, repo_id=repo_id, revision=None)
    if sub[0] == "revision" and len(sub) == 2:
        return InfoRoute(repo_type=repo_type, repo_id=repo_id, revision=_revision(sub[1]))
    if sub[0] == "tree" and len(sub) >= 2:
        revision = _revision(sub[1])
        tail = "/".join(sub[2:])
        path = check_repo_path(tail) if tail else ""
        return TreeRoute(repo_type=repo_type, repo_id=repo_id, revision=revision, path=path)
    return None


def query_flag(value: str | None) -> bool:
    """A boolean query parameter as clients send it (``true``/``True``/``1``; requests writes ``True``)."""
    return value is not None and value.strip().lower() in ("1", "true", "yes")


ByteRange = tuple[int, int]
"""``(start, stop)``: bytes ``start`` .. ``stop - 1``."""


class RangeNotSatisfiable(Exception):
    """A ``Range`` no byte of the file satisfies (answer 416 with ``Content-Range: bytes */size``)."""


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The one byte range to send, or None for the whole file (RFC 9110 14.1.2, 14.2).

    RangeNotSatisfiable when the (single, well-formed) range selects no byte of a ``size``-byte file.
    """
    if header is None:
        return None
    text = header.strip()
    unit, sep, spec = text.partition("=")
    if not sep or unit.strip().lower() != "bytes":
        return None
    spec = spec.strip()
    if "," in spec:
        return None  # multiple ranges: we may ignore the header and send everything
    first_text, dash, last_text = spec.partition("-")
    first_text, last_text = first_text.strip(), last_text.strip()
    if not dash or any(t and not _DIGITS.fullmatch(t) for t in (first_text, last_text)):
        return None
    if not first_text:
        if not last_text:
            return None
        suffix = int(last_text)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable(f"suffix range {suffix} of a {size}-byte file")
        return (max(size - suffix, 0), size)
    first = int(first_text)
    if last_text and int(last_text) < first:
        return None  # invalid: ignored
    if first >= size:
        raise RangeNotSatisfiable(f"range starts at {first} of a {size}-byte file")
    stop = size if not last_text else min(int(last_text) + 1, size)
    return (first, stop)
