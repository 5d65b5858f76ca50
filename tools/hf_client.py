"""Run ``huggingface_hub`` against an endpoint the way a user would: ``HF_ENDPOINT`` in the environment.

Used by the gateway tests to drive the library in its own process (its settings are read from the
environment at import time), including older versions installed in a separate folder
(``PYTHONPATH=/path/to/huggingface_hub-0.26 python tools/hf_client.py ...``).

    python tools/hf_client.py CACHE_DIR OP [OP ...]

Each OP is a JSON object, run in order; one JSON line per OP is printed on stdout:
``{"op": ..., "ok": true, "result": ...}`` or ``{"op": ..., "ok": false, "error": "RepositoryNotFoundError",
"message": "..."}``.  Ops:

* ``{"op": "version"}``
* ``{"op": "snapshot", "repo": R, "revision": REV?, "repo_type": T?}`` -> the snapshot folder
* ``{"op": "download", "repo": R, "file": F, "revision": REV?, "repo_type": T?, "resume": B?}`` -> the local
  path (``resume``: pass ``resume_download=True`` where the version has it)
* ``{"op": "files", "repo": R, "revision": REV?}`` -> ``list_repo_files``
* ``{"op": "info", "repo": R, "revision": REV?, "files_metadata": B?}`` -> sha and siblings
* ``{"op": "metadata", "url": U}`` -> ``get_hf_file_metadata``
"""

from __future__ import annotations

import inspect
import json
import os
import sys
from typing import Any


def _lfs_sha256(lfs: Any) -> str | None:
    """An LFS info's SHA-256: a dataclass today, a TypedDict (plain dict) in 0.20."""
    if lfs is None:
        return None
    return str(lfs["sha256"] if isinstance(lfs, dict) else lfs.sha256)


def _run(op: dict[str, Any], cache_dir: str) -> Any:
    import huggingface_hub as hf

    kind = op["op"]
    revision = op.get("revision")
    repo_type = op.get("repo_type")
    if kind == "version":
        return hf.__version__
    if kind == "snapshot":
        return hf.snapshot_download(op["repo"], revision=revision, repo_type=repo_type, cache_dir=cache_dir)
    if kind == "download":
        extra: dict[str, Any] = {}
        if op.get("resume") and "resume_download" in inspect.signature(hf.hf_hub_download).parameters:
            extra["resume_download"] = True  # 0.20-0.22 resume only when asked; later always do
        return hf.hf_hub_download(
            op["repo"], op["file"], revision=revision, repo_type=repo_type, cache_dir=cache_dir, **extra
        )
    if kind == "files":
        return hf.list_repo_files(op["repo"], revision=revision, repo_type=repo_type)
    if kind == "info":
        info = hf.HfApi().model_info(
            op["repo"], revision=revision, files_metadata=op.get("files_metadata", False)
        )
        return {
            "sha": info.sha,
            "siblings": [
                {
                    "rfilename": s.rfilename,
                    "size": s.size,
                    "lfs_sha256": _lfs_sha256(s.lfs),
                }
                for s in info.siblings or []
            ],
        }
    if kind == "metadata":
        meta = hf.get_hf_file_metadata(op["url"])
        return {"commit": meta.commit_hash, "etag": meta.etag, "size": meta.size, "location": meta.location}
    raise ValueError(f"unknown op {kind!r}")


def main(argv: list[str]) -> int:
    cache_dir, ops = argv[0], [json.loads(text) for text in argv[1:]]
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    for op in ops:
        try:
            line: dict[str, Any] = {"op": op["op"], "ok": True, "result": _run(op, cache_dir)}
        except Exception as exc:
            line = {"op": op["op"], "ok": False, "error": type(exc).__name__, "message": str(exc)}
        print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
