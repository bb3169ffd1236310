"""The one place an onnxruntime session is built (numpy + onnxruntime only; never torch).

Every caller — the budget gate, deploy parity checks, export scoring, quantisation evaluation, the
runtime :class:`~edgebm.runtime.Predictor` and the benchmarks — builds its sessions here, so one
thread rule holds everywhere: the profile's thread count capped at this host's cores (more threads
than cores only measures oversubscription stalls), one inter-op thread, CPU execution provider.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["host_threads", "ort_session"]

_LEVELS = {"all": "ORT_ENABLE_ALL", "extended": "ORT_ENABLE_EXTENDED", "basic": "ORT_ENABLE_BASIC", "none": "ORT_DISABLE_ALL"}


def host_threads(threads: int | None) -> int:
    """``threads`` (a profile's thread count; ``None`` = 1) capped at this host's logical cores, at least 1."""
    return max(1, min(int(threads or 1), os.cpu_count() or 1))


def ort_session(
    model: str | Path | bytes, threads: int | None = 1, *, optimization: str = "all", quiet: bool = False, arena: bool = True
) -> Any:
    """A CPU :class:`onnxruntime.InferenceSession` for ``model`` (a path or serialised ONNX bytes).

    ``threads``: intra-op threads wanted (the profile's), capped by :func:`host_threads`.
    ``optimization``: graph optimisation level, ``all`` (default, what a deployed session uses),
    ``extended``, ``basic`` or ``none`` (to read intermediate tensors exactly as stored).
    ``quiet``: only errors are logged (skl2onnx graphs warn about unused initialisers).
    ``arena``: onnxruntime's CPU memory arena (grabs ~1 MiB chunks whatever the model size); off to measure what
    a session really holds.
    """
    import onnxruntime as ort

    if optimization not in _LEVELS:
        raise ValueError(f"optimization must be one of {', '.join(_LEVELS)}, got {optimization!r}")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = host_threads(threads)
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _LEVELS[optimization])
    if quiet:
        opts.log_severity_level = 3
    opts.enable_cpu_mem_arena = bool(arena)
    src = model if isinstance(model, (bytes, bytearray)) else str(model)
    return ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])
