"""Checking model files on disk (level L3): the unsafe-format policy and SHA-256 verification.

Blocking file I/O with bounded memory, meant to run in an executor (no asyncio here): a file's
first bytes, a safetensors header (at most :data:`~torrentgoat.safety.SAFETENSORS_MAX_HEADER`
bytes), a zip archive's end records and central directory are read -- never whole weight files,
except by :func:`sha256_file`, which streams them through a 1 MiB buffer (hashlib releases the GIL
while hashing it, so several files hash in parallel threads).

The rules themselves are pure and live in :mod:`torrentgoat.safety`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

from torrentgoat.errors import UnsafeModelError
from torrentgoat.manifest import ManifestFile
from torrentgoat.safety import (
    ContentKind,
    FileKind,
    Policy,
    PolicyViolation,
    SafetensorsHeader,
    check_gguf_prefix,
    classify_filename,
    judge,
    safetensors_header_length,
    sniff,
    validate_safetensors_header,
    zip_pickle_members,
)

__all__ = [
    "FileReport",
    "Mismatch",
    "check_model_dir",
    "check_model_file",
    "inspect_model_file",
    "list_files",
    "manifest_files_for",
    "scan_model_dir",
    "sha256_file",
    "verify_files_sha256",
]

_PREFIX = 64
_CHUNK = 1024 * 1024
_MAX_REPORTED = 20


@dataclass(frozen=True, slots=True, kw_only=True)
class FileReport:
    """What one model file turned out to be."""

    path: str
    """The path as given (or relative to the model directory)."""
    size: int
    name_kind: FileKind
    """What the file's name says (:func:`~torrentgoat.safety.classify_filename`)."""
    content_kind: ContentKind
    """What its first bytes say (:func:`~torrentgoat.safety.sniff`)."""
    safetensors: SafetensorsHeader | None = None
    """The validated header of a ``*.safetensors`` file."""


def _read_exactly(handle: BinaryIO, size: int) -> bytes:
    data = handle.read(size)
    return data if isinstance(data, bytes) else b""


def inspect_model_file(
    path: str | os.PathLike[str], policy: Policy | None = None, *, display: str | None = None
) -> tuple[FileReport, PolicyViolation | None]:
    """Check one file against ``policy``; the report and the first violation found (or None).

    ``display`` is the name used in messages (default: ``path``).  OSError propagates.
    """
    policy = policy or Policy()
    name = display if display is not None else os.fspath(path)
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        prefix = _read_exactly(handle, min(size, _PREFIX))
        name_kind = classify_filename(name)
        content_kind = sniff(prefix)
        members: list[str] | None = None
        if content_kind == "zip" and not policy.allow_pickle:
            try:
                members = zip_pickle_members(handle)
            except UnsafeModelError as exc:
                report = FileReport(path=name, size=size, name_kind=name_kind, content_kind=content_kind)
                return report, PolicyViolation(
                    path=name, kind="pickle", reason=f"zip archive that cannot be inspected: {exc}"
                )
        report = FileReport(path=name, size=size, name_kind=name_kind, content_kind=content_kind)
        violation = judge(name, prefix, policy, pickle_members=members)
        if violation is not None:
            return report, violation
        try:
            if name_kind == "safetensors" and policy.validate_safetensors:
                length = safetensors_header_length(prefix, size, name=name)
                handle.seek(0)
                header = validate_safetensors_header(_read_exactly(handle, 8 + length), size, name=name)
                report = FileReport(
                    path=name, size=size, name_kind=name_kind, content_kind=content_kind, safetensors=header
                )
            elif name_kind == "gguf" and policy.validate_gguf:
                check_gguf_prefix(prefix, size, name=name)
        except UnsafeModelError as exc:
            return report, PolicyViolation(
                path=name, kind="corrupt", reason=str(exc).removeprefix(f"{name}: ")
            )
    return report, None


def check_model_file(
    path: str | os.PathLike[str], policy: Policy | None = None, *, display: str | None = None
) -> FileReport:
    """Check one file; UnsafeModelError (naming the file and the reason) when the policy refuses it."""
    report, violation = inspect_model_file(path, policy, display=display)
    if violation is not None:
        raise violation.error()
    return report


def list_files(root: str | os.PathLike[str]) -> list[str]:
    """Every regular file under ``root`` as a sorted relative POSIX path (symlinked directories not followed)."""
    base = Path(root)
    out: list[str] = []
    for directory, _dirs, names in os.walk(base):
        for filename in names:
            full = Path(directory) / filename
            if full.is_file():
                out.append(full.relative_to(base).as_posix())
    return sorted(out)


def scan_model_dir(
    root: str | os.PathLike[str], files: Iterable[str] | None = None, policy: Policy | None = None
) -> tuple[list[FileReport], list[PolicyViolation]]:
    """Check ``files`` (relative POSIX paths; default: every file under ``root``); reports and violations."""
    base = Path(root)
    reports: list[FileReport] = []
    violations: list[PolicyViolation] = []
    for relative in list_files(base) if files is None else files:
        report, violation = inspect_model_file(base / relative, policy, display=relative)
        reports.append(report)
        if violation is not None:
            violations.append(violation)
    return reports, violations


def check_model_dir(
    root: str | os.PathLike[str], files: Iterable[str] | None = None, policy: Policy | None = None
) -> list[FileReport]:
    """Like :func:`scan_model_dir` but raise UnsafeModelError listing every refused file."""
    reports, violations = scan_model_dir(root, files, policy)
    if violations:
        lines = [v.message for v in violations[:_MAX_REPORTED]]
        if len(violations) > _MAX_REPORTED:
            lines.append(f"... and {len(violations) - _MAX_REPORTED} more")
        raise UnsafeModelError(f"{len(violations)} file(s) refused in {root}:\n  " + "\n  ".join(lines))
    return reports


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of a file in hex, streamed through one 1 MiB buffer (hashlib releases the GIL)."""
    digest = hashlib.sha256()
    buffer = bytearray(_CHUNK)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as handle:
        while True:
            n = handle.readinto(buffer)
            if not n:
                break
            digest.update(view[:n])
    return digest.hexdigest()


@dataclass(frozen=True, slots=True, kw_only=True)
class Mismatch:
    """A file that does not match its manifest entry."""

    path: str
    problem: Literal["missing", "size", "sha256"]
    expected: str
    """The expected size (for ``size``) or SHA-256."""
    actual: str | None = None

    @property
    def message(self) -> str:
        if self.problem == "missing":
            return f"{self.path}: missing"
        what = "size" if self.problem == "size" else "SHA-256"
        return f"{self.path}: {what} is {self.actual}, the manifest says {self.expected}"


def verify_files_sha256(root: str | os.PathLike[str], files: Iterable[ManifestFile]) -> list[Mismatch]:
    """Check every manifest file under ``root``: present, right size (cheap, first), right SHA-256."""
    base = Path(root)
    mismatches: list[Mismatch] = []
    for entry in files:
        full = base / entry.path
        try:
            size = full.stat().st_size
        except OSError:
            mismatches.append(Mismatch(path=entry.path, problem="missing", expected=entry.sha256))
            continue
        if not full.is_file():
            mismatches.append(Mismatch(path=entry.path, problem="missing", expected=entry.sha256))
        elif size != entry.size:
            mismatches.append(
                Mismatch(path=entry.path, problem="size", expected=str(entry.size), actual=str(size))
            )
        else:
            actual = sha256_file(full)
            if actual != entry.sha256:
                mismatches.append(
                    Mismatch(path=entry.path, problem="sha256", expected=entry.sha256, actual=actual)
                )
    return mismatches


def manifest_files_for(
    root: str | os.PathLike[str], paths: Iterable[str] | None = None
) -> tuple[ManifestFile, ...]:
    """Manifest entries (path, size, SHA-256) for ``paths`` under ``root`` (default: every file, sorted).

    Pass the model torrent's file order (pad files excluded) so the manifest lists files as the
    torrent does.  Every file is read once, streamed.
    """
    base = Path(root)
    out: list[ManifestFile] = []
    for relative in list_files(base) if paths is None else paths:
        full = base / relative
        out.append(ManifestFile(path=relative, size=full.stat().st_size, sha256=sha256_file(full)))
    return tuple(out)
