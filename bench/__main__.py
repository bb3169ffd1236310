"""Benchmarks, run from a source checkout: ``python -m bench SUITE [--quick] [--out DIR]``; ``all`` runs every suite.

``bench/`` is a checkout tool, not part of the installed package (there is no ``edgebm bench`` command).
Each suite measures side by side in one run, prints a Markdown table and writes it (and PNGs)
to ``bench/results/`` with the command, machine and date.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

SUITES = {
    "latency": "bench.latency",
    "accuracy": "bench.accuracy",
    "hetero": "bench.hetero",
    "compress": "bench.compress_tradeoff",
    "throughput": "bench.throughput",
    "adaptation": "bench.adaptation",
    "targets": "bench.targets",
    "pretrain": "bench.pretrain",
    "generalise": "bench.generalise",
    "lcm": "bench.lcm",
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("suite", choices=[*SUITES, "all"])
    p.add_argument("--quick", action="store_true", help="small sizes for a smoke run (minutes)")
    p.add_argument("--out", default=None, help="results folder (default bench/results)")
    a = p.parse_args(argv)
    # "all" regenerates the measurements, not the shipped weights (run `pretrain` on its own)
    names = [n for n in SUITES if n != "pretrain"] if a.suite == "all" else [a.suite]
    for name in names:
        t0 = time.perf_counter()
        mod = importlib.import_module(SUITES[name])
        kw = {"out_dir": Path(a.out)} if a.out else {}
        print(mod.run(quick=a.quick, **kw))
        print(f"[{name}: {time.perf_counter() - t0:.0f} s]", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
