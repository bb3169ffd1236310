"""Codebook- and array-aware beam model (family ``angular``): Set B RSRP -> angular power spectrum
(APS) on a panel spatial-frequency grid -> Set A scores through the Set A beams' gain patterns.

Physics (see :mod:`edgebm.runtime.codebook_scoring`): a beam ``f`` receives ``sum_psi g_f(psi) P(psi)``
of a channel whose power is spread over panel directions as ``P``. The network

1. reads the Set B powers relative to the strongest (dB), either per beam (``inputs="beams"``) or
   back-projected onto a coarse psi grid through the Set B gain patterns ``G_b`` (``inputs="backprojection"``:
   gain-weighted mean of the relative linear power and of the relative dB per cell, which mean the same
   for any Set B codebook or array);
2. maps them with an MLP to APS logits on the ``grid`` x ``grid`` psi grid, masked to the visible region
   and normalised by a softmax (the APS sums to 1);
3. scores every Set A beam as ``log(G_a @ APS + eps)`` (``G_a`` fixed, computed from the Set A precoders,
   held by the frozen ``score`` layer); the graph's ``features`` are these log-powers times ``FEATURE_SCALE``
   (unit scale for on-device SGD) and the ``head`` (Linear, initialised to ``I / (temperature * FEATURE_SCALE)``
   and frozen in training) turns them into logits ``log(G_a @ APS + eps) / temperature``. The UE may adapt the head.

Nothing learned is indexed by a Set A beam, so the model serves a Set A codebook it never saw: recompute
``G_a`` (numpy, ``edgebm.runtime.codebook_scoring``; ``Predictor.set_codebook`` in a bundle) or call
:meth:`AngularBeamNet.with_codebooks`. Trained with the seed-003 beam-power soft labels at the same
temperature, ``softmax(logits)`` is a tempered prediction of the beam powers themselves
(``softmax(log p / T) = p^(1/T) / sum p^(1/T)``). Trained on parts with many different Set A codebooks
(:func:`edgebm.train.multicodebook.train_on_parts`), the APS must be right at every resolution.

A CNN refining back-projected maps on the full grid (the obvious image-style design) was tried first:
at equal epochs it was ~80x slower to train on one CPU core and less accurate, so the APS comes from an MLP.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..runtime.codebook_scoring import APS_EPS, DEFAULT_GRID, FEATURE_SCALE, gain_patterns, visible_mask
from .preprocess import RelativeDb

__all__ = ["AngularBeamNet", "codebook_gains", "INPUTS"]

INPUTS = ("beams", "backprojection")
_INVISIBLE_LOGIT = -30.0


def codebook_gains(codebooks: dict[str, np.ndarray], bs_array: Sequence[int], grid: int = DEFAULT_GRID) -> tuple[np.ndarray, np.ndarray]:
    """(G_b (n_b, grid^2), G_a (n_a, grid^2)) gain patterns of a dataset's ``cb_b_weights`` / ``cb_a_weights``."""
    shape = (int(bs_array[0]), int(bs_array[1]))
    return (gain_patterns(codebooks["cb_b_weights"], shape, grid), gain_patterns(codebooks["cb_a_weights"], shape, grid))


def _frozen_linear(weight: np.ndarray) -> nn.Linear:
    lin = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(weight, np.float32)))
    lin.weight.requires_grad_(False)
    return lin


class AngularBeamNet(nn.Module):
    """Set B RSRP (dBm, (batch, n_b)) -> logits over Set A (batch, n_a), via an APS on a ``grid`` x ``grid`` psi grid.

    ``gains_b`` (n_b, grid^2) / ``gains_a`` (n_a, grid^2): gain patterns (:func:`codebook_gains`; zeros until
    :meth:`set_codebooks`). ``hidden``: MLP widths. ``inputs``: ``"beams"`` or ``"backprojection"`` (on a
    ``grid / bp_pool`` grid). ``temperature``: soft-label temperature; the head starts at ``I / (temperature * FEATURE_SCALE)``.
    ``forward_aps`` gives the APS (batch, grid^2); ``forward_features`` the Set A log-powers.
    """

    def __init__(self, n_in: int, n_out: int, gains_b: np.ndarray | None = None, gains_a: np.ndarray | None = None,
                 grid: int = DEFAULT_GRID, hidden: Sequence[int] = (256, 256), inputs: str = "beams", bp_pool: int = 2,
                 temperature: float = 2.0) -> None:
        super().__init__()
        if inputs not in INPUTS:
            raise ValueError(f"inputs must be one of {INPUTS}, got {inputs!r}")
        self.n_in, self.n_out, self.grid = int(n_in), int(n_out), int(grid)
        self.hidden, self.inputs, self.bp_pool, self.temperature = tuple(int(h) for h in hidden), inputs, int(bp_pool), float(temperature)
        if self.grid % self.bp_pool:
            raise ValueError(f"grid {self.grid} must be a multiple of bp_pool {self.bp_pool}")
        p = self.grid * self.grid
        gb = np.zeros((self.n_in, p), np.float32) if gains_b is None else np.asarray(gains_b, np.float32)
        ga = np.zeros((self.n_out, p), np.float32) if gains_a is None else np.asarray(gains_a, np.float32)
        if gb.shape != (self.n_in, p) or ga.shape != (self.n_out, p):
            raise ValueError(f"gain patterns must be ({self.n_in}, {p}) and ({self.n_out}, {p}); got {gb.shape}, {ga.shape}")
        self.pre = RelativeDb()
        self.register_buffer("visible", torch.from_numpy(visible_mask(self.grid).astype(np.float32)))
        self.register_buffer("gains_b", torch.from_numpy(gb.copy()))      # kept for with_codebooks; not in the graph
        self.backproject = _frozen_linear(self._bp_matrix(gb))            # (n_b) -> (P / pool^2) cells
        width = self.n_in if inputs == "beams" else 2 * (self.grid // self.bp_pool) ** 2
        layers: list[nn.Module] = []
        for h in self.hidden:
            layers += [nn.Linear(width, h), nn.BatchNorm1d(h), nn.ReLU()]
            width = h
        self.body = nn.Sequential(*layers, nn.Linear(width, p))
        self.score = _frozen_linear(ga)                                   # APS (P) -> Set A powers (n_a)
        self.head = nn.Linear(self.n_out, self.n_out)
        with torch.no_grad():
            self.head.weight.copy_(torch.eye(self.n_out) / (self.temperature * FEATURE_SCALE))
            self.head.bias.zero_()
        self.head.requires_grad_(False)   # physics head in training; the UE may adapt it

    def _bp_matrix(self, gb: np.ndarray) -> np.ndarray:
        """(cells, n_b): Set B gain patterns pooled to the coarse grid, each cell normalised by its total gain."""
        g, q = self.grid, self.bp_pool
        pooled = gb.reshape(len(gb), g // q, q, g // q, q).mean((2, 4)).reshape(len(gb), -1)   # (n_b, cells)
        return (pooled / (pooled.sum(0, keepdims=True) + 1e-3)).T

    @property
    def gains_a(self) -> torch.Tensor:
        return self.score.weight

    def config(self) -> dict:
        """Constructor arguments except the gain patterns (they are in the state dict)."""
        return {"n_in": self.n_in, "n_out": self.n_out, "grid": self.grid, "hidden": list(self.hidden), "inputs": self.inputs,
                "bp_pool": self.bp_pool, "temperature": self.temperature}

    @torch.no_grad()
    def set_codebooks(self, codebooks: dict[str, np.ndarray], bs_array: Sequence[int]) -> None:
        """Fill the gain patterns from a dataset's codebook arrays (in place; sizes must match)."""
        gb, ga = codebook_gains(codebooks, bs_array, self.grid)
        if gb.shape[0] != self.n_in or ga.shape != tuple(self.score.weight.shape):
            raise ValueError(f"codebooks give {gb.shape[0]} Set B / {ga.shape[0]} Set A beams, model has {self.n_in} / {self.n_out}")
        self.gains_b.copy_(torch.from_numpy(gb))
        self.backproject.weight.copy_(torch.from_numpy(self._bp_matrix(gb)))
        self.score.weight.copy_(torch.from_numpy(ga))

    def _inputs(self, x: torch.Tensor) -> torch.Tensor:
        rel = self.pre(x)                                                  # relative dB / 10, in [-4, 0]
        if self.inputs == "beams":
            return rel
        lin = torch.pow(10.0, rel)
        return torch.cat([self.backproject(lin), self.backproject(rel)], 1)

    def forward_aps(self, x: torch.Tensor) -> torch.Tensor:
        """APS (batch, grid^2): non-negative, sums to 1, ~0 outside the visible region."""
        logit = self.body(self._inputs(x)) + (1.0 - self.visible) * _INVISIBLE_LOGIT
        return torch.softmax(logit, dim=-1)

    def features_from_aps(self, aps: torch.Tensor, gains_a: torch.Tensor | None = None) -> torch.Tensor:
        """``FEATURE_SCALE`` x predicted relative log-power of every Set A beam, (batch, n_a), from an APS (batch, grid^2);
        ``gains_a`` (n_a', grid^2) scores another codebook instead of the model's own."""
        p = self.score(aps) if gains_a is None else F.linear(aps, gains_a)
        return torch.log(p + APS_EPS) * FEATURE_SCALE

    def forward_features(self, x: torch.Tensor, gains_a: torch.Tensor | None = None) -> torch.Tensor:
        """``FEATURE_SCALE`` x predicted relative log-power of every Set A beam, (batch, n_a)."""
        return self.features_from_aps(self.forward_aps(x), gains_a)

    def forward(self, x: torch.Tensor, gains_a: torch.Tensor | None = None) -> torch.Tensor:
        """Logits over the model's Set A; with ``gains_a``, over that codebook through ``I / (temperature * FEATURE_SCALE)``
        (the head is indexed by the model's own beams)."""
        f = self.forward_features(x, gains_a)
        return self.head(f) if gains_a is None else f / (self.temperature * FEATURE_SCALE)

    @torch.no_grad()
    def with_codebooks(self, gains_b: np.ndarray | None = None, gains_a: np.ndarray | None = None) -> "AngularBeamNet":
        """A copy serving other codebooks (zero-shot): same weights, new gain patterns. A new Set A size
        resets the head to ``I / (temperature * FEATURE_SCALE)``; a new Set B size needs ``inputs="backprojection"``."""
        gb = self.gains_b.numpy() if gains_b is None else np.asarray(gains_b, np.float32)
        ga = self.score.weight.numpy() if gains_a is None else np.asarray(gains_a, np.float32)
        if gb.shape[0] != self.n_in and self.inputs == "beams":
            raise ValueError(f"a model with inputs='beams' reads exactly {self.n_in} Set B beams, got {gb.shape[0]}")
        new = AngularBeamNet(gb.shape[0], ga.shape[0], gb, ga, **{k: v for k, v in self.config().items() if k not in ("n_in", "n_out")})
        skip = ("gains_b", "backproject.", "score.") + (("head.",) if ga.shape[0] != self.n_out else ())
        new.load_state_dict({k: v for k, v in self.state_dict().items() if not k.startswith(skip)}, strict=False)
        new.eval()
        return new
