"""ORT-format model (``model.ort``) and the operator config of an onnxruntime mobile reduced build.

Phones run onnxruntime mobile, whose reduced-size builds read only the ORT format (a FlatBuffer of the
optimised graph) and are compiled with just the kernels a config file names. Both come from
onnxruntime's own converter (``onnxruntime.tools.convert_onnx_models_to_ort``, called through its
Python function):

* optimisation style ``Runtime`` when the profile names an accelerator (onnxruntime's advice for
  NNAPI/CoreML: only basic optimisations are baked in, the rest are replayed at load time for the
  nodes the EP does not take), ``Fixed`` otherwise (everything baked in);
* target platform ``arm`` (phones: no x86-only NCHWc layouts; int8 QDQ kept as int8);
* type reduction on: ``required_operators_and_types*.config`` lists operators *and* the types they
  need, for the smallest build (``--include_ops_by_config ... --enable_reduced_operator_type_support``).

:func:`verify_ort` loads the ``.ort`` with onnxruntime and compares it with the ONNX graph it came from.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from ..quiet import quiet

__all__ = ["OrtArtifacts", "convert_to_ort", "verify_ort", "ORT_MODEL_FILE"]

ORT_MODEL_FILE = "model.ort"


@dataclass(frozen=True)
class OrtArtifacts:
    ort_path: Path
    config_path: Path
    optimization_style: str  # "Fixed" or "Runtime"
    target_platform: str
    ort_bytes: int
    onnxruntime_version: str

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ort_path"], d["config_path"] = self.ort_path.name, self.config_path.name
        return d


def convert_to_ort(onnx_path: str | Path, out_dir: str | Path, runtime_optimizations: bool, target_platform: str = "arm") -> OrtArtifacts:
    """Convert ``onnx_path`` to ``out_dir/model.ort`` plus its ``required_operators_and_types*.config``.

    ``runtime_optimizations`` selects the ``Runtime`` optimisation style (for NNAPI/CoreML).
    Raises ``RuntimeError`` with onnxruntime's message when the conversion fails.
    """
    import onnxruntime as ort
    from onnxruntime.tools.convert_onnx_models_to_ort import OptimizationStyle, convert_onnx_models_to_ort

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    style = OptimizationStyle.Runtime if runtime_optimizations else OptimizationStyle.Fixed
    with tempfile.TemporaryDirectory(prefix="edgebm-ort-") as tmp:
        src, dst = Path(tmp) / "in", Path(tmp) / "out"
        src.mkdir()
        shutil.copyfile(onnx_path, src / "model.onnx")  # a folder holding one model: ORT names the config after the folder
        try:  # the converter prints progress and logs one INFO line per config at its own level
            with quiet("ort_format_model.utils", logging.WARNING, silence_warnings=False):
                convert_onnx_models_to_ort(src, output_dir=dst, optimization_styles=[style],
                                           target_platform=target_platform, enable_type_reduction=True)
        except Exception as e:
            raise RuntimeError(f"ORT-format conversion of {Path(onnx_path).name} failed: {str(e).strip().splitlines()[0]}") from e
        orts = sorted(dst.glob("*.ort"))
        configs = sorted(dst.glob("required_operators*.config"))
        if len(orts) != 1 or len(configs) != 1:
            raise RuntimeError(f"ORT-format conversion wrote {[p.name for p in dst.iterdir()]}, expected one .ort and one config")
        ort_path = out_dir / ORT_MODEL_FILE
        config_path = out_dir / configs[0].name
        for src_file, target in ((orts[0], ort_path), (configs[0], config_path)):
            with atomic_path(target) as tmp_file:
                shutil.copyfile(src_file, tmp_file)
    return OrtArtifacts(ort_path, config_path, style.name, target_platform, ort_path.stat().st_size, ort.__version__)


def verify_ort(ort_path: str | Path, onnx_path: str | Path, x: np.ndarray, max_samples: int = 256) -> dict:
    """Load ``ort_path`` with onnxruntime and compare every output with ``onnx_path`` on rows of ``x``.

    Each row runs as its own batch-1 call (the ``.ort`` may come from the fixed-shape graph).
    Returns ``{"n_samples", "max_abs_diff", "top1_agreement"}`` (top-1 over the first output).
    Raises ``RuntimeError`` when onnxruntime cannot load the file.
    """
    import onnxruntime as ort

    from ..runtime.session import ort_session

    # own options for the .ort: runtime.session.ort_session has no switch for replaying saved optimisations
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    # replay the optimisations a Runtime-style file saved (what the phone's CPU fallback does)
    opts.add_session_config_entry("session.enable_saved_runtime_optimizations", "1")
    try:
        s_ort = ort.InferenceSession(str(ort_path), opts, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise RuntimeError(f"onnxruntime cannot load {Path(ort_path).name}: {str(e).strip().splitlines()[0]}") from e
    s_onnx = ort_session(onnx_path, 1)
    name = s_onnx.get_inputs()[0].name
    names = [o.name for o in s_onnx.get_outputs()]
    if [o.name for o in s_ort.get_outputs()] != names:
        raise RuntimeError(f"{Path(ort_path).name} outputs {[o.name for o in s_ort.get_outputs()]} differ from the ONNX graph's {names}")
    rows = np.ascontiguousarray(x[:max_samples], dtype=np.float32)
    got = [s_ort.run(names, {name: rows[i : i + 1]}) for i in range(len(rows))]
    want = [s_onnx.run(names, {name: rows[i : i + 1]}) for i in range(len(rows))]
    diff = max(float(np.max(np.abs(g.astype(np.float64) - w))) for gs, ws in zip(got, want) for g, w in zip(gs, ws))
    top = np.mean([int(np.argmax(gs[0])) == int(np.argmax(ws[0])) for gs, ws in zip(got, want)])
    return {"n_samples": int(len(rows)), "max_abs_diff": diff, "top1_agreement": float(top)}
