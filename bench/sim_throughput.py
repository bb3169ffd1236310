"""Scenario-simulator throughput: UE samples per second on one CPU core, named city vs random cities.

    python bench/sim_throughput.py [--samples N] [--repeats R] [--out FILE.md]

Rows: the default scenario (city0, 28 GHz, 8x8 BS, Set B 16 -> Set A 64, 1x1 UE, 24 subcarriers),
the same with Set A 256, and with a 4x4 UE array; then the random scenario (16 -> 64, SNR 0-30 dB per
sample): N samples over N / 5000 random cities whose geometry the warm-up built (the simulation alone),
and N samples spread over N / 5000, N / 1000 and N / 200 fresh random cities, each timed run drawing new
cities (so the time includes building every city: layout, raster, wedge tables). BLAS is pinned to one thread before numpy is
imported; the first call of each row (caches) is a warm-up and is not timed; rows are timed round-robin
(run 1 of every row, then run 2, ...) so that load from other processes spreads over all rows alike.
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
from typing import Callable  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import cpu_name as _cpu_name  # noqa: E402
from edgebm.atomic import atomic_write_text  # noqa: E402
from edgebm.sim import RandomScenario, ScenarioConfig, simulate, simulate_random  # noqa: E402


def _named(cfg: ScenarioConfig) -> Callable[[int, int], object]:
    return lambda n, run: simulate(cfg, n, seed=1 + run)


def _random(per_city: int, prebuilt: bool = False) -> Callable[[int, int], object]:
    k = lambda n: max(1, n // per_city)  # noqa: E731
    if prebuilt:    # the same dataset seed every run: its cities are built by the warm-up (run -1) and cached
        return lambda n, run: simulate_random(RandomScenario(cities=k(n)), n, seed=77)
    # a new dataset seed every run -> new cities, built inside the timed call
    return lambda n, run: simulate_random(RandomScenario(cities=k(n)), n, seed=1000 + 7 * run)


# (row, function(n_samples, run), warm-up with the full sample count)
ROWS: list[tuple[str, Callable[[int, int], object], bool]] = [
    ("city0, 16 -> 64, 8x8 BS, 1x1 UE", _named(ScenarioConfig()), False),
    ("city0, 16 -> 256, 8x8 BS, 1x1 UE", _named(ScenarioConfig(set_a=256)), False),
    ("city0, 16 -> 64, 8x8 BS, 4x4 UE", _named(ScenarioConfig(ue_array=(4, 4))), False),
    ("random, 16 -> 64, 5000 samples per city, cities built before timing", _random(5000, prebuilt=True), True),
    ("random, 16 -> 64, 5000 samples per city, cities built in the run", _random(5000), False),
    ("random, 16 -> 64, 1000 samples per city, cities built in the run", _random(1000), False),
    ("random, 16 -> 64, 200 samples per city, cities built in the run", _random(200), False),
]


LOAD: list[float] = []      # 1-minute load average before and after the timed runs (shared machines)
BUILD_MS: list[float] = []  # city_build_ms() of the last run


def run(samples: int, repeats: int) -> list[tuple[str, float, float, float]]:
    """``(row, median, min, max)`` samples/s per row; rows timed round-robin."""
    LOAD[:] = [os.getloadavg()[0]]
    rates: dict[str, list[float]] = {name: [] for name, _, _ in ROWS}
    for name, fn, full in ROWS:
        fn(samples if full else 256, -1)                 # warm-up: caches (codebooks, city0, the prebuilt cities)
    for r in range(repeats):
        for name, fn, _ in ROWS:
            t = time.perf_counter()
            fn(samples, r)
            rates[name].append(samples / (time.perf_counter() - t))
    BUILD_MS[:] = [city_build_ms()]
    LOAD.append(os.getloadavg()[0])
    return [(name, statistics.median(v), min(v), max(v)) for name, v in rates.items()]


def city_build_ms(n_cities: int = 10, seed: int = 424242) -> float:
    """Mean ms to build one fresh random city completely: layout and raster, scene context, and the wedge tables
    of every apex (an upper bound: a run builds only the tables its UEs use)."""
    from edgebm.sim import make_city
    from edgebm.sim.visibility import scene_context

    rs = RandomScenario(cities=n_cities)
    t = time.perf_counter()
    for k in range(n_cities):
        cfg = rs.city_config(seed, k)
        make_city(cfg.city)
        ctx = scene_context(cfg.city, cfg.bs_height_m)
        ctx.apex.ensure(np.arange(len(ctx.apex.xy)))
    return 1000.0 * (time.perf_counter() - t) / n_cities


def table(results, samples: int, repeats: int, argv: list[str]) -> str:
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# edgebm.sim throughput",
        "",
        f"- command: `python bench/sim_throughput.py {' '.join(argv)}`".rstrip(),
        f"- machine: {platform.platform()}, {_cpu_name()}, {os.cpu_count()} logical CPUs (BLAS pinned to 1 thread)",
        f"- python {platform.python_version()}, numpy {np.__version__}",
        *([f"- 1-minute load average {LOAD[0]:.1f} before, {LOAD[-1]:.1f} after the timed runs on "
           f"{os.cpu_count()} CPUs (other jobs share this machine: absolute rates scale with the load, the "
           "ratios between rows timed round-robin are the result)"] if LOAD else []),
        f"- date: {now}",
        f"- {samples} UE samples per run, {repeats} runs per row, timed round-robin (median, min, max); 28 GHz, "
        "24 subcarriers; city0 at SNR 20 dB, random cities at SNR 0-30 dB per sample",
        "",
        "| scenario | samples/s (median) | min | max | vs city0 16 -> 64 |",
        "|---|---:|---:|---:|---:|",
    ]
    ref = results[0][1]
    for name, med, lo, hi in results:
        lines.append(f"| {name} | {med:,.0f} | {lo:,.0f} | {hi:,.0f} | {med / ref:.2f}x |")
    if BUILD_MS:
        lines += ["", f"Building one fresh random city completely (layout, raster, scene context and the wedge tables of "
                  f"every apex; a run builds only the tables its UEs use) took {BUILD_MS[0]:.0f} ms on average over "
                  "10 cities, measured right after the rows. Random cities differ in size (coverage radius 150-260 m, "
                  "density); the two 5000-per-city rows use different cities of the same distribution."]
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
