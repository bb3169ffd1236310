"""UE emulator: the runtime in a closed loop over simulated trajectories with SSB timing,
deadlines, hierarchical fallback, domain shifts and on-device head updates."""

from .loop import EmulatorConfig, EmulatorError, EmulatorResult, Shift, parse_shift, run_emulator
from .report import compute_kpis, write_report

__all__ = ["EmulatorConfig", "EmulatorError", "EmulatorResult", "Shift", "parse_shift", "run_emulator", "compute_kpis", "write_report"]
