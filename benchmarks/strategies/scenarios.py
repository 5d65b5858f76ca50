"""Named swarm presets: each builds the peer list for a peer count, shard size and seed.

Rates are bytes/s.  ``MB`` is 10^6 bytes (link speeds), sizes use binary units (GiB, MiB).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from benchmarks.strategies.sim import PeerSpec

__all__ = ["SCENARIOS", "Scenario", "build_peers"]

MB = 1_000_000


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    name: str
    description: str
    default_peers: int
    build: Callable[[int, int, random.Random], list[PeerSpec]]
    """(leechers, size, rng) -> seeds first, then leechers."""


def _jitter(rng: random.Random, lo: float, hi: float) -> float:
    return lo + (hi - lo) * rng.random()


def _home_seed() -> PeerSpec:
    return PeerSpec(upload=20 * MB, download=100 * MB, latency=0.01, seed=True)


def _home_leecher(rng: random.Random, join: float = 0.0, linger: float | None = None) -> PeerSpec:
    return PeerSpec(
        upload=5 * MB, download=50 * MB, latency=_jitter(rng, 0.01, 0.04), join=join, linger=linger
    )


def flash_crowd(n: int, size: int, rng: random.Random) -> list[PeerSpec]:
    return [_home_seed(), *(_home_leecher(rng) for _ in range(n))]


def cluster_fanout(n: int, size: int, rng: random.Random) -> list[PeerSpec]:
    nic = 1250 * MB  # 10 GbE, both directions
    seed = PeerSpec(upload=nic, download=nic, latency=0.0001, seed=True)
    return [seed, *(PeerSpec(upload=nic, download=nic, latency=0.0001) for _ in range(n))]


def heterogeneous(n: int, size: int, rng: random.Random) -> list[PeerSpec]:
    classes = [  # (share, upload, download): fibre, cable, DSL
        (0.2, 50 * MB, 100 * MB),
        (0.5, 2.5 * MB, 25 * MB),
        (0.3, 1 * MB, 10 * MB),
    ]
    out = [_home_seed()]
    for _ in range(n):
        x = rng.random()
        up, down = classes[-1][1:]
        for share, cls_up, cls_down in classes:
            if x < share:
                up, down = cls_up, cls_down
                break
            x -= share
        out.append(PeerSpec(upload=up, download=down, latency=_jitter(rng, 0.005, 0.06)))
    return out


def _flash_time(n: int, size: int) -> float:
    return max(size / (20 * MB), n * size / (20 * MB + n * 5 * MB))


def late_joiners(n: int, size: int, rng: random.Random) -> list[PeerSpec]:
    horizon = 0.5 * _flash_time(n, size)
    early = n // 2
    return [
        _home_seed(),
        *(_home_leecher(rng) for _ in range(early)),
        *(_home_leecher(rng, join=_jitter(rng, 0, horizon)) for _ in range(n - early)),
    ]


def churn(n: int, size: int, rng: random.Random) -> list[PeerSpec]:
    return [_home_seed(), *(_home_leecher(rng, linger=0.0) for _ in range(n))]


def seed_leaves_early(n: int, size: int, rng: random.Random) -> list[PeerSpec]:
    seed = PeerSpec(
        upload=20 * MB, download=100 * MB, latency=0.01, seed=True, leave_at=1.5 * size / (20 * MB)
    )
    return [seed, *(_home_leecher(rng) for _ in range(n))]


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            name="flash-crowd",
            description="1 seed (20 MB/s up), N home leechers (5 up / 50 down MB/s, 20-80 ms RTT) join at t=0",
            default_peers=100,
            build=flash_crowd,
        ),
        Scenario(
            name="cluster-fanout",
            description="1 seed + N equal nodes on 10 GbE (1250 MB/s both ways, 0.4 ms RTT): GPU-cluster push",
            default_peers=64,
            build=cluster_fanout,
        ),
        Scenario(
            name="heterogeneous",
            description="1 seed (20 MB/s), leechers 20% fibre 50/100, 50% cable 2.5/25, 30% DSL 1/10 MB/s",
            default_peers=100,
            build=heterogeneous,
        ),
        Scenario(
            name="late-joiners",
            description="flash crowd where half the leechers join at random times over half the fluid bound",
            default_peers=100,
            build=late_joiners,
        ),
        Scenario(
            name="churn",
            description="flash crowd where each leecher leaves as soon as it completes",
            default_peers=100,
            build=churn,
        ),
        Scenario(
            name="seed-leaves-early",
            description="flash crowd where the seed leaves after uploading at most 1.5 copies' time",
            default_peers=100,
            build=seed_leaves_early,
        ),
    )
}


def build_peers(scenario: str, peers: int, size: int, seed: int) -> list[PeerSpec]:
    """The peer list of a preset, deterministic for ``seed``."""
    return SCENARIOS[scenario].build(peers, size, random.Random(seed))
