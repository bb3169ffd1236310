"""Export a torch beam model to ONNX and check it against torch on real samples."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from ..atomic import atomic_path
from ..errors import ExportError
from ..quiet import quiet

__all__ = ["ExportError", "ParityReport", "LogitsAndFeatures", "export_onnx", "check_parity", "INPUT_NAME", "OUTPUT_NAMES"]

INPUT_NAME = "rsrp_b"
OUTPUT_NAMES = ("logits", "features")
#: third output of codebook-aware models (``forward_aps``): the angular power spectrum a new codebook is scored from
APS_OUTPUT = "aps"


class LogitsAndFeatures(nn.Module):
    """Wraps a beam model so the graph has two outputs: logits and the penultimate features
    (the on-device head update trains on the latter)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if hasattr(self.model, "forward_aps"):  # codebook-aware: also output the APS (edgebm.runtime.codebook_scoring)
            aps = self.model.forward_aps(x)
            feats = self.model.features_from_aps(aps)
            return self.model.head(feats), feats, aps
        feats = self.model.forward_features(x)
        return self.model.head(feats), feats


@dataclass(frozen=True)
class ParityReport:
    """ONNX Runtime vs torch on the same inputs."""

    n_samples: int
    max_abs_diff: float  # max |logit_onnx - logit_torch|
    argmax_agreement: float  # fraction of samples with the same top-1 beam

    def to_dict(self) -> dict:
        return {"n_samples": self.n_samples, "max_abs_diff": self.max_abs_diff, "argmax_agreement": self.argmax_agreement}


def export_onnx(model: nn.Module, sample: np.ndarray, path: str | Path, with_features: bool = True) -> Path:
    """Export ``model`` (eval mode) to a single self-contained ONNX file with a dynamic batch axis.

    Uses the torch.export-based exporter (the default since torch 2.9; its optimiser folds
    BatchNorm into the preceding Gemm/Conv). Weights are stored inside the file.
    """
    model = model.eval()
    wrapped = LogitsAndFeatures(model) if with_features else model
    x = torch.from_numpy(np.ascontiguousarray(sample[:2], dtype=np.float32))
    batch = torch.export.Dim("batch", min=1, max=1 << 20)
    path = Path(path)
    # the exporter logs a warning per missing optional op library (torchvision) and prints progress
    try:
        with quiet("torch.onnx"):
            program = torch.onnx.export(
                wrapped,
                (x,),
                input_names=[INPUT_NAME],
                output_names=list(OUTPUT_NAMES if with_features else OUTPUT_NAMES[:1])
                + ([APS_OUTPUT] if with_features and hasattr(model, "forward_aps") else []),
                dynamic_shapes=({0: batch},),
                dynamo=True,
                verbose=False,
            )
    except Exception as e:  # the exporter raises many types; report one line
        raise ExportError(f"ONNX export of {type(model).__name__} failed: {type(e).__name__}: {str(e).splitlines()[0]}") from e
    proto = program.model_proto
    onnx.checker.check_model(proto)
    with atomic_path(path) as tmp:
        onnx.save_model(proto, str(tmp), save_as_external_data=False)
    return path


def check_parity(model: nn.Module, onnx_path: str | Path, x: np.ndarray, threads: int = 1) -> ParityReport:
    """Run torch and onnxruntime on ``x`` and compare logits (first output)."""
    from ..runtime.session import ort_session
    from ..train.loop import predict_logits

    sess = ort_session(onnx_path, threads)
    x = np.ascontiguousarray(x, dtype=np.float32)
    got = sess.run([sess.get_outputs()[0].name], {sess.get_inputs()[0].name: x})[0]
    want = predict_logits(model, x)
    return ParityReport(
        n_samples=int(len(x)),
        max_abs_diff=float(np.max(np.abs(got.astype(np.float64) - want))),
        argmax_agreement=float(np.mean(got.argmax(1) == want.argmax(1))),
    )
