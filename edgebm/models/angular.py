"""Codebook- and array-aware beam model (family ``angular``): Set B RSRP -> angular power spectrum
(APS) on a panel spatial-frequency grid -> Set A scores through the Set A beams' gain patterns.

Physics (see :mod:`edgebm.runtime.codebook_scoring`): a beam ``f`` receives ``sum_psi g_f(psi) P(psi)``
of a channel whose power is spread over directions as ``P``. The network therefore

1. back-projects the measured Set B powers onto the grid through the Set B gain patterns ``G_b``
   (fixed buffers computed from the codebook weights): gain-weighted mean of the relative linear
   power and of the relative dB, plus the Set B coverage ``sum_b g_b`` and the visible-region mask —
   four maps that mean the same thing for any Set B codebook and array;
2. refines them with a small CNN (translation-equivariant in psi, like the beam patterns themselves)
   into APS logits, masked to the visible region and normalised by a softmax over the grid;
3. scores every Set A beam as ``log(G_a @ APS + eps)`` (``G_a`` fixed, from the Set A weights) —
   the ``features`` of the graph — and the ``head`` (a Linear layer initialised to ``I / temperature``
   and frozen in training) turns them into logits. The head is what the UE may adapt on device.

Nothing learned is indexed by a beam: a bundle serves a new Set A codebook by recomputing ``G_a`` (numpy,
``edgebm.runtime.codebook_scoring``) and a new Set B codebook or array by :meth:`AngularBeamNet.with_codebooks`.
Trained with the seed-003 beam-power soft labels at the same temperature, the softmax of the logits is a
tempered prediction of the beam powers themselves (``softmax(log p / T) = p^(1/T) / sum p^(1/T)``).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..runtime.codebook_scoring import APS_EPS, DEFAULT_GRID, gain_patterns, visible_mask
from .preprocess import RelativeDb

__all__ = ["AngularBeamNet", "codebook_gains", "N_MAPS"]

#: input maps of the CNN: mean relative linear power, mean relative dB, Set B coverage, visible mask
N_MAPS = 4
_INVISIBLE_LOGIT = -30.0


def codebook_gains(codebooks: dict[str, np.ndarray], bs_array: Sequence[int], grid: int = DEFAULT_GRID) -> tuple[np.ndarray, np.ndarray]:
    """(G_b (n_b, grid^2), G_a (n_a, grid^2)) gain patterns of a dataset's ``cb_b_weights`` / ``cb_a_weights``."""
    shape = (int(bs_array[0]), int(bs_array[1]))
    return (gain_patterns(codebooks["cb_b_weights"], shape, grid), gain_patterns(codebooks["cb_a_weights"], shape, grid))


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class AngularBeamNet(nn.Module):
    """Set B RSRP (dBm, (batch, n_b)) -> logits over Set A (batch, n_a), via an APS on a ``grid`` x ``grid`` psi grid.

    ``gains_b`` (n_b, grid^2) / ``gains_a`` (n_a, grid^2): gain patterns (:func:`codebook_gains`).
    ``channels``: CNN widths at the coarse resolution (``grid / coarse``); ``fine``: channels of the
    full-resolution refinement after upsampling. ``temperature``: the soft-label temperature the head
    starts at (``logits = features / temperature``).
    ``forward_aps`` gives the APS (batch, grid^2); ``forward_features`` the Set A log-powers.
    """

    def __init__(self, n_in: int, n_out: int, gains_b: np.ndarray | None = None, gains_a: np.ndarray | None = None,
                 grid: int = DEFAULT_GRID, channels: Sequence[int] = (24, 24, 24), coarse: int = 2, fine: int = 8,
                 temperature: float = 2.0, encoder: str = "mlp", hidden: Sequence[int] = (256, 256)) -> None:
        super().__init__()
        self.n_in, self.n_out, self.grid = int(n_in), int(n_out), int(grid)
        self.channels, self.coarse, self.fine, self.temperature = tuple(int(c) for c in channels), int(coarse), int(fine), float(temperature)
        if self.grid % self.coarse:
            raise ValueError(f"grid {self.grid} must be a multiple of coarse {self.coarse}")
        p = self.grid * self.grid
        gb = np.zeros((self.n_in, p), np.float32) if gains_b is None else np.asarray(gains_b, np.float32)
        ga = np.zeros((self.n_out, p), np.float32) if gains_a is None else np.asarray(gains_a, np.float32)
        if gb.shape != (self.n_in, p) or ga.shape != (self.n_out, p):
            raise ValueError(f"gain patterns must be ({self.n_in}, {p}) and ({self.n_out}, {p}); got {gb.shape}, {ga.shape}")
        self.pre = RelativeDb()
        self.register_buffer("gains_b", torch.from_numpy(gb.copy()))
        self.register_buffer("gains_a", torch.from_numpy(ga.copy()))
        self.register_buffer("visible", torch.from_numpy(visible_mask(self.grid).astype(np.float32)))
        if encoder not in ("mlp", "cnn"):
            raise ValueError(f"encoder must be 'mlp' or 'cnn', got {encoder!r}")
        self.encoder, self.hidden = encoder, tuple(int(h) for h in hidden)
        mlp: list[nn.Module] = []
        width = self.n_in
        for h in self.hidden:
            mlp += [nn.Linear(width, h), nn.BatchNorm1d(h), nn.ReLU()]
            width = h
        self.mlp = nn.Sequential(*mlp, nn.Linear(width, p)) if encoder == "mlp" else None
        layers: list[nn.Module] = []
        cin = N_MAPS
        for i, c in enumerate(self.channels):
            stride = self.coarse if i == 0 else 1
            layers.append(nn.Sequential(nn.Conv2d(cin, c, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU()))
            cin = c
        self.body = nn.Sequential(*layers)
        self.refine = nn.Sequential(_block(cin + N_MAPS, self.fine), nn.Conv2d(self.fine, 1, 3, padding=1))
        self.head = nn.Linear(self.n_out, self.n_out)
        with torch.no_grad():
            self.head.weight.copy_(torch.eye(self.n_out) / self.temperature)
            self.head.bias.zero_()
        self.head.requires_grad_(False)   # physics head in training; the UE may adapt it

    def config(self) -> dict:
        """Constructor arguments except the gain patterns (they live in the state dict as buffers)."""
        return {"n_in": self.n_in, "n_out": self.n_out, "grid": self.grid, "channels": list(self.channels),
                "coarse": self.coarse, "fine": self.fine, "temperature": self.temperature, "encoder": self.encoder,
                "hidden": list(self.hidden)}

    def _maps(self, x: torch.Tensor) -> torch.Tensor:
        rel = self.pre(x) * self.pre.scale_db                      # relative dB in [floor, 0]
        lin = torch.pow(10.0, rel / 10.0)
        gb = self.gains_b
        cover = gb.sum(0)                                          # (P,)
        norm = 1.0 / (cover + 1e-3)
        m_lin = (lin @ gb) * norm
        m_db = (rel / self.pre.scale_db) @ gb * norm
        b = x.shape[0]
        const = torch.stack([cover / cover.max().clamp_min(1e-6), self.visible]).unsqueeze(0).expand(b, 2, -1)
        maps = torch.cat([m_lin.unsqueeze(1), m_db.unsqueeze(1), const], 1)
        return maps.reshape(b, N_MAPS, self.grid, self.grid)

    def forward_aps(self, x: torch.Tensor) -> torch.Tensor:
        """APS (batch, grid^2): non-negative, sums to 1 over the visible grid."""
        if self.mlp is not None:
            logit = self.mlp(self.pre(x))
            logit = logit + (1.0 - self.visible) * _INVISIBLE_LOGIT
            return torch.softmax(logit, dim=-1)
        maps = self._maps(x)
        h = self.body(maps)
        if self.coarse > 1:
            h = F.interpolate(h, scale_factor=float(self.coarse), mode="bilinear", align_corners=False)
        logit = self.refine(torch.cat([h, maps], 1)).flatten(1)
        logit = logit + (1.0 - self.visible) * _INVISIBLE_LOGIT
        return torch.softmax(logit, dim=-1)

    def features_from_aps(self, aps: torch.Tensor, gains_a: torch.Tensor | None = None) -> torch.Tensor:
        """Predicted relative log-power of every Set A beam, (batch, n_a), from an APS (batch, grid^2);
        ``gains_a`` (n_a', grid^2) scores another codebook instead of the model's own."""
        g = self.gains_a if gains_a is None else gains_a
        return torch.log(aps @ g.t() + APS_EPS)

    def forward_features(self, x: torch.Tensor, gains_a: torch.Tensor | None = None) -> torch.Tensor:
        """Predicted relative log-power of every Set A beam, (batch, n_a)."""
        return self.features_from_aps(self.forward_aps(x), gains_a)

    @torch.no_grad()
    def set_codebooks(self, codebooks: dict[str, np.ndarray], bs_array: Sequence[int]) -> None:
        """Fill the gain-pattern buffers from a dataset's codebook arrays (in place; sizes must match)."""
        gb, ga = codebook_gains(codebooks, bs_array, self.grid)
        if gb.shape != tuple(self.gains_b.shape) or ga.shape != tuple(self.gains_a.shape):
            raise ValueError(f"codebooks give gain patterns {gb.shape} / {ga.shape}, model has {tuple(self.gains_b.shape)} / "
                             f"{tuple(self.gains_a.shape)}")
        self.gains_b.copy_(torch.from_numpy(gb))
        self.gains_a.copy_(torch.from_numpy(ga))

    def forward(self, x: torch.Tensor, gains_a: torch.Tensor | None = None) -> torch.Tensor:
        """Logits over the model's Set A, or over the codebook of ``gains_a`` (then through ``I / temperature``:
        the head is indexed by the model's own beams)."""
        f = self.forward_features(x, gains_a)
        if gains_a is None:
            return self.head(f)
        return f / self.temperature

    @torch.no_grad()
    def with_codebooks(self, gains_b: np.ndarray | None = None, gains_a: np.ndarray | None = None) -> "AngularBeamNet":
        """A copy serving other codebooks (zero-shot): same weights, new gain patterns. A new Set A size
        resets the head to ``I / temperature``."""
        gb = self.gains_b.numpy() if gains_b is None else np.asarray(gains_b, np.float32)
        ga = self.gains_a.numpy() if gains_a is None else np.asarray(gains_a, np.float32)
        new = AngularBeamNet(gb.shape[0], ga.shape[0], gb, ga, **{k: v for k, v in self.config().items() if k not in ("n_in", "n_out")})
        state = {k: v for k, v in self.state_dict().items() if k not in ("gains_b", "gains_a", "visible")}
        if ga.shape[0] != self.n_out:
            state = {k: v for k, v in state.items() if not k.startswith("head.")}
        new.load_state_dict(state, strict=False)
        new.eval()
        return new
