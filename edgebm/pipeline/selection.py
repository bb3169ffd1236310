"""Choosing the shipped candidate on the validation split; the test split is never looked at here.

Among candidates that pass the gate, those *tied* with the most accurate one on validation top-1 are
kept — tied = an exact McNemar test on the same validation samples does not reject equality at
``alpha`` and the drop is at most ``tolerance_pp`` (``tie_rule = "mcnemar"``), or the drop alone is at
most ``tolerance_pp`` (``tie_rule = "tolerance"``) — and the cheapest of them by the profile's
objective wins: ``latency`` (device p99, ms), ``energy`` (FLOPs x ``pj_per_flop``, uJ per inference) or
``size`` (weight KiB). A quantised candidate measured slower than its fp32 parent loses to that parent
(when the parent passes and ``slower_quantised_loses``). Every loser gets the reason in ``Candidate.lost``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..profiles import DeviceProfile
from .candidates import Candidate, deployed_latency_ms

__all__ = ["SelectionRule", "mcnemar_p", "objective_cost", "select", "OBJECTIVE_UNITS"]

OBJECTIVE_UNITS = {"latency": "ms", "energy": "uJ", "size": "KiB"}


def mcnemar_p(a_hits: np.ndarray, b_hits: np.ndarray) -> float:
    """Two-sided exact McNemar p-value for paired top-1 hits of two models on the same samples.

    Only discordant samples carry information: under equal accuracy, ``a right & b wrong`` ~ Binomial(n01 + n10, 1/2).
    """
    from scipy.stats import binomtest

    a, b = np.asarray(a_hits, bool), np.asarray(b_hits, bool)
    if a.shape != b.shape:
        raise ValueError(f"paired hits must have the same shape, got {a.shape} and {b.shape}")
    n01 = int(np.count_nonzero(a & ~b))
    n10 = int(np.count_nonzero(~a & b))
    if n01 + n10 == 0:
        return 1.0
    return float(binomtest(n01, n01 + n10, 0.5, alternative="two-sided").pvalue)


@dataclass(frozen=True)
class SelectionRule:
    objective: str = "latency"
    tie_rule: str = "mcnemar"
    alpha: float = 0.05
    tolerance_pp: float = 1.0
    slower_quantised_loses: bool = True
    pj_per_flop: float | None = None

    @classmethod
    def from_profile(cls, prof: DeviceProfile) -> "SelectionRule":
        r = prof.recipe
        return cls(r.objective, r.tie_rule, r.alpha, r.tolerance_pp, r.slower_quantised_loses,
                   prof.energy.pj_per_flop if prof.energy else None)

    def describe(self) -> str:
        tie = (f"exact McNemar p >= {self.alpha:g} vs the best and drop <= {self.tolerance_pp:g} pp" if self.tie_rule == "mcnemar"
               else f"drop <= {self.tolerance_pp:g} pp from the best")
        return (f"passing candidates tied with the best validation top-1 ({tie}), then the cheapest by {self.objective} "
                f"({OBJECTIVE_UNITS[self.objective]})" + ("; a quantised candidate slower than its fp32 parent loses to it"
                                                          if self.slower_quantised_loses else ""))

    def to_manifest(self) -> dict[str, Any]:
        """The manifest's ``selection`` block."""
        return {"split": "val", "rule": self.describe(), "objective": self.objective,
                "tolerance": {"tie_rule": self.tie_rule, "alpha": self.alpha, "tolerance_pp": self.tolerance_pp}}


def objective_cost(c: Candidate, objective: str, pj_per_flop: float | None = None) -> float:
    """The candidate's cost: device p99 latency (ms), energy per inference (uJ) or weight size (KiB). Where the
    compiled C was measured (``backend = "c"``), its ``c_device_latency_p99`` and ``c_flash`` are the latency and the
    size; the pruning search's structure probes (no C build) use the ONNX figures."""
    r = c.report
    if r is None:
        raise ValueError(f"{c.name}: not measured")
    if objective == "latency":
        return deployed_latency_ms(r)
    if objective == "energy":
        if pj_per_flop is None:
            raise ValueError("objective 'energy' needs the profile's [energy] pj_per_flop")
        return float(r.stats.flops) * pj_per_flop * 1e-6  # FLOPs x pJ = 1e-12 J; 1 uJ = 1e-6 J
    if objective == "size":
        flash = r.line("c_flash")  # a microcontroller profile: the compiled C's flash (weights + code) is the size
        return float(flash.value) if flash is not None and flash.value is not None else float(r.stats.weight_bytes) / 1024
    raise ValueError(f"objective must be one of {tuple(OBJECTIVE_UNITS)}, got {objective!r}")


def _fmt_cost(v: float, objective: str) -> str:
    return f"{v:.4g} {OBJECTIVE_UNITS[objective]}"


def select(cands: Sequence[Candidate], rule: SelectionRule) -> Candidate | None:
    """The chosen candidate (None when none passes); fills ``cost`` and ``lost`` on every candidate."""
    by_name = {c.name: c for c in cands}
    pool: list[Candidate] = []
    for c in cands:
        c.lost = None
        if c.report is not None:
            c.cost = objective_cost(c, rule.objective, rule.pj_per_flop)
        if not c.passed or c.val is None:
            continue  # Candidate.why says what failed
        parent = by_name.get(c.parent or "")
        if (rule.slower_quantised_loses and c.slower_than_parent is not None and parent is not None and parent.passed):
            c.lost = f"measured {c.slower_than_parent:.2f}x slower than its fp32 parent ({parent.name})"
            continue
        pool.append(c)
    if not pool:
        return None
    key = lambda c: (c.cost, -c.val.top1, c.report.stats.weight_bytes, c.name)  # noqa: E731
    best = min(pool, key=lambda c: (-c.val.top1, *key(c)))
    tied: list[Candidate] = []
    for c in pool:
        drop_pp = 100 * (best.val.top1 - c.val.top1)
        if c is best:
            tied.append(c)
            continue
        p = mcnemar_p(c.val.hits, best.val.hits) if rule.tie_rule == "mcnemar" else None
        ok = drop_pp <= rule.tolerance_pp + 1e-9 and (p is None or p >= rule.alpha)
        if ok:
            tied.append(c)
        else:
            why = f"{-drop_pp:+.2f} pp val top-1 vs the best ({best.name})"
            if p is not None:
                why += f", McNemar p = {p:.3g}" + (f" < {rule.alpha:g}" if p < rule.alpha else "")
            if drop_pp > rule.tolerance_pp:
                why += f", beyond {rule.tolerance_pp:g} pp"
            c.lost = why
    chosen = min(tied, key=key)
    for c in tied:
        if c is not chosen:
            c.lost = (f"tied with the best on val ({-100 * (best.val.top1 - c.val.top1):+.2f} pp) but costlier: "
                      f"{_fmt_cost(c.cost, rule.objective)} vs {_fmt_cost(chosen.cost, rule.objective)} ({chosen.name})")
    chosen.lost = "chosen"
    return chosen
