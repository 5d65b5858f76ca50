"""HTTP answers in the Hub's dialect (pure: status, headers and body, no I/O).

``huggingface_hub`` (``utils/_http.py``, ``hf_raise_for_status``) picks its exception from the
``X-Error-Code`` header before it looks at the status: ``RepoNotFound`` -> ``RepositoryNotFoundError``,
``RevisionNotFound`` -> ``RevisionNotFoundError``, ``EntryNotFound`` -> ``(Remote)EntryNotFoundError``;
otherwise 400 -> ``BadRequestError`` and any other status -> ``HfHubHTTPError``.  The server's message
(``X-Error-Message``, or ``{"error": ...}`` in a JSON body) is appended to the exception's text.

How a HEAD error reaches the user matters: ``hf_hub_download`` re-raises ``RevisionNotFoundError``
and ``EntryNotFoundError`` from its metadata call at once, and ``RepositoryNotFoundError`` once it
found nothing in the local cache; every *other* HTTP error is swallowed into a
``LocalEntryNotFoundError`` ("check your connection").  So a file refused by the unsafe-format policy
is answered ``403`` with ``X-Error-Code: EntryNotFound`` and the reason in ``X-Error-Message``: the
client raises ``EntryNotFoundError`` whose text says why and what to do, in every version (0.20 to
today), and ``file_exists()`` says False.  No ``X-Repo-Commit`` on that answer, so the client does not
record the file as absent from the commit (``.no_exist``) -- it is, after all, there.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from urllib.parse import quote

from torrentgoat.errors import (
    EntryNotFoundError,
    GatewayError,
    InvalidRequestError,
    RepoNotFoundError,
    RevisionNotFoundError,
    SourceUnavailableError,
    UpstreamError,
)
from torrentgoat.gateway.source import RepoFile, RepoSnapshot

__all__ = [
    "Answer",
    "content_disposition",
    "error_answer",
    "file_headers",
    "header_safe",
    "refusal_answer",
]

_MAX_MESSAGE = 2000


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    """A complete small HTTP answer."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


def header_safe(text: str, limit: int = _MAX_MESSAGE) -> str:
    """One line of printable ASCII (non-ASCII escaped, CR/LF and controls replaced), at most ``limit`` chars."""
    ascii_text = text.encode("ascii", errors="backslashreplace").decode("ascii")
    cleaned = "".join(c if 0x20 <= ord(c) < 0x7F else " " for c in ascii_text)
    return cleaned[:limit]


def _json_error(status: int, message: str, headers: dict[str, str]) -> Answer:
    line = header_safe(message)
    headers = {"X-Error-Message": line, "Content-Type": "application/json", **headers}
    return Answer(status=status, headers=headers, body=json.dumps({"error": line}).encode())


def error_answer(error: GatewayError, *, commit: str | None = None) -> Answer:
    """The Hub's answer to a request that failed with ``error``."""
    headers: dict[str, str] = {}
    match error:
        case RepoNotFoundError():
            status, headers["X-Error-Code"] = 404, "RepoNotFound"
        case RevisionNotFoundError():
            status, headers["X-Error-Code"] = 404, "RevisionNotFound"
        case EntryNotFoundError():
            status, headers["X-Error-Code"] = 404, "EntryNotFound"
            if commit is not None:
                headers["X-Repo-Commit"] = commit
        case InvalidRequestError():
            status = 400
        case SourceUnavailableError():
            status, headers["Retry-After"] = 503, "5"
        case UpstreamError():
            status = 502
        case _:
            status = 500
    return _json_error(status, str(error), headers)


def refusal_answer(message: str) -> Answer:
    """A file the unsafe-format policy refuses (see the module docstring for why 403 + EntryNotFound)."""
    return _json_error(403, f"torrentgoat gateway: {message}", {"X-Error-Code": "EntryNotFound"})


def content_disposition(path: str) -> str:
    """``inline; filename*=UTF-8''...; filename="...";`` as the Hub sends it (the name shown in progress bars)."""
    name = path.rsplit("/", 1)[-1]
    fallback = header_safe(name).replace('"', "_").replace("\\", "_")
    return f"inline; filename*=UTF-8''{quote(name, safe='')}; filename=\"{fallback}\";"


def file_headers(snapshot: RepoSnapshot, entry: RepoFile) -> dict[str, str]:
    """Headers of a file answer (``resolve``), before ``Content-Length`` / ``Content-Range``.

    ``X-Repo-Commit`` names the commit (``huggingface_hub`` refuses an answer without it); ``ETag`` is
    the git blob id of a small file or the SHA-256 of an LFS file, which ``X-Linked-Etag`` and
    ``X-Linked-Size`` also carry for LFS files as on the Hub.  No Xet header, ever.
    """
    headers = {
        "X-Repo-Commit": snapshot.commit,
        "ETag": f'"{entry.etag}"',
        "Accept-Ranges": "bytes",
        "Content-Type": "application/octet-stream",
        "Content-Disposition": content_disposition(entry.path),
    }
    if entry.lfs:
        headers["X-Linked-Etag"] = f'"{entry.etag}"'
        headers["X-Linked-Size"] = str(entry.size)
    return headers
