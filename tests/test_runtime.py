import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgebm.runtime import BundleError, InputError, Predictor


def test_runtime_import_is_torch_free():
    code = (
        "import sys, edgebm.runtime as r\n"
        "bad = [m for m in ('torch', 'sklearn', 'thop', 'torch_pruning', 'skl2onnx') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"edgebm.runtime pulled in {out}"


def test_bundle_contents(toy_bundle):
    b = toy_bundle.bundle_dir
    names = sorted(p.name for p in b.iterdir())
    assert names == ["budget.md", "codebook.npz", "manifest.json", "model.onnx"]
    man = json.loads((b / "manifest.json").read_text())
    assert set(man["files"]) == {"budget.md", "codebook.npz", "model.onnx"}
    for key in ("edgebm_version", "profile", "family", "inputs", "outputs", "preprocessing", "metrics_heldout", "budget", "parity"):
        assert key in man
    for key in ("top1", "top3", "within_1db", "se_drop_mean", "se_drop_p90"):
        assert 0.0 <= man["metrics_heldout"][key] <= 1.0
    assert man["parity"]["max_abs_diff"] < 1e-3 and man["parity"]["argmax_agreement"] > 0.99
    assert man["verdict"] == "pass"


def test_predict_matches_labels(toy_bundle, toy_dataset):
    pred = Predictor(toy_bundle.bundle_dir)
    beams, probs = pred.predict(toy_dataset.rsrp_b[:200], k=3)
    assert beams.shape == (200, 3) and probs.shape == (200, 3)
    assert np.all(np.diff(probs, axis=1) <= 1e-7)  # best first
    assert np.mean(np.any(beams == toy_dataset.best_a[:200, None], axis=1)) > 0.6
    b1, p1 = pred.predict(toy_dataset.rsrp_b[0], k=3)
    np.testing.assert_array_equal(b1, beams[0])
    assert pred.predict_proba(toy_dataset.rsrp_b[:4]).sum(1) == pytest.approx(np.ones(4), abs=1e-5)
    assert pred.features(toy_dataset.rsrp_b[:4]).shape == (4, 256)
    az, el = pred.beam_direction(b1[0])
    assert np.isfinite(az) and np.isfinite(el)


@pytest.mark.parametrize(
    "bad,msg",
    [
        (np.full(16, np.nan), "NaN/inf"),
        (np.full((2, 16), np.inf), "NaN/inf"),
        (np.zeros(15), r"shape \(16,\)"),
        (np.full(16, 1e-9), None),  # linear mW looks like ~0 dBm: valid range, accepted
        (np.full(16, 500.0), "dBm"),
        (np.array(["a"] * 16), "numeric"),
    ],
)
def test_bad_inputs_rejected(toy_bundle, bad, msg):
    pred = Predictor(toy_bundle.bundle_dir)
    if msg is None:
        pred.predict(bad)
        return
    with pytest.raises(InputError, match=msg):
        pred.predict(bad)


def _copy_bundle(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_tampered_bundle_refused(toy_bundle, tmp_path):
    b = _copy_bundle(toy_bundle.bundle_dir, tmp_path / "b")
    data = bytearray((b / "model.onnx").read_bytes())
    data[-10] ^= 0xFF
    (b / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="'model.onnx' has been modified since export"):
        Predictor(b)


def test_missing_file_and_schema_refused(toy_bundle, tmp_path):
    b = _copy_bundle(toy_bundle.bundle_dir, tmp_path / "b")
    (b / "codebook.npz").unlink()
    with pytest.raises(BundleError, match="'codebook.npz' listed in the manifest is missing"):
        Predictor(b)
    c = _copy_bundle(toy_bundle.bundle_dir, tmp_path / "c")
    man = json.loads((c / "manifest.json").read_text())
    man["schema"] = "edgebm.bundle/99"
    (c / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(BundleError, match="schema"):
        Predictor(c)
    with pytest.raises(BundleError, match="no such directory"):
        Predictor(tmp_path / "nope")
