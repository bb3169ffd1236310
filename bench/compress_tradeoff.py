"""Suite 4 — compression trade-off (seed 003 Fig. 6) and the export issue's must-shows.

On the default scenario (city0, 28 GHz, 8x8 BS UPA, 16 -> 64 beams, 20 dB): params and FLOPs (ONNX
count, :func:`edgebm.budget.analyze_onnx`), held-out top-1 / top-3, weight KiB and single-sample
onnxruntime p50 latency (1 thread) of

- the teacher (``BeamTeacherCNN`` at its default 32x32 upsampling, the big reference) and the
  position-aided teacher (``teacher_pos``);
- the DS-CNN student trained plainly and distilled from the teacher (Hinton KD on the teacher's logits);
- the MLP student and its structurally pruned versions (50 % / 75 % of the hidden neurons removed by
  :func:`edgebm.compress.prune_structured`, fine-tuned after pruning);
- int8 (static QDQ) and fp16 versions of the students (and int8 of the teacher) by
  :func:`edgebm.compress.quantize_onnx`;
- the classical families svm_linear, tree, gbt and sgd (exported with skl2onnx).

All latencies are measured in this one process after every model is built, in interleaved rounds
(each round times every candidate once, in a rotated order), so that load from other processes on a
shared machine spreads over all candidates instead of spoiling some of them.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from .common import RESULTS, header, md_table, save_fig, write_text


def _identity_onnx(path: Path, n_in: int) -> Path:
    """The per-call floor: an Identity graph with the same input, through the same session path."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("rsrp_b", TensorProto.FLOAT, ["batch", n_in])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", n_in])
    g = helper.make_graph([helper.make_node("Identity", ["rsrp_b"], ["logits"])], "identity", [x], [y])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    return path


def _interleaved_latency(sessions: dict[str, tuple], x1: np.ndarray, rounds: int, per_round: int, warmup: int) -> dict[str, dict]:
    """p50 per candidate = median over rounds of the round's p50; also the spread (min / max round p50)."""
    names = list(sessions)
    for name in names:
        sess, out = sessions[name]
        for _ in range(warmup):
            sess.run([out], {"rsrp_b": x1})
    per: dict[str, list[float]] = {n: [] for n in names}
    t = np.empty(per_round, dtype=np.float64)
    for r in range(rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:  # rotate the order every round
            sess, out = sessions[name]
            feed = {"rsrp_b": x1}
            run = sess.run
            for i in range(per_round):
                t0 = time.perf_counter_ns()
                run([out], feed)
                t[i] = time.perf_counter_ns() - t0
            per[name].append(float(np.percentile(t, 50)) / 1e6)
    return {n: {"p50_ms": float(np.median(v)), "min_ms": float(np.min(v)), "max_ms": float(np.max(v))} for n, v in per.items()}


def run(quick: bool = False, out_dir: Path = RESULTS, argv: str = "") -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from edgebm.budget import analyze_onnx
    from edgebm.runtime.session import ort_session
    from edgebm.compress import prune_structured, quantize_onnx
    from edgebm.deploy import export_onnx
    from edgebm.deploy.sklearn_export import export_sklearn
    from edgebm.metrics import topk_accuracy
    from edgebm.models.estimator import make_model
    from edgebm.pipeline import default_dataset
    from edgebm.train import TrainConfig, beam_power_soft_labels, train_classifier

    torch.set_num_threads(1)
    t_start = time.perf_counter()
    if quick:
        n, ep_teacher, ep_pos, ep_student, ep_mlp, ep_ft, rounds, per_round = 3000, 6, 3, 8, 20, 8, 10, 150
    else:
        n, ep_teacher, ep_pos, ep_student, ep_mlp, ep_ft, rounds, per_round = 12000, 15, 8, 15, 40, 15, 30, 300
    suffix = "_quick" if quick else ""
    ds = default_dataset(n, seed=0)
    train, val, test = ds.split((0.8, 0.1, 0.1), seed=0)
    calib = train.rsrp_b[np.random.default_rng(0).permutation(len(train))[:256]]
    cands: list[dict] = []  # name, kind, family, precision, base (fp32 reference), path, score output
    secs: dict[str, float] = {}

    def cfg(epochs: int) -> TrainConfig:
        return TrainConfig(epochs=epochs, seed=0, soft_weight=0.2)

    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)

        def add(name, kind, path, score="logits", base=None, precision="fp32", note=""):
            cands.append({"model": name, "kind": kind, "path": path, "score": score, "base": base or name, "precision": precision,
                          "note": note})

        def add_torch(name, kind, module, note=""):
            path = export_onnx(module.eval(), train.rsrp_b, tmp / f"{len(cands):02d}.onnx")
            add(name, kind, path, note=note)
            return path

        def add_quant(name, src, mode):
            out = tmp / f"{len(cands):02d}-{mode}.onnx"
            # the classifier head stays fp32, as in the shipped bundles (it is what the UE updates on device);
            # plain post-training quantisation, no accuracy-aware fallback, so the accuracy cost shows as is
            quantize_onnx(src, out, mode, calib_x=calib, keep_fp32_outputs=("logits",))
            add(f"{name} {'int8' if mode == 'int8_static' else mode}", "quantised", out, base=name,
                precision="int8" if mode == "int8_static" else mode, note=f"from {name} fp32")

        def timed(key, fn):
            t0 = time.perf_counter()
            out = fn()
            secs[key] = time.perf_counter() - t0
            return out

        teacher = timed("teacher", lambda: make_model("teacher", ds.n_b, ds.n_a, cfg(ep_teacher)).fit(train, val))
        t_path = add_torch("teacher", "teacher", teacher.module, "upsample 32")
        add_quant("teacher", t_path, "int8_static")
        tpos = timed("teacher_pos", lambda: make_model("teacher_pos", ds.n_b, ds.n_a, cfg(ep_pos)).fit(train, val))
        add_torch("teacher_pos", "teacher", tpos.module, "upsample 32, position-aided training")

        t_logits = teacher.decision_scores(train.rsrp_b)
        students = {}
        students["dscnn"] = timed("dscnn", lambda: make_model("dscnn", ds.n_b, ds.n_a, cfg(ep_student)).fit(train, val))
        students["dscnn (KD)"] = timed("dscnn (KD)", lambda: make_model("dscnn", ds.n_b, ds.n_a, cfg(ep_student)).fit(
            train, val, teacher_logits=t_logits, distil_weight=0.5, distil_temperature=4.0))
        students["mlp"] = timed("mlp", lambda: make_model("mlp", ds.n_b, ds.n_a, cfg(ep_mlp), hidden=(256, 256)).fit(train, val))
        paths = {name: add_torch(name, "student", m.module) for name, m in students.items()}

        soft_t = beam_power_soft_labels(train.rsrp_a, 2.0)
        soft_v = beam_power_soft_labels(val.rsrp_a, 2.0)

        def finetune(module) -> None:
            train_classifier(module, train.rsrp_b, train.best_a, val.rsrp_b, val.best_a, cfg(ep_ft), soft_t, soft_v)

        prune_info = {}
        for ratio in (0.5, 0.75):
            name = f"mlp pruned {int(ratio * 100)}%"
            pr = timed(name, lambda: prune_structured(students["mlp"].module, train.rsrp_b[:256], ratio, train_fn=finetune))
            prune_info[name] = pr
            paths[name] = add_torch(name, "pruned", pr.model, f"hidden {tuple(getattr(pr.model, 'hidden', ()))}")
        for name in ("dscnn", "dscnn (KD)", "mlp", "mlp pruned 50%", "mlp pruned 75%"):
            add_quant(name, paths[name], "int8_static")
            if not name.startswith("mlp pruned"):
                add_quant(name, paths[name], "fp16")

        classical = {}
        for fam in ("svm_linear", "tree", "gbt", "sgd"):
            m = timed(fam, lambda: make_model(fam, ds.n_b, ds.n_a, TrainConfig(seed=0)).fit(train, val))
            info = export_sklearn(m.est, tmp / f"{fam}.onnx", ds.n_b)
            classical[fam] = info
            add(fam, "classical", tmp / f"{fam}.onnx", score=info["score_output"])

        # accuracy and graph statistics of every exported file
        xt = np.ascontiguousarray(test.rsrp_b, dtype=np.float32)
        sessions = {}
        for c in cands:
            st = analyze_onnx(c["path"])
            sess = ort_session(c["path"], 1)
            s = sess.run([c["score"]], {"rsrp_b": xt})[0]
            c.update(params=int(st.params), mflops=st.flops / 1e6, kib=st.weight_bytes / 1024,
                     top1=topk_accuracy(s, test.best_a, 1), top3=topk_accuracy(s, test.best_a, 3))
            sessions[c["model"]] = (sess, c["score"])
        sessions["floor: Identity graph"] = (ort_session(_identity_onnx(tmp / "identity.onnx", ds.n_b), 1), "logits")

        # latency: every candidate in this process, interleaved rounds, 1 intra-op thread
        t0 = time.perf_counter()
        lat = _interleaved_latency(sessions, np.ascontiguousarray(test.rsrp_b[:1], dtype=np.float32), rounds, per_round, warmup=100)
        secs["latency"] = time.perf_counter() - t0
        for c in cands:
            c.update(lat[c["model"]])
        floor = lat["floor: Identity graph"]

    runtime = time.perf_counter() - t_start
    by = {c["model"]: c for c in cands}
    lines = header(
        "Compression trade-off (suite 4, seed 003 Fig. 6)",
        f"python -m bench compress{' --quick' if quick else ''}",
        [f"default scenario (city0, 28 GHz, 8x8 BS UPA, 16 -> 64 beams, 20 dB): {n} samples split 80/10/10 (seed 0); top-1/top-3 on the "
         f"{len(test)} held-out samples, computed from each exported ONNX file",
         f"training: teacher (upsample 32) {ep_teacher} epochs max, teacher_pos {ep_pos}, DS-CNN students {ep_student}, MLP (256, 256) "
         f"{ep_mlp}, all with soft labels 0.2 and early stopping; 'dscnn (KD)' adds 0.5 x T^2 KL to the teacher's logits (T = 4); "
         f"pruned MLPs fine-tuned {ep_ft} epochs after pruning (torch-pruning, L2 importance, head kept)",
         "int8 = static QDQ post-training quantisation calibrated on 256 training samples, classifier head kept fp32 (as in the shipped "
         "bundles), no accuracy-aware fallback; fp16 = weights and activations fp16, fp32 I/O",
         "params / MFLOPs / KiB: ONNX graph count (analyze_onnx; BatchNorm folded; multiply-add = 2 FLOPs; Q/DQ nodes counted)",
         f"latency: onnxruntime CPU, 1 intra-op thread, batch 1, full graph optimisation; all candidates measured in this process after "
         f"training, in {rounds} interleaved rounds of {per_round} calls each (order rotated every round, 100 warm-up calls first); "
         "p50 = median over rounds of the round's p50; 'round p50 range' shows how much the shared machine moved it",
         f"suite runtime {runtime:.0f} s (training " + ", ".join(f"{k} {v:.0f} s" for k, v in secs.items()) + ")"],
    )
    lines += ["## All candidates", ""]
    lines += md_table(["model", "kind", "note", "params", "MFLOPs", "weight KiB", "top-1", "top-3", "p50 ms", "round p50 range ms"],
                      [[c["model"], c["kind"], c["note"] or "-", c["params"], round(c["mflops"], 4), round(c["kib"], 1), round(c["top1"], 4),
                        round(c["top3"], 4), round(c["p50_ms"], 4), f"{c['min_ms']:.4f}-{c['max_ms']:.4f}"] for c in cands]
                      + [["floor: Identity graph (per-call overhead)", "-", "-", 0, 0.0, 0.0, None, None, round(floor["p50_ms"], 4),
                          f"{floor['min_ms']:.4f}-{floor['max_ms']:.4f}"]])

    # (a) pruning
    mlp = by["mlp"]
    f0 = floor["p50_ms"]
    prow = []
    for name in ("mlp", "mlp pruned 50%", "mlp pruned 75%"):
        c = by[name]
        prow.append([name, c["params"], round(c["mflops"], 4), round(c["mflops"] / mlp["mflops"], 3), round(c["p50_ms"], 4),
                     round(c["p50_ms"] / mlp["p50_ms"], 3), round(max(c["p50_ms"] - f0, 0) / max(mlp["p50_ms"] - f0, 1e-9), 3),
                     round(100 * (c["top1"] - mlp["top1"]), 2), round(100 * (c["top3"] - mlp["top3"]), 2)])
    lines += ["", "## Must-show (a): pruning -- measured latency next to FLOPs", ""]
    lines += md_table(["model", "params", "MFLOPs", "FLOPs ratio", "p50 ms", "latency ratio", "latency ratio above floor",
                       "top-1 delta pp", "top-3 delta pp"], prow)
    lines += ["", f"'latency ratio above floor' subtracts the Identity-graph p50 ({f0:.4f} ms): the part of a call that the "
              "model's arithmetic can influence.", ""]

    # (b) int8 / fp16 vs fp32
    qrow = []
    for c in cands:
        if c["kind"] != "quantised":
            continue
        b = by[c["base"]]
        qrow.append([c["base"], c["precision"], round(100 * (c["top1"] - b["top1"]), 2), round(100 * (c["top3"] - b["top3"]), 2),
                     round(b["p50_ms"], 4), round(c["p50_ms"], 4), round(c["p50_ms"] / b["p50_ms"], 3),
                     "yes" if c["p50_ms"] < b["p50_ms"] else "NO", round(c["kib"] / b["kib"], 3)])
    lines += ["## Must-show (b): int8 / fp16 vs fp32 on this CPU", ""]
    lines += md_table(["model", "precision", "top-1 delta pp", "top-3 delta pp", "fp32 p50 ms", "quantised p50 ms",
                       "latency ratio (quant/fp32)", "faster?", "weight ratio"], qrow)

    # (c) teacher -> int8 student
    t = by["teacher"]
    crow = []
    for name in ("dscnn (KD) int8", "dscnn int8", "mlp int8", "mlp pruned 50% int8", "mlp pruned 75% int8"):
        c = by[name]
        crow.append([name, c["params"], round(t["params"] / c["params"], 1), round(c["mflops"], 4), round(t["mflops"] / c["mflops"], 1),
                     round(t["kib"] / c["kib"], 1), round(t["p50_ms"] / c["p50_ms"], 2), round(100 * (c["top1"] - t["top1"]), 2),
                     round(100 * (c["top3"] - t["top3"]), 2)])
    lines += ["", f"## Must-show (c): teacher ({t['params']:,} params, {t['mflops']:.2f} MFLOPs, top-1 {t['top1']:.4f}) -> int8 students", ""]
    lines += md_table(["student", "params", "params reduction x", "MFLOPs", "FLOPs reduction x", "weight bytes reduction x",
                       "latency speed-up x", "top-1 delta pp", "top-3 delta pp"], crow)
    lines += ["", "Seed 003 Fig. 6 reference: ResNet-GRU 11.3 M params / 12.2 GFLOPs -> lightweight model 0.217 M / 155 MFLOPs, "
              "about 52x params and 79x FLOPs, for 2-3 points of top-1 (41.98 -> 39.13 % at t1).", ""]
    lines += [f"![trade-off](compress{suffix}.png)", ""]
    lines += ["## What this shows / where edgebm is behind", "", _summary(by, floor, prow, qrow, crow, len(test)), ""]

    _plot(plt, cands, out_dir / f"compress{suffix}.png")
    text = "\n".join(lines)
    write_text(out_dir / f"compress{suffix}.md", text)
    return text


def _plot(plt, cands: list[dict], path: Path) -> None:
    colors = {"teacher": "tab:red", "student": "tab:blue", "quantised": "tab:cyan", "pruned": "tab:green", "classical": "tab:gray"}
    fig, ax = plt.subplots(figsize=(10, 6))
    pmax = max(c["params"] for c in cands)
    for c in cands:
        x = max(c["mflops"], 1e-4)
        ax.scatter(x, 100 * c["top1"], s=15 + 600 * np.sqrt(c["params"] / pmax), color=colors[c["kind"]], alpha=0.6,
                   edgecolor="k", linewidth=0.4)
        ax.annotate(c["model"], (x, 100 * c["top1"]), fontsize=6.5, xytext=(4, 3), textcoords="offset points")
    for kind, col in colors.items():
        ax.scatter([], [], color=col, label=kind, s=40)
    ax.set_xscale("log")
    ax.set_xlabel("MFLOPs per inference (ONNX count, log scale)")
    ax.set_ylabel("held-out top-1 (%)")
    ax.set_title("Compression trade-off (default scenario): marker area ~ sqrt(parameters)")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    save_fig(fig, path)
    plt.close(fig)


def _summary(by, floor, prow, qrow, crow, n_test: int) -> str:
    t, tp = by["teacher"], by["teacher_pos"]
    best = max((c for c in by.values() if c["kind"] != "teacher"), key=lambda c: c["top1"])
    kd, plain = by["dscnn (KD)"], by["dscnn"]
    se = 100 * np.sqrt(max(plain["top1"] * (1 - plain["top1"]), 1e-9) / n_test)
    p50, p75 = prow[1], prow[2]
    q8 = [r for r in qrow if r[1] == "int8"]
    q16 = [r for r in qrow if r[1] == "fp16"]
    worst_q = min(q8, key=lambda r: r[2])
    ks = crow[0]
    gap = 100 * (t["top1"] - best["top1"])
    if gap > 0.5:
        first = (f"the teacher is {gap:.2f} pp top-1 ahead of the best non-teacher candidate ({best['model']}, {best['top1']:.4f} at "
                 f"{best['mflops']:.3f} MFLOPs)")
    elif gap < -0.5:
        first = (f"the most accurate non-teacher candidate, {best['model']}, is {-gap:.2f} pp ahead of it ({best['top1']:.4f} at "
                 f"{best['mflops']:.3f} MFLOPs): on this 16 -> 64 task the large teacher buys no accuracy at this training budget "
                 "(it is the hardest model to train here), so the trade-off curve is flat or inverted, unlike seed 003's vision task")
    else:
        first = (f"the most accurate non-teacher candidate, {best['model']}, reaches {best['top1']:.4f} at {best['mflops']:.3f} MFLOPs "
                 f"({-gap:+.2f} pp vs the teacher): on this 16 -> 64 task the large teacher buys little or no accuracy, the trade-off "
                 "curve is flat, unlike seed 003's vision task")
    out = [
        f"The teacher (upsample 32, {t['params']:,} params, {t['mflops']:.2f} MFLOPs) reaches top-1 {t['top1']:.4f} / top-3 "
        f"{t['top3']:.4f}; {first}. The position-aided teacher is at {tp['top1']:.4f} ({100 * (tp['top1'] - t['top1']):+.2f} pp) "
        f"for {tp['mflops'] / t['mflops']:.1f}x the FLOPs (fewer epochs: it is the slowest to train).",
        f"Distillation: dscnn (KD) {kd['top1']:.4f} vs plain dscnn {plain['top1']:.4f} top-1 ({100 * (kd['top1'] - plain['top1']):+.2f} pp; "
        f"one seed, and the binomial standard error of a top-1 on {n_test} test samples is about {se:.1f} pp).",
        f"(a) Pruning the MLP to {p50[3]:.2f}x / {p75[3]:.2f}x of its FLOPs changes its measured p50 to {p50[5]:.2f}x / {p75[5]:.2f}x "
        f"({p50[6]:.2f}x / {p75[6]:.2f}x counting only the time above the {floor['p50_ms'] * 1e3:.1f} us per-call floor) for "
        f"{p50[7]:+.2f} / {p75[7]:+.2f} pp top-1: latency falls with FLOPs, far less than proportionally, because at "
        f"{by['mlp']['mflops']:.2f} MFLOPs the onnxruntime per-call overhead is a large share of a single-sample inference.",
        f"(b) int8 (static QDQ, head fp32) changes top-1 by {min(r[2] for r in q8):+.2f} to {max(r[2] for r in q8):+.2f} pp "
        f"(largest loss: {worst_q[0]}); it is faster than fp32 for: {', '.join(r[0] for r in q8 if r[7] == 'yes') or 'none'}; "
        f"NOT faster for: {', '.join(r[0] for r in q8 if r[7] == 'NO') or 'none'} (latency ratios "
        f"{min(r[6] for r in q8):.2f}-{max(r[6] for r in q8):.2f}) -- on this x86 host the quantise/dequantise work outweighs the int8 "
        f"arithmetic for the small models. fp16 latency ratios are {min(r[6] for r in q16):.2f}-{max(r[6] for r in q16):.2f} (this CPU "
        f"has no fast fp16 kernels in onnxruntime). int8 weight bytes are {min(r[8] for r in q8):.2f}-{max(r[8] for r in q8):.2f}x fp32 "
        "(mostly the fp32 head and int32 biases keep them above 0.25x).",
        f"(c) Teacher -> {ks[0]}: {ks[2]:.1f}x fewer params, {ks[4]:.1f}x fewer FLOPs, {ks[5]:.1f}x smaller weights, {ks[6]:.2f}x faster, "
        f"top-1 {ks[7]:+.2f} pp, top-3 {ks[8]:+.2f} pp" + (" (the student is more accurate than this teacher)" if ks[7] > 0 else "")
        + f"; the MLP int8 route gives {crow[2][2]:.1f}x params / {crow[2][4]:.1f}x FLOPs (top-1 {crow[2][7]:+.2f} pp) and pruned-75 % "
        f"int8 {crow[4][2]:.1f}x / {crow[4][4]:.1f}x (top-1 {crow[4][7]:+.2f} pp).",
        "Where edgebm is behind seed 003: our teacher is a ~0.3 M-param RegNet rather than an 11 M-param ResNet-18-GRU, so the "
        "DS-CNN student's reduction factors are an order of magnitude below the paper's ~52x / ~79x (only the pruned MLP reaches "
        "such factors); and the latencies are host-CPU measurements on a shared 2-core machine, which say little about a UE NPU/DSP "
        "where int8 is usually the fast path.",
    ]
    return " ".join(out)
