"""torrentgoat.safety and torrentgoat.modelcheck: the unsafe-model-format policy and SHA-256 checks."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import pickle
import struct
import sys
import zipfile
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from torrentgoat.creation import create_torrent
from torrentgoat.errors import UnsafeModelError
from torrentgoat.keys import SigningKey
from torrentgoat.magnet import Magnet
from torrentgoat.manifest import Manifest, ManifestFile, ModelEntry, SignedManifest, read_manifest_folder
from torrentgoat.modelcheck import (
    check_model_dir,
    check_model_file,
    inspect_model_file,
    list_files,
    manifest_files_for,
    scan_model_dir,
    sha256_file,
    verify_files_sha256,
)
from torrentgoat.safety import (
    SAFETENSORS_DTYPE_BITS,
    Policy,
    check_gguf_prefix,
    classify_filename,
    is_pickle_member,
    judge,
    safetensors_header_length,
    sniff,
    validate_safetensors_header,
    zip_member_names,
    zip_member_names_from_tail,
    zip_pickle_members,
)
from torrentgoat.testing.shards import read_safetensors_header, write_model_folder, write_safetensors_shard

ROOT = Path(__file__).resolve().parent.parent


def _load_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_unsafe_models", ROOT / "tools/make_unsafe_models.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_unsafe_models"] = module
    spec.loader.exec_module(module)
    return module


tool = _load_tool()


# -- names and content ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("model-00001-of-00002.safetensors", "safetensors"),
        ("sub/dir/MODEL.SAFETENSORS", "safetensors"),
        ("llama-7b.Q4_K_M.gguf", "gguf"),
        ("pytorch_model.bin", "pickle"),
        ("pytorch_model-00001-of-00003.bin", "pickle"),
        ("model.pt", "pickle"),
        ("model.PTH", "pickle"),
        ("last.ckpt", "pickle"),
        ("scaler.pkl", "pickle"),
        ("data.pickle", "pickle"),
        ("pipeline.joblib", "pickle"),
        ("dir\\weights.pt", "pickle"),
        ("config.json", "other"),
        ("tokenizer.json", "other"),
        ("tokenizer.model", "other"),
        ("model.safetensors.index.json", "other"),
        ("README.md", "other"),
        ("vocab.txt", "other"),
        ("binary", "other"),
    ],
)
def test_classify_filename(name: str, kind: str) -> None:
    assert classify_filename(name) == kind


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_sniff_detects_pickles(protocol: int) -> None:
    for value in ({"w": [1.0, 2.0]}, [1, 2, 3], "text", 7, None):
        assert sniff(pickle.dumps(value, protocol=protocol)[:16]) == "pickle"


def test_sniff_other_content(tmp_path: Path) -> None:
    shard = write_safetensors_shard(tmp_path / "s.safetensors", 100_000)
    assert sniff(shard.read_bytes()[:16]) == "safetensors"
    assert sniff(tool.torch_like_zip()[:16]) == "zip"
    assert sniff(b"GGUF\x03\x00\x00\x00" + bytes(16)) == "gguf"
    assert sniff(b'{"model_type": "llama"}') == "unknown"
    assert sniff(b"") == sniff(b"\x80") == sniff(b"\x80\x04") == "unknown"
    assert sniff(b"\x80\x09\x95") == "unknown"  # no such pickle protocol
    assert sniff(b"\x80\x02\xff") == "unknown"  # not an opcode
    assert sniff(pickle.dumps({}, protocol=0)[:16]) == "unknown"  # documented: protocol 0/1 by name only


def test_torch_like_zip_members() -> None:
    data = tool.torch_like_zip()
    assert zip_member_names(io.BytesIO(data)) == [
        "archive/data.pkl",
        "archive/byteorder",
        "archive/data/0",
        "archive/version",
    ]
    assert zip_pickle_members(io.BytesIO(data)) == ["archive/data.pkl"]
    assert (
        is_pickle_member("x/constants.pkl")
        and is_pickle_member("A.PICKLE")
        and not is_pickle_member("data/0")
    )


def test_zip_members_from_the_tail_only() -> None:
    data = b"\x00" * 5000 + tool.torch_like_zip()  # more "tail" bytes than the file has
    real = tool.torch_like_zip()
    tail = real[-300:]
    names = zip_member_names_from_tail(tail, len(real))
    assert names == zip_member_names(io.BytesIO(real))
    with pytest.raises(UnsafeModelError, match="before the 40 tail bytes"):
        zip_member_names_from_tail(real[-40:], len(real))
    with pytest.raises(UnsafeModelError):
        zip_member_names_from_tail(data, 10)


def test_zip_with_comment_and_utf8_names() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("données/model.pkl", b"\x80\x04N.")
        archive.writestr("readme.txt", b"hi")
        archive.comment = b"c" * 1000
    assert zip_pickle_members(io.BytesIO(buffer.getvalue())) == ["données/model.pkl"]


def test_zip64_archive() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", allowZip64=True) as archive:
        for i in range(0xFFFF + 2):  # more entries than a plain end record can count
            archive.writestr(zipfile.ZipInfo(f"{i}"), b"")
        archive.writestr("archive/data.pkl", b"\x80\x02N.")
    data = buffer.getvalue()
    assert b"PK\x06\x06" in data[-200:]
    assert zip_pickle_members(io.BytesIO(data)) == ["archive/data.pkl"]


@pytest.mark.parametrize(
    "mangle",
    [
        lambda d: d[:-30],  # end record cut
        lambda d: d[:40],  # local header only
        lambda d: d.replace(b"PK\x01\x02", b"PK\x01\x03", 1),  # central directory entry signature
        lambda d: d[:-6] + struct.pack("<L", 0xFFFFFFF0) + d[-2:],  # central directory offset past the end
        lambda d: d[:-12] + struct.pack("<L", 1 << 30) + d[-8:],  # central directory size past the end
    ],
)
def test_broken_zip_is_an_unsafe_model_error(mangle: Any) -> None:
    with pytest.raises(UnsafeModelError):
        zip_member_names(io.BytesIO(mangle(tool.torch_like_zip())))


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_mangled_zip_never_crashes(data: st.DataObject) -> None:
    blob = bytearray(tool.torch_like_zip())
    for _ in range(data.draw(st.integers(1, 4))):
        blob[data.draw(st.integers(0, len(blob) - 1))] = data.draw(st.integers(0, 255))
    try:
        zip_member_names(io.BytesIO(bytes(blob)))
    except UnsafeModelError:
        pass


# -- safetensors ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [1024, 8 * 1024 * 1024 + 3, 70 * 1024 * 1024])
def test_real_shards_validate(tmp_path: Path, size: int) -> None:
    path = write_safetensors_shard(tmp_path / "s.safetensors", size, seed=size)
    data = path.read_bytes()[: 8 + 100_000]
    header = validate_safetensors_header(data, size, name="s.safetensors")
    expected = read_safetensors_header(path)
    assert header.metadata == expected["__metadata__"]
    assert {t.name for t in header.tensors} == set(expected) - {"__metadata__"}
    assert header.tensors[0].begin == 0 and header.tensors[-1].end == size - header.data_start
    assert check_model_file(path).safetensors == header


def test_tool_fixtures_valid_ones() -> None:
    for name, data in tool.ok_files().items():
        if name.endswith(".safetensors"):
            validate_safetensors_header(data, len(data), name=name)


@pytest.mark.parametrize("case", tool.CORRUPT_SAFETENSORS)
def test_corrupt_safetensors_are_refused(case: str) -> None:
    data = tool.corrupt_safetensors()[case]
    with pytest.raises(UnsafeModelError, match=f"^{case}: "):
        validate_safetensors_header(data, len(data), name=case)


@st.composite
def safetensors_files(draw: st.DrawFn) -> bytes:
    names = draw(
        st.lists(st.text(min_size=1, max_size=8), max_size=6, unique=True).map(
            lambda n: [x for x in n if x != "__metadata__"]
        )
    )
    header: dict[str, Any] = {}
    if draw(st.booleans()):
        header["__metadata__"] = draw(st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3))
    offset = 0
    for name in names:
        dtype = draw(st.sampled_from(sorted(SAFETENSORS_DTYPE_BITS)))
        shape = draw(st.lists(st.integers(0, 5), max_size=3))
        numel = 1
        for d in shape:
            numel *= d
        if numel * SAFETENSORS_DTYPE_BITS[dtype] % 8:
            shape, numel = [*shape, 8], numel * 8
        nbytes = numel * SAFETENSORS_DTYPE_BITS[dtype] // 8
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    items = list(header.items())
    order = draw(st.permutations(items))  # JSON order need not be offset order
    body = json.dumps(dict(order)).encode()
    body += b" " * draw(st.integers(0, 7))
    return struct.pack("<Q", len(body)) + body + bytes(offset)


@settings(max_examples=200, deadline=None)
@given(safetensors_files())
def test_generated_valid_headers(data: bytes) -> None:
    header = validate_safetensors_header(data, len(data))
    assert [t.begin for t in header.tensors] == sorted(t.begin for t in header.tensors)


@settings(max_examples=300, deadline=None)
@given(safetensors_files(), st.data())
def test_mutated_headers_never_crash(data: bytes, draw: st.DataObject) -> None:
    blob = bytearray(data)
    for _ in range(draw.draw(st.integers(1, 3))):
        blob[draw.draw(st.integers(0, len(blob) - 1))] = draw.draw(st.integers(0, 255))
    size = len(blob) + draw.draw(st.sampled_from([0, 0, -1, 1]))
    try:
        validate_safetensors_header(bytes(blob), size)
    except UnsafeModelError:
        pass


def test_header_length_bounds() -> None:
    assert safetensors_header_length(struct.pack("<Q", 16), 24) == 16
    with pytest.raises(UnsafeModelError, match="runs past the end"):
        safetensors_header_length(struct.pack("<Q", 17), 24)
    with pytest.raises(UnsafeModelError, match="limit"):
        safetensors_header_length(struct.pack("<Q", 2**64 - 1), 2**70)
    with pytest.raises(UnsafeModelError, match="truncated"):
        validate_safetensors_header(struct.pack("<Q", 16) + b"{}", 100)


def test_gguf_prefix() -> None:
    header = b"GGUF" + struct.pack("<I2Q", 3, 2, 5)
    assert check_gguf_prefix(header, 1000) == 3
    with pytest.raises(UnsafeModelError, match="version"):
        check_gguf_prefix(b"GGUF" + struct.pack("<I2Q", 9, 2, 5), 1000)
    with pytest.raises(UnsafeModelError, match="magic"):
        check_gguf_prefix(b"GGML" + bytes(20), 1000)
    with pytest.raises(UnsafeModelError, match="claims"):
        check_gguf_prefix(b"GGUF" + struct.pack("<I2Q", 3, 2**60, 5), 1000)


# -- policy and files on disk -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("unsafe")
    assert tool.main(["make_unsafe_models", str(out)]) == 0
    return dict(tool.write_unsafe_models(out))


def test_every_pickle_fixture_is_refused_and_allowed_with_allow_pickle(fixtures: dict[str, Path]) -> None:
    pickles = {k: v for k, v in fixtures.items() if k.startswith("pickle/")}
    assert len(pickles) == len(tool.pickle_files())
    for key, path in pickles.items():
        with pytest.raises(UnsafeModelError, match=r"refusing pickle-based weights .*--allow-pickle") as info:
            check_model_file(path, display=key)
        assert key in str(info.value)
        if not key.endswith(".safetensors"):  # a disguised pickle is still not a valid safetensors file
            check_model_file(path, Policy(allow_pickle=True), display=key)
    with pytest.raises(UnsafeModelError, match="safetensors header"):
        check_model_file(fixtures["pickle/disguised.safetensors"], Policy(allow_pickle=True))


def test_why_a_file_is_refused(fixtures: dict[str, Path]) -> None:
    def reason(key: str) -> str:
        _, violation = inspect_model_file(fixtures[key], display=key)
        assert violation is not None and violation.kind == "pickle"
        return violation.reason

    assert (
        reason("pickle/pytorch_model.bin")
        == ".bin files hold pickled Python objects (PyTorch, pickle, joblib)"
    )
    assert reason("pickle/config.json") == "the content is a Python pickle"
    assert (
        reason("pickle/torch_zip_disguised.dat") == "zip archive containing pickle member 'archive/data.pkl'"
    )


def test_every_corrupt_fixture_is_refused(fixtures: dict[str, Path]) -> None:
    corrupt = {k: v for k, v in fixtures.items() if k.startswith("corrupt/")}
    assert len(corrupt) == len(tool.CORRUPT_SAFETENSORS)
    for key, path in corrupt.items():
        _, violation = inspect_model_file(path, display=key)
        assert violation is not None and violation.kind == "corrupt", key
        assert violation.message.startswith(f"{key}: ")
        with pytest.raises(UnsafeModelError):
            check_model_file(path)
        check_model_file(path, Policy(validate_safetensors=False))


def test_ok_fixtures_pass(fixtures: dict[str, Path]) -> None:
    for key, path in fixtures.items():
        if key.startswith("ok/"):
            check_model_file(path, display=key)


def test_unreadable_zip_is_refused_unless_pickle_is_allowed(tmp_path: Path) -> None:
    path = tmp_path / "weird.dat"
    path.write_bytes(tool.torch_like_zip()[:200])
    with pytest.raises(UnsafeModelError, match="cannot be inspected"):
        check_model_file(path)
    check_model_file(path, Policy(allow_pickle=True))


def test_judge_is_pure() -> None:
    assert judge("a.bin", b"", Policy()) is not None
    assert judge("a.bin", b"", Policy(allow_pickle=True)) is None
    assert judge("a.json", b"{}", Policy()) is None
    assert judge("a.json", b"", Policy(), pickle_members=["x/data.pkl"]) is not None


def test_model_dir(tmp_path: Path) -> None:
    folder = write_model_folder(tmp_path / "m", shards=2, shard_size=1024 * 1024)
    reports = check_model_dir(folder)
    assert [r.path for r in reports] == list_files(folder)
    assert sum(r.safetensors is not None for r in reports) == 2
    (folder / "sub").mkdir()
    (folder / "sub" / "pytorch_model.bin").write_bytes(pickle.dumps({"w": 1}, protocol=2))
    (folder / "broken.safetensors").write_bytes(tool.corrupt_safetensors()["hole"])
    with pytest.raises(UnsafeModelError, match=r"2 file\(s\) refused") as info:
        check_model_dir(folder)
    assert "sub/pytorch_model.bin: refusing pickle" in str(info.value)
    assert "broken.safetensors: tensor 'b'" in str(info.value)
    _, violations = scan_model_dir(folder, ["config.json", "sub/pytorch_model.bin"])
    assert [v.path for v in violations] == ["sub/pytorch_model.bin"]
    _, violations = scan_model_dir(folder, policy=Policy(allow_pickle=True))
    assert [v.path for v in violations] == ["broken.safetensors"]


def test_sha256(tmp_path: Path) -> None:
    path = tmp_path / "f"
    data = bytes(range(256)) * 9000  # several buffers
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()
    (tmp_path / "empty").write_bytes(b"")
    assert sha256_file(tmp_path / "empty") == hashlib.sha256(b"").hexdigest()


def test_verify_files_sha256(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "good").write_bytes(b"good")
    (tmp_path / "bad").write_bytes(b"evil")
    (tmp_path / "short").write_bytes(b"abc")
    files = [
        ManifestFile(path="d/good", size=4, sha256=hashlib.sha256(b"good").hexdigest()),
        ManifestFile(path="bad", size=4, sha256=hashlib.sha256(b"good").hexdigest()),
        ManifestFile(path="short", size=4, sha256=hashlib.sha256(b"abcd").hexdigest()),
        ManifestFile(path="missing", size=1, sha256="0" * 64),
        ManifestFile(path="d", size=1, sha256="0" * 64),
    ]
    mismatches = verify_files_sha256(tmp_path, files)
    assert [(m.path, m.problem) for m in mismatches] == [
        ("bad", "sha256"),
        ("short", "size"),
        ("missing", "missing"),
        ("d", "missing"),
    ]
    assert mismatches[0].actual == hashlib.sha256(b"evil").hexdigest()
    assert mismatches[1].message == "short: size is 3, the manifest says 4"
    assert verify_files_sha256(tmp_path, files[:1]) == []


def test_a_model_folder_becomes_a_signed_manifest_entry(tmp_path: Path) -> None:
    """The publisher's path: folder -> torrent -> manifest entry -> signed; the consumer's checks."""
    folder = write_model_folder(tmp_path / "tiny", shards=2, shard_size=256 * 1024)
    metainfo = create_torrent(folder, piece_length=16384, creation_date=None)
    paths = ["/".join(f.path[1:]) for f in metainfo.info.files if not f.pad]
    entry = ModelEntry(
        name="tiny",
        format="safetensors",
        info_hash=metainfo.info_hash,
        files=manifest_files_for(folder, paths),
        magnet=Magnet.from_metainfo(metainfo).to_uri(),
    )
    assert [f.path for f in entry.files] == paths
    assert entry.files == manifest_files_for(folder, paths)  # deterministic
    key = SigningKey(b"\x07" * 32)
    signed = SignedManifest.create(
        Manifest(collection="c", publisher=key.public_key, seq=1, models=(entry,)), key
    )
    received = read_manifest_folder(signed.folder_files(), key.public_key).manifest.models[0]
    assert check_model_dir(folder, [f.path for f in received.files])
    assert verify_files_sha256(folder, received.files) == []
    shard = folder / "model-00002-of-00002.safetensors"
    data = bytearray(shard.read_bytes())
    data[-1] ^= 1
    shard.write_bytes(bytes(data))
    assert [m.path for m in verify_files_sha256(folder, received.files)] == [shard.name]
    assert {f.path for f in manifest_files_for(folder)} == set(paths)


def test_a_large_safetensors_header_whose_length_looks_like_a_pickle_proto_is_safetensors() -> None:
    """A header length of 0x7d0280 bytes starts with 80 02 7d: PROTO 2 then EMPTY_DICT if read as a
    pickle; the ``{`` at byte 8 and the zero bytes 4..7 say safetensors (found by the fuzzer's review)."""
    import struct

    from torrentgoat.safety import sniff

    prefix = struct.pack("<Q", 0x7D0280) + b'{"a":'
    assert prefix[:3] == b"\x80\x02\x7d"
    assert sniff(prefix) == "safetensors"
    assert sniff(b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01K\x01u.") == "pickle"
