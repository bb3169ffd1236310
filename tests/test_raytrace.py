"""Sionna RT import (edgebm.data.raytrace): the missing-dependency error and the interaction-code map
always run; the real ray tracer runs on a tiny scene when ``sionna.rt`` imports."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from edgebm.data.paths import dataset_from_path_table, load_path_table, save_path_table
from edgebm.data.raytrace import RaytraceUnavailable, raytrace_scene, sionna_interaction_codes

C0 = 299_792_458.0


def test_missing_sionna_one_line_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "sionna", None)
    monkeypatch.delitem(sys.modules, "sionna.rt", raising=False)
    with pytest.raises(RaytraceUnavailable) as e:
        raytrace_scene()
    assert str(e.value) == "Sionna RT is not installed: pip install edgebm[raytrace]"
    assert isinstance(e.value, ImportError)


def test_interaction_codes():
    # depth-major (D=3, paths=6): LoS, specular, specular+specular, specular->diffraction, refraction x2, diffuse
    t = np.array([[0, 1, 1, 1, 4, 2],
                  [0, 0, 1, 8, 4, 0],
                  [0, 0, 0, 0, 0, 0]])
    assert sionna_interaction_codes(t).tolist() == [0, 1, 11, 12, 44, 3]
    with pytest.raises(ValueError, match="16"):
        sionna_interaction_codes(np.array([[16]]))


def _sionna_or_skip():
    try:
        import sionna.rt  # noqa: F401
    except ImportError as e:
        pytest.skip(f"Sionna RT not available ({e}); pip install edgebm[raytrace] (needs libLLVM >= 19 on CPU)")


def test_real_raytrace_tiny_street_canyon(tmp_path):
    _sionna_or_skip()
    tx = np.array([-45.0, 0.0, 10.0])
    rx = np.array([[0.0, 0.0, 1.5],      # street canyon, line of sight
                   [40.0, 3.0, 1.5],     # street canyon, line of sight
                   [-23.0, 25.0, 1.5],   # cross street: reflections only
                   [23.0, -25.0, 1.5],   # cross street around two corners: no path without diffraction
                   [0.0, -20.0, 1.5]])   # inside a building: no path without refraction
    info: dict = {}
    table = raytrace_scene("simple_street_canyon", tx=tuple(tx), rx_pos=rx, carrier_hz=28e9, max_depth=2, seed=0,
                           samples_per_src=100_000, refraction=False, info=info)
    assert info["n_grid"] == 5 and info["n_dropped"] == 2
    assert np.array_equal(info["dropped_pos"], rx[3:])
    assert np.array_equal(table["rx_pos"], rx[:3])
    n = table["num_paths"]
    assert (n >= 1).all() and n[0] >= 2
    inter = table["inter"]
    assert inter[0, 0] == 0 and inter[1, 0] == 0 and not (inter[2] == 0).any()   # LoS first where visible
    assert set(np.unique(inter[inter >= 0])) <= {0, 1, 11}
    # LoS path geometry and free-space power (isotropic antennas, 30 dBm = 0 dBW transmit power)
    for i in (0, 1):
        v = rx[i] - tx
        d = np.linalg.norm(v)
        np.testing.assert_allclose(table["delay"][i, 0], d / C0, rtol=1e-5)
        np.testing.assert_allclose(table["aod_az"][i, 0], np.degrees(np.arctan2(v[1], v[0])), atol=0.01)
        np.testing.assert_allclose(table["aod_el"][i, 0], np.degrees(np.arccos(v[2] / d)), atol=0.01)
        np.testing.assert_allclose(table["aoa_el"][i, 0], 180.0 - np.degrees(np.arccos(v[2] / d)), atol=0.01)
        lam = C0 / 28e9
        np.testing.assert_allclose(table["power"][i, 0], 20 * np.log10(lam / (4 * np.pi * d)), atol=0.05)
    assert np.all(np.diff(table["power"][0, :n[0]]) <= 0)        # strongest first
    f = save_path_table(tmp_path / "rt.npz", table)
    ds, dinfo = dataset_from_path_table(load_path_table(f), seed=0)
    assert len(ds) == 3 and ds.los.tolist() == [True, True, False] and dinfo["n_dropped"] == 0
    assert ds.meta["source"] == "path_table" and ds.meta["carrier_hz"] == 28e9
    assert np.isfinite(ds.rsrp_a).all() and np.isfinite(ds.rsrp_b).all()
