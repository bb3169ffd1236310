"""Position-aided dual-branch teacher with AutoFusion (seed 001, section IV).

Two RegNet/ResNet backbones read the same upsampled Set B RSRP image: the *beam* branch learns
directional features, the *position* branch learns spatial features and is supervised by a
position-regression head (normalised UE position (x, y, z), MSE, seed 001 eq. 19). The two feature
vectors are concatenated and fused by AutoFusion: the *Basic* MLP compresses the concatenation to
``fusion_dim`` (the fused feature used for beam prediction), the *Gen* MLP reconstructs the
concatenation from it and the reconstruction MSE (eq. 17) is an auxiliary loss.

Position is a training label only: at inference the model takes nothing but RSRP, as in seed 001.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .preprocess import RelativeDb
from .teacher import BACKBONES, GridImage, ResNetBackbone, _check_grid

__all__ = ["AutoFusion", "PositionAidedTeacher", "normalise_positions"]


def normalise_positions(
    pos: np.ndarray, mean: np.ndarray | None = None, std: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(pos - mean) / std`` per axis (float32). Statistics default to those of ``pos`` (use the training
    split's for validation/test); a constant axis (e.g. fixed UE height) gets std 1. Returns (pos_n, mean, std)."""
    pos = np.asarray(pos, dtype=np.float64)
    mean = pos.mean(axis=0) if mean is None else np.asarray(mean, dtype=np.float64)
    std = pos.std(axis=0) if std is None else np.asarray(std, dtype=np.float64)
    std = np.where(std > 1e-9, std, 1.0)
    return ((pos - mean) / std).astype(np.float32), mean.astype(np.float32), std.astype(np.float32)


class AutoFusion(nn.Module):
    """Basic model: Linear-ReLU-Linear-ReLU (concat -> fused); Gen model: Linear-ReLU-Linear (fused -> concat).

    ``forward(cat) -> (fused, recon_mse)``; the reconstruction target is the concatenation with its
    gradient stopped, so the loss shapes the fusion MLPs (keep the information of both branches) and
    cannot be lowered by shrinking the branch features.
    """

    def __init__(self, in_dim: int, fused_dim: int) -> None:
        super().__init__()
        self.basic = nn.Sequential(nn.Linear(in_dim, fused_dim), nn.ReLU(), nn.Linear(fused_dim, fused_dim), nn.ReLU())
        self.gen = nn.Sequential(nn.Linear(fused_dim, fused_dim), nn.ReLU(), nn.Linear(fused_dim, in_dim))

    def forward(self, cat: torch.Tensor) -> torch.Tensor:
        return self.basic(cat)

    def reconstruction_loss(self, cat: torch.Tensor, fused: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(self.gen(fused), cat.detach())


class PositionAidedTeacher(nn.Module):
    """Dual-branch teacher: raw Set B RSRP (dBm) (batch, n_in) -> logits (batch, n_out).

    ``forward_features`` returns the AutoFusion vector (batch, fusion_dim); ``head`` maps it to logits.
    Training: ``forward_aux(x) -> (logits, pos_pred, recon_loss)`` or ``aux_loss(x, pos_n)``; with
    :func:`~edgebm.train.train_classifier` pass ``extra_loss=model.make_extra_loss(pos_n_train)`` --
    in training mode ``forward`` keeps the last batch's position prediction and reconstruction loss
    so the auxiliary terms cost no second forward pass.
    """

    def __init__(
        self,
        n_in: int,
        n_out: int,
        grid: Sequence[int] | None = None,
        upsample: int = 32,
        widths: Sequence[int] = (32, 64, 128, 256),
        depths: Sequence[int] = (1, 1, 2, 1),
        fusion_dim: int = 128,
        backbone: str = "regnet",
        group_width: int | None = None,
        bottleneck: float = 1.0,
        pos_dim: int = 3,
    ) -> None:
        super().__init__()
        if backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {sorted(BACKBONES)}, got {backbone!r}")
        self.n_in, self.n_out = int(n_in), int(n_out)
        self.grid = _check_grid(self.n_in, grid)
        self.upsample = int(upsample)
        self.widths, self.depths = tuple(int(w) for w in widths), tuple(int(d) for d in depths)
        self.fusion_dim = int(fusion_dim)
        self.backbone = backbone
        self.group_width = int(BACKBONES[backbone] if group_width is None else group_width)
        self.bottleneck = float(bottleneck)
        self.pos_dim = int(pos_dim)

        self.pre = RelativeDb()
        self.image = GridImage(self.grid, self.upsample)
        self.beam_branch = ResNetBackbone(self.widths, self.depths, 1, self.group_width, self.bottleneck)
        self.pos_branch = ResNetBackbone(self.widths, self.depths, 1, self.group_width, self.bottleneck)
        feat = self.beam_branch.out_features
        self.pos_head = nn.Linear(feat, self.pos_dim)
        self.fusion = AutoFusion(2 * feat, self.fusion_dim)
        self.head = nn.Linear(self.fusion_dim, self.n_out)
        self._last_aux: tuple[torch.Tensor, torch.Tensor] | None = None

    def config(self) -> dict:
        return {
            "n_in": self.n_in, "n_out": self.n_out, "grid": list(self.grid), "upsample": self.upsample,
            "widths": list(self.widths), "depths": list(self.depths), "fusion_dim": self.fusion_dim,
            "backbone": self.backbone, "group_width": self.group_width, "bottleneck": self.bottleneck, "pos_dim": self.pos_dim,
        }

    def _branches(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        img = self.image(self.pre(x))
        return self.beam_branch(img), self.pos_branch(img)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        fb, fp = self._branches(x)
        return self.fusion(torch.cat([fb, fp], dim=1))

    def forward_aux(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(logits (batch, n_out), normalised position prediction (batch, pos_dim), reconstruction MSE (scalar))."""
        fb, fp = self._branches(x)
        cat = torch.cat([fb, fp], dim=1)
        fused = self.fusion(cat)
        return self.head(fused), self.pos_head(fp), self.fusion.reconstruction_loss(cat, fused)

    def train(self, mode: bool = True) -> "PositionAidedTeacher":
        self._last_aux = None  # drop a stashed autograd graph when switching modes (e.g. eval() after training)
        return super().train(mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return self.head(self.forward_features(x))
        logits, pos, recon = self.forward_aux(x)
        self._last_aux = (pos, recon)
        return logits

    def aux_loss(
        self, x: torch.Tensor, pos_target: torch.Tensor, pos_weight: float = 0.5, recon_weight: float = 0.1
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, ``pos_weight * MSE(pos_pred, pos_target) + recon_weight * recon``); add the beam loss yourself."""
        logits, pos, recon = self.forward_aux(x)
        return logits, pos_weight * F.mse_loss(pos, pos_target) + recon_weight * recon

    def make_extra_loss(
        self, pos_target: np.ndarray, pos_weight: float = 0.5, recon_weight: float = 0.1
    ) -> Callable[[torch.Tensor, np.ndarray], torch.Tensor]:
        """``extra_loss(logits, idx)`` for :func:`~edgebm.train.train_classifier`: the auxiliary terms of the
        batch just forwarded (``pos_target`` = normalised positions of the training rows, indexed by ``idx``)."""
        target = torch.from_numpy(np.ascontiguousarray(pos_target, dtype=np.float32))

        def extra(logits: torch.Tensor, idx: np.ndarray) -> torch.Tensor:
            if self._last_aux is None:
                raise RuntimeError("make_extra_loss: no auxiliary outputs; the model must be in training mode")
            pos, recon = self._last_aux
            self._last_aux = None
            return pos_weight * F.mse_loss(pos, target[torch.from_numpy(np.asarray(idx))]) + recon_weight * recon

        return extra
