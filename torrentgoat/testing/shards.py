"""Model-like test data: safetensors shards, Hugging Face-style snapshot folders, small torrents.

Public helpers for tests and benchmarks (importable from anywhere, like ``trio.testing``):

* :func:`write_safetensors_shard` -- a real safetensors file of an exact size, filled with
  deterministic pseudo-random bytes (AES-CTR keystream keyed by the seed: several GB/s, streamed with
  bounded memory, so multi-GB shards take seconds).
* :func:`write_model_folder` -- ``config.json``, ``tokenizer.json``, ``generation_config.json``,
  ``model-0000k-of-0000N.safetensors`` and ``model.safetensors.index.json``.
* :func:`make_info` -- an :class:`InfoDict` (through the real parser) for in-memory file contents,
  with optional BEP 47 pad files; :func:`hash_file_pieces` -- BEP 3 piece hashes of a file.
* :func:`parse_size` -- ``"2GiB"`` -> ``2147483648``.

safetensors layout: 8-byte little-endian header length N, then N bytes of JSON
``{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}`` (padded with
spaces to a multiple of 8), then the tensors' bytes, contiguous, in ``data_offsets`` order.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from torrentgoat import bencode
from torrentgoat.bencode import BValue
from torrentgoat.metainfo import InfoDict, parse_info

__all__ = [
    "hash_file_pieces",
    "make_info",
    "parse_size",
    "pseudo_random_chunks",
    "read_safetensors_header",
    "write_model_folder",
    "write_safetensors_shard",
]

_CHUNK = 4 * 1024 * 1024
_HIDDEN = 4096
_ROW_BYTES = _HIDDEN * 2  # one BF16 row
_TENSOR_TARGET = 64 * 1024 * 1024
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?)b?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """``"2GiB"``, ``"512MiB"``, ``"4MB"``, ``"16k"``, ``"1000"`` -> bytes (``KiB`` = 1024, ``KB`` = 1000)."""
    match = _SIZE_RE.match(text)
    if not match:
        raise ValueError(f"not a size: {text!r} (try 2GiB, 512MiB, 4MiB)")
    number, unit, binary = match.groups()
    power = "kmgt".find(unit.lower()) + 1 if unit else 0
    base = 1024 if binary else 1000
    return int(float(number) * base**power)


def pseudo_random_chunks(size: int, *, seed: int = 0, chunk: int = _CHUNK) -> Iterator[memoryview]:
    """``size`` deterministic pseudo-random bytes in chunks (one reused buffer: copy what you keep)."""
    key = hashlib.sha256(b"torrentgoat-test-data:%d" % seed).digest()
    encryptor = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor()
    zeros = bytes(chunk)
    out = bytearray(chunk + 15)
    view = memoryview(out)
    remaining = size
    while remaining > 0:
        n = min(chunk, remaining)
        written = encryptor.update_into(zeros[:n], out)
        yield view[:written]
        remaining -= written


def _tensor_plan(
    data_len: int, first_layer: int, tensor_bytes: int = _TENSOR_TARGET
) -> list[tuple[str, str, list[int], int]]:
    plan: list[tuple[str, str, list[int], int]] = []
    names = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.down_proj")
    remaining = data_len
    k = 0
    while remaining >= _ROW_BYTES:
        rows = min(max(tensor_bytes, _ROW_BYTES), remaining) // _ROW_BYTES
        layer = first_layer + k // len(names)
        name = f"model.layers.{layer}.{names[k % len(names)]}.weight"
        plan.append((name, "BF16", [rows, _HIDDEN], rows * _ROW_BYTES))
        remaining -= rows * _ROW_BYTES
        k += 1
    if remaining:
        plan.append((f"model.layers.{first_layer + k // len(names)}.scales", "U8", [remaining], remaining))
    return plan


def _header_bytes(
    data_len: int, first_layer: int, metadata: dict[str, str], tensor_bytes: int = _TENSOR_TARGET
) -> bytes:
    header: dict[str, Any] = {"__metadata__": metadata}
    offset = 0
    for name, dtype, shape, nbytes in _tensor_plan(data_len, first_layer, tensor_bytes):
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    return json.dumps(header, separators=(",", ":")).encode()


def write_safetensors_shard(
    path: str | os.PathLike[str],
    size_bytes: int,
    *,
    seed: int = 0,
    first_layer: int = 0,
    metadata: dict[str, str] | None = None,
    tensor_bytes: int = _TENSOR_TARGET,
) -> Path:
    """Write a valid safetensors file of exactly ``size_bytes`` bytes; deterministic per ``seed``.

    Tensors are BF16 ``[rows, 4096]`` matrices of at most 64 MiB named like a transformer's
    (``model.layers.{i}.self_attn.q_proj.weight`` ...; at most ``tensor_bytes`` each), plus one U8 tensor
    for a remainder.  Memory
    stays a few MiB whatever the size.
    """
    meta = {"format": "pt", **(metadata or {})}
    header_len = 0
    while True:
        data_len = size_bytes - 8 - header_len
        if data_len < 0:
            raise ValueError(f"{size_bytes} bytes is too small for a safetensors header")
        raw = _header_bytes(data_len, first_layer, meta, tensor_bytes)
        if len(raw) <= header_len:
            raw += b" " * (header_len - len(raw))
            break
        header_len = -(-len(raw) // 8) * 8
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("wb") as handle:
        handle.write(struct.pack("<Q", header_len))
        handle.write(raw)
        for chunk in pseudo_random_chunks(data_len, seed=seed):
            handle.write(chunk)
    return out


def read_safetensors_header(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON header of a safetensors file (bounded read: headers over 100 MB are refused)."""
    with Path(path).open("rb") as handle:
        prefix = handle.read(8)
        if len(prefix) != 8:
            raise ValueError(f"{path}: shorter than a safetensors header")
        (length,) = struct.unpack("<Q", prefix)
        if length > 100_000_000:
            raise ValueError(f"{path}: safetensors header of {length} bytes")
        raw = handle.read(length)
    value = json.loads(raw)
    if not isinstance(value, dict):
        raise ValueError(f"{path}: safetensors header is not a JSON object")
    return value


def write_model_folder(
    directory: str | os.PathLike[str],
    *,
    shards: int = 2,
    shard_size: int = 8 * 1024 * 1024,
    seed: int = 0,
    model_type: str = "llama",
    tensor_bytes: int = _TENSOR_TARGET,
) -> Path:
    """A small Hugging Face-like snapshot: configs, tokenizer, ``shards`` safetensors files (tensors of at
    most ``tensor_bytes``) and the index."""
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": model_type,
        "hidden_size": _HIDDEN,
        "num_attention_heads": 32,
        "num_hidden_layers": 32,
        "vocab_size": 256,
        "torch_dtype": "bfloat16",
    }
    (root / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (root / "generation_config.json").write_text(json.dumps({"bos_token_id": 1, "eos_token_id": 2}) + "\n")
    vocab = {f"<byte_{i:02x}>": i for i in range(256)}
    tokenizer = {"version": "1.0", "model": {"type": "BPE", "vocab": vocab, "merges": []}}
    (root / "tokenizer.json").write_text(json.dumps(tokenizer) + "\n")
    weight_map: dict[str, str] = {}
    total = 0
    first_layer = 0
    for k in range(1, shards + 1):
        name = f"model-{k:05d}-of-{shards:05d}.safetensors"
        path = write_safetensors_shard(
            root / name, shard_size, seed=seed * 1000 + k, first_layer=first_layer, tensor_bytes=tensor_bytes
        )
        header = read_safetensors_header(path)
        layers = 0
        for tensor, spec in header.items():
            if tensor == "__metadata__":
                continue
            weight_map[tensor] = name
            total += spec["data_offsets"][1] - spec["data_offsets"][0]
            layers = max(layers, int(tensor.split(".")[2]) + 1)
        first_layer = layers
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (root / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    return root


def make_info(
    name: str,
    files: Sequence[tuple[str, bytes] | tuple[str, bytes, str]],
    *,
    piece_length: int = 16 * 1024,
    single_file: bool | None = None,
) -> tuple[InfoDict, bytes]:
    """An :class:`InfoDict` (parsed by the real parser) for files given as ``(path, data[, attr])``.

    ``path`` is relative to the torrent directory, ``/``-separated.  ``attr`` may contain ``p`` for a
    BEP 47 pad file (its data should be zeros).  Returns the info dict and the concatenated payload.
    """
    payload = b"".join(entry[1] for entry in files)
    pieces = b"".join(
        hashlib.sha1(payload[i : i + piece_length]).digest() for i in range(0, len(payload), piece_length)
    )
    info: dict[bytes, BValue] = {b"name": name.encode(), b"piece length": piece_length, b"pieces": pieces}
    single = single_file if single_file is not None else len(files) == 1 and len(files[0]) == 2
    if single:
        info[b"length"] = len(payload)
    else:
        entries: list[BValue] = []
        for entry in files:
            item: dict[bytes, BValue] = {
                b"length": len(entry[1]),
                b"path": [part.encode() for part in entry[0].split("/")],
            }
            if len(entry) == 3 and entry[2]:
                item[b"attr"] = entry[2].encode()
            entries.append(item)
        info[b"files"] = entries
    return parse_info(bencode.encode(info)), payload


def hash_file_pieces(path: str | os.PathLike[str], piece_length: int) -> bytes:
    """Concatenated SHA-1 hashes of ``piece_length`` pieces of one file (BEP 3 ``pieces``)."""
    out = bytearray()
    buf = bytearray(piece_length)
    view = memoryview(buf)
    with Path(path).open("rb", buffering=0) as handle:
        while True:
            n = handle.readinto(buf)
            if not n:
                break
            while n < piece_length:
                more = handle.readinto(view[n:])
                if not more:
                    break
                n += more
            out += hashlib.sha1(view[:n]).digest()
    return bytes(out)
