"""The training job behind ``edgebm train``: one family on one dataset into a run folder.

A run folder holds the model (``model.pt`` or ``model.pkl``), ``config.json`` (family, model config, data meta,
split), ``metrics.json`` (held-out test split) and ``history.json`` (per-epoch losses). The split is
:data:`edgebm.pipeline.settings.SPLIT` with the given seed, the same one ``export`` and ``evaluate`` use.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..atomic import atomic_folder, atomic_write
from ..data import BeamDataset
from ..data.shards import check_memory
from ..errors import ModelError
from ..evaluate import dataset_beam_xy
from ..metrics import summarize, topk_accuracy
from ..models.estimator import BeamModel, load_model, make_model
from ..outputs import check_output_folder
from ..train import TrainConfig
from .settings import split_dataset

__all__ = ["TrainJobResult", "train_run", "is_run_folder", "check_run_out", "check_train_memory", "RUN_FILES",
           "MEMORY_FACTOR"]

#: files :func:`train_run` writes into a run folder (an existing folder holding only these may be replaced)
RUN_FILES = frozenset({"model.pt", "model.pkl", "config.json", "metrics.json", "history.json"})
#: peak memory of ``edgebm train --model F`` per byte of dataset held in memory (growth of the peak RSS between 20k and
#: 80k toy samples, /usr/bin/time -f %M, ``--epochs 1 --soft-labels 0.2``, x1.25 and rounded up; measured 2.5x tree,
#: 2.5x sgd, 3.4x svm_linear, 3.6x mlp, 3.7x angular, 5.3x gbt, 9.4x dscnn, 19x teacher, 25x teacher_pos);
#: families not measured (gru, svm_rbf, new ones) get DEFAULT_MEMORY_FACTOR; --distil-from adds 1 (teacher logits)
MEMORY_FACTOR = {"tree": 4, "sgd": 4, "svm_linear": 5, "mlp": 5, "angular": 5, "gbt": 7, "dscnn": 12, "teacher": 25,
                 "teacher_pos": 31}
DEFAULT_MEMORY_FACTOR = 12


@dataclass
class TrainJobResult:
    model: BeamModel
    metrics: dict[str, Any]  # held-out test split: summarize() rows, or per_slot for trajectory families
    config: dict[str, Any]
    out: Path


def _test_metrics(model: BeamModel, test: BeamDataset) -> dict[str, Any]:
    if model.spec.needs_trajectories:
        from ..models.temporal import make_sequences

        xs, ys = make_sequences(test.rsrp_b, test.best_a, test.traj_id, test.t, model.history, model.horizon)  # type: ignore[attr-defined]
        seq = model.sequence_scores(xs)  # type: ignore[attr-defined]
        return {"per_slot": [{"slot": j, "top1": topk_accuracy(seq[:, j], ys[:, j], 1), "top3": topk_accuracy(seq[:, j], ys[:, j], 3)}
                             for j in range(seq.shape[1])], "n": int(len(xs))}
    x = model._x(test) if getattr(model, "use_position", False) else test.rsrp_b  # type: ignore[attr-defined]
    return summarize(model.decision_scores(x), test.rsrp_a, test.noise_dbm, dataset_beam_xy(test))


def train_run(
    ds: BeamDataset,
    family: str,
    out: str | Path,
    cfg: TrainConfig,
    params: dict[str, Any] | None = None,
    distil_from: str | Path | None = None,
    data_path: str | None = None,
    progress: Callable[[int, int, dict], None] | None = None,
    arg: str = "out",
) -> TrainJobResult:
    """Train ``family`` on ``ds`` (split with ``cfg.seed``), optionally distilled from the run ``distil_from``,
    and write the run folder ``out`` (new, empty or a previous run folder: :func:`check_run_out`, checked first and
    again before the new folder replaces it; ``arg`` names ``out`` in errors). :class:`ModelError` for an unknown
    family, bad parameters or data the family cannot use; nothing is written then."""
    check_run_out(out, arg)
    train, val, test = split_dataset(ds, cfg.seed)
    try:
        model = make_model(family, ds.n_b, ds.n_a, cfg, **dict(params or {}))
    except TypeError as e:
        raise ModelError(str(e)) from None
    kw: dict[str, Any] = {}
    if distil_from:
        teacher = load_model(distil_from)
        if (teacher.n_in, teacher.n_out) != (ds.n_b, ds.n_a):
            raise ModelError(f"teacher {distil_from} is {teacher.n_in}->{teacher.n_out}, data is {ds.n_b}->{ds.n_a}")
        kw["teacher_logits"] = teacher.decision_scores(train.rsrp_b)
    t0 = time.perf_counter()
    model.fit(train, val, progress=progress, **kw)
    out = Path(out)
    metrics = _test_metrics(model, test)
    res = model.result
    config = {"family": family, "model": model.config(), "data": {"path": data_path, "meta": ds.meta, "n": len(ds),
              "split": {"train": len(train), "val": len(val), "test": len(test), "seed": cfg.seed}},
              "distil_from": None if distil_from is None else str(distil_from), "seconds": round(time.perf_counter() - t0, 2)}
    # the run folder is written whole and swapped in: a previous run's files (model.pkl next to a new model.pt) never
    # survive, and a crash leaves the previous run or the new one
    with atomic_folder(out, before_swap=lambda: check_run_out(out, arg)) as tmp:
        model.save(tmp)
        for name, obj in (("config.json", config), ("metrics.json", metrics), ("history.json", res.history if res else [])):
            atomic_write(tmp / name, lambda f, o=obj: f.write((json.dumps(o, indent=2, default=_json_default) + "\n").encode()))
    return TrainJobResult(model, metrics, config, out)


def is_run_folder(path: Path) -> bool:
    """A previous run folder: ``config.json`` plus only files :func:`train_run` writes (:data:`RUN_FILES`)."""
    entries = list(Path(path).iterdir())
    names = {p.name for p in entries}
    return "config.json" in names and names <= RUN_FILES and all(p.is_file() and not p.is_symlink() for p in entries)


def check_train_memory(data: str | Path, family: str, distil: bool = False, arg: str = "data") -> int:
    """Before reading the dataset at ``data``: refuse one training ``family`` cannot hold in memory (training takes
    the whole dataset in memory: :data:`MEMORY_FACTOR`, :func:`edgebm.data.shards.check_memory`). Returns its samples."""
    factor = MEMORY_FACTOR.get(family, DEFAULT_MEMORY_FACTOR) + (1 if distil else 0)
    return check_memory(data, arg, factor, f"edgebm train --model {family}")[0]


def check_run_out(out: str | Path, arg: str = "out") -> Path:
    """Cheap check before loading data or training: ``out`` is new, empty or a previous run folder, its folder
    writable (:func:`edgebm.outputs.check_output_folder`); :class:`~edgebm.errors.ConfigError` naming ``arg``."""
    return check_output_folder(out, arg, is_run_folder, "run folder")


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    return str(o)
