"""Per-run metrics of a simulation: completion-time distribution, fluid bound and ratio, seed cost."""

from __future__ import annotations

from dataclasses import dataclass

from benchmarks.strategies.sim import SimResult

__all__ = ["RunMetrics", "percentile", "summarize"]


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, int(-(-q * len(ordered) // 100)) - 1))
    return ordered[k]


@dataclass(frozen=True, slots=True, kw_only=True)
class RunMetrics:
    """One row of the report."""

    scenario: str
    strategy: str
    piece_size: int
    endgame: bool
    seeding: str = "normal"
    """``normal``, or ``super``: the seeds super-seed (BEP 16)."""
    optimistic: str = "random"
    """The choker's optimistic unchoke: ``random`` or ``least-progress``."""
    peers: int
    size: int
    seed: int
    t_min: float
    t_median: float
    t_p90: float
    t_max: float
    """Completion times (seconds from each leecher's join), over the leechers that completed."""

    bound: float
    """Kumar-Ross fluid lower bound T* (seconds)."""

    ratio: float
    """t_max / T* (inf when a leecher never completed)."""

    seed_copies: float
    """Bytes the seeds uploaded, in copies of the shard."""

    duplicate_bytes: float
    """Bytes received twice (endgame duplicates, including cancelled partial transfers)."""

    copy_time: float | None
    """When the leechers first held a full copy between them (the seed is no longer needed)."""

    incomplete: int
    """Leechers that never completed (e.g. a piece was lost with the seed)."""

    wall: float
    """Seconds of real time the simulation took."""

    flows: int


def summarize(result: SimResult, *, scenario: str) -> RunMetrics:
    cfg = result.config
    times = result.completion_times
    leechers = sum(1 for p in result.peers if not p.seed)
    nan = float("nan")
    t_max = max(times) if times else nan
    return RunMetrics(
        scenario=scenario,
        strategy=cfg.strategy,
        piece_size=cfg.piece_size,
        endgame=cfg.endgame,
        seeding="super" if cfg.super_seed else "normal",
        optimistic=cfg.optimistic_mode,
        peers=leechers,
        size=cfg.size,
        seed=cfg.seed,
        t_min=min(times) if times else nan,
        t_median=percentile(times, 50) if times else nan,
        t_p90=percentile(times, 90) if times else nan,
        t_max=t_max,
        bound=result.bound,
        ratio=(t_max / result.bound if result.bound and not result.incomplete else float("inf")),
        seed_copies=result.seed_upload / cfg.size,
        duplicate_bytes=result.duplicate_bytes,
        copy_time=result.copy_time,
        incomplete=result.incomplete,
        wall=result.wall,
        flows=result.flows,
    )
