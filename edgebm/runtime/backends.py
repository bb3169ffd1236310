"""Inference backends of the runtime: an onnxruntime session or a TensorRT engine, chosen from the manifest.

Both expose the same two things the :class:`~edgebm.runtime.Predictor` needs: ``input_name`` and
``run(output_names, x) -> list[np.ndarray]``. A bundle whose manifest lists a TensorRT engine
(``model.plan``) runs it when TensorRT and a CUDA device are usable here; otherwise it runs
``model.onnx`` with onnxruntime and :func:`open_backend` says why (the fallback is never silent).

Torch-free, like the rest of the runtime: device buffers come from NVIDIA's ``cuda-python``
(``cuda.bindings.runtime``, the binding TensorRT's own samples use), installed with ``edgebm[tensorrt]``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import BundleError

__all__ = ["OrtBackend", "TensorRTBackend", "open_backend", "tensorrt_runtime_status", "BACKEND_CHOICES"]

#: what a caller may ask for: "auto" = the manifest's engine where usable, else onnxruntime
BACKEND_CHOICES = ("auto", "onnxruntime", "tensorrt")


class OrtBackend:
    """onnxruntime CPU session with ``threads`` intra-op threads (capped at this host's cores)."""

    name = "onnxruntime"

    def __init__(self, model: str | Path | bytes, threads: int = 1) -> None:
        from .session import ort_session

        try:
            self.session = ort_session(model, threads)
        except Exception as e:  # onnxruntime raises its own exception types
            raise BundleError(f"onnxruntime cannot load the model: {str(e).splitlines()[0]}") from None
        self.input_name: str = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.run = self.session.run  # run(names, {input: x}) -- bound once: no wrapper call per inference

    def __call__(self, names: list[str], x: np.ndarray) -> list[np.ndarray]:
        return self.session.run(names, {self.input_name: x})

    def io_shapes(self) -> tuple[dict[str, list], dict[str, list]]:
        """(inputs, outputs): tensor name -> shape (ints where fixed, strings/None where dynamic)."""
        return ({i.name: list(i.shape) for i in self.session.get_inputs()}, {o.name: list(o.shape) for o in self.session.get_outputs()})


def _cudart() -> Any:
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        from cuda import cudart  # older cuda-python
    return cudart


def tensorrt_runtime_status() -> tuple[bool, str]:
    """(usable, reason): the tensorrt and cuda-python packages import and a CUDA device is visible."""
    try:
        import tensorrt as trt
    except ImportError:
        return False, "tensorrt is not installed (pip install 'edgebm[tensorrt]' on a machine with an NVIDIA GPU)"
    try:
        cudart = _cudart()
    except ImportError:
        return False, "cuda-python is not installed (pip install 'edgebm[tensorrt]')"
    err, n = cudart.cudaGetDeviceCount()
    if int(err) != 0 or n < 1:
        return False, f"no CUDA device visible (cudaGetDeviceCount: {err}, {n} device(s))"
    return True, f"tensorrt {trt.__version__}, {n} CUDA device(s)"


def _check(result: Any) -> Any:
    """cuda-python calls return (cudaError_t, value...): raise on an error, return the value(s)."""
    err, *rest = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise RuntimeError(f"CUDA call failed: {err}")
    return rest[0] if len(rest) == 1 else tuple(rest)


class TensorRTBackend:
    """A deserialised TensorRT engine (TensorRT 10 name-based I/O, ``execute_async_v3`` on one stream).

    Device buffers are allocated once per batch-size high-water mark and reused; each call copies the
    input host -> device, executes, copies the requested outputs device -> host and synchronises.
    """

    name = "tensorrt"

    def __init__(self, plan: str | Path | bytes) -> None:
        import tensorrt as trt

        self._trt = trt
        self._cudart = _cudart()
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(plan if isinstance(plan, bytes) else Path(plan).read_bytes())
        if self.engine is None:
            raise BundleError("TensorRT cannot deserialise the engine (built by another TensorRT version or GPU?)")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        if len(inputs) != 1:
            raise BundleError(f"the engine has {len(inputs)} inputs, expected 1")
        self.input_name = inputs[0]
        self.output_names = [n for n in names if n != self.input_name]
        self._dtype = {n: np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))) for n in names}
        self._max_batch = int(self.engine.get_tensor_profile_shape(self.input_name, 0)[2][0])
        self._stream = _check(self._cudart.cudaStreamCreate())
        self._dev: dict[str, int] = {}
        self._capacity = 0

    def _row_bytes(self, name: str) -> int:
        shape = list(self.engine.get_tensor_shape(name))[1:]
        return int(np.prod([max(d, 1) for d in shape], dtype=np.int64)) * self._dtype[name].itemsize

    def _ensure(self, batch: int) -> None:
        if batch <= self._capacity:
            return
        if batch > self._max_batch:
            raise ValueError(f"batch {batch} exceeds the engine's optimisation profile (max {self._max_batch})")
        self._free()
        for n in [self.input_name, *self.output_names]:
            self._dev[n] = _check(self._cudart.cudaMalloc(self._row_bytes(n) * batch))
            self.context.set_tensor_address(n, self._dev[n])
        self._capacity = batch

    def __call__(self, names: list[str], x: np.ndarray) -> list[np.ndarray]:
        cudart = self._cudart
        x = np.ascontiguousarray(x, dtype=self._dtype[self.input_name])
        self._ensure(len(x))
        self.context.set_input_shape(self.input_name, tuple(x.shape))
        h2d, d2h = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        _check(cudart.cudaMemcpyAsync(self._dev[self.input_name], x.ctypes.data, x.nbytes, h2d, self._stream))
        if not self.context.execute_async_v3(int(self._stream)):  # the raw cudaStream_t handle
            raise RuntimeError("TensorRT execute_async_v3 failed")
        outs = []
        for n in names:
            out = np.empty(tuple(self.context.get_tensor_shape(n)), dtype=self._dtype[n])
            _check(cudart.cudaMemcpyAsync(out.ctypes.data, self._dev[n], out.nbytes, d2h, self._stream))
            outs.append(out)
        _check(cudart.cudaStreamSynchronize(self._stream))
        return [o.astype(np.float32, copy=False) for o in outs]

    def run(self, names: list[str], feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        """onnxruntime-style ``run(names, {input: x})`` so callers can treat both backends alike."""
        return self(names, feed[self.input_name])

    def io_shapes(self) -> tuple[dict[str, list], dict[str, list]]:
        """(inputs, outputs): tensor name -> shape (-1 axes, the dynamic batch, as None)."""
        def shape(n: str) -> list:
            return [None if d < 0 else int(d) for d in self.engine.get_tensor_shape(n)]

        return {self.input_name: shape(self.input_name)}, {n: shape(n) for n in self.output_names}

    def _free(self) -> None:
        for ptr in self._dev.values():
            self._cudart.cudaFree(ptr)
        self._dev.clear()
        self._capacity = 0

    def __del__(self) -> None:
        try:
            self._free()
            self._cudart.cudaStreamDestroy(self._stream)
        except Exception:  # interpreter shutdown: the CUDA context may already be gone
            pass


def open_backend(manifest: Any, read_bytes: Callable[[str], bytes], threads: int = 1, prefer: str = "auto") -> tuple[Any, str]:
    """The backend to run a bundle with, and a one-line reason for the choice.

    ``manifest``: the bundle's manifest (dict or :class:`~edgebm.runtime.manifest.BundleManifest`);
    ``read_bytes(name)``: the verified bytes of a listed bundle file. ``prefer``: ``auto`` (the
    TensorRT engine when the manifest lists one and it is usable here, else onnxruntime),
    ``onnxruntime``, or ``tensorrt`` (raise :class:`BundleError` when it cannot run).
    """
    if prefer not in BACKEND_CHOICES:
        raise ValueError(f"backend must be one of {', '.join(BACKEND_CHOICES)}, got {prefer!r}")
    plan = (manifest.get("tensorrt") or {}).get("plan_file")
    if prefer != "onnxruntime" and plan and plan in manifest.get("files", {}):
        ok, why = tensorrt_runtime_status()
        if ok:
            try:
                return TensorRTBackend(read_bytes(plan)), f"TensorRT engine {plan} ({why})"
            except Exception as e:  # a plan built for another GPU / TensorRT version
                why = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                if prefer == "tensorrt":
                    raise BundleError(f"cannot run {plan}: {why}") from None
        elif prefer == "tensorrt":
            raise BundleError(f"cannot run {plan}: {why}")
        reason = f"onnxruntime fallback: {plan} not usable here ({why})"
    elif prefer == "tensorrt":
        raise BundleError("the bundle has no TensorRT engine (manifest 'tensorrt.plan_file')")
    else:
        reason = "onnxruntime (CPU)" + (" as requested" if plan else "")
    return OrtBackend(read_bytes(manifest["model_file"]), threads), reason
