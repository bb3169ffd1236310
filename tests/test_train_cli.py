import json

import numpy as np
import pytest

from edgebm.cli import main
from edgebm.data import save_dataset
from edgebm.models.estimator import load_model, make_model
from edgebm.train import TrainConfig
from tests.conftest import make_toy_dataset


@pytest.fixture(scope="module")
def toy_file(tmp_path_factory):
    return save_dataset(make_toy_dataset(800, seed=5), tmp_path_factory.mktemp("d") / "toy.npz")


def test_train_writes_run_and_evaluate_reads_it(toy_file, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--data", str(toy_file), "--model", "mlp", "--out", str(run), "--epochs", "4", "--soft-labels", "0.2"]) == 0
    for name in ("model.pt", "config.json", "metrics.json", "history.json"):
        assert (run / name).is_file()
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0 <= metrics["top1"] <= 1 and metrics["n"] == 80
    assert len(json.loads((run / "history.json").read_text())) >= 1
    capsys.readouterr()
    assert main(["evaluate", str(run), "--data", str(toy_file), "--train-data", str(toy_file), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    methods = [r["method"] for r in out["rows"]]
    assert methods[:3] == ["genie", "exhaustive", "hierarchical"]
    assert "mlp" in methods and "mlp + top-3 refine" in methods and "nearest position + top-3" in methods
    rows = {r["method"]: r for r in out["rows"]}
    assert rows["exhaustive"]["beams_measured"] == 64 and rows["hierarchical"]["beams_measured"] == 20
    assert rows["mlp + top-3 refine"]["beams_measured"] == 19
    assert rows["genie"]["se_drop_mean"] == 0.0
    # the data is the run's own: by default only its held-out test split (80 of 800 rows) enters the comparison
    assert out["n"] == 80 and out["split"].startswith("held-out test split: 80 of 800 rows")
    other = save_dataset(make_toy_dataset(300, seed=6), tmp_path / "other.npz")
    assert main(["evaluate", str(run), "--data", str(other), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n"] == 300 and out["split"] == "all 300 rows (the data is not this run's training data)"
    assert main(["evaluate", str(run), "--data", str(toy_file), "--split", "all"]) == 0
    assert "evaluated on all 800 rows" in capsys.readouterr().out


def test_distillation_run(toy_file, tmp_path):
    teacher = tmp_path / "t"
    assert main(["train", "--data", str(toy_file), "--model", "mlp", "--out", str(teacher), "--epochs", "3"]) == 0
    student = tmp_path / "s"
    assert main(["train", "--data", str(toy_file), "--model", "mlp", "--out", str(student), "--epochs", "2",
                 "--distil-from", str(teacher), "--param", "hidden=[32]"]) == 0
    assert json.loads((student / "config.json").read_text())["distil_from"] == str(teacher)
    assert load_model(student).module.hidden == (32,)


def test_train_bad_family_and_bad_param(toy_file, tmp_path, capsys):
    assert main(["train", "--data", str(toy_file), "--model", "resnet9000", "--out", str(tmp_path / "x")]) == 2
    assert "unknown family" in capsys.readouterr().err
    assert main(["train", "--data", str(toy_file), "--model", "mlp", "--out", str(tmp_path / "x"), "--param", "widthz=3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "widthz" in err[0]
    assert not (tmp_path / "x").exists()


def test_gru_needs_trajectories(toy_file, tmp_path, capsys):
    assert main(["train", "--data", str(toy_file), "--model", "gru", "--out", str(tmp_path / "g"), "--epochs", "1"]) == 2
    assert "trajectory" in capsys.readouterr().err


@pytest.mark.parametrize("family,kw", [("mlp", {}), ("dscnn", {}), ("teacher", {"upsample": 16}), ("teacher_pos", {"upsample": 16})])
def test_every_neural_family_fits_saves_loads(family, kw, tmp_path):
    ds = make_toy_dataset(400, seed=1)
    tr, va, te = ds.split((0.8, 0.1, 0.1), seed=0)
    m = make_model(family, 16, 64, TrainConfig(epochs=2, seed=3), **kw).fit(tr, va)
    m.save(tmp_path / family)
    again = load_model(tmp_path / family)
    np.testing.assert_array_equal(m.decision_scores(te.rsrp_b), again.decision_scores(te.rsrp_b))
    assert m.predict(te.rsrp_b).shape == (len(te),)
    np.testing.assert_allclose(m.predict_proba(te.rsrp_b).sum(1), 1.0, atol=1e-5)


@pytest.mark.parametrize("family", ["svm_linear", "svm_rbf", "tree", "gbt", "sgd"])
def test_every_classical_family_through_the_contract(family, tmp_path, capsys):
    ds = make_toy_dataset(600, seed=2)
    data = save_dataset(ds, tmp_path / "d.npz")
    assert main(["train", "--data", str(data), "--model", family, "--out", str(tmp_path / family)]) == 0
    m = load_model(tmp_path / family)
    assert m.predict(ds.rsrp_b).shape == (600,)
    assert np.mean(m.predict(ds.rsrp_b) == ds.best_a) > 0.3  # chance is 1/64
    assert main(["evaluate", str(tmp_path / family), "--data", str(data), "--json"]) == 0
