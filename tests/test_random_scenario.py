"""Domain-randomised scenario (edgebm.sim.randomize, issue 13 item 1): disjoint from the named test cities,
deterministic, per-sample SNR, fixed codebooks per dataset, per-city reproduction, CLI."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from edgebm.cli import main
from edgebm.data import load_dataset
from edgebm.data.simulated import generate_dataset
from edgebm.errors import ConfigError
from edgebm.sim import CITY_NAMES, RandomScenario, ScenarioConfig, make_city, simulate, simulate_random
from edgebm.sim.config import TESTED_CARRIERS_HZ, TESTED_UE_ARRAYS
from edgebm.sim.geometry import (_NAMED_GRIDS, _SPECS, RANDOM_CITY_DOMAIN, _random_spec, parse_random_city,
                                 random_city_name)
from edgebm.sim.channel import serving_sector
from edgebm.sim.paths import find_paths
from edgebm.sim.scenario import drop_ues, measure_paths


@pytest.fixture(scope="module")
def rand_ds():
    return generate_dataset(RandomScenario(cities=4, snr_db=(0.0, 30.0)), 400, seed=3)


# ---------------------------------------------------------------- the named cities are never produced
def test_named_cities_never_produced_by_construction():
    # seed space: a random city is SeedSequence([RANDOM_CITY_DOMAIN, seed, k]) (a spawned child); the named ones use
    # the plain integer seeds 7001..7004 and hand-written specs, never a drawn spec
    assert RANDOM_CITY_DOMAIN not in {sp.seed for sp in _SPECS.values()}
    assert all(parse_random_city(n) is None for n in CITY_NAMES)
    for bad in ("rand-1", "rand--1-2", "rand-01-2", "rand-1-2-3", "city0", "rand-1-x", " rand-1-2"):
        assert parse_random_city(bad) is None
    assert parse_random_city("rand-12-0") == (12, 0) and random_city_name(12, 0) == "rand-12-0"


def test_named_layouts_never_drawn_over_many_cities():
    named = {n: make_city(n) for n in CITY_NAMES}
    for seed in (0, 1, 7001, 2**40):
        for k in range(600):
            sp, _ = _random_spec(seed, k)
            assert (sp.block, sp.street_w, sp.lots, sp.alley) not in _NAMED_GRIDS
            assert sp.block[0] - (sp.lots[0] - 1) * sp.alley == sp.lots[0] * ((sp.block[0] - (sp.lots[0] - 1) * sp.alley) // sp.lots[0])
    for k in range(12):     # full layouts: never a named city's buildings
        c = make_city(random_city_name(0, k))
        for nc in named.values():
            assert c.buildings.shape != nc.buildings.shape or not np.array_equal(c.buildings, nc.buildings)


def test_random_cities_vary_and_are_sane():
    cities = [make_city(random_city_name(5, k)) for k in range(10)]
    assert len({(c.street_width_m, c.block_size_m, c.n_buildings) for c in cities}) >= 8
    for c in cities:
        b = c.buildings
        assert (b[:, 2] > b[:, 0]).all() and (b[:, 3] > b[:, 1]).all() and (b[:, 4] > 0).all()
        assert c.building_at(0.0, 0.0) < 0                          # the BS stands outdoors
        assert np.array_equal(b[:, :4], np.round(b[:, :4]))         # integer-metre footprints (exact raster)
        assert 150.0 <= c.coverage_radius_m <= 260.0
    assert make_city(random_city_name(5, 3)) is cities[3]           # cached
    assert make_city(random_city_name(6, 3)).buildings.shape != cities[3].buildings.shape or \
        not np.array_equal(make_city(random_city_name(6, 3)).buildings, cities[3].buildings)


# ---------------------------------------------------------------- dataset
def test_random_dataset_fields_and_meta(rand_ds):
    ds = rand_ds
    assert len(ds) == 400 and ds.city_id.dtype == np.int32 and set(np.unique(ds.city_id)) <= {0, 1, 2, 3}
    assert len(np.unique(ds.city_id)) == 4
    assert ds.snr_db.min() >= 0 and ds.snr_db.max() <= 30 and ds.snr_db.std() > 5
    sc = ds.meta["scenario"]
    assert sc["kind"] == "random" and sc["cities"] == 4 and sc["seed"] == 3 and sc["snr_db"] == [0.0, 30.0]
    assert ds.meta["codebook_frame"] == "panel" and ds.meta["seed"] == 3
    assert RandomScenario.from_dict(sc) == RandomScenario(cities=4, snr_db=(0.0, 30.0))
    assert (ds.best_a == ds.rsrp_a.argmax(1)).all() and np.isfinite(ds.rsrp_b).all()


def test_random_dataset_deterministic_and_seeded(rand_ds, tmp_path):
    again = generate_dataset(RandomScenario(cities=4, snr_db=(0.0, 30.0)), 400, seed=3)
    for k, v in rand_ds.arrays.items():
        assert v.tobytes() == again.arrays[k].tobytes(), k
    other = generate_dataset(RandomScenario(cities=4, snr_db=(0.0, 30.0)), 400, seed=4)
    assert other.rsrp_b.tobytes() != rand_ds.rsrp_b.tobytes()
    stream = generate_dataset(RandomScenario(cities=4, snr_db=(0.0, 30.0)), 400, seed=3, stream=1)
    assert stream.pos.tobytes() != rand_ds.pos.tobytes()
    p = tmp_path / "r.npz"
    from edgebm.data import save_dataset

    save_dataset(rand_ds, p)
    back = load_dataset(p)
    np.testing.assert_array_equal(back.city_id, rand_ds.city_id)
    np.testing.assert_array_equal(back.codebooks["cb_a_psi"], rand_ds.codebooks["cb_a_psi"])


def test_codebooks_fixed_per_dataset_and_panel_frame(rand_ds):
    cb = rand_ds.codebooks
    ref = generate_dataset(RandomScenario(cities=2), 50, seed=99).codebooks
    for k in cb:      # the same beam index is the same panel-frame beam in every random dataset and city
        np.testing.assert_array_equal(cb[k], ref[k])
    psi = cb["cb_a_psi"].astype(np.float64)
    # panel frame: elevation from the panel's up axis: cos(el) = psi_v; sin(az) * sin(el) = psi_h
    vis = (psi ** 2).sum(1) <= 1.0            # invisible beams point at the edge of the visible region
    assert 0 < vis.sum() < len(psi)
    el, az = np.radians(cb["cb_a_el"]), np.radians(cb["cb_a_az"])
    np.testing.assert_allclose(np.cos(el)[vis], psi[vis, 0], atol=1e-5)
    np.testing.assert_allclose((np.sin(az) * np.sin(el))[vis], psi[vis, 1], atol=1e-5)
    named = generate_dataset(ScenarioConfig(), 50, seed=0).codebooks
    np.testing.assert_array_equal(named["cb_a_weights"], cb["cb_a_weights"])
    np.testing.assert_array_equal(named["cb_a_psi"], cb["cb_a_psi"])


def test_city_config_reproduces_one_city():
    rs = RandomScenario(cities=6, random_ue_array=True, random_carrier=True)
    cfgs = [rs.city_config(11, k) for k in range(6)]
    assert cfgs[2] == rs.city_config(11, 2)
    for k, c in enumerate(cfgs):
        assert c.city == f"rand-11-{k}" and c.region == "all" and 15 <= c.bs_height_m <= 25
        assert 4 <= c.downtilt_deg <= 12 and 0 <= c.n_scatterers <= 6
        assert c.ue_array in TESTED_UE_ARRAYS and c.carrier_hz in TESTED_CARRIERS_HZ
    assert len({c.ue_array for c in cfgs}) > 1 or len({c.carrier_hz for c in cfgs}) > 1
    fixed = RandomScenario(cities=6, base=ScenarioConfig(ue_array=(2, 2), carrier_hz=15e9))
    c = fixed.city_config(11, 2)
    assert c.ue_array == (2, 2) and c.carrier_hz == 15e9
    assert (c.bs_height_m, c.downtilt_deg, c.city) == (cfgs[2].bs_height_m, cfgs[2].downtilt_deg, cfgs[2].city)
    # fresh drops in that same city (per-city evaluation): an ordinary ScenarioConfig simulation
    res = simulate(dataclasses.replace(c, snr_db=20.0), 200, seed=0)
    assert len(res) == 200 and res.config.city == "rand-11-2"
    with pytest.raises(ConfigError, match="k: 6 is out of range"):
        rs.city_config(11, 6)


def test_samples_of_a_city_come_from_that_city():
    rs = RandomScenario(cities=3)
    res = simulate_random(rs, 300, seed=2)
    for k in range(3):
        city = make_city(random_city_name(2, k))
        xy = res.pos[res.city_id == k][:, :2].astype(np.float64)
        assert city.is_outdoor(xy).all()
        r = np.hypot(xy[:, 0], xy[:, 1])
        assert r.max() <= city.coverage_radius_m + 1e-3
    sub = simulate_random(rs, 100, seed=2, cities=[1])
    assert (sub.city_id == 1).all()


def test_per_sample_snr_sets_noise():
    cfg = ScenarioConfig(snr_db=10.0)
    city = make_city(cfg.city)
    rng = np.random.default_rng(0)
    pos = drop_ues(city, cfg, 50, rng)
    paths, _ = find_paths(city, cfg, pos, rng)
    sector = serving_sector(paths, cfg)
    _, _, n_scalar = measure_paths(cfg, paths, sector, None)
    snr = np.linspace(0, 30, 50).astype(np.float32)
    _, _, n_vec = measure_paths(cfg, paths, sector, None, snr_db=snr)
    np.testing.assert_allclose(n_vec - n_scalar, 10.0 - snr, atol=1e-3)


@pytest.mark.parametrize("kw,field", [
    ({"cities": 0}, "RandomScenario.cities"), ({"cities": True}, "RandomScenario.cities"),
    ({"snr_db": (30.0, 0.0)}, "RandomScenario.snr_db"), ({"snr_db": (0.0, float("nan"))}, "RandomScenario.snr_db"),
    ({"bs_height_m": (10.0, 20.0)}, "RandomScenario.bs_height_m"), ({"n_scatterers": (0.5, 2)}, "RandomScenario.n_scatterers"),
    ({"random_carrier": "yes"}, "RandomScenario.random_carrier"), ({"base": {"city": "city0"}}, "RandomScenario.base"),
    ({"base": ScenarioConfig(region="q1")}, "RandomScenario.base.region"),
])
def test_random_scenario_validation(kw, field):
    with pytest.raises(ConfigError) as ei:
        RandomScenario(**kw)
    assert ei.value.field == field


def test_cli_generate_random(tmp_path, capsys):
    out = tmp_path / "r.npz"
    rc = main(["data", "generate", "--scenario", "random", "--cities", "3", "--samples", "120", "--snr-db", "5:25",
               "--ue-array", "random", "--carrier", "random", "--seed", "4", "--out", str(out)])
    assert rc == 0
    ds = load_dataset(out)
    assert ds.meta["scenario"]["ue_array"] == "random" and ds.meta["scenario"]["carrier_hz"] == "random"
    assert 5 <= ds.snr_db.min() and ds.snr_db.max() <= 25 and set(np.unique(ds.city_id)) <= {0, 1, 2}


@pytest.mark.parametrize("args,msg", [
    (["--scenario", "random", "--cities", "0"], "--cities: must be an integer >= 1"),
    (["--trajectories", "0:5:0.1"], "--trajectories expects"),
    (["--trajectories", "2:5:nan"], "--trajectories expects"),
    (["--cities", "3"], "--cities: a city count needs --scenario random"),
    (["--snr-db", "0:30"], "--snr-db: a range / random value needs --scenario random"),
    (["--scenario", "random", "--snr-db", "30:0"], "--snr-db: "),
    (["--scenario", "random", "--snr-db", "a:b"], "--snr-db: expected a number"),
    (["--ue-array", "random"], "--ue-array: a range / random value needs"),
    (["--scenario", "random", "--ue-array", "3"], "--ue-array: expected ROWSxCOLS"),
    (["--scenario", "random", "--carrier", "fast"], "--carrier: expected a frequency"),
    (["--scenario", "random", "--trajectories", "2:3:0.1"], "--trajectories: not available"),
    (["--scenario", "random", "--region", "q1"], "--region: quadrants are not available"),
    (["--scenario", "atlantis"], "--scenario: 'atlantis' is invalid"),
    (["--set-b", "999"], "--set-b: 999 is invalid"),
])
def test_cli_generate_bad_args(tmp_path, capsys, args, msg):
    out = tmp_path / "x.npz"
    rc = main(["data", "generate", "--samples", "10", "--out", str(out)] + args)
    err = capsys.readouterr().err
    assert rc == 2 and msg in err and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()
