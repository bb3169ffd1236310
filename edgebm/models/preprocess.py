"""Input preprocessing shared by every neural family, folded into the exported graph.

Set B RSRP (dBm) is made relative to the strongest measured beam and scaled, so the model
sees the beam *pattern* rather than the path loss: ``x = clip(rsrp_b - max(rsrp_b), floor_db, 0) / scale_db``.
Folding it into the torch module means the ONNX graph takes raw dBm and the torch-free runtime
needs no preprocessing code of its own; the constants are echoed into the manifest.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

__all__ = ["RelativeDb", "relative_db", "PREPROCESS_DEFAULTS"]

PREPROCESS_DEFAULTS = {"kind": "relative_db", "reference": "max", "floor_db": -40.0, "scale_db": 10.0}


class RelativeDb(nn.Module):
    """``(clip(x - max(x), floor_db, 0)) / scale_db`` over the last axis; x in dBm."""

    def __init__(self, floor_db: float = -40.0, scale_db: float = 10.0) -> None:
        super().__init__()
        self.floor_db = float(floor_db)
        self.scale_db = float(scale_db)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rel = x - x.amax(dim=-1, keepdim=True)
        return torch.clamp(rel, min=self.floor_db) / self.scale_db

    def constants(self) -> dict:
        return {"kind": "relative_db", "reference": "max", "floor_db": self.floor_db, "scale_db": self.scale_db}


def relative_db(x: np.ndarray, floor_db: float = -40.0, scale_db: float = 10.0) -> np.ndarray:
    """numpy twin of :class:`RelativeDb` (for classical models and feature pipelines)."""
    rel = x - x.max(axis=-1, keepdims=True)
    return (np.maximum(rel, floor_db) / scale_db).astype(np.float32)
