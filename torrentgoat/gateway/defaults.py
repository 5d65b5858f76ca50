"""The gateway's default settings, as plain values (no import), so the command line can show them as
option defaults without loading aiohttp, the session and the rest of the gateway."""

from __future__ import annotations

__all__ = ["DEFAULT_REFRESH", "DEFAULT_UPSTREAM"]

DEFAULT_UPSTREAM = "https://huggingface.co"
"""The hub every repo not served locally is passed through to."""

DEFAULT_REFRESH = 300.0
"""Seconds between re-resolutions of followed collections (BEP 46 items)."""
