"""Suite 4 — compression trade-off (seed 003 Fig. 6), regenerated from the export recipe.

Runs the real recipe of ``edgebm export`` (:class:`edgebm.pipeline.RecipeRun`) for the smartphone profile on the
export's default data (the randomised corpus: random cities, none of city0..city3, 16 -> 64 beams, SNR 0-30 dB) and
measures every model it builds:

- the teacher (the profile's ``[recipe] teacher``: the package's pretrained one);
- the students distilled from it (seed-003 beam-power soft labels + Hinton KD) and, for comparison, the same
  students trained without the teacher;
- the MLP student structurally pruned at a grid of ratios (the recipe's own points among them) and the DS-CNN at
  two ratios, each fine-tuned with the distillation loss;
- the int8 (static QDQ, accuracy-aware) and fp16 graphs of every neural model, head kept fp32 as in the bundles;
- the classical families svm_linear, tree, gbt, sgd;
- and the candidate the recipe chooses for the profile (on validation).

Params / MFLOPs / KiB are ONNX counts (:func:`edgebm.budget.analyze_onnx`); top-1 is reported on validation (what
the recipe chose on), on the held-out test split and on fresh drops of the named cities city0..city3 (bench analysis
only: cities none of the models saw). Latencies: one process, interleaved
rounds (each round times every graph once, order rotated) next to an Identity-graph floor, 1 thread.
The Pareto plot shows FLOPs vs test top-1, one point per lineage step, the pruning ratios as curves.
"""

from __future__ import annotations

import dataclasses
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


MLP_RATIOS = (0.25, 0.5, 0.75, 0.875, 0.9375)
DSCNN_RATIOS = (0.5, 0.75)


def run(quick: bool = False, out_dir: Path = RESULTS, argv: str = "") -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from edgebm.atomic import ScratchDir
    from edgebm.runtime.session import ort_session
    from edgebm.metrics import topk_accuracy
    from edgebm.pipeline import DEFAULT_SAMPLES, SOFT_WEIGHT, RecipeRun, SelectionRule, select, split_dataset
    from edgebm.pipeline.settings import data_scenario, default_export_data, named_city_drops
    from edgebm.pipeline.context import ExportContext
    from edgebm.profiles import load_profile
    from edgebm.train import TrainConfig

    torch.set_num_threads(1)
    t_start = time.perf_counter()
    n, rounds, per_round = (3000, 8, 100) if quick else (DEFAULT_SAMPLES, 25, 300)
    cfg = TrainConfig(epochs=4, seed=0, soft_weight=SOFT_WEIGHT) if quick else None  # None: the export's per-family epochs
    suffix = "_quick" if quick else ""
    prof = load_profile("smartphone")
    plain_prof = dataclasses.replace(prof, recipe=dataclasses.replace(prof.recipe, distil_weight=0.0))
    ds = default_export_data(n, seed=0)
    scn = data_scenario(ds)
    named = named_city_drops(500 if quick else None)
    train, val, test = split_dataset(ds, 0)
    calib = train.rsrp_b[np.random.default_rng(0).permutation(len(train))[:256]]
    secs: dict[str, float] = {}

    def timed(key, fn):
        t0 = time.perf_counter()
        out = fn()
        secs[key] = secs.get(key, 0.0) + time.perf_counter() - t0
        return out

    rows: list[dict] = []  # one per graph: name, kind, lineage, path, graph (score output), parent
    with ScratchDir("edgebm-bench-compress") as tmp:
        ctx = ExportContext(ds, train, val, test, calib, 0, Path(tmp), cfg, None, None, 200)
        rr = RecipeRun(ctx)
        choice, teacher = timed("teacher", lambda: rr.teacher(prof))
        students = {f: timed(f"{f} (KD)", lambda f=f: rr.student(prof, f, teacher)) for f in ("mlp", "dscnn")}
        plain = {f: timed(f"{f} (plain)", lambda f=f: rr.student(plain_prof, f, teacher)) for f in ("mlp", "dscnn")}
        pruned = {("mlp", r): timed("mlp pruning", lambda r=r: rr.pruned(prof, students["mlp"], teacher, r)) for r in MLP_RATIOS}
        if not quick:
            pruned.update({("dscnn", r): timed("dscnn pruning", lambda r=r: rr.pruned(prof, students["dscnn"], teacher, r))
                           for r in DSCNN_RATIOS})
        classical = {f: timed(f, lambda f=f: rr.student(prof, f, None)) for f in ("svm_linear", "tree", "gbt", "sgd")}
        # the recipe's own choice for the profile (reuses everything above; may add its own pruning points)
        pc = timed("recipe candidates + gate", lambda: rr.candidates(prof))
        chosen = select(pc.candidates, SelectionRule.from_profile(prof))

        def add(sm, kind, label=None):
            rows.append({"model": label or sm.name, "kind": kind, "sm": sm, "path": sm.graph.path, "precision": "fp32",
                         "steps": [s.step for s in sm.lineage], "val_top1": sm.val.top1, "base": label or sm.name})

        add(teacher, "teacher")
        for f in ("mlp", "dscnn"):
            add(students[f], "distilled", f"{f} (KD)")
            add(plain[f], "plain", f"{f} (no teacher)")
        for (f, r), sm in pruned.items():
            add(sm, "pruned", f"{f} (KD) pruned {r:.1%}")
        for f, sm in classical.items():
            add(sm, "classical")
        seen = {id(r["sm"]) for r in rows}
        for sm in pc.models.values():  # pruning points the recipe's own search added (its bisection ratios)
            if "prune" in sm.extra and id(sm) not in seen:
                add(sm, "pruned", f"{sm.family} (KD) pruned {sm.extra['prune']['ratio']:.1%}")
        for row in [r for r in rows if r["kind"] in ("teacher", "distilled", "pruned")]:
            for prec in ("int8", "fp16") if row["kind"] != "pruned" else ("int8",):
                path, q, v = timed("quantise", lambda row=row, prec=prec: rr.quantised(prof, row["sm"], prec))
                rows.append({**row, "model": f"{row['base']} {prec}", "kind": "quantised", "path": path, "precision": prec,
                             "steps": row["steps"] + ["quantise"], "val_top1": v.top1})

        from edgebm.budget import analyze_onnx

        sessions = {}
        for r in rows:
            st = analyze_onnx(r["path"])
            s = rr.test_scores(r["path"], r["sm"].graph)
            r.update(params=int(st.params), mflops=st.flops / 1e6, kib=st.weight_bytes / 1024,
                     top1=topk_accuracy(s, test.best_a, 1), top3=topk_accuracy(s, test.best_a, 3),
                     named=float(np.mean([topk_accuracy(rr.scores(r["path"], r["sm"].graph, d.rsrp_b), d.best_a, 1)
                                          for d in named.values()])))
            sessions[r["model"]] = (ort_session(r["path"], 1), r["sm"].graph.score_output)
        sessions["floor: Identity graph"] = (ort_session(_identity_onnx(Path(tmp) / "identity.onnx", ds.n_b), 1), "logits")
        t0 = time.perf_counter()
        lat = _interleaved_latency(sessions, np.ascontiguousarray(test.rsrp_b[:1], dtype=np.float32), rounds, per_round, warmup=100)
        secs["latency"] = time.perf_counter() - t0
        for r in rows:
            r.update(lat[r["model"]])
        floor = lat["floor: Identity graph"]
        chosen_row = {"name": chosen.name if chosen else "-", "mflops": chosen.mflops if chosen else None,
                      "val": chosen.val.top1 if chosen else None,
                      "test": float(np.mean(rr.test_scores(chosen.graph.path, chosen.graph).argmax(1) == test.best_a)) if chosen else None,
                      "lineage": [s.step for s in chosen.lineage] if chosen else [], "why": chosen.why if chosen else "-"}
        search_log = pc.search_log

    runtime = time.perf_counter() - t_start
    by = {r["model"]: r for r in rows}
    t = by[teacher.name]
    lines = header(
        "Compression trade-off (suite 4, seed 003 Fig. 6), from the export recipe",
        f"python -m bench compress{' --quick' if quick else ''}",
        [f"the export's default data: {scn['n_samples']} drops in {scn['cities']} random cities (dataset seed {scn['seed']}; none of "
         f"city0..city3; SNR 0-30 dB; 16 -> 64 DFT), split 80/10/10 (seed 0); the recipe chooses on the {len(val)} validation samples; "
         f"test top-1/top-3 on the {len(test)} held-out samples and 'named' = mean top-1 on {len(next(iter(named.values())))} fresh drops "
         "of each of city0..city3 (20 dB) are bench analysis",
         f"recipe of the smartphone profile: teacher {choice.source.describe()}" + (f" ({choice.note})" if choice.note else "")
         + f"; students distilled with KD weight {prof.recipe.distil_weight:g}, T = {prof.recipe.distil_temperature:g}, soft labels {SOFT_WEIGHT:g}; "
         f"'no teacher' = the same student trained on hard + soft labels only; pruned = torch-pruning L2, head kept, fine-tuned "
         f"{prof.recipe.finetune_epochs} epochs with the distillation loss"
         + ("; quick mode: every neural family trained 4 epochs" if quick else "; per-family export epochs (registry)"),
         "int8 = static QDQ with accuracy-aware exclusion (max drop 1 pp on validation), head kept fp32; fp16 = weights and activations fp16",
         "params / MFLOPs / KiB: ONNX graph count (BatchNorm folded; multiply-add = 2 FLOPs; activation Q/DQ counted)",
         f"latency: onnxruntime CPU, 1 thread, batch 1; {rounds} interleaved rounds of {per_round} calls (order rotated, 100 warm-up); "
         "p50 = median of round p50s",
         f"suite runtime {runtime:.0f} s (" + ", ".join(f"{k} {v:.0f} s" for k, v in secs.items()) + ")"],
    )
    lines += ["## Every graph the recipe built", ""]
    lines += md_table(["model", "lineage", "params", "MFLOPs", "weight KiB", "top-1 val", "top-1 test", "top-3 test", "top-1 named",
                       "p50 ms", "round p50 range ms"],
                      [[r["model"], " > ".join(r["steps"]), r["params"], round(r["mflops"], 4), round(r["kib"], 1), round(r["val_top1"], 4),
                        round(r["top1"], 4), round(r["top3"], 4), round(r["named"], 4), round(r["p50_ms"], 4),
                        f"{r['min_ms']:.4f}-{r['max_ms']:.4f}"] for r in rows]
                      + [["floor: Identity graph", "-", 0, 0.0, 0.0, None, None, None, None, round(floor["p50_ms"], 4),
                          f"{floor['min_ms']:.4f}-{floor['max_ms']:.4f}"]])

    ratio_t = (t["mflops"] / chosen_row["mflops"]) if chosen_row["mflops"] else float("nan")
    d_pp = 100 * (chosen_row["test"] - t["top1"]) if chosen_row["test"] is not None else float("nan")
    lines += ["", "## The recipe's choice for `smartphone` (objective: energy per inference)", "",
              f"Chosen on validation: **{chosen_row['name']}** ({' > '.join(chosen_row['lineage'])}), {chosen_row['mflops']:.4f} MFLOPs, "
              f"top-1 val {chosen_row['val']:.4f}, test {chosen_row['test']:.4f}. Teacher: {t['mflops']:.3f} MFLOPs, test top-1 "
              f"{t['top1']:.4f}. Shipped model: **{ratio_t:.1f}x fewer FLOPs** than the teacher, **{d_pp:+.2f} pp** test top-1 "
              f"(target: >= 20x within 1 pp: {'met' if ratio_t >= 20 and d_pp >= -1 else 'missed'}).", ""]
    lines += ["Pruning search of the recipe (per student): " + "; ".join(
        f"{e['student']}: budget fit at ratio {e['fit']['ratio'] if e.get('fit') else '-'}, points "
        + ", ".join(f"{p['ratio']:.3f}" + (f" (skipped: {p['skipped']})" if "skipped" in p else f" -> val {p.get('top1_val', '-')}")
                    for p in e.get("points", [])) for e in search_log if "student" in e), ""]

    # (a) pruning curve
    mlp = by["mlp (KD)"]
    f0 = floor["p50_ms"]
    prow = []
    curve = sorted([r for r in rows if r["precision"] == "fp32" and r["model"].startswith("mlp (KD) pruned")], key=lambda r: -r["mflops"])
    for c in [mlp] + curve:
        name = c["model"]
        prow.append([name, c["params"], round(c["mflops"], 4), round(c["mflops"] / mlp["mflops"], 3), round(c["p50_ms"], 4),
                     round(c["p50_ms"] / mlp["p50_ms"], 3), round(max(c["p50_ms"] - f0, 0) / max(mlp["p50_ms"] - f0, 1e-9), 3),
                     round(100 * (c["top1"] - mlp["top1"]), 2), round(100 * (c["val_top1"] - mlp["val_top1"]), 2)])
    lines += ["## Must-show (a): pruning -- measured latency next to FLOPs (MLP student)", ""]
    lines += md_table(["model", "params", "MFLOPs", "FLOPs ratio", "p50 ms", "latency ratio", "latency ratio above floor",
                       "top-1 test delta pp", "top-1 val delta pp"], prow)
    lines += ["", f"'latency ratio above floor' subtracts the Identity-graph p50 ({f0:.4f} ms).", ""]

    # (b) quantised vs fp32
    qrow = []
    for r in rows:
        if r["kind"] != "quantised":
            continue
        b = by[r["base"]]
        qrow.append([r["base"], r["precision"], round(100 * (r["top1"] - b["top1"]), 2), round(b["p50_ms"], 4), round(r["p50_ms"], 4),
                     round(r["p50_ms"] / b["p50_ms"], 3), "yes" if r["p50_ms"] < b["p50_ms"] else "NO", round(r["kib"] / b["kib"], 3)])
    lines += ["## Must-show (b): int8 / fp16 vs fp32 on this CPU", ""]
    lines += md_table(["model", "precision", "top-1 test delta pp", "fp32 p50 ms", "quantised p50 ms", "latency ratio", "faster?",
                       "weight ratio"], qrow)

    # (c) distillation and teacher -> students
    drow = [[f, round(by[f"{f} (KD)"]["val_top1"], 4), round(by[f"{f} (no teacher)"]["val_top1"], 4), round(by[f"{f} (KD)"]["top1"], 4),
             round(by[f"{f} (no teacher)"]["top1"], 4), round(100 * (by[f"{f} (KD)"]["top1"] - by[f"{f} (no teacher)"]["top1"]), 2)]
            for f in ("mlp", "dscnn")]
    lines += ["", "## Distillation: the same student with and without the teacher", ""]
    lines += md_table(["student", "val KD", "val no teacher", "test KD", "test no teacher", "KD gain pp (test)"], drow)
    crow = []
    for name in ("dscnn (KD) int8", "mlp (KD)", "mlp (KD) int8", "mlp (KD) pruned 75.0%", "mlp (KD) pruned 87.5%", "mlp (KD) pruned 93.8%"):
        if name not in by:
            continue
        c = by[name]
        crow.append([name, c["params"], round(t["params"] / c["params"], 1), round(c["mflops"], 4), round(t["mflops"] / c["mflops"], 1),
                     round(t["kib"] / c["kib"], 1), round(t["p50_ms"] / c["p50_ms"], 2), round(100 * (c["top1"] - t["top1"]), 2)])
    lines += ["", f"## Must-show (c): teacher ({t['params']:,} params, {t['mflops']:.2f} MFLOPs, test top-1 {t['top1']:.4f}) -> students", ""]
    lines += md_table(["student", "params", "params reduction x", "MFLOPs", "FLOPs reduction x", "weight bytes reduction x",
                       "latency speed-up x", "top-1 test delta pp"], crow)
    lines += ["", "Seed 003 Fig. 6 reference: ResNet-GRU 11.3 M params / 12.2 GFLOPs -> 0.217 M / 155 MFLOPs, about 52x params and 79x "
              "FLOPs, for 2-3 points of top-1.", "", f"![trade-off](compress{suffix}.png)", ""]
    lines += ["## What this shows", "", _summary(by, t, drow, qrow, prow, chosen_row, ratio_t, d_pp, len(test), len(train), choice), ""]
    _plot(plt, rows, chosen_row, out_dir / f"compress{suffix}.png")
    text = "\n".join(lines)
    write_text(out_dir / f"compress{suffix}.md", text)
    return text


_COLORS = {"teach": "tab:red", "distil": "tab:blue", "train": "tab:gray", "prune": "tab:green", "quantise": "tab:cyan"}


def _plot(plt, rows: list[dict], chosen: dict, path: Path) -> None:
    """FLOPs vs test top-1: one marker per lineage step (colour = the step that made the graph), pruning ratios as curves,
    the Pareto front dashed, the recipe's choice starred."""
    fig, ax = plt.subplots(figsize=(12.5, 6.5))
    for r in rows:
        step = r["steps"][-1]
        x = max(r["mflops"], 1e-4)
        ax.scatter(x, 100 * r["top1"], s=30, color=_COLORS.get(step, "k"), alpha=0.75, edgecolor="k", linewidth=0.4,
                   marker="s" if r["precision"] != "fp32" else "o")
        ax.annotate(r["model"], (x, 100 * r["top1"]), fontsize=6, xytext=(3, 2), textcoords="offset points")
    for fam in ("mlp", "dscnn"):
        curve = sorted([r for r in rows if r["precision"] == "fp32" and (r["model"] == f"{fam} (KD)" or r["model"].startswith(f"{fam} (KD) pruned"))],
                       key=lambda r: r["mflops"])
        if len(curve) > 1:
            ax.plot([r["mflops"] for r in curve], [100 * r["top1"] for r in curve], "-", color="tab:green", alpha=0.6, lw=1.2)
    teach = next(r for r in rows if r["kind"] == "teacher")
    for r in rows:
        if r["kind"] == "distilled":
            ax.annotate("", xy=(r["mflops"], 100 * r["top1"]), xytext=(teach["mflops"], 100 * teach["top1"]),
                        arrowprops={"arrowstyle": "->", "color": "tab:blue", "alpha": 0.4, "lw": 0.8})
    pts = sorted(rows, key=lambda r: (r["mflops"], -r["top1"]))
    front, best = [], -1.0
    for r in pts:
        if r["top1"] > best:
            front.append(r)
            best = r["top1"]
    ax.plot([r["mflops"] for r in front], [100 * r["top1"] for r in front], "k--", lw=0.8, alpha=0.5, label="Pareto front (test)")
    if chosen.get("mflops"):
        ax.scatter(chosen["mflops"], 100 * chosen["test"], marker="*", s=260, color="gold", edgecolor="k", zorder=5,
                   label=f"recipe's choice: {chosen['name']}")
    for step, col in _COLORS.items():
        ax.scatter([], [], color=col, label=f"step: {step}", s=30)
    ax.scatter([], [], marker="s", color="w", edgecolor="k", label="reduced precision")
    ax.set_xscale("log")
    ax.set_xlabel("MFLOPs per inference (ONNX count, log scale)")
    ax.set_ylabel("held-out test top-1 (%)  [the recipe chose on validation]")
    ax.set_title("Compression trade-off from the export recipe (smartphone profile, the export's random-city data)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    save_fig(fig, path)
    plt.close(fig)


def _summary(by, t, drow, qrow, prow, chosen, ratio_t, d_pp, n_test: int, n_train: int, choice) -> str:
    best = max((r for r in by.values() if r["kind"] != "teacher"), key=lambda r: r["top1"])
    gap = 100 * (t["top1"] - best["top1"])
    se = 100 * np.sqrt(max(t["top1"] * (1 - t["top1"]), 1e-9) / n_test)
    q8 = [r for r in qrow if r[1] == "int8"]
    out = [
        f"Teacher ({t['mflops']:.2f} MFLOPs): test top-1 {t['top1']:.4f}; the most accurate other graph, {best['model']}, is at "
        f"{best['top1']:.4f} ({-gap:+.2f} pp; binomial standard error of one test top-1 ~{se:.1f} pp)."
        + ((f" The teacher ({choice.source.describe()}) is no more accurate on the test split than its best student"
            + (f" ({choice.note})." if choice.note else ".")
            + " At this data scale every model saturates at about the same top-1 (bench/results/generalise.md finds the same),"
              " so distillation has little to transfer.") if gap <= 0.5 else ""),
        f"On the named cities none of them saw: teacher {t['named']:.4f}, {best['model']} {best['named']:.4f}.",
        "Distillation gain (test): " + ", ".join(f"{r[0]} {r[5]:+.2f} pp" for r in drow) + ".",
        "Pruning the MLP: " + ", ".join(f"{r[0].replace('mlp (KD) pruned ', '')} -> FLOPs {r[3]:.2f}x, p50 {r[5]:.2f}x, "
                                        f"test {r[7]:+.2f} pp" for r in prow[1:])
        + " -- latency falls far less than FLOPs: at these sizes the per-call overhead dominates.",
        f"int8 faster than fp32 for: {', '.join(r[0] for r in q8 if r[6] == 'yes') or 'none'}; not for: "
        f"{', '.join(r[0] for r in q8 if r[6] == 'NO') or 'none'}.",
        f"The recipe shipped {chosen['name']}: {ratio_t:.1f}x fewer FLOPs than the teacher, {d_pp:+.2f} pp test top-1.",
    ]
    return " ".join(out)
