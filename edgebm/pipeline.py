"""The export job behind ``edgebm export``: data -> train -> ONNX (+ compression) -> gate -> bundle.

For a device profile the job tries every model family the profile allows (``[models].families``),
exports each to ONNX with a parity check, derives the precisions the profile allows (fp32, int8
static QDQ with accuracy-aware exclusion, fp16), measures every candidate with the budget gate and
keeps the most accurate one inside the budget. Each stage reads what the stage before produced (a
BeamDataset, a fitted model, an ONNX file, a BudgetReport), so stages stay replaceable; this module
only sequences them, keeps the candidate table and reports progress.
"""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from . import __version__
from .budget import BudgetReport, run_gate, thop_flops
from .runtime.session import ort_session
from .data import BeamDataset, load_dataset
from .atomic import ScratchDir
from .deploy import check_parity, export_onnx, write_bundle
from .deploy.bundle import bundle_out_dir
from .deploy.onnx_export import INPUT_NAME, OUTPUT_NAMES
from .evaluate import dataset_beam_xy
from .metrics import summarize
from .profiles import DeviceProfile, load_profile
from .train import TrainConfig

__all__ = [
    "DEFAULT_SAMPLES", "DEFAULT_SEED", "Candidate", "ExportResult", "NothingFitsError",
    "default_dataset", "export_for_profile", "candidate_specs", "EXPORTABLE",
]

DEFAULT_SAMPLES = 20000
DEFAULT_SEED = 0
#: families export can try for BM-Case1 bundles (gru needs trajectories and history windows)
EXPORTABLE = ("mlp", "dscnn", "angular", "teacher", "teacher_pos", "svm_linear", "svm_rbf", "tree", "gbt", "sgd")
#: per-family model settings and epochs used by export (sized so a profile exports in minutes on 2 cores)
FAMILY_SETTINGS: dict[str, tuple[dict[str, Any], int]] = {
    "mlp": ({"hidden": (256, 256)}, 40),
    "mlp_tiny": ({"hidden": (32,)}, 40),
    "dscnn": ({}, 12),
    "angular": ({"hidden": (256, 256)}, 30),
    "teacher": ({"upsample": 16}, 10),
    "teacher_pos": ({"upsample": 16}, 10),
}

Progress = Callable[[str, float, float, str], None]  # (stage, done, total, detail)


class NothingFitsError(RuntimeError):
    """No candidate passed the budget gate and ``force`` was not given."""

    def __init__(self, profile: str, candidates: list["Candidate"]) -> None:
        best = _best(candidates, passing_only=False)
        why = best.why if best is not None else "no candidate could be built"
        super().__init__(f"no candidate fits profile '{profile}' (best: {best.name if best else '-'}: {why})")
        self.profile = profile
        self.candidates = candidates
        self.report = best.report if best is not None else None


@dataclass
class Candidate:
    """One (family, precision) variant and how it fared."""

    name: str
    family: str
    precision: str
    onnx_path: Path | None = None
    report: BudgetReport | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    parity: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)  # export fields (score output, head...) and compression notes
    error: str | None = None

    @property
    def passed(self) -> bool:
        return self.error is None and self.report is not None and self.report.verdict == "pass"

    @property
    def why(self) -> str:
        if self.error:
            return self.error
        if self.report is None:
            return "not measured"
        return "within budget" if self.passed else self.report.reason()

    def row(self) -> dict[str, Any]:
        r = self.report
        return {
            "candidate": self.name, "family": self.family, "precision": self.precision,
            "top1": self.metrics.get("top1"), "top3": self.metrics.get("top3"),
            "mflops": r.stats.flops / 1e6 if r else None, "params": r.stats.params if r else None,
            "kib": r.stats.weight_bytes / 1024 if r else None, "device_p99_ms": r.device_latency_ms if r else None,
            "verdict": "pass" if self.passed else "fail", "why": self.why,
        }


@dataclass
class ExportResult:
    bundle_dir: Path | None
    report: BudgetReport
    metrics: dict[str, float]
    parity: dict[str, float]
    manifest: dict[str, Any]
    model: Any = None  # the chosen fitted model (torch module for neural families)
    candidates: list[Candidate] = field(default_factory=list)
    chosen: Candidate | None = None


def _noop(stage: str, done: float, total: float, detail: str = "") -> None:
    return None


def default_dataset(n_samples: int = DEFAULT_SAMPLES, seed: int = DEFAULT_SEED) -> BeamDataset:
    """The embedded default scenario: city0, 28 GHz, 8x8 BS UPA, 1x1 UE, Set B 16 -> Set A 64, 20 dB."""
    from .data.simulated import generate_dataset
    from .sim import ScenarioConfig

    return generate_dataset(ScenarioConfig(), n_samples=n_samples, seed=seed)


def candidate_specs(prof: DeviceProfile, families: list[str] | None = None) -> list[tuple[str, str, dict[str, Any]]]:
    """(candidate stem, family, model params) to train for ``prof``; ``families`` narrows the profile's list."""
    allowed = list(prof.models.families)
    if families:
        bad = [f for f in families if f not in allowed]
        if bad:
            raise ValueError(f"families {bad} are not allowed by profile '{prof.name}' (allowed: {', '.join(allowed)})")
        allowed = [f for f in allowed if f in families]
    specs = []
    for fam in allowed:
        if fam not in EXPORTABLE:
            continue
        params = FAMILY_SETTINGS.get(fam, ({}, 0))[0]
        specs.append((fam, fam, dict(params)))
        if fam == "mlp" and prof.limits.max_mflops < 1.0:  # microcontroller-class: also try a tiny MLP
            specs.append(("mlp_tiny", "mlp", dict(FAMILY_SETTINGS["mlp_tiny"][0])))
    return specs


def _best(cands: list[Candidate], passing_only: bool = True) -> Candidate | None:
    pool = [c for c in cands if c.passed] if passing_only else [c for c in cands if c.error is None and c.report is not None]
    if not pool:
        return None
    # most accurate; ties -> lower device latency
    return max(pool, key=lambda c: (round(c.metrics.get("top1", 0.0), 4), -c.report.device_latency_ms))  # type: ignore[union-attr]


def _scores(onnx_path: Path, score_output: str, score_kind: str, x: np.ndarray, threads: int) -> np.ndarray:
    sess = ort_session(onnx_path, threads)
    s = sess.run([score_output], {INPUT_NAME: np.ascontiguousarray(x, dtype=np.float32)})[0]
    return np.log(np.maximum(s, 1e-12)) if score_kind == "probabilities" else s


def export_for_profile(
    profile: str | DeviceProfile,
    data: str | Path | BeamDataset | None = None,
    out_dir: str | Path | None = None,
    *,
    seed: int = DEFAULT_SEED,
    n_samples: int = DEFAULT_SAMPLES,
    train_cfg: TrainConfig | None = None,
    families: list[str] | None = None,
    force: bool = False,
    latency_runs: int = 500,
    max_quant_drop: float = 0.01,
    progress: Progress = _noop,
) -> ExportResult:
    """Search candidates for ``profile``, gate them and write the best passing one to ``out_dir``
    (default ``export/<profile>``).

    ``train_cfg`` overrides the training settings of every neural family (tests use few epochs).
    Raises :class:`NothingFitsError` (nothing written) when no candidate passes, unless ``force``;
    then the most accurate failing candidate is written and its manifest says ``verdict: fail``.
    """
    from .models.estimator import TorchBeamModel, make_model

    prof = profile if isinstance(profile, DeviceProfile) else load_profile(profile)
    out = bundle_out_dir(out_dir, prof.name)  # refuses a non-bundle folder, '.', a read-only place: before any training
    specs = candidate_specs(prof, families)
    if not specs:
        raise ValueError(f"profile '{prof.name}' allows no exportable family (exportable: {', '.join(EXPORTABLE)})")
    t_start = time.perf_counter()

    progress("data", 0, 1, "loading" if data is not None else f"simulating {n_samples} UEs")
    if isinstance(data, BeamDataset):
        ds = data
    elif data is not None:
        ds = load_dataset(data)
    else:
        ds = default_dataset(n_samples, seed)
    progress("data", 1, 1, f"{len(ds)} samples, {ds.n_b}->{ds.n_a} beams")
    train, val, test = ds.split((0.8, 0.1, 0.1), seed=seed)
    if min(len(train), len(val), len(test)) < 2:
        raise ValueError(f"dataset too small to split into train/val/test: {len(ds)} samples")
    calib = train.rsrp_b[np.random.default_rng(seed).permutation(len(train))[:256]]

    cands: list[Candidate] = []
    fitted: dict[str, Any] = {}
    tmpd = ScratchDir("edgebm-export")  # /tmp/edgebm-export-<pid>-*: leftovers of killed runs are removed
    tmp = Path(tmpd.name)
    try:
        for i, (stem, fam, params) in enumerate(specs):
            epochs = FAMILY_SETTINGS.get(stem, ({}, 40))[1]
            cfg = train_cfg or TrainConfig(seed=seed, epochs=epochs, soft_weight=0.2)
            progress("train", i, len(specs), stem)
            try:
                model = make_model(fam, ds.n_b, ds.n_a, cfg, **params)
                model.fit(train, val, progress=lambda e, n, row, s=stem: progress("train", i + e / n, len(specs), f"{s} epoch {e}/{n}"))
            except Exception as e:  # a family that cannot train here is a rejected candidate, not a crash
                cands.append(Candidate(stem, fam, "fp32", error=f"training failed: {type(e).__name__}: {e}"))
                continue
            fitted[stem] = model
            cands += _variants(stem, model, prof, tmp, train, val, test, calib, max_quant_drop, latency_runs, progress)
        progress("train", len(specs), len(specs), "done")

        chosen = _best(cands) or (_best(cands, passing_only=False) if force else None)
        if chosen is None:
            raise NothingFitsError(prof.name, cands)
        model = fitted[chosen.name.split(" ")[0]]
        manifest = _manifest(prof, ds, chosen, model, cands, len(train), len(val), len(test))
        writers: dict[str, Callable[[Path], Any]] = {
            "model.onnx": lambda p: p.write_bytes(chosen.onnx_path.read_bytes()),  # type: ignore[union-attr]
            "codebook.npz": lambda p: _write_npz(p, ds.codebooks),
            "budget.md": lambda p: p.write_text(_budget_md(prof, chosen, cands, manifest), encoding="utf-8"),
        }
        if isinstance(model, TorchBeamModel) and chosen.info.get("feature_output"):
            head = model.module.head
            writers["head.npz"] = lambda p: _write_npz(p, {"W": head.weight.detach().numpy(), "b": head.bias.detach().numpy()})
        if prof.compute.backend == "tensorrt":
            _tensorrt(prof, chosen, tmp, manifest, writers)
        manifest["export_seconds"] = round(time.perf_counter() - t_start, 2)
        progress("bundle", 0, 1, str(out))
        bundle = write_bundle(out, writers, manifest)
        progress("bundle", 1, 1, str(out))
    finally:
        tmpd.cleanup()
    from .runtime import read_manifest

    mod = model.module if isinstance(model, TorchBeamModel) else model
    return ExportResult(bundle, chosen.report, chosen.metrics, chosen.parity, read_manifest(bundle), mod, cands, chosen)  # type: ignore[arg-type]


def _variants(stem, model, prof, tmp, train, val, test, calib, max_drop, runs, progress) -> list[Candidate]:
    """fp32 export (+ parity) and the precisions the profile allows, each gated and scored on ``test``."""
    from .models.estimator import TorchBeamModel

    threads = prof.compute.threads
    fp32 = tmp / f"{stem}-fp32.onnx"
    base = Candidate(f"{stem} fp32", model.family, "fp32")
    try:
        if isinstance(model, TorchBeamModel):
            export_onnx(model.module, train.rsrp_b, fp32)
            base.parity = check_parity(model.module, fp32, test.rsrp_b, threads).to_dict()
            base.info = {"score_output": OUTPUT_NAMES[0], "score_kind": "logits", "feature_output": OUTPUT_NAMES[1],
                         "outputs": [{"name": OUTPUT_NAMES[0], "shape": ["batch", test.n_a], "dtype": "float32"},
                                     {"name": OUTPUT_NAMES[1], "shape": ["batch", int(model.module.head.in_features)], "dtype": "float32"}],
                         "model_config": model.config()}
            if hasattr(model.module, "forward_aps"):  # codebook-aware: the APS output serves new codebooks (Predictor.set_codebook)
                from .deploy.onnx_export import APS_OUTPUT

                base.info["outputs"].append({"name": APS_OUTPUT, "shape": ["batch", int(model.module.grid) ** 2], "dtype": "float32"})
                base.info["aps_output"] = APS_OUTPUT
            thop = thop_flops(model.module, train.rsrp_b)
        else:
            from .deploy.sklearn_export import check_sklearn_parity, export_sklearn

            info = export_sklearn(model.est, fp32, test.n_b)
            base.parity = check_sklearn_parity(model.est, fp32, test.rsrp_b, threads).to_dict()
            base.info = {k: info[k] for k in ("score_output", "score_kind", "outputs", "model_config")}
            thop = None
    except Exception as e:
        base.error = f"export failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        return [base]
    base.onnx_path = fp32
    variants = [base]
    if isinstance(model, TorchBeamModel):
        for prec in [p for p in prof.precision.allowed if p != "fp32"]:
            variants.append(_quantised(stem, model, prec, fp32, tmp, calib, val, test, threads, max_drop, base))
    # the head the UE updates (gate line trainable_head vs the profile's max_trainable_params)
    head_params = sum(int(p.numel()) for p in model.module.head.parameters()) if base.info.get("feature_output") else None
    for c in variants:
        if c.error or c.onnx_path is None:
            continue
        progress("gate", 0, 1, c.name)
        c.report = run_gate(c.onnx_path, prof, test.rsrp_b[:1], thop=thop if c.precision == "fp32" else None, runs=runs, precision=c.precision,
                            head_params=head_params)
        scores = _scores(c.onnx_path, c.info["score_output"], c.info["score_kind"], test.rsrp_b, threads)
        c.metrics = summarize(scores, test.rsrp_a, test.noise_dbm, dataset_beam_xy(test))
        progress("gate", 1, 1, f"{c.name}: {c.report.verdict}")
    return variants


def _quantised(stem, model, prec, fp32: Path, tmp: Path, calib, val, test, threads, max_drop, base: Candidate) -> Candidate:
    c = Candidate(f"{stem} {prec}", model.family, prec, info=dict(base.info))
    try:
        from .compress import quantize_onnx
    except ImportError as e:
        c.error = f"compression unavailable: {e}"
        return c
    mode = "int8_static" if prec == "int8" else "fp16"
    out = tmp / f"{stem}-{prec}.onnx"

    def top1(path: str | Path) -> float:
        s = _scores(Path(path), base.info["score_output"], base.info["score_kind"], val.rsrp_b, threads)
        return float(np.mean(s.argmax(1) == val.best_a))

    try:
        keep = (base.info["score_output"],) if base.info.get("feature_output") else ()  # the head stays fp32: it adapts on device
        q = quantize_onnx(fp32, out, mode, calib_x=calib, eval_fn=top1, max_drop=max_drop, keep_fp32_outputs=keep)
    except Exception as e:
        c.error = f"{mode} failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        return c
    c.onnx_path = out
    c.info["quantization"] = {"mode": mode, "fp32_top1_val": q.fp32_top1, "quant_top1_val": q.quant_top1,
                              "drop": q.drop, "excluded_nodes": list(q.excluded_nodes), "notes": q.notes}
    c.parity = {**check_parity(model.module, out, test.rsrp_b, threads).to_dict(), "vs": "torch fp32", "top1_drop_val": q.drop}
    return c


def _tensorrt(prof: DeviceProfile, chosen: Candidate, tmp: Path, manifest: dict, writers: dict) -> None:
    from .deploy.tensorrt_engine import build_engine, tensorrt_status

    ok, why = tensorrt_status()
    if not ok:
        manifest["tensorrt"] = {"built": False, "reason": why, "fallback": "model.onnx (onnxruntime)"}
        return
    prec = chosen.precision if chosen.precision in ("fp16", "int8") else "fp32"
    info = build_engine(chosen.onnx_path, tmp / "model.plan", prec)
    plan = info.plan_path.read_bytes()
    writers["model.plan"] = lambda p: p.write_bytes(plan)
    manifest["tensorrt"] = {"built": True, "precision": prec, "tensorrt_version": info.tensorrt_version,
                            "build_seconds": round(info.build_seconds, 2), "plan_file": "model.plan"}


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as f:
        np.savez(f, **{k: np.asarray(v) for k, v in arrays.items()})


def _manifest(prof, ds, chosen: Candidate, model, cands, n_train, n_val, n_test) -> dict[str, Any]:
    from .models.preprocess import PREPROCESS_DEFAULTS

    info = chosen.info
    man = {
        "edgebm_version": __version__,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "profile": prof.name,
        "profile_config": prof.to_dict(),
        "family": chosen.family,
        "candidate": chosen.name,
        "model_config": info.get("model_config", {}),
        "precision": chosen.precision,
        "model_file": "model.onnx",
        "threads": prof.compute.threads,
        "inputs": [{"name": INPUT_NAME, "shape": ["batch", ds.n_b], "dtype": "float32", "units": "dBm"}],
        "outputs": info["outputs"],
        "score_output": info["score_output"],
        "score_kind": info["score_kind"],
        "n_beams_a": ds.n_a,
        "n_beams_b": ds.n_b,
        "preprocessing": {**PREPROCESS_DEFAULTS, "in_graph": True},
        "codebook": {"file": "codebook.npz", "set_a": ds.n_a, "set_b": ds.n_b, "elevation": "from zenith, deg"},
        "dataset": {"meta": ds.meta, "n_samples": len(ds), "split": {"train": n_train, "val": n_val, "test": n_test}},
        "training": {**model.train_cfg.to_dict(), **({"best_epoch": model.result.best_epoch, "epochs_run": model.result.epochs_run,
                                                      "seconds": round(model.result.seconds, 2)} if model.result else {})},
        "metrics_heldout": chosen.metrics,
        "parity": chosen.parity,
        "budget": chosen.report.to_dict(),
        "verdict": "pass" if chosen.passed else "fail",
        "candidates": [c.row() for c in cands],
        "host": {"machine": platform.machine(), "processor": platform.processor(), "python": platform.python_version()},
    }
    if info.get("feature_output"):
        man.update({"feature_output": info["feature_output"], "head_file": "head.npz", "head_version": 0})
    if "quantization" in info:
        man["quantization"] = info["quantization"]
    if info.get("aps_output"):
        man["aps_output"] = info["aps_output"]
    return man


def _budget_md(prof: DeviceProfile, chosen: Candidate, cands: list[Candidate], manifest: dict) -> str:
    rep = chosen.report
    lines = [
        f"# Budget report: {chosen.name} for profile `{prof.name}`",
        "",
        f"Verdict: **{manifest['verdict'].upper()}** — {chosen.why}",
        "",
        f"Profile: {prof.description}. Beam cycle {prof.timing.beam_cycle_ms:g} ms, inference budget "
        f"{prof.timing.inference_budget_ms:g} ms, backend {prof.compute.backend}, {prof.compute.threads} thread(s).",
        "",
        rep.to_markdown(),
        "",
        "## Held-out metrics (exported graph)",
        "",
        "| metric | value |",
        "|---|---:|",
        *[f"| {k} | {v} |" for k, v in chosen.metrics.items()],
        "",
        "## Candidates",
        "",
        "| candidate | top-1 | top-3 | MFLOPs | params | KiB | device p99 ms | verdict | why |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for c in cands:
        r = c.row()
        f = lambda v, d=3: "-" if v is None else (f"{v:.{d}f}" if isinstance(v, float) else str(v))  # noqa: E731
        lines.append(f"| {r['candidate']} | {f(r['top1'])} | {f(r['top3'])} | {f(r['mflops'], 4)} | {f(r['params'])} | "
                     f"{f(r['kib'], 1)} | {f(r['device_p99_ms'], 4)} | {r['verdict']} | {r['why']} |")
    if "quantization" in manifest:
        q = manifest["quantization"]
        lines += ["", f"Quantisation: {q['mode']}, validation top-1 {q['fp32_top1_val']:.4f} -> {q['quant_top1_val']:.4f}; "
                  f"nodes kept in fp32: {', '.join(q['excluded_nodes']) or 'none'}."]
    if "tensorrt" in manifest:
        t = manifest["tensorrt"]
        lines += ["", f"TensorRT: {'engine built (' + t['precision'] + ')' if t['built'] else 'not built: ' + t['reason'] + '; shipping the ONNX model for onnxruntime instead'}."]
    lines += ["", f"Parity (exported graph vs source model): {chosen.parity}.", "",
              f"Created {manifest['created_utc']} by edgebm {manifest['edgebm_version']} on {platform.machine()}.", ""]
    return "\n".join(lines)
