"""What every quantisation pass shares: settings, result record, calibration reader, the pass contract.

One pass per file, as in onnxruntime's ``quantization/`` package: :mod:`.int8_static` (QDQ, calibrated),
:mod:`.int8_dynamic` (int8 weights, activations quantised at run time), :mod:`.fp16`; the accuracy-aware
search for nodes to keep in fp32 is :mod:`.exclusion`; :func:`edgebm.compress.quantize.quantize_onnx` runs
a pass and the search and reports what they cost.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, ClassVar, Sequence

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationDataReader

# re-exported for the passes: ORT's quantiser prints progress (percentile calibration) and logs warnings per tensor
from ..quiet import quiet

__all__ = [
    "WEIGHTED_OPS", "QuantConfig", "QuantResult", "BeamCalibrationReader", "QuantPass", "weighted_nodes", "make_top1_eval",
    "quiet", "atomic_save", "name_nodes",
]

#: op types that carry (most of) a model's weights and FLOPs: the candidates for fp32 exclusion
WEIGHTED_OPS = ("Gemm", "MatMul", "Conv", "ConvTranspose", "GRU", "LSTM", "RNN")


@dataclass(frozen=True)
class QuantConfig:
    """Knobs of :func:`~edgebm.compress.quantize.quantize_onnx` beyond its main arguments (defaults: the measured
    choices documented in :mod:`edgebm.compress.int8_static`)."""

    activation_type: str = "uint8"  # "uint8" (x86: u8s8 kernels) or "int8" (ARM)
    calibrate_method: str = "minmax"  # "minmax" or "percentile"
    percentile: float = 99.999
    reduce_range: bool = False  # 7-bit weights: x86 CPUs without VNNI
    calib_batch: int = 16  # calibration samples per reader batch
    max_calib: int = 512  # at most this many calibration samples (evenly strided subset)
    max_excluded_frac: float = 0.5  # exclusion cap: this fraction of the candidate nodes (at least one)
    max_trials: int = 32  # above this many candidates, rank by the error proxy instead of single-node trials

    def __post_init__(self) -> None:
        if self.activation_type not in ("uint8", "int8"):
            raise ValueError(f"activation_type must be 'uint8' or 'int8', got {self.activation_type!r}")
        if self.calibrate_method not in ("minmax", "percentile"):
            raise ValueError(f"calibrate_method must be 'minmax' or 'percentile', got {self.calibrate_method!r}")
        if self.calib_batch < 1 or self.max_calib < 1:
            raise ValueError("calib_batch and max_calib must be >= 1")
        if not 0.0 <= self.max_excluded_frac <= 1.0:
            raise ValueError(f"max_excluded_frac must be in [0, 1], got {self.max_excluded_frac}")


@dataclass
class QuantResult:
    """What one quantisation step did. Top-1 values are None when no ``eval_fn`` was given."""

    mode: str
    out_path: str
    fp32_top1: float | None
    quant_top1: float | None
    drop: float | None
    excluded_nodes: list[str] = field(default_factory=list)  # weighted nodes the search kept in fp32
    weight_bytes_before: int = 0
    weight_bytes_after: int = 0
    weight_bytes_by_dtype_after: dict[str, int] = field(default_factory=dict)
    sensitivity: dict[str, float] = field(default_factory=dict)  # node -> recovered top-1 (or proxy error)
    trials: list[dict] = field(default_factory=list)  # exclusion steps: {"excluded": [...], "top1": ..., "kept": bool}
    notes: list[str] = field(default_factory=list)
    kept_fp32: list[str] = field(default_factory=list)  # weighted nodes kept in fp32 on request (keep_fp32_outputs)

    def to_dict(self) -> dict:
        return asdict(self)


class BeamCalibrationReader(CalibrationDataReader):
    """ORT calibration reader over real Set B samples ``x`` (N, ...) float32, ``batch`` rows per call."""

    def __init__(self, x: np.ndarray, input_name: str, batch: int = 16) -> None:
        self.x = np.ascontiguousarray(x, dtype=np.float32)
        self.input_name = input_name
        self.batch = int(batch)
        self.pos = 0

    def get_next(self) -> dict | None:
        if self.pos >= len(self.x):
            return None
        b = self.x[self.pos : self.pos + self.batch]
        self.pos += self.batch
        return {self.input_name: b}

    def rewind(self) -> None:
        self.pos = 0

    def __len__(self) -> int:
        return -(-len(self.x) // self.batch)


class QuantPass:
    """One quantisation mode over one model: :meth:`prepare` once, then :meth:`make` per exclusion set.

    ``always_fp32``: weighted nodes every :meth:`make` keeps in fp32 (e.g. the on-device head), on top of the
    ``excluded`` nodes the exclusion search asks for.
    """

    mode: ClassVar[str] = ""
    #: weighted ops this mode can actually quantise (ORT 1.32 registries); the others stay fp32 anyway
    quantisable_ops: ClassVar[frozenset[str]] = frozenset()
    needs_calibration: ClassVar[bool] = False

    def __init__(self, work: Path, calib_x: np.ndarray | None, per_channel: bool, cfg: QuantConfig,
                 always_fp32: Sequence[str] = ()) -> None:
        self.work, self.calib_x, self.per_channel, self.cfg = work, calib_x, per_channel, cfg
        self.always_fp32 = list(always_fp32)
        self.pre = work / "pre.onnx"

    def prepare(self, src: Path, notes: list[str]) -> Path:
        """Write the model the pass quantises to ``self.pre`` (default: ``src`` with every node named)."""
        model = onnx.load(str(src))
        name_nodes(model)
        onnx.save_model(model, str(self.pre))
        return self.pre

    def make(self, excluded: Sequence[str], out: Path) -> Path:  # pragma: no cover - abstract
        """Write the quantised graph to ``out`` with ``excluded`` (+ ``always_fp32``) weighted nodes left in fp32."""
        raise NotImplementedError


def name_nodes(model: onnx.ModelProto) -> int:
    """Give every unnamed node the name ``<op>_<index>`` (exclusion lists refer to nodes by name); returns how many."""
    renamed = 0
    for i, n in enumerate(model.graph.node):
        if not n.name:
            n.name = f"{n.op_type}_{i}"
            renamed += 1
    return renamed


def weighted_nodes(model: onnx.ModelProto | str | Path, op_types: Sequence[str] = WEIGHTED_OPS) -> list[str]:
    """Names of the nodes of ``model`` whose op type is in ``op_types``, in graph order."""
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model))
    return [n.name for n in model.graph.node if n.op_type in op_types]


def make_top1_eval(x_val: np.ndarray, y_val: np.ndarray, threads: int = 1) -> Callable[[str | Path], float]:
    """``eval_fn(onnx_path) -> top-1`` of the first output on (x_val, y_val) with onnxruntime CPU."""
    from ..runtime.session import ort_session

    x = np.ascontiguousarray(x_val, dtype=np.float32)
    y = np.asarray(y_val)

    def eval_fn(path: str | Path) -> float:
        sess = ort_session(path, threads)
        logits = sess.run([sess.get_outputs()[0].name], {sess.get_inputs()[0].name: x})[0]
        return float(np.mean(logits.reshape(-1, logits.shape[-1]).argmax(-1) == y.reshape(-1)))

    return eval_fn


def atomic_save(model: onnx.ModelProto, path: Path) -> list[str]:
    """Save ``model`` self-contained at ``path`` via a temporary name and a rename, without the opset imports no node
    uses (onnxruntime's quantisers declare ``com.microsoft``, ``ai.onnx.ml``, ``ai.onnx.training``... on every graph
    they write; a runtime or converter that checks its imports must not refuse a graph for domains it never runs).
    Returns the removed domains."""
    from ..atomic import atomic_path
    from ..deploy.fixed_shape import strip_unused_opsets

    removed = strip_unused_opsets(model)
    with atomic_path(path) as tmp:
        onnx.save_model(model, str(tmp), save_as_external_data=False)
    return removed
