"""The peer wire state table (level L2): which message each side may send when, and what it changes.

Everything that decides whether a message is allowed lives here (h11's rule, DESIGN rule 2), and the
same check serves both directions: :meth:`~torrentgoat.wire.connection.PeerConnection.send` runs it
on our :class:`Side` and raises :class:`~torrentgoat.errors.LocalProtocolError`, the receive path
runs it on the peer's and raises :class:`~torrentgoat.errors.RemoteProtocolError`.

Phases of each side (BEP 3 "handshake", BEP 6 "Fast Extension"):

* ``HANDSHAKE`` -- the side's 68-byte handshake has not been seen yet;
* ``OPENING`` -- handshake done; BEP 6: ``bitfield``/``have all``/``have none`` "must" be the first
  message after the handshake.  ``keep-alive``, ``extended``, ``port`` and the BEP 52 hash messages
  do not end the opening (clients send the BEP 10 handshake before or after the bitfield);
* ``ACTIVE`` -- everything else.

Each side also carries the two BEP 3 flags its messages set: ``choking`` (``choke``/``unchoke``)
and ``interested`` (``interested``/``not interested``).  They are states, not toggles: repeating a
message changes nothing (:meth:`Side.changes`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from torrentgoat.errors import ProtocolError
from torrentgoat.wire.hashes import Hashes, HashReject, HashRequest
from torrentgoat.wire.messages import (
    AllowedFast,
    BitfieldMsg,
    Cancel,
    Choke,
    Extended,
    Handshake,
    Have,
    HaveAll,
    HaveNone,
    Interested,
    KeepAlive,
    NotInterested,
    Piece,
    Port,
    RejectRequest,
    Request,
    SuggestPiece,
    Unchoke,
)

__all__ = ["FLAGS", "REQUIRES", "TRANSITIONS", "Feature", "Phase", "Side", "advance"]


class Phase(enum.Enum):
    HANDSHAKE = "handshake"
    OPENING = "opening"
    ACTIVE = "active"


class Feature(enum.Enum):
    FAST = "fast extension (BEP 6)"
    EXTENSIONS = "extension protocol (BEP 10)"


_OPENING_MESSAGES: tuple[type, ...] = (BitfieldMsg, HaveAll, HaveNone)
_TRANSPARENT_MESSAGES: tuple[type, ...] = (KeepAlive, Extended, Port, HashRequest, Hashes, HashReject)
_ACTIVE_MESSAGES: tuple[type, ...] = (
    Choke,
    Unchoke,
    Interested,
    NotInterested,
    Have,
    Request,
    Piece,
    Cancel,
    SuggestPiece,
    RejectRequest,
    AllowedFast,
)


def _build_transitions() -> dict[tuple[Phase, type], Phase]:
    table: dict[tuple[Phase, type], Phase] = {(Phase.HANDSHAKE, Handshake): Phase.OPENING}
    for kind in _OPENING_MESSAGES:
        table[(Phase.OPENING, kind)] = Phase.ACTIVE  # BEP 6: only as the first message
    for kind in _TRANSPARENT_MESSAGES:
        table[(Phase.OPENING, kind)] = Phase.OPENING
        table[(Phase.ACTIVE, kind)] = Phase.ACTIVE
    for kind in _ACTIVE_MESSAGES:
        table[(Phase.OPENING, kind)] = Phase.ACTIVE
        table[(Phase.ACTIVE, kind)] = Phase.ACTIVE
    # Not BEP 6, but aria2 1.36 announces new pieces with a whole bitfield (or have all) mid-connection
    # whenever that is shorter than the haves: accepted as a union of pieces.  A late have none could
    # only take pieces away, so it stays a violation.
    for kind in (BitfieldMsg, HaveAll):
        table[(Phase.ACTIVE, kind)] = Phase.ACTIVE
    return table


TRANSITIONS: dict[tuple[Phase, type], Phase] = _build_transitions()
"""(phase of the sending side, message type) -> next phase.  Missing pairs are protocol errors."""

# The hot paths (request, piece) skip the table lookup in ACTIVE; this is what the table says there.
assert TRANSITIONS[(Phase.ACTIVE, Request)] is Phase.ACTIVE
assert TRANSITIONS[(Phase.ACTIVE, Piece)] is Phase.ACTIVE

REQUIRES: dict[type, Feature] = {
    HaveAll: Feature.FAST,
    HaveNone: Feature.FAST,
    SuggestPiece: Feature.FAST,
    RejectRequest: Feature.FAST,
    AllowedFast: Feature.FAST,
    Extended: Feature.EXTENSIONS,
}
"""BEP 6: fast messages without the negotiated bit close the connection; likewise BEP 10 messages."""

FLAGS: dict[type, tuple[str, bool]] = {
    Choke: ("choking", True),
    Unchoke: ("choking", False),
    Interested: ("interested", True),
    NotInterested: ("interested", False),
}
"""BEP 3: the flag (a :class:`Side` attribute) of the *sender* each state message sets, and its value."""


@dataclass(slots=True)
class Side:
    """What one side of the connection has established by the messages it sent so far."""

    phase: Phase = Phase.HANDSHAKE
    choking: bool = True
    """BEP 3: connections start out choked..."""
    interested: bool = False
    """... and not interested."""

    def changes(self, kind: type) -> bool:
        """Whether the state message ``kind`` (a key of :data:`FLAGS`) would change this side's flag."""
        name, value = FLAGS[kind]
        return getattr(self, name) is not value

    def set_flag(self, kind: type) -> None:
        """Apply the state message ``kind`` (a key of :data:`FLAGS`) sent by this side."""
        name, value = FLAGS[kind]
        setattr(self, name, value)


def advance(
    side: Side, kind: type, *, fast: bool, extensions: bool, error: type[ProtocolError], sender: str
) -> None:
    """Check a message of type ``kind`` sent by ``side`` against :data:`REQUIRES` and
    :data:`TRANSITIONS` and move ``side`` to its next phase; what they forbid raises ``error``.

    ``sender`` starts the error text: ``"peer sent"`` on the receive path, ``"cannot send"`` on ours.
    """
    feature = REQUIRES.get(kind)
    if feature is not None and not (fast if feature is Feature.FAST else extensions):
        raise error(f"{sender} {kind.__name__} without the {feature.value} negotiated")
    nxt = TRANSITIONS.get((side.phase, kind))
    if nxt is None:
        if side.phase is Phase.HANDSHAKE:
            why = "BEP 3: the handshake comes first"
        else:
            why = "BEP 6: the bitfield, have all and have none may only be the first message"
        raise error(f"{sender} {kind.__name__} in phase {side.phase.value} ({why})")
    side.phase = nxt
