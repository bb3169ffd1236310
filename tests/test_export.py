import json

import numpy as np

from edgebm.budget import analyze_onnx
from edgebm.cli import main
from edgebm.data import save_dataset
from edgebm.deploy import check_parity, export_onnx
from edgebm.models.mlp import BeamMLP
from tests.conftest import make_toy_dataset


def test_onnx_parity_random_model(tmp_path, toy_dataset):
    import torch

    torch.manual_seed(0)
    m = BeamMLP(16, 64, hidden=(32,)).eval()
    p = export_onnx(m, toy_dataset.rsrp_b, tmp_path / "m.onnx")
    rep = check_parity(m, p, toy_dataset.rsrp_b[:100])
    assert rep.max_abs_diff < 1e-4 and rep.argmax_agreement == 1.0
    # the graph is self-contained: no external-data file next to it
    assert [x.name for x in tmp_path.iterdir()] == ["m.onnx"]
    stats = analyze_onnx(p)
    # Gemm 16->32->64 at batch 1: 2*(16*32 + 32*64) MACs, + bias adds
    assert stats.flops_by_op["Gemm"] == 2 * (16 * 32 + 32 * 64) + 32 + 64
    assert stats.params == 16 * 32 + 32 + 32 * 64 + 64


def test_cli_export_with_data(tmp_path, capsys):
    ds = make_toy_dataset(400, seed=3)
    data = save_dataset(ds, tmp_path / "d.npz")
    out = tmp_path / "bundle"
    rc = main(["export", "--profile", "smartphone", "--data", str(data), "--out", str(out), "--epochs", "3", "--families", "mlp"])
    assert rc == 0
    man = json.loads((out / "manifest.json").read_text())
    assert man["profile"] == "smartphone" and man["verdict"] == "pass"
    text = capsys.readouterr().out
    assert "device_latency_p99" in text and "top-1" in text


def test_cli_export_over_budget_exit_3_writes_nothing(tmp_path, capsys):
    from pathlib import Path

    from edgebm.profiles import load_profile

    src = Path(load_profile("smartphone").source).read_text()
    tight = tmp_path / "tight.toml"
    tight.write_text(src.replace('name = "smartphone"', 'name = "tight"').replace("max_params = 500000", "max_params = 100")
                     .replace('teacher_family = "teacher"', 'teacher_family = "mlp"'))
    data = save_dataset(make_toy_dataset(300, seed=4), tmp_path / "d.npz")
    out = tmp_path / "bundle"
    rc = main(["export", "--profile", str(tight), "--data", str(data), "--out", str(out), "--epochs", "2"])
    assert rc == 3
    assert not out.exists()
    err = capsys.readouterr().err
    assert "params" in err and "no bundle written" in err
    rc = main(["export", "--profile", str(tight), "--data", str(data), "--out", str(out), "--epochs", "2", "--force"])
    assert rc == 3
    assert json.loads((out / "manifest.json").read_text())["verdict"] == "fail"


def test_cli_bad_data_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    np.savez(bad, rsrp_b=np.zeros((3, 16)))
    assert main(["export", "--profile", "smartphone", "--data", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "meta_json" in err[0]


def test_check_corrupt_model_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00garbage")
    assert main(["check", str(bad), "--profile", "iot"]) == 2
    assert "not a valid ONNX model" in capsys.readouterr().err


def test_gate_counts_quantised_weights_as_weights(tmp_path, toy_dataset):
    """int8 QDQ: folded weight DequantizeLinear is neither FLOPs nor activation memory."""
    import torch

    from edgebm.compress import quantize_onnx

    torch.manual_seed(0)
    m = BeamMLP(16, 64, hidden=(64,)).eval()
    fp32 = export_onnx(m, toy_dataset.rsrp_b, tmp_path / "m.onnx")
    q = tmp_path / "q.onnx"
    quantize_onnx(fp32, q, "int8_static", calib_x=toy_dataset.rsrp_b[:64])
    a, b = analyze_onnx(fp32), analyze_onnx(q)
    assert b.weight_bytes < 0.5 * a.weight_bytes
    assert b.params <= a.params  # scales and zero points are not parameters
    assert b.flops < 1.3 * a.flops  # Q/DQ of activations only
    assert b.peak_activation_bytes < 4 * a.peak_activation_bytes + 4096


def test_same_seed_same_head_and_codebook_bytes(tmp_path, toy_dataset):
    """head.npz and codebook.npz go through edgebm.data.npz.write_npz (fixed zip timestamps, whatever numpy does):
    two exports with the same seed give the same bytes (and the training behind the head is deterministic)."""
    import time

    from edgebm.pipeline import export_for_profile
    from edgebm.train import TrainConfig
    from tests.conftest import lean_profile

    prof = lean_profile("fwa", teacher="none", prune=False)
    outs = []
    for k in range(2):
        if k:
            time.sleep(2.1)  # zip timestamps have a 2 s resolution: a writer stamping the time would differ now
        res = export_for_profile(prof, toy_dataset, tmp_path / f"b{k}", train_cfg=TrainConfig(epochs=2, seed=0),
                                 families=["mlp"], latency_runs=20)
        outs.append(res.bundle_dir)
    for name in ("head.npz", "codebook.npz"):
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes(), name
    with np.load(outs[0] / "head.npz", allow_pickle=False) as z:
        assert set(z.files) == {"W", "b"} and z["W"].dtype == np.float32
