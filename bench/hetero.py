"""Suite 3 — UE heterogeneity (seed 000 Fig. 3): array, codebook and location shifts.

For each heterogeneity type a model is trained under the "train" condition and evaluated under the
"train" and "test" conditions; the relative SE drop vs the genie (mean and p90) is reported for the
DNN, two-level hierarchical search (HS), exhaustive search (ES) and edgebm after the on-device
head-only update with 200 labelled samples of the test condition.

- array: 4x4 UE UPA -> 8x8;
- codebook: one random 16-beam subset of a x4 oversampled DFT (seed 1) -> another (seed 2);
- location: quadrant q0 -> quadrants q1..q3 pooled.
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from .common import RESULTS, header, md_table, save_fig, write_text

N_LABELS = 200


def _conditions():
    from edgebm.sim import ScenarioConfig

    base = ScenarioConfig()
    return [
        ("array 4x4 -> 8x8", replace(base, ue_array=(4, 4)), [replace(base, ue_array=(8, 8))]),
        ("codebook subset 1 -> 2", replace(base, codebook_a="random", set_a=16, codebook_seed=1),
         [replace(base, codebook_a="random", set_a=16, codebook_seed=2)]),
        ("location q0 -> q1..q3", replace(base, region="q0"), [replace(base, region=q) for q in ("q1", "q2", "q3")]),
    ]


def run(quick: bool = False, out_dir: Path = RESULTS, argv: str = "") -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edgebm import baselines as B
    from edgebm import metrics as M
    from edgebm.data.simulated import generate_dataset
    from edgebm.pipeline import export_for_profile
    from edgebm.runtime import HeadAdapter, Predictor
    from edgebm.train import TrainConfig

    n_train, n_test, epochs = (1500, 700, 8) if quick else (6000, 2000, 30)
    rng = np.random.default_rng(0)
    rows, bars = [], []
    with tempfile.TemporaryDirectory() as td:
        for i, (name, train_cfg, test_cfgs) in enumerate(_conditions()):
            ds_train = generate_dataset(train_cfg, n_train, seed=10 + i)
            res = export_for_profile("smartphone", ds_train, Path(td) / f"b{i}", families=["mlp"], latency_runs=50,
                                     train_cfg=TrainConfig(epochs=epochs, seed=0, soft_weight=0.2))
            in_dist = res.bundle_dir and generate_dataset(train_cfg, n_test, seed=100 + i)
            per = max(1, (n_test + N_LABELS) // len(test_cfgs))
            parts = [generate_dataset(c, per, seed=200 + i * 10 + j) for j, c in enumerate(test_cfgs)]
            arrays = {k: np.concatenate([p.arrays[k] for p in parts]) for k in parts[0].arrays}
            from edgebm.data import BeamDataset

            shifted = BeamDataset(arrays=arrays, codebooks=parts[0].codebooks, meta=parts[0].meta)
            order = rng.permutation(len(shifted))
            adapt_set, test_set = shifted.subset(order[:N_LABELS]), shifted.subset(order[N_LABELS:])
            for cond, ds in (("train", in_dist), ("test", test_set)):
                pred = Predictor(res.bundle_dir)
                n_avg = 24
                sels = {
                    "DNN": B.Selection("DNN", pred.decision_scores(ds.rsrp_b).argmax(1), np.full(len(ds), ds.n_b)),
                    "HS": B.hierarchical_search(ds.rsrp_b, ds.rsrp_a, ds.codebooks["cb_children"], ds.noise_dbm, rng, n_avg),
                    "ES": B.exhaustive_search(ds.rsrp_a, ds.noise_dbm, rng, n_avg),
                }
                if cond == "test":
                    ad = HeadAdapter(pred, lr=0.1, steps=20, seed=0, max_update_ms=1e9)
                    for lo in range(0, N_LABELS, 25):
                        ad.update(adapt_set.rsrp_b[lo : lo + 25], adapt_set.best_a[lo : lo + 25])
                    sels[f"edgebm adapted ({N_LABELS} labels)"] = B.Selection("adapted", pred.decision_scores(ds.rsrp_b).argmax(1),
                                                                              np.full(len(ds), ds.n_b))
                for method, sel in sels.items():
                    m = B.selection_metrics(sel, ds.rsrp_a, ds.noise_dbm)
                    rows.append([name, cond, method, 100 * m["se_drop_mean"], 100 * m["se_drop_p90"], m["top1"], m["beams_measured"],
                                 m["effective_se_mean"]])
                    bars.append((name, cond, method, 100 * m["se_drop_mean"], 100 * m["se_drop_p90"]))
    lines = header("UE heterogeneity (suite 3, seed 000 Fig. 3)", f"python -m bench hetero{' --quick' if quick else ''}",
                   [f"DNN = the MLP student (edgebm smartphone bundle), trained on {n_train} samples of the train condition, {epochs} epochs; "
                    f"evaluated on {n_test} samples per condition; edgebm adapted = the same bundle after head-only updates with {N_LABELS} "
                    "labelled samples of the test condition (true best beams, e.g. from full sweeps)",
                    "SE drop = 1 - SE/SE_genie in %, mean and p90; HS and ES measure noisy narrow beams; their overhead shows in beams "
                    "and effective SE (20 ms cycle)"])
    lines += md_table(["heterogeneity", "condition", "method", "SE drop mean %", "SE drop p90 %", "top-1", "beams", "eff. SE b/s/Hz"],
                      [[r[0], r[1], r[2], round(r[3], 2), round(r[4], 2), round(r[5], 3), r[6], round(r[7], 3)] for r in rows])
    get = {(r[0], r[1], r[2]): r for r in rows}
    notes = []
    for name, _, _ in _conditions():
        d_tr, d_te = get[(name, "train", "DNN")], get[(name, "test", "DNN")]
        hs, ad = get[(name, "test", "HS")], get[(name, "test", f"edgebm adapted ({N_LABELS} labels)")]
        notes.append(f"**{name}**: the DNN's mean SE drop goes from {d_tr[3]:.2f} % (p90 {d_tr[4]:.2f} %) to {d_te[3]:.2f} % "
                     f"(p90 {d_te[4]:.2f} %) under the test condition, where HS stays at {hs[3]:.2f} %; after {N_LABELS} labels "
                     f"on the device edgebm is at {ad[3]:.2f} % (p90 {ad[4]:.2f} %), "
                     + ("still behind HS." if ad[3] > hs[3] else "at or below HS.")
                     + f" Effective SE: edgebm adapted {ad[7]:.2f} vs HS {hs[7]:.2f} b/s/Hz.")
    lines += ["", "## What this shows / where edgebm is behind", "",
              "As in seed 000 Fig. 3, non-ML search is stable across conditions while the DNN breaks under codebook and "
              "location heterogeneity. " + " ".join(notes) + " Head-only adaptation closes most of the gap but not all of it "
              "with 200 labels; the array shift barely hurts here because the 8x8 array only sharpens the UE's receive beam."]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4), sharey=False)
    for ax, (name, _, _) in zip(axes, _conditions()):
        sub = [b for b in bars if b[0] == name]
        labels = [f"{b[2]}\n({b[1]})" for b in sub]
        x = np.arange(len(sub))
        ax.bar(x, [b[3] for b in sub], color=["tab:blue" if "DNN" in b[2] else "tab:orange" if b[2] == "HS" else "tab:green" if b[2] == "ES" else "tab:purple" for b in sub])
        ax.scatter(x, [b[4] for b in sub], marker="_", s=300, color="k", label="p90")
        ax.set_xticks(x, labels, fontsize=7, rotation=30, ha="right")
        ax.set_title(name)
        ax.set_ylabel("relative SE drop vs genie (%)")
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    save_fig(fig, out_dir / "hetero.png")
    plt.close(fig)
    lines += ["", "![heterogeneity](hetero.png)", ""]
    text = "\n".join(lines)
    write_text(out_dir / "hetero.md", text)
    return text
