"""The export job behind ``edgebm export``: data -> train -> ONNX -> parity -> budget gate -> bundle.

Each stage reads what the stage before produced (a BeamDataset, a torch module, an ONNX file,
a BudgetReport) so stages stay replaceable; this module only sequences them and reports progress.
"""

from __future__ import annotations

import json
import platform
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from . import __version__
from .budget import BudgetReport, run_gate, thop_flops
from .data import BeamDataset, load_dataset
from .deploy import check_parity, export_onnx, write_bundle
from .deploy.onnx_export import INPUT_NAME, OUTPUT_NAMES
from .metrics import summarize
from .profiles import DeviceProfile, load_profile
from .train import TrainConfig, train_classifier

__all__ = ["DEFAULT_SAMPLES", "DEFAULT_SEED", "ExportResult", "default_dataset", "export_for_profile", "NothingFitsError"]

DEFAULT_SAMPLES = 20000
DEFAULT_SEED = 0

Progress = Callable[[str, float, float, str], None]  # (stage, done, total, detail)


class NothingFitsError(RuntimeError):
    """No candidate passed the budget gate and ``force`` was not given."""

    def __init__(self, report: BudgetReport) -> None:
        super().__init__(f"no candidate fits profile '{report.profile}': {report.reason()}")
        self.report = report


@dataclass
class ExportResult:
    bundle_dir: Path | None
    report: BudgetReport
    metrics: dict[str, float]
    parity: dict[str, float]
    manifest: dict[str, Any]
    model: Any = None  # the trained torch module (benchmarks compare it with the exported graph)


def _noop(stage: str, done: float, total: float, detail: str = "") -> None:
    return None


def default_dataset(n_samples: int = DEFAULT_SAMPLES, seed: int = DEFAULT_SEED) -> BeamDataset:
    """The embedded default scenario: city0, 28 GHz, 8x8 BS UPA, 1x1 UE, Set B 16 -> Set A 64, 20 dB."""
    from .data.simulated import generate_dataset
    from .sim import ScenarioConfig

    return generate_dataset(ScenarioConfig(), n_samples=n_samples, seed=seed)


def _train_mlp(train: BeamDataset, val: BeamDataset, cfg: TrainConfig, progress: Progress):
    import torch

    from .models.mlp import BeamMLP
    from .train import beam_power_soft_labels

    torch.manual_seed(cfg.seed)
    model = BeamMLP(train.n_b, train.n_a, hidden=(256, 256))
    soft_t = beam_power_soft_labels(train.rsrp_a, cfg.soft_temperature) if cfg.soft_weight > 0 else None
    soft_v = beam_power_soft_labels(val.rsrp_a, cfg.soft_temperature) if cfg.soft_weight > 0 else None
    res = train_classifier(
        model, train.rsrp_b, train.best_a, val.rsrp_b, val.best_a, cfg, soft_t, soft_v,
        progress=lambda e, n, row: progress("train", e, n, f"val top-1 {row['val_top1']:.3f}"),
    )
    return model, res


def export_for_profile(
    profile: str | DeviceProfile,
    data: str | Path | BeamDataset | None = None,
    out_dir: str | Path | None = None,
    *,
    seed: int = DEFAULT_SEED,
    n_samples: int = DEFAULT_SAMPLES,
    train_cfg: TrainConfig | None = None,
    force: bool = False,
    latency_runs: int = 500,
    progress: Progress = _noop,
) -> ExportResult:
    """Build, gate and write the bundle for ``profile`` to ``out_dir`` (default ``export/<profile>``).

    Raises :class:`NothingFitsError` (nothing written) when the candidate fails the gate, unless
    ``force``; then the bundle is written and its manifest says ``verdict: fail``.
    """
    prof = profile if isinstance(profile, DeviceProfile) else load_profile(profile)
    out = Path(out_dir) if out_dir is not None else Path("export") / prof.name
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

    cfg = train_cfg or TrainConfig(seed=seed, soft_weight=0.2)
    model, train_res = _train_mlp(train, val, cfg, progress)

    with tempfile.TemporaryDirectory(prefix="edgebm-export-") as tmpd:
        onnx_path = Path(tmpd) / "model.onnx"
        progress("export", 0, 1, "ONNX")
        export_onnx(model, train.rsrp_b, onnx_path)
        parity = check_parity(model, onnx_path, test.rsrp_b, threads=prof.compute.threads).to_dict()
        progress("export", 1, 1, f"parity max|diff| {parity['max_abs_diff']:.2e}")

        progress("gate", 0, 1, "measuring")
        flops_torch = thop_flops(model, train.rsrp_b)
        report = run_gate(onnx_path, prof, test.rsrp_b[:1], thop=flops_torch, runs=latency_runs)
        progress("gate", 1, 1, report.verdict)

        # held-out metrics from the exported graph itself (what the UE will run)
        from .budget.latency import ort_session

        sess = ort_session(onnx_path, prof.compute.threads)
        logits = sess.run([OUTPUT_NAMES[0]], {INPUT_NAME: np.ascontiguousarray(test.rsrp_b, dtype=np.float32)})[0]
        metrics = summarize(logits, test.rsrp_a, test.noise_dbm)

        if report.verdict != "pass" and not force:
            raise NothingFitsError(report)

        manifest = _manifest(prof, ds, report, metrics, parity, cfg, train_res, model, len(train), len(val), len(test))
        manifest["export_seconds"] = round(time.perf_counter() - t_start, 2)
        onnx_bytes = onnx_path.read_bytes()
        writers = {
            "model.onnx": lambda p: p.write_bytes(onnx_bytes),
            "codebook.npz": lambda p: _write_codebook(p, ds),
            "head.npz": lambda p: _write_head(p, model.head),
            "budget.md": lambda p: p.write_text(_budget_md(prof, report, metrics, parity, manifest), encoding="utf-8"),
        }
        bundle = write_bundle(out, writers, manifest)
    from .runtime import read_manifest

    return ExportResult(bundle, report, metrics, parity, read_manifest(bundle), model)


def _write_codebook(path: Path, ds: BeamDataset) -> None:
    with open(path, "wb") as f:
        np.savez(f, **ds.codebooks)


def _write_head(path: Path, head: Any) -> None:
    """The last Linear layer as numpy arrays (W (A, F), b (A,)) for the on-device head update."""
    with open(path, "wb") as f:
        np.savez(f, W=head.weight.detach().numpy().astype(np.float32), b=head.bias.detach().numpy().astype(np.float32))


def _manifest(prof, ds, report, metrics, parity, cfg, train_res, model, n_train, n_val, n_test) -> dict[str, Any]:
    from .models.preprocess import PREPROCESS_DEFAULTS

    head = model.head
    return {
        "edgebm_version": __version__,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "profile": prof.name,
        "profile_config": prof.to_dict(),
        "family": "mlp",
        "model_config": {"hidden": list(model.hidden), "n_in": model.n_in, "n_out": model.n_out},
        "precision": "fp32",
        "model_file": "model.onnx",
        "threads": prof.compute.threads,
        "inputs": [{"name": INPUT_NAME, "shape": ["batch", ds.n_b], "dtype": "float32", "units": "dBm"}],
        "outputs": [
            {"name": OUTPUT_NAMES[0], "shape": ["batch", ds.n_a], "dtype": "float32"},
            {"name": OUTPUT_NAMES[1], "shape": ["batch", int(head.in_features)], "dtype": "float32"},
        ],
        "score_output": OUTPUT_NAMES[0],
        "score_kind": "logits",
        "feature_output": OUTPUT_NAMES[1],
        "head_file": "head.npz",
        "head_version": 0,
        "n_beams_a": ds.n_a,
        "n_beams_b": ds.n_b,
        "preprocessing": {**PREPROCESS_DEFAULTS, "in_graph": True},
        "codebook": {"file": "codebook.npz", "set_a": ds.n_a, "set_b": ds.n_b, "elevation": "from zenith, deg"},
        "dataset": {
            "meta": ds.meta,
            "n_samples": len(ds),
            "split": {"train": n_train, "val": n_val, "test": n_test, "seed": cfg.seed},
        },
        "training": {**cfg.to_dict(), "best_epoch": train_res.best_epoch, "epochs_run": train_res.epochs_run,
                     "seconds": round(train_res.seconds, 2)},
        "metrics_heldout": metrics,
        "parity": parity,
        "budget": report.to_dict(),
        "verdict": report.verdict,
        "host": {"machine": platform.machine(), "processor": platform.processor(), "python": platform.python_version()},
    }


def _budget_md(prof: DeviceProfile, report: BudgetReport, metrics: dict, parity: dict, manifest: dict) -> str:
    lines = [
        f"# Budget report: {manifest['family']} for profile `{prof.name}`",
        "",
        f"Verdict: **{report.verdict.upper()}** — {report.reason()}",
        "",
        f"Profile: {prof.description}. Beam cycle {prof.timing.beam_cycle_ms:g} ms, inference budget "
        f"{prof.timing.inference_budget_ms:g} ms, backend {prof.compute.backend}, {prof.compute.threads} thread(s).",
        "",
        report.to_markdown(),
        "",
        "## Held-out metrics (exported ONNX graph)",
        "",
        "| metric | value |",
        "|---|---:|",
        *[f"| {k} | {v} |" for k, v in metrics.items()],
        "",
        f"ONNX vs torch parity on {parity['n_samples']} held-out samples: max |logit diff| {parity['max_abs_diff']:.3g}, "
        f"top-1 agreement {parity['argmax_agreement']:.4f}.",
        "",
        f"Created {manifest['created_utc']} by edgebm {manifest['edgebm_version']} on {platform.machine()}.",
        "",
    ]
    return "\n".join(lines)
