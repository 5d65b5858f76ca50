"""Collections from the command line (subprocesses on loopback, a local DHT in the test) and the demo."""

from __future__ import annotations

import asyncio
import json
import os
import pickle
import signal
import sys
from pathlib import Path

import pytest

from tests.test_collection_e2e import local_dht
from torrentgoat.testing.shards import write_model_folder
from torrentgoat.testing.timing import scaled

ROOT = Path(__file__).resolve().parent.parent


async def cli(*args: str, timeout: float = 60.0) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "torrentgoat",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
        env={**os.environ, "TORRENTGOAT_NO_UVLOOP": "1"},
    )
    out, err = await asyncio.wait_for(proc.communicate(), scaled(timeout))
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def net(port: int) -> list[str]:
    return [
        "--listen",
        "127.0.0.1",
        "--listen6",
        "",
        "--port",
        "0",
        "--dht-bootstrap",
        f"127.0.0.1:{port}",
        "--no-trackers",
        "-q",
    ]


@pytest.mark.slow
async def test_keygen_build_publish_get_ls_update(tmp_path: Path) -> None:
    key = tmp_path / "publisher.key"
    code, out, err = await cli("keygen", "-o", str(key))
    assert code == 0, err
    public = out.strip()
    alpha = write_model_folder(tmp_path / "src" / "alpha", shards=2, shard_size=256 * 1024, seed=1)
    pickled = tmp_path / "src" / "pickled"
    pickled.mkdir()
    (pickled / "model.pt").write_bytes(pickle.dumps([1, 2, 3], protocol=4))
    commit = "c0" * 20
    pub = tmp_path / "pub"
    code, _, err = await cli(
        "collection", "build", "goats", str(alpha), f"pickled={pickled}", "-o", str(pub), "--key", str(key),
        "--hf", f"alpha=org/alpha@{commit}", "--license", "alpha=mit", "--piece-size", "64KiB",
        "--hub", "http://127.0.0.1:9",
    )  # fmt: skip
    assert code == 0, err
    assert "built goats seq 1 (2 models)" in err

    async with local_dht() as nodes:
        port = nodes[0].address.port
        publisher = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "torrentgoat", "publish", str(pub), "--key", str(key), *net(port),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT,
        )  # fmt: skip
        try:
            assert publisher.stdout is not None
            line = await asyncio.wait_for(publisher.stdout.readline(), scaled(30))
            magnet = line.decode().strip()
            assert magnet == f"magnet:?xs=urn:btpk:{public}&s={b'goats'.hex()}"

            # plain ``get`` hands a collection's btpk magnet to the collection flow
            code, _, err = await cli("get", magnet, "-o", str(tmp_path / "c"), "--model", "alpha", *net(port))
            assert code == 0, err
            assert (tmp_path / "c" / "alpha" / "model-00001-of-00002.safetensors").is_file()

            # everything: the pickle model is refused, exit code 1 with the reason
            code, _, err = await cli("collection", "get", magnet, "-o", str(tmp_path / "d"), *net(port))
            assert code == 1
            assert "model.pt: refusing pickle-based weights" in err and "--allow-pickle" in err

            code, out, err = await cli("ls", str(tmp_path / "c"))
            assert code == 0, err
            assert "collection goats  seq 1" in out
            assert f"magnet {magnet}" in out
            rows = {line.split()[0]: line for line in out.splitlines()[3:]}
            assert "installed" in rows["alpha"] and "org/alpha@c0c0c0c0c0" in rows["alpha"]
            assert "installed" not in rows["pickled"]
            code, out, _ = await cli("ls", magnet, "--json", *net(port))
            doc = json.loads(out)
            assert doc["seq"] == 1 and [m["name"] for m in doc["models"]] == ["alpha", "pickled"]
            assert doc["models"][0]["license"] == "mit"

            code, _, err = await cli("update", str(tmp_path / "c"), *net(port))
            assert code == 0, err
            assert "seq 1 is the version already held" in err
            code, _, err = await cli("collection", "verify", str(tmp_path / "c"))
            assert code == 0 and "alpha: OK" in err

            # a magnet of another key: refused with exit code 2, nothing changed
            other = "ab" * 32
            code, _, err = await cli(
                "collection", "get", f"magnet:?xs=urn:btpk:{other}&s={b'goats'.hex()}", "-o",
                str(tmp_path / "c"), *net(port),
            )  # fmt: skip
            assert code == 2 and "refusing a magnet for key" in err

            # a damaged installed file is reported by verify
            shard = tmp_path / "c" / "alpha" / "model-00002-of-00002.safetensors"
            data = bytearray(shard.read_bytes())
            data[-1] ^= 1
            shard.write_bytes(bytes(data))
            code, _, err = await cli("collection", "verify", str(tmp_path / "c"))
            assert code == 1 and "SHA-256" in err
        finally:
            publisher.send_signal(signal.SIGTERM)
            await asyncio.wait_for(publisher.wait(), scaled(30))
        assert publisher.returncode == 0


async def test_demo_runs_the_collection_story(tmp_path: Path) -> None:
    code, _, err = await cli("demo", "--dir", str(tmp_path / "demo"), "--shard-size", "1MiB", timeout=120)
    assert code == 0, err
    for text in (
        "[1/8]",
        "published seq 1: magnet:?xs=urn:btpk:",
        "consumer A: update -- only the changed blocks",
        "reused from the held version",
        "of BEP 52 hashes) for",
        "pieces verified locally",
        "legacy-pt: refused",
        "seq 1 but seq 2 is already held",
        "manifest signature is not valid",
        "consumer A's directory is unchanged",
        "demo: OK",
    ):
        assert text in err, text


async def test_get_of_a_btpk_magnet_naming_a_plain_torrent_downloads_it(tmp_path: Path) -> None:
    """BEP 46 for any torrent still works: only collection manifest torrents take the collection path."""
    from tests.test_collection_e2e import session_config
    from torrentgoat.creation import create_torrent
    from torrentgoat.dht.items import SigningKey as DHTKey
    from torrentgoat.dht.items import btpk_magnet
    from torrentgoat.session import Session

    folder = write_model_folder(tmp_path / "seed" / "plain", shards=1, shard_size=128 * 1024)
    metainfo = create_torrent(folder, piece_length=16 * 1024)
    key = DHTKey(b"\x41" * 32)
    async with local_dht() as nodes, Session(session_config(nodes[0], seed=1)) as seeder:
        torrent = await seeder.add(metainfo, tmp_path / "seed", seed=True)
        await torrent.wait_complete()
        await nodes[1].announce(metainfo.info_hash, seeder.listen_port)
        await nodes[1].publish_torrent(key, metainfo.info_hash, salt=b"plain")
        magnet = btpk_magnet(key.public_key, b"plain")
        code, _, err = await cli("get", magnet, "-o", str(tmp_path / "out"), *net(nodes[0].address.port))
        assert code == 0, err
    for name in os.listdir(folder):
        assert (tmp_path / "out" / "plain" / name).read_bytes() == (folder / name).read_bytes()
