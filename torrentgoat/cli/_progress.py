"""One honest progress line per torrent (stderr), for the commands that run a session.

A torrent goes through phases, each with its own bar that only moves forward: *fetching metadata*
(a magnet), *checking* what is already on disk, *downloading*, *seeding*.  The bar shows one rate --
the torrent's own payload rate, not a second estimate made up by the bar -- with sizes in binary units
written as such (KiB, MiB, GiB).  A phase that moves no bytes says ``idle`` (a seeder nobody asks, a
download waiting for peers) instead of a stale rate.  Notices (a failed piece, a banned peer, a tracker
error, completion) are printed on their own lines, never glued onto the bar.  When stderr is not a
terminal (a log file, CI), the bar becomes a plain status line at each phase change and every
:data:`LOG_EVERY` seconds.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from torrentgoat.torrent import (
    CheckCompleted,
    CheckProgressed,
    Completed,
    DataLost,
    DataRechecked,
    MetadataReceived,
    PeerBanned,
    PeersMissing,
    PieceFailed,
    ProgressReported,
    Torrent,
    TorrentEvent,
    TrackerFailed,
)
from torrentgoat.units import format_rate, format_size

__all__ = ["ProgressLine", "follow"]

_BAR_FORMAT = "{desc} {percentage:3.0f}%|{bar}| {postfix[0]}"
IDLE_BELOW = 1024.0
"""A rate under this many bytes/s is shown as ``idle``."""
LOG_EVERY = 10.0
"""Seconds between status lines when stderr is not a terminal."""


class ProgressLine:
    """Turns one torrent's events into a progress bar and notice lines."""

    def __init__(
        self,
        name: str,
        *,
        quiet: bool,
        label: str | None = None,
        position: int = 0,
        interactive: bool | None = None,
    ) -> None:
        self.name = name
        self.label = label
        self.quiet = quiet
        self.position = position
        self.interactive = sys.stderr.isatty() if interactive is None else interactive
        """Draw a bar (a terminal) or print status lines (a log)."""
        self.phase = ""
        self._bar: Any = None
        self._checked = (0, 0)
        self._total = 1
        self._done = 0
        self._logged_at = 0.0

    # --- output ------------------------------------------------------------------------------------

    def _title(self) -> str:
        return (self.label or self.name)[:28]

    def notice(self, text: str) -> None:
        """A line of its own above the bar."""
        if self._bar is not None:
            self._bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr)

    def _open(self, phase: str, total: int, done: int) -> None:
        self.close()
        self.phase = phase
        self._total = max(total, 1)
        self._done = min(done, self._total)
        self._logged_at = 0.0
        if self.quiet or not self.interactive:
            return
        from tqdm import tqdm  # imported only when a bar is drawn

        self._bar = tqdm(  # type: ignore[call-overload]
            total=self._total,
            initial=self._done,
            desc=f"{self._title()} {phase}",
            bar_format=_BAR_FORMAT,
            postfix=[""],
            position=self.position,
            leave=True,
            file=sys.stderr,
            dynamic_ncols=True,
        )

    def _advance(self, done: int, postfix: str) -> None:
        value = min(done, self._total)
        if value > self._done:  # never backwards
            self._done = value
        bar = self._bar
        if bar is not None:
            bar.n = self._done
            bar.postfix = [postfix]
            bar.refresh()
        elif not self.quiet and not self.interactive:
            now = time.monotonic()
            if now - self._logged_at >= LOG_EVERY or self._done >= self._total:
                self._logged_at = now
                share = self._done / self._total
                print(f"{self._title()} {self.phase} {share:4.0%}  {postfix}", file=sys.stderr)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    # --- events ------------------------------------------------------------------------------------

    def handle(self, event: TorrentEvent) -> None:
        match event:
            case MetadataReceived(name=name):
                self.name = name
                if not self.quiet:
                    self.notice(f"{self._title()}: metadata received ({format_size(event.total_size)})")
            case CheckProgressed(done_bytes=done, total_bytes=total):
                self._checked = (done, total)
                if self.phase != "checking":
                    self._open("checking", total, done)
                self._advance(done, f"{format_size(done)} / {format_size(total)}")
            case CheckCompleted(verified_bytes=verified, wanted_bytes=wanted, seconds=seconds):
                self.close()
                if not self.quiet:
                    share = verified / wanted if wanted else 1.0
                    self.notice(
                        f"{self._title()}: checked {format_size(self._checked[1])} in {seconds:.1f} s, "
                        f"{share:.0%} already verified"
                    )
                self.phase = "checked"
            case ProgressReported():
                self._progress(event)
            case Completed(seconds=seconds):
                if self._bar is not None:
                    size = format_size(self._total)
                    self._advance(self._total, f"{size} / {size}")
                self.close()
                print(f"{self.name}: complete and verified in {seconds:.1f} s", file=sys.stderr)
            case PieceFailed(index=index) if not self.quiet:
                self.notice(f"{self.name}: piece {index} failed its hash check, fetching it again")
            case DataLost(pieces=pieces, reason=reason):
                self.notice(f"{self.name}: {reason}: {pieces} pieces taken back, checking them again")
            case DataRechecked(pieces=pieces, verified=verified):
                lost = pieces - verified
                tail = f"{lost} lost" if lost else "none lost"
                self.notice(f"{self.name}: checked again: {verified} of {pieces} pieces still good, {tail}")
            case PeerBanned(address=address, reason=reason):
                self.notice(f"{self.name}: banned {address}: {reason}")
            case PeersMissing(seconds=seconds, sources=sources) if not self.quiet:
                tried = "".join(f"\n  {line}" for line in sources) or "\n  (no peer source)"
                self.notice(f"{self.name}: no peer after {seconds:.0f} s; tried:{tried}")
            case TrackerFailed(url=url, reason=reason) if not self.quiet:
                self.notice(f"{self.name}: tracker {url or '(all)'}: {reason}")
            case _:
                pass

    def _progress(self, event: ProgressReported) -> None:
        state = str(event.state)
        if state == "metadata":
            if self.phase != "metadata":
                self._open("fetching metadata", 1, 0)
            self._advance(0, f"peers {event.peers}")
            return
        if state not in ("downloading", "seeding"):
            return
        phase = "seeding" if state == "seeding" else "downloading"
        if self.phase != phase:
            self._open(phase, event.wanted_bytes, event.verified_bytes)
        if phase == "downloading":
            rate = event.download_rate
            eta = event.eta
            text = (
                f"{format_size(event.verified_bytes)} / {format_size(event.wanted_bytes)}  "
                + (f"{format_rate(rate)}" if rate >= IDLE_BELOW else "idle")
                + f"  peers {event.peers}"
                + (f"  eta {_duration(eta)}" if eta and rate >= IDLE_BELOW else "")
            )
        else:
            rate = event.upload_rate
            text = (
                f"up {format_rate(rate)}" if rate >= IDLE_BELOW else "idle"
            ) + f"  peers {event.peers}  uploaded {format_size(event.uploaded)}"
        self._advance(event.verified_bytes, text)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


async def follow(torrent: Torrent, *, quiet: bool, label: str | None = None, position: int = 0) -> None:
    """Show ``torrent``'s progress on stderr until it stops (notices only with ``quiet``)."""
    line = ProgressLine(torrent.name, quiet=quiet, label=label, position=position)
    try:
        async for event in torrent.events():
            line.handle(event)
    finally:
        line.close()
