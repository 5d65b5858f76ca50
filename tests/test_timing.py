"""Deadlines of condition waits stretch with the machine's load (torrentgoat.testing.timing)."""

from __future__ import annotations

import os

import pytest

from torrentgoat.testing import timing


def test_idle_machine_keeps_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TG_TEST_TIMEOUT_SCALE", raising=False)
    monkeypatch.setattr(os, "getloadavg", lambda: (0.3, 0.2, 0.1))
    assert timing.scaled(10) == 10


def test_load_per_core_stretches_it_up_to_a_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TG_TEST_TIMEOUT_SCALE", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(os, "getloadavg", lambda: (6.0, 1.0, 1.0))
    assert timing.scaled(10) == 30
    monkeypatch.setattr(os, "getloadavg", lambda: (500.0, 1.0, 1.0))
    assert timing.load_factor() == timing.MAX_FACTOR


def test_environment_fixes_the_factor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TG_TEST_TIMEOUT_SCALE", "2.5")
    assert timing.scaled(4) == 10
    monkeypatch.setenv("TG_TEST_TIMEOUT_SCALE", "bogus")
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert timing.load_factor() == 1.0
