"""Depthwise-separable CNN student (MobileNetV2-style) over the upsampled Set B RSRP grid.

Seed 003 (table I) builds its lightweight image encoder from depthwise-separable convolutions;
here the "image" is the Set B beam grid made relative to the strongest beam and bilinearly
upsampled (as for the teacher, :mod:`edgebm.models.teacher`). Blocks are MobileNetV2 inverted
residuals: 1x1 expand (ReLU6) -> 3x3 depthwise (ReLU6) -> 1x1 linear projection, with a residual
when the stride is 1 and the width is unchanged.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .preprocess import RelativeDb
from .teacher import GridImage, _check_grid, conv_bn

__all__ = ["BeamDSCNN", "InvertedResidual"]

DEFAULT_BLOCKS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 2, 2))


class InvertedResidual(nn.Module):
    """MobileNetV2 block: [1x1 expand x t, ReLU6] -> 3x3 depthwise (stride), ReLU6 -> 1x1 project (linear)."""

    def __init__(self, cin: int, cout: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = int(round(cin * expansion))
        layers: list[nn.Module] = []
        if expansion != 1:
            layers.append(conv_bn(cin, hidden, 1, act=nn.ReLU6))
        layers += [conv_bn(hidden, hidden, 3, stride=stride, groups=hidden, act=nn.ReLU6), conv_bn(hidden, cout, 1, act=None)]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.residual else y


class BeamDSCNN(nn.Module):
    """MobileNetV2-style student (BM-Case1): raw Set B RSRP (dBm) (batch, n_in) -> logits (batch, n_out).

    ``RelativeDb`` -> beam grid (row-major, ``grid``) -> bilinear upsample to ``upsample`` x ``upsample``
    -> 3x3 stem conv (``width`` channels, ``stem_stride``) -> inverted residual ``blocks`` (each
    ``(t, c, n, s)``: expansion, out channels, repeats, stride of the first repeat) -> 1x1 conv to
    ``last`` -> global average pool = features (batch, last) -> ``head``.
    """

    def __init__(
        self,
        n_in: int,
        n_out: int,
        grid: Sequence[int] | None = None,
        upsample: int = 16,
        width: int = 16,
        blocks: Sequence[Sequence[int]] = DEFAULT_BLOCKS,
        last: int = 128,
        stem_stride: int = 2,
    ) -> None:
        super().__init__()
        self.n_in, self.n_out = int(n_in), int(n_out)
        self.grid = _check_grid(self.n_in, grid)
        self.upsample, self.width, self.last, self.stem_stride = int(upsample), int(width), int(last), int(stem_stride)
        self.blocks = tuple(tuple(int(v) for v in b) for b in blocks)
        if not self.blocks or any(len(b) != 4 or min(b) < 1 for b in self.blocks):
            raise ValueError(f"blocks must be non-empty (t, c, n, s) tuples of positive ints, got {self.blocks}")

        self.pre = RelativeDb()
        self.image = GridImage(self.grid, self.upsample)
        layers: list[nn.Module] = [conv_bn(1, self.width, 3, stride=self.stem_stride, act=nn.ReLU6)]
        cin = self.width
        for t, c, n, s in self.blocks:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers.append(conv_bn(cin, self.last, 1, act=nn.ReLU6))
        self.body = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(self.last, self.n_out)

    def config(self) -> dict:
        return {
            "n_in": self.n_in, "n_out": self.n_out, "grid": list(self.grid), "upsample": self.upsample, "width": self.width,
            "blocks": [list(b) for b in self.blocks], "last": self.last, "stem_stride": self.stem_stride,
        }

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.body(self.image(self.pre(x)))).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))
