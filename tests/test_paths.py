"""Path tables (edgebm.data.paths, edgebm.sim.pathtable): simulator round trip, DeepMIMO-style dicts,
validation errors that name the field, empty users."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from edgebm.data import DatasetError, load_dataset, save_dataset
from edgebm.data.paths import (PATH_FIELDS, dataset_from_path_table, load_path_table, pathset_from_table,
                               save_path_table, validate_path_table)
from edgebm.data.simulated import dataset_from_sim
from edgebm.sim import ScenarioConfig, simulate
from edgebm.sim.pathtable import sim_to_path_table

SEED = 7
N = 500


def _wrap(a):
    return 180.0 - np.mod(180.0 - np.asarray(a, np.float64), 360.0)


def _close(got: np.ndarray, ref: np.ndarray) -> None:
    """Equal to float32 rounding: within 2e-3 dB for beams within 50 dB of the row's best (float32
    cancellation moves the deep nulls of the beam pattern a little more), and within 1e-5 of the
    best beam's power in linear scale everywhere."""
    top = ref.max(1, keepdims=True)
    strong = ref > top - 50.0
    np.testing.assert_allclose(got[strong], ref[strong], atol=2e-3)
    assert np.abs(10.0 ** ((got - top) / 10.0) - 10.0 ** ((ref - top) / 10.0)).max() < 1e-5


def _kw(cfg: ScenarioConfig) -> dict:
    return dict(bs_array=cfg.bs_array, ue_array=cfg.ue_array, set_b=cfg.set_b, set_a=cfg.set_a, snr_db=cfg.snr_db,
                n_subcarriers=cfg.n_subcarriers, bandwidth_hz=cfg.bandwidth_hz, codebook_a=cfg.codebook_a,
                codebook_seed=cfg.codebook_seed)


@pytest.fixture(scope="module")
def sim1():
    return simulate(ScenarioConfig(city="city1"), N, seed=SEED)


@pytest.fixture()
def table(sim1):
    return sim_to_path_table(sim1)


# ---------------------------------------------------------------- simulator round trip
@pytest.mark.parametrize("cfg", [
    ScenarioConfig(city="city1"),
    ScenarioConfig(city="city2", region="q1", ue_array=(2, 2), set_b=8, set_a=256, snr_db=5.0, n_subcarriers=12),
], ids=["city1-1x1", "city2-q1-2x2-256"])
def test_sim_path_table_dataset_equals_sim(cfg, tmp_path, sim1):
    res = sim1 if cfg == sim1.config else simulate(cfg, N, seed=SEED)
    f = save_path_table(tmp_path / "paths.npz", sim_to_path_table(res))
    ds, info = dataset_from_path_table(load_path_table(f), seed=SEED, **_kw(cfg))
    ref = dataset_from_sim(res)
    assert info["n_dropped"] == 0 and info["aod_rotation_deg"] == 0.0
    # same code, same noise stream, same order: bit-identical, noisy Set B included
    for k in ("rsrp_a", "rsrp_b", "noise_dbm", "best_a", "pos", "los", "snr_db", "sector"):
        assert ds.arrays[k].dtype == ref.arrays[k].dtype, k
        assert np.array_equal(ds.arrays[k], ref.arrays[k]), (k, float(np.abs(ds.arrays[k].astype(float) - ref.arrays[k]).max()))
    for k in ref.codebooks:
        assert np.array_equal(ds.codebooks[k], ref.codebooks[k]), k
    m = ds.meta
    assert m["source"] == "path_table" and m["seed"] == SEED and m["carrier_hz"] == cfg.carrier_hz
    assert m["bs_array"] == list(cfg.bs_array) and m["ue_array"] == list(cfg.ue_array) and m["generator"]
    assert m["codebook"]["set_a"] == "dft" and m["codebook"]["sectors"] == 1
    assert "city" not in m["scenario"]      # the emulator must not mistake it for a simulator scenario
    out = save_dataset(ds, tmp_path / "d.npz")
    assert np.array_equal(load_dataset(out).rsrp_b, ds.rsrp_b)
    # another seed: same ground truth, other noise
    ds2, _ = dataset_from_path_table(f, seed=SEED + 1, **_kw(cfg))
    assert np.array_equal(ds2.rsrp_a, ref.rsrp_a) and not np.array_equal(ds2.rsrp_b, ref.rsrp_b)


@pytest.mark.parametrize("delta", [90.0, 17.0, -123.4])
def test_boresight_rotation_equivalence(sim1, table, delta):
    """Rotating every AoD and the panel boresight by the same angle changes nothing: 90 deg lands on
    another simulator panel (city3), 17 and -123.4 deg use the importer's AoD rotation."""
    t = dict(table)
    t["aod_az"] = _wrap(table["aod_az"] + delta).astype(np.float32)
    t.pop("bs_boresight_az")
    b = float(table["bs_boresight_az"]) + delta
    ds, info = dataset_from_path_table(t, seed=SEED, boresight_az_deg=b, **_kw(sim1.config))
    assert (info["aod_rotation_deg"] == 0.0) == (delta == 90.0)
    _close(ds.rsrp_a, sim1.rsrp_a)
    _close(ds.rsrp_b, sim1.rsrp_b)
    assert (ds.best_a == sim1.best_a).mean() > 0.99
    np.testing.assert_allclose(_wrap(ds.codebooks["cb_a_az"] - delta - sim1.codebooks["set_a"].az_deg), 0, atol=1e-3)


def test_default_boresight_points_at_users(table):
    t = dict(table)
    t.pop("bs_boresight_az")
    t.pop("bs_downtilt")
    _, info = dataset_from_path_table(t, seed=0)
    assert abs(_wrap(info["boresight_az_deg"] - float(table["bs_boresight_az"]))) < 10.0
    assert info["downtilt_deg"] == ScenarioConfig().downtilt_deg


# ---------------------------------------------------------------- DeepMIMO-style dicts
def _deepmimo(table) -> dict:
    inter = table["inter"].astype(np.float32)
    inter[table["inter"] < 0] = np.nan                      # DeepMIMO pads inter with NaN
    d = {k: np.asarray(table[k], np.float32) for k in ("power", "phase", "delay", "aoa_az", "aoa_el", "aod_az", "aod_el")}
    n, p = d["power"].shape
    d.update(rx_pos=np.asarray(table["rx_pos"], np.float32), tx_pos=np.asarray(table["tx_pos"], np.float32)[None, :],
             inter=inter, inter_pos=np.full((n, p, 2, 3), np.nan, np.float32),
             los=np.where(inter[:, 0] == 0, 1, 0).astype(np.int64), carrier_hz=28e9)
    return d


def test_deepmimo_dict_saved_unchanged(tmp_path, table, sim1):
    dm = _deepmimo(table)
    loaded = load_path_table(save_path_table(tmp_path / "dm.npz", dm))
    for k, v in dm.items():
        v = np.asarray(v)
        assert loaded[k].dtype == v.dtype and loaded[k].shape == v.shape, k
        assert np.array_equal(loaded[k], v, equal_nan=v.dtype.kind == "f"), k
    assert set(loaded) == set(dm) | {"num_paths", "writer"}   # writer: the mark that lets edgebm replace its own file
    assert np.array_equal(loaded["num_paths"], table["num_paths"])
    ds, _ = dataset_from_path_table(loaded, seed=SEED, boresight_az_deg=float(table["bs_boresight_az"]))
    _close(ds.rsrp_a, sim1.rsrp_a)   # float32 dBW: rounding only
    assert np.array_equal(ds.los, sim1.los)


# ---------------------------------------------------------------- validation
def _mutate(t: dict, how: str) -> dict:
    t = dict(t)
    n, p = t["power"].shape
    counted = np.arange(p)[None, :] < t["num_paths"][:, None]
    if how == "shape":
        t["phase"] = t["phase"][:, :-1]
    elif how == "rx_shape":
        t["rx_pos"] = t["rx_pos"][:, :2]
    elif how == "tx_shape":
        t["tx_pos"] = np.zeros((2, 3))
    elif how == "nan":
        t["delay"] = t["delay"].copy()
        t["delay"][3, 0] = np.nan
    elif how == "unknown":
        t["bogus"] = np.zeros(3)
    elif how == "missing":
        t.pop("aoa_el")
    elif how == "el_range":
        t["aod_el"] = np.where(counted, t["aod_el"] + 200.0, np.nan).astype(np.float32)
    elif how == "el_radians":
        t["aoa_el"] = np.radians(t["aoa_el"])
    elif how == "phase_radians":
        t["phase"] = np.radians(t["phase"])
    elif how == "linear_power":
        t["power"] = 10.0 ** (t["power"] / 10.0)
    elif how == "dbm_power_positive":
        t["power"] = t["power"] + 130.0
    elif how == "power_unit":
        t["power_unit"] = np.array("W")
    elif how == "delay_ns":
        t["delay"] = t["delay"] * 1e9
    elif how == "carrier_ghz":
        t["carrier_hz"] = np.array(28.0)
    elif how == "inter_code":
        t["inter"] = t["inter"].copy()
        t["inter"][0, 0] = 5
    elif how == "num_paths_small":
        t["num_paths"] = np.maximum(t["num_paths"] - 1, 0)
    elif how == "num_paths_range":
        t["num_paths"] = t["num_paths"] + p
    return t


@pytest.mark.parametrize("how,field,words", [
    ("shape", "phase", "shape"), ("rx_shape", "rx_pos", "shape"), ("tx_shape", "tx_pos", "shape"),
    ("nan", "delay", "NaN"), ("unknown", "bogus", "unknown field"), ("missing", "aoa_el", "missing"),
    ("el_range", "aod_el", r"\[0, 180\]"), ("el_radians", "aoa_el", "radians"), ("phase_radians", "phase", "radians"),
    ("linear_power", "power", "linear W or dBm"), ("dbm_power_positive", "power", "dBW"),
    ("power_unit", "power_unit", "unknown unit"), ("delay_ns", "delay", "ns or us"), ("carrier_ghz", "carrier_hz", "GHz"),
    ("inter_code", "inter", "invalid code"), ("num_paths_small", "num_paths", "beyond num_paths"),
    ("num_paths_range", "num_paths", "path slots"),
])
def test_validation_names_field(table, tmp_path, how, field, words):
    bad = _mutate(table, how)
    with pytest.raises(DatasetError, match=rf"field '{field}'.*{words}"):
        validate_path_table(bad, source="t")
    with pytest.raises(DatasetError, match=rf"field '{field}'"):
        save_path_table(tmp_path / "bad.npz", bad)
    assert not (tmp_path / "bad.npz").exists()
    with pytest.raises(DatasetError, match=rf"field '{field}'"):
        dataset_from_path_table(bad)


def test_load_errors(tmp_path, table):
    with pytest.raises(DatasetError, match="no such path table"):
        load_path_table(tmp_path / "nope.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DatasetError, match="not a readable"):
        load_path_table(tmp_path / "junk.npz")
    bad = _mutate(table, "unknown")
    np.savez(tmp_path / "b.npz", **bad)
    with pytest.raises(DatasetError, match=r"b\.npz: field 'bogus'"):
        load_path_table(tmp_path / "b.npz")


def test_builder_parameter_errors_name_field(table):
    with pytest.raises(DatasetError, match="field 'set_b'"):
        dataset_from_path_table(table, set_b=0)
    with pytest.raises(DatasetError, match="field 'downtilt_deg'"):
        dataset_from_path_table(table, downtilt_deg=70.0)


def test_schema_documents_every_field():
    for name, (shape, kinds, unit, required, meaning) in PATH_FIELDS.items():
        assert shape and kinds and meaning, name
    assert {k for k, v in PATH_FIELDS.items() if v[3]} == {"rx_pos", "tx_pos", "power", "phase", "delay", "aoa_az",
                                                           "aoa_el", "aod_az", "aod_el", "inter", "carrier_hz"}


# ---------------------------------------------------------------- empty users
def test_empty_users_dropped_and_counted(table, sim1, caplog):
    t = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in table.items()}
    empty = np.array([0, 5, 17, 400])
    for k in ("power", "phase", "delay", "aoa_az", "aoa_el", "aod_az", "aod_el"):
        t[k][empty] = np.nan
    t["inter"][empty] = -1
    t["num_paths"][empty] = 0
    with caplog.at_level(logging.INFO, logger="edgebm.data.paths"):
        ds, info = dataset_from_path_table(t, seed=SEED)
    assert "dropped 4 of 500" in caplog.text
    assert info["n_dropped"] == 4 and info["n_kept"] == N - 4 and len(ds) == N - 4
    kept = np.setdiff1d(np.arange(N), empty)
    assert np.array_equal(info["kept"], kept) and ds.meta["path_table"]["n_dropped"] == 4
    np.testing.assert_allclose(ds.rsrp_a, sim1.rsrp_a[kept], atol=1e-4)   # noise-free Set A unaffected
    assert np.array_equal(ds.pos, sim1.pos[kept]) and np.array_equal(ds.los, sim1.los[kept])
    ps, pos, pinfo = pathset_from_table(t)
    assert len(ps) == N - 4 and pinfo["n_dropped"] == 4 and np.isnan(ps.power_dbm[~(ps.inter >= 0)]).all()
    t["num_paths"][:] = 0
    for k in ("power", "phase", "delay", "aoa_az", "aoa_el", "aod_az", "aod_el"):
        t[k][:] = np.nan
    with pytest.raises(DatasetError, match="field 'num_paths': no user has any path"):
        dataset_from_path_table(t)


@pytest.mark.parametrize("args,msg", [
    (["--set-a", "3"], "--set-a: 3 is invalid"),
    (["--downtilt", "99"], "--downtilt: 99.0 is invalid"),
    (["--ue-array", "0x4"], "--ue-array: "),
])
def test_cli_from_paths_bad_radio_option(tmp_path, capsys, args, msg):
    from edgebm.cli import main

    table = tmp_path / "p.npz"
    save_path_table(table, sim_to_path_table(simulate(ScenarioConfig(), 20, seed=0)))
    rc = main(["data", "from-paths", str(table), "--out", str(tmp_path / "o.npz")] + args)
    err = capsys.readouterr().err
    assert rc == 2 and msg in err and err.count("\n") == 1
    assert not (tmp_path / "o.npz").exists()
