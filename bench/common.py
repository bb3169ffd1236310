"""Shared helpers of the benchmark suites: result headers (command, machine, date), atomic writes."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import sys
from pathlib import Path

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
