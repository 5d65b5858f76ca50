"""Exit codes of every command, decided in one place.

========  =======================================================================================
code      meaning
========  =======================================================================================
0         done: the command did all it was asked (every selected file complete and verified ...)
1         failed: it stopped before that (no peers within ``--timeout``, a full disk, a port taken,
          data that did not verify, a network error)
2         bad input: a malformed torrent, magnet, manifest or option; a selection matching nothing;
          a directory that does not hold the torrent's data
130       interrupted (Ctrl-C, SIGTERM); what was verified stays on disk
========  =======================================================================================
"""

from __future__ import annotations

from torrentgoat.errors import (
    BencodeError,
    ConfigError,
    DHTError,
    DiskFullError,
    ListenError,
    MagnetError,
    ManifestError,
    MetainfoError,
    ProtocolError,
    SignatureError,
    StorageError,
    TorrentGoatError,
    TrackerError,
    UnsafeModelError,
    VerificationError,
    WebSeedError,
)

__all__ = ["BAD_INPUT", "DONE", "EPILOG", "FAILED", "INTERRUPTED", "code_for"]

DONE = 0
FAILED = 1
BAD_INPUT = 2
INTERRUPTED = 130

EPILOG = "exit codes: 0 done, 1 failed, 2 bad input, 130 interrupted"

_INPUT_ERRORS: tuple[type[TorrentGoatError], ...] = (
    BencodeError,
    ConfigError,
    MagnetError,
    ManifestError,
    MetainfoError,
    SignatureError,
    UnsafeModelError,
)


_RUNTIME_ERRORS: tuple[type[TorrentGoatError], ...] = (
    DHTError,
    DiskFullError,
    ListenError,
    ProtocolError,
    TrackerError,
    VerificationError,
    WebSeedError,
)


def code_for(exc: BaseException | None, *, during_work: bool = False) -> int:
    """The exit code for a command that stopped because of ``exc``.

    Malformed input is always 2 and the network or the machine failing always 1; a file that cannot
    be read or written (:class:`StorageError`) is bad input when the command could not even start
    (a path given on the command line), and a failure when it happened ``during_work``."""
    if isinstance(exc, KeyboardInterrupt):
        return INTERRUPTED
    if isinstance(exc, _INPUT_ERRORS):
        return BAD_INPUT
    if isinstance(exc, _RUNTIME_ERRORS) or not isinstance(exc, TorrentGoatError):
        return FAILED
    if isinstance(exc, StorageError):
        return FAILED if during_work else BAD_INPUT
    return FAILED if during_work else BAD_INPUT
