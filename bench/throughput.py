"""Suite 5 — simulator throughput (UE samples/s) and emulator throughput (UE-cycles/s).

The simulator rows come from ``bench/sim_throughput.py`` (BLAS pinned to one thread there when run
as a script; here the suite runs in-process). The emulator row runs the real closed loop (one
single-sample runtime call per UE and cycle, refinement, fallback, adaptation) on a bundle exported
from the default scenario.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from .common import RESULTS, header, md_table, write_text


def run(quick: bool = False, out_dir: Path = RESULTS, argv: str = "") -> str:
    from bench.sim_throughput import BUILD_MS
    from bench.sim_throughput import run as sim_run

    from edgebm.emulator import EmulatorConfig, parse_shift, run_emulator
    from edgebm.pipeline import default_dataset, export_for_profile
    from edgebm.train import TrainConfig

    samples, repeats = (4000, 2) if quick else (20000, 3)
    sim_rows = sim_run(samples, repeats)
    lines = header("Simulator and emulator throughput (suite 5)", f"python -m bench throughput{' --quick' if quick else ''}",
                   [f"simulator: {samples} UE samples per run, {repeats} runs per row timed round-robin (median, min, max); "
                    "28 GHz, 24 subcarriers; city0 at 20 dB, random cities at 0-30 dB per sample (rows: see "
                    "bench/sim_throughput.py)"])
    lines += ["## Simulator", ""]
    lines += md_table(["scenario", "UE samples/s (median)", "min", "max"], [[n, round(m), round(lo), round(hi)] for n, m, lo, hi in sim_rows])
    if BUILD_MS:
        lines += ["", f"Building one fresh random city completely (layout, tables of every apex) took {BUILD_MS[0]:.0f} ms "
                  "on average over 10 cities.", ""]
    with tempfile.TemporaryDirectory() as td:
        res = export_for_profile("smartphone", default_dataset(4000, 0), Path(td) / "b", families=["mlp"],
                                 train_cfg=TrainConfig(epochs=5, seed=0), latency_runs=50)
        rows = []
        for ues, dur, shift in ((16, 2.0 if quick else 10.0, None), (64, 1.0 if quick else 5.0, "codebook:random64")):
            cfg = EmulatorConfig(n_ues=ues, duration_s=dur, shifts=(parse_shift(shift, dur / 2),) if shift else (), seed=0)
            t0 = time.perf_counter()
            r = run_emulator(res.bundle_dir, cfg)
            wall = time.perf_counter() - t0
            n = r.se["edgebm"].size
            rows.append([f"{ues} UEs x {r.se['edgebm'].shape[0]} cycles" + (f", shift {shift}" if shift else ""), n, round(wall, 2), round(n / wall)])
    lines += ["", "## Emulator (smartphone MLP bundle, adaptation on)", ""]
    lines += md_table(["run", "UE-cycles", "wall s (incl. simulation)", "UE-cycles/s"], rows)
    lines += ["", "Simulated time runs faster than real time when UE-cycles/s exceeds UEs x 1000 / cycle_ms "
              "(16 UEs at 20 ms need 800 UE-cycles/s).", ""]
    text = "\n".join(lines)
    write_text(out_dir / "throughput.md", text)
    return text
