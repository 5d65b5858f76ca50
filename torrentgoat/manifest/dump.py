"""Writing a manifest (level L1): the canonical YAML bytes that are signed and shipped.

Key order is fixed (the schema's order, optional keys left out when unset) and every output is parsed
back before it is returned, so a manifest that breaks a rule never reaches a signature.
"""

from __future__ import annotations

from typing import Any

from torrentgoat.errors import ManifestError
from torrentgoat.manifest.parse import parse_manifest
from torrentgoat.manifest.schema import SCHEMA, Manifest, ManifestFile, ModelEntry
from torrentgoat.manifest.yaml_io import dump_yaml

__all__ = ["dump_manifest"]


def _file_dict(f: ManifestFile) -> dict[str, Any]:
    out: dict[str, Any] = {"path": f.path, "size": f.size, "sha256": f.sha256}
    if f.pieces_root is not None:
        out["pieces_root"] = f.pieces_root
    return out


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
    out["files"] = [_file_dict(f) for f in model.files]
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
    data = dump_yaml(doc).encode("utf-8")
    if parse_manifest(data) != manifest:
        raise ManifestError("manifest does not survive a YAML round trip (is some hex upper-case?)")
    return data
