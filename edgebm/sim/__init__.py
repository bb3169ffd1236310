"""Deterministic, vectorised geometric channel simulator (numpy only).

City of rectangular buildings on a street grid -> geometric paths (LOS, ground and wall
reflections, canyon double reflections, corner and over-roof diffraction, diffuse scatterers) ->
OFDM channel H[k] of a BS UPA panel and a UE UPA -> RSRP of Set B (wide, noisy) and Set A (narrow,
noise-free) codebooks. Frame: x east, y north, z up (m), BS at (0, 0, bs_height_m); angles in deg,
azimuth counter-clockwise from +x, elevation from the zenith.

Quick start::

    from edgebm.sim import ScenarioConfig, simulate
    res = simulate(ScenarioConfig(city="city1", carrier_hz=28e9), n_samples=10_000, seed=0)
    res.rsrp_b, res.rsrp_a, res.best_a

Domain-randomised data (K procedurally drawn cities, never city0..city3)::

    from edgebm.sim import RandomScenario, simulate_random
    rs = RandomScenario(cities=100, snr_db=(0, 30))
    res = simulate_random(rs, n_samples=10_000, seed=0)        # res.city_id: which city each sample is from
    cfg = rs.city_config(seed=0, k=7)                          # one random city as a ScenarioConfig
"""

from .channel import channel_from_paths, measure_rsrp, noise_dbm_for_snr, serving_sector, subcarrier_offsets_hz, ue_combiner
from .codebooks import Codebook, build_codebooks, ue_codebook
from .config import CITY_NAMES, REGIONS, ScenarioConfig
from .geometry import City, make_city, random_city_name
from .mobility import street_trajectories
from .paths import PathSet, find_paths, n_path_slots
from .randomize import RandomScenario, RandomSimResult, simulate_random
from .scenario import SimResult, drop_ues, measure_paths, simulate, simulate_trajectories
from .sectors import in_coverage, sector_boresights

__all__ = [
    "ScenarioConfig", "SimResult", "PathSet", "Codebook", "City", "CITY_NAMES", "REGIONS",
    "make_city", "simulate", "simulate_trajectories", "find_paths", "channel_from_paths", "measure_rsrp",
    "build_codebooks", "ue_combiner", "noise_dbm_for_snr", "serving_sector", "subcarrier_offsets_hz",
    "ue_codebook", "street_trajectories", "drop_ues", "measure_paths", "n_path_slots", "in_coverage",
    "sector_boresights", "RandomScenario", "RandomSimResult", "simulate_random", "random_city_name",
]
