"""Every fuzz target, registered by importing the modules that define them (see :data:`TARGETS`)."""

from __future__ import annotations

from tools.fuzz import (
    targets_codecs,
    targets_hashes,
    targets_models,
    targets_mse,
    targets_utp,
    targets_wire,
    targets_wire_send,
)
from tools.fuzz.harness import TARGETS, Target

__all__ = ["TARGETS", "Target", "modules"]

modules = (
    targets_codecs,
    targets_hashes,
    targets_wire,
    targets_wire_send,
    targets_mse,
    targets_utp,
    targets_models,
)
"""The modules whose import fills :data:`TARGETS` (listed so the import is not unused)."""
