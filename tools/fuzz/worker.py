"""The fuzzing process of one target: ``python -m tools.fuzz.worker TARGET [libFuzzer flags] [corpus dirs]``.

Run by :mod:`tools.fuzz.__main__`, one process per target (libFuzzer exits the process when it is
done).  ``torrentgoat`` is imported inside :func:`atheris.instrument_imports`, so its bytecode
reports branches and comparisons to libFuzzer; nothing else is instrumented.
"""

from __future__ import annotations

import sys


def main() -> None:
    import atheris

    if len(sys.argv) < 2:
        sys.exit("usage: python -m tools.fuzz.worker TARGET [libFuzzer flags] [corpus dirs]")
    if "torrentgoat" in sys.modules:
        sys.exit("tools.fuzz.worker: torrentgoat was imported before instrumentation")
    with atheris.instrument_imports(include=["torrentgoat"]):
        from tools.fuzz.harness import combined, run_one
        from tools.fuzz.targets import TARGETS
    fuzz_target = combined() if sys.argv[1] == "all" else TARGETS[sys.argv[1]]

    def test_one_input(data: bytes) -> None:
        run_one(fuzz_target, data)

    atheris.Setup([sys.argv[0], *sys.argv[2:]], test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
