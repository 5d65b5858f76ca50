"""Scripted hostile peers for tests and benchmarks, built on the wire codec (BEP 3 / BEP 6 framing).

Nothing here goes through :class:`~torrentgoat.wire.connection.PeerConnection`: these peers write
exactly the bytes a script asks for, so they can break every rule a real client keeps.

* :class:`RawPeer` -- one scripted TCP connection to a peer (usually a torrentgoat session): send a
  handshake (any info-hash), any message, or raw bytes; read the replies with the codec; learn
  whether and when the other side closed the connection.
* :class:`HostileSeeder` -- a listening "seed" on its own 127.0.0.1 port for a torrentgoat leecher
  to dial: honest, corrupt, garbage, silent or rejecting answers to requests (for chosen pieces or
  blocks only, if wanted), slow blocks, and honest or lying BEP 9 metadata; its
  :class:`SeederStats` record what it did.
* :func:`malformed_frames` -- named byte strings that break the framing or a message's rules
  (length prefix 2^31, bitfield with spare bits set, 1 MiB request, ``have`` out of range, ...).
* :func:`storage_reader` -- serve real blocks from a torrent's files on disk; :func:`forged_info`
  -- an info dictionary the parser would refuse (unsafe paths ...), to serve as BEP 9 metadata.

Every read is bounded (frames above :data:`MAX_FRAME` are refused) and every wait has a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import random
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from torrentgoat import bencode
from torrentgoat.bencode import BValue
from torrentgoat.bitfield import Bitfield
from torrentgoat.errors import RemoteProtocolError
from torrentgoat.metainfo import FileEntry, InfoDict
from torrentgoat.primitives import InfoHash, PeerId
from torrentgoat.storage import FileStorage
from torrentgoat.wire import codec
from torrentgoat.wire.messages import (
    BitfieldMsg,
    Extended,
    ExtendedHandshake,
    Handshake,
    HaveAll,
    Interested,
    KeepAlive,
    MetadataData,
    MetadataReject,
    MetadataRequest,
    Piece,
    RejectRequest,
    Request,
    Unchoke,
    WireMessage,
)

__all__ = [
    "MAX_FRAME",
    "BlockReader",
    "HostileSeeder",
    "RawPeer",
    "SeederStats",
    "StorageReader",
    "forged_info",
    "frame",
    "hostile_peer_id",
    "malformed_frames",
    "storage_reader",
]

MAX_FRAME = 9 + 128 * 1024 + 1024
"""Largest frame :class:`RawPeer` accepts from the other side (a 128 KiB block plus slack)."""

_UT_METADATA = 3
"""The extended message id this seed asks for ``ut_metadata`` messages with (BEP 10 ``m``)."""

BlockReader = Callable[[int, int, int], bytes]
"""``read(piece, begin, length) -> bytes``: where a :class:`HostileSeeder` gets honest data."""


def hostile_peer_id(rng: random.Random | None = None) -> PeerId:
    """A peer id in the BEP 20 style that names these scripted peers (``-HX0001-`` + 12 random bytes)."""
    rng = rng or random.Random()
    return PeerId(b"-HX0001-" + bytes(rng.getrandbits(8) for _ in range(12)))


def frame(msg_id: int, payload: bytes = b"", *, length: int | None = None) -> bytes:
    """``<length><id><payload>`` with an optional lying ``length`` prefix (BEP 3 framing)."""
    n = 1 + len(payload) if length is None else length
    return struct.pack(">IB", n, msg_id) + payload


def malformed_frames(num_pieces: int) -> dict[str, bytes]:
    """Named frames a conforming peer never sends, for a torrent of ``num_pieces`` pieces.

    Each one must make a strict peer drop the connection (or at least ignore it): the value of
    this table is that tests and fuzz benchmarks share one list of known-bad inputs.
    """
    nbytes = (num_pieces + 7) // 8
    spare = num_pieces % 8
    bad_bitfield = bytearray(nbytes)
    if spare:
        bad_bitfield[-1] = 0xFF >> spare  # a bit beyond the last piece (BEP 3: spare bits are zero)
    else:
        bad_bitfield += b"\x01"  # no spare bits to set: one byte too many instead
    return {
        "length 2^31": struct.pack(">I", 1 << 31) + b"\x07" + bytes(64),
        "length 2^32-1": struct.pack(">I", 0xFFFFFFFF) + b"\x05",
        "bitfield with spare bits": frame(codec.MSG_BITFIELD, bytes(bad_bitfield)),
        "bitfield too long": frame(codec.MSG_BITFIELD, bytes(nbytes + 9)),
        "request of 1 MiB": frame(codec.MSG_REQUEST, struct.pack(">III", 0, 0, 1 << 20)),
        "have out of range": frame(codec.MSG_HAVE, struct.pack(">I", num_pieces + 5)),
        "have with a short payload": frame(codec.MSG_HAVE, b"\x00\x00"),
        "choke with a payload": frame(codec.MSG_CHOKE, b"\x00"),
        "piece without a header": frame(codec.MSG_PIECE, b"\x00\x00"),
        "extended handshake not bencoded": frame(codec.MSG_EXTENDED, b"\x00" + b"not bencode"),
        "garbage": bytes(random.Random(7).getrandbits(8) for _ in range(4096)),
    }


def forged_info(
    name: str, payload: bytes, *, piece_length: int = 16384, paths: Iterable[Iterable[str]] | None = None
) -> tuple[InfoDict, BlockReader]:
    """An info dictionary the metainfo parser would refuse (e.g. ``paths=[["..", "x"]]``), for a
    :class:`HostileSeeder` to serve as BEP 9 metadata, and a reader of ``payload``.

    The :class:`InfoDict` is built without validation: only ``raw``, ``info_hash``, the piece
    hashes and lengths are meaningful.  ``paths`` (one list of components per file, lengths split
    evenly) makes it a multi-file torrent; without it, a single file called ``name``.
    """
    pieces = b"".join(
        hashlib.sha1(payload[i : i + piece_length]).digest() for i in range(0, len(payload), piece_length)
    )
    value: dict[bytes, BValue] = {b"name": name.encode(), b"piece length": piece_length, b"pieces": pieces}
    entries = [list(p) for p in paths] if paths is not None else None
    files: list[FileEntry] = []
    if entries:
        size, offset = len(payload) // len(entries), 0
        listed: list[BValue] = []
        for k, parts in enumerate(entries):
            length = size if k < len(entries) - 1 else len(payload) - offset
            listed.append({b"length": length, b"path": [part.encode() for part in parts]})
            files.append(FileEntry(path=(name, *parts), length=length, offset=offset))
            offset += length
        value[b"files"] = listed
    else:
        value[b"length"] = len(payload)
        files.append(FileEntry(path=(name,), length=len(payload), offset=0))
    raw = bencode.encode(value)
    info = InfoDict(
        name=name,
        piece_length=piece_length,
        pieces=pieces,
        files=tuple(files),
        single_file=not entries,
        raw=raw,
        info_hash=InfoHash(hashlib.sha1(raw).digest()),
    )

    def read(piece: int, begin: int, length: int) -> bytes:
        start = piece * piece_length + begin
        return payload[start : start + length]

    return info, read


class StorageReader:
    """A :data:`BlockReader` over read-only file storage; :meth:`close` releases its descriptors."""

    def __init__(self, info: InfoDict, root: str | os.PathLike[str]) -> None:
        self._storage = FileStorage(root, info, read_only=True)

    def __call__(self, piece: int, begin: int, length: int) -> bytes:
        return self._storage.read(piece, begin, length)

    def close(self) -> None:
        self._storage.close()


def storage_reader(info: InfoDict, root: str | os.PathLike[str]) -> StorageReader:
    """Honest blocks from the torrent's files under ``root`` (read-only; pad files read as zeros).

    The reader has a ``close()``; :meth:`HostileSeeder.close` calls it for the reader it was given.
    """
    return StorageReader(info, root)


# --------------------------------------------------------------------------- a scripted connection


class RawPeer:
    """One scripted connection: write anything, read what comes back with the codec.

    Use :meth:`connect`, then typically :meth:`handshake` and :meth:`send`; :meth:`wait_closed`
    tells whether the other side hung up.  Always :meth:`close` (or use ``async with``).
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.received: list[WireMessage] = []
        """Every message read so far (keep-alives included)."""
        self.peer_handshake: Handshake | None = None
        self.eof = False

    @classmethod
    async def connect(cls, host: str, port: int, *, timeout: float = 5.0) -> RawPeer:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        return cls(reader, writer)

    async def __aenter__(self) -> RawPeer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- writing

    async def send_raw(self, data: bytes) -> bool:
        """Write bytes; False when the connection is already gone."""
        if self.writer.is_closing():
            return False
        try:
            self.writer.write(data)
            await self.writer.drain()
        except (ConnectionError, OSError):
            return False
        return True

    async def send(self, *messages: WireMessage) -> bool:
        return await self.send_raw(b"".join(codec.encode_message(m) for m in messages))

    async def send_handshake(
        self,
        info_hash: InfoHash | bytes,
        *,
        peer_id: PeerId | None = None,
        reserved: bytes | None = None,
    ) -> bool:
        raw = info_hash if isinstance(info_hash, InfoHash) else InfoHash(info_hash)
        handshake = Handshake(
            info_hash=raw,
            peer_id=peer_id or hostile_peer_id(),
            reserved=codec.make_reserved(extensions=False, fast=True) if reserved is None else reserved,
        )
        return await self.send_raw(codec.encode_handshake(handshake))

    async def handshake(
        self,
        info_hash: InfoHash | bytes,
        *,
        peer_id: PeerId | None = None,
        reserved: bytes | None = None,
        timeout: float = 5.0,
    ) -> Handshake:
        """Send our handshake and read theirs; raise :class:`ConnectionError` if they hang up instead."""
        await self.send_handshake(info_hash, peer_id=peer_id, reserved=reserved)
        handshake = await self.read_handshake(timeout=timeout)
        if handshake is None:
            raise ConnectionError("closed before the handshake")
        return handshake

    # --- reading

    async def read_handshake(self, *, timeout: float = 5.0) -> Handshake | None:
        """The other side's 68-byte handshake, or None if it closed first (:class:`TimeoutError` if neither)."""
        try:
            data = await asyncio.wait_for(self.reader.readexactly(codec.HANDSHAKE_LENGTH), timeout)
        except TimeoutError:
            raise  # (an OSError subclass: not to be taken for a closed connection)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            self.eof = True
            return None
        self.peer_handshake = codec.decode_handshake(data)
        return self.peer_handshake

    async def read_message(self, *, timeout: float = 5.0) -> WireMessage | None:
        """The next message (unknown ids skipped), or None once the other side closed.

        Raises :class:`TimeoutError` if nothing complete arrives in time and
        :class:`~torrentgoat.errors.RemoteProtocolError` for frames above :data:`MAX_FRAME`.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                header = await asyncio.wait_for(self.reader.readexactly(4), max(0.0, deadline - loop.time()))
                (length,) = struct.unpack(">I", header)
                if length == 0:
                    self.received.append(KeepAlive())
                    return self.received[-1]
                if length > MAX_FRAME:
                    raise RemoteProtocolError(f"frame of {length} bytes from the peer under test")
                body = await asyncio.wait_for(
                    self.reader.readexactly(length), max(0.0, deadline - loop.time())
                )
            except TimeoutError:
                raise
            except (asyncio.IncompleteReadError, ConnectionError, OSError):
                self.eof = True
                return None
            message = codec.decode_message(body[0], body[1:])
            if message is not None:
                self.received.append(message)
                return message

    async def read_until(self, kind: type | tuple[type, ...], *, timeout: float = 5.0) -> WireMessage | None:
        """Read until a message of ``kind`` arrives (returned) or the connection closes (None)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"no {kind} within {timeout} s")
            message = await self.read_message(timeout=remaining)
            if message is None or isinstance(message, kind):
                return message

    async def wait_closed(self, *, timeout: float = 5.0) -> bool:
        """Read and discard until the other side closes; True if it did within ``timeout``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.eof:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            try:
                data = await asyncio.wait_for(self.reader.read(65536), remaining)
            except TimeoutError:
                return False
            except (ConnectionError, OSError):
                data = b""
            if not data:
                self.eof = True
        return True

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError, asyncio.CancelledError):
            await self.writer.wait_closed()


# --------------------------------------------------------------------------- a hostile seed


@dataclass(slots=True)
class SeederStats:
    """What a :class:`HostileSeeder` did, for assertions."""

    connections: int = 0
    handshakes: int = 0
    requests: int = 0
    blocks_sent: int = 0
    corrupt_blocks_sent: int = 0
    metadata_requests: int = 0
    peer_ids: list[PeerId] = field(default_factory=list)
    """Peer ids of the handshakes received, in order (one entry per connection that got that far)."""
    closed_by_peer: int = 0
    """Connections the other side closed (e.g. because it banned us)."""
    pieces_served: set[int] = field(default_factory=set)


class HostileSeeder:
    """A fake seed listening on 127.0.0.1 that answers requests according to ``behaviour``.

    ``behaviour``: ``"honest"`` (real data), ``"corrupt"`` (real data with bytes flipped, so the
    piece fails its SHA-1), ``"garbage"`` (random bytes of the right length), ``"silent"`` (takes
    requests, never answers), ``"reject"`` (BEP 6 reject for every request).  ``only_pieces``
    restricts the misbehaviour to those pieces (others are served honestly), ``only_offsets`` to
    blocks starting at those offsets within a piece (e.g. ``{0}``: one bad block per piece, the
    rest honest, so the liar hides among the honest contributors of each piece).  ``others``:
    what happens to requests outside ``only_*``: ``"honest"`` answers, ``"silent"`` never does
    (with ``only_offsets={0}``: one corrupt block per piece and nothing else, so that the rest of
    the piece comes from someone else and the failure has several contributors).  ``block_delay`` slows every block.

    ``metadata`` turns on BEP 10 / BEP 9 so magnet leechers can ask for the info dictionary:
    ``"honest"`` serves ``info.raw``, ``"corrupt"`` serves it with a byte flipped (it cannot hash to
    the info-hash), ``"reject"`` rejects every metadata request, ``"oversized"`` announces a
    ``metadata_size`` of 64 MiB, ``"undersized"`` announces (and serves) only its first 100 bytes.
    The seed announces every piece (``have all`` with BEP 6, else a full bitfield) and unchokes at
    once.  It keeps serving a peer until that peer hangs up (counted in ``stats.closed_by_peer``).
    """

    def __init__(
        self,
        info: InfoDict,
        read: BlockReader,
        *,
        behaviour: str = "corrupt",
        only_pieces: Iterable[int] | None = None,
        only_offsets: Iterable[int] | None = None,
        others: str = "honest",
        block_delay: float = 0.0,
        metadata: str | None = None,
        fast: bool = True,
        host: str = "127.0.0.1",
        seed: int | None = None,
    ) -> None:
        if behaviour not in ("honest", "corrupt", "garbage", "silent", "reject"):
            raise ValueError(f"unknown behaviour {behaviour!r}")
        if others not in ("honest", "silent"):
            raise ValueError(f"others must be 'honest' or 'silent', got {others!r}")
        self.others = others
        if metadata not in (None, "honest", "corrupt", "reject", "oversized", "undersized"):
            raise ValueError(f"unknown metadata behaviour {metadata!r}")
        self.metadata = metadata
        self.info = info
        self.read = read
        self.behaviour = behaviour
        self.only_pieces = None if only_pieces is None else frozenset(only_pieces)
        self.only_offsets = None if only_offsets is None else frozenset(only_offsets)
        self.block_delay = block_delay
        self.fast = fast
        self.host = host
        self.port = 0
        self.stats = SeederStats()
        self.peer_id = hostile_peer_id(random.Random(seed) if seed is not None else None)
        """Distinct per seeder unless ``seed`` is given (torrentgoat keeps one connection per peer id)."""
        self._rng = random.Random(seed or 0)
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    async def start(self) -> HostileSeeder:
        self._server = await asyncio.start_server(self._on_client, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aenter__(self) -> HostileSeeder:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()  # the serving tasks see end-of-stream and return
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=2.0)
            for task in pending:
                task.cancel()  # e.g. sleeping in block_delay; _on_client absorbs it
            await asyncio.gather(*pending, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None
        closer = getattr(self.read, "close", None)
        if callable(closer):
            closer()

    def _misbehaves(self, piece: int, begin: int) -> bool:
        if self.behaviour == "honest":
            return False
        if self.only_offsets is not None and begin not in self.only_offsets:
            return False
        return self.only_pieces is None or piece in self.only_pieces

    def block(self, piece: int, begin: int, length: int) -> tuple[bytes, bool]:
        """The block this seed sends for a request, and whether it is a lie."""
        if self.behaviour not in ("corrupt", "garbage") or not self._misbehaves(piece, begin):
            return self.read(piece, begin, length), False
        if self.behaviour == "garbage":
            return bytes(self._rng.getrandbits(8) for _ in range(length)), True
        data = bytearray(self.read(piece, begin, length))
        data[0] ^= 0xFF
        data[-1] ^= 0x5A
        return bytes(data), True

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        self.stats.connections += 1
        peer = RawPeer(reader, writer)
        try:
            await self._serve(peer)
        except (ConnectionError, OSError, RemoteProtocolError, TimeoutError):
            pass
        except asyncio.CancelledError:
            # Only close() cancels these tasks; ending normally keeps asyncio's stream callback
            # (which calls task.exception()) from logging the cancellation as an error.
            pass
        finally:
            self._tasks.discard(task)
            self._writers.discard(writer)
            await peer.close()

    async def _serve(self, peer: RawPeer) -> None:
        handshake = await peer.read_handshake(timeout=10.0)
        if handshake is None or handshake.info_hash != self.info.info_hash:
            return
        self.stats.handshakes += 1
        self.stats.peer_ids.append(handshake.peer_id)
        extensions = self.metadata is not None and handshake.supports_extensions
        await peer.send_handshake(
            self.info.info_hash,
            peer_id=self.peer_id,
            reserved=codec.make_reserved(extensions=self.metadata is not None, fast=self.fast),
        )
        n = self.info.num_pieces
        their_metadata_id = 0
        if extensions:
            size = self._metadata_size()
            ours = ExtendedHandshake(m={"ut_metadata": _UT_METADATA}, metadata_size=size, v="hostile 0.1")
            await peer.send(Extended(ext_id=0, payload=codec.encode_extended_handshake(ours)))
        opening: WireMessage = HaveAll() if self.fast else BitfieldMsg(data=Bitfield(n, full=True).to_bytes())
        await peer.send(opening, Unchoke())
        while True:
            message = await peer.read_message(timeout=3600.0)
            if message is None:
                self.stats.closed_by_peer += 1
                return
            match message:
                case Request(index=index, begin=begin, length=length):
                    self.stats.requests += 1
                    misbehave = self._misbehaves(index, begin)
                    if not misbehave and self.others == "silent":
                        continue
                    if misbehave and self.behaviour == "silent":
                        continue
                    if misbehave and self.behaviour == "reject":
                        if self.fast:
                            await peer.send(RejectRequest(index=index, begin=begin, length=length))
                        continue
                    if not (0 <= index < n and begin >= 0 and begin + length <= self.info.piece_size(index)):
                        if self.fast:
                            await peer.send(RejectRequest(index=index, begin=begin, length=length))
                        continue
                    if self.block_delay:
                        await asyncio.sleep(self.block_delay)
                    data, lie = self.block(index, begin, length)
                    if not await peer.send(Piece(index=index, begin=begin, data=data)):
                        self.stats.closed_by_peer += 1
                        return
                    self.stats.blocks_sent += 1
                    self.stats.corrupt_blocks_sent += lie
                    self.stats.pieces_served.add(index)
                case Interested():
                    await peer.send(Unchoke())
                case Extended(ext_id=0, payload=payload) if extensions:
                    their_metadata_id = codec.decode_extended_handshake(payload).m.get("ut_metadata", 0)
                case Extended(ext_id=ext_id, payload=payload) if extensions and ext_id == _UT_METADATA:
                    request = codec.decode_metadata_message(payload)
                    if isinstance(request, MetadataRequest) and their_metadata_id:
                        self.stats.metadata_requests += 1
                        reply = self._metadata_reply(request.piece)
                        await peer.send(
                            Extended(ext_id=their_metadata_id, payload=codec.encode_metadata_message(reply))
                        )
                case _:
                    pass

    def _metadata_reply(self, piece: int) -> MetadataData | MetadataReject:
        raw = self.info.raw
        start = piece * codec.METADATA_PIECE_SIZE
        if self.metadata == "reject" or start >= len(raw):
            return MetadataReject(piece=piece)
        data = bytearray(raw[start : start + codec.METADATA_PIECE_SIZE])
        if self.metadata == "corrupt":
            data[len(data) // 2] ^= 0x01
        total = self._metadata_size()
        return MetadataData(piece=piece, total_size=total, data=bytes(data[:total]))

    def _metadata_size(self) -> int:
        if self.metadata == "oversized":
            return 64 * 1024 * 1024
        if self.metadata == "undersized":
            return min(100, len(self.info.raw))
        return len(self.info.raw)
