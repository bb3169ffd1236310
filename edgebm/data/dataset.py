"""`BeamDataset`: the schema every stage after the simulator reads.

One ``.npz`` file holds the per-sample arrays, the codebooks (so the runtime can map a beam
index to a direction) and a JSON metadata record. :func:`load_dataset` validates shapes,
dtypes, NaNs and metadata and raises :class:`DatasetError` naming the field at fault.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_write
from ..errors import DatasetError
from .npz import read_npz, write_npz

__all__ = ["BeamDataset", "DatasetError", "FIELDS", "SCHEMA_VERSION", "DEFAULT_SPLIT", "save_dataset", "load_dataset", "atomic_write",
           "load_dataset_file", "read_npz", "check_headers", "parse_meta", "RSRP_RANGE_DBM", "CODEBOOK_SCHEMA",
           "read_dataset_header", "is_dataset_file"]

SCHEMA_VERSION = 1
#: train / validation / test fractions of ``edgebm train``, ``export`` and ``evaluate`` (declared once, here)
DEFAULT_SPLIT = (0.8, 0.1, 0.1)

# name -> (dtype kind(s), trailing shape spec, required). Trailing spec: "B" = |Set B|, "A" = |Set A|, ints are fixed.
FIELDS: dict[str, tuple[str, tuple[Any, ...], bool]] = {
    "rsrp_b": ("f", ("B",), True),  # measured wide-beam RSRP, dBm
    "rsrp_a": ("f", ("A",), True),  # ground-truth narrow-beam RSRP, dBm
    "best_a": ("iu", (), True),  # index of the strongest Set A beam
    "pos": ("f", (3,), True),  # UE position (x, y, z), m
    "los": ("b", (), True),  # line of sight to the BS
    "snr_db": ("f", (), True),  # per-element SNR before beamforming, dB
    "noise_dbm": ("f", (), True),  # noise power per element and subcarrier, dBm
    "sector": ("iu", (), False),  # serving BS sector
    "traj_id": ("iu", (), False),  # trajectory id (sequences)
    "t": ("f", (), False),  # time within the trajectory, s
    "city_id": ("iu", (), False),  # random scenario: index k of the sample's city rand-<seed>-<k>
}
CODEBOOK_FIELDS = ("cb_a_weights", "cb_a_az", "cb_a_el", "cb_b_weights", "cb_b_az", "cb_b_el", "cb_children")
OPTIONAL_CODEBOOK_FIELDS = ("cb_a_psi", "cb_b_psi")   # (n_beams, 2) panel-frame spatial frequencies (psi_v, psi_h)
REQUIRED_META = ("scenario", "carrier_hz", "bs_array", "ue_array", "set_a", "set_b", "seed", "generator")


@dataclass(frozen=True)
class BeamDataset:
    """Beam-prediction samples (N rows) plus codebooks and metadata.

    Arrays: ``rsrp_b`` (N, |B|) dBm, ``rsrp_a`` (N, |A|) dBm, ``best_a`` (N,), ``pos`` (N, 3) m,
    ``los`` (N,), ``snr_db`` (N,) dB, ``noise_dbm`` (N,) dBm, optional ``sector``, ``traj_id``, ``t`` (s).
    ``codebooks`` holds ``cb_a_*``/``cb_b_*`` weights and pointing angles (deg, elevation from zenith)
    and ``cb_children`` (|B|, c): Set A beams under each wide beam.
    """

    arrays: dict[str, np.ndarray]
    codebooks: dict[str, np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        validate(self.arrays, self.codebooks, self.meta, source="<BeamDataset>")

    def __len__(self) -> int:
        return int(self.arrays["rsrp_b"].shape[0])

    def __getattr__(self, name: str) -> np.ndarray:
        arrays = self.__dict__.get("arrays", {})
        if name in FIELDS:
            if name in arrays:
                return arrays[name]
            if not FIELDS[name][2]:
                return None  # type: ignore[return-value]
        raise AttributeError(name)

    @property
    def n_b(self) -> int:
        return int(self.arrays["rsrp_b"].shape[1])

    @property
    def n_a(self) -> int:
        return int(self.arrays["rsrp_a"].shape[1])

    def subset(self, idx: np.ndarray) -> "BeamDataset":
        """Rows ``idx`` (index array or boolean mask), same codebooks and metadata."""
        return replace(self, arrays={k: v[idx] for k, v in self.arrays.items()})

    def split(self, fractions: tuple[float, ...] = DEFAULT_SPLIT, seed: int = 0) -> list["BeamDataset"]:
        """Random split by sample, or by trajectory when ``traj_id`` is present (no leakage)."""
        if abs(sum(fractions) - 1.0) > 1e-6 or any(f < 0 for f in fractions):
            raise ValueError(f"split fractions must be >= 0 and sum to 1, got {fractions}")
        rng = np.random.default_rng(seed)
        groups = self.arrays.get("traj_id")
        units = np.unique(groups) if groups is not None else np.arange(len(self))
        units = rng.permutation(units)
        bounds = np.round(np.cumsum((0.0,) + tuple(fractions)) * len(units)).astype(int)
        parts = []
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            chosen = units[lo:hi]
            mask = np.isin(groups, chosen) if groups is not None else np.isin(np.arange(len(self)), chosen)
            parts.append(self.subset(np.flatnonzero(mask)))
        return parts


RSRP_RANGE_DBM = (-300.0, 60.0)   # plausible RSRP (the runtime refuses the same); -300 dBm = the simulator's floor
_KIND_NAMES = {"f": "float", "iu": "integer", "b": "bool", "c": "complex"}
# codebook arrays: name -> (dtype kinds, shape spec); "A" / "B" = beams, "T" = BS elements, None = any size
CODEBOOK_SCHEMA: dict[str, tuple[str, tuple[Any, ...]]] = {
    "cb_a_weights": ("c", ("A", "T")), "cb_a_az": ("f", ("A",)), "cb_a_el": ("f", ("A",)),
    "cb_b_weights": ("c", ("B", "T")), "cb_b_az": ("f", ("B",)), "cb_b_el": ("f", ("B",)),
    "cb_children": ("iu", ("B", None)), "cb_a_psi": ("f", ("A", 2)), "cb_b_psi": ("f", ("B", 2)),
}


def _check_layout(name: str, shape: tuple[int, ...], dtype: np.dtype, kinds: str, spec: tuple[Any, ...],
                  dims: dict[str, int], source: str, rows: int | None = None) -> None:
    """dtype kind and shape of one array against ``spec`` (works on npy headers before the data is read)."""
    if dtype.kind not in kinds:
        raise DatasetError(f"{source}: field '{name}': expected {_KIND_NAMES[kinds]} dtype, got {dtype}")
    if len(shape) != len(spec):
        raise DatasetError(f"{source}: field '{name}': expected {len(spec)}-D array, got shape {tuple(shape)}")
    if rows is not None and shape[0] != rows:
        raise DatasetError(f"{source}: field '{name}': has {shape[0]} rows, rsrp_b has {rows}")
    for axis, want in enumerate(spec):
        if rows is not None and axis == 0:
            continue
        want = dims.get(want, want) if isinstance(want, str) else want
        if want is not None and shape[axis] != want:
            raise DatasetError(f"{source}: field '{name}': axis {axis} has size {shape[axis]}, expected {want}")


def _finite(name: str, arr: np.ndarray, source: str) -> None:
    if arr.dtype.kind in "fc" and not np.all(np.isfinite(arr)):
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise DatasetError(f"{source}: field '{name}': {bad} NaN/inf value(s)")


def _check_array(name: str, arr: Any, n: int | None, dims: dict[str, int], source: str) -> None:
    kinds, trailing, _ = FIELDS[name]
    if not isinstance(arr, np.ndarray):
        raise DatasetError(f"{source}: field '{name}': expected a numpy array, got {type(arr).__name__}")
    _check_layout(name, arr.shape, arr.dtype, kinds, ("N",) + trailing, dims, source, rows=n)
    _finite(name, arr, source)


def check_headers(shapes: dict[str, tuple[tuple[int, ...], np.dtype]], source: str) -> int:
    """Validate a dataset file's array layout from its npy headers (before decompressing any data): known
    fields, dtypes, dimensions, equal row counts, codebook sizes, at least one sample. Returns N."""
    if "meta_json" not in shapes:
        raise DatasetError(f"{source}: field 'meta_json': missing (not an edgebm BeamDataset)")
    for name in shapes:
        if name not in FIELDS and name not in CODEBOOK_SCHEMA and name != "meta_json":
            raise DatasetError(f"{source}: field '{name}': unknown field (known: {', '.join(FIELDS)}, "
                               f"{', '.join(CODEBOOK_SCHEMA)}, meta_json)")
    for name in tuple(k for k, v in FIELDS.items() if v[2]) + CODEBOOK_FIELDS:
        if name not in shapes:
            raise DatasetError(f"{source}: field '{name}': missing")
    shape, dtype = shapes["meta_json"]
    if dtype.kind != "U" or shape != ():
        raise DatasetError(f"{source}: field 'meta_json': expected a JSON string, got a {dtype} array of shape {shape}")
    for name in ("rsrp_b", "rsrp_a"):
        if len(shapes[name][0]) != 2:
            raise DatasetError(f"{source}: field '{name}': expected a 2-D array (N, |Set {name[-1].upper()}|), "
                               f"got shape {shapes[name][0]}")
    n = shapes["rsrp_b"][0][0]
    dims = {"B": shapes["rsrp_b"][0][1], "A": shapes["rsrp_a"][0][1], "T": shapes["cb_a_weights"][0][-1]}
    for name, (shape, dtype) in shapes.items():
        if name in FIELDS:
            _check_layout(name, shape, dtype, FIELDS[name][0], ("N",) + FIELDS[name][1], dims, source, rows=n)
        elif name in CODEBOOK_SCHEMA:
            _check_layout(name, shape, dtype, *CODEBOOK_SCHEMA[name], dims, source)
    if n == 0:
        raise DatasetError(f"{source}: field 'rsrp_b': the dataset has 0 samples; generate or select at least one")
    return int(n)


def _check_codebooks(codebooks: dict[str, np.ndarray], dims: dict[str, int], source: str) -> None:
    for name in CODEBOOK_FIELDS:
        if name not in codebooks:
            raise DatasetError(f"{source}: field '{name}': missing codebook array")
    for name, arr in codebooks.items():
        if name not in CODEBOOK_SCHEMA:
            raise DatasetError(f"{source}: field '{name}': unknown codebook array (known: {', '.join(CODEBOOK_SCHEMA)})")
        if not isinstance(arr, np.ndarray):
            raise DatasetError(f"{source}: field '{name}': expected a numpy array, got {type(arr).__name__}")
    d = dict(dims, T=codebooks["cb_a_weights"].shape[-1])
    for name in ("cb_a_weights", "cb_b_weights"):     # the number of beams first: the message says which set
        w = codebooks[name]
        if w.ndim == 2 and w.shape[0] != d[name[3].upper()]:
            other = "rsrp_a" if name[3] == "a" else "rsrp_b"
            raise DatasetError(f"{source}: field '{name}': {w.shape[0]} beams, {other} has {d[name[3].upper()]}")
    for name, arr in codebooks.items():
        kinds, spec = CODEBOOK_SCHEMA[name]
        if name == "cb_children":
            if arr.dtype.kind not in kinds or arr.ndim != 2 or arr.shape[0] != d["B"] or (
                    arr.size and (arr.min() < 0 or arr.max() >= d["A"])):
                raise DatasetError(f"{source}: field 'cb_children': expected ({d['B']}, c) integer Set A indices in "
                                   f"[0, {d['A']}), got {arr.dtype} of shape {arr.shape}")
            continue
        _check_layout(name, arr.shape, arr.dtype, kinds, spec, d, source)
        _finite(name, arr, source)
        if name.endswith("_el") and arr.size and (arr.min() < 0 or arr.max() > 180):
            raise DatasetError(f"{source}: field '{name}': elevations must be in [0, 180] deg from the zenith, "
                               f"got [{arr.min():.4g}, {arr.max():.4g}]")
        if name.endswith("_az") and arr.size and np.abs(arr).max() > 360:
            raise DatasetError(f"{source}: field '{name}': azimuths must be in [-360, 360] deg, got max |az| "
                               f"{np.abs(arr).max():.4g}")
        if name.endswith("_psi") and arr.size and np.abs(arr).max() > 1.0 + 1e-6:
            raise DatasetError(f"{source}: field '{name}': spatial frequencies must be in [-1, 1]")


def validate(arrays: dict[str, np.ndarray], codebooks: dict[str, np.ndarray], meta: dict[str, Any], source: str) -> None:
    """Raise :class:`DatasetError` naming the first field that breaks the schema."""
    for name in FIELDS:
        if FIELDS[name][2] and name not in arrays:
            raise DatasetError(f"{source}: field '{name}': missing")
    for name in arrays:
        if name not in FIELDS:
            raise DatasetError(f"{source}: field '{name}': unknown field (known: {', '.join(FIELDS)})")
    rsrp_b = arrays["rsrp_b"]
    if not isinstance(rsrp_b, np.ndarray) or rsrp_b.ndim != 2:
        raise DatasetError(f"{source}: field 'rsrp_b': expected a 2-D array (N, |Set B|)")
    rsrp_a = arrays["rsrp_a"]
    if not isinstance(rsrp_a, np.ndarray) or rsrp_a.ndim != 2:
        raise DatasetError(f"{source}: field 'rsrp_a': expected a 2-D array (N, |Set A|)")
    n = rsrp_b.shape[0]
    dims = {"B": rsrp_b.shape[1], "A": rsrp_a.shape[1]}
    for name, arr in arrays.items():
        _check_array(name, arr, n, dims, source)
    lo, hi = RSRP_RANGE_DBM
    for name in ("rsrp_b", "rsrp_a"):
        v = arrays[name]
        if v.size and (v.min() < lo or v.max() > hi):
            raise DatasetError(f"{source}: field '{name}': values must be RSRP in [{lo:g}, {hi:g}] dBm, got "
                               f"[{v.min():.4g}, {v.max():.4g}] (linear power or wrong unit?)")
    best = arrays["best_a"]
    if n and (best.min() < 0 or best.max() >= dims["A"]):
        raise DatasetError(f"{source}: field 'best_a': indices must be in [0, {dims['A']})")
    if n and not np.array_equal(best, np.argmax(rsrp_a, axis=1)):
        bad = int(np.count_nonzero(best != np.argmax(rsrp_a, axis=1)))
        raise DatasetError(f"{source}: field 'best_a': {bad} row(s) differ from argmax(rsrp_a)")
    _check_codebooks(codebooks, dims, source)
    if not isinstance(meta, dict):
        raise DatasetError(f"{source}: field 'meta_json': expected a JSON object, got {type(meta).__name__}")
    for key in REQUIRED_META:
        if key not in meta:
            raise DatasetError(f"{source}: field 'meta.{key}': missing")
    try:
        ok = int(meta["set_a"]) == dims["A"] and int(meta["set_b"]) == dims["B"]
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise DatasetError(f"{source}: field 'meta.set_a': metadata says {meta['set_a']!r}->{meta['set_b']!r}, arrays are {dims}")


def save_dataset(ds: BeamDataset, path: str | Path) -> Path:
    """Write ``ds`` to ``path`` (.npz, compressed, reproducible bytes), atomically."""
    payload = dict(ds.arrays)
    payload.update(ds.codebooks)
    payload["meta_json"] = np.array(json.dumps({**ds.meta, "schema_version": SCHEMA_VERSION}, sort_keys=True))
    return atomic_write(path, lambda f: write_npz(f, payload))


def parse_meta(raw: Any, source: str) -> dict[str, Any]:
    """The metadata record of a dataset file (``meta_json``), checked: a JSON object of this schema version."""
    try:
        meta = json.loads(str(np.asarray(raw).reshape(())))
    except (json.JSONDecodeError, ValueError) as e:
        raise DatasetError(f"{source}: field 'meta_json': not valid JSON ({e})") from None
    if not isinstance(meta, dict):
        raise DatasetError(f"{source}: field 'meta_json': expected a JSON object, got {type(meta).__name__}")
    if meta.get("schema_version") != SCHEMA_VERSION:
        raise DatasetError(f"{source}: field 'meta.schema_version': {meta.get('schema_version')!r}, this edgebm reads {SCHEMA_VERSION}")
    return meta


def read_dataset_header(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """``({array name: NpyHeader}, metadata)`` of a BeamDataset ``.npz``, checked from the npy headers and the
    small ``meta_json`` member only (no array data is inflated: bounded time and memory for any file size).
    :class:`DatasetError` when the file is not an edgebm dataset."""
    import zipfile
    import zlib

    from .npz import npz_headers

    src = str(path)
    try:
        with zipfile.ZipFile(path) as zf:
            headers = npz_headers(zf, src)
            check_headers({k: (v.shape, v.dtype) for k, v in headers.items()}, src)
            with zf.open(headers["meta_json"].info) as f:
                meta = parse_meta(np.lib.format.read_array(f, allow_pickle=False), src)
    except (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError, NotImplementedError) as e:
        if isinstance(e, DatasetError):
            raise
        raise DatasetError(f"{src}: not a readable .npz dataset ({e})") from None
    return headers, meta


def is_dataset_file(path: str | Path) -> bool:
    """Whether ``path`` is a BeamDataset ``.npz`` (what :func:`save_dataset` writes), judged from its headers and
    metadata (:func:`read_dataset_header`): the test commands use before replacing an existing output file."""
    try:
        read_dataset_header(path)
    except DatasetError:
        return False
    return True


def load_dataset_file(path: str | Path, max_bytes: int | None = None) -> BeamDataset:
    """Read and validate one BeamDataset ``.npz``: the layout from the npy headers first (bounded memory, see
    :mod:`edgebm.data.npz`), then values (NaN, RSRP range, best_a, codebooks, metadata)."""
    path = Path(path)
    src = str(path)
    raw = read_npz(path, "dataset", max_bytes=max_bytes,
                   check=lambda h: check_headers({k: (v.shape, v.dtype) for k, v in h.items()}, src))
    meta = parse_meta(raw.pop("meta_json"), src)
    codebooks = {k: raw.pop(k) for k in CODEBOOK_FIELDS + OPTIONAL_CODEBOOK_FIELDS if k in raw}
    validate(raw, codebooks, meta, source=src)
    return BeamDataset(arrays=raw, codebooks=codebooks, meta=meta)


def load_dataset(path: str | Path) -> BeamDataset:
    """Read and validate a BeamDataset: one ``.npz`` or a shard folder (``index.json`` + ``.npz`` shards, see
    :mod:`edgebm.data.shards`, loaded whole; use :func:`edgebm.data.open_dataset` to stream it).
    :class:`DatasetError` names the bad field."""
    path = Path(path)
    if not path.exists():
        from .shards import recover_folder

        recover_folder(path)     # a shard folder whose replacement was interrupted (see edgebm.data.shards)
    if path.is_dir():
        from .shards import load_shard_folder

        return load_shard_folder(path)
    return load_dataset_file(path)
