"""Per-device-class targets: C for microcontrollers, ORT format + fixed-shape graph + NNAPI/CoreML coverage
for phones, same beams in a second ONNX runtime, runtime backends (TensorRT skipped without a GPU)."""

from __future__ import annotations

import dataclasses
import json
import subprocess

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from edgebm.budget.mcu import find_cc, mcu_lines, measure_c
from edgebm.deploy.c_export import export_c
from edgebm.deploy.crossrt import cross_runtime_agreement, runtime_status
from edgebm.deploy.fixed_shape import fixed_shape_model, strip_unused_opsets, write_fixed_shape
from edgebm.deploy.onnx_export import export_onnx
from edgebm.deploy.ort_mobile import convert_to_ort, verify_ort
from edgebm.deploy.sklearn_export import export_sklearn
from edgebm.models.estimator import make_model
from edgebm.profiles import ProfileError, load_profile, parse_profile
from edgebm.train import TrainConfig
from tests.conftest import make_toy_dataset

CC = find_cc()
needs_cc = pytest.mark.skipif(CC is None, reason="no C compiler on PATH (set CC)")


@pytest.fixture(scope="module")
def split():
    tr, te = make_toy_dataset(1500, seed=5).split((0.7, 0.3), seed=0)
    return tr, te


@pytest.fixture(scope="module")
def graphs(split, tmp_path_factory):
    """Trained tiny MLP (fp32 + int8 QDQ) and an untrained DS-CNN (fp32, int8, fp16) exported to ONNX."""
    from edgebm.compress import quantize_onnx

    tr, te = split
    d = tmp_path_factory.mktemp("targets")
    mlp = make_model("mlp", 16, 64, TrainConfig(epochs=6, seed=0), hidden=(32,))
    mlp.fit(tr, te)
    out = {"mlp-fp32": export_onnx(mlp.module, tr.rsrp_b, d / "mlp-fp32.onnx")}
    calib = tr.rsrp_b[:256]
    out["mlp-int8"] = quantize_onnx(out["mlp-fp32"], d / "mlp-int8.onnx", "int8_static", calib_x=calib,
                                    keep_fp32_outputs=("logits",)).out_path
    from edgebm.models.dscnn import BeamDSCNN

    torch.manual_seed(0)
    out["dscnn-fp32"] = export_onnx(BeamDSCNN(16, 64).eval(), tr.rsrp_b, d / "dscnn-fp32.onnx")
    for mode, prec in (("int8_static", "int8"), ("fp16", "fp16")):
        out[f"dscnn-{prec}"] = quantize_onnx(out["dscnn-fp32"], d / f"dscnn-{prec}.onnx", mode, calib_x=calib,
                                             keep_fp32_outputs=("logits",)).out_path
    return {k: str(v) for k, v in out.items()}


def _top1(path, x):
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return s.run([s.get_outputs()[0].name], {s.get_inputs()[0].name: np.asarray(x, np.float32)})[0].argmax(1)


# -- microcontrollers: C -------------------------------------------------------------------------------
@needs_cc
@pytest.mark.parametrize("name,kind", [("mlp-fp32", "emlearn_net"), ("mlp-int8", "dense")])
def test_c_mlp_matches_onnx_and_fits_iot(graphs, split, tmp_path, name, kind):
    _, te = split
    cm = export_c(graphs[name], family="mlp", precision=name.split("-")[1], examples=te.rsrp_b[:4])
    assert cm.kind == kind and cm.n_b == 16 and cm.n_a == 64
    cm.write(tmp_path / "c")
    header = (tmp_path / "c" / "model.h").read_text()
    assert "int32_t edgebm_predict(const float rsrp_b_dbm[EDGEBM_N_B]);" in header
    assert "#define EDGEBM_N_B 16" in header and "#define EDGEBM_N_A 64" in header
    src = (tmp_path / "c" / "model.c").read_text()
    assert "malloc" not in src and "printf" not in src  # no heap, no stdio in the shipped predictor
    build = measure_c(tmp_path / "c", te.rsrp_b, _top1(graphs[name], te.rsrp_b), reps=2)
    assert build.n_samples == len(te.rsrp_b) and build.agreement >= 0.999  # the bar: >= 99.9 % top-1 agreement
    assert build.flash_bytes > 0 and build.stack_bytes and build.stack_bytes > 0
    assert build.host_latency.p50_ms > 0
    lines = {l.name: l for l in mcu_lines(build, load_profile("iot"))}
    assert {"c_flash", "c_ram", "c_device_latency_p99", "c_top1_mismatch"} <= set(lines)
    assert all(l.status == "pass" for l in lines.values()), [l.to_dict() for l in lines.values()]
    # the example program compiles as C99 with -pedantic and reproduces onnxruntime's beams
    exe = tmp_path / "example"
    subprocess.run([CC, "-std=c99", "-pedantic", "-O2", f"-I{tmp_path / 'c'}", str(tmp_path / "c" / "example_main.c"),
                    str(tmp_path / "c" / "model.c"), "-lm", "-o", str(exe)], check=True, capture_output=True)
    assert subprocess.run([str(exe)], capture_output=True).returncode == 0


@needs_cc
def test_c_int8_is_smaller_than_fp32_and_flash_limit_fails(graphs, split, tmp_path):
    _, te = split
    sizes = {}
    for name in ("mlp-fp32", "mlp-int8"):
        export_c(graphs[name]).write(tmp_path / name)
        sizes[name] = measure_c(tmp_path / name, te.rsrp_b[:50], _top1(graphs[name], te.rsrp_b[:50]), reps=1)
    # int8 body weights take a quarter of the bytes (the head stays fp32 for on-device adaptation)
    assert sizes["mlp-int8"].sections["rodata"] < sizes["mlp-fp32"].sections["rodata"]
    iot = load_profile("iot")
    tight = dataclasses.replace(iot, limits=dataclasses.replace(iot.limits, max_model_kib=1.0, max_peak_ram_kib=0.1))
    lines = {l.name: l for l in mcu_lines(sizes["mlp-fp32"], tight)}
    assert lines["c_flash"].status == "fail" and lines["c_ram"].status == "fail"


@needs_cc
@pytest.mark.parametrize("family,kind", [("tree", "emlearn_tree"), ("gbt", "trees"), ("svm_linear", "dense"), ("sgd", "dense")])
def test_c_classical_matches_onnx(split, tmp_path, family, kind):
    tr, te = split
    params = {"max_iter": 8} if family == "gbt" else {}
    m = make_model(family, 16, 64, TrainConfig(seed=0), **params).fit(tr, te)
    path = tmp_path / f"{family}.onnx"
    export_sklearn(m.est, path, 16)
    before = np.geterr()
    cm = export_c(path, m, family=family, precision="fp32", examples=te.rsrp_b[:2])
    assert np.geterr() == before  # emlearn's import-time numpy.seterr(all="raise") is undone
    assert cm.kind == kind
    cm.write(tmp_path / "c")
    build = measure_c(tmp_path / "c", te.rsrp_b, _top1(path, te.rsrp_b), reps=1)
    assert build.agreement >= 0.999, build.to_dict()


def test_c_export_refuses_what_it_cannot_express(tmp_path):
    from edgebm.errors import ExportError

    x = onnx.helper.make_tensor_value_info("rsrp_b", onnx.TensorProto.FLOAT, ["batch", 16])
    y = onnx.helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, ["batch", 16])
    g = onnx.helper.make_graph([onnx.helper.make_node("Relu", ["rsrp_b"], ["logits"])], "g", [x], [y])
    path = tmp_path / "relu.onnx"
    onnx.save(onnx.helper.make_model(g, opset_imports=[onnx.helper.make_opsetid("", 18)]), str(path))
    with pytest.raises(ExportError, match="relative-dB"):
        export_c(path)


# -- phones: fixed shape, accelerators, ORT format -------------------------------------------------------
@pytest.mark.parametrize("name", ["mlp-fp32", "mlp-int8", "dscnn-int8", "dscnn-fp16"])
def test_fixed_shape_graph_gives_the_dynamic_graphs_outputs(graphs, split, tmp_path, name):
    _, te = split
    fixed = tmp_path / "fixed.onnx"
    info = write_fixed_shape(graphs[name], fixed)
    m = onnx.load(str(fixed))
    assert [d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim] == [1, 16]
    assert {o.domain for o in m.opset_import} <= {"", "ai.onnx"}  # QDQ pre-processing leftovers are gone
    assert "ReduceMax" not in {n.op_type for n in m.graph.node} and info["reducemax_to_maxpool"] == 1
    dyn = ort.InferenceSession(graphs[name], providers=["CPUExecutionProvider"])
    fix = ort.InferenceSession(str(fixed), providers=["CPUExecutionProvider"])
    for row in te.rsrp_b[:64]:
        a = dyn.run(None, {"rsrp_b": row[None]})
        b = fix.run(None, {"rsrp_b": row[None]})
        for u, v in zip(a, b):
            if name.endswith("fp16"):  # ORT's CPU provider upcasts a different set of fp16 nodes: fp16 rounding
                np.testing.assert_allclose(u, v, atol=0.05 * max(1.0, float(np.abs(u).max())) / 10)
            else:
                np.testing.assert_array_equal(u, v)


def test_strip_unused_opsets():
    g = onnx.helper.make_graph([onnx.helper.make_node("Relu", ["x"], ["y"])], "g",
                               [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
                               [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])
    m = onnx.helper.make_model(g, opset_imports=[onnx.helper.make_opsetid("", 18), onnx.helper.make_opsetid("com.microsoft", 1),
                                                 onnx.helper.make_opsetid("org.pytorch.aten", 1)])
    assert strip_unused_opsets(m) == ["com.microsoft", "org.pytorch.aten"]
    assert [o.domain for o in m.opset_import] == [""]


def test_fixed_shape_refuses_a_second_symbolic_axis():
    g = onnx.helper.make_graph([onnx.helper.make_node("Relu", ["x"], ["y"])], "g",
                               [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["batch", "n"])],
                               [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["batch", "n"])])
    with pytest.raises(ValueError, match="symbolic dimension 1"):
        fixed_shape_model(onnx.helper.make_model(g, opset_imports=[onnx.helper.make_opsetid("", 18)]))


def _with_accelerator(name: str):
    sp = load_profile("smartphone")
    return dataclasses.replace(sp, compute=dataclasses.replace(sp.compute, accelerator=name))


def test_accelerator_lines_nnapi_takes_int8_coreml_needs_fp16(graphs):
    from edgebm.budget.accelerator import accelerator_lines

    lines, cov = accelerator_lines(graphs["dscnn-int8"], load_profile("smartphone"))  # shipped profile: nnapi, >= 95 % in <= 2
    assert {l.name: l.status for l in lines} == {"accelerator_cpu_nodes": "pass", "accelerator_partitions": "pass"}
    assert cov.pct >= 95 and cov.partitions <= 2
    lines, cov = accelerator_lines(graphs["dscnn-int8"], _with_accelerator("coreml"))
    assert all(l.status == "fail" for l in lines)
    assert "ai.onnx:QuantizeLinear" in cov.unsupported_ops and "fp16" in lines[0].note
    lines, _ = accelerator_lines(graphs["dscnn-fp16"], _with_accelerator("coreml"))
    assert all(l.status == "pass" for l in lines), [l.to_dict() for l in lines]


def test_dynamic_graph_is_what_nnapi_cannot_take(graphs):
    from edgebm.budget.accelerator import accelerator_coverage

    dyn = accelerator_coverage(graphs["dscnn-int8"], "nnapi")
    assert dyn.pct < 50 and dyn.dynamic_shape_nodes > 0  # the 31 %: dynamic batch


@pytest.mark.parametrize("name,runtime_opt", [("mlp-fp32", False), ("mlp-int8", True), ("dscnn-int8", True)])
def test_ort_format_model_loads_and_matches(graphs, split, tmp_path, name, runtime_opt):
    _, te = split
    src = graphs[name]
    if runtime_opt:
        src = tmp_path / "fixed.onnx"
        write_fixed_shape(graphs[name], src)
    art = convert_to_ort(src, tmp_path / "ort", runtime_optimizations=runtime_opt)
    assert art.ort_path.name == "model.ort" and art.ort_bytes > 0
    assert art.config_path.name.startswith("required_operators_and_types")
    assert "ai.onnx;" in art.config_path.read_text()
    v = verify_ort(art.ort_path, graphs[name], te.rsrp_b, max_samples=64)
    assert v["top1_agreement"] == 1.0 and v["max_abs_diff"] < 1e-4


def test_smartphone_bundle_ships_phone_targets(toy_bundle):
    """The shipped smartphone profile (nnapi, ort_mobile) passes its accelerator lines; the bundle has them."""
    b = toy_bundle.bundle_dir
    man = json.loads((b / "manifest.json").read_text())
    assert man["verdict"] == "pass"
    lines = {l["name"]: l for l in man["budget"]["lines"]}
    for name in ("accelerator_cpu_nodes", "accelerator_partitions", "ort_top1_mismatch", "reference_top1_mismatch"):
        assert lines[name]["status"] == "pass", lines[name]
    assert {"model.ort", "model_fixed.onnx"} <= set(man["files"])
    assert any(f.startswith("required_operators_and_types") for f in man["files"])
    assert man["targets"]["accelerator"]["fixed_shape"]["pct"] >= 95


# -- same beams in another runtime ---------------------------------------------------------------------
@pytest.mark.parametrize("name", ["mlp-fp32", "mlp-int8", "dscnn-int8"])
def test_reference_evaluator_agrees_with_onnxruntime(graphs, split, name):
    _, te = split
    res = cross_runtime_agreement(graphs[name], te.rsrp_b[:200], ("reference",))["reference"]
    assert res["top1_agreement"] >= 0.99, res


@pytest.mark.skipif(not runtime_status("tract")[0], reason=runtime_status("tract")[1])
@pytest.mark.parametrize("name", ["mlp-int8", "dscnn-int8"])
def test_tract_agrees_with_onnxruntime(graphs, split, name):
    _, te = split
    res = cross_runtime_agreement(graphs[name], te.rsrp_b[:200], ("tract",))["tract"]
    assert res["top1_agreement"] >= 0.99, res


# -- profiles --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("key,value,msg", [("accelerator", "npu", "must be one of"), ("accelerator_min_nodes_pct", 120, "percentage"),
                                           ("ort_mobile", "yes", "expected boolean"), ("accelerator_max_partitions", 0, "> 0")])
def test_new_compute_keys_are_validated(key, value, msg):
    import tomllib
    from pathlib import Path

    d = tomllib.loads(Path(load_profile("smartphone").source).read_text())
    d["compute"][key] = value
    with pytest.raises(ProfileError, match=rf"key 'compute.{key}': .*{msg}"):
        parse_profile(d, "x.toml")


def test_iot_profile_targets_c_and_older_profiles_still_load():
    import tomllib
    from pathlib import Path

    assert load_profile("iot").compute.backend == "c"
    d = tomllib.loads(Path(load_profile("fwa").source).read_text())
    p = parse_profile(d, "fwa.toml")  # no accelerator keys: defaults
    assert p.compute.accelerator == "none" and p.compute.ort_mobile is False


# -- bundle integrity covers sub-folders -----------------------------------------------------------------
def test_bundle_hashes_files_in_subfolders(toy_bundle, tmp_path):
    import shutil

    from edgebm.errors import BundleError
    from edgebm.runtime import read_manifest, write_bundle

    src = toy_bundle.bundle_dir
    man = json.loads((src / "manifest.json").read_text())
    writers = {name: (lambda p, n=name: shutil.copyfile(src / n, p)) for name in man["files"]}
    writers["c/model.c"] = lambda p: p.write_text("int x;\n")
    base = {k: v for k, v in man.items() if k not in ("schema", "files", "bundle_digest", "signature")}
    out = write_bundle(tmp_path / "b", writers, base)
    assert "c/model.c" in read_manifest(out).files
    (out / "c" / "model.c").write_text("int y;\n")
    with pytest.raises(BundleError, match="c/model.c"):
        read_manifest(out)


# -- runtime: backend choice and the single-sample fast path -----------------------------------------------
def test_predictor_reports_its_backend(toy_bundle):
    from edgebm.errors import BundleError, InputError
    from edgebm.runtime import Predictor

    pred = Predictor(toy_bundle.bundle_dir)
    assert pred.backend == "onnxruntime" and pred.backend_reason.startswith("onnxruntime")
    with pytest.raises(InputError, match="backend must be one of"):
        Predictor(toy_bundle.bundle_dir, backend="tflite")
    with pytest.raises(BundleError, match="no TensorRT engine"):
        Predictor(toy_bundle.bundle_dir, backend="tensorrt")


@pytest.mark.parametrize("k", [1, 3, 64])
def test_single_sample_fast_path_equals_batch_path(toy_bundle, toy_dataset, k):
    from edgebm.runtime import Predictor

    pred = Predictor(toy_bundle.bundle_dir)
    for row in toy_dataset.rsrp_b[:50]:
        for x in (row, row.astype(np.float64)):
            beams, probs = pred.predict(x, k=k)
            b2, p2 = pred.predict(x[None, :], k=k)
            assert beams.shape == (k,) and np.array_equal(beams, b2[0]) and np.array_equal(probs, p2[0])
            assert probs.dtype == np.float32


def test_fast_path_keeps_every_check(toy_bundle):
    from edgebm.errors import InputError
    from edgebm.runtime import Predictor

    pred = Predictor(toy_bundle.bundle_dir)
    good = np.full(16, -90.0, np.float32)
    for bad, msg in [(np.where(np.arange(16) == 3, np.nan, good).astype(np.float32), "NaN"),
                     (np.where(np.arange(16) == 0, np.inf, good), "NaN/inf"),
                     (good + 500.0, "dBm"), (np.full(15, -90.0), "shape"), (good.astype(np.float16) * 0 + 100, "dBm")]:
        with pytest.raises(InputError, match=msg):
            pred.predict(bad, k=3)
    with pytest.raises(InputError, match="k must be"):
        pred.predict(good, k=0)


@needs_cc
def test_cli_check_reports_the_profiles_targets(graphs, capsys):
    from edgebm.cli import main

    # exit 3 is possible on a loaded host (the latency lines); the target lines are printed either way
    assert main(["check", graphs["mlp-fp32"], "--profile", "iot", "--runs", "50"]) in (0, 3)
    out = capsys.readouterr().out
    assert "c_flash" in out and "c_top1_mismatch" in out and "reference_top1_mismatch" in out
    assert main(["check", graphs["dscnn-int8"], "--profile", "smartphone", "--runs", "50"]) in (0, 3)
    out = capsys.readouterr().out
    assert "accelerator_cpu_nodes" in out and "ort_top1_mismatch" in out
