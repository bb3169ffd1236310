"""Suite 6 — domain shifts in the UE emulator and adaptation speed (seed 000's three heterogeneity
types, seed 002's "how many samples to adapt").

1. Emulator runs, one per shift type (``array:8x8``, ``codebook:random64``, ``city:city2``): SE drop
   before the shift, just after it and after the on-device head updates, next to hierarchical and
   exhaustive search on the same trajectories; deadline misses and margin at a 20 ms beam cycle.
2. Adaptation-speed curves per shift, side by side: top-1 and SE drop on held-out shifted-domain samples after
   the head-only update has seen N labelled samples (N = 0, 25, 50, 100, 200, 400), (a) as an **oracle** (the true
   best beam as label, batches of 25, no time budget: what the update could do, not what a UE does) and (b) with
   **emulator labels under the device budget** (the best beam of a noisy full sweep, as the emulator's sweeps find
   it, in batches of 4 as the emulator's updates see them, each update bounded by the profile's ``max_update_ms``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from .common import RESULTS, header, md_table, save_fig, write_text

SHIFTS = ("array:8x8", "codebook:random64", "city:city2")
CURVE_N = (0, 25, 50, 100, 200, 400)


ORACLE_BATCH, DEVICE_BATCH = 25, 4


def _curve(bundle: Path, shift: str, n_test: int, seed: int) -> dict[str, list[dict]]:
    """Held-out accuracy after N labels for the oracle and the device setting (see the module docstring)."""
    from edgebm import baselines as B
    from edgebm import metrics as M
    from edgebm.data.simulated import generate_dataset
    from edgebm.emulator import parse_shift
    from edgebm.evaluate import n_avg_of
    from edgebm.runtime import HeadAdapter, Predictor
    from edgebm.sim import ScenarioConfig

    pred0 = Predictor(bundle)
    base = ScenarioConfig.from_dict(pred0.manifest.dataset["meta"]["scenario"])
    cfg = parse_shift(shift, 0.0).apply(base)
    ds = generate_dataset(cfg, n_samples=max(CURVE_N) + n_test, seed=seed + 101)
    pool, test = ds.subset(np.arange(max(CURVE_N))), ds.subset(np.arange(max(CURVE_N), len(ds)))
    swept = B.exhaustive_search(pool.rsrp_a, pool.noise_dbm, np.random.default_rng(seed + 7), n_avg_of(pool)).chosen
    settings = {"oracle": (pool.best_a, ORACLE_BATCH, 1e9), "device": (swept, DEVICE_BATCH, None)}
    out: dict[str, list[dict]] = {}
    for name, (labels, batch, budget) in settings.items():
        rows = []
        for n in CURVE_N:
            pred = Predictor(bundle)
            timing = None
            if n:
                ad = HeadAdapter(pred, lr=0.1, steps=20, seed=seed, max_update_ms=budget)  # None: the profile's budget
                for lo in range(0, n, batch):
                    ad.update(pool.rsrp_b[lo : min(lo + batch, n)], labels[lo : min(lo + batch, n)])
                timing = ad.timing()
            s = pred.decision_scores(test.rsrp_b)
            drop = M.se_drop(test.rsrp_a, s.argmax(1), test.noise_dbm)
            rows.append({"n": n, "top1": M.topk_accuracy(s, test.best_a, 1), "top3": M.topk_accuracy(s, test.best_a, 3),
                         "se_drop_mean": float(drop.mean()), "se_drop_p90": float(np.percentile(drop, 90)), "timing": timing,
                         "label_noise": float(np.mean(labels[:n] != pool.best_a[:n])) if n else 0.0})
        out[name] = rows
    return out


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
         f"emulator: {ues} UEs, {dur:g} s at the profile's 20 ms beam cycle, shift at {at:g} s; top-3 refinement; adaptation starts "
         "at the shift (the 'before' window runs the bundle as shipped); labels from hierarchical fallbacks and periodic full "
         "sweeps (every 25 cycles per UE while labels are wanted, every 250 after), at most 200 labels gathered after the shift; "
         "head update every 5 cycles within the profile's 5 ms device budget, 20 % of the labels held back to accept or roll back "
         "each update",
         "edgebm pays per UE and cycle: Set B (16) + serving-beam re-measurement (1) + top-3 refinement (3), or + the 4 HS children "
         "on a fallback, or + 64 on a full sweep; HS pays 16 + 4, exhaustive 64 (columns 'beams')",
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
                a["hierarchical"]["se_drop_mean"], a["exhaustive"]["se_drop_mean"], b["edgebm"]["beams_per_cycle"], a["edgebm"]["beams_per_cycle"],
                a["edgebm"]["effective_se_mean"], a["hierarchical"]["effective_se_mean"], a["exhaustive"]["effective_se_mean"],
                s["recovered_fraction"], s["labels_used"], "yes" if s["beats_hs_effective_se"] else "no",
            ])
            t, ad = k["timing"], k["adaptation"]
            timing_rows.append([shift, t["latency_p50_ms"], t["latency_p99_ms"], t["deadline_ms"], t["margin_p99_ms"], t["deadline_misses"],
                                ad["updates"], ad["device_ms_mean"], ad["device_ms_p99"], ad["device_ms_max"], ad["budget_ms"], ad["overruns"],
                                ad["rolled_back"]])
            curve_rows[shift] = _curve(bundle, shift, 1000 if quick else 3000, seed=0)
    lines += ["## Emulator: SE drop before / just after / after adaptation (edgebm), next to HS and exhaustive after adaptation", ""]
    lines += md_table(["shift", "edgebm before", "edgebm just after", "edgebm adapted", "HS adapted-window", "exhaustive adapted-window",
                       "edgebm beams before", "edgebm beams adapted", "edgebm eff. SE", "HS eff. SE", "exhaustive eff. SE",
                       "recovered SE fraction", "labels used (after the shift)", "beats HS (eff. SE)"], summary_rows)
    lines += ["", "Per-run reports (kpis.json, summary.md, SE-over-time, SE-drop CDF and latency plots): "
              + ", ".join(f"[`emulate_{s.replace(':', '_')}/`](emulate_{s.replace(':', '_')}/summary.md)" for s in SHIFTS), ""]
    lines += ["## Deadlines and update cost (device-scaled: host time x the profile's slowdown 2.5)", ""]
    lines += md_table(["shift run", "inference p50 ms", "p99 ms", "deadline ms", "margin at p99 ms", "deadline misses", "head updates",
                       "update mean ms", "update p99 ms", "update max ms", "update budget ms", "overruns", "rolled back"], timing_rows)
    lines += ["", "## Adaptation speed: held-out shifted-domain accuracy after N labelled samples (head-only SGD)", "",
              f"(a) **oracle**: true best beam as label, batches of {ORACLE_BATCH}, no time budget: an upper bound, not what a UE "
              f"does. (b) **device**: the best beam of a noisy full sweep (what the emulator's sweeps find), batches of "
              f"{DEVICE_BATCH}, every update bounded by the profile's max_update_ms (device-scaled, measured). Both with the "
              "held-out acceptance check (20 % of the labels held back; an update that raises their loss is rolled back).", ""]
    rows = []
    for shift, curves in curve_rows.items():
        for o, d in zip(curves["oracle"], curves["device"]):
            t = d["timing"] or {}
            rows.append([shift, o["n"], o["top1"], d["top1"], o["se_drop_mean"], d["se_drop_mean"], round(100 * d["label_noise"], 1),
                         t.get("updates"), t.get("device_ms_mean"), t.get("device_ms_p99"), t.get("device_ms_max"), t.get("overruns"),
                         t.get("rolled_back")])
    lines += md_table(["shift", "labelled samples", "top-1 oracle", "top-1 device", "SE drop oracle", "SE drop device",
                       "device label errors %", "device updates", "update mean ms", "p99 ms", "max ms", "overruns", "rolled back"], rows)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for j, (shift, curves) in enumerate(curve_rows.items()):
        color = f"C{j}"
        for name, style in (("oracle", "--"), ("device", "-")):
            rs = curves[name]
            n = [r["n"] for r in rs]
            axes[0].plot(n, [r["top1"] for r in rs], style, marker="o", color=color, label=f"{shift} ({name})")
            axes[1].plot(n, [r["se_drop_mean"] for r in rs], style, marker="o", color=color, label=f"{shift} ({name})")
    axes[0].set_ylabel("top-1 on shifted domain")
    axes[1].set_ylabel("mean SE drop vs genie")
    for ax in axes:
        ax.set_xlabel("labelled samples seen on the device")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("dashed: oracle (genie labels, no time budget); solid: emulator labels under the device budget", fontsize=9)
    fig.tight_layout()
    save_fig(fig, out_dir / "adaptation_curve.png")
    plt.close(fig)
    lines += ["", "![adaptation curve](adaptation_curve.png)", ""]
    text = "\n".join(lines)
    write_text(out_dir / "adaptation.md", text)
    return text
