"""``torrentgoat info TORRENT_OR_MAGNET [--json]``: show what a .torrent file or a magnet URI holds.

The ``--json`` output is a stable interface: one JSON object, keys exactly as below (new keys may be
added, none renamed or removed).

For a .torrent file::

    {
      "type": "torrent",
      "name": str,                 # info 'name'
      "info_hash": str,            # 40 lowercase hex digits: the swarm id (SHA-1 of the info bytes, BEP 3;
                                   #   for a v2-only torrent the SHA-256 truncated to 20 bytes, BEP 52)
      "format": str,               # "v1", "v2" or "hybrid" (BEP 52)
      "info_hash_v1": str | null,  # 40 hex digits, SHA-1 (v1 and hybrid torrents)
      "info_hash_v2": str | null,  # 64 hex digits, SHA-256 (v2 and hybrid torrents)
      "piece_layers": str | null,  # v2/hybrid: "complete", or "incomplete" (some must come from peers)
      "piece_length": int,
      "num_pieces": int,
      "total_size": int,           # bytes, pad files included
      "private": bool,             # BEP 27
      "trackers": [[str, ...], ...],   # BEP 12 tiers
      "web_seeds": [str, ...],     # BEP 19
      "comment": str,
      "created_by": str,
      "creation_date": int | null, # seconds since the epoch
      "magnet": str,               # magnet URI of the torrent
      "files": [{"path": str, "size": int, "offset": int, "pad": bool,
                 "symlink": str | null, "pieces_root": str | null}, ...]
    }

``files[].path`` is '/'-joined and includes the torrent name; ``offset`` is the file's first byte in
the torrent's concatenated data; ``pad`` marks BEP 47 pad files (for v2, the implied ones that align
each file to a piece); ``symlink`` is a BEP 47 symlink's target ('/'-joined, "" when unusable);
``pieces_root`` the file's BEP 52 merkle root in hex.

For a magnet URI::

    {
      "type": "magnet",
      "name": str,                 # dn ("" when absent)
      "info_hash": str | null,     # 40 lowercase hex digits (btih); null for a v2-only or a key-only magnet
      "info_hash_v2": str | null,  # 64 hex digits (btmh, BEP 52)
      "format": str | null,        # "v1", "v2", "hybrid"; null for a BEP 46 key-only magnet
      "trackers": [str, ...],      # tr, in order
      "web_seeds": [str, ...],     # ws
      "peers": [str, ...],         # x.pe, "host:port" / "[v6]:port"
      "select_only": [int, ...],   # BEP 53 so ([] = every file)
      "public_key": str | null,    # BEP 46, 64 hex digits
      "salt": str,                 # BEP 46, hex ("" when absent)
      "magnet": str                # the magnet re-emitted in canonical form
    }
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torrentgoat.magnet import Magnet
    from torrentgoat.metainfo import Metainfo

__all__ = ["ORDER", "magnet_json", "register", "torrent_json"]

ORDER = 60


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "info",
        help="show what a .torrent file or magnet URI holds",
        description="Show the name, info-hash, pieces, trackers and files of a .torrent or a magnet URI.",
    )
    parser.add_argument("source", metavar="TORRENT_OR_MAGNET", help="path to a .torrent, or a magnet: URI")
    parser.add_argument("--json", action="store_true", help="machine-readable output (keys documented)")
    parser.set_defaults(func=run)


def _layers_state(metainfo: Metainfo) -> str | None:
    v2 = metainfo.info.v2
    if v2 is None:
        return None
    return "complete" if v2.has_piece_layers else "incomplete"


def torrent_json(metainfo: Metainfo) -> dict[str, Any]:
    from torrentgoat.magnet import Magnet

    info = metainfo.info
    hashes = info.info_hashes
    roots = {f.index: f.root.hex() for f in info.v2.files} if info.v2 is not None else {}
    return {
        "type": "torrent",
        "name": info.name,
        "info_hash": metainfo.info_hash.hex,
        "format": info.format,
        "info_hash_v1": hashes.v1.hex if hashes.v1 is not None else None,
        "info_hash_v2": hashes.v2.hex if hashes.v2 is not None else None,
        "piece_layers": _layers_state(metainfo),
        "piece_length": info.piece_length,
        "num_pieces": info.num_pieces,
        "total_size": info.total_length,
        "private": info.private,
        "trackers": [list(tier) for tier in metainfo.announce_tiers],
        "web_seeds": list(metainfo.web_seeds),
        "comment": metainfo.comment,
        "created_by": metainfo.created_by,
        "creation_date": metainfo.creation_date,
        "magnet": Magnet.from_metainfo(metainfo).to_uri(),
        "files": [
            {
                "path": f.path_str,
                "size": f.length,
                "offset": f.offset,
                "pad": f.pad,
                "symlink": ("/".join(f.symlink) if f.symlink else "") if f.is_symlink else None,
                "pieces_root": roots.get(index),
            }
            for index, f in enumerate(info.files)
        ],
    }


def magnet_json(magnet: Magnet) -> dict[str, Any]:
    return {
        "type": "magnet",
        "name": magnet.display_name,
        "info_hash": magnet.info_hash.hex if magnet.info_hash is not None else None,
        "info_hash_v2": magnet.info_hash_v2.hex if magnet.info_hash_v2 is not None else None,
        "format": magnet.info_hashes.format if magnet.info_hashes is not None else None,
        "trackers": list(magnet.trackers),
        "web_seeds": list(magnet.web_seeds),
        "peers": [str(p) for p in magnet.peers],
        "select_only": list(magnet.select_only),
        "public_key": magnet.public_key.hex() if magnet.public_key is not None else None,
        "salt": magnet.salt.hex(),
        "magnet": magnet.to_uri(),
    }


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit} ({n} B)"
        value /= 1024
    raise AssertionError("unreachable")


def _print_torrent(metainfo: Metainfo) -> None:
    info = metainfo.info
    hashes = info.info_hashes
    lines = [
        f"name:         {info.name}",
        f"format:       {info.format}" + (f" (piece layers {_layers_state(metainfo)})" if info.v2 else ""),
        f"info-hash:    {metainfo.info_hash.hex}" + (" (v2, truncated)" if info.format == "v2" else ""),
        *([f"info-hash v2: {hashes.v2.hex}"] if hashes.v2 is not None else []),
        f"piece length: {_size(info.piece_length)}",
        f"pieces:       {info.num_pieces}",
        f"total size:   {_size(info.total_length)}",
        f"private:      {'yes' if info.private else 'no'}",
    ]
    if metainfo.comment:
        lines.append(f"comment:      {metainfo.comment}")
    if metainfo.created_by:
        lines.append(f"created by:   {metainfo.created_by}")
    for number, tier in enumerate(metainfo.announce_tiers):
        lines.extend(f"tracker:      [tier {number}] {url}" for url in tier)
    lines.extend(f"web seed:     {url}" for url in metainfo.web_seeds)
    real = [f for f in info.files if not f.pad]
    lines.append(f"files:        {len(real)} (+{len(info.files) - len(real)} pad)")
    for f in info.files:
        mark = " [pad]" if f.pad else ""
        if f.is_symlink:
            mark = f" -> {'/'.join(f.symlink)}" if f.symlink else " [symlink, unusable target: skipped]"
        lines.append(f"  {f.length:>15}  {f.path_str}{mark}")
    print("\n".join(lines))


def _print_magnet(magnet: Magnet) -> None:
    lines = [
        f"name:         {magnet.display_name or '(none)'}",
        f"info-hash:    {magnet.info_hash.hex if magnet.info_hash else '(none)'}",
    ]
    if magnet.info_hash_v2 is not None:
        lines.append(f"info-hash v2: {magnet.info_hash_v2.hex}")
    lines.extend(f"tracker:      {url}" for url in magnet.trackers)
    lines.extend(f"web seed:     {url}" for url in magnet.web_seeds)
    lines.extend(f"peer:         {peer}" for peer in magnet.peers)
    if magnet.select_only:
        lines.append(f"select only:  {', '.join(map(str, magnet.select_only))}")
    if magnet.public_key is not None:
        lines.append(f"public key:   {magnet.public_key.hex()} (BEP 46)")
        lines.append(f"salt:         {magnet.salt.hex() or '(none)'}")
    print("\n".join(lines))


def run(args: argparse.Namespace) -> int:
    from torrentgoat.magnet import parse_magnet
    from torrentgoat.metainfo import load_metainfo, parse_metainfo

    source: str = args.source
    if source[:7].lower() == "magnet:":
        magnet = parse_magnet(source)
        if args.json:
            print(json.dumps(magnet_json(magnet), indent=2))
        else:
            _print_magnet(magnet)
        return 0
    if source[:8].lower().startswith(("http://", "https://")):
        from torrentgoat.aio.torrentfile import fetch_torrent_bytes
        from torrentgoat.cli._run import run as run_async

        metainfo = parse_metainfo(run_async(fetch_torrent_bytes(source)))
    else:
        metainfo = load_metainfo(source)
    if args.json:
        print(json.dumps(torrent_json(metainfo), indent=2))
    else:
        _print_torrent(metainfo)
    return 0
