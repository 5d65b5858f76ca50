"""Kills at any moment (issue 16), the fast version: SIGKILL ``get``, ``collection update`` and
``collection publish`` after random delays, check what each kill leaves (a collection directory
always holds the old verified version or the new one, and ``collection verify`` accepts it), then
run the command again: it completes, byte-identical.  ``tools/killtest.py`` runs 20 of each."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from torrentgoat.testing.kills import kill_get, kill_publish, kill_update


@pytest.mark.slow
async def test_get_killed_at_random_moments_completes_byte_identical(tmp_path: Path) -> None:
    report = await kill_get(
        tmp_path, runs=2, rng=random.Random(1), size=8 * 1024 * 1024, rate=4 * 1024 * 1024
    )
    assert report.ok, report.failures
    assert report.runs == 2 and report.kills + report.exited_first >= 2


@pytest.mark.slow
async def test_collection_update_killed_at_random_moments_is_old_or_new_never_a_mix(tmp_path: Path) -> None:
    report = await kill_update(tmp_path, runs=1, rng=random.Random(2), shard=1024 * 1024)
    assert report.ok, report.failures
    assert report.runs == 1 and report.checks == report.kills


@pytest.mark.slow
async def test_collection_publish_killed_at_random_moments_is_old_or_new_never_a_mix(tmp_path: Path) -> None:
    report = await kill_publish(tmp_path, runs=2, rng=random.Random(3), shard=256 * 1024)
    assert report.ok, report.failures
    assert report.runs == 2 and report.checks == report.kills
