"""The budget gate: every candidate model against a device profile, line by line."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EXIT_BAD_INPUT, EXIT_OVER_BUDGET  # exit codes are declared once, in errors.py
from ..errors import EXIT_OK as EXIT_PASS
from ..profiles import DeviceProfile
from .graph import GraphStats, analyze_onnx
from .latency import LatencyStats, host_threads, measure_onnx_latency

__all__ = ["BudgetLine", "BudgetReport", "run_gate", "thop_flops", "FLOPS_TOLERANCE", "EXIT_PASS", "EXIT_OVER_BUDGET", "EXIT_BAD_INPUT"]

#: thop (torch) and the ONNX counter must agree within this relative tolerance
FLOPS_TOLERANCE = 0.15


@dataclass(frozen=True)
class BudgetLine:
    """One gate line. ``status`` is ``pass``, ``fail`` or ``info``/``warn`` (not part of the verdict)."""

    name: str
    value: float | None
    limit: float | None
    unit: str
    status: str
    note: str = ""

    def to_dict(self) -> dict:
        return {"name": self.name, "value": self.value, "limit": self.limit, "unit": self.unit, "status": self.status, "note": self.note}


@dataclass
class BudgetReport:
    profile: str
    lines: list[BudgetLine]
    stats: GraphStats
    host_latency: LatencyStats
    device_latency_ms: float
    roofline_ms: float
    session_mem_bytes: int | None
    thop_flops: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        return "pass" if all(line.status != "fail" for line in self.lines) else "fail"

    @property
    def failures(self) -> list[BudgetLine]:
        return [line for line in self.lines if line.status == "fail"]

    def reason(self) -> str:
        """One readable sentence naming every failed line."""
        fails = self.failures
        if not fails:
            return "within budget"
        return "; ".join(f"{l.name} {_fmt(l.value)} {l.unit} > {_fmt(l.limit)} {l.unit}" + (f" ({l.note})" if l.note else "") for l in fails)

    def to_dict(self) -> dict:
        s = self.stats
        return {
            "profile": self.profile,
            "verdict": self.verdict,
            "reason": self.reason(),
            "lines": [l.to_dict() for l in self.lines],
            "flops_onnx": s.flops,
            "flops_thop": self.thop_flops,
            "flops_by_op": s.flops_by_op,
            "params": s.params,
            "weight_bytes": s.weight_bytes,
            "weight_bytes_by_dtype": s.weight_bytes_by_dtype,
            "peak_activation_bytes": s.peak_activation_bytes,
            "session_mem_bytes": self.session_mem_bytes,
            "host_latency": self.host_latency.to_dict(),
            "device_latency_ms": round(self.device_latency_ms, 5),
            "roofline_ms": round(self.roofline_ms, 6),
            "uncounted_ops": s.uncounted_ops,
            **self.extra,
        }

    def to_markdown(self) -> str:
        rows = ["| line | value | limit | unit | status | note |", "|---|---:|---:|---|---|---|"]
        for l in self.lines:
            rows.append(f"| {l.name} | {_fmt(l.value)} | {_fmt(l.limit)} | {l.unit} | {l.status.upper()} | {l.note} |")
        return "\n".join(rows)


def _fmt(v: float | None) -> str:
    if v is None:
        return "-"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.4g}"


def thop_flops(module: Any, sample: np.ndarray) -> int:
    """FLOPs of a torch module at batch 1 from thop (2 x its multiply-accumulate count)."""
    import contextlib
    import io

    import torch
    from thop import profile

    x = torch.from_numpy(np.ascontiguousarray(sample[:1], dtype=np.float32))
    module = module.eval()
    with contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
        macs, _ = profile(module, inputs=(x,), verbose=False)
    # thop registers buffers on every submodule; remove them so state_dict stays clean
    for m in module.modules():
        for name in ("total_ops", "total_params"):
            if name in getattr(m, "_buffers", {}):
                del m._buffers[name]
    return int(round(2 * macs))


def run_gate(
    onnx_path: str | Path,
    profile: DeviceProfile,
    sample: np.ndarray,
    thop: int | None = None,
    runs: int = 500,
    warmup: int = 50,
    precision: str = "fp32",
) -> BudgetReport:
    """Measure ``onnx_path`` and judge it against ``profile``.

    ``sample`` is one input row (1, n_features) used for latency. ``thop`` is the torch-side FLOP
    count when there is a torch model (cross-check against the ONNX counter, which decides).
    """
    stats = analyze_onnx(onnx_path)
    host, mem = measure_onnx_latency(onnx_path, sample[:1], profile.compute.threads, runs=runs, warmup=warmup)
    c, lim, tim = profile.compute, profile.limits, profile.timing
    # roofline: compute time at peak vs moving weights + activations through memory once
    bytes_moved = stats.weight_bytes + 2 * stats.peak_activation_bytes
    roofline_ms = 1e3 * max(stats.flops / (c.peak_gflops * 1e9), bytes_moved / (c.mem_bandwidth_gbs * 1e9))
    device_ms = max(host.p99_ms * c.slowdown_vs_host, roofline_ms)
    mflops = stats.flops / 1e6
    lines = [
        BudgetLine("flops", mflops, lim.max_mflops, "MFLOPs", "pass" if mflops <= lim.max_mflops else "fail", "ONNX count, batch 1"),
    ]
    if thop is not None and stats.flops > 0:
        rel = abs(thop - stats.flops) / stats.flops
        lines.append(
            BudgetLine(
                "flops_thop_agreement", round(100 * rel, 2), 100 * FLOPS_TOLERANCE, "%",
                "info" if rel <= FLOPS_TOLERANCE else "warn", f"thop {thop / 1e6:.4g} MFLOPs vs ONNX {mflops:.4g}",
            )
        )
    kib = stats.weight_bytes / 1024
    peak_kib = stats.peak_activation_bytes / 1024
    lines += [
        BudgetLine("params", stats.params, lim.max_params, "", "pass" if stats.params <= lim.max_params else "fail"),
        BudgetLine("model_size", kib, lim.max_model_kib, "KiB", "pass" if kib <= lim.max_model_kib else "fail",
                   ", ".join(f"{k} {v / 1024:.1f} KiB" for k, v in stats.weight_bytes_by_dtype.items())),
        BudgetLine("peak_activations", peak_kib, lim.max_peak_ram_kib, "KiB", "pass" if peak_kib <= lim.max_peak_ram_kib else "fail",
                   "liveness over the graph"),
        BudgetLine("host_latency_p50", host.p50_ms, None, "ms", "info",
                   f"onnxruntime, {host_threads(c.threads)} thread(s)" + (f" (profile asks {c.threads}; host has fewer cores)" if host_threads(c.threads) < c.threads else "")),
        BudgetLine("host_latency_p99", host.p99_ms, None, "ms", "info", f"{host.runs} runs after {host.warmup} warm-up, median of 5 rounds"),
        BudgetLine("device_latency_p99", device_ms, tim.inference_budget_ms, "ms",
                   "pass" if device_ms <= tim.inference_budget_ms else "fail",
                   f"max(host p99 x {c.slowdown_vs_host:g}, roofline {roofline_ms:.3g} ms)"),
        BudgetLine("beam_cycle_margin", tim.beam_cycle_ms - device_ms, 0.0, "ms",
                   "pass" if device_ms < tim.beam_cycle_ms else "fail", f"beam cycle {tim.beam_cycle_ms:g} ms minus device p99"),
        BudgetLine("precision", None, None, precision, "pass" if precision in profile.precision.allowed else "fail",
                   f"allowed: {', '.join(profile.precision.allowed)}"),
    ]
    if stats.uncounted_ops:
        lines.append(BudgetLine("uncounted_ops", len(stats.uncounted_ops), 0, "ops", "warn", ", ".join(stats.uncounted_ops)))
    return BudgetReport(profile.name, lines, stats, host, device_ms, roofline_ms, mem, thop)
