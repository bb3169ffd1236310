"""Compression: post-training quantisation (one pass per file: int8 static/dynamic, fp16; accuracy-aware
exclusion search), structured pruning, distillation."""

from .distill import distill
from .prune import IMPORTANCES, PruneError, PruneResult, count_params, layer_widths, make_torch_top1_eval, prune_structured
from .quantize import (
    PASSES,
    QUANT_MODES,
    WEIGHTED_OPS,
    BeamCalibrationReader,
    QuantConfig,
    QuantResult,
    make_top1_eval,
    quantize_onnx,
    weighted_nodes,
)

__all__ = [
    "distill",
    "IMPORTANCES", "PruneError", "PruneResult", "count_params", "layer_widths", "make_torch_top1_eval", "prune_structured",
    "PASSES", "QUANT_MODES", "WEIGHTED_OPS", "BeamCalibrationReader", "QuantConfig", "QuantResult", "make_top1_eval",
    "quantize_onnx", "weighted_nodes",
]
