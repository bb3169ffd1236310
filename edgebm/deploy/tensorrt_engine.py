"""TensorRT engines for profiles whose backend is ``tensorrt`` (optional extra ``edgebm[tensorrt]``).

Needs the ``tensorrt`` and ``cuda-python`` wheels and a CUDA GPU; :func:`tensorrt_status` says in one
line why a build cannot happen here, and export then ships the ONNX model marked as the fallback. The engine is
built from the same ONNX graph the gate measured, with a persistent timing cache (a rebuild with the
same cache skips tactic timing) and fp16 / int8 (explicit quantisation from a QDQ graph) flags.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_write_bytes

__all__ = ["tensorrt_status", "build_engine", "EngineInfo", "measure_engine_latency"]


def tensorrt_status() -> tuple[bool, str]:
    """(available, reason): tensorrt and cuda-python import and a CUDA device is visible (no torch needed)."""
    from ..runtime.backends import tensorrt_runtime_status

    return tensorrt_runtime_status()


@dataclass(frozen=True)
class EngineInfo:
    plan_path: Path
    precision: str
    build_seconds: float
    timing_cache: Path
    tensorrt_version: str
    plan_bytes: int


def build_engine(
    onnx_path: str | Path,
    plan_path: str | Path,
    precision: str = "fp16",
    timing_cache: str | Path | None = None,
    max_batch: int = 64,
    workspace_mib: int = 256,
) -> EngineInfo:
    """Parse ``onnx_path`` and build a serialized engine at ``plan_path``.

    ``precision``: ``fp32``, ``fp16`` or ``int8`` (int8 expects a QDQ graph: explicit quantisation).
    The dynamic batch axis gets an optimisation profile 1 / 1 / ``max_batch`` (the UE runs batch 1).
    """
    import tensorrt as trt

    ok, why = tensorrt_status()
    if not ok:
        raise RuntimeError(why)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT cannot parse {onnx_path}: {errs}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib << 20)
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    elif precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        config.set_flag(trt.BuilderFlag.FP16)  # layers left unquantised may still run in fp16
    elif precision != "fp32":
        raise ValueError(f"precision must be fp32, fp16 or int8, got {precision!r}")
    cache_path = Path(timing_cache) if timing_cache else Path(plan_path).with_suffix(".timing.cache")
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        t = network.get_input(i)
        shape = list(t.shape)
        mins = [1 if d < 0 else d for d in shape]
        maxs = [max_batch if d < 0 else d for d in shape]
        profile.set_shape(t.name, mins, mins, maxs)
    config.add_optimization_profile(profile)
    t0 = time.perf_counter()
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path} at {precision}")
    seconds = time.perf_counter() - t0
    plan_path = Path(plan_path)
    atomic_write_bytes(plan_path, bytes(plan))
    atomic_write_bytes(cache_path, bytes(config.get_timing_cache().serialize()))
    return EngineInfo(plan_path, precision, seconds, cache_path, trt.__version__, plan_path.stat().st_size)


def measure_engine_latency(plan_path: str | Path, sample: np.ndarray, runs: int = 500, warmup: int = 50) -> dict[str, Any]:
    """Single-sample latency (ms) of an engine, host-to-host: copy in, execute, copy out, synchronise --
    exactly the call the runtime makes (:class:`edgebm.runtime.backends.TensorRTBackend`)."""
    from ..budget.latency import time_callable
    from ..runtime.backends import TensorRTBackend

    backend = TensorRTBackend(plan_path)
    x = np.ascontiguousarray(sample[:1], dtype=np.float32)
    names = list(backend.output_names)
    return time_callable(lambda: backend(names, x), runs=runs, warmup=warmup).to_dict()
