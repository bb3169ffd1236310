"""Latency and session memory: onnxruntime sessions with the profile's threads, warm-up, pooled percentiles."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..runtime.session import host_threads, ort_session

__all__ = [
    "LatencyStats", "time_samples", "time_callable", "ort_session", "host_threads", "measure_onnx_latency", "rss_bytes",
    "heap_bytes", "SessionProbe",
]


@dataclass(frozen=True)
class LatencyStats:
    """Wall-clock latency of single calls, ms: percentiles pooled over every timed run (a deadline is missed by
    any slow call, so a median of per-round percentiles would be optimistic)."""

    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    runs: int
    warmup: int

    @classmethod
    def from_samples(cls, samples_ms: np.ndarray, warmup: int) -> "LatencyStats":
        t = np.asarray(samples_ms, dtype=np.float64)
        p50, p95, p99 = np.percentile(t, [50, 95, 99])
        return cls(float(p50), float(p95), float(p99), float(t.mean()), float(t.max()), int(len(t)), int(warmup))

    def to_dict(self) -> dict:
        return {"p50_ms": round(self.p50_ms, 5), "p95_ms": round(self.p95_ms, 5), "p99_ms": round(self.p99_ms, 5),
                "mean_ms": round(self.mean_ms, 5), "max_ms": round(self.max_ms, 5), "runs": self.runs, "warmup": self.warmup}


def time_samples(fn: Callable[[], object], runs: int = 500, warmup: int = 50) -> np.ndarray:
    """Call ``fn`` ``warmup`` times untimed, then ``runs`` times timed one by one; the times in ms."""
    for _ in range(warmup):
        fn()
    t = np.empty(runs, dtype=np.float64)
    for i in range(runs):
        t0 = time.perf_counter_ns()
        fn()
        t[i] = time.perf_counter_ns() - t0
    return t / 1e6


def time_callable(fn: Callable[[], object], runs: int = 500, warmup: int = 50) -> LatencyStats:
    """:func:`time_samples` summarised as pooled percentiles."""
    return LatencyStats.from_samples(time_samples(fn, runs, warmup), warmup)


def rss_bytes() -> int | None:
    """Resident set size of this process in bytes (Linux /proc), or None where unavailable."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class _MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


@functools.lru_cache(maxsize=1)
def _mallinfo2() -> Callable[[], _MallInfo2] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        fn = libc.mallinfo2  # glibc >= 2.33
    except (OSError, AttributeError):
        return None
    fn.restype = _MallInfo2
    return fn


def heap_bytes() -> int | None:
    """Bytes allocated through malloc and still held (glibc ``mallinfo2``: in-use heap + mmapped blocks), or None
    elsewhere. Unlike RSS it is not rounded to pages and does not count freed memory the allocator kept."""
    fn = _mallinfo2()
    if fn is None:
        return None
    m = fn()
    return int(m.uordblks + m.hblkhd)


@functools.lru_cache(maxsize=1)
def _warm_onnxruntime() -> bool:
    """Create and run one trivial session so onnxruntime's one-time initialisation (~10 MB of heap: kernel
    registries, thread pools) is not charged to the first model measured in this process."""
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "warm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    sess = ort_session(m.SerializeToString(), 1)
    sess.run(None, {"x": np.zeros(1, np.float32)})
    return True


class SessionProbe:
    """One onnxruntime session of ``onnx_path`` on one input row: its memory and its single-call latency.

    ``memory_bytes``: heap a session of the model holds after creation and one run (see :func:`heap_bytes`; RSS
    growth where mallinfo2 is unavailable; None if neither can be read), measured on a session with onnxruntime's
    memory arena off (the arena reserves ~1 MiB chunks whatever the model needs), the second of two identical sessions
    (onnxruntime's one-time initialisation of the library and of the kernels the model uses is excluded). Latency is timed on a session built like the runtime's (arena on).
    :meth:`time` can be called again to pool more runs (re-measurement of borderline candidates).
    """

    def __init__(self, onnx_path: str | Path, sample: np.ndarray, threads: int) -> None:
        _warm_onnxruntime()
        probe = heap_bytes if heap_bytes() is not None else rss_bytes
        x = np.ascontiguousarray(sample, dtype=np.float32)
        for _ in range(2):  # the first pass pays the one-time init of the kernels this model uses; the second is measured
            before = probe()
            lean = ort_session(onnx_path, threads, arena=False)
            lean.run(None, {lean.get_inputs()[0].name: x})
            after = probe()
            del lean
        self.memory_bytes = max(0, after - before) if before is not None and after is not None else None
        self.memory_source = "heap (mallinfo2)" if probe is heap_bytes else "RSS growth"
        self.session = ort_session(onnx_path, threads)
        self.feed = {self.session.get_inputs()[0].name: x}
        self.samples = np.zeros(0)
        self.warmup = 0

    def time(self, runs: int, warmup: int) -> LatencyStats:
        """Time ``runs`` more single calls and return the stats pooled over every call timed so far."""
        self.samples = np.concatenate([self.samples, time_samples(lambda: self.session.run(None, self.feed), runs, warmup)])
        self.warmup += warmup
        return LatencyStats.from_samples(self.samples, self.warmup)


def measure_onnx_latency(
    onnx_path: str | Path, sample: np.ndarray, threads: int, runs: int = 500, warmup: int = 50
) -> tuple[LatencyStats, int | None]:
    """Single-sample latency of ``onnx_path`` on ``sample`` (1, ...) and the session's memory in bytes
    (:class:`SessionProbe`)."""
    probe = SessionProbe(onnx_path, sample, threads)
    return probe.time(runs, warmup), probe.memory_bytes
