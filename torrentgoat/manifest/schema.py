"""The collection manifest's vocabulary (level L1): schema constants, limits and the frozen data classes.

A :class:`Manifest` lists a collection's models (:class:`ModelEntry`), each one torrent with every
file's path, size and SHA-256 (:class:`ManifestFile`).  Reading and checking YAML into these classes
is :mod:`torrentgoat.manifest.parse`; writing them back is :mod:`torrentgoat.manifest.dump`.
"""

from __future__ import annotations

from dataclasses import dataclass

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
    "Manifest",
    "ManifestFile",
    "ModelEntry",
    "ModelSource",
]

SCHEMA = "torrentgoat/collection/v1"
"""The value of the ``schema`` key this package reads and writes."""
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

MANIFEST_FILENAME = "collection.yaml"
"""The manifest's file inside the manifest torrent (BEP 46 points at that torrent)."""
SIGNATURE_FILENAME = "collection.yaml.sig"
"""The detached signature's file inside the manifest torrent: 128 hex digits and a newline."""
SIGNATURE_DOMAIN = b"torrentgoat-manifest-v1\x00"
"""Prefix of every signed message: ``sign(SIGNATURE_DOMAIN + manifest_bytes)``."""


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
    pieces_root: str | None = None
    """BEP 52 ``pieces root`` of the file in the model's v2/hybrid torrent (64 lowercase hex digits):
    the root of the merkle tree its 16 KiB blocks are checked against in a block-level update.  None in
    manifests of v1 torrents (and of empty files, which have no root)."""


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
