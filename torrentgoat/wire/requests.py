"""Request bookkeeping of one peer wire connection (level L2): ours, recently cancelled ones, the peer's.

BEP 3: ``request`` asks for a block, ``piece`` answers it, ``cancel`` withdraws a request (the block
may still arrive: the peer may have sent it already), and a ``choke`` discards every pending request.
BEP 6: with the Fast extension a choke discards nothing; every request is answered by exactly one
``piece`` or ``reject request``, and a request for an allowed-fast piece survives a choke.

The connection reads and writes :attr:`RequestBook.ours`, :attr:`~RequestBook.late` and
:attr:`~RequestBook.theirs` directly on its hot paths (one request, one block: a dict lookup each);
the rarer transitions are the methods here.  The dicts are never rebound, only mutated, so a
reference taken once stays valid.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Container

from torrentgoat.primitives import BlockRef

__all__ = ["Key", "RequestBook"]

Key = tuple[int, int, int]
"""``(index, begin, length)`` of a block request."""


class RequestBook:
    """The requests in flight on one connection, each dict in send order (oldest first)."""

    __slots__ = ("late", "max_late", "ours", "theirs")

    def __init__(self, max_late: int) -> None:
        self.ours: dict[Key, None] = {}
        """Our requests to the peer not yet answered."""
        self.late: OrderedDict[Key, int] = OrderedDict()
        """Our requests we cancelled (or a BEP 3 choke dropped) whose block may still arrive, with how
        many such requests each block has (requested, cancelled and requested again: BEP 6 answers
        each request); at most ``max_late`` blocks, the oldest forgotten first."""
        self.theirs: dict[Key, None] = {}
        """The peer's requests to us not yet answered."""
        self.max_late = max_late

    def outstanding(self) -> tuple[BlockRef, ...]:
        return tuple(BlockRef(*key) for key in self.ours)

    def pending(self) -> tuple[BlockRef, ...]:
        return tuple(BlockRef(*key) for key in self.theirs)

    def cancel(self, key: Key) -> bool:
        """We send ``cancel``: the request becomes late.  False when it was already answered."""
        if key not in self.ours:
            return False
        del self.ours[key]
        self._remember_late(key)
        return True

    def drop_ours(self) -> tuple[BlockRef, ...]:
        """BEP 3: the peer choked us without the Fast extension, so it discarded all our requests.
        They become late (a block already on its way is still used) and are returned, oldest first."""
        dropped = tuple(BlockRef(*key) for key in self.ours)
        for key in self.ours:
            self._remember_late(key)
        self.ours.clear()
        return dropped

    def drop_piece(self, index: int) -> tuple[BlockRef, ...]:
        """BEP 54: the peer no longer has piece ``index``; our requests for it become late and are
        returned, oldest first."""
        keys = [key for key in self.ours if key[0] == index]
        for key in keys:
            del self.ours[key]
            self._remember_late(key)
        return tuple(BlockRef(*key) for key in keys)

    def withdraw_piece(self, index: int) -> list[Key]:
        """We no longer have piece ``index``: the peer's requests for it are forgotten and returned
        (to be rejected with BEP 6), oldest first."""
        keys = [key for key in self.theirs if key[0] == index]
        for key in keys:
            del self.theirs[key]
        return keys

    def rejected(self, key: Key) -> bool | None:
        """BEP 6: the peer sent ``reject request``.  True: it was pending (tell the driver); False: it
        was late (already given up, nothing to say); None: we never sent it (a protocol error)."""
        if key in self.ours:
            del self.ours[key]
            return True
        if self.take_late(key):
            return False
        return None

    def take_late(self, key: Key) -> bool:
        """An answer (block or reject) to a late request arrived: True, and one fewer is expected."""
        count = self.late.get(key)
        if count is None:
            return False
        if count > 1:
            self.late[key] = count - 1
        else:
            del self.late[key]
        return True

    def withdrawn(self, key: Key) -> bool:
        """The peer sent ``cancel``: forget its request.  False when it was answered already (a race)."""
        if key not in self.theirs:
            return False
        del self.theirs[key]
        return True

    def choke_theirs(self, keep: Container[int]) -> list[Key]:
        """We choked the peer: its pending requests are discarded except those for pieces in ``keep``
        (BEP 6 allowed-fast pieces survive a choke); returns the discarded ones, oldest first."""
        dropped = [key for key in self.theirs if key[0] not in keep]
        for key in dropped:
            del self.theirs[key]
        return dropped

    def _remember_late(self, key: Key) -> None:
        self.late[key] = self.late.get(key, 0) + 1
        if len(self.late) > self.max_late:
            self.late.popitem(last=False)
