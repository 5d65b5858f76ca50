"""BEP 19 web seeds for v2 and hybrid torrents (BEP 52), against the loopback :class:`FakeHub`.

A v2 or hybrid torrent aligns every file to a piece: the gap after a file is a pad (implied in v2, BEP 47
``.pad/N`` entries in a hybrid's v1 half).  A web seed serves files, so each piece maps to ranges of the
files it covers and the pad bytes are zeros filled in locally -- never asked of the server.  Pieces are
checked against the merkle tree (v2) or both halves (hybrid).

* ``.torrent`` with a ``url-list``, web seed alone: every real byte is served exactly once, in ranges
  inside each file, and no ``.pad`` path is ever requested;
* a v2 magnet with ``ws=``: the metadata and the piece layers come from a peer (BEP 9, BEP 52 hash
  requests: a web seed has neither), then the web seed and the peer share the pieces.
"""

from __future__ import annotations

import dataclasses
import urllib.parse
from pathlib import Path

import pytest

from tests.test_webseed import (
    COMMIT,
    PIECE,
    REPO,
    _assert_ranges_tile_files,
    _complete,
    _model,
    _real,
    _seeder,
    _wired_source,
)
from torrentgoat.creation import create_torrent
from torrentgoat.infohashes import TorrentFormat
from torrentgoat.magnet import Magnet
from torrentgoat.metainfo import Metainfo
from torrentgoat.primitives import PeerAddress
from torrentgoat.session import Session
from torrentgoat.testing.hub import FakeHub
from torrentgoat.testing.swarm import MiB, assert_same_files, files_on_disk, loopback_config


def _v2_snapshot(folder: Path, hub: FakeHub, fmt: TorrentFormat) -> Metainfo:
    return create_torrent(
        folder,
        name=COMMIT,
        piece_length=PIECE,
        web_seeds=[hub.resolve_url(REPO)],
        creation_date=None,
        format=fmt,
    )


@pytest.mark.parametrize("fmt", ["v2", "hybrid"])
async def test_download_from_a_web_seed_alone(tmp_path: Path, fmt: TorrentFormat) -> None:
    folder = _model(tmp_path)
    async with FakeHub() as hub:
        hub.add_repo(REPO, COMMIT, folder)
        metainfo = _v2_snapshot(folder, hub, fmt)
        info = metainfo.info
        assert info.format == fmt and any(f.pad for f in info.files)
        for entry in info.files:  # every real file starts a piece (BEP 52)
            assert entry.pad or entry.length == 0 or entry.offset % info.piece_length == 0
        async with Session(loopback_config(seed=1)) as session:
            torrent = await session.add(metainfo, tmp_path / "down")
            source = _wired_source(torrent)
            await _complete(torrent)
        assert torrent.error is None and torrent.hash_failures == 0
        assert source.dropped() == {}
    assert_same_files(metainfo, folder.parent, tmp_path / "down")
    assert not any(".pad" in p for p in files_on_disk(tmp_path / "down"))
    assert not any(".pad" in r.path for r in hub.requests)
    assert {r.status for r in hub.requests} <= {206, 302}
    _assert_ranges_tile_files(hub, info)
    assert hub.bytes_served() == sum(_real(info).values())


async def test_v2_magnet_with_a_web_seed_and_a_peer(tmp_path: Path) -> None:
    folder = _model(tmp_path, shard_size=3 * MiB)
    async with FakeHub(response_delay=0.02) as hub:
        hub.add_repo(REPO, COMMIT, folder)
        metainfo = _v2_snapshot(folder, hub, "v2")
        async with (
            Session(loopback_config(seed=3, upload_limit=1 * MiB)) as seeding,
            Session(loopback_config(seed=4)) as session,
        ):
            seed_torrent = await _seeder(seeding, metainfo, folder)
            magnet = dataclasses.replace(
                Magnet.from_metainfo(metainfo), peers=(PeerAddress("127.0.0.1", seeding.listen_port),)
            )
            uri = magnet.to_uri()
            assert "btih" not in uri and f"ws={urllib.parse.quote(metainfo.web_seeds[0], safe='')}" in uri
            torrent = await session.add(uri, tmp_path / "down")
            source = _wired_source(torrent)
            await _complete(torrent, 40)
            assert torrent.info is not None and torrent.info.v2 is not None
            assert torrent.info.v2.has_piece_layers
            from_peer = seed_torrent.uploaded
        from_web = hub.bytes_served()
    assert torrent.hash_failures == 0 and source.dropped() == {}
    assert from_web > 0 and from_peer > 0, f"web seed sent {from_web}, the peer {from_peer}"
    assert not any(".pad" in r.path for r in hub.requests)
    assert_same_files(metainfo, folder.parent, tmp_path / "down")
