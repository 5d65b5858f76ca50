"""Signed collection manifests (level L1): the YAML schema, its canonical form, signatures and update rules.

A *collection* is a set of models published under one ed25519 key.  Each model is one torrent; the
manifest lists, per model, its info-hash and every file's path, size and SHA-256.  The manifest is
shipped as a tiny torrent of its own (:data:`MANIFEST_FILENAME` + :data:`SIGNATURE_FILENAME`), and the
publisher's key points at the latest manifest torrent through a BEP 46 mutable item whose salt is the
collection name, so ``magnet:?xs=urn:btpk:<key>&s=<salt>`` always names the latest signed version.

Schema ``torrentgoat/collection/v1`` (every other key is refused)::

    schema: torrentgoat/collection/v1
    collection: my-models               # 1-64 of [A-Za-z0-9._-]; also the BEP 46 salt
    publisher: <64 hex>                 # ed25519 public key
    seq: 3                              # >= 1, grows with every published version
    created: '2026-11-28T00:00:00+00:00'  # optional ISO 8601 time
    models:
    - name: tiny-llama                  # unique (case-insensitively), [A-Za-z0-9][A-Za-z0-9._+-]*
      format: safetensors               # safetensors, gguf, pickle, onnx, ... (a lowercase token)
      license: apache-2.0               # optional
      source: {hf_repo: org/name, commit: <40 hex>}   # optional
      info_hash: <40 hex>               # the model torrent's BEP 3 info-hash
      magnet: 'magnet:?xt=urn:btih:...' # optional; must name the same info-hash
      web_seeds: [https://...]          # optional BEP 19 URLs
      yanked: reason                    # optional: do not download unless asked explicitly
      files:
      - {path: config.json, size: 663, sha256: <64 hex>}

Parsing is strict and bounded: at most :data:`MAX_MANIFEST_SIZE` bytes of UTF-8, one YAML document,
no tags (``!!python/object`` ...), no anchors or aliases, no duplicate keys, nesting at most
:data:`MAX_DEPTH` deep; plain scalars are read as YAML 1.2 core ints, booleans and nulls, anything
else is text.  Errors are :class:`~torrentgoat.errors.ManifestError` naming the field, e.g.
``models[2].files[0].sha256: not 64 hex digits``.  Hex is stored lowercase.

Signatures are detached ed25519 signatures over ``SIGNATURE_DOMAIN + manifest bytes`` (the exact
bytes, never a re-serialisation).  The domain prefix ``b"torrentgoat-manifest-v1\\0"`` keeps a
manifest signature from ever being valid as a BEP 44 item signature (those start with ``3:seq`` or
``4:salt``) or any other message signed with the same key.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import yaml

from torrentgoat.errors import MagnetError, ManifestError, SignatureError, UnsafePathError
from torrentgoat.keys import PUBLIC_KEY_SIZE, SIGNATURE_SIZE, SigningKey, verify_signature
from torrentgoat.magnet import parse_magnet
from torrentgoat.metainfo import check_path_component
from torrentgoat.primitives import InfoHash

__all__ = [
    "MANIFEST_FILENAME",
    "MAX_DEPTH",
    "MAX_FILES_PER_MODEL",
    "MAX_MANIFEST_SIZE",
    "MAX_MODELS",
    "MAX_WEB_SEEDS",
    "SCHEMA",
    "SIGNATURE_DOMAIN",
    "SIGNATURE_FILENAME",
    "FileChange",
    "Manifest",
    "ManifestFile",
    "ModelChange",
    "ModelEntry",
    "ModelSource",
    "SignedManifest",
    "UpdatePlan",
    "check_update",
    "dump_manifest",
    "manifest_folder_files",
    "parse_manifest",
    "parse_signature",
    "read_manifest_folder",
    "sign_manifest",
    "verify_manifest",
]

SCHEMA = "torrentgoat/collection/v1"
"""The value of the ``schema`` key this module reads and writes."""
MAX_MANIFEST_SIZE = 4 * 1024 * 1024
"""Largest manifest accepted, in bytes (checked before any parsing or signature work)."""
MAX_MODELS = 4096
"""Most models in one collection."""
MAX_FILES_PER_MODEL = 65536
"""Most files in one model."""
MAX_WEB_SEEDS = 64
"""Most web seed URLs per model."""
MAX_DEPTH = 16
"""Deepest YAML nesting accepted (the schema needs 5)."""
_MAX_EVENTS = 4_000_000
_MAX_TEXT = 1024
_MAX_URL = 2048
_MAX_PATH = 4096
_MAX_SEQ = 2**63 - 1  # BEP 44 sequence numbers are signed 64-bit
_MAX_SIZE = 2**63 - 1

MANIFEST_FILENAME = "collection.yaml"
"""The manifest's file inside the manifest torrent (BEP 46 points at that torrent)."""
SIGNATURE_FILENAME = "collection.yaml.sig"
"""The detached signature's file inside the manifest torrent: 128 hex digits and a newline."""
SIGNATURE_DOMAIN = b"torrentgoat-manifest-v1\x00"
"""Prefix of every signed message: ``sign(SIGNATURE_DOMAIN + manifest_bytes)``."""

_COLLECTION_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_MODEL_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")
_FORMAT_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,31}")
_HF_PART_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?")
_HEX_RE = re.compile(r"[0-9a-fA-F]*")
_INT_RE = re.compile(r"[-+]?(?:0|[1-9][0-9]*)")
_NULLS = frozenset({"", "~", "null", "Null", "NULL"})
_TRUE = frozenset({"true", "True", "TRUE"})
_FALSE = frozenset({"false", "False", "FALSE"})


# -- data ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelSource:
    """Where a model's files came from: a Hugging Face repository at one commit."""

    hf_repo: str
    """``org/name`` (or a bare legacy ``name``) as on the hub."""
    commit: str
    """The 40-hex-digit git commit of the snapshot (lowercase)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ManifestFile:
    """One file of a model torrent."""

    path: str
    """Relative POSIX path inside the model's torrent directory (validated like torrent paths)."""
    size: int
    """Length in bytes."""
    sha256: str
    """SHA-256 of the content, 64 lowercase hex digits (what the HF cache names its blobs by)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelEntry:
    """One model of a collection: one torrent."""

    name: str
    """Unique within the collection (case-insensitively); safe as a directory name."""
    format: str
    """Weights format, a lowercase token: ``safetensors``, ``gguf``, ``pickle``, ``onnx`` ... (informative:
    the unsafe-format policy looks at every file's name and content, not at this)."""
    info_hash: InfoHash
    """The model torrent's info-hash (BEP 3); unchanged models keep it across versions."""
    files: tuple[ManifestFile, ...]
    """Every file of the torrent (pad files excluded), in torrent order."""
    license: str | None = None
    source: ModelSource | None = None
    magnet: str | None = None
    """Optional magnet link; when present it names the same info-hash."""
    web_seeds: tuple[str, ...] = ()
    """BEP 19 ``url-list`` URLs (http/https)."""
    yanked: str | None = None
    """Why the publisher withdrew this model; a yanked model is only downloaded when asked for by name."""

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files)

    def file(self, path: str) -> ManifestFile | None:
        """The entry for ``path``, or None."""
        for entry in self.files:
            if entry.path == path:
                return entry
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class Manifest:
    """A parsed, validated collection manifest (schema :data:`SCHEMA`)."""

    collection: str
    """The collection's name; also the BEP 46 salt (at most 64 bytes)."""
    publisher: bytes
    """The publisher's 32-byte ed25519 public key."""
    seq: int
    """Version number, at least 1; every update must raise it."""
    models: tuple[ModelEntry, ...] = ()
    created: str | None = None
    """ISO 8601 creation time, as written."""

    @property
    def salt(self) -> bytes:
        """The BEP 46 salt: the collection name's bytes."""
        return self.collection.encode()

    def model(self, name: str) -> ModelEntry | None:
        """The model called ``name``, or None."""
        for entry in self.models:
            if entry.name == name:
                return entry
        return None


# -- YAML reading (bounded, no tags, no aliases) -------------------------------------------------------

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _scalar(event: yaml.ScalarEvent) -> Any:
    value = event.value
    if event.implicit[0]:  # plain scalar: YAML 1.2 core types, subset of PyYAML's
        if value in _NULLS:
            return None
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
        if _INT_RE.fullmatch(value):
            return int(value)
    return value


def _where(event: yaml.Event) -> str:
    mark = event.start_mark
    return f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "?"


def _load_yaml(text: str) -> Any:
    """One YAML document as plain Python values, built from the parser's events (no recursion)."""
    stack: list[tuple[Any, list[Any] | None]] = []  # (container, [pending key] for mappings)
    root: Any = None
    documents = 0
    events = 0
    done = False

    def add(value: Any, event: yaml.Event) -> None:
        nonlocal root, done
        if not stack:
            root = value
            done = True
            return
        container, pending = stack[-1]
        if pending is None:
            container.append(value)
        elif not pending:
            if isinstance(value, dict | list):
                raise ManifestError(f"YAML {_where(event)}: mapping keys must be plain text")
            if not isinstance(value, str):
                raise ManifestError(f"YAML {_where(event)}: mapping key {value!r} is not text")
            if value in container:
                raise ManifestError(f"YAML {_where(event)}: duplicate key {value!r}")
            pending.append(value)
        else:
            container[pending.pop()] = value

    try:
        for event in yaml.parse(text, Loader=_Loader):
            events += 1
            if events > _MAX_EVENTS:
                raise ManifestError("manifest has too many YAML nodes")
            anchor = getattr(event, "anchor", None)
            if isinstance(event, yaml.AliasEvent) or anchor is not None:
                raise ManifestError(f"YAML {_where(event)}: anchors and aliases are not allowed")
            if isinstance(event, yaml.NodeEvent) and getattr(event, "tag", None) is not None:
                tag = getattr(event, "tag", None)
                raise ManifestError(f"YAML {_where(event)}: tags are not allowed (found {tag!r})")
            if isinstance(event, yaml.DocumentStartEvent):
                documents += 1
                if documents > 1:
                    raise ManifestError("a manifest is exactly one YAML document")
            elif isinstance(event, yaml.ScalarEvent):
                add(_scalar(event), event)
            elif isinstance(event, yaml.SequenceStartEvent | yaml.MappingStartEvent):
                if len(stack) >= MAX_DEPTH:
                    raise ManifestError(f"YAML {_where(event)}: nested deeper than {MAX_DEPTH} levels")
                container: Any = [] if isinstance(event, yaml.SequenceStartEvent) else {}
                add(container, event)
                stack.append((container, [] if isinstance(container, dict) else None))
            elif isinstance(event, yaml.CollectionEndEvent):
                stack.pop()
    except yaml.YAMLError as exc:
        message = " ".join(str(exc).split())
        if "nesting depth" in message:  # PyYAML >= 6.0.4 stops deep flow nesting in its scanner
            raise ManifestError(f"YAML: nested deeper than {MAX_DEPTH} levels ({message})") from None
        raise ManifestError(f"manifest is not valid YAML: {message}") from None
    if not done:
        raise ManifestError("manifest is empty")
    return root


# -- validation ----------------------------------------------------------------------------------------


def _mapping(value: Any, where: str, required: Sequence[str], optional: Sequence[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ManifestError(f"{where or 'manifest'}: expected a mapping, got {_kind(value)}")
    for key in value:
        if key not in required and key not in optional:
            raise ManifestError(f"{_join(where, key)}: unknown key")
    for key in required:
        if key not in value:
            raise ManifestError(f"{_join(where, key)}: missing")
    return value


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    return {dict: "a mapping", list: "a list", str: "text", bool: "a boolean", int: "an integer"}.get(
        type(value), type(value).__name__
    )


def _text(value: Any, where: str, *, max_len: int = _MAX_TEXT) -> str:
    if not isinstance(value, str):
        raise ManifestError(f"{where}: expected text, got {_kind(value)}")
    if not value:
        raise ManifestError(f"{where}: empty")
    if len(value) > max_len:
        raise ManifestError(f"{where}: longer than {max_len} characters")
    if not value.isprintable() or value != value.strip():
        raise ManifestError(f"{where}: contains control characters or surrounding spaces")
    return value


def _int(value: Any, where: str, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ManifestError(f"{where}: expected an integer, got {_kind(value)}")
    if not low <= value <= high:
        raise ManifestError(f"{where}: {value} is out of range [{low}, {high}]")
    return value


def _hex(value: Any, where: str, digits: int) -> str:
    if not isinstance(value, str) or len(value) != digits or not _HEX_RE.fullmatch(value):
        raise ManifestError(f"{where}: not {digits} hex digits")
    return value.lower()


def _list(value: Any, where: str, limit: int) -> list[Any]:
    if not isinstance(value, list):
        raise ManifestError(f"{where}: expected a list, got {_kind(value)}")
    if len(value) > limit:
        raise ManifestError(f"{where}: more than {limit} entries")
    return value


def _check_path(path: Any, where: str) -> str:
    text = _text(path, where, max_len=_MAX_PATH)
    parts = text.split("/")
    try:
        for part in parts:
            check_path_component(part, where)
    except UnsafePathError as exc:
        raise ManifestError(str(exc)) from None
    if any(part.endswith((" ", ".")) or any(c in part for c in '<>:"|?*') for part in parts):
        raise ManifestError(f'{where}: {text!r} is not a portable file name (trailing dot/space or <>:"|?*)')
    return text


def _check_url(value: Any, where: str) -> str:
    text = _text(value, where, max_len=_MAX_URL)
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ManifestError(f"{where}: {text!r} is not an http(s) URL")
    return text


def _check_hf_repo(value: Any, where: str) -> str:
    text = _text(value, where, max_len=193)
    parts = text.split("/")
    if (
        len(parts) > 2
        or not all(_HF_PART_RE.fullmatch(part) for part in parts)
        or "--" in text
        or ".." in text
    ):
        raise ManifestError(f"{where}: {text!r} is not a Hugging Face repo id (org/name)")
    return text


def _parse_source(value: Any, where: str) -> ModelSource:
    raw = _mapping(value, where, ("hf_repo", "commit"), ())
    return ModelSource(
        hf_repo=_check_hf_repo(raw["hf_repo"], f"{where}.hf_repo"),
        commit=_hex(raw["commit"], f"{where}.commit", 40),
    )


def _parse_files(value: Any, where: str) -> tuple[ManifestFile, ...]:
    items = _list(value, where, MAX_FILES_PER_MODEL)
    if not items:
        raise ManifestError(f"{where}: a model needs at least one file")
    files: list[ManifestFile] = []
    seen: dict[str, str] = {}
    for i, item in enumerate(items):
        at = f"{where}[{i}]"
        raw = _mapping(item, at, ("path", "size", "sha256"), ())
        path = _check_path(raw["path"], f"{at}.path")
        folded = path.casefold()
        if folded in seen:
            raise ManifestError(f"{at}.path: {path!r} collides with {seen[folded]!r}")
        seen[folded] = path
        files.append(
            ManifestFile(
                path=path,
                size=_int(raw["size"], f"{at}.size", 0, _MAX_SIZE),
                sha256=_hex(raw["sha256"], f"{at}.sha256", 64),
            )
        )
    for i, entry in enumerate(files):  # no file may be a directory of another (a and a/b)
        parts = entry.path.casefold().split("/")
        for depth in range(1, len(parts)):
            prefix = "/".join(parts[:depth])
            if prefix in seen:
                raise ManifestError(f"{where}[{i}].path: {entry.path!r} is inside file {seen[prefix]!r}")
    return tuple(files)


_MODEL_REQUIRED = ("name", "format", "info_hash", "files")
_MODEL_OPTIONAL = ("license", "source", "magnet", "web_seeds", "yanked")


def _parse_model(value: Any, where: str) -> ModelEntry:
    raw = _mapping(value, where, _MODEL_REQUIRED, _MODEL_OPTIONAL)
    name = _text(raw["name"], f"{where}.name", max_len=128)
    if not _MODEL_NAME_RE.fullmatch(name) or name.endswith("."):
        raise ManifestError(f"{where}.name: {name!r} must be 1-128 of [A-Za-z0-9._+-], starting alphanumeric")
    try:
        check_path_component(name, f"{where}.name")
    except UnsafePathError as exc:
        raise ManifestError(str(exc)) from None
    fmt = _text(raw["format"], f"{where}.format", max_len=32)
    if not _FORMAT_RE.fullmatch(fmt):
        raise ManifestError(f"{where}.format: {fmt!r} is not a lowercase format name like 'safetensors'")
    info_hash = InfoHash(bytes.fromhex(_hex(raw["info_hash"], f"{where}.info_hash", 40)))
    magnet = None
    if raw.get("magnet") is not None:
        magnet = _text(raw["magnet"], f"{where}.magnet", max_len=8192)
        try:
            parsed = parse_magnet(magnet)
        except MagnetError as exc:
            raise ManifestError(f"{where}.magnet: {exc}") from None
        if parsed.info_hash != info_hash:
            raise ManifestError(f"{where}.magnet: names a different info-hash than {where}.info_hash")
    seeds = raw.get("web_seeds")
    web_seeds: tuple[str, ...] = ()
    if seeds is not None:
        items = _list(seeds, f"{where}.web_seeds", MAX_WEB_SEEDS)
        web_seeds = tuple(_check_url(url, f"{where}.web_seeds[{i}]") for i, url in enumerate(items))
    return ModelEntry(
        name=name,
        format=fmt,
        info_hash=info_hash,
        files=_parse_files(raw["files"], f"{where}.files"),
        license=None if raw.get("license") is None else _text(raw["license"], f"{where}.license"),
        source=None if raw.get("source") is None else _parse_source(raw["source"], f"{where}.source"),
        magnet=magnet,
        web_seeds=web_seeds,
        yanked=None if raw.get("yanked") is None else _text(raw["yanked"], f"{where}.yanked"),
    )


def _check_created(value: Any) -> str:
    text = _text(value, "created", max_len=64)
    try:
        datetime.fromisoformat(text)
    except ValueError:
        raise ManifestError(f"created: {text!r} is not an ISO 8601 time") from None
    return text


def _decode(data: bytes) -> str:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ManifestError(f"manifest must be bytes, got {type(data).__name__}")
    if len(data) > MAX_MANIFEST_SIZE:
        raise ManifestError(f"manifest is {len(data)} bytes; at most {MAX_MANIFEST_SIZE} are accepted")
    try:
        return bytes(data).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ManifestError(f"manifest is not UTF-8 (byte {exc.start})") from None


def parse_manifest(data: bytes) -> Manifest:
    """Parse and validate manifest bytes (see the module docstring for the rules); ManifestError if bad."""
    root = _mapping(
        _load_yaml(_decode(data)), "", ("schema", "collection", "publisher", "seq", "models"), ("created",)
    )
    if root["schema"] != SCHEMA:
        raise ManifestError(f"schema: expected {SCHEMA!r}, got {root['schema']!r}")
    collection = _text(root["collection"], "collection", max_len=64)
    if not _COLLECTION_RE.fullmatch(collection):
        raise ManifestError(
            f"collection: {collection!r} must be 1-64 of [A-Za-z0-9._-], starting alphanumeric"
        )
    publisher = bytes.fromhex(_hex(root["publisher"], "publisher", 2 * PUBLIC_KEY_SIZE))
    seq = _int(root["seq"], "seq", 1, _MAX_SEQ)
    created = None if root.get("created") is None else _check_created(root["created"])
    items = _list(root["models"], "models", MAX_MODELS)
    models = tuple(_parse_model(item, f"models[{i}]") for i, item in enumerate(items))
    names: dict[str, int] = {}
    for i, model in enumerate(models):
        folded = model.name.casefold()
        if folded in names:
            raise ManifestError(
                f"models[{i}].name: {model.name!r} is already used by models[{names[folded]}]"
            )
        names[folded] = i
    return Manifest(collection=collection, publisher=publisher, seq=seq, models=models, created=created)


# -- canonical YAML writing ----------------------------------------------------------------------------


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def _model_dict(model: ModelEntry) -> dict[str, Any]:
    out: dict[str, Any] = {"name": model.name, "format": model.format}
    if model.license is not None:
        out["license"] = model.license
    if model.source is not None:
        out["source"] = {"hf_repo": model.source.hf_repo, "commit": model.source.commit}
    out["info_hash"] = model.info_hash.hex
    if model.magnet is not None:
        out["magnet"] = model.magnet
    if model.web_seeds:
        out["web_seeds"] = list(model.web_seeds)
    if model.yanked is not None:
        out["yanked"] = model.yanked
    out["files"] = [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in model.files]
    return out


def dump_manifest(manifest: Manifest) -> bytes:
    """Canonical YAML bytes of ``manifest``: fixed key order, block style, no aliases, UTF-8.

    The output is checked by parsing it back: a manifest that breaks a rule (or does not survive the
    round trip, such as upper-case hex) raises ManifestError, so an invalid manifest is never signed.
    """
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "collection": manifest.collection,
        "publisher": manifest.publisher.hex(),
        "seq": manifest.seq,
    }
    if manifest.created is not None:
        doc["created"] = manifest.created
    doc["models"] = [_model_dict(m) for m in manifest.models]
    text = yaml.dump(
        doc,
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=4096,
        explicit_start=False,
    )
    data = text.encode("utf-8")
    if parse_manifest(data) != manifest:
        raise ManifestError("manifest does not survive a YAML round trip (is some hex upper-case?)")
    return data


# -- signatures ----------------------------------------------------------------------------------------


def sign_manifest(data: bytes, key: SigningKey) -> bytes:
    """The detached 64-byte signature of manifest ``data`` (ed25519 over SIGNATURE_DOMAIN + data).

    ``data`` is parsed first: ManifestError if it is invalid or names a publisher other than ``key``.
    """
    manifest = parse_manifest(data)
    if manifest.publisher != key.public_key:
        raise ManifestError(
            f"publisher: manifest names key {manifest.publisher.hex()} but is being signed with "
            f"{key.public_key.hex()}"
        )
    return key.sign(SIGNATURE_DOMAIN + bytes(data))


def verify_manifest(data: bytes, signature: bytes, expected_public_key: bytes) -> Manifest:
    """Check ``signature`` over ``data`` under ``expected_public_key`` (from the btpk magnet), then parse.

    SignatureError when the signature does not verify or the manifest names another publisher;
    ManifestError when the (authentic) manifest breaks the schema.
    """
    if len(data) > MAX_MANIFEST_SIZE:
        raise ManifestError(f"manifest is {len(data)} bytes; at most {MAX_MANIFEST_SIZE} are accepted")
    try:
        verify_signature(expected_public_key, SIGNATURE_DOMAIN + bytes(data), signature)
    except SignatureError as exc:
        raise SignatureError(f"manifest signature is not valid: {exc}") from None
    manifest = parse_manifest(data)
    if manifest.publisher != expected_public_key:
        raise SignatureError(
            f"manifest names publisher {manifest.publisher.hex()} but was published under key "
            f"{expected_public_key.hex()}"
        )
    return manifest


def parse_signature(data: bytes) -> bytes:
    """A signature file's content -> the 64-byte signature (128 hex digits and whitespace, or 64 raw bytes)."""
    if len(data) == SIGNATURE_SIZE:
        return bytes(data)
    if len(data) > 4 * SIGNATURE_SIZE:
        raise SignatureError(f"signature file of {len(data)} bytes is too large")
    try:
        raw = bytes.fromhex(bytes(data).decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        raise SignatureError("signature file is neither 128 hex digits nor 64 raw bytes") from None
    if len(raw) != SIGNATURE_SIZE:
        raise SignatureError(f"signature holds {len(raw)} bytes; an ed25519 signature is {SIGNATURE_SIZE}")
    return raw


@dataclass(frozen=True, slots=True, kw_only=True)
class SignedManifest:
    """A manifest with the exact bytes that were signed and the signature."""

    manifest: Manifest
    data: bytes
    signature: bytes

    @classmethod
    def create(cls, manifest: Manifest, key: SigningKey) -> SignedManifest:
        """Dump ``manifest`` canonically and sign it (ManifestError if ``key`` is not its publisher)."""
        data = dump_manifest(manifest)
        return cls(manifest=manifest, data=data, signature=sign_manifest(data, key))

    @property
    def torrent_name(self) -> str:
        """Suggested name of the manifest torrent: ``<collection>-v<seq>``."""
        return f"{self.manifest.collection}-v{self.manifest.seq}"

    def folder_files(self) -> dict[str, bytes]:
        """The manifest torrent's two files, name -> content (see :func:`manifest_folder_files`)."""
        return manifest_folder_files(self.data, self.signature)


def manifest_folder_files(data: bytes, signature: bytes) -> dict[str, bytes]:
    """``{MANIFEST_FILENAME: data, SIGNATURE_FILENAME: <signature hex>\\n}``: the manifest torrent's content."""
    if len(signature) != SIGNATURE_SIZE:
        raise SignatureError(f"an ed25519 signature is {SIGNATURE_SIZE} bytes, got {len(signature)}")
    return {MANIFEST_FILENAME: bytes(data), SIGNATURE_FILENAME: signature.hex().encode() + b"\n"}


def read_manifest_folder(files: Mapping[str, bytes], expected_public_key: bytes) -> SignedManifest:
    """Verify a downloaded manifest torrent's files (name -> content) under ``expected_public_key``.

    Both files must be present; other files are ignored.  Raises like :func:`verify_manifest`.
    """
    for name in (MANIFEST_FILENAME, SIGNATURE_FILENAME):
        if name not in files:
            raise ManifestError(f"manifest torrent has no {name!r}")
    data = bytes(files[MANIFEST_FILENAME])
    signature = parse_signature(files[SIGNATURE_FILENAME])
    manifest = verify_manifest(data, signature, expected_public_key)
    return SignedManifest(manifest=manifest, data=data, signature=signature)


# -- updates -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class FileChange:
    """One file of a new or changed model, and where its bytes may already be found locally."""

    file: ManifestFile
    reuse_from: tuple[str, str] | None = None
    """``(model name, path)`` of a file with the same SHA-256 in the current manifest (the model's own
    old version first, then any other model), or None when the bytes must be downloaded.  The caller
    must still verify the local file's SHA-256 before reusing it."""

    @property
    def reusable(self) -> bool:
        return self.reuse_from is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelChange:
    """A model to fetch: new in this version (``old`` is None) or with a new info-hash."""

    new: ModelEntry
    old: ModelEntry | None
    files: tuple[FileChange, ...]

    @property
    def name(self) -> str:
        return self.new.name

    @property
    def bytes_to_fetch(self) -> int:
        return sum(c.file.size for c in self.files if c.reuse_from is None)

    @property
    def bytes_reusable(self) -> int:
        return sum(c.file.size for c in self.files if c.reuse_from is not None)


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdatePlan:
    """What moving from the current manifest to a new one means (built by :func:`check_update`).

    Every model of the new manifest is in exactly one of ``unchanged``, ``changed``, ``added`` and
    ``yanked``; ``removed`` lists current models the new version no longer has.
    """

    current_seq: int | None
    new_seq: int
    unchanged: tuple[ModelEntry, ...] = ()
    """Same info-hash as before: leave alone."""
    changed: tuple[ModelChange, ...] = ()
    """New info-hash: fetch what is not reusable."""
    added: tuple[ModelChange, ...] = ()
    """Not in the current manifest."""
    removed: tuple[ModelEntry, ...] = ()
    yanked: tuple[ModelEntry, ...] = ()
    """Yanked in the new manifest: not fetched unless asked for by name."""
    warnings: tuple[str, ...] = ()

    def model_names(self) -> Iterator[str]:
        """Names of the new manifest's models covered by the plan, yanked ones included."""
        for entry in self.unchanged:
            yield entry.name
        for change in (*self.changed, *self.added):
            yield change.name
        for entry in self.yanked:
            yield entry.name


def _file_changes(
    new: ModelEntry, old: ModelEntry | None, current: Manifest | None
) -> tuple[FileChange, ...]:
    """Where each file of ``new`` may be found locally: same path and hash in the old version first,
    then the same hash anywhere in the old version, then anywhere in the current manifest."""
    index: dict[str, tuple[str, str]] = {}
    if current is not None:
        for model in current.models:
            for f in model.files:
                index.setdefault(f.sha256, (model.name, f.path))
    if old is not None:
        for f in old.files:
            index[f.sha256] = (old.name, f.path)
        same_path = {(f.path, f.sha256) for f in new.files}
        for f in old.files:
            if (f.path, f.sha256) in same_path:
                index[f.sha256] = (old.name, f.path)
    return tuple(FileChange(file=f, reuse_from=index.get(f.sha256)) for f in new.files)


def check_update(current: Manifest | None, new: Manifest) -> UpdatePlan:
    """Decide whether ``new`` may replace ``current`` and what it changes (pure; nothing touches disk).

    Refused: a different collection name (ManifestError), a different publisher key (SignatureError),
    a ``seq`` not above the current one (ManifestError: a replay or a rollback), and a model that keeps
    its info-hash while its file list changes (ManifestError: the same torrent cannot have new files).
    ``current`` is None for a first download: every model is then added (or yanked).
    """
    if current is not None:
        if new.collection != current.collection:
            raise ManifestError(
                f"collection: the update is for {new.collection!r}, not {current.collection!r}; refusing it"
            )
        if new.publisher != current.publisher:
            raise SignatureError(
                f"publisher key changed from {current.publisher.hex()} to {new.publisher.hex()}; refusing the update"
            )
        if new.seq <= current.seq:
            raise ManifestError(
                f"seq: the offered manifest has seq {new.seq} but seq {current.seq} is already held; "
                "refusing a replayed or older version"
            )
    old_models = {m.name: m for m in current.models} if current is not None else {}
    unchanged: list[ModelEntry] = []
    changed: list[ModelChange] = []
    added: list[ModelChange] = []
    yanked: list[ModelEntry] = []
    warnings: list[str] = []
    for model in new.models:
        old = old_models.get(model.name)
        if model.yanked is not None:
            yanked.append(model)
            was = "" if old is None or old.yanked is not None else " (it was available in the held version)"
            warnings.append(f"model {model.name!r} is yanked: {model.yanked}{was}")
            continue
        if old is not None and old.info_hash == model.info_hash:
            if old.files != model.files:
                raise ManifestError(
                    f"model {model.name!r} keeps info-hash {model.info_hash.hex} but lists different files"
                )
            unchanged.append(model)
            if old.yanked is not None:
                warnings.append(f"model {model.name!r} is no longer yanked")
            continue
        change = ModelChange(new=model, old=old, files=_file_changes(model, old, current))
        (added if old is None else changed).append(change)
    new_names = {m.name for m in new.models}
    removed = tuple(m for m in (current.models if current is not None else ()) if m.name not in new_names)
    for model in removed:
        warnings.append(f"model {model.name!r} was removed from the collection")
    return UpdatePlan(
        current_seq=None if current is None else current.seq,
        new_seq=new.seq,
        unchanged=tuple(unchanged),
        changed=tuple(changed),
        added=tuple(added),
        removed=removed,
        yanked=tuple(yanked),
        warnings=tuple(warnings),
    )
