"""The unsafe-model-format policy (level L1): pure checks on names and bytes, no file system access.

Pickle-based weights (PyTorch ``.bin`` / ``.pt`` / ``.pth`` / ``.ckpt``, ``.pkl`` / ``.pickle``,
joblib, and the zip archives ``torch.save`` writes, whose ``data.pkl`` member is a pickle) run
arbitrary code when loaded.  By default torrentgoat refuses to complete a download holding one
(:class:`Policy` ``allow_pickle=False``).  safetensors files are validated as part of verification
(:func:`validate_safetensors_header`), following the format's reference implementation:

* an 8-byte little-endian header length ``N``, at most :data:`SAFETENSORS_MAX_HEADER` and at most
  the file size minus 8;
* ``N`` bytes of UTF-8 JSON: one object, starting with ``{`` (trailing spaces pad it);
  ``__metadata__`` maps text to text; every other key is a tensor ``{dtype, shape, data_offsets}``;
* ``dtype`` is one of :data:`SAFETENSORS_DTYPE_BITS`, ``shape`` a list of non-negative integers,
  ``data_offsets`` ``[begin, end]`` with ``end - begin`` equal to the element count times the
  dtype's size (sub-byte dtypes must fill whole bytes);
* sorted by offset, the tensors are contiguous from 0 and end exactly at the end of the file: no
  hole, no overlap, nothing outside the file.

The file-reading side (bounded reads of a header, a zip central directory) is
:mod:`torrentgoat.modelcheck` (L3); :func:`zip_member_names` only needs a seekable binary file
object, so ``io.BytesIO`` works too.
"""

from __future__ import annotations

import json
import pickletools
import posixpath
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from torrentgoat.errors import UnsafeModelError

__all__ = [
    "GGUF_MAGIC",
    "MAX_ZIP_ENTRIES",
    "PICKLE_SUFFIXES",
    "SAFETENSORS_DTYPE_BITS",
    "SAFETENSORS_MAX_HEADER",
    "SNIFF_SIZE",
    "ContentKind",
    "FileKind",
    "Policy",
    "PolicyViolation",
    "SafetensorsHeader",
    "SeekableReader",
    "TensorInfo",
    "check_gguf_prefix",
    "classify_filename",
    "is_pickle_member",
    "judge",
    "safetensors_header_length",
    "sniff",
    "validate_safetensors_header",
    "zip_member_names",
    "zip_member_names_from_tail",
    "zip_pickle_members",
]

FileKind = Literal["safetensors", "pickle", "gguf", "other"]
"""What a file's name says it is."""
ContentKind = Literal["pickle", "zip", "safetensors", "gguf", "unknown"]
"""What a file's first bytes say it is."""

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".joblib")
"""File name suffixes of pickle-based weights (PyTorch, pickle, joblib)."""
SNIFF_SIZE = 16
"""How many leading bytes :func:`sniff` looks at."""
SAFETENSORS_MAX_HEADER = 100_000_000
"""Largest safetensors header accepted (the reference implementation's limit)."""
GGUF_MAGIC = b"GGUF"
MAX_ZIP_ENTRIES = 1_000_000
"""Most central directory entries read from one zip archive."""

SAFETENSORS_DTYPE_BITS: Mapping[str, int] = {
    "BOOL": 8,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E8M0": 8,
    "F8_E4M3FNUZ": 8,
    "F8_E5M2FNUZ": 8,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "C64": 64,
    "F64": 64,
    "I64": 64,
    "U64": 64,
}
"""Every safetensors dtype (as of safetensors 0.6) and its size in bits."""

_PICKLE_OPCODES = frozenset(op.code.encode("latin-1")[0] for op in pickletools.opcodes)
_ZIP_LOCAL = b"PK\x03\x04"
_EOCD = b"PK\x05\x06"
_EOCD64_LOCATOR = b"PK\x06\x07"
_EOCD64 = b"PK\x06\x06"
_CD_ENTRY = b"PK\x01\x02"
_MAX_ZIP_COMMENT = 65535


def classify_filename(path: str) -> FileKind:
    """``"safetensors"``, ``"pickle"`` (:data:`PICKLE_SUFFIXES`), ``"gguf"`` or ``"other"`` by name alone."""
    name = posixpath.basename(path.replace("\\", "/")).lower()
    if name.endswith(".safetensors"):
        return "safetensors"
    if name.endswith(".gguf"):
        return "gguf"
    if name.endswith(PICKLE_SUFFIXES):
        return "pickle"
    return "other"


def sniff(prefix: bytes) -> ContentKind:
    """What the first bytes of a file (:data:`SNIFF_SIZE` are enough) look like.

    ``"pickle"``: pickle protocol 2-5 (``\\x80`` PROTO, the protocol, then a valid opcode), which is
    what ``pickle.dumps`` and legacy ``torch.save`` write; ``"zip"``: a zip local file header (inspect
    it with :func:`zip_pickle_members`); ``"gguf"``: the GGUF magic; ``"safetensors"``: a plausible
    header length followed by ``{``.  Protocol 0/1 pickles are not recognised by content.
    """
    if len(prefix) >= 9 and prefix[8:9] == b"{":
        # first: a safetensors header length can begin with the bytes of a pickle PROTO (a header of
        # about 2.6 MB or more); no pickle has bytes 4..7 zero and ``{`` at 8 (0x00 is no opcode), so
        # this order misreads no pickle, and the header is validated in full afterwards anyway
        (length,) = struct.unpack_from("<Q", prefix)
        if 2 <= length <= SAFETENSORS_MAX_HEADER:
            return "safetensors"
    if len(prefix) >= 3 and prefix[0] == 0x80 and 2 <= prefix[1] <= 5 and prefix[2] in _PICKLE_OPCODES:
        return "pickle"
    if prefix.startswith(_ZIP_LOCAL):
        return "zip"
    if prefix.startswith(GGUF_MAGIC):
        return "gguf"
    return "unknown"


def is_pickle_member(name: str) -> bool:
    """A zip member that holds a pickle: ``*.pkl`` / ``*.pickle`` (``torch.save`` writes ``<name>/data.pkl``)."""
    return name.lower().endswith((".pkl", ".pickle"))


# -- zip central directory (bounded reads from a seekable file object) ----------------------------------


class SeekableReader(Protocol):
    """What the zip reader needs of a file: ``seek(offset, whence)`` and ``read(n)`` (a binary file, BytesIO)."""

    def seek(self, offset: int, whence: int = 0, /) -> int: ...

    def read(self, size: int = -1, /) -> bytes: ...


class _Tail:
    """The last ``len(tail)`` bytes of a file of ``size`` bytes, readable at their real offsets."""

    def __init__(self, tail: bytes, size: int) -> None:
        if len(tail) > size:
            raise UnsafeModelError(f"{len(tail)} tail bytes of a {size}-byte file")
        self._tail = tail
        self._start = size - len(tail)
        self._size = size
        self._position = 0

    def seek(self, offset: int, whence: int = 0, /) -> int:
        self._position = self._size + offset if whence == 2 else offset
        return self._position

    def read(self, size: int = -1, /) -> bytes:
        if self._position < self._start:
            raise UnsafeModelError(
                f"zip structures start at offset {self._position}, before the {len(self._tail)} tail bytes given"
            )
        begin = self._position - self._start
        data = self._tail[begin:] if size < 0 else self._tail[begin : begin + size]
        self._position += len(data)
        return data


def _read_at(f: SeekableReader, offset: int, size: int) -> bytes:
    f.seek(offset)
    data = f.read(size)
    if len(data) != size:
        raise UnsafeModelError(f"zip archive is truncated (wanted {size} bytes at offset {offset})")
    return data


def _locate_central_directory(f: SeekableReader, size: int, available: int) -> tuple[int, int, int]:
    """(offset, size, entry count) of the central directory, from the end records (zip64 included)."""
    tail_len = min(size, 22 + _MAX_ZIP_COMMENT, available)
    tail = _read_at(f, size - tail_len, tail_len)
    pos = tail.rfind(_EOCD, 0, tail_len - 18)  # the 22-byte record must fit
    if pos < 0:
        raise UnsafeModelError("zip archive has no end of central directory record")
    _, _, _, entries, cd_size, cd_offset, _ = struct.unpack_from("<4x4H2LH", tail, pos)
    eocd_at = size - tail_len + pos
    if entries == 0xFFFF or cd_size == 0xFFFFFFFF or cd_offset == 0xFFFFFFFF:
        if eocd_at < 20:
            raise UnsafeModelError("zip64 archive without its end of central directory locator")
        locator = _read_at(f, eocd_at - 20, 20)
        if not locator.startswith(_EOCD64_LOCATOR):
            raise UnsafeModelError("zip64 archive without its end of central directory locator")
        (record_at,) = struct.unpack_from("<Q", locator, 8)
        if record_at + 56 > eocd_at:
            raise UnsafeModelError("zip64 end of central directory record lies outside the archive")
        record = _read_at(f, record_at, 56)
        if not record.startswith(_EOCD64):
            raise UnsafeModelError("zip64 end of central directory record is missing")
        entries, cd_size, cd_offset = struct.unpack_from("<3Q", record, 32)
        eocd_at = record_at
    if cd_offset + cd_size > eocd_at:
        raise UnsafeModelError("zip central directory lies outside the archive")
    if entries > MAX_ZIP_ENTRIES:
        raise UnsafeModelError(f"zip archive claims {entries} entries; at most {MAX_ZIP_ENTRIES} are read")
    return cd_offset, cd_size, entries


def zip_member_names(f: SeekableReader) -> list[str]:
    """The member names of the zip archive in the seekable binary file ``f``, from its central directory.

    Reads only the end records and the central directory, entry by entry (memory bounded by the
    names, at most :data:`MAX_ZIP_ENTRIES` of them); UnsafeModelError when the archive is malformed.
    """
    size = f.seek(0, 2)
    return _member_names(f, size, size)


def _member_names(f: SeekableReader, size: int, available: int) -> list[str]:
    if size < 22 or available < 22:
        raise UnsafeModelError("zip archive is shorter than its end record")
    offset, cd_size, entries = _locate_central_directory(f, size, available)
    end = offset + cd_size
    names: list[str] = []
    position = offset
    for _ in range(entries):
        if position + 46 > end:
            raise UnsafeModelError("zip central directory is shorter than its entry count says")
        header = _read_at(f, position, 46)
        if not header.startswith(_CD_ENTRY):
            raise UnsafeModelError(f"zip central directory entry at offset {position} has a bad signature")
        flags = struct.unpack_from("<H", header, 8)[0]
        name_len, extra_len, comment_len = struct.unpack_from("<3H", header, 28)
        raw = _read_at(f, position + 46, name_len)
        names.append(raw.decode("utf-8" if flags & 0x800 else "cp437", errors="replace"))
        position += 46 + name_len + extra_len + comment_len
        if position > end:
            raise UnsafeModelError("zip central directory entry runs past the directory")
    return names


def zip_member_names_from_tail(tail: bytes, file_size: int) -> list[str]:
    """Like :func:`zip_member_names` from only the last bytes of a ``file_size``-byte archive.

    Enough when ``tail`` covers the central directory and end records (e.g. the last pieces of a
    download); UnsafeModelError when they start before it.
    """
    return _member_names(_Tail(bytes(tail), file_size), file_size, len(tail))


def zip_pickle_members(f: SeekableReader) -> list[str]:
    """Names of the members of zip archive ``f`` that hold pickles (see :func:`is_pickle_member`)."""
    return [name for name in zip_member_names(f) if is_pickle_member(name)]


# -- safetensors -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class TensorInfo:
    """One tensor of a safetensors header; ``begin``/``end`` are relative to the end of the header."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SafetensorsHeader:
    """A validated safetensors header."""

    header_length: int
    """``N``, the JSON header's length; the tensor data starts at byte ``8 + N``."""
    metadata: Mapping[str, str] = field(default_factory=dict)
    tensors: tuple[TensorInfo, ...] = ()
    """In file order (by offset)."""

    @property
    def data_start(self) -> int:
        return 8 + self.header_length


def safetensors_header_length(prefix: bytes, file_size: int, *, name: str = "file") -> int:
    """``N`` from a safetensors file's first 8 bytes, bounded by the limit and by the file's size."""
    if file_size < 8 or len(prefix) < 8:
        raise UnsafeModelError(f"{name}: shorter than the 8-byte safetensors header length")
    (length,) = struct.unpack_from("<Q", prefix)
    if length > SAFETENSORS_MAX_HEADER:
        raise UnsafeModelError(
            f"{name}: safetensors header length {length} exceeds the {SAFETENSORS_MAX_HEADER}-byte limit"
        )
    if length > file_size - 8:
        raise UnsafeModelError(f"{name}: safetensors header length {length} runs past the end of the file")
    return int(length)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _refuse_constant(text: str) -> Any:
    raise ValueError(f"{text} is not allowed")


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def validate_safetensors_header(data: bytes, file_size: int, *, name: str = "file") -> SafetensorsHeader:
    """Validate a safetensors header: ``data`` is the file's first ``8 + N`` bytes (more is ignored).

    ``file_size`` is the whole file's size: the tensors must cover ``[0, file_size - 8 - N)`` exactly.
    Raises UnsafeModelError naming ``name`` and the rule broken.
    """
    length = safetensors_header_length(data, file_size, name=name)
    if len(data) < 8 + length:
        raise UnsafeModelError(f"{name}: safetensors header is truncated ({len(data) - 8} of {length} bytes)")
    try:
        text = bytes(data[8 : 8 + length]).decode("utf-8")
    except UnicodeDecodeError:
        raise UnsafeModelError(f"{name}: safetensors header is not UTF-8") from None
    if not text.startswith("{"):
        raise UnsafeModelError(f"{name}: safetensors header does not start with '{{'")
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        raise UnsafeModelError(f"{name}: safetensors header is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise UnsafeModelError(f"{name}: safetensors header is not a JSON object")
    metadata = value.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise UnsafeModelError(f"{name}: safetensors __metadata__ must map text to text")
    tensors: list[TensorInfo] = []
    for tensor, spec in value.items():
        where = f"{name}: tensor {tensor!r}"
        if not isinstance(spec, dict) or not {"dtype", "shape", "data_offsets"} <= spec.keys():
            raise UnsafeModelError(f"{where}: needs dtype, shape and data_offsets")
        dtype, shape, offsets = spec["dtype"], spec["shape"], spec["data_offsets"]
        if not isinstance(dtype, str) or dtype not in SAFETENSORS_DTYPE_BITS:
            raise UnsafeModelError(f"{where}: unknown dtype {dtype!r}")
        if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
            raise UnsafeModelError(f"{where}: shape must be a list of non-negative integers")
        if not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_count(o) for o in offsets):
            raise UnsafeModelError(f"{where}: data_offsets must be [begin, end] non-negative integers")
        begin, end = offsets
        if end < begin:
            raise UnsafeModelError(f"{where}: data_offsets end {end} is before begin {begin}")
        numel = 1
        for d in shape:
            numel *= d
        bits = numel * SAFETENSORS_DTYPE_BITS[dtype]
        if bits % 8:
            raise UnsafeModelError(f"{where}: {numel} {dtype} elements do not fill whole bytes")
        if end - begin != bits // 8:
            raise UnsafeModelError(
                f"{where}: data_offsets span {end - begin} bytes but shape {shape} of {dtype} needs {bits // 8}"
            )
        tensors.append(TensorInfo(name=tensor, dtype=dtype, shape=tuple(shape), begin=begin, end=end))
    tensors.sort(key=lambda t: (t.begin, t.end))
    data_size = file_size - 8 - length
    position = 0
    for t in tensors:
        if t.begin != position:
            problem = "leaves a hole before it" if t.begin > position else "overlaps the previous tensor"
            raise UnsafeModelError(
                f"{name}: tensor {t.name!r} at offset {t.begin} {problem} (expected {position})"
            )
        position = t.end
    if position != data_size:
        where = "past the end of the file" if position > data_size else "short of the end of the file"
        raise UnsafeModelError(
            f"{name}: tensor data ends at offset {position}, {where} (the file holds {data_size} bytes of data)"
        )
    return SafetensorsHeader(header_length=length, metadata=dict(metadata), tensors=tuple(tensors))


# -- GGUF ------------------------------------------------------------------------------------------------


def check_gguf_prefix(prefix: bytes, file_size: int, *, name: str = "file") -> int:
    """The GGUF version of a file from its first 24 bytes (magic, version 1-3, plausible counts)."""
    if len(prefix) < 8 or not prefix.startswith(GGUF_MAGIC):
        raise UnsafeModelError(f"{name}: not a GGUF file (no 'GGUF' magic)")
    (version,) = struct.unpack_from("<I", prefix, 4)
    if version not in (1, 2, 3):
        raise UnsafeModelError(f"{name}: unknown GGUF version {version}")
    if version >= 2 and len(prefix) >= 24:
        tensors, kvs = struct.unpack_from("<2Q", prefix, 8)
        if tensors + kvs > file_size:  # every tensor info and key/value takes several bytes
            raise UnsafeModelError(f"{name}: GGUF header claims {tensors} tensors and {kvs} keys")
    return int(version)


# -- policy ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Policy:
    """What model files to accept."""

    allow_pickle: bool = False
    """Accept pickle-based weights (``--allow-pickle``); they can run arbitrary code when loaded."""
    validate_safetensors: bool = True
    """Validate every ``*.safetensors`` file's header and offsets."""
    validate_gguf: bool = True
    """Check every ``*.gguf`` file's magic and version."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyViolation:
    """One file refused by the policy."""

    path: str
    kind: Literal["pickle", "corrupt"]
    """``"pickle"``: pickle-based weights while pickle is not allowed; ``"corrupt"``: a bad header."""
    reason: str

    @property
    def message(self) -> str:
        if self.kind == "pickle":
            return (
                f"{self.path}: refusing pickle-based weights ({self.reason}); loading them can run "
                "arbitrary code -- pass --allow-pickle to accept them"
            )
        return f"{self.path}: {self.reason}"

    def error(self) -> UnsafeModelError:
        return UnsafeModelError(self.message)


def judge(
    path: str, prefix: bytes, policy: Policy, *, pickle_members: list[str] | None = None
) -> PolicyViolation | None:
    """The pickle verdict on one file from its name, first bytes and (for zips) pickle members.

    ``pickle_members`` is :func:`zip_pickle_members`' answer when :func:`sniff` said ``"zip"``.
    Header validation (safetensors, GGUF) is separate; see :mod:`torrentgoat.modelcheck`.
    """
    if policy.allow_pickle:
        return None
    reason = None
    if classify_filename(path) == "pickle":
        suffix = posixpath.splitext(path)[1].lower()
        reason = f"{suffix} files hold pickled Python objects (PyTorch, pickle, joblib)"
    elif sniff(prefix[:SNIFF_SIZE]) == "pickle":
        reason = "the content is a Python pickle"
    elif pickle_members:
        reason = f"zip archive containing pickle member {pickle_members[0]!r}"
    return None if reason is None else PolicyViolation(path=path, kind="pickle", reason=reason)
