"""Piece picking (level L2, pure): which blocks to request from which peer, and how many.

See :mod:`torrentgoat.picker.picker` for the rules (its parts: :mod:`torrentgoat.picker.availability`,
who has what and the candidate pieces; :mod:`torrentgoat.picker.blocks`, partial pieces and request
outcomes), :mod:`torrentgoat.picker.strategy` for the strategy Protocol and registry,
:mod:`torrentgoat.picker.request_queue` for per-peer queue sizing and snub detection.  A driver (or a
simulator) uses it like this::

    >>> import random
    >>> from torrentgoat.bitfield import Bitfield
    >>> from torrentgoat.geometry import PieceGeometry
    >>> from torrentgoat.picker import PickerConfig, PiecePicker, RequestTracker
    >>> picker = PiecePicker(PieceGeometry(32768, 40000), rng=random.Random(1),
    ...                      config=PickerConfig(strategy="rarest-first"))
    >>> seed_have = Bitfield(picker.num_pieces, full=True)
    >>> picker.peer_joined("peer-A", seed_have)          # its bitfield (BEP 3) or have-all (BEP 6)
    >>> picker.interesting(seed_have)                    # -> send "interested"
    True
    >>> tracker = RequestTracker(now=0.0)                # once unchoked: fill the request queue
    >>> blocks = picker.pick("peer-A", seed_have, tracker.room(0.0), now=0.0)
    >>> tracker.requested(len(blocks), 0.0)
    >>> [(b.piece, b.begin, b.length) for b in blocks]
    [(0, 0, 16384), (0, 16384, 16384), (1, 0, 7232)]
    >>> for block in blocks:                             # "piece" messages arrive
    ...     tracker.received(block.length, 1.0)
    ...     arrival = picker.block_received("peer-A", block)
    ...     if arrival.piece_complete:                   # hash it, then:
    ...         picker.piece_verified(block.piece)
    >>> picker.is_complete
    True
"""

from torrentgoat.picker.config import PickerConfig
from torrentgoat.picker.layout import (
    MAX_PRIORITY,
    FileSpan,
    PieceGeometry,
    PieceLayout,
    SpanLike,
    file_priorities_to_piece_priorities,
    parse_select_only,
    select_only_priorities,
)
from torrentgoat.picker.picker import BlockArrival, BlocksArrival, PeerKey, PiecePicker
from torrentgoat.picker.request_queue import RateMeter, RequestQueueConfig, RequestTracker, queue_depth
from torrentgoat.picker.strategy import (
    PickerView,
    PieceStrategy,
    RandomStrategy,
    RarestFirst,
    Sequential,
    StrategyFactory,
    WindowedRarest,
    create_strategy,
    random_order,
    register_strategy,
    strategy_names,
)

__all__ = [
    "MAX_PRIORITY",
    "BlockArrival",
    "BlocksArrival",
    "FileSpan",
    "PeerKey",
    "PickerConfig",
    "PickerView",
    "PieceGeometry",
    "PieceLayout",
    "PiecePicker",
    "PieceStrategy",
    "RandomStrategy",
    "RarestFirst",
    "RateMeter",
    "RequestQueueConfig",
    "RequestTracker",
    "Sequential",
    "SpanLike",
    "StrategyFactory",
    "WindowedRarest",
    "create_strategy",
    "file_priorities_to_piece_priorities",
    "parse_select_only",
    "queue_depth",
    "random_order",
    "register_strategy",
    "select_only_priorities",
    "strategy_names",
]
