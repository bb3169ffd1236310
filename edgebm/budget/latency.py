"""Latency measurement: onnxruntime sessions with the profile's threads, warm-up, percentiles."""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..runtime.session import host_threads, ort_session

__all__ = ["LatencyStats", "time_callable", "ort_session", "host_threads", "measure_onnx_latency", "rss_bytes"]


@dataclass(frozen=True)
class LatencyStats:
    """Wall-clock latency of single calls, ms."""

    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    runs: int
    warmup: int

    def to_dict(self) -> dict:
        return {k: (round(v, 5) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def time_callable(fn: Callable[[], object], runs: int = 500, warmup: int = 50, rounds: int = 5) -> LatencyStats:
    """Call ``fn`` ``warmup`` times untimed, then ``runs`` times timed one by one (perf_counter_ns).

    The timed calls are split into ``rounds`` consecutive rounds and each percentile is the median of
    the per-round percentiles: a burst of load from another process spoils one round, not the figure
    (on a shared host a single pooled p99 swung 50x between identical runs).
    """
    for _ in range(warmup):
        fn()
    t = np.empty(runs, dtype=np.float64)
    for i in range(runs):
        t0 = time.perf_counter_ns()
        fn()
        t[i] = time.perf_counter_ns() - t0
    t /= 1e6
    rounds = max(1, min(rounds, runs // 20))
    per = np.array([np.percentile(chunk, [50, 95, 99]) for chunk in np.array_split(t, rounds)])
    p50, p95, p99 = np.median(per, axis=0)
    return LatencyStats(float(p50), float(p95), float(p99), float(t.mean()), runs, warmup)


def rss_bytes() -> int | None:
    """Resident set size of this process in bytes (Linux /proc), or None where unavailable."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def measure_onnx_latency(
    onnx_path: str | Path, sample: np.ndarray, threads: int, runs: int = 500, warmup: int = 50
) -> tuple[LatencyStats, int | None]:
    """Single-sample latency of ``onnx_path`` on ``sample`` (1, ...) and the RSS growth (bytes) that
    creating and running the session caused (a measured session-memory figure)."""
    before = rss_bytes()
    sess = ort_session(onnx_path, threads)
    name = sess.get_inputs()[0].name
    x = np.ascontiguousarray(sample, dtype=np.float32)
    feed = {name: x}
    sess.run(None, feed)
    after = rss_bytes()
    stats = time_callable(lambda: sess.run(None, feed), runs=runs, warmup=warmup)
    mem = (after - before) if before is not None and after is not None else None
    return stats, mem
