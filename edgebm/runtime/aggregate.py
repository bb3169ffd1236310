"""Domain-similarity-aware aggregation of per-site heads (seed 004, eqs. 10-11), numpy only.

Each site k keeps the Gaussian statistics of its features (mean ``mu_k``, covariance ``Sigma_k``, from
:func:`feature_stats`) next to its adapted head ``(W_k, b_k)``. A UE arriving at a new site measures a few
samples, computes its own feature statistics and the Wasserstein-2 distance to every site's Gaussian

    W(k, j) = sqrt(||mu_k - mu_j||^2 + Tr(S_k + S_j - 2 (S_k^1/2 S_j S_k^1/2)^1/2)),

then starts from the similarity-weighted average of the sites' heads, ``gamma = softmax(1 / W)``
(:func:`aggregate_heads`), before its own few-label adaptation. The matrix square roots are taken by
symmetric eigendecomposition (numpy), since the runtime may not depend on scipy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["FeatureStats", "feature_stats", "wasserstein2", "similarity_weights", "aggregate_heads"]


@dataclass(frozen=True)
class FeatureStats:
    """Gaussian summary of one site's features: ``mean`` (F,), ``cov`` (F, F), ``n`` samples."""

    mean: np.ndarray
    cov: np.ndarray
    n: int


def feature_stats(feats: np.ndarray, shrink: float = 1e-3) -> FeatureStats:
    """Mean and covariance (float64) of ``feats`` (N, F); ``shrink`` x mean variance is added to the diagonal so a
    covariance from fewer samples than features stays positive definite."""
    f = np.asarray(feats, dtype=np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise ValueError(f"feature_stats: need (N >= 2, F) features, got shape {f.shape}")
    mu = f.mean(0)
    cov = np.cov(f, rowvar=False).reshape(f.shape[1], f.shape[1])
    cov = cov + np.eye(len(mu)) * shrink * max(float(np.trace(cov)) / len(mu), 1e-12)
    return FeatureStats(mu, cov, len(f))


def _sqrtm_psd(a: np.ndarray) -> np.ndarray:
    vals, vecs = np.linalg.eigh((a + a.T) / 2)
    return (vecs * np.sqrt(np.clip(vals, 0.0, None))) @ vecs.T


def wasserstein2(a: FeatureStats, b: FeatureStats) -> float:
    """Wasserstein-2 distance between the Gaussians N(a.mean, a.cov) and N(b.mean, b.cov) (seed 004 eq. 10)."""
    sa = _sqrtm_psd(a.cov)
    cross = _sqrtm_psd(sa @ b.cov @ sa)
    d2 = float(np.sum((a.mean - b.mean) ** 2) + np.trace(a.cov) + np.trace(b.cov) - 2.0 * np.trace(cross))
    return float(np.sqrt(max(d2, 0.0)))


def similarity_weights(target: FeatureStats, sites: Sequence[FeatureStats]) -> np.ndarray:
    """``gamma_i = softmax_i(1 / W(target, site_i))`` (seed 004 eq. 11), shape (len(sites),)."""
    if not sites:
        raise ValueError("similarity_weights: no sites")
    inv = np.array([1.0 / max(wasserstein2(target, s), 1e-9) for s in sites])
    z = np.exp(inv - inv.max())
    return z / z.sum()


def aggregate_heads(heads: Sequence[tuple[np.ndarray, np.ndarray]], weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``sum_i gamma_i (W_i, b_i)`` for heads of one shape; ``weights`` are normalised to sum 1."""
    if not heads or len(heads) != len(weights):
        raise ValueError(f"aggregate_heads: {len(heads)} heads but {len(weights)} weights")
    g = np.asarray(weights, dtype=np.float64)
    if np.any(g < 0) or g.sum() <= 0:
        raise ValueError("aggregate_heads: weights must be non-negative and not all zero")
    g = g / g.sum()
    shape = heads[0][0].shape, heads[0][1].shape
    if any((w.shape, b.shape) != shape for w, b in heads):
        raise ValueError("aggregate_heads: every head must have the same shape")
    w = sum(gi * np.asarray(h[0], np.float64) for gi, h in zip(g, heads))
    b = sum(gi * np.asarray(h[1], np.float64) for gi, h in zip(g, heads))
    return np.asarray(w, np.float32), np.asarray(b, np.float32)
