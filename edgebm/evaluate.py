"""Side-by-side evaluation of a model (run folder or bundle) against the non-ML baselines.

Every row is a beam-selection method with its measurement overhead: the genie, exhaustive
search, two-level hierarchical search, the model alone (Set B sweep only), the model with top-K
refinement, and nearest-position lookup. Metric definitions: :mod:`edgebm.metrics`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from . import baselines as B
from . import metrics as M
from .data import BeamDataset

__all__ = ["scores_from", "evaluation_rows", "COLUMNS", "rows_to_markdown"]

COLUMNS = ("method", "top1", "top3", "within_1db", "rsrp_gap_db_mean", "se_drop_mean", "se_drop_p90", "beams_measured", "effective_se_mean")


def scores_from(source: str | Path | Any, ds: BeamDataset) -> tuple[str, np.ndarray]:
    """(label, scores (N, A)) for a run folder, a bundle folder, or a fitted model object."""
    if not isinstance(source, (str, Path)):
        return getattr(source, "family", "model"), source.decision_scores(ds.rsrp_b)
    path = Path(source)
    if (path / "manifest.json").is_file():
        from .runtime import Predictor

        pred = Predictor(path, allow_failed=True)
        return f"{pred.manifest.family} (bundle)", pred.decision_scores(ds.rsrp_b)
    from .models.estimator import load_model

    model = load_model(path)
    return model.family, model.decision_scores(ds.rsrp_b)


def _n_avg(ds: BeamDataset) -> int:
    return int(ds.meta.get("scenario", {}).get("n_subcarriers", 24)) if isinstance(ds.meta.get("scenario"), dict) else 24


def evaluation_rows(
    scores: np.ndarray | None,
    ds: BeamDataset,
    label: str = "model",
    train: BeamDataset | None = None,
    cycle_ms: float = 20.0,
    seed: int = 0,
    refine_k: tuple[int, ...] = (3,),
) -> list[dict[str, Any]]:
    """Metric rows (dicts keyed by :data:`COLUMNS`) for the model and every baseline on ``ds``."""
    rng = np.random.default_rng(seed)
    a, n_b, n_avg = ds.rsrp_a, ds.n_b, _n_avg(ds)
    rows: list[dict[str, Any]] = []

    def add(sel: B.Selection, top3: float | None = None) -> None:
        m = B.selection_metrics(sel, a, ds.noise_dbm, cycle_ms)
        rows.append({"method": sel.name, "top3": top3, **m})

    add(B.genie(a))
    add(B.exhaustive_search(a, ds.noise_dbm, rng, n_avg))
    add(B.hierarchical_search(ds.rsrp_b, a, ds.codebooks["cb_children"], ds.noise_dbm, rng, n_avg))
    if scores is not None:
        top3 = M.topk_accuracy(scores, ds.best_a, 3)
        add(B.Selection(label, scores.argmax(1), np.full(len(ds), n_b, dtype=np.int64)), top3)
        for k in refine_k:
            add(B.topk_refinement(scores, a, ds.noise_dbm, rng, k, n_b, n_avg, name=f"{label} + top-{k} refine"))
    if train is not None:
        s_pos = B.nearest_position(train.pos, train.best_a, ds.pos, ds.n_a)
        add(B.topk_refinement(s_pos, a, ds.noise_dbm, rng, 3, 0, n_avg, name="nearest position + top-3"), M.topk_accuracy(s_pos, ds.best_a, 3))
    return rows


def rows_to_markdown(rows: list[dict[str, Any]], columns: tuple[str, ...] = COLUMNS) -> str:
    def fmt(v: Any) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.3f}" if abs(v) < 100 else f"{v:.0f}"
        return str(v)

    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    out += ["| " + " | ".join(fmt(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(out)
