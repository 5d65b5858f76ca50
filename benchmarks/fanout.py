"""Fan-out on loopback: 1 seed + N leechers, every peer's upload capped, against the fluid-model bound.

Run: ``python -m benchmarks.fanout [--leechers 8] [--size 512MiB] [--piece-size 4MiB]
[--upload-cap 20MB] [--client tg,lt,tg:seed-sparing] [--csv out.csv] [--dir /tmp/tgfanout] [--no-sim]``.

1. Writes one model-like safetensors file of ``--size`` (reused when already there), makes its
   .torrent with :func:`torrentgoat.creation.create_torrent`.
2. For each client (``tg`` = torrentgoat through ``benchmarks/_tg_peer.py``, ``lt`` = libtorrent 2.1
   through ``tools/lt_peer.py``), every peer in its own process on 127.0.0.1, no DHT/trackers/PEX/uTP:
   * starts the seed on the original file with ``--upload-limit CAP``; waits until it seeds; warms
     the page cache (libtorrent drops a checked file from it);
   * starts the N leechers at once, each on a port chosen beforehand, with ``--upload-limit CAP``,
     no download limit, and the seed plus every other leecher as ``--peer`` (whichever of two
     leechers comes up second dials the first; duplicate connections are dropped by peer id).
     Leechers stay and upload after finishing (``--stay`` / ``--exit-after-finish``), as the fluid
     model assumes;
   * a leecher's **completion time** runs from its own ``listening`` line (process up, imports done)
     to its ``finished`` line (every piece verified), both timestamped by this harness on reading;
   * when all have finished (or ``--timeout``), stops every process (SIGTERM, then SIGKILL) and
     deletes the leechers' data.
3. Prints per client min/median/p90/max completion time, each over
   ``T* = max(F/u_seed, F/min d_i, N F / (u_seed + sum u_i))`` (Kumar & Ross 2006; with d_i
   unlimited and every u equal, ``T* = max(F/u, N F / ((N+1) u))``), and beside it the prediction
   of the strategy-lab simulator (:mod:`benchmarks.strategies`, the client's own picker and choker)
   for the same N, size, piece size, caps and upload slots, flagging a gap of more than 25%.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import queue
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torrentgoat.creation import create_torrent
from torrentgoat.testing.shards import write_safetensors_shard
from torrentgoat.testing.tracker import free_port
from torrentgoat.torrent import TorrentConfig
from torrentgoat.units import parse_size

__all__ = ["ClientResult", "fluid_bound", "main", "run_client", "simulate_prediction"]

REPO = Path(__file__).resolve().parent.parent
CLIENTS = ("tg", "lt")
LOOPBACK_LATENCY = 0.0001  # one-way, seconds, for the simulator
UNLIMITED = 1e12  # a download capacity that never binds (bytes/s)
DISAGREE = 0.25
LT_UNCHOKE_SLOTS = 8  # libtorrent 2.1 default unchoke_slots_limit (fixed-slots choker)


def fluid_bound(size: float, seed_upload: float, uploads: list[float], downloads: list[float]) -> float:
    """Kumar & Ross (2006): T* = max(F/u_s, F/min d_i, N F / (u_s + sum u_i))."""
    n = len(uploads)
    if n == 0:
        return 0.0
    return max(size / seed_upload, size / min(downloads), n * size / (seed_upload + sum(uploads)))


class Proc:
    """One peer process; JSON lines from its stdout are queued with the time this harness read them."""

    def __init__(self, name: str, cmd: list[str]) -> None:
        self.name = name
        self.proc = subprocess.Popen(
            cmd,
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # Ctrl-C reaches the harness only; it stops the peers itself
        )
        self.lines: queue.Queue[tuple[float, dict[str, Any]]] = queue.Queue()
        self.stderr: list[bytes] = []
        self.last: dict[str, Any] = {}
        self.uploaded = 0
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            if isinstance(line.get("uploaded"), int):
                self.uploaded = max(self.uploaded, line["uploaded"])
            self.lines.put((time.monotonic(), line))
        self.lines.put((time.monotonic(), {"event": "eof"}))

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            self.stderr.append(raw)
            del self.stderr[:-40]

    def wait_for(self, event: str, deadline: float) -> tuple[float, dict[str, Any]]:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(
                    f"{self.name}: no {event!r} in time (last line: {self.last})\n{self.err()}"
                )
            try:
                when, line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            self.last = line
            if line.get("event") == event:
                return when, line
            if line.get("event") in ("eof", "timeout"):
                raise RuntimeError(f"{self.name}: {line} before {event!r}\n{self.err()}")

    def err(self) -> str:
        return b"".join(self.stderr).decode(errors="replace")[-2000:]

    def stop(self, timeout: float = 8.0) -> None:
        """Close stdin and SIGTERM (both mean "stop"), then SIGKILL if it lingers."""
        if self.proc.poll() is not None:
            return
        with contextlib.suppress(OSError):
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        with contextlib.suppress(ProcessLookupError):
            self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            self.proc.wait(5)
        # the final "stopping" line carries the exact upload count
        time.sleep(0.05)


def peer_command(
    client: str, mode: str, torrent: Path, data: Path, port: int, peers: list[int], cap: int, slots: int
) -> list[str]:
    """``client``: ``lt``, ``tg`` or ``tg:STRATEGY`` (a piece strategy, the lab's included), each
    optionally ``+ss`` (the seed super-seeds, BEP 16) and, for tg, ``+lp`` (least-progress optimistic
    unchokes)."""
    name, options = parse_client(client)
    kind, _, strategy = name.partition(":")
    if kind == "lt":
        cmd = [sys.executable, str(REPO / "tools" / "lt_peer.py"), mode, "--report", "0.5"]
        if mode == "leech":
            cmd += ["--exit-after-finish", "1e9"]
    else:
        cmd = [sys.executable, "-m", "benchmarks._tg_peer", mode, "--upload-slots", str(slots)]
        cmd += ["--no-unchoke-local"]  # every peer here is on loopback: keep the slots the simulator models
        if mode == "leech":
            cmd += ["--stay"]
        if strategy:
            cmd += ["--strategy", strategy]
        if "lp" in options:
            cmd += ["--optimistic-unchoke", "least-progress"]
    if "ss" in options and mode == "seed":
        cmd += ["--super-seed"]
    cmd += ["--torrent", str(torrent), "--dir", str(data), "--port", str(port), "--upload-limit", str(cap)]
    for p in peers:
        cmd += ["--peer", f"127.0.0.1:{p}"]
    return cmd


CLIENT_OPTIONS = {"ss": "the seed super-seeds (BEP 16)", "lp": "least-progress optimistic unchokes (tg)"}


def parse_client(client: str) -> tuple[str, frozenset[str]]:
    """``tg:seed-sparing+ss+lp`` -> (``tg:seed-sparing``, {``ss``, ``lp``})."""
    name, *options = client.split("+")
    for option in options:
        if option not in CLIENT_OPTIONS:
            raise ValueError(f"unknown client option {option!r} in {client!r} (known: +ss, +lp)")
    if "lp" in options and not name.startswith("tg"):
        raise ValueError(f"+lp is a torrentgoat option ({client!r})")
    return name, frozenset(options)


def warm(path: Path) -> None:
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(8 * 1024 * 1024)
        while f.readinto(buf):
            pass


@dataclass(slots=True, kw_only=True)
class ClientResult:
    client: str
    times: list[float]
    """Completion time of each leecher (seconds), in leecher order; NaN = did not finish."""
    seed_uploaded: int = 0
    leech_uploaded: list[int] = field(default_factory=list)
    swarm_seconds: float = float("nan")
    """From spawning the leechers to the last ``finished`` line."""
    error: str = ""


def run_client(
    client: str,
    *,
    torrent: Path,
    source: Path,
    work: Path,
    leechers: int,
    cap: int,
    slots: int,
    timeout: float,
) -> ClientResult:
    """One fan-out run with every peer of ``client``; every process is stopped before returning."""
    procs: list[Proc] = []
    run_dir = work / client.replace(":", "-")
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    times = [float("nan")] * leechers
    result = ClientResult(client=client, times=times)
    try:
        seed_port = free_port()
        seed = Proc(
            f"{client} seed",
            peer_command(client, "seed", torrent, source.parent, seed_port, [], cap, slots),
        )
        procs.append(seed)
        seed.wait_for("seeding", time.monotonic() + 300)
        warm(source)
        ports: list[int] = []
        while len(ports) < leechers:
            port = free_port()
            if port not in ports and port != seed_port:
                ports.append(port)
        spawned = time.monotonic()
        leeches: list[Proc] = []
        for i, port in enumerate(ports):
            data = run_dir / f"leech{i}"
            data.mkdir()
            others = [seed_port, *(p for p in ports if p != port)]
            leech = Proc(
                f"{client} leech{i}", peer_command(client, "leech", torrent, data, port, others, cap, slots)
            )
            procs.append(leech)
            leeches.append(leech)
        deadline = spawned + timeout
        started = [leech.wait_for("listening", deadline)[0] for leech in leeches]
        last = spawned
        for i, leech in enumerate(leeches):
            try:
                when, _ = leech.wait_for("finished", deadline)
            except (TimeoutError, RuntimeError) as exc:
                result.error = str(exc).splitlines()[0]
                continue
            times[i] = when - started[i]
            last = max(last, when)
        result.swarm_seconds = last - spawned
    except (TimeoutError, RuntimeError) as exc:
        result.error = str(exc)
    finally:
        for proc in reversed(procs):
            proc.stop()
        shutil.rmtree(run_dir, ignore_errors=True)
    if procs:
        result.seed_uploaded = procs[0].uploaded
        result.leech_uploaded = [p.uploaded for p in procs[1:]]
    return result


def simulate_prediction(
    *,
    size: int,
    piece_size: int,
    leechers: int,
    cap: int,
    slots: int,
    strategy: str,
    endgame: bool,
    sub_blocks: int = 1,
    super_seed: bool = False,
    optimistic: str = "random",
) -> tuple[list[float], float] | None:
    """Completion times and seed upload (bytes) the strategy lab predicts for this swarm (None when
    the lab is missing)."""
    try:
        import benchmarks.strategies.hybrid  # noqa: F401  (registers the lab's strategies)
        from benchmarks.strategies import PeerSpec, SimConfig, simulate
    except ImportError:
        return None
    seed = PeerSpec(upload=cap, download=UNLIMITED, latency=LOOPBACK_LATENCY, seed=True)
    specs = [
        seed,
        *(PeerSpec(upload=cap, download=UNLIMITED, latency=LOOPBACK_LATENCY) for _ in range(leechers)),
    ]
    config = SimConfig(
        size=size,
        piece_size=piece_size,
        strategy=strategy,
        endgame=endgame,
        upload_slots=slots,
        degree=leechers,  # everybody knows everybody, as in the measured run
        seed=1,
        sub_blocks=sub_blocks,
        super_seed=super_seed,
        optimistic_mode=optimistic,
    )
    result = simulate(config, specs)
    return list(result.completion_times), result.seed_upload


def summary(times: list[float]) -> dict[str, float]:
    done = sorted(t for t in times if t == t)
    if not done:
        nan = float("nan")
        return {"min": nan, "median": nan, "p90": nan, "max": nan}
    p90 = done[max(0, math.ceil(0.9 * len(done)) - 1)]  # nearest rank
    return {"min": done[0], "median": statistics.median(done), "p90": p90, "max": done[-1]}


def _fmt(x: float) -> str:
    return "   -  " if x != x else f"{x:6.1f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fanout", description=__doc__.split("\n")[0])
    parser.add_argument("--leechers", type=int, default=8)
    parser.add_argument("--size", default="512MiB")
    parser.add_argument("--piece-size", default="4MiB")
    parser.add_argument("--upload-cap", default="20MB", help="every peer's upload, bytes/s or 20MB-style")
    parser.add_argument(
        "--client",
        default="tg,lt",
        help="comma-separated: tg, lt, tg:STRATEGY (e.g. tg:seed-sparing); +ss: the seed super-seeds "
        "(tg+ss, lt+ss); +lp: least-progress optimistic unchokes (tg+ss+lp)",
    )
    parser.add_argument(
        "--slots", type=int, default=TorrentConfig().choker.upload_slots, help="tg upload slots"
    )
    parser.add_argument("--dir", default="/tmp/tgfanout")
    parser.add_argument("--keep", action="store_true", help="keep the payload for the next run")
    parser.add_argument("--timeout", type=float, default=600.0, help="per client, seconds")
    parser.add_argument("--csv", default="")
    parser.add_argument(
        "--sim-sub-blocks", type=int, default=1, help="simulator flows per piece (1 = per-piece flows)"
    )
    parser.add_argument("--no-sim", action="store_true", help="skip the simulator's prediction")
    args = parser.parse_args(argv)
    clients = [c.strip() for c in args.client.split(",") if c.strip()]
    for c in clients:
        try:
            name, _ = parse_client(c)
        except ValueError as exc:
            parser.error(str(exc))
        kind, _, strategy = name.partition(":")
        if kind not in CLIENTS or (strategy and kind != "tg"):
            parser.error(f"unknown client {c!r} (choose from tg, tg:STRATEGY, lt, with +ss / +lp)")
    size = parse_size(args.size)
    piece = parse_size(args.piece_size)
    cap = parse_size(args.upload_cap, what="rate")
    if cap <= 0 or args.leechers < 1:
        parser.error("--upload-cap must be > 0 and --leechers >= 1")
    if not args.dir.startswith("/tmp/"):
        parser.error("--dir must be under /tmp")
    work = Path(args.dir)
    src_dir = work / "src"
    src_dir.mkdir(parents=True, exist_ok=True)
    source = src_dir / "model.safetensors"
    if not source.exists() or source.stat().st_size != size:
        write_safetensors_shard(source, size, seed=0)
    torrent = work / f"model-{piece}.torrent"
    torrent.write_bytes(create_torrent(source, piece_length=piece).to_bytes())

    # SIGTERM to the harness -> SystemExit -> the finally-blocks stop every peer
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        return _run(args, clients, size, piece, cap, torrent, source, work)
    finally:
        signal.signal(signal.SIGTERM, previous)
        if not args.keep:  # the payload is big: gone unless asked for
            for path in (source, torrent):
                path.unlink(missing_ok=True)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _run(
    args: argparse.Namespace,
    clients: list[str],
    size: int,
    piece: int,
    cap: int,
    torrent: Path,
    source: Path,
    work: Path,
) -> int:
    n = args.leechers
    bound = fluid_bound(size, cap, [cap] * n, [UNLIMITED] * n)
    print(
        f"fan-out: 1 seed + {n} leechers, {size / 2**20:.0f} MiB in {piece / 2**20:g} MiB pieces, "
        f"every upload capped at {cap / 1e6:g} MB/s, downloads unlimited -> T* = {bound:.1f} s",
        flush=True,
    )
    default = TorrentConfig().picker.strategy
    # the simulator's prediction per (piece strategy, upload slots); libtorrent is compared with
    # rarest-first and its own default of 8 unchoke slots
    predictions: dict[str, tuple[list[float], float]] = {}
    if not args.no_sim:
        for key in dict.fromkeys(_sim_key(c, default, args.slots) for c in clients):
            strategy, slots, ss, lp = key.split("/")
            wall = time.monotonic()
            prediction = simulate_prediction(
                size=size,
                piece_size=piece,
                leechers=n,
                cap=cap,
                slots=int(slots),
                strategy=strategy,
                endgame=TorrentConfig().picker.endgame,
                sub_blocks=args.sim_sub_blocks,
                super_seed=ss == "ss",
                optimistic="least-progress" if lp == "lp" else "random",
            )
            if prediction is None:
                print("simulator (benchmarks.strategies) not available: T* only", flush=True)
                break
            predictions[key] = prediction
            print(f"simulator ({key} slots): {time.monotonic() - wall:.1f} s wall", flush=True)

    results: list[ClientResult] = []
    for client in clients:
        print(f"running {client} ...", flush=True)
        res = run_client(
            client,
            torrent=torrent,
            source=source,
            work=work,
            leechers=n,
            cap=cap,
            slots=args.slots,
            timeout=args.timeout,
        )
        if res.error:
            print(f"  {client}: {res.error}", flush=True)
        results.append(res)

    rows: list[dict[str, Any]] = []
    print()
    print(
        f"{'who':<22}{'min':>7}{'median':>8}{'p90':>7}{'max':>7}  seed copies"
        "   x T* (median / max)   vs sim (median / max)"
    )
    lines: list[tuple[str, dict[str, float], float, dict[str, float] | None]] = [
        ("T*", dict.fromkeys(("min", "median", "p90", "max"), bound), 1.0, None)
    ]
    for strategy, (times, seed_upload) in predictions.items():
        lines.append((f"sim:{strategy}", summary(times), seed_upload / size, None))
    for r in results:
        pred = predictions.get(_sim_key(r.client, default, args.slots))
        lines.append((r.client, summary(r.times), r.seed_uploaded / size, summary(pred[0]) if pred else None))
    flagged: list[str] = []
    for who, st, copies, sim in lines:
        ratio = f"{st['median'] / bound:5.2f} / {st['max'] / bound:5.2f}"
        vs = ""
        if sim is not None:
            dm = st["median"] / sim["median"] - 1
            dx = st["max"] / sim["max"] - 1
            vs = f"{dm:+6.0%} / {dx:+6.0%}"
            if abs(dm) > DISAGREE or abs(dx) > DISAGREE or dm != dm:
                vs += "  DISAGREE (>25%)"
                flagged.append(who)
        print(
            f"{who:<22}{_fmt(st['min']):>7}{_fmt(st['median']):>8}{_fmt(st['p90']):>7}{_fmt(st['max']):>7}"
            f"  {copies:11.2f}   {ratio:<20}  {vs}"
        )
        rows.append(
            {
                "who": who,
                **{k: round(v, 3) for k, v in st.items()},
                "t_star": round(bound, 3),
                "seed_copies": round(copies, 3),
            }
        )
    for r in results:
        print(
            f"{r.client}: per leecher {', '.join(_fmt(t).strip() for t in r.times)} s; swarm {r.swarm_seconds:.1f} s; "
            f"seed uploaded {r.seed_uploaded / size:.2f} copies, leechers "
            f"{', '.join(f'{u / size:.2f}' for u in r.leech_uploaded)}"
        )
    if not predictions and not args.no_sim:
        print("(no simulator prediction)")
    if flagged:
        print(
            f"DISAGREE: {', '.join(flagged)} differ from the simulator by more than {DISAGREE:.0%}; "
            "compare the seed copies column (the seed's upload is the bottleneck: every extra copy it "
            "sends adds F/u_seed) -- see benchmarks/README.md, 'Fan-out on loopback'"
        )
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            writer = csv.DictWriter(
                f, fieldnames=["who", "min", "median", "p90", "max", "t_star", "seed_copies"]
            )
            writer.writeheader()
            writer.writerows(rows)
    failed = any(r.error or any(t != t for t in r.times) for r in results)
    return 1 if failed else 0


def _sim_key(client: str, default: str, slots: int) -> str:
    """The simulated scenario a client is compared with: ``STRATEGY/SLOTS/SEEDING/OPTIMISTIC``
    (``tg:seed-sparing`` -> ``seed-sparing/4/-/-``; ``tg+ss+lp`` -> ``rarest-first/4/ss/lp``; ``lt`` ->
    ``rarest-first/8/-/-``)."""
    name, options = parse_client(client)
    kind, _, strategy = name.partition(":")
    ss = "ss" if "ss" in options else "-"
    lp = "lp" if "lp" in options else "-"
    if kind == "lt":
        return f"{default}/{LT_UNCHOKE_SLOTS}/{ss}/{lp}"
    return f"{strategy or default}/{slots}/{ss}/{lp}"


if __name__ == "__main__":
    raise SystemExit(main())
