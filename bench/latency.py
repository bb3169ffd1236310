"""Suite 1 — latency across backends, measured side by side in one process.

For the smartphone export (the real ``edgebm export`` pipeline on the default scenario) and for
the larger families, single-sample p50/p99 and batch throughput of: torch eager (fp32), onnxruntime
fp32, onnxruntime int8 (static QDQ) and fp16 where the compress step is available, the full
runtime path (``Predictor.predict``: input checks + session + softmax + top-k), and the floor: an
Identity ONNX graph of the same input through the same session path (per-call overhead).
Ratios are to torch eager on the same model. TensorRT rows appear only where tensorrt and a CUDA
GPU are present.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from .common import RESULTS, header, md_table, write_text


def _identity_onnx(path: Path, n_in: int) -> Path:
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("rsrp_b", TensorProto.FLOAT, ["batch", n_in])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", n_in])
    g = helper.make_graph([helper.make_node("Identity", ["rsrp_b"], ["y"])], "identity", [x], [y])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    onnx.save(m, str(path))
    return path


def _batch_throughput(fn, x: np.ndarray, seconds: float = 0.5) -> float:
    fn(x)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fn(x)
        n += len(x)
    return n / (time.perf_counter() - t0)


def measure_model(name: str, module, onnx_fp32: Path, x: np.ndarray, runs: int, tmp: Path, threads: int = 1) -> list[list]:
    """Rows [model, backend, p50 ms, p99 ms, ratio p50 vs torch, batch-256 samples/s]."""
    import torch

    from edgebm.budget import time_callable
    from edgebm.runtime.session import ort_session

    torch.set_num_threads(threads)
    module.eval()
    x1 = np.ascontiguousarray(x[:1], dtype=np.float32)
    xb = np.ascontiguousarray(np.resize(x, (256, x.shape[1])), dtype=np.float32)
    t1 = torch.from_numpy(x1)

    def torch_call(a):
        with torch.inference_mode():
            return module(torch.from_numpy(a) if isinstance(a, np.ndarray) else a)

    rows = []
    st = time_callable(lambda: torch_call(t1), runs=runs, warmup=50)
    base = st.p50_ms
    rows.append([name, "torch eager fp32", st.p50_ms, st.p99_ms, 1.0, _batch_throughput(torch_call, xb)])
    variants = [("onnxruntime fp32", onnx_fp32)]
    try:
        from edgebm.compress import quantize_onnx

        for mode, label in (("int8_static", "onnxruntime int8 (QDQ)"), ("int8_dynamic", "onnxruntime int8 (dynamic)"), ("fp16", "onnxruntime fp16")):
            out = tmp / f"{name}-{mode}.onnx"
            quantize_onnx(onnx_fp32, out, mode, calib_x=x[:256])
            variants.append((label, out))
    except ImportError as e:  # compress not built yet on this checkout
        rows.append([name, f"int8/fp16 skipped ({e})", None, None, None, None])
    for label, path in variants:
        sess = ort_session(path, threads)
        iname = sess.get_inputs()[0].name
        oname = [sess.get_outputs()[0].name]
        st = time_callable(lambda: sess.run(oname, {iname: x1}), runs=runs, warmup=50)
        thr = _batch_throughput(lambda a: sess.run(oname, {iname: a}), xb)
        rows.append([name, label, st.p50_ms, st.p99_ms, base / st.p50_ms, thr])
    ident = ort_session(_identity_onnx(tmp / "identity.onnx", x.shape[1]), threads)
    st = time_callable(lambda: ident.run(["y"], {"rsrp_b": x1}), runs=runs, warmup=50)
    rows.append([name, "floor: Identity graph, same session path", st.p50_ms, st.p99_ms, base / st.p50_ms, None])
    return rows


def run(quick: bool = False, out_dir: Path = RESULTS, argv: str = "") -> str:
    from edgebm.pipeline import default_dataset, export_for_profile
    from edgebm.runtime import Predictor
    from edgebm.budget import time_callable
    from edgebm.train import TrainConfig

    runs = 300 if quick else 2000
    n = 6000 if quick else 20000
    ds = default_dataset(n, seed=0)
    lines = header(
        "Latency across backends (suite 1)",
        f"python -m bench latency{' --quick' if quick else ''}",
        [f"single-sample latency over {runs} timed calls after 50 warm-up, 1 intra-op thread everywhere; batch throughput at batch 256",
         "ratio = torch eager p50 / backend p50 (higher is faster); all rows of one model measured in the same process, one after another"],
    )
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        res = export_for_profile("smartphone", ds, tmp / "smartphone", train_cfg=TrainConfig(epochs=8 if quick else 40, seed=0, soft_weight=0.2))
        m = res.metrics
        lines += [
            "## Smartphone bundle (`edgebm export --profile smartphone` pipeline)",
            "",
            f"Held-out ({m['n']} samples): top-1 **{m['top1']:.3f}**, top-3 **{m['top3']:.3f}**, within-1 dB {m['within_1db']:.3f}, "
            f"SE drop mean {m['se_drop_mean']:.4f} / p90 {m['se_drop_p90']:.4f}. Gate verdict: {res.report.verdict}; "
            f"parity max |diff| {res.parity['max_abs_diff']:.2e}.",
            "",
        ]
        from edgebm.deploy import export_onnx
        from edgebm.models.estimator import make_model

        label = f"{res.chosen.family} (smartphone choice: {res.chosen.name})"
        lines += [f"The export chose **{res.chosen.name}**; its rows below start from the same trained torch module "
                  "(fp32 ONNX re-exported from it, int8/fp16 derived from that).", ""]
        fp32 = export_onnx(res.model, ds.rsrp_b, tmp / "chosen-fp32.onnx")
        rows = measure_model(label, res.model, fp32, ds.rsrp_b, runs, tmp)
        pred = Predictor(res.bundle_dir)
        x1 = ds.rsrp_b[0]
        st = time_callable(lambda: pred.predict(x1, k=3), runs=runs, warmup=50)
        rows.insert(2, [label, f"edgebm.runtime Predictor.predict on the bundle ({res.chosen.precision}; checks + session + top-3)",
                        st.p50_ms, st.p99_ms, rows[0][2] / st.p50_ms, None])

        for fam, kw in (("mlp", {"hidden": (256, 256)}), ("dscnn", {}), ("teacher", {})):
            if fam == res.chosen.family:
                continue
            mdl = make_model(fam, ds.n_b, ds.n_a, TrainConfig(seed=0), **kw).module.eval()  # latency does not depend on training
            path = export_onnx(mdl, ds.rsrp_b, tmp / f"{fam}.onnx")
            rows += measure_model(fam, mdl, path, ds.rsrp_b, runs, tmp)
    lines += md_table(["model", "backend", "p50 ms", "p99 ms", "speed-up vs torch (p50)", "batch-256 samples/s"], rows)
    lines += ["", "TensorRT: not measured on this machine (no tensorrt wheel / CUDA GPU; see README).", ""]
    text = "\n".join(lines)
    write_text(out_dir / "latency.md", text)
    return text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench latency")
    p.add_argument("--quick", action="store_true")
    a = p.parse_args(argv)
    print(run(a.quick))
    return 0
