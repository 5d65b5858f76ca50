"""The strategy lab's swarm simulator (benchmarks/strategies) on small swarms.

Shows: runs are deterministic per seed; bytes are conserved (each leecher receives exactly the shard,
senders' uploads equal receivers' new plus duplicate bytes, nobody completes without every piece); no
leecher beats its own download link; the Kumar-Ross fluid bound formula; every registered strategy,
with and without endgame, completes every preset; the simulator asks the registry's strategies (a
strategy registered by a test is the one consulted); the CLI writes its table and CSV.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from benchmarks.strategies.__main__ import main, parse_size
from benchmarks.strategies.metrics import percentile, summarize
from benchmarks.strategies.scenarios import SCENARIOS, build_peers
from benchmarks.strategies.sim import PeerSpec, SimConfig, Simulator, fluid_bound, simulate
from torrentgoat.bitfield import Bitfield
from torrentgoat.picker import PickerConfig, PickerView, RarestFirst, register_strategy, strategy_names
from torrentgoat.picker import strategy as strategy_module

MiB = 1024 * 1024
SIZE = 48 * MiB + 12345  # a short last piece


def small(scenario: str = "flash-crowd", peers: int = 8, **kw: object) -> tuple[SimConfig, list[PeerSpec]]:
    cfg = SimConfig(size=SIZE, piece_size=kw.pop("piece_size", MiB), **kw)  # type: ignore[arg-type]
    return cfg, build_peers(scenario, peers, SIZE, cfg.seed)


def test_fluid_bound_formula() -> None:
    # seed-limited, download-limited and aggregate-upload-limited regimes
    assert fluid_bound(100.0, 1.0, [10.0, 10.0], [50.0, 50.0]) == 100.0
    assert fluid_bound(100.0, 100.0, [10.0, 10.0], [50.0, 5.0]) == 20.0
    assert fluid_bound(100.0, 10.0, [1.0] * 10, [1000.0] * 10) == pytest.approx(10 * 100 / 20)
    assert fluid_bound(100.0, 10.0, [], []) == 0.0


def test_deterministic_per_seed() -> None:
    cfg, specs = small()
    a, b = simulate(cfg, specs), simulate(cfg, specs)
    assert a.completion_times == b.completion_times
    assert (a.flows, a.seed_upload, a.duplicate_bytes) == (b.flows, b.seed_upload, b.duplicate_bytes)
    cfg2, specs2 = small(seed=2)
    assert simulate(cfg2, specs2).completion_times != a.completion_times


@pytest.mark.parametrize("sub_blocks", [1, 4])
def test_conservation(sub_blocks: int) -> None:
    cfg, specs = small(sub_blocks=sub_blocks)
    sim = Simulator(cfg, specs)
    res = sim.run()
    assert res.incomplete == 0
    for peer, spec in zip(sim.peers, specs, strict=True):
        assert peer.have is not None and peer.have.complete
        if not spec.seed:
            assert peer.downloaded == SIZE  # new bytes: exactly the shard
            assert peer.done is not None and peer.done - spec.join >= SIZE / spec.download
    uploaded = sum(p.uploaded for p in res.peers)
    received = sum(p.downloaded + p.duplicate for p in res.peers)
    assert uploaded == pytest.approx(received)
    assert res.duplicate_bytes == pytest.approx(sum(p.duplicate for p in res.peers))
    assert res.aborted_bytes == 0
    assert res.copy_time is not None and res.copy_time <= max(p.done or 0 for p in res.peers)
    m = summarize(res, scenario="flash-crowd")
    assert m.bound > 0 and m.ratio >= 1.0 and m.seed_copies >= 1.0
    assert m.t_min <= m.t_median <= m.t_p90 <= m.t_max


@pytest.mark.parametrize("sub_blocks", [1, 4])
def test_super_seed_reveals_every_piece_once_before_any_twice(sub_blocks: int) -> None:
    """The simulated seeds super-seed with the client's own :class:`SuperSeeder` (BEP 16)."""
    cfg, specs = small("cluster-fanout", super_seed=True, sub_blocks=sub_blocks)
    sim = Simulator(cfg, specs)
    seen: list[tuple[int, int]] = []  # (most reveals of a piece, pieces never revealed) at each reveal
    real_join = sim._join

    def join(p: object) -> None:
        real_join(p)  # type: ignore[arg-type]
        ss = sim.peers[0].superseed
        if ss is not None and not seen:
            original = ss._top_up

            def top_up(st: object) -> list[int]:
                out = original(st)  # type: ignore[arg-type]
                counts = [ss.times_revealed(i) for i in range(ss.num_pieces)]
                seen.append((max(counts), counts.count(0)))
                return out

            ss._top_up = top_up  # type: ignore[method-assign]

    sim._join = join  # type: ignore[method-assign]
    res = sim.run()
    assert res.incomplete == 0
    assert all(p.downloaded == SIZE for p in res.peers if not p.seed)
    assert sim.peers[0].superseed is None  # ended: the leechers held every piece between them
    assert seen and all(most <= 1 for most, unrevealed in seen if unrevealed > 0)


def test_least_progress_optimistic_unchokes_run_the_clients_choker() -> None:
    cfg, specs = small("cluster-fanout", super_seed=True, optimistic_mode="least-progress")
    sim = Simulator(cfg, specs)
    res = sim.run()
    assert res.incomplete == 0
    assert sim.choker_config.optimistic_mode == "least-progress"
    assert summarize(res, scenario="cluster-fanout").optimistic == "least-progress"


def test_endgame_off_has_no_duplicates() -> None:
    cfg, specs = small(endgame=False)
    res = simulate(cfg, specs)
    assert res.incomplete == 0 and res.duplicate_bytes == 0


@pytest.mark.parametrize("strategy", strategy_names())
@pytest.mark.parametrize("endgame", [True, False])
def test_every_strategy_completes(strategy: str, endgame: bool) -> None:
    cfg, specs = small(strategy=strategy, endgame=endgame, piece_size=2 * MiB)
    res = simulate(cfg, specs)
    assert res.incomplete == 0
    assert len(res.completion_times) == 8


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_preset_runs(scenario: str) -> None:
    cfg, specs = small(scenario, peers=6)
    if scenario == "seed-leaves-early":
        # A 48-piece torrent is too small for the client's adaptive queue: 2 s of rate queued at the
        # seed reserves most pieces at once, and pieces still queued when the leechers already trade
        # them waste the seed's last upload.  The scenario's mechanics are checked with a fixed
        # 2-chunk pipeline; the preset at full size (4 GiB, 1.12x T*) is in benchmarks/README.md.
        cfg = replace(cfg, pipeline=2)
    res = simulate(cfg, specs)
    leechers = [p for p in res.peers if not p.seed]
    assert len(leechers) == 6
    if scenario == "seed-leaves-early":
        # the seed stays long enough for 1.5 copies: every piece reaches the swarm first
        assert res.copy_time is not None
    assert res.incomplete == 0
    if scenario == "churn":
        assert all(p.done is not None for p in leechers)


def test_seed_leaving_at_once_leaves_leechers_incomplete() -> None:
    specs = [PeerSpec(upload=1e6, download=1e6, seed=True, leave_at=1.0)]
    specs += [PeerSpec(upload=1e6, download=1e7) for _ in range(3)]
    res = simulate(SimConfig(size=SIZE, piece_size=MiB, stall_time=60.0), specs)
    assert res.incomplete == 3  # stops on the stall instead of running forever
    assert res.end_time < 1000


def test_simulator_consults_the_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    class Counting(RarestFirst):
        name = "test-counting"

        def order(self, view: PickerView, peer_have: Bitfield) -> Iterator[int]:
            calls.append(1)
            return super().order(view, peer_have)

    def factory(config: PickerConfig) -> Counting:
        return Counting(config)

    # registered for this test only (the registry is restored afterwards)
    monkeypatch.setattr(strategy_module, "_REGISTRY", dict(strategy_module._REGISTRY))
    register_strategy("test-counting", factory)
    cfg, specs = small(strategy="test-counting")
    assert simulate(cfg, specs).incomplete == 0
    assert calls


def test_percentile_and_sizes() -> None:
    assert percentile([3.0, 1.0, 2.0, 4.0], 50) == 2.0
    assert percentile([3.0, 1.0, 2.0, 4.0], 90) == 4.0
    assert percentile([5.0], 0) == 5.0
    assert parse_size("16MiB") == 16 * MiB
    assert parse_size("20GiB") == 20 * 1024**3
    assert parse_size("500MB") == 500 * 10**6


def test_cli_table_and_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "runs.csv"
    rc = main(
        [
            "--scenario",
            "cluster-fanout",
            "--peers",
            "4",
            "--size",
            "32MiB",
            "--piece-size",
            "1MiB,4MiB",
            "--endgame",
            "both",
            "--csv",
            str(out),
            "--plots",
            str(tmp_path / "lab"),
        ]
    )
    assert rc == 0  # without matplotlib the plots are skipped with a note, never a crash
    table = capsys.readouterr().out
    assert "cluster-fanout" in table and "max/T*" in table
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 4
    assert {r["endgame"] for r in rows} == {"True", "False"}
    assert main(["--list"]) == 0
    assert "flash-crowd" in capsys.readouterr().out


def test_cli_parallel_runs_give_the_same_rows(tmp_path: Path) -> None:
    def rows(jobs: str) -> list[dict[str, str]]:
        out = tmp_path / f"runs-{jobs}.csv"
        common = ["--scenario", "flash-crowd", "--peers", "5", "--size", "24MiB", "--piece-size", "1MiB"]
        extra = ["--strategy", "all", "--seeding", "both", "--csv", str(out), "--jobs", jobs]
        assert main(common + extra) == 0
        return [{k: v for k, v in r.items() if k != "wall"} for r in csv.DictReader(out.open())]

    one, two = rows("1"), rows("2")
    assert len(one) == 2 * len(strategy_names()) and one == two
    assert {r["seeding"] for r in one} == {"normal", "super"}


def test_seed_sparing_asks_a_seed_only_for_pieces_no_leecher_has() -> None:
    import random

    from benchmarks.strategies.hybrid import SeedSparing
    from torrentgoat.picker import PieceLayout, PiecePicker

    picker = PiecePicker(
        PieceLayout.uniform(4, 16384),
        rng=random.Random(1),
        config=PickerConfig(initial_random_pieces=0),
        strategy=SeedSparing(),
    )
    seed = Bitfield(4, full=True)
    picker.peer_joined("seed", seed)
    picker.peer_joined("leecher", Bitfield.from_indices(4, [0, 1]))
    got = picker.pick("seed", seed, 10, now=0.0)
    assert sorted(b.piece for b in got) == [2, 3]  # 0 and 1 are left to the leecher
    leecher = picker.pick("leecher", Bitfield.from_indices(4, [0, 1]), 10, now=0.0)
    assert sorted(b.piece for b in leecher) == [0, 1]
