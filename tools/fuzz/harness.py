"""What every fuzz target shares: the registry, the contract and a reader of structured input.

A target is a function ``bytes -> None`` registered with :func:`target`.  It feeds the bytes to one
parser (or drives one engine with them) and asserts the properties the parser promises; it does not
catch :class:`~torrentgoat.errors.TorrentGoatError` itself -- :func:`run_one` does, and lets
everything else through, which is what the fuzzer reports as a crash:

* an exception that is not a ``TorrentGoatError`` (``KeyError``, ``struct.error``, ``IndexError``,
  ``UnicodeError``, ``RecursionError``, ...) is a bug in the module that raised it;
* :class:`ContractViolation` is a broken property (a round trip that changed the value, an engine
  holding more bytes than its limit);
* a hang or a blow-up shows as libFuzzer's ``timeout`` / ``out-of-memory`` report.

Targets must not import atheris: the test suite replays the corpus and every saved crash with
:func:`run_one` alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from torrentgoat.errors import TorrentGoatError

__all__ = [
    "TARGETS",
    "ContractViolation",
    "Reader",
    "Target",
    "chunks",
    "combined",
    "expect",
    "run_one",
    "split_combined",
    "target",
]

T = TypeVar("T")


class ContractViolation(AssertionError):
    """A property a parser promises did not hold for this input (a round trip, a bound)."""


def expect(condition: bool, message: str) -> None:
    """Raise :class:`ContractViolation` with ``message`` unless ``condition``."""
    if not condition:
        raise ContractViolation(message)


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """One fuzz target: its name, what it feeds, the function and the largest input worth trying."""

    name: str
    summary: str
    run: Callable[[bytes], None]
    max_len: int = 4096


TARGETS: dict[str, Target] = {}
"""Every registered target by name, in registration order."""


def target(
    name: str, summary: str, *, max_len: int = 4096
) -> Callable[[Callable[[bytes], None]], Callable[[bytes], None]]:
    """Register the decorated ``bytes -> None`` function as fuzz target ``name``."""

    def register(fn: Callable[[bytes], None]) -> Callable[[bytes], None]:
        if name in TARGETS:
            raise ValueError(f"fuzz target {name!r} registered twice")
        TARGETS[name] = Target(name=name, summary=summary, run=fn, max_len=max_len)
        return fn

    return register


def combined() -> Target:
    """One target that runs every registered one: the input's first byte picks it, the rest is its
    input.  The CI smoke run fuzzes this, so every harness runs under libFuzzer with one start-up."""
    names = list(TARGETS)

    def run(data: bytes) -> None:
        if data:
            TARGETS[names[data[0] % len(names)]].run(data[1:])

    return Target(
        name="all",
        summary="every target, picked by the first byte",
        run=run,
        max_len=max(t.max_len for t in TARGETS.values()) + 1,
    )


def split_combined(data: bytes) -> tuple[Target, bytes]:
    """The target and input that a :func:`combined` input stands for."""
    names = list(TARGETS)
    return TARGETS[names[data[0] % len(names)]], data[1:]


def run_one(fuzz_target: Target, data: bytes) -> None:
    """Run one input under the contract: a ``TorrentGoatError`` is an accepted outcome, anything else
    propagates."""
    try:
        fuzz_target.run(data)
    except TorrentGoatError:
        pass


class Reader:
    """Structured values drawn from the front of a fuzz input; past the end every draw is zero/empty,
    so any byte string decodes to one deterministic scenario (and shorter inputs to simpler ones)."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos

    def byte(self) -> int:
        if self.pos >= len(self.data):
            return 0
        value = self.data[self.pos]
        self.pos += 1
        return value

    def flag(self) -> bool:
        return bool(self.byte() & 1)

    def uint(self, size: int) -> int:
        """A big-endian unsigned integer of ``size`` bytes."""
        return int.from_bytes(self.take(size).ljust(size, b"\0"), "big")

    def below(self, bound: int) -> int:
        """An integer in ``range(bound)`` (``bound`` < 65536)."""
        return self.uint(2 if bound > 256 else 1) % bound if bound > 1 else 0

    def choice(self, options: Sequence[T]) -> T:
        return options[self.below(len(options))]

    def take(self, size: int) -> bytes:
        chunk = self.data[self.pos : self.pos + size]
        self.pos += len(chunk)
        return chunk

    def sized(self, limit: int = 255) -> bytes:
        """A length byte (mod ``limit + 1``) then that many bytes."""
        return self.take(self.byte() % (limit + 1))

    def rest(self) -> bytes:
        chunk = self.data[self.pos :]
        self.pos = len(self.data)
        return chunk


def chunks(data: bytes, size: int) -> list[bytes]:
    """``data`` cut into pieces of ``size`` bytes (one piece when ``size`` is 0)."""
    if size <= 0:
        return [data]
    return [data[i : i + size] for i in range(0, len(data), size)] or [b""]
