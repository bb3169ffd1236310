"""Portable C99 for microcontroller-class UEs: ``int32_t edgebm_predict(const float rsrp_b_dbm[EDGEBM_N_B])``.

A microcontroller cannot host onnxruntime, so the ``c`` backend ships the model as C source (no heap,
libm only) generated from the bundle's ONNX graph, so that the C computes what the graph computes:

* the relative-dB feature step (``ReduceMax, Sub, Clip|Max, Div`` at the graph's input) is read from
  the graph (floor and scale constants) and runs inside :c:func:`edgebm_predict`;
* **MLP, float32** (``Gemm [+ Relu]`` chain, BatchNorm already folded by the exporter): emlearn's
  network runtime (``eml_net.h``) and its C generator (``emlearn.net.c_generate_net_loadable``);
* **decision tree**: emlearn's tree generator (``emlearn.trees``, inline if/else code) from the
  fitted scikit-learn tree; its leaves give the class, a table maps classes to Set A beams;
* written here, where emlearn does not fit (``c_templates/``): **int8 QDQ MLPs** (emlearn's network
  runtime is float only; the int8 kernel follows the graph's QuantizeLinear/DequantizeLinear
  arithmetic with int32 accumulation), **linear models** (``svm_linear``, ``sgd``: emlearn has no
  linear-model converter and its network runtime needs two layers or more) and **gradient-boosted
  trees** (emlearn has no converter for them; the generic ONNX-ML TreeEnsembleClassifier walker
  reads the shipped graph's thresholds as float32, so comparisons are the graph's ``x <= t``).

Weights are printed as the shortest decimal that reads back as the same float32 (our generators);
emlearn's own generators print six decimals. Agreement with onnxruntime is measured by
:func:`edgebm.budget.mcu.mcu_lines` (the gate's ``c_agreement`` line), never assumed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .. import __version__
from ..errors import ExportError

__all__ = ["CModel", "export_c", "C_DIR", "EMLEARN_HEADERS", "emlearn_status"]

#: folder of the C sources inside a bundle
C_DIR = "c"
#: emlearn runtime headers the float MLP path includes (copied next to model.c)
EMLEARN_HEADERS = ("eml_net.h", "eml_common.h", "eml_net_common.h", "eml_log.h")
_TEMPLATES = Path(__file__).with_name("c_templates")
#: ops an MLP graph (float or QDQ int8) may hold for the C target
_MLP_OPS = {"ReduceMax", "Sub", "Clip", "Max", "Div", "Gemm", "Relu", "QuantizeLinear", "DequantizeLinear", "Identity"}


def _emlearn():
    """Import emlearn without its side effect: ``emlearn.bayes`` calls ``numpy.seterr(all='raise')`` at
    import, which would turn every later float underflow in this process into an exception."""
    saved = np.geterr()
    try:
        import emlearn
        import emlearn.net
        import emlearn.trees
    finally:
        np.seterr(**saved)
    return emlearn


def emlearn_status() -> tuple[bool, str]:
    """(available, reason): ``emlearn`` importable (a dependency of edgebm; pip install emlearn)."""
    try:
        emlearn = _emlearn()
    except ImportError:
        return False, "emlearn is not installed (pip install emlearn)"
    return True, f"emlearn {getattr(emlearn, '__version__', '?')}"


@dataclass
class CModel:
    """Generated C sources of one model: ``files`` maps a file name (inside ``c/``) to its text."""

    files: dict[str, str]
    kind: str  # "emlearn_net" | "emlearn_tree" | "dense" | "trees"
    n_b: int
    n_a: int
    notes: list[str] = field(default_factory=list)

    def write(self, out_dir: str | Path) -> list[Path]:
        """Write every file into ``out_dir`` (created); returns the paths."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = []
        for name, text in self.files.items():
            p = out / name
            tmp = p.with_name(p.name + ".tmp")
            tmp.write_text(text, encoding="utf-8")
            tmp.replace(p)
            paths.append(p)
        return paths

    def manifest(self) -> dict[str, Any]:
        return {"dir": C_DIR, "kind": self.kind, "files": sorted(f"{C_DIR}/{n}" for n in self.files),
                "entry": "int32_t edgebm_predict(const float rsrp_b_dbm[EDGEBM_N_B])", "header": f"{C_DIR}/model.h",
                "n_b": self.n_b, "n_a": self.n_a, "notes": self.notes}


# -- formatting ---------------------------------------------------------------------------------
def _f32(v: float) -> str:
    """Shortest decimal literal that C reads back as the same float32 (``1.25e-3f``)."""
    x = np.float32(v)
    if not np.isfinite(x):
        raise ExportError(f"C export: non-finite constant {v!r} in the graph")
    return np.format_float_scientific(x, unique=True, trim="-", exp_digits=1) + "f"


def _array(ctype: str, name: str, values: np.ndarray, fmt=str, per_line: int = 12) -> str:
    vals = [fmt(v) for v in np.asarray(values).ravel()]
    rows = [", ".join(vals[i : i + per_line]) for i in range(0, len(vals), per_line)] or ["0"]
    body = ",\n    ".join(rows)
    return f"static const {ctype} {name}[{max(len(vals), 1)}] = {{\n    {body}\n}};\n"


def _ints(values: np.ndarray, ctype: str, name: str) -> str:
    return _array(ctype, name, np.asarray(values).astype(np.int64), lambda v: str(int(v)), per_line=24)


def _floats(values: np.ndarray, name: str) -> str:
    return _array("float", name, np.asarray(values, np.float32), _f32, per_line=8)


def _template(name: str, **subs: Any) -> str:
    return Template((_TEMPLATES / name).read_text(encoding="utf-8")).substitute(**{k: str(v) for k, v in subs.items()})


# -- graph reading ------------------------------------------------------------------------------
class _Graph:
    def __init__(self, model: onnx.ModelProto) -> None:
        g = model.graph
        self.model = model
        self.inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
        for n in g.node:
            if n.op_type == "Constant":
                for a in n.attribute:
                    if a.name == "value":
                        self.inits[n.output[0]] = numpy_helper.to_array(a.t)
        self.nodes = [n for n in g.node if n.op_type != "Constant"]
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        self.producer: dict[str, onnx.NodeProto] = {}
        for n in self.nodes:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)
            for o in n.output:
                self.producer[o] = n
        self.input = next(i for i in g.input if i.name not in self.inits)
        self.output = g.output[0].name

    def dims(self, value: onnx.ValueInfoProto) -> list[int | None]:
        return [d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim]

    def only_consumer(self, tensor: str, ops: tuple[str, ...] | None = None) -> onnx.NodeProto:
        cons = [n for n in self.consumers.get(tensor, []) if ops is None or n.op_type in ops]
        if len(cons) != 1:
            raise ExportError(f"C export: tensor '{tensor}' feeds {len(cons)} node(s) of {ops or 'any type'}; expected one")
        return cons[0]

    def const(self, name: str) -> np.ndarray:
        if name not in self.inits:
            raise ExportError(f"C export: '{name}' must be a constant (initializer) for the C target")
        return self.inits[name]


def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        out[a.name] = v.decode() if isinstance(v, bytes) else v
    return out


def _preprocessing(g: _Graph) -> tuple[float, float, str]:
    """(floor_db, scale_db, feature tensor) of the ``x - max(x)``, clip, divide step at the graph input."""
    x = g.input.name
    reds = [n for n in g.consumers.get(x, []) if n.op_type == "ReduceMax"]
    sub = next((n for n in g.consumers.get(x, []) if n.op_type == "Sub" and reds and list(n.input) == [x, reds[0].output[0]]), None)
    if len(reds) != 1 or sub is None:
        raise ExportError("C export: the graph does not start with the relative-dB step (ReduceMax, Sub) of edgebm models")
    clip = g.only_consumer(sub.output[0])
    if clip.op_type == "Clip" and len(clip.input) >= 2 and clip.input[1] and (len(clip.input) < 3 or not clip.input[2]):
        floor = float(g.const(clip.input[1]))
    elif clip.op_type == "Max" and len(clip.input) == 2:
        floor = float(g.const(clip.input[1]))
    else:
        raise ExportError(f"C export: expected Clip(min) or Max after the Sub of the relative-dB step, found {clip.op_type}")
    div = g.only_consumer(clip.output[0])
    if div.op_type != "Div":
        raise ExportError(f"C export: expected Div after the floor of the relative-dB step, found {div.op_type}")
    scale = float(g.const(div.input[1]))
    return floor, scale, div.output[0]


def _class_to_beam(g: _Graph, k: int, n_a: int) -> np.ndarray | None:
    """Set A beam of each of the estimator's ``k`` classes from the graph's final Pad+Gather remap (None = identity)."""
    prod = g.producer.get(g.output)
    while prod is not None and prod.op_type == "Identity":
        prod = g.producer.get(prod.input[0])
    if prod is None or prod.op_type != "Gather" or prod.input[1] not in g.inits:
        if k != n_a:
            raise ExportError(f"C export: {k} classes but {n_a} beams and no class -> beam Gather at the output")
        return None
    idx = np.asarray(g.inits[prod.input[1]]).astype(np.int64)
    beams = np.full(k, -1, np.int64)
    for b, c in enumerate(idx):
        if c < k and beams[c] < 0:
            beams[c] = b
    if (beams < 0).any():
        raise ExportError("C export: some classes of the estimator map to no Set A beam")
    return beams


def _qrange(zp: np.ndarray) -> tuple[int, int]:
    if zp.dtype == np.uint8:
        return 0, 255
    if zp.dtype == np.int8:
        return -128, 127
    raise ExportError(f"C export: quantised type {zp.dtype} is not supported (uint8 or int8)")


# -- neural (Gemm chain, float or QDQ int8) -------------------------------------------------------
@dataclass
class _Dense:
    w: np.ndarray  # (n_out, n_in) float32 or int8
    b: np.ndarray  # float32 or int32
    acc_scale: np.ndarray | None = None  # int8 layers
    in_q: tuple[float, int, int, int] | None = None  # scale, zp, qmin, qmax
    relu: bool = False
    out_q: tuple[float, int, int, int] | None = None
    logistic: bool = False

    @property
    def int8(self) -> bool:
        return self.w.dtype == np.int8


def _quant_params(g: _Graph, node: onnx.NodeProto) -> tuple[float, int, int, int]:
    s = np.asarray(g.const(node.input[1]), np.float32)
    zp = np.asarray(g.const(node.input[2])) if len(node.input) > 2 and node.input[2] else np.array(0, np.uint8)
    if s.size != 1 or zp.size != 1:
        raise ExportError("C export: activations must be quantised per tensor")
    lo, hi = _qrange(zp)
    return float(s.ravel()[0]), int(zp.ravel()[0]), lo, hi


def _neural_layers(g: _Graph, feat: str) -> list[_Dense]:
    layers: list[_Dense] = []
    x = feat
    while x != g.output:
        node = g.only_consumer(x, ("QuantizeLinear", "Gemm"))
        in_q = None
        if node.op_type == "QuantizeLinear":
            in_q = _quant_params(g, node)
            dq = g.only_consumer(node.output[0], ("DequantizeLinear",))
            node = g.only_consumer(dq.output[0], ("Gemm",))
        a = _attrs(node)
        if a.get("transA", 0) != 0 or a.get("transB", 0) != 1 or a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0:
            raise ExportError(f"C export: Gemm '{node.name}' must have transA=0, transB=1, alpha=beta=1")
        w, w_scale = _gemm_weight(g, node.input[1])
        b, b_scale = _gemm_bias(g, node.input[2] if len(node.input) > 2 else "", w.shape[0])
        layer = _Dense(w=w, b=b, in_q=in_q)
        if layer.int8:
            if in_q is None:  # weight-only quantisation: run it as the float layer it dequantises to
                layer.w = (w.astype(np.float32) * w_scale[:, None]).astype(np.float32)
                layer.b = b.astype(np.float32) * (b_scale if b_scale is not None else 1.0)
            else:
                acc = np.float32(in_q[0]) * w_scale.astype(np.float32)
                layer.acc_scale = (b_scale if b_scale is not None else acc).astype(np.float32)
                if b.dtype != np.int32:  # float bias with int8 weights: fold it into the int32 accumulator scale
                    layer.b = np.rint(b / layer.acc_scale).astype(np.int32)
        elif in_q is not None:
            raise ExportError(f"C export: Gemm '{node.name}' has a quantised input but float weights (not supported)")
        y = node.output[0]
        nxt = [n for n in g.consumers.get(y, [])]
        if len(nxt) == 1 and nxt[0].op_type == "Relu":
            layer.relu = True
            y = nxt[0].output[0]
            nxt = g.consumers.get(y, [])
        q = [n for n in nxt if n.op_type == "QuantizeLinear"]
        if q and y != g.output:
            layer.out_q = _quant_params(g, q[0])
            y = g.only_consumer(q[0].output[0], ("DequantizeLinear",)).output[0]
        layers.append(layer)
        x = y
        if len(layers) > 64:
            raise ExportError("C export: the Gemm chain does not reach the score output")
    if not layers:
        raise ExportError("C export: no dense layer between the features and the score output")
    return layers


def _gemm_weight(g: _Graph, name: str) -> tuple[np.ndarray, np.ndarray | None]:
    if name in g.inits:
        return np.asarray(g.inits[name], np.float32), None
    dq = g.producer.get(name)
    if dq is None or dq.op_type != "DequantizeLinear":
        raise ExportError(f"C export: Gemm weight '{name}' is neither a constant nor a dequantised constant")
    w = np.asarray(g.const(dq.input[0]))
    scale = np.asarray(g.const(dq.input[1]), np.float32).ravel()
    zp = np.asarray(g.const(dq.input[2])).ravel() if len(dq.input) > 2 and dq.input[2] else np.zeros(1)
    if w.dtype != np.int8 or np.any(zp != 0):
        raise ExportError(f"C export: quantised weight '{name}' must be symmetric int8 (zero point 0)")
    return w, np.broadcast_to(scale, (w.shape[0],)).astype(np.float32)


def _gemm_bias(g: _Graph, name: str, n_out: int) -> tuple[np.ndarray, np.ndarray | None]:
    if not name:
        return np.zeros(n_out, np.float32), None
    if name in g.inits:
        return np.asarray(g.inits[name], np.float32).ravel(), None
    dq = g.producer.get(name)
    if dq is None or dq.op_type != "DequantizeLinear":
        raise ExportError(f"C export: Gemm bias '{name}' is neither a constant nor a dequantised constant")
    b = np.asarray(g.const(dq.input[0])).ravel()
    scale = np.broadcast_to(np.asarray(g.const(dq.input[1]), np.float32).ravel(), (n_out,)).astype(np.float32)
    if b.dtype != np.int32:
        raise ExportError(f"C export: quantised bias '{name}' must be int32")
    return b, scale


def _emlearn_net_source(layers: list[_Dense]) -> str:
    c_generate_net_loadable = _emlearn().net.c_generate_net_loadable
    acts = ["relu" if l.relu else "identity" for l in layers]
    # emlearn stores layer weights as (n_in, n_out); ONNX Gemm with transB=1 holds (n_out, n_in)
    return c_generate_net_loadable(acts, [l.w.T.astype(np.float32) for l in layers], [l.b.astype(np.float32) for l in layers], prefix="edgebm_net")


def _dense_source(layers: list[_Dense]) -> tuple[str, int]:
    parts, inits = [], []
    for i, l in enumerate(layers):
        n_out, n_in = l.w.shape
        fields = {"n_in": n_in, "n_out": n_out, "relu": int(l.relu), "logistic": int(l.logistic)}
        if l.int8:
            parts += [_ints(l.w, "int8_t", f"edgebm_w{i}"), _ints(l.b, "int32_t", f"edgebm_b{i}"),
                      _floats(l.acc_scale, f"edgebm_s{i}")]
            fields.update(w="0", b="0", w_q=f"edgebm_w{i}", b_q=f"edgebm_b{i}", acc_scale=f"edgebm_s{i}")
            s, zp, lo, hi = l.in_q  # type: ignore[misc]
            fields.update(in_scale=_f32(s), in_zp=zp, in_qmin=lo, in_qmax=hi)
        else:
            parts += [_floats(l.w, f"edgebm_w{i}"), _floats(l.b, f"edgebm_b{i}")]
            fields.update(w=f"edgebm_w{i}", b=f"edgebm_b{i}", w_q="0", b_q="0", acc_scale="0", in_scale="1.0f", in_zp=0, in_qmin=0, in_qmax=0)
        if l.out_q is not None:
            s, zp, lo, hi = l.out_q
            fields.update(quant_out=1, out_scale=_f32(s), out_zp=zp, out_qmin=lo, out_qmax=hi)
        else:
            fields.update(quant_out=0, out_scale="1.0f", out_zp=0, out_qmin=0, out_qmax=0)
        inits.append("    { " + ", ".join(f".{k} = {v}" for k, v in fields.items()) + " }")
    parts.append(f"static const edgebm_dense edgebm_layers[{len(layers)}] = {{\n" + ",\n".join(inits) + "\n};\n")
    width = max([layers[0].w.shape[1]] + [l.w.shape[0] for l in layers])
    return "\n".join(parts), width


# -- classical ----------------------------------------------------------------------------------
def _linear_layer(g: _Graph, feat: str) -> tuple[_Dense, int]:
    node = g.only_consumer(feat)
    if node.op_type == "LinearClassifier":
        a = _attrs(node)
        k = len(a.get("classlabels_ints") or a.get("classlabels_strings") or [])
        coef = np.asarray(a["coefficients"], np.float32).reshape(k, -1)
        inter = np.asarray(a.get("intercepts", np.zeros(k)), np.float32)
        if coef.shape[0] == 1 or a.get("post_transform", "NONE") not in ("NONE", "LOGISTIC", "SOFTMAX"):
            raise ExportError("C export: binary or unusual LinearClassifier post-transforms are not supported")
        return _Dense(w=coef, b=inter, logistic=a.get("post_transform") == "LOGISTIC"), k
    if node.op_type == "MatMul":
        coef = np.asarray(g.const(node.input[1]), np.float32)  # (n_features, k)
        add = g.only_consumer(node.output[0], ("Add",))
        inter = np.asarray(g.const(add.input[1]), np.float32).ravel()
        y = add.output[0]
        logistic = False
        for _ in range(4):  # Identity / Sigmoid between the raw scores and the rest of the tail
            nxt = g.consumers.get(y, [])
            if len(nxt) == 1 and nxt[0].op_type in ("Identity", "Sigmoid"):
                logistic |= nxt[0].op_type == "Sigmoid"
                y = nxt[0].output[0]
        return _Dense(w=np.ascontiguousarray(coef.T), b=np.broadcast_to(inter, (coef.shape[1],)).astype(np.float32), logistic=logistic), coef.shape[1]
    raise ExportError(f"C export: unsupported classical head {node.op_type}")


def _trees_source(node: onnx.NodeProto) -> tuple[str, int]:
    a = _attrs(node)
    if "nodes_values" not in a:
        raise ExportError("C export: tree thresholds must be float32 (nodes_values)")
    k = len(a.get("classlabels_int64s") or a.get("classlabels_strings") or [])
    modes = [m.decode() if isinstance(m, bytes) else m for m in a["nodes_modes"]]
    if set(modes) - {"BRANCH_LEQ", "LEAF"}:
        raise ExportError(f"C export: tree node modes {sorted(set(modes) - {'BRANCH_LEQ', 'LEAF'})} are not supported")
    tids, nids = np.asarray(a["nodes_treeids"]), np.asarray(a["nodes_nodeids"])
    order = np.lexsort((nids, tids))
    index = {(int(tids[i]), int(nids[i])): j for j, i in enumerate(order)}
    leaf_w: dict[tuple[int, int], list[tuple[int, float]]] = {}
    for t, n, c, w in zip(a["class_treeids"], a["class_nodeids"], a["class_ids"], a["class_weights"]):
        leaf_w.setdefault((int(t), int(n)), []).append((int(c), float(w)))
    feat, thr, yes, no, classes, weights = [], [], [], [], [], []
    for i in order:
        t = int(tids[i])
        if modes[i] == "LEAF":
            ws = leaf_w.get((t, int(nids[i])), [])
            feat.append(-1), thr.append(0.0), yes.append(len(classes)), no.append(len(ws))
            for c, w in ws:
                classes.append(c), weights.append(w)
        else:
            feat.append(int(a["nodes_featureids"][i])), thr.append(float(a["nodes_values"][i]))
            yes.append(index[(t, int(a["nodes_truenodeids"][i]))]), no.append(index[(t, int(a["nodes_falsenodeids"][i]))])
    roots = [index[(t, 0)] for t in sorted(set(int(v) for v in tids))]
    base = np.asarray(a.get("base_values") or np.zeros(k), np.float32)
    nodes = ",\n    ".join(f"{{ {f}, {_f32(th)}, {y}, {n} }}" for f, th, y, n in zip(feat, thr, yes, no))
    tables = "\n".join([
        _floats(base, "edgebm_base_values"), _ints(roots, "int32_t", "edgebm_tree_roots"),
        _ints(classes, "int16_t", "edgebm_leaf_class"), _floats(np.asarray(weights, np.float32), "edgebm_leaf_weight"),
        f"static const edgebm_tree_node edgebm_tree_nodes[{len(feat)}] = {{\n    {nodes}\n}};\n",
    ])
    defs = f"#define EDGEBM_N_CLASSES {k}\n#define EDGEBM_N_TREES {len(roots)}\n\n"
    return defs + _template("trees.c.in", tables=tables), k


def _emlearn_tree_source(estimator: Any) -> tuple[str, int]:
    w = _emlearn().trees.Wrapper(estimator, "inline", dtype="float")
    code = w.save(name="edgebm_tree", include_proba=False)
    return code, int(len(estimator.classes_))


def _sklearn_estimator(model: Any) -> Any:
    """The fitted scikit-learn estimator inside an edgebm model wrapper (None for torch models)."""
    for _ in range(4):  # SklearnBeamModel.est -> ClassicalBeamModel.estimator -> the sklearn estimator
        if model is None or type(model).__module__.startswith("sklearn"):
            break
        model = getattr(model, "est", None) or getattr(model, "estimator", None)
    return model if model is not None and type(model).__module__.startswith("sklearn") else None


# -- entry point --------------------------------------------------------------------------------
def export_c(
    onnx_path: str | Path,
    estimator: Any = None,
    *,
    family: str = "",
    precision: str = "",
    examples: np.ndarray | None = None,
) -> CModel:
    """Generate the C sources for the model in ``onnx_path`` (an edgebm BM-Case1 graph).

    ``estimator``: the fitted model (an edgebm model wrapper or the scikit-learn estimator itself);
    emlearn converts decision trees from the scikit-learn tree inside it; ``examples`` (n, n_b) dBm rows become ``example_main.c``'s built-in inputs, with the
    beams onnxruntime predicts for them as the expected answers.
    Raises :class:`ExportError` naming what the C target cannot express.
    """
    model = onnx.load(str(onnx_path))
    g = _Graph(model)
    n_b = g.dims(g.input)[-1]
    n_a = g.dims(model.graph.output[0])[-1]
    if not isinstance(n_b, int) or not isinstance(n_a, int) or n_b <= 0 or n_a <= 0:
        raise ExportError("C export: the input and the score output need fixed feature widths")
    floor, scale, feat = _preprocessing(g)
    ops = {n.op_type for n in g.nodes}
    notes: list[str] = []
    head = f'#include <math.h>\n#include <stdint.h>\n\n#include "model.h"\n\n{_template("features.c.in")}\n'
    files: dict[str, str] = {}
    est = _sklearn_estimator(estimator)
    if "TreeEnsembleClassifier" in ops:
        node = next(n for n in g.nodes if n.op_type == "TreeEnsembleClassifier")
        if est is not None and type(est).__name__ == "DecisionTreeClassifier" and emlearn_status()[0]:
            body, k = _emlearn_tree_source(est)
            kind, call = "emlearn_tree", "    const int32_t c = edgebm_tree_predict(f, EDGEBM_N_B);\n    if (c < 0) {\n        return -1;\n    }\n"
            notes.append("decision tree: emlearn inline code (thresholds printed by emlearn with six decimals, branch x < t)")
        else:
            body, k = _trees_source(node)
            kind = "trees"
            call = "    float scores[EDGEBM_N_CLASSES];\n    edgebm_trees_scores(f, scores);\n    const int32_t c = edgebm_argmax(scores, EDGEBM_N_CLASSES);\n"
            notes.append("tree ensemble: edgebm's ONNX-ML TreeEnsembleClassifier walker (float32 thresholds, x <= t)")
    elif "LinearClassifier" in ops or ("MatMul" in ops and "Gemm" not in ops):
        layer, k = _linear_layer(g, feat)
        body, width = _dense_source([layer])
        body = _template("dense.c.in") + "\n" + body
        kind = "dense"
        call = ("    static float scores[EDGEBM_N_CLASSES];\n    static int32_t qbuf[1];\n"
                "    edgebm_dense_forward(&edgebm_layers[0], f, scores, qbuf);\n    const int32_t c = edgebm_argmax(scores, EDGEBM_N_CLASSES);\n")
        body = f"#define EDGEBM_N_CLASSES {k}\n" + body
        notes.append("linear model: edgebm dense kernel (one float layer" + (", logistic" if layer.logistic else "") + ")")
    elif "Gemm" in ops:
        extra = ops - _MLP_OPS
        if extra:
            raise ExportError(f"C export: no C generator for {', '.join(sorted(extra))} (the C target covers MLPs in float/int8, "
                              "decision trees, gradient-boosted trees and linear models)")
        layers = _neural_layers(g, feat)
        k = layers[-1].w.shape[0]
        float_net = not any(l.int8 or l.out_q for l in layers) and len(layers) >= 2
        if float_net and emlearn_status()[0]:
            body = _emlearn_net_source(layers)
            kind = "emlearn_net"
            call = "    const int32_t c = eml_net_predict(&edgebm_net, f, EDGEBM_N_B);\n    if (c < 0) {\n        return -1;\n    }\n"
            for h in EMLEARN_HEADERS:
                files[h] = _emlearn_header(h)
            notes.append(f"float32 MLP ({len(layers)} layers): emlearn eml_net runtime, weights printed by emlearn with six decimals")
        else:
            body, width = _dense_source(layers)
            body = _template("dense.c.in") + "\n" + body
            kind = "dense"
            call = (f"    static float a[{width}], b[{width}];\n    static int32_t qbuf[{width}];\n"
                    "    const float *in = f;\n    float *out = a;\n"
                    f"    for (int32_t l = 0; l < {len(layers)}; l++) {{\n"
                    "        edgebm_dense_forward(&edgebm_layers[l], in, out, qbuf);\n"
                    "        in = out;\n        out = (out == a) ? b : a;\n    }\n"
                    f"    const int32_t c = edgebm_argmax(in, {k});\n")
            prec = "int8 QDQ" if any(l.int8 for l in layers) else "float32"
            notes.append(f"{prec} MLP ({len(layers)} layers): edgebm dense kernel" + ("" if any(l.int8 for l in layers) else " (emlearn not installed or a single layer)"))
    else:
        raise ExportError(f"C export: no C generator for a graph of {sorted(ops)} (supported: MLP float/int8, decision tree, "
                          "gradient-boosted trees, linear models)")
    if kind in ("dense", "trees"):
        head += _template("argmax.c.in") + "\n"
    beams = _class_to_beam(g, k, n_a)
    if beams is not None:
        body += "\n" + _ints(beams, "int16_t", "edgebm_class_beam")
        ret = "    return (int32_t)edgebm_class_beam[c];\n"
    else:
        ret = "    return c;\n"
    predict = ("\nint32_t edgebm_predict(const float rsrp_b_dbm[EDGEBM_N_B])\n{\n    float f[EDGEBM_N_B];\n"
               "    edgebm_features(rsrp_b_dbm, f);\n" + call + ret + "}\n")
    includes = "".join(f'#include "{h}"\n' for h in ("eml_net.h",) if kind == "emlearn_net")
    body = re.sub(r"#include <(eml_\w+\.h)>", r'#include "\1"', body)  # headers ship next to model.c
    files["model.c"] = (f"/* {family or 'model'} ({precision or '?'}) for edgebm_predict() -- generated by edgebm {__version__}"
                        f" from {Path(onnx_path).name}; do not edit. */\n" + head + includes + body + predict)
    files["model.h"] = _template("model.h.in", family=family or "model", precision=precision or "?", version=__version__,
                                 n_b=n_b, n_a=n_a, floor_db=_f32(floor), scale_db=_f32(scale))
    files["example_main.c"] = _example_main(onnx_path, examples, n_b)
    return CModel(files, kind, n_b, n_a, notes)


def _emlearn_header(name: str) -> str:
    emlearn = _emlearn()
    text = (Path(emlearn.includedir) / name).read_text(encoding="utf-8")
    text = re.sub(r"#include <(eml_\w+\.h)>", r'#include "\1"', text)
    return f"/* {name} from emlearn {getattr(emlearn, '__version__', '')} (MIT licence, https://github.com/emlearn/emlearn) */\n" + text


def _example_main(onnx_path: str | Path, examples: np.ndarray | None, n_b: int) -> str:
    from ..runtime.session import ort_session

    x = np.zeros((1, n_b), np.float32) - 100.0 if examples is None or len(examples) == 0 else np.asarray(examples[:8], np.float32)
    sess = ort_session(onnx_path, 1, quiet=True)
    scores = sess.run([sess.get_outputs()[0].name], {sess.get_inputs()[0].name: x})[0]
    rows = ",\n".join("    { " + ", ".join(_f32(v) for v in r) + " }" for r in x)
    return _template("example_main.c.in", n_examples=len(x), examples=rows, expected=", ".join(str(int(v)) for v in scores.argmax(1)))

