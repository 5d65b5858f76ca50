"""torrentgoat as a one-torrent peer process for benchmarks (the counterpart of ``tools/lt_peer.py``).

    python -m benchmarks._tg_peer seed  --torrent T --dir D [--port P]
    python -m benchmarks._tg_peer leech --torrent T --dir D [--port P] --peer HOST:PORT
    (both: [--upload-limit RATE] [--upload-slots N] [--strategy NAME]; leech: [--stay])

Listens on 127.0.0.1 only (no IPv6, no DHT, no trackers, no PEX) and prints one JSON object per line:
``{"event": "listening", "port": P}`` once the listen socket is up, ``{"event": "seeding", ...}`` once
a seed has checked its data, ``{"event": "first_byte", "seconds": S}`` when a leech gets its first
block, ``{"event": "finished", "seconds": S, "bytes": N}`` when a leech has every piece verified and
written.  A seed runs until stdin closes or SIGTERM; a leech exits after finishing, unless ``--stay``:
then it keeps seeding (like a seed) and prints ``{"event": "stopping", "uploaded": N, ...}`` on the
way out.  ``--upload-limit`` caps the session's upload (bytes/s, or ``20MB``-style; 0 = unlimited).
Encryption is the command line's (``--encryption prefer``: MSE offered, a plaintext payload
preferred, as libtorrent's default; ``require`` or ``TG_ENCRYPTION=require``: RC4 only).
``TG_PROFILE=path`` wraps the run in cProfile (stats written to ``path``) for a quick look without
py-spy.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from torrentgoat.choker import ChokerConfig
from torrentgoat.mse import EncryptionPolicy, MSEConfig
from torrentgoat.picker import PickerConfig, strategy_names
from torrentgoat.session import Session, SessionConfig
from torrentgoat.torrent import TorrentConfig
from torrentgoat.units import parse_size

__all__ = ["main"]


def thread_cpu() -> dict[str, float]:
    """CPU seconds (user + system) of each live thread, by thread-name prefix (``hash``, ``disk``...),
    and the system part alone (``hash sys``...)."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for thread in threading.enumerate():
        tid = thread.native_id
        try:
            with open(f"/proc/self/task/{tid}/stat", "rb") as f:
                text = f.read()
        except OSError:
            continue
        fields = text[text.rindex(b")") + 2 :].split()
        name = thread.name.rstrip("0123456789_").replace("torrentgoat-", "")
        out[name] = round(out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick, 3)
        out[name + " sys"] = round(out.get(name + " sys", 0.0) + int(fields[12]) / tick, 3)
    return out


def emit(**fields: Any) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def _piece_memory() -> dict[str, int]:
    """``TG_PIECE_MEMORY=48MiB``: the picker's cap on bytes of started pieces (the leecher's memory)."""
    text = os.environ.get("TG_PIECE_MEMORY")
    return {"max_partial_bytes": parse_size(text)} if text else {}


def _max_queue() -> dict[str, int]:
    """``TG_MAX_QUEUE=500``: the most requests kept in flight at one peer (``TorrentConfig.max_queue``)."""
    text = os.environ.get("TG_MAX_QUEUE")
    return {"max_queue": int(text)} if text else {}


_SEEN_TRANSPORTS: set[str] = set()
"""The transports of the leecher's peers when the first block arrived (they are gone at the end)."""


def _transports(torrent: Any) -> list[str]:
    """What each connected peer runs over: ``tcp`` or ``utp``, with ``+mse`` when encrypted."""
    kinds = []
    for peer in torrent.peers.values():
        transport = peer.driver.transport
        if transport is None:
            continue
        raw = getattr(transport, "raw", transport)
        kind = "utp" if type(raw).__name__ == "UTPTransport" else "tcp"
        kinds.append(kind + ("+mse" if transport.get_extra_info("mse") is not None else ""))
    return sorted(kinds)


async def run(args: argparse.Namespace) -> int:
    seed = args.mode == "seed"
    stay = seed or args.stay
    if args.strategy not in strategy_names():
        import benchmarks.strategies.hybrid  # noqa: F401  (registers the lab's strategies)
    tconfig = TorrentConfig(
        seed=stay,
        pex=False,
        choker=ChokerConfig(
            upload_slots=args.upload_slots,
            optimistic_mode=args.optimistic_unchoke,
            seed_mode=args.seed_mode,
            unchoke_local=not args.no_unchoke_local,
        ),
        picker=PickerConfig(strategy=args.strategy, **_piece_memory()),
        super_seed=args.super_seed,
        **_max_queue(),
    )
    config = SessionConfig(
        upload_limit=parse_size(args.upload_limit, what="rate"),
        listen_host="127.0.0.1",
        listen_ipv6=None,
        listen_port=args.port,
        enable_dht=False,
        enable_trackers=False,
        enable_pex=False,
        enable_lsd=False,
        enable_utp=True,
        utp_first=args.transport == "utp" or None,  # None: TCP first on loopback, as the CLI
        # as the command line: MSE offered and accepted, a plaintext payload preferred (libtorrent's
        # default too); --encryption require (or TG_ENCRYPTION=require) forces RC4
        encryption=MSEConfig(policy=EncryptionPolicy.parse(args.encryption), prefer_rc4=False),
        torrent=tconfig,
    )
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    with contextlib.suppress(NotImplementedError):
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with Session(config) as session:
        emit(event="listening", port=session.listen_port)
        started = time.monotonic()
        thread0 = time.thread_time()
        torrent = await session.add(Path(args.torrent), Path(args.dir), peers=tuple(args.peer))
        if seed:
            await torrent.wait_complete()
            emit(event="seeding", seconds=time.monotonic() - started, bytes=torrent.wanted_bytes)
            cpu0, thread1 = time.process_time(), time.thread_time()
            threading.Thread(
                target=lambda: (sys.stdin.read(), loop.call_soon_threadsafe(stop.set)), daemon=True
            ).start()
            await stop.wait()
            emit(
                event="stopping",
                uploaded=torrent.uploaded,
                main_thread_cpu=time.thread_time() - thread0,
                serving_cpu=time.process_time() - cpu0,
                serving_main_thread_cpu=time.thread_time() - thread1,
                threads=thread_cpu(),
            )
            torrent.stop("benchmark over")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(torrent.wait_stopped(), 5.0)
            return 0
        first = asyncio.ensure_future(_first_byte(torrent, started, args.report))
        try:
            await asyncio.wait_for(torrent.wait_complete(), timeout=args.timeout)
        except TimeoutError:
            emit(event="timeout")
            return 3
        finally:
            first.cancel()
        if stay:
            emit(
                event="finished",
                seconds=time.monotonic() - started,
                bytes=torrent.wanted_bytes,
                downloaded=torrent.downloaded,
                uploaded=torrent.uploaded,
                hash_failures=torrent.hash_failures,
            )
            threading.Thread(
                target=lambda: (sys.stdin.read(), loop.call_soon_threadsafe(stop.set)), daemon=True
            ).start()
            await stop.wait()
            emit(event="stopping", uploaded=torrent.uploaded, downloaded=torrent.downloaded)
            torrent.stop("benchmark over")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(torrent.wait_stopped(), 5.0)
            return 0
        emit(
            event="finished",
            seconds=time.monotonic() - started,
            bytes=torrent.wanted_bytes,
            downloaded=torrent.downloaded,
            hash_failures=torrent.hash_failures,
            main_thread_cpu=time.thread_time() - thread0,
            threads=thread_cpu(),
            transports=sorted(_SEEN_TRANSPORTS.union(_transports(torrent))),
        )
        await torrent.wait_stopped()
    return 0


async def _first_byte(torrent: Any, started: float, report: float) -> None:
    """``first_byte`` (polled every 5 ms) and, with ``--report``, ``progress`` lines."""
    while not torrent.downloaded:
        await asyncio.sleep(0.005)
    emit(event="first_byte", seconds=time.monotonic() - started)
    _SEEN_TRANSPORTS.update(_transports(torrent))
    if report <= 0:
        return
    while True:
        await asyncio.sleep(report)
        emit(
            event="progress",
            seconds=time.monotonic() - started,
            downloaded=torrent.downloaded,
            verified=torrent.verified_bytes,
            buffered=torrent.buffers.bytes_held,
        )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["seed", "leech"])
    parser.add_argument("--torrent", required=True)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--peer", action="append", default=[])
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--report", type=float, default=0.0, help="progress lines every S seconds")
    parser.add_argument("--upload-limit", default="0", help="bytes/s or 20MB-style rate (0 = unlimited)")
    parser.add_argument(
        "--upload-slots",
        type=int,
        default=int(os.environ.get("TG_UPLOAD_SLOTS", TorrentConfig().choker.upload_slots)),
    )
    parser.add_argument(
        "--seed-mode",
        choices=("fastest-upload", "round-robin"),
        default=os.environ.get("TG_SEED_MODE", TorrentConfig().choker.seed_mode),
        help="choker while seeding (TG_SEED_MODE)",
    )
    parser.add_argument(
        "--strategy", default=TorrentConfig().picker.strategy, help="piece strategy (lab ones too)"
    )
    parser.add_argument("--stay", action="store_true", help="leech: keep seeding after finishing")
    parser.add_argument("--super-seed", action="store_true", help="seed: BEP 16 super-seeding")
    parser.add_argument("--optimistic-unchoke", choices=("random", "least-progress"), default="random")
    parser.add_argument("--no-uvloop", action="store_true")
    parser.add_argument(
        "--no-unchoke-local",
        action="store_true",
        help="loopback peers compete for the upload slots like internet peers (ChokerConfig.unchoke_local "
        "off): what the strategy simulator models",
    )
    parser.add_argument(
        "--encryption",
        choices=("prefer", "require", "disable"),
        default=os.environ.get("TG_ENCRYPTION", "prefer"),
        help="MSE policy, as the command line's (default prefer: plaintext payload preferred)",
    )
    parser.add_argument(
        "--transport",
        choices=("tcp", "utp"),
        default=os.environ.get("TG_TRANSPORT", "tcp"),
        help="how the leecher dials: tcp (the CLI's choice on loopback) or utp first (TG_TRANSPORT)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    args = parser.parse_args()
    if args.verbose:
        import logging

        logging.basicConfig(level=logging.DEBUG, format="%(relativeCreated)d %(name)s %(message)s")
    runner: Any = asyncio.run
    if not args.no_uvloop:
        try:
            import uvloop

            runner = uvloop.run
        except ImportError:
            pass
    experiment = os.environ.get("TG_EXPERIMENT")
    if experiment:
        from benchmarks._experiments import apply

        apply(experiment)
    profile = os.environ.get("TG_PROFILE")
    if profile:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
        try:
            return int(runner(run(args)))
        finally:
            prof.disable()
            prof.dump_stats(profile)
    return int(runner(run(args)))


if __name__ == "__main__":
    raise SystemExit(main())
