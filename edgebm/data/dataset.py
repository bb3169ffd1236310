"""`BeamDataset`: the schema every stage after the simulator reads.

One ``.npz`` file holds the per-sample arrays, the codebooks (so the runtime can map a beam
index to a direction) and a JSON metadata record. :func:`load_dataset` validates shapes,
dtypes, NaNs and metadata and raises :class:`DatasetError` naming the field at fault.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_write
from ..errors import DatasetError

__all__ = ["BeamDataset", "DatasetError", "FIELDS", "SCHEMA_VERSION", "save_dataset", "load_dataset", "atomic_write"]

SCHEMA_VERSION = 1

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
}
CODEBOOK_FIELDS = ("cb_a_weights", "cb_a_az", "cb_a_el", "cb_b_weights", "cb_b_az", "cb_b_el", "cb_children")
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

    def split(self, fractions: tuple[float, ...] = (0.8, 0.1, 0.1), seed: int = 0) -> list["BeamDataset"]:
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


def _check_array(name: str, arr: Any, n: int | None, dims: dict[str, int], source: str) -> None:
    kinds, trailing, _ = FIELDS[name]
    if not isinstance(arr, np.ndarray):
        raise DatasetError(f"{source}: field '{name}': expected a numpy array, got {type(arr).__name__}")
    if arr.dtype.kind not in kinds:
        want = {"f": "float", "iu": "integer", "b": "bool"}[kinds]
        raise DatasetError(f"{source}: field '{name}': expected {want} dtype, got {arr.dtype}")
    if arr.ndim != 1 + len(trailing):
        raise DatasetError(f"{source}: field '{name}': expected {1 + len(trailing)}-D array, got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise DatasetError(f"{source}: field '{name}': has {arr.shape[0]} rows, rsrp_b has {n}")
    for axis, spec in enumerate(trailing, start=1):
        want = dims.get(spec, spec) if isinstance(spec, str) else spec
        if arr.shape[axis] != want:
            raise DatasetError(f"{source}: field '{name}': axis {axis} has size {arr.shape[axis]}, expected {want}")
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise DatasetError(f"{source}: field '{name}': {bad} NaN/inf value(s)")


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
    best = arrays["best_a"]
    if n and (best.min() < 0 or best.max() >= dims["A"]):
        raise DatasetError(f"{source}: field 'best_a': indices must be in [0, {dims['A']})")
    if n and not np.array_equal(best, np.argmax(rsrp_a, axis=1)):
        bad = int(np.count_nonzero(best != np.argmax(rsrp_a, axis=1)))
        raise DatasetError(f"{source}: field 'best_a': {bad} row(s) differ from argmax(rsrp_a)")
    for name in CODEBOOK_FIELDS:
        if name not in codebooks:
            raise DatasetError(f"{source}: field '{name}': missing codebook array")
    if codebooks["cb_a_weights"].shape[0] != dims["A"]:
        raise DatasetError(f"{source}: field 'cb_a_weights': {codebooks['cb_a_weights'].shape[0]} beams, rsrp_a has {dims['A']}")
    if codebooks["cb_b_weights"].shape[0] != dims["B"]:
        raise DatasetError(f"{source}: field 'cb_b_weights': {codebooks['cb_b_weights'].shape[0]} beams, rsrp_b has {dims['B']}")
    ch = codebooks["cb_children"]
    if ch.ndim != 2 or ch.shape[0] != dims["B"] or (ch.size and (ch.min() < 0 or ch.max() >= dims["A"])):
        raise DatasetError(f"{source}: field 'cb_children': expected ({dims['B']}, c) Set A indices, got shape {ch.shape}")
    for key in REQUIRED_META:
        if key not in meta:
            raise DatasetError(f"{source}: field 'meta.{key}': missing")
    if int(meta["set_a"]) != dims["A"] or int(meta["set_b"]) != dims["B"]:
        raise DatasetError(f"{source}: field 'meta.set_a': metadata says {meta['set_a']}->{meta['set_b']}, arrays are {dims}")


def save_dataset(ds: BeamDataset, path: str | Path) -> Path:
    """Write ``ds`` to ``path`` (.npz, compressed), atomically."""
    payload = dict(ds.arrays)
    payload.update(ds.codebooks)
    payload["meta_json"] = np.array(json.dumps({**ds.meta, "schema_version": SCHEMA_VERSION}, sort_keys=True))
    return atomic_write(path, lambda f: np.savez_compressed(f, **payload))


def read_npz(path: str | Path, what: str = "dataset") -> dict[str, np.ndarray]:
    """All arrays of an ``.npz`` (no pickles); :class:`DatasetError` with one line when it is missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such {what} file")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise DatasetError(f"{path}: not a readable .npz {what} ({e})") from None


def load_dataset(path: str | Path) -> BeamDataset:
    """Read and validate a BeamDataset ``.npz``; :class:`DatasetError` names the bad field."""
    path = Path(path)
    raw = read_npz(path, "dataset")
    if "meta_json" not in raw:
        raise DatasetError(f"{path}: field 'meta_json': missing (not an edgebm BeamDataset)")
    try:
        meta = json.loads(str(raw.pop("meta_json")))
    except json.JSONDecodeError as e:
        raise DatasetError(f"{path}: field 'meta_json': not valid JSON ({e})") from None
    if meta.get("schema_version") != SCHEMA_VERSION:
        raise DatasetError(f"{path}: field 'meta.schema_version': {meta.get('schema_version')!r}, this edgebm reads {SCHEMA_VERSION}")
    codebooks = {k: raw.pop(k) for k in CODEBOOK_FIELDS if k in raw}
    arrays = raw
    validate(arrays, codebooks, meta, source=str(path))
    return BeamDataset(arrays=arrays, codebooks=codebooks, meta=meta)
