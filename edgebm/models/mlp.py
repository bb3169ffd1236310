"""MLP student: Set B RSRP (dBm) -> logits over Set A beams."""

from __future__ import annotations

import torch
from torch import nn

from .preprocess import RelativeDb

__all__ = ["BeamMLP"]


class BeamMLP(nn.Module):
    """Fully connected student (BM-Case1).

    ``forward(rsrp_b)`` takes raw Set B RSRP in dBm, shape (batch, n_b), and returns logits
    (batch, n_a). ``forward_features`` returns the penultimate features that the on-device
    head update trains on; ``head`` is the last ``nn.Linear``.
    """

    def __init__(self, n_in: int, n_out: int, hidden: tuple[int, ...] = (256, 256), dropout: float = 0.0) -> None:
        super().__init__()
        self.pre = RelativeDb()
        layers: list[nn.Module] = []
        width = n_in
        for h in hidden:
            layers += [nn.Linear(width, h), nn.BatchNorm1d(h), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, n_out)
        self.n_in, self.n_out, self.hidden, self.dropout = n_in, n_out, tuple(hidden), float(dropout)

    def config(self) -> dict:
        """Constructor arguments (JSON-able): ``BeamMLP(**m.config())`` rebuilds the architecture."""
        return {"n_in": self.n_in, "n_out": self.n_out, "hidden": list(self.hidden), "dropout": self.dropout}

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.pre(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))
