"""Tunables of the uTP stack (level L2): one frozen dataclass, a docstring per field."""

from __future__ import annotations

from dataclasses import dataclass

from torrentgoat.errors import ConfigError

__all__ = ["UTPConfig"]


@dataclass(frozen=True, slots=True, kw_only=True)
class UTPConfig:
    """Per-manager settings.  Defaults follow BEP 29 and libtorrent 2.1 where they exist."""

    target_delay: float = 0.100
    """LEDBAT target queuing delay in seconds (BEP 29: 100 ms)."""
    gain: int = 3000
    """Most bytes per RTT the window grows by in congestion avoidance (BEP 29
    ``MAX_CWND_INCREASE_BYTES_PER_RTT``); raised to one packet when packets are larger."""
    min_rto: float = 0.5
    """Lower bound of the retransmission timeout (BEP 29: 500 ms)."""
    initial_rto: float = 1.0
    """Timeout before the first RTT sample (BEP 29: 1000 ms), doubled per retry of a SYN."""
    max_retransmits: int = 5
    """Consecutive timeouts after which a connection is dead (back-off doubles each time)."""
    max_syn_retransmits: int = 2
    """SYN retries before a dial fails (libtorrent: 2)."""
    max_fin_retransmits: int = 2
    """FIN retries before a closing connection gives up (libtorrent: 2)."""
    syn_recv_timeout: float = 10.0
    """An incoming connection whose initiator sent nothing after its SYN is dropped after this."""
    keepalive_interval: float = 29.0
    """Send an ST_STATE when we sent nothing for this long (keeps NAT mappings open)."""
    linger: float = 2.0
    """A gracefully closed connection answers its peer's late FIN for this long, then goes."""
    receive_buffer: int = 2 * 1024 * 1024
    """Receive window per connection: out-of-order packets plus bytes the application has not
    read (reading paused) -- what we advertise in ``wnd_size``."""
    max_buffered_bytes: int = 64 * 1024 * 1024
    """All connections' receive buffers together; beyond it packets that would be buffered are
    dropped (and advertised windows shrink)."""
    max_reorder_packets: int = 1024
    """Out-of-order packets kept beyond ``ack_nr`` (farther ones are dropped)."""
    max_connections: int = 512
    """Connections (all states) the manager keeps; a SYN beyond it is ignored."""
    max_half_open: int = 64
    """Incoming connections not yet confirmed by a second packet; a new SYN beyond it evicts
    the oldest unconfirmed one (a SYN flood cannot lock out real peers)."""
    accept_incoming: bool = True
    """Accept SYNs (False: they are refused with a rate-limited RESET; outgoing connections still
    work).  The manager's ``accept_incoming`` attribute starts from this and may be toggled."""
    reset_rate: float = 100.0
    """ST_RESET answers to packets for unknown connections, per second (a token bucket of that
    depth): one 20-byte RESET per packet of at least 20 bytes, never more."""
    max_datagram: int = 65507
    """Largest UDP payload we send or accept (IPv4 limit); the path MTU and the peer's announced
    limit cap it further."""
    default_peer_datagram: int = 1472
    """Largest UDP payload sent to a peer that did not announce its limit (libtorrent reads
    datagrams into a 1500-byte buffer): an Ethernet MTU minus IPv4 and UDP headers (20 bytes
    less over IPv6)."""
    max_fast_resends: int = 8
    """Packets fast-retransmitted for one incoming ack at most."""

    def __post_init__(self) -> None:
        if not 0.001 <= self.target_delay <= 10:
            raise ConfigError(f"uTP target delay {self.target_delay} s is out of range")
        if self.receive_buffer < 65536:
            raise ConfigError("uTP receive buffer must hold at least 64 KiB")
        if self.max_connections < 1 or self.max_half_open < 1:
            raise ConfigError("uTP connection caps must be positive")
        if not 548 <= self.default_peer_datagram <= self.max_datagram <= 65507:
            raise ConfigError("uTP datagram sizes must satisfy 548 <= default <= max <= 65507")
