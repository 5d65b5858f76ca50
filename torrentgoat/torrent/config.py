"""Typed configuration of a running torrent (level L5)."""

from __future__ import annotations

from dataclasses import dataclass, field

from torrentgoat.choker import ChokerConfig
from torrentgoat.errors import ConfigError
from torrentgoat.picker import PickerConfig

__all__ = ["TorrentConfig"]


MIN_PIECE_MEMORY = 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class TorrentConfig:
    """Per-torrent behaviour; the session fills it from its own config and the ``add`` options.

    The piece picker's and the choker's knobs are their own typed configs, nested here (not copied):
    ``picker.strategy``, ``picker.endgame``, ``picker.max_partial_bytes`` (the memory held by pieces
    being downloaded, which bounds RSS whatever the file size), ``choker.upload_slots``,
    ``choker.optimistic_mode`` ...  The CLI and :meth:`Session.add` keep their flat options.
    """

    picker: PickerConfig = field(default_factory=PickerConfig)
    """Piece picking: strategy (``rarest-first``, ``sequential``, ``random``, ``windowed-rarest``),
    endgame (BEP 3 "End Game"), and ``max_partial_bytes``: bytes of piece buffers held for pieces
    being downloaded (at least 1 MiB)."""
    choker: ChokerConfig = field(default_factory=ChokerConfig)
    """Choking (BEP 3): regular upload slots (plus one optimistic unchoke), the optimistic mode
    (``random``, or ``least-progress`` for cooperative swarms such as a cluster receiving a
    checkpoint, where a free rider in a public swarm would exploit it), rechoke intervals."""
    max_peers: int = 50
    """Connections kept open for this torrent (incoming and outgoing)."""
    max_half_open: int = 8
    """Outgoing connection attempts in progress at once."""
    read_cache: int = 32 * 1024 * 1024
    """Bytes of recently read data kept to serve block requests."""
    read_chunk: int = 1024 * 1024
    """Unit in which seeding reads from disk (at most one piece)."""
    sendfile: bool = True
    """Serve peers whose bytes reach a TCP socket unchanged (plain TCP, MSE with a plaintext payload)
    with ``sendfile`` from the page cache instead of reading into the read cache; each chunk's files
    are checked unchanged since verification when it is lent, and again a second later."""
    min_queue: int = 16
    """Fewest requests kept in flight to an unchoking peer."""
    max_queue: int = 1500
    """Most requests kept in flight to one peer (also capped by its ``reqq``)."""
    queue_time: float = 2.0
    """Seconds of a peer's download rate worth of requests kept in flight (adaptive queue)."""
    snub_timeout: float = 30.0
    """A peer that sends no block for this long while we wait is snubbed: its requests go to others."""
    seed: bool = False
    """Keep running (seeding) after completion."""
    seed_ratio: float = 0.0
    """Stop seeding after uploading this multiple of the torrent's size (0: no limit)."""
    seed_time: float = 0.0
    """Stop seeding after this many seconds (0: no limit)."""
    selected_files: tuple[int, ...] | None = None
    """File indices to download (None: all).  Pad files are never downloaded."""
    file_globs: tuple[str, ...] = ()
    """Glob patterns (``fnmatch``) of file paths to download, relative to the torrent's folder;
    combined with ``selected_files``.  Empty with ``selected_files=None``: everything."""
    held_files: tuple[int, ...] = ()
    """File indices whose missing pieces are *held* after the check: no block of them is requested
    until :class:`~torrentgoat.torrent.localfill.LocalBlocks` fills it from local data or hands it to
    the network (a block-level update of a changed file; ``Torrent.local``)."""
    super_seed: bool = False
    """BEP 16 super-seeding when the torrent is complete at start: reveal pieces one peer at a time so
    that every piece is uploaded once before any is uploaded twice (an initial seed pushing a new
    checkpoint to many machines); normal seeding resumes once the peers hold every piece between them."""
    pex: bool = True
    """Exchange peers (BEP 11); off for private torrents (BEP 27) whatever this says."""
    extra_peers: tuple[str, ...] = field(default_factory=tuple)
    """``HOST:PORT`` peers to dial at start (``--peer``, magnet ``x.pe``)."""
    require_peer_sources: bool = False
    """After the check, stop with :class:`~torrentgoat.errors.NoPeerSourcesError` when pieces are
    missing and nothing can find a peer (no tracker, DHT, web seed or peer address): a command-line
    download would otherwise wait forever.  A library user who adds peers later leaves it off."""
    refetch_lost: bool = True
    """When verified data vanishes or changes on disk, fetch the pieces that no longer check out
    again from peers (False, seeding only: drop them from what the torrent wants and serve the rest)."""
    file_check_interval: float = 10.0
    """Seconds between checks that the files of verified pieces did not change on disk (a ``stat``
    per complete file; reads for serving check their files too); 0: only at reads."""
    check_free_space: bool = True
    """After the check of what is on disk, refuse to download more than the download directory's
    file system has free (:class:`~torrentgoat.errors.DiskFullError`), instead of failing midway."""

    resume_data: bool = True
    """Fast resume: write which pieces are verified, with each file's size and mtime, to
    ``<download dir>/.torrentgoat-resume/<info-hash>.resume`` (on stop, on completion and every
    ``resume_interval`` seconds while pieces arrive), and at the next start hash only the pieces of
    files that changed since (:mod:`torrentgoat.storage.resume`).  Off: every start hashes everything."""
    resume_interval: float = 30.0
    """Seconds between writes of resume data while pieces are being verified."""
    resume_dir: str | None = None
    """Folder for resume files instead of the download directory's ``.torrentgoat-resume``."""

    def __post_init__(self) -> None:
        if self.max_peers < 1:
            raise ConfigError(f"max_peers must be >= 1, got {self.max_peers}")
        if self.picker.max_partial_bytes < MIN_PIECE_MEMORY:
            raise ConfigError("picker.max_partial_bytes (piece memory) must be at least 1 MiB")
        if self.min_queue < 1 or self.max_queue < self.min_queue:
            raise ConfigError(f"need 1 <= min_queue <= max_queue, got {self.min_queue} and {self.max_queue}")
        if not self.resume_interval > 0:
            raise ConfigError(f"resume_interval must be > 0 seconds, got {self.resume_interval}")
