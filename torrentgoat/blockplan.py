"""Where a changed file's bytes may already be held (level L2, pure): a block-reuse plan.

An update of a model file usually keeps most of its bytes: a fine-tuned layer changes one tensor, a
header gains a metadata key, tensors are appended or reordered.  A :class:`ReusePlan` says, for the new
file, which byte ranges are expected to equal which ranges of the old file.  It is a *guess*, never
trusted: every 16 KiB block (BEP 52 leaf) assembled from it is checked against the new torrent's merkle
tree -- a whole piece against its piece-layer node, or a block against its leaf hash fetched with a
proof -- before it counts (:mod:`torrentgoat.collection.blockupdate`).

Two planners:

* :func:`plan_same_offset` -- byte ``i`` of the new file is byte ``i`` of the old one (any file kind:
  what an in-place edit keeps);
* :func:`plan_safetensors` -- tensors are matched through both files' safetensors headers by name,
  dtype and shape; a matched tensor's bytes are expected where the new header puts it, whatever the
  header's growth or the tensors' new order.  The header bytes themselves are not planned (they are
  fetched: they are how the new layout is known).

:func:`block_sources` cuts a plan into the old-file ranges one block needs (``None`` when some byte of
the block is not covered), which is all a caller needs to read and hash candidate blocks.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass

from torrentgoat.merkle import BLOCK_SIZE
from torrentgoat.safety import SafetensorsHeader

__all__ = [
    "ReusePlan",
    "Segment",
    "assemble",
    "block_sources",
    "plan_safetensors",
    "plan_same_offset",
]


@dataclass(frozen=True, slots=True)
class Segment:
    """New-file bytes ``[new, new + length)`` are expected to equal old-file bytes ``[old, old + length)``."""

    new: int
    old: int
    length: int

    @property
    def new_end(self) -> int:
        return self.new + self.length


@dataclass(frozen=True, slots=True, kw_only=True)
class ReusePlan:
    """Expected sources of a new file's bytes in an old file (see the module docstring)."""

    new_size: int
    old_size: int
    segments: tuple[Segment, ...]
    """Sorted by ``new``, not overlapping, each inside both files."""
    how: str
    """``same-offset`` or ``tensors``."""
    matched: int = 0
    """Tensors matched by name, dtype and shape (``tensors`` plans)."""
    _starts: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "_starts", tuple(s.new for s in self.segments))
        end = 0
        for s in self.segments:
            if s.length <= 0 or s.new < end or s.old < 0 or s.new_end > self.new_size:
                raise ValueError(f"bad segment {s} in a plan of a {self.new_size}-byte file")
            if s.old + s.length > self.old_size:
                raise ValueError(f"segment {s} runs past the old file's {self.old_size} bytes")
            end = s.new_end

    @property
    def covered(self) -> int:
        """New-file bytes the plan expects to find in the old file."""
        return sum(s.length for s in self.segments)

    def touches(self, start: int, end: int) -> bool:
        """Whether the plan covers some byte of new bytes ``[start, end)``."""
        k = max(0, bisect_right(self._starts, start) - 1)
        for s in self.segments[k:]:
            if s.new >= end:
                return False
            if s.new_end > start:
                return True
        return False

    def sources(self, start: int, end: int) -> list[Segment] | None:
        """The old-file ranges that make new bytes ``[start, end)``, in order; ``None`` when some byte of
        it is not covered."""
        out: list[Segment] = []
        k = max(0, bisect_right(self._starts, start) - 1)
        at = start
        segments = self.segments
        while at < end and k < len(segments):
            s = segments[k]
            if s.new_end <= at:
                k += 1
                continue
            if s.new > at:
                return None
            take = min(end, s.new_end) - at
            out.append(Segment(new=at, old=s.old + (at - s.new), length=take))
            at += take
            k += 1
        return out if at >= end else None


def _coalesce(segments: list[Segment]) -> tuple[Segment, ...]:
    """Sort by ``new`` and merge neighbours that continue each other in both files."""
    out: list[Segment] = []
    for s in sorted(segments, key=lambda s: s.new):
        if s.length <= 0:
            continue
        if out and out[-1].new_end == s.new and out[-1].old + out[-1].length == s.old:
            last = out[-1]
            out[-1] = Segment(new=last.new, old=last.old, length=last.length + s.length)
        else:
            out.append(s)
    return tuple(out)


def plan_same_offset(old_size: int, new_size: int) -> ReusePlan:
    """Every new byte expected at its own offset in the old file (where both files have it)."""
    common = min(old_size, new_size)
    segments = (Segment(new=0, old=0, length=common),) if common else ()
    return ReusePlan(new_size=new_size, old_size=old_size, segments=segments, how="same-offset")


def plan_safetensors(
    old: SafetensorsHeader, old_size: int, new: SafetensorsHeader, new_size: int
) -> ReusePlan:
    """Tensors of ``new`` found in ``old`` by name, dtype and shape (both headers validated against their
    files' sizes, so every range lies inside its file)."""
    by_name = {t.name: t for t in old.tensors}
    segments: list[Segment] = []
    matched = 0
    for t in new.tensors:
        o = by_name.get(t.name)
        if o is None or o.dtype != t.dtype or o.shape != t.shape or t.end == t.begin:
            continue
        matched += 1
        segments.append(
            Segment(new=new.data_start + t.begin, old=old.data_start + o.begin, length=t.end - t.begin)
        )
    return ReusePlan(
        new_size=new_size, old_size=old_size, segments=_coalesce(segments), how="tensors", matched=matched
    )


def block_sources(plan: ReusePlan, block: int) -> list[Segment] | None:
    """Old-file ranges of new-file block ``block`` (16 KiB, the last one shorter), or ``None``."""
    start = block * BLOCK_SIZE
    if not 0 <= start < plan.new_size:
        return None
    return plan.sources(start, min(plan.new_size, start + BLOCK_SIZE))


def assemble(read: Callable[[int, int], bytes], sources: list[Segment]) -> bytes:
    """The candidate bytes of ``sources``: ``read(old_offset, length)`` for each range, joined."""
    parts = []
    for s in sources:
        data = read(s.old, s.length)
        if len(data) != s.length:
            raise ValueError(f"short read of old bytes [{s.old}, {s.old + s.length})")
        parts.append(data)
    return b"".join(parts)
