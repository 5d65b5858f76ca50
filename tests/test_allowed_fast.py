"""BEP 6 allowed-fast pieces sent by a torrentgoat seed on 127.0.0.1.

Shown here: a starting peer with the fast extension is offered exactly the canonical allowed-fast set
for its address (the BEP 6 algorithm, k = 10) and can fetch a block of one of those pieces while
still choked; a peer that already holds many pieces, a peer without the fast extension and a peer of a
super-seeding seed are offered nothing.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from torrentgoat.bitfield import Bitfield
from torrentgoat.session import Session
from torrentgoat.testing.hostile import RawPeer
from torrentgoat.testing.swarm import MiB, Payload, describe, loopback_config, make_file_payload
from torrentgoat.testing.timing import scaled
from torrentgoat.torrent import Torrent, TorrentConfig
from torrentgoat.wire import codec
from torrentgoat.wire.fast import allowed_fast_set
from torrentgoat.wire.messages import AllowedFast, BitfieldMsg, HaveNone, Piece, Request, Unchoke

EXT_FAST = codec.make_reserved(extensions=True, fast=True)
PLAIN = codec.make_reserved(extensions=False, fast=False)


async def _seed(session: Session, payload: Payload, config: TorrentConfig | None = None) -> Torrent:
    torrent = await session.add(payload.metainfo, payload.root, seed=True, config=config)
    try:
        await asyncio.wait_for(torrent.wait_complete(), scaled(20))
    except TimeoutError:
        raise AssertionError(describe(torrent)) from None
    return torrent


async def _offered(peer: RawPeer, wait: float = 1.0) -> set[int]:
    """AllowedFast indices received until the connection is quiet for ``wait`` seconds."""
    got: set[int] = set()
    while True:
        try:
            msg = await peer.read_message(timeout=wait)
        except TimeoutError:
            return got
        if msg is None:
            return got
        if isinstance(msg, AllowedFast):
            got.add(msg.index)


def _payload(tmp_path: Path) -> Payload:
    return make_file_payload(tmp_path, 12 * MiB, piece_length=64 * 1024, seed=4)  # 192 pieces


async def test_starting_peer_gets_the_canonical_set_and_a_block_while_choked(tmp_path: Path) -> None:
    payload = _payload(tmp_path)
    info = payload.metainfo.info
    expected = set(allowed_fast_set("127.0.0.1", info.info_hash, info.num_pieces, 10))
    async with Session(loopback_config()) as session:
        await _seed(session, payload)
        async with await RawPeer.connect("127.0.0.1", session.listen_port) as peer:
            await peer.handshake(info.info_hash, reserved=EXT_FAST)
            await peer.send(HaveNone())  # not interested: the seed has no reason to unchoke us
            offered = await _offered(peer)
            assert offered == expected and len(offered) == 10
            index = min(offered)
            await peer.send(Request(index=index, begin=0, length=16384))
            reply = await peer.read_until((Piece, Unchoke))
            assert isinstance(reply, Piece) and reply.index == index  # served while choked


async def test_no_offer_to_advanced_plain_or_super_seeded_peers(tmp_path: Path) -> None:
    payload = _payload(tmp_path)
    info = payload.metainfo.info
    half = Bitfield.from_indices(info.num_pieces, range(0, info.num_pieces, 2))
    async with Session(loopback_config()) as session:
        await _seed(session, payload)
        async with await RawPeer.connect("127.0.0.1", session.listen_port) as peer:
            await peer.handshake(info.info_hash, reserved=EXT_FAST)
            await peer.send(BitfieldMsg(data=half.to_bytes()))
            assert await _offered(peer) == set()  # not a starting peer
        async with await RawPeer.connect("127.0.0.1", session.listen_port) as peer:
            await peer.handshake(info.info_hash, reserved=PLAIN)
            assert await _offered(peer) == set()  # no fast extension: no allowed fast (BEP 6)
    super_seed = TorrentConfig(seed=True, super_seed=True)
    async with Session(loopback_config(torrent=super_seed)) as session:
        await _seed(session, payload, super_seed)
        async with await RawPeer.connect("127.0.0.1", session.listen_port) as peer:
            await peer.handshake(info.info_hash, reserved=EXT_FAST)
            await peer.send(HaveNone())
            assert await _offered(peer) == set()  # would reveal pieces
