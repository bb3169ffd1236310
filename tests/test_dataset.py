import numpy as np
import pytest

from edgebm.data import BeamDataset, DatasetError, load_dataset, save_dataset
from tests.conftest import make_toy_dataset


def test_roundtrip(tmp_path, toy_dataset):
    p = save_dataset(toy_dataset, tmp_path / "d.npz")
    ds = load_dataset(p)
    assert len(ds) == len(toy_dataset)
    for k, v in toy_dataset.arrays.items():
        np.testing.assert_array_equal(ds.arrays[k], v)
    assert ds.meta["generator"] == "tests.toy"


def _save_raw(path, ds, **changes):
    payload = {**ds.arrays, **ds.codebooks}
    import json

    payload["meta_json"] = np.array(json.dumps({**ds.meta, "schema_version": 1}))
    for k, v in changes.items():
        if v is None:
            payload.pop(k)
        else:
            payload[k] = v
    np.savez(path, **payload)
    return path


@pytest.mark.parametrize(
    "field,value,msg",
    [
        ("rsrp_b", None, "field 'rsrp_b': missing"),
        ("los", None, "field 'los': missing"),
        ("pos", np.zeros((600, 2), np.float32), "field 'pos': axis 1 has size 2, expected 3"),
        ("snr_db", np.zeros(599, np.float32), "field 'snr_db': has 599 rows"),
        ("best_a", np.zeros(600, np.float32), "field 'best_a': expected integer dtype"),
        ("cb_children", None, "field 'cb_children': missing"),
        ("bogus", np.zeros(600), "field 'bogus': unknown field"),
    ],
)
def test_validation_names_field(tmp_path, toy_dataset, field, value, msg):
    p = _save_raw(tmp_path / "bad.npz", toy_dataset, **{field: value})
    with pytest.raises(DatasetError, match=msg):
        load_dataset(p)


def test_nan_rejected(tmp_path, toy_dataset):
    rsrp = toy_dataset.rsrp_b.copy()
    rsrp[3, 2] = np.nan
    p = _save_raw(tmp_path / "nan.npz", toy_dataset, rsrp_b=rsrp)
    with pytest.raises(DatasetError, match=r"field 'rsrp_b': 1 NaN"):
        load_dataset(p)


def test_best_a_must_match_argmax(tmp_path, toy_dataset):
    best = toy_dataset.best_a.copy()
    best[0] = (best[0] + 1) % 64
    p = _save_raw(tmp_path / "b.npz", toy_dataset, best_a=best)
    with pytest.raises(DatasetError, match="field 'best_a': 1 row"):
        load_dataset(p)


def test_not_a_dataset(tmp_path):
    p = tmp_path / "junk.npz"
    p.write_bytes(b"not a zip")
    with pytest.raises(DatasetError, match="not a readable .npz"):
        load_dataset(p)
    with pytest.raises(DatasetError, match="no such dataset file"):
        load_dataset(tmp_path / "missing.npz")


def test_save_is_atomic(tmp_path, toy_dataset, monkeypatch):
    p = save_dataset(toy_dataset, tmp_path / "d.npz")
    before = p.read_bytes()

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(np.lib.format, "write_array", boom)
    with pytest.raises(KeyboardInterrupt):
        save_dataset(toy_dataset, p)
    assert p.read_bytes() == before
    assert [x.name for x in tmp_path.iterdir()] == ["d.npz"]


def test_split_disjoint_and_deterministic(toy_dataset):
    a = toy_dataset.split((0.8, 0.1, 0.1), seed=1)
    b = toy_dataset.split((0.8, 0.1, 0.1), seed=1)
    assert sum(len(x) for x in a) == len(toy_dataset)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.rsrp_b, y.rsrp_b)
    keys = [set(map(bytes, x.rsrp_b.view(np.uint8).reshape(len(x), -1))) for x in a]
    assert not (keys[0] & keys[1]) and not (keys[0] & keys[2])


def test_split_by_trajectory():
    ds = make_toy_dataset(200)
    arrays = dict(ds.arrays, traj_id=np.repeat(np.arange(20), 10).astype(np.int32), t=np.tile(np.arange(10), 20).astype(np.float32))
    ds = BeamDataset(arrays=arrays, codebooks=ds.codebooks, meta=ds.meta)
    parts = ds.split((0.5, 0.25, 0.25), seed=0)
    ids = [set(p.traj_id.tolist()) for p in parts]
    assert not (ids[0] & ids[1]) and not (ids[1] & ids[2]) and not (ids[0] & ids[2])
