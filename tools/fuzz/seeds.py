"""Writes the seed corpus ``tools/fuzz/corpus/<target>/``: ``python -m tools.fuzz.seeds``.

Small hand-made inputs, valid and hostile, in each target's input format (the structured targets'
leading bytes included), plus a few of the repository's own fixtures (``tools/make_hostile_torrents``).
The files are data; this module is only how they were made, so they can be regenerated after a
target's input format changes (files it does not write are kept: ``metainfo/v2_*`` and
``metainfo/hybrid_*`` come from ``create_torrent(..., format="v2" | "hybrid")`` of the BEP 52 work).
Keep each target's seeds to a few KB.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import random
import struct
import zipfile
from collections.abc import Iterable

from tools.fuzz.runner import SEEDS
from tools.fuzz.targets import TARGETS
from tools.fuzz.targets_wire import INFO_HASH, INFO_RAW, THEIR_ID
from torrentgoat import bencode
from torrentgoat.dht import krpc
from torrentgoat.keys import SigningKey
from torrentgoat.manifest import SCHEMA, Manifest, ManifestFile, ModelEntry, ModelSource, dump_manifest
from torrentgoat.mse.crypto import DHKeyPair
from torrentgoat.primitives import InfoHash, PeerAddress, PeerId
from torrentgoat.tracker import http, udp
from torrentgoat.tracker.messages import AnnounceEvent, AnnounceRequest, AnnounceResponse, ScrapeStats
from torrentgoat.wire import codec
from torrentgoat.wire.connection import UT_METADATA_ID, UT_PEX_ID
from torrentgoat.wire.messages import (
    AllowedFast,
    BitfieldMsg,
    Cancel,
    Extended,
    ExtendedHandshake,
    Handshake,
    Have,
    HaveAll,
    Interested,
    MetadataData,
    MetadataRequest,
    Pex,
    PexPeer,
    Piece,
    RejectRequest,
    Request,
    Unchoke,
)
from torrentgoat.wire.pex import encode_pex

__all__ = ["main", "seeds"]

_PIECE = 16384


def _torrent(info: dict[bytes, object], **top: object) -> bytes:
    return bencode.encode({b"info": info, **{k.replace("_", " ").encode(): v for k, v in top.items()}})


def _bencode() -> Iterable[tuple[str, bytes]]:
    yield from {
        "int": b"i-42e",
        "zero": b"i0e",
        "string": b"4:spam",
        "empty": b"0:",
        "list": b"l4:spami42ee",
        "dict": b"d3:cow3:moo4:spaml1:a1:bee",
        "nested": b"d1:ad1:bl1:cdeeee",
        "unsorted": b"d1:b0:1:a0:e",
        "leading_zero": b"i03e",
        "minus_zero": b"i-0e",
        "bad_length": b"03:abc",
        "duplicate": b"d1:ai1e1:ai2ee",
        "deep": b"l" * 70 + b"e" * 70,
        "long_int": b"i" + b"9" * 70 + b"e",
        "trailing": b"i1ei2e",
        "truncated": b"d4:info",
    }.items()


def _metainfo() -> Iterable[tuple[str, bytes]]:
    single = {b"name": b"model.bin", b"piece length": _PIECE, b"length": 20000, b"pieces": b"\x11" * 40}
    multi = {
        b"name": b"zoo",
        b"piece length": _PIECE,
        b"files": [
            {b"length": 10, b"path": [b"a", b"config.json"]},
            {b"length": _PIECE - 10, b"path": [b".pad", b"16374"], b"attr": b"p"},
            {b"length": 5, b"path": [b"b.safetensors"], b"attr": b"x"},
        ],
        b"pieces": b"\x22" * 40,
        b"private": 1,
    }
    yield "single", _torrent(single, announce=b"http://127.0.0.1:1/announce", comment=b"c")
    yield (
        "multi",
        _torrent(
            multi,
            announce_list=[[b"udp://127.0.0.1:1"], [b"http://127.0.0.1:2/a", b"http://[::1]:3/a"]],
            url_list=[b"http://127.0.0.1:4/"],
            creation_date=1700000000,
            created_by=b"mktorrent",
        ),
    )
    yield "utf8_name", _torrent({**single, b"name.utf-8": "modèle.bin".encode()}, url_list=b"http://h/")
    from tools.make_hostile_torrents import hostile_torrents

    for i, (name, data) in enumerate(sorted(hostile_torrents().items())):
        if (len(data) < 400 and i % 3 == 0) or name.startswith(("path_dotdot", "name_nul", "pieces_too")):
            yield f"hostile_{name}", data


def _magnet() -> Iterable[tuple[str, bytes]]:
    ih = "c12fe1c06bba254a9dc9f519b335aa7c1367a88a"
    yield from {
        "hex": f"magnet:?xt=urn:btih:{ih}",
        "base32": "magnet:?xt=urn:btih:YEX6DQDLXISUVHOJ6UM3GNNKPQJWPKEK&dn=x",
        "full": f"magnet:?xt=urn:btih:{ih}&dn=My+Model%20v2&tr=udp%3A%2F%2F127.0.0.1%3A1&tr.1=http://t/a"
        f"&ws=http://h/&x.pe=10.0.0.1:6881&x.pe=[::1]:6882&so=0,2,4-6",
        "btpk": "magnet:?xs=urn:btpk:" + "ab" * 32 + "&s=676f6174",
        "hybrid": f"magnet:?xt=urn:btih:{ih}&xt=urn:btmh:1220" + "cd" * 32,
        "v2_only": "magnet:?xt=urn:btmh:1220" + "cd" * 32,
        "bad_escape": f"magnet:?xt=urn:btih:{ih}&dn=%ff%fe",
        "bad_peer": f"magnet:?xt=urn:btih:{ih}&x.pe=[1.2.3.4]:1",
        "bad_so": f"magnet:?xt=urn:btih:{ih}&so=5-2",
    }.items()
    yield "surrogate", f"magnet:?xt=urn:btih:{ih}&dn=".encode() + b"\xff\xfe"


def _krpc() -> Iterable[tuple[str, bytes]]:
    nid, target = b"N" * 20, b"T" * 20
    messages: dict[str, krpc.Message] = {
        "ping": krpc.Ping(t=b"aa", id=nid),
        "find_node": krpc.FindNode(t=b"ab", id=nid, target=target, want=(b"n4", b"n6"), ro=True),
        "get_peers": krpc.GetPeers(t=b"ac", id=nid, info_hash=target),
        "announce": krpc.AnnouncePeer(
            t=b"ad", id=nid, info_hash=target, port=6881, token=b"tok", implied_port=True
        ),
        "get": krpc.Get(t=b"ae", id=nid, target=target, seq=3),
        "put_immutable": krpc.Put(t=b"af", id=nid, token=b"tok", v=b"12:Hello World!"),
        "put_mutable": krpc.Put(
            t=b"ag", id=nid, token=b"tok", v=[1, b"x"], k=b"K" * 32, sig=b"S" * 64, seq=4, salt=b"s", cas=3
        ),
        "response": krpc.Response(
            t=b"aa",
            id=nid,
            nodes=(krpc.NodeInfo(b"A" * 20, "10.0.0.1", 6881),),
            nodes6=(krpc.NodeInfo(b"B" * 20, "::1", 6882),),
            values=(("10.0.0.2", 1), ("::2", 2)),
            token=b"tk",
            ip=("1.2.3.4", 5),
        ),
        "item": krpc.Response(t=b"ab", id=nid, v=b"value", k=b"K" * 32, sig=b"S" * 64, seq=9),
        "error": krpc.Error(t=b"aa", code=201, message=b"A Generic Error Ocurred"),
    }
    for name, message in messages.items():
        yield name, krpc.encode(message)
    yield "unknown_method", b"d1:ad2:id20:" + nid + b"e1:q3:foo1:t2:aa1:y1:qe"
    yield "no_tid", b"d1:y1:re"


def _tracker_http() -> Iterable[tuple[str, bytes]]:
    peers = (PeerAddress("10.0.0.1", 6881), PeerAddress("::1", 6882))
    reply = AnnounceResponse(
        interval=1800, min_interval=60, complete=3, incomplete=4, tracker_id=b"tid", warning="w", peers=peers
    )
    yield "compact", b"\0" + http.encode_announce_reply(reply, compact=True)
    ids = ((peers[0], b"P" * 20),)
    yield (
        "dict_peers",
        b"\0"
        + http.encode_announce_reply(AnnounceResponse(interval=10, peers=peers, peer_ids=ids), compact=False),
    )
    yield "failure", b"\0" + http.encode_failure_reply("not registered", retry_in=-1)
    yield (
        "scrape",
        b"\1"
        + http.encode_scrape_reply(
            [(InfoHash(b"h" * 20), ScrapeStats(complete=1, downloaded=2, incomplete=3))]
        ),
    )
    request = AnnounceRequest(
        info_hash=InfoHash(b"\x01" * 20),
        peer_id=PeerId(b"-TG0001-aaaaaaaaaaaa"),
        port=6881,
        left=5,
        event=AnnounceEvent.STARTED,
        numwant=50,
        key=0xDEADBEEF,
        tracker_id=b"t",
        ip="10.1.2.3",
    )
    yield "announce_query", b"\2" + http.build_announce_url("http://t/a", request).partition("?")[2].encode()
    yield (
        "scrape_query",
        b"\3" + http.build_scrape_url("http://t/s", [InfoHash(b"\x02" * 20)]).partition("?")[2].encode(),
    )


def _tracker_udp() -> Iterable[tuple[str, bytes]]:
    peers4 = (PeerAddress("10.0.0.1", 6881),)
    peers6 = (PeerAddress("::1", 6882),)
    yield "connect_reply", b"\1" + udp.encode_packet(udp.UDPConnectReply(transaction_id=7, connection_id=99))
    yield (
        "announce_reply",
        b"\1"
        + udp.encode_packet(
            udp.UDPAnnounceReply(transaction_id=7, interval=900, leechers=1, seeders=2, peers=peers4)
        ),
    )
    yield (
        "announce_reply6",
        b"\3"
        + udp.encode_packet(
            udp.UDPAnnounceReply(transaction_id=7, interval=900, leechers=1, seeders=2, peers=peers6),
            ipv6=True,
        ),
    )
    yield (
        "scrape_reply",
        b"\1"
        + udp.encode_packet(
            udp.UDPScrapeReply(transaction_id=7, stats=(ScrapeStats(complete=1, downloaded=2, incomplete=3),))
        ),
    )
    yield "error", b"\1" + udp.encode_packet(udp.UDPError(transaction_id=7, message="unknown torrent"))
    yield "connect", b"\0" + udp.encode_packet(udp.UDPConnect(transaction_id=5))
    request = AnnounceRequest(
        info_hash=InfoHash(b"\x01" * 20),
        peer_id=PeerId(b"-TG0001-aaaaaaaaaaaa"),
        port=6881,
        key=1,
        numwant=20,
    )
    yield (
        "announce",
        b"\0"
        + udp.encode_packet(
            udp.UDPAnnounce(connection_id=99, transaction_id=5, request=request, url_data=b"/announce?x=1")
        ),
    )
    yield (
        "scrape",
        b"\0"
        + udp.encode_packet(
            udp.UDPScrape(connection_id=99, transaction_id=5, info_hashes=(InfoHash(b"\x01" * 20),))
        ),
    )


def _manifest() -> Iterable[tuple[str, bytes]]:
    key = SigningKey(bytes(range(32)))
    model = ModelEntry(
        name="tiny",
        format="safetensors",
        info_hash=InfoHash(b"\xab" * 20),
        files=(
            ManifestFile(path="config.json", size=10, sha256="cd" * 32),
            ManifestFile(path="w/model.safetensors", size=99, sha256="ef" * 32),
        ),
        license="mit",
        source=ModelSource(hf_repo="org/tiny", commit="0" * 40),
        web_seeds=("https://huggingface.co/org/tiny/resolve/",),
    )
    valid = dump_manifest(
        Manifest(
            collection="goat",
            publisher=key.public_key,
            seq=2,
            models=(model,),
            created="2025-01-02T03:04:05+00:00",
        )
    )
    yield "valid", valid
    yield "alias", b"a: &x [1]\nb: *x\n"
    yield "tag", b"schema: !!python/object:os.system ls\n"
    yield "duplicate", valid + b"seq: 3\n"
    yield "flow_deep", b"[" * 40 + b"]" * 40
    yield "bad_schema", valid.replace(SCHEMA.encode(), b"torrentgoat/collection/v9")


def _safetensors_file(header: bytes, data: bytes = b"") -> bytes:
    return struct.pack("<Q", len(header)) + header + data


def _safetensors() -> Iterable[tuple[str, bytes]]:
    two = b'{"__metadata__":{"format":"pt"},"a":{"dtype":"F16","shape":[2,2],"data_offsets":[0,8]},"b":{"dtype":"BOOL","shape":[],"data_offsets":[8,9]}}'
    yield "valid", b"\0" + _safetensors_file(two, bytes(9))
    yield (
        "padded",
        b"\0" + _safetensors_file(b'{"x":{"dtype":"F4","shape":[2],"data_offsets":[0,1]}}   ', b"\0"),
    )
    yield (
        "hole",
        b"\0" + _safetensors_file(b'{"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}', bytes(2)),
    )
    yield (
        "header_only",
        b"\1\0\0\x10\0" + _safetensors_file(b'{"a":{"dtype":"F32","shape":[1024],"data_offsets":[0,4096]}}'),
    )
    yield "huge_length", b"\0" + struct.pack("<Q", 1 << 40) + b"{}"


def _gguf() -> Iterable[tuple[str, bytes]]:
    yield "v3", b"\1\0\0\x10\0" + b"GGUF" + struct.pack("<IQQ", 3, 2, 5)
    yield "v1", b"\0GGUF" + struct.pack("<I", 1)
    yield "bad_counts", b"\0GGUF" + struct.pack("<IQQ", 2, 1 << 60, 1)


def _zip(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


def _pickle() -> Iterable[tuple[str, bytes]]:
    torch_like = _zip({"archive/data.pkl": pickle.dumps({"w": 1}, protocol=2), "archive/version": b"3\n"})
    yield "torch_zip", b"\3\0\0" + torch_like
    yield "torch_zip_tail", b"\3\0\x40" + torch_like
    yield "plain_zip", b"\3\0\0" + _zip({"config.json": b"{}"})
    yield "pickle2", b"\0\0\0" + pickle.dumps([1, 2, 3], protocol=2)
    yield "pickle5_as_safetensors", b"\1\0\0" + pickle.dumps("x", protocol=5)


def _modelcheck() -> Iterable[tuple[str, bytes]]:
    yield (
        "safetensors",
        b"\0\0" + _safetensors_file(b'{"a":{"dtype":"I8","shape":[3],"data_offsets":[0,3]}}', b"abc"),
    )
    yield "gguf", b"\1\0" + b"GGUF" + struct.pack("<IQQ", 3, 0, 1)
    yield "pt_zip", b"\3\0" + _zip({"m/data.pkl": pickle.dumps(0, protocol=2)})
    yield "bin_allowed", b"\2\1" + pickle.dumps(0, protocol=4)


def _frame(message: object) -> bytes:
    return codec.encode_message(message)  # type: ignore[arg-type]


def _ext(ext_id: int, payload: bytes) -> bytes:
    return _frame(Extended(ext_id=ext_id, payload=payload))


def _wire_recv() -> Iterable[tuple[str, bytes]]:
    reserved = codec.make_reserved()
    handshake = ExtendedHandshake(
        m={"ut_metadata": 3, "ut_pex": 4}, p=6881, v="X", reqq=50, metadata_size=len(INFO_RAW)
    )
    ext_hs = _ext(0, codec.encode_extended_handshake(handshake))
    # flags, chunk, behaviour, [geometry flag], have kind, reserved (8), stream
    seeder_opening = ext_hs + _frame(BitfieldMsg(data=b"\xff\xc0"))
    active = (
        _frame(Unchoke())
        + _frame(Interested())
        + _frame(Have(index=3))
        + _frame(AllowedFast(index=1))
        + _frame(Request(index=0, begin=0, length=16384))
        + _frame(Cancel(index=0, begin=0, length=16384))
        + _frame(Piece(index=0, begin=0, data=b"z" * 64))
        + _frame(RejectRequest(index=0, begin=0, length=16384))
        + _ext(UT_PEX_ID, encode_pex(Pex(added=(PexPeer(address=PeerAddress("10.0.0.9", 6881), flags=2),))))
    )
    yield "initiator_seed", b"\x00\x00\x07\x00\x01" + reserved + seeder_opening + active
    blocks = b"".join(_frame(Piece(index=i, begin=0, data=bytes(64))) for i in range(4))
    yield "initiator_blocks", b"\x00\x00\x01\x00\x01" + reserved + seeder_opening + _frame(Unchoke()) + blocks
    yield "initiator_chunked", b"\x00\x05\x17\x00\x02" + reserved + ext_hs + _frame(HaveAll()) + active
    yield (
        "responder",
        b"\x01\x00\x07\x00\x03"
        + reserved
        + seeder_opening
        + active
        + _ext(UT_METADATA_ID, codec.encode_metadata_message(MetadataRequest(piece=0))),
    )
    metadata = _ext(
        UT_METADATA_ID,
        codec.encode_metadata_message(MetadataData(piece=0, total_size=len(INFO_RAW), data=INFO_RAW)),
    )
    yield (
        "magnet_fetch",
        b"\x02\x00\x01\x00" + reserved + ext_hs + _frame(HaveAll()) + metadata + _frame(Unchoke()),
    )
    yield (
        "magnet_responder",
        b"\x03\x03\x09\x00"
        + reserved
        + ext_hs
        + _frame(BitfieldMsg(data=b"\x80\x00"))
        + _frame(Have(index=5))
        + metadata,
    )
    yield (
        "raw_handshake",
        b"\x04\x00\x00\x00\x00"
        + bytes(8)
        + codec.encode_handshake(Handshake(info_hash=INFO_HASH, peer_id=THEIR_ID, reserved=reserved))[:40],
    )
    yield (
        "no_fast_no_ext",
        b"\x18\x00\x07\x01\x01\x01" + bytes(8) + _frame(BitfieldMsg(data=b"\x80")) + _frame(Unchoke()),
    )


def _wire_send() -> Iterable[tuple[str, bytes]]:
    rng = random.Random(16)
    yield "codec_only", b"\x07" + bytes(range(0, 250, 3)) + b"\xff" * 4
    for i in range(4):
        yield f"pair_{i}", bytes([0, i * 9]) + rng.randbytes(60 + 40 * i)


def _mse() -> Iterable[tuple[str, bytes]]:
    ours = struct.pack(">H", 5)
    # responder under test: flags=1, config, chunk, rng seed (2), adversary seed (2), PadA length (2) + PadA,
    # skey flag, vc flag, provide choice, PadC length (2) + PadC, PadC-length flag, IA length (2) + IA, IA flag, payload
    handshake = codec.encode_handshake(
        Handshake(info_hash=InfoHash(b"\x33" * 20), peer_id=THEIR_ID, reserved=bytes(8))
    )
    ia = handshake[:40]
    honest_b = (
        ours
        + b"\x00\x10"
        + b"p" * 16
        + b"\0\0\x02"
        + b"\x00\x08"
        + b"c" * 8
        + b"\0"
        + struct.pack(">H", len(ia))
        + ia
        + b"\0"
        + b"payload"
    )
    yield "responder", b"\x01\x00\x00\x00\x07" + honest_b
    yield "responder_chunked_plain", b"\x01\x02\x05\x00\x08" + honest_b.replace(b"\0\0\x02", b"\0\0\x00", 1)
    # initiator under test: flags=0, config, chunk, rng seed, IA length (1) + IA, adversary seed, PadB length + PadB,
    # vc flag, select choice, PadD length (2) + PadD, PadD-length flag, payload
    honest_a = b"\x04ping" + ours + b"\x00\x20" + b"q" * 32 + b"\0\x01" + b"\x00\x04dddd" + b"\0" + b"after"
    yield "initiator", b"\x00\x00\x00\x00\x09" + honest_a
    yield "initiator_chunked", b"\x00\x03\x07\x00\x0a" + honest_a
    yield "raw_garbage", b"\x03\x00\x00\x00\x00" + DHKeyPair(random.Random(1)).public_key + bytes(40)


def _utp() -> Iterable[tuple[str, bytes]]:
    from torrentgoat.utp.packet import ST_DATA, ST_STATE, Packet, encode

    data = Packet(
        type=ST_DATA,
        connection_id=7,
        seq_nr=100,
        ack_nr=50,
        wnd_size=1 << 20,
        sack=b"\x01\0\0\0",
        payload=b"hello",
    )
    yield "codec_data", b"\x01" + encode(data)
    yield (
        "codec_state",
        b"\x01"
        + encode(
            Packet(type=ST_STATE, connection_id=7, seq_nr=1, ack_nr=2, close_reason=3, max_datagram=1400)
        ),
    )
    # session: flags, rng seed (2), conn id (2), peer seq (2), then ops: 0-7 packet (flags, fields...), 8 raw, 9 app, 10-11 tick
    responder = b"\x00\x00\x01\x12\x34\x00\x10\x00"  # ... then the SYN's flags
    yield (
        "responder_data",
        responder
        + b"\x00\x00\x05hello"
        + b"\x00\x00\x03abc"
        + b"\x09\x00\x04ping"
        + b"\x0a\x10"
        + b"\x03\x00",
    )
    yield (
        "responder_reorder",
        responder + b"\x00\x01\x83\x03xyz" + b"\x00\x00\x01a" + b"\x0b\xff" + b"\x04\x00",
    )
    initiator = b"\x02\x00\x02\x00\x00\x20\x00"
    yield (
        "initiator",
        initiator
        + b"\x01\x00"
        + b"\x09\x01\x05hello"
        + b"\x00\x00\x02hi"
        + b"\x0a\x40"
        + b"\x09\x03"
        + b"\x03\x00",
    )
    yield "initiator_timeouts", initiator + b"\x0a\xff" * 6 + b"\x08\x05\x00\x00\x00\x00\x00\x00"


def _bep52_hashes() -> Iterable[tuple[str, bytes]]:
    from torrentgoat.wire.hashes import Hashes, HashRequest, encode_hash_message

    request = HashRequest(pieces_root=b"r" * 32, base_layer=0, index=0, length=2, proof_layers=3)
    yield "codec_request", b"\x00\x00" + encode_hash_message(request)[5:]
    yield "codec_hashes", b"\x00\x01" + encode_hash_message(Hashes(**vars_of(request), hashes=b"h" * 96))[5:]
    # server: mode, file, random-root flag, base layer, index (2), length (2), proof layers
    yield "serve", b"\x01\x00\x00\x00\x00\x00\x00\x40\x06"
    # fetcher: mode, then per step: peer, time, reject flag, mutation (0 = honest)
    yield "fetch_honest", b"\x02" + b"\x00\x00\x00\x00" * 4
    yield (
        "fetch_lies",
        b"\x02" + b"\x00\x00\x00\x01\x05\x03" + b"\x01\x00\x00\x03\x01" + b"\x02\x00\x00\x00" * 3,
    )


def vars_of(message: object) -> dict[str, object]:
    return {
        name: getattr(message, name)
        for name in ("pieces_root", "base_layer", "index", "length", "proof_layers")
    }


_MAKERS = {
    "bencode": _bencode,
    "metainfo": _metainfo,
    "magnet": _magnet,
    "krpc": _krpc,
    "tracker_http": _tracker_http,
    "tracker_udp": _tracker_udp,
    "manifest": _manifest,
    "safetensors": _safetensors,
    "gguf": _gguf,
    "pickle": _pickle,
    "modelcheck": _modelcheck,
    "wire_recv": _wire_recv,
    "wire_send": _wire_send,
    "mse": _mse,
    "utp": _utp,
    "bep52_hashes": _bep52_hashes,
}


def seeds(name: str) -> dict[str, bytes]:
    """The seed files of target ``name`` (file name -> bytes)."""
    return {f"{file}": data.encode() if isinstance(data, str) else data for file, data in _MAKERS[name]()}


def main() -> None:
    missing = set(TARGETS) - set(_MAKERS)
    if missing:
        raise SystemExit(f"no seeds for targets {sorted(missing)}")
    for name in TARGETS:
        directory = SEEDS / name
        directory.mkdir(parents=True, exist_ok=True)
        files = seeds(name)
        for file, data in files.items():
            (directory / file).write_bytes(data)
        total = sum(len(d) for d in files.values())
        print(
            f"{name:13} {len(files):3} seeds {total:6} bytes  sha1 {hashlib.sha1(b''.join(files.values())).hexdigest()[:12]}"
        )


if __name__ == "__main__":
    main()
