"""Blame only the peers whose blocks were wrong (level L5 helper, no I/O): libtorrent's "smart ban".

When a piece built from several peers' blocks fails its SHA-1 check (BEP 3), we cannot tell which
block was bad.  Striking every contributor lets a few sybils, each poisoning one block, get an honest
seed banned.  Instead, the digest of every block of the failed piece is remembered with who sent it;
once the piece passes (fetched again), each remembered block is compared with the verified data and
only the senders of blocks that differ are blamed.  Memory is bounded: at most ``max_pieces`` failed
pieces are remembered, 20 bytes per block.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass

from torrentgoat.primitives import BLOCK_SIZE, PeerAddress

__all__ = ["BlockWitness", "SmartBan"]


@dataclass(frozen=True, slots=True)
class BlockWitness:
    """Who sent one block of a failed piece, and the digest of what they sent."""

    key: Hashable
    address: PeerAddress | None
    digest: bytes


class SmartBan:
    """Remember failed pieces block by block; name the culprits once the piece verifies."""

    def __init__(self, *, max_pieces: int = 64) -> None:
        self.max_pieces = max_pieces
        self._failed: OrderedDict[int, dict[int, BlockWitness]] = OrderedDict()

    @staticmethod
    def _digest(data: memoryview, block: int) -> bytes:
        return hashlib.sha1(data[block * BLOCK_SIZE : (block + 1) * BLOCK_SIZE]).digest()

    def piece_failed(
        self,
        index: int,
        data: bytes | bytearray | memoryview,
        senders: dict[int, tuple[Hashable, PeerAddress | None]],
    ) -> None:
        """Piece ``index`` (its bytes: ``data``) failed; ``senders`` maps block index -> (key, address).

        A block already remembered from an earlier failure keeps its first witness unless the same
        peer sent it again (so a repeat offender's digest is the one compared)."""
        view = memoryview(data)
        record = self._failed.pop(index, {})
        for block, (key, address) in senders.items():
            record[block] = BlockWitness(key=key, address=address, digest=self._digest(view, block))
        self._failed[index] = record
        while len(self._failed) > self.max_pieces:
            self._failed.popitem(last=False)

    def piece_passed(self, index: int, data: bytes | bytearray | memoryview) -> list[BlockWitness]:
        """Piece ``index`` verified with ``data``: the witnesses whose block differed from it."""
        record = self._failed.pop(index, None)
        if not record:
            return []
        view = memoryview(data)
        return [w for block, w in sorted(record.items()) if w.digest != self._digest(view, block)]

    def __len__(self) -> int:
        return len(self._failed)
