"""``batch_blocks``: the blocks of one read come as one :class:`BlocksReceived`, in order with the
other events, late blocks apart, and before a protocol violation is raised (issue 15: fewer wake-ups
per block on the receive side)."""

from __future__ import annotations

from typing import cast

import pytest
from test_wire_connection import seed_pair, unchoked

from torrentgoat.errors import RemoteProtocolError
from torrentgoat.primitives import BLOCK_SIZE
from torrentgoat.testing.wire import ConnectionPair
from torrentgoat.wire.events import AllowedFastReceived, BlockReceived, BlocksReceived, BlocksRequested, Event
from torrentgoat.wire.messages import AllowedFast, Cancel, Request


def blocks_of(event: Event) -> list[tuple[int, int, bytes]]:
    assert isinstance(event, BlocksReceived)
    return [(index, begin, bytes(data[:1])) for index, begin, data in event.blocks]


def batching_pair(requests: list[tuple[int, int]]) -> ConnectionPair:
    pair = unchoked(seed_pair())
    pair.a.batch_blocks = True
    for index, begin in requests:
        pair.a.send(Request(index=index, begin=begin, length=BLOCK_SIZE))
    pair.pump()
    pair.take("b")
    return pair


def test_blocks_of_one_read_come_as_one_event_and_other_events_keep_their_place() -> None:
    pair = batching_pair([(1, 0), (1, BLOCK_SIZE), (2, 0), (3, 0)])
    pair.b.send_piece(1, 0, b"\x01" * BLOCK_SIZE)
    pair.b.send_piece(1, BLOCK_SIZE, b"\x02" * BLOCK_SIZE)
    pair.b.send(AllowedFast(index=5))
    pair.b.send_piece(2, 0, b"\x03" * BLOCK_SIZE)
    pair.b.send_piece(3, 0, b"\x04" * BLOCK_SIZE)
    pair.pump()
    events = pair.take("a")
    assert [type(e) for e in events] == [BlocksReceived, AllowedFastReceived, BlocksReceived]
    assert blocks_of(events[0]) == [(1, 0, b"\x01"), (1, BLOCK_SIZE, b"\x02")]
    assert blocks_of(events[2]) == [(2, 0, b"\x03"), (3, 0, b"\x04")]
    assert pair.a.downloaded == 4 * BLOCK_SIZE and pair.a.outstanding_requests == ()


def test_a_late_block_is_not_batched() -> None:
    pair = batching_pair([(1, 0), (2, 0)])
    pair.b.send_piece(1, 0, b"\x01" * BLOCK_SIZE)
    pair.b.send_piece(2, 0, b"\x02" * BLOCK_SIZE)
    pair.a.send(Cancel(index=2, begin=0, length=BLOCK_SIZE))  # crosses the block on the wire
    pair.pump()
    events = pair.take("a")
    assert [type(e) for e in events] == [BlocksReceived, BlockReceived]
    assert blocks_of(events[0]) == [(1, 0, b"\x01")]
    late = events[1]
    assert isinstance(late, BlockReceived) and late.late and late.index == 2


def test_blocks_before_a_protocol_violation_are_delivered_first() -> None:
    pair = batching_pair([(1, 0)])
    pair.b.send_piece(1, 0, b"\x01" * BLOCK_SIZE)
    pair.a.receive_data(pair.b.data_to_send() + b"\x00\x00\x00\x03\x04\x00\x00")  # a malformed have
    first = pair.a.next_event()
    assert blocks_of(first) == [(1, 0, b"\x01")]  # type: ignore[arg-type]
    with pytest.raises(RemoteProtocolError):
        pair.a.next_event()
    with pytest.raises(RemoteProtocolError):
        pair.a.next_event()


def test_off_by_default_one_event_per_block() -> None:
    pair = batching_pair([(1, 0), (2, 0)])
    pair.a.batch_blocks = False
    pair.b.send_piece(1, 0, bytes(BLOCK_SIZE))
    pair.b.send_piece(2, 0, bytes(BLOCK_SIZE))
    pair.pump()
    assert [type(e) for e in pair.take("a")] == [BlockReceived, BlockReceived]


def test_requests_of_one_read_come_as_one_event_after_the_blocks_of_that_read() -> None:
    pair = batching_pair([(1, 0)])
    pair.b.batch_requests = True  # b is the seed
    pair.a.send(Request(index=4, begin=0, length=BLOCK_SIZE))
    pair.a.send(Request(index=4, begin=BLOCK_SIZE, length=BLOCK_SIZE))
    pair.pump()
    events = pair.take("b")
    assert [type(e) for e in events] == [BlocksRequested]
    assert cast(BlocksRequested, events[0]).requests == [(4, 0, BLOCK_SIZE), (4, BLOCK_SIZE, BLOCK_SIZE)]
