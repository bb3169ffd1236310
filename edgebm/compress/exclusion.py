"""Accuracy-aware exclusion: which weighted nodes to keep in fp32 so a quantised model stays within ``max_drop``.

When ``fp32_top1 - quant_top1 > max_drop``, the candidates (quantisable weighted nodes: Gemm/MatMul/Conv/...)
are ranked by how much each one hurts:

* up to ``max_trials`` candidates: each is re-quantised *alone in fp32* and scored by the top-1 it recovers;
* more candidates: a cheaper proxy, the relative L2 error that quantisation adds at each node's output (fp32
  graph vs fully quantised graph on up to 256 calibration samples, minus the error already present at its
  input), or, without calibration samples, the weight-tensor size.

Nodes are then excluded greedily, most harmful first, re-evaluating after each, until the drop is within
``max_drop`` or the cap (``max_excluded_frac`` of the candidates, at least one) is spent. A step that lowers
top-1 (against the best graph so far) is not kept: the node goes back to int8 and the search moves on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import onnx

from .quant_base import QuantConfig, QuantPass

__all__ = ["ExclusionOutcome", "search_exclusions", "output_error_proxy", "weight_sizes"]


@dataclass
class ExclusionOutcome:
    best_path: Path
    quant_top1: float
    excluded: list[str] = field(default_factory=list)
    sensitivity: dict[str, float] = field(default_factory=dict)
    trials: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def search_exclusions(
    qpass: QuantPass,
    candidates: list[str],
    eval_fn: Callable[[str], float],
    fp32_top1: float,
    first: Path,
    first_top1: float,
    max_drop: float,
    cfg: QuantConfig,
    calib_x: np.ndarray | None,
) -> ExclusionOutcome:
    """Greedy exclusion over ``candidates`` starting from the fully quantised ``first`` (top-1 ``first_top1``)."""
    out = ExclusionOutcome(first, first_top1, trials=[{"excluded": [], "top1": first_top1, "kept": True}])
    if fp32_top1 - first_top1 <= max_drop or not candidates:
        return out
    work = qpass.work
    cap = max(1, int(cfg.max_excluded_frac * len(candidates)))
    if len(candidates) <= cfg.max_trials:
        for i, node in enumerate(candidates):
            out.sensitivity[node] = float(eval_fn(str(qpass.make([node], work / f"trial_{i}.onnx")))) - first_top1
        out.notes.append(f"exclusion ranked by single-node fp32 trials ({len(candidates)} candidates)")
    elif calib_x is not None:
        out.sensitivity = output_error_proxy(qpass.pre, first, candidates, calib_x[: min(len(calib_x), 256)])
        out.notes.append(f"exclusion ranked by output-error proxy ({len(candidates)} candidates > max_trials={cfg.max_trials})")
    else:  # no samples for the proxy: biggest weight tensors first
        out.sensitivity = weight_sizes(onnx.load(str(qpass.pre)), candidates)
        out.notes.append(f"exclusion ranked by weight size ({len(candidates)} candidates > max_trials={cfg.max_trials}, no calib_x)")
    order = sorted(candidates, key=lambda n: (-out.sensitivity.get(n, float("-inf")), candidates.index(n)))
    rejected = 0
    for step, node in enumerate(order[:cap]):
        trial = [*out.excluded, node]
        path = qpass.make(trial, work / f"greedy_{step}.onnx")
        top1 = float(eval_fn(str(path)))
        kept = top1 >= out.quant_top1
        out.trials.append({"excluded": trial, "top1": top1, "kept": kept})
        if not kept:  # keeping this node in fp32 made the model worse: put it back to int8
            rejected += 1
            continue
        out.excluded, out.best_path, out.quant_top1 = trial, path, top1
        if fp32_top1 - top1 <= max_drop:
            break
    if rejected:
        out.notes.append(f"{rejected} exclusion step(s) lowered top-1 and were not kept")
    if fp32_top1 - out.quant_top1 > max_drop:
        out.notes.append(f"drop {fp32_top1 - out.quant_top1:.4f} still > max_drop {max_drop} after excluding the cap of {cap} node(s)")
    return out


def output_error_proxy(fp32_path: Path, quant_path: Path, nodes: list[str], x: np.ndarray) -> dict[str, float]:
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


def weight_sizes(model: onnx.ModelProto, nodes: list[str]) -> dict[str, float]:
    """Per node: number of elements in its initializer inputs."""
    sizes = {t.name: float(np.prod(t.dims)) for t in model.graph.initializer}
    by_name = {n.name: n for n in model.graph.node}
    return {n: sum(sizes.get(i, 0.0) for i in by_name[n].input) for n in nodes}
