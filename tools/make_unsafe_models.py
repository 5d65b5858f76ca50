"""Write model files that torrentgoat's unsafe-format policy must refuse (and a few it must accept).

Usage: ``python tools/make_unsafe_models.py OUTDIR`` writes

* ``OUTDIR/pickle/<name>``: pickle-based weights -- ``pickle.dumps`` output as ``.bin`` / ``.pt`` /
  ``.pkl`` / ``.ckpt``, a pickle disguised as ``model.safetensors`` and as ``config.json``, and a
  ``torch.save``-style zip archive (``archive/data.pkl`` + ``archive/data/0`` ...) built with
  :mod:`zipfile` (no torch needed), also disguised as ``.safetensors``;
* ``OUTDIR/corrupt/<case>.safetensors``: safetensors files with one broken rule each (header length
  over the limit or past the end, not UTF-8, not JSON, unknown dtype, offsets with a hole, an overlap,
  past the end of the file, shape/size mismatch, trailing bytes, ...);
* ``OUTDIR/ok/``: files that must pass (a small valid safetensors file, a zip without pickles, JSON).

``tests/test_safety.py`` checks each one with :mod:`torrentgoat.modelcheck`.  The pickles are inert
(a dict of lists), but they are still pickles: never ``pickle.load`` files from untrusted sources.
"""

from __future__ import annotations

import collections
import io
import json
import pickle
import struct
import sys
import zipfile
from pathlib import Path
from typing import Any

__all__ = [
    "CORRUPT_SAFETENSORS",
    "corrupt_safetensors",
    "main",
    "ok_files",
    "pickle_files",
    "safetensors_bytes",
    "torch_like_zip",
    "write_unsafe_models",
]

_DTYPE_SIZE = {"F32": 4, "BF16": 2, "U8": 1, "I64": 8}


def safetensors_bytes(
    tensors: list[tuple[str, str, list[int]]] | None = None,
    *,
    metadata: dict[str, Any] | None = None,
    header: dict[str, Any] | None = None,
    data_len: int | None = None,
    raw_header: bytes | None = None,
    length_field: int | None = None,
    trailing: bytes = b"",
) -> bytes:
    """A small safetensors file; every keyword bends one thing (to build corrupt variants).

    ``tensors`` are ``(name, dtype, shape)`` laid out contiguously; ``header`` replaces the computed
    JSON header; ``raw_header`` replaces its bytes; ``length_field`` replaces the 8-byte length;
    ``data_len`` the amount of tensor data written; ``trailing`` is appended.
    """
    specs = (
        tensors
        if tensors is not None
        else [("embed", "F32", [2, 3]), ("norm", "BF16", [4]), ("q", "U8", [5])]
    )
    computed: dict[str, Any] = {"__metadata__": metadata if metadata is not None else {"format": "pt"}}
    offset = 0
    for name, dtype, shape in specs:
        n = _DTYPE_SIZE[dtype]
        for d in shape:
            n *= d
        computed[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    body = (
        raw_header
        if raw_header is not None
        else json.dumps(header if header is not None else computed).encode()
    )
    if raw_header is None:
        body += b" " * (-len(body) % 8)
    size = offset if data_len is None else data_len
    length = len(body) if length_field is None else length_field
    return struct.pack("<Q", length) + body + bytes((i * 7) & 0xFF for i in range(size)) + trailing


def _tensor(dtype: str, shape: list[int], begin: int, end: int) -> dict[str, Any]:
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


def corrupt_safetensors() -> dict[str, bytes]:
    """Case name -> a safetensors file breaking exactly that rule."""
    meta = {"format": "pt"}
    cases: dict[str, bytes] = {
        "too_short": b"\x10\x00\x00",
        "header_over_limit": struct.pack("<Q", 100_000_001) + b"{}" + b" " * 6,
        "header_past_end": safetensors_bytes(length_field=10_000),
        "not_utf8": safetensors_bytes(raw_header=b'{"a": "\xff\xfe"}      '),
        "not_json": safetensors_bytes(raw_header=b"{not json at all}       "),
        "not_object": safetensors_bytes(raw_header=b"[1, 2]  "),
        "leading_space": safetensors_bytes(raw_header=b' {"__metadata__": {}}   '),
        "nan_constant": safetensors_bytes(
            raw_header=b'{"t": {"dtype": "U8", "shape": [NaN], "data_offsets": [0, 0]}}', data_len=0
        ),
        "duplicate_key": safetensors_bytes(
            raw_header=b'{"t": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]},'
            b' "t": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}}   ',
            data_len=1,
        ),
        "metadata_not_text": safetensors_bytes(metadata={"format": 1}),
        "unknown_dtype": safetensors_bytes(
            header={"__metadata__": meta, "t": _tensor("F128", [1], 0, 16)}, data_len=16
        ),
        "negative_shape": safetensors_bytes(header={"t": _tensor("U8", [-1], 0, 0)}, data_len=0),
        "float_shape": safetensors_bytes(header={"t": _tensor("U8", [1.5], 0, 1)}, data_len=1),
        "bool_offset": safetensors_bytes(
            header={"t": {"dtype": "U8", "shape": [1], "data_offsets": [False, True]}}, data_len=1
        ),
        "missing_offsets": safetensors_bytes(header={"t": {"dtype": "U8", "shape": [1]}}, data_len=1),
        "end_before_begin": safetensors_bytes(header={"t": _tensor("U8", [0], 4, 2)}, data_len=4),
        "size_mismatch": safetensors_bytes(header={"t": _tensor("F32", [2, 2], 0, 12)}, data_len=12),
        "sub_byte_partial": safetensors_bytes(header={"t": _tensor("F4", [3], 0, 2)}, data_len=2),
        "hole": safetensors_bytes(
            header={"a": _tensor("U8", [4], 0, 4), "b": _tensor("U8", [4], 8, 12)}, data_len=12
        ),
        "hole_at_start": safetensors_bytes(header={"a": _tensor("U8", [4], 4, 8)}, data_len=8),
        "overlap": safetensors_bytes(
            header={"a": _tensor("U8", [8], 0, 8), "b": _tensor("U8", [4], 4, 8)}, data_len=8
        ),
        "past_end_of_file": safetensors_bytes(header={"a": _tensor("U8", [64], 0, 64)}, data_len=16),
        "trailing_bytes": safetensors_bytes(trailing=b"\x00" * 8),
        "truncated_data": safetensors_bytes()[:-3],
    }
    return cases


CORRUPT_SAFETENSORS = tuple(corrupt_safetensors())
"""The case names of :func:`corrupt_safetensors`."""


def torch_like_zip(*, prefix: str = "archive") -> bytes:
    """A zip laid out like ``torch.save``'s: ``<prefix>/data.pkl`` (a pickle), tensor storages, version."""
    buffer = io.BytesIO()
    state = collections.OrderedDict(weight=[0.5, 1.5], bias=[0.0])
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(f"{prefix}/data.pkl", pickle.dumps(state, protocol=2))
        archive.writestr(f"{prefix}/byteorder", b"little")
        archive.writestr(f"{prefix}/data/0", struct.pack("<3f", 0.5, 1.5, 0.0))
        archive.writestr(f"{prefix}/version", b"3\n")
    return buffer.getvalue()


def pickle_files() -> dict[str, bytes]:
    """File name -> pickle-based content the default policy must refuse."""
    state = collections.OrderedDict(weight=[0.5, 1.5], bias=[0.0])
    return {
        "pytorch_model.bin": pickle.dumps(state, protocol=2),
        "model.pt": pickle.dumps(state, protocol=4),
        "weights.pth": pickle.dumps(state, protocol=3),
        "scaler.pkl": pickle.dumps(state, protocol=5),
        "last.ckpt": pickle.dumps(state),
        "model.joblib": pickle.dumps(state, protocol=4),
        "disguised.safetensors": pickle.dumps(state, protocol=4),
        "config.json": pickle.dumps(state, protocol=2),
        "torch_zip.pt": torch_like_zip(),
        "torch_zip_disguised.safetensors": torch_like_zip(prefix="model"),
        "torch_zip_disguised.dat": torch_like_zip(),
    }


def ok_files() -> dict[str, bytes]:
    """File name -> content the default policy must accept."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("images/cat.txt", b"meow")
    return {
        "model.safetensors": safetensors_bytes(),
        "empty.safetensors": safetensors_bytes(tensors=[]),
        "config.json": json.dumps({"model_type": "llama"}).encode(),
        "assets.zip": buffer.getvalue(),
        "README.md": b"# a model\n",
    }


def write_unsafe_models(outdir: str | Path) -> dict[str, Path]:
    """Write every case under ``outdir`` (``pickle/``, ``corrupt/``, ``ok/``); ``"group/name"`` -> path."""
    root = Path(outdir)
    written: dict[str, Path] = {}
    groups = {
        "pickle": pickle_files(),
        "corrupt": {f"{case}.safetensors": data for case, data in corrupt_safetensors().items()},
        "ok": ok_files(),
    }
    for group, files in groups.items():
        (root / group).mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            path = root / group / name
            path.write_bytes(data)
            written[f"{group}/{name}"] = path
    return written


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    written = write_unsafe_models(argv[1])
    print(f"wrote {len(written)} files under {argv[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
