"""Tracker interop on loopback: our client against a real opentracker, libtorrent against our tracker."""

from __future__ import annotations

import asyncio
import hashlib
import socket
from pathlib import Path

import pytest
from conftest import require_binary, require_libtorrent

from torrentgoat import bencode
from torrentgoat.aio.tracker import announce, scrape
from torrentgoat.errors import TrackerError
from torrentgoat.primitives import InfoHash, PeerAddress, PeerId
from torrentgoat.testing.timing import scaled
from torrentgoat.testing.tracker import LoopbackTracker, OpenTracker, free_port
from torrentgoat.tracker.messages import AnnounceEvent, AnnounceRequest, TrackerFailure

pytestmark = pytest.mark.interop

ALICE = PeerId(b"-TG0001-aliceaaaaaaa")
BOB = PeerId(b"-TG0001-bobbbbbbbbbb")


def req(info_hash: InfoHash, peer: PeerId, port: int, **kw: object) -> AnnounceRequest:
    return AnnounceRequest(info_hash=info_hash, peer_id=peer, port=port, left=10, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("transport", ["http", "udp"])
async def test_opentracker_returns_a_peer_announced_by_another_client(transport: str) -> None:
    binary = require_binary("opentracker")
    info_hash = InfoHash(hashlib.sha1(f"torrentgoat opentracker {transport}".encode()).digest())
    async with OpenTracker(binary, [info_hash]) as tracker:
        url = tracker.http_url if transport == "http" else tracker.udp_url
        await announce(url, req(info_hash, ALICE, 40001, event=AnnounceEvent.STARTED), timeout=10)
        reply = await announce(url, req(info_hash, BOB, 40002, event=AnnounceEvent.STARTED), timeout=10)
        assert PeerAddress("127.0.0.1", 40001) in reply.peers
        assert reply.interval is not None and reply.interval > 0
        assert (reply.complete or 0) + (reply.incomplete or 0) == 2
        stats = await scrape(url, [info_hash], timeout=10)
        found = stats.get(info_hash)
        assert found is not None and found.incomplete == 2
        await announce(url, req(info_hash, ALICE, 40001, event=AnnounceEvent.STOPPED), timeout=10)
        after = await announce(url, req(info_hash, BOB, 40002), timeout=10)
        assert PeerAddress("127.0.0.1", 40001) not in after.peers
        not_listed = InfoHash(b"\xee" * 20)
        if transport == "http":
            with pytest.raises(TrackerFailure, match="not authorized"):
                await announce(url, req(not_listed, ALICE, 40001), timeout=10)
        else:
            # Measured: over UDP opentracker refuses a hash outside its whitelist with a bare 8-byte
            # announce header (no error packet); we report it as a malformed reply.
            with pytest.raises(TrackerError, match="shorter than 20"):
                await announce(url, req(not_listed, ALICE, 40001), timeout=10)


def _make_torrent(directory: Path, announce_url: str) -> tuple[bytes, InfoHash]:
    data = bytes(range(256)) * 64  # 16 KiB, one piece
    info = {
        "name": "tracker-interop.bin",
        "piece length": 16384,
        "length": len(data),
        "pieces": hashlib.sha1(data).digest(),
    }
    raw_info = bencode.encode(info)
    return bencode.encode({"announce": announce_url, "info": info}), InfoHash(hashlib.sha1(raw_info).digest())


async def _handshake_from_libtorrent(
    server_port: int, info_hash: InfoHash, seen: asyncio.Future[bytes]
) -> asyncio.Server:
    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            handshake = await reader.readexactly(68)
            if not seen.done() and handshake[28:48] == info_hash.raw:
                seen.set_result(handshake[48:68])
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(on_connect, "127.0.0.1", server_port)


@pytest.mark.parametrize("transport", ["http", "udp"])
async def test_libtorrent_announces_to_our_tracker_and_peers_flow_both_ways(
    transport: str, tmp_path: Path
) -> None:
    lt = require_libtorrent()
    async with LoopbackTracker(interval=1800) as tracker:
        url = tracker.http_url if transport == "http" else tracker.udp_url
        torrent, info_hash = _make_torrent(tmp_path, url)
        # Our peer announces first and listens, so the tracker hands it to libtorrent.
        loop = asyncio.get_running_loop()
        seen: asyncio.Future[bytes] = loop.create_future()
        our_port = free_port()
        server = await _handshake_from_libtorrent(our_port, info_hash, seen)
        await announce(url, req(info_hash, ALICE, our_port, event=AnnounceEvent.STARTED), timeout=10)

        lt_port = free_port()
        holder = [
            lt.session(
                {
                    "listen_interfaces": f"127.0.0.1:{lt_port}",
                    "max_retry_port_bind": 0,
                    "listen_system_port_fallback": False,
                    "enable_dht": False,
                    "enable_lsd": False,
                    "enable_upnp": False,
                    "enable_natpmp": False,
                    "enable_outgoing_utp": False,
                    "enable_incoming_utp": False,
                    "out_enc_policy": 2,  # pe_disabled: a plain handshake we can read
                    "in_enc_policy": 1,
                    "alert_mask": 0,
                    "stop_tracker_timeout": 1,  # bounds the teardown below
                }
            )
        ]
        try:
            params = lt.add_torrent_params()
            params.ti = lt.torrent_info(lt.bdecode(torrent))
            params.save_path = str(tmp_path / "lt")
            holder[0].add_torrent(params)
            record = await tracker.wait_for(lambda a: a.request.peer_id.raw.startswith(b"-LT"), timeout=20)
            assert record.transport == transport
            assert record.request.info_hash == info_hash
            assert record.request.event is AnnounceEvent.STARTED
            assert record.request.port == lt_port and record.request.left == 16384
            # tracker -> libtorrent: it dials the peer it got from our tracker.
            lt_peer_id = await asyncio.wait_for(seen, scaled(20))
            assert lt_peer_id.startswith(b"-LT")  # libtorrent 2 uses a fresh peer id per connection
            # tracker -> us: we get libtorrent's address.
            reply = await announce(url, req(info_hash, BOB, 40003), timeout=10)
            assert PeerAddress("127.0.0.1", lt_port) in reply.peers
        finally:
            server.close()
            await server.wait_closed()
            # Drop libtorrent off the event loop: its destructor sends "stopped" to our tracker
            # (served by this loop) and blocks until that is answered.
            await asyncio.to_thread(holder.clear)


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
