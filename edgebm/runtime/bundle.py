"""Reading and verifying a bundle (torch-free: numpy + stdlib only)."""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

from ..errors import BundleError

__all__ = ["BUNDLE_SCHEMA", "BundleError", "sha256_file", "read_manifest", "write_bundle"]

#: bundle layout version; the runtime refuses any other
BUNDLE_SCHEMA = "edgebm.bundle/1"
_REQUIRED = ("schema", "edgebm_version", "profile", "family", "model_file", "inputs", "outputs", "files", "verdict")


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_manifest(bundle_dir: str | Path, verify: bool = True) -> dict[str, Any]:
    """Load ``manifest.json`` and (by default) check the schema and every file's sha256.

    Raises :class:`BundleError` with the file at fault.
    """
    bundle_dir = Path(bundle_dir)
    mpath = bundle_dir / "manifest.json"
    if not bundle_dir.is_dir():
        raise BundleError(f"{bundle_dir}: not a bundle folder (no such directory)")
    if not mpath.is_file():
        raise BundleError(f"{bundle_dir}: not a bundle (no manifest.json)")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BundleError(f"{mpath}: manifest is not valid JSON ({e})") from None
    if not isinstance(manifest, dict):
        raise BundleError(f"{mpath}: manifest must be a JSON object")
    for key in _REQUIRED:
        if key not in manifest:
            raise BundleError(f"{mpath}: manifest key '{key}' missing")
    if manifest["schema"] != BUNDLE_SCHEMA:
        raise BundleError(f"{mpath}: bundle schema {manifest['schema']!r}, this runtime reads {BUNDLE_SCHEMA!r}")
    if verify:
        files = manifest["files"]
        if manifest["model_file"] not in files:
            raise BundleError(f"{mpath}: model file {manifest['model_file']!r} is not listed in 'files'")
        for name, digest in files.items():
            path = bundle_dir / name
            if not path.is_file():
                raise BundleError(f"{bundle_dir}: file '{name}' listed in the manifest is missing")
            if sha256_file(path) != digest:
                raise BundleError(
                    f"{bundle_dir}: file '{name}' has been modified since export (sha256 mismatch); refusing to load"
                )
    return manifest


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
        # every file, sub-folders included (c/model.c): names are POSIX paths relative to the bundle
        files = {p.relative_to(tmp).as_posix(): sha256_file(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
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
