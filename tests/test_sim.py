"""Scenario simulator (edgebm.sim): determinism, physics sanity, codebooks, RSRP, mobility, config."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from edgebm.sim import (CITY_NAMES, Codebook, PathSet, ScenarioConfig, SimResult, build_codebooks, channel_from_paths,
                        find_paths, make_city, measure_rsrp, simulate, simulate_trajectories)
from edgebm.sim.arrays import direction
from edgebm.sim.channel import noise_dbm_for_snr, ue_combiner
from edgebm.sim.geometry import segments_blocked
from edgebm.sim.mobility import street_trajectories
from edgebm.sim.visibility import scene_context

ARRAYS = ("rsrp_b", "rsrp_a", "best_a", "pos", "los", "snr_db", "noise_dbm", "sector")


@pytest.fixture(scope="module")
def default_run() -> SimResult:
    return simulate(ScenarioConfig(), n_samples=3000, seed=11)


# ---------------------------------------------------------------- config
@pytest.mark.parametrize("field,value", [
    ("city", "atlantis"), ("carrier_hz", -1.0), ("bs_array", (8,)), ("ue_array", (3, 0)), ("sectors", 2),
    ("set_b", 0), ("set_a", 8), ("codebook_a", "dct"), ("codebook_seed", -1), ("snr_db", float("nan")),
    ("n_subcarriers", 0), ("bandwidth_hz", 0.0), ("tx_power_dbm", 500.0), ("bs_height_m", 40.0),
    ("downtilt_deg", 60.0), ("n_scatterers", -2), ("region", "q7"), ("vehicle_fraction", 1.5), ("set_b", True),
])
def test_config_validation_names_field(field, value):
    with pytest.raises(ValueError, match=rf"ScenarioConfig\.{field}:"):
        ScenarioConfig(**{field: value})


def test_config_roundtrip_and_unknown_key():
    cfg = ScenarioConfig(city="city2", ue_array=(4, 4), sectors=3, set_a=256, codebook_a="random", codebook_seed=3)
    d = cfg.to_dict()
    assert d["ue_array"] == [4, 4]
    assert ScenarioConfig.from_dict(d) == cfg
    with pytest.raises(ValueError, match="bogus"):
        ScenarioConfig.from_dict({**d, "bogus": 1})
    with pytest.raises(ValueError, match=r"ScenarioConfig\.ue_array:"):
        dataclasses.replace(cfg, ue_array=(0, 4))


# ---------------------------------------------------------------- determinism, shapes
def test_determinism_same_seed_identical_bytes():
    cfg = ScenarioConfig(city="city1", sectors=3)
    a, b = simulate(cfg, 400, seed=5), simulate(cfg, 400, seed=5)
    for name in ARRAYS:
        assert getattr(a, name).tobytes() == getattr(b, name).tobytes(), name
    for f in dataclasses.fields(PathSet):
        assert getattr(a.paths, f.name).tobytes() == getattr(b.paths, f.name).tobytes(), f.name
    c = simulate(cfg, 400, seed=6)
    assert a.pos.tobytes() != c.pos.tobytes() and a.rsrp_b.tobytes() != c.rsrp_b.tobytes()


def test_cities_fixed_and_different():
    layouts = [make_city(n) for n in CITY_NAMES]
    assert make_city("city0") is layouts[0]
    keys = {(c.street_width_m, c.block_size_m, c.n_buildings) for c in layouts}
    assert len(keys) == 4
    for c in layouts:
        b = c.buildings
        assert b.shape[1] == 5 and (b[:, 2] > b[:, 0]).all() and (b[:, 3] > b[:, 1]).all()
        assert (b[:, 4] >= 8).all() and c.building_at(0.0, 0.0) < 0   # the BS stands outdoors


def test_shapes_dtypes_and_invariants(default_run):
    r, n = default_run, 3000
    assert r.rsrp_b.shape == (n, 16) and r.rsrp_a.shape == (n, 64)
    assert r.rsrp_b.dtype == r.rsrp_a.dtype == np.float32
    assert np.isfinite(r.rsrp_b).all() and np.isfinite(r.rsrp_a).all()
    assert r.best_a.dtype == np.int64 and (r.best_a == r.rsrp_a.argmax(1)).all()
    assert r.pos.shape == (n, 3) and r.pos.dtype == np.float32 and r.los.dtype == bool
    assert r.sector.dtype == np.int8 and (r.sector == 0).all()
    assert r.traj_id is None and r.t is None
    city = make_city("city0")
    assert (city.building_at(r.pos[:, 0], r.pos[:, 1]) < 0).all()
    d = np.hypot(r.pos[:, 0], r.pos[:, 1])
    assert d.min() >= 10 and d.max() <= city.coverage_radius_m
    assert 0.1 < r.los.mean() < 0.9
    assert (r.paths.num_paths >= 1).all() and r.paths.power_dbm.shape[0] == n
    assert (r.paths.inter[r.los, 0] == 0).mean() > 0.99          # LOS is the strongest path in LOS
    assert ((r.paths.inter == 3).any(1)).mean() > 0.3            # scatterers exist, and are weaker
    assert r.codebooks["set_a"].weights.shape == (64, 64)


def test_noise_matches_snr(default_run):
    r = default_run
    cfg = r.config
    H = channel_from_paths(r.paths.take(slice(0, 200)), cfg, r.sector[:200])
    p = (np.abs(H) ** 2).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(10 * np.log10(p) - r.noise_dbm[:200], cfg.snr_db, atol=1e-3)
    assert (r.snr_db == np.float32(cfg.snr_db)).all()


# ---------------------------------------------------------------- physics sanity
def test_los_stronger_than_nlos_at_equal_distance(default_run):
    r = default_run
    d = np.hypot(r.pos[:, 0], r.pos[:, 1])
    best = r.rsrp_a.max(1)
    diffs = []
    for lo in range(10, 200, 25):
        m = (d >= lo) & (d < lo + 25)
        if (m & r.los).sum() >= 15 and (m & ~r.los).sum() >= 15:
            diffs.append(best[m & r.los].mean() - best[m & ~r.los].mean())
    assert len(diffs) >= 4
    assert min(diffs) > 0 and np.mean(diffs) > 10.0


def test_los_best_beam_points_at_ue(default_run):
    r = default_run
    cb = r.codebooks["set_a"]
    v = r.pos - np.array([0.0, 0.0, r.config.bs_height_m], np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    ang = np.degrees(np.arccos(np.clip(v @ direction(cb.az_deg, cb.el_deg).T, -1, 1)))
    rank = (ang < np.take_along_axis(ang, r.best_a[:, None], 1)).sum(1)
    assert (rank[r.los] <= 1).mean() > 0.8      # the closest or second-closest beam wins in LOS


def test_reflection_legs_clear_by_brute_force(default_run):
    """Accelerated (wedge-table) blockage tests agree with testing every building."""
    r = default_run
    ctx = scene_context("city0", 20.0)
    m = make_city("city0").n_buildings
    U = r.pos[:600].astype(np.float64)
    allc = lambda k: np.broadcast_to(np.arange(m), (k, m))  # noqa: E731
    blocked = segments_blocked(np.broadcast_to(ctx.bs, U.shape), U, allc(len(U)), ctx.boxes)
    assert (blocked == ~r.los[:600]).all()
    p = r.paths.take(slice(0, 600))
    ii, jj = np.nonzero(p.inter == 1)
    a = direction(p.aod_az[ii, jj], p.aod_el[ii, jj])
    b = direction(p.aoa_az[ii, jj], p.aoa_el[ii, jj])
    # reflection point = where the departure ray from the BS meets the arrival ray from the UE
    w = U[ii] - ctx.bs
    ab = (a * b).sum(1)
    s = ((w * a).sum(1) - ab * (w * b).sum(1)) / (1 - ab ** 2)
    R = ctx.bs + s[:, None] * a
    assert len(R) > 50
    assert not segments_blocked(np.broadcast_to(ctx.bs, R.shape), R, allc(len(R)), ctx.boxes).any()
    assert not segments_blocked(R, U[ii], allc(len(R)), ctx.boxes).any()
    L = p.delay_s[ii, jj] * 299_792_458.0
    np.testing.assert_allclose(np.linalg.norm(R - ctx.bs, axis=1) + np.linalg.norm(U[ii] - R, axis=1), L, atol=0.05)


def test_single_path_selects_closest_beam():
    cfg = ScenarioConfig()
    cb = build_codebooks(cfg)["set_a"]
    vis = np.flatnonzero((cb.psi.astype(np.float64) ** 2).sum(1) < 0.8)
    rng = np.random.default_rng(0)
    n = len(vis)
    az = cb.az_deg[vis] + rng.uniform(-1, 1, n)
    el = cb.el_deg[vis] + rng.uniform(-1, 1, n)
    nan = np.full((n, 2), np.nan, np.float32)
    col = lambda v: np.concatenate([np.asarray(v, np.float32)[:, None], nan[:, :1]], 1)  # noqa: E731
    ps = PathSet.from_arrays(power_dbm=col(np.full(n, -70.0)), phase_deg=col(rng.uniform(-180, 180, n)),
                             delay_s=col(np.full(n, 5e-7)), aod_az=col(az), aod_el=col(el),
                             aoa_az=col(np.zeros(n)), aoa_el=col(np.full(n, 80.0)))
    assert (ps.num_paths == 1).all()
    H = channel_from_paths(ps, cfg, np.zeros(n, np.int8))
    rsrp = measure_rsrp(H, cb, None, None)
    assert (rsrp.argmax(1) == vis).all()


def test_measure_rsrp_noise_matches_elementwise_noise():
    """Noise drawn in the codebook span has the same RSRP statistics as full per-element noise."""
    cfg = ScenarioConfig()
    r = simulate(cfg, 3, seed=2)
    cb = r.codebooks["set_b"]
    H = channel_from_paths(r.paths.take(slice(0, 1)), cfg, r.sector[:1])
    nz = noise_dbm_for_snr(H, 0.0)
    reps = 3000
    Hr = np.repeat(H, reps, 0)
    fast = 10 ** (measure_rsrp(Hr, cb, np.repeat(nz, reps), np.random.default_rng(1)) / 10)
    rng = np.random.default_rng(2)
    sig = np.sqrt(10 ** (nz[0] / 10) / 2)
    N = (rng.standard_normal(Hr.shape) + 1j * rng.standard_normal(Hr.shape)) * sig
    naive = (np.abs(((Hr + N)[:, :, 0, :]) @ cb.weights.T) ** 2).mean(1)
    clean = 10 ** (measure_rsrp(H, cb, None, None) / 10)[0]
    np.testing.assert_allclose(fast.mean(0), naive.mean(0), rtol=0.05)
    np.testing.assert_allclose(fast.mean(0), clean + 10 ** (nz[0] / 10), rtol=0.05)
    np.testing.assert_allclose(fast.std(0), naive.std(0), rtol=0.1)


# ---------------------------------------------------------------- configurations
def test_three_sectors():
    r = simulate(ScenarioConfig(sectors=3), 600, seed=1)
    assert set(np.unique(r.sector)) == {0, 1, 2}
    assert r.rsrp_a.shape == (600, 64) and r.rsrp_b.shape == (600, 16) and np.isfinite(r.rsrp_a).all()
    cbs = r.codebooks
    assert len(cbs["set_a_sectors"]) == 3
    np.testing.assert_allclose((cbs["set_a_sectors"][1].az_deg - cbs["set_a"].az_deg) % 360, 120, atol=1e-3)
    az = np.degrees(np.arctan2(r.pos[:, 1], r.pos[:, 0]))
    bore = cbs["sector_boresight_az_deg"][r.sector]
    off = np.abs((az - bore + 180) % 360 - 180)
    assert np.mean(off[r.los] < 75) > 0.9       # LOS UEs are served by the panel facing them


def test_set_a_256_and_random_codebook():
    r = simulate(ScenarioConfig(set_a=256), 300, seed=2)
    assert r.rsrp_a.shape == (300, 256) and r.codebooks["set_a"].grid == (16, 16)
    ch = r.codebooks["children"]
    assert ch.shape == (16, 16) and sorted(ch.ravel().tolist()) == list(range(256))
    c1 = build_codebooks(ScenarioConfig(codebook_a="random", codebook_seed=1))
    c1b = build_codebooks(ScenarioConfig(codebook_a="random", codebook_seed=1))
    c2 = build_codebooks(ScenarioConfig(codebook_a="random", codebook_seed=2))
    assert c1["set_a"].weights.tobytes() == c1b["set_a"].weights.tobytes()
    assert c1["set_a"].weights.tobytes() != c2["set_a"].weights.tobytes()
    assert c1["children"].min() >= 0 and c1["children"].shape[0] == 16


@pytest.mark.parametrize("set_b,grid", [(4, (2, 2)), (8, (2, 4)), (16, (4, 4))])
def test_codebook_grids(set_b, grid):
    cbs = build_codebooks(ScenarioConfig(set_b=set_b))
    b, a = cbs["set_b"], cbs["set_a"]
    assert isinstance(b, Codebook) and b.grid == grid and b.weights.shape == (set_b, 64)
    np.testing.assert_allclose(np.linalg.norm(b.weights, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(a.weights, axis=1), 1, atol=1e-5)
    ch = cbs["children"]
    assert ch.shape == (set_b, 64 // set_b) and sorted(ch.ravel().tolist()) == list(range(64))
    npz = b.to_npz_dict("cb_b_")
    assert Codebook.from_npz_dict(npz, "cb_b_").weights.tobytes() == b.weights.tobytes()


def test_ue_array_4x4():
    r1 = simulate(ScenarioConfig(), 200, seed=4)
    r4 = simulate(ScenarioConfig(ue_array=(4, 4)), 200, seed=4)
    assert r4.rsrp_a.shape == (200, 64) and np.isfinite(r4.rsrp_b).all()
    assert r1.pos.tobytes() == r4.pos.tobytes()
    gain = r4.rsrp_a.max(1) - r1.rsrp_a.max(1)
    assert 6.0 < np.median(gain) <= 12.1          # receive-beam gain of 16 elements is at most 12 dB
    H = channel_from_paths(r4.paths.take(slice(0, 5)), r4.config, r4.sector[:5])
    with pytest.raises(ValueError, match="combiner"):
        measure_rsrp(H, r4.codebooks["set_a"], None, None)
    w = ue_combiner(H, r4.config)
    np.testing.assert_allclose(np.linalg.norm(w, axis=1), 1, atol=1e-5)


def test_region_quadrant():
    r = simulate(ScenarioConfig(region="q1"), 300, seed=3)
    az = np.degrees(np.arctan2(r.pos[:, 1], r.pos[:, 0])) % 360
    assert ((az >= 90) & (az < 180)).all()
    np.testing.assert_allclose(r.codebooks["sector_boresight_az_deg"], [135.0])


def test_find_paths_city_mismatch():
    with pytest.raises(ValueError, match="city"):
        find_paths(make_city("city1"), ScenarioConfig(city="city0"), np.zeros((1, 3)), np.random.default_rng(0))


# ---------------------------------------------------------------- mobility
def test_street_trajectories_speed_and_streets():
    city = make_city("city2")
    dt = 0.5
    pos, speed = street_trajectories(city, 300, 40, dt, np.random.default_rng(0), vehicle_fraction=0.5,
                                     return_speed=True)
    assert pos.shape == (300, 40, 3)
    step = np.linalg.norm(np.diff(pos, axis=1), axis=2) / dt
    ratio = step / speed[:, None]
    assert ratio.max() <= 1 + 1e-6 and ratio.min() > 0.7 and np.median(ratio) > 0.999
    veh = speed > 2.5
    assert abs(speed[veh].mean() - 9.5) < 0.8 and abs(speed[~veh].mean() - 1.4) < 0.15
    xy = pos[..., :2].reshape(-1, 2)
    w2 = city.street_width_m / 2
    in_x = np.abs(xy[:, 0:1] - city.streets_x[None]).min(1) < w2
    in_y = np.abs(xy[:, 1:2] - city.streets_y[None]).min(1) < w2
    assert (in_x | in_y).all() and (city.building_at(xy[:, 0], xy[:, 1]) < 0).all()


def test_simulate_trajectories_order_and_consistency():
    cfg = ScenarioConfig(vehicle_fraction=1.0)
    r = simulate_trajectories(cfg, n_ues=12, n_steps=30, dt_s=0.05, seed=9)
    assert len(r) == 360 and r.traj_id.dtype == np.int32 and r.t.dtype == np.float32
    key = r.traj_id.astype(np.int64) * 1000 + np.round(r.t / 0.05).astype(np.int64)
    assert (np.diff(key) > 0).all()
    ba = r.best_a.reshape(12, 30)
    assert (ba[:, 1:] == ba[:, :-1]).mean() > 0.7        # ~0.5 m steps: the best beam mostly stays
    # changing the UE array keeps the same UEs on the same streets
    r2 = simulate_trajectories(dataclasses.replace(cfg, ue_array=(2, 2)), n_ues=12, n_steps=30, dt_s=0.05, seed=9)
    assert r.pos.tobytes() == r2.pos.tobytes()
