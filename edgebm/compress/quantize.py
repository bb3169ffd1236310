"""Post-training quantisation of an exported fp32 ONNX beam model: int8 static (QDQ), int8 dynamic, fp16.

Built on ``onnxruntime.quantization`` and ``onnxruntime.transformers.float16``; this module adds the
pieces a deployment step needs around them: shape pre-processing, a calibration reader over real
Set B samples, an accuracy-aware loop that keeps the most harmful weighted nodes in fp32 until the
top-1 drop is within budget, weight-byte accounting (:func:`edgebm.budget.analyze_onnx`) and atomic
writes.

Choices (measured on BeamMLP 16->64, hidden (256, 256), x86-64 with AVX512-VNNI, ORT 1.32):

* **Format**: QDQ (``QuantFormat.QDQ``). ORT's CPU provider fuses ``DQ -> Gemm/MatMul/Conv -> Q``
  into QGemm / QLinearMatMul / QLinearConv, and the graph stays a standard ONNX graph other runtimes read.
* **Weights**: ``QInt8``, per output channel by default (symmetric, zero point 0).
* **Activations**: ``QUInt8`` (asymmetric) by default. ORT's x86 int8 GEMM kernels (MLAS) are built
  around u8 x s8 products (``VPDPBUSD`` on VNNI, ``VPMADDUBSW`` on AVX2); s8 activations need an
  extra compensation pass. Measured single-sample latency: U8S8 ~15 us vs S8S8 ~28 us for the same
  graph and the same top-1. ``activation_type="int8"`` is the better choice for ARM targets
  (symmetric kernels, ORT's own guidance). On x86 *without* VNNI, pass ``reduce_range=True``
  (7-bit weights) to avoid ``VPMADDUBSW`` saturation.
  Note: a model this small is ``run()``-overhead bound at batch 1 (fp32 ~12.5 us on the same host), so
  int8 buys weight memory (3.6x smaller), not latency; the int8 kernels pay off on wider/convolutional models.
* **Calibration**: MinMax by default (``calibrate_method="percentile"`` available). The input is
  bounded by construction (:class:`edgebm.models.preprocess.RelativeDb` clips to [-4, 0]) and the
  BN-folded Gemm/Conv + ReLU activations have no heavy tails on real Set B samples, so MinMax loses
  nothing; with a few hundred calibration samples the 99.999th percentile clips ~no values anyway
  (measured: identical top-1 within one test sample), and MinMax needs no histograms (faster, deterministic).
* **Exclusion**: when ``fp32_top1 - quant_top1 > max_drop``, every quantisable weighted node
  (Gemm/MatMul/Conv/...) is re-quantised *alone in fp32* (``nodes_to_exclude=[node]``) and scored by
  the top-1 it recovers; calibration runs once (ORT's calibration cache is reused by every trial).
  With more than ``max_trials`` candidates that is too slow, so candidates are ranked by a cheaper
  proxy instead: the relative L2 error that quantisation adds at each node's output (fp32 graph vs
  fully quantised graph on up to 256 calibration samples, minus the error already present at its
  input), or, without ``calib_x``, by weight-tensor size.
  Nodes are then excluded greedily, most harmful first, re-evaluating after each, until the drop is
  within ``max_drop`` or the cap (half of the candidates by default) is reached.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import onnx

from onnxruntime.quantization import CalibrationDataReader

from ..atomic import ScratchDir, atomic_path
from ..budget.graph import analyze_onnx

__all__ = [
    "QUANT_MODES",
    "WEIGHTED_OPS",
    "QuantConfig",
    "QuantResult",
    "BeamCalibrationReader",
    "quantize_onnx",
    "weighted_nodes",
    "make_top1_eval",
]

QUANT_MODES = ("int8_static", "int8_dynamic", "fp16")
#: op types that carry (most of) a model's weights and FLOPs: the candidates for fp32 exclusion
WEIGHTED_OPS = ("Gemm", "MatMul", "Conv", "ConvTranspose", "GRU", "LSTM", "RNN")
#: which weighted ops each mode can actually quantise (ORT 1.32 registries); the others stay fp32 anyway
_QUANTISABLE = {
    "int8_static": {"Gemm", "MatMul", "Conv", "ConvTranspose"},
    "int8_dynamic": {"Gemm", "MatMul", "Conv", "LSTM"},
    "fp16": set(WEIGHTED_OPS),
}


@dataclass(frozen=True)
class QuantConfig:
    """Knobs of :func:`quantize_onnx` beyond its main arguments (defaults are the measured choices above)."""

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
    excluded_nodes: list[str] = field(default_factory=list)  # weighted nodes kept in fp32
    weight_bytes_before: int = 0
    weight_bytes_after: int = 0
    weight_bytes_by_dtype_after: dict[str, int] = field(default_factory=dict)
    sensitivity: dict[str, float] = field(default_factory=dict)  # node -> recovered top-1 (or proxy error)
    trials: list[dict] = field(default_factory=list)  # greedy exclusion steps: {"excluded": [...], "top1": ...}
    notes: list[str] = field(default_factory=list)

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


@contextlib.contextmanager
def _quiet():
    """ORT's quantiser prints progress (percentile calibration) and logs warnings per tensor."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)


def _atomic_save(model: onnx.ModelProto, path: Path) -> None:
    with atomic_path(path) as tmp:
        onnx.save_model(model, str(tmp), save_as_external_data=False)


def _preprocess(src: Path, dst: Path, notes: list[str]) -> None:
    """``quant_pre_process`` (ORT shape inference + basic optimisation), then name any unnamed node.

    ORT's symbolic shape inference does not know opset-18+ reductions with ``axes`` as an input (our
    ``RelativeDb`` ReduceMax): it fails with a TypeError, so we retry with ONNX shape inference only
    (enough for these graphs: the batch axis is the only symbolic dimension).
    """
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with _quiet():
        try:
            quant_pre_process(str(src), str(dst))
        except Exception as e:  # symbolic shape inference raises TypeError/KeyError/... on unknown patterns
            notes.append(f"quant_pre_process: symbolic shape inference skipped ({type(e).__name__})")
            quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)
    model = onnx.load(str(dst))
    renamed = 0
    for i, n in enumerate(model.graph.node):
        if not n.name:
            n.name = f"{n.op_type}_{i}"
            renamed += 1
    if renamed:
        notes.append(f"{renamed} unnamed nodes were given names <op>_<index>")
        onnx.save_model(model, str(dst))


def _toposort(graph: onnx.GraphProto) -> None:
    """Reorder ``graph.node`` in place so every node comes after the producers of its inputs (stable)."""
    nodes = list(graph.node)
    produced_by = {o: i for i, n in enumerate(nodes) for o in n.output if o}
    deps = [{produced_by[t] for t in n.input if t in produced_by} for n in nodes]
    done: set[int] = set()
    order: list[int] = []
    for start in range(len(nodes)):
        stack = [(start, False)]
        while stack:
            i, expanded = stack.pop()
            if i in done:
                continue
            if expanded:
                done.add(i)
                order.append(i)
                continue
            stack.append((i, True))
            stack.extend((d, False) for d in sorted(deps[i], reverse=True) if d not in done)
    del graph.node[:]
    graph.node.extend(nodes[i] for i in order)


def _graph_io_float32(path: Path) -> bool:
    m = onnx.load(str(path), load_external_data=False)
    return all(v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for v in list(m.graph.input) + list(m.graph.output))


class _Quantizer:
    """One mode, one pre-processed model: ``make(excluded, out)`` writes a quantised graph."""

    def __init__(self, mode: str, pre: Path, work: Path, calib_x: np.ndarray | None, per_channel: bool, cfg: QuantConfig) -> None:
        self.mode, self.pre, self.work, self.per_channel, self.cfg = mode, pre, work, per_channel, cfg
        self.cache = work / "calibration.json"
        self.calib_x = calib_x
        self.input_name = onnx.load(str(pre), load_external_data=False).graph.input[0].name

    def make(self, excluded: Sequence[str], out: Path) -> Path:
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static

        cfg = self.cfg
        excluded = list(excluded)
        with _quiet():
            if self.mode == "int8_static":
                method = CalibrationMethod.MinMax if cfg.calibrate_method == "minmax" else CalibrationMethod.Percentile
                extra = {"CalibPercentile": cfg.percentile} if cfg.calibrate_method == "percentile" else {}
                reader = None if self.cache.is_file() else BeamCalibrationReader(self.calib_x, self.input_name, min(cfg.calib_batch, len(self.calib_x)))
                quantize_static(
                    str(self.pre), str(out), reader,
                    quant_format=QuantFormat.QDQ,
                    per_channel=self.per_channel,
                    reduce_range=cfg.reduce_range,
                    activation_type=QuantType.QUInt8 if cfg.activation_type == "uint8" else QuantType.QInt8,
                    weight_type=QuantType.QInt8,
                    nodes_to_exclude=excluded,
                    calibrate_method=method,
                    extra_options=extra,
                    calibration_cache_path=str(self.cache),
                )
            elif self.mode == "int8_dynamic":
                quantize_dynamic(
                    str(self.pre), str(out), per_channel=self.per_channel, reduce_range=cfg.reduce_range,
                    weight_type=QuantType.QInt8, nodes_to_exclude=excluded,
                )
            else:  # fp16
                from onnxruntime.transformers.float16 import convert_float_to_float16

                model = onnx.load(str(self.pre))
                half = convert_float_to_float16(model, keep_io_types=True, node_block_list=excluded or None)
                _toposort(half.graph)  # the converter appends the input Casts after their consumers
                del half.graph.value_info[:]  # stale float32 annotations on blocked ops (Resize) break shape inference
                onnx.checker.check_model(half)
                onnx.save_model(half, str(out))
        return out


def _output_error_proxy(fp32_path: Path, quant_path: Path, nodes: list[str], x: np.ndarray) -> dict[str, float]:
    """Per weighted node: relative L2 error of its output (quantised vs fp32 graph) minus that of its input.

    The node's first output keeps its tensor name in QDQ graphs (a Q/DQ pair is inserted after it,
    or the node's output is renamed ``<name>_QuantizeLinear_Input``), so both graphs can expose it.
    """
    from ..runtime.session import ort_session

    fp = onnx.load(str(fp32_path))
    q = onnx.load(str(quant_path))
    by_name = {n.name: n for n in fp.graph.node}
    q_out = {n.name: n for n in q.graph.node}
    pairs: dict[str, tuple[str, str, str, str]] = {}  # node -> (fp in, fp out, q in, q out)
    q_producers = {o for n in q.graph.node for o in n.output}
    for name in nodes:
        node, qn = by_name.get(name), q_out.get(name)
        if node is None or qn is None:
            continue
        if qn.input[0] in q_producers or qn.input[0] in {i.name for i in q.graph.input}:
            pairs[name] = (node.input[0], node.output[0], qn.input[0], qn.output[0])

    def run(model: onnx.ModelProto, names: set[str]) -> dict[str, np.ndarray]:
        m = onnx.ModelProto()
        m.CopyFrom(model)
        have = {o.name for o in m.graph.output}
        for t in sorted(names - have):
            m.graph.output.append(onnx.helper.make_empty_tensor_value_info(t))
        sess = ort_session(m.SerializeToString(), 1, optimization="none")
        outs = [o.name for o in sess.get_outputs()]
        vals = sess.run(outs, {sess.get_inputs()[0].name: np.ascontiguousarray(x, np.float32)})
        return dict(zip(outs, vals))

    a = run(fp, {t for p in pairs.values() for t in p[:2]})
    b = run(q, {t for p in pairs.values() for t in p[2:]})

    def rel(u: np.ndarray, v: np.ndarray) -> float:
        u, v = u.astype(np.float64), v.astype(np.float64)
        return float(np.linalg.norm(u - v) / max(np.linalg.norm(u), 1e-12))

    return {n: rel(a[fo], b[qo]) - rel(a[fi], b[qi]) for n, (fi, fo, qi, qo) in pairs.items() if fo in a and qo in b}


def _weight_sizes(model: onnx.ModelProto, nodes: list[str]) -> dict[str, float]:
    """Per node: number of elements in its initializer inputs."""
    sizes = {t.name: float(np.prod(t.dims)) for t in model.graph.initializer}
    by_name = {n.name: n for n in model.graph.node}
    return {n: sum(sizes.get(i, 0.0) for i in by_name[n].input) for n in nodes}


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
) -> QuantResult:
    """Quantise ``fp32_path`` to ``out_path`` (written atomically) and report what it cost.

    ``mode``: ``"int8_static"`` (QDQ, needs ``calib_x``: real Set B samples (N, ...) float32),
    ``"int8_dynamic"`` (int8 weights, activations quantised at run time) or ``"fp16"`` (float32 I/O kept).
    ``eval_fn(onnx_path) -> top-1`` on a validation split (see :func:`make_top1_eval`); with it, nodes are
    kept in fp32 until ``fp32_top1 - quant_top1 <= max_drop`` (or the cap is reached), see the module doc.
    ``keep_fp32_outputs``: graph tensor names whose producing weighted node always stays fp32 (the export
    keeps the classifier head producing ``logits`` in fp32: it is the layer the UE updates on device).
    """
    cfg = config or QuantConfig()
    if mode not in QUANT_MODES:
        raise ValueError(f"mode must be one of {QUANT_MODES}, got {mode!r}")
    fp32_path, out_path = Path(fp32_path), Path(out_path)
    if not fp32_path.is_file():
        raise FileNotFoundError(f"{fp32_path}: no such ONNX file")
    if mode == "int8_static":
        if calib_x is None or len(calib_x) == 0:
            raise ValueError("int8_static needs calib_x: real input samples (N, ...) float32")
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
        if mode == "fp16":  # no int8 pre-processing: convert the exported graph as is
            pre = work / "pre.onnx"
            model = onnx.load(str(fp32_path))
            for i, n in enumerate(model.graph.node):
                n.name = n.name or f"{n.op_type}_{i}"
            onnx.save_model(model, str(pre))
        else:
            pre = work / "pre.onnx"
            _preprocess(fp32_path, pre, notes)
        q = _Quantizer(mode, pre, work, calib_x, per_channel, cfg)
        pre_model = onnx.load(str(pre))
        pinned = [n.name for n in pre_model.graph.node if n.op_type in WEIGHTED_OPS and set(n.output) & set(keep_fp32_outputs)]
        if pinned:
            make_all = q.make
            q.make = lambda excl, out: make_all([*pinned, *excl], out)  # type: ignore[method-assign]
            notes.append(f"kept fp32 (on-device head): {', '.join(pinned)}")
        candidates = [c for c in weighted_nodes(pre_model, sorted(_QUANTISABLE[mode])) if c not in pinned]
        left_fp32 = [n.name for n in pre_model.graph.node if n.op_type in WEIGHTED_OPS and n.name not in candidates and n.name not in pinned]
        if left_fp32:
            notes.append(f"{mode} cannot quantise {sorted({n.op_type for n in pre_model.graph.node if n.name in left_fp32})}: "
                         f"{len(left_fp32)} node(s) stay fp32 ({', '.join(left_fp32[:6])}{'...' if len(left_fp32) > 6 else ''})")

        best = q.make([], work / "q_all.onnx")
        excluded: list[str] = []
        fp32_top1 = quant_top1 = None
        sensitivity: dict[str, float] = {}
        trials: list[dict] = []
        if eval_fn is not None:
            fp32_top1 = float(eval_fn(str(fp32_path)))
            quant_top1 = float(eval_fn(str(best)))
            trials.append({"excluded": [], "top1": quant_top1})
            if fp32_top1 - quant_top1 > max_drop and candidates:
                cap = max(1, int(cfg.max_excluded_frac * len(candidates)))
                if len(candidates) <= cfg.max_trials:
                    for i, node in enumerate(candidates):
                        sensitivity[node] = float(eval_fn(str(q.make([node], work / f"trial_{i}.onnx")))) - quant_top1
                    notes.append(f"exclusion ranked by single-node fp32 trials ({len(candidates)} candidates)")
                elif calib_x is not None:
                    sensitivity = _output_error_proxy(pre, best, candidates, calib_x[: min(len(calib_x), 256)])
                    notes.append(f"exclusion ranked by output-error proxy ({len(candidates)} candidates > max_trials={cfg.max_trials})")
                else:  # no samples for the proxy: biggest weight tensors first
                    sensitivity = _weight_sizes(pre_model, candidates)
                    notes.append(f"exclusion ranked by weight size ({len(candidates)} candidates > max_trials={cfg.max_trials}, no calib_x)")
                order = sorted(candidates, key=lambda n: (-sensitivity.get(n, float("-inf")), candidates.index(n)))
                for node in order[:cap]:
                    path = q.make([*excluded, node], work / f"greedy_{len(trials)}.onnx")
                    top1 = float(eval_fn(str(path)))
                    trials.append({"excluded": [*excluded, node], "top1": top1, "kept": top1 >= quant_top1})
                    if top1 < quant_top1:  # keeping this node in fp32 lowered top-1: do not keep the step
                        continue
                    excluded.append(node)
                    best, quant_top1 = path, top1
                    if fp32_top1 - top1 <= max_drop:
                        break
                if fp32_top1 - quant_top1 > max_drop:
                    notes.append(f"drop {fp32_top1 - quant_top1:.4f} still > max_drop {max_drop} after excluding the cap of {cap} node(s)")
        out_model = onnx.load(str(best))
        _atomic_save(out_model, out_path)

    after = analyze_onnx(out_path)
    if not _graph_io_float32(out_path):
        notes.append("graph inputs/outputs are not all float32")
    return QuantResult(
        mode=mode,
        out_path=str(out_path),
        fp32_top1=fp32_top1,
        quant_top1=quant_top1,
        drop=None if fp32_top1 is None else fp32_top1 - quant_top1,
        excluded_nodes=excluded,
        weight_bytes_before=before.weight_bytes,
        weight_bytes_after=after.weight_bytes,
        weight_bytes_by_dtype_after=dict(after.weight_bytes_by_dtype),
        sensitivity=sensitivity,
        trials=trials,
        notes=notes,
    )
