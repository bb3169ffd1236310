"""Post-training quantisation of an exported fp32 ONNX beam model: run one pass, search exclusions, report.

The passes live one per file (like onnxruntime's ``quantization/`` package): :mod:`.int8_static`
(QDQ, calibrated; its module doc records the measured format/type/calibration choices),
:mod:`.int8_dynamic`, :mod:`.fp16`. The accuracy-aware search for weighted nodes to keep in fp32 is
:mod:`.exclusion`. This module adds what a deployment step needs around them: input checks, a
calibration subset, weight-byte accounting (:func:`edgebm.budget.analyze_onnx`) and an atomic write.
A new mode is one new pass class registered in :data:`PASSES`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import onnx

from ..atomic import ScratchDir
from ..budget.graph import analyze_onnx
from .exclusion import search_exclusions
from .fp16 import Fp16Pass
from .int8_dynamic import Int8DynamicPass
from .int8_static import Int8StaticPass
from .quant_base import (
    WEIGHTED_OPS,
    BeamCalibrationReader,
    QuantConfig,
    QuantPass,
    QuantResult,
    atomic_save,
    make_top1_eval,
    weighted_nodes,
)

__all__ = [
    "QUANT_MODES",
    "PASSES",
    "WEIGHTED_OPS",
    "QuantConfig",
    "QuantResult",
    "BeamCalibrationReader",
    "quantize_onnx",
    "weighted_nodes",
    "make_top1_eval",
]

#: mode name -> pass class
PASSES: dict[str, type[QuantPass]] = {p.mode: p for p in (Int8StaticPass, Int8DynamicPass, Fp16Pass)}
QUANT_MODES = tuple(PASSES)


def _graph_io_float32(path: Path) -> bool:
    m = onnx.load(str(path), load_external_data=False)
    return all(v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for v in list(m.graph.input) + list(m.graph.output))


def quantize_onnx(
    fp32_path: str | Path,
    out_path: str | Path,
    mode: str = "int8_static",
    calib_x: np.ndarray | None = None,
    eval_fn: Callable[[str], float] | None = None,
    max_drop: float = 0.01,
    per_channel: bool = True,
    config: QuantConfig | None = None,
    keep_fp32_outputs: Sequence[str] = (),
    keep_fp32_reason: str = "on-device head",
) -> QuantResult:
    """Quantise ``fp32_path`` to ``out_path`` (written atomically) and report what it cost.

    ``mode``: ``"int8_static"`` (QDQ, needs ``calib_x``: real Set B samples (N, ...) float32),
    ``"int8_dynamic"`` (int8 weights, activations quantised at run time) or ``"fp16"`` (float32 I/O kept).
    ``eval_fn(onnx_path) -> top-1`` on a validation split (see :func:`make_top1_eval`); with it, nodes are
    kept in fp32 until ``fp32_top1 - quant_top1 <= max_drop`` (or the cap is reached), see :mod:`.exclusion`.
    ``keep_fp32_outputs``: graph tensor names whose producing weighted node always stays fp32 (the export
    keeps the classifier head producing ``logits`` in fp32: it is the layer the UE updates on device);
    ``keep_fp32_reason`` is how the notes name them.
    """
    cfg = config or QuantConfig()
    if mode not in PASSES:
        raise ValueError(f"mode must be one of {QUANT_MODES}, got {mode!r}")
    fp32_path, out_path = Path(fp32_path), Path(out_path)
    if not fp32_path.is_file():
        raise FileNotFoundError(f"{fp32_path}: no such ONNX file")
    cls = PASSES[mode]
    if cls.needs_calibration:
        if calib_x is None or len(calib_x) == 0:
            raise ValueError(f"{mode} needs calib_x: real input samples (N, ...) float32")
        calib_x = np.ascontiguousarray(calib_x, dtype=np.float32)
        if len(calib_x) > cfg.max_calib:  # evenly strided subset: deterministic, covers the whole split
            calib_x = calib_x[np.linspace(0, len(calib_x) - 1, cfg.max_calib).round().astype(np.int64)]
        # equal-sized batches only: ORT's histogram (percentile) collector stacks the batches and fails on a short last one
        batch = min(cfg.calib_batch, len(calib_x))
        calib_x = calib_x[: len(calib_x) - len(calib_x) % batch]

    notes: list[str] = []
    before = analyze_onnx(fp32_path)
    with ScratchDir("edgebm-quant") as tmp:
        work = Path(tmp)
        qpass = cls(work, calib_x, per_channel, cfg)
        pre_model = onnx.load(str(qpass.prepare(fp32_path, notes)))
        # node names are final only after the pass's pre-processing: resolve the pinned outputs to nodes now
        pinned = [n.name for n in pre_model.graph.node if n.op_type in WEIGHTED_OPS and set(n.output) & set(keep_fp32_outputs)]
        qpass.always_fp32 = pinned
        if pinned:
            notes.append(f"kept fp32 ({keep_fp32_reason}): {', '.join(pinned)}")
        candidates = [c for c in weighted_nodes(pre_model, sorted(cls.quantisable_ops)) if c not in pinned]
        cannot = [n for n in pre_model.graph.node if n.op_type in WEIGHTED_OPS and n.op_type not in cls.quantisable_ops]
        if cannot:
            names = [n.name for n in cannot]
            notes.append(f"{mode} cannot quantise {sorted({n.op_type for n in cannot})}: {len(cannot)} node(s) stay fp32 "
                         f"({', '.join(names[:6])}{'...' if len(names) > 6 else ''})")

        first = qpass.make([], work / "q_all.onnx")
        best, excluded, sensitivity, trials = first, [], {}, []
        fp32_top1 = quant_top1 = None
        if eval_fn is not None:
            fp32_top1 = float(eval_fn(str(fp32_path)))
            outcome = search_exclusions(qpass, candidates, eval_fn, fp32_top1, first, float(eval_fn(str(first))),
                                        max_drop, cfg, calib_x)
            best, quant_top1, excluded = outcome.best_path, outcome.quant_top1, outcome.excluded
            sensitivity, trials = outcome.sensitivity, outcome.trials
            notes += outcome.notes
        removed = atomic_save(onnx.load(str(best)), out_path)  # every pass's graph leaves through here: unused opsets stripped
        if removed:
            notes.append(f"unused opset imports removed: {', '.join(removed)}")

    after = analyze_onnx(out_path)
    if not _graph_io_float32(out_path):
        notes.append("graph inputs/outputs are not all float32")
    return QuantResult(
        mode=mode,
        out_path=str(out_path),
        fp32_top1=fp32_top1,
        quant_top1=quant_top1,
        drop=None if fp32_top1 is None else fp32_top1 - quant_top1,
        excluded_nodes=list(excluded),
        weight_bytes_before=before.weight_bytes,
        weight_bytes_after=after.weight_bytes,
        weight_bytes_by_dtype_after=dict(after.weight_bytes_by_dtype),
        sensitivity=sensitivity,
        trials=trials,
        notes=notes,
        kept_fp32=pinned,
    )
