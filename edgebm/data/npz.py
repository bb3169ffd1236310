""".npz input and output for datasets, shards and path tables: bounded-memory reading, reproducible writing.

Reading (:func:`npz_headers`, :func:`read_npz`): every member's ``.npy`` header is read first (a few hundred
bytes decompressed per member) and checked before any array data is inflated: only ``.npy`` members, no object
(pickle) dtypes, the zip's declared size of each member equal to its header plus ``prod(shape) * itemsize``, the
total below a memory limit (:data:`MAX_ARRAY_BYTES`, half the machine's RAM by default) and, for large files, a
compression ratio no real beam data reaches (:data:`MAX_COMPRESSION_RATIO`; a file of constant arrays that
inflates 1000x is refused as a zip bomb). A header claiming 1e12 rows is therefore refused from its header.

Writing (:func:`write_npz`): numpy's ``savez_compressed`` stamps the current time into every zip entry, so the
same arrays give different bytes on every run; edgebm writes the same deflated ``.npy`` members with a fixed
timestamp so that the same seed gives the same file bytes (shard hashes in a shard index are reproducible).
"""

from __future__ import annotations

import math
import os
import zipfile
import zlib
from pathlib import Path
from typing import IO, Any, Mapping

import numpy as np

from ..errors import DatasetError

__all__ = ["npz_headers", "read_npz", "write_npz", "MAX_ARRAY_BYTES", "MAX_COMPRESSION_RATIO", "NpyHeader",
           "available_memory_bytes", "fmt_bytes"]

MAX_COMPRESSION_RATIO = 200.0          # inflated / compressed bytes of a whole file; real RSRP data is ~1-3x
RATIO_CHECK_MIN_BYTES = 64 * 2**20     # small files (constant test arrays compress well) are not ratio-checked
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)      # fixed entry timestamp (the zip epoch) for reproducible bytes


def _physical_memory_bytes() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):   # pragma: no cover - non-POSIX
        return 16 * 2**30


MAX_ARRAY_BYTES = _physical_memory_bytes() // 2   # largest total array size one file may inflate to


def available_memory_bytes() -> int:
    """Memory a new allocation can get now without swapping: Linux's ``MemAvailable`` (/proc/meminfo), else the
    physical memory (other systems)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return _physical_memory_bytes()


class NpyHeader:
    """Header of one ``.npy`` member: ``shape``, ``dtype``, ``nbytes`` (data bytes), the zip entry ``info``."""

    __slots__ = ("name", "shape", "dtype", "nbytes", "info")

    def __init__(self, name: str, shape: tuple[int, ...], dtype: np.dtype, nbytes: int, info: zipfile.ZipInfo):
        self.name, self.shape, self.dtype, self.nbytes, self.info = name, shape, dtype, nbytes, info


def fmt_bytes(n: int) -> str:
    return f"{n / 2**30:.3g} GiB" if n >= 2**30 else f"{n / 2**20:.3g} MiB"


def npz_headers(zf: zipfile.ZipFile, source: str, what: str = "dataset",
                max_bytes: int | None = None) -> dict[str, NpyHeader]:
    """Read and check the ``.npy`` header of every member of an open zip (see the module doc); returns
    ``{array name: NpyHeader}``. Raises :class:`DatasetError` (one line) before any data is inflated."""
    limit = MAX_ARRAY_BYTES if max_bytes is None else int(max_bytes)
    out: dict[str, NpyHeader] = {}
    total = 0
    for zi in zf.infolist():
        name = zi.filename
        if not name.endswith(".npy") or "/" in name or name.startswith("."):
            raise DatasetError(f"{source}: member {name!r} is not a top-level .npy array (not an edgebm {what})")
        key = name[:-4]
        with zf.open(zi) as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(f)
            elif version in ((2, 0), (3, 0)):
                shape, _, dtype = np.lib.format.read_array_header_2_0(f)
            else:   # pragma: no cover - numpy refuses other versions in read_magic
                raise DatasetError(f"{source}: field '{key}': unsupported .npy version {version}")
            header_len = f.tell()
        if any(int(d) < 0 for d in shape):
            raise DatasetError(f"{source}: field '{key}': negative dimension in shape {tuple(shape)}")
        if dtype.hasobject:
            raise DatasetError(f"{source}: field '{key}': object arrays (pickles) are not accepted")
        nbytes = math.prod(int(d) for d in shape) * dtype.itemsize
        if nbytes > limit:
            raise DatasetError(f"{source}: field '{key}': header claims shape {tuple(shape)} ({fmt_bytes(nbytes)}), "
                               f"more than the {fmt_bytes(limit)} one file may load; write large data as shards "
                               "(edgebm data generate --shards N) and stream them")
        if zi.file_size != header_len + nbytes:
            raise DatasetError(f"{source}: field '{key}': the zip entry holds {zi.file_size} bytes but its header "
                               f"describes {header_len + nbytes} (truncated or tampered file)")
        total += nbytes
        out[key] = NpyHeader(key, tuple(int(d) for d in shape), dtype, nbytes, zi)
    if total > limit:
        raise DatasetError(f"{source}: its arrays need {fmt_bytes(total)} in memory, more than the "
                           f"{fmt_bytes(limit)} one file may load; write large data as shards and stream them")
    packed = sum(h.info.compress_size for h in out.values())
    inflated = sum(h.info.file_size for h in out.values())
    if inflated >= RATIO_CHECK_MIN_BYTES and inflated > MAX_COMPRESSION_RATIO * max(packed, 1):
        raise DatasetError(f"{source}: {fmt_bytes(packed)} that inflate to {fmt_bytes(inflated)} "
                           f"(ratio {inflated / max(packed, 1):.0f}x, real beam data compresses < "
                           f"{MAX_COMPRESSION_RATIO:.0f}x): refused as a zip bomb")
    return out


def read_npz(path: str | Path, what: str = "dataset", max_bytes: int | None = None,
             check: Any = None) -> dict[str, np.ndarray]:
    """All arrays of an ``.npz`` with bounded memory (see the module doc). ``check(headers)`` may validate the
    headers (shapes, dtypes) before any data is inflated. :class:`DatasetError` with one line when the file is
    missing, unreadable or refused."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such {what} file")
    try:
        with zipfile.ZipFile(path) as zf:
            headers = npz_headers(zf, str(path), what, max_bytes)
            if check is not None:
                check(headers)
            out = {}
            for key, h in headers.items():
                with zf.open(h.info) as f:
                    out[key] = np.lib.format.read_array(f, allow_pickle=False)
            return out
    except (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError, NotImplementedError) as e:
        if isinstance(e, DatasetError):
            raise
        raise DatasetError(f"{path}: not a readable .npz {what} ({e})") from None


def write_npz(f: IO[bytes], arrays: Mapping[str, Any]) -> None:
    """Write ``arrays`` as a deflate-compressed ``.npz`` (readable by ``np.load``) with fixed entry timestamps:
    the same arrays always give the same bytes."""
    with zipfile.ZipFile(f, mode="w", compression=zipfile.ZIP_DEFLATED) as zf:
        for key, val in arrays.items():
            zi = zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_TIME)
            zi.compress_type = zipfile.ZIP_DEFLATED
            zi.external_attr = 0o644 << 16
            with zf.open(zi, "w", force_zip64=True) as out:
                np.lib.format.write_array(out, np.asanyarray(val), allow_pickle=False)
