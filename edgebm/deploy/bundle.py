"""Bundle writer: ``export/<profile>/`` with model, codebook, manifest (with sha256 of every file), budget.md.

The whole folder is assembled in a temp folder beside the target and swapped in with renames,
so an interrupted export never leaves a half-written bundle and an existing bundle is only
replaced once the new one is complete. The reader side (hash and schema checks) lives in
:mod:`edgebm.runtime.bundle`, which must stay torch-free.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

__all__ = ["write_bundle", "sha256_file", "BUNDLE_SCHEMA"]

from ..runtime.bundle import BUNDLE_SCHEMA, sha256_file


def write_bundle(
    out_dir: str | Path,
    writers: dict[str, Callable[[Path], Any]],
    manifest: dict[str, Any],
) -> Path:
    """Create ``out_dir`` holding one file per ``writers`` entry plus ``manifest.json``.

    ``writers[name](path)`` writes file ``name`` at ``path``. The manifest gets ``schema`` and
    ``files`` (name -> sha256) added. Returns ``out_dir``.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.tmp-"))
    old: Path | None = None
    try:
        for name, write in writers.items():
            write(tmp / name)
        files = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        full = {"schema": BUNDLE_SCHEMA, **manifest, "files": files}
        (tmp / "manifest.json").write_text(json.dumps(full, indent=2, sort_keys=False) + "\n", encoding="utf-8")
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old-{tmp.name[-8:]}")
            out_dir.rename(old)
        tmp.rename(out_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        if old is not None and old.exists() and not out_dir.exists():
            old.rename(out_dir)  # put the previous bundle back
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir
