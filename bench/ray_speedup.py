"""Speed-up of ``python -m bench accuracy`` on Ray against the serial run, with the identical-results check.

    python bench/ray_speedup.py [--full] [--pairs N] [--out FILE.md]

Each pair runs ``python -m bench accuracy [--quick] --workers 1`` (serial) and then the same with ``--ray local``
(a local Ray runtime, one task per CPU), back to back, as subprocesses writing to a temp folder; it records the
end-to-end wall time (Ray's start-up included), the 1-minute load average before each run and the results digest
each report prints (sha256 over every number but timings: equal digests = identical results). A machine check
first and last: four CPU-bound numpy tasks serial vs on two processes (no edgebm, no Ray) shows how much 2-way
parallelism this machine gives right now; on a shared machine whose scheduler splits the CPUs between sessions
(Linux autogroup), that, not Ray, bounds the speed-up.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):   # before numpy loads BLAS; inherited
    os.environ[_v] = "1"                                                     # by the runs and the check's workers

import argparse  # noqa: E402
import multiprocessing as mp  # noqa: E402
import re  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import RESULTS, header, md_table, write_text  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _burn(seed: int) -> float:
    a = np.random.default_rng(seed).standard_normal((200, 200))
    for _ in range(3000):
        a = np.tanh(a @ a.T / 200)
    return float(a[0, 0])


def headroom() -> tuple[float, float, float]:
    """(serial s, 2 processes s, ratio) for four equal CPU-bound numpy tasks (BLAS on one thread)."""
    t = time.perf_counter()
    for i in range(4):
        _burn(i)
    serial = time.perf_counter() - t
    with mp.get_context("spawn").Pool(2) as p:
        p.map(_burn, [9, 9])                         # start-up and imports out of the timing
        t = time.perf_counter()
        p.map(_burn, range(4))
        par = time.perf_counter() - t
    return serial, par, serial / par


def _run(mode: list[str], quick: bool) -> tuple[float, str, float]:
    """(wall s, results digest, load before) of one ``python -m bench accuracy`` run."""
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="edgebm-speedup-") as d:
        cmd = [sys.executable, "-m", "bench", "accuracy", *(["--quick"] if quick else []), *mode, "--out", d]
        t = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wall = time.perf_counter() - t
        text = Path(d, f"accuracy{'_quick' if quick else ''}.md").read_text(encoding="utf-8")
    m = re.search(r"results digest [^`]*`([0-9a-f]{64})`", text)
    return wall, m.group(1) if m else "?", load


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(prog="python bench/ray_speedup.py", description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true", help="the full suite (default: --quick)")
    ap.add_argument("--pairs", type=int, default=2, help="serial + Ray pairs (default 2)")
    ap.add_argument("--out", type=Path, default=RESULTS / "ray_speedup.md")
    a = ap.parse_args(argv)
    h0 = headroom()
    rows, ratios, digests = [], [], set()
    for k in range(1, a.pairs + 1):
        ws, ds, ls = _run(["--workers", "1"], not a.full)
        wr, dr, lr = _run(["--ray", "local"], not a.full)
        ratios.append(ws / wr)
        digests |= {ds, dr}
        rows.append([k, round(ls, 1), round(ws, 1), round(lr, 1), round(wr, 1), round(ws / wr, 2), "yes" if ds == dr else "NO"])
        print(f"pair {k}: serial {ws:.1f} s, Ray {wr:.1f} s, {ws / wr:.2f}x, digests equal: {ds == dr}", flush=True)
    h1 = headroom()
    suite = "python -m bench accuracy" + ("" if a.full else " --quick")
    lines = header("Ray speed-up of the accuracy suite", "python bench/ray_speedup.py" + (" " + " ".join(argv) if argv else ""),
                   [f"each pair: `{suite} --workers 1` (serial), then `{suite} --ray local` (local Ray runtime, "
                    "1 task per CPU); end-to-end wall time incl. Python and Ray start-up",
                    f"machine check (4 CPU-bound numpy tasks, serial vs 2 processes): {h0[2]:.2f}x before, {h1[2]:.2f}x after "
                    f"({h0[0]:.1f} s / {h0[1]:.1f} s, {h1[0]:.1f} s / {h1[1]:.1f} s): the 2-way parallelism this machine "
                    "gave at the time (other sessions' jobs share its 2 CPUs)"])
    lines += md_table(["pair", "load before serial", "serial s", "load before Ray", "Ray s", "speed-up", "same results digest"], rows)
    lines += ["", f"Median speed-up {statistics.median(ratios):.2f}x over {len(ratios)} pairs; "
              f"{'all runs gave the same results digest' if len(digests) == 1 else 'DIGESTS DIFFER: ' + ', '.join(sorted(digests))}"
              + (f" (`{next(iter(digests))}`)." if len(digests) == 1 else ".")]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    write_text(a.out, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
