"""Typed facts about the export recipe's candidates: each step of a lineage and each (model, precision) variant."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..budget import BudgetReport
from ..models.estimator import ExportedGraph

__all__ = ["STEPS", "LineageStep", "ValScore", "Candidate", "deployed_latency_ms"]

#: lineage step names (stable, documented in export/README.md); ``train`` = a family trained without the teacher
STEPS = ("teach", "train", "distil", "prune", "quantise", "export")


@dataclass(frozen=True)
class LineageStep:
    """One step that produced a model: ``step`` (one of :data:`STEPS`), the model it started ``from`` (a
    candidate or model name, None for the first), its ``settings``, and the result's validation top-1,
    MFLOPs (ONNX count, batch 1) and parameters."""

    step: str
    name: str
    source: str | None
    settings: dict[str, Any]
    top1_val: float | None
    mflops: float | None
    params: int | None

    def __post_init__(self) -> None:
        if self.step not in STEPS:
            raise ValueError(f"lineage step must be one of {STEPS}, got {self.step!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "name": self.name, "from": self.source, "settings": self.settings,
                "top1_val": None if self.top1_val is None else round(self.top1_val, 5),
                "mflops": None if self.mflops is None else round(self.mflops, 6), "params": self.params}


@dataclass(frozen=True)
class ValScore:
    """Validation accuracy of an exported graph: top-1 / top-3 and the per-sample top-1 hits (for paired tests)."""

    top1: float
    top3: float
    hits: np.ndarray  # (n_val,) bool: top-1 correct per validation sample
    argmax: np.ndarray  # (n_val,) int: predicted beam per validation sample
    scores: np.ndarray  # (n_val, A) float32 logits (log-probabilities for probability graphs)

    @classmethod
    def from_scores(cls, scores: np.ndarray, best: np.ndarray) -> "ValScore":
        top = np.argsort(-scores, axis=1, kind="stable")[:, :3]
        hits = top[:, 0] == best
        return cls(float(hits.mean()), float((top == best[:, None]).any(1).mean()), hits, top[:, 0].copy(),
                   np.asarray(scores, np.float32))


def deployed_latency_ms(report: BudgetReport) -> float:
    """Device p99 (ms) of what the profile deploys: the compiled C's ``c_device_latency_p99`` where it was measured
    (``backend = "c"``), else the gate's onnxruntime-based ``device_latency_p99``."""
    c_lat = report.line("c_device_latency_p99")
    return float(c_lat.value) if c_lat is not None and c_lat.value is not None else float(report.device_latency_ms)


@dataclass
class Candidate:
    """One (model, precision) variant: its graph, gate report, validation score and why it won or lost.

    ``model_key`` names the source model in the recipe's model store (several candidates share one: its
    precisions). ``parent`` is the fp32 candidate a quantised one came from. ``lost`` is filled by selection.
    """

    name: str
    family: str
    precision: str
    model_key: str
    lineage: list[LineageStep] = field(default_factory=list)
    graph: ExportedGraph | None = None
    report: BudgetReport | None = None
    val: ValScore | None = None
    parity: dict[str, Any] = field(default_factory=dict)
    quantization: dict[str, Any] | None = None
    parent: str | None = None
    slower_than_parent: float | None = None  # measured latency ratio to the fp32 parent when > 1
    targets: Any = None  # edgebm.deploy.targets.TargetCheck: per-device-class artifacts and their gate lines
    error: str | None = None
    lost: str | None = None
    cost: float | None = None  # objective value (ms, uJ or KiB), set by selection

    @property
    def passed(self) -> bool:
        return self.error is None and self.report is not None and self.report.verdict == "pass"

    @property
    def why(self) -> str:
        """Why the candidate did not ship (or 'chosen'/'within budget')."""
        if self.error:
            return self.error
        if self.report is None:
            return "not measured"
        if not self.passed:
            return self.report.reason()
        return self.lost or "within budget"

    @property
    def mflops(self) -> float | None:
        return None if self.report is None else self.report.stats.flops / 1e6

    @property
    def params(self) -> int | None:
        return None if self.report is None else int(self.report.stats.params)

    def row(self) -> dict[str, Any]:
        """The candidate table row (manifest ``candidates``, CLI, budget.md)."""
        r = self.report
        return {
            "candidate": self.name, "family": self.family, "precision": self.precision,
            "top1_val": None if self.val is None else round(self.val.top1, 5),
            "top3_val": None if self.val is None else round(self.val.top3, 5),
            "mflops": self.mflops, "params": self.params,
            "kib": r.stats.weight_bytes / 1024 if r else None, "device_p99_ms": deployed_latency_ms(r) if r else None,
            "cost": self.cost,
            "verdict": "pass" if self.passed else "fail", "why": self.why,
            "lineage": [s.step for s in self.lineage],
        }
