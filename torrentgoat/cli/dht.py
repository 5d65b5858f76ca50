"""``torrentgoat dht ...``: talk to the mainline DHT directly.

    torrentgoat dht put --key KEYFILE [--salt S] --info-hash HEX [--seq N] --dht-bootstrap HOST:PORT ...
    torrentgoat dht get PUBKEY_HEX [--salt S] --dht-bootstrap HOST:PORT ...
    torrentgoat dht put-immutable VALUE        torrentgoat dht get-immutable TARGET_HEX
    torrentgoat dht get-peers INFO_HASH        torrentgoat dht announce INFO_HASH --peer-port P

The node's options are those of every command that runs a session: ``--listen`` (IPv4 address),
``--port`` (UDP port, default any), ``--dht-state`` (node cache file), ``--dht-bootstrap``.
``put`` publishes a BEP 46 pointer ``{"ih": info-hash}`` under the key (and salt); ``--seq``
defaults to one more than the item currently found, else 1.  ``get`` prints the info-hash and the
``magnet:?xs=urn:btpk:...`` link.  ``--dht-bootstrap`` is repeatable and defaults to
:data:`torrentgoat.config.DEFAULT_DHT_ROUTERS`; salts are given as text (UTF-8).  The command's
node is read-only (BEP 43): it queries but is not put in other nodes' routing tables.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torrentgoat.cli._run import run
from torrentgoat.cli.keygen import read_key_file
from torrentgoat.config import DEFAULT_DHT_ROUTERS
from torrentgoat.errors import ConfigError, DHTError
from torrentgoat.primitives import InfoHash, PeerAddress

if TYPE_CHECKING:  # the DHT node is imported when an action runs, not to parse options
    from torrentgoat.aio.dht import DHTNode

__all__ = ["ORDER", "add_dht_arguments", "dht_routers", "register"]

ORDER = 85


def dht_routers(args: argparse.Namespace) -> list[PeerAddress]:
    """The routers named by ``--dht-bootstrap`` (repeatable), else DEFAULT_DHT_ROUTERS."""
    if args.dht_bootstrap:
        return [PeerAddress.parse(text) for text in args.dht_bootstrap]
    return [PeerAddress(host, port) for host, port in DEFAULT_DHT_ROUTERS]


def _with_node(args: argparse.Namespace, body: Callable[[DHTNode], Awaitable[int]]) -> int:
    from torrentgoat.aio.dht import DHTNode
    from torrentgoat.dht.engine import DHTConfig

    async def main() -> int:
        # A short-lived node: BEP 43 read-only, so others do not keep a soon-dead node in their tables.
        config = DHTConfig(read_only=True)
        async with DHTNode(
            host=args.listen, port=args.port, node_cache=args.dht_state, config=config
        ) as node:
            await node.bootstrap(dht_routers(args))
            return await body(node)

    return run(main())


def _public_key(text: str) -> bytes:
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise ConfigError(f"public key is not hex: {text!r}") from None
    if len(raw) != 32:
        raise ConfigError(f"an ed25519 public key is 32 bytes (64 hex digits), got {len(raw)}")
    return raw


def _target(text: str) -> bytes:
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise ConfigError(f"target is not hex: {text!r}") from None
    if len(raw) != 20:
        raise ConfigError(f"a DHT target is 20 bytes (40 hex digits), got {len(raw)}")
    return raw


def _put(args: argparse.Namespace) -> int:
    from torrentgoat.dht.items import btpk_magnet

    key = read_key_file(Path(args.key))
    info_hash = InfoHash.parse(args.info_hash)
    salt = args.salt.encode()

    async def body(node: DHTNode) -> int:
        item = await node.publish_torrent(key, info_hash, salt=salt, seq=args.seq)
        print(f"public key: {item.public_key.hex()}")
        print(f"seq:        {item.seq}")
        print(f"target:     {item.target.hex()}")
        print(f"magnet:     {btpk_magnet(item.public_key, salt)}")
        return 0

    return _with_node(args, body)


def _get(args: argparse.Namespace) -> int:
    from torrentgoat.dht.items import btpk_magnet, parse_info_hash_value

    public_key = _public_key(args.public_key)
    salt = args.salt.encode()

    async def body(node: DHTNode) -> int:
        item = await node.get_mutable(public_key, salt)
        if item is None:
            raise DHTError(f"no item found for key {public_key.hex()} (salt {args.salt!r})")
        info_hash = parse_info_hash_value(item.value)
        print(info_hash.hex)
        print(btpk_magnet(public_key, salt))
        print(f"seq {item.seq}")
        return 0

    return _with_node(args, body)


def _put_immutable(args: argparse.Namespace) -> int:
    async def body(node: DHTNode) -> int:
        target = await node.put_immutable(args.value.encode())
        print(target.hex())
        return 0

    return _with_node(args, body)


def _get_immutable(args: argparse.Namespace) -> int:
    target = _target(args.target)

    async def body(node: DHTNode) -> int:
        value = await node.get_immutable(target)
        if value is None:
            raise DHTError(f"no immutable item found for target {target.hex()}")
        if isinstance(value, bytes):
            print(value.decode("utf-8", "backslashreplace"))
        else:
            print(repr(value))
        return 0

    return _with_node(args, body)


def _get_peers(args: argparse.Namespace) -> int:
    info_hash = InfoHash.parse(args.info_hash)

    async def body(node: DHTNode) -> int:
        for peer in await node.get_peers(info_hash):
            print(peer)
        return 0

    return _with_node(args, body)


def _announce(args: argparse.Namespace) -> int:
    info_hash = InfoHash.parse(args.info_hash)

    async def body(node: DHTNode) -> int:
        stored = await node.announce(info_hash, args.peer_port, implied_port=args.implied_port)
        print(f"announced to {stored} nodes")
        return 0 if stored else 1

    return _with_node(args, body)


def add_dht_arguments(parser: argparse.ArgumentParser) -> None:
    """``--dht-bootstrap HOST:PORT`` (repeatable), ``--listen``, ``--port``, ``--dht-state``: the same
    names as the network options of every command that runs a session."""
    parser.add_argument(
        "--dht-bootstrap",
        action="append",
        metavar="HOST:PORT",
        help="bootstrap node (repeatable; default: the well-known mainline routers)",
    )
    parser.add_argument("--listen", default="0.0.0.0", help="IPv4 address to bind (default: %(default)s)")
    parser.add_argument("--port", type=int, default=0, help="UDP port of our node (default: any)")
    parser.add_argument(
        "--dht-state", type=Path, default=None, help="file keeping the DHT node cache (read and updated)"
    )


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "dht",
        help="get/put BEP 44/46 items and peers in the DHT",
        description="Talk to the mainline DHT directly (BEP 5, BEP 44, BEP 46).",
    )
    cmds = parser.add_subparsers(dest="dht_command", metavar="ACTION", required=True)

    p = cmds.add_parser("put", help="publish an info-hash under a key (BEP 46)")
    p.add_argument("--key", required=True, metavar="KEYFILE", help="ed25519 seed file (see keygen)")
    p.add_argument("--salt", default="", help="salt (text, at most 64 bytes)")
    p.add_argument("--info-hash", required=True, metavar="HEX", help="info-hash to point at")
    p.add_argument("--seq", type=int, help="sequence number (default: current + 1, else 1)")
    add_dht_arguments(p)
    p.set_defaults(func=_put)

    p = cmds.add_parser("get", help="resolve a key (and salt) to an info-hash (BEP 46)")
    p.add_argument("public_key", metavar="PUBKEY_HEX")
    p.add_argument("--salt", default="", help="salt (text)")
    add_dht_arguments(p)
    p.set_defaults(func=_get)

    p = cmds.add_parser("put-immutable", help="store a string as an immutable item (BEP 44)")
    p.add_argument("value")
    add_dht_arguments(p)
    p.set_defaults(func=_put_immutable)

    p = cmds.add_parser("get-immutable", help="fetch an immutable item by target (BEP 44)")
    p.add_argument("target", metavar="TARGET_HEX")
    add_dht_arguments(p)
    p.set_defaults(func=_get_immutable)

    p = cmds.add_parser("get-peers", help="list peers for an info-hash (BEP 5)")
    p.add_argument("info_hash", metavar="INFO_HASH")
    add_dht_arguments(p)
    p.set_defaults(func=_get_peers)

    p = cmds.add_parser("announce", help="announce a peer port for an info-hash (BEP 5)")
    p.add_argument("info_hash", metavar="INFO_HASH")
    p.add_argument("--peer-port", type=int, required=True, help="the TCP port peers should dial")
    p.add_argument("--implied-port", action="store_true", help="let nodes use our UDP source port")
    add_dht_arguments(p)
    p.set_defaults(func=_announce)
