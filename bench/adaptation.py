"""Suite 6 — domain shifts in the UE emulator and adaptation speed (seed 000's three heterogeneity
types, seed 002's "how many samples to adapt").

1. Emulator runs, one per shift type (``array:8x8``, ``codebook:random64``, ``city:city2``): SE drop
   before the shift, just after it and after the on-device head updates, next to hierarchical and
   exhaustive search on the same trajectories; deadline misses and margin at a 20 ms beam cycle.
2. Offline adaptation curve per shift: top-1 and SE drop on held-out shifted-domain samples after
   the head-only update has seen N labelled samples (N = 0, 25, 50, 100, 200, 400).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from .common import RESULTS, header, md_table, save_fig, write_text

SHIFTS = ("array:8x8", "codebook:random64", "city:city2")
CURVE_N = (0, 25, 50, 100, 200, 400)


def _curve(bundle: Path, shift: str, n_test: int, seed: int) -> list[dict]:
    from edgebm import metrics as M
    from edgebm.data.simulated import generate_dataset
    from edgebm.emulator import parse_shift
    from edgebm.runtime import HeadAdapter, Predictor
    from edgebm.sim import ScenarioConfig

    pred0 = Predictor(bundle)
    base = ScenarioConfig.from_dict(pred0.manifest["dataset"]["meta"]["scenario"])
    cfg = parse_shift(shift, 0.0).apply(base)
    ds = generate_dataset(cfg, n_samples=max(CURVE_N) + n_test, seed=seed + 101)
    pool, test = ds.subset(np.arange(max(CURVE_N))), ds.subset(np.arange(max(CURVE_N), len(ds)))
    rows = []
    for n in CURVE_N:
        pred = Predictor(bundle)
        if n:
            ad = HeadAdapter(pred, lr=0.1, steps=20, seed=seed, max_update_ms=1e9)  # offline: no time cap
            for lo in range(0, n, 25):  # labels arrive in small batches, as in the emulator
                ad.update(pool.rsrp_b[lo : lo + 25], pool.best_a[lo : lo + 25])
        s = pred.decision_scores(test.rsrp_b)
        drop = M.se_drop(test.rsrp_a, s.argmax(1), test.noise_dbm)
        rows.append({"n": n, "top1": M.topk_accuracy(s, test.best_a, 1), "top3": M.topk_accuracy(s, test.best_a, 3),
                     "se_drop_mean": float(drop.mean()), "se_drop_p90": float(np.percentile(drop, 90))})
    return rows


def run(quick: bool = False, out_dir: Path = RESULTS, argv: str = "") -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edgebm.emulator import EmulatorConfig, parse_shift, run_emulator, write_report
    from edgebm.pipeline import default_dataset, export_for_profile
    from edgebm.train import TrainConfig

    ues, dur, at = (6, 3.0, 1.2) if quick else (16, 10.0, 4.0)
    n_train = 6000 if quick else 20000
    lines = header(
        "Domain shifts, on-device adaptation and adaptation speed (suite 6; issue: runtime + emulator)",
        f"python -m bench adaptation{' --quick' if quick else ''}",
        [f"bundle: smartphone profile, MLP family, trained on {n_train} default-scenario samples (city0, 28 GHz, 8x8 BS, 16->64, 20 dB)",
         f"emulator: {ues} UEs, {dur:g} s at the profile's 20 ms beam cycle, shift at {at:g} s; top-3 refinement; labels from "
         "hierarchical fallbacks and periodic full sweeps (every 25 cycles per UE while labels are wanted, every 250 after), "
         "at most 200 labels per shift; head update every 5 cycles",
         "SE drop = 1 - SE/SE_genie per UE and cycle; effective SE = SE x (1 - beams x 5/64 ms / 20 ms)"],
    )
    with tempfile.TemporaryDirectory() as td:
        res = export_for_profile("smartphone", default_dataset(n_train, 0), Path(td) / "smartphone", families=["mlp"],
                                 train_cfg=TrainConfig(epochs=10 if quick else 40, seed=0, soft_weight=0.2))
        bundle = res.bundle_dir
        lines += [f"Bundle: {res.chosen.name}, held-out top-1 {res.metrics['top1']:.3f}, top-3 {res.metrics['top3']:.3f}.", ""]
        summary_rows, curve_rows, timing_rows = [], {}, []
        for shift in SHIFTS:
            cfg = EmulatorConfig(n_ues=ues, duration_s=dur, shifts=(parse_shift(shift, at),), seed=0)
            r = run_emulator(bundle, cfg)
            name = shift.replace(":", "_")
            k = write_report(r, out_dir / f"emulate_{name}", window=25 if quick else 50)
            s = k["shifts"][0]
            b, j, a = s["before"], s["just_after"], s["adapted"]
            summary_rows.append([
                shift, b["edgebm"]["se_drop_mean"], j["edgebm"]["se_drop_mean"], a["edgebm"]["se_drop_mean"],
                a["hierarchical"]["se_drop_mean"], a["exhaustive"]["se_drop_mean"],
                a["edgebm"]["effective_se_mean"], a["hierarchical"]["effective_se_mean"], a["exhaustive"]["effective_se_mean"],
                s["recovered_fraction"], s["labels_used"], "yes" if s["beats_hs_effective_se"] else "no",
            ])
            t = k["timing"]
            timing_rows.append([shift, t["latency_p50_ms"], t["latency_p99_ms"], t["deadline_ms"], t["margin_p99_ms"], t["deadline_misses"],
                                k["adaptation"]["updates"], k["adaptation"]["device_ms_mean"], k["adaptation"]["device_ms_max"], k["adaptation"]["budget_ms"]])
            curve_rows[shift] = _curve(bundle, shift, 1000 if quick else 3000, seed=0)
    lines += ["## Emulator: SE drop before / just after / after adaptation (edgebm), next to HS and exhaustive after adaptation", ""]
    lines += md_table(["shift", "edgebm before", "edgebm just after", "edgebm adapted", "HS adapted-window", "exhaustive adapted-window",
                       "edgebm eff. SE", "HS eff. SE", "exhaustive eff. SE", "recovered SE fraction", "labels used", "beats HS (eff. SE)"],
                      summary_rows)
    lines += ["", "Per-run reports (kpis.json, summary.md, SE-over-time, SE-drop CDF and latency plots): "
              + ", ".join(f"[`emulate_{s.replace(':', '_')}/`](emulate_{s.replace(':', '_')}/summary.md)" for s in SHIFTS), ""]
    lines += ["## Deadlines and update cost (device-scaled: host time x the profile's slowdown 2.5)", ""]
    lines += md_table(["shift run", "inference p50 ms", "p99 ms", "deadline ms", "margin at p99 ms", "deadline misses", "head updates",
                       "update mean ms", "update max ms", "update budget ms"], timing_rows)
    lines += ["", "## Adaptation speed: held-out shifted-domain accuracy after N labelled samples (head-only SGD)", ""]
    rows = [[shift, r["n"], r["top1"], r["top3"], r["se_drop_mean"], r["se_drop_p90"]] for shift, rs in curve_rows.items() for r in rs]
    lines += md_table(["shift", "labelled samples", "top-1", "top-3", "SE drop mean", "SE drop p90"], rows)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for shift, rs in curve_rows.items():
        n = [r["n"] for r in rs]
        axes[0].plot(n, [r["top1"] for r in rs], marker="o", label=shift)
        axes[1].plot(n, [r["se_drop_mean"] for r in rs], marker="o", label=shift)
    axes[0].set_ylabel("top-1 on shifted domain")
    axes[1].set_ylabel("mean SE drop vs genie")
    for ax in axes:
        ax.set_xlabel("labelled samples seen on the device")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_fig(fig, out_dir / "adaptation_curve.png")
    plt.close(fig)
    lines += ["", "![adaptation curve](adaptation_curve.png)", ""]
    text = "\n".join(lines)
    write_text(out_dir / "adaptation.md", text)
    return text
