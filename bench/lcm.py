"""Suite ``lcm`` — life-cycle management on the UE (issue 16): how fast and how reliably the model
monitor notices each kind of shift, what its alarms cost in false alarms and CPU, and what
monitor-driven control is worth in effective SE against always-adapt and never-adapt.

1. Test design: the CUSUM each reference leads to (threshold, exact in-control ARL, detection delay,
   false-alarm probability over the pre-shift labels).
2. Detection, over many seeds per shift kind (UE array, codebook, city): the monitor alone (the
   configuration check off, so array and codebook shifts must be *seen* in the labels), delay from the
   shift to the first alarm, alarms before the shift, false alarms per in-control label against the
   design's ``1/ARL0``; and the configuration path (the UE knows its new array / codebook).
3. Control, same trajectories per seed: never-adapt, always-adapt (the emulator's default: it restarts
   label collection at each shift, i.e. it is told when the shift happens), monitor-driven (one bundle),
   monitor-driven with switching (bundles trained for the shifted conditions registered too); effective
   SE after the shift and over the run, next to hierarchical (HS) and exhaustive search.
4. The default emulator run with monitoring (16 UEs, 10 s, ``city:city2`` at 5 s, seed 0): the issue's
   target (detection within 1 s, no false alarm before the shift) and the monitor's cost per cycle.
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from .common import RESULTS, header, md_table, save_fig, write_text

SHIFTS = {"array": ("array:8x8",), "codebook": ("codebook:random64",), "city": ("city:city1", "city:city2", "city:city3")}
#: bundles trained for the shifted conditions (registered for switching); the base bundle is city0, 1x1, DFT
SWITCH_TARGETS = {"array:8x8": {"ue_array": (8, 8)}, "codebook:random64": {"codebook_a": "random", "codebook_seed": 1},
                  "city:city2": {"city": "city2"}}
MODES = ("never-adapt", "always-adapt", "monitor", "monitor+switch")


def _bundles(tmp: Path, n_train: int, epochs: int) -> tuple[Path, dict[str, Path], dict[str, Any]]:
    from edgebm.data.simulated import generate_dataset
    from edgebm.pipeline import default_dataset, export_for_profile
    from edgebm.sim import ScenarioConfig
    from edgebm.train import TrainConfig

    tc = TrainConfig(epochs=epochs, seed=0, soft_weight=0.2)
    base = export_for_profile("smartphone", default_dataset(n_train, 0), tmp / "city0", families=["mlp"], train_cfg=tc)
    info = {"city0": base.metrics}
    others = {}
    for shift, change in SWITCH_TARGETS.items():
        cfg = replace(ScenarioConfig(), **change)
        name = shift.replace(":", "_")
        r = export_for_profile("smartphone", generate_dataset(cfg, n_train, 0), tmp / name, families=["mlp"], train_cfg=tc)
        others[shift] = r.bundle_dir
        info[name] = r.metrics
    return base.bundle_dir, others, info


def _settings(use_configuration: bool = True, **kw: Any):
    from edgebm.emulator.monitoring import MonitoringSettings

    return MonitoringSettings(use_configuration=use_configuration, **kw)


def _emulate(bundles: list[Path], shift: str, seed: int, ues: int, dur: float, at: float, mode: str, use_configuration: bool = True,
             every: int | None = None):
    from edgebm.emulator import EmulatorConfig, parse_shift, run_emulator

    mon = (_settings(use_configuration, **({"every": every} if every else {})) if mode.startswith("monitor") else None)
    cfg = EmulatorConfig(n_ues=ues, duration_s=dur, shifts=(parse_shift(shift, at),), seed=seed, monitoring=mon, adapt=mode != "never-adapt")
    return run_emulator(bundles if len(bundles) > 1 else bundles[0], cfg)


def _eff(res, method: str, rows: slice) -> float:
    from edgebm import metrics as M

    return float(M.effective_se(res.se[method][rows], res.beams[method][rows], res.cycle_ms).mean())


def _labels_before(cycle: int, ues: int, every: int) -> int:
    """Monitoring labels the staggered schedule gives in cycles [0, cycle)."""
    t = np.arange(cycle)[:, None] + np.arange(ues)[None, :]
    return int(((t % every) == 0).sum())


def _delay_bound_s(p_pre: float, p_post: float, arl0: float, labels_per_s: float) -> float:
    """Lorden's asymptotic lower bound on the mean detection delay of ANY sequential test whose in-control
    ARL is ``arl0``, when the miss rate moves from ``p_pre`` to ``p_post``: ``ln(arl0) / KL(p_post || p_pre)``
    labels, in seconds at ``labels_per_s`` (inf when the rate does not rise)."""
    if p_post <= p_pre:
        return float("inf")
    a, b = min(max(p_pre, 1e-6), 1 - 1e-6), min(max(p_post, 1e-6), 1 - 1e-6)
    kl = b * np.log(b / a) + (1 - b) * np.log((1 - b) / (1 - a))
    return float(np.log(arl0) / kl / labels_per_s)


def run(quick: bool = False, out_dir: Path = RESULTS, argv: str = "") -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edgebm.emulator import write_report
    from edgebm.runtime.monitor import design_cusum

    ues, dur, at = (8, 6.0, 4.0) if quick else (16, 10.0, 5.0)
    det_seeds = range(3) if quick else range(10)
    ctl_seeds = range(2) if quick else range(4)
    n_train, epochs = (6000, 10) if quick else (20000, 40)
    s0 = _settings()
    mcfg = s0.lcm.monitor
    suffix = "_quick" if quick else ""
    lines = header(
        "Life-cycle management: model monitoring, decisions and their worth (issue 16)",
        f"python -m bench lcm{' --quick' if quick else ''}",
        [f"bundles: smartphone profile, MLP family, {n_train} samples, {epochs} epochs; base = city0, 1x1 UE array, DFT Set A "
         "(16 -> 64, 28 GHz, 20 dB); for switching, one bundle each trained on 8x8 UE array / random64 codebook / city2",
         f"emulator: {ues} UEs, {dur:g} s at 20 ms cycles, one shift at {at:g} s; detection over {len(det_seeds)} seeds per shift, "
         f"control over {len(ctl_seeds)} seeds",
         f"monitor: full Set A sweep per UE every {s0.every} cycles ({s0.dense_every} while the serving model adapts), "
         f"CUSUM on the {mcfg.metric} miss within {mcfg.margin_db:g} dB, in-control ARL {mcfg.arl0:g} labels, p1 = {mcfg.odds_ratio:g}x the odds "
         f"of p0, p0 = {mcfg.ref_confidence:g} upper confidence bound of the first {mcfg.n_ref} labels (Phase I)",
         "effective SE = SE x (1 - beams x 5/64 ms / 20 ms); SE drop = 1 - SE/SE_genie"],
    )
    with tempfile.TemporaryDirectory() as td:
        base, others, info = _bundles(Path(td), n_train, epochs)
        lines += ["Held-out top-1 (random drops of each bundle's own scenario): "
                  + ", ".join(f"{k} {v['top1']:.3f}" for k, v in info.items()) + ".", ""]
        shift_cycle = int(round(at * 1e3 / 20.0))

        # -- 2. detection by the monitor alone ------------------------------------------------------------
        det_rows, det_plot, fa_total, armed_total, p0s, costs = [], {}, 0, 0, [], []
        runs: dict[tuple[str, str, int], Any] = {}
        bound_rows = []
        label_rate = ues / s0.every / 0.02  # monitoring labels per second (20 ms cycles)
        for kind, shifts in SHIFTS.items():
            for shift in shifts:
                delays, fas, pre, post, lower = [], 0, [], [], []
                for seed in det_seeds:
                    r = _emulate([base], shift, seed, ues, dur, at, "monitor", use_configuration=False)
                    if kind == "city":
                        runs[(shift, "monitor", seed)] = r  # no configuration change: the same run as control "monitor"
                    m = r.monitoring
                    d = m["detection"][0]["detected_after_s"]
                    delays.append(d)
                    fas += m["false_alarms"]
                    mon = m["final"]["monitors"][m["bundles"][0]]
                    if mon["p0"] is not None:
                        p0s.append(mon["p0"])
                    armed = max(0, _labels_before(shift_cycle, ues, s0.every) - mcfg.n_ref)
                    armed_total += armed
                    costs.append(m["cost_us"])
                    ph = m["phases"]
                    if len(ph) == 2 and ph[0]["labels"] and ph[1]["labels"]:
                        a, b = ph[0]["top1_miss_rate"], ph[1]["top1_miss_rate"]
                        pre.append(a)
                        post.append(b)
                        lower.append(_delay_bound_s(a, b, mcfg.arl0, label_rate))
                fa_total += fas
                bound_rows.append([shift, float(np.mean(pre)) if pre else None, float(np.mean(post)) if post else None,
                                   sum(b > a for a, b in zip(pre, post)), float(np.median(lower)) if lower else None,
                                   sum(x <= 1.0 for x in lower)])
                found = [d for d in delays if d is not None]
                det_plot[shift] = delays
                det_rows.append([shift, f"{len(found)}/{len(delays)}", float(np.median(found)) if found else None,
                                 float(np.mean(found)) if found else None, float(max(found)) if found else None,
                                 sum(d is not None and d <= 1.0 for d in delays), fas])
        # configuration path: the UE knows its new array / codebook
        conf_rows = []
        for shift in ("array:8x8", "codebook:random64"):
            r = _emulate([base], shift, 0, ues, dur, at, "monitor", use_configuration=True)
            runs[(shift, "monitor", 0)] = r
            if shift.startswith("codebook"):  # a run with decisions on its SE-over-time plot
                write_report(r, out_dir / f"lcm_codebook_random64{suffix}", window=25 if quick else 50)
            d = r.monitoring["detection"][0]
            ev = [e for e in r.monitoring["events"] if e["t_s"] >= at - 1e-9]
            conf_rows.append([shift, d["detected_after_s"], d["detected_by"], ", ".join(f"{e['action']}@{e['t_s']:.2f}s" for e in ev[:4])])

        # -- 2b. how often to monitor: detection against overhead -------------------------------------------------
        period_rows = []
        for every in ((25, 100) if quick else (10, 25, 50, 100)):
            for shift in ("codebook:random64", "city:city3"):
                delays, pre_eff = [], []
                for seed in ctl_seeds:
                    r = _emulate([base], shift, seed, ues, dur, at, "monitor", use_configuration=False, every=every)
                    delays.append(r.monitoring["detection"][0]["detected_after_s"])
                    pre_eff.append(_eff(r, "edgebm", slice(0, shift_cycle)))
                    costs.append(r.monitoring["cost_us"])
                found = [d for d in delays if d is not None]
                period_rows.append([every, shift, round(ues / every / 0.02, 1), round(mcfg.n_ref / (ues / every / 0.02), 2), f"{len(found)}/{len(delays)}",
                                    float(np.median(found)) if found else None, float(np.mean(pre_eff)),
                                    round(64 / every * 5 / 64 / 20 * 100, 2)])

        # -- 1. the tests the references led to -------------------------------------------------------------
        n_pre = max(0, _labels_before(shift_cycle, ues, s0.every) - mcfg.n_ref)
        design_rows = []
        for p0 in sorted({round(float(np.percentile(p0s, q)), 3) for q in (0, 50, 100)} if p0s else set()):
            d = design_cusum(p0, mcfg.alternative(p0), mcfg.arl0)
            design_rows.append([p0, round(d.p1, 3), d.up, d.down, d.threshold, round(d.threshold * d.unit, 2), round(d.arl0), round(d.arl1, 1),
                                round(d.false_alarm_probability(n_pre), 4)])

        # -- 3. control ----------------------------------------------------------------------------------
        ctl_rows, ctl_plot = [], {}
        for shift in [s for ss in SHIFTS.values() for s in ss]:
            vals: dict[str, list[float]] = {m: [] for m in (*MODES, "HS", "exhaustive")}
            whole: dict[str, list[float]] = {m: [] for m in MODES}
            for seed in ctl_seeds:
                for mode in MODES:
                    if mode == "monitor+switch" and shift not in SWITCH_TARGETS:
                        continue
                    bl = [base] + list(others.values()) if mode == "monitor+switch" else [base]
                    r = runs.get((shift, mode, seed)) or _emulate(bl, shift, seed, ues, dur, at, mode)
                    post = slice(shift_cycle, None)
                    vals[mode].append(_eff(r, "edgebm", post))
                    whole[mode].append(_eff(r, "edgebm", slice(None)))
                    if mode == "never-adapt":
                        vals["HS"].append(_eff(r, "hierarchical", post))
                        vals["exhaustive"].append(_eff(r, "exhaustive", post))
                    if r.monitoring:
                        costs.append(r.monitoring["cost_us"])
            mean = {m: (float(np.mean(v)) if v else None) for m, v in vals.items()}
            ctl_plot[shift] = mean
            ctl_rows.append([shift, *[mean[m] for m in (*MODES, "HS", "exhaustive")],
                             *[float(np.mean(whole[m])) if whole[m] else None for m in MODES]])

        # -- 4. the default run -----------------------------------------------------------------------------
        r = _emulate([base], "city:city2", 0, ues, dur, at, "monitor")
        k = write_report(r, out_dir / f"lcm_default_city2{suffix}", window=25 if quick else 50)
        m = k["monitoring"]
        costs.append(m["cost_us"])
        target = k["shifts"][0]

    # -- write-up --------------------------------------------------------------------------------------
    lines += ["## 1. The alarm each reference leads to", "",
              (f"p0 from Phase I over all detection runs ranged {min(p0s):.3f} - {max(p0s):.3f} (median {np.median(p0s):.3f}). "
               if p0s else "No run finished its Phase I (too few labels). ") +
              f"Exact for the integer CUSUM that runs (Brook-Evans chain); the last column is the probability of at least one "
              f"false alarm over the {n_pre} armed in-control labels a default-length pre-shift period gives, if labels were independent.", ""]
    lines += md_table(["p0", "p1", "up", "down", "threshold H", "h (nats)", "ARL0 (labels)", "ARL1 = delay at p1 (labels)",
                       f"P(false alarm in {n_pre} labels)"], design_rows)
    lines += ["", "## 2. Detection by the monitor alone (configuration check off)", ""]
    lines += md_table(["shift", "detected", "median delay s", "mean delay s", "max delay s", "within 1 s", "alarms before the shift"], det_rows)
    rate = fa_total / armed_total if armed_total else float("nan")
    lines += ["", f"False alarms before the shift: {fa_total} over {armed_total} armed in-control labels "
              f"({len(det_seeds) * sum(len(v) for v in SHIFTS.values())} runs) = {rate * 1000:.2f} per 1000 labels; "
              f"the design's rate for independent labels is {1000 / mcfg.arl0:.2f} per 1000.", ""]
    lines += ["What the labels allow: top-1-within-margin miss rate before the shift (whole pre-shift period) and after it "
              "(whole post-shift period), per seed, and Lorden's lower bound on the mean delay of any test with the same "
              f"in-control ARL ({mcfg.arl0:g} labels) given those rates, at {label_rate:g} labels/s:", ""]
    lines += md_table(["shift", "miss rate before (mean)", "miss rate after (mean)", "seeds where it rose",
                       "delay bound, median over seeds (s)", "seeds where the bound allows <= 1 s"], bound_rows)
    lines += ["", "Configuration path (the UE is configured with its new array / codebook; the bundle's functionality block does not cover it):", ""]
    lines += md_table(["shift", "detected after s", "by", "decisions after the shift"], conf_rows)
    lines += ["", "## 2b. How often to monitor: detection against overhead (monitor alone, "
              f"{len(ctl_seeds)} seeds)", "",
              "Effective SE before the shift (the cost of the monitoring sweeps shows here: nothing else differs between the rows); "
              "the last column is the airtime a full 64-beam sweep per UE every N cycles costs at 5/64 ms per beam and 20 ms cycles. "
              f"A Phase I that is not over by the shift ({at:g} s) calibrates the reference on shifted labels: nothing is detected then.", ""]
    lines += md_table(["every N cycles", "shift", "labels/s", "Phase I (s)", "detected", "median delay s", "effective SE before the shift",
                       "sweep airtime %"], period_rows)
    lines += ["", "## 3. Effective SE after the shift (b/s/Hz, mean over seeds): monitor-driven control against always- and never-adapt", ""]
    lines += md_table(["shift", *[f"{m} (after)" for m in MODES], "HS (after)", "exhaustive (after)", *[f"{m} (whole run)" for m in MODES]], ctl_rows)
    c = m["cost_us"]
    tl = k["timing"]
    det = target["detected_after_s"]
    lines += ["", "## 4. The default emulator run with monitoring (target)", "",
              f"`city:city2` at {at:g} s, {ues} UEs, seed 0: shift "
              + (f"detected after {det:.2f} s ({target['detected_by']}, {target['detection_action']})" if det is not None else "not detected")
              + f"; false alarms before the shift: {m['false_alarms']}. Target (detection within 1 s, no false alarm): "
              + ("**met**." if det is not None and det <= 1.0 and m["false_alarms"] == 0 else "**missed**."),
              f"Monitor cost per cycle ({c['clock']}): host p50 {c['host_p50']:.1f} us, p99 {c['host_p99']:.1f} us, max {c['host_max']:.1f} us; "
              f"device-scaled (x{c['slowdown_vs_host']:g}) p99 {c['device_p99']:.1f} us against the {tl['deadline_ms']:g} ms inference budget "
              f"(inference p99 {tl['latency_p99_ms']:.3f} ms) and the {k['cycle_ms']:g} ms beam cycle; one-off test design {c['design_ms']:.1f} ms.",
              f"Report: [`lcm_default_city2{suffix}/`](lcm_default_city2{suffix}/summary.md) (kpis.json with `monitoring`, SE over time with the decisions); "
              f"a run with decisions to mark (`codebook:random64`, configuration path, seed 0): [`lcm_codebook_random64{suffix}/`](lcm_codebook_random64{suffix}/summary.md).", ""]
    allc = {q: [x[q] for x in costs] for q in ("host_p50", "host_p99", "host_max", "device_p99")}
    lines += [f"Over all {len(costs)} monitored runs: per-cycle host p99 median {np.median(allc['host_p99']):.1f} us "
              f"(worst {max(allc['host_p99']):.1f} us), worst single cycle {max(allc['host_max']):.1f} us; device-scaled p99 worst "
              f"{max(allc['device_p99']):.1f} us.", ""]

    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    names = list(det_plot)
    for i, s in enumerate(names):
        d = [x for x in det_plot[s] if x is not None]
        miss = sum(x is None for x in det_plot[s])
        axes[0].scatter(np.full(len(d), i) + np.linspace(-0.15, 0.15, len(d)) if d else [], d, s=14)
        if miss:
            axes[0].text(i, 0.02, f"{miss} not\ndetected", ha="center", fontsize=7)
    axes[0].axhline(1.0, color="k", ls="--", lw=0.8, label="1 s target")
    axes[0].set_xticks(range(len(names)), names, rotation=20, fontsize=8)
    axes[0].set_ylabel("delay from shift to first alarm (s)")
    axes[0].set_ylim(0, None)
    axes[0].set_title("monitor alone (configuration check off)", fontsize=9)
    axes[0].legend(fontsize=8)
    width = 0.13
    ctl_names = list(ctl_plot)
    for j, mname in enumerate((*MODES, "HS")):
        ys = [ctl_plot[s][mname] if ctl_plot[s][mname] is not None else np.nan for s in ctl_names]
        axes[1].bar(np.arange(len(ctl_names)) + (j - 2) * width, ys, width, label=mname)
    lo = np.nanmin([v for s in ctl_names for v in ctl_plot[s].values() if v is not None])
    axes[1].set_ylim(lo * 0.97, None)
    axes[1].set_xticks(range(len(ctl_names)), ctl_names, rotation=20, fontsize=8)
    axes[1].set_ylabel("effective SE after the shift (b/s/Hz)")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    save_fig(fig, out_dir / f"lcm{suffix}.png")
    plt.close(fig)
    lines += [f"![detection and control](lcm{suffix}.png)", ""]
    text = "\n".join(lines)
    write_text(out_dir / f"lcm{suffix}.md", text)
    return text
