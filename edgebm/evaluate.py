"""Side-by-side evaluation of a model (run folder or bundle) against the non-ML baselines.

Every row is a beam-selection method with its measurement overhead: the genie, exhaustive
search, two-level hierarchical search, the model alone (Set B sweep only), the model with top-K
refinement, and nearest-position lookup. Metric definitions: :mod:`edgebm.metrics`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from . import baselines as B
from . import metrics as M
from .data import BeamDataset
from .data.dataset import DEFAULT_SPLIT

__all__ = ["n_avg_of", "dataset_beam_xy", "scores_from", "evaluation_rows", "COLUMNS", "rows_to_markdown", "choose_split", "trained_on", "TRAIN_SPLIT", "MEMORY_FACTOR"]

#: train / validation / test fractions of ``edgebm train`` and ``edgebm export``
TRAIN_SPLIT = DEFAULT_SPLIT

COLUMNS = ("method", "top1", "top3", "within_1db", "rsrp_gap_db_mean", "se_drop_mean", "se_drop_p90", "beams_measured", "effective_se_mean")


#: peak memory of ``edgebm evaluate`` per byte of evaluation data held in memory (growth of the peak RSS between 50k
#: and 200k toy samples with an mlp run, /usr/bin/time -f %M: 10x; x1.25, rounded up)
MEMORY_FACTOR = 13


def scores_from(source: str | Path | Any, ds: BeamDataset, trusted_keys: Sequence[Any] | None = None) -> tuple[str, np.ndarray]:
    """(label, scores (N, A)) for a run folder, a bundle folder, or a fitted model object. ``trusted_keys``
    (ed25519 public keys, see :class:`edgebm.runtime.Predictor`): a bundle must be signed by one of them."""
    if not isinstance(source, (str, Path)):
        return getattr(source, "family", "model"), source.decision_scores(ds.rsrp_b)
    path = Path(source)
    if (path / "manifest.json").is_file():
        from .runtime import Predictor

        pred = Predictor(path, allow_failed=True, trusted_keys=trusted_keys)
        return f"{pred.manifest.family} (bundle)", pred.decision_scores(ds.rsrp_b)
    if trusted_keys:
        from .errors import ConfigError

        raise ConfigError("trusted_keys", f"{path} is not a bundle (no manifest.json)",
                          "signatures cover bundles written by edgebm export; a run folder cannot be verified")
    from .models.estimator import load_model

    model = load_model(path)
    return model.family, model.decision_scores(ds.rsrp_b)


def dataset_beam_xy(ds: BeamDataset) -> np.ndarray | None:
    """Set A beam positions on the 2-D beam grid (:func:`edgebm.metrics.beam_grid_xy`) for ``dba_top3``, or None."""
    shape = ds.meta.get("bs_array")
    w = ds.codebooks.get("cb_a_weights")
    if w is None or not isinstance(shape, (list, tuple)) or len(shape) != 2:
        return None
    return M.beam_grid_xy(w, (int(shape[0]), int(shape[1])))


def n_avg_of(ds: BeamDataset) -> int:
    """Subcarriers a UE averages a beam measurement over (the dataset's scenario, the first of a pooled list; 24
    when the metadata does not say)."""
    sc = ds.meta.get("scenario")
    sc = sc[0] if isinstance(sc, list) and sc else sc
    return int(sc.get("n_subcarriers", 24)) if isinstance(sc, dict) else 24


def trained_on(source: str | Path) -> dict[str, Any] | None:
    """What a run folder (``edgebm train``) or bundle (``edgebm export``) was trained on: ``{"meta", "n", "seed"}``
    (dataset metadata, rows, split seed), or None when the folder does not say."""
    path = Path(source)
    try:
        if (path / "manifest.json").is_file():
            man = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
            d = man.get("dataset", {})
            seed = d.get("split", {}).get("seed", man.get("training", {}).get("seed"))
            return {"meta": d.get("meta"), "n": d.get("n_samples"), "seed": seed}
        if (path / "config.json").is_file():
            d = json.loads((path / "config.json").read_text(encoding="utf-8")).get("data", {})
            return {"meta": d.get("meta"), "n": d.get("n"), "seed": d.get("split", {}).get("seed")}
    except (OSError, ValueError, AttributeError):
        return None
    return None


def _same_meta(a: Any, b: Any) -> bool:
    def norm(m: Any) -> str:
        m = {k: v for k, v in m.items() if k != "schema_version"} if isinstance(m, dict) else m
        return json.dumps(m, sort_keys=True, default=str)

    return a is not None and b is not None and norm(a) == norm(b)


def choose_split(ds: BeamDataset, source: str | Path, split: str = "auto", seed: int = 0) -> tuple[BeamDataset, str]:
    """The rows to evaluate on and a sentence saying which.

    ``auto``: when ``ds`` is the data ``source`` was trained on (same metadata and row count), its held-out test
    split with the run's own split seed (rows it trained or selected on never enter the comparison); otherwise all
    rows. ``test``: the test split with ``seed``. ``all``: every row.
    """
    if split not in ("auto", "all", "test"):
        raise ValueError(f"split must be auto, all or test, got {split!r}")
    if split == "auto":
        info = trained_on(source)
        if info is not None and info["n"] == len(ds) and info["seed"] is not None and _same_meta(info["meta"], ds.meta):
            test = ds.split(TRAIN_SPLIT, seed=int(info["seed"]))[2]
            return test, (f"held-out test split: {len(test)} of {len(ds)} rows (the data is this run's own training data, "
                          f"split seed {info['seed']})")
        return ds, f"all {len(ds)} rows (the data is not this run's training data)"
    if split == "test":
        test = ds.split(TRAIN_SPLIT, seed=seed)[2]
        return test, f"test split: {len(test)} of {len(ds)} rows (split seed {seed})"
    return ds, f"all {len(ds)} rows"


def evaluation_rows(
    scores: np.ndarray | dict[str, np.ndarray] | None,
    ds: BeamDataset,
    label: str = "model",
    train: BeamDataset | None = None,
    cycle_ms: float = 20.0,
    seed: int = 0,
    refine_k: tuple[int, ...] = (3,),
    refine_label: str = "{label} + top-{k} refine",
    selections: list[B.Selection] | None = None,
) -> list[dict[str, Any]]:
    """Metric rows (dicts keyed by :data:`COLUMNS`, plus ``model`` and ``refine``: the model a row belongs to and
    its top-K, 0 for the model alone) for every baseline and model on ``ds``.

    ``scores``: one model's (N, A) scores (named ``label``), several models as ``{label: scores}``, or None
    (baselines only). Rows in order: genie, exhaustive, hierarchical, then per model: alone (|B| beams) and each
    top-K refinement (``refine_label``), then nearest position + top-3 when ``train`` is given. Every noisy
    measurement draws from one generator seeded with ``seed``, in that order. ``selections``, when a list, receives
    the :class:`~edgebm.baselines.Selection` of every row (per-sample choices for paired comparisons).
    """
    rng = np.random.default_rng(seed)
    a, n_b, n_avg = ds.rsrp_a, ds.n_b, n_avg_of(ds)
    models = scores if isinstance(scores, dict) else ({} if scores is None else {label: scores})
    rows: list[dict[str, Any]] = []

    def add(sel: B.Selection, model: str, refine: int | None, top3: float | None = None) -> None:
        m = B.selection_metrics(sel, a, ds.noise_dbm, cycle_ms)
        rows.append({"method": sel.name, "model": model, "refine": refine, "top3": top3, **m})
        if selections is not None:
            selections.append(sel)

    add(B.genie(a), "genie", None)
    add(B.exhaustive_search(a, ds.noise_dbm, rng, n_avg), "exhaustive", None)
    add(B.hierarchical_search(ds.rsrp_b, a, ds.codebooks["cb_children"], ds.noise_dbm, rng, n_avg), "hierarchical", None)
    for lbl, s in models.items():
        add(B.Selection(lbl, s.argmax(1), np.full(len(ds), n_b, dtype=np.int64)), lbl, 0, M.topk_accuracy(s, ds.best_a, 3))
        for k in refine_k:
            add(B.topk_refinement(s, a, ds.noise_dbm, rng, k, n_b, n_avg, name=refine_label.format(label=lbl, k=k)), lbl, k)
    if train is not None:
        s_pos = B.nearest_position(train.pos, train.best_a, ds.pos, ds.n_a)
        add(B.topk_refinement(s_pos, a, ds.noise_dbm, rng, 3, 0, n_avg, name="nearest position + top-3"), "nearest position", 3,
            M.topk_accuracy(s_pos, ds.best_a, 3))
    return rows


def rows_to_markdown(rows: list[dict[str, Any]], columns: tuple[str, ...] = COLUMNS) -> str:
    from .numfmt import fmt_num

    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    out += ["| " + " | ".join(fmt_num(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(out)
