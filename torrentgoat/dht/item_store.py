"""Items stored for others (BEP 44 ``put``), with expiry and a cap.

Refusals raise :class:`~torrentgoat.errors.KRPCError` carrying the BEP 44 error code the engine
answers with: 205 value too big, 206 invalid signature, 207 salt too big, 301 CAS mismatch,
302 sequence number less than current.  Items expire after two hours unless put again (BEP 44).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from torrentgoat.bencode import BValue
from torrentgoat.dht.items import MAX_SALT_SIZE, MAX_VALUE_SIZE, ImmutableItem, MutableItem
from torrentgoat.errors import KRPCError, SignatureError

__all__ = ["ItemStore", "StoredItem"]


@dataclass(slots=True)
class StoredItem:
    item: ImmutableItem | MutableItem
    expires: float


class ItemStore:
    """target -> item; the least recently put item gives way when ``max_items`` is reached."""

    def __init__(self, *, ttl: float = 7200.0, max_items: int = 2000) -> None:
        self.ttl = ttl
        self.max_items = max_items
        self._items: OrderedDict[bytes, StoredItem] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, target: bytes, now: float) -> ImmutableItem | MutableItem | None:
        stored = self._items.get(target)
        if stored is None or stored.expires <= now:
            return None
        return stored.item

    def _store(self, target: bytes, item: ImmutableItem | MutableItem, now: float) -> None:
        self._items.pop(target, None)
        if len(self._items) >= self.max_items:
            self._items.popitem(last=False)
        self._items[target] = StoredItem(item, now + self.ttl)

    def put_immutable(self, value: BValue, encoded: bytes, target: bytes, now: float) -> None:
        if len(encoded) > MAX_VALUE_SIZE:
            raise KRPCError(f"message (v field) too big: {len(encoded)} bytes", code=205)
        self._store(target, ImmutableItem(value=value), now)

    def put_mutable(self, item: MutableItem, cas: int | None, now: float) -> None:
        """Check size, signature, CAS and seq (BEP 44 "mutable items"), then store."""
        if len(item.salt) > MAX_SALT_SIZE:
            raise KRPCError(f"salt (salt field) too big: {len(item.salt)} bytes", code=207)
        if len(item.encoded_value) > MAX_VALUE_SIZE:
            raise KRPCError(f"message (v field) too big: {len(item.encoded_value)} bytes", code=205)
        try:
            item.verify()
        except SignatureError:
            raise KRPCError("invalid signature", code=206) from None
        current = self.get(item.target, now)
        if isinstance(current, MutableItem):
            if cas is not None and cas != current.seq:
                raise KRPCError(
                    f"the CAS hash mismatched, re-read value and try again (seq {current.seq})", code=301
                )
            if item.seq < current.seq or (item.seq == current.seq and item.value != current.value):
                raise KRPCError(f"sequence number less than current ({current.seq})", code=302)
        self._store(item.target, item, now)

    def expire(self, now: float) -> None:
        for target in [t for t, s in self._items.items() if s.expires <= now]:
            del self._items[target]
