"""Beam-management metrics, the definitions used everywhere (DESIGN.md "Metrics").

All functions are vectorised over samples. Inputs: ``rsrp_a`` (N, A) ground-truth narrow-beam
RSRP in dBm, ``noise_dbm`` (N,) noise power in dBm, ``chosen`` (N,) chosen Set A beam,
``scores`` (N, A) model scores (higher = more likely best).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "topk_accuracy",
    "topk_indices",
    "within_db",
    "rsrp_gap_db",
    "spectral_efficiency",
    "se_drop",
    "dba_score",
    "beam_grid_xy",
    "effective_se",
    "summarize",
    "SSB_BEAM_MS",
]

#: time one beam measurement occupies, ms: an FR2 SSB burst of 64 beams fits in a 5 ms half-frame.
SSB_BEAM_MS = 5.0 / 64


def topk_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """(N, k) indices of the k highest scores, best first."""
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def topk_accuracy(scores: np.ndarray, best: np.ndarray, k: int = 1) -> float:
    """Fraction of samples whose true best beam is among the k highest-scored."""
    if len(best) == 0:
        return float("nan")
    return float(np.mean(np.any(topk_indices(scores, k) == np.asarray(best)[:, None], axis=1)))


def _chosen_rsrp(rsrp_a: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    return np.take_along_axis(rsrp_a, np.asarray(chosen, dtype=np.int64)[:, None], axis=1)[:, 0]


def rsrp_gap_db(rsrp_a: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """Per-sample RSRP(best) - RSRP(chosen), dB (>= 0)."""
    return rsrp_a.max(axis=1) - _chosen_rsrp(rsrp_a, chosen)


def within_db(rsrp_a: np.ndarray, chosen: np.ndarray, margin_db: float = 1.0) -> float:
    """Fraction of samples with RSRP(chosen) >= RSRP(best) - margin_db (TR 38.843 style)."""
    return float(np.mean(rsrp_gap_db(rsrp_a, chosen) <= margin_db + 1e-9))


def spectral_efficiency(rsrp_dbm: np.ndarray, noise_dbm: np.ndarray) -> np.ndarray:
    """Shannon SE ``log2(1 + SNR)``, b/s/Hz, with SNR = RSRP / noise (both dBm)."""
    return np.log2(1.0 + 10.0 ** ((np.asarray(rsrp_dbm) - np.asarray(noise_dbm)) / 10.0))


def se_drop(rsrp_a: np.ndarray, chosen: np.ndarray, noise_dbm: np.ndarray) -> np.ndarray:
    """Per-sample relative SE drop vs the genie, ``1 - SE(chosen) / SE(best)`` in [0, 1]."""
    se_best = spectral_efficiency(rsrp_a.max(axis=1), noise_dbm)
    se_chosen = spectral_efficiency(_chosen_rsrp(rsrp_a, chosen), noise_dbm)
    return np.where(se_best > 0, 1.0 - se_chosen / np.maximum(se_best, 1e-12), 0.0)


def beam_grid_xy(weights: np.ndarray, array_shape: tuple[int, int]) -> np.ndarray | None:
    """Positions (A, 2) of the Set A beams on their 2-D beam grid, from the precoders ``weights`` (A, rows*cols)
    of a half-wavelength UPA of ``array_shape``.

    Each beam's spatial frequencies (psi_v, psi_h) are read from the phase step between adjacent elements
    (``pi psi`` per element, :func:`edgebm.sim.arrays.upa_steering`); each axis is then divided by its smallest
    step between distinct values, so neighbours on a DFT grid are 1 apart (a random subset of an oversampled DFT
    is measured in oversampled steps). None when the weights do not encode distinct directions (then callers
    fall back to the 1-D index distance).
    """
    w = np.asarray(weights)
    rows, cols = (int(v) for v in array_shape)
    if w.ndim != 2 or w.shape[1] != rows * cols or len(w) < 2:
        return None
    w = w.reshape(len(w), rows, cols)
    psi_v = np.angle(w[:, 1, 0] * np.conj(w[:, 0, 0])) / np.pi if rows > 1 else np.zeros(len(w))
    psi_h = np.angle(w[:, 0, 1] * np.conj(w[:, 0, 0])) / np.pi if cols > 1 else np.zeros(len(w))
    xy = np.stack([psi_v, psi_h], 1).round(6)
    if len(np.unique(xy, axis=0)) < len(xy):
        return None
    for j in range(2):
        steps = np.diff(np.unique(xy[:, j]))
        if len(steps):
            xy[:, j] /= steps.min()
    return xy


def dba_score(top: np.ndarray, best: np.ndarray, beam_xy: np.ndarray | None = None, delta: float = 5.0) -> float:
    """Distance-based accuracy over the top-K predictions (DeepSense 6G definition, K = top.shape[1]).

    ``DBA = 1/K sum_{k=1..K} (1 - mean_n min_{k'<=k} min(d(top[n,k'], best[n]) / delta, 1))``.
    ``d`` is the Euclidean distance between beam positions ``beam_xy`` (A, 2) on the 2-D beam grid
    (:func:`beam_grid_xy`); with ``beam_xy=None`` it is the 1-D index distance (a 1-D codebook).
    """
    top = np.asarray(top)
    best = np.asarray(best)
    if beam_xy is None:
        d = np.abs(top - best[:, None]).astype(float)
    else:
        d = np.linalg.norm(beam_xy[top] - beam_xy[best][:, None, :], axis=-1)
    cost = np.minimum(d / delta, 1.0)
    running = np.minimum.accumulate(cost, axis=1)
    return float(np.mean(1.0 - running.mean(axis=0)))


def effective_se(se: np.ndarray, beams_measured: np.ndarray | float, cycle_ms: float, beam_ms: float = SSB_BEAM_MS) -> np.ndarray:
    """SE after measurement overhead: ``SE * max(0, 1 - beams_measured * beam_ms / cycle_ms)``, b/s/Hz."""
    frac = np.clip(1.0 - np.asarray(beams_measured, dtype=float) * beam_ms / cycle_ms, 0.0, 1.0)
    return np.asarray(se) * frac


def summarize(scores: np.ndarray, rsrp_a: np.ndarray, noise_dbm: np.ndarray, beam_xy: np.ndarray | None = None) -> dict[str, float]:
    """Standard metric set for a model's scores on a labelled split (rounded floats, JSON-able); ``beam_xy``
    (:func:`beam_grid_xy`) makes ``dba_top3`` use distances on the 2-D beam grid."""
    best = rsrp_a.argmax(axis=1)
    chosen = scores.argmax(axis=1)
    drop = se_drop(rsrp_a, chosen, noise_dbm)
    gap = rsrp_gap_db(rsrp_a, chosen)
    out = {
        "n": int(len(best)),
        "top1": topk_accuracy(scores, best, 1),
        "top3": topk_accuracy(scores, best, 3),
        "top5": topk_accuracy(scores, best, 5),
        "within_1db": within_db(rsrp_a, chosen, 1.0),
        "rsrp_gap_db_mean": float(np.mean(gap)),
        "rsrp_gap_db_p90": float(np.percentile(gap, 90)),
        "se_drop_mean": float(np.mean(drop)),
        "se_drop_p90": float(np.percentile(drop, 90)),
        "dba_top3": dba_score(topk_indices(scores, 3), best, beam_xy),
    }
    return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in out.items()}
