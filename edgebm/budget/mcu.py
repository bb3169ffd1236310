"""Gate lines for the C target (``backend = "c"``): flash, RAM, latency and agreement of the compiled predictor.

Measured, not estimated, with the system C compiler (``$CC``, else ``cc`` / ``gcc`` / ``clang``):

* **flash** = ``.text`` + ``.rodata`` + ``.data`` of ``model.c`` compiled with ``-std=c99 -Os``
  (``.data`` holds initial values, which live in flash too), read with binutils ``size -A``;
* **RAM** = ``.data`` + ``.bss`` + the stack that ``edgebm_predict`` needs: the deepest call chain of
  GCC's ``-fcallgraph-info=su`` (per-function frames from ``-fstack-usage``); libm calls have no
  frame information and are not counted (a note says so);
* **latency**: a host harness (``c_templates/harness.c.in``, ``-O2``) times every call on held-out
  rows (after one untimed pass over them); percentiles pooled over every call (as the ONNX gate
  pools them), minus the timer's own median overhead, then scaled by the profile's
  ``slowdown_vs_host`` (the MCU core against one host core);
* **agreement**: the harness's beams against onnxruntime's top-1 on the same rows.

Sizes come from the host compiler (x86-64 here): the weights dominate and do not depend on the ISA;
Thumb-2 code for a Cortex-M is usually smaller than x86-64 code.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..profiles import DeviceProfile
from .gate import BudgetLine
from .latency import LatencyStats

__all__ = ["CBuild", "find_cc", "measure_c", "mcu_lines", "MAX_MISMATCH_PCT"]

#: top-1 of the compiled C may differ from onnxruntime on at most this share of held-out samples (%)
MAX_MISMATCH_PCT = 0.1
_FLAGS = ["-std=c99", "-Wall", "-Wextra", "-Wno-unused-function", "-Wno-unused-parameter", "-Wno-unused-variable"]
_HARNESS = Path(__file__).resolve().parent.parent / "deploy" / "c_templates" / "harness.c.in"


def find_cc() -> str | None:
    """The C compiler to use: ``$CC`` if set, else the first of cc, gcc, clang on PATH."""
    env = os.environ.get("CC")
    if env:
        return shutil.which(env) or env
    return next((p for p in (shutil.which(c) for c in ("cc", "gcc", "clang")) if p), None)


@dataclass
class CBuild:
    """What the compiled predictor costs (bytes, ms) and how it agrees with onnxruntime."""

    compiler: str
    sections: dict[str, int]
    flash_bytes: int
    static_ram_bytes: int
    stack_bytes: int | None
    stack_note: str
    host_latency: LatencyStats | None
    timer_overhead_ns: float
    n_samples: int
    mismatches: int
    warnings: list[str] = field(default_factory=list)

    @property
    def ram_bytes(self) -> int:
        return self.static_ram_bytes + (self.stack_bytes or 0)

    @property
    def agreement(self) -> float:
        return 1.0 - self.mismatches / self.n_samples if self.n_samples else float("nan")

    def to_dict(self) -> dict:
        return {
            "compiler": self.compiler, "sections": self.sections, "flash_bytes": self.flash_bytes,
            "static_ram_bytes": self.static_ram_bytes, "stack_bytes": self.stack_bytes, "stack_note": self.stack_note,
            "ram_bytes": self.ram_bytes, "host_latency": self.host_latency.to_dict() if self.host_latency else None,
            "timer_overhead_ns": round(self.timer_overhead_ns, 1), "n_samples": self.n_samples,
            "mismatches": self.mismatches, "top1_agreement": round(self.agreement, 6), "warnings": self.warnings,
        }


def _run(cmd: list[str], cwd: Path, what: str) -> str:
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        raise RuntimeError(f"{what} failed ({' '.join(cmd[:3])} ...): {(p.stderr or p.stdout).strip().splitlines()[:1]}")
    return p.stderr


def _sections(obj: Path, cwd: Path) -> dict[str, int]:
    """Section sizes (bytes) of an object file from ``size -A``, grouped as text / rodata / data / bss."""
    size = shutil.which("size")
    if size is None:
        raise RuntimeError("binutils 'size' is not on PATH")
    out = subprocess.run([size, "-A", str(obj)], cwd=cwd, capture_output=True, text=True, check=True).stdout
    groups = {"text": 0, "rodata": 0, "data": 0, "bss": 0}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 2 or not parts[0].startswith(".") or not parts[1].isdigit():
            continue
        name, n = parts[0], int(parts[1])
        for g in ("rodata", "text", "data", "bss"):  # .rodata before .data: ".rodata" contains "data"
            if name == f".{g}" or name.startswith(f".{g}."):
                groups[g] += n
                break
    return groups


def _stack(ci: Path, su: Path, entry: str) -> tuple[int | None, str]:
    """Worst-case stack (bytes) of ``entry`` over the call graph of GCC's ``.ci`` file (VCG)."""
    if not ci.is_file():
        if su.is_file():  # no call graph (not GCC): the sum of every function's frame bounds the chain
            frames = [int(m.group(1)) for m in re.finditer(r"\t(\d+)\t", su.read_text())]
            return sum(frames), "sum of all frames in -fstack-usage (no call graph from this compiler)"
        return None, "stack not measured (compiler has neither -fcallgraph-info nor -fstack-usage)"
    text = ci.read_text()
    frames: dict[str, int] = {}
    for m in re.finditer(r'node:\s*\{\s*title:\s*"([^"]+)"\s*label:\s*"([^"]*)"', text):
        b = re.search(r"(\d+) bytes \((static|dynamic|dynamic,bounded)\)", m.group(2))
        frames[m.group(1)] = int(b.group(1)) if b else 0
    calls: dict[str, list[str]] = {}
    for m in re.finditer(r'edge:\s*\{\s*sourcename:\s*"([^"]+)"\s*targetname:\s*"([^"]+)"', text):
        calls.setdefault(m.group(1), []).append(m.group(2))
    if entry not in frames:
        return None, f"{entry} not found in the call graph"
    unknown: set[str] = set()

    def depth(fn: str, seen: frozenset[str]) -> int:
        if fn not in frames:
            unknown.add(fn)
            return 0
        if fn in seen:
            raise RuntimeError(f"recursion through {fn}: stack is unbounded")
        return frames[fn] + max((depth(c, seen | {fn}) for c in calls.get(fn, [])), default=0)

    total = depth(entry, frozenset())
    note = "deepest call chain from edgebm_predict (-fcallgraph-info=su)"
    if unknown:
        note += f"; not counted (no frame info): {', '.join(sorted(unknown))}"
    return total, note


def _latency(times_ns: np.ndarray, reps: int, n: int) -> tuple[LatencyStats, float]:
    """Pooled percentiles of every timed call (as the ONNX gate pools them), minus the timer's median overhead."""
    calls, empty = times_ns[: reps * n], times_ns[reps * n :]
    overhead = float(np.median(empty))
    return LatencyStats.from_samples(np.maximum(calls - overhead, 0.0) / 1e6, n), overhead


def measure_c(c_dir: str | Path, x: np.ndarray, onnx_top1: np.ndarray, reps: int = 5, cc: str | None = None) -> CBuild:
    """Compile the bundle's C (``c_dir``: ``model.h``, ``model.c``, headers), measure it, run it on ``x``.

    ``onnx_top1``: onnxruntime's best beam for each row of ``x`` (the reference for agreement).
    Raises ``RuntimeError`` (one line) when no compiler is found or compiling fails.
    """
    cc = cc or find_cc()
    if cc is None:
        raise RuntimeError("no C compiler found (set CC, or install gcc/clang)")
    c_dir = Path(c_dir).resolve()
    x = np.ascontiguousarray(x, dtype=np.float32)
    with tempfile.TemporaryDirectory(prefix="edgebm-c-") as tmpd:
        tmp = Path(tmpd)
        obj = tmp / "model.o"
        stack_flags = [f for f in ("-fstack-usage", "-fcallgraph-info=su") if _accepts(cc, f)]
        warn = _run([cc, *_FLAGS, "-Os", *stack_flags, f"-I{c_dir}", "-c", str(c_dir / "model.c"), "-o", str(obj)], tmp, "compiling model.c (-Os)")
        sec = _sections(obj, tmp)
        stack, note = _stack(tmp / "model.ci", tmp / "model.su", "edgebm_predict")
        exe = tmp / "harness"
        shutil.copyfile(_HARNESS, tmp / "harness.c")
        _run([cc, *_FLAGS, "-O2", f"-I{c_dir}", str(tmp / "harness.c"), str(c_dir / "model.c"), "-lm", "-o", str(exe)], tmp, "compiling the harness (-O2)")
        x.tofile(tmp / "x.f32")
        _run([str(exe), str(tmp / "x.f32"), str(len(x)), str(tmp / "pred.i32"), str(reps), str(tmp / "t.f64")], tmp, "running the harness")
        pred = np.fromfile(tmp / "pred.i32", dtype=np.int32)
        times = np.fromfile(tmp / "t.f64", dtype=np.float64)
    lat, overhead = _latency(times, reps, len(x))
    version = subprocess.run([cc, "--version"], capture_output=True, text=True).stdout.splitlines()[:1]
    return CBuild(
        compiler=(version[0] if version else cc), sections=sec,
        flash_bytes=sec["text"] + sec["rodata"] + sec["data"], static_ram_bytes=sec["data"] + sec["bss"],
        stack_bytes=stack, stack_note=note, host_latency=lat, timer_overhead_ns=overhead,
        n_samples=len(x), mismatches=int(np.count_nonzero(pred != np.asarray(onnx_top1))),
        warnings=[w for w in warn.splitlines() if "warning" in w][:5],
    )


@functools.lru_cache(maxsize=None)
def _accepts(cc: str, flag: str) -> bool:
    """Whether ``cc`` accepts ``flag`` (compiled in a temp folder: -fstack-usage writes files next to the output)."""
    with tempfile.TemporaryDirectory(prefix="edgebm-cc-") as tmp:
        p = subprocess.run([cc, flag, "-x", "c", "-c", "-o", "probe.o", "-"], input="int x;\n", capture_output=True, text=True, cwd=tmp)
    return p.returncode == 0


def mcu_lines(build: CBuild | None, profile: DeviceProfile, why_not: str = "") -> list[BudgetLine]:
    """Gate lines of a measured C build against ``profile`` (flash, RAM, device latency, top-1 mismatch).

    ``build=None`` (no compiler, or the C could not be generated) gives one ``c_build`` line: ``warn``
    when only the compiler is missing (the sources are still shipped), ``fail`` otherwise.
    """
    if build is None:
        missing_cc = "no C compiler" in why_not
        return [BudgetLine("c_build", None, None, "", "warn" if missing_cc else "fail", why_not or "C target not built")]
    lim, c = profile.limits, profile.compute
    flash_kib, ram_kib = build.flash_bytes / 1024, build.ram_bytes / 1024
    s = build.sections
    lines = [
        BudgetLine("c_flash", round(flash_kib, 2), lim.max_model_kib, "KiB", "pass" if flash_kib <= lim.max_model_kib else "fail",
                   f"text {s['text']} + rodata {s['rodata']} + data {s['data']} B, -Os, {build.compiler}"),
        BudgetLine("c_ram", round(ram_kib, 3), lim.max_peak_ram_kib, "KiB", "pass" if ram_kib <= lim.max_peak_ram_kib else "fail",
                   f"data {s['data']} + bss {s['bss']} + stack {build.stack_bytes if build.stack_bytes is not None else '?'} B ({build.stack_note})"),
    ]
    if build.host_latency is not None:
        dev = build.host_latency.p99_ms * c.slowdown_vs_host
        lines.append(BudgetLine("c_device_latency_p99", dev, profile.timing.inference_budget_ms, "ms",
                                "pass" if dev <= profile.timing.inference_budget_ms else "fail",
                                f"compiled C on the host: p50 {1e3 * build.host_latency.p50_ms:.3g} us, p99 {1e3 * build.host_latency.p99_ms:.3g} us "
                                f"(-O2, timer overhead {build.timer_overhead_ns:.0f} ns removed) x {c.slowdown_vs_host:g}"))
    mism = 100.0 * build.mismatches / build.n_samples if build.n_samples else 100.0
    lines.append(BudgetLine("c_top1_mismatch", round(mism, 3), MAX_MISMATCH_PCT, "%", "pass" if mism <= MAX_MISMATCH_PCT else "fail",
                            f"{build.mismatches}/{build.n_samples} samples where the compiled C's beam differs from onnxruntime's"))
    return lines
