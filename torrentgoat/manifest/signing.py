"""Manifest signatures (level L1): detached ed25519 signatures and the manifest torrent's two files.

Signatures are detached ed25519 signatures over ``SIGNATURE_DOMAIN + manifest bytes`` (the exact
bytes, never a re-serialisation).  The domain prefix ``b"torrentgoat-manifest-v1\\0"`` keeps a
manifest signature from ever being valid as a BEP 44 item signature (those start with ``3:seq`` or
``4:salt``) or any other message signed with the same key.  The manifest torrent holds
:data:`~torrentgoat.manifest.schema.MANIFEST_FILENAME` and, beside it,
:data:`~torrentgoat.manifest.schema.SIGNATURE_FILENAME` (128 hex digits and a newline).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from torrentgoat.errors import ManifestError, SignatureError
from torrentgoat.keys import SIGNATURE_SIZE, SigningKey, verify_signature
from torrentgoat.manifest.dump import dump_manifest
from torrentgoat.manifest.parse import parse_manifest
from torrentgoat.manifest.schema import (
    MANIFEST_FILENAME,
    MAX_MANIFEST_SIZE,
    SIGNATURE_DOMAIN,
    SIGNATURE_FILENAME,
    Manifest,
)

__all__ = [
    "SignedManifest",
    "manifest_folder_files",
    "parse_signature",
    "read_manifest_folder",
    "sign_manifest",
    "verify_manifest",
]


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
