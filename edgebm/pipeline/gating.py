"""Gate one candidate against a profile: the budget gate plus the recipe's own lines.

The recipe adds two lines the gate cannot know about because they compare a candidate with its source:

``parity_top1_agreement``
    share of validation samples whose top-1 beam equals the source's (fp32: the torch / scikit-learn model;
    quantised: the fp32 graph it came from); below ``[recipe] min_parity`` it FAILS.
``on_device_head``
    profiles with ``[adaptation] on_device_update = true``: the bundle must carry a trainable head (``head.npz``:
    features -> logits); a graph without one (the classical families) FAILS here (the gate's own
    ``trainable_head`` line only informs then, and judges the head's size against ``max_trainable_params``).
``latency_vs_fp32_parent``
    quantised candidates only: single-sample latency relative to the fp32 parent, measured side by side
    (interleaved rounds, same session settings); above 1 + :data:`SLOWER_MARGIN` it is flagged (``warn``) and
    selection lets the parent win (``[recipe] slower_quantised_loses``). On a ``backend = "c"`` profile the
    compiled C predictors are compared instead (host p50 of each C build), since that is what the device runs.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..budget import BudgetLine, BudgetReport, run_gate
from ..budget.gate import limit_line
from ..runtime.session import ort_session
from ..deploy.onnx_export import INPUT_NAME
from ..profiles import DeviceProfile

__all__ = ["SLOWER_MARGIN", "gate_candidate", "parity_line", "slower_line", "c_slower_line", "c_p50_ms", "head_line",
           "paired_latency_ratio"]

#: a quantised graph counts as slower than its fp32 parent when their p50 ratio exceeds 1 + this (timer noise)
SLOWER_MARGIN = 0.05


def paired_latency_ratio(parent: Path, child: Path, x1: np.ndarray, threads: int, rounds: int = 9, per_round: int = 100) -> float:
    """Median over interleaved rounds of p50(child) / p50(parent), single-sample ``session.run`` calls.

    Both sessions are timed in the same rounds (order alternating), so load from other processes hits
    both alike; a ratio, not absolute times, is what this returns.
    """
    sa, sb = ort_session(parent, threads), ort_session(child, threads)
    oa, ob = sa.get_outputs()[0].name, sb.get_outputs()[0].name
    feed = {INPUT_NAME: np.ascontiguousarray(x1[:1], dtype=np.float32)}
    for _ in range(20):
        sa.run([oa], feed)
        sb.run([ob], feed)
    t = np.empty(per_round)
    ratios = []
    for r in range(rounds):
        p50 = {}
        for name, sess, out in ((("a", sa, oa), ("b", sb, ob)) if r % 2 == 0 else (("b", sb, ob), ("a", sa, oa))):
            for i in range(per_round):
                t0 = time.perf_counter_ns()
                sess.run([out], feed)
                t[i] = time.perf_counter_ns() - t0
            p50[name] = float(np.median(t))
        ratios.append(p50["b"] / max(p50["a"], 1.0))
    return float(np.median(ratios))


def parity_line(agreement: float, n: int, min_parity: float, versus: str) -> BudgetLine:
    return limit_line("parity_top1_agreement", round(agreement, 5), min_parity, "",
                      f"top-1 agreement with {versus} on {n} validation samples", bound="min")


def slower_line(ratio: float, parent: str, how: str = "single-sample p50 through onnxruntime, measured side by side") -> BudgetLine:
    slower = ratio > 1.0 + SLOWER_MARGIN
    return BudgetLine("latency_vs_fp32_parent", round(ratio, 3), 1.0 + SLOWER_MARGIN, "x", "warn" if slower else "pass",
                      f"{how}, vs {parent}" + ("; SLOWER than its fp32 parent" if slower else ""))


def c_p50_ms(targets: Any) -> float | None:
    """Host p50 (ms) of a candidate's compiled C predictor (:func:`edgebm.deploy.targets.check_targets`), if built."""
    build = ((getattr(targets, "manifest", None) or {}).get("c") or {}).get("build") or {}
    lat = build.get("host_latency") or {}
    return lat.get("p50_ms")


def c_slower_line(child_targets: Any, parent_targets: Any, parent: str) -> tuple[BudgetLine, float | None]:
    """``latency_vs_fp32_parent`` for a ``backend = "c"`` profile: the compiled C's host p50 of the quantised
    candidate over its fp32 parent's (what runs on the device; onnxruntime's ratio says nothing there), and the
    ratio (None when either C build is missing: the line only informs then)."""
    a, b = c_p50_ms(parent_targets), c_p50_ms(child_targets)
    if a is None or b is None or a <= 0:
        missing = "its fp32 parent's" if a is None or a <= 0 else "its"
        return BudgetLine("latency_vs_fp32_parent", None, 1.0 + SLOWER_MARGIN, "x", "info",
                          f"compiled C not compared: {missing} C build was not measured"), None
    ratio = b / a
    return slower_line(ratio, parent, f"compiled C host p50 {1e3 * b:.3g} us vs {1e3 * a:.3g} us (each pooled over "
                                      f"every call of its own harness run)"), ratio


def head_line(prof: DeviceProfile, head_params: int) -> BudgetLine | None:
    """``on_device_head``: fails when the profile updates on the device and the graph has no trainable head; None
    otherwise (the gate's ``trainable_head`` line judges the head's size)."""
    if not prof.adaptation.on_device_update or head_params > 0:
        return None
    return BudgetLine("on_device_head", 0, None, "params", "fail",
                      "the profile updates the model on the device; this graph has no trainable head (features -> logits)")


def gate_candidate(onnx_path: Path, prof: DeviceProfile, sample: np.ndarray, *, precision: str, thop: int | None,
                   runs: int, head_params: int, extra: Sequence[BudgetLine] = ()) -> BudgetReport:
    """The budget gate on ``onnx_path`` with the recipe's ``extra`` lines appended."""
    return run_gate(onnx_path, prof, sample[:1], thop=thop, runs=runs, precision=precision,
                    head_params=head_params or None, extra_lines=extra)
