"""Same beams in any conforming ONNX runtime: top-1 of a graph in other runtimes against onnxruntime.

A bundle's ``model.onnx`` is a standard ONNX graph (QDQ int8 included); a UE vendor may run it in a
runtime other than onnxruntime. Two independent implementations are checked here:

* ``reference``: ``onnx.reference.ReferenceEvaluator``, the ONNX project's own executable
  specification in numpy (always available: it ships with ``onnx``);
* ``tract``: Sonos' Rust runtime (``pip install 'edgebm[crossrt]'``). tract needs concrete shapes to
  evaluate Resize, so the batch axis is fixed to the number of rows and the stale symbolic
  ``value_info`` is dropped before loading.

Where results differ it is arithmetic, not semantics: e.g. the reference evaluator accumulates fp16
matmuls in fp16 where onnxruntime's CPU provider upcasts to fp32; int8 QDQ graphs round the same
values the same way (round half to even) in all three.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx

__all__ = ["RUNTIMES", "runtime_status", "run_runtime", "cross_runtime_agreement"]

RUNTIMES = ("reference", "tract")


def runtime_status(name: str) -> tuple[bool, str]:
    """(available, reason) for a second runtime."""
    if name == "reference":
        return True, f"onnx {onnx.__version__} reference evaluator"
    if name == "tract":
        try:
            import tract
        except ImportError:
            return False, "tract is not installed (pip install 'edgebm[crossrt]')"
        return True, f"tract {tract.version()}"
    raise ValueError(f"unknown runtime {name!r} (one of {', '.join(RUNTIMES)})")


def _onnxruntime(onnx_path: Path, x: np.ndarray) -> np.ndarray:
    from ..runtime.session import ort_session

    s = ort_session(onnx_path, 1, quiet=True)
    return s.run([s.get_outputs()[0].name], {s.get_inputs()[0].name: x})[0]


def run_runtime(name: str, onnx_path: str | Path, x: np.ndarray) -> np.ndarray:
    """First output of ``onnx_path`` on ``x`` (float32 rows) in runtime ``name`` (``onnxruntime`` too)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    path = Path(onnx_path)
    if name == "onnxruntime":
        return _onnxruntime(path, x)
    if name == "reference":
        from onnx.reference import ReferenceEvaluator

        model = onnx.load(str(path))
        return np.asarray(ReferenceEvaluator(model).run([model.graph.output[0].name], {model.graph.input[0].name: x})[0])
    if name == "tract":
        import tract
        from onnxruntime.tools.onnx_model_utils import fix_output_shapes, make_input_shape_fixed

        model = onnx.load(str(path))
        inp = model.graph.input[0]
        make_input_shape_fixed(model.graph, inp.name, [len(x), *[d.dim_value for d in inp.type.tensor_type.shape.dim[1:]]])
        del model.graph.value_info[:]
        fix_output_shapes(model)
        with tempfile.TemporaryDirectory(prefix="edgebm-tract-") as tmp:
            fixed = Path(tmp) / "fixed.onnx"
            onnx.save_model(model, str(fixed))
            runnable = tract.onnx().load(str(fixed)).into_model().into_runnable()
            return runnable.run([x])[0].to_numpy()
    raise ValueError(f"unknown runtime {name!r}")


def cross_runtime_agreement(onnx_path: str | Path, x: np.ndarray, runtimes: tuple[str, ...] = RUNTIMES) -> dict[str, dict]:
    """Per runtime: top-1 agreement with onnxruntime and max |score difference| on ``x``.

    A runtime that is not installed or cannot run the graph gets ``{"error": "..."}`` instead.
    """
    ref = run_runtime("onnxruntime", onnx_path, x)
    out: dict[str, dict] = {}
    for name in runtimes:
        ok, why = runtime_status(name)
        if not ok:
            out[name] = {"error": why}
            continue
        try:
            got = run_runtime(name, onnx_path, x)
        except Exception as e:  # a runtime that lacks an operator or a type combination
            out[name] = {"error": f"{type(e).__name__}: {str(e).strip().splitlines()[0][:200] if str(e).strip() else ''}"}
            continue
        out[name] = {
            "n_samples": int(len(x)),
            "top1_agreement": float(np.mean(got.argmax(1) == ref.argmax(1))),
            "max_abs_diff": float(np.max(np.abs(got.astype(np.float64) - ref))),
            "runtime": why,
        }
    return out
