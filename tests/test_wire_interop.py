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
from torrentgoat.primitives import BLOCK_SIZE, InfoHash, PeerId
from torrentgoat.wire.connection import PeerConnection, PieceGeometry
from torrentgoat.wire.events import (
    BitfieldReceived,
    BlockReceived,
    Event,
    ExtensionHandshakeReceived,
    HandshakeReceived,
    MetadataPieceReceived,
    PeerUnchoked,
)
from torrentgoat.wire.messages import Interested, MetadataRequest, Request
from torrentgoat.wire.metadata import MetadataFetcher

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
    deadline = time.monotonic() + 5
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
            data = await asyncio.wait_for(reader.read(65536), timeout=5)
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
        events = asyncio.run(asyncio.wait_for(talk(port, info_hash, payload), timeout=8))
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
