"""Fast-resume data (level L3): which pieces were verified, and the state of each file when they were.

Hashing every byte already on disk at each start costs minutes for a 100 GB model.  Like libtorrent's
``.resume`` files, a torrent writes down what it has verified together with a *stamp* of every file
(size, mtime in ns, inode, ctime) taken after its last write was flushed; on the next start a file
whose stamp is unchanged needs no reading at all, and only the pieces of changed files are hashed
again.  The torrent decides *when* to write (:mod:`torrentgoat.torrent.resume`); this module is the
format, where it lives, the trust rules and the blocking I/O.

**Where**: ``<download dir>/.torrentgoat-resume/<info-hash hex>.resume`` (next to the part files'
``.torrentgoat-parts``), or in a configured directory; never anywhere else.

**Format** (version :data:`RESUME_FORMAT`): a bencoded dictionary ``{"torrentgoat resume": <format
version>, "body": <bencoded body>, "sha256": SHA-256(body)}``.  The body holds the identity
(``info-hash``: the v1 SHA-1, 20 bytes, when the torrent has one; ``info-hash v2``: the BEP 52
SHA-256, 32 bytes, when it has one), the geometry (``piece length``, ``pieces``), the verified
pieces (``have``, a BEP 3 bitfield), one ``[size, mtime_ns, inode, ctime_ns]`` per file of the
torrent in order (size ``-1``: no file), the same for the part file, the skipped file indices, when
it was saved, and (v2 and hybrid, BEP 52) the ``piece layers`` the torrent did not have at its start --
those of a magnet, fetched from peers -- as in a .torrent (``pieces root`` -> layer), so that a restart
neither fetches them again nor lacks them to check pieces and answer hash requests; they are checked
against the roots again when read (:meth:`~torrentgoat.metainfo_v2.InfoV2.with_piece_layers`).  Written with :func:`torrentgoat.atomicwrite.write_atomic` (temporary file,
fsync, rename, directory fsync): a kill at any moment leaves the old file or the new one.

**Trust rules** (:func:`plan_check`), never more trust than the file system can vouch for:

* no file, a truncated, corrupt (checksum), unknown-version or oversized one, one of another torrent
  (info-hash v1 or v2 differs) or of another geometry: **full check**;
* a piece is *trusted* (taken as verified, not read) only if it is in ``have`` and every file it
  touches has the stamp recorded and the skip status recorded; a piece spanning two files is
  re-checked if either changed, and a piece straddling files also depends on the part file;
* the pieces of a changed file are **checked** (hashed), and only those;
* a wanted piece not in ``have`` whose files did not change is **missing** without being read: the
  bytes it needs were not verified when the stamps were taken, and nothing wrote them since;
* only our own writes move a stamp forward: a file that changed while the torrent ran although it
  wrote nothing there keeps its previous stamp in the next resume data (:func:`keep_foreign_changes`),
  so the next start re-checks it rather than trusting whatever is there now.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from torrentgoat import bencode
from torrentgoat.atomicwrite import remove_stale_temps, write_atomic
from torrentgoat.bitfield import Bitfield
from torrentgoat.errors import BencodeError, ResumeDataError, TorrentGoatError
from torrentgoat.metainfo import InfoDict
from torrentgoat.primitives import InfoHash
from torrentgoat.storage.file import FileStorage
from torrentgoat.storage.layout import Layout

__all__ = [
    "MAX_RESUME_BYTES",
    "RESUME_DIR",
    "RESUME_FORMAT",
    "FileStamp",
    "ResumeData",
    "ResumeIdentity",
    "ResumePlan",
    "Stamps",
    "keep_foreign_changes",
    "load_resume",
    "plan_check",
    "resume_path",
    "save_resume",
    "stamp_files",
    "written_since",
]

RESUME_DIR = ".torrentgoat-resume"
"""Folder (inside the download directory) of resume files."""
RESUME_FORMAT = 1
"""Version of the resume file format; a file of another version is not trusted (full check)."""
MAX_RESUME_BYTES = 64 * 1024 * 1024
"""Largest resume file read (a bitfield of 2^28 pieces and a million files fit)."""
_MAGIC = b"torrentgoat resume"


@dataclass(frozen=True, slots=True, kw_only=True)
class FileStamp:
    """What a file looked like: size (``-1`` no file, ``-2`` could not be examined), mtime, inode, ctime.

    Two stamps match only if every field is equal and the file could be examined; inode and ctime
    catch a file replaced by another with the same size and mtime (``rsync -a``, ``cp -p``, a backup
    restored), which mtime alone would not."""

    size: int
    mtime_ns: int = 0
    inode: int = 0
    ctime_ns: int = 0

    @property
    def known(self) -> bool:
        return self.size >= -1

    def matches(self, other: FileStamp) -> bool:
        return self.known and other.known and self == other

    def to_list(self) -> list[int]:
        return [self.size, self.mtime_ns, self.inode, self.ctime_ns]

    @classmethod
    def from_value(cls, value: object) -> FileStamp:
        if not (isinstance(value, list) and len(value) == 4 and all(type(v) is int for v in value)):
            raise ResumeDataError("a file stamp is not a list of four integers")
        return cls(size=value[0], mtime_ns=value[1], inode=value[2], ctime_ns=value[3])


ABSENT = FileStamp(size=-1)
UNKNOWN = FileStamp(size=-2)

Stamps = tuple[tuple[FileStamp, ...], FileStamp]
"""Every file's stamp (in torrent order) and the part file's."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ResumeIdentity:
    """Which torrent resume data belongs to: its v1 and v2 info-hashes (BEP 3, BEP 52)."""

    v1: bytes | None
    """SHA-1 of the info dictionary (20 bytes), when the torrent has v1 piece hashes."""
    v2: bytes | None = None
    """SHA-256 of the info dictionary (32 bytes), when the torrent is v2 or hybrid (BEP 52)."""

    @classmethod
    def of(cls, info: InfoDict) -> ResumeIdentity:
        """The identity of a torrent: v1, v2 or both (hybrid)."""
        hashes = info.info_hashes
        return cls(
            v1=hashes.v1.raw if hashes.v1 is not None else None,
            v2=hashes.v2.raw if hashes.v2 is not None else None,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ResumeData:
    """One torrent's resume data (see the module docstring for the file format)."""

    identity: ResumeIdentity
    piece_length: int
    num_pieces: int
    have: Bitfield
    """Pieces verified (hash matched, written, flushed) when the stamps were taken."""
    files: tuple[FileStamp, ...]
    """One stamp per file of the torrent, pad files included (as absent)."""
    part_file: FileStamp = ABSENT
    skipped: frozenset[int] = frozenset()
    """File indices skipped (not downloaded) when it was written."""
    saved_ns: int = 0
    """Wall-clock time it was written (nanoseconds since the epoch; for people, never trusted)."""
    piece_layers: Mapping[bytes, bytes] = field(default_factory=dict, repr=False)
    """BEP 52 piece layers the torrent lacked at its start (``pieces root`` -> layer; see above)."""

    def encode(self) -> bytes:
        body: dict[bytes, object] = {
            b"piece length": self.piece_length,
            b"pieces": self.num_pieces,
            b"have": self.have.to_bytes(),
            b"files": [stamp.to_list() for stamp in self.files],
            b"part file": self.part_file.to_list(),
            b"skipped": sorted(self.skipped),
            b"saved": self.saved_ns,
        }
        if self.piece_layers:
            body[b"piece layers"] = dict(self.piece_layers)
        if self.identity.v1 is not None:
            body[b"info-hash"] = self.identity.v1
        if self.identity.v2 is not None:
            body[b"info-hash v2"] = self.identity.v2
        raw = bencode.encode(body)
        return bencode.encode({_MAGIC: RESUME_FORMAT, b"body": raw, b"sha256": hashlib.sha256(raw).digest()})

    @classmethod
    def decode(cls, data: bytes) -> ResumeData:
        """Parse resume data; :class:`ResumeDataError` for anything but an intact file of our format."""
        if len(data) > MAX_RESUME_BYTES:
            raise ResumeDataError(f"resume data larger than {MAX_RESUME_BYTES} bytes")
        try:
            outer = bencode.decode(data, max_depth=4)
        except BencodeError as exc:
            raise ResumeDataError(f"resume data is not bencoded (truncated?): {exc}") from None
        if not isinstance(outer, dict) or _MAGIC not in outer:
            raise ResumeDataError("not a torrentgoat resume file")
        if outer[_MAGIC] != RESUME_FORMAT:
            raise ResumeDataError(f"resume format {outer[_MAGIC]!r}, this version reads {RESUME_FORMAT}")
        raw, digest = outer.get(b"body"), outer.get(b"sha256")
        if not isinstance(raw, bytes) or not isinstance(digest, bytes):
            raise ResumeDataError("resume data without a body or a checksum")
        if hashlib.sha256(raw).digest() != digest:
            raise ResumeDataError("resume data checksum mismatch (corrupt)")
        try:
            body = bencode.decode(raw, max_depth=4)
            if not isinstance(body, dict):
                raise ResumeDataError("resume body is not a dictionary")
            piece_length, num_pieces = body[b"piece length"], body[b"pieces"]
            if (
                type(piece_length) is not int
                or type(num_pieces) is not int
                or piece_length <= 0
                or num_pieces < 0
            ):
                raise ResumeDataError("resume data has a bad geometry")
            have_raw = body[b"have"]
            files_raw, part_raw, skipped_raw = body[b"files"], body[b"part file"], body[b"skipped"]
            if (
                not isinstance(have_raw, bytes)
                or not isinstance(files_raw, list)
                or not isinstance(skipped_raw, list)
            ):
                raise ResumeDataError("resume data has fields of the wrong type")
            if not all(type(i) is int and 0 <= i < len(files_raw) for i in skipped_raw):
                raise ResumeDataError("resume data skips a file that does not exist")
            v1, v2 = body.get(b"info-hash"), body.get(b"info-hash v2")
            if (v1 is not None and not (isinstance(v1, bytes) and len(v1) == 20)) or (
                v2 is not None and not (isinstance(v2, bytes) and len(v2) == 32)
            ):
                raise ResumeDataError("resume data has a malformed info-hash")
            if v1 is None and v2 is None:
                raise ResumeDataError("resume data names no info-hash")
            saved = body.get(b"saved", 0)
            layers_raw = body.get(b"piece layers", {})
            if not isinstance(layers_raw, dict):
                raise ResumeDataError("resume data has malformed piece layers")
            layers: dict[bytes, bytes] = {}
            for root, layer in layers_raw.items():
                if len(root) != 32 or not isinstance(layer, bytes) or len(layer) % 32:
                    raise ResumeDataError("resume data has malformed piece layers")
                layers[root] = layer
            return cls(
                identity=ResumeIdentity(v1=v1, v2=v2),
                piece_length=piece_length,
                num_pieces=num_pieces,
                have=Bitfield.from_bytes(have_raw, num_pieces),
                files=tuple(FileStamp.from_value(v) for v in files_raw),
                part_file=FileStamp.from_value(part_raw),
                skipped=frozenset(int(i) for i in skipped_raw if type(i) is int),
                saved_ns=saved if type(saved) is int else 0,
                piece_layers=layers,
            )
        except ResumeDataError:
            raise
        except (BencodeError, KeyError, TorrentGoatError) as exc:
            raise ResumeDataError(f"damaged resume data: {exc}") from None


# --------------------------------------------------------------------------------------- trust rules


@dataclass(frozen=True, slots=True, kw_only=True)
class ResumePlan:
    """What a start does with the data on disk: trust some pieces, hash others, skip the rest."""

    trusted: Bitfield
    """Wanted pieces taken as verified without reading them."""
    to_check: Bitfield
    """Wanted pieces to hash (all wanted pieces when the resume data cannot be used)."""
    reason: str
    """One line for the log: why the plan is what it is."""
    used: bool = False
    """Whether resume data was used (False: a full check of every wanted piece)."""
    changed_files: tuple[int, ...] = ()
    """Files whose stamp or skip status changed since the resume data was written."""


def _to_int(bits: Bitfield) -> int:
    return int.from_bytes(bits.to_bytes(), "big")


def _from_int(value: int, length: int) -> Bitfield:
    return Bitfield.from_bytes(value.to_bytes((length + 7) // 8, "big"), length)


def plan_check(
    resume: ResumeData | None,
    *,
    identity: ResumeIdentity,
    layout: Layout,
    stamps: Sequence[FileStamp],
    part_file: FileStamp,
    skipped: frozenset[int],
    wanted: Bitfield,
    problem: str = "",
) -> ResumePlan:
    """Apply the trust rules (module docstring) to ``resume`` (None: there was none, see ``problem``)
    against the files as they are now (``stamps``, one per file of ``layout``)."""
    num = layout.num_pieces

    def full(reason: str) -> ResumePlan:
        return ResumePlan(trusted=Bitfield(num), to_check=wanted.copy(), reason=reason)

    if resume is None:
        return full(problem or "no resume data")
    if resume.identity != identity:
        return full("resume data of another torrent (info-hash differs)")
    if (
        resume.piece_length != layout.piece_length
        or resume.num_pieces != num
        or len(resume.files) != len(layout.files)
        or len(stamps) != len(layout.files)
    ):
        return full("resume data of another layout (piece length, piece count or files differ)")
    nbits = (num + 7) // 8 * 8
    changed_mask = 0
    changed: list[int] = []
    for index, entry in enumerate(layout.files):
        if entry.pad or entry.length == 0:
            continue
        same = stamps[index].matches(resume.files[index]) and (index in skipped) == (index in resume.skipped)
        if not same:
            changed.append(index)
            pieces = layout.file_pieces(index)
            changed_mask |= ((1 << len(pieces)) - 1) << (nbits - pieces.stop)
    if not part_file.matches(resume.part_file):
        # the part file holds skipped bytes of pieces straddling files: those pieces depend on it
        edges = [e.offset for e in layout.files[1:] if e.offset % layout.piece_length]
        for offset in edges:
            piece = offset // layout.piece_length
            changed_mask |= 1 << (nbits - 1 - piece)
    wanted_int = _to_int(wanted)
    trusted = _to_int(resume.have) & wanted_int & ~changed_mask
    to_check = wanted_int & changed_mask
    if not changed:
        reason = "resume data matches every file"
    else:
        reason = f"{len(changed)} of {len(layout.files)} files changed since the resume data was written"
    return ResumePlan(
        trusted=_from_int(trusted, num),
        to_check=_from_int(to_check, num),
        reason=reason,
        used=True,
        changed_files=tuple(changed),
    )


# --------------------------------------------------------------------------------------- blocking I/O


def resume_path(directory: str | os.PathLike[str], info_hash: InfoHash) -> Path:
    """The resume file of ``info_hash`` in a folder of resume files."""
    return Path(directory) / f"{info_hash.hex}.resume"


def _stamp(path: str) -> FileStamp:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return ABSENT
    except OSError:
        return UNKNOWN
    return FileStamp(size=st.st_size, mtime_ns=st.st_mtime_ns, inode=st.st_ino, ctime_ns=st.st_ctime_ns)


def stamp_files(storage: FileStorage) -> Stamps:
    """Stamps of every file of ``storage`` (pad files: absent) and of its part file, as they are now."""
    files = storage.layout.files
    stamps = tuple(
        ABSENT if entry.pad else _stamp(storage.path_of(index)) for index, entry in enumerate(files)
    )
    return stamps, _stamp(storage.part_path)


def load_resume(path: str | os.PathLike[str]) -> ResumeData:
    """Read and parse a resume file; :class:`ResumeDataError` when it is missing or unusable."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_RESUME_BYTES + 1)
    except FileNotFoundError:
        raise ResumeDataError("no resume data") from None
    except OSError as exc:
        raise ResumeDataError(f"cannot read resume data: {exc.strerror or exc}") from None
    return ResumeData.decode(data)


def written_since(layout: Layout, have: Bitfield, before: Bitfield) -> tuple[frozenset[int], bool]:
    """Files holding bytes of pieces in ``have`` but not in ``before`` (the pieces we wrote since),
    and whether any of those pieces straddles files (its skipped bytes may be in the part file)."""
    files: set[int] = set()
    part = False
    for index in have:
        if index in before:
            continue
        touched = [i for i in layout.piece_files(index) if not layout.files[i].pad]
        files.update(touched)
        part = part or len(touched) > 1
    return frozenset(files), part


def keep_foreign_changes(
    previous: Stamps, current: Stamps, written: frozenset[int], part_written: bool
) -> Stamps:
    """The stamps to record: the current one of every file we wrote since ``previous`` was taken; the
    previous one of a file that changed although we wrote nothing to it (someone else did), so that
    the next start sees the change and re-checks that file instead of trusting it."""
    old_files, old_part = previous
    new_files, new_part = current
    files = tuple(
        new if i in written or new.matches(old) else old
        for i, (old, new) in enumerate(zip(old_files, new_files, strict=True))
    )
    return files, (new_part if part_written or new_part.matches(old_part) else old_part)


def save_resume(
    path: str | os.PathLike[str],
    storage: FileStorage,
    *,
    identity: ResumeIdentity,
    have: Bitfield,
    previous: Stamps | None = None,
    before: Bitfield | None = None,
    piece_layers: Mapping[bytes, bytes] | None = None,
) -> ResumeData:
    """Flush ``storage``, stamp its files, and write resume data saying ``have`` atomically.

    ``have`` must be taken *before* this call: every piece in it is then written before the flush,
    and the stamps are taken after it, so the data of every trusted piece is durable and older than
    the stamps (a piece written meanwhile is at worst not in ``have``: fetched again, never trusted).
    With ``previous`` (the stamps recorded last, when the verified pieces were ``before``), a file
    that changed although none of the new pieces is in it keeps its previous stamp
    (:func:`keep_foreign_changes`): only our own writes move a stamp forward.  ``piece_layers``: the
    BEP 52 layers to keep (see the module docstring).
    """
    storage.flush()
    stamps = stamp_files(storage)
    layout = storage.layout
    if previous is not None and len(previous[0]) == len(stamps[0]):
        written, part_written = written_since(
            layout, have, before if before is not None else Bitfield(have.length)
        )
        stamps = keep_foreign_changes(previous, stamps, written, part_written)
    data = ResumeData(
        identity=identity,
        piece_length=layout.piece_length,
        num_pieces=layout.num_pieces,
        have=have,
        files=stamps[0],
        part_file=stamps[1],
        skipped=storage.skipped_files,
        saved_ns=time.time_ns(),
        piece_layers=dict(piece_layers or {}),
    )
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(target)
    write_atomic(target, data.encode())
    return data
