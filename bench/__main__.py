"""Benchmarks, run from a source checkout: ``python -m bench SUITE [--quick] [--out DIR] [--workers N | --ray
[local|ADDRESS]]``; ``all`` runs every suite. Suites whose ``run`` takes an ``executor`` (:mod:`edgebm.parallel`)
fan their independent tasks out on it; the results do not depend on the executor.

``bench/`` is a checkout tool, not part of the installed package (there is no ``edgebm bench`` command).
Each suite measures side by side in one run, prints a Markdown table and writes it (and PNGs)
to ``bench/results/`` with the command, machine and date.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import sys
import time
from pathlib import Path

from edgebm.errors import EdgebmError
from edgebm.parallel import add_ray_argument, make_executor

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
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="suites with independent tasks run them on N local processes (1 = serial; default: the suite's own, "
                        "e.g. 2 for accuracy); results do not depend on it")
    add_ray_argument(p, "the suites' independent tasks (training configurations)")
    argv = sys.argv[1:] if argv is None else argv
    a = p.parse_args(argv)
    if a.workers is not None and a.workers < 1:
        p.error("--workers: must be an integer >= 1")
    # "all" regenerates the measurements, not the shipped weights (run `pretrain` on its own)
    names = [n for n in SUITES if n != "pretrain"] if a.suite == "all" else [a.suite]
    mods = {name: importlib.import_module(SUITES[name]) for name in names}
    fans = {name for name, mod in mods.items() if "executor" in inspect.signature(mod.run).parameters}
    executor = None                  # one executor (one Ray runtime) for every suite that fans out
    try:
        for name in names:
            t0 = time.perf_counter()
            kw: dict = {"out_dir": Path(a.out)} if a.out else {}
            if name in fans and "argv" in inspect.signature(mods[name].run).parameters:   # the header says how tasks ran
                kw["argv"] = " ".join(["python -m bench", *argv]) if a.suite != "all" else ""
            if name in fans and (a.ray is not None or a.workers is not None):
                if executor is None:
                    try:
                        executor = make_executor(ray=a.ray, workers=a.workers or 1)
                    except EdgebmError as e:
                        print(f"python -m bench: error: {' '.join(str(e).split())}", file=sys.stderr)
                        return 2
                kw["executor"] = executor
            elif a.ray is not None or a.workers is not None:
                print(f"[{name}: runs in this process (no independent tasks to fan out); --ray / --workers ignored]",
                      file=sys.stderr)
            print(mods[name].run(quick=a.quick, **kw))
            print(f"[{name}: {time.perf_counter() - t0:.0f} s]", file=sys.stderr)
    finally:
        if executor is not None:
            executor.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
