"""The collection's single commit point, crashed at every step (issue 16, deterministic).

``Store.commit`` and the removal of the replaced version are run again and again; the k-th file
system operation (a write, rename, symlink, unlink, mkdir, rmtree) "crashes" the process (raises,
and nothing after it runs).  Whatever k, the directory holds the old version or the new one: the
state, the signed manifest and its signature agree, and every ``ROOT/<model>`` leads to the
installed version the state names, whose files are all there.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from torrentgoat.collection.store import CollectionState, InstalledModel, Store
from torrentgoat.manifest import ManifestFile
from torrentgoat.primitives import InfoHash


class Crash(BaseException):
    """The process died here."""


def _model(name: str, byte: int) -> InstalledModel:
    return InstalledModel(
        name=name,
        info_hash=InfoHash(bytes([byte]) * 20),
        torrent_name="t",
        files=(ManifestFile(path="weights.bin", size=4, sha256="0" * 64),),
    )


def _state(seq: int, *models: InstalledModel) -> CollectionState:
    return CollectionState(
        public_key=b"\x01" * 32, salt=b"zoo", collection="zoo", seq=seq, models={m.name: m for m in models}
    )


A1, B1, A2, C2 = _model("a", 1), _model("b", 2), _model("a", 3), _model("c", 4)
OLD, NEW = _state(1, A1, B1), _state(2, A2, B1, C2)
HELD = {1: (b"manifest 1", b"signature 1"), 2: (b"manifest 2", b"signature 2")}


def _install(store: Store, model: InstalledModel) -> None:
    folder = store.installed_dir(model)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "weights.bin").write_bytes(model.info_hash.raw[:4])


def _start(root: Path) -> Store:
    shutil.rmtree(root, ignore_errors=True)
    store = Store(root)
    for model in (A1, B1):
        _install(store, model)
    store.commit(OLD, manifest=HELD[1][0], signature=HELD[1][1], manifest_torrent=b"torrent 1")
    for model in (A2, C2):  # downloaded and verified, not committed yet
        _install(store, model)
    return store


def _update(store: Store) -> None:
    store.commit(NEW, manifest=HELD[2][0], signature=HELD[2][1], manifest_torrent=b"torrent 2")
    store.remove_version(A1.name, A1.info_hash)


_MUTATING = ("replace", "rename", "symlink", "unlink", "mkdir", "write", "link", "rmdir")


def _crash_after(monkeypatch: pytest.MonkeyPatch, budget: int) -> list[int]:
    """Let ``budget`` mutating file system calls through, then raise Crash (and at every later call)."""
    done = [0]

    def gate(original: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            if done[0] >= budget:
                raise Crash
            done[0] += 1
            return original(*args, **kwargs)

        return call

    for name in _MUTATING:
        monkeypatch.setattr(os, name, gate(getattr(os, name)))
    monkeypatch.setattr(shutil, "rmtree", gate(shutil.rmtree))
    return done


def _check_old_or_new(store: Store) -> int:
    state = store.load_state()
    assert state in (OLD, NEW), state
    assert store.held_manifest() == HELD[state.seq]
    assert store.manifest_torrent_path.read_bytes() == f"torrent {state.seq}".encode()
    for model in state.models.values():
        assert store.link_problem(model) is None, store.link_problem(model)
        assert (store.link_path(model.name) / "weights.bin").read_bytes() == model.info_hash.raw[:4]
    return state.seq


def test_a_crash_at_any_step_of_the_commit_leaves_the_old_or_the_new_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "fsync", lambda fd: None)  # power loss is not simulated here: only speed
    steps = 0
    seen: set[int] = set()
    while True:
        store = _start(tmp_path / "root")
        with monkeypatch.context() as patch:
            done = _crash_after(patch, steps)
            try:
                _update(store)
                finished = True
            except Crash:
                finished = False
            used = done[0]
        seen.add(_check_old_or_new(store))
        # the next run's commit (or this one, finished) leads to the new version
        _update(store)
        assert _check_old_or_new(store) == 2
        assert not store.installed_dir(A1).exists()
        if finished:
            break
        assert used == steps
        steps += 1
    assert seen == {1, 2} and steps > 10, steps
