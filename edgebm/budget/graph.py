"""Static analysis of an ONNX graph at batch size 1: shapes, FLOPs, parameters, weight bytes, peak activations.

Written here rather than taken from a library: onnx-tool and similar counters are not kept up
with current opsets, and the gate must count exactly the ops our exporters emit (Gemm/MatMul,
Conv, GRU, attention pieces, element-wise) with a rule we can state. 1 multiply-add = 2 FLOPs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper, shape_inference

from ..errors import GraphError

__all__ = ["GraphStats", "GraphError", "analyze_onnx", "load_onnx"]


# element-wise / cheap ops: FLOPs = elements of the (first) output times this factor
_ELEMENTWISE = {
    "Add": 1, "Sub": 1, "Mul": 1, "Div": 1, "Relu": 1, "LeakyRelu": 2, "Clip": 2, "Max": 1, "Min": 1,
    "Sigmoid": 4, "Tanh": 4, "HardSigmoid": 3, "HardSwish": 4, "Sqrt": 1, "Pow": 1, "Exp": 1, "Log": 1,
    "Neg": 1, "Abs": 1, "Erf": 4, "Gelu": 8, "Softmax": 5, "LogSoftmax": 5, "BatchNormalization": 2,
    "LayerNormalization": 8, "InstanceNormalization": 8, "Where": 1, "Equal": 1, "Less": 1, "Greater": 1,
    "QuantizeLinear": 2, "DequantizeLinear": 2, "Cast": 0, "Sign": 1, "Reciprocal": 1, "Floor": 1,
}
# reductions and pooling: FLOPs = elements of the input
_REDUCE = {"ReduceMax", "ReduceMin", "ReduceSum", "ReduceMean", "ReduceL2", "GlobalAveragePool", "GlobalMaxPool", "ArgMax", "TopK"}
# data movement: no arithmetic
_FREE = {
    "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Concat", "Slice", "Gather", "Identity", "Shape",
    "Constant", "ConstantOfShape", "Expand", "Split", "Resize", "Pad", "Tile", "Range", "Dropout", "ZipMap", "Cast",
    "GatherElements", "ScatterND", "CastLike", "ArrayFeatureExtractor", "Normalizer",
}
_ML_OPS = {"LinearClassifier", "LinearRegressor", "SVMClassifier", "SVMRegressor", "TreeEnsembleClassifier", "TreeEnsembleRegressor"}


@dataclass
class GraphStats:
    """What the gate reads from a graph. FLOPs per inference at batch 1."""

    flops: int
    flops_by_op: dict[str, int]
    params: int
    weight_bytes: int
    weight_bytes_by_dtype: dict[str, int]
    peak_activation_bytes: int
    file_bytes: int
    inputs: list[dict] = field(default_factory=list)
    outputs: list[dict] = field(default_factory=list)
    uncounted_ops: list[str] = field(default_factory=list)


def load_onnx(path: str | Path) -> onnx.ModelProto:
    """Load and check an ONNX file; :class:`GraphError` with one line on failure."""
    path = Path(path)
    if not path.is_file():
        raise GraphError(f"{path}: no such ONNX file")
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as e:  # onnx raises DecodeError, ValidationError, ...
        raise GraphError(f"{path}: not a valid ONNX model ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    return model


def _fix_batch(model: onnx.ModelProto) -> onnx.ModelProto:
    """Copy of ``model`` with every symbolic input dimension set to 1."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for vi in m.graph.input:
        for d in vi.type.tensor_type.shape.dim:
            if not d.HasField("dim_value"):
                d.ClearField("dim_param")
                d.dim_value = 1
    return m


def _io(values) -> list[dict]:
    out = []
    for vi in values:
        t = vi.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in t.shape.dim]
        out.append({"name": vi.name, "shape": shape, "dtype": helper.tensor_dtype_to_np_dtype(t.elem_type).name if t.elem_type else "?"})
    return out


def analyze_onnx(model: onnx.ModelProto | str | Path) -> GraphStats:
    """Count FLOPs, parameters, weight bytes and peak activation memory (liveness) at batch 1."""
    if not isinstance(model, onnx.ModelProto):
        path = Path(model)
        model = load_onnx(path)
        file_bytes = path.stat().st_size
    else:
        file_bytes = model.ByteSize()
    inputs, outputs = _io(model.graph.input), _io(model.graph.output)
    fixed = _fix_batch(model)
    try:
        inferred = shape_inference.infer_shapes(fixed, data_prop=True)
    except Exception as e:
        raise GraphError(f"shape inference failed: {str(e).splitlines()[0]}") from None
    g = inferred.graph

    shapes: dict[str, tuple[int, ...]] = {}
    itemsize: dict[str, int] = {}
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        t = vi.type.tensor_type
        if t.HasField("shape") and all(d.HasField("dim_value") for d in t.shape.dim):
            shapes[vi.name] = tuple(d.dim_value for d in t.shape.dim)
            itemsize[vi.name] = np.dtype(helper.tensor_dtype_to_np_dtype(t.elem_type)).itemsize if t.elem_type else 4
    inits = {t.name: t for t in g.initializer}
    for name, t in inits.items():
        shapes[name] = tuple(t.dims)

    params = 0
    wbytes_by: dict[str, int] = {}
    # scales and zero points of (de)quantisation are bookkeeping, not learned weights
    qparams = {n.input[i] for n in g.node if n.op_type in ("QuantizeLinear", "DequantizeLinear") for i in (1, 2) if len(n.input) > i}
    # int32 tensors dequantised (QDQ biases) or fed as the bias of an integer kernel are learned biases
    int_biases = {n.input[0] for n in g.node if n.op_type == "DequantizeLinear" and n.input} | {
        n.input[8] for n in g.node if n.op_type == "QLinearConv" and len(n.input) > 8}
    for t in g.initializer:
        arr = numpy_helper.to_array(t)
        # integer shape/axes constants are not learnable weights; int8/uint8 quantised weights and int32 quantised biases are
        learned = (arr.dtype.kind == "f" and arr.size > 1) or (arr.dtype.kind in "iu" and arr.dtype.itemsize == 1) or (
            arr.dtype == np.int32 and t.name in int_biases)
        if t.name not in qparams and learned:
            params += arr.size
        wbytes_by[arr.dtype.name] = wbytes_by.get(arr.dtype.name, 0) + arr.nbytes
    for node in g.node:  # weights stored as Constant nodes count too
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    arr = numpy_helper.to_array(a.t)
                    if arr.dtype.kind == "f" and arr.size > 1:
                        params += arr.size
                    wbytes_by[arr.dtype.name] = wbytes_by.get(arr.dtype.name, 0) + arr.nbytes

    def numel(name: str) -> int:
        s = shapes.get(name)
        return int(np.prod(s)) if s is not None else 0

    flops_by: dict[str, int] = {}
    uncounted: set[str] = set()
    for node in g.node:
        op = node.op_type
        ins = [i for i in node.input if i]
        out0 = node.output[0] if node.output else ""
        f = 0
        if op in ("Gemm", "MatMul", "MatMulInteger", "QLinearMatMul", "FusedMatMul"):
            a = shapes.get(ins[0])
            if a is None or out0 not in shapes:
                uncounted.add(op)
            else:
                k = a[-1]
                if op == "Gemm" and any(at.name == "transA" and at.i for at in node.attribute):
                    k = a[0]
                f = 2 * k * numel(out0) + (numel(out0) if op == "Gemm" and len(ins) > 2 else 0)
        elif op in ("Conv", "QLinearConv", "ConvInteger", "ConvTranspose"):
            w = shapes.get(ins[1] if op != "QLinearConv" else ins[3])
            if w is None or out0 not in shapes:
                uncounted.add(op)
            else:
                per_out = int(np.prod(w[1:]))  # (Cin/groups) * kh * kw
                f = 2 * per_out * numel(out0) + (numel(out0) if len(ins) > 2 and op == "Conv" else 0)
        elif op in ("GRU", "LSTM", "RNN"):
            x, w = shapes.get(ins[0]), shapes.get(ins[1])
            r = shapes.get(ins[2])
            if x is None or w is None or r is None:
                uncounted.add(op)
            else:
                seq, batch = x[0], x[1]
                dirs, gates_h, inp = w
                hidden = r[2]
                f = dirs * seq * batch * (2 * gates_h * (inp + hidden) + 8 * gates_h)
        elif op == "DequantizeLinear" and ins and ins[0] in inits:
            f = 0  # a quantised weight: onnxruntime folds it into the int8 kernel, no work per inference
        elif op in _ELEMENTWISE:
            f = _ELEMENTWISE[op] * numel(out0)
        elif op in _REDUCE:
            f = numel(ins[0]) if ins else 0
        elif op in ("MaxPool", "AveragePool"):
            ks = next((list(a.ints) for a in node.attribute if a.name == "kernel_shape"), [1])
            f = numel(out0) * int(np.prod(ks))
        elif op in _ML_OPS:
            est = _ml_op_estimate(node)
            f = est["flops"]
            params += est["params"]
            wbytes_by["float32"] = wbytes_by.get("float32", 0) + 4 * est["params"]  # attributes are float lists
        elif op in _FREE:
            f = 0
        else:
            uncounted.add(op)
        if f:
            flops_by[op] = flops_by.get(op, 0) + int(f)

    # dequantised weights are folded into the int8 kernels by onnxruntime: weights, not activations
    folded = {n.output[0] for n in g.node if n.op_type == "DequantizeLinear" and n.input and n.input[0] in inits}
    peak = _peak_activation_bytes(g, shapes, itemsize, set(inits) | folded)
    return GraphStats(
        flops=int(sum(flops_by.values())),
        flops_by_op=dict(sorted(flops_by.items(), key=lambda kv: -kv[1])),
        params=int(params),
        weight_bytes=int(sum(wbytes_by.values())),
        weight_bytes_by_dtype=wbytes_by,
        peak_activation_bytes=int(peak),
        file_bytes=int(file_bytes),
        inputs=inputs,
        outputs=outputs,
        uncounted_ops=sorted(uncounted),
    )


def _peak_activation_bytes(g, shapes, itemsize, inits: set[str]) -> int:
    """Peak bytes of simultaneously live intermediate tensors (graph inputs included, weights not).

    A tensor is live from the node that produces it (graph inputs: from the start) until the last
    node that reads it; graph outputs stay live to the end. Nodes run in the stored (topological) order.
    """
    last_use: dict[str, int] = {}
    for i, node in enumerate(g.node):
        for name in node.input:
            if name and name not in inits:
                last_use[name] = i
    n = len(g.node)
    for o in g.output:
        last_use[o.name] = n

    def nbytes(name: str) -> int:
        s = shapes.get(name)
        return int(np.prod(s)) * itemsize.get(name, 4) if s is not None else 0

    live = {vi.name: nbytes(vi.name) for vi in g.input if vi.name not in inits}
    peak = sum(live.values())
    for i, node in enumerate(g.node):
        for name in node.output:
            if name and name not in inits:
                live[name] = nbytes(name)
        peak = max(peak, sum(live.values()))
        for name in [k for k in live if last_use.get(k, -1) <= i]:
            del live[name]
    return peak


# -- ONNX-ML ops: weights live in node attributes, not initializers ---------------------------------
def _attr(node: onnx.NodeProto) -> dict[str, Any]:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _tree_depths(at: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Per tree: max root-to-leaf depth (comparisons) and number of branch nodes."""
    tid = np.asarray(at["nodes_treeids"], np.int64)
    nid = np.asarray(at["nodes_nodeids"], np.int64)
    modes = np.asarray([m.decode() if isinstance(m, bytes) else m for m in at["nodes_modes"]])
    branch = modes != "LEAF"
    key = tid * (nid.max() + 1) + nid
    order = np.argsort(key)
    skey = key[order]

    def pos(ids: np.ndarray) -> np.ndarray:
        return order[np.searchsorted(skey, tid * (nid.max() + 1) + ids)]

    t_child = pos(np.asarray(at["nodes_truenodeids"], np.int64))
    f_child = pos(np.asarray(at["nodes_falsenodeids"], np.int64))
    depth = np.zeros(len(tid), np.int64)
    for _ in range(len(tid)):  # relax parent -> child depths until stable (<= max depth rounds)
        cand = depth[branch] + 1
        new = depth.copy()
        np.maximum.at(new, t_child[branch], cand)
        np.maximum.at(new, f_child[branch], cand)
        if np.array_equal(new, depth):
            break
        depth = new
    n_trees = int(tid.max()) + 1
    max_depth = np.zeros(n_trees, np.int64)
    np.maximum.at(max_depth, tid, depth)
    n_branch = np.bincount(tid[branch], minlength=n_trees)
    return max_depth, n_branch


def _ml_op_estimate(node: onnx.NodeProto) -> dict[str, int]:
    """FLOPs (batch 1, worst case) and stored numbers of one ONNX-ML node.

    * LinearClassifier: params = |coefficients| + |intercepts|; flops = 2 |coefficients|.
    * SVMClassifier: params = |support_vectors| + |coefficients| + |rho|; flops as analyze_onnx.
    * TreeEnsembleClassifier/Regressor: params = 2 per branch node (feature id, threshold) + |leaf
      weights|; flops = sum over trees of the max depth (one compare per level) + one add per leaf
      weight reached (|weights| / |leaves| per tree, rounded up) + post_transform (softmax 5 C, logistic 4 C).
    """
    op = node.op_type
    at = _attr(node)
    if op in ("LinearClassifier", "LinearRegressor"):
        n = len(at.get("coefficients", []))
        est = {"params": n + len(at.get("intercepts", [])), "flops": 2 * n}
    elif op in ("SVMClassifier", "SVMRegressor"):
        n_sv = sum(at.get("vectors_per_class", [])) or int(at.get("n_supports", 0))
        sv = len(at.get("support_vectors", []))
        coef = len(at.get("coefficients", []))
        nfeat = sv // n_sv if n_sv else 0
        flops = 2 * n_sv * nfeat + 10 * n_sv + 2 * coef if n_sv else 2 * coef
        est = {"params": sv + coef + len(at.get("rho", [])), "flops": flops}
    elif op in ("TreeEnsembleClassifier", "TreeEnsembleRegressor"):
        wkey = "class_weights" if op == "TreeEnsembleClassifier" else "target_weights"
        ikey = "class_treeids" if op == "TreeEnsembleClassifier" else "target_treeids"
        max_depth, n_branch = _tree_depths(at)
        n_trees = len(max_depth)
        w_per_tree = np.bincount(np.asarray(at[ikey], np.int64), minlength=n_trees)
        modes = [m.decode() if isinstance(m, bytes) else m for m in at["nodes_modes"]]
        leaves = np.bincount(np.asarray(at["nodes_treeids"], np.int64)[np.asarray(modes) == "LEAF"], minlength=n_trees)
        adds = int(np.sum(-(-w_per_tree // np.maximum(leaves, 1))))
        n_cls = len(at.get("classlabels_int64s", at.get("classlabels_strings", []))) or int(at.get("n_targets", 1))
        post = at.get("post_transform", b"NONE")
        post = post.decode() if isinstance(post, bytes) else post
        post_flops = {"SOFTMAX": 5 * n_cls, "LOGISTIC": 4 * n_cls, "SOFTMAX_ZERO": 5 * n_cls}.get(post, 0)
        est = {"params": int(2 * n_branch.sum() + len(at[wkey])), "flops": int(max_depth.sum()) + adds + post_flops,
               "trees": n_trees, "max_depth": int(max_depth.max(initial=0))}
    else:
        est = {"params": 0, "flops": 0}
    return est
