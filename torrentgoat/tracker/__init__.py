"""Tracker protocols, level L2 (pure, sans-IO): HTTP (BEP 3/23/7/48), UDP (BEP 15/41), tiers (BEP 12).

The asyncio driver lives in :mod:`torrentgoat.aio.tracker`; a loopback tracker server for tests
in :mod:`torrentgoat.testing.tracker`.
"""

from torrentgoat.tracker.messages import (
    MAX_BODY_SIZE,
    MAX_PEERS,
    AnnounceEvent,
    AnnounceRequest,
    AnnounceResponse,
    ScrapeResponse,
    ScrapeStats,
    TrackerFailure,
)
from torrentgoat.tracker.tiers import AnnounceAttempt, AnnounceConfig, AnnounceScheduler, TierList
from torrentgoat.tracker.udp_client import (
    Announced,
    Failed,
    Scraped,
    UDPTrackerClient,
    UDPTrackerConfig,
)
from torrentgoat.tracker.urls import TrackerURL, parse_tracker_url, scrape_url

__all__ = [
    "MAX_BODY_SIZE",
    "MAX_PEERS",
    "AnnounceAttempt",
    "AnnounceConfig",
    "AnnounceEvent",
    "AnnounceRequest",
    "AnnounceResponse",
    "AnnounceScheduler",
    "Announced",
    "Failed",
    "ScrapeResponse",
    "ScrapeStats",
    "Scraped",
    "TierList",
    "TrackerFailure",
    "TrackerURL",
    "UDPTrackerClient",
    "UDPTrackerConfig",
    "parse_tracker_url",
    "scrape_url",
]
