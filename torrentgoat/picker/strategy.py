"""Piece strategies: a Protocol plus a registry by name (like aioquic's congestion controls).

A strategy only *orders* candidate pieces.  It sees the swarm through a :class:`PickerView` --
availability counts, priorities, our progress, an injected RNG -- and the requesting peer's have-set;
never peer objects, sockets or clocks (anacrolix's isolated request strategy).  The
:class:`~torrentgoat.picker.PiecePicker` owns everything else: partial pieces first, block allocation,
the cap on partial pieces, endgame.

Built-in strategies:

* ``rarest-first`` (default): highest priority first, then the pieces fewest peers have, ties broken at
  random (Cohen 2003, "Piece selection": "rarest first"; BEP 3 only asks for an order that keeps peers
  from holding subsets of each other's pieces, which rarest-first does better than random).
* ``sequential``: highest priority first, then lowest index -- for streaming a shard front to back.
* ``random``: highest priority first, then a random piece.
* ``windowed-rarest``: rarest-first inside a sliding window of ``window_pieces`` pieces starting at the
  first missing piece, then rarest-first over the rest -- huge files fetched roughly front to back
  while still spreading rare pieces.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Protocol, runtime_checkable

from torrentgoat.bitfield import Bitfield
from torrentgoat.errors import ConfigError
from torrentgoat.picker.config import PickerConfig

__all__ = [
    "PickerView",
    "PieceStrategy",
    "RandomStrategy",
    "RarestFirst",
    "Sequential",
    "StrategyFactory",
    "WindowedRarest",
    "create_strategy",
    "random_order",
    "register_strategy",
    "strategy_names",
]


class PickerView(Protocol):
    """What a strategy may read of the picker's state."""

    @property
    def num_pieces(self) -> int: ...

    @property
    def rng(self) -> random.Random: ...

    def availability(self, index: int) -> int:
        """Number of connected peers holding piece ``index``."""
        ...

    def priority(self, index: int) -> int:
        """Piece priority: 0 skip, 1 normal, higher more urgent."""
        ...

    def is_candidate(self, index: int) -> bool:
        """Piece is wanted (priority > 0), not ours, and not started (no partial state)."""
        ...

    def first_missing(self) -> int:
        """Lowest index of a wanted piece we lack (``num_pieces`` when none)."""
        ...

    def candidate_levels(self) -> list[int]:
        """Priority levels present among candidate pieces, highest first."""
        ...

    def rarest_order(self, peer_have: Bitfield) -> Iterator[int]:
        """Candidate pieces the peer has, by priority (high first), availability (low first), random."""
        ...


@runtime_checkable
class PieceStrategy(Protocol):
    """Orders pieces for the picker."""

    name: str
    """Registry name."""

    random_start: bool
    """Whether the picker may override the order with random picks while we own only a few pieces."""

    def order(self, view: PickerView, peer_have: Bitfield) -> Iterator[int]:
        """Candidate pieces to start, best first.  May yield pieces that are not candidates or that the
        peer lacks (the picker skips them) but should not, for speed; must be lazy (a generator)."""
        ...

    def partial_key(self, view: PickerView, index: int) -> tuple[int, ...]:
        """Sort key of a started piece among started pieces (smaller first)."""
        ...


StrategyFactory = Callable[[PickerConfig], PieceStrategy]
_REGISTRY: dict[str, StrategyFactory] = {}


def register_strategy(name: str, factory: StrategyFactory, *, replace: bool = False) -> None:
    """Make ``factory`` available as ``PickerConfig(strategy=name)``."""
    if name in _REGISTRY and not replace:
        raise ConfigError(f"piece strategy {name!r} is already registered")
    _REGISTRY[name] = factory


def create_strategy(name: str, config: PickerConfig | None = None) -> PieceStrategy:
    """A new strategy instance by registry name; unknown names raise :class:`ConfigError`."""
    try:
        factory = _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise ConfigError(f"unknown piece strategy {name!r} (known: {known})") from None
    return factory(config or PickerConfig())


def strategy_names() -> list[str]:
    return sorted(_REGISTRY)


def random_order(view: PickerView, peer_have: Bitfield) -> Iterator[int]:
    """Candidates the peer has, highest priority level first, from a random start position (libtorrent's
    random pick: uniform start, then linear -- O(1) RNG draws per call)."""
    n = view.num_pieces
    if n == 0:
        return
    levels = view.candidate_levels()
    single = len(levels) == 1
    start = view.rng.randrange(n)
    for level in levels:
        for i in _wrap(start, n):
            if i in peer_have and view.is_candidate(i) and (single or view.priority(i) == level):
                yield i


def _wrap(start: int, n: int) -> Iterator[int]:
    yield from range(start, n)
    yield from range(start)


class RarestFirst:
    """Highest priority, then rarest, random tie-break (Cohen 2003, "rarest first")."""

    name = "rarest-first"
    random_start = True

    def __init__(self, config: PickerConfig | None = None) -> None:
        pass

    def order(self, view: PickerView, peer_have: Bitfield) -> Iterator[int]:
        return view.rarest_order(peer_have)

    def partial_key(self, view: PickerView, index: int) -> tuple[int, ...]:
        return (-view.priority(index), view.availability(index), index)


class Sequential:
    """Highest priority, then lowest index: streams a file front to back."""

    name = "sequential"
    random_start = False

    def __init__(self, config: PickerConfig | None = None) -> None:
        pass

    def order(self, view: PickerView, peer_have: Bitfield) -> Iterator[int]:
        levels = view.candidate_levels()
        first = view.first_missing()
        n = view.num_pieces
        single = len(levels) == 1
        for level in levels:
            for i in range(first, n):
                if i in peer_have and view.is_candidate(i) and (single or view.priority(i) == level):
                    yield i

    def partial_key(self, view: PickerView, index: int) -> tuple[int, ...]:
        return (-view.priority(index), index)


class RandomStrategy:
    """Highest priority, then random."""

    name = "random"
    random_start = False

    def __init__(self, config: PickerConfig | None = None) -> None:
        pass

    def order(self, view: PickerView, peer_have: Bitfield) -> Iterator[int]:
        return random_order(view, peer_have)

    def partial_key(self, view: PickerView, index: int) -> tuple[int, ...]:
        return (-view.priority(index), index)


class WindowedRarest:
    """Rarest-first inside ``[first_missing, first_missing + window)``, then rarest-first elsewhere.

    The window keeps a huge file arriving roughly in order (bounded read-ahead for streaming), while the
    rarest rule inside it still spreads rare pieces through the swarm.  Outside the window the order is
    plain rarest-first so a peer holding nothing in the window is never left idle.
    """

    name = "windowed-rarest"
    random_start = False

    def __init__(self, config: PickerConfig | None = None, *, window: int | None = None) -> None:
        cfg = config or PickerConfig()
        self.window = window if window is not None else cfg.window_pieces
        if self.window < 1:
            raise ConfigError(f"window must be >= 1 piece, got {self.window}")

    def order(self, view: PickerView, peer_have: Bitfield) -> Iterator[int]:
        first = view.first_missing()
        stop = min(view.num_pieces, first + self.window)
        rnd = view.rng.random
        inside = [
            (-view.priority(i), view.availability(i), rnd(), i)
            for i in range(first, stop)
            if i in peer_have and view.is_candidate(i)
        ]
        inside.sort()
        for *_, i in inside:
            yield i
        for i in view.rarest_order(peer_have):
            if not first <= i < stop:
                yield i

    def partial_key(self, view: PickerView, index: int) -> tuple[int, ...]:
        return (-view.priority(index), index)


register_strategy(RarestFirst.name, RarestFirst)
register_strategy(Sequential.name, Sequential)
register_strategy(RandomStrategy.name, RandomStrategy)
register_strategy(WindowedRarest.name, WindowedRarest)
