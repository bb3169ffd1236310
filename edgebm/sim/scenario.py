"""Scenario drivers: drop UEs (or move them along streets), find paths, build channels and measure
Set B (noisy) and Set A (noise-free ground truth) RSRP."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .channel import channel_from_paths, measure_rsrp, noise_dbm_for_snr, serving_sector, ue_combiner
from .codebooks import build_codebooks
from .config import ScenarioConfig
from .geometry import UE_HEIGHT_M, City, make_city
from .mobility import street_trajectories
from .paths import PathSet, find_paths
from .sectors import MIN_UE_DISTANCE_M, coverage_az_ranges, in_coverage

__all__ = ["SampleArrays", "SimResult", "simulate", "simulate_trajectories", "drop_ues", "measure_paths"]


@dataclass(frozen=True, eq=False)
class SampleArrays:
    """The per-sample arrays every simulator result has (N rows).

    rsrp_b (N, set_b) float32 dBm: noisy Set B measurement at ``snr_db``. rsrp_a (N, set_a) float32
    dBm: noise-free Set A ground truth. best_a (N,) int64 = argmax rsrp_a. pos (N, 3) float32 m,
    city frame with the BS at (0, 0, bs_height_m). los (N,) bool. snr_db (N,) float32 dB.
    noise_dbm (N,) float32: noise per element per subcarrier, dBm. sector (N,) int8 serving panel.
    """

    rsrp_b: np.ndarray
    rsrp_a: np.ndarray
    best_a: np.ndarray
    pos: np.ndarray
    los: np.ndarray
    snr_db: np.ndarray
    noise_dbm: np.ndarray
    sector: np.ndarray

    def __len__(self) -> int:
        return int(self.rsrp_a.shape[0])


@dataclass(frozen=True, eq=False)
class SimResult(SampleArrays):
    """Output of :func:`simulate` / :func:`simulate_trajectories`: :class:`SampleArrays` plus
    traj_id (N,) int32 and t (N,) float32 s for trajectories (rows ordered by (traj_id, t)), else None;
    codebooks: :func:`~edgebm.sim.build_codebooks` output; paths: the :class:`PathSet`; config; seed.
    """

    traj_id: np.ndarray | None
    t: np.ndarray | None
    codebooks: dict[str, Any]
    paths: PathSet
    config: ScenarioConfig
    seed: int


def _check_int(name: str, v: Any, lo: int) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or int(v) < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
    return int(v)


def drop_ues(city: City, cfg: ScenarioConfig, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` UE positions (n, 3) m, uniform over the outdoor area (at least 1 m from any facade) of
    the coverage area (see :func:`~edgebm.sim.sectors.in_coverage`), at 1.5 m height."""
    lo, width = coverage_az_ranges(cfg)
    r0, r1 = MIN_UE_DISTANCE_M, city.coverage_radius_m
    got, parts = 0, []
    for _ in range(1000):
        if got >= n:
            break
        m = max(1024, int(2.5 * (n - got)))
        r = np.sqrt(rng.uniform(r0 ** 2, r1 ** 2, m))
        az = np.radians(lo + width * rng.random(m))
        xy = np.stack([r * np.cos(az), r * np.sin(az)], 1)
        xy = xy[city.is_outdoor(xy, clearance_m=1.0)][: n - got]
        parts.append(xy)
        got += len(xy)
    else:
        raise RuntimeError("drop_ues: could not place the UEs outdoors in the coverage area")
    xy = np.concatenate(parts)[:n] if parts else np.zeros((0, 2))
    return np.concatenate([xy, np.full((len(xy), 1), UE_HEIGHT_M)], 1)


def measure_paths(cfg: ScenarioConfig, paths: PathSet, sector: np.ndarray, rng_noise: np.random.Generator | None,
                  snr_db: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Channels from ``paths`` (chunked), UE receive beam, noise for ``cfg.snr_db`` (or the per-sample
    ``snr_db`` (N,) dB when given), then ``(rsrp_b noisy (N, set_b), rsrp_a noise-free (N, set_a), noise_dbm (N,))``."""
    cbs = build_codebooks(cfg)
    cb_a, cb_b = cbs["set_a"], cbs["set_b"]
    n = len(paths)
    rsrp_a = np.empty((n, cfg.set_a), np.float32)
    rsrp_b = np.empty((n, cfg.set_b), np.float32)
    noise = np.empty(n, np.float32)
    chunk = int(max(8, min(1024, 2 ** 20 // (cfg.n_subcarriers * cfg.n_rx * cfg.n_tx))))
    for s in range(0, n, chunk):
        sl = slice(s, min(n, s + chunk))
        H = channel_from_paths(paths.take(sl), cfg, sector[sl])
        w = ue_combiner(H, cfg) if cfg.n_rx > 1 else None
        nz = noise_dbm_for_snr(H, cfg.snr_db if snr_db is None else snr_db[sl])
        noise[sl] = nz
        rsrp_a[sl] = measure_rsrp(H, cb_a, nz, None, w)
        rsrp_b[sl] = measure_rsrp(H, cb_b, nz, rng_noise, w)
    return rsrp_b, rsrp_a, noise


def _result(cfg, seed, pos, paths, los, rng_noise, traj_id=None, t=None) -> SimResult:
    sector = serving_sector(paths, cfg)
    rsrp_b, rsrp_a, noise = measure_paths(cfg, paths, sector, rng_noise)
    n = len(paths)
    return SimResult(rsrp_b=rsrp_b, rsrp_a=rsrp_a, best_a=np.argmax(rsrp_a, 1).astype(np.int64),
                     pos=np.asarray(pos, np.float32), los=np.asarray(los, bool), snr_db=np.full(n, cfg.snr_db, np.float32),
                     noise_dbm=noise, sector=sector.astype(np.int8), traj_id=traj_id, t=t,
                     codebooks=build_codebooks(cfg), paths=paths, config=cfg, seed=int(seed))


def simulate(cfg: ScenarioConfig, n_samples: int, seed: int) -> SimResult:
    """``n_samples`` independent UE drops, uniform on the outdoor coverage area of ``cfg``.

    Random streams: ``np.random.default_rng(seed).spawn(3)`` -> (positions, scatterer field, noise);
    the same (cfg, n_samples, seed) gives byte-identical outputs.
    """
    if not isinstance(cfg, ScenarioConfig):
        raise TypeError(f"simulate: cfg must be a ScenarioConfig, got {type(cfg).__name__}")
    n = _check_int("n_samples", n_samples, 1)
    seed = _check_int("seed", seed, 0)
    r_pos, r_paths, r_noise = np.random.default_rng(seed).spawn(3)
    city = make_city(cfg.city)
    pos = drop_ues(city, cfg, n, r_pos)
    paths, los = find_paths(city, cfg, pos, r_paths)
    return _result(cfg, seed, pos, paths, los, r_noise)


def simulate_trajectories(cfg: ScenarioConfig, n_ues: int, n_steps: int, dt_s: float, seed: int) -> SimResult:
    """``n_ues`` UEs moving along the streets for ``n_steps`` samples ``dt_s`` s apart (see
    :mod:`edgebm.sim.mobility`), heading only for intersections inside the coverage area (azimuth
    range of the sector / quadrant, radius + one block) or at the BS intersection; rows ordered
    by (traj_id, t). Positions depend only on (city, sectors, region, vehicle_fraction, n_ues,
    n_steps, dt_s, seed), so changing arrays, codebooks, carrier or SNR keeps the same UEs on the
    same streets. Spatially consistent: every sample is recomputed from the geometry and the
    scatterer field is fixed for the call.
    """
    if not isinstance(cfg, ScenarioConfig):
        raise TypeError(f"simulate_trajectories: cfg must be a ScenarioConfig, got {type(cfg).__name__}")
    n_ues = _check_int("n_ues", n_ues, 1)
    n_steps = _check_int("n_steps", n_steps, 1)
    seed = _check_int("seed", seed, 0)
    if isinstance(dt_s, bool) or not isinstance(dt_s, (int, float, np.floating)) or not np.isfinite(dt_s) or dt_s <= 0:
        raise ValueError(f"dt_s must be a positive number of seconds, got {dt_s!r}")
    r_mob, r_paths, r_noise = np.random.default_rng(seed).spawn(3)
    city = make_city(cfg.city)
    slack = max(city.block_size_m) + city.street_width_m      # one block beyond the coverage radius

    def allowed(xy: np.ndarray) -> np.ndarray:
        return in_coverage(city, cfg, xy, slack_m=slack) | (np.hypot(xy[:, 0], xy[:, 1]) < city.street_width_m * 1.5)

    pos = street_trajectories(city, n_ues, n_steps, float(dt_s), r_mob, vehicle_fraction=cfg.vehicle_fraction,
                              allowed=allowed)
    pos = pos.reshape(-1, 3)
    paths, los = find_paths(city, cfg, pos, r_paths)
    traj_id = np.repeat(np.arange(n_ues, dtype=np.int32), n_steps)
    t = np.tile((np.arange(n_steps) * float(dt_s)).astype(np.float32), n_ues)
    return _result(cfg, seed, pos, paths, los, r_noise, traj_id=traj_id, t=t)
