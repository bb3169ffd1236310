"""TensorRT path: runs only where the tensorrt wheel and a CUDA GPU exist (never on the CPU CI machines)."""

import numpy as np
import pytest

from edgebm.deploy.tensorrt_engine import tensorrt_status

OK, WHY = tensorrt_status()


def test_status_reason_is_one_line():
    assert isinstance(OK, bool) and WHY and "\n" not in WHY


@pytest.mark.skipif(not OK, reason=f"TensorRT unavailable: {WHY}")
def test_build_fp16_engine_and_time_it(tmp_path):
    import torch

    from edgebm.deploy import export_onnx
    from edgebm.deploy.tensorrt_engine import build_engine, measure_engine_latency
    from edgebm.models.mlp import BeamMLP

    torch.manual_seed(0)
    x = np.random.default_rng(0).normal(-90, 5, size=(8, 16)).astype(np.float32)
    onnx_path = export_onnx(BeamMLP(16, 64).eval(), x, tmp_path / "m.onnx")
    info = build_engine(onnx_path, tmp_path / "m.plan", "fp16")
    assert info.plan_bytes > 0 and info.timing_cache.is_file()
    again = build_engine(onnx_path, tmp_path / "m2.plan", "fp16", timing_cache=info.timing_cache)
    assert again.plan_bytes > 0
    lat = measure_engine_latency(info.plan_path, x)
    assert lat["p50_ms"] > 0


def test_runtime_falls_back_to_onnxruntime_and_says_why(toy_bundle):
    """A manifest that lists a TensorRT engine runs model.onnx where TensorRT cannot run, with the reason."""
    import json

    from edgebm.errors import BundleError
    from edgebm.runtime.backends import OrtBackend, open_backend

    b = toy_bundle.bundle_dir
    man = json.loads((b / "manifest.json").read_text())
    man["tensorrt"] = {"built": True, "plan_file": "model.plan"}
    man["files"] = {**man["files"], "model.plan": "0" * 64}
    read = lambda name: (b / name).read_bytes()  # noqa: E731
    if not OK:
        backend, why = open_backend(man, read)
        assert isinstance(backend, OrtBackend) and "onnxruntime fallback" in why and WHY in why
        with pytest.raises(BundleError, match="model.plan"):
            open_backend(man, read, prefer="tensorrt")
    backend, why = open_backend(man, read, prefer="onnxruntime")
    assert isinstance(backend, OrtBackend)
    x = np.full((1, 16), -90.0, np.float32)
    assert backend.run([man["score_output"]], {backend.input_name: x})[0].shape == (1, 64)
    with pytest.raises(ValueError, match="backend must be one of"):
        open_backend(man, read, prefer="tflite")


@pytest.mark.skipif(not OK, reason=f"TensorRT unavailable: {WHY}")
def test_engine_matches_onnxruntime(tmp_path):
    import torch

    from edgebm.deploy import export_onnx
    from edgebm.deploy.tensorrt_engine import build_engine
    from edgebm.models.mlp import BeamMLP
    from edgebm.runtime.backends import OrtBackend, TensorRTBackend

    torch.manual_seed(0)
    x = np.random.default_rng(0).normal(-90, 5, size=(32, 16)).astype(np.float32)
    onnx_path = export_onnx(BeamMLP(16, 64).eval(), x, tmp_path / "m.onnx")
    plan = build_engine(onnx_path, tmp_path / "m.plan", "fp32").plan_path
    trt_out = TensorRTBackend(plan)(["logits"], x)[0]
    ort_out = OrtBackend(onnx_path)(["logits"], x)[0]
    np.testing.assert_allclose(trt_out, ort_out, atol=1e-3)
    assert np.array_equal(trt_out.argmax(1), ort_out.argmax(1))
