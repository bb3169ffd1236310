"""Per-device-class targets of a candidate: the artifacts a profile needs beyond ``model.onnx``, and the
gate lines that judge them. The export job calls :func:`check_targets` for every candidate (so a
candidate whose target fails loses, with the reason in the candidate table) and
:func:`target_writers` for the chosen one.

======================  ===========================================================  =========================================
profile says            bundle gets                                                  gate lines (each can fail)
======================  ===========================================================  =========================================
every profile           --                                                           ``reference_top1_mismatch`` (ONNX reference
                                                                                     evaluator vs onnxruntime)
``accelerator`` set     ``model_fixed.onnx`` (batch 1, only used opsets)             ``accelerator_cpu_nodes``,
                                                                                     ``accelerator_partitions``
``ort_mobile = true``   ``model.ort`` + ``required_operators_and_types*.config``     ``ort_top1_mismatch`` (model.ort vs
                        (from the fixed graph when there is an accelerator)           model.onnx)
``backend = "c"``       ``c/model.h``, ``c/model.c``, ``c/example_main.c`` (+        ``c_flash``, ``c_ram``,
                        emlearn headers)                                             ``c_device_latency_p99``, ``c_top1_mismatch``
``backend="tensorrt"``  ``model.plan`` where TensorRT + a CUDA GPU exist             ``tensorrt_latency_p99`` (or a ``warn``
                                                                                     line saying why it was not built)
======================  ===========================================================  =========================================
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..budget.gate import BudgetLine
from ..profiles import DeviceProfile

__all__ = ["TargetCheck", "check_targets", "target_writers", "REFERENCE_MAX_MISMATCH_PCT", "REFERENCE_ROWS"]

#: top-1 may differ between the ONNX reference evaluator and onnxruntime on at most this share of rows (%)
REFERENCE_MAX_MISMATCH_PCT = 1.0
#: held-out rows used by the cross-runtime and ORT-format checks (the reference evaluator is numpy: slow)
REFERENCE_ROWS = 500


@dataclass
class TargetCheck:
    """Target artifacts of one candidate (files in a work folder) and the gate lines about them."""

    lines: list[BudgetLine] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)  # bundle name (may contain "c/") -> file in the work folder
    manifest: dict[str, Any] = field(default_factory=dict)  # manifest["targets"]
    tensorrt: dict[str, Any] | None = None  # manifest["tensorrt"] (kept at the top level: the runtime reads it there)


def _line_fail(name: str, what: str, e: BaseException) -> BudgetLine:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return BudgetLine(name, None, None, "", "fail", f"{what}: {msg[:200]}")


def check_targets(
    onnx_path: str | Path,
    profile: DeviceProfile,
    workdir: str | Path,
    *,
    x: np.ndarray,
    model: Any = None,
    family: str = "",
    precision: str = "",
    latency_runs: int = 500,
) -> TargetCheck:
    """Build every target ``profile`` asks for from ``onnx_path`` into ``workdir`` and judge it.

    ``x``: held-out Set B rows (dBm) for agreement and latency checks; ``model``: the fitted model
    (the decision-tree C path reads the scikit-learn tree from it).
    """
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    chk = TargetCheck()
    c = profile.compute
    rows = np.ascontiguousarray(x[:REFERENCE_ROWS], dtype=np.float32)
    _reference(onnx_path, rows, chk)
    ort_source = Path(onnx_path)
    if c.accelerator != "none":
        ort_source = _accelerator(onnx_path, profile, work, chk)
    if c.ort_mobile:
        _ort_mobile(ort_source, onnx_path, rows, runtime_opt=c.accelerator != "none", work=work, chk=chk)
    if c.backend == "c":
        _c_target(onnx_path, profile, work, chk, x=np.asarray(x, np.float32), model=model, family=family, precision=precision)
    if c.backend == "tensorrt":
        _tensorrt(onnx_path, profile, work, chk, rows, precision, latency_runs)
    return chk


def target_writers(chk: TargetCheck) -> dict[str, Callable[[Path], Any]]:
    """Bundle writers (name -> ``writer(path)``) for the chosen candidate's target files."""

    def copy(src: Path) -> Callable[[Path], Any]:
        def write(dst: Path) -> None:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)

        return write

    return {name: copy(src) for name, src in chk.files.items()}


# -- the pieces --------------------------------------------------------------------------------------
def _reference(onnx_path: str | Path, rows: np.ndarray, chk: TargetCheck) -> None:
    from .crossrt import cross_runtime_agreement

    try:
        res = cross_runtime_agreement(onnx_path, rows, ("reference",))["reference"]
    except Exception as e:  # onnxruntime itself cannot run these rows (e.g. a graph with another fixed batch)
        res = {"error": f"onnxruntime: {type(e).__name__}: {str(e).strip().splitlines()[0][:160] if str(e).strip() else ''}"}
    chk.manifest["cross_runtime"] = {"reference": res}
    if "error" in res:
        chk.lines.append(BudgetLine("reference_top1_mismatch", None, REFERENCE_MAX_MISMATCH_PCT, "%", "fail",
                                    f"cross-runtime check not possible: {res['error']}"))
        return
    mism = 100.0 * (1.0 - res["top1_agreement"])
    chk.lines.append(BudgetLine("reference_top1_mismatch", round(mism, 3), REFERENCE_MAX_MISMATCH_PCT, "%",
                                "pass" if mism <= REFERENCE_MAX_MISMATCH_PCT else "fail",
                                f"top-1 of onnx.reference.ReferenceEvaluator vs onnxruntime on {res['n_samples']} rows "
                                f"(max |score diff| {res['max_abs_diff']:.3g})"))


def _accelerator(onnx_path: str | Path, profile: DeviceProfile, work: Path, chk: TargetCheck) -> Path:
    from ..budget.accelerator import accelerator_coverage, accelerator_lines
    from .fixed_shape import FIXED_MODEL_FILE, write_fixed_shape

    fixed = work / FIXED_MODEL_FILE
    try:
        info = write_fixed_shape(onnx_path, fixed)
    except Exception as e:  # a graph the tools cannot fix to batch 1 cannot go to the accelerator
        chk.lines.append(_line_fail("accelerator_cpu_nodes", "no fixed-shape graph", e))
        return Path(onnx_path)
    lines, cov = accelerator_lines(onnx_path, profile, fixed_path=fixed)
    chk.lines += lines
    chk.files[FIXED_MODEL_FILE] = fixed
    dyn = accelerator_coverage(onnx_path, profile.compute.accelerator)
    chk.manifest["fixed_shape"] = {"file": FIXED_MODEL_FILE, **info}
    chk.manifest["accelerator"] = {"ep": profile.compute.accelerator, "fixed_shape": cov.to_dict() if cov else None,
                                   "dynamic_shape": dyn.to_dict(), "min_nodes_pct": profile.compute.accelerator_min_nodes_pct,
                                   "max_partitions": profile.compute.accelerator_max_partitions}
    return fixed


def _ort_mobile(src: Path, onnx_path: str | Path, rows: np.ndarray, runtime_opt: bool, work: Path, chk: TargetCheck) -> None:
    from .ort_mobile import convert_to_ort, verify_ort

    try:
        art = convert_to_ort(src, work / "ort", runtime_optimizations=runtime_opt)
        v = verify_ort(art.ort_path, onnx_path, rows, max_samples=256)
    except Exception as e:
        chk.lines.append(_line_fail("ort_top1_mismatch", "ORT-format model", e))
        return
    chk.files[art.ort_path.name] = art.ort_path
    chk.files[art.config_path.name] = art.config_path
    chk.manifest["ort"] = {**art.to_dict(), "source": src.name if src != Path(onnx_path) else "model.onnx", "verify": v}
    mism = 100.0 * (1.0 - v["top1_agreement"])
    chk.lines.append(BudgetLine("ort_top1_mismatch", round(mism, 3), 0.0, "%", "pass" if mism == 0.0 else "fail",
                                f"model.ort ({art.ort_bytes / 1024:.1f} KiB, {art.optimization_style} optimisations, {art.target_platform}) "
                                f"vs model.onnx on {v['n_samples']} batch-1 rows, max |diff| {v['max_abs_diff']:.3g}"))


def _c_target(onnx_path, profile, work: Path, chk: TargetCheck, *, x, model, family, precision) -> None:
    from ..budget.mcu import mcu_lines, measure_c
    from .c_export import C_DIR, export_c
    from .crossrt import run_runtime

    cdir = work / C_DIR
    try:
        cm = export_c(onnx_path, model, family=family, precision=precision, examples=x[:4])
    except Exception as e:
        chk.lines += mcu_lines(None, profile, f"C export failed: {str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}")
        return
    for p in cm.write(cdir):
        chk.files[f"{C_DIR}/{p.name}"] = p
    chk.manifest["c"] = cm.manifest()
    try:
        top1 = run_runtime("onnxruntime", onnx_path, x).argmax(1)
        build = measure_c(cdir, x, top1)
    except Exception as e:
        chk.lines += mcu_lines(None, profile, f"{str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}")
        chk.manifest["c"]["build"] = None
        return
    chk.manifest["c"]["build"] = build.to_dict()
    chk.lines += mcu_lines(build, profile)


def _tensorrt(onnx_path, profile, work: Path, chk: TargetCheck, rows: np.ndarray, precision: str, runs: int) -> None:
    from .tensorrt_engine import build_engine, measure_engine_latency, tensorrt_status

    ok, why = tensorrt_status()
    if not ok:
        chk.tensorrt = {"built": False, "reason": why, "fallback": "model.onnx (onnxruntime)"}
        chk.lines.append(BudgetLine("tensorrt_latency_p99", None, profile.timing.inference_budget_ms, "ms", "warn",
                                    f"engine not built ({why}); the onnxruntime lines stand in and the runtime falls back to model.onnx"))
        return
    prec = precision if precision in ("fp16", "int8") else "fp32"
    try:
        info = build_engine(onnx_path, work / "model.plan", prec)
        lat = measure_engine_latency(info.plan_path, rows[:1], runs=runs)
    except Exception as e:
        chk.tensorrt = {"built": False, "reason": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", "fallback": "model.onnx (onnxruntime)"}
        chk.lines.append(_line_fail("tensorrt_latency_p99", "TensorRT engine", e))
        return
    chk.files["model.plan"] = info.plan_path
    dev = lat["p99_ms"] * profile.compute.slowdown_vs_host
    chk.tensorrt = {"built": True, "precision": prec, "tensorrt_version": info.tensorrt_version, "build_seconds": round(info.build_seconds, 2),
                    "plan_file": "model.plan", "plan_bytes": info.plan_bytes, "latency": lat}
    chk.lines.append(BudgetLine("tensorrt_latency_p99", dev, profile.timing.inference_budget_ms, "ms",
                                "pass" if dev <= profile.timing.inference_budget_ms else "fail",
                                f"engine {prec}, host-to-host single sample on this GPU: p50 {lat['p50_ms']:.4g} ms, p99 {lat['p99_ms']:.4g} ms "
                                f"x {profile.compute.slowdown_vs_host:g}"))
