"""A block-level update against libtorrent: it seeds the new version of a model file (a hybrid
torrent), torrentgoat holds the old one and fetches only the changed blocks, the leaf hashes of the
pieces at the changed tensor's edges asked of libtorrent by BEP 52 hash requests."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest

from tests.conftest import require_libtorrent
from tests.interop_helpers import ProcessGroup, assert_same_files, complete, loopback_config, processes
from torrentgoat.collection.blockupdate import BlockUpdater, ChangedFile, leaf_fetcher
from torrentgoat.creation import create_torrent
from torrentgoat.manifest import ManifestFile
from torrentgoat.modelcheck import sha256_file
from torrentgoat.mse import EncryptionPolicy, MSEConfig
from torrentgoat.session import Session
from torrentgoat.testing.updates import EDITS, MODEL_FILE, changed_bytes, model_tensors, write_model

pytestmark = pytest.mark.interop

__all__ = ["processes"]  # the fixture, imported for pytest

PIECE = 64 * 1024


@pytest.mark.parametrize("encrypted", [False, True])
async def test_block_update_from_libtorrent(tmp_path: Path, processes: ProcessGroup, encrypted: bool) -> None:
    """Plaintext: libtorrent upgrades the connection to the v2 swarm and answers hash requests.  Under MSE
    it stays a v1 connection, which must not be sent hash requests: the pieces at the tensor's edges
    are then fetched whole, and the file is still exactly the new one."""
    require_libtorrent()
    old = model_tensors()
    new, metadata = EDITS["one layer fine-tuned"](old)
    old_file = write_model(tmp_path / "old" / "goat", old, {"step": "1"}) / MODEL_FILE
    folder = write_model(tmp_path / "seed" / "goat", new, {"step": "1", **metadata})
    metainfo = create_torrent(folder, piece_length=PIECE, format="hybrid", creation_date=None)
    torrent_path = tmp_path / "goat.torrent"
    torrent_path.write_bytes(metainfo.to_bytes())
    seeder = await processes.libtorrent("seed", directory=tmp_path / "seed", torrent=torrent_path)
    index = next(i for i, f in enumerate(metainfo.info.files) if f.path[-1] == MODEL_FILE)
    size = (folder / MODEL_FILE).stat().st_size
    changed = ChangedFile(
        file_index=index,
        new=ManifestFile(path=MODEL_FILE, size=size, sha256=sha256_file(folder / MODEL_FILE)),
        old_path=old_file,
        old_size=old_file.stat().st_size,
    )
    dest = tmp_path / "down"
    policy = EncryptionPolicy.REQUIRE if encrypted else EncryptionPolicy.DISABLE
    async with Session(replace(loopback_config(), encryption=MSEConfig(policy=policy))) as session:
        config = replace(session.config.torrent, held_files=(index,))
        torrent = await session.add(metainfo, dest, peers=[f"127.0.0.1:{seeder.port}"], config=config)
        updater = BlockUpdater(torrent, [changed], leaf_fetcher(torrent))
        stats, _ = await asyncio.gather(updater.run(), complete(torrent, timeout=40, peers=[seeder]))
        assert torrent.hash_failures == 0
    assert_same_files(metainfo, tmp_path / "seed", dest)
    tensor_bytes = changed_bytes(old, new)
    config_size = (folder / "config.json").stat().st_size
    moved = torrent.downloaded + stats.hash_bytes
    if encrypted:
        assert stats.pieces_mixed == 0 and stats.hash_requests == 1, stats
        assert moved <= tensor_bytes + 3 * PIECE, (torrent.downloaded, stats)
    else:
        assert stats.pieces_mixed >= 1 and stats.hash_requests >= 1, stats
        assert moved <= 1.05 * tensor_bytes + 64 * 1024, (torrent.downloaded, stats)
    assert torrent.downloaded + stats.reused >= size + config_size
