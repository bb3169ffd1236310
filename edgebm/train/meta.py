"""Meta-learned initialisation of the on-device head (Reptile, Nichol et al. 2018; seed 002's fast adaptation).

The UE adapts only the last layer (``W`` (A, F), ``b`` (A,)) on features the frozen graph computes, by
mini-batch SGD on softmax cross-entropy (:class:`edgebm.runtime.HeadAdapter`). Reptile finds a starting
head from which *that* procedure reaches a new site's solution in few labels: for each meta-step a task
(one city, or one city x codebook, of the randomised corpus) is drawn, ``shots`` of its labelled samples
are taken, the inner loop runs the same SGD the UE runs (``inner_steps`` steps of ``lr``, batches of
``batch``, L2 ``l2``) from the current init, and the init moves toward the adapted head by
``outer_lr`` (annealed linearly to 0). numpy only (the head is one matrix), deterministic for a seed.

The inner loop is written here rather than reusing HeadAdapter: meta-training runs thousands of tiny
inner loops on precomputed features, with no bundle, session or device-time budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..runtime.adapt import softmax_ce_grad

__all__ = ["HeadTask", "reptile_head_init", "adapt_head", "head_accuracy"]


@dataclass(frozen=True)
class HeadTask:
    """One site's labelled features: ``feats`` (N, F) float32 and ``labels`` (N,) Set A indices."""

    feats: np.ndarray
    labels: np.ndarray


def adapt_head(w: np.ndarray, b: np.ndarray, feats: np.ndarray, labels: np.ndarray, steps: int = 20, lr: float = 0.1,
               batch: int = 32, l2: float = 1e-4, rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``steps`` SGD steps of softmax cross-entropy on ``(feats, labels)`` from ``(w, b)`` (copies); batches drawn
    with replacement from ``rng`` (seeded 0 when None). Returns the adapted ``(w, b)``."""
    rng = rng if rng is not None else np.random.default_rng(0)
    w, b = w.astype(np.float32, copy=True), b.astype(np.float32, copy=True)
    n = len(labels)
    if n == 0:
        return w, b
    for _ in range(steps):
        idx = rng.integers(0, n, size=min(batch, n))
        _, gw, gb = softmax_ce_grad(feats[idx], labels[idx], w, b, l2)
        w -= lr * gw
        b -= lr * gb
    return w, b


def head_accuracy(w: np.ndarray, b: np.ndarray, feats: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 of the head ``feats @ w.T + b`` against ``labels``."""
    return float(np.mean((feats @ w.T + b).argmax(1) == labels)) if len(labels) else float("nan")


def reptile_head_init(tasks: Sequence[HeadTask], w0: np.ndarray, b0: np.ndarray, *, meta_steps: int = 2000,
                      shots: Sequence[int] = (25, 50, 100), inner_steps: int = 20, lr: float = 0.1, batch: int = 32,
                      l2: float = 1e-4, outer_lr: float = 0.5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Reptile over ``tasks`` starting from the offline head ``(w0, b0)``; returns the meta-learned ``(W, b)``.

    Each meta-step: a task uniformly, a shot count from ``shots``, that many samples of it (without
    replacement), :func:`adapt_head` with ``inner_steps`` x ``ceil(shots / 25)`` steps (the UE takes
    ``inner_steps`` per update of 25 labels), then ``init += eps (adapted - init)`` with ``eps`` going
    linearly from ``outer_lr`` to 0.
    """
    if not tasks:
        raise ValueError("reptile_head_init: no tasks")
    rng = np.random.default_rng(seed)
    w, b = w0.astype(np.float32, copy=True), b0.astype(np.float32, copy=True)
    for t in range(int(meta_steps)):
        task = tasks[int(rng.integers(0, len(tasks)))]
        k = min(int(shots[int(rng.integers(0, len(shots)))]), len(task.labels))
        idx = rng.choice(len(task.labels), size=k, replace=False)
        steps = inner_steps * int(np.ceil(k / 25))
        wa, ba = adapt_head(w, b, task.feats[idx], task.labels[idx], steps, lr, batch, l2, rng)
        eps = outer_lr * (1.0 - t / max(1, meta_steps))
        w += eps * (wa - w)
        b += eps * (ba - b)
    return w, b
