"""Reading, verifying and writing bundles (torch-free: stdlib only).

A bundle is a folder: ``manifest.json`` (a :class:`~edgebm.runtime.manifest.BundleManifest`) plus
the files it lists with their sha256. Reading (:func:`open_bundle`) checks, in order: the schema and
every field, the ``bundle_digest`` over the manifest (so an edited metric is refused), the signature
when trusted keys are given, then every listed file: its name stays inside the folder (no ``..``,
absolute paths or symbolic links leading out), it exists and its sha256 matches. Files in the folder
that the manifest does not list are reported (:class:`BundleWarning`, ``Bundle.extra_files``) and
never read.

Writing (:func:`write_bundle`) builds the new version in a hidden sibling folder and swaps it in with
two renames; an existing folder is replaced only if it is itself a bundle (nothing else in it), see
``export/README.md`` for what the sibling names hold if a crash hits between the renames.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from ..atomic import atomic_folder, atomic_write_text
from ..errors import BundleError, ConfigError
from ..outputs import check_output_folder, folder_entries
from .manifest import BUNDLE_SCHEMA, MANIFEST_NAME, BundleManifest, check_member_name, manifest_digest

__all__ = [
    "BUNDLE_SCHEMA", "BundleError", "BundleWarning", "Bundle", "sha256_file", "open_bundle", "read_manifest",
    "write_bundle", "sign_bundle", "is_bundle_folder", "check_bundle_out", "bundle_out_dir",
]


class BundleWarning(UserWarning):
    """A bundle folder holds files its manifest does not list (they are ignored)."""


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class Bundle:
    """An opened, verified bundle: its folder, manifest, and the files found there but not listed."""

    root: Path  # resolved folder
    manifest: BundleManifest
    extra_files: tuple[str, ...] = ()
    signed_by: str | None = None  # key id that verified, when trusted keys were given

    def path(self, name: str) -> Path:
        """Resolved path of listed member ``name``; refuses names not in ``files`` and paths leaving the folder."""
        if name not in self.manifest.files:
            raise BundleError(f"{self.root}: '{name}' is not listed in the manifest's files; refusing to read it")
        return _resolve_member(self.root, name)

    def read_bytes(self, name: str) -> bytes:
        """Contents of listed member ``name``, checked against its sha256 as read (no swap between check and use)."""
        data = self.path(name).read_bytes()
        if hashlib.sha256(data).hexdigest() != self.manifest.files[name]:
            raise BundleError(f"{self.root}: file '{name}' has been modified since export (sha256 mismatch); refusing to load")
        return data


def _resolve_member(root: Path, name: str) -> Path:
    check_member_name(name)
    p = root / name
    try:
        real = p.resolve(strict=True)
    except FileNotFoundError:
        raise BundleError(f"{root}: file '{name}' listed in the manifest is missing") from None
    except (OSError, RuntimeError) as e:  # symlink loops
        raise BundleError(f"{root}: file '{name}' cannot be resolved ({e})") from None
    if root not in real.parents:
        raise BundleError(f"{root}: file '{name}' leads outside the bundle folder (symbolic link to {real}); refusing to read it")
    if not real.is_file():
        raise BundleError(f"{root}: '{name}' is not a regular file")
    return real


def _load_json(mpath: Path) -> Any:
    try:
        return json.loads(mpath.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BundleError(f"{mpath}: manifest is not valid JSON ({e})") from None
    except OSError as e:
        raise BundleError(f"{mpath}: cannot read ({e.strerror})") from None


def open_bundle(bundle_dir: str | Path, trusted_keys: Iterable[Any] | None = None, verify: bool = True) -> Bundle:
    """Open and verify the bundle at ``bundle_dir`` (see the module docstring for the checks, in order).

    ``trusted_keys`` (PEM paths, PEM bytes, raw 32-byte keys or ``Ed25519PublicKey`` objects): when
    given, the bundle must carry a valid signature by one of them. ``verify=False`` skips the digest and
    file hashes (inspection tools only). Raises :class:`BundleError` naming the field or file at fault.
    """
    given = Path(bundle_dir)
    if not given.is_dir():
        raise BundleError(f"{given}: not a bundle folder (no such directory)")
    root = given.resolve()
    mpath = root / MANIFEST_NAME
    if mpath.is_symlink() or not mpath.is_file():
        raise BundleError(f"{given}: not a bundle (no manifest.json)")
    raw = _load_json(mpath)
    try:
        man = BundleManifest.from_dict(raw)
    except BundleError as e:
        raise BundleError(f"{mpath}: {e}") from None
    signed_by = None
    if verify:
        if man.bundle_digest is None:
            raise BundleError(f"{mpath}: manifest has no bundle_digest; refusing to load (export the bundle again)")
        if manifest_digest(raw) != man.bundle_digest:
            raise BundleError(f"{mpath}: manifest.json was edited after export (bundle_digest mismatch); refusing to load")
    keys = list(trusted_keys) if trusted_keys is not None else []
    if keys:
        from .signing import verify_signature

        signed_by = verify_signature(man.signature, man.bundle_digest or manifest_digest(raw), keys, where=str(given))
    if verify:
        for name, digest in man.files.items():
            if sha256_file(_resolve_member(root, name)) != digest:
                raise BundleError(f"{given}: file '{name}' has been modified since export (sha256 mismatch); refusing to load")
    listed = set(man.files) | {MANIFEST_NAME}
    parents = {str(Path(n).parent.as_posix()) + "/" for n in man.files if "/" in n}
    extra = tuple(e for e in folder_entries(root) if e not in listed and e not in parents)
    if extra:
        warnings.warn(f"{given}: ignoring {len(extra)} file(s) not listed in the manifest: {', '.join(extra[:5])}",
                      BundleWarning, stacklevel=2)
    return Bundle(root, man, extra, signed_by)


def read_manifest(bundle_dir: str | Path, verify: bool = True, trusted_keys: Iterable[Any] | None = None) -> BundleManifest:
    """The verified :class:`BundleManifest` of ``bundle_dir`` (see :func:`open_bundle`)."""
    return open_bundle(bundle_dir, trusted_keys=trusted_keys, verify=verify).manifest


# ----------------------------------------------------------------------------------------------- writing
def is_bundle_folder(path: str | Path) -> bool:
    """True if ``path`` holds an edgebm bundle and nothing else: a manifest of any edgebm bundle schema
    and only the files it lists (so replacing the folder loses nothing edgebm did not write)."""
    path = Path(path)
    mpath = path / MANIFEST_NAME
    if not mpath.is_file() or mpath.is_symlink():
        return False
    try:
        raw = json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not (isinstance(raw, dict) and isinstance(raw.get("schema"), str) and raw["schema"].startswith("edgebm.bundle/")
            and isinstance(raw.get("files"), dict)):
        return False
    names = {str(n) for n in raw["files"]} | {MANIFEST_NAME}
    dirs = {p.as_posix() + "/" for n in names for p in Path(n).parents if p != Path(".")}
    return all(e in names or e in dirs for e in folder_entries(path))


def check_bundle_out(out_dir: str | Path, arg: str = "out_dir") -> Path:
    """Cheap checks before any training: ``out_dir`` is new, empty, or an existing bundle (nothing else in
    it), is not the current folder, and its folder is writable. :class:`ConfigError` naming ``arg`` otherwise."""
    return check_output_folder(out_dir, arg, is_bundle_folder, "bundle")


def bundle_out_dir(out_dir: str | Path | None, profile_name: str, arg: str = "out_dir") -> Path:
    """The bundle folder of an export: ``out_dir``, or ``export/<profile_name>`` (the name validated as an
    identifier first: it is never used as a path otherwise), checked by :func:`check_bundle_out`."""
    if out_dir is None:
        from .manifest import _PROFILE

        if not isinstance(profile_name, str) or not _PROFILE.match(profile_name):
            raise ConfigError("name", f"profile name {profile_name!r} cannot name a folder",
                              "use lower-case letters, digits, '_' or '-' (or give --out)")
        out_dir = Path("export") / profile_name
    return check_bundle_out(out_dir, arg)


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def _manifest_text(d: Mapping[str, Any]) -> str:
    return json.dumps(d, indent=2, sort_keys=False) + "\n"


def _finish_manifest(d: dict[str, Any], sign_key: Any) -> dict[str, Any]:
    # digest what will be read back: JSON-normalised (tuples -> lists, keys -> strings)
    d = {k: v for k, v in json.loads(_manifest_text(d)).items() if k not in ("bundle_digest", "signature")}
    d["bundle_digest"] = manifest_digest(d)
    if sign_key is not None:
        from .signing import load_private_key, sign_digest

        key = load_private_key(sign_key) if isinstance(sign_key, (str, Path)) else sign_key
        d["signature"] = sign_digest(key, d["bundle_digest"])
    return d


def write_bundle(
    out_dir: str | Path,
    writers: Mapping[str, Callable[[Path], Any]],
    manifest: Mapping[str, Any] | BundleManifest,
    sign_key: Any = None,
) -> Path:
    """Create (or replace) the bundle folder ``out_dir``: one file per ``writers`` entry plus ``manifest.json``.

    ``writers[name](path)`` writes member ``name`` (a safe relative name, e.g. ``model.onnx``) at
    ``path``. The manifest gets ``schema``, ``files`` (name -> sha256) and ``bundle_digest`` set here,
    and ``signature`` when ``sign_key`` (a PEM path or ``Ed25519PrivateKey``) is given; it is validated
    as a :class:`BundleManifest` before anything is moved into place. ``out_dir`` must not exist, be
    empty, or be a bundle (:func:`check_bundle_out`); it is replaced atomically. Returns ``out_dir``.
    """
    out_dir = Path(out_dir)
    check_bundle_out(out_dir)
    for name in writers:
        check_member_name(name, "writers")
    base = manifest.to_dict() if isinstance(manifest, BundleManifest) else dict(manifest)
    with atomic_folder(out_dir, before_swap=lambda: check_bundle_out(out_dir)) as tmp:   # re-checked before the swap
        for name, write in writers.items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            write(tmp / name)
        written = [e for e in folder_entries(tmp) if not e.endswith("/")]
        unexpected = sorted(set(written) - set(writers))
        missing = sorted(set(writers) - set(written))
        if unexpected or missing:
            raise BundleError(f"{out_dir}: bundle writers produced {unexpected or 'no'} unexpected and {missing or 'no'} missing files")
        for name in writers:
            if (tmp / name).is_symlink():
                raise BundleError(f"{out_dir}: writer for '{name}' made a symbolic link, not a file")
            _fsync_file(tmp / name)
        files = {name: sha256_file(tmp / name) for name in sorted(writers)}
        full = {"schema": BUNDLE_SCHEMA, **{k: v for k, v in base.items() if k not in ("schema", "files")}, "files": files}
        full = _finish_manifest(BundleManifest.from_dict(full).to_dict(), sign_key)
        (tmp / MANIFEST_NAME).write_text(_manifest_text(full), encoding="utf-8")
        _fsync_file(tmp / MANIFEST_NAME)
    return out_dir


def sign_bundle(bundle_dir: str | Path, key: Any) -> BundleManifest:
    """Verify the bundle at ``bundle_dir`` and add (or replace) its ed25519 signature in place.

    ``key``: a PEM path or ``Ed25519PrivateKey``. Only ``manifest.json`` changes (rewritten atomically).
    """
    b = open_bundle(bundle_dir)
    d = _finish_manifest(b.manifest.to_dict(), key)
    atomic_write_text(b.root / MANIFEST_NAME, _manifest_text(d))
    return replace(b.manifest, signature=d["signature"])
