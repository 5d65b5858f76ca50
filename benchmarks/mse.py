"""Cost of Message Stream Encryption: the same transfer over loopback, plaintext vs MSE, in one run.

Run: ``python -m benchmarks.mse [--size 1GiB] [--repeat 3] [--modes plain,rc4,mse-plain]
[--layer wire|stream] [--no-uvloop]``.

Two processes per run (a server and a client, each with its own event loop -- uvloop unless
``--no-uvloop`` -- so sender and receiver each have a core, as two real peers would):

* ``--layer wire`` (default): the real peer path.  The server is an
  :class:`~torrentgoat.aio.mse.EncryptedListener` (or a plain ``create_server`` for ``plain``) whose
  ``PeerDriver``/``PeerConnection`` pairs serve 16 KiB blocks of a virtual torrent from one 4 MiB
  buffer; the client dials with :func:`~torrentgoat.aio.mse.open_encrypted_connection` and keeps
  ``--depth`` requests in flight until ``--size`` bytes of blocks arrived (no disk, no hashing: what
  is left is the wire engine, asyncio, and the MSE layer);
* ``--layer stream``: the MSE transport alone -- the server writes ``--size`` bytes in 256 KiB
  ``writelines`` of 16 KiB buffers (respecting ``pause_writing``), the client counts them.

Modes: ``plain`` (no MSE), ``rc4`` (MSE, RC4 payload: ``require``), ``mse-plain`` (MSE handshake,
plaintext payload).  MB/s = payload bytes (10^6) / seconds from the client's connect to the last
byte; CPU = ``process_time`` of each process over the same window, per GB.  Repeats run round robin
and the best of each mode is reported, with its ratio to ``plain`` (target for the client:
encrypted >= 0.7x plaintext).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from torrentgoat.aio.mse import EncryptedListener, open_encrypted_connection, open_mse_stream, tcp_connector
from torrentgoat.aio.peer import PeerDriver, open_peer_connection
from torrentgoat.bitfield import Bitfield
from torrentgoat.mse import CryptoMethod, EncryptionPolicy, MSEConfig, StreamKeys
from torrentgoat.primitives import BLOCK_SIZE, InfoHash, PeerAddress, PeerId
from torrentgoat.units import parse_size
from torrentgoat.wire.connection import PeerConnection, PieceGeometry, WireConfig
from torrentgoat.wire.events import (
    BitfieldReceived,
    BlockReceived,
    BlockRequested,
    Event,
    HandshakeReceived,
    PeerInterested,
    PeerUnchoked,
)
from torrentgoat.wire.messages import Interested, Request, Unchoke

__all__ = ["main"]

REPO = Path(__file__).resolve().parent.parent
MODES = ("plain", "rc4", "mse-plain")
PIECE = 4 << 20
INFO_HASH = InfoHash(bytes(range(20)))
WIRE = WireConfig(max_peer_requests=4096, default_peer_reqq=4096, max_outgoing_requests=4096)


def mse_config(mode: str) -> MSEConfig:
    if mode == "rc4":
        return MSEConfig(policy=EncryptionPolicy.REQUIRE)
    return MSEConfig(allowed=CryptoMethod.PLAINTEXT)  # mse-plain


def geometry(size: int) -> PieceGeometry:
    return PieceGeometry(num_pieces=(size + PIECE - 1) // PIECE, piece_length=PIECE, total_length=size)


# ----------------------------------------------------------------------------- wire layer


class _Seed:
    def __init__(self, size: int) -> None:
        self.geometry = geometry(size)
        self.data = memoryview(random.Random(1).randbytes(PIECE))

    def new_driver(self) -> PeerDriver:
        engine = PeerConnection(peer_id=PeerId.generate(random.Random(2)), now=0.0, config=WIRE)
        return PeerDriver(engine, self, outgoing=False)

    def peer_event(self, peer: PeerDriver, event: Event) -> None:
        engine = peer.engine
        if type(event) is BlockRequested:
            engine.send_piece(event.index, event.begin, self.data[event.begin : event.begin + event.length])
        elif type(event) is HandshakeReceived:
            g = self.geometry
            engine.accept(
                info_hash=INFO_HASH, have=Bitfield(g.num_pieces, full=True), geometry=g, config=WIRE
            )
        elif type(event) is PeerInterested:
            engine.send(Unchoke())

    def peer_closed(self, peer: PeerDriver, reason: str) -> None:
        pass

    def peer_writable(self, peer: PeerDriver) -> None:
        pass


class _Leech:
    def __init__(self, size: int, depth: int) -> None:
        g = self.geometry = geometry(size)
        self.depth = depth
        self.blocks = [
            (i, b, min(BLOCK_SIZE, g.piece_size(i) - b))
            for i in range(g.num_pieces)
            for b in range(0, g.piece_size(i), BLOCK_SIZE)
        ]
        self.blocks.reverse()  # pop() from the end: pieces in order
        self.left = len(self.blocks)
        self.received = 0
        self.done = asyncio.get_running_loop().create_future()

    def new_engine(self) -> PeerConnection:
        g = self.geometry
        return PeerConnection(
            peer_id=PeerId.generate(random.Random(3)),
            now=asyncio.get_running_loop().time(),
            info_hash=INFO_HASH,
            have=Bitfield(g.num_pieces),
            geometry=g,
            config=WIRE,
        )

    def _fill(self, engine: PeerConnection) -> None:
        blocks = self.blocks
        while blocks and engine.outstanding_count < self.depth and not engine.peer_choking:
            index, begin, length = blocks.pop()
            engine.send(Request(index=index, begin=begin, length=length))

    def peer_event(self, peer: PeerDriver, event: Event) -> None:
        if type(event) is BlockReceived:
            self.received += len(event.data)
            self.left -= 1
            if not self.left and not self.done.done():
                self.done.set_result(None)
        elif type(event) is BitfieldReceived:
            peer.engine.send(Interested())
        elif type(event) is PeerUnchoked:
            self._fill(peer.engine)

    def peer_pumped(self, peer: PeerDriver) -> None:
        self._fill(peer.engine)

    def peer_closed(self, peer: PeerDriver, reason: str) -> None:
        if not self.done.done():
            self.done.set_exception(ConnectionError(reason))

    def peer_writable(self, peer: PeerDriver) -> None:
        pass


# ----------------------------------------------------------------------------- stream layer


class _Source(asyncio.Protocol):
    """Writes ``size`` bytes as lists of 16 KiB buffers, pausing with the transport."""

    def __init__(self, size: int) -> None:
        self.left = size
        self.block = memoryview(random.Random(4).randbytes(BLOCK_SIZE))
        self.transport: asyncio.Transport | None = None
        self.paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.set_write_buffer_limits(high=4 << 20, low=1 << 20)  # type: ignore[union-attr]
        self._pump()

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self._pump()

    def _pump(self) -> None:
        assert self.transport is not None
        while self.left > 0 and not self.paused:
            n = min(16, (self.left + BLOCK_SIZE - 1) // BLOCK_SIZE)
            self.transport.writelines([self.block] * n)
            self.left -= n * BLOCK_SIZE
        if self.left <= 0:
            self.transport.close()


class _Sink(asyncio.Protocol):
    def __init__(self, size: int) -> None:
        self.size = size
        self.received = 0
        self.done = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        if self.received >= self.size and not self.done.done():
            self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(ConnectionError(f"closed after {self.received} bytes"))


# ----------------------------------------------------------------------------- processes


async def serve(mode: str, layer: str, size: int) -> None:
    loop = asyncio.get_running_loop()
    if layer == "wire":
        seed = _Seed(size)
        factory: Any = seed.new_driver
    else:
        factory = lambda: _Source(size)  # noqa: E731
    if mode == "plain":
        server = await loop.create_server(factory, "127.0.0.1", 0)
    else:
        listener = EncryptedListener(
            factory, info_hash_for_req2=StreamKeys([INFO_HASH]), config=mse_config(mode), rng=random.Random(5)
        )
        server = await loop.create_server(listener, "127.0.0.1", 0)
    cpu0 = time.process_time()
    print(json.dumps({"event": "listening", "port": server.sockets[0].getsockname()[1]}), flush=True)
    await loop.run_in_executor(None, sys.stdin.read)
    print(json.dumps({"event": "stopped", "cpu": time.process_time() - cpu0}), flush=True)


async def fetch(mode: str, layer: str, size: int, port: int, depth: int) -> None:
    address = PeerAddress("127.0.0.1", port)
    cpu0 = time.process_time()
    start = time.perf_counter()
    if layer == "wire":
        leech = _Leech(size, depth)
        if mode == "plain":
            driver = await open_peer_connection(address, leech.new_engine(), leech)
        else:
            driver = await open_encrypted_connection(
                address, leech.new_engine(), leech, config=mse_config(mode), rng=random.Random(6)
            )
        await leech.done
        received = leech.received
        driver.close("done")
    else:
        sink = _Sink(size)
        if mode == "plain":
            await asyncio.get_running_loop().create_connection(lambda: sink, "127.0.0.1", port)
        else:
            await open_mse_stream(
                tcp_connector("127.0.0.1", port),
                lambda: sink,
                info_hash=INFO_HASH,
                config=mse_config(mode),
                rng=random.Random(6),
            )
        await sink.done
        received = sink.received
    seconds = time.perf_counter() - start
    cpu = time.process_time() - cpu0
    print(json.dumps({"event": "finished", "seconds": seconds, "bytes": received, "cpu": cpu}), flush=True)


def _run_loop(coro: Any, uvloop: bool) -> None:
    if uvloop:
        try:
            import uvloop as uv

            uv.run(coro)
            return
        except ImportError:
            pass
    asyncio.run(coro)


def _spawn(args: list[str]) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen(
        [sys.executable, "-m", "benchmarks.mse", *args],
        cwd=REPO,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def run_once(mode: str, layer: str, size: int, depth: int, uvloop: bool) -> dict[str, float]:
    flags = ["--layer", layer, "--size", str(size)] + ([] if uvloop else ["--no-uvloop"])
    server = _spawn(["_serve", "--mode", mode, *flags])
    assert server.stdout is not None and server.stdin is not None
    port = json.loads(server.stdout.readline())["port"]
    client = _spawn(["_fetch", "--mode", mode, "--port", str(port), "--depth", str(depth), *flags])
    out, _ = client.communicate(timeout=600)
    result = json.loads(out.strip().splitlines()[-1])
    server.stdin.close()
    stopped = json.loads(server.stdout.readline())
    server.wait(timeout=30)
    gb = result["bytes"] / 1e9
    return {
        "mbps": result["bytes"] / result["seconds"] / 1e6,
        "seconds": result["seconds"],
        "client_cpu_per_gb": result["cpu"] / gb,
        "server_cpu_per_gb": stopped["cpu"] / gb,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("role", nargs="?", default="bench", choices=["bench", "_serve", "_fetch"])
    parser.add_argument("--size", default="1GiB")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--mode", default="plain", choices=MODES)
    parser.add_argument("--layer", default="wire", choices=["wire", "stream"])
    parser.add_argument("--depth", type=int, default=256, help="requests in flight (wire layer)")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--no-uvloop", action="store_true")
    args = parser.parse_args(argv)
    size = parse_size(args.size)
    uvloop = not args.no_uvloop
    if args.role == "_serve":
        _run_loop(serve(args.mode, args.layer, size), uvloop)
        return 0
    if args.role == "_fetch":
        _run_loop(fetch(args.mode, args.layer, size, args.port, args.depth), uvloop)
        return 0
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    best: dict[str, dict[str, float]] = {}
    for round_no in range(args.repeat):
        for mode in modes:
            r = run_once(mode, args.layer, size, args.depth, uvloop)
            print(
                f"round {round_no + 1} {mode:10s} {r['mbps']:8.1f} MB/s  client {r['client_cpu_per_gb']:5.2f} "
                f"CPU s/GB  server {r['server_cpu_per_gb']:5.2f} CPU s/GB",
                flush=True,
            )
            if mode not in best or r["mbps"] > best[mode]["mbps"]:
                best[mode] = r
    print(f"\nbest of {args.repeat}, {args.size} over loopback, layer={args.layer}, uvloop={uvloop}:")
    print(f"{'mode':10s} {'MB/s':>8s} {'ratio':>6s} {'client s/GB':>12s} {'server s/GB':>12s}")
    base = best.get("plain", {}).get("mbps")
    for mode, r in best.items():
        ratio = f"{r['mbps'] / base:6.2f}" if base else "     -"
        print(
            f"{mode:10s} {r['mbps']:8.1f} {ratio} {r['client_cpu_per_gb']:12.2f} {r['server_cpu_per_gb']:12.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
