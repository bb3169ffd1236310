"""Small numerically stable numpy kernels shared by the runtime, the models and the metrics (numpy only).

One softmax for the whole package: the runtime (probabilities from logits), the scikit-learn
families (``predict_proba``) and the torch families' numpy ``predict_proba`` all call it, so they
agree to the last bit for the same logits. Written here instead of importing ``scipy.special``:
the torch-free runtime must not pull in scipy for two lines.
"""

from __future__ import annotations

import numpy as np

__all__ = ["softmax", "logsumexp"]


def softmax(z: np.ndarray, axis: int = -1) -> np.ndarray:
    """``exp(z) / sum(exp(z))`` along ``axis``, shifted by the max so ``exp`` never overflows.

    Float input keeps its dtype (float32 logits give float32 probabilities); integer input is
    promoted to float64. A row of ``-inf`` except one finite entry gives a one-hot row.
    """
    z = np.asarray(z)
    if z.dtype.kind != "f":
        z = z.astype(np.float64)
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    e /= e.sum(axis=axis, keepdims=True)
    return e


def logsumexp(z: np.ndarray, axis: int = -1) -> np.ndarray:
    """``log(sum(exp(z)))`` along ``axis`` without overflow (max-shifted)."""
    z = np.asarray(z)
    if z.dtype.kind != "f":
        z = z.astype(np.float64)
    m = z.max(axis=axis, keepdims=True)
    return (m + np.log(np.exp(z - m).sum(axis=axis, keepdims=True))).squeeze(axis)
