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
      - {path: model.safetensors, size: 4096, sha256: <64 hex>, pieces_root: <64 hex>}
                                        # pieces_root: optional, BEP 52 root in a v2/hybrid torrent

Parsing is strict and bounded (:mod:`~torrentgoat.manifest.parse`, :mod:`~torrentgoat.manifest.yaml_io`):
at most :data:`MAX_MANIFEST_SIZE` bytes of UTF-8, one YAML document, no tags (``!!python/object`` ...),
no anchors or aliases, no duplicate keys, nesting at most :data:`MAX_DEPTH` deep; plain scalars are
read as YAML 1.2 core ints, booleans and nulls, anything else is text.  Errors are
:class:`~torrentgoat.errors.ManifestError` naming the field, e.g.
``models[2].files[0].sha256: not 64 hex digits``.  Hex is stored lowercase.

Signatures (:mod:`~torrentgoat.manifest.signing`) are detached ed25519 signatures over
``SIGNATURE_DOMAIN + manifest bytes`` (the exact bytes, never a re-serialisation); the domain prefix
keeps a manifest signature from ever being valid as a BEP 44 item signature.

Modules, one job each:

* :mod:`~torrentgoat.manifest.schema` -- the constants, limits and frozen data classes;
* :mod:`~torrentgoat.manifest.yaml_io` -- the only PyYAML user: bounded reader, canonical writer;
* :mod:`~torrentgoat.manifest.parse` -- bytes -> a validated :class:`Manifest`, errors naming the field;
* :mod:`~torrentgoat.manifest.dump` -- a :class:`Manifest` -> its canonical, signed-over bytes;
* :mod:`~torrentgoat.manifest.signing` -- detached signatures, the manifest torrent's two files;
* :mod:`~torrentgoat.manifest.update` -- may a new version replace the held one, and what changes.
"""

from __future__ import annotations

from torrentgoat.manifest.dump import dump_manifest
from torrentgoat.manifest.parse import parse_manifest
from torrentgoat.manifest.schema import (
    MANIFEST_FILENAME,
    MAX_DEPTH,
    MAX_FILES_PER_MODEL,
    MAX_MANIFEST_SIZE,
    MAX_MODELS,
    MAX_WEB_SEEDS,
    SCHEMA,
    SIGNATURE_DOMAIN,
    SIGNATURE_FILENAME,
    Manifest,
    ManifestFile,
    ModelEntry,
    ModelSource,
)
from torrentgoat.manifest.signing import (
    SignedManifest,
    manifest_folder_files,
    parse_signature,
    read_manifest_folder,
    sign_manifest,
    verify_manifest,
)
from torrentgoat.manifest.update import FileChange, ModelChange, UpdatePlan, check_update

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
