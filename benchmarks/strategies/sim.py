"""Discrete-event swarm simulator driving the client's own picker, choker and torrent policy.

Every request decision is made by :class:`torrentgoat.picker.PiecePicker` (one per peer, with the
strategy taken from the registry by name) and every unchoke by :class:`torrentgoat.choker.Choker`
(one per peer, a round every 10 s with the 30 s optimistic rotation); the torrent-level rules between
them -- how many requests to keep in flight (``queue_time`` seconds of the connection's rate, clamped),
which blocks to ask for, interest, the immediate unchoke of a newly interested peer, the choker's view
of a peer -- are the client's pure :mod:`torrentgoat.torrent.policy`, with the client's
:class:`~torrentgoat.torrent.TorrentConfig`.  The simulator keeps only its clock, its bandwidth model
and its peers.

Granularity: *flow-level transfers per chunk*.  The picker runs on a scaled layout in which one picker
block stands for one chunk of ``piece_size / sub_blocks`` real bytes (``sub_blocks=1``: a whole piece per
request).  A chunk is one flow whose rate is recomputed whenever a flow starts or ends at either end
(``fair``: receivers, then senders water-fill their capacity among their flows, close to max-min
fairness; ``equal``: ``min(upload / sender's flows, download / receiver's flows)``), locally: an event
touches the flows of the two peers and of their direct partners.  ``block_received`` /
``piece_verified`` are called at flow end, ``have`` goes to every neighbour at once.  Per 16 KiB block
the simulator would need 1024 picker calls per 16 MiB piece and per peer -- a 50 GiB shard across 200
peers would be 6.5e8 calls; per piece it is 6.4e5 flows.

Seeds may super-seed (BEP 16) with the client's own :class:`torrentgoat.superseed.SuperSeeder`.

Requests are pipelined (the client's queue target, in chunks; or a fixed ``pipeline``): the sender
serves its queue for one receiver in order, the first byte of a request arrives one round trip after
it was sent.  A choke drops
queued requests (BEP 3) but lets the chunk in flight finish (with 16 KiB blocks a choked peer keeps the
blocks it already has).  As in the client's :mod:`torrentgoat.torrent.choking`, a peer that becomes
interested while a regular slot is free is unchoked at once; otherwise it waits for the next round.
"""

from __future__ import annotations

import heapq
import random
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from torrentgoat.bitfield import Bitfield
from torrentgoat.choker import Choker, ChokerConfig
from torrentgoat.geometry import PieceGeometry
from torrentgoat.picker import PickerConfig, PiecePicker
from torrentgoat.primitives import BLOCK_SIZE, BlockRef
from torrentgoat.rates import RateMeter
from torrentgoat.superseed import SuperSeeder
from torrentgoat.torrent import TorrentConfig
from torrentgoat.torrent.policy import (
    RequestState,
    admits_at_once,
    block_arrived,
    choke_stats,
    pick_requests,
    request_budget,
    wants_pieces,
)
from torrentgoat.wire.connection import WireConfig

__all__ = ["PeerResult", "PeerSpec", "SimConfig", "SimResult", "Simulator", "fluid_bound", "simulate"]


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerSpec:
    """One simulated peer."""

    upload: float
    """Upload capacity, bytes/s."""

    download: float
    """Download capacity, bytes/s."""

    latency: float = 0.02
    """One-way latency to the network core, seconds (round trip between a and b: 2 * (lat_a + lat_b))."""

    join: float = 0.0
    """Virtual time the peer joins."""

    seed: bool = False
    """Starts with every piece."""

    leave_at: float | None = None
    """Leaves the swarm at this time (None: stays)."""

    linger: float | None = None
    """Leaves this many seconds after completing (None: stays and seeds)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SimConfig:
    """What is being measured."""

    size: int
    """Bytes of the shard."""

    piece_size: int = 16 * 1024 * 1024
    strategy: str = "rarest-first"
    endgame: bool = True
    seed: int = 1
    sub_blocks: int = 1
    """Picker blocks (flows) per piece; 1 = per-piece flows."""

    pipeline: int | None = None
    """Chunks requested ahead per connection; None: the client's adaptive queue
    (:func:`torrentgoat.torrent.policy.queue_target`: ``queue_time`` seconds of the connection's rate,
    within ``[min_queue, max_queue]`` blocks, capped by the peer's ``reqq``)."""

    upload_slots: int = 4
    degree: int = 25
    """Peers each joiner connects to (like a tracker's numwant), refilled when neighbours leave."""

    max_time: float = 7 * 86400.0
    stall_time: float = 600.0
    """Stop when nothing moved for this long (e.g. a piece was lost when the seed left)."""

    window_pieces: int = 64

    super_seed: bool = False
    """Seeds super-seed (BEP 16) with the client's :class:`torrentgoat.superseed.SuperSeeder`: each
    neighbour sees only the pieces revealed to it, ``super_seed_per_peer`` at a time, until every piece is
    held by a leecher; then the seed announces the rest and seeds normally."""

    super_seed_per_peer: int = 2

    optimistic_mode: str = "random"
    """The choker's optimistic unchoke: ``random`` (BEP 3) or ``least-progress`` (every round, the
    interested peer holding the fewest pieces; :attr:`torrentgoat.choker.ChokerConfig.optimistic_mode`)."""

    bandwidth: str = "fair"
    """``fair``: water-filling at both ends of every flow (work-conserving, close to max-min fairness);
    ``equal``: ``min(upload / sender's flows, download / receiver's flows)`` (cheaper, pessimistic)."""


@dataclass(slots=True)
class PeerResult:
    name: int
    seed: bool
    join: float
    done: float | None
    uploaded: float
    downloaded: int
    duplicate: float


@dataclass(slots=True)
class SimResult:
    config: SimConfig
    peers: list[PeerResult]
    bound: float
    seed_upload: float
    duplicate_bytes: float
    aborted_bytes: float
    copy_time: float | None
    """Virtual time at which the leechers present first held a full copy between them."""

    end_time: float
    wall: float
    flows: int
    availability: list[tuple[float, float]] = field(default_factory=list)
    """(time, distributed copies among leechers) samples."""

    @property
    def completion_times(self) -> list[float]:
        return [p.done - p.join for p in self.peers if not p.seed and p.done is not None]

    @property
    def incomplete(self) -> int:
        return sum(1 for p in self.peers if not p.seed and p.done is None)


def fluid_bound(
    size: float, seed_upload: float, uploads: Sequence[float], downloads: Sequence[float]
) -> float:
    """Kumar & Ross (2006) minimum distribution time of ``size`` bytes from seeds with total upload
    ``seed_upload`` to leechers with ``uploads``/``downloads``:
    T* = max(F/u_s, F/min d_i, N F / (u_s + sum u_i))."""
    n = len(uploads)
    if n == 0:
        return 0.0
    return max(size / seed_upload, size / min(downloads), n * size / (seed_upload + sum(uploads)))


def _water_fill(capacity: float, caps: dict[_Flow, float]) -> dict[_Flow, float]:
    """Max-min fair split of ``capacity`` among flows with individual caps."""
    out: dict[_Flow, float] = {}
    left = capacity
    k = len(caps)
    for f, cap in sorted(caps.items(), key=lambda kv: kv[1]):
        share = left / k
        give = cap if cap < share else share
        out[f] = give
        left -= give
        k -= 1
    return out


class _Flow:
    __slots__ = ("block", "conn", "rate", "remaining", "size", "t_last", "version")

    def __init__(self, conn: _Conn, block: BlockRef, size: int, now: float) -> None:
        self.conn = conn
        self.block = block
        self.size = size
        self.remaining = float(size)
        self.rate = 0.0
        self.t_last = now
        self.version = 0


class _Conn:
    """Directed connection: ``up`` sends to ``down``."""

    __slots__ = (
        "active",
        "connected_at",
        "delivered",
        "down",
        "interested",
        "last_unchoked",
        "meter",
        "queue",
        "requests",
        "rtt",
        "shown",
        "start_pending",
        "starved",
        "unchoked_since",
        "up",
    )

    def __init__(self, up: _Peer, down: _Peer, now: float) -> None:
        self.up = up
        self.down = down
        self.interested = False  # down wants something up has
        self.unchoked_since: float | None = None
        self.last_unchoked: float | None = None
        self.connected_at = now
        self.queue: deque[tuple[BlockRef, float]] = deque()  # (block, ready time)
        self.active: _Flow | None = None
        self.delivered = 0.0
        self.start_pending = False
        self.starved = False
        self.rtt = 2 * (up.spec.latency + down.spec.latency)
        self.shown: Bitfield | None = None  # a super-seeding sender's pieces revealed to ``down``
        self.meter = RateMeter(time_constant=5.0)  # what ``down`` receives on this connection
        self.requests = RequestState(last_block_at=now)  # the request rules' memory (client's policy)

    def offered(self) -> Bitfield:
        """What ``down`` believes ``up`` has."""
        if self.shown is not None:
            return self.shown
        assert self.up.have is not None
        return self.up.have

    def transferred(self, now: float) -> float:
        f = self.active
        return self.delivered + (f.rate * (now - f.t_last) if f is not None else 0.0)


class _Peer:
    __slots__ = (
        "choker",
        "done",
        "downloaded",
        "duplicate",
        "flows_down",
        "flows_up",
        "have",
        "idx",
        "last_rechoke",
        "picker",
        "present",
        "rechoke_again",
        "rechoking",
        "snap_down",
        "snap_up",
        "spec",
        "superseed",
        "tdown",
        "tup",
        "uploaded",
    )

    def __init__(self, idx: int, spec: PeerSpec) -> None:
        self.idx = idx
        self.spec = spec
        self.present = False
        self.done: float | None = None
        self.picker: PiecePicker | None = None
        self.have: Bitfield | None = None
        self.choker: Choker | None = None
        self.superseed: SuperSeeder | None = None
        self.tup: dict[int, _Conn] = {}  # neighbour -> conn self->neighbour
        self.tdown: dict[int, _Conn] = {}  # neighbour -> conn neighbour->self
        self.flows_up: dict[_Flow, None] = {}
        self.flows_down: dict[_Flow, None] = {}
        self.uploaded = 0.0
        self.downloaded = 0
        self.duplicate = 0.0
        self.last_rechoke = 0.0
        self.rechoking = False
        self.rechoke_again = False
        self.snap_up: dict[int, float] = {}
        self.snap_down: dict[int, float] = {}


_JOIN, _LEAVE, _RECHOKE, _START, _DONE, _SAMPLE = range(6)


class Simulator:
    """One run.  ``Simulator(config, specs).run()`` -> :class:`SimResult`."""

    def __init__(self, config: SimConfig, specs: Sequence[PeerSpec]) -> None:
        self.cfg = config
        self.rng = random.Random(config.seed)
        ps = config.piece_size
        self.num_pieces = max(1, -(-config.size // ps))
        self.last_piece = config.size - (self.num_pieces - 1) * ps
        m = config.sub_blocks
        if m < 1 or ps % m:
            raise ValueError("sub_blocks must divide the piece size")
        self.layout = PieceGeometry.uniform(self.num_pieces, m * BLOCK_SIZE)
        self.unit = ps // m
        """Bytes one request (one chunk) stands for."""
        self.client = TorrentConfig(
            picker=PickerConfig(
                strategy=config.strategy, endgame=config.endgame, window_pieces=config.window_pieces
            ),
            choker=ChokerConfig(
                upload_slots=config.upload_slots,
                optimistic_mode="least-progress" if config.optimistic_mode == "least-progress" else "random",
            ),
        )
        """The client's configuration for this run: its piece, choke and request rules."""
        if config.pipeline is not None:  # a fixed pipeline, as a clamp of the client's queue
            depth = max(1, -(-config.pipeline * self.unit // BLOCK_SIZE))
            self.client = replace(self.client, min_queue=depth, max_queue=depth)
        # the picker runs on a scaled layout: apply the partial-piece cap the client would for real pieces
        self.picker_config = replace(
            self.client.picker, max_partial_pieces=self.client.picker.partial_cap(ps)
        )
        self.choker_config = self.client.choker
        self.request_limit = max(1, WireConfig().max_peer_requests * BLOCK_SIZE // self.unit)
        """A torrentgoat peer's ``reqq`` (BEP 10), in chunks."""
        self.peers = [_Peer(i, s) for i, s in enumerate(specs)]
        self.heap: list[tuple[float, int, int, Any]] = []
        self.seq = 0
        self.now = 0.0
        self.flows = 0
        self.dup_bytes = 0.0
        self.aborted = 0.0
        self.copies = [0] * self.num_pieces
        self.covered = 0
        self.copy_time: float | None = None
        self.last_progress = 0.0
        self.pending_joins = 0
        self.remaining_leechers = sum(1 for s in specs if not s.seed)
        self.samples: list[tuple[float, float]] = []
        seeds = [s for s in specs if s.seed]
        leech = [s for s in specs if not s.seed]
        self.bound = (
            fluid_bound(
                config.size,
                sum(s.upload for s in seeds),
                [s.upload for s in leech],
                [s.download for s in leech],
            )
            if seeds and leech
            else 0.0
        )

    # ------------------------------------------------------------------ helpers

    def _push(self, t: float, kind: int, obj: Any) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (t, self.seq, kind, obj))

    def _chunk_bytes(self, block: BlockRef) -> int:
        m = self.cfg.sub_blocks
        real = self.last_piece if block.piece == self.num_pieces - 1 else self.cfg.piece_size
        b = block.begin // BLOCK_SIZE
        return real // m + (1 if b < real % m else 0)

    # ------------------------------------------------------------------ bandwidth

    def _settle(self, f: _Flow) -> None:
        dt = self.now - f.t_last
        if dt > 0 and f.rate > 0:
            moved = min(f.remaining, f.rate * dt)
            f.remaining -= moved
            f.conn.delivered += moved
        f.t_last = self.now

    def _reshare(self, u: _Peer, d: _Peer) -> None:
        """Rates after a flow from ``u`` to ``d`` started or ended."""
        if self.cfg.bandwidth == "equal":
            flows: dict[_Flow, None] = {}
            for p in (u, d):
                flows.update(p.flows_up)
                flows.update(p.flows_down)
            for f in flows:
                up, down = f.conn.up, f.conn.down
                self._set_rate(
                    f, min(up.spec.upload / len(up.flows_up), down.spec.download / len(down.flows_down))
                )
            return
        # "fair": each receiver water-fills its download among its flows, each capped by what the
        # sender can offer it (an equal share of its upload, or the upload its other flows leave
        # unused at their current rates, whichever is more); each sender then water-fills its upload
        # among its flows, each capped by what the receiver's fill gave it; the flow gets the sender's
        # fill.  A receiver with few senders thus takes more than an equal share from each, and a
        # sender whose other receivers are saturated gives its spare upload to the rest: close to the
        # max-min fair rates TCP converges to, yet local.  The change of u's and d's flow counts moves
        # the caps one hop further: the senders feeding d and the receivers fed by u re-fill too.
        senders: dict[_Peer, None] = {u: None}
        for f in d.flows_down:
            senders[f.conn.up] = None
        for f in u.flows_up:
            for g in f.conn.down.flows_down:
                senders[g.conn.up] = None
        down_fill: dict[_Peer, dict[_Flow, float]] = {}

        used: dict[_Peer, float] = {}

        def offer(g: _Flow) -> float:
            """What ``g``'s sender can give it: an equal share, or more if its other flows leave more."""
            x = g.conn.up
            u = used.get(x)
            if u is None:
                u = used[x] = sum(h.rate for h in x.flows_up)
            equal = x.spec.upload / len(x.flows_up)
            spare = x.spec.upload - u + g.rate
            return spare if spare > equal else equal

        def receiver_fill(y: _Peer) -> dict[_Flow, float]:
            b = down_fill.get(y)
            if b is None:
                b = down_fill[y] = _water_fill(y.spec.download, {g: offer(g) for g in y.flows_down})
            return b

        for x in senders:
            caps = {g: receiver_fill(g.conn.down)[g] for g in x.flows_up}
            for g, rate in _water_fill(x.spec.upload, caps).items():
                self._set_rate(g, rate)

    def _set_rate(self, f: _Flow, rate: float) -> None:
        if rate != f.rate:
            self._settle(f)
            f.rate = rate
            f.version += 1
            self._push(self.now + f.remaining / rate, _DONE, (f, f.version))

    # ------------------------------------------------------------------ requests

    def _fill(self, c: _Conn) -> None:
        d = c.down
        if c.unchoked_since is None or not c.interested or d.done is not None:
            return
        now = self.now
        room = request_budget(
            c.requests,
            self.client,
            rate=c.meter.rate(now),
            outstanding=len(c.queue) + (c.active is not None),
            limit=self.request_limit,
            now=now,
            unit=self.unit,
        )
        if room <= 0:
            return
        assert d.picker is not None
        picker = d.picker
        offer = c.offered()
        blocks = pick_requests(picker, c.up.idx, offer, room, now=now)
        if blocks:
            c.starved = False
            ready = self.now + c.rtt
            c.queue.extend((b, ready) for b in blocks)
            self._start_next(c)
            return
        # Nothing to ask for now.  Unless the cap on partial pieces was the reason, retrying after our
        # own completions is pointless (the bucket walk is the picker's costliest path): wait for a
        # ``have`` from the sender, a release of our requests, or endgame.
        c.starved = len(picker.partial_pieces) < picker.partial_cap
        if not c.queue and c.active is None and not wants_pieces(picker, offer):
            self._lost_interest(c)

    def _lost_interest(self, c: _Conn) -> None:
        """``not interested``: as the client does, a sender that had the peer unchoked runs a choker
        round at once to give the slot away."""
        c.interested = False
        if c.unchoked_since is not None:
            self._rechoke(c.up, scheduled=False)

    def _fill_all(self, d: _Peer, *, force: bool = False) -> None:
        if not force and d.picker is not None and d.picker.in_endgame:
            force = True
        for c in list(d.tdown.values()):
            if c.unchoked_since is not None and (force or not c.starved):
                self._fill(c)

    def _start_next(self, c: _Conn) -> None:
        if c.active is not None or not c.queue or c.start_pending:
            return
        block, ready = c.queue[0]
        if ready > self.now:
            c.start_pending = True
            self._push(ready, _START, c)
            return
        c.queue.popleft()
        f = _Flow(c, block, self._chunk_bytes(block), self.now)
        c.active = f
        c.up.flows_up[f] = None
        c.down.flows_down[f] = None
        self.flows += 1
        self._reshare(c.up, c.down)

    def _stop_flow(self, f: _Flow) -> None:
        c = f.conn
        c.active = None
        del c.up.flows_up[f]
        del c.down.flows_down[f]
        f.version += 1
        self._reshare(c.up, c.down)

    # ------------------------------------------------------------------ choking

    def _unchoke(self, c: _Conn) -> None:
        c.unchoked_since = self.now
        c.last_unchoked = self.now
        self._fill(c)

    def _choke(self, c: _Conn) -> None:
        c.unchoked_since = None
        d = c.down
        if c.queue and d.picker is not None:
            for block, _ in c.queue:
                d.picker.request_cancelled(c.up.idx, block)
            c.queue.clear()
            self._fill_all(d, force=True)

    def _became_interested(self, c: _Conn) -> None:
        c.interested = True
        if c.unchoked_since is not None:
            self._fill(c)
            return
        u = c.up
        assert u.choker is not None
        opt = u.choker.optimistic
        regular = sum(1 for o in u.tup.values() if o.unchoked_since is not None and o.down.idx != opt)
        if admits_at_once(regular_unchoked=regular, config=self.choker_config):
            self._unchoke(c)

    def _rechoke(self, u: _Peer, *, scheduled: bool) -> None:
        """A choker round of ``u``: every 10 s (``scheduled``), or when an unchoked peer lost interest."""
        if scheduled:
            self._push(self.now + self.choker_config.rechoke_interval, _RECHOKE, u)
        if u.rechoking:
            u.rechoke_again = True
            return
        u.rechoking = True
        try:
            self._rechoke_round(u, scheduled)
            while u.rechoke_again:
                u.rechoke_again = False
                self._rechoke_round(u, False)
        finally:
            u.rechoking = False

    def _rechoke_round(self, u: _Peer, scheduled: bool) -> None:
        now = self.now
        assert u.choker is not None and u.picker is not None
        if scheduled and u.done is None:  # refresh our interest in each neighbour
            for c in list(u.tdown.values()):
                if c.interested and not c.queue and c.active is None:
                    if not wants_pieces(u.picker, c.offered()):
                        self._lost_interest(c)
        dt = max(1e-9, now - u.last_rechoke)
        stats = []
        for n, c in u.tup.items():
            sent = c.transferred(now)
            got = u.tdown[n].transferred(now)
            stats.append(
                choke_stats(
                    n,
                    interested=c.interested,
                    upload_rate=(sent - u.snap_up.get(n, 0.0)) / dt,
                    download_rate=(got - u.snap_down.get(n, 0.0)) / dt,
                    have=c.down.have,
                    connected_at=c.connected_at,
                    unchoked_since=c.unchoked_since,
                    last_unchoked=c.last_unchoked,
                )
            )
            if scheduled:
                u.snap_up[n] = sent
                u.snap_down[n] = got
        if scheduled:
            u.last_rechoke = now
        decision = u.choker.rechoke(stats, seeding=u.done is not None, now=now, rng=self.rng)
        for n, c in list(u.tup.items()):
            want = n in decision.unchoke
            if want and c.unchoked_since is None:
                self._unchoke(c)
            elif not want and c.unchoked_since is not None:
                self._choke(c)

    # ------------------------------------------------------------------ membership

    def _connect(self, a: _Peer, b: _Peer) -> None:
        now = self.now
        ab, ba = _Conn(a, b, now), _Conn(b, a, now)
        a.tup[b.idx] = ab
        b.tdown[a.idx] = ab
        b.tup[a.idx] = ba
        a.tdown[b.idx] = ba
        assert a.picker is not None and b.picker is not None and a.have is not None and b.have is not None
        for c in (ab, ba):
            if c.up.superseed is not None:
                c.shown = Bitfield(self.num_pieces)  # BEP 16: "masquerades as a client with no data"
        a.picker.peer_joined(b.idx, ba.offered())
        b.picker.peer_joined(a.idx, ab.offered())
        if wants_pieces(b.picker, ab.offered()):
            self._became_interested(ab)
        if wants_pieces(a.picker, ba.offered()):
            self._became_interested(ba)
        for c in (ab, ba):
            ss = c.up.superseed
            if ss is not None:
                assert c.down.have is not None
                self._reveal(c, ss.peer_joined(c.down.idx, c.down.have))
                self._superseed_check(c.up)

    def _reveal(self, c: _Conn, pieces: list[int]) -> None:
        """A super-seeding sender announces ``pieces`` to ``c.down`` (``have``)."""
        d = c.down
        assert c.shown is not None and d.picker is not None and d.have is not None
        for piece in pieces:
            c.shown.add(piece)
            if d.done is not None:
                continue
            d.picker.peer_have(c.up.idx, piece)
            if piece not in d.have:
                c.starved = False
                if not c.interested:
                    self._became_interested(c)
                elif c.unchoked_since is not None and c.active is None and not c.queue:
                    self._fill(c)

    def _superseed_check(self, s: _Peer) -> None:
        """Leave super-seeding once every piece is held by a leecher: announce the rest, seed normally."""
        ss = s.superseed
        if ss is None or not ss.distributed:
            return
        s.superseed = None
        rest = ss.finish()
        for n, c in list(s.tup.items()):
            pieces = rest.get(n, [])
            self._reveal(c, pieces)
            c.shown = None

    def _join(self, p: _Peer) -> None:
        self.pending_joins -= 1
        p.present = True
        full = p.spec.seed
        p.have = Bitfield(self.num_pieces, full=full)
        p.picker = PiecePicker(
            self.layout, rng=random.Random(self.rng.random()), config=self.picker_config, have=p.have
        )
        p.have = p.picker.have
        p.choker = Choker(self.choker_config)
        if full and self.cfg.super_seed:
            p.superseed = SuperSeeder(
                self.num_pieces, per_peer=self.cfg.super_seed_per_peer, rng=random.Random(self.rng.random())
            )
        p.last_rechoke = self.now
        if full:
            p.done = self.now
        present = [q for q in self.peers if q.present and q is not p]
        k = min(self.cfg.degree, len(present))
        for q in self.rng.sample(present, k):
            self._connect(p, q)
        self._push(self.now + self.rng.random() * self.choker_config.rechoke_interval, _RECHOKE, p)
        if p.spec.leave_at is not None:
            self._push(p.spec.leave_at, _LEAVE, p)

    def _leave(self, p: _Peer) -> None:
        if not p.present:
            return
        p.present = False
        if p.done is None:
            self.remaining_leechers -= 1  # gave up: counted as incomplete
        if not p.spec.seed and p.have is not None:
            for i in p.have:
                self._uncopy(i)
        touched: list[_Peer] = []
        for n in list(p.tup):
            c_out, c_in = p.tup.pop(n), p.tdown.pop(n)
            q = c_out.down
            for c in (c_out, c_in):
                if c.active is not None:
                    f = c.active
                    self._settle(f)
                    self.aborted += f.size - f.remaining
                    self._stop_flow(f)
                c.queue.clear()
            del q.tdown[p.idx]
            del q.tup[p.idx]
            q.snap_up.pop(p.idx, None)
            q.snap_down.pop(p.idx, None)
            if q.superseed is not None:
                q.superseed.peer_left(p.idx)
            assert q.picker is not None
            q.picker.peer_left(p.idx)
            touched.append(q)
        for q in touched:
            if q.present and q.done is None:
                self._refill_neighbours(q)
                self._fill_all(q, force=True)

    def _refill_neighbours(self, q: _Peer) -> None:
        if len(q.tup) >= self.cfg.degree // 2:
            return
        cands = [r for r in self.peers if r.present and r is not q and r.idx not in q.tup]
        for r in self.rng.sample(cands, min(len(cands), self.cfg.degree - len(q.tup))):
            self._connect(q, r)

    def _copy(self, i: int) -> None:
        self.copies[i] += 1
        if self.copies[i] == 1:
            self.covered += 1
            if self.covered == self.num_pieces and self.copy_time is None:
                self.copy_time = self.now

    def _uncopy(self, i: int) -> None:
        self.copies[i] -= 1
        if self.copies[i] == 0:
            self.covered -= 1

    # ------------------------------------------------------------------ transfers

    def _flow_done(self, f: _Flow) -> None:
        self._settle(f)
        c = f.conn
        u, d = c.up, c.down
        c.delivered += f.remaining
        f.remaining = 0.0
        self._stop_flow(f)
        self.last_progress = self.now
        c.meter.add(f.size, self.now)
        block_arrived(c.requests, self.now)
        u.uploaded += f.size
        assert d.picker is not None
        arrival = d.picker.block_received(u.idx, f.block)
        if not arrival.new:
            d.duplicate += f.size
            self.dup_bytes += f.size
        else:
            d.downloaded += f.size
        for k in arrival.cancel:
            self._cancel(d.tdown[k], f.block)  # type: ignore[index]  # our keys are ints
        if arrival.piece_complete:
            self._verified(d, f.block.piece)
        self._start_next(c)
        self._fill(c)
        if d.done is None:
            self._fill_all(d)

    def _cancel(self, c: _Conn, block: BlockRef) -> None:
        if c.active is not None and c.active.block == block:
            f = c.active
            self._settle(f)
            wasted = f.size - f.remaining
            c.up.uploaded += wasted
            c.down.duplicate += wasted
            self.dup_bytes += wasted
            self._stop_flow(f)
            self._start_next(c)
            return
        for item in c.queue:
            if item[0] == block:
                c.queue.remove(item)
                return

    def _verified(self, d: _Peer, piece: int) -> None:
        assert d.picker is not None
        d.picker.piece_verified(piece)
        self._copy(piece)
        for c in list(d.tup.values()):
            q = c.down
            if q.superseed is not None:
                self._reveal(q.tup[d.idx], q.superseed.peer_have(d.idx, piece))
                self._superseed_check(q)
            if q.done is None:
                assert q.picker is not None and q.have is not None
                q.picker.peer_have(d.idx, piece)
                if piece not in q.have:
                    c.starved = False
                    if not c.interested:
                        self._became_interested(c)
                    elif c.unchoked_since is not None and c.active is None and not c.queue:
                        self._fill(c)
        if d.picker.is_complete:
            d.done = self.now
            self.remaining_leechers -= 1
            for c in list(d.tdown.values()):
                if c.interested:
                    self._lost_interest(c)
            if d.spec.linger is not None:
                self._push(self.now + d.spec.linger, _LEAVE, d)

    # ------------------------------------------------------------------ main loop

    def run(self) -> SimResult:
        wall = time.perf_counter()
        for p in self.peers:
            self.pending_joins += 1
            self._push(p.spec.join, _JOIN, p)
        sample_every = self.bound / 100 if self.bound else 10.0
        self._push(0.0, _SAMPLE, None)
        heap = self.heap
        while heap:
            t, _, kind, obj = heapq.heappop(heap)
            if kind == _DONE and obj[1] != obj[0].version:
                continue  # superseded by a rate change
            if t > self.cfg.max_time:
                break
            self.now = t
            if kind == _DONE:
                self._flow_done(obj[0])
            elif kind == _START:
                obj.start_pending = False
                if obj.up.present and obj.down.present:
                    self._start_next(obj)
            elif kind == _RECHOKE:
                if obj.present:
                    self._rechoke(obj, scheduled=True)
            elif kind == _JOIN:
                self._join(obj)
            elif kind == _LEAVE:
                self._leave(obj)
            elif kind == _SAMPLE:
                self._sample()
                self._push(t + sample_every, _SAMPLE, None)
            if self.remaining_leechers <= 0 and self.pending_joins == 0:
                break
            if (
                kind == _RECHOKE
                and self.now - self.last_progress > self.cfg.stall_time
                and self.pending_joins == 0
            ):
                if not any(p.flows_up for p in self.peers):
                    break
        self._sample()
        return self._result(time.perf_counter() - wall)

    def _sample(self) -> None:
        leechers = [p for p in self.peers if p.present and not p.spec.seed]
        if not leechers:
            return
        low = min(self.copies)
        above = sum(1 for c in self.copies if c > low)
        self.samples.append((self.now, low + above / self.num_pieces))

    def _result(self, wall: float) -> SimResult:
        peers = [
            PeerResult(
                name=p.idx,
                seed=p.spec.seed,
                join=p.spec.join,
                done=p.done if not p.spec.seed else p.spec.join,
                uploaded=p.uploaded,
                downloaded=p.downloaded,
                duplicate=p.duplicate,
            )
            for p in self.peers
        ]
        return SimResult(
            config=self.cfg,
            peers=peers,
            bound=self.bound,
            seed_upload=sum(p.uploaded for p in self.peers if p.spec.seed),
            duplicate_bytes=self.dup_bytes,
            aborted_bytes=self.aborted,
            copy_time=self.copy_time,
            end_time=self.now,
            wall=wall,
            flows=self.flows,
            availability=self.samples,
        )


def simulate(config: SimConfig, specs: Sequence[PeerSpec]) -> SimResult:
    """Run one simulation."""
    return Simulator(config, specs).run()
