"""Suite 4 — compression trade-off (seed 003 Fig. 6) and the export issue's must-shows.

Params and FLOPs (ONNX count) against held-out top-1/top-3 for the teacher, position-aided teacher,
DS-CNN student (plain and distilled from the teacher), MLP (plain and structurally pruned 50 % /
75 % with fine-tuning), int8 / fp16 versions, and the classical families; single-sample
onnxruntime latency for every candidate measured in this process, one thread.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from .common import RESULTS, header, md_table, save_fig, write_text


def run(quick: bool = False, out_dir: Path = RESULTS, argv: str = "") -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from edgebm.budget import analyze_onnx, time_callable
    from edgebm.budget.latency import ort_session
    from edgebm.compress import prune_structured, quantize_onnx
    from edgebm.deploy import export_onnx
    from edgebm.deploy.sklearn_export import export_sklearn
    from edgebm.metrics import topk_accuracy
    from edgebm.models.estimator import TorchBeamModel, make_model
    from edgebm.pipeline import default_dataset
    from edgebm.train import TrainConfig, train_classifier

    torch.set_num_threads(1)
    n, epochs, runs = (3000, 4, 300) if quick else (12000, 15, 1500)
    ds = default_dataset(n, seed=0)
    train, val, test = ds.split((0.8, 0.1, 0.1), seed=0)
    cfg = TrainConfig(epochs=epochs, seed=0, soft_weight=0.2)
    rows: list[dict] = []

    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)

        def measure(name: str, kind: str, path: Path, score: str) -> dict:
            st = analyze_onnx(path)
            sess = ort_session(path, 1)
            s = sess.run([score], {"rsrp_b": np.ascontiguousarray(test.rsrp_b, dtype=np.float32)})[0]
            x1 = np.ascontiguousarray(test.rsrp_b[:1], dtype=np.float32)
            lat = time_callable(lambda: sess.run([score], {"rsrp_b": x1}), runs=runs, warmup=50)
            r = {"model": name, "kind": kind, "params": st.params, "mflops": st.flops / 1e6, "kib": st.weight_bytes / 1024,
                 "top1": topk_accuracy(s, test.best_a, 1), "top3": topk_accuracy(s, test.best_a, 3), "p50_ms": lat.p50_ms}
            rows.append(r)
            return r

        def torch_model(name: str, kind: str, module) -> Path:
            path = export_onnx(module, train.rsrp_b, tmp / f"{name}.onnx")
            measure(name, kind, path, "logits")
            return path

        def quantised(name: str, src: Path, mode: str) -> None:
            out = tmp / f"{name}-{mode}.onnx"
            quantize_onnx(src, out, mode, calib_x=train.rsrp_b[:256], keep_fp32_outputs=("logits",))
            measure(f"{name} {'int8' if mode == 'int8_static' else mode}", "quantised", out, "logits")

        teacher = make_model("teacher", ds.n_b, ds.n_a, cfg).fit(train, val)
        t_path = torch_model("teacher", "teacher", teacher.module)
        quantised("teacher", t_path, "int8_static")
        tpos = make_model("teacher_pos", ds.n_b, ds.n_a, cfg).fit(train, val)
        torch_model("teacher_pos", "teacher", tpos.module)
        t_logits = teacher.decision_scores(train.rsrp_b)
        for name, kw in (("dscnn", {}), ("dscnn (KD)", {"teacher_logits": t_logits})):
            m = make_model("dscnn", ds.n_b, ds.n_a, cfg).fit(train, val, **kw)
            p = torch_model(name, "student", m.module)
            quantised(name, p, "int8_static")
            quantised(name, p, "fp16")
        mlp: TorchBeamModel = make_model("mlp", ds.n_b, ds.n_a, cfg).fit(train, val)  # type: ignore[assignment]
        p = torch_model("mlp", "student", mlp.module)
        quantised("mlp", p, "int8_static")

        def finetune(module) -> None:
            train_classifier(module, train.rsrp_b, train.best_a, val.rsrp_b, val.best_a, TrainConfig(epochs=max(2, epochs // 2), seed=0))

        for ratio in (0.5, 0.75):
            pr = prune_structured(mlp.module, train.rsrp_b[:64], ratio, train_fn=finetune)
            torch_model(f"mlp pruned {int(ratio * 100)}%", "pruned", pr.model.eval())
        for fam in ("svm_linear", "tree", "gbt", "sgd"):
            m = make_model(fam, ds.n_b, ds.n_a, cfg).fit(train, val)
            info = export_sklearn(m.est, tmp / f"{fam}.onnx", ds.n_b)
            measure(fam, "classical", tmp / f"{fam}.onnx", info["score_output"])

    by = {r["model"]: r for r in rows}
    lines = header("Compression trade-off (suite 4, seed 003 Fig. 6)", f"python -m bench compress{' --quick' if quick else ''}",
                   [f"default scenario (city0, 28 GHz, 8x8 BS, 16->64, 20 dB), {n} UEs split 80/10/10 (seed 0); neural models {epochs} epochs; "
                    "teacher at its default 32x32 upsampling", f"latency: onnxruntime single-sample p50 over {runs} calls, 1 thread, "
                    "all candidates in this process one after another (shared machine: compare ratios, not absolutes)"])
    lines += md_table(["model", "kind", "params", "MFLOPs", "KiB", "top-1", "top-3", "p50 ms"],
                      [[r["model"], r["kind"], r["params"], round(r["mflops"], 4), round(r["kib"], 1), round(r["top1"], 4), round(r["top3"], 4),
                        round(r["p50_ms"], 4)] for r in rows])
    base, stu = by["teacher"], by["dscnn (KD) int8"]
    lines += ["", "## Must-shows", "",
              f"- **Teacher -> int8 distilled DS-CNN student**: params {base['params'] / max(stu['params'], 1):.1f}x fewer "
              f"({base['params']:,} -> {stu['params']:,}), FLOPs {base['mflops'] / max(stu['mflops'], 1e-9):.1f}x fewer "
              f"({base['mflops']:.2f} -> {stu['mflops']:.2f} MFLOPs), weights {base['kib'] / max(stu['kib'], 1e-9):.1f}x smaller; "
              f"top-1 {100 * (stu['top1'] - base['top1']):+.1f} pp, top-3 {100 * (stu['top3'] - base['top3']):+.1f} pp "
              "(seed 003: ~52x params, ~79x FLOPs for a few points; our teacher is far smaller than their ResNet, so the factors are smaller)."]
    for ratio in (50, 75):
        pr = by[f"mlp pruned {ratio}%"]
        lines.append(f"- **Pruning {ratio} %** (MLP, channels removed by torch-pruning, fine-tuned): FLOPs x{pr['mflops'] / by['mlp']['mflops']:.2f}, "
                     f"params x{pr['params'] / by['mlp']['params']:.2f}, measured latency x{pr['p50_ms'] / by['mlp']['p50_ms']:.2f}, "
                     f"top-1 {100 * (pr['top1'] - by['mlp']['top1']):+.1f} pp.")
    for name in ("teacher", "dscnn", "dscnn (KD)", "mlp"):
        q = by[f"{name} int8"]
        f = by[name]
        lines.append(f"- **int8 vs fp32, {name}**: top-1 {100 * (q['top1'] - f['top1']):+.2f} pp, latency x{q['p50_ms'] / f['p50_ms']:.2f} "
                     f"({'faster' if q['p50_ms'] < f['p50_ms'] else 'NOT faster'} on this CPU), weights x{q['kib'] / f['kib']:.2f}.")
    lines.append("")
    fig, ax = plt.subplots(figsize=(9, 5))
    colors = {"teacher": "tab:red", "student": "tab:blue", "quantised": "tab:cyan", "pruned": "tab:green", "classical": "tab:gray"}
    for r in rows:
        ax.scatter(max(r["mflops"], 1e-4), 100 * r["top1"], s=20 + 200 * np.sqrt(r["params"] / max(x["params"] for x in rows)),
                   color=colors[r["kind"]], alpha=0.7)
        ax.annotate(r["model"], (max(r["mflops"], 1e-4), 100 * r["top1"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("MFLOPs per inference (ONNX count, log)")
    ax.set_ylabel("held-out top-1 (%)")
    ax.set_title("Compression trade-off: marker area ~ parameters")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_fig(fig, out_dir / "compress.png")
    plt.close(fig)
    lines += ["![trade-off](compress.png)", ""]
    text = "\n".join(lines)
    write_text(out_dir / "compress.md", text)
    return text
