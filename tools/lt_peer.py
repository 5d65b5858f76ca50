"""Launch libtorrent as a reference peer on loopback (interop tests and benchmarks).

Runs in its own process so that it never shares a GIL with the torrentgoat code under test.

    python tools/lt_peer.py seed  --torrent T --dir D --port P [--upload-limit BPS]
    python tools/lt_peer.py leech --torrent T --dir D --port P [--peer HOST:PORT ...] [--magnet URI]
    (both: [--host 127.0.0.1 | ::1] [--no-encryption] [--dht H:P,...] [--lsd] [--report S] [--timeout S]
           [--utp-only] [--socket-buffer BYTES])

It prints one JSON object per line on stdout: ``{"event": "listening", "port": P}`` once the
listen socket is up, ``{"event": "progress", ...}`` about every ``--report`` seconds,
``{"event": "seeding", ...}`` once a seed has checked its data and serves it,
``{"event": "finished", "seconds": S, "bytes": N}`` when a leech completes and its data is in its
files, and exits after ``--exit-after-finish`` (leech) or when stdin closes / SIGTERM arrives (seed).
libtorrent 2 hashes a piece from its write cache and may report the torrent complete (``is_seeding``)
before the last blocks reach the files; so "finished" waits for ``flush_cache()``'s
``cache_flushed_alert`` (a disk fence job: it runs after every queued write of the torrent).
Settings follow ../shared/INTEROP-NOTES.md: explicit 127.0.0.1 listen address, no port fallback,
DHT/LSD/UPnP/NAT-PMP/uTP off unless asked (``--utp-only``: uTP on, TCP off both ways), ``num_want = 0`` for a seeder (a seeder that learns its
own address from a tracker connects to itself and bans 127.0.0.1).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from typing import Any

import libtorrent as lt


def emit(**fields: Any) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def make_session(args: argparse.Namespace) -> Any:
    settings: dict[str, Any] = {
        "listen_interfaces": f"[{args.host}]:{args.port}" if ":" in args.host else f"{args.host}:{args.port}",
        "max_retry_port_bind": 0,
        "listen_system_port_fallback": False,
        "enable_dht": bool(args.dht),
        "enable_lsd": args.lsd,
        "enable_upnp": False,
        "enable_natpmp": False,
        "enable_outgoing_utp": False,
        "enable_incoming_utp": False,
        "alert_mask": lt.alert_category.status
        | lt.alert_category.error
        | lt.alert_category.peer
        | lt.alert_category.connect
        | lt.alert_category.storage,  # cache_flushed_alert
        "allow_multiple_connections_per_ip": True,
        "ignore_limits_on_local_network": args.upload_limit == 0 and args.download_limit == 0,
        "upload_rate_limit": args.upload_limit,
        "download_rate_limit": args.download_limit,
        "in_enc_policy": lt.enc_policy.pe_disabled if args.no_encryption else lt.enc_policy.pe_enabled,
        "out_enc_policy": lt.enc_policy.pe_disabled if args.no_encryption else lt.enc_policy.pe_enabled,
        "user_agent": "libtorrent-reference",
        "stop_tracker_timeout": 1,  # exit promptly even when the tracker has gone already
    }
    if args.dht:
        settings.update(
            {
                "dht_bootstrap_nodes": args.dht,
                "dht_restrict_routing_ips": False,
                "dht_restrict_search_ips": False,
                "dht_enforce_node_id": False,
                "dht_prefer_verified_node_ids": False,
                "dht_ignore_dark_internet": False,
                "dht_block_ratelimit": 1000000,
                "dht_block_timeout": 1,
                # look up / announce every few seconds: a first lookup made before the bootstrap
                # finished would otherwise be repeated only after the default 15 minutes
                "dht_announce_interval": 5,
            }
        )
    if args.bind_outgoing:
        settings["outgoing_interfaces"] = args.host
    if args.force_encryption:  # MSE/PE with RC4 only, both ways (INTEROP-NOTES)
        settings.update(
            {
                "in_enc_policy": lt.enc_policy.forced,
                "out_enc_policy": lt.enc_policy.forced,
                "allowed_enc_level": lt.enc_level.rc4,
            }
        )
    if args.utp_only:
        settings.update(
            {
                "enable_incoming_utp": True,
                "enable_outgoing_utp": True,
                "enable_incoming_tcp": False,
                "enable_outgoing_tcp": False,
            }
        )
    if args.socket_buffer:
        settings.update(
            {"recv_socket_buffer_size": args.socket_buffer, "send_socket_buffer_size": args.socket_buffer}
        )
    ses = lt.session(settings)
    for node in filter(None, args.dht.split(",")):
        host, _, port = node.strip().rpartition(":")
        ses.add_dht_node((host.strip("[]"), int(port)))  # routers never enter the routing table
    return ses


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["seed", "leech"])
    parser.add_argument("--torrent")
    parser.add_argument("--magnet")
    parser.add_argument("--dir", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (e.g. ::1)")
    parser.add_argument(
        "--bind-outgoing",
        action="store_true",
        help="dial from --host too (outgoing_interfaces), e.g. 127.0.0.7: many peers on one loopback",
    )
    parser.add_argument("--peer", action="append", default=[])
    parser.add_argument("--upload-limit", type=int, default=0)
    parser.add_argument("--download-limit", type=int, default=0)
    parser.add_argument("--dht", default="", help="bootstrap nodes host:port,host:port (enables DHT)")
    parser.add_argument("--no-encryption", action="store_true")
    parser.add_argument(
        "--lsd", action="store_true", help="local service discovery (BEP 14) on --host's interface"
    )
    parser.add_argument(
        "--report-peers", action="store_true", help="progress lines list each peer's port and piece count"
    )
    parser.add_argument(
        "--force-encryption", action="store_true", help="MSE with RC4 only, in and out (enc_policy.forced)"
    )
    parser.add_argument("--report", type=float, default=0.5)
    parser.add_argument("--exit-after-finish", type=float, default=0.0)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--super-seed", action="store_true", help="seed: BEP 16 super-seeding")
    parser.add_argument("--utp-only", action="store_true", help="uTP (BEP 29) on, TCP off in and out")
    parser.add_argument("--socket-buffer", type=int, default=0, help="SO_RCVBUF/SO_SNDBUF bytes (0: default)")
    args = parser.parse_args()

    ses = make_session(args)
    if args.torrent:
        params = lt.add_torrent_params()
        params.ti = lt.torrent_info(args.torrent)
    elif args.magnet:
        params = lt.parse_magnet_uri(args.magnet)
    else:
        parser.error("--torrent or --magnet is required")
    params.save_path = args.dir
    # The default flags hold both ``paused`` and ``auto_managed``: a torrent taken out of auto
    # management while still paused stays in "checking_files" forever.  Start it unpaused and
    # unmanaged (no queueing in a one-torrent session).
    params.flags &= ~(lt.torrent_flags.paused | lt.torrent_flags.auto_managed)
    if args.super_seed:
        params.flags |= lt.torrent_flags.super_seeding
    if args.mode == "seed":
        params.flags |= lt.torrent_flags.seed_mode if os.environ.get("LT_SEED_MODE") else 0
        ses.apply_settings({"num_want": 0})
    handle = ses.add_torrent(params)
    for peer in args.peer:
        host, _, port = peer.rpartition(":")  # "[::1]:6881" works too
        handle.connect_peer((host.strip("[]"), int(port)))

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    if args.mode == "seed":

        def stop_at_eof() -> None:
            sys.stdin.read()
            stop.set()

        threading.Thread(target=stop_at_eof, daemon=True).start()

    started = time.monotonic()
    emit(event="listening", port=ses.listen_port())
    finished_at: float | None = None
    flushing = False  # complete, waiting for the write cache to reach the files
    seeding = False
    last_report = 0.0
    while not stop.is_set():
        ses.wait_for_alert(100)
        for alert in ses.pop_alerts():
            if isinstance(alert, lt.peer_connect_alert | lt.peer_disconnected_alert | lt.peer_ban_alert):
                emit(event="peer", what=type(alert).__name__, message=alert.message())
            elif isinstance(alert, lt.torrent_error_alert | lt.file_error_alert | lt.lsd_error_alert):
                emit(event="error", message=alert.message())
            elif isinstance(alert, lt.hash_failed_alert):
                emit(event="hash_failed", piece=int(alert.piece_index))
            elif type(alert).__name__ == "lsd_peer_alert":  # not exported by every binding version
                emit(event="lsd_peer", message=alert.message())
            elif isinstance(alert, lt.cache_flushed_alert) and flushing and finished_at is None:
                finished_at = time.monotonic()
                emit(event="finished", seconds=finished_at - started, bytes=handle.status().total_wanted)
        status = handle.status()
        now = time.monotonic()
        if now - last_report >= args.report:
            last_report = now
            extra: dict[str, Any] = {}
            if args.report_peers:
                extra["peer_pieces"] = [
                    {"port": p.ip[1], "pieces": sum(1 for bit in p.pieces if bit)}
                    for p in handle.get_peer_info()
                ]
            emit(
                **extra,
                event="progress",
                state=str(status.state),
                progress=status.progress,
                done=status.total_wanted_done,
                wanted=status.total_wanted,
                down=status.download_rate,
                up=status.upload_rate,
                peers=status.num_peers,
                uploaded=status.total_upload,
            )
        if args.mode == "seed" and not seeding and status.is_seeding:
            seeding = True
            emit(event="seeding", seconds=now - started, bytes=status.total_wanted)
        if args.mode == "leech" and not flushing and status.is_seeding:
            flushing = True
            handle.flush_cache()
        if finished_at is not None and now - finished_at >= args.exit_after_finish:
            break
        if now - started > args.timeout:
            emit(event="timeout")
            return 3
    ses.pause()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
