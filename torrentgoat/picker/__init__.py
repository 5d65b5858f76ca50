"""Piece picking (level L2, pure): which blocks to request from which peer, and how many.

See :mod:`torrentgoat.picker.picker` for the rules, :mod:`torrentgoat.picker.strategy` for the
strategy Protocol and registry, :mod:`torrentgoat.picker.request_queue` for per-peer queue sizing and
snub detection.
"""

from torrentgoat.picker.config import PickerConfig
from torrentgoat.picker.layout import (
    MAX_PRIORITY,
    FileSpan,
    PieceLayout,
    SpanLike,
    file_priorities_to_piece_priorities,
    parse_select_only,
    select_only_priorities,
)
from torrentgoat.picker.picker import BlockArrival, PeerKey, PiecePicker
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
    "FileSpan",
    "PeerKey",
    "PickerConfig",
    "PickerView",
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
