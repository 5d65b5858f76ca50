"""Block-level updates end to end: a hybrid collection published, got and updated on loopback.

Issue 12's target: a new version in which one tensor of eight changed and the header grew by a few
bytes moves at most 1.05 x the changed tensor's bytes plus 64 KiB per changed file (block payload
and BEP 52 hash messages), and the installed file is the publisher's, byte for byte.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from torrentgoat.collection import install
from torrentgoat.modelcheck import sha256_file
from torrentgoat.testing.updates import MODEL_FILE, measure_update


async def test_one_tuned_tensor_moves_little_more_than_its_bytes(tmp_path: Path) -> None:
    measure = await measure_update(tmp_path, "one layer fine-tuned", piece_length=256 * 1024)
    assert measure.result.status == "updated"
    assert measure.changed == 256 * 1024 * 2  # one BF16 [256, 1024] tensor of eight
    assert measure.moved <= 1.05 * measure.changed + 64 * 1024, measure
    assert measure.hash_bytes > 0  # the pieces at the tensor's edges were matched block by block
    assert measure.downloaded + measure.reused >= measure.file_size
    installed = tmp_path / "consumer" / "goat" / MODEL_FILE
    assert sha256_file(installed) == sha256_file(tmp_path / "src" / "goat" / MODEL_FILE)


async def test_an_appended_tensor_moves_itself_and_the_header_not_the_pad(tmp_path: Path) -> None:
    measure = await measure_update(tmp_path, "tensor appended", piece_length=256 * 1024)
    assert measure.moved <= 1.05 * measure.changed + 64 * 1024, measure
    installed = tmp_path / "consumer" / "goat" / MODEL_FILE
    assert sha256_file(installed) == sha256_file(tmp_path / "src" / "goat" / MODEL_FILE)


async def test_reordered_tensors_move_only_the_header(tmp_path: Path) -> None:
    measure = await measure_update(tmp_path, "tensors reordered", piece_length=64 * 1024)
    assert measure.changed == 0
    assert measure.moved <= 64 * 1024, measure
    installed = tmp_path / "consumer" / "goat" / MODEL_FILE
    assert sha256_file(installed) == sha256_file(tmp_path / "src" / "goat" / MODEL_FILE)


def flip_byte(offset: int) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        with path.open("r+b") as handle:
            handle.seek(offset)
            byte = handle.read(1)
            handle.seek(offset)
            handle.write(bytes([byte[0] ^ 0xFF]))

    return damage


async def test_a_damaged_old_block_is_fetched_not_installed(tmp_path: Path) -> None:
    # a byte of the first tensor (unchanged by the edit) is damaged in the consumer's old copy
    measure = await measure_update(
        tmp_path, "one layer fine-tuned", piece_length=64 * 1024, before_update=flip_byte(100_000)
    )
    installed = tmp_path / "consumer" / "goat" / MODEL_FILE
    assert sha256_file(installed) == sha256_file(tmp_path / "src" / "goat" / MODEL_FILE)
    assert measure.result.downloaded >= measure.changed + 16 * 1024  # the damaged block came from the peer
    assert measure.moved <= 1.05 * measure.changed + 64 * 1024 + 16 * 1024, measure


async def test_without_leaf_hashes_whole_pieces_are_fetched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def no_leaves(file: object, first: int, count: int) -> bytes | None:
        return None

    monkeypatch.setattr(install, "leaf_fetcher", lambda torrent: no_leaves)
    measure = await measure_update(tmp_path, "one layer fine-tuned", piece_length=64 * 1024)
    installed = tmp_path / "consumer" / "goat" / MODEL_FILE
    assert sha256_file(installed) == sha256_file(tmp_path / "src" / "goat" / MODEL_FILE)
    assert measure.hash_bytes == 0
    # pieces that only partly changed come whole: at most a piece more at each edge and the header's
    assert measure.changed < measure.downloaded <= measure.changed + 3 * 64 * 1024
