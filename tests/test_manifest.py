"""torrentgoat.manifest: schema validation, canonical YAML, signatures, update plans."""

from __future__ import annotations

import dataclasses
import re
import time
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from torrentgoat.errors import ManifestError, SignatureError
from torrentgoat.keys import SigningKey
from torrentgoat.magnet import Magnet
from torrentgoat.manifest import (
    MANIFEST_FILENAME,
    MAX_MANIFEST_SIZE,
    SCHEMA,
    SIGNATURE_DOMAIN,
    SIGNATURE_FILENAME,
    Manifest,
    ManifestFile,
    ModelEntry,
    ModelSource,
    SignedManifest,
    check_update,
    dump_manifest,
    manifest_folder_files,
    parse_manifest,
    parse_signature,
    read_manifest_folder,
    sign_manifest,
    verify_manifest,
)
from torrentgoat.primitives import InfoHash
from torrentgoat.testing.timing import scaled

KEY = SigningKey(bytes(range(32)))
OTHER = SigningKey(bytes(range(1, 33)))


def sha(n: int) -> str:
    return f"{n:064x}"


def ih(n: int) -> InfoHash:
    return InfoHash(n.to_bytes(20, "big"))


def model(name: str, n: int, files: dict[str, int], **extra: Any) -> ModelEntry:
    return ModelEntry(
        name=name,
        format="safetensors",
        info_hash=ih(n),
        files=tuple(ManifestFile(path=p, size=100 + h, sha256=sha(h)) for p, h in files.items()),
        **extra,
    )


def manifest(seq: int, *models: ModelEntry, key: SigningKey = KEY, collection: str = "goat") -> Manifest:
    return Manifest(collection=collection, publisher=key.public_key, seq=seq, models=models)


BASE: dict[str, Any] = {
    "schema": SCHEMA,
    "collection": "goat",
    "publisher": KEY.public_key.hex(),
    "seq": 1,
    "models": [
        {
            "name": "tiny",
            "format": "safetensors",
            "info_hash": "ab" * 20,
            "files": [{"path": "config.json", "size": 10, "sha256": "cd" * 32}],
        }
    ],
}


def doc(**changes: Any) -> dict[str, Any]:
    """BASE with dotted-path changes: ``doc(**{"models.0.name": "x"})``; value None deletes."""
    out: Any = yaml.safe_load(yaml.safe_dump(BASE))
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        node = out
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        key: Any = int(last) if isinstance(node, list) else last
        if value is None:
            del node[key]
        else:
            node[key] = value
    return dict(out)


class _NoAliases(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def raw(document: dict[str, Any]) -> bytes:
    return yaml.dump(document, Dumper=_NoAliases, sort_keys=False).encode()


# -- strategies ----------------------------------------------------------------------------------------

_alnum = st.sampled_from("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_name_tail = st.text(alphabet="abcXYZ019._+-", max_size=20)
names = st.builds(lambda a, b: (a + b).rstrip("."), _alnum, _name_tail).filter(bool)
components = st.text(
    alphabet=st.characters(
        codec="utf-8",
        categories=("L", "N", "P", "S"),
        include_characters=" ",
        exclude_characters='/\\<>:"|?*',
    ),
    min_size=1,
    max_size=12,
).filter(
    lambda c: (
        c not in (".", "..") and c == c.strip() and not c.endswith(".") and not re.match("^[A-Za-z]:", c)
    )
)
hex40 = st.binary(min_size=20, max_size=20).map(bytes.hex)
hex64 = st.binary(min_size=32, max_size=32).map(bytes.hex)
texts = st.text(
    alphabet=st.characters(codec="utf-8", categories=("L", "N", "P", "S"), include_characters=" "),
    min_size=1,
    max_size=40,
).filter(lambda t: t == t.strip())


@st.composite
def manifest_files(draw: st.DrawFn) -> tuple[ManifestFile, ...]:
    paths = draw(st.lists(st.lists(components, min_size=1, max_size=3).map("/".join), min_size=1, max_size=5))
    chosen: list[str] = []
    for path in paths:
        folded = path.casefold()
        parts = folded.split("/")
        taken = {p.casefold() for p in chosen}
        prefixes = {"/".join(parts[:i]) for i in range(1, len(parts))}
        if folded in taken or prefixes & taken or any(t.startswith(folded + "/") for t in taken):
            continue
        chosen.append(path)
    return tuple(
        ManifestFile(path=p, size=draw(st.integers(0, 2**63 - 1)), sha256=draw(hex64)) for p in chosen
    )


@st.composite
def model_entries(draw: st.DrawFn, name: str) -> ModelEntry:
    info_hash = InfoHash(draw(st.binary(min_size=20, max_size=20)))
    return ModelEntry(
        name=name,
        format=draw(st.sampled_from(["safetensors", "gguf", "pickle", "onnx", "other"])),
        info_hash=info_hash,
        files=draw(manifest_files()),
        license=draw(st.none() | texts),
        source=draw(
            st.none()
            | st.builds(
                ModelSource,
                hf_repo=st.sampled_from(["org/name", "gpt2", "meta-llama/Llama-3.1-8B"]),
                commit=hex40,
            )
        ),
        magnet=draw(st.none() | st.just(Magnet(info_hash=info_hash, display_name=name).to_uri())),
        web_seeds=tuple(
            draw(
                st.lists(st.sampled_from(["https://huggingface.co/o/n/resolve/", "http://h:8/x"]), max_size=2)
            )
        ),
        yanked=draw(st.none() | texts),
    )


@st.composite
def manifests(draw: st.DrawFn) -> Manifest:
    model_names = draw(st.lists(names, max_size=4, unique_by=str.casefold))
    return Manifest(
        collection=draw(names.filter(lambda n: "+" not in n).map(lambda n: n[:64])),
        publisher=draw(st.binary(min_size=32, max_size=32)),
        seq=draw(st.integers(1, 2**63 - 1)),
        created=draw(
            st.none() | st.sampled_from(["2026-11-28T00:31:31+00:00", "2026-11-28", "2026-11-28T00:31:31Z"])
        ),
        models=tuple(draw(model_entries(n)) for n in model_names),
    )


# -- round trip ------------------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(manifests())
def test_round_trip(m: Manifest) -> None:
    data = dump_manifest(m)
    assert parse_manifest(data) == m
    assert dump_manifest(parse_manifest(data)) == data  # canonical: deterministic bytes


def test_dump_is_readable_and_has_a_fixed_key_order() -> None:
    m = manifest(
        3,
        model(
            "tiny",
            1,
            {"config.json": 1, "model.safetensors": 2},
            license="apache-2.0",
            source=ModelSource(hf_repo="org/tiny", commit="0" * 40),
            web_seeds=("https://huggingface.co/org/tiny/resolve/",),
        ),
    )
    text = dump_manifest(m).decode()
    keys = [line.split(":")[0].strip(" -") for line in text.splitlines()]
    assert keys[:6] == ["schema", "collection", "publisher", "seq", "models", "name"]
    assert keys.index("license") < keys.index("source") < keys.index("info_hash") < keys.index("files")
    assert "&" not in text and "*" not in text and "!!" not in text
    shared = ("https://x/",)  # the same object twice must not become an anchor and an alias
    two = manifest(1, model("a", 1, {"f": 1}, web_seeds=shared), model("b", 2, {"f": 1}, web_seeds=shared))
    assert "&id" not in dump_manifest(two).decode()


def test_dump_refuses_an_invalid_manifest() -> None:
    with pytest.raises(ManifestError, match=r"models\[0\]\.files\[0\]\.path"):
        dump_manifest(manifest(1, model("a", 1, {"../escape": 1})))
    with pytest.raises(ManifestError, match="round trip"):
        dump_manifest(
            manifest(
                1,
                dataclasses.replace(
                    model("a", 1, {"f": 1}), files=(ManifestFile(path="f", size=1, sha256="AB" * 32),)
                ),
            )
        )
    with pytest.raises(ManifestError, match="seq"):
        dump_manifest(manifest(0))


def test_parse_accepts_the_base_document_and_uppercase_hex() -> None:
    m = parse_manifest(raw(doc(**{"models.0.info_hash": "AB" * 20})))
    assert m.models[0].info_hash.hex == "ab" * 20
    assert m.publisher == KEY.public_key and m.seq == 1 and m.salt == b"goat"
    assert m.model("tiny") is m.models[0] and m.model("nope") is None
    assert m.models[0].total_size == 10 and m.models[0].file("config.json") is not None


# -- validation ------------------------------------------------------------------------------------------

BAD: list[tuple[dict[str, Any], str]] = [
    (doc(schema="torrentgoat/collection/v2"), r"^schema: expected"),
    (doc(schema=None), r"^schema: missing"),
    (doc(extra=1), r"^extra: unknown key"),
    (doc(collection="has space"), r"^collection: "),
    (doc(collection="x" * 65), r"^collection: longer than 64"),
    (doc(collection="../up"), r"^collection: "),
    (doc(publisher="zz" * 32), r"^publisher: not 64 hex digits"),
    (doc(publisher="ab" * 31), r"^publisher: not 64 hex digits"),
    (doc(seq=0), r"^seq: 0 is out of range"),
    (doc(seq=-5), r"^seq: -5 is out of range"),
    (doc(seq=2**63), r"^seq: .* out of range"),
    (doc(seq=True), r"^seq: expected an integer, got a boolean"),
    (doc(seq="1"), r"^seq: expected an integer, got text"),
    (doc(created="yesterday"), r"^created: 'yesterday' is not an ISO 8601 time"),
    (doc(models="none"), r"^models: expected a list"),
    (doc(**{"models.0": []}), r"^models\[0\]: expected a mapping, got a list"),
    (doc(**{"models.0.name": "../evil"}), r"^models\[0\]\.name: "),
    (doc(**{"models.0.name": "a/b"}), r"^models\[0\]\.name: "),
    (doc(**{"models.0.name": "C:"}), r"^models\[0\]\.name: "),
    (doc(**{"models.0.name": ".hidden"}), r"^models\[0\]\.name: "),
    (doc(**{"models.0.name": "x" * 129}), r"^models\[0\]\.name: longer than 128"),
    (
        doc(**{"models.0.name": " tiny"}),
        r"^models\[0\]\.name: contains control characters or surrounding spaces",
    ),
    (doc(**{"models.0.name": "tab\there"}), r"^models\[0\]\.name: contains control"),
    (doc(**{"models.0.name": None}), r"^models\[0\]\.name: missing"),
    (doc(**{"models.0.format": "SafeTensors"}), r"^models\[0\]\.format: "),
    (doc(**{"models.0.info_hash": "ab" * 19}), r"^models\[0\]\.info_hash: not 40 hex digits"),
    (doc(**{"models.0.info_hash": 12345}), r"^models\[0\]\.info_hash: not 40 hex digits"),
    (doc(**{"models.0.magnet": "http://nope"}), r"^models\[0\]\.magnet: "),
    (
        doc(**{"models.0.magnet": "magnet:?xt=urn:btih:" + "cd" * 20}),
        r"^models\[0\]\.magnet: names a different",
    ),
    (doc(**{"models.0.web_seeds": ["ftp://x/"]}), r"^models\[0\]\.web_seeds\[0\]: 'ftp://x/' is not an http"),
    # fuzz (tools/fuzz manifest): urlsplit raised ValueError("Invalid IPv6 URL")
    (
        doc(**{"models.0.web_seeds": ["http://[::1/"]}),
        r"^models\[0\]\.web_seeds\[0\]: 'http://\[::1/' is not an http",
    ),
    (doc(**{"models.0.web_seeds": "https://x/"}), r"^models\[0\]\.web_seeds: expected a list"),
    (doc(**{"models.0.web_seeds": ["https://x/"] * 65}), r"^models\[0\]\.web_seeds: more than 64"),
    (doc(**{"models.0.source": {"hf_repo": "org/name"}}), r"^models\[0\]\.source\.commit: missing"),
    (
        doc(**{"models.0.source": {"hf_repo": "a/b/c", "commit": "0" * 40}}),
        r"^models\[0\]\.source\.hf_repo: ",
    ),
    (
        doc(**{"models.0.source": {"hf_repo": "org--x/y", "commit": "0" * 40}}),
        r"^models\[0\]\.source\.hf_repo: ",
    ),
    (
        doc(**{"models.0.source": {"hf_repo": "o/n", "commit": "0" * 39}}),
        r"^models\[0\]\.source\.commit: not 40 hex",
    ),
    (doc(**{"models.0.yanked": ""}), r"^models\[0\]\.yanked: empty"),
    (doc(**{"models.0.license": 3}), r"^models\[0\]\.license: expected text"),
    (doc(**{"models.0.files": []}), r"^models\[0\]\.files: a model needs at least one file"),
    (doc(**{"models.0.files.0.sha256": "cd" * 31}), r"^models\[0\]\.files\[0\]\.sha256: not 64 hex digits"),
    (doc(**{"models.0.files.0.sha256": "g" * 64}), r"^models\[0\]\.files\[0\]\.sha256: not 64 hex digits"),
    (doc(**{"models.0.files.0.size": -1}), r"^models\[0\]\.files\[0\]\.size: -1 is out of range"),
    (doc(**{"models.0.files.0.size": 1.5}), r"^models\[0\]\.files\[0\]\.size: expected an integer"),
    (doc(**{"models.0.files.0.size": None}), r"^models\[0\]\.files\[0\]\.size: missing"),
    (doc(**{"models.0.files.0.mode": "x"}), r"^models\[0\]\.files\[0\]\.mode: unknown key"),
    (doc(**{"models.0.files.0.path": "../../etc/passwd"}), r"^models\[0\]\.files\[0\]\.path: "),
    (
        doc(**{"models.0.files.0.path": "/etc/passwd"}),
        r"^models\[0\]\.files\[0\]\.path: empty path component",
    ),
    (doc(**{"models.0.files.0.path": "a//b"}), r"^models\[0\]\.files\[0\]\.path: empty path component"),
    (doc(**{"models.0.files.0.path": "a/./b"}), r"^models\[0\]\.files\[0\]\.path: "),
    (doc(**{"models.0.files.0.path": "a\\..\\b"}), r"^models\[0\]\.files\[0\]\.path: .*separator"),
    (doc(**{"models.0.files.0.path": "C:/x"}), r"^models\[0\]\.files\[0\]\.path: .*drive"),
    (doc(**{"models.0.files.0.path": "a\x00b"}), r"^models\[0\]\.files\[0\]\.path: "),
    (doc(**{"models.0.files.0.path": "dir/"}), r"^models\[0\]\.files\[0\]\.path: empty path component"),
    (doc(**{"models.0.files.0.path": "con?"}), r"^models\[0\]\.files\[0\]\.path: .*portable"),
    (doc(**{"models.0.files.0.path": ""}), r"^models\[0\]\.files\[0\]\.path: empty"),
    (
        doc(
            **{
                "models.0.files": [
                    {"path": "a", "size": 1, "sha256": "0" * 64},
                    {"path": "A", "size": 1, "sha256": "0" * 64},
                ]
            }
        ),
        r"^models\[0\]\.files\[1\]\.path: 'A' collides with 'a'",
    ),
    (
        doc(
            **{
                "models.0.files": [
                    {"path": "a", "size": 1, "sha256": "0" * 64},
                    {"path": "a/b", "size": 1, "sha256": "0" * 64},
                ]
            }
        ),
        r"^models\[0\]\.files\[1\]\.path: 'a/b' is inside file 'a'",
    ),
    (
        doc(models=[BASE["models"][0], BASE["models"][0]]),
        r"^models\[1\]\.name: 'tiny' is already used by models\[0\]",
    ),
    (
        doc(models=[BASE["models"][0], {**BASE["models"][0], "name": "TINY"}]),
        r"^models\[1\]\.name: 'TINY' is already used",
    ),
]


@pytest.mark.parametrize(("document", "message"), BAD, ids=[m for _, m in BAD])
def test_validation_names_the_field(document: dict[str, Any], message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        parse_manifest(raw(document))


RAW_BAD: list[tuple[bytes, str]] = [
    (b"", "empty"),
    (b"# only a comment\n", "empty"),
    (b"- a\n- b\n", "expected a mapping, got a list"),
    (b"\xff\xfe\x00bad", "not UTF-8"),
    (b"a: [1, 2\n", "not valid YAML"),
    (b"a: 1\n---\nb: 2\n", "exactly one YAML document"),
    (b"!!python/object/apply:os.system ['echo pwned']\n", "tags are not allowed"),
    (b"schema: !!python/name:os.system ''\n", "tags are not allowed"),
    (b"seq: !!int '3'\n", "tags are not allowed"),
    (b"publisher: !!binary AAAA\n", "tags are not allowed"),
    (b"x: !custom 1\n", "tags are not allowed"),
    (b"a: &x 1\nb: *x\n", "anchors and aliases are not allowed"),
    (b"a: &x [1]\n", "anchors and aliases are not allowed"),
    (b"a: 1\nb: 2\na: 3\n", "duplicate key 'a'"),
    (b"? [1, 2]\n: 3\n", "mapping keys must be plain text"),
    (b"1: 2\n", "mapping key 1 is not text"),
    (b"a:\n  <<: {b: 1}\n", "unknown key"),
    (b"[" * 10_000 + b"]" * 10_000, "nested deeper than 16"),
    (b"- " * 100_000 + b"x", "nested deeper than 16"),
]


@pytest.mark.parametrize(("data", "message"), RAW_BAD, ids=[m for _, m in RAW_BAD])
def test_yaml_level_refusals(data: bytes, message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        parse_manifest(data)


def test_billion_laughs_is_refused_quickly() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 12)]
    started = time.monotonic()
    with pytest.raises(ManifestError, match="anchors and aliases"):
        parse_manifest("\n".join(lines).encode())
    assert time.monotonic() - started < scaled(1)  # a blow-up would take minutes


def test_size_is_bounded_before_parsing() -> None:
    with pytest.raises(ManifestError, match="at most"):
        parse_manifest(b"#" * (MAX_MANIFEST_SIZE + 1))
    with pytest.raises(ManifestError, match="at most"):
        verify_manifest(b"#" * (MAX_MANIFEST_SIZE + 1), b"\x00" * 64, KEY.public_key)


def test_plain_scalars_follow_the_core_schema() -> None:
    # a plain 'yes' or a timestamp stays text; quoted digits stay text; leading-zero digits stay text
    m = parse_manifest(
        raw(doc(**{"models.0.license": "yes", "created": "2026-11-28"}))
        .replace(b"'yes'", b"yes")
        .replace(b"'2026-11-28'", b"2026-11-28")
    )
    assert m.models[0].license == "yes" and m.created == "2026-11-28"
    assert parse_manifest(raw(doc(**{"models.0.name": "0123"}))).models[0].name == "0123"
    with pytest.raises(ManifestError, match=r"name: expected text, got an integer"):
        parse_manifest(raw(doc()).replace(b"name: tiny", b"name: 123"))


def test_a_large_manifest_parses_in_reasonable_time() -> None:
    files = [{"path": f"shard-{i:05d}.safetensors", "size": i, "sha256": f"{i:064x}"} for i in range(20_000)]
    data = raw(doc(**{"models.0.files": files}))
    started = time.monotonic()
    assert len(parse_manifest(data).models[0].files) == 20_000
    assert time.monotonic() - started < scaled(10)


# -- signatures ------------------------------------------------------------------------------------------


def signed(m: Manifest, key: SigningKey = KEY) -> tuple[bytes, bytes]:
    data = dump_manifest(m)
    return data, sign_manifest(data, key)


def test_sign_and_verify() -> None:
    m = manifest(1, model("tiny", 1, {"config.json": 1}))
    data, signature = signed(m)
    assert len(signature) == 64
    assert verify_manifest(data, signature, KEY.public_key) == m


def test_domain_separation() -> None:
    m = manifest(1, model("tiny", 1, {"config.json": 1}))
    data = dump_manifest(m)
    with pytest.raises(SignatureError):
        verify_manifest(data, KEY.sign(data), KEY.public_key)  # a signature over the bare bytes
    assert SIGNATURE_DOMAIN == b"torrentgoat-manifest-v1\x00"


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_any_flipped_byte_breaks_the_signature(data: st.DataObject) -> None:
    m = manifest(1, model("tiny", 1, {"config.json": 1}))
    content, signature = signed(m)
    which = data.draw(st.sampled_from(["content", "signature"]))
    blob = bytearray(content if which == "content" else signature)
    i = data.draw(st.integers(0, len(blob) - 1))
    blob[i] ^= data.draw(st.integers(1, 255))
    with pytest.raises(SignatureError):
        if which == "content":
            verify_manifest(bytes(blob), signature, KEY.public_key)
        else:
            verify_manifest(content, bytes(blob), KEY.public_key)


def test_wrong_key_is_refused() -> None:
    data, signature = signed(manifest(1, model("tiny", 1, {"config.json": 1})))
    with pytest.raises(SignatureError, match="not valid"):
        verify_manifest(data, signature, OTHER.public_key)
    with pytest.raises(SignatureError):
        verify_manifest(data, signature, b"\x00" * 31)


def test_publisher_must_match_the_signing_key() -> None:
    data = dump_manifest(manifest(1, model("tiny", 1, {"f": 1}), key=OTHER))
    with pytest.raises(ManifestError, match="publisher: manifest names key"):
        sign_manifest(data, KEY)
    forged = KEY.sign(SIGNATURE_DOMAIN + data)  # signed by KEY, but the manifest claims OTHER
    with pytest.raises(SignatureError, match="names publisher"):
        verify_manifest(data, forged, KEY.public_key)


def test_authentic_but_invalid_manifest_is_a_manifest_error() -> None:
    data = raw(doc(seq=0))
    with pytest.raises(ManifestError, match="seq"):
        verify_manifest(data, KEY.sign(SIGNATURE_DOMAIN + data), KEY.public_key)


def test_manifest_folder() -> None:
    m = manifest(7, model("tiny", 1, {"config.json": 1}))
    sm = SignedManifest.create(m, KEY)
    files = sm.folder_files()
    assert (
        sorted(files) == [MANIFEST_FILENAME, SIGNATURE_FILENAME] == ["collection.yaml", "collection.yaml.sig"]
    )
    assert files[SIGNATURE_FILENAME] == sm.signature.hex().encode() + b"\n"
    assert sm.torrent_name == "goat-v7"
    assert read_manifest_folder({**files, "README": b"x"}, KEY.public_key) == sm
    assert read_manifest_folder({**files, SIGNATURE_FILENAME: sm.signature}, KEY.public_key) == sm  # raw form
    with pytest.raises(ManifestError, match=r"no 'collection\.yaml\.sig'"):
        read_manifest_folder({MANIFEST_FILENAME: sm.data}, KEY.public_key)
    with pytest.raises(SignatureError):
        read_manifest_folder(
            {**files, MANIFEST_FILENAME: sm.data.replace(b"seq: 7", b"seq: 8")}, KEY.public_key
        )
    with pytest.raises(ManifestError, match="is being signed"):
        SignedManifest.create(m, OTHER)
    with pytest.raises(SignatureError):
        manifest_folder_files(sm.data, b"short")


@pytest.mark.parametrize("content", [b"", b"zz" * 64, b"ab" * 63 + b"\n", b"x" * 1000])
def test_parse_signature_refuses_garbage(content: bytes) -> None:
    with pytest.raises(SignatureError):
        parse_signature(content)


# -- updates ---------------------------------------------------------------------------------------------

V1 = manifest(
    1,
    model("alpha", 1, {"config.json": 1, "model-1.safetensors": 2, "model-2.safetensors": 3}),
    model("beta", 2, {"config.json": 4, "model.safetensors": 5}),
    model("gamma", 3, {"weights.safetensors": 6}),
)


def test_first_download_adds_everything_but_yanked_models() -> None:
    new = manifest(1, *V1.models[:2], dataclasses.replace(V1.models[2], yanked="broken tokenizer"))
    plan = check_update(None, new)
    assert plan.current_seq is None and plan.new_seq == 1
    assert [c.name for c in plan.added] == ["alpha", "beta"]
    assert all(c.old is None and not any(f.reusable for f in c.files) for c in plan.added)
    assert [m.name for m in plan.yanked] == ["gamma"]
    assert plan.warnings == ("model 'gamma' is yanked: broken tokenizer",)
    assert list(plan.model_names()) == ["alpha", "beta", "gamma"]


def test_update_plan() -> None:
    alpha2 = model("alpha", 11, {"config.json": 1, "model-1.safetensors": 2, "model-2.safetensors": 99})
    delta = model("delta", 4, {"config.json": 4, "extra.safetensors": 77})  # shares beta's config.json
    beta_yanked = dataclasses.replace(V1.models[1], yanked="license problem")
    v2 = manifest(2, alpha2, beta_yanked, delta)
    plan = check_update(V1, v2)
    assert plan.current_seq == 1 and plan.new_seq == 2
    assert plan.unchanged == ()
    [change] = plan.changed
    assert change.name == "alpha" and change.old == V1.models[0]
    assert [(c.file.path, c.reuse_from) for c in change.files] == [
        ("config.json", ("alpha", "config.json")),
        ("model-1.safetensors", ("alpha", "model-1.safetensors")),
        ("model-2.safetensors", None),
    ]
    assert change.bytes_to_fetch == 199 and change.bytes_reusable == 101 + 102
    [added] = plan.added
    assert added.name == "delta"
    assert [c.reuse_from for c in added.files] == [("beta", "config.json"), None]
    assert [m.name for m in plan.yanked] == ["beta"]
    assert [m.name for m in plan.removed] == ["gamma"]
    assert plan.warnings == (
        "model 'beta' is yanked: license problem (it was available in the held version)",
        "model 'gamma' was removed from the collection",
    )


def test_unchanged_models_are_left_alone() -> None:
    v2 = manifest(5, *V1.models)
    plan = check_update(V1, v2)
    assert [m.name for m in plan.unchanged] == ["alpha", "beta", "gamma"]
    assert plan.changed == plan.added == plan.removed == plan.yanked == () and plan.warnings == ()


def test_reuse_prefers_the_same_path_in_the_old_version() -> None:
    old = manifest(1, model("m", 1, {"a.bin": 5, "b.bin": 5, "c.bin": 6}))
    new = manifest(2, model("m", 2, {"b.bin": 5, "d.bin": 6}))
    [change] = check_update(old, new).changed
    assert [c.reuse_from for c in change.files] == [("m", "b.bin"), ("m", "c.bin")]


def test_unyanked_model_warns() -> None:
    old = manifest(1, dataclasses.replace(V1.models[0], yanked="oops"))
    plan = check_update(old, manifest(2, V1.models[0]))
    assert [m.name for m in plan.unchanged] == ["alpha"]
    assert plan.warnings == ("model 'alpha' is no longer yanked",)


@pytest.mark.parametrize("seq", [1, 2])
def test_replayed_or_older_seq_is_refused(seq: int) -> None:
    current = manifest(2, *V1.models)
    with pytest.raises(ManifestError, match=rf"seq {seq} but seq 2 is already held"):
        check_update(current, manifest(seq, *V1.models))


def test_key_change_is_refused() -> None:
    with pytest.raises(SignatureError, match="publisher key changed"):
        check_update(V1, manifest(2, *V1.models, key=OTHER))


def test_collection_change_is_refused() -> None:
    with pytest.raises(ManifestError, match="not 'goat'"):
        check_update(V1, manifest(2, *V1.models, collection="sheep"))


def test_same_info_hash_with_other_files_is_refused() -> None:
    tampered = dataclasses.replace(
        V1.models[2], files=(ManifestFile(path="weights.safetensors", size=1, sha256=sha(8)),)
    )
    with pytest.raises(ManifestError, match="keeps info-hash"):
        check_update(V1, manifest(2, V1.models[0], V1.models[1], tampered))
