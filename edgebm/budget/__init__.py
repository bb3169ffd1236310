"""Budget gate: FLOPs, parameters, weight bytes, peak activation and session memory, latency, energy, verdict vs a device profile."""

from .gate import (
    EXIT_BAD_INPUT, EXIT_OVER_BUDGET, EXIT_PASS, FLOPS_TOLERANCE, REMEASURE_BAND, BudgetLine, BudgetReport, device_latency_ms, judge,
    limit_line, roofline_ms, run_gate, thop_flops,
)
from .graph import GraphError, GraphStats, analyze_onnx, load_onnx
from .latency import LatencyStats, SessionProbe, measure_onnx_latency, time_callable, time_samples

__all__ = [
    "BudgetLine", "BudgetReport", "run_gate", "judge", "limit_line", "thop_flops", "roofline_ms", "device_latency_ms",
    "FLOPS_TOLERANCE", "REMEASURE_BAND", "EXIT_PASS", "EXIT_BAD_INPUT", "EXIT_OVER_BUDGET",
    "GraphError", "GraphStats", "analyze_onnx", "load_onnx",
    "LatencyStats", "SessionProbe", "measure_onnx_latency", "time_callable", "time_samples",
]
