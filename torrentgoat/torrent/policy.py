"""The torrent-level rules that decide how a torrent behaves in a swarm (level L5, pure: sans-IO).

The piece picker decides *which blocks* (:mod:`torrentgoat.picker`) and the choker *who gets our
upload* (:mod:`torrentgoat.choker`); this module holds the rules between them and the connections:
how many requests to keep in flight at a peer, which blocks go to which peer, when we are interested,
how to back off from a peer that rejects, when a peer is snubbed, which connection to evict for a
newcomer, which of two duplicate connections survives, and whether a newly interested peer is
unchoked at once.  Nothing here awaits, reads a clock or draws a random number: ``now`` and the
state are passed in.  The client (:mod:`torrentgoat.torrent`) and the strategy lab
(``benchmarks/strategies``) both call these functions, so the lab measures the client's own rules.

The per-peer memory of these rules is one small mutable record, :class:`RequestState`, owned by
whoever holds the peer (the torrent's :class:`~torrentgoat.torrent.wirepeer.WirePeer`, a simulated
connection).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Hashable, Iterable
from dataclasses import dataclass, field

from torrentgoat.bitfield import Bitfield
from torrentgoat.choker import ChokerConfig, PeerStats
from torrentgoat.picker import PiecePicker
from torrentgoat.primitives import BLOCK_SIZE, BlockRef, PeerAddress
from torrentgoat.torrent.config import TorrentConfig

__all__ = [
    "DEEP_PIPELINE",
    "REFILL_BATCH",
    "REFUSAL_MEMORY",
    "REFUSED_PIECES_CAP",
    "REJECT_STREAK_HOLD",
    "EvictionCandidate",
    "RequestState",
    "admits_at_once",
    "block_arrived",
    "check_snub",
    "choke_stats",
    "eviction_victim",
    "expire_refusals",
    "keeps_new_connection",
    "on_local_network",
    "pick_request_spans",
    "pick_requests",
    "queue_target",
    "refill_due",
    "request_budget",
    "request_rejected",
    "requestable_pieces",
    "wants_pieces",
]

REFUSAL_MEMORY = 60.0
"""Seconds a piece the peer rejected (BEP 6) is not asked of that peer again."""
REFUSED_PIECES_CAP = 4096
"""Most rejected pieces remembered per peer (bounds memory against a peer rejecting everything)."""
REJECT_STREAK_HOLD = 64
"""Rejects in a row (no block in between) after which we stop requesting from the peer for a while."""
MAX_HOLD = 30.0
"""Longest pause of requests to a peer that keeps rejecting (seconds)."""


# ---------------------------------------------------------------------------------------- requests


@dataclass(slots=True, kw_only=True)
class RequestState:
    """What the request rules remember of one peer between calls."""

    last_block_at: float
    """When the peer last sent us a block (the connection time until then)."""
    last_request_at: float | None = None
    """When we first had requests out at the peer (None: never asked it for anything)."""
    snubbed: bool = False
    """No block for ``snub_timeout`` seconds while we waited: its requests go to others (libtorrent)."""
    reject_streak: int = 0
    """Requests the peer rejected (BEP 6) since it last sent a block."""
    refused: dict[int, float] = field(default_factory=dict)
    """Pieces the peer rejected while unchoking us, and when: not asked again for a while."""
    hold_until: float = 0.0
    """No new requests to this peer before this time (after a long streak of rejects)."""


def queue_target(config: TorrentConfig, rate: float, *, unit: int = BLOCK_SIZE) -> int:
    """Requests to keep in flight at a peer sending ``rate`` bytes/s: ``queue_time`` seconds of its
    rate (libtorrent's ``request_queue_time``), clamped to ``[min_queue, max_queue]`` blocks.

    ``unit`` is the size of one request in bytes (16 KiB blocks in the client, BEP 3; a simulator
    moving whole chunks passes its chunk size): the clamp stays in blocks' worth of bytes, and the
    target is at least one request."""
    target = int(rate * config.queue_time / unit)
    low = max(1, config.min_queue * BLOCK_SIZE // unit)
    high = max(low, config.max_queue * BLOCK_SIZE // unit)
    return max(low, min(high, target))


def request_budget(
    state: RequestState,
    config: TorrentConfig,
    *,
    rate: float,
    outstanding: int,
    limit: int,
    now: float,
    unit: int = BLOCK_SIZE,
) -> int:
    """How many new requests to send the peer now (0 or less: none).

    ``outstanding`` requests are in flight; ``limit`` caps them (the peer's BEP 10 ``reqq``).  A
    snubbed peer, or one we hold off after a streak of rejects, gets nothing."""
    if state.snubbed or now < state.hold_until:
        return 0
    return min(queue_target(config, rate, unit=unit), limit) - outstanding


REFILL_BATCH = 64
"""Blocks (1 MiB) that come back before a deep pipeline is topped up again."""
DEEP_PIPELINE = 256
"""Requests in flight (4 MiB) from which the pipeline is topped up by :data:`REFILL_BATCH` blocks."""


def refill_due(received_since: int, outstanding: int) -> bool:
    """Top the peer's pipeline up after this socket read?  Always while fewer than
    :data:`DEEP_PIPELINE` requests are in flight; from there only once :data:`REFILL_BATCH` blocks came
    back since the last refill: picking and encoding 64 requests at once costs far less than four
    refills of 16 (a socket read holds ~16 blocks), and a pipeline that deep never runs dry for it."""
    return outstanding < DEEP_PIPELINE or received_since >= REFILL_BATCH


def requestable_pieces(
    peer_have: Bitfield,
    *,
    choked: bool,
    allowed_fast: Collection[int] = (),
    refused: Collection[int] = (),
) -> Bitfield:
    """The pieces we may ask the peer for now: all it has, or while it chokes us only its BEP 6
    allowed-fast pieces; never those it recently rejected.  Returns ``peer_have`` itself when
    nothing is excluded (no copy on the hot path)."""
    have = peer_have
    if choked:
        have = Bitfield.from_indices(have.length, (i for i in allowed_fast if i in have))
    if refused:
        if have is peer_have:
            have = have.copy()
        for index in refused:
            have.discard(index)
    return have


def pick_requests(
    picker: PiecePicker,
    key: Hashable,
    pieces: Bitfield,
    count: int,
    *,
    now: float,
    cancellable: bool = True,
) -> list[BlockRef]:
    """Up to ``count`` blocks to request from peer ``key`` among ``pieces`` (recorded in the picker).

    A peer whose requests cannot be cancelled (a BEP 19 web seed: an HTTP range, once asked, is
    fetched whole) takes, in endgame, no block that is already in flight elsewhere: it would only
    duplicate a peer's work.  Such blocks go back to the picker at once."""
    picked = picker.pick(key, pieces, count, now=now)
    if cancellable or not picked or not picker.in_endgame:
        return picked
    mine = []
    for block in picked:
        if picker.requesters(block) - {key}:
            picker.request_cancelled(key, block)
        else:
            mine.append(block)
    return mine


def pick_request_spans(
    picker: PiecePicker, key: Hashable, pieces: Bitfield, count: int, *, now: float
) -> list[tuple[int, int, int]]:
    """:func:`pick_requests` for a peer whose requests can be cancelled (a wire connection), the
    blocks as ``(index, begin, length)`` tuples: the download hot path."""
    return picker.pick_spans(key, pieces, count, now=now)


def wants_pieces(picker: PiecePicker | None, peer_have: Bitfield | None) -> bool:
    """BEP 3 ``interested``: the peer has a piece we still want."""
    return (
        picker is not None
        and peer_have is not None
        and not picker.is_complete
        and picker.interesting(peer_have)
    )


def block_arrived(state: RequestState, now: float) -> None:
    """The peer sent a block: it is neither snubbed nor rejecting any more."""
    state.last_block_at = now
    state.snubbed = False
    state.reject_streak = 0


def request_rejected(state: RequestState, index: int, *, peer_choking: bool, now: float) -> None:
    """BEP 6 ``reject request``.  Rejects right after a choke only echo the choke; otherwise the piece
    is not asked of this peer again for :data:`REFUSAL_MEMORY` seconds (other pieces are fine), and a
    peer that refuses everything is left alone for a while (no request storm)."""
    if not peer_choking and len(state.refused) < REFUSED_PIECES_CAP:
        state.refused[index] = now
    state.reject_streak += 1
    if state.reject_streak > REJECT_STREAK_HOLD:
        state.hold_until = now + min(MAX_HOLD, 2.0 ** min(5, state.reject_streak // REJECT_STREAK_HOLD))


def expire_refusals(state: RequestState, now: float) -> None:
    """Forget rejects older than :data:`REFUSAL_MEMORY` seconds."""
    if state.refused:
        for index in [i for i, at in state.refused.items() if now - at > REFUSAL_MEMORY]:
            del state.refused[index]


def check_snub(state: RequestState, config: TorrentConfig, *, outstanding: int, now: float) -> bool:
    """Whether the peer becomes snubbed now: requests are out and no block came for ``snub_timeout``
    seconds since the later of its last block and our first request (libtorrent's snub rule)."""
    if not outstanding or state.snubbed:
        return False
    if now - max(state.last_block_at, state.last_request_at or 0.0) > config.snub_timeout:
        state.snubbed = True
        return True
    return False


# ---------------------------------------------------------------------------------------- connections


@dataclass(frozen=True, slots=True, kw_only=True)
class EvictionCandidate:
    """What eviction looks at for one connection."""

    key: Hashable
    snubbed: bool
    am_interested: bool
    peer_interested: bool
    peer_choking: bool
    last_block_at: float
    connected_at: float


def _uselessness(peer: EvictionCandidate, now: float) -> int:
    if peer.snubbed:
        return 3
    if not peer.peer_interested and not peer.am_interested:
        return 2
    if peer.peer_choking and not peer.peer_interested and now - peer.last_block_at > 60.0:
        return 1
    return 0


def eviction_victim(peers: Iterable[EvictionCandidate], now: float, *, grace: float = 2.0) -> Hashable | None:
    """The connection to close to make room for a newcomer, or None (libtorrent does the same): a
    snubbed peer first, else one where neither side is interested, else one that has choked us for a
    minute while we wanted its pieces and wants nothing of ours; among equals, the one that sent
    nothing for longest.  Connections younger than ``grace`` seconds are left alone."""
    best: tuple[int, float] | None = None
    victim: Hashable | None = None
    for peer in peers:
        if now - peer.connected_at <= grace:
            continue
        score = _uselessness(peer, now)
        if not score:
            continue
        rank = (score, -max(peer.last_block_at, peer.connected_at))
        if best is None or rank > best:
            best, victim = rank, peer.key
    return victim


def keeps_new_connection(*, ours: bytes, theirs: bytes, new_outgoing: bool, old_outgoing: bool) -> bool:
    """Two connections to one remote peer id (both dialled at the same moment): whether the new one
    survives.  Both sides must drop the *same* connection, so the rule depends only on the two peer
    ids: keep the connection initiated by the greater peer id (libtorrent's rule,
    ``bt_peer_connection.cpp``, so both clients agree); an exact tie keeps the older one."""
    initiator_new = ours if new_outgoing else theirs
    initiator_old = ours if old_outgoing else theirs
    return initiator_new > initiator_old


# ---------------------------------------------------------------------------------------- choking


def choke_stats(
    key: Hashable,
    *,
    interested: bool,
    download_rate: float,
    upload_rate: float,
    have: Bitfield | None,
    has_all: bool = False,
    snubbed: bool = False,
    connected_at: float,
    unchoked_since: float | None,
    last_unchoked: float | None,
    local: bool = False,
) -> PeerStats:
    """What the choker sees of one peer: its rates, interest and how much of the torrent it holds
    (a seed -- ``have all`` or a full have-set -- never needs our upload)."""
    return PeerStats(
        key=key,
        interested=interested,
        download_rate=download_rate,
        upload_rate=upload_rate,
        snubbed=snubbed,
        is_seed=has_all or (have is not None and have.complete),
        connected_at=connected_at,
        unchoked_since=unchoked_since,
        last_unchoked=last_unchoked,
        progress=have.count / have.length if have is not None and have.length else 0.0,
        local=local,
    )


def on_local_network(address: PeerAddress | None) -> bool:
    """Loopback, private or link-local: the peer is on our LAN (:attr:`ChokerConfig.unchoke_local`)."""
    if address is None:
        return False
    try:
        ip = ipaddress.ip_address(address.host)
    except ValueError:
        return False
    return ip.is_loopback or ip.is_private or ip.is_link_local


def admits_at_once(*, regular_unchoked: int, config: ChokerConfig) -> bool:
    """A peer that becomes interested while a regular upload slot is free is unchoked at once, so a
    new leecher does not wait up to ``rechoke_interval`` seconds for its first block; otherwise it
    waits for the next choker round.  (A peer that loses interest while unchoked triggers a round at
    once, so its slot goes to someone else.)"""
    return regular_unchoked < config.upload_slots
