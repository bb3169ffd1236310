"""Budget gate: FLOPs, parameters, weight bytes, peak activation memory, latency, verdict vs a device profile."""

from .gate import EXIT_BAD_INPUT, EXIT_OVER_BUDGET, EXIT_PASS, FLOPS_TOLERANCE, BudgetLine, BudgetReport, run_gate, thop_flops
from .graph import GraphError, GraphStats, analyze_onnx, load_onnx
from .latency import LatencyStats, measure_onnx_latency, time_callable

__all__ = [
    "BudgetLine", "BudgetReport", "run_gate", "thop_flops", "FLOPS_TOLERANCE",
    "EXIT_PASS", "EXIT_BAD_INPUT", "EXIT_OVER_BUDGET",
    "GraphError", "GraphStats", "analyze_onnx", "load_onnx",
    "LatencyStats", "measure_onnx_latency", "time_callable",
]
