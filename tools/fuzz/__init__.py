"""Coverage-guided fuzzing of every torrentgoat parser (issue 16, "Fuzzing").

One command runs one harness, or all of them::

    python -m tools.fuzz --list                       # the targets and what each feeds
    python -m tools.fuzz metainfo --minutes 10        # fuzz one target
    python -m tools.fuzz all --seconds 30             # every target in turn
    python -m tools.fuzz replay [TARGET]              # run the seed corpus and saved crashes once

**Library: atheris** (Google's coverage-guided fuzzer for Python, libFuzzer underneath).  It
instruments the bytecode of ``torrentgoat`` (branches and comparisons) so libFuzzer's mutator keeps
the inputs that reach new code, and it has wheels for CPython 3.11 on manylinux.  We chose it over
hypothesis because hypothesis itself draws from a strategy without coverage feedback (its
``fuzz_one_input`` only adapts a test for an outside fuzzer, and HypoFuzz, the coverage-guided runner,
is a separate tool built for test suites), while a hostile-input parser needs the feedback loop: grow from a seed ``.torrent`` into the one byte string
that reaches a rare branch.  The property tests (``tests/test_*``) stay on hypothesis; the fuzz
harnesses are plain functions ``bytes -> None`` with no atheris import, so the test suite replays
their corpus and regression inputs in-process, and atheris is only needed to *search*.

The contract every harness checks (see :mod:`tools.fuzz.harness`): any input returns, or raises a
:class:`~torrentgoat.errors.TorrentGoatError` subclass -- never another exception -- within the
per-input time limit (``-timeout``) and the memory limit (``-rss_limit_mb``); codecs with an encoder
must round-trip what they decoded.  A violation is saved under ``tools/fuzz/crashes/<target>/``,
minimized, and replayed by ``tests/test_fuzz_smoke.py`` from then on.

libFuzzer stops at the first crash (its ``-fork`` mode, which would keep going, does not work under
atheris): fix the bug, commit the minimized input with the fix, and run again.
"""
