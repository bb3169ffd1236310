"""KPIs, Markdown summary and PNG plots of an emulator run (written atomically)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .. import metrics as M
from ..atomic import atomic_folder
from ..data.dataset import atomic_write
from .loop import EmulatorResult
from .monitoring import mark_decisions, monitoring_md, shift_detection

__all__ = ["compute_kpis", "write_report"]


def _method_kpis(se: np.ndarray, genie: np.ndarray, beams: np.ndarray, parts: dict[str, np.ndarray], cycle_ms: float) -> dict[str, Any]:
    drop = np.where(genie > 0, 1.0 - se / np.maximum(genie, 1e-12), 0.0)
    eff = M.effective_se(se, beams, cycle_ms)
    return {
        "se_mean": float(se.mean()),
        "se_drop_mean": float(drop.mean()),
        "se_drop_p90": float(np.percentile(drop, 90)),
        "beams_per_cycle": float(beams.mean()),
        "beams_by_component": {c: float(v.mean()) for c, v in parts.items()},
        "effective_se_mean": float(eff.mean()),
    }


def _all_methods(res: EmulatorResult, a: int = 0, b: int | None = None) -> dict[str, dict[str, Any]]:
    rows = slice(a, b)
    return {m: _method_kpis(res.se[m][rows], res.se_genie[rows], res.beams[m][rows], {c: v[rows] for c, v in res.beam_parts[m].items()},
                            res.cycle_ms) for m in res.se}


def _windows(res: EmulatorResult, window: int) -> list[dict[str, Any]]:
    """Per shift: the cycles just before it, just after it, and at the end of its phase."""
    T = len(res.t_s)
    starts = [s["cycle"] for s in res.shifts] + [T]
    out = []
    for i, sh in enumerate(res.shifts):
        st, end = sh["cycle"], starts[i + 1]
        prev = starts[i - 1] if i > 0 else 0
        w = max(1, min(window, (end - st) // 3, max(st - prev, 1)))
        out.append({"shift": f"{sh['kind']}:{sh['value']}", "at_s": sh["at_s"],
                    "before": (max(prev, st - w), st), "just_after": (st, st + w), "adapted": (end - w, end)})
    return out


def _timing(ms: list[float]) -> dict[str, float]:
    return {"device_ms_mean": float(np.mean(ms)) if ms else 0.0, "device_ms_p99": float(np.percentile(ms, 99)) if ms else 0.0,
            "device_ms_max": float(np.max(ms)) if ms else 0.0}


def compute_kpis(res: EmulatorResult, window: int = 50) -> dict[str, Any]:
    """Totals per method (with beams per cycle by component), per-shift before / just-after / adapted windows,
    timing, fallback by rule, and the on-device updates (measured device time, overruns, rollbacks)."""
    shifts = []
    for i, w in enumerate(_windows(res, window)):
        row: dict[str, Any] = {"shift": w["shift"], "at_s": w["at_s"]}
        for name in ("before", "just_after", "adapted"):
            a, b = w[name]
            row[name] = {"cycles": [int(a), int(b)], **_all_methods(res, a, b)}
        # relative SE (SE / genie SE) after adaptation over relative SE before the shift: a new array or
        # city changes the absolute SE the genie can reach, so absolute SE ratios would mislead
        pre = 1.0 - row["before"]["edgebm"]["se_drop_mean"]
        row["recovered_fraction"] = float((1.0 - row["adapted"]["edgebm"]["se_drop_mean"]) / pre) if pre > 0 else None
        lab = res.labels[i + 1] if i + 1 < len(res.labels) else {"gathered": 0, "used": 0}
        row["labels_gathered"], row["labels_used"] = int(lab["gathered"]), int(lab["used"])
        row["beats_hs_effective_se"] = bool(row["adapted"]["edgebm"]["effective_se_mean"] > row["adapted"]["hierarchical"]["effective_se_mean"])
        shifts.append(row)
    for row, det in zip(shifts, shift_detection(res.monitoring, len(shifts))):
        row.update(det)
    lat = res.latency_ms[np.isfinite(res.latency_ms)]  # NaN: the model did not run (deactivated by life-cycle management)
    if lat.size == 0:
        lat = np.zeros(1)
    upd = [u["device_ms"] for u in res.updates]
    budget = float(res.updates[0]["budget_ms"]) if res.updates else None
    return {
        "config": res.config,
        "cycles": int(len(res.t_s)),
        "ues": int(res.latency_ms.shape[1]),
        "cycle_ms": res.cycle_ms,
        "methods": _all_methods(res),
        "shifts": shifts,
        "timing": {
            "deadline_ms": res.deadline_ms,
            "latency_p50_ms": float(np.percentile(lat, 50)),
            "latency_p99_ms": float(np.percentile(lat, 99)),
            "latency_max_ms": float(lat.max()),
            "margin_p99_ms": float(res.deadline_ms - np.percentile(lat, 99)),
            "deadline_misses": int((lat > res.deadline_ms).sum()),
            "stale_decisions": int(res.stale.sum()),
        },
        "fallback_rate": float(res.fallback.mean()),
        "fallback_rate_low_confidence": float(res.fallback_conf.mean()),
        "fallback_rate_rsrp_drop": float(res.fallback_drop.mean()),
        "full_sweep_rate": float(res.full_sweep.mean()),
        "adaptation": {
            "starts_at_s": res.adaptation_from_s,
            "updates": len(res.updates),
            "labels": int(sum(u["n_new"] for u in res.updates)),
            "steps_mean": float(np.mean([u["steps"] for u in res.updates])) if res.updates else 0.0,
            **_timing(upd),
            "host_wall_ms_p99": float(np.percentile([u["wall_ms"] for u in res.updates], 99)) if res.updates else 0.0,
            "budget_ms": budget,
            "overruns": int(sum(bool(u["overrun"]) for u in res.updates)),
            "rolled_back": int(sum(not u["accepted"] for u in res.updates)),
        },
        "monitoring": res.monitoring,
        "wall_seconds": round(res.seconds, 2),
    }


def _summary_md(k: dict[str, Any]) -> str:
    c = k["config"]
    src = c.get("city_source", "the bundle's own city")  # where the city came from (reports before it was recorded: the bundle's)
    lines = [
        f"# Emulator run: {c['family']} bundle for `{c['profile']}`",
        "",
        f"{k['ues']} UEs x {k['cycles']} beam cycles of {k['cycle_ms']:g} ms in {c['scenario']['city']} "
        f"({src}; seed {c['seed']}); bundle `{c['bundle']}`; "
        f"inference on {c.get('backend_reason', 'onnxruntime')}; "
        f"wall time {k['wall_seconds']} s.",
        *[f"The codebook-agnostic bundle took phase {ch['phase']}'s Set A codebook ({ch['set_a']} beams, sha256 "
          f"{ch['codebook_a'][:12]}) through `Predictor.set_codebook`." for ch in c.get("codebooks_served") or []],
        "",
        "## Totals",
        "",
        "| method | SE b/s/Hz | SE drop mean | SE drop p90 | beams/cycle | effective SE |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for m, v in k["methods"].items():
        lines.append(f"| {m} | {v['se_mean']:.3f} | {v['se_drop_mean']:.4f} | {v['se_drop_p90']:.4f} | {v['beams_per_cycle']:.1f} | {v['effective_se_mean']:.3f} |")
    lines += ["", "What each method pays, beams measured per UE and cycle by component (effective SE = SE x (1 - beams x "
              f"{M.SSB_BEAM_MS:.4g} ms / {k['cycle_ms']:g} ms)):", "", "| method | component | beams/cycle |", "|---|---|---:|"]
    for m, v in k["methods"].items():
        lines += [f"| {m} | {c} | {b:.3f} |" for c, b in v["beams_by_component"].items()]
    t = k["timing"]
    a = k["adaptation"]
    start = "no shift: the bundle ran as shipped" if a["starts_at_s"] is None else f"adaptation starts at the first shift ({a['starts_at_s']:g} s)"
    lines += [
        "",
        f"Inference deadline {t['deadline_ms']:g} ms: device-scaled latency p50 {t['latency_p50_ms']:.3f} ms, p99 {t['latency_p99_ms']:.3f} ms "
        f"(margin {t['margin_p99_ms']:.3f} ms), max {t['latency_max_ms']:.3f} ms; deadline misses {t['deadline_misses']}, "
        f"stale decisions {t['stale_decisions']}.",
        f"Fallback (hierarchical) rate {k['fallback_rate']:.3f} (low confidence {k['fallback_rate_low_confidence']:.3f}, "
        f"RSRP drop {k['fallback_rate_rsrp_drop']:.3f}); full-sweep rate {k['full_sweep_rate']:.3f}.",
        f"On-device updates ({start}): {a['updates']} using {a['labels']} labels, measured device time (CPU time x slowdown) mean "
        f"{a['device_ms_mean']:.3f} ms, p99 {a['device_ms_p99']:.3f} ms, max {a['device_ms_max']:.3f} ms against a {a['budget_ms']} ms "
        f"budget ({a['overruns']} overruns; host wall-time p99 {a['host_wall_ms_p99']:.3f} ms); {a['rolled_back']} updates rolled back "
        "by the held-out check.",
    ]
    for s in k["shifts"]:
        lines += [
            "",
            f"## Shift `{s['shift']}` at {s['at_s']:g} s",
            "",
            "| window | cycles | edgebm SE drop | edgebm beams | edgebm eff. SE | HS SE drop | HS eff. SE | exhaustive SE drop | exhaustive eff. SE |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name in ("before", "just_after", "adapted"):
            w = s[name]
            lines.append(
                f"| {name} | {w['cycles'][0]}-{w['cycles'][1]} | {w['edgebm']['se_drop_mean']:.4f} | {w['edgebm']['beams_per_cycle']:.2f} | "
                f"{w['edgebm']['effective_se_mean']:.3f} | "
                f"{w['hierarchical']['se_drop_mean']:.4f} | {w['hierarchical']['effective_se_mean']:.3f} | "
                f"{w['exhaustive']['se_drop_mean']:.4f} | {w['exhaustive']['effective_se_mean']:.3f} |"
            )
        rec = s["recovered_fraction"]
        lines.append("")
        lines.append(
            f"Recovered {rec:.1%} of the pre-shift relative SE (SE / genie SE) with {s['labels_used']} labelled samples "
            f"gathered after the shift; "
            f"{'beats' if s['beats_hs_effective_se'] else 'does NOT beat'} hierarchical search on effective SE after adaptation."
            if rec is not None else "No pre-shift window."
        )
    lines += monitoring_md(k)
    lines += ["", "Plots: `se_over_time.png`, `se_drop_cdf.png`, `latency_hist.png`.", ""]
    return "\n".join(lines)


def _plots(res: EmulatorResult, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    # SE over time (mean over UEs, smoothed) with shift markers
    fig, ax = plt.subplots(figsize=(9, 4))
    w = max(1, len(res.t_s) // 100)
    kern = np.ones(w)
    norm = np.convolve(np.ones(len(res.t_s)), kern, mode="same")  # moving average without edge droop
    for m, se in {**res.se, "genie": res.se_genie}.items():
        eff = se if m == "genie" else M.effective_se(se, res.beams[m], res.cycle_ms)
        ax.plot(res.t_s, np.convolve(eff.mean(1), kern, mode="same") / norm, label=f"{m} (effective SE)" if m != "genie" else "genie (no overhead)")
    for s in res.shifts:
        ax.axvline(s["at_s"], color="k", ls="--", lw=1)
        ax.text(s["at_s"], ax.get_ylim()[1], f" {s['kind']}:{s['value']}", va="top", fontsize=8)
    mark_decisions(ax, res)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("SE (b/s/Hz)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    names.append(_save(fig, out / "se_over_time.png"))
    # SE drop CDF per method
    fig, ax = plt.subplots(figsize=(6, 4))
    for m, se in res.se.items():
        drop = np.sort((1 - se / np.maximum(res.se_genie, 1e-12)).ravel())
        ax.plot(drop, np.linspace(0, 1, len(drop)), label=m)
    ax.set_xlabel("relative SE drop vs genie")
    ax.set_ylabel("CDF")
    ax.set_xlim(0, max(0.05, float(np.percentile(drop, 99.5))))
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    names.append(_save(fig, out / "se_drop_cdf.png"))
    # latency histogram vs deadline
    fig, ax = plt.subplots(figsize=(6, 4))
    lat = res.latency_ms.ravel()
    ax.hist(lat[np.isfinite(lat)], bins=60, color="tab:blue", alpha=0.8)
    ax.axvline(res.deadline_ms, color="tab:red", ls="--", label=f"deadline {res.deadline_ms:g} ms")
    ax.set_xlabel("device-scaled inference latency (ms)")
    ax.set_ylabel("decisions")
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    names.append(_save(fig, out / "latency_hist.png"))
    plt.close("all")
    return names


def _save(fig, path: Path) -> str:
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))
    return path.name


def write_report(res: EmulatorResult, out_dir: str | Path, window: int = 50,
                 before_swap: Callable[[], Any] | None = None) -> dict[str, Any]:
    """Write ``kpis.json``, ``summary.md`` and the PNG plots as the folder ``out_dir``; returns the KPIs.

    The report is written whole into a temp folder beside ``out_dir`` that then replaces it
    (:func:`edgebm.atomic.atomic_folder`), so no plot of an earlier run survives next to a new report;
    ``before_swap()`` runs just before the swap (the CLI re-checks there that ``out_dir`` is still a report)."""
    out = Path(out_dir)
    k = compute_kpis(res, window)
    with atomic_folder(out, before_swap=before_swap) as tmp:
        k["plots"] = _plots(res, tmp)
        atomic_write(tmp / "kpis.json", lambda f: f.write((json.dumps(k, indent=2, default=float) + "\n").encode()))
        atomic_write(tmp / "summary.md", lambda f: f.write(_summary_md(k).encode()))
    return k
