"""Classical (scikit-learn) families: training contract, ONNX export via skl2onnx, parity, budget analysis."""

import numpy as np
import onnx
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin

from edgebm.budget import analyze_onnx
from edgebm.deploy.onnx_export import ExportError
from edgebm.deploy.sklearn_export import check_sklearn_parity, export_sklearn
from edgebm.models.classical import FAMILIES, FILL_LOGIT, ClassicalBeamModel, RelativeDbTransformer, ovo_to_ovr
from edgebm.models.preprocess import relative_db
from tests.conftest import make_toy_dataset

N_B, N_A = 16, 64
# small but representative settings so the whole file stays well under a minute on 2 cores
FAST = {"gbt": {"max_iter": 12}, "svm_rbf": {"max_train": 1500}, "sgd": {"epochs": 10}}
# max |onnx - sklearn| on the dense scores. svm_rbf: logits are one-vs-one votes (up to 63) plus
# confidences, times the temperature, from float32 kernel sums over ~1-2k support vectors (~1e-5 seen)
TOL = {"svm_linear": 1e-4, "sgd": 1e-4, "tree": 1e-4, "gbt": 1e-4, "svm_rbf": 5e-4}


@pytest.fixture(scope="module")
def data():
    ds = make_toy_dataset(3000, seed=5)
    x, y = ds.rsrp_b, ds.best_a
    return {"train": (x[:2000], y[:2000]), "val": (x[2000:2400], y[2000:2400]), "test": (x[2400:], y[2400:]), "pos": ds.pos}


def _fit(family, data, seed=0, **kw):
    (x, y), (xv, yv) = data["train"], data["val"]
    return ClassicalBeamModel(family, N_B, N_A, seed=seed, **{**FAST.get(family, {}), **kw}).fit(x, y, xv, yv)


@pytest.fixture(scope="module")
def fitted(data):
    return {f: _fit(f, data) for f in FAMILIES}


@pytest.mark.parametrize("family", FAMILIES)
def test_fit_predict_shapes_and_beats_chance(family, fitted, data):
    m = fitted[family]
    x, y = data["test"]
    pred = m.predict(x)
    assert pred.shape == (len(x),) and pred.dtype == np.int64
    proba = m.predict_proba(x)
    assert proba.shape == (len(x), N_A) and proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-5)
    scores = m.decision_scores(x)
    assert scores.shape == (len(x), N_A)
    assert np.array_equal(scores.argmax(1), pred) and np.array_equal(proba.argmax(1), pred)
    acc = float(np.mean(pred == y))
    assert acc > 0.4, f"{family}: top-1 {acc:.3f} on held-out toy data (chance 1/64)"
    assert m.n_params() > 0 and m.fit_seconds_ is not None


@pytest.mark.parametrize("family", FAMILIES)
def test_same_seed_same_predictions(family, fitted, data):
    x, _ = data["test"]
    again = _fit(family, data, seed=0)
    assert np.array_equal(fitted[family].predict(x), again.predict(x))
    assert np.array_equal(fitted[family].scores(x), again.scores(x))


def test_svm_rbf_subsample_depends_on_seed(data):
    x, _ = data["test"]
    a = _fit("svm_rbf", data, seed=1, max_train=600)
    b = _fit("svm_rbf", data, seed=1, max_train=600)
    c = _fit("svm_rbf", data, seed=2, max_train=600)
    assert np.array_equal(a.scores(x), b.scores(x))
    assert a.estimator.shape_fit_[0] == 600  # trained on the capped subsample
    assert not np.array_equal(a.scores(x), c.scores(x))


@pytest.mark.parametrize("family", FAMILIES)
def test_onnx_export_parity_and_budget(family, fitted, data, tmp_path):
    m = fitted[family]
    x, _ = data["test"]
    path = tmp_path / f"{family}.onnx"
    info = export_sklearn(m, path, N_B)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # written atomically, no temp left over
    assert info["score_output"] == "scores" and info["score_kind"] == m.score_kind
    assert info["inputs"][0]["name"] == "rsrp_b" and info["inputs"][0]["shape"] == ["batch", N_B]
    assert info["outputs"] == [{"name": "scores", "shape": ["batch", N_A], "dtype": "float32"}]
    assert info["opset"] == {"ai.onnx": 18, "ai.onnx.ml": 3}

    rep = check_sklearn_parity(m, path, x)
    assert rep.argmax_agreement == 1.0
    assert rep.max_abs_diff < TOL[family], f"{family}: max |diff| {rep.max_abs_diff:.2e}"

    proto = onnx.load(str(path))
    ops = {n.op_type for n in proto.graph.node}
    assert "ZipMap" not in ops
    assert [o.name for o in proto.graph.output] == ["scores"]
    stats = analyze_onnx(path)
    assert stats.uncounted_ops == [], f"{family}: analyze_onnx cannot size {stats.uncounted_ops}"
    assert stats.outputs == [{"name": "scores", "shape": ["batch", N_A], "dtype": "float32"}]
    assert stats.flops > 0 and stats.peak_activation_bytes > 0
    if family == "svm_linear":
        assert stats.flops_by_op["LinearClassifier"] == 2 * N_B * N_A
    if family == "sgd":  # weights are initializers here, so the counter sees them
        assert stats.params == N_B * N_A + N_A and stats.flops_by_op["MatMul"] == 2 * N_B * N_A
    if family in ("tree", "gbt"):  # weights live in node attributes: the counter must still see them
        assert stats.flops_by_op["TreeEnsembleClassifier"] > 0 and stats.params > 1000
    if family == "svm_linear":
        assert stats.params == N_B * N_A + N_A


@pytest.mark.parametrize("family", FAMILIES)
def test_dense_scores_cover_beams_unseen_in_training(family, data, tmp_path):
    (x, y), (xv, yv) = data["train"], data["val"]
    xt, _ = data["test"]
    seen = y < 40
    m = ClassicalBeamModel(family, N_B, N_A, seed=0, **FAST.get(family, {})).fit(x[seen], y[seen], xv, yv)
    proba, scores = m.predict_proba(xt), m.scores(xt)
    assert proba.shape == (len(xt), N_A) and scores.shape == (len(xt), N_A)
    assert m.predict(xt).max() < 40
    if family == "sgd":  # classes fixed to range(n_out) so partial_fit can learn them later
        assert np.array_equal(m.classes_, np.arange(N_A))
        assert proba[:, 40:].max() < 0.05
    else:
        assert np.array_equal(m.classes_, np.unique(y[seen]))
        assert np.all(proba[:, 40:] == 0.0)
        if m.score_kind == "logits":
            assert np.all(scores[:, 40:] == FILL_LOGIT)
    path = tmp_path / "m.onnx"
    export_sklearn(m, path, N_B)
    rep = check_sklearn_parity(m, path, xt)
    assert rep.argmax_agreement == 1.0 and rep.max_abs_diff < TOL[family]
    assert analyze_onnx(path).uncounted_ops == []


def test_sgd_partial_fit_learns_new_beams(data):
    (x, y), (xt, yt) = data["train"], data["test"]
    old, new_t = y < 32, yt >= 32
    m = ClassicalBeamModel("sgd", N_B, N_A, seed=0, **FAST["sgd"]).fit(x[old], y[old])
    before = m.predict(xt[new_t])
    assert np.mean(before == yt[new_t]) == 0.0  # never saw those beams
    m.partial_fit(x[~old], y[~old], epochs=2)
    after = m.predict(xt[new_t])
    assert np.mean(after >= 32) > 0.5
    assert np.mean(after == yt[new_t]) > 0.2
    with pytest.raises(NotImplementedError):
        ClassicalBeamModel("tree", N_B, N_A).partial_fit(x, y)


def test_sgd_partial_fit_from_scratch_and_export(data, tmp_path):
    (x, y), (xt, _) = data["train"], data["test"]
    m = ClassicalBeamModel("sgd", N_B, N_A, seed=3)
    for lo in range(0, len(x), 500):  # streaming mini-batches, no fit() first
        m.partial_fit(x[lo:lo + 500], y[lo:lo + 500])
    assert np.array_equal(m.classes_, np.arange(N_A))
    path = tmp_path / "sgd.onnx"
    export_sklearn(m, path, N_B)
    rep = check_sklearn_parity(m, path, xt)
    assert rep.argmax_agreement == 1.0 and rep.max_abs_diff < 1e-4


def test_relative_db_transformer_matches_numpy_preprocessing(data):
    x, _ = data["train"]
    t = RelativeDbTransformer().fit(x)
    assert np.array_equal(t.transform(x), relative_db(x))
    xp = np.hstack([x, data["pos"][:2000]])
    tp = RelativeDbTransformer(n_pos=3).fit(xp)
    out = tp.transform(xp)
    assert out.shape == (2000, N_B + 3) and out.dtype == np.float32
    assert np.array_equal(out[:, :N_B], relative_db(x))
    np.testing.assert_allclose(out[:, N_B:], data["pos"][:2000] / 100.0, rtol=1e-6)


def test_use_position_export(data, tmp_path):
    (x, y), (xt, yt) = data["train"], data["test"]
    pos = data["pos"]
    m = ClassicalBeamModel("tree", N_B, N_A, seed=0, use_position=True).fit(np.hstack([x, pos[:2000]]), y)
    xtp = np.hstack([xt, pos[2400:]])
    assert np.mean(m.predict(xtp) == yt) > 0.4
    with pytest.raises(ValueError, match="19"):
        m.predict(xt)
    info = export_sklearn(m, tmp_path / "p.onnx", N_B)
    assert info["inputs"][0]["shape"] == ["batch", N_B + 3]
    rep = check_sklearn_parity(m, tmp_path / "p.onnx", xtp)
    assert rep.argmax_agreement == 1.0 and rep.max_abs_diff < 1e-4
    assert analyze_onnx(tmp_path / "p.onnx").uncounted_ops == []


def test_ovo_to_ovr_matches_sklearn(fitted, data):
    m = fitted["svm_rbf"]
    x, _ = data["test"]
    est = m.estimator
    feats = m.features.transform(x)
    est.decision_function_shape = "ovr"
    try:
        want = est.decision_function(feats)
    finally:
        est.decision_function_shape = "ovo"
    np.testing.assert_allclose(ovo_to_ovr(est.decision_function(feats), len(est.classes_)), want, atol=1e-9)
    np.testing.assert_allclose(m.scores(x) / np.float32(m.temperature), want, rtol=1e-5, atol=1e-4)


class _Opaque(ClassifierMixin, BaseEstimator):
    """A classifier skl2onnx has no converter for."""

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        return self

    def predict_proba(self, X):
        return np.full((len(X), len(self.classes_)), 1.0 / len(self.classes_))


def test_conversion_failure_is_one_line_export_error(data, tmp_path):
    x, y = data["train"]
    m = ClassicalBeamModel("tree", N_B, N_A)
    with pytest.raises(ExportError, match="unfitted"):
        export_sklearn(m, tmp_path / "a.onnx", N_B)
    m.fit(x, y)
    with pytest.raises(ExportError, match="n_in"):
        export_sklearn(m, tmp_path / "a.onnx", N_B + 1)
    m.pipeline.steps[-1] = ("clf", _Opaque().fit(m.features.transform(x), y))
    with pytest.raises(ExportError) as ei:
        export_sklearn(m, tmp_path / "a.onnx", N_B)
    msg = str(ei.value)
    assert msg.startswith("skl2onnx cannot convert _Opaque") and "\n" not in msg
    assert not any(tmp_path.iterdir())


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="unknown classical family"):
        ClassicalBeamModel("knn", N_B, N_A)
    m = ClassicalBeamModel("svm_linear", N_B, N_A)
    with pytest.raises(ValueError, match="labels"):
        m.fit(np.zeros((4, N_B)), np.array([0, 1, 2, 64]))
    with pytest.raises(ValueError, match="shape"):
        m.fit(np.zeros((4, N_B + 1)), np.array([0, 1, 2, 3]))
