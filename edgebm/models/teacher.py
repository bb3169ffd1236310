"""CNN teacher: Set B RSRP as a small image, bilinearly upsampled, through a RegNet/ResNet backbone.

Seed 001 (section IV): the sparse Set B RSRP grid (e.g. 4x4) is bilinearly interpolated to a
larger image so convolutions have room to work, then a stem (3x3 conv-BN-ReLU, stride 2) and
stages of ResNet bottleneck blocks (1x1 reduce, 3x3 -- grouped with group width 8 for RegNetX --,
1x1 expand, residual) extract features; stage widths/depths follow the RegNet linear rule
(:func:`regnet_widths`). One classification head per BS sector (seed 001 "regression head").

Set B beam ``i`` sits at grid cell ``(i // cols, i % cols)`` (row-major), see :func:`default_grid`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .preprocess import RelativeDb

__all__ = [
    "BeamTeacherCNN",
    "Bottleneck",
    "GridImage",
    "ResNetBackbone",
    "conv_bn",
    "default_grid",
    "regnet_widths",
]


def default_grid(n_in: int) -> tuple[int, int]:
    """(rows, cols) of the Set B beam grid: 16 -> (4, 4), 8 -> (2, 4), 4 -> (2, 2), else (1, n_in)."""
    return {16: (4, 4), 8: (2, 4), 4: (2, 2)}.get(int(n_in), (1, int(n_in)))


def _check_grid(n_in: int, grid: Sequence[int] | None) -> tuple[int, int]:
    g = default_grid(n_in) if grid is None else (int(grid[0]), int(grid[1]))
    if len(g) != 2 or g[0] < 1 or g[1] < 1 or g[0] * g[1] != n_in:
        raise ValueError(f"grid {tuple(g)} does not hold n_in={n_in} beams (rows * cols must equal n_in)")
    return g


def regnet_widths(w0: float, wa: float, wm: float, depth: int, q: int = 8) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """RegNet width rule (seed 001): per-block widths grouped into stages.

    ``u_i = w0 + wa * i`` (i = 0..depth-1), ``w_i = w0 * wm ** floor(log(u_i / w0) / log(wm))``, each
    quantised to the nearest multiple of ``q`` (at least ``q``); consecutive blocks of equal width form
    one stage. Returns ``(widths, depths)``, one entry per stage.
    """
    if depth < 1 or w0 <= 0 or wa < 0 or wm <= 1 or q < 1:
        raise ValueError("regnet_widths needs depth >= 1, w0 > 0, wa >= 0, wm > 1, q >= 1")
    u = w0 + wa * np.arange(depth, dtype=np.float64)
    # small epsilon: u_i / w0 == wm ** k exactly must land on k, not k - 1 through rounding
    s = np.floor(np.log(u / w0) / np.log(wm) + 1e-9)
    w = w0 * np.power(wm, s)
    w = np.maximum(q, np.round(w / q) * q).astype(int)
    widths: list[int] = []
    depths: list[int] = []
    for wi in w.tolist():
        if widths and widths[-1] == wi:
            depths[-1] += 1
        else:
            widths.append(int(wi))
            depths.append(1)
    return tuple(widths), tuple(depths)


def conv_bn(cin: int, cout: int, k: int = 1, stride: int = 1, groups: int = 1, act: type[nn.Module] | None = nn.ReLU) -> nn.Sequential:
    """Conv (no bias) -> BatchNorm -> optional activation. The exporter folds the BN into the conv."""
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


def _groups(channels: int, group_width: int) -> int:
    """Number of groups for a grouped conv of ``channels`` with ``group_width`` channels each (1 = dense)."""
    if group_width <= 0 or channels <= group_width or channels % group_width:
        return 1
    return channels // group_width


class Bottleneck(nn.Module):
    """ResNet bottleneck: 1x1 reduce -> 3x3 (stride, optionally grouped) -> 1x1 expand, + shortcut, ReLU.

    ``bottleneck`` is the reduction ratio (RegNetX uses 1.0, ResNet 4.0); ``group_width`` 0 = dense 3x3.
    The shortcut is a 1x1 conv-BN when the stride or the width changes. The last BN starts at zero
    so each block begins as an identity (helps short teacher trainings).
    """

    def __init__(self, cin: int, cout: int, stride: int = 1, group_width: int = 8, bottleneck: float = 1.0) -> None:
        super().__init__()
        inner = max(1, int(round(cout / bottleneck)))
        if group_width > 0 and inner > group_width:  # keep the inner width a multiple of the group width
            inner = max(group_width, int(round(inner / group_width)) * group_width)
        self.reduce = conv_bn(cin, inner, 1)
        self.conv = conv_bn(inner, inner, 3, stride=stride, groups=_groups(inner, group_width))
        self.expand = conv_bn(inner, cout, 1, act=None)
        nn.init.zeros_(self.expand[1].weight)
        self.shortcut = conv_bn(cin, cout, 1, stride=stride, act=None) if (stride != 1 or cin != cout) else nn.Identity()
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.expand(self.conv(self.reduce(x))) + self.shortcut(x))


class GridImage(nn.Module):
    """(batch, n_in) -> (batch, 1, size, size): row-major reshape to the beam grid, bilinear upsample (seed 001 eq. 16)."""

    def __init__(self, grid: tuple[int, int], size: int) -> None:
        super().__init__()
        self.grid = (int(grid[0]), int(grid[1]))
        self.size = int(size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        img = x.reshape(-1, 1, self.grid[0], self.grid[1])
        return F.interpolate(img, size=(self.size, self.size), mode="bilinear", align_corners=False)


class ResNetBackbone(nn.Module):
    """Stem (3x3 conv-BN-ReLU, stride 2) + stages of :class:`Bottleneck` (stride 2 at each stage start) + global average pool.

    Input (batch, in_ch, H, W); output (batch, widths[-1]).
    """

    def __init__(
        self,
        widths: Sequence[int],
        depths: Sequence[int],
        in_ch: int = 1,
        group_width: int = 8,
        bottleneck: float = 1.0,
        stem: int | None = None,
    ) -> None:
        super().__init__()
        if len(widths) != len(depths) or not widths or min(depths) < 1 or min(widths) < 1:
            raise ValueError(f"widths {tuple(widths)} and depths {tuple(depths)} must be non-empty, equal length, positive")
        stem = int(stem or widths[0])
        self.stem = conv_bn(in_ch, stem, 3, stride=2)
        stages: list[nn.Module] = []
        cin = stem
        for w, d in zip(widths, depths):
            blocks = [Bottleneck(cin if i == 0 else w, w, 2 if i == 0 else 1, group_width, bottleneck) for i in range(d)]
            stages.append(nn.Sequential(*blocks))
            cin = w
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_features = int(widths[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.stages(self.stem(x))).flatten(1)


BACKBONES = {"regnet": 8, "resnet": 0}  # backbone name -> default group width of the 3x3 conv


class BeamTeacherCNN(nn.Module):
    """RegNet/ResNet teacher (BM-Case1): raw Set B RSRP (dBm) (batch, n_in) -> logits (batch, n_out).

    ``RelativeDb`` -> (batch, 1, rows, cols) -> bilinear upsample to ``upsample`` x ``upsample`` ->
    :class:`ResNetBackbone` -> features (batch, widths[-1]) -> ``head``. ``backbone="regnet"`` uses
    grouped 3x3 convs with group width ``group_width`` (RegNetX, bottleneck ratio 1); ``"resnet"``
    dense 3x3 convs. With ``sectors > 1`` there is one head per sector (``heads``; ``heads[0]`` is ``head``,
    the others are registered as ``extra_heads``) and ``forward`` returns (batch, sectors, n_out), or
    (batch, n_out) for a given ``sector`` (int or (batch,) tensor; ignored with one sector). The exporter
    wraps ``head``, so a multi-sector model exports sector 0's logits only.
    """

    def __init__(
        self,
        n_in: int,
        n_out: int,
        grid: Sequence[int] | None = None,
        upsample: int = 32,
        widths: Sequence[int] = (32, 64, 128, 256),
        depths: Sequence[int] = (1, 1, 2, 1),
        backbone: str = "regnet",
        sectors: int = 1,
        group_width: int | None = None,
        bottleneck: float = 1.0,
    ) -> None:
        super().__init__()
        if backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {sorted(BACKBONES)}, got {backbone!r}")
        if sectors < 1:
            raise ValueError(f"sectors must be >= 1, got {sectors}")
        self.n_in, self.n_out = int(n_in), int(n_out)
        self.grid = _check_grid(self.n_in, grid)
        self.upsample = int(upsample)
        self.widths, self.depths = tuple(int(w) for w in widths), tuple(int(d) for d in depths)
        self.backbone = backbone
        self.sectors = int(sectors)
        self.group_width = int(BACKBONES[backbone] if group_width is None else group_width)
        self.bottleneck = float(bottleneck)

        self.pre = RelativeDb()
        self.image = GridImage(self.grid, self.upsample)
        self.body = ResNetBackbone(self.widths, self.depths, 1, self.group_width, self.bottleneck)
        feat = self.body.out_features
        # sector 0's head is ``head`` (registered once, as in every family); the others live in ``extra_heads``.
        # Registering one module under two names would make thop hook it twice and leave a stale hook behind.
        self.head = nn.Linear(feat, self.n_out)
        self.extra_heads = nn.ModuleList(nn.Linear(feat, self.n_out) for _ in range(self.sectors - 1))

    @classmethod
    def from_regnet(
        cls, n_in: int, n_out: int, w0: float = 24, wa: float = 16, wm: float = 2.0, depth: int = 6, q: int = 8, **kwargs
    ) -> "BeamTeacherCNN":
        """Teacher whose stage widths/depths come from :func:`regnet_widths` (``w0, wa, wm, depth, q``)."""
        widths, depths = regnet_widths(w0, wa, wm, depth, q)
        return cls(n_in, n_out, widths=widths, depths=depths, **kwargs)

    @property
    def heads(self) -> nn.ModuleList:
        """One Linear head per sector (``heads[0] is head``)."""
        return nn.ModuleList([self.head, *self.extra_heads])

    def config(self) -> dict:
        return {
            "n_in": self.n_in, "n_out": self.n_out, "grid": list(self.grid), "upsample": self.upsample,
            "widths": list(self.widths), "depths": list(self.depths), "backbone": self.backbone,
            "sectors": self.sectors, "group_width": self.group_width, "bottleneck": self.bottleneck,
        }

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.image(self.pre(x)))

    def forward(self, x: torch.Tensor, sector: torch.Tensor | int | None = None) -> torch.Tensor:
        f = self.forward_features(x)
        if self.sectors == 1:
            return self.head(f)
        logits = torch.stack([h(f) for h in (self.head, *self.extra_heads)], dim=1)  # (batch, sectors, n_out)
        if sector is None:
            return logits
        s = torch.as_tensor(sector, dtype=torch.long, device=logits.device).reshape(-1, 1, 1)
        return logits.gather(1, s.expand(logits.shape[0], 1, self.n_out)).squeeze(1)

