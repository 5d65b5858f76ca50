"""Typed configuration of the piece picker (level L2)."""

from __future__ import annotations

from dataclasses import dataclass

from torrentgoat.errors import ConfigError

__all__ = ["PickerConfig"]


@dataclass(frozen=True, slots=True, kw_only=True)
class PickerConfig:
    """Knobs of :class:`~torrentgoat.picker.PiecePicker` and its strategies."""

    strategy: str = "rarest-first"
    """Name of the piece strategy in the registry (``rarest-first``, ``sequential``, ``random``,
    ``windowed-rarest`` or any name added with :func:`~torrentgoat.picker.register_strategy`)."""

    window_pieces: int = 64
    """``windowed-rarest``: width in pieces of the sliding window that starts at the first missing piece."""

    initial_random_pieces: int = 4
    """While we hold fewer verified pieces than this, strategies that allow it pick pieces at random so
    a newcomer quickly owns something to trade (libtorrent's ``initial_picker_threshold``)."""

    endgame: bool = True
    """Enable endgame mode: once every missing block is requested, request in-flight blocks again."""

    endgame_max_requesters: int = 2
    """In endgame, the most peers one block is requested from at the same time."""

    max_partial_pieces: int = 1024
    """Cap on started (partial) pieces; the driver holds one buffer per partial piece."""

    max_partial_bytes: int = 48 * 1024 * 1024
    """Cap on the bytes of started pieces (``piece_length`` times their number); the effective cap is the
    smaller of the two, never below 1.  The client holds one buffer per started piece, so this bounds
    the memory of a download whatever the file size (``TorrentConfig.picker``): 48 MiB keeps a
    leecher's peak RSS under 100 MiB (issue 15) and still holds 12 pieces of 4 MiB in flight, more than
    a loopback transfer at full speed needs (measured: 32, 48 and 96 MiB download equally fast)."""

    def __post_init__(self) -> None:
        if self.window_pieces < 1:
            raise ConfigError(f"window_pieces must be >= 1, got {self.window_pieces}")
        if self.initial_random_pieces < 0:
            raise ConfigError(f"initial_random_pieces must be >= 0, got {self.initial_random_pieces}")
        if self.endgame_max_requesters < 1:
            raise ConfigError(f"endgame_max_requesters must be >= 1, got {self.endgame_max_requesters}")
        if self.max_partial_pieces < 1:
            raise ConfigError(f"max_partial_pieces must be >= 1, got {self.max_partial_pieces}")
        if self.max_partial_bytes < 1:
            raise ConfigError(f"max_partial_bytes must be >= 1, got {self.max_partial_bytes}")

    def partial_cap(self, piece_length: int) -> int:
        """Effective cap on partial pieces for pieces of ``piece_length`` bytes."""
        return max(1, min(self.max_partial_pieces, self.max_partial_bytes // max(1, piece_length)))
