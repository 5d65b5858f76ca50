"""Block-level updates end to end: a hybrid collection published, got and updated on loopback.

Issue 12's target: a new version in which one tensor of eight changed and the header grew by a few
bytes moves at most 1.05 x the changed tensor's bytes plus 64 KiB per changed file (block payload
and BEP 52 hash messages), and the installed file is the publisher's, byte for byte.
"""

from __future__ import annotations

from pathlib import Path

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


async def test_reordered_tensors_move_only_the_header(tmp_path: Path) -> None:
    measure = await measure_update(tmp_path, "tensors reordered", piece_length=64 * 1024)
    assert measure.changed == 0
    assert measure.moved <= 64 * 1024, measure
    installed = tmp_path / "consumer" / "goat" / MODEL_FILE
    assert sha256_file(installed) == sha256_file(tmp_path / "src" / "goat" / MODEL_FILE)
