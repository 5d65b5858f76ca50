"""Output of the strategy lab: a table on stdout, CSV, and PNG plots when matplotlib is installed."""

from __future__ import annotations

import csv
import dataclasses
import importlib.util
from collections.abc import Sequence
from pathlib import Path

from benchmarks.strategies.metrics import RunMetrics
from benchmarks.strategies.sim import SimResult

__all__ = ["format_size", "format_table", "have_matplotlib", "plot", "write_csv"]

MiB = 1024 * 1024


def format_size(n: float) -> str:
    for unit, scale in (("GiB", 1024**3), ("MiB", MiB), ("KiB", 1024)):
        if n >= scale:
            v = n / scale
            return f"{v:.0f}{unit}" if v == int(v) else f"{v:.1f}{unit}"
    return f"{n:.0f}B"


def format_table(rows: Sequence[RunMetrics], *, markdown: bool = False) -> str:
    head = [
        "scenario",
        "strategy",
        "piece",
        "endgame",
        "seeding",
        "optimistic",
        "min s",
        "median s",
        "p90 s",
        "max s",
        "T* s",
        "max/T*",
        "seed copies",
        "dup MiB",
        "copy at s",
        "incomplete",
        "wall s",
    ]
    lines = []
    for r in rows:
        lines.append(
            [
                r.scenario,
                r.strategy,
                format_size(r.piece_size),
                "on" if r.endgame else "off",
                r.seeding,
                r.optimistic,
                f"{r.t_min:.1f}",
                f"{r.t_median:.1f}",
                f"{r.t_p90:.1f}",
                f"{r.t_max:.1f}",
                f"{r.bound:.1f}",
                f"{r.ratio:.3f}",
                f"{r.seed_copies:.2f}",
                f"{r.duplicate_bytes / MiB:.0f}",
                "-" if r.copy_time is None else f"{r.copy_time:.1f}",
                str(r.incomplete),
                f"{r.wall:.1f}",
            ]
        )
    if markdown:
        out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        out += ["| " + " | ".join(row) + " |" for row in lines]
        return "\n".join(out)
    widths = [max(len(h), *(len(row[i]) for row in lines)) if lines else len(h) for i, h in enumerate(head)]
    fmt = "  ".join(f"{{:>{w}}}" for w in widths)
    return "\n".join([fmt.format(*head), *(fmt.format(*row) for row in lines)])


def write_csv(rows: Sequence[RunMetrics], path: str | Path) -> None:
    fields = [f.name for f in dataclasses.fields(RunMetrics)]
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        for r in rows:
            w.writerow(dataclasses.asdict(r))


def _label(m: RunMetrics) -> str:
    ss = " super-seed" if m.seeding == "super" else ""
    lp = " least-progress" if m.optimistic == "least-progress" else ""
    return f"{m.strategy} {format_size(m.piece_size)} eg={'on' if m.endgame else 'off'}{ss}{lp}"


def have_matplotlib() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def plot(runs: Sequence[tuple[RunMetrics, SimResult]], prefix: str | Path) -> list[Path]:
    """Completion-time CDFs and distributed copies over time, one line per run; returns the PNGs
    written (none without matplotlib)."""
    if not have_matplotlib() or not runs:
        return []
    import matplotlib  # type: ignore[import-not-found, unused-ignore]

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # type: ignore[import-not-found, unused-ignore]

    out = []
    fig, ax = plt.subplots(figsize=(8, 5))
    for m, res in runs:
        times = sorted(res.completion_times)
        if times:
            frac = [(i + 1) / len(times) for i in range(len(times))]
            label = _label(m)
            ax.step([t / m.bound for t in times], frac, where="post", label=label)
    ax.axvline(1.0, color="k", lw=0.8, ls="--")
    ax.set_xlabel("completion time / T*")
    ax.set_ylabel("fraction of leechers done")
    ax.legend(fontsize=7)
    p = Path(f"{prefix}-completion.png")
    fig.savefig(p, dpi=110, bbox_inches="tight")
    plt.close(fig)
    out.append(p)
    fig, ax = plt.subplots(figsize=(8, 5))
    for m, res in runs:
        if res.availability:
            ax.plot(
                [t for t, _ in res.availability],
                [c for _, c in res.availability],
                label=_label(m),
            )
    ax.set_xlabel("time (s)")
    ax.set_ylabel("distributed copies among leechers")
    ax.legend(fontsize=7)
    p = Path(f"{prefix}-availability.png")
    fig.savefig(p, dpi=110, bbox_inches="tight")
    plt.close(fig)
    out.append(p)
    return out
