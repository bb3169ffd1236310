"""Checks on output locations, run before any expensive work (stdlib only).

edgebm never deletes or overwrites a file it did not create. Before a command trains or simulates
anything it checks its output location: the folder (or the nearest folder above it that exists) must
be writable, the target must not be the current folder or a folder above it, and an existing output
folder must hold nothing but a previous output of the same command (``is_ours``). Each failure is one
:class:`~edgebm.errors.ConfigError` naming the argument and what to do.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Callable

from .atomic import clean_stale_siblings
from .errors import ConfigError

__all__ = ["check_writable_location", "check_output_folder", "check_output_file", "check_distinct_outputs", "folder_entries"]


def _nearest_existing(path: Path) -> Path:
    p = path
    while not p.exists() and not p.is_symlink() and p != p.parent:
        p = p.parent
    return p


def check_writable_location(path: str | Path, arg: str) -> Path:
    """The folder that will hold ``path`` can be created and written: the nearest existing folder above
    it is a folder and accepts a new file (probed with a real temp file, removed at once: permission
    bits say nothing for root or read-only file systems). Returns ``Path(path)``."""
    path = Path(path)
    anchor = _nearest_existing(path.parent if path.name else path)
    if not anchor.is_dir():
        raise ConfigError(arg, f"{path}: {anchor} is a file, not a folder", "choose an output path under a folder")
    try:
        fd, probe = tempfile.mkstemp(dir=anchor, prefix=f".edgebm-probe-{os.getpid()}-")
    except OSError as e:
        raise ConfigError(arg, f"{path}: cannot write in {anchor} ({e.strerror})", "choose a folder you can write to") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)
    return path


def _refuse_cwd(path: Path, arg: str) -> None:
    try:
        here = Path.cwd().resolve()
        target = path.resolve()
    except OSError:
        return
    if target == here or target in here.parents:
        raise ConfigError(
            arg, f"{str(path) or '.'} is the current folder or a folder above it",
            "give a new folder for the output, e.g. export/NAME; edgebm replaces whole output folders and never touches yours",
        )


def folder_entries(path: Path, limit: int = 1000) -> list[str]:
    """Relative names of files and folders under ``path`` (folders end in ``/``), sorted, at most ``limit``."""
    out: list[str] = []
    for root, dirs, files in os.walk(path):
        rel = Path(root).relative_to(path)
        for d in sorted(dirs):
            out.append(f"{(rel / d).as_posix()}/")
        for f in sorted(files):
            out.append((rel / f).as_posix())
        if len(out) >= limit:
            break
    return sorted(out)[:limit]


def check_output_folder(path: str | Path, arg: str, is_ours: Callable[[Path], bool], what: str) -> Path:
    """Refuse an output folder that the command would have to delete or overwrite someone else's files in.

    ``path`` may not exist (it will be created), may be empty, or may hold a previous output of this
    command (``is_ours(path)``, e.g. a bundle whose manifest lists every file in it). Anything else —
    the current folder, an existing file, a symbolic link, a folder with other files — is refused.
    Leftover temp siblings of killed processes are cleaned first. ``what`` names the output in messages
    ("bundle", "run folder", ...).
    """
    path = Path(path)
    if str(path) in ("", "."):
        _refuse_cwd(Path("."), arg)
    _refuse_cwd(path, arg)
    if path.is_symlink():
        raise ConfigError(arg, f"{path} is a symbolic link", f"give the real folder, or a new folder for the {what}")
    clean_stale_siblings(path)
    if path.exists():
        if not path.is_dir():
            kind = what if what.endswith("folder") else f"{what} folder"
            raise ConfigError(arg, f"{path} is an existing file, not an edgebm {kind}",
                              "give a folder name that does not exist yet (edgebm will not replace a file it did not write)")
        entries = folder_entries(path)
        if entries and not is_ours(path):
            shown = ", ".join(entries[:3]) + (f" and {len(entries) - 3} more" if len(entries) > 3 else "")
            raise ConfigError(
                arg, f"{path} already holds files that are not an edgebm {what} ({shown})",
                f"give {arg} a new folder, or move those files away yourself; edgebm never deletes files it did not create",
            )
    return check_writable_location(path, arg)


def check_output_file(path: str | Path, arg: str, is_ours: Callable[[Path], bool] | None = None,
                      what: str = "file") -> Path:
    """Refuse an output *file* path whose writing would destroy something edgebm did not create.

    ``path`` may not exist, or may be a previous output of this kind (``is_ours(path)``, e.g. a BeamDataset
    ``.npz``), which the caller then replaces atomically. A folder, a symbolic link, or any other existing
    file is refused (without ``is_ours`` every existing file is). Leftover temp siblings of killed
    processes are cleaned first; the folder must be writable. ``what`` names the output in messages
    ("dataset", "path table", ...). Returns ``Path(path)``.
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(arg, f"{path} is a folder", f"give a file name for the {what}")
    if path.is_symlink():
        raise ConfigError(arg, f"{path} is a symbolic link", "give a plain file name")
    clean_stale_siblings(path)
    if path.exists() and (is_ours is None or not is_ours(path)):
        raise ConfigError(
            arg, f"{path} already exists and is not an edgebm {what}",
            f"give {arg} a new file name, or move that file away yourself; edgebm never overwrites files it did not create",
        )
    return check_writable_location(path, arg)


def check_distinct_outputs(paths: dict[str, str | Path | None]) -> None:
    """Refuse two arguments naming the same file where one is an output (writing it would destroy the other
    output, or the input being read): ``paths`` maps argument -> path (None: not given)."""
    seen: dict[Path, str] = {}
    for arg, p in paths.items():
        if p is None:
            continue
        key = Path(os.path.abspath(p))
        if key in seen:
            raise ConfigError(arg, f"{p} is also {seen[key]}", f"give {arg} and {seen[key]} different file names")
        seen[key] = arg
