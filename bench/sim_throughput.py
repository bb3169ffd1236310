"""Scenario-simulator throughput: UE samples per second on one CPU core.

    python bench/sim_throughput.py [--samples N] [--repeats R] [--out FILE.md]

Rows: the default scenario (city0, 28 GHz, 8x8 BS, Set B 16 -> Set A 64, 1x1 UE, 24 subcarriers),
the same with Set A 256, and with a 4x4 UE array. BLAS is pinned to one thread before numpy is
imported; the first call of each row (city tables, codebooks) is a warm-up and is not timed.
"""

from __future__ import annotations

import os

for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse  # noqa: E402
import datetime as _dt  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import cpu_name as _cpu_name  # noqa: E402
from edgebm.atomic import atomic_write_text  # noqa: E402
from edgebm.sim import ScenarioConfig, simulate  # noqa: E402

ROWS = [
    ("16 -> 64, 8x8 BS, 1x1 UE", ScenarioConfig()),
    ("16 -> 256, 8x8 BS, 1x1 UE", ScenarioConfig(set_a=256)),
    ("16 -> 64, 8x8 BS, 4x4 UE", ScenarioConfig(ue_array=(4, 4))),
]


def run(samples: int, repeats: int) -> list[tuple[str, float, float, float]]:
    out = []
    for name, cfg in ROWS:
        simulate(cfg, 256, seed=0)                       # warm-up: caches
        rates = []
        for r in range(repeats):
            t = time.perf_counter()
            simulate(cfg, samples, seed=1 + r)
            rates.append(samples / (time.perf_counter() - t))
        out.append((name, statistics.median(rates), min(rates), max(rates)))
    return out


def table(results, samples: int, repeats: int, argv: list[str]) -> str:
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# edgebm.sim throughput",
        "",
        f"- command: `python bench/sim_throughput.py {' '.join(argv)}`".rstrip(),
        f"- machine: {platform.platform()}, {_cpu_name()}, {os.cpu_count()} logical CPUs (BLAS pinned to 1 thread)",
        f"- python {platform.python_version()}, numpy {np.__version__}",
        f"- date: {now}",
        f"- {samples} UE samples per run, {repeats} runs per row (median, min, max); 28 GHz, city0, 24 subcarriers, SNR 20 dB",
        "",
        "| scenario | samples/s (median) | min | max |",
        "|---|---:|---:|---:|",
    ]
    for name, med, lo, hi in results:
        lines.append(f"| {name} | {med:,.0f} | {lo:,.0f} | {hi:,.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=20000, help="UE samples per timed run (default 20000)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per row (default 3)")
    ap.add_argument("--out", type=Path, default=None, help="also write the Markdown table to this file")
    a = ap.parse_args(argv)
    if a.samples < 1 or a.repeats < 1:
        ap.error("--samples and --repeats must be >= 1")
    md = table(run(a.samples, a.repeats), a.samples, a.repeats, argv)
    print(md, end="")
    if a.out is not None:
        atomic_write_text(a.out, md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
