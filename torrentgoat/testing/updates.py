"""Measuring model updates on loopback (test support): what a new version moves over the network.

A model is one safetensors file of named tensors (:class:`Tensor`) plus a ``config.json``.
:func:`measure_update` publishes version 1 as a collection (hybrid torrents, a local DHT), lets a
consumer get it, publishes version 2 and lets the consumer update, then reports the bytes that
crossed the network (block payload plus BEP 52 hash messages) next to the bytes that changed and the
size of the changed file (what a whole-file update moves).  :data:`EDITS` are realistic edits of a
model: a fine-tuned layer, a tensor appended, every tensor changed, a dtype change, a new tensor
order.  Used by ``tests/test_block_update.py`` and ``benchmarks/updates.py``.
"""

from __future__ import annotations

import json
import random
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from torrentgoat.aio.dht import DHTNode
from torrentgoat.collection import CollectionClient, ModelResult, ModelSpec, Publisher, build_collection
from torrentgoat.keys import SigningKey
from torrentgoat.session import Session, SessionConfig
from torrentgoat.testing.localdht import local_dht
from torrentgoat.testing.timing import scaled
from torrentgoat.torrent import TorrentConfig

__all__ = [
    "EDITS",
    "MODEL_FILE",
    "Tensor",
    "UpdateMeasure",
    "changed_bytes",
    "fine_tune_tensor",
    "local_dht",
    "measure_update",
    "model_tensors",
    "write_model",
    "write_safetensors",
]

MODEL_FILE = "model.safetensors"


@dataclass(frozen=True, slots=True, kw_only=True)
class Tensor:
    """A named tensor and its bytes (little-endian, as safetensors stores them)."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    data: bytes


def _bytes(rng: random.Random, n: int) -> bytes:
    return rng.randbytes(n)


def model_tensors(count: int = 8, rows: int = 256, cols: int = 1024, *, seed: int = 1) -> list[Tensor]:
    """``count`` BF16 ``[rows, cols]`` tensors named like a transformer's layers."""
    rng = random.Random(seed)
    return [
        Tensor(
            name=f"model.layers.{i}.mlp.weight",
            dtype="BF16",
            shape=(rows, cols),
            data=_bytes(rng, rows * cols * 2),
        )
        for i in range(count)
    ]


def write_safetensors(path: Path, tensors: Sequence[Tensor], metadata: dict[str, str] | None = None) -> Path:
    """A safetensors file of ``tensors`` in this order (header padded to 8 bytes with spaces)."""
    header: dict[str, object] = {"__metadata__": {"format": "pt", **(metadata or {})}}
    offset = 0
    for t in tensors:
        header[t.name] = {
            "dtype": t.dtype,
            "shape": list(t.shape),
            "data_offsets": [offset, offset + len(t.data)],
        }
        offset += len(t.data)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        handle.write(struct.pack("<Q", len(raw)))
        handle.write(raw)
        for t in tensors:
            handle.write(t.data)
    return path


def write_model(folder: Path, tensors: Sequence[Tensor], metadata: dict[str, str] | None = None) -> Path:
    """A model folder: ``config.json`` and :data:`MODEL_FILE`."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "goat", "layers": len(tensors)}) + "\n")
    write_safetensors(folder / MODEL_FILE, tensors, metadata)
    return folder


def changed_bytes(old: Sequence[Tensor], new: Sequence[Tensor]) -> int:
    """Bytes of tensors of ``new`` not found in ``old`` with the same name, dtype, shape and bytes."""
    held = {(t.name, t.dtype, t.shape, t.data) for t in old}
    return sum(len(t.data) for t in new if (t.name, t.dtype, t.shape, t.data) not in held)


def fine_tune_tensor(path: Path, *, seed: int, metadata: dict[str, str] | None = None) -> int:
    """Give the middle tensor (in file order) of a safetensors file new bytes and add ``metadata`` to its
    header (a few bytes more), written aside and renamed into place as tools do; returns the bytes of
    the tensor changed.  Streams: memory stays one tensor (and 1 MiB) whatever the file size."""
    with path.open("rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        doc = json.loads(handle.read(length))
    meta = doc.pop("__metadata__", {})
    order = sorted(doc, key=lambda name: doc[name]["data_offsets"][0])
    target = order[len(order) // 2]
    begin, end = (int(x) for x in doc[target]["data_offsets"])
    raw = json.dumps({"__metadata__": {**meta, **(metadata or {})}, **doc}, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    tmp = path.with_name(path.name + ".tuned")
    with path.open("rb") as src, tmp.open("wb") as out:
        out.write(struct.pack("<Q", len(raw)) + raw)
        src.seek(8 + length)
        left = begin
        while left > 0 and (chunk := src.read(min(left, 1 << 20))):
            out.write(chunk)
            left -= len(chunk)
        out.write(random.Random(seed).randbytes(end - begin))
        src.seek(8 + length + end)
        while chunk := src.read(1 << 20):
            out.write(chunk)
    tmp.replace(path)
    return end - begin


Edit = Callable[[list[Tensor]], tuple[list[Tensor], dict[str, str]]]
"""Old tensors -> new tensors and the new version's metadata."""


def _fine_tune_one(tensors: list[Tensor]) -> tuple[list[Tensor], dict[str, str]]:
    k = len(tensors) // 2
    new = list(tensors)
    new[k] = replace(new[k], data=random.Random(99).randbytes(len(new[k].data)))
    return new, {"step": "1000", "note": "layer tuned"}  # the header grows by a few bytes


def _append_one(tensors: list[Tensor]) -> tuple[list[Tensor], dict[str, str]]:
    last = tensors[-1]
    extra = replace(last, name="lm_head.weight", data=random.Random(98).randbytes(len(last.data)))
    return [*tensors, extra], {}


def _change_all(tensors: list[Tensor]) -> tuple[list[Tensor], dict[str, str]]:
    rng = random.Random(97)
    return [replace(t, data=rng.randbytes(len(t.data))) for t in tensors], {"step": "2000"}


def _to_f32(tensors: list[Tensor]) -> tuple[list[Tensor], dict[str, str]]:
    out = []
    for t in tensors:  # BF16 -> F32: each value widened, every byte of the file moves
        wide = b"".join(b"\x00\x00" + t.data[i : i + 2] for i in range(0, len(t.data), 2))
        out.append(replace(t, dtype="F32", data=wide))
    return out, {}


def _reorder(tensors: list[Tensor]) -> tuple[list[Tensor], dict[str, str]]:
    return list(reversed(tensors)), {"order": "reversed"}


EDITS: dict[str, Edit] = {
    "one layer fine-tuned": _fine_tune_one,
    "tensor appended": _append_one,
    "every tensor changed": _change_all,
    "dtype changed": _to_f32,
    "tensors reordered": _reorder,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateMeasure:
    """What one update moved (bytes)."""

    edit: str
    file_size: int
    """The changed file's new size: what a whole-file update moves."""
    changed: int
    """Tensor bytes of the new version that the old one does not hold."""
    downloaded: int
    """Block payload received from peers."""
    hash_bytes: int
    """BEP 52 hash messages."""
    reused: int
    result: ModelResult

    @property
    def moved(self) -> int:
        return self.downloaded + self.hash_bytes


def _config(boot: DHTNode, seed: int) -> SessionConfig:
    return SessionConfig(
        listen_host="127.0.0.1",
        listen_ipv6=None,
        listen_port=0,
        enable_dht=True,
        dht_bootstrap=(("127.0.0.1", boot.address.port),),
        enable_trackers=False,
        seed=seed,
        torrent=TorrentConfig(max_peers=20),
    )


async def measure_update(
    work: Path,
    edit: str,
    *,
    tensors: Sequence[Tensor] | None = None,
    piece_length: int = 256 * 1024,
    block_updates: bool = True,
    before_update: Callable[[Path], None] | None = None,
) -> UpdateMeasure:
    """Publish a model, get it, publish ``EDITS[edit]`` of it and update (see the module docstring).
    ``before_update`` is called with the consumer's installed copy of the model file before it updates."""
    old = list(tensors) if tensors is not None else model_tensors()
    new, metadata = EDITS[edit](old)
    key = SigningKey(bytes(range(32)))
    src = work / "src" / "goat"
    write_model(src, old, {"step": "1"})
    pub_root, root = work / "publisher", work / "consumer"
    specs = [ModelSpec(name="goat", path=src)]
    build_collection("updates", specs, pub_root, key.public_key, piece_length=piece_length, check=False)
    async with (
        local_dht() as nodes,
        Session(_config(nodes[0], 1)) as pub_session,
        Session(_config(nodes[0], 2)) as session,
    ):
        publisher = Publisher(pub_session, pub_root, key)
        first = await publisher.publish()
        client = CollectionClient(
            session,
            root,
            timeout=scaled(30),
            peers=[f"127.0.0.1:{pub_session.listen_port}"],
            block_updates=block_updates,
        )
        report = await client.sync(first.magnet)
        if not report.ok:
            raise AssertionError(f"getting version 1 failed: {report}")
        # version 2, written aside and renamed in (the publisher's store holds links of version 1)
        tmp = src.parent / "next"
        write_model(tmp, new, {"step": "1", **metadata})
        (tmp / MODEL_FILE).replace(src / MODEL_FILE)
        build_collection("updates", specs, pub_root, key.public_key, piece_length=piece_length, check=False)
        await publisher.publish()
        if before_update is not None:
            before_update(root / "goat" / MODEL_FILE)
        report = await client.sync()
        if not report.ok:
            raise AssertionError(f"the update failed: {report}")
        [result] = report.results
    return UpdateMeasure(
        edit=edit,
        file_size=(src / MODEL_FILE).stat().st_size,
        changed=changed_bytes(old, new),
        downloaded=result.downloaded,
        hash_bytes=result.hash_bytes,
        reused=result.reused,
        result=result,
    )
