"""Where the Hugging Face Hub is: its URL and the local cache folder ``huggingface_hub`` uses.

Plain values with no import beyond the standard library, so the command line can show them as option
defaults without loading the collection code.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DEFAULT_HUB", "default_hf_cache"]

DEFAULT_HUB = "https://huggingface.co"
"""The Hugging Face hub; BEP 19 web seeds point at its ``resolve`` URLs."""


def default_hf_cache() -> Path:
    """``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub`` (as huggingface_hub)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "huggingface" / "hub"
