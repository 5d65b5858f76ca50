"""Choking: which peers we upload to, as one pure function over peer statistics (level L2).

BEP 3, "Choking and optimistic unchoking": a client unchokes the few peers that upload to it fastest
(tit-for-tat, "a variant of tit-for-tat"), recomputed every 10 seconds, plus one *optimistic unchoke*
that rotates every 30 seconds regardless of rate, so newcomers and better partners can be discovered;
peers that send us nothing for a long time (snubbed) lose their regular slot.  While seeding there is
nothing to reciprocate, so slots go to the peers we upload to fastest (libtorrent's
``fastest_upload``) or rotate (``round_robin``).  As in the mainline client, newly connected peers are
three times as likely to be chosen as the optimistic unchoke.

:func:`choke` is pure: the driver passes the statistics, the current optimistic peer and when it was
chosen, ``now`` and an ``rng``, and applies the returned :class:`ChokeDecision`.  :class:`Choker` is a
small convenience holding the optimistic state between rounds.  Libtorrent's ``choker.cpp`` has the same
shape.
"""

from __future__ import annotations

import random
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import Literal

from torrentgoat.errors import ConfigError

__all__ = ["ChokeDecision", "Choker", "ChokerConfig", "OptimisticMode", "PeerStats", "SeedMode", "choke"]

SeedMode = Literal["fastest-upload", "round-robin"]
OptimisticMode = Literal["random", "least-progress"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ChokerConfig:
    """Choking knobs (defaults from BEP 3 and the mainline client)."""

    upload_slots: int = 4
    """Regular (tit-for-tat) unchoke slots; BEP 3's reference client used 4."""

    optimistic: bool = True
    """Keep one optimistic unchoke on top of the regular slots (BEP 3)."""

    optimistic_interval: float = 30.0
    """Seconds an optimistic unchoke lasts before rotating (BEP 3: "every 30 seconds")."""

    new_peer_age: float = 30.0
    """Peers connected for less than this many seconds count as new for the optimistic draw."""

    new_peer_weight: float = 3.0
    """How much likelier a new peer is to become the optimistic unchoke (mainline: 3x)."""

    rechoke_interval: float = 10.0
    """Seconds between calls of :func:`choke` (BEP 3: "every ten seconds"); used by :class:`Choker`."""

    seed_mode: SeedMode = "fastest-upload"
    """While seeding: ``fastest-upload`` ranks by our upload rate to the peer; ``round-robin`` gives each
    interested peer a turn of ``seed_turn`` seconds, the longest-waiting first."""

    seed_turn: float = 60.0
    """``round-robin`` seeding: seconds a peer keeps its slot before others get a turn."""

    unchoke_local: bool = True
    """Interested peers on the local network (loopback, private or link-local addresses) are unchoked
    outside the slots, all of them, as libtorrent does by default (``ignore_limits_on_local_network``):
    a push to the machines of one cluster serves them all at once, each an equal share, instead of a
    few at a time.  Slots and tit-for-tat stay for the peers of the internet."""

    optimistic_mode: OptimisticMode = "random"
    """``random`` (BEP 3): the optimistic unchoke is drawn at random and kept ``optimistic_interval``
    seconds.  ``least-progress``: every round it goes to the interested, choked peer holding the
    fewest pieces -- for cooperative swarms (one origin pushing to a cluster), where a node that holds
    nothing its neighbours want is never reciprocated by tit-for-tat and would otherwise trail the
    rest.  Not for public swarms: a free rider that announces nothing would always win the slot."""

    def __post_init__(self) -> None:
        if self.upload_slots < 0:
            raise ConfigError(f"upload_slots must be >= 0, got {self.upload_slots}")
        if self.optimistic_interval <= 0 or self.rechoke_interval <= 0 or self.seed_turn <= 0:
            raise ConfigError("optimistic_interval, rechoke_interval and seed_turn must be positive")
        if self.new_peer_weight < 1:
            raise ConfigError(f"new_peer_weight must be >= 1, got {self.new_peer_weight}")
        if self.seed_mode not in ("fastest-upload", "round-robin"):
            raise ConfigError(f"unknown seed_mode {self.seed_mode!r}")
        if self.optimistic_mode not in ("random", "least-progress"):
            raise ConfigError(f"unknown optimistic_mode {self.optimistic_mode!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerStats:
    """What the choker knows of one connected peer."""

    key: Hashable
    """The driver's opaque peer key."""

    interested: bool
    """The peer is interested in our pieces (BEP 3 ``interested``): only those get slots."""

    upload_rate: float = 0.0
    """Bytes/s we currently send to the peer."""

    download_rate: float = 0.0
    """Bytes/s the peer currently sends us."""

    snubbed: bool = False
    """The peer sent us nothing for a long time while we had requests out: no regular slot."""

    is_seed: bool = False
    """The peer has every piece; it never needs our data."""

    connected_at: float = 0.0
    """When the connection was established (same clock as ``now``)."""

    unchoked_since: float | None = None
    """When our current unchoke of the peer began; None while we choke it."""

    last_unchoked: float | None = None
    """When we last unchoked the peer (None: never); round-robin seeding serves the longest-waiting."""

    progress: float = 0.0
    """Fraction of the pieces the peer has announced (0..1); ``least-progress`` optimistic unchokes."""

    local: bool = False
    """The peer is on the local network (see :attr:`ChokerConfig.unchoke_local`)."""

    @property
    def unchoked(self) -> bool:
        return self.unchoked_since is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class ChokeDecision:
    """The outcome of one rechoke round."""

    unchoke: frozenset[Hashable]
    """Peers to unchoke; every other peer is choked."""

    regular: tuple[Hashable, ...]
    """The regular (tit-for-tat) unchokes, best first."""

    optimistic: Hashable | None
    """The optimistic unchoke (pass it back next round), or None."""

    optimistic_since: float | None
    """When that optimistic unchoke was chosen (pass it back next round)."""


def _rank_key(
    peer: PeerStats, *, seeding: bool, config: ChokerConfig, now: float, tie: float
) -> tuple[float, ...]:
    if not seeding:
        # tit-for-tat: fastest uploaders to us; on ties keep current unchokes (less churn), then random
        return (-peer.download_rate, 0 if peer.unchoked else 1, tie)
    if config.seed_mode == "fastest-upload":
        return (-peer.upload_rate, 0 if peer.unchoked else 1, tie)
    # round-robin: peers still within their turn keep it, then the longest-waiting
    since = peer.unchoked_since
    if since is not None and now - since < config.seed_turn:
        return (0, since, tie)
    waited = peer.last_unchoked if peer.last_unchoked is not None else float("-inf")
    return (1 if since is None else 2, waited, tie)


def choke(
    peers: Iterable[PeerStats],
    *,
    seeding: bool,
    now: float,
    rng: random.Random,
    config: ChokerConfig | None = None,
    optimistic: Hashable | None = None,
    optimistic_since: float | None = None,
) -> ChokeDecision:
    """One rechoke round (BEP 3, "Choking and optimistic unchoking").

    Regular slots: interested, non-seed, non-snubbed peers ranked by download rate from them while
    leeching, by upload rate to them (or round-robin) while seeding; ties favour peers already unchoked,
    then chance.  Optimistic slot: kept for ``optimistic_interval`` seconds while the peer stays interested
    and is not promoted to a regular slot; otherwise redrawn among the other interested peers with new
    peers ``new_peer_weight`` times as likely.  With ``optimistic_mode="least-progress"`` it goes every
    round to the interested peer with the fewest pieces instead.  Interested peers on the local network
    are all unchoked on top of that (``unchoke_local``), and compete for no slot.
    """
    cfg = config or ChokerConfig()
    candidates = [p for p in peers if p.interested and not p.is_seed]
    local: list[Hashable] = []
    if cfg.unchoke_local:
        local = [p.key for p in candidates if p.local]
        candidates = [p for p in candidates if not p.local]
    rand = rng.random
    ranked = sorted(
        (p for p in candidates if not p.snubbed),
        key=lambda p: _rank_key(p, seeding=seeding, config=cfg, now=now, tie=rand()),
    )
    regular = tuple(p.key for p in ranked[: cfg.upload_slots])
    chosen = set(regular)

    new_optimistic: Hashable | None = None
    new_since: float | None = None
    if cfg.optimistic and cfg.optimistic_mode == "least-progress":
        pool = [p for p in candidates if p.key not in chosen]
        if pool:
            # the peer furthest behind; on ties keep the current one, then chance
            best = min(pool, key=lambda p: (p.progress, 0 if p.key == optimistic else 1, rand()))
            new_optimistic = best.key
            new_since = optimistic_since if best.key == optimistic else now
    elif cfg.optimistic:
        by_key = {p.key: p for p in candidates}
        if (
            optimistic is not None
            and optimistic in by_key
            and optimistic not in chosen
            and optimistic_since is not None
            and now - optimistic_since < cfg.optimistic_interval
        ):
            new_optimistic, new_since = optimistic, optimistic_since
        else:
            pool = [p for p in candidates if p.key not in chosen]
            if len(pool) > 1:
                pool = [p for p in pool if p.key != optimistic]  # rotate to someone else
            if pool:
                new_age, new_weight = cfg.new_peer_age, cfg.new_peer_weight
                weights = [new_weight if now - p.connected_at < new_age else 1.0 for p in pool]
                new_optimistic = rng.choices(pool, weights=weights)[0].key
                new_since = now
    if new_optimistic is not None:
        chosen.add(new_optimistic)
    chosen.update(local)
    return ChokeDecision(
        unchoke=frozenset(chosen), regular=regular, optimistic=new_optimistic, optimistic_since=new_since
    )


class Choker:
    """Holds the optimistic unchoke between rounds and says when the next round is due."""

    def __init__(self, config: ChokerConfig | None = None) -> None:
        self.config = config or ChokerConfig()
        self.optimistic: Hashable | None = None
        self.optimistic_since: float | None = None
        self.last_round: float | None = None

    def get_timer(self) -> float | None:
        """When the next rechoke is due (None: right away)."""
        return None if self.last_round is None else self.last_round + self.config.rechoke_interval

    def rechoke(
        self, peers: Iterable[PeerStats], *, seeding: bool, now: float, rng: random.Random
    ) -> ChokeDecision:
        decision = choke(
            peers,
            seeding=seeding,
            now=now,
            rng=rng,
            config=self.config,
            optimistic=self.optimistic,
            optimistic_since=self.optimistic_since,
        )
        self.optimistic = decision.optimistic
        self.optimistic_since = decision.optimistic_since
        self.last_round = now
        return decision
