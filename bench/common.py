"""Shared helpers of the benchmark suites: result headers (command, machine, date), atomic writes."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import sys
from pathlib import Path
from typing import Callable

from edgebm.atomic import atomic_write, atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def header(title: str, command: str, notes: list[str] | None = None) -> list[str]:
    """Markdown lines every committed result starts with: what ran, where, when."""
    import numpy as np

    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"# {title}",
        "",
        f"- command: `{command}`",
        f"- machine: {platform.platform()}, {cpu_name()}, {os.cpu_count()} logical CPUs",
        f"- python {platform.python_version()}, numpy {np.__version__}" + _versions(),
        f"- date: {now}",
        f"- host load average (1/5/15 min) when this was written: {', '.join(f'{v:.1f}' for v in os.getloadavg())} on {os.cpu_count()} logical CPUs"
        if hasattr(os, "getloadavg") else "- load average: unavailable",
    ]
    lines += [f"- {n}" for n in notes or []]
    return lines + [""]


def _versions() -> str:
    out = []
    for mod in ("torch", "onnxruntime", "sklearn"):
        try:
            m = __import__(mod)
            out.append(f"{mod} {m.__version__}")
        except ImportError:
            pass
    return (", " + ", ".join(out)) if out else ""


def write_text(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (:mod:`edgebm.atomic`)."""
    return atomic_write_text(path, text)


def save_fig(fig, path: Path) -> Path:
    """Save a matplotlib figure as PNG at ``path`` atomically."""
    return atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))


def md_table(columns: list[str], rows: list[list[object]]) -> list[str]:
    """A Markdown table; numbers through edgebm's one formatter (``edgebm.numfmt.fmt_num``)."""
    from edgebm.numfmt import fmt_num as fmt

    right = ["---:" if rows and isinstance(rows[0][i], (int, float)) else "---" for i in range(len(columns))]
    return ["| " + " | ".join(columns) + " |", "| " + " | ".join(right) + " |"] + ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]


def interleaved_latency(fns: dict[str, Callable[[], object]], rounds: int, per_round: int, warmup: int = 50) -> dict[str, dict]:
    """Time several single-call functions in interleaved rounds (each round times every function
    ``per_round`` times, in an order rotated every round), so load from other processes on a shared
    machine spreads over all of them. p50/p99 = median over rounds of the round's percentile (ms)."""
    import time

    import numpy as np

    names = list(fns)
    for name in names:
        for _ in range(warmup):
            fns[name]()
    per: dict[str, list[tuple[float, float]]] = {n: [] for n in names}
    t = np.empty(per_round, dtype=np.float64)
    for r in range(rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            fn = fns[name]
            for i in range(per_round):
                t0 = time.perf_counter_ns()
                fn()
                t[i] = time.perf_counter_ns() - t0
            p50, p99 = np.percentile(t, [50, 99]) / 1e6
            per[name].append((float(p50), float(p99)))
    return {n: {"p50_ms": float(np.median([v[0] for v in vals])), "p99_ms": float(np.median([v[1] for v in vals]))}
            for n, vals in per.items()}
