"""Reading a manifest (level L1): bytes -> a validated :class:`~torrentgoat.manifest.schema.Manifest`.

Parsing is strict and bounded: at most :data:`~torrentgoat.manifest.schema.MAX_MANIFEST_SIZE` bytes
of UTF-8, read by :func:`~torrentgoat.manifest.yaml_io.load_yaml`, then every key checked against the
schema (unknown keys refused).  Each error is a :class:`~torrentgoat.errors.ManifestError` naming the
exact field, e.g. ``models[2].files[0].sha256: not 64 hex digits``.  Hex is stored lowercase.  File
paths are checked like torrent paths (:func:`~torrentgoat.metainfo.check_path_component`) and must
also be portable: no trailing dot or space, none of ``<>:"|?*``, no case-insensitive collisions.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from torrentgoat.errors import MagnetError, ManifestError, UnsafePathError
from torrentgoat.keys import PUBLIC_KEY_SIZE
from torrentgoat.magnet import parse_magnet
from torrentgoat.manifest.schema import (
    MAX_FILES_PER_MODEL,
    MAX_MANIFEST_SIZE,
    MAX_MODELS,
    MAX_WEB_SEEDS,
    SCHEMA,
    Manifest,
    ManifestFile,
    ModelEntry,
    ModelSource,
)
from torrentgoat.manifest.yaml_io import load_yaml
from torrentgoat.metainfo import check_path_component
from torrentgoat.primitives import InfoHash

__all__ = ["parse_manifest"]

_MAX_TEXT = 1024
_MAX_URL = 2048
_MAX_PATH = 4096
_MAX_SEQ = 2**63 - 1  # BEP 44 sequence numbers are signed 64-bit
_MAX_SIZE = 2**63 - 1

_COLLECTION_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_MODEL_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")
_FORMAT_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,31}")
_HF_PART_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?")
_HEX_RE = re.compile(r"[0-9a-fA-F]*")


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
    try:
        parts = urlsplit(text)
    except ValueError:  # e.g. an unbalanced '[' or ']' in the host ("Invalid IPv6 URL")
        raise ManifestError(f"{where}: {text!r} is not an http(s) URL") from None
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
        raw = _mapping(item, at, ("path", "size", "sha256"), ("pieces_root",))
        path = _check_path(raw["path"], f"{at}.path")
        folded = path.casefold()
        if folded in seen:
            raise ManifestError(f"{at}.path: {path!r} collides with {seen[folded]!r}")
        seen[folded] = path
        if raw.get("pieces_root") is not None and raw["size"] == 0:
            raise ManifestError(f"{at}.pieces_root: an empty file has no pieces root")
        files.append(
            ManifestFile(
                path=path,
                size=_int(raw["size"], f"{at}.size", 0, _MAX_SIZE),
                sha256=_hex(raw["sha256"], f"{at}.sha256", 64),
                pieces_root=None
                if raw.get("pieces_root") is None
                else _hex(raw["pieces_root"], f"{at}.pieces_root", 64),
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
        load_yaml(_decode(data)), "", ("schema", "collection", "publisher", "seq", "models"), ("created",)
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
