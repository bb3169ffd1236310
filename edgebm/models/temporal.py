"""GRU + self-attention sequence model for BM-Case2 (temporal beam prediction), seed 003.

Input: the last ``history`` Set B measurements of a UE, raw dBm, shape (batch, history, n_in).
Output: logits for the current beam cycle and ``horizon`` future ones, (batch, horizon + 1, n_out).
Per step: ``RelativeDb`` -> Linear + ReLU -> LayerNorm; then a 1-layer GRU, multi-head self-attention
over the GRU outputs (seed 003 table I: "LayerNorm + 1-layer GRU + MHA"), attention mean-pool
concatenated with the last GRU state, a Linear to ``horizon + 1`` per-slot feature vectors, and one
shared ``head`` applied to every slot.

The attention is written with ``nn.Linear`` projections and plain matmul + softmax instead of
``nn.MultiheadAttention``: both export, but thop has no rule for ``nn.MultiheadAttention`` (it counts
it as zero FLOPs), which would break the thop-vs-ONNX FLOP cross-check of the budget gate.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .preprocess import RelativeDb

__all__ = ["BeamGRU", "SelfAttention", "make_sequences"]


class SelfAttention(nn.Module):
    """Multi-head scaled dot-product self-attention over (batch, L, dim), batch first."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"hidden size {dim} must be divisible by heads {heads}")
        self.dim, self.heads, self.head_dim = dim, heads, dim // heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)
        self.scale = float(self.head_dim) ** -0.5

    def _split(self, t: torch.Tensor) -> torch.Tensor:  # (B, L, D) -> (B, heads, L, head_dim)
        return t.reshape(t.shape[0], t.shape[1], self.heads, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self._split(self.q(x)), self._split(self.k(x)), self._split(self.v(x))
        att = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) * self.scale, dim=-1)
        y = torch.matmul(att, v).transpose(1, 2).reshape(x.shape[0], x.shape[1], self.dim)
        return self.out(y)


class BeamGRU(nn.Module):
    """GRU + attention seq2seq (BM-Case2): raw Set B RSRP (dBm) (batch, history, n_in) -> logits (batch, horizon + 1, n_out).

    Slot 0 is the current beam cycle, slot j the j-th future one. ``forward_features`` returns
    (batch, horizon + 1, hidden); ``head`` (shared by all slots) is the last ``nn.Linear``.
    """

    def __init__(self, n_in: int, n_out: int, history: int = 8, horizon: int = 3, hidden: int = 128, heads: int = 4) -> None:
        super().__init__()
        if history < 1 or horizon < 0 or hidden < 1 or heads < 1:
            raise ValueError("history >= 1, horizon >= 0, hidden >= 1, heads >= 1 required")
        self.n_in, self.n_out = int(n_in), int(n_out)
        self.history, self.horizon, self.hidden, self.heads = int(history), int(horizon), int(hidden), int(heads)
        self.pre = RelativeDb()
        self.encoder = nn.Sequential(nn.Linear(self.n_in, self.hidden), nn.ReLU(), nn.LayerNorm(self.hidden))
        self.gru = nn.GRU(self.hidden, self.hidden, batch_first=True)
        self.attn = SelfAttention(self.hidden, self.heads)
        self.slots = nn.Sequential(nn.Linear(2 * self.hidden, (self.horizon + 1) * self.hidden), nn.ReLU())
        self.head = nn.Linear(self.hidden, self.n_out)

    def config(self) -> dict:
        return {"n_in": self.n_in, "n_out": self.n_out, "history": self.history, "horizon": self.horizon,
                "hidden": self.hidden, "heads": self.heads}

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.gru(self.encoder(self.pre(x)))  # (B, L, H)
        pooled = self.attn(h).mean(dim=1)
        z = self.slots(torch.cat([pooled, h[:, -1]], dim=1))
        return z.reshape(x.shape[0], self.horizon + 1, self.hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


def make_sequences(
    rsrp_b: np.ndarray,
    best_a: np.ndarray,
    traj_id: np.ndarray,
    t: np.ndarray,
    history: int,
    horizon: int,
    return_index: bool = False,
) -> tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sliding windows over trajectories, vectorised.

    Samples are ordered by (traj_id, t); consecutive samples of a trajectory are consecutive beam
    cycles. A window of ``history + horizon`` consecutive samples inside one trajectory gives
    ``X = rsrp_b`` of its first ``history`` samples (the last of them is the current cycle) and
    ``Y = best_a`` of the current cycle and the ``horizon`` after it. Windows that would cross a
    trajectory boundary are dropped.

    Returns ``X`` (M, history, n_in) float32 and ``Y`` (M, horizon + 1) int64; with
    ``return_index`` also the original row index of each window's current sample (M,).
    """
    if history < 1 or horizon < 0:
        raise ValueError(f"history must be >= 1 and horizon >= 0, got {history}, {horizon}")
    rsrp_b = np.asarray(rsrp_b)
    best_a = np.asarray(best_a)
    traj_id = np.asarray(traj_id)
    t = np.asarray(t)
    n = len(rsrp_b)
    if not (len(best_a) == len(traj_id) == len(t) == n) or rsrp_b.ndim != 2:
        raise ValueError("rsrp_b (N, n_in), best_a, traj_id and t (N,) must have the same N")
    width = history + horizon
    empty = (np.zeros((0, history, rsrp_b.shape[1]), np.float32), np.zeros((0, horizon + 1), np.int64))
    if n < width:
        return (*empty, np.zeros(0, np.int64)) if return_index else empty
    order = np.lexsort((t, traj_id))  # primary key traj_id, then t
    xs, ys, ts = rsrp_b[order], best_a[order], traj_id[order]
    # sorted by trajectory: a window stays inside one iff its first and last samples share traj_id
    start = np.flatnonzero(ts[: n - width + 1] == ts[width - 1 :])
    rows = start[:, None] + np.arange(width)[None, :]  # (M, width) indices into the sorted arrays
    X = np.ascontiguousarray(xs[rows[:, :history]], dtype=np.float32)
    Y = np.ascontiguousarray(ys[rows[:, history - 1 :]], dtype=np.int64)
    if return_index:
        return X, Y, order[rows[:, history - 1]].astype(np.int64)
    return X, Y
