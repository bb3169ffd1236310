"""Export a :class:`~edgebm.models.classical.ClassicalBeamModel` to ONNX with skl2onnx and check parity.

The exported graph takes ``rsrp_b`` (float32, [batch, n_in], dBm; with ``use_position`` the 3
position columns in metres follow) and has one output, ``scores`` (float32, [batch, n_out]), dense
over all Set A beams:

* the dB preprocessing runs in the graph (converter registered here for
  :class:`~edgebm.models.classical.RelativeDbTransformer`: Split, ReduceMax, Sub, Max, Div, Concat);
* the estimator comes from skl2onnx (``zipmap=False``; ai.onnx opset :data:`TARGET_OPSET`, ai.onnx.ml 3,
  so trees are ``TreeEnsembleClassifier``); its label output is pruned away;
* appended here: the one-vs-one -> one-vs-rest score transform of ``svm_rbf`` (Pad/Gather/ReduceSum
  instead of skl2onnx's ~10k-node unrolled version), the normalised one-vs-rest sigmoid of ``sgd``
  (skl2onnx's version uses ``Not``), the softmax temperature of logits families, and the
  class-index remapping (Pad + Gather) that gives beams never seen in training probability 0
  (logit :data:`~edgebm.models.classical.FILL_LOGIT`).

After ML ops whose output batch dimension ONNX shape inference cannot derive, a Shape/Concat/Reshape
"pin" restores it so :func:`edgebm.budget.analyze_onnx` can size the downstream ops.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..data.dataset import atomic_write
from ..models.classical import FILL_LOGIT, ClassicalBeamModel, RelativeDbTransformer, ovo_pair_tables
from .onnx_export import INPUT_NAME, ExportError, ParityReport

__all__ = ["export_sklearn", "check_sklearn_parity", "register_converters", "TARGET_OPSET", "SCORE_OUTPUT"]

#: ai.onnx 18 (same as the torch exporter; onnxruntime 1.32 runs up to 23) and ai.onnx.ml 3
TARGET_OPSET = {"": 18, "ai.onnx.ml": 3}
SCORE_OUTPUT = "scores"
_ALIAS = "EdgebmRelativeDb"
_registered = False


# -- RelativeDbTransformer converter --------------------------------------------------------------
def _relative_db_shape(operator: Any) -> None:
    from skl2onnx.common.data_types import FloatTensorType

    n = operator.inputs[0].get_first_dimension()
    operator.outputs[0].type = FloatTensorType([n, int(operator.raw_operator.n_features_in_)])


def _relative_db_convert(scope: Any, operator: Any, container: Any) -> None:
    """``clip(x - max(x), floor, 0) / scale`` on the RSRP columns; positions / pos_scale_m; float32."""
    op: RelativeDbTransformer = operator.raw_operator
    x, out = operator.inputs[0].full_name, operator.outputs[0].full_name
    width, n_pos = int(op.n_features_in_), int(op.n_pos)
    opset = container.target_opset

    def const(stem: str, value: Any, dtype: int = TensorProto.FLOAT) -> str:
        name = scope.get_unique_variable_name(stem)
        arr = np.asarray(value)
        container.add_initializer(name, dtype, list(arr.shape), arr.ravel().tolist())
        return name

    def node(op_type: str, inputs: list[str], stem: str, **attrs: Any) -> str:
        y = scope.get_unique_variable_name(stem)
        container.add_node(op_type, inputs, [y], name=scope.get_unique_operator_name(op_type), **attrs)
        return y

    rsrp = x
    pos = None
    if n_pos:
        rsrp, pos = scope.get_unique_variable_name("rsrp"), scope.get_unique_variable_name("pos")
        split = const("split", np.array([width - n_pos, n_pos], np.int64), TensorProto.INT64)
        container.add_node("Split", [x, split], [rsrp, pos], axis=1, name=scope.get_unique_operator_name("Split"))
    if opset >= 18:
        peak = node("ReduceMax", [rsrp, const("axes", np.array([1], np.int64), TensorProto.INT64)], "peak", keepdims=1)
    else:
        peak = node("ReduceMax", [rsrp], "peak", axes=[1], keepdims=1)
    rel = node("Sub", [rsrp, peak], "rel")
    floored = node("Max", [rel, const("floor_db", np.float32(op.floor_db))], "floored")
    if not n_pos:
        scale = const("scale_db", np.float32(op.scale_db))
        container.add_node("Div", [floored, scale], [out], name=scope.get_unique_operator_name("Div"))
        return
    feat = node("Div", [floored, const("scale_db", np.float32(op.scale_db))], "rel_db")
    pos_s = node("Div", [pos, const("pos_scale_m", np.float32(op.pos_scale_m))], "pos_scaled")
    container.add_node("Concat", [feat, pos_s], [out], axis=1, name=scope.get_unique_operator_name("Concat"))


def register_converters() -> None:
    """Register the skl2onnx shape calculator + converter for :class:`RelativeDbTransformer` (idempotent)."""
    global _registered
    if _registered:
        return
    from skl2onnx import update_registered_converter

    update_registered_converter(RelativeDbTransformer, _ALIAS, _relative_db_shape, _relative_db_convert)
    _registered = True


# -- graph assembly ------------------------------------------------------------------------------
class _Tail:
    """Appends nodes and initializers (unique ``edgebm_*`` names) to a graph."""

    def __init__(self, graph: onnx.GraphProto) -> None:
        self.g = graph
        self.i = 0
        self.taken = {n for nd in graph.node for n in list(nd.input) + list(nd.output)} | {t.name for t in graph.initializer}

    def _name(self, stem: str) -> str:
        while True:
            self.i += 1
            name = f"edgebm_{stem}_{self.i}"
            if name not in self.taken:
                self.taken.add(name)
                return name

    def const(self, stem: str, arr: np.ndarray) -> str:
        name = self._name(stem)
        self.g.initializer.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def node(self, op: str, inputs: list[str], stem: str, out: str | None = None, **attrs: Any) -> str:
        y = out or self._name(stem)
        self.g.node.append(helper.make_node(op, inputs, [y], name=self._name(op), **attrs))
        return y

    def pin_batch(self, z: str, width: int) -> str:
        """Reshape ``z`` to [batch of the graph input, width] so shape inference knows both dims."""
        batch = self.node("Shape", [INPUT_NAME], "batch", start=0, end=1)
        shape = self.node("Concat", [batch, self.const("width", np.array([width], np.int64))], "shape", axis=0)
        return self.node("Reshape", [z, shape], "pinned")

    def reduce_sum(self, x: str, axis: int, stem: str) -> str:
        return self.node("ReduceSum", [x, self.const("axes", np.array([axis], np.int64))], stem, keepdims=0)


def _ovo_to_ovr(t: _Tail, dec: str, k: int) -> str:
    """ONNX twin of :func:`edgebm.models.classical.ovo_to_ovr` (same gathers, same operation order)."""
    first, second, n_first = ovo_pair_tables(k)
    d0 = t.node("Pad", [dec, t.const("pads", np.array([0, 0, 0, 1], np.int64)), t.const("zero", np.array(0, np.float32))], "dec0")
    neg = t.node("Cast", [t.node("Less", [d0, t.const("zero", np.array(0, np.float32))], "isneg")], "neg", to=TensorProto.FLOAT)
    i_first, i_second = t.const("first", first), t.const("second", second)
    s_first = t.reduce_sum(t.node("Gather", [d0, i_first], "g", axis=1), 2, "sum_first")
    s_second = t.reduce_sum(t.node("Gather", [d0, i_second], "g", axis=1), 2, "sum_second")
    conf = t.node("Sub", [s_first, s_second], "conf")
    n_neg_first = t.reduce_sum(t.node("Gather", [neg, i_first], "g", axis=1), 2, "neg_first")
    n_neg_second = t.reduce_sum(t.node("Gather", [neg, i_second], "g", axis=1), 2, "neg_second")
    votes = t.node("Add", [t.const("n_first", n_first), t.node("Sub", [n_neg_second, n_neg_first], "dvotes")], "votes")
    abs1 = t.node("Add", [t.node("Abs", [conf], "absconf"), t.const("one", np.array(1, np.float32))], "abs1")
    den = t.node("Mul", [t.const("three", np.array(3, np.float32)), abs1], "den")
    return t.node("Add", [votes, t.node("Div", [conf, den], "frac")], "ovr")


def _ovr_sigmoid_proba(t: _Tail, z: str, k: int) -> str:
    """scikit-learn's one-vs-rest log-loss probabilities: sigmoid, rows summing to 0 become uniform."""
    p = t.node("Sigmoid", [z], "sig")
    s = t.node("ReduceSum", [p, t.const("axes", np.array([1], np.int64))], "psum", keepdims=1)
    is_zero = t.node("Equal", [s, t.const("zero", np.array(0, np.float32))], "iszero")
    zero = t.node("Cast", [is_zero], "zmask", to=TensorProto.FLOAT)
    num = t.node("Add", [p, zero], "num")
    den = t.node("Add", [s, t.node("Mul", [zero, t.const("k", np.array(k, np.float32))], "zk")], "den")
    return t.node("Div", [num, den], "proba")


def _prune(graph: onnx.GraphProto) -> None:
    """Drop nodes, initializers and value_info that no graph output depends on."""
    needed = {o.name for o in graph.output}
    keep = []
    for nd in reversed(graph.node):
        if any(o in needed for o in nd.output):
            keep.append(nd)
            needed.update(i for i in nd.input if i)
    keep.reverse()
    del graph.node[:]
    graph.node.extend(keep)
    inits = [t for t in graph.initializer if t.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(inits)
    vis = [v for v in graph.value_info if v.name in needed]
    del graph.value_info[:]
    graph.value_info.extend(vis)


def _converter_options(est: Any, family: str) -> dict:
    """``zipmap=False`` where the converter has the option (LinearSVC has none); raw scores for sgd."""
    from skl2onnx._supported_operators import sklearn_operator_name_map
    from skl2onnx.common._registration import get_converter

    try:
        allowed = get_converter(sklearn_operator_name_map[type(est)]).get_allowed_options() or {}
    except Exception:  # unknown estimator: let convert_sklearn report it
        return {}
    opts: dict[str, Any] = {}
    if "zipmap" in allowed:
        opts["zipmap"] = False
    if family == "sgd" and "raw_scores" in allowed:
        opts["raw_scores"] = True
    return opts


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _build(model: ClassicalBeamModel) -> onnx.ModelProto:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    register_converters()
    est = model.estimator
    width, n_out = model.input_width, model.n_out
    try:
        with warnings.catch_warnings():  # skl2onnx reads SVC.probA_ (deprecated in sklearn 1.9), passes bools as ints
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            proto = convert_sklearn(
                model.pipeline,
                initial_types=[(INPUT_NAME, FloatTensorType([None, width]))],
                target_opset=dict(TARGET_OPSET),
                options={id(est): _converter_options(est, model.family)},
            )
    except Exception as e:  # skl2onnx raises MissingShapeCalculator, RuntimeError, NameError, ...
        raise ExportError(f"skl2onnx cannot convert {type(est).__name__}: {type(e).__name__}: {_first_line(e)}") from e

    g = proto.graph
    outs = [o.name for o in g.output]
    if len(outs) < 2:
        raise ExportError(f"skl2onnx produced {len(outs)} output(s) for {type(est).__name__}, expected label and scores")
    z = outs[1]
    classes = model.classes_
    k = len(classes)
    t = _Tail(g)
    if model.family == "svm_rbf":
        n_pairs = k * (k - 1) // 2
        if k == 2:  # binary: skl2onnx emits [d, -d] (d = sklearn's decision_function); libsvm's pair value is -d
            z = t.node("Slice", [z, t.const("start", np.array([1], np.int64)), t.const("end", np.array([2], np.int64)),
                                 t.const("axis", np.array([1], np.int64))], "pair")
        z = _ovo_to_ovr(t, t.pin_batch(z, n_pairs), k)
    elif model.family == "svm_linear" and k == 2:  # binary LinearClassifier emits (N, 1) = d; columns are [-d, d]
        z = t.node("Concat", [t.node("Neg", [z], "negd"), z], "binary", axis=1)
    elif model.family == "sgd":
        z = _ovr_sigmoid_proba(t, z, k)
    elif model.family in ("tree", "gbt"):
        z = t.pin_batch(z, k)
    if model.score_kind == "logits" and model.temperature != 1.0:
        z = t.node("Mul", [z, t.const("temperature", np.array(model.temperature, np.float32))], "tempered")
    if k == n_out and np.array_equal(classes, np.arange(n_out)):
        t.node("Identity", [z], "scores", out=SCORE_OUTPUT)
    else:  # remap the estimator's k columns into all n_out beams; unseen beams read the pad column
        fill = FILL_LOGIT if model.score_kind == "logits" else 0.0
        pads = t.const("pads", np.array([0, 0, 0, 1], np.int64))
        padded = t.node("Pad", [z, pads, t.const("fill", np.array(fill, np.float32))], "padded")
        idx = np.full(n_out, k, np.int64)
        idx[classes] = np.arange(k)
        t.node("Gather", [padded, t.const("beam_index", idx)], "scores", out=SCORE_OUTPUT, axis=1)

    del g.output[:]
    g.output.append(helper.make_tensor_value_info(SCORE_OUTPUT, TensorProto.FLOAT, ["batch", n_out]))
    _prune(g)
    for d in g.input[0].type.tensor_type.shape.dim[:1]:
        d.dim_param = "batch"
    g.name = f"edgebm_{model.family}"
    helper.set_model_props(proto, {"edgebm.family": model.family, "edgebm.score_kind": model.score_kind,
                                   "edgebm.score_output": SCORE_OUTPUT, "edgebm.n_out": str(n_out)})
    try:
        onnx.checker.check_model(proto)
    except Exception as e:
        raise ExportError(f"exported {model.family} graph is invalid: {_first_line(e)}") from e
    return proto


def export_sklearn(model: ClassicalBeamModel, path: str | Path, n_in: int) -> dict:
    """Convert ``model`` to ONNX at ``path`` (written atomically); returns the manifest fields.

    ``n_in`` must equal ``model.n_in`` (Set B beams). :class:`ExportError` (one line) when the model
    is unfitted, the widths disagree, skl2onnx cannot convert the estimator or the graph is invalid.
    """
    if not isinstance(model, ClassicalBeamModel):
        raise ExportError(f"export_sklearn expects a ClassicalBeamModel, got {type(model).__name__}")
    if not model.is_fitted():
        raise ExportError(f"cannot export an unfitted {model.family} model")
    if int(n_in) != model.n_in:
        raise ExportError(f"n_in={n_in} but the {model.family} model was built for n_in={model.n_in} Set B beams")
    proto = _build(model)
    data = proto.SerializeToString()
    path = atomic_write(path, lambda f: f.write(data))
    width = model.input_width
    units = "dBm" if not model.use_position else f"dBm (columns 0..{model.n_in - 1}), m (last 3: UE x, y, z)"
    return {
        "family": model.family,
        "model_file": path.name,
        "score_output": SCORE_OUTPUT,
        "score_kind": model.score_kind,
        "inputs": [{"name": INPUT_NAME, "shape": ["batch", width], "dtype": "float32", "units": units}],
        "outputs": [{"name": SCORE_OUTPUT, "shape": ["batch", model.n_out], "dtype": "float32"}],
        "opset": {"ai.onnx": TARGET_OPSET[""], "ai.onnx.ml": TARGET_OPSET["ai.onnx.ml"]},
        "model_config": model.config(),
        "preprocessing": model.features.constants(),
        "n_params": model.n_params(),
        "n_classes_trained": int(len(model.classes_)),
    }


def check_sklearn_parity(model: ClassicalBeamModel, path: str | Path, X: np.ndarray, threads: int = 1) -> ParityReport:
    """onnxruntime ``scores`` vs :meth:`ClassicalBeamModel.scores` on ``X``: max |diff| and top-1 agreement."""
    from ..runtime.session import ort_session

    sess = ort_session(path, threads, quiet=True)
    x = np.ascontiguousarray(X, dtype=np.float32)
    got = sess.run([SCORE_OUTPUT], {INPUT_NAME: x})[0].astype(np.float64)
    want = model.scores(x).astype(np.float64)
    return ParityReport(
        n_samples=int(len(x)),
        max_abs_diff=float(np.max(np.abs(got - want))) if len(x) else 0.0,
        argmax_agreement=float(np.mean(got.argmax(1) == want.argmax(1))) if len(x) else 1.0,
    )
