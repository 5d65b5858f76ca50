"""Fuzz targets for model-file checks: safetensors and GGUF headers, pickle and zip detection
(:mod:`torrentgoat.safety`) and the whole per-file check on disk (:mod:`torrentgoat.modelcheck`)."""

from __future__ import annotations

import atexit
import io
import shutil
import tempfile
from pathlib import Path

from tools.fuzz.harness import Reader, expect, target
from torrentgoat import safety
from torrentgoat.errors import UnsafeModelError
from torrentgoat.modelcheck import inspect_model_file

__all__: list[str] = []


def _file(reader: Reader) -> tuple[bytes, int]:
    """The bytes given to a check and the file size it is told: those bytes, or (flag) a larger file
    of which they are the start."""
    extra = reader.uint(4) if reader.flag() else 0
    body = reader.rest()
    return body, len(body) + extra


@target("safetensors", "torrentgoat.safety.validate_safetensors_header (8-byte length, JSON header, offsets)")
def fuzz_safetensors(data: bytes) -> None:
    reader = Reader(data)
    body, file_size = _file(reader)
    header = safety.validate_safetensors_header(body, file_size, name="fuzz.safetensors")
    expect(header.data_start <= file_size, "safetensors: header ends past the file")
    position = 0
    for tensor in header.tensors:
        expect(tensor.begin == position and tensor.end >= tensor.begin, "safetensors: tensors not contiguous")
        position = tensor.end
    expect(position == file_size - header.data_start, "safetensors: tensors do not fill the file")


@target("gguf", "torrentgoat.safety.check_gguf_prefix (magic, version, counts)", max_len=64)
def fuzz_gguf(data: bytes) -> None:
    reader = Reader(data)
    body, file_size = _file(reader)
    version = safety.check_gguf_prefix(body, file_size, name="fuzz.gguf")
    expect(version in (1, 2, 3), f"gguf: version {version} accepted")


@target(
    "pickle",
    "torrentgoat.safety: sniff, judge, zip central directory (whole file and tail only)",
    max_len=8192,
)
def fuzz_pickle(data: bytes) -> None:
    reader = Reader(data)
    name = reader.choice(
        ("model.bin", "model.safetensors", "weights.pt", "archive.zip", "model.gguf", "README")
    )
    cut = reader.uint(2)
    body = reader.rest()
    kind = safety.sniff(body[: safety.SNIFF_SIZE])
    members: list[str] | None = None
    if kind == "zip":
        names = safety.zip_member_names(io.BytesIO(body))
        members = [n for n in names if safety.is_pickle_member(n)]
        tail = body[min(cut, len(body)) :]
        try:
            from_tail = safety.zip_member_names_from_tail(tail, len(body))
        except UnsafeModelError:
            pass  # the tail may start inside the central directory
        else:
            expect(from_tail == names, "pickle: member names from the tail differ from the whole file's")
    verdict = safety.judge(name, body[:64], safety.Policy(), pickle_members=members)
    if kind == "pickle" or safety.classify_filename(name) == "pickle" or members:
        expect(verdict is not None and verdict.kind == "pickle", "pickle: a pickle was not refused")
    expect(
        safety.judge(name, body[:64], safety.Policy(allow_pickle=True), pickle_members=members) is None,
        "pickle: allow_pickle refused",
    )


_DIR: Path | None = None


def _scratch() -> Path:
    global _DIR
    if _DIR is None:
        _DIR = Path(tempfile.mkdtemp(prefix="tg-fuzz-model-"))
        atexit.register(shutil.rmtree, _DIR, True)
    return _DIR


@target(
    "modelcheck",
    "torrentgoat.modelcheck.inspect_model_file on a real file (name picks the checks)",
    max_len=8192,
)
def fuzz_modelcheck(data: bytes) -> None:
    reader = Reader(data)
    suffix = reader.choice((".safetensors", ".gguf", ".bin", ".pt", ".zip", ".onnx"))
    policy = safety.Policy(allow_pickle=reader.flag())
    path = _scratch() / f"model{suffix}"
    path.write_bytes(reader.rest())
    report, violation = inspect_model_file(path, policy, display=f"model{suffix}")
    expect(report.size == path.stat().st_size, "modelcheck: wrong size in the report")
    if violation is None and suffix == ".safetensors":
        expect(report.safetensors is not None, "modelcheck: a safetensors file passed without a header")
    if policy.allow_pickle:
        expect(
            violation is None or violation.kind == "corrupt", "modelcheck: pickle refused with allow_pickle"
        )
