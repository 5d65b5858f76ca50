"""BEP 11 peer exchange: delta tracking and an exchange between two engines."""

from __future__ import annotations

import pytest

from torrentgoat.errors import LocalProtocolError
from torrentgoat.primitives import PeerAddress
from torrentgoat.testing.wire import make_pair
from torrentgoat.wire.connection import WireConfig
from torrentgoat.wire.events import PexReceived
from torrentgoat.wire.messages import Pex, PexPeer
from torrentgoat.wire.pex import PexState


def addr(i: int) -> PeerAddress:
    return PeerAddress(f"10.0.{i // 256}.{i % 256}", 6881)


def test_pex_state_deltas_interval_and_caps() -> None:
    state = PexState()
    current = {addr(i): 0x10 for i in range(120)}
    first = state.next_message(current, now=0.0)
    assert first is not None and len(first.added) == 50 and first.dropped == ()
    assert state.next_message(current, now=59.0) is None  # BEP 11: at most once a minute
    second = state.next_message(current, now=60.0)
    assert second is not None and len(second.added) == 50
    third = state.next_message(current, now=120.0)
    assert third is not None and len(third.added) == 20
    assert state.next_message(current, now=180.0) is None  # nothing changed
    del current[addr(0)]
    current[PeerAddress("::1", 7000)] = 0
    fourth = state.next_message(current, now=240.0)
    assert fourth == Pex(added=(PexPeer(address=PeerAddress("::1", 7000)),), dropped=(addr(0),))
    assert len(state.told) == 120


def test_pex_between_engines() -> None:
    pair = make_pair()
    pair.pump()
    pair.take("b")
    message = Pex(
        added=(
            PexPeer(address=PeerAddress("192.0.2.1", 51413), flags=0x12),
            PexPeer(address=PeerAddress("2001:db8::1", 6881)),
        ),
        dropped=(PeerAddress("192.0.2.9", 1),),
    )
    pair.a.send(message)
    pair.pump()
    assert pair.take("b") == [PexReceived(added=message.added, dropped=message.dropped)]


def test_pex_disabled_for_private_torrents() -> None:
    pair = make_pair(b_config=WireConfig(ut_pex=False))
    pair.pump()
    assert "ut_pex" not in pair.a.peer_ext_ids
    with pytest.raises(LocalProtocolError, match="ut_pex"):
        pair.a.send(Pex())
