"""Configuration and counters of a DHT node (BEP 5 / BEP 44 defaults)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DHTConfig", "DHTStats"]


@dataclass(frozen=True, slots=True, kw_only=True)
class DHTConfig:
    """Knobs of one DHT node; defaults follow BEP 5 / BEP 44 and libtorrent's practice."""

    k: int = 8
    """Bucket size and number of closest nodes a lookup converges on (BEP 5)."""
    alpha: int = 3
    """Parallel queries per lookup."""
    query_timeout: float = 2.0
    """Seconds before an unanswered query counts as failed."""
    slow_timeout: float = 0.5
    """Seconds after which a lookup stops waiting for a query and asks another node in its place."""
    max_rounds: int = 12
    """Hop depth beyond which a lookup asks no further nodes."""
    max_lookup_queries: int = 96
    """Queries one lookup may send at most."""
    max_pending: int = 1024
    """Outstanding transactions at once; lookups wait when it is reached."""
    max_operations: int = 256
    """Operations (lookups, pings) running at once; starting more raises DHTError."""
    good_interval: float = 900.0
    """A node is good for 15 minutes after it answered (BEP 5)."""
    max_failures: int = 2
    """Timeouts in a row after which a node is bad."""
    bucket_refresh_interval: float = 900.0
    """Buckets unchanged this long are refreshed (BEP 5: 15 minutes)."""
    maintenance_interval: float = 60.0
    """Seconds between maintenance passes (refresh, expiry)."""
    token_rotation: float = 300.0
    """Token secret lifetime (BEP 5: 5 minutes, previous secret still accepted)."""
    peer_ttl: float = 1800.0
    max_info_hashes: int = 1000
    """Torrents whose announced peers we store for others (the least recently announced gives way)."""
    max_peers_per_info_hash: int = 100
    """Peers stored per torrent (the oldest announce gives way).  With ``max_info_hashes`` this bounds
    the peer store at 100,000 entries, about 27 MB in Python (measured 270 bytes an entry)."""
    max_values_per_response: int = 50
    """Peers in one ``get_peers`` reply (keeps replies far below the path MTU: no amplification)."""
    max_peers_per_lookup: int = 2000
    item_ttl: float = 7200.0
    """BEP 44: items expire after 2 hours unless put again."""
    max_items: int = 2000
    rate_limit: float = 100.0
    """Datagrams per second accepted from one local source, an (IP, port) (0 disables limiting)."""
    rate_burst: float = 200.0
    public_rate_limit: float = 10.0
    """Datagrams per second accepted from one public IP, whatever its ports (libtorrent blocks an
    IP sending more than 5 per second); a node never needs more from one other node."""
    public_rate_burst: float = 40.0
    max_query_rate: float = 500.0
    """Queries from public sources answered per second, all sources together; the rest are dropped
    before they are decoded (libtorrent: ``dht_upload_rate_limit``, 8,000 bytes/s).  A flood from many
    addresses costs at most this many answers (0: unlimited)."""
    rate_limit_per_ip: bool | None = None
    """None: public sources are limited per IP at the public rate, local ones (BEP 42's exempt ranges:
    every node of a loopback test shares 127.0.0.1) per (IP, port) at ``rate_limit``.  True: every
    source is treated as public (a loopback benchmark of a public node); False: every one as local."""
    max_rate_sources: int = 10000
    """Sources the rate limiter remembers (least recently seen forgotten first)."""
    max_nodes_per_ip: int = 2
    """Routing-table nodes one public IP address may hold (libtorrent ``restrict_routing_ips``
    allows one); local addresses are exempt.  One host cannot fill buckets with made-up ids."""
    enforce_node_id: bool = True
    """BEP 42 "Enforcement": a new node whose id does not match its public IP address never enters the
    routing table (its queries are still answered, its answers still used by lookups); local addresses
    are exempt."""
    verify_new_nodes: bool = True
    """A node we only heard a query from is pinged before it enters the routing table: a spoofed
    source never answers, so floods of queries from made-up ids and addresses add nothing."""
    max_verify_pings: int = 16
    """Verification pings (of querying nodes) outstanding at once; more querying newcomers wait for
    their next query."""
    max_amplification: float = 3.0
    """Answers to a public address that never answered a query of ours are trimmed (peers first,
    then nodes, then an item's value) to at most this multiple of the query's size: a spoofed query
    cannot turn us into an amplifier (the 3x of QUIC, RFC 9000 section 8).  0 turns trimming off."""
    max_verified_addresses: int = 10000
    """IP addresses remembered as verified (they answered a query of ours), least recent forgotten."""
    read_only: bool = False
    """BEP 43: send ``ro=1`` and answer no queries."""
    secure_node_id: bool = True
    """BEP 42: once enough nodes report our external address (a public one), take a node id derived
    from it if ours does not match.  Local and loopback addresses are exempt, so tests never rekey."""


@dataclass(slots=True)
class DHTStats:
    """Counters for benchmarks and debugging."""

    datagrams_received: int = 0
    rate_limited: int = 0
    malformed: int = 0
    unmatched: int = 0
    queries_received: int = 0
    responses_sent: int = 0
    errors_sent: int = 0
    queries_sent: int = 0
    responses_received: int = 0
    errors_received: int = 0
    timeouts: int = 0
