"""Shard folders: a dataset written as N ``.npz`` shards plus ``index.json``, loaded whole or streamed.

Layout of ``DIR/``::

    index.json          {"format": "edgebm.shards/1", "spec": ShardSpec.to_dict(), "n_samples": N,
                         "set_a": |A|, "set_b": |B|, "meta": <dataset metadata>,
                         "shards": [{"file": "shard-00000.npz", "samples": n0, "sha256": "..."}, ...]}
    shard-00000.npz     an ordinary BeamDataset file (``edgebm data info`` reads it alone too)
    ...

Writing (:func:`write_shards`): shard ``j`` is a pure function of ``(spec, j)`` (:func:`generate_shard`), so the
bytes do not depend on how many workers wrote them or in which order (any ``map`` can fan the shards out: a
process pool, Ray tasks). Seeds: a named scenario's shard j simulates with the seed
``SeedSequence([SHARD_DOMAIN, seed, j])`` draws; the random scenario's shard j draws from the cities
``k = j, j + N, j + 2N, ...`` (or city ``j mod K`` when K < N) with sample stream j of the dataset seed (see
:func:`edgebm.sim.simulate_random`), so every city's geometry is built by one shard only. The folder is
written as a temp folder next to ``DIR`` (:mod:`edgebm.atomic`) and renamed into place; an existing ``DIR`` is
replaced only when it is an edgebm shard folder (index.json and shard files only) or empty, anything else is
refused before any simulation (:func:`edgebm.outputs.check_output_folder`): ``DIR`` is renamed to
``.DIR.old-*``, the new folder to ``DIR``, then the old one is removed. If a crash hits between the two renames,
the next :func:`write_shards` (or :func:`load_dataset` / :func:`open_dataset`) on ``DIR`` renames the complete
``.DIR.old-*`` back; temp folders of dead writers are removed.

Reading: :func:`load_shard_folder` (used by :func:`edgebm.data.load_dataset` for a folder) verifies every shard's
sha256 and schema, checks that all shards share the codebooks, and concatenates them. :func:`open_dataset`
streams: it holds one shard (or ``buffer_shards``) in memory at a time and yields shuffled batches.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from ..atomic import atomic_folder, atomic_write, atomic_write_bytes, clean_stale_siblings
from ..errors import ConfigError, DatasetError
from ..outputs import check_output_folder
from ..sim import RandomScenario, ScenarioConfig
from .dataset import BeamDataset, load_dataset_file, save_dataset

if TYPE_CHECKING:
    from ..parallel import Executor

__all__ = ["ShardSpec", "generate_shard", "shard_bytes", "write_shards", "load_shard_folder", "open_dataset", "ShardedDataset",
           "read_index", "shard_name", "recover_folder", "check_shards_out", "dataset_size", "check_memory", "SHARD_FORMAT",
           "INDEX_NAME", "SHARD_DOMAIN"]

SHARD_FORMAT = "edgebm.shards/1"
INDEX_NAME = "index.json"
SHARD_DOMAIN = 0x53485244        # "SHRD": SeedSequence([SHARD_DOMAIN, seed, j]) seeds shard j of a named scenario
MAX_SHARDS = 100_000
_SHARD_RE = re.compile(r"^shard-[0-9]{5,6}\.npz$")


def shard_name(index: int) -> str:
    """File name of shard ``index`` (``shard-00003.npz``)."""
    return f"shard-{int(index):05d}.npz"


def _int(name: str, v: Any, lo: int, hi: int | None = None) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or int(v) < lo or (hi is not None and int(v) > hi):
        raise ConfigError(name, f"{v!r} is invalid", f"an integer >= {lo}" + (f" and <= {hi}" if hi is not None else ""))
    return int(v)


@dataclass(frozen=True)
class ShardSpec:
    """What a shard folder holds: ``scenario`` (a named :class:`~edgebm.sim.ScenarioConfig` or a
    :class:`~edgebm.sim.RandomScenario`), ``n_samples`` UE drops in total (or ``trajectories=(n_ues, n_steps,
    dt_s)``, UEs split over the shards, ``traj_id`` unique across the folder), dataset ``seed``, ``shards`` N."""

    scenario: ScenarioConfig | RandomScenario
    n_samples: int
    seed: int
    shards: int
    trajectories: tuple[int, int, float] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.scenario, (ScenarioConfig, RandomScenario)):
            raise ConfigError("scenario", f"expected a ScenarioConfig or RandomScenario, got {type(self.scenario).__name__}")
        object.__setattr__(self, "seed", _int("seed", self.seed, 0, 2**63 - 1))
        object.__setattr__(self, "shards", _int("shards", self.shards, 1, MAX_SHARDS))
        if self.trajectories is not None:
            if isinstance(self.scenario, RandomScenario):
                raise ConfigError("trajectories", "not available with the random scenario", "generate UE drops")
            try:
                n_ues, n_steps, dt = self.trajectories
                traj = (_int("trajectories.n_ues", n_ues, 1), _int("trajectories.n_steps", n_steps, 1), float(dt))
            except (TypeError, ValueError) as e:
                if isinstance(e, ConfigError):
                    raise
                raise ConfigError("trajectories", f"{self.trajectories!r} is invalid", "(n_ues, n_steps, dt_s)") from None
            object.__setattr__(self, "trajectories", traj)
            object.__setattr__(self, "n_samples", traj[0] * traj[1])
        object.__setattr__(self, "n_samples", _int("n_samples", self.n_samples, 1))
        if self.shards > self.units:
            raise ConfigError("shards", f"{self.shards} shards for {self.units} "
                              f"{'UEs' if self.trajectories else 'samples'}", "at most one shard per sample / UE")

    @property
    def units(self) -> int:
        """What is split over the shards: samples, or UEs for trajectories."""
        return self.trajectories[0] if self.trajectories else self.n_samples

    def shard_units(self, index: int) -> int:
        """Samples (or UEs) of shard ``index``: as equal as possible, the first ``units % shards`` get one more."""
        q, r = divmod(self.units, self.shards)
        return q + (1 if index < r else 0)

    def shard_cities(self, index: int) -> np.ndarray:
        """Random scenario: the city indices shard ``index`` draws from."""
        k = self.scenario.cities
        if k >= self.shards:
            return np.arange(index, k, self.shards, dtype=np.int64)
        return np.array([index % k], dtype=np.int64)

    def shard_seed(self, index: int) -> int:
        """Simulator seed of shard ``index`` of a named scenario."""
        ss = np.random.SeedSequence([SHARD_DOMAIN, self.seed, int(index)])
        return int(ss.generate_state(1, np.uint64)[0] >> np.uint64(1))

    def to_dict(self) -> dict[str, Any]:
        sc = self.scenario
        scen = sc.to_dict() if isinstance(sc, RandomScenario) else {"kind": "named", "config": sc.to_dict()}
        return {"scenario": scen, "n_samples": self.n_samples, "seed": self.seed, "shards": self.shards,
                "trajectories": list(self.trajectories) if self.trajectories else None}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ShardSpec":
        if not isinstance(d, dict) or not isinstance(d.get("scenario"), dict):
            raise ConfigError("spec", "expected a dict with a 'scenario' record")
        sc = d["scenario"]
        scen = RandomScenario.from_dict(sc) if sc.get("kind") == "random" else ScenarioConfig.from_dict(sc.get("config"))
        tr = d.get("trajectories")
        return cls(scenario=scen, n_samples=d.get("n_samples"), seed=d.get("seed"), shards=d.get("shards"),
                   trajectories=tuple(tr) if tr else None)


def _shard_dataset(spec: ShardSpec, index: int) -> BeamDataset:
    from ..sim import simulate_random
    from .simulated import dataset_from_random, generate_dataset

    j = _int("index", index, 0, spec.shards - 1)
    units = spec.shard_units(j)
    if isinstance(spec.scenario, RandomScenario):
        ds = dataset_from_random(simulate_random(spec.scenario, units, spec.seed, stream=j, cities=spec.shard_cities(j)))
        ds.meta["scenario"].pop("stream", None)
    elif spec.trajectories:
        _, n_steps, dt = spec.trajectories
        ds = generate_dataset(spec.scenario, 0, spec.shard_seed(j), trajectories=(units, n_steps, dt))
        first = sum(spec.shard_units(i) for i in range(j))
        ds.arrays["traj_id"] = (ds.arrays["traj_id"] + first).astype(np.int32)   # unique across the folder
    else:
        ds = generate_dataset(spec.scenario, units, spec.shard_seed(j))
    ds.meta["seed"] = spec.seed
    ds.meta["shard"] = {"index": j, "of": spec.shards, **({} if isinstance(spec.scenario, RandomScenario)
                                                          else {"simulator_seed": spec.shard_seed(j)})}
    return ds


def generate_shard(spec: ShardSpec, index: int, out_dir: str | Path) -> Path:
    """Simulate shard ``index`` of ``spec`` and write it to ``out_dir/shard-NNNNN.npz`` (atomically); returns the
    path. A pure function of ``(spec, index)``: the same arguments always write the same bytes, whichever process
    or machine runs it (safe to fan out with any map, e.g. Ray tasks)."""
    out_dir = Path(out_dir)
    return save_dataset(_shard_dataset(spec, index), out_dir / shard_name(index))


def shard_bytes(spec: ShardSpec, index: int) -> bytes:
    """The bytes :func:`generate_shard` writes for shard ``index`` (built in a private temp folder and read back):
    what a worker that does not share the output folder's file system (a node of a Ray cluster) sends back."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="edgebm-shard-") as d:
        return generate_shard(spec, index, d).read_bytes()


def _on_executor(executor: "Executor", spec: ShardSpec, out_dir: Path) -> Callable[..., Iterator[Path]]:
    """A ``map_fn`` for :func:`write_shards` that runs :func:`shard_bytes` as the executor's tasks (one CPU each)
    and writes the returned bytes here, in shard order: the workers need no access to ``out_dir``."""
    from ..parallel import Resources

    def run(_f: Callable[[int], Path], indices: Iterable[int]) -> Iterator[Path]:
        indices = list(indices)
        for j, data in zip(indices, executor.imap(partial(shard_bytes, spec), indices, Resources(cpus=1))):
            yield atomic_write_bytes(out_dir / shard_name(j), data)

    return run


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _is_shard_folder(path: Path) -> bool:
    """True for a folder holding an edgebm shard index and nothing but shard files (what write_shards writes)."""
    try:
        if json.loads((path / INDEX_NAME).read_text(encoding="utf-8")).get("format") != SHARD_FORMAT:
            return False
        return all(p.is_file() and (p.name == INDEX_NAME or _SHARD_RE.match(p.name)) for p in path.iterdir())
    except (OSError, ValueError, AttributeError):
        return False


def check_shards_out(out: str | Path, arg: str = "--out") -> Path:
    """Cheap check before any simulation: ``out`` is new, empty or an edgebm shard folder, its folder writable
    (:func:`edgebm.outputs.check_output_folder`); :class:`~edgebm.errors.ConfigError` naming ``arg`` otherwise."""
    return check_output_folder(out, arg, _is_shard_folder, "shard folder")


def recover_folder(out: str | Path) -> None:
    """Finish an interrupted replacement of the shard folder ``out`` (the complete previous version is renamed
    back when ``out`` is missing) and remove temp siblings of dead writers (:func:`edgebm.atomic.clean_stale_siblings`)."""
    clean_stale_siblings(out)


def write_shards(spec: ShardSpec, out: str | Path, map_fn: Callable[[Callable[[int], Path], Iterable[int]], Iterable[Path]] = map,
                 progress: Callable[[int, int], None] | None = None, arg: str = "--out",
                 executor: "Executor | None" = None) -> Path:
    """Write the shard folder ``out`` for ``spec`` atomically (see the module doc) and return it.

    ``map_fn(f, range(spec.shards))`` runs ``f = partial(generate_shard, spec, out_dir=<temp folder>)`` over the
    shard indices: the builtin ``map`` (serial, default) or ``ProcessPoolExecutor.map``; the result does not depend
    on it. ``executor`` (an :class:`edgebm.parallel.Executor`, e.g. Ray tasks; instead of ``map_fn``) runs
    :func:`shard_bytes` as its tasks and writes the bytes they return here, so the workers need not share this
    file system (the nodes of a Ray cluster). ``progress(done, total)`` is called as shards finish. ``out`` must be new,
    empty or an edgebm shard folder: anything else raises :class:`~edgebm.errors.ConfigError` naming ``arg``
    (checked before any simulation, and again before the swap) and is left untouched.
    """
    out = Path(out)
    if executor is not None and map_fn is not map:
        raise ValueError("write_shards: give map_fn or executor, not both")
    check_shards_out(out, arg)
    with atomic_folder(out, before_swap=lambda: check_shards_out(out, arg)) as tmp:   # re-checked after the long run
        if executor is not None:
            map_fn = _on_executor(executor, spec, tmp)
        paths = []
        for done, p in enumerate(map_fn(partial(generate_shard, spec, out_dir=tmp), range(spec.shards)), 1):
            paths.append(Path(p))
            if progress is not None:
                progress(done, spec.shards)
        index = _index_for(spec, tmp, paths)
        atomic_write(tmp / INDEX_NAME, lambda f: f.write((json.dumps(index, indent=1, sort_keys=True) + "\n").encode()))
    return out


def _index_for(spec: ShardSpec, folder: Path, paths: Sequence[Path]) -> dict[str, Any]:
    from .dataset import read_dataset_header

    records, meta, dims = [], None, None
    for j, p in enumerate(paths):
        if p.name != shard_name(j) or p.parent.resolve() != folder.resolve():
            raise DatasetError(f"{p}: shard {j} was written as {p}, expected {folder / shard_name(j)}")
        h, shard_meta = read_dataset_header(p)
        rows, d = h["rsrp_b"].shape[0], (h["rsrp_b"].shape[1], h["rsrp_a"].shape[1])
        if dims is not None and d != dims:
            raise DatasetError(f"{p}: shard {j} is {d[0]}->{d[1]} beams, shard 0 is {dims[0]}->{dims[1]}")
        dims = d
        if meta is None:
            meta = shard_meta
            meta.pop("shard", None)
            meta.pop("schema_version", None)
        records.append({"file": p.name, "samples": int(rows), "sha256": _sha256(p)})
    return {"format": SHARD_FORMAT, "spec": spec.to_dict(), "n_samples": sum(r["samples"] for r in records),
            "set_b": dims[0], "set_a": dims[1], "meta": meta, "shards": records}


# ---------------------------------------------------------------------------------------------- reading
def read_index(folder: str | Path) -> dict[str, Any]:
    """Read and check ``folder/index.json`` (format, shard file names inside the folder, counts, hashes)."""
    folder = Path(folder)
    src = f"{folder / INDEX_NAME}"
    if not (folder / INDEX_NAME).is_file():
        raise DatasetError(f"{folder}: a folder dataset needs {INDEX_NAME} (write one with edgebm data generate --shards N)")
    try:
        idx = json.loads((folder / INDEX_NAME).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DatasetError(f"{src}: not valid JSON ({e})") from None
    if not isinstance(idx, dict) or idx.get("format") != SHARD_FORMAT:
        raise DatasetError(f"{src}: field 'format': expected {SHARD_FORMAT!r}, got "
                           f"{idx.get('format') if isinstance(idx, dict) else idx!r}")
    shards = idx.get("shards")
    if not isinstance(shards, list) or not shards:
        raise DatasetError(f"{src}: field 'shards': expected a non-empty list")
    seen = set()
    for j, r in enumerate(shards):
        if not isinstance(r, dict) or not isinstance(r.get("file"), str) or not _SHARD_RE.match(r["file"]):
            raise DatasetError(f"{src}: field 'shards[{j}].file': expected a file name like shard-00000.npz inside "
                               "the folder (no paths)")
        if r["file"] in seen:
            raise DatasetError(f"{src}: field 'shards[{j}].file': {r['file']} is listed twice")
        seen.add(r["file"])
        if isinstance(r.get("samples"), bool) or not isinstance(r.get("samples"), int) or r["samples"] < 1:
            raise DatasetError(f"{src}: field 'shards[{j}].samples': expected an integer >= 1")
        if not isinstance(r.get("sha256"), str) or not re.fullmatch(r"[0-9a-f]{64}", r["sha256"]):
            raise DatasetError(f"{src}: field 'shards[{j}].sha256': expected 64 hex digits")
    for key in ("n_samples", "set_a", "set_b"):
        if isinstance(idx.get(key), bool) or not isinstance(idx.get(key), int) or idx[key] < 1:
            raise DatasetError(f"{src}: field '{key}': expected an integer >= 1")
    if idx["n_samples"] != sum(r["samples"] for r in shards):
        raise DatasetError(f"{src}: field 'n_samples': {idx['n_samples']} but the shards hold "
                           f"{sum(r['samples'] for r in shards)}")
    if not isinstance(idx.get("meta"), dict):
        raise DatasetError(f"{src}: field 'meta': expected a JSON object")
    return idx


class ShardedDataset:
    """A dataset read shard by shard (see :func:`open_dataset`): ``len()``, ``n_b``, ``n_a``, ``meta``,
    ``codebooks``, ``shard_sizes``, :meth:`shard`, :meth:`iter_batches`, :meth:`load`."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if self.path.is_dir():
            recover_folder(self.path)
            self.index: dict[str, Any] | None = read_index(self.path)
            recs = self.index["shards"]
            self.files = [self.path / r["file"] for r in recs]
            self.shard_sizes = [int(r["samples"]) for r in recs]
            self._n_b, self._n_a = int(self.index["set_b"]), int(self.index["set_a"])
            self.meta: dict[str, Any] = dict(self.index["meta"])
            self._first: BeamDataset | None = None
            self._cb: dict[str, np.ndarray] | None = None
        else:
            self.index = None
            self._first = load_dataset_file(self.path)
            self.files = [self.path]
            self.shard_sizes = [len(self._first)]
            self._n_b, self._n_a = self._first.n_b, self._first.n_a
            self.meta = self._first.meta
            self._cb = self._first.codebooks

    def __len__(self) -> int:
        return int(sum(self.shard_sizes))

    @property
    def n_b(self) -> int:
        return self._n_b

    @property
    def n_a(self) -> int:
        return self._n_a

    @property
    def n_shards(self) -> int:
        return len(self.files)

    @property
    def codebooks(self) -> dict[str, np.ndarray]:
        """The dataset's codebooks (those of shard 0; every shard is checked to hold the same)."""
        if self._cb is None:
            self.shard(0)
        return self._cb

    def shard(self, j: int) -> BeamDataset:
        """Shard ``j`` as a validated :class:`BeamDataset` (sha256, sample count, beams and codebooks checked)."""
        if self.index is None:
            if self._first is None:
                self._first = load_dataset_file(self.path)
            return self._first
        rec, path = self.index["shards"][j], self.files[j]
        if not path.is_file():
            raise DatasetError(f"{path}: shard {j} listed in {INDEX_NAME} is missing")
        if _sha256(path) != rec["sha256"]:
            raise DatasetError(f"{path}: sha256 does not match {INDEX_NAME} (modified or corrupted shard)")
        ds = load_dataset_file(path)
        if len(ds) != rec["samples"] or (ds.n_b, ds.n_a) != (self._n_b, self._n_a):
            raise DatasetError(f"{path}: holds {len(ds)} samples {ds.n_b}->{ds.n_a}, {INDEX_NAME} says "
                               f"{rec['samples']} samples {self._n_b}->{self._n_a}")
        if j == 0:
            self._cb = ds.codebooks
        else:
            ref = self.codebooks
            if set(ref) != set(ds.codebooks) or any(not np.array_equal(ref[k], ds.codebooks[k]) for k in ref):
                raise DatasetError(f"{path}: its codebooks differ from shard 0's (a folder holds one codebook)")
        return ds

    def load(self) -> BeamDataset:
        """Every shard concatenated into one :class:`BeamDataset` (holds the whole dataset in memory)."""
        if self.index is None:
            return self.shard(0)
        from .npz import MAX_ARRAY_BYTES

        need = dataset_size(self.path)[1]          # from the headers, before any shard is read
        if need > MAX_ARRAY_BYTES:
            raise DatasetError(f"{self.path}: {len(self)} samples need about {need / 2**30:.1f} GiB in memory, more "
                               f"than the {MAX_ARRAY_BYTES / 2**30:.1f} GiB allowed; stream it with "
                               "edgebm.data.open_dataset(path).iter_batches(...) instead of loading it whole")
        parts = [self.shard(j) for j in range(self.n_shards)]
        keys = set(parts[0].arrays)
        for j, p in enumerate(parts):
            if set(p.arrays) != keys:
                raise DatasetError(f"{self.files[j]}: fields {sorted(p.arrays)} differ from shard 0's {sorted(keys)}")
        arrays = {k: np.concatenate([p.arrays[k] for p in parts]) for k in parts[0].arrays}
        meta = {**self.meta, "shards": {"folder": str(self.path), "count": self.n_shards}}
        return BeamDataset(arrays=arrays, codebooks=parts[0].codebooks, meta=meta)

    def iter_batches(self, batch_size: int, seed: int = 0, fields: Sequence[str] | None = None, shuffle: bool = True,
                     buffer_shards: int = 1, drop_last: bool = False) -> Iterator[dict[str, np.ndarray]]:
        """Batches (dicts of arrays, ``batch_size`` rows each, the last one smaller unless ``drop_last``) over the
        whole dataset, holding ``buffer_shards`` shards in memory at a time.

        ``shuffle``: shard order and rows within the buffer permuted with ``np.random.default_rng(seed)`` (rows
        left over at the end of a buffer are carried into the next one); ``fields``: which arrays (default all).
        """
        batch_size = _int("batch_size", batch_size, 1)
        buffer_shards = _int("buffer_shards", buffer_shards, 1)
        rng = np.random.default_rng(_int("seed", seed, 0))
        order = rng.permutation(self.n_shards) if shuffle else np.arange(self.n_shards)
        carry: dict[str, np.ndarray] | None = None
        for g in range(0, self.n_shards, buffer_shards):
            parts = [self.shard(int(j)) for j in order[g:g + buffer_shards]]
            names = list(fields) if fields is not None else list(parts[0].arrays)
            for name in names:
                if name not in parts[0].arrays:
                    raise DatasetError(f"{self.path}: field '{name}': not in this dataset (has {', '.join(parts[0].arrays)})")
            buf = {k: np.concatenate(([carry[k]] if carry else []) + [p.arrays[k] for p in parts]) for k in names}
            n = len(buf[names[0]])
            perm = rng.permutation(n) if shuffle else np.arange(n)
            full = n - n % batch_size
            for s in range(0, full, batch_size):
                yield {k: v[perm[s:s + batch_size]] for k, v in buf.items()}
            carry = {k: v[perm[full:]] for k, v in buf.items()} if full < n else None
        if carry is not None and not drop_last:
            yield carry


def dataset_size(path: str | Path) -> tuple[int, int]:
    """``(samples, bytes)`` the dataset at ``path`` (a ``.npz`` or a shard folder) takes in memory when loaded whole,
    from the npy headers only (a folder: its index and shard 0's headers), so a job can refuse data that will not
    fit before reading any. :class:`DatasetError` when ``path`` is not a dataset."""
    from .dataset import FIELDS, read_dataset_header

    path = Path(path)
    if not path.exists():
        recover_folder(path)     # a shard folder whose replacement was interrupted (see the module doc)
    if path.is_dir():
        idx = read_index(path)
        n = int(idx["n_samples"])
        h, _ = read_dataset_header(path / idx["shards"][0]["file"])
    elif path.is_file():
        h, _ = read_dataset_header(path)
        n = int(h["rsrp_b"].shape[0])
    else:
        raise DatasetError(f"{path}: no such dataset file or shard folder")
    rows = max(1, h["rsrp_b"].shape[0])
    per_row = sum(v.nbytes for k, v in h.items() if k in FIELDS) / rows
    fixed = sum(v.nbytes for k, v in h.items() if k not in FIELDS)       # codebooks and metadata: once
    return n, int(per_row * n + fixed)


def check_memory(path: str | Path, arg: str, factor: float, job: str) -> tuple[int, int]:
    """Refuse, before reading any data, a dataset that ``job`` (e.g. "edgebm train --model mlp") cannot hold in
    memory: the part of the job's peak memory that grows with the data is estimated as ``factor`` x the dataset's
    in-memory size (:func:`dataset_size`; ``factor`` measured per job) and compared with the memory available now
    (:func:`edgebm.data.npz.available_memory_bytes`; the fixed part, libraries and models, is left out so small
    data is never refused). :class:`~edgebm.errors.ConfigError` naming ``arg`` otherwise. Returns
    :func:`dataset_size`."""
    from .npz import available_memory_bytes, fmt_bytes

    n, nbytes = dataset_size(path)
    need, avail = factor * nbytes, available_memory_bytes()
    if need > avail:
        raise ConfigError(arg, f"{path}: {n} samples ({fmt_bytes(nbytes)} in memory) need about {fmt_bytes(int(need))} for "
                          f"{job}, which holds the whole dataset in memory; {fmt_bytes(avail)} is available now",
                          "give a smaller dataset (edgebm data generate --samples N, or a shard folder with fewer "
                          "samples), or free memory; only edgebm.data.open_dataset(path).iter_batches(...) streams")
    return n, nbytes


def open_dataset(path: str | Path) -> ShardedDataset:
    """Open a dataset for streaming: a shard folder (``index.json``) or one ``.npz`` (a single shard). Nothing but
    the index is read until :meth:`ShardedDataset.shard` / :meth:`~ShardedDataset.iter_batches` needs it."""
    return ShardedDataset(path)


def load_shard_folder(folder: str | Path) -> BeamDataset:
    """A shard folder as one :class:`BeamDataset` (every shard verified, then concatenated)."""
    return ShardedDataset(folder).load()
