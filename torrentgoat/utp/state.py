"""The uTP connection state machine (BEP 29): states, inputs and the one transition table.

:class:`~torrentgoat.utp.connection.UTPConnection` looks every change of state up here (h11's
``_state.py``): a packet whose type the table does not list for the current state is ignored, a
local call it does not list raises :class:`~torrentgoat.errors.LocalProtocolError`.
"""

from __future__ import annotations

import enum
from typing import Final

__all__ = ["TRANSITIONS", "Input", "State"]


class State(enum.Enum):
    SYN_SENT = "syn-sent"
    SYN_RECV = "syn-recv"
    CONNECTED = "connected"
    CLOSING = "closing"
    """close() was called: our FIN goes out after the queued data and waits for its ack."""
    CLOSED = "closed"

    __hash__ = object.__hash__  # identity: Enum's own hashes the name in Python (table lookups)


class Input(enum.Enum):
    RECV_SYN = "SYN"
    RECV_DATA = "DATA"
    RECV_STATE = "STATE"
    RECV_FIN = "FIN"
    RECV_RESET = "RESET"
    CLOSE = "close()"
    ABORT = "abort()"
    FIN_ACKED = "our FIN acked"
    TIMED_OUT = "timed out"

    __hash__ = object.__hash__


_S, _I = State, Input
TRANSITIONS: Final[dict[State, dict[Input, State]]] = {
    _S.SYN_SENT: {
        _I.RECV_STATE: _S.CONNECTED,
        _I.RECV_DATA: _S.CONNECTED,
        _I.RECV_FIN: _S.CONNECTED,
        _I.RECV_RESET: _S.CLOSED,
        _I.CLOSE: _S.CLOSED,
        _I.ABORT: _S.CLOSED,
        _I.TIMED_OUT: _S.CLOSED,
    },
    _S.SYN_RECV: {
        _I.RECV_SYN: _S.SYN_RECV,
        _I.RECV_STATE: _S.CONNECTED,
        _I.RECV_DATA: _S.CONNECTED,
        _I.RECV_FIN: _S.CONNECTED,
        _I.RECV_RESET: _S.CLOSED,
        _I.CLOSE: _S.CLOSING,
        _I.ABORT: _S.CLOSED,
        _I.TIMED_OUT: _S.CLOSED,
    },
    _S.CONNECTED: {
        _I.RECV_SYN: _S.CONNECTED,
        _I.RECV_STATE: _S.CONNECTED,
        _I.RECV_DATA: _S.CONNECTED,
        _I.RECV_FIN: _S.CONNECTED,
        _I.RECV_RESET: _S.CLOSED,
        _I.CLOSE: _S.CLOSING,
        _I.ABORT: _S.CLOSED,
        _I.TIMED_OUT: _S.CLOSED,
    },
    _S.CLOSING: {
        _I.RECV_SYN: _S.CLOSING,
        _I.RECV_STATE: _S.CLOSING,
        _I.RECV_DATA: _S.CLOSING,
        _I.RECV_FIN: _S.CLOSING,
        _I.RECV_RESET: _S.CLOSED,
        _I.CLOSE: _S.CLOSING,
        _I.ABORT: _S.CLOSED,
        _I.FIN_ACKED: _S.CLOSED,
        _I.TIMED_OUT: _S.CLOSED,
    },
    _S.CLOSED: {
        # lingering after a graceful close: ack the peer's FIN, RESET its data
        _I.RECV_DATA: _S.CLOSED,
        _I.RECV_FIN: _S.CLOSED,
        _I.CLOSE: _S.CLOSED,
        _I.ABORT: _S.CLOSED,
    },
}
_INPUT_OF_TYPE: Final = (Input.RECV_DATA, Input.RECV_FIN, Input.RECV_STATE, Input.RECV_RESET, Input.RECV_SYN)
