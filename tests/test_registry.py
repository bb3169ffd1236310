"""The family registry: one place a family is declared; profiles, estimator, export and CLI read it."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from edgebm.models import registry
from edgebm.models.registry import FamilySpec, UnknownFamilyError, families, family_names, get_family, load_builder


def test_registry_and_profiles_import_no_ml_library():
    code = ("import sys, edgebm.models.registry, edgebm.profiles; "
            "bad = [m for m in ('torch', 'sklearn', 'onnx', 'onnxruntime') if m in sys.modules]; print(bad); sys.exit(bool(bad))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_every_view_reads_the_registry():
    from edgebm import profiles
    from edgebm.models import classical, estimator
    from edgebm.pipeline import check_families
    from edgebm.profiles import load_profile

    assert profiles.FAMILIES == family_names()
    assert estimator.ALL_FAMILIES == family_names()
    assert set(estimator.NEURAL_FAMILIES) == {s.name for s in families(kind="torch")}
    assert classical.FAMILIES == family_names(kind="sklearn")
    assert classical.SCORE_KINDS == {s.name: s.score_kind for s in families(kind="sklearn")}
    vehicle = load_profile("vehicle")
    assert "gru" in vehicle.models.families and "gru" not in check_families(vehicle, None)  # exportable=False in the registry


@pytest.mark.parametrize("spec", families(), ids=lambda s: s.name)
def test_every_builder_imports(spec):
    obj = load_builder(spec)
    if spec.kind == "torch":
        from torch import nn

        assert issubclass(obj, nn.Module)
    else:
        from edgebm.models.classical import ClassicalFamily

        assert issubclass(obj, ClassicalFamily)


def test_unknown_family_and_bad_specs():
    with pytest.raises(UnknownFamilyError, match="unknown model family 'resnet9000' .*mlp"):
        get_family("resnet9000")
    with pytest.raises(ValueError, match="kind"):
        FamilySpec("x", "jax", "m:X", "", "student")
    with pytest.raises(ValueError, match="role"):
        FamilySpec("x", "torch", "m:X", "", "boss")
    with pytest.raises(ValueError, match="builder"):
        FamilySpec("x", "torch", "no_colon", "", "student")
    with pytest.raises(ValueError, match="already registered"):
        registry.register_family(get_family("mlp"))
    with pytest.raises(TypeError):
        get_family("mlp").default_params["hidden"] = (1,)  # read-only mapping


def test_a_new_family_is_one_registration(toy_dataset, monkeypatch):
    """Register a family from outside the package: make_model builds, trains and exports it, profiles accept it."""
    from edgebm.models.estimator import make_model
    from edgebm.profiles import parse_profile
    from edgebm.train import TrainConfig

    spec = FamilySpec("tiny_linear", "torch", "tests.test_registry:TinyLinear", "one linear layer", "student",
                      default_params={}, export_epochs=2)
    monkeypatch.setitem(registry._REGISTRY, spec.name, spec)
    tr, va = toy_dataset.split((0.8, 0.2), seed=0)
    m = make_model("tiny_linear", 16, 64, TrainConfig(epochs=2, seed=0)).fit(tr, va)
    assert m.predict(va.rsrp_b).shape == (len(va),)
    assert m.spec is spec

    import tomllib
    from pathlib import Path

    from edgebm.profiles import load_profile

    d = tomllib.loads(Path(load_profile("smartphone").source).read_text())
    d["models"]["families"] = ["tiny_linear"]
    assert parse_profile(d, "x.toml").models.families == ("tiny_linear",)


def test_classical_dispatch_comes_from_the_registry(toy_dataset):
    from edgebm.models.classical import ClassicalBeamModel, SgdLogistic

    m = ClassicalBeamModel("sgd", 16, 64, seed=0)
    assert m._family is SgdLogistic and m.params["epochs"] == get_family("sgd").default_params["epochs"]
    m.fit(toy_dataset.rsrp_b, toy_dataset.best_a)
    assert m.n_params() == 16 * 64 + 64
    assert np.mean(m.predict(toy_dataset.rsrp_b) == toy_dataset.best_a) > 0.2


try:  # the builder of the test family above (imported by name through the registry, like every builder)
    import torch
    from torch import nn

    from edgebm.models.preprocess import RelativeDb

    class TinyLinear(nn.Module):
        def __init__(self, n_in: int, n_out: int) -> None:
            super().__init__()
            self.pre, self.head = RelativeDb(), nn.Linear(n_in, n_out)

        def forward_features(self, x: torch.Tensor) -> torch.Tensor:
            return self.pre(x)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.forward_features(x))
except ImportError:  # pragma: no cover
    pass
