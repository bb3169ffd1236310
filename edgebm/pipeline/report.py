"""What the export job writes about its choice: the manifest fields and budget.md (one formatter for both tables)."""

from __future__ import annotations

import platform
import time
from typing import Any

from .. import __version__
from ..deploy.onnx_export import INPUT_NAME
from ..profiles import DeviceProfile
from .candidates import Candidate
from .selection import OBJECTIVE_UNITS, SelectionRule

__all__ = ["manifest_fields", "budget_markdown", "named_cities_markdown", "fmt", "candidate_table_rows", "CANDIDATE_COLUMNS"]

CANDIDATE_COLUMNS = ("candidate", "lineage", "top-1 val", "MFLOPs", "params", "KiB", "device p99 ms", "cost", "verdict", "why")


def fmt(v: Any, digits: int = 3) -> str:
    """Table cell: '-' for None, fixed digits for floats, thousands separators for ints."""
    if v is None:
        return "-"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def candidate_table_rows(cands: list[Candidate]) -> list[list[str]]:
    """One formatted row per candidate in :data:`CANDIDATE_COLUMNS` order (CLI and budget.md)."""
    rows = []
    for c in cands:
        r = c.row()
        rows.append([r["candidate"], " > ".join(r["lineage"]) or "-", fmt(r["top1_val"], 4), fmt(r["mflops"], 4), fmt(r["params"]),
                     fmt(r["kib"], 1), fmt(r["device_p99_ms"], 4), fmt(r["cost"], 4), "chosen" if c.lost == "chosen" else r["verdict"],
                     "" if c.lost == "chosen" else r["why"]])
    return rows


def manifest_fields(prof: DeviceProfile, ds, chosen: Candidate, model, cands: list[Candidate], split_sizes: dict[str, int],
                    teacher: dict[str, Any] | None, rule: SelectionRule, metrics_test: dict[str, Any],
                    search_log: list[dict]) -> dict[str, Any]:
    """The manifest of the chosen candidate (before ``write_bundle`` adds schema and file hashes)."""
    from ..models.preprocess import PREPROCESS_DEFAULTS

    g = chosen.graph
    assert g is not None and chosen.report is not None and chosen.val is not None
    man: dict[str, Any] = {
        "edgebm_version": __version__,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "profile": prof.name,
        "profile_config": prof.to_dict(),
        "family": chosen.family,
        "candidate": chosen.name,
        "model_config": g.model_config,
        "precision": chosen.precision,
        "model_file": "model.onnx",
        "threads": prof.compute.threads,
        "inputs": [{"name": INPUT_NAME, "shape": ["batch", ds.n_b], "dtype": "float32", "units": "dBm"}],
        "outputs": g.outputs,
        "score_output": g.score_output,
        "score_kind": g.score_kind,
        "n_beams_a": ds.n_a,
        "n_beams_b": ds.n_b,
        "preprocessing": {**PREPROCESS_DEFAULTS, "in_graph": True},
        "codebook": {"file": "codebook.npz", "set_a": ds.n_a, "set_b": ds.n_b, "elevation": "from zenith, deg"},
        "dataset": {"meta": ds.meta, "n_samples": len(ds), "split": split_sizes},
        "training": {**model.train_cfg.to_dict(), **({"best_epoch": model.result.best_epoch, "epochs_run": model.result.epochs_run,
                                                      "seconds": round(model.result.seconds, 2)} if model.result else {})},
        "metrics_heldout": metrics_test,
        "metrics_val": {"top1": chosen.val.top1, "top3": chosen.val.top3, "n": int(len(chosen.val.hits))},
        "parity": chosen.parity,
        "budget": chosen.report.to_dict(),
        "verdict": "pass" if chosen.passed else "fail",
        "teacher": teacher,
        "lineage": [s.to_dict() for s in chosen.lineage],
        "selection": {**rule.to_manifest(), "chosen": chosen.name,
                      "cost": {"value": chosen.cost, "unit": OBJECTIVE_UNITS[rule.objective]}},
        "recipe": {**prof.recipe.__dict__, "prune_search": search_log},
        "candidates": [c.row() for c in cands],
        "host": {"machine": platform.machine(), "processor": platform.processor(), "python": platform.python_version()},
        **g.manifest_fields,
    }
    if g.feature_output:
        man.update({"feature_output": g.feature_output, "head_file": "head.npz", "head_version": 0})
    if chosen.quantization:
        man["quantization"] = chosen.quantization
    return man


def named_cities_markdown(named: dict | None, scenario: dict | None) -> list[str]:
    """budget.md's section on the named cities (fresh drops; information only)."""
    if not named:
        return []
    head = ["## Named cities (fresh drops; information only, never used to choose)", ""]
    if not named.get("computed"):
        return head + [f"Not computed: {named.get('why', '')}.", ""]
    scn = scenario or {}
    trained = (f"{scn.get('n_samples')} drops in {scn.get('cities')} random cities (dataset seed {scn.get('seed')})"
               if scn.get("kind") == "random" else f"{scn.get('kind')} data ({scn.get('cities')})")
    rows = ["| city | seen in training | top-1 | top-3 | teacher top-1 |", "|---|---|---:|---:|---:|"]
    for name, c in named["cities"].items():
        rows.append(f"| {name} | {'yes' if c['seen_in_training'] else 'no'} | {fmt(c['top1'], 4)} | {fmt(c['top3'], 4)} | "
                    f"{fmt(c.get('teacher_top1'), 4)} |")
    return head + [f"Trained on {trained}; {named['n_per_city']} fresh drops per city at {named['snr_db']:g} dB "
                   f"(seed {named['seed']}). Mean top-1 {named['mean_top1']:.4f}.", "", *rows, ""]


def budget_markdown(prof: DeviceProfile, chosen: Candidate, cands: list[Candidate], manifest: dict) -> str:
    rep = chosen.report
    assert rep is not None
    t = manifest.get("teacher") or {}
    lines = [
        f"# Budget report: {chosen.name} for profile `{prof.name}`",
        "",
        f"Verdict: **{manifest['verdict'].upper()}** — {rep.reason() if not chosen.passed else 'within budget'}",
        "",
        f"Profile: {prof.description}. Beam cycle {prof.timing.beam_cycle_ms:g} ms, inference budget "
        f"{prof.timing.inference_budget_ms:g} ms, backend {prof.compute.backend}, {prof.compute.threads} thread(s).",
        "",
        rep.to_markdown(),
        "",
        "## Held-out test metrics (exported graph; computed once, after selection)",
        "",
        "| metric | value |",
        "|---|---:|",
        *[f"| {k} | {v} |" for k, v in manifest["metrics_heldout"].items()],
        "",
    ]
    if t:
        lines += [f"Teacher: {t['family']} ({t['source']}), {fmt(t['mflops'], 3)} MFLOPs, {fmt(t['params'])} params, "
                  f"top-1 val {fmt(t['top1_val'], 4)}, test {fmt(t['top1_test'], 4)}" + (f". Note: {t['note']}" if t.get("note") else "")
                  + (f". Shipped model: {t['mflops'] / max(chosen.mflops or 1e-12, 1e-12):.1f}x fewer FLOPs, "
                     f"test top-1 {100 * (manifest['metrics_heldout']['top1'] - t['top1_test']):+.2f} pp vs the teacher."
                     if t.get("top1_test") is not None and chosen.mflops else ""), ""]
    lines += named_cities_markdown(manifest.get("named_cities"), manifest.get("dataset", {}).get("scenario"))
    lines += ["## Lineage", "", "| step | model | from | top-1 val | MFLOPs | params | settings |", "|---|---|---|---:|---:|---:|---|"]
    for s in manifest["lineage"]:
        settings = ", ".join(f"{k}={v}" for k, v in s["settings"].items() if k != "widths")
        lines.append(f"| {s['step']} | {s['name']} | {s['from'] or '-'} | {fmt(s['top1_val'], 4)} | {fmt(s['mflops'], 4)} | "
                     f"{fmt(s['params'])} | {settings} |")
    sel = manifest["selection"]
    lines += ["", "## Candidates (chosen on validation)", "", f"Rule: {sel['rule']}.", "",
              "| " + " | ".join(CANDIDATE_COLUMNS) + " |", "|" + "|".join("---:" if c in ("top-1 val", "MFLOPs", "params", "KiB",
                                                                                        "device p99 ms", "cost") else "---"
                                                                        for c in CANDIDATE_COLUMNS) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in candidate_table_rows(cands)]
    from ..search_tune import trials_markdown  # --search tune: its trial table (nothing after the bisection)

    lines += trials_markdown(manifest["recipe"].get("prune_search"))
    if "quantization" in manifest:
        q = manifest["quantization"]
        lines += ["", f"Quantisation: {q['mode']}, validation top-1 {q['fp32_top1_val']:.4f} -> {q['quant_top1_val']:.4f}; "
                  f"kept fp32: {', '.join(q['kept_fp32'] + q['excluded_nodes']) or 'none'}."]
    if "tensorrt" in manifest:
        tr = manifest["tensorrt"]
        lines += ["", f"TensorRT: {'engine built (' + tr['precision'] + ')' if tr['built'] else 'not built: ' + tr['reason'] + '; shipping the ONNX model for onnxruntime instead'}."]
    lines += ["", f"Parity: {chosen.parity}.", "",
              f"Created {manifest['created_utc']} by edgebm {manifest['edgebm_version']} on {platform.machine()}.", ""]
    return "\n".join(lines)
