"""Shared fixtures.  Reference peers are required in CI: a missing one fails there, never skips."""

from __future__ import annotations

import os
import shutil

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
