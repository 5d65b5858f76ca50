"""Smoke test of the loopback fan-out benchmark (benchmarks/fanout.py): 1 seed + 2 torrentgoat leechers,
with and without super-seeding."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import fanout
from torrentgoat.testing.timing import scaled
from torrentgoat.torrent import TorrentConfig

__all__: list[str] = []


def test_fluid_bound_matches_the_closed_form() -> None:
    # equal caps u, N leechers, unlimited downloads: T* = max(F/u, N F / ((N + 1) u)) = F/u
    assert fanout.fluid_bound(100.0, 10.0, [10.0] * 8, [1e12] * 8) == pytest.approx(10.0)
    # a slow downloader binds
    assert fanout.fluid_bound(100.0, 10.0, [10.0, 10.0], [5.0, 1e12]) == pytest.approx(20.0)
    # many leechers that upload little: the aggregate term binds
    assert fanout.fluid_bound(100.0, 10.0, [1.0] * 10, [1e12] * 10) == pytest.approx(50.0)


def test_summary_percentiles() -> None:
    st = fanout.summary([float(i) for i in range(1, 11)] + [float("nan")])
    assert (st["min"], st["median"], st["p90"], st["max"]) == (1.0, 5.5, 9.0, 10.0)


def test_fanout_tg_two_leechers(tmp_path: Path) -> None:
    csv_path = tmp_path / "fanout.csv"
    work = Path("/tmp") / f"tgfanout-test-{tmp_path.name}"
    try:
        code = fanout.main(
            [
                "--leechers", "2",
                "--size", "4MiB",
                "--piece-size", "256KiB",
                "--upload-cap", "200MB",
                "--client", "tg,tg+ss+lp",
                "--dir", str(work),
                "--timeout", str(round(scaled(60))),
                "--csv", str(csv_path),
            ]
        )  # fmt: skip
    finally:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    assert code == 0
    rows = csv_path.read_text().splitlines()
    assert rows[0] == "who,min,median,p90,max,t_star,seed_copies"
    whos = [r.split(",")[0] for r in rows[1:]]
    sim = f"sim:{TorrentConfig().picker.strategy}/{TorrentConfig().choker.upload_slots}"
    assert whos == ["T*", f"{sim}/-/-", f"{sim}/ss/lp", "tg", "tg+ss+lp"]
    for row in rows[-2:]:
        # every leecher finished (no NaN); a 4 MiB leecher may finish within the harness's reading
        # of its "listening" and "finished" lines on a busy machine, so its time can round to 0.0
        *times, t_star, seed_copies = (float(x) for x in row.split(",")[1:])
        assert all(t >= 0 for t in times) and t_star > 0 and seed_copies > 0


def test_client_names() -> None:
    assert fanout.parse_client("tg:seed-sparing+ss") == ("tg:seed-sparing", frozenset({"ss"}))
    assert fanout.parse_client("tg+ss+lp") == ("tg", frozenset({"ss", "lp"}))
    assert fanout.parse_client("lt") == ("lt", frozenset())
    for bad in ("tg+turbo", "lt+lp"):
        with pytest.raises(ValueError):
            fanout.parse_client(bad)
    seed = fanout.peer_command("tg+ss+lp", "seed", Path("t"), Path("d"), 1, [], 10, 4)
    assert "--super-seed" in seed and "least-progress" in seed
    leech = fanout.peer_command("tg+ss+lp", "leech", Path("t"), Path("d"), 1, [], 10, 4)
    assert "--super-seed" not in leech and "least-progress" in leech
