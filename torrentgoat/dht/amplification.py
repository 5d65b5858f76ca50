"""No amplification: answers to unverified senders stay within a multiple of their query's size.

A UDP query's source address can be forged; answering a 60-byte query with 1,300 bytes of peers or a
BEP 44 value would let anyone aim our upload at a victim (the reflection attacks of DNS and NTP).
The engine therefore trims what it answers an address that has never answered a query of ours (the
proof that it receives what is sent to it), as QUIC limits what a server sends before the client's
address is validated (RFC 9000 section 8: three times what it received):

1. peers (``values``) go first -- the sender can ask again once verified, or ask other nodes;
2. then ``nodes`` / ``nodes6``, from the farthest;
3. then a BEP 44 item's value (``v``, ``k``, ``sig``; ``seq`` is kept);
4. an error's message is shortened.

``id``, ``t``, ``token`` and BEP 42's ``ip`` always stay: a trimmed answer is still a valid answer.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from torrentgoat.dht import krpc

__all__ = ["fit_answer"]


def _size(message: krpc.Message) -> int:
    return len(krpc.encode(message))


def fit_answer(message: krpc.Message, limit: int) -> krpc.Message:
    """``message`` trimmed (in the order of the module docstring) to at most ``limit`` encoded
    bytes where possible; the smallest valid answer when even that is over."""
    if _size(message) <= limit:
        return message
    if isinstance(message, krpc.Error):
        over = _size(message) - limit
        return dataclasses.replace(message, message=message.message[: max(0, len(message.message) - over)])
    if not isinstance(message, krpc.Response):
        return message
    for field, entry in (("values", 20), ("nodes", 26), ("nodes6", 38)):
        items: tuple[object, ...] = getattr(message, field)
        while items and _size(message) > limit:
            # as many entries as the excess needs (an IPv4 value is 8 bytes, an IPv6 one 20)
            cut = max(1, -(-(_size(message) - limit) // entry))
            items = items[: max(0, len(items) - cut)]
            changes: dict[str, Any] = {field: items}
            message = dataclasses.replace(message, **changes)
        if _size(message) <= limit:
            return message
    if message.v is not None:
        message = dataclasses.replace(message, v=None, k=None, sig=None)
    return message
