"""Shared fixtures: a tiny hand-made BeamDataset (no simulator) so data/model/runtime tests stand alone."""

from __future__ import annotations

import numpy as np
import pytest

from edgebm.data import BeamDataset


def make_toy_dataset(n: int = 600, seed: int = 0) -> BeamDataset:
    """8x8 narrow-beam grid; a UE sits at a random grid point, narrow-beam power falls off with grid
    distance; Set B = 4x4 wide beams = mean power of the 2x2 narrow beams under them, plus noise."""
    rng = np.random.default_rng(seed)
    rows, cols = np.meshgrid(np.arange(8), np.arange(8), indexing="ij")
    grid = np.stack([rows.ravel(), cols.ravel()], 1).astype(np.float32)  # (64, 2)
    centre = rng.uniform(0, 7, size=(n, 2)).astype(np.float32)
    d2 = ((grid[None] - centre[:, None]) ** 2).sum(-1)
    rx = rng.uniform(-100, -60, size=(n, 1))
    rsrp_a = (rx - 1.5 * d2).astype(np.float32)
    lin = 10 ** (rsrp_a / 10)
    wide = lin.reshape(n, 4, 2, 4, 2).mean(axis=(2, 4)).reshape(n, 16)
    rsrp_b = (10 * np.log10(wide) + rng.normal(0, 0.5, size=(n, 16))).astype(np.float32)
    children = np.array([[(2 * r + i) * 8 + 2 * c + j for i in (0, 1) for j in (0, 1)] for r in range(4) for c in range(4)])
    arrays = {
        "rsrp_b": rsrp_b,
        "rsrp_a": rsrp_a,
        "best_a": rsrp_a.argmax(1).astype(np.int64),
        "pos": np.concatenate([centre * 10, np.full((n, 1), 1.5, np.float32)], 1).astype(np.float32),
        "los": rng.random(n) < 0.7,
        "snr_db": np.full(n, 20.0, np.float32),
        "noise_dbm": np.full(n, -120.0, np.float32),
    }
    codebooks = {
        "cb_a_weights": np.ones((64, 64), np.complex64) / 8,
        "cb_a_az": grid[:, 1] * 15 - 52.5,
        "cb_a_el": grid[:, 0] * 5 + 80,
        "cb_b_weights": np.ones((16, 64), np.complex64) / 8,
        "cb_b_az": np.repeat(np.arange(4), 4).astype(np.float32),
        "cb_b_el": np.tile(np.arange(4), 4).astype(np.float32),
        "cb_children": children.astype(np.int64),
    }
    meta = {"scenario": {"city": "toy"}, "carrier_hz": 28e9, "bs_array": [8, 8], "ue_array": [1, 1], "set_a": 64,
            "set_b": 16, "seed": seed, "generator": "tests.toy"}
    return BeamDataset(arrays=arrays, codebooks=codebooks, meta=meta)


def lean_profile(name: str, **recipe):
    """A shipped profile with a recipe sized for tests: the teacher trained here, one pruning point, short
    fine-tuning (the full recipe is measured by ``python -m bench.export_tables``, not in unit tests)."""
    import dataclasses

    from edgebm.profiles import load_profile

    prof = load_profile(name)
    kw = {"teacher": "train", "prune_points": 1, "finetune_epochs": 2, **recipe}
    return dataclasses.replace(prof, recipe=dataclasses.replace(prof.recipe, **kw))


@pytest.fixture(scope="session")
def toy_dataset() -> BeamDataset:
    return make_toy_dataset()


@pytest.fixture(scope="session")
def toy_bundle(tmp_path_factory, toy_dataset):
    """A real bundle exported for the smartphone profile from the toy dataset (few epochs)."""
    from edgebm.pipeline import export_for_profile
    from edgebm.train import TrainConfig

    out = tmp_path_factory.mktemp("bundles") / "smartphone"
    # no pruning here: tests across the suite rely on this bundle being the 256-wide MLP (the recipe's pruning is
    # exercised in tests/test_recipe.py)
    res = export_for_profile(lean_profile("smartphone", prune=False), toy_dataset, out, train_cfg=TrainConfig(epochs=8, seed=0),
                             families=["mlp"], latency_runs=50)
    return res
