"""The budget gate: every candidate model against a device profile, line by line; every judged line can fail.

:func:`judge` is the arithmetic (pure: graph statistics + measured latency and memory + profile -> report);
:func:`run_gate` measures (ONNX analysis, an onnxruntime session's memory and pooled single-call latency,
re-measured when the device latency lands within ±20 % of a latency limit) and calls it.

Lines (``status`` ``pass``/``fail`` decide the verdict; ``info``/``warn`` do not):

- ``flops`` (ONNX count, batch 1) <= ``max_mflops``; ``flops_thop_agreement``: |thop - ONNX| / ONNX <=
  :data:`FLOPS_TOLERANCE` when a torch model was counted; ``uncounted_ops``: an op with no FLOP rule fails and is
  named (its FLOPs would silently count as 0);
- ``params`` <= ``max_params``; ``model_size`` (weight bytes) <= ``max_model_kib``; ``peak_activations`` (liveness
  over the graph) and ``session_memory`` (heap an onnxruntime session holds after one run, arena off; judged when the
  profile deploys with onnxruntime, information otherwise) <= ``max_peak_ram_kib``;
- ``device_latency_p99`` = max(``host_p99_scaled`` = pooled host p99 x ``slowdown_vs_host``, ``roofline`` =
  max(FLOPs / peak, bytes moved / bandwidth)) <= ``inference_budget_ms``; ``beam_cycle_margin`` = beam cycle -
  device p99 >= 0. A profile with ``backend = "c"`` (microcontroller: no onnxruntime on the device) gets these two
  and ``session_memory`` as information: the compiled-C lines of :mod:`.mcu` (``c_flash``, ``c_ram`` incl. stack,
  ``c_device_latency_p99``), added by the caller through ``extra_lines`` / the target check, decide there;
- ``precision`` in ``allowed``; ``trainable_head`` <= ``max_trainable_params`` when ``on_device_update`` (info when
  the profile does not update on the device or the candidate has no head);
- ``energy`` = FLOPs x ``[energy] pj_per_flop``, µJ per inference: information only (profiles carry no energy
  limit; the recipe's ``objective = "energy"`` ranks by it);
- ``extra_lines``: lines the caller measured (parity, int8 slower than fp32, accelerator coverage, C flash/RAM...).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import EXIT_BAD_INPUT, EXIT_OVER_BUDGET  # exit codes are declared once, in errors.py
from ..errors import EXIT_OK as EXIT_PASS
from ..numfmt import fmt_num
from ..profiles import DeviceProfile
from .graph import GraphStats, analyze_onnx
from .latency import LatencyStats, SessionProbe, host_threads

__all__ = [
    "BudgetLine", "BudgetReport", "limit_line", "judge", "run_gate", "thop_flops", "device_latency_ms", "roofline_ms", "FLOPS_TOLERANCE",
    "REMEASURE_BAND", "EXIT_PASS", "EXIT_OVER_BUDGET", "EXIT_BAD_INPUT",
]

#: thop (torch) and the ONNX counter must agree within this relative tolerance, or the gate fails
FLOPS_TOLERANCE = 0.15
#: a device latency within this relative distance of a latency limit is re-measured (more runs, pooled) before the verdict
REMEASURE_BAND = 0.20


@dataclass(frozen=True)
class BudgetLine:
    """One gate line. ``status`` is ``pass``, ``fail`` or ``info``/``warn`` (not part of the verdict).
    ``bound`` says how value and limit compare when the line passes: ``max`` (value <= limit) or ``min`` (value >= limit)."""

    name: str
    value: float | None
    limit: float | None
    unit: str
    status: str
    note: str = ""
    bound: str = "max"

    def to_dict(self) -> dict:
        return {"name": self.name, "value": self.value, "limit": self.limit, "unit": self.unit, "status": self.status, "note": self.note}

    def why(self) -> str:
        """The failed comparison in words, e.g. ``flops 12 MFLOPs > 10 MFLOPs``."""
        note = f" ({self.note})" if self.note else ""
        if self.value is None or self.limit is None:
            return " ".join(p for p in (self.name, fmt_num(self.value) if self.value is not None else "", self.unit) if p) + note
        op = ">" if self.bound == "max" else "<"
        unit = f" {self.unit}" if self.unit else ""
        return f"{self.name} {fmt_num(self.value)}{unit} {op} {fmt_num(self.limit)}{unit}{note}"


def limit_line(name: str, value: float, limit: float, unit: str, note: str = "", bound: str = "max") -> BudgetLine:
    """A judged line: ``pass`` when ``value <= limit`` (``bound="max"``) or ``value >= limit`` (``bound="min"``)."""
    ok = value <= limit if bound == "max" else value >= limit
    return BudgetLine(name, value, limit, unit, "pass" if ok else "fail", note, bound)


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

    def line(self, name: str) -> BudgetLine | None:
        return next((l for l in self.lines if l.name == name), None)

    def reason(self) -> str:
        """One readable sentence naming every failed line."""
        fails = self.failures
        return "; ".join(l.why() for l in fails) if fails else "within budget"

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
            rows.append(f"| {l.name} | {fmt_num(l.value)} | {fmt_num(l.limit)} | {l.unit} | {l.status.upper()} | {l.note} |")
        return "\n".join(rows)


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


def roofline_ms(stats: GraphStats, peak_gflops: float, mem_bandwidth_gbs: float) -> float:
    """Analytic device time, ms: the slower of computing the FLOPs at peak and moving the weights once plus the
    peak activations in and out (2x) through memory: ``1e3 x max(F / (P x 1e9), (W + 2 A) / (B x 1e9))``."""
    bytes_moved = stats.weight_bytes + 2 * stats.peak_activation_bytes
    return 1e3 * max(stats.flops / (peak_gflops * 1e9), bytes_moved / (mem_bandwidth_gbs * 1e9))


def device_latency_ms(host_p99_ms: float, slowdown_vs_host: float, roofline: float) -> tuple[float, str]:
    """Emulated device p99, ms, and which estimate decided: ``max(host p99 x slowdown, roofline)``."""
    scaled = host_p99_ms * slowdown_vs_host
    return (scaled, "host_p99_scaled") if scaled >= roofline else (roofline, "roofline")


def judge(
    stats: GraphStats,
    host: LatencyStats,
    session_mem_bytes: int | None,
    profile: DeviceProfile,
    *,
    thop: int | None = None,
    precision: str = "fp32",
    head_params: int | None = None,
    extra_lines: Sequence[BudgetLine] = (),
    latency_note: str = "",
) -> BudgetReport:
    """The gate's arithmetic: lines and verdict from graph statistics, measured latency and memory and ``profile``
    (see the module docstring). ``head_params``: trainable parameters of the on-device head (None: no head)."""
    c, lim, tim = profile.compute, profile.limits, profile.timing
    roof = roofline_ms(stats, c.peak_gflops, c.mem_bandwidth_gbs)
    device_ms, decided_by = device_latency_ms(host.p99_ms, c.slowdown_vs_host, roof)
    mflops = stats.flops / 1e6
    lines = [limit_line("flops", mflops, lim.max_mflops, "MFLOPs", "ONNX count, batch 1")]
    if thop is not None:
        rel = abs(thop - stats.flops) / stats.flops if stats.flops > 0 else (0.0 if thop == 0 else float("inf"))
        lines.append(limit_line("flops_thop_agreement", round(100 * rel, 2), 100 * FLOPS_TOLERANCE, "%",
                           f"thop {thop / 1e6:.4g} MFLOPs vs ONNX {mflops:.4g}; the ONNX count decides"))
    unk = stats.uncounted_ops
    lines.append(BudgetLine("uncounted_ops", len(unk), 0, "ops", "fail" if unk else "pass",
                            f"no FLOP rule for {', '.join(unk)}: the FLOP count would be too low" if unk else "every op has a FLOP rule"))
    kib = stats.weight_bytes / 1024
    lines += [
        limit_line("params", stats.params, lim.max_params, ""),
        limit_line("model_size", kib, lim.max_model_kib, "KiB", ", ".join(f"{k} {v / 1024:.1f} KiB" for k, v in stats.weight_bytes_by_dtype.items())),
        limit_line("peak_activations", stats.peak_activation_bytes / 1024, lim.max_peak_ram_kib, "KiB", "liveness over the graph"),
    ]
    if session_mem_bytes is None:
        lines.append(BudgetLine("session_memory", None, lim.max_peak_ram_kib, "KiB", "info", "not measurable on this host"))
    elif c.backend == "c":
        lines.append(BudgetLine("session_memory", session_mem_bytes / 1024, lim.max_peak_ram_kib, "KiB", "info",
                                f"onnxruntime session on this host; {_C_NOTE}: c_ram (data + bss + stack) decides"))
    elif c.backend != "onnxruntime":
        lines.append(BudgetLine("session_memory", session_mem_bytes / 1024, lim.max_peak_ram_kib, "KiB", "info",
                                f"onnxruntime session; the profile deploys with {c.backend}"))
    else:
        lines.append(limit_line("session_memory", session_mem_bytes / 1024, lim.max_peak_ram_kib, "KiB",
                                "heap an onnxruntime session (arena off) holds after one run"))
    nthr = host_threads(c.threads)
    lines += [
        BudgetLine("host_latency_p50", host.p50_ms, None, "ms", "info",
                   f"onnxruntime, {nthr} thread(s)" + (f" (profile asks {c.threads}; host has fewer cores)" if nthr < c.threads else "")),
        BudgetLine("host_latency_p99", host.p99_ms, None, "ms", "info",
                   f"pooled over {host.runs} runs after {host.warmup} warm-up" + (f"; {latency_note}" if latency_note else "")),
        BudgetLine("host_p99_scaled", host.p99_ms * c.slowdown_vs_host, None, "ms", "info", f"host p99 x slowdown {c.slowdown_vs_host:g}"),
        BudgetLine("roofline", roof, None, "ms", "info",
                   f"max({mflops:.4g} MFLOPs / {c.peak_gflops:g} GFLOP/s, {(stats.weight_bytes + 2 * stats.peak_activation_bytes) / 1024:.4g} KiB "
                   f"/ {c.mem_bandwidth_gbs:g} GB/s)"),
        _ort_line(limit_line("device_latency_p99", device_ms, tim.inference_budget_ms, "ms",
                             f"max(host p99 scaled, roofline): {decided_by} decides"), c.backend, "c_device_latency_p99"),
        _ort_line(limit_line("beam_cycle_margin", tim.beam_cycle_ms - device_ms, 0.0, "ms",
                             f"beam cycle {tim.beam_cycle_ms:g} ms minus device p99", bound="min"), c.backend, "c_device_latency_p99"),
        BudgetLine("precision", None, None, precision, "pass" if precision in profile.precision.allowed else "fail",
                   f"allowed: {', '.join(profile.precision.allowed)}"),
    ]
    ad = profile.adaptation
    if not ad.on_device_update:
        lines.append(BudgetLine("trainable_head", head_params, ad.max_trainable_params, "params", "info",
                                "the profile does not update models on the device"))
    elif head_params is None:
        lines.append(BudgetLine("trainable_head", None, ad.max_trainable_params, "params", "info",
                                "no trainable head: this candidate cannot adapt on the device"))
    else:
        lines.append(limit_line("trainable_head", head_params, ad.max_trainable_params, "params", "head updated on the device"))
    energy_uj = None
    if profile.energy is not None:
        energy_uj = stats.flops * profile.energy.pj_per_flop * 1e-6  # pJ -> µJ
        lines.append(BudgetLine("energy", energy_uj, None, "µJ/inference", "info", f"FLOPs x {profile.energy.pj_per_flop:g} pJ/FLOP"))
    lines += list(extra_lines)
    extra = {"device_latency_decided_by": decided_by, "head_params": head_params, "energy_uj": energy_uj}
    return BudgetReport(profile.name, lines, stats, host, device_ms, roof, session_mem_bytes, thop, extra)


#: why onnxruntime's lines only inform on a microcontroller profile
_C_NOTE = "the profile deploys compiled C (backend c, no onnxruntime on the device)"


def _ort_line(line: BudgetLine, backend: str, decides: str) -> BudgetLine:
    """``line`` (measured through onnxruntime) as information when the profile deploys compiled C, naming the C
    line that judges the same quantity instead."""
    if backend != "c":
        return line
    return replace(line, status="info", note=f"{line.note}; onnxruntime on this host, {_C_NOTE}: {decides} decides")


def _borderline(device_ms: float, profile: DeviceProfile) -> bool:
    limits = (profile.timing.inference_budget_ms, profile.timing.beam_cycle_ms)
    return any(abs(device_ms - lim) <= REMEASURE_BAND * lim for lim in limits)


def run_gate(
    onnx_path: str | Path,
    profile: DeviceProfile,
    sample: np.ndarray,
    thop: int | None = None,
    runs: int = 500,
    warmup: int = 50,
    precision: str = "fp32",
    head_params: int | None = None,
    extra_lines: Sequence[BudgetLine] = (),
) -> BudgetReport:
    """Measure ``onnx_path`` and judge it against ``profile``.

    ``sample`` is one input row (1, n_features) used for latency. ``thop`` is the torch-side FLOP count when
    there is a torch model (cross-check against the ONNX counter, which decides). ``head_params``: trainable
    parameters of the head the device updates. ``extra_lines`` are appended to the report as they are.
    A device latency within ±20 % of the inference budget or the beam cycle is re-measured with twice the runs,
    pooled with the first measurement, before the verdict.
    """
    stats = analyze_onnx(onnx_path)
    probe = SessionProbe(onnx_path, sample[:1], profile.compute.threads)
    host = probe.time(runs, warmup)
    note = ""
    roof = roofline_ms(stats, profile.compute.peak_gflops, profile.compute.mem_bandwidth_gbs)
    first, _ = device_latency_ms(host.p99_ms, profile.compute.slowdown_vs_host, roof)
    if _borderline(first, profile):
        host = probe.time(2 * runs, warmup)
        note = f"re-measured: the first {runs} runs gave a device p99 of {first:.4g} ms, within {REMEASURE_BAND:.0%} of a limit"
    return judge(stats, host, probe.memory_bytes, profile, thop=thop, precision=precision, head_params=head_params,
                 extra_lines=extra_lines, latency_note=note)
