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
