"""Atomic writes of files and folders (stdlib only; the torch-free runtime uses it too).

Every file edgebm writes goes through here: the data lands in a temp name next to the target,
is flushed to disk (fsync), given the mode a plain ``open()`` would give it (``0o666 & ~umask``
for files, ``0o777 & ~umask`` for folders: ``mkstemp``/``mkdtemp`` create 0600/0700, which would
hide outputs from the user's group), and is renamed into place. A crash or a signal at any point
leaves either the old file or the new one, never a half-written mix.

Temp names carry the writing process id (``.<name>.tmp-<pid>-<random>``), so a later run can
tell leftovers of a killed process (pid no longer alive) from a write in progress and remove
them: :func:`clean_stale_siblings` and :class:`ScratchDir` do that.

Written here rather than taken from a library: the stdlib has the parts (``os.replace``,
``os.fsync``), and the extra packages that wrap them (atomicwrites, ...) are unmaintained or do
not handle folders.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator

__all__ = [
    "atomic_write", "atomic_write_bytes", "atomic_write_text", "atomic_path", "temp_dir_beside", "atomic_folder",
    "swap_folder", "ScratchDir",
    "clean_stale_siblings", "fsync_dir", "file_mode", "dir_mode", "pid_alive", "TMP_TAG", "OLD_TAG",
]

TMP_TAG = "tmp"
OLD_TAG = "old"
_STALE = re.compile(r"^\.(?P<name>.+)\.(?P<tag>tmp|old)-(?P<pid>\d+)-[A-Za-z0-9_]+(?:\.[A-Za-z0-9]+)?$")


def _umask() -> int:
    """The process umask (read by setting and restoring it: POSIX offers no read-only call)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """Mode ``open()`` gives a new file: ``0o666 & ~umask``."""
    return 0o666 & ~_umask()


def dir_mode() -> int:
    """Mode ``mkdir()`` gives a new folder: ``0o777 & ~umask``."""
    return 0o777 & ~_umask()


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (signal 0 probes without sending anything)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def fsync_dir(path: str | Path) -> None:
    """Flush a folder's entry table, so a rename inside it survives a power cut (no-op where unsupported)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _prefix(target: Path, tag: str) -> str:
    return f".{target.name}.{tag}-{os.getpid()}-"


def atomic_write(path: str | Path, write: Callable[[BinaryIO], Any], suffix: str = "") -> Path:
    """Call ``write(fileobj)`` on a binary temp file next to ``path``, fsync it and rename it over ``path``.

    ``suffix`` is appended to the temp name (writers such as matplotlib pick the format from it).
    Missing parent folders are created. Returns ``path``.
    """
    with atomic_path(path, suffix) as tmp, open(tmp, "wb") as f:
        write(f)
    return Path(path)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """For writers that need a file *name* (``onnx.save_model``, ``torch.save``...): yields a temp path
    next to ``path``; on a clean exit the file is fsynced, given the umask mode and renamed over ``path``;
    on an exception it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_prefix(path, TMP_TAG), suffix=suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, file_mode())
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def temp_dir_beside(target: str | Path, tag: str = TMP_TAG) -> Path:
    """A new empty folder ``.<target name>.<tag>-<pid>-<random>`` next to ``target`` with the umask's mode.

    The caller fills it and renames it into place (see :func:`edgebm.runtime.bundle.write_bundle`).
    """
    target = Path(target)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=_prefix(target, tag)))
    os.chmod(tmp, dir_mode())
    return tmp


def swap_folder(new: str | Path, target: str | Path) -> Path:
    """Move the complete folder ``new`` (a :func:`temp_dir_beside` sibling) to ``target``, replacing the folder
    there: ``target`` is renamed to ``.<name>.old-<pid>-*``, ``new`` to ``target``, then the old one is removed.
    Both versions are on disk at every moment; if the second rename fails the old version is put back, and if
    the process dies between the renames :func:`clean_stale_siblings` (run by the next writer or reader of
    ``target``) renames the old version back. The caller has checked that ``target`` may be replaced
    (:func:`edgebm.outputs.check_output_folder`). Returns ``target``."""
    new, target = Path(new), Path(target)
    old: Path | None = None
    if target.exists() or target.is_symlink():
        old = target.with_name(f".{target.name}.{OLD_TAG}-{os.getpid()}-{secrets.token_hex(4)}")
        target.rename(old)
    try:
        new.rename(target)  # between the two renames: target missing, the old and the complete new version on disk
    except BaseException:
        if old is not None and old.exists() and not target.exists():
            old.rename(target)
        raise
    fsync_dir(target.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return target


@contextlib.contextmanager
def atomic_folder(target: str | Path, before_swap: Callable[[], Any] | None = None) -> Iterator[Path]:
    """For writers of a whole folder (a run folder, a shard folder, a bundle): yields a new empty temp folder
    beside ``target``; on a clean exit its entries are flushed, ``before_swap()`` runs (a last check that
    ``target`` may still be replaced) and the folder replaces ``target`` (:func:`swap_folder`); on an
    exception it is removed and ``target`` is untouched."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_dir_beside(target)
    try:
        yield tmp
        fsync_dir(tmp)
        if before_swap is not None:
            before_swap()
        swap_folder(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def clean_stale_siblings(target: str | Path) -> list[Path]:
    """Remove ``.<name>.tmp-<pid>-*`` / ``.<name>.old-<pid>-*`` siblings of ``target`` left by dead processes.

    A leftover ``.old`` folder is the previous version of a folder whose replacement was cut short
    between its two renames: when ``target`` itself is missing it is renamed back to ``target``
    instead of being removed. Returns the paths removed or restored.
    """
    target = Path(target)
    parent = target.parent
    if not parent.is_dir():
        return []
    done: list[Path] = []
    try:
        entries = sorted(parent.iterdir())
    except OSError:
        return []
    for p in entries:
        m = _STALE.match(p.name)
        if m is None or m["name"] != target.name or pid_alive(int(m["pid"])):
            continue
        if m["tag"] == OLD_TAG and p.is_dir() and not p.is_symlink() and not target.exists():
            p.rename(target)  # the swap was interrupted after the old version moved aside: put it back
        elif p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                p.unlink()
        done.append(p)
    return done


class ScratchDir:
    """A private scratch folder ``<tmp>/<prefix>-<pid>-<random>``, removed by :meth:`cleanup` or on leaving
    a ``with`` block (signals turned into exceptions included). Drop-in for ``tempfile.TemporaryDirectory``.

    Leftovers of dead processes with the same prefix (a SIGKILL skips every cleanup) are removed first.
    """

    def __init__(self, prefix: str) -> None:
        base = Path(tempfile.gettempdir())
        pat = re.compile(rf"^{re.escape(prefix)}-(\d+)-[A-Za-z0-9_]+$")
        with contextlib.suppress(OSError):
            for p in base.iterdir():
                m = pat.match(p.name)
                if m and not pid_alive(int(m[1])) and p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p, ignore_errors=True)
        self.name = tempfile.mkdtemp(dir=base, prefix=f"{prefix}-{os.getpid()}-")

    def cleanup(self) -> None:
        shutil.rmtree(self.name, ignore_errors=True)

    def __enter__(self) -> Path:
        return Path(self.name)

    def __exit__(self, *exc: Any) -> None:
        self.cleanup()
