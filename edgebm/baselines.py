"""Non-ML beam selection baselines, with their measurement overhead counted.

Every baseline returns a :class:`Selection`: the chosen Set A beam per sample and how many beams
were measured to choose it. Measurements of narrow beams are noisy like real SSB/CSI-RS RSRP
(see :func:`measure_beams`); only the genie sees ``rsrp_a`` directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import metrics as M

__all__ = [
    "Selection",
    "measure_beams",
    "exhaustive_search",
    "hierarchical_search",
    "topk_refinement",
    "measure_candidates",
    "nearest_position",
    "genie",
    "selection_metrics",
    "Measure",
]

#: ``measure(rsrp_dbm (N, B), noise_dbm (N,)) -> measured dBm (N, B)``: how a UE measures beams. The default is
#: :func:`measure_beams` with a seeded generator; tests pass an exact one (``lambda r, n: r``) to hand-compute results.
Measure = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Selection:
    """Chosen Set A beam (N,), beams measured per decision (N,) and, where the method measured the chosen
    beam, its measured RSRP (N,) in dBm (what a UE would remember as the serving beam's level)."""

    name: str
    chosen: np.ndarray
    beams_measured: np.ndarray
    measured_dbm: np.ndarray | None = None


def _measurer(rng: np.random.Generator | None, n_avg: int, measure: Measure | None) -> Measure:
    if measure is not None:
        return measure
    if rng is None:
        raise ValueError("give a seeded rng (noisy measurements) or a measure function")
    return lambda r, n: measure_beams(r, n, rng, n_avg)


def measure_beams(rsrp_dbm: np.ndarray, noise_dbm: np.ndarray, rng: np.random.Generator, n_avg: int = 24) -> np.ndarray:
    """Noisy RSRP measurement of beams with true power ``rsrp_dbm`` (..., B) in dBm.

    Model: the UE averages ``|sqrt(P) + n_k|^2`` over ``n_avg`` subcarriers with ``n_k ~ CN(0, sigma^2)``,
    ``sigma^2`` = ``noise_dbm`` (per sample, broadcast over beams). That average is exactly
    ``sigma^2 / (2 n_avg)`` times a non-central chi-square with ``2 n_avg`` degrees of freedom and
    non-centrality ``2 n_avg P / sigma^2``, which is what is drawn (vectorised, no per-subcarrier array).
    """
    p = 10.0 ** (np.asarray(rsrp_dbm, dtype=np.float64) / 10.0)
    s2 = 10.0 ** (np.asarray(noise_dbm, dtype=np.float64) / 10.0)
    s2 = s2.reshape(s2.shape + (1,) * (p.ndim - s2.ndim))
    df = 2 * n_avg
    draw = rng.noncentral_chisquare(df, df * p / s2)
    return (10.0 * np.log10(np.maximum(draw * s2 / df, 1e-30))).astype(np.float32)


def genie(rsrp_a: np.ndarray) -> Selection:
    """The true best beam at no measurement cost (the reference every SE drop is against)."""
    n = len(rsrp_a)
    return Selection("genie", rsrp_a.argmax(1), np.zeros(n, dtype=np.int64))


def exhaustive_search(
    rsrp_a: np.ndarray, noise_dbm: np.ndarray, rng: np.random.Generator | None = None, n_avg: int = 24, *, measure: Measure | None = None
) -> Selection:
    """Measure every Set A beam (noisy) and keep the strongest: |A| beams per decision."""
    meas = _measurer(rng, n_avg, measure)(rsrp_a, noise_dbm)
    n, a = rsrp_a.shape
    return Selection("exhaustive", meas.argmax(1), np.full(n, a, dtype=np.int64), meas.max(1))


def measure_candidates(
    cand: np.ndarray, rsrp_a: np.ndarray, noise_dbm: np.ndarray, rng: np.random.Generator | None = None, n_avg: int = 24, *,
    n_set_b: int = 0, name: str = "candidates", measure: Measure | None = None,
) -> Selection:
    """Measure the candidate Set A beams ``cand`` (N, c) and keep the strongest measured one: ``n_set_b + c`` beams
    (the Set B sweep that produced the candidates, if any, plus the candidates)."""
    cand = np.asarray(cand, dtype=np.int64)
    meas = _measurer(rng, n_avg, measure)(np.take_along_axis(rsrp_a, cand, axis=1), noise_dbm)
    j = meas.argmax(1)[:, None]
    return Selection(name, np.take_along_axis(cand, j, axis=1)[:, 0], np.full(len(cand), n_set_b + cand.shape[1], dtype=np.int64),
                     np.take_along_axis(meas, j, axis=1)[:, 0])


def hierarchical_search(
    rsrp_b: np.ndarray, rsrp_a: np.ndarray, children: np.ndarray, noise_dbm: np.ndarray, rng: np.random.Generator | None = None,
    n_avg: int = 24, *, measure: Measure | None = None,
) -> Selection:
    """Two-level search: the measured Set B (``rsrp_b``, already noisy) picks the best wide beam, then
    the narrow beams under it (``children`` (|B|, c)) are measured and the strongest kept: |B| + c beams."""
    return measure_candidates(children[rsrp_b.argmax(1)], rsrp_a, noise_dbm, rng, n_avg, n_set_b=rsrp_b.shape[1], name="hierarchical",
                              measure=measure)


def topk_refinement(
    scores: np.ndarray, rsrp_a: np.ndarray, noise_dbm: np.ndarray, rng: np.random.Generator | None, k: int, n_set_b: int,
    n_avg: int = 24, name: str | None = None, *, measure: Measure | None = None,
) -> Selection:
    """Measure the ``k`` beams a model ranks highest (noisy) and keep the strongest: |B| + k beams
    (``n_set_b=0`` for models that need no Set B sweep, e.g. position-only)."""
    cand = M.topk_indices(scores, k)
    if k == 1:  # nothing to compare: the prediction is used unmeasured, only the Set B sweep is paid
        return Selection(name or "top1", cand[:, 0], np.full(len(rsrp_a), n_set_b, dtype=np.int64))
    return measure_candidates(cand, rsrp_a, noise_dbm, rng, n_avg, n_set_b=n_set_b, name=name or f"top{k}", measure=measure)


def nearest_position(train_pos: np.ndarray, train_best: np.ndarray, pos: np.ndarray, n_out: int, k: int = 5) -> np.ndarray:
    """Scores (N, n_out) from the best beams of the ``k`` nearest training positions (votes
    weighted by 1/distance). Feed into :func:`topk_refinement` with ``n_set_b=0``."""
    from scipy.spatial import cKDTree  # scipy ships with scikit-learn

    tree = cKDTree(np.asarray(train_pos, dtype=np.float64))
    k = min(k, len(train_pos))
    dist, idx = tree.query(np.asarray(pos, dtype=np.float64), k=k)
    dist, idx = dist.reshape(len(pos), k), idx.reshape(len(pos), k)
    w = 1.0 / (dist + 1.0)
    scores = np.zeros((len(pos), n_out))
    np.add.at(scores, (np.repeat(np.arange(len(pos)), k), train_best[idx].ravel()), w.ravel())
    return scores


def selection_metrics(sel: Selection, rsrp_a: np.ndarray, noise_dbm: np.ndarray, cycle_ms: float = 20.0) -> dict[str, float]:
    """Top-1, within-1 dB, RSRP gap, SE drop (mean, p90), beams measured and effective SE after overhead."""
    best = rsrp_a.argmax(1)
    drop = M.se_drop(rsrp_a, sel.chosen, noise_dbm)
    gap = M.rsrp_gap_db(rsrp_a, sel.chosen)
    se = M.spectral_efficiency(np.take_along_axis(rsrp_a, sel.chosen[:, None], 1)[:, 0], noise_dbm)
    se_genie = M.spectral_efficiency(rsrp_a.max(1), noise_dbm)
    eff = M.effective_se(se, sel.beams_measured, cycle_ms)
    out = {
        "top1": float(np.mean(sel.chosen == best)),
        "within_1db": float(np.mean(gap <= 1.0 + 1e-9)),
        "rsrp_gap_db_mean": float(gap.mean()),
        "rsrp_gap_db_p90": float(np.percentile(gap, 90)),
        "se_drop_mean": float(drop.mean()),
        "se_drop_p90": float(np.percentile(drop, 90)),
        "beams_measured": float(np.mean(sel.beams_measured)),
        "se_mean": float(se.mean()),
        "effective_se_mean": float(eff.mean()),
        "genie_se_mean": float(se_genie.mean()),
    }
    return {k: round(v, 6) for k, v in out.items()}
