"""A hybrid strategy designed in the lab: ``seed-sparing`` (rarest-first that spares the seeds).

Rarest-first on local knowledge makes a leecher ask a seed for pieces its other neighbours already
hold once it owns (or has requested) every piece that only the seeds have: the seed's upload then goes
to bytes the swarm already has.  When the seeds' upload *is* the bottleneck (a fan-out where the seed's
link equals every node's, so T* = F / u_seed) every such byte adds directly to the completion time.

``seed-sparing`` orders pieces like rarest-first, except that when the peer asked is a seed (its
have-set is complete) only pieces no other connected peer has are offered; the others are left to the
leechers that hold them.  Registered under that name by importing this module (the lab's CLI does).
"""

from __future__ import annotations

from collections.abc import Iterator

from torrentgoat.bitfield import Bitfield
from torrentgoat.picker import PickerConfig, PickerView, RarestFirst, register_strategy, strategy_names

__all__ = ["SeedSparing"]


class SeedSparing(RarestFirst):
    """Rarest-first; from a seed, only the pieces that no leecher neighbour has."""

    name = "seed-sparing"

    def __init__(self, config: PickerConfig | None = None) -> None:
        super().__init__(config)

    def order(self, view: PickerView, peer_have: Bitfield) -> Iterator[int]:
        if not peer_have.complete:
            yield from view.rarest_order(peer_have)
            return
        seeds = getattr(view, "seeds", 1)  # PiecePicker.seeds; availability counts the seeds too
        for i in view.rarest_order(peer_have):
            if view.availability(i) > seeds:
                return  # rarest order: every later piece is held by a leecher too
            yield i


if SeedSparing.name not in strategy_names():
    register_strategy(SeedSparing.name, SeedSparing)
