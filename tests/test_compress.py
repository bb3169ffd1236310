"""edgebm.compress: int8/fp16 post-training quantisation, accuracy-aware exclusion, structured pruning, distillation."""

from __future__ import annotations

import copy

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from edgebm.budget import analyze_onnx
from edgebm.compress import (
    PruneError,
    QuantConfig,
    distill,
    make_top1_eval,
    make_torch_top1_eval,
    prune_structured,
    quantize_onnx,
    weighted_nodes,
)
from edgebm.deploy.onnx_export import export_onnx
from edgebm.models.mlp import BeamMLP
from edgebm.train.loop import TrainConfig, TrainResult, predict_logits, train_classifier

from tests.conftest import make_toy_dataset

HIDDEN = (128, 128)


@pytest.fixture(scope="module")
def data():
    tr, va = make_toy_dataset(2000, seed=3).split((0.7, 0.3))
    return {"xt": tr.rsrp_b, "yt": tr.best_a, "xv": va.rsrp_b, "yv": va.best_a}


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    torch.manual_seed(0)
    model = BeamMLP(16, 64, hidden=HIDDEN)
    train_classifier(model, data["xt"], data["yt"], data["xv"], data["yv"], TrainConfig(epochs=8, lr=3e-3, seed=0))
    path = export_onnx(model, data["xt"], tmp_path_factory.mktemp("compress") / "mlp.onnx")
    return model, path


def _session(path):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _run(path, x):
    sess = _session(path)
    return sess.run(None, {sess.get_inputs()[0].name: np.ascontiguousarray(x, np.float32)})


def _io_types(path):
    m = onnx.load(str(path))
    return {v.type.tensor_type.elem_type for v in list(m.graph.input) + list(m.graph.output)}


def test_int8_static_qdq(trained, data, tmp_path):
    model, fp32 = trained
    ev = make_top1_eval(data["xv"], data["yv"])
    res = quantize_onnx(fp32, tmp_path / "s8.onnx", "int8_static", calib_x=data["xt"], eval_fn=ev)
    ops = {n.op_type for n in onnx.load(res.out_path).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    before = analyze_onnx(fp32).weight_bytes_by_dtype
    after = analyze_onnx(res.out_path).weight_bytes_by_dtype
    assert after["int8"] > 0 and after["int8"] < 0.4 * before["float32"]
    assert res.weight_bytes_after < 0.4 * res.weight_bytes_before
    assert res.fp32_top1 > 0.5  # the fixture model learned something
    # measured: drop <= 0.005 on this split (and on 8000-sample toy data); 0.02 leaves margin
    assert res.drop == pytest.approx(res.fp32_top1 - res.quant_top1)
    assert res.drop <= 0.02
    assert res.excluded_nodes == []  # within max_drop=0.01: nothing kept in fp32
    logits, feats = _run(res.out_path, data["xv"][:32])
    assert logits.dtype == np.float32 and logits.shape == (32, 64) and feats.shape == (32, HIDDEN[-1])
    assert _io_types(res.out_path) == {onnx.TensorProto.FLOAT}
    assert _declared_domains(res.out_path) == {""}  # onnxruntime's quantiser declares 8 domains it never uses
    assert any("unused opset imports removed" in n and "com.microsoft" in n for n in res.notes)


def _declared_domains(path) -> set[str]:
    """Opset domains the graph imports; each must be one some node uses (no unused ones)."""
    from edgebm.deploy.fixed_shape import used_domains

    m = onnx.load(str(path))
    declared = {o.domain or "" for o in m.opset_import}
    assert declared <= used_domains(m) | {""}, declared - used_domains(m)
    return declared


@pytest.mark.parametrize("mode", ["int8_dynamic", "fp16"])
def test_dynamic_and_fp16(trained, data, tmp_path, mode):
    model, fp32 = trained
    res = quantize_onnx(fp32, tmp_path / f"{mode}.onnx", mode)
    assert res.fp32_top1 is None and res.excluded_nodes == []
    assert _io_types(res.out_path) == {onnx.TensorProto.FLOAT}
    assert res.weight_bytes_after < (0.4 if mode == "int8_dynamic" else 0.55) * res.weight_bytes_before
    want = _run(fp32, data["xv"])[0]
    got = _run(res.out_path, data["xv"])[0]
    assert got.dtype == np.float32 and got.shape == want.shape
    agree = float(np.mean(got.argmax(1) == want.argmax(1)))
    assert agree > (0.98 if mode == "fp16" else 0.95)
    if mode == "fp16":
        assert "float16" in res.weight_bytes_by_dtype_after
    assert _declared_domains(res.out_path) == {""}


def test_exclusion_up_to_cap(trained, data, tmp_path):
    model, fp32 = trained
    ev = make_top1_eval(data["xv"], data["yv"])
    fp32_names = {n.name for n in onnx.load(str(fp32)).graph.node}
    gemms = weighted_nodes(fp32)
    assert len(gemms) == 3
    res = quantize_onnx(fp32, tmp_path / "x.onnx", "int8_static", calib_x=data["xt"], eval_fn=ev, max_drop=-1.0)
    assert len(res.trials) == 2  # cap: half of the 3 weighted nodes -> one exclusion step tried
    assert res.excluded_nodes == (res.trials[1]["excluded"] if res.trials[1]["kept"] else [])  # kept only if top-1 did not drop
    assert set(res.trials[1]["excluded"]) <= fp32_names and set(res.sensitivity) == set(gemms)
    assert any("still >" in n for n in res.notes)
    # the excluded Gemm reads a float32 weight initializer; the others dequantise int8 ones
    out = onnx.load(res.out_path)
    inits = {t.name: t.data_type for t in out.graph.initializer}
    for node in out.graph.node:
        if node.op_type == "Gemm":
            kept = node.name in res.excluded_nodes
            assert (inits.get(node.input[1]) == onnx.TensorProto.FLOAT) == kept
    _run(res.out_path, data["xv"][:4])
    # the cheap proxy ranking (forced by max_trials=0) tries every node (cap 100 %); a step is kept only if it
    # does not lower top-1 against the best graph so far
    res2 = quantize_onnx(fp32, tmp_path / "y.onnx", "int8_static", calib_x=data["xt"], eval_fn=ev, max_drop=-1.0,
                         config=QuantConfig(max_trials=0, max_excluded_frac=1.0))
    assert len(res2.trials) == 1 + 3 and set(res2.excluded_nodes) <= set(gemms)
    best = res2.trials[0]["top1"]
    for t in res2.trials[1:]:
        assert t["kept"] == (t["top1"] >= best)
        best = max(best, t["top1"]) if t["kept"] else best
    assert res2.quant_top1 == best
    assert any("proxy" in n for n in res2.notes)


def test_greedy_exclusion_never_keeps_a_step_that_lowers_top1(tmp_path):
    """Hand-made case: top-1 per exclusion set is a table; the search must skip the harmful step."""
    from edgebm.compress.exclusion import search_exclusions
    from edgebm.compress.quant_base import QuantPass

    class TablePass(QuantPass):
        def make(self, excluded, out):
            out.write_text(",".join(sorted(excluded)))
            return out

    table = {"": 0.80, "a": 0.85, "b": 0.84, "c": 0.83,  # single-node trials rank a > b > c
             "a,b": 0.83,  # adding b after a lowers top-1 -> not kept
             "a,c": 0.90}  # adding c after a reaches the target
    ev = lambda path: table[open(path).read()]  # noqa: E731
    qp = TablePass(tmp_path, None, True, QuantConfig())
    first = qp.make([], tmp_path / "first.onnx")
    out = search_exclusions(qp, ["a", "b", "c"], ev, fp32_top1=0.91, first=first, first_top1=0.80, max_drop=0.01,
                            cfg=QuantConfig(max_excluded_frac=1.0), calib_x=None)
    assert out.sensitivity == pytest.approx({"a": 0.05, "b": 0.04, "c": 0.03})
    assert [(t["excluded"], t["kept"]) for t in out.trials] == [([], True), (["a"], True), (["a", "b"], False), (["a", "c"], True)]
    assert out.excluded == ["a", "c"] and out.quant_top1 == 0.90
    assert any("not kept" in n for n in out.notes)


def test_pinned_head_is_reported_as_kept_not_as_a_failure(trained, data, tmp_path):
    _, fp32 = trained
    res = quantize_onnx(fp32, tmp_path / "h.onnx", "int8_static", calib_x=data["xt"], keep_fp32_outputs=("logits",))
    assert len(res.kept_fp32) == 1
    assert any(n.startswith("kept fp32 (on-device head)") for n in res.notes)
    assert not any("cannot quantise" in n for n in res.notes)


def test_exclusion_never_keeps_a_step_that_lowers_top1(trained, data, tmp_path):
    _, fp32 = trained

    def worse_with_every_fp32_gemm(path):  # top-1 0.9 minus 0.1 per Gemm left with a float32 weight
        m = onnx.load(str(path))
        floats = {t.name for t in m.graph.initializer if t.data_type == onnx.TensorProto.FLOAT}
        return 0.9 - 0.1 * sum(1 for n in m.graph.node if n.op_type == "Gemm" and n.input[1] in floats)

    res = quantize_onnx(fp32, tmp_path / "x.onnx", "int8_static", calib_x=data["xt"], eval_fn=worse_with_every_fp32_gemm, max_drop=-1.0,
                        config=QuantConfig(max_excluded_frac=1.0))
    # the fp32 model scores 0.9 - 0.3 = 0.6, fully quantised 0.9; each exclusion would cost 0.1: none is kept
    assert res.excluded_nodes == [] and res.quant_top1 == pytest.approx(0.9)
    assert len(res.trials) == 4 and not any(t["kept"] for t in res.trials[1:])


def test_quantize_rejects_bad_input(trained, tmp_path):
    _, fp32 = trained
    with pytest.raises(ValueError):
        quantize_onnx(fp32, tmp_path / "a.onnx", "int4")
    with pytest.raises(ValueError):
        quantize_onnx(fp32, tmp_path / "a.onnx", "int8_static")  # no calibration data
    assert not (tmp_path / "a.onnx").exists()


def _expected_mlp_params(widths):
    n, total = 16, 0
    for w in (*widths, 64):
        total += n * w + w
        n = w
    return total


def test_prune_structured_mlp(trained, data):
    model, _ = trained
    original = copy.deepcopy(model.state_dict())
    ev = make_torch_top1_eval(data["xv"], data["yv"])

    def finetune(m):
        train_classifier(m, data["xt"], data["yt"], data["xv"], data["yv"], TrainConfig(epochs=4, lr=1e-3, seed=1))

    res = prune_structured(model, data["xt"], 0.5, train_fn=finetune, eval_fn=ev)
    pm = res.model
    linears = [m for m in pm.modules() if isinstance(m, nn.Linear)]
    assert [(l.in_features, l.out_features) for l in linears] == [(16, 64), (64, 64), (64, 64)]
    assert pm.head.out_features == 64 and pm.head.in_features == 64
    assert res.widths_before["body.0"] == [16, 128] and res.widths_after["body.3"] == [64, 64]
    # BN folded into the Gemms in ONNX: exact parameter counts of the Linear stack
    assert res.onnx_params_before == _expected_mlp_params(HIDDEN)
    assert res.onnx_params_after == _expected_mlp_params((64, 64))
    expected = _expected_mlp_params((64, 64)) / _expected_mlp_params(HIDDEN)  # ~0.35
    assert res.params_after / res.params_before == pytest.approx(expected, rel=0.05)
    assert res.onnx_flops_after / res.onnx_flops_before == pytest.approx(expected, rel=0.1)
    assert res.flops_after / res.flops_before == pytest.approx(expected, rel=0.1)
    assert res.parity["max_abs_diff"] < 1e-3 and res.parity["argmax_agreement"] == 1.0
    assert res.top1_after_finetune > res.top1_after_prune
    assert res.top1_before == pytest.approx(ev(model))
    # BeamMLP: config() describes the pruned widths again and rebuilds the module
    assert res.config["hidden"] == [64, 64]
    BeamMLP(**res.config).load_state_dict(pm.state_dict())
    # the caller's model is untouched (deep copy) and the record is JSON-able without the module
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in original.items())
    assert "model" not in res.to_dict()


def test_prune_iterative_and_ignored(trained, data):
    model, _ = trained
    res = prune_structured(model, data["xt"], 0.75, steps=2, ignored=[model.body[0]])
    assert [r["round"] for r in res.rounds] == [1, 2]
    assert res.rounds[0]["params"] > res.rounds[1]["params"]
    # body.0 is ignored: its outputs stay 128 wide, so body.3's inputs do too; body.3's outputs lose 75 %
    assert res.widths_after["body.0"] == [16, 128]
    assert res.widths_after["body.3"] == [128, 32]
    assert res.widths_after["head"] == [32, 64]
    assert res.parity["argmax_agreement"] == 1.0


def test_prune_caps_the_head_input(trained, data):
    """max_head_in: only the layers feeding the head are cut to the cap (an on-device head of (31 + 1) x 64 = 2048
    parameters), the rest at the global ratio; a larger global ratio wins where it cuts deeper."""
    from edgebm.pipeline.prune_search import head_input_cap

    model, _ = trained  # 16 -> 128 -> 128 -> 64
    assert head_input_cap(2048, 64) == 31 and head_input_cap(2047, 64) == 30 and head_input_cap(None, 64) is None
    assert head_input_cap(10, 64) == 1  # no head fits: the gate's trainable_head line says so
    res = prune_structured(model, data["xt"], 0.0, max_head_in=31)
    assert res.widths_after == {"body.0": [16, 128], "body.3": [128, 31], "head": [31, 64]}
    assert res.parity["argmax_agreement"] == 1.0 and any("head input capped at 31" in n for n in res.notes)
    deep = prune_structured(model, data["xt"], 0.9, max_head_in=31, check_onnx=False)
    assert deep.widths_after["head"] == [12, 64]  # int(128 x (1 - 0.9)) = 12 kept: the global ratio cuts deeper than the cap
    assert prune_structured(model, data["xt"], 0.0, max_head_in=200, check_onnx=False).widths_after["head"] == [128, 64]


def test_distill_alpha_zero_matches_plain_training(trained, data):
    teacher, _ = trained
    cfg = TrainConfig(epochs=3, seed=5)
    torch.manual_seed(7)
    init = BeamMLP(16, 64, hidden=(32,))
    plain, student0, student = copy.deepcopy(init), copy.deepcopy(init), copy.deepcopy(init)
    r_plain = train_classifier(plain, data["xt"], data["yt"], data["xv"], data["yv"], cfg)
    r0 = distill(teacher, student0, data["xt"], data["yt"], data["xv"], data["yv"], cfg, alpha=0.0)
    assert r0.history == r_plain.history
    assert all(torch.equal(v, plain.state_dict()[k]) for k, v in student0.state_dict().items())
    r = distill(teacher, student, data["xt"], data["yt"], data["xv"], data["yv"], cfg, temperature=4.0, alpha=0.5)
    assert isinstance(r, TrainResult) and r.epochs_run >= 1
    assert r.history[0]["train_loss"] != r_plain.history[0]["train_loss"]  # the KD term is in the loss
    assert predict_logits(student, data["xv"]).shape == (len(data["xv"]), 64)


def test_dscnn_quantize_and_prune(data, tmp_path):
    dscnn = pytest.importorskip("edgebm.models.dscnn", reason="depthwise-separable CNN family not available")
    torch.manual_seed(0)
    model = dscnn.BeamDSCNN(16, 64, upsample=8, width=8, blocks=((1, 8, 1, 1), (4, 16, 1, 2)), last=32).eval()
    fp32 = export_onnx(model, data["xt"], tmp_path / "dscnn.onnx")
    res = quantize_onnx(fp32, tmp_path / "dscnn_s8.onnx", "int8_static", calib_x=data["xt"][:128])
    assert "Conv" in {n.op_type for n in onnx.load(res.out_path).graph.node}
    assert "int8" in res.weight_bytes_by_dtype_after
    want, got = _run(fp32, data["xv"])[0], _run(res.out_path, data["xv"])[0]
    assert np.mean(want.argmax(1) == got.argmax(1)) > 0.8
    pr = prune_structured(model, data["xt"], 0.5)
    convs_before = {k: v for k, v in pr.widths_before.items() if k != "head"}
    assert all(pr.widths_after[k][1] < v[1] for k, v in convs_before.items() if v[1] > 1)
    assert pr.widths_after["head"][1] == 64 and pr.onnx_flops_after < 0.5 * pr.onnx_flops_before
    assert pr.parity["argmax_agreement"] == 1.0


def test_gru_dynamic_quantize_and_prune_refused(tmp_path):
    temporal = pytest.importorskip("edgebm.models.temporal", reason="GRU family not available")
    torch.manual_seed(0)
    model = temporal.BeamGRU(16, 64, history=4, horizon=1, hidden=32, heads=2).eval()
    x = np.random.default_rng(0).uniform(-120, -60, (64, 4, 16)).astype(np.float32)
    fp32 = export_onnx(model, x, tmp_path / "gru.onnx")
    res = quantize_onnx(fp32, tmp_path / "gru_dyn.onnx", "int8_dynamic")
    assert any("GRU" in n for n in res.notes)  # ORT has no int8 GRU: it stays fp32, the Linears do not
    assert "int8" in res.weight_bytes_by_dtype_after
    want, got = _run(fp32, x)[0], _run(res.out_path, x)[0]
    assert got.shape == want.shape and np.mean(want.argmax(-1) == got.argmax(-1)) > 0.8
    with pytest.raises(PruneError, match="recurrent"):
        prune_structured(model, x, 0.5)
