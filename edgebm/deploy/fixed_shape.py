"""Fixed-shape (batch 1) graphs for phone accelerators, with only the opset imports the graph uses.

NNAPI cannot run a node whose input has a dynamic shape, and CoreML runs such nodes slowly, so the
accelerator path gets a copy of the bundle's graph with every symbolic dimension fixed (the UE
predicts one measurement at a time). Made with onnxruntime's own tools
(``onnxruntime.tools.onnx_model_utils.make_input_shape_fixed`` / ``fix_output_shapes``, the functions
behind ``python -m onnxruntime.tools.make_dynamic_shape_fixed``), then:

* the unused opset imports that quantisation pre-processing leaves behind (``com.microsoft``,
  ``com.microsoft.nchwc``, ``ai.onnx.training``, ``org.pytorch.aten``, ...) are removed: a runtime
  or converter that does not know a declared domain may refuse the whole model;
* ``ReduceMax`` over the last axis of a rank-2 tensor (the relative-dB preprocessing, ``x - max(x)``)
  becomes ``Reshape -> MaxPool(kernel 1 x n) -> Reshape``. NNAPI has no ReduceMax, so that one node
  would otherwise stay on the CPU and split the graph into two accelerator partitions (a CPU <->
  NPU copy each); MaxPool computes the same maximum exactly, so outputs are bit-identical.

The dynamic graph stays the bundle's ``model.onnx`` (batched evaluation, the host runtime).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

__all__ = ["used_domains", "strip_unused_opsets", "fixed_shape_model", "write_fixed_shape", "FIXED_MODEL_FILE"]

#: bundle file name of the batch-1 graph for accelerators
FIXED_MODEL_FILE = "model_fixed.onnx"


def used_domains(model: onnx.ModelProto) -> set[str]:
    """Operator domains the graph (and its subgraphs, and its local functions) actually uses; ``""`` is ai.onnx."""
    found: set[str] = set()

    def walk(nodes) -> None:  # noqa: ANN001 - repeated NodeProto
        for n in nodes:
            found.add(n.domain or "")
            for a in n.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    walk(a.g.node)
                elif a.type == onnx.AttributeProto.GRAPHS:
                    for g in a.graphs:
                        walk(g.node)

    walk(model.graph.node)
    for f in model.functions:
        walk(f.node)
    return found


def strip_unused_opsets(model: onnx.ModelProto) -> list[str]:
    """Remove opset imports no node uses (in place); ai.onnx is always kept. Returns the removed domains."""
    used = used_domains(model) | {"", "ai.onnx"}
    keep = [o for o in model.opset_import if (o.domain or "") in used]
    removed = sorted(o.domain for o in model.opset_import if (o.domain or "") not in used)
    del model.opset_import[:]
    model.opset_import.extend(keep)
    return removed


def _const_ints(model: onnx.ModelProto, name: str) -> list[int] | None:
    for t in model.graph.initializer:
        if t.name == name:
            return [int(v) for v in numpy_helper.to_array(t).ravel()]
    for n in model.graph.node:
        if n.op_type == "Constant" and n.output[0] == name:
            for a in n.attribute:
                if a.name == "value":
                    return [int(v) for v in numpy_helper.to_array(a.t).ravel()]
    return None


def _reducemax_to_maxpool(model: onnx.ModelProto) -> int:
    """Rewrite ``ReduceMax(x[1, n], axes=[-1 | 1], keepdims=1)`` as Reshape -> MaxPool -> Reshape (in place).

    Needs shape information for ``x`` (run after the shapes are fixed). Returns the number rewritten.
    """
    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {v.name: [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]
              for v in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)}
    opset = next((o.version for o in model.opset_import if (o.domain or "") in ("", "ai.onnx")), 0)
    new_nodes: list[onnx.NodeProto] = []
    count = 0
    for node in model.graph.node:
        shape = shapes.get(node.input[0]) if node.op_type == "ReduceMax" and node.input else None
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if opset >= 18:
            axes = _const_ints(model, node.input[1]) if len(node.input) > 1 and node.input[1] else None
        else:
            axes = list(attrs.get("axes", [])) or None
        if (
            shape is None or len(shape) != 2 or None in shape or axes not in ([-1], [1])
            or attrs.get("keepdims", 1) != 1 or attrs.get("noop_with_empty_axes", 0) != 0
        ):
            new_nodes.append(node)
            continue
        b, n = shape
        stem = f"edgebm_maxpool{count}"
        to4 = numpy_helper.from_array(np.array([b, 1, 1, n], np.int64), f"{stem}_shape4")
        to2 = numpy_helper.from_array(np.array([b, 1], np.int64), f"{stem}_shape2")
        model.graph.initializer.extend([to4, to2])
        new_nodes += [
            helper.make_node("Reshape", [node.input[0], to4.name], [f"{stem}_x4"], name=f"{stem}_Reshape_in"),
            helper.make_node("MaxPool", [f"{stem}_x4"], [f"{stem}_y4"], name=f"{stem}_MaxPool", kernel_shape=[1, n]),
            helper.make_node("Reshape", [f"{stem}_y4", to2.name], [node.output[0]], name=f"{stem}_Reshape_out"),
        ]
        count += 1
    if count:
        del model.graph.node[:]
        model.graph.node.extend(new_nodes)
        used = {i for n in model.graph.node for i in n.input}
        inits = [t for t in model.graph.initializer if t.name in used]  # the axes constant is now unused
        del model.graph.initializer[:]
        model.graph.initializer.extend(inits)
    return count


def fixed_shape_model(model: onnx.ModelProto | str | Path, batch: int = 1, accelerator_rewrites: bool = True) -> tuple[onnx.ModelProto, dict]:
    """A copy of ``model`` with the leading (batch) dimension of every input fixed to ``batch``.

    Returns ``(model, info)``; ``info`` lists the removed opset domains and the rewrites applied.
    Raises ``ValueError`` when an input has a symbolic dimension other than the leading one.
    """
    from onnxruntime.tools.onnx_model_utils import fix_output_shapes, make_input_shape_fixed

    m = onnx.load(str(model)) if not isinstance(model, onnx.ModelProto) else onnx.ModelProto.FromString(model.SerializeToString())
    inits = {t.name for t in m.graph.initializer}
    for inp in m.graph.input:
        if inp.name in inits:
            continue
        dims = list(inp.type.tensor_type.shape.dim)
        shape = []
        for i, d in enumerate(dims):
            if d.HasField("dim_value") and d.dim_value > 0:
                shape.append(int(d.dim_value))
            elif i == 0:
                shape.append(int(batch))
            else:
                raise ValueError(f"input '{inp.name}' has a symbolic dimension {i} ({d.dim_param or '?'}); only the batch axis may be dynamic")
        make_input_shape_fixed(m.graph, inp.name, shape)
    # stale symbolic value_info would contradict the fixed input; re-infer it from scratch
    del m.graph.value_info[:]
    fix_output_shapes(m)
    rewrites = _reducemax_to_maxpool(m) if accelerator_rewrites else 0
    removed = strip_unused_opsets(m)
    m = onnx.shape_inference.infer_shapes(m)
    onnx.checker.check_model(m)
    info = {"batch": int(batch), "removed_opsets": removed, "reducemax_to_maxpool": rewrites}
    return m, info


def write_fixed_shape(src: str | Path, dst: str | Path, batch: int = 1, accelerator_rewrites: bool = True) -> dict:
    """:func:`fixed_shape_model` of ``src`` written to ``dst`` (temp name, then rename). Returns its info."""
    m, info = fixed_shape_model(src, batch, accelerator_rewrites)
    dst = Path(dst)
    tmp = dst.with_name(dst.name + ".tmp")
    onnx.save_model(m, str(tmp), save_as_external_data=False)
    os.replace(tmp, dst)
    return info
