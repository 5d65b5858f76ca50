"""Interop: our PeerConnection engine, pumped by a minimal asyncio loop, against a libtorrent seed.

Checks the BEP 3 handshake, BEP 10 extension handshake, the seed's opening message (BEP 6
``have all``), a BEP 9 metadata fetch, and one block transfer.  Not a production driver.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require_libtorrent
from torrentgoat.bitfield import Bitfield
from torrentgoat.errors import RemoteProtocolError
from torrentgoat.primitives import BLOCK_SIZE, InfoHash, PeerId
from torrentgoat.testing.timing import scaled
from torrentgoat.wire.connection import PeerConnection, PieceGeometry
from torrentgoat.wire.events import (
    BitfieldReceived,
    BlockReceived,
    BlockRequested,
    Event,
    ExtensionHandshakeReceived,
    HandshakeReceived,
    MetadataPieceReceived,
    MetadataRequested,
    PeerInterested,
    PeerUnchoked,
)
from torrentgoat.wire.messages import Interested, MetadataRequest, Request, Unchoke
from torrentgoat.wire.metadata import MetadataFetcher, MetadataServer

pytestmark = pytest.mark.interop

PIECE_LENGTH = 32 * 1024
FILE_SIZE = 5 * PIECE_LENGTH + 1234


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_seed(lt: Any, directory: Path, payload: bytes) -> tuple[Any, Any, bytes, int]:
    (directory / "model.bin").write_bytes(payload)
    creator = lt.create_torrent(lt.list_files(str(directory / "model.bin")), PIECE_LENGTH)
    lt.set_piece_hashes(creator, str(directory))
    info = lt.torrent_info(creator.generate())
    port = free_port()
    session = lt.session(
        {
            "listen_interfaces": f"127.0.0.1:{port}",
            "max_retry_port_bind": 0,
            "listen_system_port_fallback": False,
            "enable_dht": False,
            "enable_lsd": False,
            "enable_upnp": False,
            "enable_natpmp": False,
            "enable_outgoing_utp": False,
            "enable_incoming_utp": False,
            "alert_mask": 0,
        }
    )
    params = lt.add_torrent_params()
    params.ti = info
    params.save_path = str(directory)
    handle = session.add_torrent(params)
    deadline = time.monotonic() + scaled(5)
    while not handle.status().is_seeding:
        assert time.monotonic() < deadline, "libtorrent seed did not finish checking"
        time.sleep(0.05)
    raw_info = bytes(info.info_section())
    return session, handle, raw_info, port


async def talk(port: int, info_hash: InfoHash, payload: bytes) -> list[Event]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    loop = asyncio.get_running_loop()
    conn = PeerConnection(
        peer_id=PeerId.generate(random.Random(1)),
        now=loop.time(),
        info_hash=info_hash,
        peer_ip=bytes([127, 0, 0, 1]),
    )
    fetcher = MetadataFetcher(info_hash)
    events: list[Event] = []
    block: bytes | None = None
    requested = False

    def maybe_request() -> None:
        nonlocal requested
        if not requested and conn.geometry is not None and conn.can_request(conn.geometry.num_pieces - 1):
            last = conn.geometry.num_pieces - 1
            conn.send(Request(index=last, begin=0, length=min(BLOCK_SIZE, conn.geometry.piece_size(last))))
            requested = True

    try:
        while block is None:
            writer.write(conn.data_to_send())
            data = await asyncio.wait_for(reader.read(65536), timeout=scaled(5))
            assert data, "libtorrent closed the connection"
            conn.receive_data(data)
            while (event := conn.next_event()) is not None:
                events.append(event)
                match event:
                    case ExtensionHandshakeReceived(handshake=hs):
                        assert hs.metadata_size is not None and fetcher.add_peer("lt", hs.metadata_size)
                        while (piece := fetcher.next_request("lt", loop.time())) is not None:
                            conn.send(MetadataRequest(piece=piece))
                    case MetadataPieceReceived(piece=piece, total_size=total, data=chunk):
                        raw = fetcher.on_data("lt", piece, total, chunk)
                        if raw is not None:
                            num = (len(payload) + PIECE_LENGTH - 1) // PIECE_LENGTH
                            geometry = PieceGeometry(
                                num_pieces=num, piece_length=PIECE_LENGTH, total_length=len(payload)
                            )
                            conn.set_metadata(geometry, Bitfield(num), metadata_size=len(raw))
                            conn.send(Interested())
                            maybe_request()
                    case PeerUnchoked():
                        maybe_request()
                    case BlockReceived(data=got):
                        block = bytes(got)
        assert block == payload[(len(payload) // PIECE_LENGTH) * PIECE_LENGTH :][:BLOCK_SIZE]
        assert fetcher.result is not None and hashlib.sha1(fetcher.result).digest() == info_hash.raw
    finally:
        writer.close()
    return events


def test_libtorrent_seed_handshake_metadata_and_block(tmp_path: Path) -> None:
    lt = require_libtorrent()
    payload = os.urandom(FILE_SIZE)
    session, handle, raw_info, port = start_seed(lt, tmp_path, payload)
    try:
        info_hash = InfoHash(hashlib.sha1(raw_info).digest())
        events = asyncio.run(asyncio.wait_for(talk(port, info_hash, payload), timeout=scaled(8)))
    finally:
        session.remove_torrent(handle)
        del session
    kinds = [type(e) for e in events]
    assert kinds[0] is HandshakeReceived
    handshake = events[0]
    assert isinstance(handshake, HandshakeReceived)
    assert handshake.handshake.supports_extensions and handshake.handshake.supports_fast
    ext = next(e for e in events if isinstance(e, ExtensionHandshakeReceived))
    assert "ut_metadata" in ext.handshake.m and ext.handshake.metadata_size == len(raw_info)
    have = [e for e in events if isinstance(e, BitfieldReceived)]
    assert len(have) == 1 and have[0].bitfield.complete  # libtorrent's have-all, resolved after metadata


async def serve_one(
    server_ready: asyncio.Future[int],
    info_hash: InfoHash,
    raw_info: bytes,
    payload: bytes,
    done: asyncio.Event,
) -> dict[str, int]:
    """Accept one connection and seed ``payload`` (metadata included) until ``done`` is set."""
    loop = asyncio.get_running_loop()
    num = (len(payload) + PIECE_LENGTH - 1) // PIECE_LENGTH
    geometry = PieceGeometry(num_pieces=num, piece_length=PIECE_LENGTH, total_length=len(payload))
    metadata = MetadataServer(raw_info)
    view = memoryview(payload)
    stats = {"blocks": 0, "metadata": 0, "refused": 0}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = PeerConnection(peer_id=PeerId.generate(random.Random(2)), now=loop.time())
        try:
            while not done.is_set():
                try:
                    data = await asyncio.wait_for(reader.read(1 << 16), timeout=0.2)
                except TimeoutError:
                    continue
                if not data:
                    break
                conn.receive_data(data)
                while (event := conn.next_event()) is not None:
                    match event:
                        case HandshakeReceived(handshake=hs):
                            assert hs.info_hash == info_hash
                            conn.accept(
                                info_hash=info_hash,
                                have=Bitfield(num, full=True),
                                geometry=geometry,
                                metadata_size=len(raw_info),
                            )
                        case PeerInterested():
                            conn.send(Unchoke())
                        case BlockRequested(index=index, begin=begin, length=length):
                            start = index * PIECE_LENGTH + begin
                            assert conn.send_piece(index, begin, view[start : start + length])
                            stats["blocks"] += 1
                        case MetadataRequested(piece=piece):
                            conn.send(metadata.respond(piece))
                            stats["metadata"] += 1
                writer.writelines(conn.buffers_to_send())
                await writer.drain()
        except RemoteProtocolError:
            # libtorrent tries an encrypted handshake (MSE) first, then falls back to plain BEP 3
            stats["refused"] += 1
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    server_ready.set_result(server.sockets[0].getsockname()[1])
    async with server:
        await done.wait()
    return stats


def test_libtorrent_downloads_magnet_from_our_engine(tmp_path: Path) -> None:
    """libtorrent joins by magnet, fetches the metadata from us (BEP 9) and downloads every block."""
    lt = require_libtorrent()
    payload = os.urandom(40 * PIECE_LENGTH + 777)
    seed_dir = tmp_path / "seed"
    seed_dir.mkdir()
    (seed_dir / "model.bin").write_bytes(payload)
    creator = lt.create_torrent(lt.list_files(str(seed_dir / "model.bin")), PIECE_LENGTH)
    lt.set_piece_hashes(creator, str(seed_dir))
    raw_info = bytes(lt.torrent_info(creator.generate()).info_section())
    info_hash = InfoHash(hashlib.sha1(raw_info).digest())
    leech_dir = tmp_path / "leech"
    leech_dir.mkdir()
    session = lt.session(
        {
            "listen_interfaces": f"127.0.0.1:{free_port()}",
            "max_retry_port_bind": 0,
            "listen_system_port_fallback": False,
            "enable_dht": False,
            "enable_lsd": False,
            "enable_upnp": False,
            "enable_natpmp": False,
            "enable_outgoing_utp": False,
            "enable_incoming_utp": False,
            "alert_mask": 0,
        }
    )

    async def main() -> dict[str, int]:
        ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        done = asyncio.Event()
        task = asyncio.create_task(serve_one(ready, info_hash, raw_info, payload, done))
        port = await ready
        params = lt.parse_magnet_uri(f"magnet:?xt=urn:btih:{info_hash.hex}")
        params.save_path = str(leech_dir)
        handle = session.add_torrent(params)
        handle.connect_peer(("127.0.0.1", port))
        try:
            while not handle.status().is_seeding:
                await asyncio.sleep(0.05)
        finally:
            done.set()
            stats = await task
            session.remove_torrent(handle)
        return stats

    stats = asyncio.run(asyncio.wait_for(main(), timeout=scaled(9)))
    name = lt.torrent_info(lt.bdecode(b"d4:info" + raw_info + b"e")).name()
    assert (leech_dir / name).read_bytes() == payload
    assert stats["metadata"] >= 1 and stats["blocks"] >= len(payload) // BLOCK_SIZE
