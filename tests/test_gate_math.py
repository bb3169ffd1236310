"""Budget-gate arithmetic with hand-computed expected values (the arithmetic is in the comments), and gate lines
that can each fail: unknown ops, thop disagreement, session memory, head size, energy, caller-supplied lines."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from edgebm.budget import BudgetLine, GraphStats, LatencyStats, analyze_onnx, judge, limit_line, run_gate
from edgebm.budget import gate as gate_mod
from edgebm.cli import main
from edgebm.profiles import load_profile


def stats(flops: int = 2_000_000, weight_bytes: int = 1000, peak: int = 500, params: int = 250, uncounted: list[str] | None = None) -> GraphStats:
    return GraphStats(flops=flops, flops_by_op={"Gemm": flops}, params=params, weight_bytes=weight_bytes,
                      weight_bytes_by_dtype={"float32": weight_bytes}, peak_activation_bytes=peak, file_bytes=weight_bytes,
                      uncounted_ops=uncounted or [])


def host(p99_ms: float) -> LatencyStats:
    return LatencyStats(p50_ms=p99_ms / 2, p95_ms=p99_ms, p99_ms=p99_ms, mean_ms=p99_ms / 2, max_ms=p99_ms, runs=500, warmup=50)


def phone(**compute):
    """smartphone: beam cycle 20 ms, inference budget 2 ms, 25 GFLOP/s, 15 GB/s, slowdown 2.5, 10 MFLOPs, 2048 KiB RAM,
    head <= 20,000 params (on-device update on), 5 pJ/FLOP."""
    p = load_profile("smartphone")
    return replace(p, compute=replace(p.compute, **compute)) if compute else p


def line(rep, name: str) -> BudgetLine:
    found = rep.line(name)
    assert found is not None, f"no line {name}"
    return found


def test_slowdown_line_decides():
    rep = judge(stats(), host(0.4), 1024, phone())
    # roofline = 1e3 x max(2e6 FLOPs / 25e9 FLOP/s, (1000 + 2 x 500) B / 15e9 B/s) = max(0.08, 0.000133) = 0.08 ms
    assert line(rep, "roofline").value == pytest.approx(0.08)
    # host p99 x slowdown = 0.4 x 2.5 = 1.0 ms > 0.08: the slowdown line decides
    assert line(rep, "host_p99_scaled").value == pytest.approx(1.0)
    assert rep.device_latency_ms == pytest.approx(1.0) and line(rep, "device_latency_p99").value == pytest.approx(1.0)
    assert line(rep, "device_latency_p99").status == "pass" and rep.extra["device_latency_decided_by"] == "host_p99_scaled"
    # beam-cycle margin = 20 - 1.0 = 19 ms
    assert line(rep, "beam_cycle_margin").value == pytest.approx(19.0) and line(rep, "beam_cycle_margin").status == "pass"
    assert rep.verdict == "pass"
    # 0.9 ms host p99 x 2.5 = 2.25 ms > the 2 ms budget: fails on the slowdown line alone
    slow = judge(stats(), host(0.9), 1024, phone())
    assert slow.device_latency_ms == pytest.approx(2.25) and line(slow, "device_latency_p99").status == "fail"
    assert slow.verdict == "fail" and "device_latency_p99 2.25 ms > 2 ms" in slow.reason()


def test_roofline_line_decides_compute_and_memory_bound():
    # compute bound: 100 MFLOPs at 25 GFLOP/s = 1e3 x 1e8 / 25e9 = 4 ms; host 0.01 ms x 2.5 = 0.025 ms
    p = phone()
    p = replace(p, limits=replace(p.limits, max_mflops=1000.0))
    rep = judge(stats(flops=100_000_000), host(0.01), 1024, p)
    assert rep.roofline_ms == pytest.approx(4.0) and rep.device_latency_ms == pytest.approx(4.0)
    assert rep.extra["device_latency_decided_by"] == "roofline"
    assert line(rep, "device_latency_p99").status == "fail" and line(rep, "flops").status == "pass"
    assert line(rep, "beam_cycle_margin").value == pytest.approx(16.0)  # 20 - 4
    # memory bound: (44,999,000 + 2 x 500) B / 15e9 B/s = 3e-3 s = 3 ms (compute 2e6 / 25e9 = 0.08 ms)
    mem = judge(stats(weight_bytes=44_999_000), host(0.01), 1024, replace(p, limits=replace(p.limits, max_model_kib=1e6)))
    assert mem.roofline_ms == pytest.approx(3.0) and mem.device_latency_ms == pytest.approx(3.0)
    # halving the bandwidth doubles the memory-bound time
    slow_mem = judge(stats(weight_bytes=44_999_000), host(0.01), 1024, replace(phone(mem_bandwidth_gbs=7.5), limits=mem_limits(p)))
    assert slow_mem.roofline_ms == pytest.approx(6.0)


def mem_limits(p):
    return replace(p.limits, max_model_kib=1e6, max_mflops=1000.0)


def test_beam_cycle_margin_can_fail():
    # host p99 10 ms x 2.5 = 25 ms > the 20 ms beam cycle: margin 20 - 25 = -5 ms
    rep = judge(stats(), host(10.0), 1024, phone())
    m = line(rep, "beam_cycle_margin")
    assert m.value == pytest.approx(-5.0) and m.status == "fail"
    assert "beam_cycle_margin -5 ms < 0 ms" in rep.reason()


def test_unknown_op_thop_disagreement_memory_head_energy_and_extra_lines():
    p = phone()
    assert line(judge(stats(uncounted=["Einsum"]), host(0.1), 1024, p), "uncounted_ops").status == "fail"
    assert "Einsum" in judge(stats(uncounted=["Einsum"]), host(0.1), 1024, p).reason()
    # thop 2.3e6 vs ONNX 2e6: |0.3e6| / 2e6 = 15 % (the tolerance: passes); 2.31e6 -> 15.5 % fails
    assert line(judge(stats(), host(0.1), 1024, p, thop=2_300_000), "flops_thop_agreement").status == "pass"
    bad = line(judge(stats(), host(0.1), 1024, p, thop=2_310_000), "flops_thop_agreement")
    assert bad.value == pytest.approx(15.5) and bad.status == "fail"
    # session memory 2 MiB + 1 KiB = 2049 KiB > 2048 KiB
    assert line(judge(stats(), host(0.1), 2049 * 1024, p), "session_memory").status == "fail"
    assert line(judge(stats(), host(0.1), 2048 * 1024, p), "session_memory").status == "pass"
    # ... judged only where the profile deploys with onnxruntime (vehicle deploys with TensorRT)
    assert line(judge(stats(), host(0.1), 10**12, load_profile("vehicle")), "session_memory").status == "info"
    # head: 20,001 > 20,000 fails; a profile without on-device updates (fwa) only reports it
    assert line(judge(stats(), host(0.1), 1024, p, head_params=20_001), "trainable_head").status == "fail"
    assert line(judge(stats(), host(0.1), 1024, p, head_params=20_000), "trainable_head").status == "pass"
    assert line(judge(stats(), host(0.1), 1024, load_profile("fwa"), head_params=10**9), "trainable_head").status == "info"
    # energy: 2e6 FLOPs x 5 pJ = 1e7 pJ = 10 µJ per inference (information)
    e = line(judge(stats(), host(0.1), 1024, p), "energy")
    assert e.value == pytest.approx(10.0) and e.unit == "µJ/inference" and e.status == "info"
    # caller lines are appended as they are and decide the verdict like any other
    extra = [limit_line("parity_top1_agreement", 0.95, 0.99, "", "vs fp32 on validation", bound="min"),
             BudgetLine("accelerator", 1.0, None, "share", "info")]
    rep = judge(stats(), host(0.1), 1024, p, extra_lines=extra)
    assert rep.lines[-2:] == extra and rep.verdict == "fail" and "parity_top1_agreement 0.95 < 0.99" in rep.reason()


def test_pooled_p99_not_a_median_of_rounds():
    # 500 runs: 495 of 1 ms and a burst of five 100 ms calls. Pooled p99 = sorted[494.01] = 1 + 0.01 x 99 = 1.99 ms;
    # a median of five per-round p99s would say 1 ms (four clean rounds outvote the one with the burst)
    t = np.ones(500)
    t[10:15] = 100.0
    st = LatencyStats.from_samples(t, warmup=50)
    assert st.p99_ms == pytest.approx(1.99) and st.max_ms == 100.0 and st.runs == 500


def _chain_graph(path, op_nodes, inits, out_shape):
    g = helper.make_graph(op_nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 100])],
                          [helper.make_tensor_value_info("e", TensorProto.FLOAT, out_shape)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return path


def _small_graph(path):
    rng = np.random.default_rng(0)
    w1 = helper.make_tensor("W1", TensorProto.FLOAT, [100, 200], rng.standard_normal(20000).astype(np.float32))
    w2 = helper.make_tensor("W2", TensorProto.FLOAT, [200, 10], rng.standard_normal(2000).astype(np.float32))
    nodes = [
        helper.make_node("Relu", ["x"], ["a"]),  # a (1, 100)
        helper.make_node("MatMul", ["a", "W1"], ["b"]),  # b (1, 200)
        helper.make_node("Relu", ["b"], ["c"]),  # c (1, 200)
        helper.make_node("Add", ["b", "c"], ["d"]),  # d (1, 200): b is live until here
        helper.make_node("MatMul", ["d", "W2"], ["e"]),  # e (1, 10)
    ]
    return _chain_graph(path, nodes, [w1, w2], [1, 10])


def test_peak_activation_bytes_and_flops_of_a_small_graph(tmp_path):
    s = analyze_onnx(_small_graph(tmp_path / "g.onnx"))
    # live float32 bytes after each node (a tensor dies after its last reader; weights are not activations):
    #   Relu:   x 400 + a 400                   =   800 (x dies)
    #   MatMul: a 400 + b 800                   = 1,200 (a dies)
    #   Relu:   b 800 + c 800                   = 1,600
    #   Add:    b 800 + c 800 + d 800           = 2,400 (b, c die)  <- peak
    #   MatMul: d 800 + e 40                    =   840
    assert s.peak_activation_bytes == 2400
    # FLOPs: MatMul 2 x 100 x 200 = 40,000 and 2 x 200 x 10 = 4,000; Relu 100 + 200; Add 200 -> 44,500
    assert s.flops == 44_500 and s.flops_by_op == {"MatMul": 44_000, "Relu": 300, "Add": 200}
    assert s.params == 100 * 200 + 200 * 10 and s.weight_bytes == 4 * 22_000 and not s.uncounted_ops


def test_check_fails_a_graph_of_einsum_matmuls(tmp_path, capsys):
    w = helper.make_tensor("W", TensorProto.FLOAT, [100, 10], np.zeros(1000, np.float32))
    path = _chain_graph(tmp_path / "einsum.onnx", [helper.make_node("Einsum", ["x", "W"], ["e"], equation="ij,jk->ik")], [w], [1, 10])
    assert main(["check", str(path), "--profile", "smartphone", "--runs", "20"]) == 3
    err = capsys.readouterr().err
    assert "uncounted_ops" in err and "Einsum" in err


def test_borderline_latency_is_remeasured(tmp_path, monkeypatch):
    calls = []
    p99s = iter([0.7, 0.9])  # first: 0.7 x 2.5 = 1.75 ms, within 20 % of the 2 ms budget -> measured again

    def fake_time(self, runs, warmup):
        calls.append(runs)
        return host(next(p99s))

    monkeypatch.setattr(gate_mod.SessionProbe, "time", fake_time)
    rep = run_gate(_small_graph(tmp_path / "g.onnx"), phone(), np.zeros((1, 100), np.float32), runs=100)
    assert calls == [100, 200]
    assert rep.device_latency_ms == pytest.approx(2.25) and rep.verdict == "fail"
    assert "re-measured" in line(rep, "host_latency_p99").note
    # far from every limit (0.1 x 2.5 = 0.25 ms): measured once
    calls.clear()
    p99s = iter([0.1])
    run_gate(tmp_path / "g.onnx", phone(), np.zeros((1, 100), np.float32), runs=100)
    assert calls == [100]


def test_int32_quantised_biases_are_parameters(tmp_path):
    # y = x @ dequant(W int8 (100, 10)) + dequant(b int32 (10,)): 1,000 + 10 parameters; scales / zero points are not
    inits = [
        helper.make_tensor("Wq", TensorProto.INT8, [100, 10], np.ones(1000, np.int8)),
        helper.make_tensor("bq", TensorProto.INT32, [10], np.arange(10, dtype=np.int32)),
        helper.make_tensor("s", TensorProto.FLOAT, [], [0.1]),
        helper.make_tensor("zp8", TensorProto.INT8, [], [0]),
        helper.make_tensor("zp32", TensorProto.INT32, [], [0]),
        helper.make_tensor("axes", TensorProto.INT64, [1], [0]),  # an integer constant that is not a weight
    ]
    nodes = [
        helper.make_node("DequantizeLinear", ["Wq", "s", "zp8"], ["W"]),
        helper.make_node("DequantizeLinear", ["bq", "s", "zp32"], ["b"]),
        helper.make_node("MatMul", ["x", "W"], ["m"]),
        helper.make_node("Add", ["m", "b"], ["e"]),
    ]
    s = analyze_onnx(_chain_graph(tmp_path / "q.onnx", nodes, inits, [1, 10]))
    assert s.params == 1000 + 10


def test_microcontroller_profile_onnxruntime_lines_only_inform():
    """iot deploys compiled C (no onnxruntime on the device): onnxruntime's session memory and device latency are
    information there, naming the C line that decides; the graph's own lines (FLOPs, params, head) still judge."""
    iot = load_profile("iot")  # budget 5 ms, beam cycle 20 ms, slowdown 25, 64 KiB RAM, head <= 2048
    # host p99 1 ms x 25 = 25 ms: over the budget AND the beam cycle; session 463 KiB > 64 KiB
    rep = judge(stats(flops=100_000, weight_bytes=1000), host(1.0), 463 * 1024, iot, head_params=2048)
    for name, decides in (("device_latency_p99", "c_device_latency_p99"), ("beam_cycle_margin", "c_device_latency_p99"),
                          ("session_memory", "c_ram")):
        ln = line(rep, name)
        assert ln.status == "info" and "compiled C" in ln.note and decides in ln.note, (name, ln)
    assert line(rep, "device_latency_p99").value == pytest.approx(25.0) and rep.verdict == "pass"
    # the same device latency (host 10 ms x 2.5 = 25 ms) and session memory fail a profile that deploys onnxruntime
    phone_rep = judge(stats(flops=100_000, weight_bytes=1000), host(10.0), 4096 * 1024, phone(), head_params=2048)
    assert {"device_latency_p99", "beam_cycle_margin", "session_memory"} <= {l.name for l in phone_rep.failures}
    # a head one feature too wide: (32 + 1) x 64 = 2112 > 2048 fails with the numbers in the line
    wide = judge(stats(flops=100_000, weight_bytes=1000), host(0.01), 1024, iot, head_params=2112)
    assert wide.verdict == "fail" and "trainable_head 2,112 params > 2,048 params (head updated on the device)" in wide.reason()
