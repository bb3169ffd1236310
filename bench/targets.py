"""Suite "targets" — what each device class gets beyond model.onnx, measured side by side in one run.

* Microcontrollers: the C of every iot family (emlearn / edgebm kernels) compiled with the system
  compiler: flash, RAM (static + stack), host latency of the compiled predictor next to onnxruntime's
  for the same graph, and top-1 agreement with onnxruntime on the held-out split; plus the iot
  bundle the real export job writes.
* Phones: NNAPI and CoreML (MLProgram) coverage from onnxruntime's usability checker for the dynamic
  graph ("before") and the fixed-shape batch-1 graph ("after"), and the ORT-format model (size,
  agreement with model.onnx), for the smartphone families at every precision.
* Same beams in any conforming runtime: top-1 agreement of onnx's reference evaluator and of tract
  with onnxruntime on the held-out split, per family and precision.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from .common import RESULTS, header, md_table, write_text


def _graphs(ds, tmp: Path, quick: bool) -> dict[str, tuple[Path, object]]:
    """(onnx path, fitted model) per candidate: iot and smartphone families, every precision."""
    from edgebm.compress import quantize_onnx
    from edgebm.deploy import export_onnx
    from edgebm.deploy.sklearn_export import export_sklearn
    from edgebm.models.estimator import make_model
    from edgebm.train import TrainConfig

    train, val, _ = ds.split((0.8, 0.1, 0.1), seed=0)
    calib = train.rsrp_b[np.random.default_rng(0).permutation(len(train))[:256]]
    out: dict[str, tuple[Path, object]] = {}
    neural = {"mlp_tiny": ("mlp", {"hidden": (32,)}, 40), "mlp": ("mlp", {"hidden": (256, 256)}, 40), "dscnn": ("dscnn", {}, 12)}
    for stem, (fam, params, epochs) in neural.items():
        m = make_model(fam, ds.n_b, ds.n_a, TrainConfig(seed=0, epochs=3 if quick else epochs, soft_weight=0.2), **params)
        m.fit(train, val)
        fp32 = export_onnx(m.module, train.rsrp_b, tmp / f"{stem}-fp32.onnx")
        out[f"{stem} fp32"] = (fp32, m)
        for mode, prec in (("int8_static", "int8"), ("fp16", "fp16")):
            q = quantize_onnx(fp32, tmp / f"{stem}-{prec}.onnx", mode, calib_x=calib, keep_fp32_outputs=("logits",))
            out[f"{stem} {prec}"] = (Path(q.out_path), m)
    for fam in ("tree", "gbt", "svm_linear", "sgd"):
        m = make_model(fam, ds.n_b, ds.n_a, TrainConfig(seed=0)).fit(train, val)
        path = tmp / f"{fam}-fp32.onnx"
        export_sklearn(m.est, path, ds.n_b)
        out[f"{fam} fp32"] = (path, m)
    return out


def _c_rows(graphs, x: np.ndarray, runs: int, tmp: Path) -> list[list]:
    from edgebm.budget import time_callable
    from edgebm.budget.latency import ort_session
    from edgebm.budget.mcu import measure_c
    from edgebm.deploy.c_export import export_c
    from edgebm.deploy.crossrt import run_runtime

    rows = []
    for name, (path, model) in graphs.items():
        if name.split()[0] in ("dscnn",) or name.endswith("fp16"):
            continue  # not microcontroller candidates
        cm = export_c(path, model, family=name.split()[0], precision=name.split()[1], examples=x[:4])
        cdir = tmp / "c" / name.replace(" ", "-")
        cm.write(cdir)
        top1 = run_runtime("onnxruntime", path, x).argmax(1)
        sess = ort_session(path, 1)
        feed = {sess.get_inputs()[0].name: np.ascontiguousarray(x[:1], np.float32)}
        out = [sess.get_outputs()[0].name]
        ort_lat = time_callable(lambda: sess.run(out, feed), runs=runs, warmup=50)
        b = measure_c(cdir, x, top1, reps=5)
        rows.append([name, cm.kind, b.flash_bytes / 1024, b.static_ram_bytes / 1024, b.stack_bytes, b.ram_bytes / 1024,
                     1e3 * b.host_latency.p50_ms, 1e3 * b.host_latency.p99_ms, 1e3 * ort_lat.p50_ms, 1e3 * ort_lat.p99_ms,
                     ort_lat.p50_ms / b.host_latency.p50_ms, f"{b.n_samples - b.mismatches}/{b.n_samples}"])
    return rows


def _phone_rows(graphs, x: np.ndarray, tmp: Path) -> list[list]:
    from edgebm.budget.accelerator import accelerator_coverage
    from edgebm.deploy.fixed_shape import write_fixed_shape
    from edgebm.deploy.ort_mobile import convert_to_ort, verify_ort

    rows = []
    for name, (path, _) in graphs.items():
        if name.split()[0] not in ("mlp", "dscnn"):
            continue
        fixed = tmp / f"{name.replace(' ', '-')}-fixed.onnx"
        info = write_fixed_shape(path, fixed)
        cov = {(ep, when): accelerator_coverage(p, ep) for ep in ("nnapi", "coreml") for when, p in (("before", path), ("after", fixed))}
        art = convert_to_ort(fixed, tmp / "ort" / name.replace(" ", "-"), runtime_optimizations=True)
        v = verify_ort(art.ort_path, path, x, max_samples=256)

        def c(ep: str, when: str) -> str:
            k = cov[(ep, when)]
            return f"{k.supported}/{k.nodes} ({k.pct:.0f} %), {k.partitions} part."

        rows.append([name, c("nnapi", "before"), c("nnapi", "after"), c("coreml", "before"), c("coreml", "after"),
                     len(info["removed_opsets"]), Path(path).stat().st_size / 1024, art.ort_bytes / 1024, v["top1_agreement"]])
    return rows


def _crossrt_rows(graphs, x: np.ndarray) -> list[list]:
    from edgebm.deploy.crossrt import cross_runtime_agreement

    rows = []
    for name, (path, _) in graphs.items():
        res = cross_runtime_agreement(path, x)
        cells = []
        for rt in ("reference", "tract"):
            r = res[rt]
            cells += [r.get("top1_agreement"), r.get("max_abs_diff")] if "error" not in r else [f"error: {r['error'][:90]}", None]
        rows.append([name, *cells])
    return rows


def run(quick: bool = False, out_dir: Path = RESULTS, argv: str = "") -> str:
    from edgebm.deploy.crossrt import runtime_status
    from edgebm.pipeline import default_dataset, export_for_profile
    from edgebm.train import TrainConfig

    n = 6000 if quick else 20000
    runs = 300 if quick else 2000
    ds = default_dataset(n, seed=0)
    _, _, test = ds.split((0.8, 0.1, 0.1), seed=0)
    x = test.rsrp_b
    lines = header(
        "Targets per device class: C for microcontrollers, phone accelerators and ORT format, cross-runtime agreement",
        f"python -m bench targets{' --quick' if quick else ''}",
        [f"default scenario, {n} UEs, seed 0; held-out = the export job's test split ({len(x)} samples)",
         f"latencies: single sample, 1 thread; onnxruntime {runs} timed calls after 50 warm-up; compiled C: every held-out row x 5 "
         "repetitions, pooled percentiles, timer overhead removed",
         f"second runtimes: {runtime_status('reference')[1]}; {runtime_status('tract')[1]}"],
    )
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        res = export_for_profile("iot", ds, tmp / "iot", train_cfg=TrainConfig(epochs=3, seed=0) if quick else None, latency_runs=runs)
        build = json.loads((res.bundle_dir / "manifest.json").read_text())["targets"]["c"]["build"]
        lines += ["## Microcontrollers (`iot`, backend `c`)", "",
                  f"`edgebm export --profile iot` chose **{res.chosen.name}** and wrote `c/` "
                  f"({', '.join(sorted(p.name for p in (res.bundle_dir / 'c').iterdir()))}): flash {build['flash_bytes'] / 1024:.2f} KiB, "
                  f"RAM {build['ram_bytes'] / 1024:.3f} KiB (stack {build['stack_bytes']} B), host p99 "
                  f"{1e3 * build['host_latency']['p99_ms']:.3g} us, top-1 agreement with onnxruntime {build['top1_agreement']:.4f} "
                  f"on {build['n_samples']} held-out samples; onnxruntime host p99 for the same model.onnx: "
                  f"{1e3 * res.report.host_latency.p99_ms:.3g} us.", "",
                  "Every iot family (and the phone MLP for scale), compiled here with `-Os` for sizes and `-O2` for latency:", ""]
        graphs = _graphs(ds, tmp, quick)
        lines += md_table(["candidate", "C code", "flash KiB", "static RAM KiB", "stack B", "RAM KiB", "C p50 us", "C p99 us",
                           "onnxruntime p50 us", "onnxruntime p99 us", "C speed-up (p50)", "top-1 = onnxruntime"],
                          _c_rows(graphs, x, runs, tmp))
        lines += ["", "## Phones (`smartphone`): accelerator coverage before/after the fixed-shape graph, ORT format", "",
                  "Coverage = nodes the execution provider takes / all nodes, and partitions, from onnxruntime's usability checker "
                  "(BASIC-optimised graph). before = the dynamic-batch `model.onnx`; after = `model_fixed.onnx` (batch 1, "
                  "ReduceMax -> MaxPool, unused opsets stripped). `model.ort`: Runtime optimisation style, arm, from the fixed graph.", ""]
        lines += md_table(["candidate", "NNAPI before", "NNAPI after", "CoreML before", "CoreML after", "opsets stripped",
                           "model.onnx KiB", "model.ort KiB", "model.ort top-1 = model.onnx"], _phone_rows(graphs, x, tmp))
        lines += ["", "## Same beams in another ONNX runtime", "",
                  "Top-1 agreement with onnxruntime and max |score difference| on the held-out split.", ""]
        lines += md_table(["candidate", "reference top-1 agreement", "reference max |diff|", "tract top-1 agreement", "tract max |diff|"],
                          _crossrt_rows(graphs, x))
    text = "\n".join(lines) + "\n"
    write_text(out_dir / "targets.md", text)
    return text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench targets")
    p.add_argument("--quick", action="store_true")
    a = p.parse_args(argv)
    print(run(a.quick))
    return 0
